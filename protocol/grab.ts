// A grab: the server asks a session for one image from one CameraView.
import { z } from "zod";
import { ElementKey } from "./elements.js";
import type { CameraMeta } from "./camera.js";

const LIMITS_MAX_SIDE = 8192;

export const ImageFormat = z.enum(["png", "jpeg", "webp"]);
export type ImageFormat = z.infer<typeof ImageFormat>;

export const GrabRequestSchema = z.object({
  key: ElementKey,
  format: ImageFormat.default("png"),
  /** 0..1, for jpeg/webp. */
  quality: z.number().min(0).max(1).optional(),
  /** Overrides the CameraView's own downsample for this grab. */
  downsample: z.number().int().min(1).max(16).optional(),
  /** The server's limit for one frame: a larger image is answered with an error, not sent. */
  maxBytes: z.number().int().positive().optional(),
  /** Also read the depth buffer: metric depth along the camera axis, in millimetres (uint16). */
  depth: z.boolean().optional(),
  /** "browser": the page encodes `format`; "raw": the page sends RGBA pixels and the server encodes. */
  encoding: z.enum(["browser", "raw"]).default("browser"),
});
export type GrabRequest = z.input<typeof GrabRequestSchema>;

export interface GrabSuccess {
  ok: true;
  /** Encoded image bytes, or RGBA pixels (top row first) when `raw`; binary, never base64. */
  image: ArrayBuffer | Uint8Array;
  raw?: boolean;
  /** With `depth`: uint16 little-endian millimetres, top row first; 0 where nothing was hit. */
  depth?: ArrayBuffer | Uint8Array;
  width: number;
  height: number;
  format: ImageFormat;
  camera: CameraMeta;
  /** Render + readPixels time in the page. */
  renderMs: number;
  /** Encode time in the page's worker. */
  encodeMs: number;
}
/** What the server checks in a successful reply before trusting it (the image bytes are checked apart). */
export const GrabSuccessMetaSchema = z.object({
  ok: z.literal(true),
  raw: z.boolean().optional(),
  width: z.number().int().min(1).max(LIMITS_MAX_SIDE),
  height: z.number().int().min(1).max(LIMITS_MAX_SIDE),
  camera: z.object({
    K: z.array(z.array(z.number()).length(3)).length(3),
    cameraToWorld: z.array(z.array(z.number()).length(4)).length(4),
    fov: z.number(),
    near: z.number(),
    far: z.number(),
  }),
  renderMs: z.number().nonnegative(),
  encodeMs: z.number().nonnegative(),
});

export interface GrabFailure {
  ok: false;
  error: string;
}
export type GrabReply = GrabSuccess | GrabFailure;

/** A CameraView's size props as the page reads them. */
export interface CameraViewSize {
  width: number;
  height: number;
  downsample: number;
}

const finiteOr = (value: unknown, fallback: number) => (typeof value === "number" && Number.isFinite(value) ? value : fallback);

/**
 * The size props of a CameraView element, read as the page reads them: 640×480 unless given as finite
 * numbers, rounded to whole pixels; downsample a whole number ≥ 1. The page's CameraView and the
 * server's check of what a grab must return both use this, so the two cannot disagree.
 */
export function cameraViewSize(props: Record<string, unknown>): CameraViewSize {
  return {
    width: Math.round(finiteOr(props.width, 640)),
    height: Math.round(finiteOr(props.height, 480)),
    downsample: Math.max(1, Math.round(finiteOr(props.downsample, 1))),
  };
}

/** The exact size of a grab's image: width/downsample × height/downsample, rounded down, at least 1×1. */
export function grabImageSize(view: CameraViewSize, downsample = view.downsample): { width: number; height: number } {
  return { width: Math.max(1, Math.floor(view.width / downsample)), height: Math.max(1, Math.floor(view.height / downsample)) };
}

/** Image limits the server enforces on what it asks for and what it accepts. */
export const LIMITS = {
  maxImageSide: LIMITS_MAX_SIDE,
  maxFramesPerJob: 100_000,
  maxFrameBytes: 64 * 1024 * 1024,
} as const;

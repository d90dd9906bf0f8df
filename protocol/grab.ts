// A grab: the server asks a session for one image from one CameraView.
import { z } from "zod";
import { ElementKey } from "./elements.js";
import type { CameraMeta } from "./camera.js";

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
});
export type GrabRequest = z.input<typeof GrabRequestSchema>;

export interface GrabSuccess {
  ok: true;
  /** Encoded image bytes, sent as binary (never base64). */
  image: ArrayBuffer | Uint8Array;
  width: number;
  height: number;
  format: ImageFormat;
  camera: CameraMeta;
  /** Render + readPixels time in the page. */
  renderMs: number;
  /** Encode time in the page's worker. */
  encodeMs: number;
}
export interface GrabFailure {
  ok: false;
  error: string;
}
export type GrabReply = GrabSuccess | GrabFailure;

/** Image limits the server enforces on what it asks for and what it accepts. */
export const LIMITS = {
  maxImageSide: 8192,
  maxFramesPerJob: 100_000,
  maxFrameBytes: 64 * 1024 * 1024,
} as const;

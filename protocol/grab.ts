// A grab: the server asks a session for one image from one CameraView.
import { z } from "zod";
import { ElementKey } from "./elements.js";
import type { CameraMeta } from "./camera.js";
import { LayerListSchema, layersWithDepth, MAX_ID, type LayerName } from "./layers.js";

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
  /** Layers besides rgb (protocol/layers.ts); rgb is always rendered. */
  layers: LayerListSchema.optional(),
  /** Short form of `layers: ["depth"]` (added to `layers`). */
  depth: z.boolean().optional(),
  /** "browser": the page encodes `format`; "raw": the page sends RGBA pixels and the server encodes. */
  encoding: z.enum(["browser", "raw"]).default("browser"),
});

/** The layers a grab asks for, resolved (rgb first, needs added): its `layers`, plus depth for the short form `depth: true`. Page and server read a request by this one rule. */
export function grabLayers(request: Pick<GrabRequest, "layers" | "depth">): LayerName[] {
  return layersWithDepth(request.layers, request.depth);
}

export type GrabRequest = z.input<typeof GrabRequestSchema>;

export interface GrabSuccess {
  ok: true;
  /** Encoded image bytes, or RGBA pixels (top row first) when `raw`; binary, never base64. */
  image: ArrayBuffer | Uint8Array;
  raw?: boolean;
  /**
   * The asked layers the page renders besides rgb, as pixels top row first, little-endian, in the
   * layout LAYERS[name].wire gives (depth uint16 mm, depth32 float32 m, mask uint16 ids, normal RGB8).
   */
  layers?: Partial<Record<PageLayer, ArrayBuffer | Uint8Array>>;
  /**
   * With mask/class/boxes: the 3D box of every instance that has geometry in the scene, packed by
   * packBoxes3d (binary: a scene of thousands of instances would not fit in a reply's JSON).
   */
  boxes3d?: ArrayBuffer | Uint8Array;
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

/** Layers whose pixels the page sends (the others are rgb's image, or derived on the server). */
export type PageLayer = "depth" | "depth32" | "mask" | "normal";
export const PAGE_LAYERS: readonly PageLayer[] = ["depth", "depth32", "mask", "normal"];

/**
 * An instance's 3D box as the page measures it: the tight box around all its meshes' geometry, in the
 * local frame of the element that owns its id (min/max), and that element's object-to-world matrix.
 */
export interface Box3dWire {
  id: number;
  min: [number, number, number];
  max: [number, number, number];
  /** 4×4, row-major. */
  objectToWorld: number[][];
}
const Finite = z.number().refine(Number.isFinite, "must be a finite number");
const Vec3Wire = z.tuple([Finite, Finite, Finite]);
export const Box3dWireSchema = z.strictObject({
  id: z.number().int().min(1).max(MAX_ID),
  min: Vec3Wire,
  max: Vec3Wire,
  objectToWorld: z.array(z.array(Finite).length(4)).length(4),
});

/** Numbers per packed Box3dWire: id, min (3), max (3), objectToWorld (16, row-major). */
export const BOX3D_NUMBERS = 23;

/** Boxes as the page sends them: BOX3D_NUMBERS float64 (little-endian) per box. */
export function packBoxes3d(boxes: readonly Box3dWire[]): ArrayBuffer {
  const packed = new Float64Array(boxes.length * BOX3D_NUMBERS);
  boxes.forEach((box, i) => packed.set([box.id, ...box.min, ...box.max, ...box.objectToWorld.flat()], i * BOX3D_NUMBERS));
  return packed.buffer;
}

/**
 * The boxes packed in `bytes`, unchecked (Box3dWireSchema checks each). The caller bounds the byte
 * length first; a length that is no whole number of boxes throws.
 */
export function unpackBoxes3d(bytes: Uint8Array): Box3dWire[] {
  const entryBytes = BOX3D_NUMBERS * 8;
  if (bytes.byteLength % entryBytes !== 0) throw new RangeError(`${bytes.byteLength} bytes are not a whole number of ${entryBytes}-byte boxes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const boxes: Box3dWire[] = [];
  for (let at = 0; at < bytes.byteLength; at += entryBytes) {
    const n = (i: number) => view.getFloat64(at + i * 8, true);
    const row = (r: number) => [n(7 + r * 4), n(8 + r * 4), n(9 + r * 4), n(10 + r * 4)];
    boxes.push({ id: n(0), min: [n(1), n(2), n(3)], max: [n(4), n(5), n(6)], objectToWorld: [row(0), row(1), row(2), row(3)] });
  }
  return boxes;
}

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

// One line of frames.jsonl: where a frame's files are and how it was taken (README, "Dataset").
import type { LayerName } from "../../protocol/layers.js";
import type { FrameInstance } from "../session/Session.js";

export interface FrameRecord {
  job: string;
  /** Index of the frame within its job. */
  frame: number;
  /** The rgb image's path relative to the dataset folder (= layers.rgb; kept for readers written before layers). */
  file: string;
  width: number;
  height: number;
  format: string;
  /** Every file the frame wrote, by layer (rgb included), relative to the dataset folder. */
  layers: Partial<Record<LayerName, string>>;
  /** The depth layer's file (= layers.depth) and its unit in metres per step (0.001: millimetres); with depth only. */
  depth_file?: string;
  depth_scale?: number;
  /** 3×3 pinhole intrinsics in pixels, row-major [[fx,0,cx],[0,fy,cy],[0,0,1]]. */
  K: number[][];
  /** 4×4 camera-to-world, row-major, three.js/OpenGL camera (looks down -Z, +Y up). */
  cameraToWorld: number[][];
  /** The same pose in OpenCV's convention: x_cam = R·x_world + t, camera looking down +Z, +Y down. */
  world_to_camera_opencv: { R: number[][]; t: number[] };
  /** Vertical field of view in degrees, and the clip planes in scene units. */
  fov: number;
  near: number;
  far: number;
  /** With mask, class or boxes: every instance visible in the frame, by id ascending (possibly none). */
  instances?: FrameInstance[];
  params: Record<string, unknown>;
  /**
   * The frame's seed, from the run's seed, the job id and the frame index (server/dispatch/randomizeFrame.ts):
   * the same on every attempt, so a re-rendered frame draws the same values. Absent in lines written before seeds.
   */
  seed?: number;
  /** The values the job's randomizers drew for this frame, by "key.prop" (and "camera.position", "camera.fov"). */
  randomized?: Record<string, unknown>;
  session: string;
  render_ms: number;
  encode_ms: number;
  attempt: number;
  [extra: string]: unknown;
}

/** The fields tabfarm writes on a line (some only with some layers): a handler's `extra` fields may not reuse them. */
export const FRAME_RECORD_FIELDS: ReadonlySet<string> = new Set([
  "job", "frame", "file", "width", "height", "format", "layers", "depth_file", "depth_scale", "K", "cameraToWorld",
  "world_to_camera_opencv", "fov", "near", "far", "instances", "params", "seed", "randomized", "session", "render_ms", "encode_ms", "attempt",
]);

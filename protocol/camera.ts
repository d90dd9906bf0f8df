// Camera poses as jobs give them, and camera metadata as frames report it.
import { z } from "zod";

export const FiniteNumber = z.number().refine(Number.isFinite, "must be a finite number");
export const Vec3 = z.tuple([FiniteNumber, FiniteNumber, FiniteNumber]);
/** Largest vertical field of view of a camera pose, in degrees. */
export const MAX_FOV = 179;
export const Matrix4 = z.array(FiniteNumber).length(16, "matrix must hold 16 numbers (column-major, camera-to-world)");

/** A pose: position + lookAt (or rotation, Euler XYZ radians), or a full camera-to-world matrix. */
export const CameraPoseSchema = z.union([
  z.strictObject({
    matrix: Matrix4,
    fov: FiniteNumber.positive().max(MAX_FOV).optional(),
    near: FiniteNumber.positive().optional(),
    far: FiniteNumber.positive().optional(),
  }),
  z.strictObject({
    position: Vec3,
    lookAt: Vec3.optional(),
    rotation: Vec3.optional(),
    up: Vec3.optional(),
    fov: FiniteNumber.positive().max(MAX_FOV).optional(),
    near: FiniteNumber.positive().optional(),
    far: FiniteNumber.positive().optional(),
  }),
]);
export type CameraPose = z.infer<typeof CameraPoseSchema>;

/** What a grab reports about the camera that took the frame. */
export interface CameraMeta {
  /** 3×3 pinhole intrinsics in pixels, row-major [[fx,0,cx],[0,fy,cy],[0,0,1]]. */
  K: number[][];
  /** 4×4 camera-to-world, row-major (three.js camera convention: looks down -Z, +Y up). */
  cameraToWorld: number[][];
  fov: number;
  near: number;
  far: number;
}

/**
 * The camera's pose in OpenCV's convention: x_cam = R · x_world + t, with the camera looking down +Z,
 * +Y down, +X right (three.js/OpenGL cameras look down -Z with +Y up: the two differ by a flip of Y
 * and Z). `cameraToWorld` is row-major and rigid (rotation + translation).
 */
export function openCvWorldToCamera(cameraToWorld: number[][]): { R: number[][]; t: number[] } {
  const flip = [1, -1, -1];
  const R: number[][] = [];
  const t: number[] = [];
  const centre = [cameraToWorld[0][3], cameraToWorld[1][3], cameraToWorld[2][3]];
  for (let row = 0; row < 3; row++) {
    // Row `row` of R is column `row` of the camera-to-world rotation (its transpose), times the flip.
    const r = [0, 1, 2].map((col) => flip[row] * cameraToWorld[col][row]);
    R.push(r);
    t.push(-(r[0] * centre[0] + r[1] * centre[1] + r[2] * centre[2]));
  }
  return { R, t };
}

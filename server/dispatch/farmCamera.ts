// The virtual camera the farm adds beside a job's scene, and the props that pose it.
import { RESERVED_KEY_PREFIX, type SceneElement } from "../../protocol/elements.js";
import type { CameraPose } from "../../protocol/camera.js";

// In the reserved namespace, which jobs may not use (protocol/job.ts), so no job can move or resize them.
export const FARM_CAMERA_KEY = `${RESERVED_KEY_PREFIX}camera`;
const ROOT_KEY = `${RESERVED_KEY_PREFIX}root`;

/** Camera props for `update`; every pose prop is given (null when unused) so no stale prop lingers. */
export function poseProps(pose: CameraPose): Record<string, unknown> {
  const p = pose as Record<string, unknown>;
  return {
    matrix: p.matrix ?? null,
    position: p.position ?? null,
    lookAt: p.lookAt ?? null,
    rotation: p.rotation ?? null,
    up: p.up ?? null,
    fov: p.fov ?? 60,
    near: p.near ?? 0.1,
    far: p.far ?? 100,
  };
}

/** Where the farm's camera starts a job that gives no pose. */
const START: CameraPose = { position: [0, 0, 5] };
export const START_POSE = poseProps(START);

/** `scene` under a root, with the farm's CameraView (key FARM_CAMERA_KEY) beside it. */
export function withFarmCamera(scene: SceneElement, width: number, height: number, pose: CameraPose = START): SceneElement {
  return {
    tag: "Scene",
    key: ROOT_KEY,
    children: [scene, { tag: "CameraView", key: FARM_CAMERA_KEY, width, height, stream: "ondemand", ...poseProps(pose) }],
  };
}

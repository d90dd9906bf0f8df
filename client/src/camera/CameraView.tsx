// A virtual camera (stream "ondemand"): it renders nothing by itself; a grab renders the scene from it
// into an offscreen target of exactly width/downsample × height/downsample pixels.
import { useLayoutEffect, useMemo } from "react";
import { Matrix4, PerspectiveCamera, Vector3 } from "three";
import type { ElementProps } from "../scene/registry.js";
import { cameraRegistry } from "./cameraRegistry.js";
import { parseUp, sceneUp } from "../scene/upAxis.js";
import { cameraViewSize } from "../../../protocol/grab.js";

const num = (v: unknown, fallback: number) => (typeof v === "number" && Number.isFinite(v) ? v : fallback);
const vec = (v: unknown) => (Array.isArray(v) && v.length === 3 ? new Vector3(...(v as [number, number, number])) : undefined);

/** Poses a camera from `matrix` (camera-to-world, column-major like three.js) or position + lookAt/rotation. */
export function poseCamera(camera: PerspectiveCamera, p: Record<string, unknown>): void {
  camera.fov = num(p.fov, 60);
  camera.near = num(p.near, 0.1);
  camera.far = num(p.far, 100);
  camera.aspect = num(p.width, 640) / num(p.height, 480);
  if (Array.isArray(p.matrix) && p.matrix.length === 16) {
    new Matrix4().fromArray(p.matrix as number[]).decompose(camera.position, camera.quaternion, camera.scale);
  } else {
    camera.position.copy(vec(p.position) ?? new Vector3(0, 0, 5));
    camera.up.copy(p.up != null ? parseUp(p.up) : sceneUp);
    const lookAt = vec(p.lookAt);
    const rotation = vec(p.rotation);
    if (lookAt) camera.lookAt(lookAt);
    else if (rotation) camera.rotation.set(rotation.x, rotation.y, rotation.z);
    else camera.rotation.set(0, 0, 0);
  }
  camera.updateProjectionMatrix();
  camera.updateMatrixWorld(true);
}

export function CameraView(p: ElementProps) {
  const camera = useMemo(() => new PerspectiveCamera(), []);
  const key = p.elementKey;
  useLayoutEffect(() => {
    poseCamera(camera, p);
    // Sized by the rule the server checks grabs against (protocol/grab.ts).
    cameraRegistry.set(key, { camera, ...cameraViewSize(p), samples: Math.max(0, Math.round(num(p.samples, 0))) });
  });
  useLayoutEffect(() => () => void cameraRegistry.delete(key), [key]);
  return null;
}

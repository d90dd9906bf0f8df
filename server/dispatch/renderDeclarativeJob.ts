// Renders a declarative job (scene + per-frame camera poses and updates) with no user code.
// Several grabs are kept in flight: ops and grabs are ordered on the socket, so frame i+1's updates
// can be sent while frame i is still encoding and uploading.
import type { SceneElement } from "../../protocol/elements.js";
import type { CameraPose } from "../../protocol/camera.js";
import type { ImageFormat } from "../../protocol/grab.js";
import type { Session } from "../session/Session.js";
import type { JobContext } from "./JobContext.js";
import { InFlight } from "./InFlight.js";

/** The camera the farm adds to every declarative scene. */
export const FARM_CAMERA_KEY = "tabfarm.camera";
const ROOT_KEY = "tabfarm.root";

export interface RenderDefaults {
  width: number;
  height: number;
  format: ImageFormat;
  quality?: number;
  scene: SceneElement;
  /** Grabs in flight per session. */
  inFlight: number;
}

// The scene each session shows, so consecutive jobs with the same scene skip the `set`.
const shownScene = new WeakMap<Session, string>();

export function forgetScene(session: Session): void {
  shownScene.delete(session);
}

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

const START_POSE = poseProps({ position: [0, 0, 5] });

export async function renderDeclarativeJob(session: Session, job: JobContext, defaults: RenderDefaults): Promise<void> {
  const spec = job.spec;
  const width = spec.width ?? defaults.width;
  const height = spec.height ?? defaults.height;
  const format = spec.format ?? defaults.format;
  const quality = spec.quality ?? defaults.quality;
  const scene: SceneElement = {
    tag: "Scene",
    key: ROOT_KEY,
    children: [
      spec.scene ?? defaults.scene,
      { tag: "CameraView", key: FARM_CAMERA_KEY, width, height, stream: "ondemand", ...START_POSE },
    ],
  };
  const sceneJson = JSON.stringify(scene);
  if (shownScene.get(session) !== sceneJson) {
    session.set(scene);
    shownScene.set(session, sceneJson);
  } else {
    session.update({ key: FARM_CAMERA_KEY, ...START_POSE }); // the last job moved it
  }
  // The scene is shared by the next job only if this one leaves it as it found it; updates don't.
  const frames = spec.frames?.length ? spec.frames : [{}];
  if (frames.some((f) => f.update?.length)) shownScene.delete(session);

  const window = new InFlight(defaults.inFlight);
  for (const [index, frame] of frames.entries()) {
    job.signal.throwIfAborted();
    if (frame.camera) session.update({ key: FARM_CAMERA_KEY, ...poseProps(frame.camera) });
    if (frame.update?.length) session.update(frame.update);
    await window.add(session.grabRender({ key: FARM_CAMERA_KEY, format, quality }).then((f) => job.saveFrame(f, { index })));
  }
  await window.drain();
}

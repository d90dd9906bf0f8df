// Renders a declarative job (scene + per-frame camera poses and updates) with no user code.
// Several grabs are kept in flight: ops and grabs are ordered on the socket, so frame i+1's updates
// can be sent while frame i is still encoding and uploading.
import type { SceneElement } from "../../protocol/elements.js";
import type { ImageFormat } from "../../protocol/grab.js";
import { jobLayers } from "../../protocol/job.js";
import type { LayerName } from "../../protocol/layers.js";
import type { Session } from "../session/Session.js";
import type { JobContext } from "./JobContext.js";
import { InFlight } from "./InFlight.js";
import { FARM_CAMERA_KEY, START_POSE, poseProps, withFarmCamera } from "./farmCamera.js";
import { drawFrame } from "./randomizeFrame.js";

export interface RenderDefaults {
  width: number;
  height: number;
  format: ImageFormat;
  quality?: number;
  scene: SceneElement;
  /** Grabs in flight per session. */
  inFlight: number;
  /** The layers of jobs that name none (resolved: rgb first); a job's `layers` and `depth` override them (jobLayers). */
  layers: readonly LayerName[];
}

// The scene each session shows, so consecutive jobs with the same scene skip the `set`. Skipping it
// keeps mask ids as a fresh tab would have them: instance ids (protocol/instances.ts) restart at each
// `set` and change only when elements are added, which only a frame's `update` can do, and a job with
// updates makes the next one `set` again.
const shownScene = new WeakMap<Session, string>();

/** After a failed job the page's scene is unknown: the next job sets its scene again. */
export function forgetScene(session: Session): void {
  shownScene.delete(session);
}

export async function renderDeclarativeJob(session: Session, job: JobContext, defaults: RenderDefaults): Promise<void> {
  const spec = job.spec;
  const width = spec.width ?? defaults.width;
  const height = spec.height ?? defaults.height;
  const format = spec.format ?? defaults.format;
  const quality = spec.quality ?? defaults.quality;
  const layers = jobLayers(spec, defaults.layers);
  const scene = withFarmCamera(spec.scene ?? defaults.scene, width, height);
  const sceneJson = JSON.stringify(scene);
  if (shownScene.get(session) !== sceneJson) {
    session.set(scene);
    shownScene.set(session, sceneJson);
  } else {
    session.update({ key: FARM_CAMERA_KEY, ...START_POSE }); // the last job moved it
  }
  // The scene is shared by the next job only if this one leaves it as it found it; updates and randomizers don't.
  const frames = spec.frames?.length ? spec.frames : [{}];
  const randomizers = spec.randomize ?? [];
  if (randomizers.length || frames.some((f) => f.update?.length)) shownScene.delete(session);

  const window = new InFlight(defaults.inFlight);
  for (const [index, frame] of frames.entries()) {
    job.signal.throwIfAborted();
    if (frame.camera) session.update({ key: FARM_CAMERA_KEY, ...poseProps(frame.camera) });
    if (frame.update?.length) session.update(frame.update);
    // Drawn from the frame's seed, so every attempt at this frame draws the same values.
    const drawn = randomizers.length ? drawFrame(randomizers, job.frameSeed(index)) : undefined;
    if (drawn?.patches.length) session.update(drawn.patches);
    if (drawn?.camera) session.update({ key: FARM_CAMERA_KEY, ...poseProps(drawn.camera) });
    const randomized = drawn?.randomized;
    await window.add(session.grabRender({ key: FARM_CAMERA_KEY, format, quality, layers }).then((f) => job.saveFrame(f, { index, randomized })));
  }
  job.markAllIssued();
  await window.drain();
}

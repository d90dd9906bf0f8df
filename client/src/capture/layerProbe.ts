// Diagnostics on window.tabfarmLayers, for tests and measurements; a separate chunk that a page fetches only when
// asked (window.tabfarm.loadLayerDiagnostics()), so tabs never load it:
//  - maskThrough(key, space) renders the ids pass of the current scene from CameraView `key` into a target
//    of colour space `space` and returns the ids read back. With "srgb" the GL encodes the id bytes as
//    colours and the ids come out wrong: the reason the real pass's target has no colour space
//    (tests/screenshots/layers.spec.ts).
//  - renderTimes(key, layers, frames) renders the current scene `frames` times with `layers` as a grab
//    does (renderFrame, readback included, no encode) and returns each frame's milliseconds.
import { NoColorSpace, SRGBColorSpace } from "three";
import { sceneStore } from "../scene/sceneStore.js";
import { cameraRegistry } from "../camera/cameraRegistry.js";
import { glContext } from "./glContext.js";
import { grabImageSize } from "../../../protocol/grab.js";
import { resolveLayers, type LayerName } from "../../../protocol/layers.js";
import { idsTarget, readMask, renderIds } from "./layerPasses.js";
import { renderFrame } from "./renderFrame.js";

/** The committed scene, renderer and CameraView `key`, as a grab would find them. */
async function settledView(key: string, what: string) {
  await sceneStore.settled();
  const view = cameraRegistry.get(key);
  const { gl, scene } = glContext;
  if (!view || !gl || !scene) throw new Error(`${what}: no CameraView '${key}' or no renderer`);
  return { view, gl, scene };
}

async function maskThrough(key: string, space: "none" | "srgb"): Promise<number[]> {
  const { view, gl, scene } = await settledView(key, "maskThrough");
  const { width, height } = grabImageSize(view);
  const target = idsTarget(width, height, space === "srgb" ? SRGBColorSpace : NoColorSpace);
  const previous = gl.getRenderTarget();
  try {
    renderIds(gl, scene, view.camera, target, sceneStore.instanceResolution());
    return [...readMask(gl, target)];
  } finally {
    gl.setRenderTarget(previous);
    target.dispose();
  }
}

async function renderTimes(key: string, layers: LayerName[], frames: number): Promise<number[]> {
  const { view, gl, scene } = await settledView(key, "renderTimes");
  const options = { layers: resolveLayers(layers), instances: sceneStore.instanceResolution() };
  const times: number[] = [];
  for (let i = 0; i < Math.min(frames, 1000); i++) times.push(renderFrame(gl, scene, view, options).renderMs);
  return times;
}

Object.assign(window, { tabfarmLayers: { maskThrough, renderTimes } });

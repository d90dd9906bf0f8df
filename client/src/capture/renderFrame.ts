// Renders the scene from a virtual camera into an offscreen target and reads the pixels back.
// Not a page screenshot: the image size is exactly the camera's size whatever the devicePixelRatio.
// three.js writes linear colour into (non-XR) render targets and converts to sRGB only on the canvas;
// the colour target is SRGB8_ALPHA8 (UnsignedByteType + SRGBColorSpace), so the GL encodes each linear
// value to sRGB as it is written (and blends in linear), and readPixels returns the sRGB bytes as they are.
// This replaced a half-float target plus a full-screen sRGB conversion pass: the same images within one
// level per channel, and on SwiftShader the GPU process's CPU per 640×480 frame went ≈51 → 30 ms (8 knots)
// and ≈393 → 269 ms (200 knots).
// The other layers' passes (layerPasses.ts) run right after the colour pass, in the same call with the
// same camera and size, so every layer of a frame shows the same scene state.
import {
  DepthTexture, FloatType, NearestFilter, SRGBColorSpace, UnsignedByteType, WebGLRenderTarget, type Scene, type WebGLRenderer,
} from "three";
import type { CameraMeta } from "../../../protocol/camera.js";
import type { Box3dWire, PageLayer } from "../../../protocol/grab.js";
import { grabImageSize } from "../../../protocol/grab.js";
import type { InstanceResolution } from "../../../protocol/instances.js";
import { LAYERS, needsInstanceIds, passesFor, type LayerName } from "../../../protocol/layers.js";
import type { VirtualCamera } from "../camera/cameraRegistry.js";
import { depthTarget, idsTarget, instanceBoxes, readDepth, readMask, readNormals, renderDepth, renderIds } from "./layerPasses.js";
import { rowMajor4 } from "./matrices.js";

/** The page layers' pixels, top row first, in the wire layouts of protocol/grab.ts. */
export interface PageLayerPixels extends Partial<Record<PageLayer, ArrayBufferView<ArrayBuffer>>> {
  depth?: Uint16Array<ArrayBuffer>;
  depth32?: Float32Array<ArrayBuffer>;
  mask?: Uint16Array<ArrayBuffer>;
  normal?: Uint8Array<ArrayBuffer>;
}

export interface RenderedFrame {
  /** RGBA, top row first. */
  pixels: Uint8ClampedArray<ArrayBuffer>;
  layers: PageLayerPixels;
  /** With mask, class or boxes: the 3D box of every instance that has visible meshes. */
  boxes3d?: Box3dWire[];
  width: number;
  height: number;
  camera: CameraMeta;
  renderMs: number;
}

export interface RenderOptions {
  downsample?: number;
  /** Resolved layers (resolveLayers); rgb alone when absent. */
  layers?: readonly LayerName[];
  /** The scene's instance ids; needed when the layers need the ids pass (passesFor). */
  instances?: InstanceResolution;
}

/** One size's targets: colour always; the others made the first time a grab of that size asks for them. */
interface Targets { colour: WebGLRenderTarget; depth?: WebGLRenderTarget; ids?: WebGLRenderTarget }
const targets = new Map<string, Targets>();

function targetsFor(width: number, height: number, samples: number, depth: boolean): Targets {
  const id = `${width}x${height}x${samples}${depth ? "d" : ""}`;
  let t = targets.get(id);
  if (!t) {
    // Keep a handful of sizes; a session that cycles through many frees the oldest.
    if (targets.size >= 4) {
      const [oldId, old] = targets.entries().next().value!;
      for (const target of [old.colour, old.depth, old.ids]) target?.dispose();
      targets.delete(oldId);
    }
    t = {
      colour: new WebGLRenderTarget(width, height, {
        type: UnsignedByteType, colorSpace: SRGBColorSpace, samples, minFilter: NearestFilter, magFilter: NearestFilter,
        depthTexture: depth ? Object.assign(new DepthTexture(width, height), { type: FloatType }) : null,
      }),
    };
    targets.set(id, t);
  }
  return t;
}

/** One row of scratch for the in-place flip (grown as needed, never handed out). */
let rowScratch = new Uint8Array(0);

/** WebGL reads bottom row first; images are stored top row first. Swaps rows in place. */
function flipRows(bytes: Uint8Array, stride: number, height: number): void {
  if (rowScratch.length < stride) rowScratch = new Uint8Array(stride);
  const row = rowScratch.subarray(0, stride);
  for (let top = 0, bottom = (height - 1) * stride; top < bottom; top += stride, bottom -= stride) {
    row.set(bytes.subarray(top, top + stride));
    bytes.copyWithin(top, bottom, bottom + stride);
    bytes.set(row, bottom);
  }
}

export function cameraMeta(view: VirtualCamera, width: number, height: number): CameraMeta {
  const { camera } = view;
  const fy = height / 2 / Math.tan((camera.fov * Math.PI) / 360);
  // three.js keeps square pixels: the horizontal focal length equals the vertical one.
  return {
    K: [[fy, 0, width / 2], [0, fy, height / 2], [0, 0, 1]],
    cameraToWorld: rowMajor4(camera.matrixWorld.elements),
    fov: camera.fov,
    near: camera.near,
    far: camera.far,
  };
}

export function renderFrame(gl: WebGLRenderer, scene: Scene, view: VirtualCamera, options: RenderOptions = {}): RenderedFrame {
  const started = performance.now();
  const { width, height } = grabImageSize(view, options.downsample ?? view.downsample);
  const layers = options.layers ?? ["rgb"];
  const passes = passesFor(layers);
  const camera = view.camera;
  camera.aspect = width / height;
  camera.updateProjectionMatrix();
  camera.updateMatrixWorld(true);
  const t = targetsFor(width, height, view.samples, passes.has("depth"));
  const previous = gl.getRenderTarget();
  const out: PageLayerPixels = {};
  let boxes3d: Box3dWire[] | undefined;
  // A fresh buffer per frame: it is handed over (transferred to the encoder worker, or sent raw).
  const raw = new Uint8Array(width * height * 4);
  // No await from here to the end: every pass sees the same scene state. All passes are drawn before
  // the first read, so the page waits for the GPU once per frame, not once per pass.
  try {
    gl.setRenderTarget(t.colour);
    gl.render(scene, camera);
    if (passes.has("depth")) renderDepth(gl, t.colour, (t.depth ??= depthTarget(width, height)), camera);
    if (passes.has("ids")) {
      if (!options.instances) throw new Error("renderFrame: the ids pass needs the scene's instance resolution");
      renderIds(gl, scene, camera, (t.ids ??= idsTarget(width, height)), options.instances);
    }
    gl.readRenderTargetPixels(t.colour, 0, 0, width, height, raw);
    flipRows(raw, width * 4, height);
    if (t.depth && passes.has("depth")) Object.assign(out, readDepth(gl, t.depth, { depth: layers.includes("depth"), depth32: layers.includes("depth32") }));
    if (t.ids && passes.has("ids")) {
      if (layers.includes("mask")) out.mask = readMask(gl, t.ids);
      if (layers.includes("normal")) out.normal = readNormals(gl, t.ids);
      if (needsInstanceIds(layers)) boxes3d = instanceBoxes(scene, options.instances!);
    }
  } finally {
    gl.setRenderTarget(previous);
  }
  const pixels = new Uint8ClampedArray(raw.buffer);
  return { pixels, layers: out, boxes3d, width, height, camera: cameraMeta(view, width, height), renderMs: performance.now() - started };
}

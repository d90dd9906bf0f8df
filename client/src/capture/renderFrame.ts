// Renders the scene from a virtual camera into an offscreen target and reads the pixels back.
// Not a page screenshot: the image size is exactly the camera's size whatever the devicePixelRatio.
// three.js writes linear colour into (non-XR) render targets and converts to sRGB only on the canvas;
// the colour target is SRGB8_ALPHA8 (UnsignedByteType + SRGBColorSpace), so the GL encodes each linear
// value to sRGB as it is written (and blends in linear), and readPixels returns the sRGB bytes as they are.
// This replaced a half-float target plus a full-screen sRGB conversion pass: the same images within one
// level per channel, and on SwiftShader the GPU process's CPU per 640×480 frame went ≈51 → 30 ms (8 knots)
// and ≈393 → 269 ms (200 knots). Depth, when asked, is a second pass over the colour target's depth texture.
import {
  BufferAttribute, BufferGeometry, DepthTexture, FloatType, Mesh, NearestFilter, OrthographicCamera,
  RawShaderMaterial, Scene, SRGBColorSpace, UnsignedByteType, WebGLRenderTarget, type WebGLRenderer,
} from "three";
import type { CameraMeta } from "../../../protocol/camera.js";
import { grabImageSize } from "../../../protocol/grab.js";
import type { VirtualCamera } from "../camera/cameraRegistry.js";

export interface RenderedFrame {
  /** RGBA, top row first. */
  pixels: Uint8ClampedArray<ArrayBuffer>;
  /** With depth: millimetres along the camera axis, top row first; 0 where nothing was hit. */
  depth?: Uint16Array<ArrayBuffer>;
  width: number;
  height: number;
  camera: CameraMeta;
  renderMs: number;
}

// Depth in millimetres, split over two bytes (R low, G high) so an RGBA8 target can carry it exactly.
// The pass samples row (height-1-y) for output row y, so the bytes read back come out top row first.
const depthMaterial = new RawShaderMaterial({
  uniforms: { tDepth: { value: null }, near: { value: 0.1 }, far: { value: 100 } },
  vertexShader: /* glsl */ `
    precision highp float;
    attribute vec3 position;
    varying vec2 vUv;
    void main() { vUv = vec2(position.x * 0.5 + 0.5, 0.5 - position.y * 0.5); gl_Position = vec4(position.xy, 0.0, 1.0); }`,
  fragmentShader: /* glsl */ `
    precision highp float;
    uniform sampler2D tDepth;
    uniform float near;
    uniform float far;
    varying vec2 vUv;
    void main() {
      float d = texture2D(tDepth, vUv).x;
      if (d >= 1.0) { gl_FragColor = vec4(0.0); return; }
      float viewZ = (near * far) / ((far - near) * d - far);
      float mm = clamp(floor(-viewZ * 1000.0 + 0.5), 0.0, 65535.0);
      gl_FragColor = vec4(mod(mm, 256.0) / 255.0, floor(mm / 256.0) / 255.0, 0.0, 1.0);
    }`,
  depthTest: false,
  depthWrite: false,
});
const fullscreenTriangle = new BufferGeometry().setAttribute(
  "position",
  new BufferAttribute(new Float32Array([-1, -1, 0, 3, -1, 0, -1, 3, 0]), 3),
);
const depthScene = new Scene().add(new Mesh(fullscreenTriangle, depthMaterial));
depthScene.children[0].frustumCulled = false;
const passCamera = new OrthographicCamera();

/** colour: the scene renders here (sRGB bytes); depth: the depth pass's target, only when depth is asked. */
interface Targets { colour: WebGLRenderTarget; depth?: WebGLRenderTarget }
const targets = new Map<string, Targets>();

function targetsFor(width: number, height: number, samples: number, depth: boolean): Targets {
  const id = `${width}x${height}x${samples}${depth ? "d" : ""}`;
  let t = targets.get(id);
  if (!t) {
    // Keep a handful of sizes; a session that cycles through many frees the oldest.
    if (targets.size >= 4) {
      const [oldId, old] = targets.entries().next().value!;
      old.colour.dispose();
      old.depth?.dispose();
      targets.delete(oldId);
    }
    t = {
      colour: new WebGLRenderTarget(width, height, {
        type: UnsignedByteType, colorSpace: SRGBColorSpace, samples, minFilter: NearestFilter, magFilter: NearestFilter,
        depthTexture: depth ? Object.assign(new DepthTexture(width, height), { type: FloatType }) : null,
      }),
      depth: depth
        ? new WebGLRenderTarget(width, height, { type: UnsignedByteType, depthBuffer: false, minFilter: NearestFilter, magFilter: NearestFilter })
        : undefined,
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

function rowMajor4(elements: ArrayLike<number>): number[][] {
  const m: number[][] = [];
  for (let r = 0; r < 4; r++) m.push([elements[r], elements[4 + r], elements[8 + r], elements[12 + r]]);
  return m;
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

export function renderFrame(gl: WebGLRenderer, scene: Scene, view: VirtualCamera, downsample = view.downsample, withDepth = false): RenderedFrame {
  const started = performance.now();
  const { width, height } = grabImageSize(view, downsample);
  const camera = view.camera;
  camera.aspect = width / height;
  camera.updateProjectionMatrix();
  camera.updateMatrixWorld(true);
  const t = targetsFor(width, height, view.samples, withDepth);
  const previous = gl.getRenderTarget();
  gl.setRenderTarget(t.colour);
  gl.render(scene, camera);
  // A fresh buffer per frame: it is handed over (transferred to the encoder worker, or sent raw).
  const raw = new Uint8Array(width * height * 4);
  gl.readRenderTargetPixels(t.colour, 0, 0, width, height, raw);
  flipRows(raw, width * 4, height);
  const pixels = new Uint8ClampedArray(raw.buffer);
  let depth: Uint16Array<ArrayBuffer> | undefined;
  if (withDepth && t.depth) {
    depthMaterial.uniforms.tDepth.value = t.colour.depthTexture;
    depthMaterial.uniforms.near.value = camera.near;
    depthMaterial.uniforms.far.value = camera.far;
    gl.setRenderTarget(t.depth);
    gl.render(depthScene, passCamera);
    const bytes = new Uint8Array(width * height * 4);
    gl.readRenderTargetPixels(t.depth, 0, 0, width, height, bytes); // top row first (flipped in the pass)
    depth = new Uint16Array(width * height);
    for (let i = 0, j = 0; i < depth.length; i++, j += 4) depth[i] = bytes[j] | (bytes[j + 1] << 8);
  }
  gl.setRenderTarget(previous);
  return { pixels, depth, width, height, camera: cameraMeta(view, width, height), renderMs: performance.now() - started };
}

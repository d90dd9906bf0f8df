// Renders the scene from a virtual camera into an offscreen target and reads the pixels back.
// Not a page screenshot: the image size is exactly the camera's size whatever the devicePixelRatio.
// three.js writes linear colour into render targets (it converts to sRGB only on the canvas), so the
// scene goes into a half-float target first and a one-triangle pass converts it to sRGB bytes.
import {
  BufferAttribute, BufferGeometry, DepthTexture, FloatType, HalfFloatType, LinearSRGBColorSpace, Mesh,
  NearestFilter, OrthographicCamera, RawShaderMaterial, Scene, UnsignedByteType, WebGLRenderTarget,
  type WebGLRenderer,
} from "three";
import type { CameraMeta } from "../../../protocol/camera.js";
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

const toSrgbMaterial = new RawShaderMaterial({
  uniforms: { tLinear: { value: null } },
  vertexShader: /* glsl */ `
    precision highp float;
    attribute vec3 position;
    varying vec2 vUv;
    void main() { vUv = position.xy * 0.5 + 0.5; gl_Position = vec4(position.xy, 0.0, 1.0); }`,
  fragmentShader: /* glsl */ `
    precision highp float;
    uniform sampler2D tLinear;
    varying vec2 vUv;
    vec3 toSrgb(vec3 c) {
      c = clamp(c, 0.0, 1.0);
      return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
    }
    void main() { vec4 c = texture2D(tLinear, vUv); gl_FragColor = vec4(toSrgb(c.rgb), clamp(c.a, 0.0, 1.0)); }`,
  depthTest: false,
  depthWrite: false,
});
// Depth in millimetres, split over two bytes (R low, G high) so an RGBA8 target can carry it exactly.
const depthMaterial = new RawShaderMaterial({
  uniforms: { tDepth: { value: null }, near: { value: 0.1 }, far: { value: 100 } },
  vertexShader: toSrgbMaterial.vertexShader,
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
const passScene = new Scene().add(new Mesh(fullscreenTriangle, toSrgbMaterial));
passScene.children[0].frustumCulled = false;
const depthScene = new Scene().add(new Mesh(fullscreenTriangle, depthMaterial));
depthScene.children[0].frustumCulled = false;
const passCamera = new OrthographicCamera();

interface Targets { linear: WebGLRenderTarget; srgb: WebGLRenderTarget }
const targets = new Map<string, Targets>();

function targetsFor(width: number, height: number, samples: number, depth: boolean): Targets {
  const id = `${width}x${height}x${samples}${depth ? "d" : ""}`;
  let t = targets.get(id);
  if (!t) {
    // Keep a handful of sizes; a session that cycles through many frees the oldest.
    if (targets.size >= 4) {
      const [oldId, old] = targets.entries().next().value!;
      old.linear.dispose();
      old.srgb.dispose();
      targets.delete(oldId);
    }
    t = {
      linear: new WebGLRenderTarget(width, height, {
        type: HalfFloatType, samples, colorSpace: LinearSRGBColorSpace,
        depthTexture: depth ? Object.assign(new DepthTexture(width, height), { type: FloatType }) : null,
      }),
      srgb: new WebGLRenderTarget(width, height, {
        type: UnsignedByteType, depthBuffer: false, minFilter: NearestFilter, magFilter: NearestFilter,
      }),
    };
    targets.set(id, t);
  }
  return t;
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
  const width = Math.max(1, Math.floor(view.width / downsample));
  const height = Math.max(1, Math.floor(view.height / downsample));
  const camera = view.camera;
  camera.aspect = width / height;
  camera.updateProjectionMatrix();
  camera.updateMatrixWorld(true);
  const t = targetsFor(width, height, view.samples, withDepth);
  const previous = gl.getRenderTarget();
  gl.setRenderTarget(t.linear);
  gl.render(scene, camera);
  toSrgbMaterial.uniforms.tLinear.value = t.linear.texture;
  gl.setRenderTarget(t.srgb);
  gl.render(passScene, passCamera);
  const raw = new Uint8Array(width * height * 4);
  gl.readRenderTargetPixels(t.srgb, 0, 0, width, height, raw);
  // WebGL reads bottom row first; images are stored top row first.
  const pixels = new Uint8ClampedArray(raw.length);
  const stride = width * 4;
  for (let y = 0; y < height; y++) pixels.set(raw.subarray((height - 1 - y) * stride, (height - y) * stride), y * stride);
  let depth: Uint16Array<ArrayBuffer> | undefined;
  if (withDepth) {
    depthMaterial.uniforms.tDepth.value = t.linear.depthTexture;
    depthMaterial.uniforms.near.value = camera.near;
    depthMaterial.uniforms.far.value = camera.far;
    gl.setRenderTarget(t.srgb); // reused: its colour was read already
    gl.render(depthScene, passCamera);
    gl.readRenderTargetPixels(t.srgb, 0, 0, width, height, raw);
    depth = new Uint16Array(width * height);
    for (let y = 0; y < height; y++) {
      const src = (height - 1 - y) * width;
      for (let x = 0; x < width; x++) depth[y * width + x] = raw[(src + x) * 4] | (raw[(src + x) * 4 + 1] << 8);
    }
  }
  gl.setRenderTarget(previous);
  return { pixels, depth, width, height, camera: cameraMeta(view, width, height), renderMs: performance.now() - started };
}

// Benchmark hook (npm run bench): the naive in-page floor, with no server and no queue. A chunk of its
// own: `(await window.tabfarm.loadBench()).rawLoop({scene, poses, width, height, format})` sets the scene with a CameraView,
// then per pose: update the camera → wait for React's commit → render + readPixels → encode in the
// same EncoderPool the session uses, AWAITED (no overlap: render, read, encode, then the next frame).
// It goes through sceneStore ops exactly like a session does, so the React/scene cost is the same.
// `pngEncoder` picks the pool's PNG encoder (canvas | jsquash), so the loop can match the farm's or the
// browser's own; the GL backend is the browser's (the bench launches it with the flags it compares).
import type { SceneElement } from "../../../protocol/elements.js";
import type { CameraPose } from "../../../protocol/camera.js";
import type { ImageFormat } from "../../../protocol/grab.js";
import { sceneStore } from "../scene/sceneStore.js";
import { cameraRegistry } from "../camera/cameraRegistry.js";
import { glContext } from "../capture/glContext.js";
import { renderFrame } from "../capture/renderFrame.js";
import { EncoderPool, encoderUse, pngEncoderOfPage, type PngEncoderName } from "../capture/encoderPool.js";

export interface RawLoopOptions {
  scene: SceneElement;
  poses: CameraPose[];
  width: number;
  height: number;
  format?: ImageFormat;
  quality?: number;
  /** Diagnostics: "render" skips the encode (render + readPixels only); "encode" renders the first pose once and encodes its pixels for every pose. */
  only?: "render" | "encode";
  /** The pool's PNG encoder; default: the page's (its URL's `pngEncoder`, else the farm's default). */
  pngEncoder?: PngEncoderName;
  /**
   * Diagnostics: "pool" (default) is the session's EncoderPool; "cpu" is the same worker code with a
   * `willReadFrequently` 2D context, which Chromium keeps in software (no GPU-process round trip).
   */
  encoder?: "pool" | "cpu";
}

export interface RawLoopResult {
  frames: number;
  /** Wall time of the whole loop in the page, scene set included. */
  ms: number;
  /** Sums over frames: op applied → committed, render + readPixels (renderFrame), encode as awaited, encode as the worker timed it. */
  settleMs: number;
  renderMs: number;
  encodeWaitMs: number;
  encodeWorkerMs: number;
  /** Time to the end of the first frame (scene build and shader compilation land here). */
  firstFrameMs: number;
  bytes: number;
  /** Frames by the encoder that made them (a jsquash loop whose wasm failed shows canvas frames), and why it fell back. */
  encodedBy: Record<PngEncoderName, number>;
  fallbacks: string[];
}

// The same camera element and pose props the farm adds (server/dispatch/farmCamera.ts), so the page
// does the same work; duplicated rather than importing server code into the client bundle.
const CAMERA_KEY = "tabfarm.bench.camera";
function poseProps(pose: CameraPose): Record<string, unknown> {
  const p = pose as Record<string, unknown>;
  return {
    matrix: p.matrix ?? null, position: p.position ?? null, lookAt: p.lookAt ?? null, rotation: p.rotation ?? null,
    up: p.up ?? null, fov: p.fov ?? 60, near: p.near ?? 0.1, far: p.far ?? 100,
  };
}

const pools = new Map<PngEncoderName, EncoderPool>();

// The canvas PNG encoder alone (as encoder.worker.ts's canvas path), inlined: bench/diag.ts's "cpu" baseline.
const CPU_ENCODER = `self.onmessage = async (event) => {
  const { id, pixels, width, height, mime, quality } = event.data;
  try {
    const started = performance.now();
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext("2d", { colorSpace: "srgb", willReadFrequently: true });
    ctx.putImageData(new ImageData(new Uint8ClampedArray(pixels), width, height), 0, 0);
    const blob = await canvas.convertToBlob({ type: mime, quality });
    const bytes = await blob.arrayBuffer();
    self.postMessage({ id, ok: true, bytes, encodeMs: performance.now() - started }, [bytes]);
  } catch (err) {
    self.postMessage({ id, ok: false, error: "encode failed: " + (err && err.message || err) });
  }
};`;

type Encode = (pixels: Uint8ClampedArray<ArrayBuffer>, width: number, height: number, format: ImageFormat, quality?: number) => Promise<{ bytes: ArrayBuffer; encodeMs: number }>;
let cpuEncode: Encode | undefined;

function cpuEncoder(): Encode {
  const worker = new Worker(URL.createObjectURL(new Blob([CPU_ENCODER], { type: "text/javascript" })));
  const pending = new Map<number, (r: { ok: boolean; bytes: ArrayBuffer; encodeMs: number; error?: string }) => void>();
  let next = 1;
  worker.onmessage = (e: MessageEvent<{ id: number; ok: boolean; bytes: ArrayBuffer; encodeMs: number; error?: string }>) => {
    pending.get(e.data.id)?.(e.data);
    pending.delete(e.data.id);
  };
  const mime: Record<ImageFormat, string> = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };
  return (pixels, width, height, format, quality) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, (r) => (r.ok ? resolve(r) : reject(new Error(r.error))));
      worker.postMessage({ id, pixels: pixels.buffer, width, height, mime: mime[format], quality }, [pixels.buffer]);
    });
}

async function whenGlReady(timeoutMs = 30_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!glContext.gl || !glContext.scene) {
    if (performance.now() > until) throw new Error("rawLoop: the R3F canvas did not come up (no WebGL?)");
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function rawLoop(options: RawLoopOptions): Promise<RawLoopResult> {
  const { scene, poses, width, height, format = "png", quality, only } = options;
  await whenGlReady();
  let encode: Encode;
  if (options.encoder === "cpu") encode = cpuEncode ??= cpuEncoder();
  else {
    const pngEncoder = options.pngEncoder ?? pngEncoderOfPage();
    let pool = pools.get(pngEncoder);
    if (!pool) pools.set(pngEncoder, (pool = new EncoderPool({ pngEncoder })));
    encode = (pixels, w, h, f, q) => pool.encode(pixels, w, h, f, q);
  }
  const before = encoderReport();
  const started = performance.now();
  sceneStore.apply({
    op: "set",
    scene: {
      tag: "Scene",
      key: "tabfarm.bench.root",
      children: [scene, { tag: "CameraView", key: CAMERA_KEY, width, height, stream: "ondemand", ...poseProps({ position: [0, 0, 5] }) }],
    },
  });
  const result: RawLoopResult = {
    frames: 0, ms: 0, settleMs: 0, renderMs: 0, encodeWaitMs: 0, encodeWorkerMs: 0, firstFrameMs: 0, bytes: 0,
    encodedBy: { canvas: 0, jsquash: 0 }, fallbacks: [],
  };
  let kept: Uint8ClampedArray<ArrayBuffer> | undefined;
  for (const pose of poses) {
    const t0 = performance.now();
    if (only === "encode" && kept) {
      const { bytes, encodeMs } = await encode(kept.slice(), width, height, format, quality);
      const t3 = performance.now();
      result.encodeWaitMs += t3 - t0;
      result.encodeWorkerMs += encodeMs;
      result.bytes += bytes.byteLength;
      result.frames++;
      continue;
    }
    sceneStore.apply({ op: "update", nodes: [{ key: CAMERA_KEY, ...poseProps(pose) }] });
    await sceneStore.settled();
    const errors = sceneStore.takeErrors();
    if (errors.length) throw new Error(`rawLoop: ${errors.join("; ")}`);
    const view = cameraRegistry.get(CAMERA_KEY);
    if (!view) throw new Error("rawLoop: the bench CameraView is not registered");
    const t1 = performance.now();
    const frame = renderFrame(glContext.gl!, glContext.scene!, view);
    const t2 = performance.now();
    if (only === "encode") kept = frame.pixels.slice();
    const { bytes, encodeMs } =
      only === "render" ? { bytes: new ArrayBuffer(0), encodeMs: 0 } : await encode(frame.pixels, frame.width, frame.height, format, quality);
    const t3 = performance.now();
    result.settleMs += t1 - t0;
    result.renderMs += t2 - t1;
    result.encodeWaitMs += t3 - t2;
    result.encodeWorkerMs += encodeMs;
    result.bytes += bytes.byteLength;
    if (result.frames++ === 0) result.firstFrameMs = t3 - started;
  }
  result.ms = performance.now() - started;
  const after = encoderReport();
  for (const name of Object.keys(result.encodedBy) as PngEncoderName[]) result.encodedBy[name] = after.frames[name] - before.frames[name];
  result.fallbacks = after.fallbacks.slice(before.fallbacks.length);
  return result;
}

/** What this page's encoder pools did so far (the session's too): frames by encoder, fallbacks from jsquash to the canvas. */
export const encoderReport = (): { frames: Record<PngEncoderName, number>; fallbacks: string[] } =>
  ({ frames: { ...encoderUse.frames }, fallbacks: [...encoderUse.fallbacks] });

/** True once the R3F canvas is mounted (what a grab needs before it can render). */
export const benchReady = (): boolean => Boolean(glContext.gl && glContext.scene);

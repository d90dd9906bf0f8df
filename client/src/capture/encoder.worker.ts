// Encodes RGBA pixels off the render thread, so the page can render the next frame meanwhile.
// PNG: @jsquash/png (the png crate in wasm, lossless RGBA 8-bit) or the browser's canvas encoder;
// JPEG and WebP: always the canvas encoder.
/// <reference lib="webworker" />
import encodeWithJsquash, { init as initJsquash } from "@jsquash/png/encode.js";

/** Who encodes PNG: the browser's canvas (OffscreenCanvas.convertToBlob) or @jsquash/png (wasm). */
export type PngEncoderName = "canvas" | "jsquash";

export interface EncodeRequest {
  id: number;
  pixels: ArrayBuffer;
  width: number;
  height: number;
  mime: string;
  quality?: number;
  /** Used when `mime` is image/png. */
  pngEncoder: PngEncoderName;
}
export type EncodeResponse =
  | {
      id: number; ok: true; bytes: ArrayBuffer; encodeMs: number;
      /** The encoder that made `bytes`. */
      encoder: PngEncoderName;
      /** Set on the one reply that first fell back from jsquash to the canvas: why. */
      fallback?: string;
    }
  | { id: number; ok: false; error: string };

// One canvas per worker, reused while the size stays the same. Safe with several requests in flight:
// convertToBlob takes its snapshot of the canvas when called, before the next request draws.
let canvas: OffscreenCanvas | undefined;
let context: OffscreenCanvasRenderingContext2D | undefined;
function contextFor(width: number, height: number): OffscreenCanvasRenderingContext2D {
  if (!canvas || !context || canvas.width !== width || canvas.height !== height) {
    canvas = new OffscreenCanvas(width, height);
    // willReadFrequently keeps this canvas in software: an accelerated one would encode in the GPU
    // process, competing with WebGL rendering (measured: encode CPU 14.9 → 7.7 ms per 640×480 PNG).
    context = canvas.getContext("2d", { colorSpace: "srgb", willReadFrequently: true })!;
  }
  return context;
}

async function encodeWithCanvas(pixels: ArrayBuffer, width: number, height: number, mime: string, quality?: number): Promise<ArrayBuffer> {
  const ctx = contextFor(width, height);
  ctx.putImageData(new ImageData(new Uint8ClampedArray(pixels), width, height), 0, 0);
  const blob = await ctx.canvas.convertToBlob({ type: mime, quality });
  if (blob.type !== mime) throw new Error(`this browser cannot encode ${mime} (got ${blob.type})`);
  return blob.arrayBuffer();
}

/** A wasm that neither loads nor fails within this long (a stalled fetch) counts as failed. */
const JSQUASH_LOAD_TIMEOUT_MS = 10_000;

// The wasm loads once per worker, on the first PNG asked of it. Once it failed (to load or to encode),
// this worker encodes PNG with the canvas for good: one slow or failed attempt, not one per frame.
let jsquashLoad: Promise<void> | undefined;
let jsquashBroken: string | undefined;
let fallbackReported = false;

function loadJsquash(): Promise<void> {
  return (jsquashLoad ??= new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`its wasm did not load within ${JSQUASH_LOAD_TIMEOUT_MS / 1000} s`)), JSQUASH_LOAD_TIMEOUT_MS);
    initJsquash().then(
      () => (clearTimeout(timer), resolve()),
      (err: unknown) => (clearTimeout(timer), reject(err)),
    );
  }));
}

async function encodePng(pixels: ArrayBuffer, width: number, height: number, wanted: PngEncoderName): Promise<{ bytes: ArrayBuffer; encoder: PngEncoderName; fallback?: string }> {
  if (wanted === "jsquash" && !jsquashBroken) {
    // Outside the try: pixels of the wrong size are this frame's error, not a reason to drop the wasm.
    const image = new ImageData(new Uint8ClampedArray(pixels), width, height);
    try {
      await loadJsquash();
      const bytes = await encodeWithJsquash(image);
      return { bytes, encoder: "jsquash" };
    } catch (err) {
      jsquashBroken = `@jsquash/png failed (${(err as Error)?.message ?? String(err)}); this tab encodes PNG with the browser's canvas encoder instead`;
    }
  }
  const bytes = await encodeWithCanvas(pixels, width, height, "image/png");
  if (wanted === "jsquash" && jsquashBroken && !fallbackReported) {
    fallbackReported = true;
    return { bytes, encoder: "canvas", fallback: jsquashBroken };
  }
  return { bytes, encoder: "canvas" };
}

const post = (msg: EncodeResponse, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(msg, transfer);

self.onmessage = async (event: MessageEvent<EncodeRequest>) => {
  const { id, pixels, width, height, mime, quality, pngEncoder } = event.data;
  try {
    const started = performance.now();
    const done =
      mime === "image/png"
        ? await encodePng(pixels, width, height, pngEncoder)
        : { bytes: await encodeWithCanvas(pixels, width, height, mime, quality), encoder: "canvas" as const };
    post({ id, ok: true, ...done, encodeMs: performance.now() - started }, [done.bytes]);
  } catch (err) {
    post({ id, ok: false, error: `encode failed: ${(err as Error)?.message ?? err}` });
  }
};

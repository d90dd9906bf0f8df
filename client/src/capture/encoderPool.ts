// A small pool of encoder workers; frames are handed out round-robin and answered by id.
import type { ImageFormat } from "../../../protocol/grab.js";
// Types only: the worker module runs in the worker, never in the page.
import type { EncodeRequest, EncodeResponse, PngEncoderName } from "./encoder.worker.js";

export type { PngEncoderName };
export const PNG_ENCODERS: readonly PngEncoderName[] = ["jsquash", "canvas"];

const MIME: Record<ImageFormat, string> = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };

/**
 * The PNG encoder a tab uses unless its URL says otherwise (`?pngEncoder=canvas|jsquash`, for the bench
 * and for comparing). jsquash: measured faster end to end in the farm (README, Benchmarks).
 */
export const DEFAULT_PNG_ENCODER: PngEncoderName = "jsquash";

/** The page URL's `pngEncoder`, else the default; a value that is neither encoder is said on the console and ignored. */
export function pngEncoderOfPage(search: string = globalThis.location?.search ?? ""): PngEncoderName {
  const asked = new URLSearchParams(search).get("pngEncoder");
  if (asked === null || asked === "") return DEFAULT_PNG_ENCODER;
  if ((PNG_ENCODERS as readonly string[]).includes(asked)) return asked as PngEncoderName;
  console.error(`tabfarm: unknown pngEncoder '${asked.slice(0, 40)}' in the page URL (have: ${PNG_ENCODERS.join(", ")}); using ${DEFAULT_PNG_ENCODER}`);
  return DEFAULT_PNG_ENCODER;
}

/** Frames this page encoded, by the encoder that made them, and why PNG fell back to the canvas (if it did): for the bench and tests. */
export const encoderUse = { frames: { canvas: 0, jsquash: 0 } as Record<PngEncoderName, number>, fallbacks: [] as string[] };

type Pending = { resolve: (r: { bytes: ArrayBuffer; encodeMs: number }) => void; reject: (e: Error) => void };

export class EncoderPool {
  readonly pngEncoder: PngEncoderName;
  private workers: Worker[] = [];
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private turn = 0;

  constructor(options: { size?: number; pngEncoder?: PngEncoderName } = {}) {
    const size = options.size ?? Math.max(1, Math.min(2, (navigator.hardwareConcurrency || 2) - 1));
    this.pngEncoder = options.pngEncoder ?? pngEncoderOfPage();
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./encoder.worker.ts", import.meta.url), { type: "module" });
      worker.onmessage = (event: MessageEvent<EncodeResponse>) => {
        const msg = event.data;
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        if (!msg.ok) return p.reject(new Error(msg.error));
        encoderUse.frames[msg.encoder]++;
        // Each worker says it once; the page says it once (headless farm tabs: seen with --verbose).
        if (msg.fallback && !encoderUse.fallbacks.includes(msg.fallback)) {
          encoderUse.fallbacks.push(msg.fallback);
          console.error(`tabfarm: ${msg.fallback}`);
        }
        p.resolve({ bytes: msg.bytes, encodeMs: msg.encodeMs });
      };
      this.workers.push(worker);
    }
  }

  encode(pixels: Uint8ClampedArray<ArrayBuffer>, width: number, height: number, format: ImageFormat, quality?: number) {
    const id = this.nextId++;
    const request: EncodeRequest = { id, pixels: pixels.buffer, width, height, mime: MIME[format], quality, pngEncoder: this.pngEncoder };
    const worker = this.workers[this.turn++ % this.workers.length];
    return new Promise<{ bytes: ArrayBuffer; encodeMs: number }>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage(request, [pixels.buffer]);
    });
  }
}

// A small pool of encoder workers; frames are handed out round-robin and answered by id.
import type { ImageFormat } from "../../../protocol/grab.js";
import type { EncodeRequest, EncodeResponse } from "./encoder.worker.js";

const MIME: Record<ImageFormat, string> = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };

type Pending = { resolve: (r: { bytes: ArrayBuffer; encodeMs: number }) => void; reject: (e: Error) => void };

export class EncoderPool {
  private workers: Worker[] = [];
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private turn = 0;

  constructor(size = Math.max(1, Math.min(2, (navigator.hardwareConcurrency || 2) - 1))) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./encoder.worker.ts", import.meta.url), { type: "module" });
      worker.onmessage = (event: MessageEvent<EncodeResponse>) => {
        const msg = event.data;
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        if (msg.ok) p.resolve({ bytes: msg.bytes, encodeMs: msg.encodeMs });
        else p.reject(new Error(msg.error));
      };
      this.workers.push(worker);
    }
  }

  encode(pixels: Uint8ClampedArray<ArrayBuffer>, width: number, height: number, format: ImageFormat, quality?: number) {
    const id = this.nextId++;
    const request: EncodeRequest = { id, pixels: pixels.buffer, width, height, mime: MIME[format], quality };
    const worker = this.workers[this.turn++ % this.workers.length];
    return new Promise<{ bytes: ArrayBuffer; encodeMs: number }>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage(request, [pixels.buffer]);
    });
  }
}

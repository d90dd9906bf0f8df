// The little overlay a person sees in a tab opened by hand: connection state and the last frame.
import type { ImageFormat } from "../../../protocol/grab.js";

let lastPreview = 0;
let previewUrl = "";
// Headless farm tabs load with ?preview=off: decoding and compositing a preview image costs the GPU
// process more than a light frame's render on SwiftShader, and nobody is looking.
const previewsWanted = new URLSearchParams(location.search).get("preview") !== "off";

export function showStatus(text: string): void {
  const el = document.getElementById("status");
  if (el) el.textContent = text;
}

/** At most once a second, and never in headless tabs (?preview=off). */
export function showPreview(bytes: ArrayBuffer | Uint8Array, format: ImageFormat, status: string): void {
  if (!previewsWanted) return;
  const now = performance.now();
  if (now - lastPreview < 1000) return;
  lastPreview = now;
  showStatus(status);
  const img = document.getElementById("preview") as HTMLImageElement | null;
  if (!img) return;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(new Blob([bytes as BlobPart], { type: `image/${format}` }));
  img.src = previewUrl;
}

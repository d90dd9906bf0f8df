// The little overlay a person sees in a tab opened by hand: connection state and the last frame.
import type { ImageFormat } from "../../../protocol/grab.js";

let lastPreview = 0;
let previewUrl = "";

export function showStatus(text: string): void {
  const el = document.getElementById("status");
  if (el) el.textContent = text;
}

/** At most once a second, so previews cost nothing measurable in a busy farm. */
export function showPreview(bytes: ArrayBuffer | Uint8Array, format: ImageFormat, status: string): void {
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

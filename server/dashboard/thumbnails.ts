// A written frame's layers as small images for the dashboard, made on the server with sharp from the
// frame's files: rgb as JPEG; depth, mask and class (16-bit, dark as stored) stretched to the full grey
// range; normals as they are. Layers that are not images (depth32's .npy, boxes) are left out.
import path from "node:path";
import sharp from "sharp";
import type { LayerThumbnail } from "../../protocol/dashboard.js";
import { THUMBNAIL_WIDTH } from "../../protocol/dashboard.js";

/** Layers whose values are ids or distances: stretched so that they can be seen. */
const STRETCHED = new Set(["depth", "mask", "class"]);
/** Ids must not be blended into other ids when shrunk. */
const NEAREST = new Set(["mask", "class"]);

/**
 * Thumbnails of the frame whose files (relative to `root`, by layer) are `files`, rgb first; a layer that
 * can't be made (a file rewritten by a retry meanwhile) is left out, and named in `failed`.
 */
export async function makeThumbnails(root: string, files: Record<string, string>): Promise<{ layers: LayerThumbnail[]; failed: string[] }> {
  const names = Object.keys(files).filter((layer) => /\.(png|jpe?g|webp)$/i.test(files[layer]));
  names.sort((a, b) => (a === "rgb" ? -1 : b === "rgb" ? 1 : 0));
  const made = await Promise.allSettled(names.map((layer) => thumbnail(layer, insideRoot(root, files[layer]))));
  const layers = made.flatMap((m) => (m.status === "fulfilled" ? [m.value] : []));
  const failed = made.flatMap((m, i) => (m.status === "rejected" ? [`${names[i]}: ${(m.reason as Error)?.message ?? m.reason}`] : []));
  return { layers, failed };
}

const open = (file: string) => sharp(file, { limitInputPixels: 64 * 1024 * 1024 });

async function thumbnail(layer: string, file: string): Promise<LayerThumbnail> {
  let image = open(file).resize({ width: THUMBNAIL_WIDTH, height: THUMBNAIL_WIDTH, fit: "inside", withoutEnlargement: true, kernel: NEAREST.has(layer) ? "nearest" : "lanczos3" });
  if (NEAREST.has(layer)) {
    // Ids (1..N of 65535) all become 0 once libvips makes the 16-bit image 8-bit, which normalise() works
    // on: stretch by the layer's own largest id instead, so each id gets a grey of its own.
    const { channels } = await open(file).stats();
    image = image.linear(65535 / Math.max(1, channels[0].max), 0).toColourspace("b-w");
  } else if (STRETCHED.has(layer)) image = image.normalise().toColourspace("b-w");
  const { data, info } = layer === "rgb"
    ? await image.jpeg({ quality: 75 }).toBuffer({ resolveWithObject: true })
    : await image.png({ compressionLevel: 3 }).toBuffer({ resolveWithObject: true });
  return { layer, mime: layer === "rgb" ? "image/jpeg" : "image/png", data, width: info.width, height: info.height };
}

/** `relative` inside `root`; a path that leaves it is refused (the paths come from frame events, but stay careful). */
function insideRoot(root: string, relative: string): string {
  const full = path.resolve(root, relative);
  if (!full.startsWith(root + path.sep)) throw new Error(`${relative} is not inside the dataset`);
  return full;
}

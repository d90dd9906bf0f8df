// Encodes raw RGBA pixels a page sent (encoding "raw") on the server, with libvips via sharp: it
// runs on libuv's thread pool, off the event loop, and is several times faster than a canvas encoder.
import sharp from "sharp";
import type { ImageFormat } from "../../protocol/grab.js";
import { RUN_DEFAULTS } from "../runDefaults.js";

export interface EncodeOptions {
  format: ImageFormat;
  /** 0..1 for jpeg/webp. */
  quality?: number;
  /** zlib level for PNG, 0..9 (lossless at every level; lower is faster and larger). */
  pngLevel?: number;
}

export async function encodeRgba(pixels: Buffer, width: number, height: number, options: EncodeOptions): Promise<Buffer> {
  const image = sharp(pixels, { raw: { width, height, channels: 4 } });
  const quality = options.quality === undefined ? undefined : Math.max(1, Math.round(options.quality * 100));
  switch (options.format) {
    case "png":
      return image.png({ compressionLevel: options.pngLevel ?? RUN_DEFAULTS.pngLevel, adaptiveFiltering: false }).toBuffer();
    case "jpeg":
      return image.jpeg({ quality: quality ?? 92 }).toBuffer();
    case "webp":
      return image.webp({ quality: quality ?? 90 }).toBuffer();
  }
}

/** uint16 little-endian samples from the wire, as an aligned array (sharp takes 16-bit samples only from one). */
export function uint16Samples(data: Buffer): Uint16Array {
  const samples = new Uint16Array(data.length >> 1);
  Buffer.from(samples.buffer).set(data.subarray(0, samples.byteLength));
  return samples;
}

/** A 16-bit greyscale PNG, lossless (depth in mm, instance ids, class ids). */
export function encodeGrey16Png(samples: Uint16Array, width: number, height: number, pngLevel = 3): Promise<Buffer> {
  return sharp(samples, { raw: { width, height, channels: 1 } }).toColourspace("grey16").png({ compressionLevel: pngLevel }).toBuffer();
}

/** An 8-bit RGB PNG from RGB8 pixels (normals). */
export function encodeRgbPng(pixels: Buffer, width: number, height: number, pngLevel = 3): Promise<Buffer> {
  return sharp(pixels, { raw: { width, height, channels: 3 } }).png({ compressionLevel: pngLevel }).toBuffer();
}

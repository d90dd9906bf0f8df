// Checks that bytes a page sent are an image of the announced format and size, by reading its header.
// Cheap (no decode), so every frame is checked before it is written.
import type { ImageFormat } from "../../protocol/grab.js";
import { LIMITS } from "../../protocol/grab.js";

export class ImageCheckError extends Error {}

// The PNG signature, then the first chunk's type, which must be IHDR (compared as bytes: no strings per frame).
const PNG_SIGNATURE = Buffer.from("89504e470d0a1a0a", "hex");
const IHDR = Buffer.from("IHDR", "latin1");

export function imageSize(bytes: Buffer, format: ImageFormat): { width: number; height: number } | null {
  if (format === "png") {
    if (bytes.length < 24 || bytes.compare(PNG_SIGNATURE, 0, 8, 0, 8) !== 0 || bytes.compare(IHDR, 0, 4, 12, 16) !== 0) return null;
    return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
  }
  if (format === "jpeg") {
    if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
    let i = 2;
    while (i + 9 < bytes.length) {
      if (bytes[i] !== 0xff) return null;
      if (bytes[i + 1] === 0xff) {
        i++; // fill byte before a marker (T.81 B.1.1.2)
        continue;
      }
      const marker = bytes[i + 1];
      const length = bytes.readUInt16BE(i + 2);
      // SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { height: bytes.readUInt16BE(i + 5), width: bytes.readUInt16BE(i + 7) };
      }
      i += 2 + length;
    }
    return null;
  }
  // WebP: RIFF....WEBP then VP8 / VP8L / VP8X chunk.
  if (bytes.length < 30 || bytes.toString("latin1", 0, 4) !== "RIFF" || bytes.toString("latin1", 8, 12) !== "WEBP") return null;
  const chunk = bytes.toString("latin1", 12, 16);
  if (chunk === "VP8 ") return { width: bytes.readUInt16LE(26) & 0x3fff, height: bytes.readUInt16LE(28) & 0x3fff };
  if (chunk === "VP8L") {
    const b = bytes.readUInt32LE(21);
    return { width: (b & 0x3fff) + 1, height: ((b >> 14) & 0x3fff) + 1 };
  }
  if (chunk === "VP8X") return { width: bytes.readUIntLE(24, 3) + 1, height: bytes.readUIntLE(27, 3) + 1 };
  return null;
}

export function checkImage(
  bytes: Buffer,
  expected: { format: ImageFormat; width: number; height: number; what: string; maxBytes?: number },
): void {
  const { format, width, height, what, maxBytes = LIMITS.maxFrameBytes } = expected;
  if (bytes.length > maxBytes) throw new ImageCheckError(`${what}: image of ${bytes.length} bytes is over the ${maxBytes}-byte limit`);
  const size = imageSize(bytes, format);
  if (!size) throw new ImageCheckError(`${what}: payload of ${bytes.length} bytes is not a ${format} image`);
  if (size.width !== width || size.height !== height) {
    throw new ImageCheckError(`${what}: ${format} is ${size.width}×${size.height}, but ${width}×${height} was announced`);
  }
}

// Checks that bytes a page sent are a complete image of exactly the format and size the server asked
// for, before anything is written: a page holding the token (or a buggy browser) may send a valid
// header followed by garbage, a truncated file, or an image of another size.
//
// How deep each format is checked was chosen by measuring (npm run bench -- ingest --checks …, 640×480
// frames, server CPU per frame over a header-only check):
//  - PNG, in full: every chunk (in bounds, CRC, order), IHDR as the page encodes (8-bit RGB or RGBA,
//    not interlaced), IDAT present and contiguous, IEND last with nothing after it, and the image
//    data inflated to exactly height × (1 + width × bytes per pixel) bytes with a valid filter type
//    on every row. PNG has checksums (chunk CRCs, zlib's Adler-32), so this proves the file decodes.
//    +0.7–0.9 ms; the inflate runs on libuv's thread pool, so the event loop pays +0.15 ms of it
//    (inflating on the event loop: +0.6 ms there, and fewer frames/s).
//    A tab this farm launched itself (ImageSource "launched", Farm's imageSourceOf) gets PNG's structure
//    check only: it runs the farm's own client and encoder in the Chromium the farm started on this
//    machine, so there is no hostile sender to catch, and the chunk CRCs (which cover the compressed
//    data) still catch a frame damaged on the way. The inflate and the garbage it made were 1.0 / 2.2 ms
//    of the server's 2.0–2.5 / 4.3–4.5 ms per light / heavy farm frame (issue 15). `verify` inflates
//    every PNG of a dataset, whoever sent it.
//  - JPEG and WebP, their structure: every JPEG segment from SOI to EOI (frame header, scans walked
//    to their end), every WebP chunk (RIFF size, chunk sizes, the VP8/VP8L/VP8X size fields); no
//    more than a header check costs. These formats have no checksum, and a full decode (sharp,
//    +2.0 ms JPEG, +8.8 ms WebP) finds little more: libjpeg decodes garbage entropy data unwarned.
import zlib from "node:zlib";
import sharp from "sharp";
import type { ImageFormat } from "../../protocol/grab.js";
import { LIMITS } from "../../protocol/grab.js";

export class ImageCheckError extends Error {}

export interface ExpectedImage {
  format: ImageFormat;
  width: number;
  height: number;
  /** Names the frame in error messages, e.g. "grabRender('cam') on session s2". */
  what: string;
  maxBytes?: number;
  /** PNG only: the samples IHDR must declare exactly (a layer file); default what the page writes, 8-bit RGB or RGBA. */
  pngSamples?: PngSamples;
  /** Who sent the bytes (default "any"): how deep they are checked (checkDepth). */
  source?: ImageSource;
}

/**
 * "launched": a tab this farm's harness launched, admitted with its proof from this machine (Farm's imageSourceOf):
 * the farm's own page code in the farm's own browser. "any": every other page (opened by hand, a remote
 * worker's, a socket speaking the protocol), and files read back from a dataset.
 */
export type ImageSource = "launched" | "any";

export interface PngSamples {
  channels: 1 | 3 | 4;
  bits: 8 | 16;
}

/**
 * "header": the size in the header only. "structure": every chunk/segment, checksums where the format
 * has them. "full": structure, plus PNG's image data inflated and JPEG/WebP decoded by sharp.
 */
export type ImageCheckDepth = "header" | "structure" | "full";
export const IMAGE_CHECK_DEPTHS: readonly ImageCheckDepth[] = ["header", "structure", "full"];

/** What the farm checks, per sender and format (see the measurements above). */
const DEPTH: Record<ImageSource, Record<ImageFormat, ImageCheckDepth>> = {
  any: { png: "full", jpeg: "structure", webp: "structure" },
  launched: { png: "structure", jpeg: "structure", webp: "structure" },
};
let depthOverride: ImageCheckDepth | undefined;

/** How deep an image of `format` from `source` is checked. */
export function checkDepth(format: ImageFormat, source: ImageSource = "any"): ImageCheckDepth {
  return depthOverride ?? DEPTH[source][format];
}

/** For bench/ingest.ts only: check every format at `depth` (undefined: the farm's choice) to measure what each depth costs. */
export function setImageCheckDepthForBench(depth: ImageCheckDepth | undefined): void {
  depthOverride = depth;
}

/** Resolves if `bytes` are a complete image of exactly the expected format and size; rejects with an ImageCheckError naming the frame and the fault. */
export async function checkImage(bytes: Buffer, expected: ExpectedImage): Promise<void> {
  const { format, width, height, what, maxBytes = LIMITS.maxFrameBytes } = expected;
  if (bytes.length > maxBytes) throw new ImageCheckError(`${what}: image of ${bytes.length} bytes is over the ${maxBytes}-byte limit`);
  const depth = checkDepth(format, expected.source);
  const bad = (why: string) => new ImageCheckError(`${what}: payload of ${bytes.length} bytes is not a ${format} image: ${why}`);
  const wrongSize = (size: { width: number; height: number }) =>
    new ImageCheckError(`${what}: ${format} is ${size.width}×${size.height}, but ${width}×${height} was asked for`);
  if (depth === "header") {
    const size = imageSize(bytes, format);
    if (!size) throw bad("no valid header");
    if (size.width !== width || size.height !== height) throw wrongSize(size);
    return;
  }
  const layout = format === "png" ? readPng(bytes, bad, expected.pngSamples) : format === "jpeg" ? readJpeg(bytes, bad) : readWebp(bytes, bad);
  if (layout.width !== width || layout.height !== height) throw wrongSize(layout);
  if (depth !== "full") return;
  if (format === "png") await inflatePng(layout as PngLayout, bad);
  else await decodeWithSharp(bytes, expected, bad);
}

// ---------- header only ----------

// The PNG signature, then the first chunk's type, which must be IHDR (compared as bytes: no strings per frame).
const PNG_SIGNATURE = Buffer.from("89504e470d0a1a0a", "hex");
const IHDR = Buffer.from("IHDR", "latin1");

/** The size an image's header claims (no more is checked), or null when the header is not one of `format`. */
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
      const marker = bytes[i + 1]!;
      if (isSof(marker)) return { height: bytes.readUInt16BE(i + 5), width: bytes.readUInt16BE(i + 7) };
      i += 2 + bytes.readUInt16BE(i + 2);
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

type Bad = (why: string) => ImageCheckError;

// ---------- PNG ----------

interface PngLayout {
  width: number;
  height: number;
  bytesPerPixel: number;
  /** The IDAT chunks' data, in order: together one zlib stream. */
  idat: Buffer[];
}

/** Colour types the page's encoder writes (8-bit samples): 2 = RGB, 6 = RGBA. */
const PNG_COLOUR_CHANNELS: Record<number, number> = { 2: 3, 6: 4 };

/**
 * Most chunks (segments) a file may have. Browsers' encoders write a handful of chunks besides PNG's
 * IDATs, and 65,536 IDATs of 1 KB make a 64 MB frame. Every chunk costs a check on the event loop and,
 * for PNG's IDATs and WebP, an object: without a cap, a 64 MB file of empty chunks held the event loop
 * for 2–8 s and took up to 1.5 GB of memory; with it, such a file is refused within 40 ms.
 */
export const MAX_CHUNKS = { png: 65_536, jpeg: 1024, webp: 64 } as const;

/** Walks every chunk (PNG spec §5.3): bounds, CRC, IHDR first, IDATs contiguous, IEND last and at the end. */
function readPng(bytes: Buffer, bad: Bad, samples?: PngSamples): PngLayout {
  if (bytes.length < 8 || bytes.compare(PNG_SIGNATURE, 0, 8, 0, 8) !== 0) throw bad("no PNG signature");
  let header: Omit<PngLayout, "idat"> | undefined;
  const idat: Buffer[] = [];
  let idatClosed = false;
  let palette = false;
  let transparency = false;
  for (let at = 8, chunks = 0; ; chunks++) {
    if (chunks === MAX_CHUNKS.png) throw bad(`more than ${MAX_CHUNKS.png} chunks`);
    if (at === bytes.length) throw bad("truncated: it ends without an IEND chunk");
    if (at + 12 > bytes.length) throw bad(`truncated: ${bytes.length - at} byte(s) at ${at} are too few for a chunk`);
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString("latin1", at + 4, at + 8);
    if (!/^[A-Za-z]{4}$/.test(type)) throw bad(`no chunk type at byte ${at + 4}`);
    if (length > bytes.length - at - 12) {
      throw bad(`truncated: chunk ${type} at byte ${at} holds ${length} bytes, but only ${bytes.length - at - 12} follow`);
    }
    const end = at + 8 + length;
    if (zlib.crc32(bytes.subarray(at + 4, end)) !== bytes.readUInt32BE(end)) throw bad(`wrong CRC in chunk ${type} at byte ${at}`);
    if (!header) {
      if (type !== "IHDR") throw bad(`the first chunk is ${type}, not IHDR`);
      header = readIhdr(bytes.subarray(at + 8, end), bad, samples);
    } else if (type === "IDAT") {
      if (idatClosed) throw bad(`IDAT chunks are not consecutive (another at byte ${at})`);
      idat.push(bytes.subarray(at + 8, end));
    } else if (type === "IEND") {
      if (length !== 0) throw bad(`an IEND chunk with ${length} bytes of data`);
      if (idat.length === 0) throw bad("no IDAT chunk");
      if (end + 4 !== bytes.length) throw bad(`${bytes.length - end - 4} byte(s) after the IEND chunk`);
      return { ...header, idat };
    } else {
      if (idat.length) idatClosed = true;
      // An uppercase first letter marks a chunk a decoder must understand (PLTE may suggest a palette).
      if (type === "IHDR" || (type.charCodeAt(0) < 0x61 && type !== "PLTE")) throw bad(`unexpected critical chunk ${type} at byte ${at}`);
      // The two chunks whose misuse decoders refuse (PNG spec §11.2.3, §11.3.2.1): a suggested palette
      // (once, before the image data, 1–256 RGB entries) and, for RGB only, one transparent colour.
      if (type === "PLTE") {
        if (palette || idat.length) throw bad(`a PLTE chunk at byte ${at} ${palette ? "after another" : "after the image data"}`);
        if (length === 0 || length > 768 || length % 3 !== 0) throw bad(`a PLTE chunk of ${length} bytes (3 per entry, 1–256 entries)`);
        palette = true;
      } else if (type === "tRNS") {
        if (header.bytesPerPixel === 4) throw bad(`a tRNS chunk at byte ${at} in an RGBA image (the spec forbids it)`);
        if (transparency || idat.length || length !== 6) throw bad(`a tRNS chunk at byte ${at} that is not one 6-byte colour before the image data`);
        transparency = true;
      }
    }
    at = end + 4;
  }
}

/** PNG colour types by samples per pixel: grey (0), RGB (2), RGBA (6). */
const PNG_COLOUR_TYPE: Record<PngSamples["channels"], number> = { 1: 0, 3: 2, 4: 6 };

function readIhdr(data: Buffer, bad: Bad, samples?: PngSamples): Omit<PngLayout, "idat"> {
  if (data.length !== 13) throw bad(`an IHDR of ${data.length} bytes, not 13`);
  const width = data.readUInt32BE(0);
  const height = data.readUInt32BE(4);
  const [bitDepth, colourType, compression, filter, interlace] = data.subarray(8);
  if (width === 0 || height === 0) throw bad(`IHDR says ${width}×${height}; an image has at least one pixel`);
  if (samples && (bitDepth !== samples.bits || colourType !== PNG_COLOUR_TYPE[samples.channels])) {
    throw bad(`IHDR says ${bitDepth}-bit samples of colour type ${colourType}; expected ${samples.bits}-bit, colour type ${PNG_COLOUR_TYPE[samples.channels]} (${samples.channels} channel(s))`);
  }
  const channels = samples?.channels ?? PNG_COLOUR_CHANNELS[colourType!];
  if (!samples && (bitDepth !== 8 || channels === undefined)) {
    throw bad(`IHDR says ${bitDepth}-bit samples of colour type ${colourType}; the page writes 8-bit RGB (2) or RGBA (6)`);
  }
  if (compression !== 0 || filter !== 0) throw bad(`IHDR says compression method ${compression}, filter method ${filter}; PNG defines only 0`);
  if (interlace !== 0) throw bad("interlaced; the page writes non-interlaced PNGs");
  return { width, height, bytesPerPixel: channels! * ((samples?.bits ?? 8) / 8) };
}

/** Output chunks of at most this size: a large image is checked in pieces, never held inflated whole. */
const INFLATE_CHUNK_BYTES = 2 * 2 ** 20;

/** Inflates the image data on libuv's pool: exactly one filter byte + one row of pixels per row, every filter type 0–4. */
function inflatePng({ width, height, bytesPerPixel, idat }: PngLayout, bad: Bad): Promise<void> {
  const stride = 1 + width * bytesPerPixel;
  const expected = stride * height;
  return new Promise<void>((resolve, reject) => {
    const inflate = zlib.createInflate({ chunkSize: Math.max(64, Math.min(expected + 1, INFLATE_CHUNK_BYTES)) }); // zlib: ≥ 64
    let seen = 0;
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      inflate.destroy();
      reject(bad(why));
    };
    inflate.on("data", (chunk: Buffer) => {
      if (settled) return;
      if (seen + chunk.length > expected) return fail(`the image data inflates to more than the ${expected} bytes ${width}×${height} needs`);
      for (let row = Math.ceil(seen / stride) * stride; row < seen + chunk.length; row += stride) {
        const filterType = chunk[row - seen]!;
        if (filterType > 4) return fail(`filter type ${filterType} on row ${row / stride} (0–4 exist)`);
      }
      seen += chunk.length;
    });
    inflate.on("error", (err) => fail(`the image data does not inflate: ${err.message}`));
    const data = idat.length === 1 ? idat[0]! : Buffer.concat(idat);
    inflate.on("end", () => {
      if (seen !== expected) return fail(`the image data inflates to ${seen} bytes; ${width}×${height} needs ${expected}`);
      // bytesWritten counts the input zlib consumed, which stops at the end of the stream.
      if (inflate.bytesWritten !== data.length) return fail(`${data.length - inflate.bytesWritten} byte(s) of image data after the end of its zlib stream`);
      settled = true;
      resolve();
    });
    inflate.end(data);
  });
}

// ---------- JPEG ----------

/** SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC). */
function isSof(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

const hex = (marker: number) => `FF${marker.toString(16).toUpperCase().padStart(2, "0")}`;

/** Walks every segment from SOI to EOI (ITU T.81 B.2): one Huffman frame header, scans walked to their end. */
function readJpeg(bytes: Buffer, bad: Bad): { width: number; height: number } {
  if (bytes.length < 2 || bytes[0] !== 0xff || bytes[1] !== 0xd8) throw bad("no SOI marker");
  let size: { width: number; height: number } | undefined;
  let scans = 0;
  for (let at = 2, segments = 0; ; segments++) {
    if (segments === MAX_CHUNKS.jpeg) throw bad(`more than ${MAX_CHUNKS.jpeg} segments`);
    if (at >= bytes.length) throw bad("truncated: it ends without an EOI marker");
    if (bytes[at] !== 0xff) throw bad(`no marker at byte ${at}`);
    while (bytes[at + 1] === 0xff) at++; // fill bytes before a marker (T.81 B.1.1.2)
    if (at + 1 >= bytes.length) throw bad("truncated: it ends without an EOI marker");
    const marker = bytes[at + 1]!;
    if (marker === 0xd9) {
      if (!size || scans === 0) throw bad(`EOI at byte ${at} before ${size ? "any scan" : "a frame header"}`);
      if (at + 2 !== bytes.length) throw bad(`${bytes.length - at - 2} byte(s) after the EOI marker`);
      return size;
    }
    // SOI again, TEM and RSTn stand alone; none may appear between segments here.
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x00) {
      throw bad(`unexpected marker ${hex(marker)} at byte ${at}`);
    }
    if (at + 4 > bytes.length) throw bad(`truncated in the ${hex(marker)} segment at byte ${at}`);
    const length = bytes.readUInt16BE(at + 2);
    if (length < 2 || at + 2 + length > bytes.length) {
      throw bad(`truncated: segment ${hex(marker)} at byte ${at} holds ${length} bytes, but only ${bytes.length - at - 2} follow`);
    }
    if (isSof(marker)) {
      if (size) throw bad(`a second frame header at byte ${at}`);
      // Baseline, extended and progressive Huffman (what browsers write); not lossless, hierarchical or arithmetic.
      if (marker > 0xc2) throw bad(`a SOF${marker - 0xc0} frame (only SOF0–SOF2 are accepted)`);
      const components = length >= 8 ? bytes[at + 9]! : 0;
      if (length !== 8 + 3 * components || components === 0) throw bad(`a malformed frame header at byte ${at}`);
      size = { height: bytes.readUInt16BE(at + 5), width: bytes.readUInt16BE(at + 7) };
      if (size.width === 0 || size.height === 0) throw bad(`a ${size.width}×${size.height} frame header`);
    }
    at += 2 + length;
    if (marker === 0xda) {
      if (!size) throw bad(`a scan before the frame header (byte ${at})`);
      scans++;
      at = endOfEntropyCodedData(bytes, at);
    }
  }
}

/**
 * Where a scan's entropy-coded data ends: at the first 0xFF that starts a marker (not a stuffed 0x00 or
 * RSTn). A plain loop, not indexOf: data that is all stuffed 0xFF 0x00 would make one call per 2 bytes.
 */
function endOfEntropyCodedData(bytes: Buffer, from: number): number {
  const last = bytes.length - 1;
  for (let at = from; at < last; at++) {
    if (bytes[at] !== 0xff) continue;
    const next = bytes[at + 1]!;
    if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) at++;
    else return at;
  }
  return bytes.length;
}

// ---------- WebP ----------

/** Walks the RIFF container (RIFF size = file size, chunk sizes in bounds) and reads the image chunk's size fields. */
function readWebp(bytes: Buffer, bad: Bad): { width: number; height: number } {
  if (bytes.length < 12 || bytes.toString("latin1", 0, 4) !== "RIFF" || bytes.toString("latin1", 8, 12) !== "WEBP") {
    throw bad("no RIFF WEBP header");
  }
  const riffSize = bytes.readUInt32LE(4);
  if (riffSize + 8 !== bytes.length) throw bad(`the RIFF header says ${riffSize + 8} bytes`);
  const chunks: { id: string; at: number; data: Buffer }[] = [];
  for (let at = 12; at < bytes.length; ) {
    if (chunks.length === MAX_CHUNKS.webp) throw bad(`more than ${MAX_CHUNKS.webp} chunks`);
    if (at + 8 > bytes.length) throw bad(`truncated: ${bytes.length - at} byte(s) at ${at} are too few for a chunk`);
    const id = bytes.toString("latin1", at, at + 4);
    const size = bytes.readUInt32LE(at + 4);
    const padded = size + (size & 1);
    if (padded > bytes.length - at - 8) throw bad(`truncated: chunk '${id}' at byte ${at} holds ${size} bytes, but only ${bytes.length - at - 8} follow`);
    chunks.push({ id, at, data: bytes.subarray(at + 8, at + 8 + size) });
    at += 8 + padded;
  }
  const first = chunks[0];
  if (!first) throw bad("no chunk");
  const images = chunks.filter((c) => c.id === "VP8 " || c.id === "VP8L");
  if (first.id === "VP8 " || first.id === "VP8L") {
    if (chunks.length !== 1) throw bad(`chunk '${chunks[1]!.id}' after the '${first.id}' chunk (simple format: one chunk)`);
    return readWebpImage(first, bad);
  }
  if (first.id !== "VP8X") throw bad(`the first chunk is '${first.id}', not VP8, VP8L or VP8X`);
  if (first.data.length !== 10) throw bad(`a VP8X chunk of ${first.data.length} bytes, not 10`);
  if (first.data[0]! & 0x02) throw bad("animated");
  if (images.length !== 1) throw bad(`${images.length} image chunks (VP8/VP8L), not 1`);
  const canvas = { width: first.data.readUIntLE(4, 3) + 1, height: first.data.readUIntLE(7, 3) + 1 };
  const image = readWebpImage(images[0]!, bad);
  if (image.width !== canvas.width || image.height !== canvas.height) {
    throw bad(`a ${canvas.width}×${canvas.height} canvas (VP8X) but a ${image.width}×${image.height} image`);
  }
  return canvas;
}

/** The size fields of a VP8 key frame (RFC 6386 §9.1) or a VP8L header (WebP lossless spec §3). */
function readWebpImage({ id, at, data }: { id: string; at: number; data: Buffer }, bad: Bad): { width: number; height: number } {
  if (id === "VP8 ") {
    if (data.length < 10) throw bad(`a VP8 chunk of ${data.length} bytes at byte ${at}`);
    const frameTag = data.readUIntLE(0, 3);
    if (frameTag & 1) throw bad("a VP8 chunk that is not a key frame");
    if (data[3] !== 0x9d || data[4] !== 0x01 || data[5] !== 0x2a) throw bad(`no VP8 start code in the chunk at byte ${at}`);
    if (frameTag >>> 5 > data.length - 10) throw bad(`truncated: the VP8 first partition holds ${frameTag >>> 5} bytes, the chunk ${data.length - 10}`);
    return { width: data.readUInt16LE(6) & 0x3fff, height: data.readUInt16LE(8) & 0x3fff };
  }
  if (data.length < 5 || data[0] !== 0x2f) throw bad(`no VP8L signature in the chunk at byte ${at}`);
  const bits = data.readUInt32LE(1);
  if (bits >>> 29 !== 0) throw bad(`VP8L version ${bits >>> 29} (only 0 exists)`);
  return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
}

// ---------- full decode (JPEG, WebP; measured, not the farm's default) ----------

async function decodeWithSharp(bytes: Buffer, expected: ExpectedImage, bad: Bad): Promise<void> {
  try {
    // failOn "warning": libjpeg's "premature end of data segment" is a warning.
    const { info } = await sharp(bytes, { failOn: "warning" }).raw().toBuffer({ resolveWithObject: true });
    if (info.width !== expected.width || info.height !== expected.height) throw bad(`it decodes to ${info.width}×${info.height}`);
  } catch (err) {
    if (err instanceof ImageCheckError) throw err;
    throw bad(`it does not decode: ${(err as Error)?.message ?? err}`);
  }
}

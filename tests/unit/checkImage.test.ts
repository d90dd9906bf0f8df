// Frame payload checks (server/capture/checkImage.ts): a frame is accepted only when its bytes are a
// complete image of exactly the requested size and format. Good images come from real encoders (sharp,
// pngjs, Chromium's canvas); every bad one is a good one mutated, with valid checksums wherever the
// point is a deeper fault than a checksum.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import zlib from "node:zlib";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { PNG } from "pngjs";
import sharp from "sharp";
import { chromiumArgs } from "../../harness/chromiumFlags.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { LIMITS, type ImageFormat } from "../../protocol/grab.js";
import { checkDepth, checkImage, ImageCheckError, imageSize, MAX_CHUNKS, setImageCheckDepthForBench } from "../../server/capture/checkImage.js";
import { pngChunk } from "../../bench/fakeSessions.js";
import { imageSourceOf } from "../../server/session/Farm.js";

const W = 37;
const H = 21;

/** A real W×H RGBA PNG from pngjs. */
function png(width = W, height = H): Buffer {
  const img = new PNG({ width, height });
  for (let i = 0; i < img.data.length; i++) img.data[i] = (i * 37) & 0xff;
  return PNG.sync.write(img);
}

function rgba(width = W, height = H): Buffer {
  const raw = Buffer.alloc(width * height * 4);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 37 + (i >> 7)) & 0xff;
  return raw;
}
const fromRaw = (width = W, height = H) => sharp(rgba(width, height), { raw: { width, height, channels: 4 } });

const accepts = (bytes: Buffer, format: ImageFormat = "png", width = W, height = H) =>
  checkImage(bytes, { format, width, height, what: "job j frame 3" });

/** Refused with an ImageCheckError whose message starts with the frame's name and matches `pattern`. */
async function rejects(bytes: Buffer, pattern: RegExp, format: ImageFormat = "png", width = W, height = H, note = ""): Promise<void> {
  await assert.rejects(
    checkImage(bytes, { format, width, height, what: "job j frame 3" }),
    (err: unknown) => {
      assert.ok(err instanceof ImageCheckError, `${note}: expected an ImageCheckError, got ${String(err)}`);
      assert.match(err.message, /^job j frame 3: /, note);
      assert.match(err.message, pattern, note);
      return true;
    },
    note,
  );
}

// ---------- PNG building blocks ----------

interface Chunk {
  type: string;
  data: Buffer;
}

function chunksOf(bytes: Buffer): Chunk[] {
  const out: Chunk[] = [];
  for (let at = 8; at < bytes.length; ) {
    const length = bytes.readUInt32BE(at);
    out.push({ type: bytes.toString("latin1", at + 4, at + 8), data: bytes.subarray(at + 8, at + 8 + length) });
    at += 12 + length;
  }
  return out;
}

/** A chunk with a correct CRC. */
const chunk = ({ type, data }: Chunk): Buffer => pngChunk(type, data);

const SIGNATURE = Buffer.from("89504e470d0a1a0a", "hex");
const buildPng = (chunks: Chunk[]) => Buffer.concat([SIGNATURE, ...chunks.map(chunk)]);

function ihdr(width: number, height: number, bitDepth = 8, colourType = 6, interlace = 0): Chunk {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data.set([bitDepth, colourType, 0, 0, interlace], 8);
  return { type: "IHDR", data };
}

/**
 * Filtered rows (filter type `filter` on each) of an RGBA image: what IDAT inflates to. Every byte is
 * 0–4, so read with another row length the filter types are still valid and only the length is wrong.
 */
function rows(width: number, height: number, filter = 0): Buffer {
  const stride = 1 + width * 4;
  const out = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    out[y * stride] = filter;
    for (let x = 1; x < stride; x++) out[y * stride + x] = (x * 7 + y) % 5;
  }
  return out;
}

/** Filtered rows (filter type 0) of an RGB image. */
function rgbRows(width: number, height: number): Buffer {
  const stride = 1 + width * 3;
  const out = Buffer.alloc(stride * height, 7);
  for (let y = 0; y < height; y++) out[y * stride] = 0;
  return out;
}

/** A PNG built from scratch: IHDR of `header`, IDAT = deflate(`data`), IEND; every CRC right. */
const handMade = (header: Chunk, data: Buffer, extra: Chunk[] = []) =>
  buildPng([header, ...extra, { type: "IDAT", data: zlib.deflateSync(data) }, { type: "IEND", data: Buffer.alloc(0) }]);

/** A good PNG whose image data is split over several IDAT chunks (as Chromium writes it). */
function splitIdat(bytes: Buffer, pieces: number): Buffer {
  const cs = chunksOf(bytes);
  const data = Buffer.concat(cs.filter((c) => c.type === "IDAT").map((c) => c.data));
  const step = Math.ceil(data.length / pieces);
  const idats: Chunk[] = [];
  for (let i = 0; i < data.length; i += step) idats.push({ type: "IDAT", data: data.subarray(i, i + step) });
  return buildPng([cs[0]!, ...idats, { type: "IEND", data: Buffer.alloc(0) }]);
}

describe("PNG: accepted", () => {
  it("real PNGs of the asked size: pngjs RGBA, sharp RGBA and RGB, split IDAT, ancillary chunks", async () => {
    await accepts(png());
    await accepts(await fromRaw().png().toBuffer());
    await accepts(await fromRaw().removeAlpha().png().toBuffer());
    await accepts(await fromRaw().png({ compressionLevel: 0 }).toBuffer());
    await accepts(splitIdat(png(), 5));
    await accepts(png(1, 1), "png", 1, 1);
    await accepts(png(300, 2), "png", 300, 2);
    const cs = chunksOf(png());
    const text = { type: "tEXt", data: Buffer.from("Comment\0hello", "latin1") };
    await accepts(buildPng([cs[0]!, text, ...cs.slice(1, -1), text, cs.at(-1)!]));
    await accepts(handMade(ihdr(W, H), rows(W, H, 4)));
  });

  it("many checks at once, good and bad mixed (their inflates overlap on libuv's pool): each gets its own verdict", async () => {
    const good = png();
    const bad = handMade(ihdr(W, H), rows(W, H - 1, 4)); // CRCs right, one row short
    const big = await fromRaw(640, 480).png().toBuffer();
    const checks = Array.from({ length: 40 }, (_, i) =>
      i % 3 === 0 ? accepts(big, "png", 640, 480) : i % 3 === 1 ? accepts(good) : rejects(bad, /the image data inflates to \d+ bytes; 37×21 needs/),
    );
    await Promise.all(checks);
  });

  it("imageSize reads the header's size (the header-only check)", () => {
    assert.deepEqual(imageSize(png(), "png"), { width: W, height: H });
    assert.deepEqual(imageSize(png(300, 2), "png"), { width: 300, height: 2 });
    assert.equal(imageSize(png().subarray(0, 23), "png"), null);
  });
});

describe("PNG: refused", () => {
  it("of another size than asked: names both sizes", async () => {
    await rejects(png(1, 1), /png is 1×1, but 37×21 was asked for/);
    await rejects(png(), /png is 37×21, but 21×37 was asked for/, "png", 21, 37);
    await rejects(png(), /png is 37×21, but 37×22 was asked for/, "png", 37, 22);
  });

  it("a valid signature and IHDR followed by garbage", async () => {
    const head = png().subarray(0, 33); // signature + IHDR chunk
    for (let k = 0; k < 20; k++) {
      await rejects(Buffer.concat([head, randomBytes(1 + k * 97)]), /is not a png image: /, "png", W, H, `garbage ${k}`);
    }
    await rejects(Buffer.concat([head, Buffer.alloc(5000)]), /is not a png image: /);
  });

  it("truncated anywhere: every prefix, at every chunk boundary and mid-chunk", async () => {
    for (const good of [png(), splitIdat(png(), 4)]) {
      for (let cut = 0; cut < good.length; cut++) {
        await rejects(good.subarray(0, cut), /is not a png image: (no PNG signature|truncated)/, "png", W, H, `cut at ${cut}`);
      }
    }
  });

  it("a wrong CRC in any chunk, or any byte of a chunk changed", async () => {
    const good = splitIdat(png(), 3);
    let at = 8;
    for (const c of chunksOf(good)) {
      const crcAt = at + 8 + c.data.length;
      const badCrc = Buffer.from(good);
      badCrc[crcAt]! ^= 0x01;
      await rejects(badCrc, new RegExp(`wrong CRC in chunk ${c.type} at byte ${at}`), "png", W, H, `CRC of ${c.type}`);
      if (c.data.length) {
        const badData = Buffer.from(good);
        badData[at + 8 + (c.data.length >> 1)]! ^= 0x40;
        await rejects(badData, new RegExp(`wrong CRC in chunk ${c.type} at byte ${at}`), "png", W, H, `data of ${c.type}`);
      }
      at = crcAt + 4;
    }
  });

  it("no IEND, IEND with data, or anything after IEND", async () => {
    const good = png();
    const cs = chunksOf(good);
    await rejects(buildPng(cs.slice(0, -1)), /truncated: it ends without an IEND chunk/);
    await rejects(buildPng([...cs.slice(0, -1), { type: "IEND", data: Buffer.from("x") }]), /an IEND chunk with 1 bytes of data/);
    await rejects(Buffer.concat([good, Buffer.from([0])]), /1 byte\(s\) after the IEND chunk/);
    await rejects(Buffer.concat([good, good.subarray(-12)]), /12 byte\(s\) after the IEND chunk/);
    await rejects(Buffer.concat([good, png()]), /byte\(s\) after the IEND chunk/);
  });

  it("chunk order and kinds: IHDR not first or twice, no IDAT, IDATs apart, unknown critical chunk, bad chunk type", async () => {
    const cs = chunksOf(splitIdat(png(), 3));
    const [head, i1, i2, i3, end] = cs as [Chunk, Chunk, Chunk, Chunk, Chunk];
    const text = { type: "tEXt", data: Buffer.from("a\0b", "latin1") };
    await rejects(buildPng([text, head, i1, i2, i3, end]), /the first chunk is tEXt, not IHDR/);
    await rejects(buildPng([head, head, i1, i2, i3, end]), /unexpected critical chunk IHDR/);
    await rejects(buildPng([head, end]), /no IDAT chunk/);
    await rejects(buildPng([head, i1, text, i2, i3, end]), /IDAT chunks are not consecutive/);
    await rejects(buildPng([head, { type: "ABCD", data: Buffer.alloc(3) }, i1, i2, i3, end]), /unexpected critical chunk ABCD/);
    await rejects(buildPng([head, { type: "a1c!", data: Buffer.alloc(3) }, i1, i2, i3, end]), /no chunk type at byte 37/);
    await rejects(buildPng([{ ...head, data: Buffer.concat([head.data, Buffer.alloc(1)]) }, i1, i2, i3, end]), /an IHDR of 14 bytes, not 13/);
  });

  it("an IHDR that is not what the page writes: zero size, 16-bit, grey, palette, interlaced, unknown methods", async () => {
    const data = rows(W, H);
    await rejects(handMade(ihdr(0, H), data), /IHDR says 0×21; an image has at least one pixel/);
    await rejects(handMade(ihdr(W, 0), data), /IHDR says 37×0/);
    await rejects(handMade(ihdr(0, 0), data), /IHDR says 0×0/, "png", 0, 0);
    const sixteen = new PNG({ width: W, height: H, bitDepth: 16 });
    await rejects(PNG.sync.write(sixteen, { bitDepth: 16 }), /IHDR says 16-bit samples of colour type 6; the page writes 8-bit RGB \(2\) or RGBA \(6\)/);
    await rejects(await fromRaw().toColourspace("rgb16").png().toBuffer(), /16-bit samples/);
    await rejects(PNG.sync.write(new PNG({ width: W, height: H }), { colorType: 0 }), /8-bit samples of colour type 0/);
    await rejects(await fromRaw().png({ palette: true }).toBuffer(), /colour type 3/);
    await rejects(await fromRaw().png({ progressive: true }).toBuffer(), /interlaced/);
    const weird = ihdr(W, H);
    weird.data[10] = 1;
    await rejects(handMade(weird, data), /compression method 1, filter method 0/);
  });

  it("an IHDR size that is not the data's size (CRCs right)", async () => {
    await rejects(handMade(ihdr(W + 1, H), rows(W, H)), /png is 38×21, but 37×21 was asked for/);
    // Asked for what the IHDR says: the data is then too short for it.
    await rejects(handMade(ihdr(W + 1, H), rows(W, H)), /the image data inflates to 3129 bytes; 38×21 needs 3213/, "png", W + 1, H);
    await rejects(handMade(ihdr(W, H + 1), rows(W, H)), /inflates to 3129 bytes; 37×22 needs 3278/, "png", W, H + 1);
  });

  it("image data that inflates short or long, is cut, has a wrong Adler-32, is not zlib, or goes on after its stream (CRCs right)", async () => {
    await rejects(handMade(ihdr(W, H), rows(W, H - 1)), /the image data inflates to 2980 bytes; 37×21 needs 3129/);
    await rejects(handMade(ihdr(W, H), rows(W, H).subarray(1)), /inflates to 3128 bytes; 37×21 needs 3129/);
    await rejects(handMade(ihdr(W, H), Buffer.concat([rows(W, H), Buffer.alloc(1)])), /inflates to more than the 3129 bytes 37×21 needs/);
    await rejects(handMade(ihdr(W, H), rows(W, H + 5)), /inflates to more than the 3129 bytes/);
    const z = zlib.deflateSync(rows(W, H));
    const end = { type: "IEND", data: Buffer.alloc(0) };
    await rejects(buildPng([ihdr(W, H), { type: "IDAT", data: z.subarray(0, z.length - 6) }, end]), /the image data does not inflate: unexpected end of file/);
    const adler = Buffer.from(z);
    adler[adler.length - 1]! ^= 0xff;
    await rejects(buildPng([ihdr(W, H), { type: "IDAT", data: adler }, end]), /the image data does not inflate: incorrect data check/);
    await rejects(buildPng([ihdr(W, H), { type: "IDAT", data: randomBytes(300) }, end]), /the image data does not inflate/);
    await rejects(buildPng([ihdr(W, H), { type: "IDAT", data: zlib.deflateRawSync(rows(W, H)) }, end]), /the image data does not inflate/);
    // A complete stream with more after it, in the same IDAT or a later one.
    await rejects(buildPng([ihdr(W, H), { type: "IDAT", data: Buffer.concat([z, Buffer.from("junk")]) }, end]), /4 byte\(s\) of image data after the end of its zlib stream/);
    await rejects(buildPng([ihdr(W, H), { type: "IDAT", data: z }, { type: "IDAT", data: z }, end]), new RegExp(`${z.length} byte\\(s\\) of image data after the end`));
  });

  it("a filter type other than 0–4 on any row (CRCs and Adler-32 right)", async () => {
    for (const row of [0, 7, H - 1]) {
      const data = rows(W, H);
      data[row * (1 + W * 4)] = 5 + row;
      await rejects(handMade(ihdr(W, H), data), new RegExp(`filter type ${5 + row} on row ${row} \\(0–4 exist\\)`));
    }
  });

  it("a decompression bomb is cut off once it inflates past the asked size", async () => {
    const bomb = handMade(ihdr(W, H), Buffer.alloc(256 * 2 ** 20)); // 256 MB of zeros, ~250 KB deflated
    assert.ok(bomb.length < 400_000);
    await rejects(bomb, /inflates to more than the 3129 bytes/);
  });

  it("a PLTE or tRNS chunk decoders refuse (CRCs right): PLTE twice, after IDAT, of a bad length; tRNS in RGBA, of a bad length, twice, after IDAT", async () => {
    const data = rows(W, H);
    const plte = (entries: number) => ({ type: "PLTE", data: Buffer.alloc(entries) });
    const trns = (length: number) => ({ type: "tRNS", data: Buffer.alloc(length) });
    const idat = { type: "IDAT", data: zlib.deflateSync(data) };
    const end = { type: "IEND", data: Buffer.alloc(0) };
    // What the spec allows: a suggested palette in RGB(A), one transparent colour in RGB.
    await accepts(handMade(ihdr(W, H), data, [plte(3 * 256)]));
    await accepts(buildPng([ihdr(W, H, 8, 2), trns(6), { type: "IDAT", data: zlib.deflateSync(rgbRows(W, H)) }, end]));
    await rejects(handMade(ihdr(W, H), data, [plte(6), plte(6)]), /a PLTE chunk at byte \d+ after another/);
    await rejects(buildPng([ihdr(W, H), idat, plte(6), end]), /a PLTE chunk at byte \d+ after the image data/);
    for (const length of [0, 5, 3 * 257]) await rejects(handMade(ihdr(W, H), data, [plte(length)]), new RegExp(`a PLTE chunk of ${length} bytes`));
    for (const length of [0, 1, 6, 8]) await rejects(handMade(ihdr(W, H), data, [trns(length)]), /a tRNS chunk at byte 33 in an RGBA image/);
    const rgb = (extra: Chunk[], after: Chunk[] = []) =>
      buildPng([ihdr(W, H, 8, 2), ...extra, { type: "IDAT", data: zlib.deflateSync(rgbRows(W, H)) }, ...after, end]);
    await rejects(rgb([trns(2)]), /a tRNS chunk at byte 33 that is not one 6-byte colour before the image data/);
    await rejects(rgb([trns(6), trns(6)]), /a tRNS chunk at byte 51 that is not one 6-byte colour/);
    await rejects(rgb([], [trns(6)]), /a tRNS chunk at byte \d+ that is not one 6-byte colour before the image data/);
  });

  it(`at most ${MAX_CHUNKS.png} chunks: a file of tiny chunks (a CPU and memory bomb) is refused before its image data is read`, async () => {
    await accepts(splitIdat(png(), 2000)); // IDATs of 1–2 bytes: still a valid file
    const cs = chunksOf(png());
    const empty = chunk({ type: "IDAT", data: Buffer.alloc(0) });
    const text = chunk({ type: "tEXt", data: Buffer.alloc(0) });
    for (const tiny of [empty, text]) {
      const many = Buffer.concat(Array.from({ length: MAX_CHUNKS.png }, () => tiny));
      const bomb = Buffer.concat([SIGNATURE, chunk(cs[0]!), many, ...cs.slice(1).map(chunk)]);
      await rejects(bomb, new RegExp(`more than ${MAX_CHUNKS.png} chunks`));
    }
  });

  it("a PNG announced as JPEG or WebP, and other formats announced as PNG", async () => {
    await rejects(png(), /payload of \d+ bytes is not a jpeg image: no SOI marker/, "jpeg");
    await rejects(png(), /is not a webp image: no RIFF WEBP header/, "webp");
    await rejects(await fromRaw().jpeg().toBuffer(), /is not a png image: no PNG signature/);
    await rejects(await fromRaw().webp().toBuffer(), /is not a png image: no PNG signature/);
    await rejects(Buffer.alloc(0), /payload of 0 bytes is not a png image: no PNG signature/);
    await rejects(randomBytes(1000), /payload of 1000 bytes is not a png image/);
  });
});

// ---------- JPEG ----------

/** Offsets of a JPEG's markers up to its first scan: [{marker, at, length}]. */
function jpegSegments(bytes: Buffer): { marker: number; at: number; length: number }[] {
  const out: { marker: number; at: number; length: number }[] = [];
  for (let at = 2; at < bytes.length; ) {
    const marker = bytes[at + 1]!;
    const length = bytes.readUInt16BE(at + 2);
    out.push({ marker, at, length });
    if (marker === 0xda) break;
    at += 2 + length;
  }
  return out;
}

describe("JPEG", () => {
  let baseline: Buffer;
  let progressive: Buffer;
  before(async () => {
    baseline = await fromRaw().jpeg({ quality: 90 }).toBuffer();
    progressive = await fromRaw().jpeg({ progressive: true }).toBuffer();
  });

  it("accepts real JPEGs of the asked size: baseline, progressive, 1×1", async () => {
    await accepts(baseline, "jpeg");
    await accepts(progressive, "jpeg");
    await accepts(await fromRaw(1, 1).jpeg().toBuffer(), "jpeg", 1, 1);
    assert.deepEqual(imageSize(baseline, "jpeg"), { width: W, height: H });
  });

  it(`at most ${MAX_CHUNKS.jpeg} segments: comment segments or scans by the million (a CPU bomb) are refused`, async () => {
    const comment = Buffer.from([0xff, 0xfe, 0x00, 0x02]);
    const withComments = (count: number) => Buffer.concat([baseline.subarray(0, 2), ...Array.from({ length: count }, () => comment), baseline.subarray(2)]);
    await accepts(withComments(100), "jpeg");
    await rejects(withComments(MAX_CHUNKS.jpeg), new RegExp(`more than ${MAX_CHUNKS.jpeg} segments`), "jpeg");
  });

  it("refuses another size than asked, naming both", async () => {
    await rejects(await fromRaw(1, 1).jpeg().toBuffer(), /jpeg is 1×1, but 37×21 was asked for/, "jpeg");
    const sof = jpegSegments(baseline).find((s) => s.marker === 0xc0)!;
    const taller = Buffer.from(baseline);
    taller.writeUInt16BE(H + 3, sof.at + 5);
    await rejects(taller, /jpeg is 37×24, but 37×21 was asked for/, "jpeg");
    const zero = Buffer.from(baseline);
    zero.writeUInt16BE(0, sof.at + 5);
    await rejects(zero, /a 37×0 frame header/, "jpeg");
  });

  it("refuses every truncation (no EOI), whatever the cut", async () => {
    for (const good of [baseline, progressive]) {
      for (let cut = 0; cut < good.length; cut++) {
        await rejects(good.subarray(0, cut), /is not a jpeg image: /, "jpeg", W, H, `cut at ${cut}`);
      }
    }
  });

  it("refuses garbage after SOI, garbage or data after EOI, and a missing EOI", async () => {
    for (let k = 0; k < 20; k++) {
      const garbage = randomBytes(50 + k * 31);
      garbage[0] = k; // not 0xFF: the first segment is not a marker
      await rejects(Buffer.concat([baseline.subarray(0, 2), garbage]), /no marker at byte 2/, "jpeg");
    }
    await rejects(Buffer.concat([baseline, Buffer.from([0])]), /1 byte\(s\) after the EOI marker/, "jpeg");
    await rejects(Buffer.concat([baseline, baseline]), /byte\(s\) after the EOI marker/, "jpeg");
    await rejects(baseline.subarray(0, -2), /truncated: it ends without an EOI marker/, "jpeg");
  });

  it("refuses malformed segments: a length past the end, a second SOF, no scan, a scan before SOF, SOF types browsers do not write", async () => {
    const segments = jpegSegments(baseline);
    const sof = segments.find((s) => s.marker === 0xc0)!;
    const sos = segments.find((s) => s.marker === 0xda)!;
    const long = Buffer.from(baseline);
    long.writeUInt16BE(0xfff0, segments[0]!.at + 2);
    await rejects(long, /truncated: segment FFDB at byte 2 holds 65520 bytes/, "jpeg");
    const sofBytes = baseline.subarray(sof.at, sof.at + 2 + sof.length);
    await rejects(Buffer.concat([baseline.subarray(0, sof.at), sofBytes, baseline.subarray(sof.at)]), /a second frame header/, "jpeg");
    await rejects(Buffer.concat([baseline.subarray(0, sos.at), Buffer.from([0xff, 0xd9])]), /EOI at byte \d+ before any scan/, "jpeg");
    const sosFirst = Buffer.concat([baseline.subarray(0, sof.at), baseline.subarray(sos.at)]);
    await rejects(sosFirst, /a scan before the frame header/, "jpeg");
    for (const marker of [0xc3, 0xc9, 0xc5]) {
      const other = Buffer.from(baseline);
      other[sof.at + 1] = marker;
      await rejects(other, new RegExp(`a SOF${marker - 0xc0} frame`), "jpeg");
    }
    const badLength = Buffer.from(baseline);
    badLength[sof.at + 9] = 2; // 2 components in a segment sized for 3
    await rejects(badLength, /a malformed frame header/, "jpeg");
    const soiAgain = Buffer.concat([baseline.subarray(0, 2), Buffer.from([0xff, 0xd8]), baseline.subarray(2)]);
    await rejects(soiAgain, /unexpected marker FFD8 at byte 2/, "jpeg");
  });

  it("a scan's data cut and patched with an EOI passes the structure check; only a full decode (sharp) finds it", async () => {
    const sos = jpegSegments(baseline).find((s) => s.marker === 0xda)!;
    const patched = Buffer.concat([baseline.subarray(0, sos.at + 2 + sos.length + 40), Buffer.from([0xff, 0xd9])]);
    await accepts(patched, "jpeg"); // the farm's depth for JPEG: structure (see checkImage.ts)
    setImageCheckDepthForBench("full");
    try {
      await rejects(patched, /it does not decode: .*premature end of data segment/, "jpeg");
      await accepts(baseline, "jpeg");
    } finally {
      setImageCheckDepthForBench(undefined);
    }
  });
});

// ---------- WebP ----------

/** RIFF chunks of a WebP file, e.g. ["VP8X", "ICCP", "VP8 "]. */
function webpChunks(bytes: Buffer): { id: string; at: number; data: Buffer }[] {
  const out: { id: string; at: number; data: Buffer }[] = [];
  for (let at = 12; at + 8 <= bytes.length; ) {
    const size = bytes.readUInt32LE(at + 4);
    out.push({ id: bytes.toString("latin1", at, at + 4), at, data: bytes.subarray(at + 8, at + 8 + size) });
    at += 8 + size + (size & 1);
  }
  return out;
}

/** A WebP file of the given chunks (RIFF size right). */
function riff(chunks: { id: string; data: Buffer }[]): Buffer {
  const body = Buffer.concat(
    chunks.map(({ id, data }) => Buffer.concat([Buffer.from(id, "latin1"), u32(data.length), data, Buffer.alloc(data.length & 1)])),
  );
  return Buffer.concat([Buffer.from("RIFF"), u32(4 + body.length), Buffer.from("WEBP"), body]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function withRiffSize(bytes: Buffer, size: number): Buffer {
  const out = Buffer.from(bytes);
  out.writeUInt32LE(size, 4);
  return out;
}

describe("WebP", () => {
  let lossy: Buffer;
  let lossless: Buffer;
  let alpha: Buffer;
  before(async () => {
    lossy = await fromRaw().removeAlpha().webp({ quality: 80 }).toBuffer();
    lossless = await fromRaw().webp({ lossless: true }).toBuffer();
    alpha = await fromRaw().webp({ quality: 80 }).toBuffer();
  });

  it("accepts real WebPs of the asked size: lossy (VP8), lossless (VP8L), extended with alpha (VP8X)", async () => {
    assert.equal(lossy.toString("latin1", 12, 16), "VP8 ");
    assert.equal(lossless.toString("latin1", 12, 16), "VP8L");
    assert.equal(alpha.toString("latin1", 12, 16), "VP8X");
    for (const bytes of [lossy, lossless, alpha]) await accepts(bytes, "webp");
    await accepts(await fromRaw(1, 1).webp().toBuffer(), "webp", 1, 1);
  });

  it("refuses another size than asked, naming both", async () => {
    for (const bytes of [lossy, lossless, alpha]) await rejects(bytes, /webp is 37×21, but 36×21 was asked for/, "webp", 36, 21);
    await rejects(await fromRaw(1, 1).webp().toBuffer(), /webp is 1×1, but 37×21 was asked for/, "webp");
  });

  it("refuses a RIFF size that is not the file's size", async () => {
    for (const bytes of [lossy, lossless, alpha]) {
      const size = bytes.readUInt32LE(4);
      for (const wrong of [size - 2, size - 1, size + 1, size + 2, 0, 4, 0xffffffff]) {
        await rejects(withRiffSize(bytes, wrong), /the RIFF header says \d+ bytes/, "webp", W, H, `RIFF size ${wrong}`);
      }
      await rejects(Buffer.concat([bytes, Buffer.alloc(2)]), /the RIFF header says/, "webp");
    }
  });

  it("refuses every truncation, also with the RIFF size fixed up to match", async () => {
    for (const good of [lossy, lossless, alpha]) {
      for (let cut = 0; cut < good.length; cut++) {
        const prefix = good.subarray(0, cut);
        await rejects(prefix, /is not a webp image: /, "webp", W, H, `cut at ${cut}`);
        if (cut >= 12) await rejects(withRiffSize(prefix, cut - 8), /is not a webp image: /, "webp", W, H, `cut at ${cut}, RIFF size fixed`);
      }
    }
  });

  it(`accepts unknown chunks in the extended format, at most ${MAX_CHUNKS.webp} chunks in all`, async () => {
    const extended = webpChunks(alpha);
    const unknown = { id: "ABCD", data: Buffer.alloc(3) };
    const withUnknown = (count: number) => riff([...extended, ...Array.from({ length: count }, () => unknown)]);
    await accepts(withUnknown(10), "webp");
    await rejects(withUnknown(MAX_CHUNKS.webp), new RegExp(`more than ${MAX_CHUNKS.webp} chunks`), "webp");
  });

  it("refuses malformed chunks: a size past the end, extra chunks in the simple format, VP8X canvas ≠ image, animation, bad VP8/VP8L headers", async () => {
    const [vp8] = webpChunks(lossy);
    const [vp8l] = webpChunks(lossless);
    const extended = webpChunks(alpha);
    await rejects(riff([vp8!, { id: "EXIF", data: Buffer.alloc(4) }]), /chunk 'EXIF' after the 'VP8 ' chunk/, "webp");
    const longChunk = Buffer.from(lossy);
    longChunk.writeUInt32LE(vp8!.data.length + 2, 16);
    await rejects(longChunk, /truncated: chunk 'VP8 ' at byte 12 holds/, "webp");
    await rejects(riff([{ id: "ABCD", data: Buffer.alloc(4) }]), /the first chunk is 'ABCD'/, "webp");
    const vp8x = extended.find((c) => c.id === "VP8X")!;
    const canvas = Buffer.from(vp8x.data);
    canvas.writeUIntLE(W, 4, 3); // canvas width W+1
    await rejects(riff(extended.map((c) => (c.id === "VP8X" ? { ...c, data: canvas } : c))), /a 38×21 canvas \(VP8X\) but a 37×21 image/, "webp", W + 1, H);
    const animated = Buffer.from(vp8x.data);
    animated[0]! |= 0x02;
    await rejects(riff(extended.map((c) => (c.id === "VP8X" ? { ...c, data: animated } : c))), /animated/, "webp");
    await rejects(riff(extended.filter((c) => c.id !== "VP8 ")), /0 image chunks \(VP8\/VP8L\), not 1/, "webp");
    await rejects(riff([...extended, vp8!]), /2 image chunks/, "webp");
    const noStart = Buffer.from(vp8!.data);
    noStart[3] = 0;
    await rejects(riff([{ id: "VP8 ", data: noStart }]), /no VP8 start code/, "webp");
    const interFrame = Buffer.from(vp8!.data);
    interFrame[0]! |= 1;
    await rejects(riff([{ id: "VP8 ", data: interFrame }]), /not a key frame/, "webp");
    await rejects(riff([{ id: "VP8 ", data: vp8!.data.subarray(0, 20) }]), /truncated: the VP8 first partition holds/, "webp");
    const noSignature = Buffer.from(vp8l!.data);
    noSignature[0] = 0x2e;
    await rejects(riff([{ id: "VP8L", data: noSignature }]), /no VP8L signature/, "webp");
    const version = Buffer.from(vp8l!.data);
    version[4]! |= 0x20;
    await rejects(riff([{ id: "VP8L", data: version }]), /VP8L version 1/, "webp");
  });
});

describe("size limit", () => {
  it("refuses payloads over LIMITS.maxFrameBytes, naming the limit, before parsing", async () => {
    const huge = Buffer.alloc(LIMITS.maxFrameBytes + 1);
    png().copy(huge); // a valid start does not help
    await rejects(huge, new RegExp(`${LIMITS.maxFrameBytes + 1} bytes is over the ${LIMITS.maxFrameBytes}-byte limit`));
  });

  it("checks a payload of exactly LIMITS.maxFrameBytes (not refused for its size)", async () => {
    const atLimit = Buffer.alloc(LIMITS.maxFrameBytes);
    png().copy(atLimit);
    await rejects(atLimit, /byte\(s\) after the IEND chunk/);
  });
});

describe("who sent it: a tab the farm launched gets the structure check, everyone else the full one", () => {
  const from = (bytes: Buffer, source: "launched" | "any" | undefined) => checkImage(bytes, { format: "png", width: W, height: H, what: "f", source });

  it("image data that inflates short (CRCs right): refused from any page and by default, accepted from a launched tab", async () => {
    const short = handMade(ihdr(W, H), rows(W, H - 1));
    for (const source of ["any", undefined] as const) await assert.rejects(from(short, source), /inflates to 2980 bytes; 37×21 needs 3129/, String(source));
    await from(short, "launched");
    assert.equal(checkDepth("png", "launched"), "structure");
    assert.equal(checkDepth("png", "any"), "full");
    assert.equal(checkDepth("png"), "full");
  });

  it("imageSourceOf: launched only for an admitted local tab-N over a connection from this machine (both ends on one address)", () => {
    const here = { remoteAddress: "127.0.0.1", localAddress: "127.0.0.1" };
    assert.equal(imageSourceOf("tab-0", here), "launched");
    assert.equal(imageSourceOf("tab-41", { remoteAddress: "::1", localAddress: "::1" }), "launched");
    assert.equal(imageSourceOf("tab-2", { remoteAddress: "192.168.1.5", localAddress: "192.168.1.5" }), "launched", "--host: the harness's tabs connect to it");
    for (const connection of [
      { remoteAddress: "192.168.1.7", localAddress: "192.168.1.5" }, // another machine
      { remoteAddress: "127.0.0.2", localAddress: "127.0.0.1" },
      { remoteAddress: undefined, localAddress: "127.0.0.1" }, // a socket already closed
      { remoteAddress: undefined, localAddress: undefined },
      {},
    ]) assert.equal(imageSourceOf("tab-0", connection), "any", JSON.stringify(connection));
    // Names Farm gives pages without a launched tab's proof, remote workers' tabs, and look-alikes.
    for (const name of ["", "unverified:tab-0", "gpu-box.tab-0", "unverified:gpu-box.tab-0", "TAB-0", " tab-0", "tab-0 ", "tab-", "tab-x", "my-tab-0", "tab-0.tab-0"]) {
      assert.equal(imageSourceOf(name, here), "any", JSON.stringify(name));
    }
  });

  it("a launched tab's frames still get every structure check: a changed byte (wrong CRC), truncation, wrong size, garbage after IEND", async () => {
    const good = png();
    await from(good, "launched");
    for (let at = 8; at < good.length; at += 7) {
      const changed = Buffer.from(good);
      changed[at]! ^= 0x01;
      await assert.rejects(from(changed, "launched"), ImageCheckError, `byte ${at} changed`);
    }
    for (const cut of [10, 33, good.length - 12, good.length - 1]) await assert.rejects(from(good.subarray(0, cut), "launched"), /truncated|no valid|IEND/, `cut at ${cut}`);
    await assert.rejects(from(png(W + 1, H), "launched"), /png is 38×21, but 37×21 was asked for/);
    await assert.rejects(from(Buffer.concat([good, Buffer.from("x")]), "launched"), /after the IEND chunk/);
  });
});

describe("check depth (bench only)", () => {
  it("header-only accepts what the farm's check refuses; the farm's check is back after reset", async () => {
    const truncated = png().subarray(0, 60);
    setImageCheckDepthForBench("header");
    try {
      await accepts(truncated);
      await rejects(png(1, 1), /png is 1×1, but 37×21 was asked for/);
      await rejects(Buffer.from("not a png"), /is not a png image: no valid header/);
    } finally {
      setImageCheckDepthForBench(undefined);
    }
    await rejects(truncated, /truncated/);
  });
});

describe("random and empty payloads", () => {
  it("imageSize returns null for every format", () => {
    for (const format of ["png", "jpeg", "webp"] as const) {
      assert.equal(imageSize(Buffer.alloc(0), format), null, format);
      assert.equal(imageSize(Buffer.from([0xff]), format), null, format);
      for (let k = 0; k < 20; k++) {
        const bytes = randomBytes(64);
        bytes[0] = 0x00; // never an accidental signature
        assert.equal(imageSize(bytes, format), null, format);
      }
    }
  });

  it("checkImage refuses them for every format", async () => {
    for (const format of ["png", "jpeg", "webp"] as const) {
      await rejects(Buffer.alloc(0), /payload of 0 bytes is not a/, format);
      for (let k = 0; k < 20; k++) await rejects(randomBytes(64 + k), /is not a/, format);
    }
  });
});

let browserPath: string | undefined;
try {
  browserPath = findBrowser().path;
} catch {
  browserPath = undefined;
}

describe("browser-encoded PNG, JPEG and WebP (33×17)", { skip: browserPath ? false : "no Chromium found" }, () => {
  let browser: Browser;
  let page: Page;
  const images: Record<string, Buffer> = {};

  /** Decodes bytes in Chromium and returns the size it sees (null if it cannot decode them). */
  async function browserSize(bytes: Buffer, mime: string): Promise<{ width: number; height: number } | null> {
    return page.evaluate(
      async ({ b64, mime }) => {
        const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        try {
          const bmp = await createImageBitmap(new Blob([raw], { type: mime }));
          return { width: bmp.width, height: bmp.height };
        } catch {
          return null;
        }
      },
      { b64: bytes.toString("base64"), mime },
    );
  }

  before(async () => {
    browser = await chromium.launch({ executablePath: browserPath!, args: chromiumArgs("swiftshader") });
    page = await browser.newPage();
    // As the page's encoder worker encodes (client/src/capture/encoder.worker.ts): an OffscreenCanvas
    // with a software 2D context, putImageData, convertToBlob.
    // Plain JavaScript in a string: the test's TypeScript loader would add helpers the page lacks.
    const encoded: Record<string, string> = await page.evaluate(`(async () => {
      function canvasOf(alpha) {
        const canvas = new OffscreenCanvas(33, 17);
        const ctx = canvas.getContext("2d", { colorSpace: "srgb", willReadFrequently: true });
        const data = new Uint8ClampedArray(33 * 17 * 4);
        for (let i = 0; i < data.length; i += 4) data.set([(i * 7) & 0xff, (i >> 3) & 0xff, 90, alpha], i);
        ctx.putImageData(new ImageData(data, 33, 17), 0, 0);
        return canvas;
      }
      const opaque = canvasOf(255);
      const translucent = canvasOf(128);
      const out = {};
      async function put(name, canvas, type, quality) {
        const bytes = new Uint8Array(await (await canvas.convertToBlob({ type, quality })).arrayBuffer());
        let s = "";
        for (const b of bytes) s += String.fromCharCode(b);
        out[name] = btoa(s);
      }
      await put("png", opaque, "image/png");
      await put("pngAlpha", translucent, "image/png");
      await put("jpeg", opaque, "image/jpeg");
      await put("jpegLow", opaque, "image/jpeg", 0.1);
      await put("webpLossy", opaque, "image/webp", 0.8);
      await put("webpLossless", opaque, "image/webp", 1); // Chromium encodes quality 1 as VP8L
      await put("webpAlpha", translucent, "image/webp", 0.8);
      await put("webpAlphaLossless", translucent, "image/webp", 1);
      return out;
    })()`);
    for (const [name, b64] of Object.entries(encoded)) images[name] = Buffer.from(b64, "base64");
  });

  after(async () => {
    await browser?.close();
  });

  it("accepts Chromium's PNGs (8-bit RGBA), JPEGs and WebPs", async () => {
    for (const name of ["png", "pngAlpha"]) {
      assert.equal(images[name]![25], 6, `${name}: colour type RGBA`);
      await checkImage(images[name]!, { format: "png", width: 33, height: 17, what: name });
    }
    for (const name of ["jpeg", "jpegLow"]) await checkImage(images[name]!, { format: "jpeg", width: 33, height: 17, what: name });
    for (const name of ["webpLossy", "webpLossless", "webpAlpha", "webpAlphaLossless"]) {
      await checkImage(images[name]!, { format: "webp", width: 33, height: 17, what: name });
    }
    assert.ok(webpChunks(images.webpLossy!).some((c) => c.id === "VP8 "), "lossy has a VP8 chunk");
    assert.ok(webpChunks(images.webpLossless!).some((c) => c.id === "VP8L"), "quality 1 is lossless VP8L");
  });

  it("refuses every truncation of Chromium's PNG, JPEG and WebP", async () => {
    for (const [name, format] of [["png", "png"], ["jpeg", "jpeg"], ["webpAlpha", "webp"]] as const) {
      const good = images[name]!;
      for (let cut = 0; cut < good.length; cut++) {
        await rejects(good.subarray(0, cut), /is not a (png|jpeg|webp) image: /, format, 33, 17, `${name} cut at ${cut}`);
      }
    }
  });

  // Regression test (fixed bug in checkImage.ts, JPEG branch): a marker may be preceded by any number of 0xFF fill bytes
  // (ITU T.81 B.1.1.2). The parser read the second 0xFF as the marker code and its "length" from the
  // marker bytes, so it walked off into the data and missed SOF. Chromium itself decodes such a file.
  it("accepts a valid JPEG whose markers have 0xFF fill bytes", async () => {
    const bytes = images.jpeg!;
    const filled = Buffer.concat([bytes.subarray(0, 2), Buffer.from([0xff, 0xff]), bytes.subarray(2)]);
    assert.deepEqual(await browserSize(filled, "image/jpeg"), { width: 33, height: 17 }, "the padded JPEG is valid");
    assert.deepEqual(imageSize(filled, "jpeg"), { width: 33, height: 17 });
    await checkImage(filled, { format: "jpeg", width: 33, height: 17, what: "filled" });
  });

  it("accepts simple-format lossy (VP8) and lossless (VP8L) WebPs rebuilt from Chromium's chunks", async () => {
    const lossyChunk = webpChunks(images.webpLossy!).find((c) => c.id === "VP8 ")!;
    const losslessChunk = webpChunks(images.webpLossless!).find((c) => c.id === "VP8L")!;
    const alphaLosslessChunk = webpChunks(images.webpAlphaLossless!).find((c) => c.id === "VP8L")!;
    for (const [name, c] of [["lossy", lossyChunk], ["lossless", losslessChunk], ["lossless with alpha", alphaLosslessChunk]] as const) {
      const bytes = riff([c]);
      assert.deepEqual(await browserSize(bytes, "image/webp"), { width: 33, height: 17 }, `${name}: Chromium decodes the rebuilt file`);
      assert.deepEqual(imageSize(bytes, "webp"), { width: 33, height: 17 }, name);
      await checkImage(bytes, { format: "webp", width: 33, height: 17, what: name });
      await rejects(bytes, /webp is 33×17, but 32×17 was asked for/, "webp", 32, 17, name);
    }
  });
});

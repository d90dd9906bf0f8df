// Header checks of frame payloads (server/capture/checkImage.ts) against real images: PNGs from pngjs,
// JPEGs and WebPs (lossy VP8, lossless VP8L, extended VP8X) encoded by Chromium's canvas.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { PNG } from "pngjs";
import { chromiumArgs } from "../../harness/chromiumFlags.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { LIMITS, type ImageFormat } from "../../protocol/grab.js";
import { checkImage, ImageCheckError, imageSize } from "../../server/capture/checkImage.js";

function png(width: number, height: number): Buffer {
  const img = new PNG({ width, height });
  for (let i = 0; i < img.data.length; i++) img.data[i] = (i * 37) & 0xff;
  return PNG.sync.write(img);
}

function rejects(bytes: Buffer, expected: { format: ImageFormat; width: number; height: number }, pattern: RegExp): void {
  assert.throws(
    () => checkImage(bytes, { ...expected, what: "job j frame 3" }),
    (err: unknown) => {
      assert.ok(err instanceof ImageCheckError, `expected an ImageCheckError, got ${String(err)}`);
      assert.match(err.message, /^job j frame 3: /);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

/** RIFF chunks of a WebP file, e.g. ["VP8X", "ICCP", "VP8 "]. */
function webpChunks(bytes: Buffer): { id: string; data: Buffer }[] {
  const out: { id: string; data: Buffer }[] = [];
  let i = 12;
  while (i + 8 <= bytes.length) {
    const size = bytes.readUInt32LE(i + 4);
    out.push({ id: bytes.toString("latin1", i, i + 4), data: bytes.subarray(i + 8, i + 8 + size) });
    i += 8 + size + (size & 1);
  }
  return out;
}

/** A simple-format WebP (RIFF, WEBP, one VP8 or VP8L chunk), as libwebp writes without metadata. */
function simpleWebp(chunk: { id: string; data: Buffer }): Buffer {
  const pad = chunk.data.length & 1 ? Buffer.alloc(1) : Buffer.alloc(0);
  const body = Buffer.concat([Buffer.from(chunk.id, "latin1"), u32(chunk.data.length), chunk.data, pad]);
  return Buffer.concat([Buffer.from("RIFF"), u32(4 + body.length), Buffer.from("WEBP"), body]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

describe("PNG", () => {
  it("reads the size of a real PNG (37×21) and accepts it", () => {
    const bytes = png(37, 21);
    assert.deepEqual(imageSize(bytes, "png"), { width: 37, height: 21 });
    checkImage(bytes, { format: "png", width: 37, height: 21, what: "f" });
    assert.deepEqual(imageSize(png(1, 1), "png"), { width: 1, height: 1 });
    assert.deepEqual(imageSize(png(300, 2), "png"), { width: 300, height: 2 });
  });

  it("names both sizes when the announced size is wrong", () => {
    rejects(png(37, 21), { format: "png", width: 21, height: 37 }, /png is 37×21, but 21×37 was announced/);
    rejects(png(37, 21), { format: "png", width: 37, height: 22 }, /37×21.*37×22/);
  });

  it("refuses random bytes, a truncated PNG and an empty buffer", () => {
    const want = { format: "png" as const, width: 37, height: 21 };
    rejects(randomBytes(1000), want, /payload of 1000 bytes is not a png image/);
    rejects(png(37, 21).subarray(0, 20), want, /payload of 20 bytes is not a png image/);
    rejects(Buffer.alloc(0), want, /payload of 0 bytes is not a png image/);
    assert.equal(imageSize(png(37, 21).subarray(0, 23), "png"), null);
    const wrongChunk = Buffer.from(png(37, 21));
    wrongChunk.write("IDAT", 12, "latin1");
    assert.equal(imageSize(wrongChunk, "png"), null);
  });

  it("refuses a PNG announced as another format", () => {
    rejects(png(37, 21), { format: "jpeg", width: 37, height: 21 }, /not a jpeg image/);
    rejects(png(37, 21), { format: "webp", width: 37, height: 21 }, /not a webp image/);
  });
});

describe("size limit", () => {
  it("refuses payloads over LIMITS.maxFrameBytes, naming the limit, before parsing", () => {
    const huge = Buffer.alloc(LIMITS.maxFrameBytes + 1);
    png(37, 21).copy(huge); // a valid header does not help
    rejects(huge, { format: "png", width: 37, height: 21 }, new RegExp(`${LIMITS.maxFrameBytes + 1} bytes is over the ${LIMITS.maxFrameBytes}-byte limit`));
  });

  it("accepts a payload of exactly LIMITS.maxFrameBytes", () => {
    const atLimit = Buffer.alloc(LIMITS.maxFrameBytes);
    png(37, 21).copy(atLimit);
    checkImage(atLimit, { format: "png", width: 37, height: 21, what: "f" });
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
});

let browserPath: string | undefined;
try {
  browserPath = findBrowser().path;
} catch {
  browserPath = undefined;
}

describe("browser-encoded JPEG and WebP (33×17)", { skip: browserPath ? false : "no Chromium found" }, () => {
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
    const urls = await page.evaluate(() => {
      const opaque = document.createElement("canvas");
      opaque.width = 33;
      opaque.height = 17;
      const g = opaque.getContext("2d")!;
      g.fillStyle = "#3a7";
      g.fillRect(0, 0, 33, 17);
      g.fillStyle = "#c32";
      g.fillRect(5, 3, 20, 9);
      const alpha = document.createElement("canvas");
      alpha.width = 33;
      alpha.height = 17;
      const a = alpha.getContext("2d")!;
      a.fillStyle = "rgba(255, 0, 0, 0.5)";
      a.fillRect(0, 0, 12, 10);
      return {
        jpeg: opaque.toDataURL("image/jpeg"),
        jpegLow: opaque.toDataURL("image/jpeg", 0.1),
        webpLossy: opaque.toDataURL("image/webp", 0.8),
        webpLossless: opaque.toDataURL("image/webp", 1), // Chromium encodes quality 1 as VP8L
        webpAlpha: alpha.toDataURL("image/webp", 0.8),
        webpAlphaLossless: alpha.toDataURL("image/webp", 1),
      };
    });
    for (const [name, url] of Object.entries(urls)) {
      const [head, b64] = url.split(",");
      assert.ok(head!.startsWith(name.startsWith("jpeg") ? "data:image/jpeg" : "data:image/webp"), `${name}: ${head}`);
      images[name] = Buffer.from(b64!, "base64");
    }
  });

  after(async () => {
    await browser?.close();
  });

  it("reads the size of Chromium JPEGs (baseline SOF0, with APP0/ICC segments before it)", () => {
    for (const name of ["jpeg", "jpegLow"]) {
      const bytes = images[name]!;
      assert.equal(bytes[0], 0xff);
      assert.equal(bytes[1], 0xd8);
      assert.deepEqual(imageSize(bytes, "jpeg"), { width: 33, height: 17 }, name);
      checkImage(bytes, { format: "jpeg", width: 33, height: 17, what: name });
    }
  });

  it("refuses a JPEG with the wrong announced size, a truncated JPEG, and a JPEG announced as PNG", () => {
    const bytes = images.jpeg!;
    rejects(bytes, { format: "jpeg", width: 17, height: 33 }, /jpeg is 33×17, but 17×33 was announced/);
    rejects(bytes.subarray(0, 3), { format: "jpeg", width: 33, height: 17 }, /not a jpeg image/);
    rejects(bytes.subarray(0, 30), { format: "jpeg", width: 33, height: 17 }, /not a jpeg image/);
    rejects(bytes, { format: "png", width: 33, height: 17 }, /not a png image/);
    const broken = Buffer.from(bytes);
    broken[2] = 0x00; // the first marker is no longer a marker
    assert.equal(imageSize(broken, "jpeg"), null);
  });

  // Regression test (fixed bug in checkImage.ts, JPEG branch): a marker may be preceded by any number of 0xFF fill bytes
  // (ITU T.81 B.1.1.2). The parser reads the second 0xFF as the marker code and its "length" from the
  // marker bytes, so it walks off into the data and misses SOF. Chromium itself decodes such a file.
  it("reads the size of a valid JPEG whose markers have 0xFF fill bytes", async () => {
    const bytes = images.jpeg!;
    const filled = Buffer.concat([bytes.subarray(0, 2), Buffer.from([0xff, 0xff]), bytes.subarray(2)]);
    assert.deepEqual(await browserSize(filled, "image/jpeg"), { width: 33, height: 17 }, "the padded JPEG is valid");
    assert.deepEqual(imageSize(filled, "jpeg"), { width: 33, height: 17 });
  });

  it("reads the size of Chromium's extended (VP8X) WebPs: lossy, lossless, with alpha", () => {
    for (const name of ["webpLossy", "webpLossless", "webpAlpha", "webpAlphaLossless"]) {
      const bytes = images[name]!;
      assert.equal(bytes.toString("latin1", 12, 16), "VP8X", name);
      assert.deepEqual(imageSize(bytes, "webp"), { width: 33, height: 17 }, name);
      checkImage(bytes, { format: "webp", width: 33, height: 17, what: name });
    }
    assert.ok(
      webpChunks(images.webpLossy!).some((c) => c.id === "VP8 "),
      "lossy has a VP8 chunk",
    );
    assert.ok(
      webpChunks(images.webpLossless!).some((c) => c.id === "VP8L"),
      "quality 1 is lossless VP8L",
    );
  });

  it("reads the size of simple-format lossy (VP8) and lossless (VP8L) WebPs", async () => {
    const lossyChunk = webpChunks(images.webpLossy!).find((c) => c.id === "VP8 ")!;
    const losslessChunk = webpChunks(images.webpLossless!).find((c) => c.id === "VP8L")!;
    const alphaLosslessChunk = webpChunks(images.webpAlphaLossless!).find((c) => c.id === "VP8L")!;
    const cases: [string, Buffer, string][] = [
      ["lossy", simpleWebp(lossyChunk), "VP8 "],
      ["lossless", simpleWebp(losslessChunk), "VP8L"],
      ["lossless with alpha", simpleWebp(alphaLosslessChunk), "VP8L"],
    ];
    for (const [name, bytes, id] of cases) {
      assert.equal(bytes.toString("latin1", 12, 16), id, name);
      assert.deepEqual(await browserSize(bytes, "image/webp"), { width: 33, height: 17 }, `${name}: Chromium decodes the rebuilt file`);
      assert.deepEqual(imageSize(bytes, "webp"), { width: 33, height: 17 }, name);
      checkImage(bytes, { format: "webp", width: 33, height: 17, what: name });
      rejects(bytes, { format: "webp", width: 32, height: 17 }, /webp is 33×17, but 32×17 was announced/);
    }
  });

  it("refuses truncated WebPs, WebPs with an unknown first chunk, and WebPs announced as JPEG", () => {
    const bytes = images.webpLossy!;
    rejects(bytes.subarray(0, 29), { format: "webp", width: 33, height: 17 }, /payload of 29 bytes is not a webp image/);
    const unknown = Buffer.from(bytes);
    unknown.write("ABCD", 12, "latin1");
    rejects(unknown, { format: "webp", width: 33, height: 17 }, /not a webp image/);
    const notWebp = Buffer.from(bytes);
    notWebp.write("WAVE", 8, "latin1");
    assert.equal(imageSize(notWebp, "webp"), null);
    rejects(bytes, { format: "jpeg", width: 33, height: 17 }, /not a jpeg image/);
  });
});

// Replies are trusted no further than they are checked: a page holding the token (or a buggy browser)
// answering grabs with a valid PNG header and garbage, a truncated PNG, or a frame of another size than
// asked gets nothing written; the job is retried and done by a real page. The server knows the size of
// every grab from the scene it sent (server/session/SentScene.ts), and a real Chromium page's frames
// agree with it through every op.
//
// Run: node --import tsx --test tests/integration/hostileReplies.test.ts
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { PNG } from "pngjs";
import sharp from "sharp";
import { chromium, type Browser } from "playwright-core";
import { io, type Socket as ClientSocket } from "socket.io-client";
import { Farm } from "../../server/session/Farm.js";
import type { Session } from "../../server/session/Session.js";
import { ClassTable } from "../../server/capture/ClassTable.js";
import type { BrowserInfo, ClientToServerEvents, ServerToClientEvents } from "../../protocol/events.js";
import { packBoxes3d, type Box3dWire, type GrabReply, type GrabRequest } from "../../protocol/grab.js";
import type { SceneElement } from "../../protocol/elements.js";
import { buildClient } from "../../harness/buildClient.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { pngChunk } from "../../bench/fakeSessions.js";
import { chromiumArgs } from "../../harness/chromiumFlags.js";
import { checkDataset, startFarm, tempFiles, type FarmUnderTest } from "./farmHarness.js";

type FakeSocket = ClientSocket<ServerToClientEvents, ClientToServerEvents>;

const CAMERA = {
  K: [[100, 0, 80], [0, 100, 60], [0, 0, 1]],
  cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]],
  fov: 60, near: 0.1, far: 100,
};

function png(width: number, height: number): Buffer {
  const img = new PNG({ width, height });
  for (let i = 0; i < img.data.length; i++) img.data[i] = (i * 31 + (i >> 9)) & 0xff;
  return PNG.sync.write(img);
}

const reply = (image: Buffer, width: number, height: number, extra: Partial<GrabReply> = {}): GrabReply =>
  ({ ok: true, image, width, height, format: "png", camera: CAMERA, renderMs: 1, encodeMs: 1, ...extra }) as GrabReply;

/** A PNG with right CRCs whose image data inflates to `rows` rows of a `width`-wide RGBA image. */
function pngWithRows(width: number, height: number, rows: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  const data = Buffer.alloc((1 + width * 4) * rows); // filter type 0 on every row, black pixels
  return Buffer.concat([
    Buffer.from("89504e470d0a1a0a", "hex"), pngChunk("IHDR", ihdr), pngChunk("IDAT", zlib.deflateSync(data)), pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The session of the page that said hello as `worker`, once it has. */
async function sessionOf(farm: Farm, worker: string, timeoutMs: number): Promise<Session> {
  for (const until = Date.now() + timeoutMs; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
    const session = [...farm.sessions.values()].find((s) => s.info.worker === worker);
    if (session) return session;
  }
  throw new Error(`no session '${worker}' said hello within ${timeoutMs} ms`);
}

const helloInfo = (worker: string): BrowserInfo => ({ renderer: "hostile", vendor: "", webgl: true, userAgent: "t", devicePixelRatio: 1, worker });

/** A socket.io-client holding the token that says hello as `worker` and answers grabs with `answer` (undefined: never). */
function hostileSocket(url: string, token: string, worker: string, answer: (request: GrabRequest) => GrabReply | undefined): FakeSocket {
  const socket: FakeSocket = io(new URL(url).origin, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
  socket.on("connect", () => socket.emit("hello", helloInfo(worker)));
  socket.on("grab", (_seq, request, ack) => {
    const r = answer(request);
    if (r !== undefined) ack(r);
  });
  return socket;
}

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).map(String).filter((n) => fs.statSync(path.join(dir, n)).isFile());
}

describe("hostile replies in a farm run: nothing written, the jobs retried and done by a real tab", { timeout: 180_000 }, () => {
  let farm: FarmUnderTest | undefined;
  after(async () => {
    await farm?.close();
  });

  it("refuses each bad frame with a clear error, writes nothing for it, and ends with one decodable 160×120 line per (job, frame)", { timeout: 170_000 }, async () => {
    // One frame per job, so every hostile reply fails one attempt and is logged on its own line.
    farm = await startFarm({ launchTabs: false, tabs: 1, frames: 6, framesPerJob: 1, width: 160, height: 120, maxAttempts: 20 });
    const good = png(160, 120);
    const idatAt = 33; // signature + IHDR
    const badCrc = Buffer.from(good);
    badCrc[idatAt + 8 + 10]! ^= 0x55;
    const hostile: { name: string; reply: GrabReply; refusal: RegExp }[] = [
      { name: "header + garbage", reply: reply(Buffer.concat([good.subarray(0, idatAt), randomBytes(4000)]), 160, 120), refusal: /payload of 4033 bytes is not a png image: / },
      { name: "truncated", reply: reply(good.subarray(0, good.length - 100), 160, 120), refusal: /is not a png image: truncated/ },
      { name: "1×1, said 1×1", reply: reply(png(1, 1), 1, 1), refusal: /the reply is 1×1, but 160×120 was asked for/ },
      { name: "1×1, said 160×120", reply: reply(png(1, 1), 160, 120), refusal: /png is 1×1, but 160×120 was asked for/ },
      { name: "wrong CRC", reply: reply(badCrc, 160, 120), refusal: /wrong CRC in chunk IDAT/ },
      { name: "inflates short", reply: reply(pngWithRows(160, 120, 119), 160, 120), refusal: /the image data inflates to 76279 bytes; 160×120 needs 76920/ },
      { name: "bytes after IEND", reply: reply(Buffer.concat([good, Buffer.from("tail")]), 160, 120), refusal: /4 byte\(s\) after the IEND chunk/ },
      { name: "not an image", reply: reply(randomBytes(500), 160, 120), refusal: /payload of 500 bytes is not a png image/ },
    ];
    const answered: string[] = [];
    // It claims a launched tab's name without that tab's proof: admitted as opened by hand, so its frames
    // get the full check ("inflates short" is caught only by it; a launched tab's frames skip the inflate).
    const socket = hostileSocket(farm.run.url, farm.run.farm.token, "tab-0", () => {
      const next = hostile[answered.length];
      if (!next) return undefined; // then it goes quiet until the test disconnects it
      answered.push(next.name);
      return next.reply;
    });
    try {
      await farm.waitForLog(/claims to be launched tab tab-0 without its worker proof; admitted as opened by hand/, 10_000);
      assert.equal((await sessionOf(farm.run.farm, "unverified:tab-0", 5_000)).imageSource, "any");
      for (const { name, refusal } of hostile) {
        const line = await farm.waitForLog(new RegExp(`failed on session s\\d+: grabRender\\('tabfarm\\.camera'\\) on session s\\d+: .*${refusal.source}`), 30_000);
        assert.match(line, /^job demo-\d+ attempt \d+ failed/, `${name}: the attempt of a job failed`);
      }
      assert.deepEqual(answered, hostile.map((h) => h.name), "every hostile reply was sent");
      assert.deepEqual(filesUnder(path.join(farm.out, "images")), [], "no file was written for a refused frame");
      assert.deepEqual(tempFiles(farm.out), [], "and no temp file");
      assert.ok(!fs.existsSync(path.join(farm.out, "frames.jsonl")) || fs.readFileSync(path.join(farm.out, "frames.jsonl"), "utf8") === "", "no line");
      const rows = farm.jobRows();
      assert.ok(rows.every((r) => r.state !== "done" && r.state !== "failed"), `no job done or dead-lettered: ${JSON.stringify(rows)}`);
      assert.ok(rows.reduce((n, r) => n + r.attempts, 0) >= hostile.length, "each refusal counted an attempt");
    } finally {
      socket.disconnect();
    }

    // The server kept running: a real tab joins and does every job.
    const joined: Session[] = [];
    farm.run.farm.on("session", (session: Session) => joined.push(session));
    await farm.startTabs();
    const summary = await farm.finishedWithin(120_000);
    assert.equal(summary.counts.failed, 0);
    const records = checkDataset(farm.out, farm.expectedIds, { width: 160, height: 120 });
    const retried = records.filter((r) => r.attempt > 1);
    assert.ok(retried.length >= 1, "the spoiled jobs were retried");
    const sessions = new Set(records.map((r) => r.session));
    assert.equal(sessions.size, 1, "every line is the real tab's");
    const real = joined.find((j) => j.id === [...sessions][0]);
    assert.equal(real?.info.worker, "tab-0");
    assert.equal(real?.imageSource, "launched", "the farm's own tab, admitted with its proof");
    const out = farm.out;
    for (const r of records) {
      const { info } = await sharp(path.join(out, r.file)).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height], [160, 120], `${r.file} decodes (sharp)`);
    }
  });
});

describe("the size of every grab is the size the server asked for", { timeout: 120_000 }, () => {
  let clientDir = "";
  let farm: Farm;
  const sockets: FakeSocket[] = [];
  before(async () => {
    clientDir = await buildClient();
    farm = new Farm({ clientDir, log: () => {} });
    await farm.listen();
  });
  after(async () => {
    for (const s of sockets) s.disconnect();
    await farm?.close();
  });

  async function fakeSession(worker: string, answer: (request: GrabRequest) => GrabReply | undefined): Promise<{ session: Session; grabs: GrabRequest[] }> {
    const grabs: GrabRequest[] = [];
    sockets.push(hostileSocket(farm.url, farm.token, worker, (request) => (grabs.push(request), answer(request))));
    return { session: await sessionOf(farm, worker, 10_000), grabs };
  }

  it("a page's frame of another size is refused naming both sizes: downsample, updated size, depth, raw pixels; a camera never sent is not grabbed", { timeout: 20_000 }, async () => {
    let answer: (request: GrabRequest) => GrabReply | undefined = () => reply(png(160, 120), 160, 120);
    const { session, grabs } = await fakeSession("sizes", (request) => answer(request));
    const scene = (width: number, height: number): SceneElement => ({ tag: "Scene", key: "root", children: [{ tag: "CameraView", key: "cam", width, height }] });

    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: no CameraView with key 'cam' in the scene sent to this session/);
    assert.equal(grabs.length, 0, "nothing was asked of the page");

    session.set(scene(160, 120));
    assert.equal((await session.grabRender({ key: "cam", timeoutMs: 5000 })).width, 160);
    await assert.rejects(session.grabRender({ key: "cam", downsample: 2, timeoutMs: 5000 }), /the reply is 160×120, but 80×60 was asked for/);
    answer = () => reply(png(80, 60), 80, 60);
    assert.equal((await session.grabRender({ key: "cam", downsample: 2, timeoutMs: 5000 })).height, 60);

    session.update({ key: "cam", width: 200, height: 100 });
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /the reply is 80×60, but 200×100 was asked for/);
    answer = () => reply(png(200, 100), 200, 100);
    await session.grabRender({ key: "cam", timeoutMs: 5000 });

    // Depth: uint16 per pixel of the asked size.
    answer = () => reply(png(200, 100), 200, 100, { layers: { depth: Buffer.alloc(10 * 10 * 2) } });
    await assert.rejects(session.grabRender({ key: "cam", depth: true, timeoutMs: 5000 }), /layer depth is 200 bytes, not 200×100×2 bytes \(40000\)/);
    answer = () => reply(png(200, 100), 200, 100, { layers: { depth: Buffer.alloc(200 * 100 * 2) } });
    assert.ok((await session.grabRender({ key: "cam", depth: true, timeoutMs: 5000 })).depth);

    // Raw pixels (--encode server) of another size, announced as theirs or as asked.
    answer = () => reply(Buffer.alloc(10 * 10 * 4), 10, 10, { raw: true });
    await assert.rejects(session.grabRender({ key: "cam", encoding: "raw", timeoutMs: 5000 }), /the reply is 10×10, but 200×100 was asked for/);
    answer = () => reply(Buffer.alloc(10 * 10 * 4), 200, 100, { raw: true });
    await assert.rejects(session.grabRender({ key: "cam", encoding: "raw", timeoutMs: 5000 }), /raw frame of 400 bytes is not 200×100 RGBA/);

    // A camera removed is no longer grabbed.
    session.remove("cam");
    const before = grabs.length;
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /no CameraView with key 'cam'/);
    assert.equal(grabs.length, before);
    assert.equal(session.closed, false, "the session stays connected");
  });
});

describe("a real Chromium page's frames have exactly the size the server expects, through every op", { timeout: 150_000 }, () => {
  let browser: Browser | undefined;
  let farm: Farm | undefined;
  after(async () => {
    await browser?.close().catch(() => {});
    await farm?.close();
  });

  it("defaults, rounding, downsample (the view's and the grab's), update/upsert/add/remove, JPEG/WebP, depth and raw", { timeout: 140_000 }, async () => {
    farm = new Farm({ clientDir: await buildClient(), log: () => {} });
    await farm.listen();
    browser = await chromium.launch({ executablePath: findBrowser().path, headless: true, args: chromiumArgs("swiftshader") });
    const page = await browser.newPage({ viewport: { width: 320, height: 240 } });
    await page.goto(`${farm.url}&worker=sizes`);
    const session = await sessionOf(farm, "sizes", 30_000);
    const errors: string[] = [];
    session.on("sceneError", (m: string) => errors.push(m));
    const pose = { position: [3, 2, 3], lookAt: [0, 0, 0] };
    session.set({
      tag: "DefaultScene", key: "root", children: [
        { tag: "Box", key: "box" },
        { tag: "CameraView", key: "plain", ...pose },
        { tag: "CameraView", key: "odd", width: 161.4, height: 120.6, downsample: 3, ...pose },
        { tag: "Group", key: "rig", children: [{ tag: "CameraView", key: "inner", width: 64, height: 48, ...pose }] },
      ],
    });
    const grab = async (key: string, options: { downsample?: number; format?: "png" | "jpeg" | "webp"; depth?: boolean; encoding?: "raw" } = {}) => {
      const frame = await session.grabRender({ key, timeoutMs: 30_000, ...options });
      const { info } = await sharp(frame.image).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height], [frame.width, frame.height], `${key}: the bytes decode at the size the frame says`);
      return [frame.width, frame.height];
    };
    assert.deepEqual(await grab("plain"), [640, 480], "no size props: 640×480");
    assert.deepEqual(await grab("odd"), [53, 40], "round(161.4)/3, round(120.6)/3, rounded down");
    assert.deepEqual(await grab("odd", { downsample: 2 }), [80, 60], "the grab's downsample wins");
    assert.deepEqual(await grab("inner", { format: "jpeg" }), [64, 48]);
    assert.deepEqual(await grab("inner", { format: "webp" }), [64, 48]);
    assert.deepEqual(await grab("inner", { depth: true }), [64, 48]);
    assert.deepEqual(await grab("inner", { encoding: "raw" }), [64, 48]);
    session.update({ key: "odd", width: null, downsample: null, height: 99 });
    assert.deepEqual(await grab("odd"), [640, 99], "a prop set to null falls back to the default");
    session.update({ key: "odd", width: undefined, height: 50 });
    assert.deepEqual(await grab("odd"), [640, 50], "a prop sent as undefined is left as it was");
    session.upsert({ tag: "CameraView", key: "inner", width: 30, height: 20 });
    assert.deepEqual(await grab("inner"), [30, 20]);
    session.update({ key: "rig", children: [{ tag: "CameraView", key: "inner2", width: 12, height: 10, downsample: 2, ...pose }] });
    assert.deepEqual(await grab("inner2"), [6, 5]);
    session.remove("rig");
    session.add({ tag: "CameraView", key: "inner2", width: 7, height: 9, ...pose }, "root");
    assert.deepEqual(await grab("inner2"), [7, 9]);
    assert.deepEqual(errors, [], "no op failed on the page");
  });
});

describe("layers: everything a page sends for them is checked; a bad reply is refused naming the layer and the session goes on", { timeout: 60_000 }, () => {
  let farm: Farm;
  let clientDir = "";
  const sockets: FakeSocket[] = [];
  before(async () => {
    // Only the socket is used here: a stand-in page, no build needed.
    clientDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-layers-"));
    fs.writeFileSync(path.join(clientDir, "index.html"), "<!doctype html>");
    farm = new Farm({ clientDir, log: () => {}, classes: new ClassTable([["cup", 7]]) });
    await farm.listen();
  });
  after(async () => {
    for (const s of sockets) s.disconnect();
    await farm?.close();
    fs.rmSync(clientDir, { recursive: true, force: true });
  });

  const W = 4, H = 3;
  const u16 = (values: number[]) => Buffer.from(Uint16Array.from(values).buffer);
  const identity = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]];
  // ids: crate 1 (a), cup 2 (b); c (3) hidden behind them.
  const MASK = [0, 1, 1, 0, 0, 1, 2, 2, 0, 0, 2, 2];
  const scene = (...extra: SceneElement[]): SceneElement => ({
    tag: "Scene", key: "root", children: [
      { tag: "CameraView", key: "cam", width: W, height: H },
      { tag: "Box", key: "a", label: "crate" }, { tag: "Box", key: "b", label: "cup" }, { tag: "Box", key: "c" }, ...extra,
    ],
  });

  async function page(worker: string) {
    let answer: (request: GrabRequest) => GrabReply | undefined = () => undefined;
    const grabs: GrabRequest[] = [];
    sockets.push(hostileSocket(farm.url, farm.token, worker, (request) => (grabs.push(request), answer(request))));
    const session = await sessionOf(farm, worker, 10_000);
    return { session, grabs, answer: (fn: (request: GrabRequest) => GrabReply | undefined) => void (answer = fn) };
  }
  const packed = (boxes: Array<{ id: number; min: number[]; max: number[]; objectToWorld: number[][] }>) => Buffer.from(packBoxes3d(boxes as Box3dWire[]));
  const maskReply = (mask: number[], extra: Partial<GrabReply> = {}) => reply(png(W, H), W, H, { layers: { mask: u16(mask) }, ...extra } as Partial<GrabReply>);

  it("a mask grab: the page is asked for the resolved layers; files, instances with class and 3D box, and layers come back", async () => {
    const { session, grabs, answer } = await page("layers-good");
    session.set(scene());
    answer(() => maskReply(MASK, { boxes3d: packed([{ id: 2, min: [0, 0, 0], max: [1, 1, 1], objectToWorld: identity }]) } as Partial<GrabReply>));
    const frame = await session.grabRender({ key: "cam", layers: ["class", "boxes"], timeoutMs: 5000 });
    assert.deepEqual(grabs.at(-1)!.layers, ["rgb", "mask", "class", "boxes"], "the page gets the resolved list");
    assert.deepEqual(frame.layers, ["rgb", "mask", "class", "boxes"]);
    assert.deepEqual(Object.keys(frame.files).sort(), ["class", "mask"]);
    assert.equal(frame.depth, undefined);
    assert.deepEqual(frame.instances!.map(({ box3d, ...rest }) => ({ ...rest, corners: box3d?.corners.length })), [
      { id: 1, key: "a", label: "crate", class: 1, pixels: 3, bbox: [1, 0, 2, 2], corners: undefined },
      { id: 2, key: "b", label: "cup", class: 7, pixels: 4, bbox: [2, 1, 2, 2], corners: 8 },
    ]);
    assert.deepEqual(farm.classes.entries(), [{ id: 1, label: "crate" }, { id: 7, label: "cup" }], "the farm's table: given, and new labels at the lowest free id");
    const { data, info } = await sharp(frame.files.class!).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [W, H]);
    assert.deepEqual(Array.from(new Uint16Array(data.buffer, data.byteOffset, W * H)), MASK.map((id) => [0, 1, 7][id]));
  });

  it("the mask is checked against the scene as it was when the grab was sent, not as later ops made it", async () => {
    const { session, answer } = await page("layers-snapshot");
    session.set(scene());
    answer(() => maskReply([...MASK.slice(0, 11), 4]));
    const grab = session.grabRender({ key: "cam", layers: ["mask"], timeoutMs: 5000 });
    session.add({ tag: "Box", key: "late" }, "root"); // id 4, but after the grab
    await assert.rejects(grab, /grabRender\('cam'\) on session s\d+: the mask has id 4 at pixel \(3, 2\), which no element of the scene has \(its ids: 1, 2, 3\)/);
    answer(() => maskReply(MASK));
    const kept = session.grabRender({ key: "cam", layers: ["mask"], timeoutMs: 5000 });
    session.remove("a");
    assert.equal((await kept).instances![0]!.key, "a", "a removed after the grab is still named by it");
  });

  it("refuses at once, asking the page nothing, a grab whose scene's ids are wrong, or whose reply could not arrive whole", async () => {
    const { session, grabs, answer } = await page("layers-refused");
    answer(() => maskReply(MASK));
    session.set(scene());
    session.add({ tag: "Box", key: "clash", instance: 2 }, "root"); // 2 is b's automatic id by now
    await assert.rejects(session.grabRender({ key: "cam", layers: ["mask"], timeoutMs: 5000 }), /layers rgb, mask need instance ids, but the scene's are wrong: element 'clash': instance 2 is already the automatic id of 'b'/);
    session.set(scene({ tag: "Box", key: "bad", instance: 1.5 }));
    await assert.rejects(session.grabRender({ key: "cam", layers: ["boxes"], timeoutMs: 5000 }), /element 'bad': instance must be a whole number/);
    session.set({ tag: "Scene", key: "root", children: [{ tag: "CameraView", key: "huge", width: 8192, height: 8192 }] });
    await assert.rejects(session.grabRender({ key: "huge", layers: ["depth32"], timeoutMs: 5000 }), /layer depth32 of a 8192×8192 frame is 268435456 bytes, over the 68157440-byte limit of one message/);
    session.set({ tag: "Scene", key: "root", children: [{ tag: "CameraView", key: "big", width: 4096, height: 4096 }] });
    await assert.rejects(session.grabRender({ key: "big", layers: ["depth32", "mask", "normal"], timeoutMs: 5000 }), /the reply to layers rgb, depth32, mask, normal of a 4096×4096 frame could hold \d+ bytes, over the 136314880-byte limit of one reply/);
    assert.equal(grabs.length, 0, "the page was asked for nothing");
    session.set(scene());
    assert.ok((await session.grabRender({ key: "cam", layers: ["depth"], timeoutMs: 5000 }).catch((err: Error) => err)) instanceof Error, "layers without ids are still grabbed (and this reply lacks depth)");
    assert.equal(grabs.length, 1);
  });

  it("hostile replies: wrong length or type, unasked or unknown layers, the old depth field, bad boxes3d, NaN depth32, unknown mask ids", async () => {
    const { session, answer } = await page("layers-hostile");
    session.set(scene());
    const f32 = (values: number[]) => Buffer.from(Float32Array.from(values).buffer);
    const cases: Array<{ layers: GrabRequest["layers"]; reply: Partial<GrabReply> & Record<string, unknown>; refusal: RegExp }> = [
      { layers: ["mask"], reply: { layers: { mask: u16(MASK).subarray(1) } }, refusal: /layer mask is 23 bytes, not 4×3×2 bytes \(24\)/ },
      { layers: ["mask"], reply: { layers: { mask: "AAAA" } }, refusal: /layer mask is not binary data/ },
      { layers: ["mask"], reply: { layers: {} }, refusal: /layer mask is missing/ },
      { layers: ["mask"], reply: { layers: { normal: Buffer.alloc(W * H * 3) } }, refusal: /the reply has layer 'normal', which was not asked for \(asked for: mask\)/ },
      { layers: ["depth"], reply: { layers: { depth: Buffer.alloc(W * H * 2), gloss: 1 } }, refusal: /the reply has layer 'gloss', which was not asked for/ },
      { layers: ["depth"], reply: { depth: Buffer.alloc(W * H * 2) }, refusal: /the reply's layers are not an object of binary layers \(asked for: depth\)/ },
      { layers: [], reply: { layers: { depth: Buffer.alloc(W * H * 2) } }, refusal: /the reply has layer 'depth', which was not asked for \(asked for: none\)/ },
      { layers: ["depth32"], reply: { layers: { depth32: f32([1, 2, 3, 4, 5, NaN, 7, 8, 9, 10, 11, 12]) } }, refusal: /layer depth32 has NaN at pixel \(1, 1\)/ },
      { layers: ["depth32"], reply: { layers: { depth32: f32([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -Infinity]) } }, refusal: /layer depth32 has -Infinity at pixel \(3, 2\)/ },
      { layers: ["mask"], reply: { layers: { mask: u16(MASK.map((id) => (id === 2 ? 9 : id))) } }, refusal: /the mask has id 9 at pixel \(2, 1\)/ },
      { layers: ["boxes"], reply: { layers: { mask: u16(MASK) } }, refusal: /boxes3d is missing/ },
      { layers: ["boxes"], reply: { layers: { mask: u16(MASK) }, boxes3d: "[]" }, refusal: /boxes3d is not binary data/ },
      { layers: ["mask"], reply: { layers: { mask: u16(MASK) }, boxes3d: packed([{ id: 1, min: [NaN, 0, 0], max: [1, 1, 1], objectToWorld: identity }]) }, refusal: /boxes3d\[0\]: .*min/ },
      { layers: ["mask"], reply: { layers: { mask: u16(MASK) }, boxes3d: packed([{ id: 9, min: [0, 0, 0], max: [1, 1, 1], objectToWorld: identity }]) }, refusal: /boxes3d\[0\] is for id 9, which no element of the scene has/ },
      { layers: ["mask"], reply: { layers: { mask: u16(MASK) }, boxes3d: packed(Array.from({ length: 4 }, () => ({ id: 1, min: [0, 0, 0], max: [1, 1, 1], objectToWorld: identity }))) }, refusal: /boxes3d has 4 entries, but the scene has 3 instance\(s\)/ },
    ];
    for (const { layers, reply: extra, refusal } of cases) {
      answer(() => reply(png(W, H), W, H, extra as Partial<GrabReply>));
      await assert.rejects(session.grabRender({ key: "cam", layers, timeoutMs: 5000 }), (err: Error) => {
        assert.match(err.message, new RegExp(`^grabRender\\('cam'\\) on session s\\d+: ${refusal.source}`), `${refusal}: ${err.message}`);
        return true;
      });
    }
    assert.equal(session.closed, false, "the session is still connected");
    answer(() => reply(png(W, H), W, H, { layers: { depth32: f32(new Array(W * H).fill(2.5)) } } as Partial<GrabReply>));
    const frame = await session.grabRender({ key: "cam", layers: ["depth32"], timeoutMs: 5000 });
    assert.equal(frame.files.depth32!.readUInt16LE(8) + 10 + W * H * 4, frame.files.depth32!.length, "and delivers a good depth32 frame");
  });
});

// Bad input against a real Farm: wrong tokens, floods, lying or slow sessions, oversized frames, and a
// real Chromium page given a frame limit it cannot meet, a glTF that 404s and unknown tags. Every case
// checks that the error names the input AND that the server is still serving afterwards.
//
// Run: node --import tsx --test tests/integration/badInput.test.ts
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { PNG } from "pngjs";
import { io, type Socket as ClientSocket } from "socket.io-client";
import { chromium, type Browser } from "playwright-core";
import { Farm, type FarmOptions } from "../../server/session/Farm.js";
import type { Session } from "../../server/session/Session.js";
import type { BrowserInfo, ClientToServerEvents, ServerToClientEvents } from "../../protocol/events.js";
import type { GrabReply, GrabRequest } from "../../protocol/grab.js";
import { FARM_CAMERA_KEY, withFarmCamera } from "../../server/dispatch/farmCamera.js";
import { buildClient } from "../../harness/buildClient.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { chromiumArgs } from "../../harness/chromiumFlags.js";

type FakeSocket = ClientSocket<ServerToClientEvents, ClientToServerEvents>;

// ---------- helpers ----------

let clientDir = "";
const farms: Farm[] = [];
const sockets: FakeSocket[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (err: unknown) => void unhandled.push(err);

before(async () => {
  process.on("unhandledRejection", onUnhandled);
  clientDir = await buildClient();
});

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.allSettled(farms.map((f) => f.close()));
  process.off("unhandledRejection", onUnhandled);
});

async function startFarm(limits: Partial<FarmOptions> = {}): Promise<{ farm: Farm; logs: string[]; origin: string }> {
  const logs: string[] = [];
  const farm = new Farm({ clientDir, log: (l) => logs.push(l), ...limits });
  farms.push(farm);
  await farm.listen();
  assert.match(farm.url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=/);
  return { farm, logs, origin: new URL(farm.url).origin };
}

/** Resolves with what `register` hands to its callback, or rejects after `ms` naming `what`. */
function within<T>(ms: number, what: string, register: (done: (value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

function connect(origin: string, auth: Record<string, unknown>): FakeSocket {
  const socket: FakeSocket = io(origin, { auth, transports: ["websocket"], reconnection: false, forceNew: true, timeout: 5000 });
  sockets.push(socket);
  return socket;
}

/** Connects; resolves "connected" or the connect_error message. */
function outcome(socket: FakeSocket, ms = 5000): Promise<string> {
  return within(ms, "connect or connect_error", (done) => {
    socket.once("connect", () => done("connected"));
    socket.once("connect_error", (err) => done(err.message));
  });
}

function waitSession(farm: Farm, worker: string, ms = 10_000): Promise<Session> {
  return within(ms, `session '${worker}' to say hello`, (done) => {
    const onSession = (s: Session) => {
      if (s.info.worker !== worker) return;
      farm.off("session", onSession);
      done(s);
    };
    farm.on("session", onSession);
  });
}

const helloInfo = (worker: string): BrowserInfo => ({ renderer: "fake", vendor: "", webgl: true, userAgent: "t", devicePixelRatio: 1, worker });

type Answer = (request: GrabRequest) => GrabReply | undefined | Promise<GrabReply | undefined>;

/** A socket.io-client that says hello and answers grabs with whatever `answer` returns (undefined: no answer). */
async function fakeSession(farm: Farm, origin: string, worker: string, answer: Answer): Promise<{ socket: FakeSocket; session: Session; setAnswer(a: Answer): void }> {
  let current = answer;
  const joined = waitSession(farm, worker);
  const socket = connect(origin, { token: farm.token });
  socket.on("connect", () => socket.emit("hello", helloInfo(worker)));
  socket.on("grab", async (_seq, request, ack) => {
    const reply = await current(request);
    if (reply !== undefined) ack(reply);
  });
  const session = await joined;
  // The fakes answer grabs of 'cam' with 160×120 frames: the server only takes a frame of the size it
  // asked for, which it knows from the CameraView it sent.
  session.set({ tag: "Scene", key: "root", children: [{ tag: "CameraView", key: "cam", width: 160, height: 120 }] });
  return { socket, session, setAnswer: (a) => (current = a) };
}

const CAMERA = {
  K: [[100, 0, 80], [0, 100, 60], [0, 0, 1]],
  cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]],
  fov: 60, near: 0.1, far: 100,
};

function makePng(width: number, height: number, noise = false): Buffer {
  const png = new PNG({ width, height });
  let seed = 12345;
  for (let i = 0; i < png.data.length; i += 4) {
    if (noise) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      png.data.writeUInt32BE((seed | 0xff) >>> 0, i);
    } else png.data.writeUInt32BE(0x3366ccff, i);
  }
  return PNG.sync.write(png);
}

const okReply = (image: Buffer, width: number, height: number): GrabReply => ({
  ok: true, image, width, height, format: "png", camera: CAMERA, renderMs: 1, encodeMs: 1,
});

/** The server still works: the client page answers without a token, and a good session can connect and grab. */
async function assertServing(farm: Farm, origin: string, probeWorker?: string): Promise<void> {
  const res = await fetch(`${origin}/index.html`);
  assert.equal(res.status, 200, "GET /index.html still answers");
  assert.match(await res.text(), /<html/i);
  if (probeWorker) {
    const good = makePng(160, 120);
    const { session, socket } = await fakeSession(farm, origin, probeWorker, () => okReply(good, 160, 120));
    const frame = await session.grabRender({ key: "cam", timeoutMs: 5000 });
    assert.deepEqual([frame.width, frame.height], [160, 120]);
    socket.disconnect();
  }
}

// ---------- the cases ----------

describe("bad input: the server names the problem and keeps serving", { timeout: 120_000 }, () => {
  it("1. refuses a wrong or missing token with a reason, logs it, admits the right one", { timeout: 20_000 }, async () => {
    // A short hello timeout: the admitted probe socket never says hello, and its timer outlives farm.close().
    const { farm, logs, origin } = await startFarm({ helloTimeoutMs: 2000 });
    const wrong = await outcome(connect(origin, { token: "not-the-token" }));
    assert.match(wrong, /wrong access token/);
    const missing = await outcome(connect(origin, {}));
    assert.match(missing, /missing access token/);
    const nonString = await outcome(connect(origin, { token: { $ne: null } }));
    assert.match(nonString, /wrong access token/, "a non-string token is refused as wrong");
    const refusals = logs.filter((l) => /refused a connection/.test(l));
    assert.ok(refusals.length >= 3, `refusals logged:\n${logs.join("\n")}`);
    assert.ok(refusals.some((l) => /wrong access token/.test(l)) && refusals.some((l) => /missing access token/.test(l)));
    assert.ok(!logs.join("\n").includes(farm.token), "the real token is never logged");
    assert.equal(await outcome(connect(origin, { token: farm.token })), "connected");
    await assertServing(farm, origin, "after-tokens");
  });

  it("2. HTTP API: 401 without token, 403 wrong, 200 right (query or Bearer), static files public, 404 unknown route", { timeout: 20_000 }, async () => {
    const { farm, origin } = await startFarm();
    const none = await fetch(`${origin}/api/status`);
    assert.equal(none.status, 401);
    assert.match((await none.json()).error, /access token required/);
    const wrong = await fetch(`${origin}/api/status?token=nope`);
    assert.equal(wrong.status, 403);
    assert.match((await wrong.json()).error, /wrong access token/);
    const wrongBearer = await fetch(`${origin}/api/status`, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrongBearer.status, 403);
    const byQuery = await fetch(`${origin}/api/status?token=${encodeURIComponent(farm.token)}`);
    assert.equal(byQuery.status, 200);
    assert.match(byQuery.headers.get("content-type") ?? "", /application\/json/);
    assert.deepEqual(await byQuery.json(), { sessions: 0 });
    const byBearer = await fetch(`${origin}/api/status`, { headers: { authorization: `Bearer ${farm.token}` } });
    assert.equal(byBearer.status, 200);
    assert.deepEqual(await byBearer.json(), { sessions: 0 });
    const index = await fetch(`${origin}/`);
    assert.equal(index.status, 200, "the client page needs no token");
    assert.match(await index.text(), /<html/i);
    const nope = await fetch(`${origin}/api/nope?token=${encodeURIComponent(farm.token)}`);
    assert.equal(nope.status, 404);
    assert.match((await nope.json()).error, /no route GET \/api\/nope/);
    const post = await fetch(`${origin}/api/status?token=${encodeURIComponent(farm.token)}`, { method: "POST", body: "{}" });
    assert.equal(post.status, 404);
    assert.match((await post.json()).error, /no route POST \/api\/status/);
    const missingFile = await fetch(`${origin}/no/such/file.js`);
    assert.equal(missingFile.status, 404);
    const badEscape = await fetch(`${origin}/%E0%A4%A`);
    assert.ok(badEscape.status >= 400 && badEscape.status < 500, `malformed escape answered ${badEscape.status}`);
    farm.setStatus(() => {
      throw new Error("status provider broke");
    });
    const broken = await fetch(`${origin}/api/status?token=${encodeURIComponent(farm.token)}`);
    assert.equal(broken.status, 500);
    assert.match((await broken.json()).error, /status provider broke/);
    await assertServing(farm, origin, "after-http");
  });

  it("3. a flood of connections with the right token is capped by --max-sessions only, never by a rate limiter; HTTP keeps answering", { timeout: 30_000 }, async () => {
    const { farm, logs, origin } = await startFarm({ maxSessions: 50, failedAuthPer10s: 20 });
    const flood: FakeSocket[] = [];
    for (let i = 0; i < 200; i++) flood.push(connect(origin, { token: farm.token }));
    const results = await Promise.all(flood.map((s) => outcome(s, 15_000).catch((e: Error) => `no outcome: ${e.message}`)));
    for (const s of flood) s.disconnect();
    const connected = results.filter((r) => r === "connected").length;
    const full = results.filter((r) => /server full \(50 sessions\)/.test(r)).length;
    assert.equal(connected + full, 200, `every attempt either connected or met the session cap: ${[...new Set(results)].join(" | ")}`);
    assert.equal(connected, 50, "exactly the cap was admitted");
    const refusalLines = logs.filter((l) => /refused a connection/.test(l));
    assert.ok(refusalLines.length >= 1 && refusalLines.length <= 25, `refusal log lines are bounded (got ${refusalLines.length})`);
    assert.ok(logs.length <= 25 + 25, `whole log is bounded (got ${logs.length} lines)`);
    await assertServing(farm, origin);
    const status = await fetch(`${origin}/api/status`, { headers: { authorization: `Bearer ${farm.token}` } });
    assert.equal(status.status, 200);
  });

  it("4. a message flood gets the socket disconnected, and the server stays up", { timeout: 20_000 }, async () => {
    const { farm, logs, origin } = await startFarm({ messagesPerSecond: 20 });
    const { socket, session } = await fakeSession(farm, origin, "flood", () => undefined);
    const dropped = within<string>(10_000, "the flooding socket to be disconnected", (done) => socket.once("disconnect", (reason) => done(reason)));
    const closed = within<string>(10_000, "the flooding session to close", (done) => session.once("close", (reason: string) => done(reason)));
    for (let i = 0; i < 2000; i++) socket.emit("sceneError", { seq: i, message: `flood ${i}` });
    assert.equal(await dropped, "io server disconnect");
    await closed;
    assert.equal(session.closed, true);
    assert.equal(farm.sessions.has(session.id), false, "the session was removed");
    assert.ok(session.sceneErrors.length <= 100, `scene errors kept are bounded (${session.sceneErrors.length})`);
    const floodLines = logs.filter((l) => /more than 20 messages a second/.test(l));
    assert.ok(floodLines.length >= 1 && floodLines.length <= 25, `flood logged, bounded (got ${floodLines.length}):\n${logs.slice(0, 5).join("\n")}`);
    await assertServing(farm, origin, "after-flood");
  });

  it("5. a session lying about its frame: not a PNG, wrong size, over the limit, malformed; the socket survives", { timeout: 30_000 }, async () => {
    const { farm, origin } = await startFarm({ maxFrameBytes: 2000 });
    const good = makePng(160, 120);
    assert.ok(good.length < 2000, `a flat 160×120 PNG is small (${good.length} bytes)`);
    const big = makePng(160, 120, true);
    assert.ok(big.length > 2000, `a noisy 160×120 PNG is big (${big.length} bytes)`);
    const seen: GrabRequest[] = [];
    const { socket, session, setAnswer } = await fakeSession(farm, origin, "liar", (req) => (seen.push(req), okReply(Buffer.from("this is not a png image at all"), 160, 120)));
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: payload of 30 bytes is not a png image/);
    assert.equal(seen[0]?.maxBytes, 2000, "the page is told the server's limit");

    setAnswer(() => okReply(makePng(10, 10), 160, 120));
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\).*png is 10×10, but 160×120 was asked for/);

    setAnswer(() => okReply(big, 160, 120));
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), new RegExp(`image of ${big.length} bytes is over the 2000-byte limit`));

    setAnswer(() => ({ ok: true, image: makePng(160, 120), width: 160, height: 120, format: "jpeg", camera: CAMERA, renderMs: 1, encodeMs: 1 }));
    await assert.rejects(session.grabRender({ key: "cam", format: "jpeg", timeoutMs: 5000 }), /is not a jpeg image/);

    setAnswer(() => null as unknown as GrabReply);
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: malformed reply/);

    setAnswer(() => ({ ok: false, error: "the page says no" }));
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+ failed: the page says no/);

    assert.equal(session.closed, false, "the session is still connected");
    assert.equal(socket.connected, true);
    setAnswer(() => okReply(good, 160, 120));
    const frame = await session.grabRender({ key: "cam", timeoutMs: 5000 });
    assert.deepEqual([frame.width, frame.height, frame.image.length], [160, 120, good.length]);
    assert.ok(frame.image.equals(good));
  });

  it("5b. a reply larger than the socket's buffer drops that socket only; the grab names the disconnect", { timeout: 20_000 }, async () => {
    const { farm, origin } = await startFarm({ maxFrameBytes: 2000 });
    const huge = Buffer.alloc(2000 + 1024 * 1024 + 4096, 7); // over maxHttpBufferSize (maxFrameBytes + 1 MiB)
    const { session } = await fakeSession(farm, origin, "huge", () => okReply(huge, 160, 120));
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 8000 }), /grabRender|session s\d+ disconnected/);
    assert.equal(session.closed, true);
    await assertServing(farm, origin, "after-huge");
  });

  it("5c. a session that never says hello is dropped after helloTimeoutMs", { timeout: 20_000 }, async () => {
    const { farm, logs, origin } = await startFarm({ helloTimeoutMs: 300 });
    const silent = connect(origin, { token: farm.token });
    assert.equal(await outcome(silent), "connected");
    const reason = await within<string>(5000, "the silent socket to be dropped", (done) => silent.once("disconnect", (r) => done(r)));
    assert.equal(reason, "io server disconnect");
    assert.ok(logs.some((l) => /no hello within 300 ms/.test(l)), logs.join("\n"));
    await assertServing(farm, origin, "after-silent");
  });

  it("6. a reply after the grab's timeout: grabRender rejects naming the wait, the late ack is ignored", { timeout: 20_000 }, async () => {
    const { farm, logs, origin } = await startFarm();
    const good = makePng(160, 120);
    let lateAcks = 0;
    // The reply comes long after the timeout, so a slow machine cannot blur which of the two ended the wait.
    const { session, setAnswer } = await fakeSession(farm, origin, "late", async () => {
      await delay(3000);
      lateAcks++;
      return okReply(good, 160, 120);
    });
    const before = unhandled.length;
    const started = Date.now();
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 300 }), /grabRender\('cam'\) on session s\d+ got no answer within 300 ms/);
    assert.ok(Date.now() - started < 2500, "rejected at the timeout, not at the reply");
    for (let i = 0; i < 100 && lateAcks === 0; i++) await delay(100); // the late ack arrives now
    await delay(200); // and the server has had it
    assert.equal(lateAcks, 1, "the page did answer, late");
    assert.equal(unhandled.length, before, `no unhandled rejection: ${unhandled.map(String).join("; ")}`);
    assert.equal(session.closed, false);
    assert.ok(!logs.some((l) => /error|failed/i.test(l)), logs.join("\n"));
    setAnswer(() => okReply(good, 160, 120));
    const frame = await session.grabRender({ key: "cam", timeoutMs: 5000 });
    assert.equal(frame.width, 160);
    await assertServing(farm, origin);
  });

  it("6b. API misuse fails in the caller: bad grab key, bad op, closed session", { timeout: 20_000 }, async () => {
    const { farm, origin } = await startFarm();
    const { session, socket } = await fakeSession(farm, origin, "misuse", () => undefined);
    assert.throws(() => session.set({ tag: "Box" } as never), (err: Error) => err instanceof TypeError && /session\.set: invalid set op: scene\.key/.test(err.message));
    assert.throws(() => session.update({ key: "has space" }), (err: Error) => err instanceof TypeError && /session\.update: .*nodes\.0\.key: key may hold only/.test(err.message));
    assert.throws(() => session.remove(""), (err: Error) => err instanceof TypeError && /session\.remove: .*keys\.0: key must not be empty/.test(err.message));
    // A bad grab request rejects (like every other grab failure) with a message naming the field.
    await assert.rejects(session.grabRender({ key: "../etc" }), /session\.grabRender: key: key may hold only letters/);
    const closed = within<void>(5000, "the session to close", (done) => session.once("close", () => done()));
    socket.disconnect();
    await closed;
    assert.throws(() => session.set({ tag: "Box", key: "b" }), /session s\d+ is closed/);
    await assert.rejects(session.grabRender({ key: "cam" }), /session s\d+ is closed/);
    await assertServing(farm, origin, "after-misuse");
  });

  it("5d. a reply with no binary image, a size that is not a number, or bad camera metadata is refused naming the field", { timeout: 10_000 }, async () => {
    const { farm, origin } = await startFarm();
    const good = makePng(160, 120);
    const { session, setAnswer } = await fakeSession(farm, origin, "bad-fields", () => ({ ok: true, width: 160, height: 120, format: "png", camera: CAMERA, renderMs: 1, encodeMs: 1 }) as unknown as GrabReply);
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: .*image/);
    setAnswer(() => ({ ...okReply(good, 160, 120), image: 12345 }) as unknown as GrabReply);
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: .*image/);
    // "160" as a string once gave the baffling "png is 160×120, but 160×120 was announced".
    setAnswer(() => ({ ...okReply(good, 160, 120), width: "160" }) as unknown as GrabReply);
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: .*width/);
    // Without this check a missing camera reached JobContext.saveFrame, which wrote the file and then threw
    // "Cannot read properties of undefined (reading 'K')".
    setAnswer(() => ({ ...okReply(good, 160, 120), camera: undefined }) as unknown as GrabReply);
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: .*camera/);
    setAnswer(() => ({ ...okReply(good, 160, 120), camera: { K: "x", cameraToWorld: null, fov: "wide" } }) as unknown as GrabReply);
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /grabRender\('cam'\) on session s\d+: .*camera/);
    assert.equal(session.closed, false);
    setAnswer(() => okReply(good, 160, 120));
    const frame = await session.grabRender({ key: "cam", timeoutMs: 5000 });
    assert.deepEqual(frame.camera.K, CAMERA.K);
  });

  it("5e. a failed reply whose error is not a string, and replies that are not objects, are refused naming the grab", { timeout: 10_000 }, async () => {
    const { farm, origin } = await startFarm();
    const { session, setAnswer } = await fakeSession(farm, origin, "bad-failures", () => undefined);
    // {toString: 1} once made String() throw "Cannot convert object to primitive value", naming nothing.
    for (const error of [{ toString: 1 }, { toString: 1, valueOf: 1 }, ["a"], 42, null, undefined]) {
      setAnswer(() => ({ ok: false, error }) as unknown as GrabReply);
      await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /^Error: grabRender\('cam'\) on session s\d+ failed: the page gave no error message$/, JSON.stringify(error));
    }
    // Longer than what is kept (pages send at most 64 KB of text per message; see the access tests).
    setAnswer(() => ({ ok: false, error: "x".repeat(10_000) }) as unknown as GrabReply);
    await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), (err: Error) => /failed: x+$/.test(err.message) && err.message.length < 2100);
    for (const reply of [[1, 2], 7, "ok", true, { ok: "true" }]) {
      setAnswer(() => reply as unknown as GrabReply);
      await assert.rejects(session.grabRender({ key: "cam", timeoutMs: 5000 }), /^Error: grabRender\('cam'\) on session s\d+( failed)?: /, JSON.stringify(reply));
    }
    assert.equal(session.closed, false);
  });

  // ---- Regression tests for bugs found here and fixed. ----

  it(
    "a socket that leaves before saying hello is not logged as 'dropped … no hello' later",
    { timeout: 10_000 },
    async () => {
      const { farm, logs, origin } = await startFarm({ helloTimeoutMs: 2000 });
      const early = connect(origin, { token: farm.token });
      assert.equal(await outcome(early), "connected");
      early.disconnect();
      await delay(3000); // past the hello timeout
      assert.deepEqual(logs.filter((l) => /no hello within/.test(l)), [], "nothing to drop: the socket had already gone");
    },
  );

  it(
    "grabRender with a bad request rejects with a TypeError naming grabRender and the field",
    { timeout: 10_000 },
    async () => {
      const { farm, origin } = await startFarm();
      const { session } = await fakeSession(farm, origin, "bad-request", () => undefined);
      await assert.rejects(session.grabRender({ key: "../etc" }), (err: Error) => err instanceof TypeError && /^session\.grabRender: .*key/.test(err.message));
    },
  );
});

describe("bad input with a real Chromium page", { timeout: 90_000 }, () => {
  let browser: Browser | undefined;
  after(async () => {
    await browser?.close().catch(() => {});
  });

  it("7. frame over the limit, a glTF that 404s, unknown tags and bad ops: named, and the page keeps working", { timeout: 80_000 }, async () => {
    const { farm, origin } = await startFarm({ maxFrameBytes: 1000 });
    browser = await chromium.launch({ executablePath: findBrowser().path, headless: true, args: chromiumArgs("swiftshader") });
    const page = await browser.newPage({ viewport: { width: 320, height: 240 } });
    const joined = waitSession(farm, "real", 30_000);
    await page.goto(`${farm.url}&worker=real`);
    const session = await joined;
    assert.ok(session.info.webgl, `the page has WebGL (${session.info.renderer})`);
    const sceneErrors: string[] = [];
    session.on("sceneError", (m: string) => sceneErrors.push(m));

    // (a) a 320×240 frame cannot fit in 1000 bytes: the page says so instead of sending it.
    const scene = { tag: "DefaultScene", key: "root", children: [{ tag: "Box", key: "box", color: "#ff8800" }, { tag: "TorusKnot", key: "knot", position: [1.5, 0, 0] }] };
    session.set(withFarmCamera(scene, 320, 240, { position: [4, 3, 4], lookAt: [0, 0, 0] }));
    await assert.rejects(
      session.grabRender({ key: FARM_CAMERA_KEY, timeoutMs: 20_000 }),
      /grabRender\('tabfarm\.camera'\) on session s\d+ failed: encoded png is \d+ bytes, over the server's limit of 1000/,
    );
    assert.equal(session.closed, false, "the session stays connected");
    session.add({ tag: "CameraView", key: "tiny", width: 8, height: 8, stream: "ondemand", position: [4, 3, 4], lookAt: [0, 0, 0] }, "tabfarm.root");
    const tiny = await session.grabRender({ key: "tiny", timeoutMs: 20_000 });
    assert.ok(tiny.image.length < 1000, `an 8×8 PNG fits (${tiny.image.length} bytes)`);
    const decoded = PNG.sync.read(tiny.image);
    assert.deepEqual([decoded.width, decoded.height, tiny.width, tiny.height], [8, 8, 8, 8]);

    // (b) a glTF whose URL 404s fails the next grab naming the element and the URL.
    session.add({ tag: "Gltf", key: "missing-model", url: "/nope.glb" }, "root");
    await assert.rejects(
      session.grabRender({ key: "tiny", timeoutMs: 20_000 }),
      (err: Error) => /Gltf 'missing-model' failed to load \/nope\.glb/.test(err.message) && /404/.test(err.message),
    );
    // Also reported by itself as a sceneError event (it may land just after the grab's reply: events go
    // through the server's async rate-limit middleware, acks do not).
    for (let i = 0; i < 40 && !sceneErrors.some((m) => /Gltf 'missing-model'/.test(m)); i++) await delay(50);
    assert.ok(sceneErrors.some((m) => /Gltf 'missing-model' failed to load \/nope\.glb/.test(m)), `reported as a sceneError: ${sceneErrors.join(" | ")}`);
    session.remove("missing-model");
    const afterGltf = await session.grabRender({ key: "tiny", timeoutMs: 20_000 });
    assert.equal(afterGltf.width, 8);

    // (c) an unknown tag (add), a tag change (update) and a missing node: each named by the next grab.
    session.add({ tag: "NoSuchTag", key: "mystery" }, "root");
    await assert.rejects(session.grabRender({ key: "tiny", timeoutMs: 20_000 }), /op #\d+ \(add\): unknown tag 'NoSuchTag' \(key 'mystery'\)/);
    session.update({ key: "box", tag: "AlsoNoSuchTag" });
    await assert.rejects(session.grabRender({ key: "tiny", timeoutMs: 20_000 }), /op #\d+ \(update\): update: node 'box' is a Box, cannot become a AlsoNoSuchTag/);
    session.update({ key: "ghost", color: "red" });
    await assert.rejects(session.grabRender({ key: "tiny", timeoutMs: 20_000 }), /update: no node with key 'ghost'/);
    await assert.rejects(session.grabRender({ key: "nocam", timeoutMs: 20_000 }), /no CameraView with key 'nocam'/);
    // A bad op from the server API never reaches the page: TypeError in the caller, naming the field.
    assert.throws(() => session.set({ tag: "Box" } as never), (err: Error) => err instanceof TypeError && /scene\.key/.test(err.message));
    assert.throws(() => session.add({ tag: "", key: "k" }), (err: Error) => err instanceof TypeError && /nodes\.0\.tag: tag must not be empty/.test(err.message));

    // The page still renders a good scene, at full size once the limit allows (the tiny camera here).
    session.update({ key: "box", color: "#00ff00" });
    const last = await session.grabRender({ key: "tiny", timeoutMs: 20_000 });
    assert.equal(PNG.sync.read(last.image).width, 8);
    assert.equal(session.closed, false);
    assert.ok(sceneErrors.length >= 3, `scene errors reported: ${sceneErrors.length}`);
    await assertServing(farm, origin);
  });

  it("has left no unhandled rejection behind", () => {
    assert.deepEqual(unhandled.map(String), []);
  });
});

// Hostile network input against a real farm: raw HTTP requests fuzzed over TCP (malformed request
// lines, targets, headers, methods, socket.io paths, junk websocket upgrades), oversized messages
// from sockets that have not authenticated, a flood of failed authentications beside good tabs, a
// page claiming a launched tab's name, and malformed hello/sceneError events. After every case the
// server must still be up and answering; one suite runs against the real CLI in a child process.
//
// Run: node --import tsx --test tests/integration/access.test.ts
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { PNG } from "pngjs";
import { io, type Socket as ClientSocket } from "socket.io-client";
import { Farm, UNAUTHENTICATED_MESSAGE_BYTES } from "../../server/session/Farm.js";
import { MAX_REPLY_ATTACHMENTS, TEXT_MESSAGE_CHARS } from "../../server/session/accessControl.js";
import type { Session } from "../../server/session/Session.js";
import type { ClientToServerEvents, ServerToClientEvents } from "../../protocol/events.js";
import { buildClient } from "../../harness/buildClient.js";
import { REPO } from "./cli.js";
import { startFarm as startTabFarm } from "./farmHarness.js";

type FakeSocket = ClientSocket<ServerToClientEvents, ClientToServerEvents>;

// ---------- raw TCP helpers ----------

/** Sends `bytes` on a fresh loopback connection; resolves with what came back when the server closed it or after `ms`. */
function rawRequest(port: number, bytes: string | Buffer, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString("latin1"));
    };
    const timer = setTimeout(finish, ms);
    socket.on("data", (d) => chunks.push(d));
    socket.on("error", () => {}); // a reset is an answer too
    socket.on("close", finish);
    socket.write(bytes, () => {});
  });
}

/** The server answers a plain request for the client page (a fresh connection). */
async function assertAnswering(port: number, after: string): Promise<void> {
  const reply = await rawRequest(port, "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 5000);
  assert.match(reply.slice(0, 40), /^HTTP\/1\.1 200/, `the server still serves /index.html after ${after}; got ${JSON.stringify(reply.slice(0, 80))}`);
}

/** A client websocket frame (masked), with the 16- or 64-bit length form as needed. */
function wsFrame(payload: Buffer, opcode = 0x2, fin = true): Buffer {
  const mask = randomBytes(4);
  const first = (fin ? 0x80 : 0) | opcode;
  let header: Buffer;
  if (payload.length < 126) header = Buffer.from([first, 0x80 | payload.length]);
  else if (payload.length < 65536) header = Buffer.from([first, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, masked]);
}

const upgradeRequest = (query: string, extra = "") =>
  `GET /socket.io/?EIO=4&transport=websocket${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/**
 * Opens a raw websocket to socket.io (`query` added to the handshake URL). Resolves with the socket
 * once the engine.io open packet arrived, or with the HTTP refusal when there is no websocket.
 */
function rawWebsocket(port: number, query: string): Promise<{ socket?: net.Socket; refusal?: string; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let received = "";
    let settled = false;
    const closed = new Promise<void>((done) => socket.once("close", () => done()));
    socket.on("error", () => {});
    socket.on("data", (d) => {
      received += d.toString("latin1");
      if (settled) return;
      if (received.includes("\r\n\r\n") && !received.startsWith("HTTP/1.1 101")) {
        settled = true;
        resolve({ refusal: received.split("\r\n")[0], closed });
      } else if (received.includes('"sid"')) {
        settled = true;
        resolve({ socket, closed });
      }
    });
    socket.once("close", () => !settled && resolve({ refusal: `closed: ${received.slice(0, 60)}`, closed }));
    socket.write(upgradeRequest(query));
  });
}

/** Writes `message` as one websocket frame in 64 KB pieces; resolves with how many bytes the socket took before it closed. */
async function pushMessage(socket: net.Socket, message: Buffer): Promise<number> {
  const frame = wsFrame(message);
  let written = 0;
  for (let at = 0; at < frame.length && !socket.destroyed; at += 65536) {
    const piece = frame.subarray(at, at + 65536);
    const ok = socket.write(piece, () => {});
    written += piece.length;
    if (!ok) await new Promise<void>((r) => { socket.once("drain", r); socket.once("close", r); });
  }
  return written;
}

// ---------- the request corpus ----------

const CRLF = "\r\n";
const req = (line: string, headers = "Host: 127.0.0.1\r\nConnection: close\r\n") => `${line}${CRLF}${headers}${CRLF}`;

/** Hand-picked requests that have broken (or could break) an HTTP server that parses targets itself. */
function handPicked(token: string): Array<string | Buffer> {
  const big = "a".repeat(100_000);
  return [
    req("GET //[ HTTP/1.1"),
    req("GET http://[ HTTP/1.1"),
    req("GET //[/api/status HTTP/1.1"),
    req("GET http://[::1/api/status HTTP/1.1"),
    req("GET % HTTP/1.1"),
    req("GET /% HTTP/1.1"),
    req("GET /%zz%E0%A4%A HTTP/1.1"),
    req("GET * HTTP/1.1"),
    req("OPTIONS * HTTP/1.1"),
    req("CONNECT 127.0.0.1:80 HTTP/1.1"),
    req("GET 127.0.0.1:80 HTTP/1.1"),
    req("GET ftp://x/ HTTP/1.1"),
    req("GET javascript:alert(1) HTTP/1.1"),
    req(`GET http://evil.example/api/status?token=${token} HTTP/1.1`),
    req("GET http://127.0.0.1/index.html HTTP/1.1"),
    req(`GET /${big} HTTP/1.1`),
    req(`GET /api/${big} HTTP/1.1`),
    req(`GET /?token=${big} HTTP/1.1`),
    req("GET /\u0000 HTTP/1.1"),
    req("GET /a\u0001b\u007f HTTP/1.1"),
    req("GET /a\tb HTTP/1.1"),
    Buffer.from(`GET /\xc3\xa9\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, "latin1"),
    req("GET /api/status?token=%E0%A4%A HTTP/1.1"),
    req("GET /api/status?token=%00 HTTP/1.1"),
    req("GET /api/../index.html HTTP/1.1"),
    req("GET /api/%2e%2e/index.html HTTP/1.1"),
    req("FOO / HTTP/1.1"),
    req("get / HTTP/1.1"),
    req(`${"X".repeat(5000)} / HTTP/1.1`),
    req("G\u0000T / HTTP/1.1"),
    req("DELETE /api/status HTTP/1.1"),
    req("POST /api/status HTTP/1.1", "Host: x\r\nConnection: close\r\nContent-Length: 3\r\n"),
    req("GET / HTTP/9.9"),
    req("GET / HTTP/1.1", ""),
    req("GET /"),
    "\r\n\r\n",
    "GET",
    Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), // a TLS ClientHello
    randomBytes(2048),
    // Headers: oversized, many, duplicated, malformed; Authorization in every odd shape.
    req("GET /api/status HTTP/1.1", `Host: x\r\nConnection: close\r\nX-Big: ${big}\r\n`),
    req("GET / HTTP/1.1", `Host: x\r\nConnection: close\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`).join("\r\n")}\r\n`),
    req("GET /api/status HTTP/1.1", `Host: x\r\nConnection: close\r\nAuthorization: Bearer nope\r\nAuthorization: Bearer ${token}\r\n`),
    req("GET /api/status HTTP/1.1", "Host: x\r\nConnection: close\r\nAuthorization: Bearer\r\n"),
    req("GET /api/status HTTP/1.1", "Host: x\r\nConnection: close\r\nAuthorization: Bearer    \r\n"),
    req("GET /api/status HTTP/1.1", "Host: x\r\nConnection: close\r\nAuthorization: Basic Zm9vOmJhcg==\r\n"),
    req("GET /api/status HTTP/1.1", `Host: x\r\nConnection: close\r\nAuthorization: Bearer ${big}\r\n`),
    Buffer.from(`GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\x80\r\n\r\n`, "latin1"),
    req("GET /api/status HTTP/1.1", "Host: x\r\nConnection: close\r\nAuthorization\r\n"),
    req("GET / HTTP/1.1", "Host: x\r\nConnection: close\r\nX-Nul: a\u0000b\r\n"),
    req("GET / HTTP/1.1", "Host: x\r\nConnection: close\r\nX-Fold: a\r\n  folded\r\n"),
    req("GET / HTTP/1.1", "Host: x\r\nHost: y\r\nConnection: close\r\n"),
    req("POST / HTTP/1.1", "Host: x\r\nConnection: close\r\nContent-Length: -1\r\n"),
    req("POST / HTTP/1.1", "Host: x\r\nConnection: close\r\nContent-Length: 1\r\nContent-Length: 2\r\n"),
    req("POST /api/status HTTP/1.1", "Host: x\r\nConnection: close\r\nContent-Length: 99999999999\r\n"),
    "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    // socket.io paths: polling (not offered), websocket without an upgrade, junk upgrades.
    req("GET /socket.io/?EIO=4&transport=polling HTTP/1.1"),
    req("POST /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1", "Host: x\r\nConnection: close\r\nContent-Length: 2\r\n"),
    req("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1"),
    req("GET /socket.io//[?EIO=4&transport=websocket HTTP/1.1"),
    req("GET /socket.io/?EIO=%&transport=%zz HTTP/1.1"),
    req(`GET /socket.io/?EIO=4&transport=websocket&token=${big} HTTP/1.1`),
    req("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1", "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: junk\r\nSec-WebSocket-Version: 99\r\n"),
    req("GET /socket.io/?EIO=4&transport=websocket&sid=nope HTTP/1.1", "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"),
    req("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1", "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: \u0000\u0001\r\n"),
    req("GET / HTTP/1.1", "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"),
    // An accepted websocket that then sends garbage: bad opcode, unmasked frame, a close with junk.
    upgradeRequest("") + "\u00ff\u00ff\u00ff\u00ff",
    Buffer.concat([Buffer.from(upgradeRequest("")), Buffer.from([0x81, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f])]),
    Buffer.concat([Buffer.from(upgradeRequest("")), wsFrame(Buffer.from("40{\"token\":{\"$ne\":null}}"), 0x1), wsFrame(Buffer.from([0x03, 0xe8, 0xff]), 0x8)]),
    Buffer.concat([Buffer.from(upgradeRequest("")), wsFrame(Buffer.from("4" + "5".repeat(200)), 0x1), wsFrame(Buffer.from("42[\"error\",\"boom\"]"), 0x1)]),
    Buffer.concat([Buffer.from(upgradeRequest("")), wsFrame(Buffer.from("x"), 0x3), wsFrame(Buffer.from("x"), 0x1, false)]),
  ];
}

/** Seeded random request targets over the characters that trip URL parsers. */
function randomTargets(count: number, seed = 7): string[] {
  const pieces = ["/", "//", "[", "]", "%", "%2", "%zz", "%00", "?", "#", "@", ":", "\\", "..", "api/", "socket.io/", "token=", "&", "é", "\u0001", " ", "http:", "[::1]", "\u007f", "*"];
  let state = seed;
  const next = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return Array.from({ length: count }, () => {
    let target = next() < 0.8 ? "/" : "";
    const parts = 1 + Math.floor(next() * 8);
    for (let i = 0; i < parts; i++) target += pieces[Math.floor(next() * pieces.length)];
    return target;
  });
}

/** Every corpus request, each followed by a check that the server still answers. */
async function fuzz(port: number, token: string, isAlive: () => void = () => {}): Promise<{ requests: number; answers: Map<string, number> }> {
  const answers = new Map<string, number>();
  const cases: Array<string | Buffer> = [...handPicked(token), ...randomTargets(150).map((t) => Buffer.from(req(`GET ${t} HTTP/1.1`), "latin1"))];
  for (const [i, bytes] of cases.entries()) {
    const reply = await rawRequest(port, bytes, 800);
    const status = /^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? (reply ? "other" : "closed");
    answers.set(status, (answers.get(status) ?? 0) + 1);
    isAlive();
    const shown = (typeof bytes === "string" ? bytes : bytes.toString("latin1")).slice(0, 60);
    await assertAnswering(port, `request ${i}: ${JSON.stringify(shown)}`);
  }
  assert.ok(!answers.has("500"), `no request made a route throw (500): ${JSON.stringify([...answers])}`);
  return { requests: cases.length, answers };
}

// ---------- in-process farm helpers ----------

let clientDir = "";
const farms: Farm[] = [];
const sockets: FakeSocket[] = [];

async function inProcessFarm(options: Partial<ConstructorParameters<typeof Farm>[0]> = {}) {
  const logs: string[] = [];
  const farm = new Farm({ clientDir, log: (l) => logs.push(l), ...options });
  farms.push(farm);
  await farm.listen();
  return { farm, logs, origin: new URL(farm.url).origin };
}

function connect(origin: string, options: { auth?: Record<string, unknown>; query?: Record<string, string> }): FakeSocket {
  const socket: FakeSocket = io(origin, { ...options, transports: ["websocket"], reconnection: false, forceNew: true, timeout: 10_000 });
  sockets.push(socket);
  return socket;
}

function outcome(socket: FakeSocket, ms = 10_000): Promise<string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("no outcome"), ms);
    socket.once("connect", () => (clearTimeout(timer), resolve("connected")));
    socket.once("connect_error", (err) => (clearTimeout(timer), resolve(err.message)));
  });
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  clientDir = await buildClient();
});

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.allSettled(farms.map((f) => f.close()));
});

// ---------- the tests ----------

describe("HTTP fuzz: no request from the network crashes the farm", { timeout: 180_000 }, () => {
  it("an in-process Farm answers every malformed request (400/404/…), never 500, and keeps serving", { timeout: 120_000 }, async () => {
    const { farm } = await inProcessFarm({ helloTimeoutMs: 1000 });
    const first = await rawRequest(farm.port, req("GET //[ HTTP/1.1"));
    assert.match(first, /^HTTP\/1\.1 4\d\d/, `the request that used to kill the farm is answered 4xx: ${JSON.stringify(first.slice(0, 60))}`);
    const absolute = await rawRequest(farm.port, req(`GET http://127.0.0.1/api/status?token=${encodeURIComponent(farm.token)} HTTP/1.1`));
    assert.match(absolute, /^HTTP\/1\.1 200/, "an absolute-form target is routed like its path");
    const lowerBearer = await rawRequest(farm.port, req("GET /api/status HTTP/1.1", `Host: x\r\nConnection: close\r\nAuthorization: bearer ${farm.token}\r\n`));
    assert.match(lowerBearer, /^HTTP\/1\.1 200/, "the Bearer scheme is matched in any case");
    const { requests, answers } = await fuzz(farm.port, farm.token);
    assert.ok(requests > 200, `fuzzed ${requests} requests`);
    assert.ok((answers.get("400") ?? 0) > 10, `malformed requests got 400s: ${JSON.stringify([...answers])}`);
  });

  it("the real CLI (--serve-only) in a child process survives the same fuzz and stays small for unauthenticated big messages", { timeout: 150_000 }, async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-access-"));
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "harness/cli.ts"), "--serve-only", "--out", out, "--demo", "4", "--no-progress"], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    try {
      const url = await new Promise<URL>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the farm printed no URL within 90 s:\n${output}`)), 90_000);
        const check = () => {
          const found = /serving (http:\/\/\S+)/.exec(output)?.[1];
          if (found) (clearTimeout(timer), resolve(new URL(found)));
        };
        child.stdout!.on("data", check);
        child.once("exit", (code) => reject(new Error(`the farm exited (${code}) before serving:\n${output}`)));
      });
      const port = Number(url.port);
      const token = url.searchParams.get("token")!;
      const isAlive = () => assert.equal(child.exitCode, null, `the farm process is still running; its output:\n${output}`);
      await fuzz(port, token, isAlive);

      // Unauthenticated websockets each push an 8 MB message; the farm allowed 65 MB messages before
      // the token was checked (RSS +600 MB for a few sockets). Now the first frame header is refused.
      const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
      const rssBefore = rss();
      let peak = rssBefore;
      const sampler = setInterval(() => (peak = Math.max(peak, rss())), 20);
      const pushed = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const { socket, closed } = await rawWebsocket(port, i % 2 ? "" : "&token=");
          assert.ok(socket, "a handshake without a token gets a websocket (it may still authenticate in auth)");
          const written = await pushMessage(socket, randomBytes(8 * 1024 * 1024));
          await Promise.race([closed, delay(5000)]);
          const wasClosed = socket.destroyed || socket.readableEnded;
          socket.destroy();
          return { written, wasClosed };
        }),
      );
      clearInterval(sampler);
      isAlive();
      const growth = peak - rssBefore;
      process.stdout.write(`# farm RSS ${rssBefore.toFixed(0)} MB, peak during 12 × 8 MB unauthenticated messages +${growth.toFixed(1)} MB\n`);
      assert.ok(growth < 24, `server RSS stayed bounded (+${growth.toFixed(1)} MB for 96 MB pushed)`);
      assert.ok(pushed.every((p) => p.wasClosed), "the farm closed every socket that sent a message over the unauthenticated limit");

      // A wrong token in the handshake request gets no websocket at all.
      const wrong = await rawWebsocket(port, "&token=wrong");
      assert.equal(wrong.socket, undefined);
      assert.match(wrong.refusal ?? "", /^HTTP\/1\.1 (400|403)/);
      await assertAnswering(port, "the big messages");
      isAlive();
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await new Promise((r) => (child.exitCode === null ? child.once("exit", r) : r(null)));
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

describe("slow and idle connections", { timeout: 60_000 }, () => {
  it("a connection that sends nothing, or trickles its headers (slowloris), is answered 408 and closed after headersTimeoutMs; the server keeps serving", { timeout: 30_000 }, async () => {
    const { farm } = await inProcessFarm({ headersTimeoutMs: 500 });
    const watch = (first: string) => {
      const socket = net.connect(farm.port, "127.0.0.1");
      let received = "";
      socket.on("data", (d) => (received += d.toString("latin1")));
      socket.on("error", () => {});
      if (first) socket.write(first);
      const trickle = setInterval(() => socket.writable && first && socket.write("a"), 100);
      return new Promise<string>((resolve) => socket.once("close", () => (clearInterval(trickle), resolve(received))));
    };
    // Node's defaults held both for 90 s, so a few thousand such connections used up the farm's file descriptors.
    const [idle, slow] = await Promise.all([watch(""), watch("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")]);
    assert.match(idle, /^HTTP\/1\.1 408 /);
    assert.match(slow, /^HTTP\/1\.1 408 /);
    await assertAnswering(farm.port, "slow and idle connections");
  });
});

describe("sockets before and after authentication", { timeout: 120_000 }, () => {
  it("an unauthenticated websocket's messages are capped at a few KB; an authenticated one (token in auth only) may send frames", { timeout: 30_000 }, async () => {
    const { farm, origin, logs } = await inProcessFarm();
    // No token anywhere: a message just over the cap closes the socket (ws: 1009 message too big).
    const { socket, closed } = await rawWebsocket(farm.port, "");
    assert.ok(socket);
    await pushMessage(socket, Buffer.alloc(UNAUTHENTICATED_MESSAGE_BYTES + 1, 0x41));
    await Promise.race([closed, delay(5000)]);
    assert.ok(socket.destroyed || socket.readableEnded, "closed for a message over the unauthenticated cap");
    socket.destroy();
    // A wrong token in auth only, and a big CONNECT packet: refused too.
    const wrongAuth = await rawWebsocket(farm.port, "");
    await pushMessage(wrongAuth.socket!, Buffer.from(`40${JSON.stringify({ token: "x".repeat(2 * UNAUTHENTICATED_MESSAGE_BYTES) })}`));
    await Promise.race([wrongAuth.closed, delay(5000)]);
    assert.ok(wrongAuth.socket!.destroyed || wrongAuth.socket!.readableEnded);
    wrongAuth.socket!.destroy();

    // The right token in auth only (socket.io's own way): admitted, and a 2 MB reply reaches the image check.
    const good = connect(origin, { auth: { token: farm.token } });
    const joined = new Promise<Session>((resolve) => farm.once("session", resolve));
    assert.equal(await outcome(good), "connected");
    good.emit("hello", { renderer: "fake", vendor: "", webgl: true, userAgent: "t", devicePixelRatio: 1, worker: "auth-only" });
    const png = new PNG({ width: 800, height: 700 });
    randomBytes(png.data.length).copy(png.data);
    const image = PNG.sync.write(png);
    assert.ok(image.length > 1024 * 1024, `a noisy PNG is big (${image.length} bytes)`);
    good.on("grab", (_seq, _request, ack) =>
      ack({ ok: true, image, width: 800, height: 700, format: "png", camera: { K: [[1, 0, 0], [0, 1, 0], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], fov: 60, near: 0.1, far: 100 }, renderMs: 1, encodeMs: 1 }),
    );
    const session = await joined;
    session.set({ tag: "DefaultScene", key: "root", children: [{ tag: "CameraView", key: "cam", width: 800, height: 700 }] });
    const frame = await session.grabRender({ key: "cam", timeoutMs: 10_000 });
    assert.equal(frame.image.length, image.length, "the whole frame arrived");
    // The token in the handshake query only (what the client page sends, besides auth): admitted.
    const byQuery = connect(origin, { query: { token: farm.token } });
    assert.equal(await outcome(byQuery), "connected");
    assert.ok(!logs.join("\n").includes(farm.token), "the token is never logged");
  });

  it("a page holding the token cannot send binary events, more attachments than a reply has, or big JSON: its socket is cut and logged, a good one goes on", { timeout: 60_000 }, async () => {
    const { farm, origin, logs } = await inProcessFarm();
    // A good session whose replies carry two attachments (image and depth), before and after the attacks.
    const good = connect(origin, { auth: { token: farm.token } });
    const joined = new Promise<Session>((resolve) => farm.once("session", resolve));
    assert.equal(await outcome(good), "connected");
    good.emit("hello", { renderer: "fake", vendor: "", webgl: true, userAgent: "t", devicePixelRatio: 1, worker: "good" });
    const png = new PNG({ width: 16, height: 8 });
    const image = PNG.sync.write(png);
    const camera = { K: [[1, 0, 0], [0, 1, 0], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], fov: 60, near: 0.1, far: 100 };
    good.on("grab", (_seq, _request, ack) => ack({ ok: true, image, layers: { depth: Buffer.alloc(16 * 8 * 2) }, width: 16, height: 8, format: "png", camera, renderMs: 1, encodeMs: 1 }));
    const session = await joined;
    session.set({ tag: "DefaultScene", key: "root", children: [{ tag: "CameraView", key: "cam", width: 16, height: 8 }] });
    assert.ok((await session.grabRender({ key: "cam", depth: true, timeoutMs: 10_000 })).depth);

    const placeholders = (count: number) => Array.from({ length: count }, (_, num) => JSON.stringify({ _placeholder: true, num })).join(",");
    const attacks: Array<{ name: string; messages: Array<string | Buffer>; logged: RegExp }> = [
      // Strings go as websocket text messages (socket.io packets), Buffers as binary ones (attachments).
    // socket.io's own limit is 10 attachments per packet, each up to the frame limit: 650 MB held for one packet.
      { name: `a reply with ${MAX_REPLY_ATTACHMENTS + 1} attachments`, messages: [`46${MAX_REPLY_ATTACHMENTS + 1}-7[${placeholders(MAX_REPLY_ATTACHMENTS + 1)}]`], logged: /too many attachments/ },
      { name: "a reply with 10 attachments", messages: [`4610-7[${placeholders(10)}]`], logged: /too many attachments/ },
      { name: "an event with binary data", messages: [`451-["sceneError",${placeholders(1)}]`, Buffer.alloc(1024)], logged: /an event with binary data/ },
      { name: "a text message over 64 KB", messages: [`43999["${"a".repeat(TEXT_MESSAGE_CHARS)}"]`], logged: /a text message of \d+ characters \(at most 65536\)/ },
      { name: "binary data outside a packet", messages: [Buffer.alloc(1024)], logged: /got binary data when not reconstructing a packet/ },
    ];
    for (const { name, messages, logged } of attacks) {
      const { socket, closed } = await rawWebsocket(farm.port, `&token=${encodeURIComponent(farm.token)}`);
      assert.ok(socket, name);
      const connected = new Promise<void>((resolve) => socket.on("data", (d) => d.includes('40{"sid"') && resolve()));
      socket.write(wsFrame(Buffer.from(`40${JSON.stringify({ token: farm.token })}`), 0x1));
      await connected;
      for (const message of messages) socket.write(typeof message === "string" ? wsFrame(Buffer.from(message), 0x1) : wsFrame(message));
      await Promise.race([closed, delay(10_000)]);
      assert.ok(socket.destroyed || socket.readableEnded, `the socket that sent ${name} is cut`);
      socket.destroy();
      assert.match(logs.join("\n"), logged, name);
    }
    assert.equal(session.closed, false, "the good session is still there");
    assert.ok((await session.grabRender({ key: "cam", depth: true, timeoutMs: 10_000 })).depth, "and still delivers frames with depth");
  });

  it("a flood of failed authentications from 127.0.0.1 never locks out good clients; the flood is refused and logged in bounded volume", { timeout: 60_000 }, async () => {
    const { farm, origin, logs } = await inProcessFarm({ failedAuthPer10s: 20, helloTimeoutMs: 60_000 });
    const good: Promise<string>[] = [];
    const bad: Promise<string>[] = [];
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 30; i++) {
        const kind = i % 3;
        if (kind === 0) bad.push(outcome(connect(origin, { auth: { token: `bad-${round}-${i}` } })));
        else if (kind === 1) bad.push(outcome(connect(origin, { auth: {} })));
        else bad.push(rawWebsocket(farm.port, `&token=bad-${i}`).then((r) => (r.socket?.destroy(), r.refusal ?? "connected")));
      }
      // Good clients the two ways: token in auth only (socket.io's way) and in the handshake query too (the page's way).
      good.push(outcome(connect(origin, round % 2 ? { auth: { token: farm.token } } : { auth: { token: farm.token }, query: { token: farm.token } })));
    }
    const goodResults = await Promise.all(good);
    const badResults = await Promise.all(bad);
    assert.deepEqual(goodResults, Array(8).fill("connected"), "every good client got in");
    assert.ok(!badResults.includes("connected"), "no bad client got in");
    assert.ok(badResults.some((r) => /too many failed access attempts/.test(r)), `after 20 failures the address is refused as a whole: ${[...new Set(badResults)].join(" | ")}`);
    const refusals = logs.filter((l) => /refused a connection/.test(l));
    assert.ok(refusals.length >= 1 && refusals.length <= 21, `refusals are logged, throttled (${refusals.length} lines)`);
    // And still: good clients after the flood, while the address is blocked for failures.
    assert.equal(await outcome(connect(origin, { auth: { token: farm.token } })), "connected");
    assert.equal(await outcome(connect(origin, { auth: { token: "still-bad" } })), "tabfarm: too many failed access attempts; slow down");
  });

  it("malformed hello and sceneError events are refused or ignored, and the server stays up", { timeout: 30_000 }, async () => {
    const { farm, origin, logs } = await inProcessFarm({ messagesPerSecond: 40 });
    const hellos: unknown[] = [
      "a string", 42, null, [1, 2], true,
      { renderer: { toString: 1 }, vendor: { valueOf: 2 }, userAgent: ["x"], worker: { toString: 1 }, devicePixelRatio: { valueOf: 1 }, webgl: "yes" },
      { renderer: "r".repeat(100_000 / 10), worker: "w".repeat(5000), devicePixelRatio: 1e308, webgl: true },
      { devicePixelRatio: -1, worker: "tab-0" },
      { __proto__: { webgl: true }, worker: "proto" },
    ];
    const admitted: Session[] = [];
    farm.on("session", (s: Session) => admitted.push(s));
    for (const hello of hellos) {
      const socket = connect(origin, { auth: { token: farm.token } });
      assert.equal(await outcome(socket), "connected");
      const gone = new Promise<void>((r) => socket.once("disconnect", () => r()));
      socket.emit("hello", hello as never);
      socket.emit("hello", { worker: "second" } as never); // a second hello is ignored
      socket.emit("sceneError", { message: { toString: 1 } } as never);
      socket.emit("sceneError", "not an object" as never);
      socket.emit("sceneError", null as never);
      socket.emit("sceneError", { seq: "x", message: "m".repeat(10_000) } as never); // kept: 2000 (a message over 64 KB cuts the socket)
      (socket as unknown as ClientSocket).emit("error", "an event named error");
      await Promise.race([gone, delay(300)]);
      socket.disconnect();
    }
    // Non-objects are refused (logged); objects are admitted with every field checked.
    assert.equal(admitted.length, 4, `objects admitted: ${admitted.map((s) => s.info.worker).join(", ")}`);
    const [weird, long, negative, proto] = admitted.map((s) => s.info);
    assert.deepEqual(weird, { renderer: "", vendor: "", webgl: false, userAgent: "", devicePixelRatio: 1, worker: "" });
    assert.equal(long.worker.length, 100);
    assert.equal(long.devicePixelRatio, 1);
    assert.equal(negative.worker, "unverified:tab-0", "a page claiming a launched tab's name without its proof is renamed");
    assert.equal(proto.webgl, false);
    for (const s of admitted) assert.ok(s.sceneErrors.every((m) => m.length < 2100), "scene errors are cut");
    assert.equal(logs.filter((l) => /hello is not an object/.test(l)).length, 5);
    assert.ok(logs.some((l) => /claims to be launched tab tab-0 without its worker proof/.test(l)));

    // A hello and sceneError flood: the socket is dropped at the message limit.
    const flood = connect(origin, { auth: { token: farm.token } });
    assert.equal(await outcome(flood), "connected");
    const dropped = new Promise<string>((r) => flood.once("disconnect", r));
    for (let i = 0; i < 500; i++) flood.emit(i % 2 ? "hello" : "sceneError", { seq: i, message: "x", worker: "flood" } as never);
    assert.equal(await Promise.race([dropped, delay(10_000).then(() => "still connected")]), "io server disconnect");
    await assertAnswering(farm.port, "malformed events");
  });

  it("a page with the worker proof of a launched tab is admitted under its name; a wrong or borrowed proof is not", { timeout: 20_000 }, async () => {
    const { farm, origin } = await inProcessFarm();
    const admit = async (worker: string, workerProof?: string) => {
      const joined = new Promise<Session>((resolve) => farm.once("session", resolve));
      const socket = connect(origin, { auth: { token: farm.token, workerProof } });
      assert.equal(await outcome(socket), "connected");
      socket.emit("hello", { renderer: "", vendor: "", webgl: false, userAgent: "t", devicePixelRatio: 1, worker });
      return (await joined).info.worker;
    };
    const proof = farm.launchedTabProof("tab-3");
    assert.equal(await admit("tab-3", proof), "tab-3");
    assert.equal(await admit("tab-4", proof), "unverified:tab-4", "a proof is for one name only");
    assert.equal(await admit("tab-3", "forged"), "unverified:tab-3");
    assert.equal(await admit("tab-3", { toString: 1 } as never), "unverified:tab-3");
    assert.equal(await admit("my-laptop"), "my-laptop", "names that are not launched-tab names need no proof");
    const other = new Farm({ clientDir, log: () => {} });
    farms.push(other);
    await other.listen();
    assert.notEqual(other.launchedTabProof("tab-3"), proof, "each farm has its own secret");
  });
});

describe("a hostile page cannot get a launched tab recycled", { timeout: 150_000 }, () => {
  it("a socket with the token that says it is tab-0 and then hangs is dropped; the real tab-0 is never replaced", { timeout: 140_000 }, async () => {
    // The grab timeout is the run's, the real tab's too: long enough that a slow first grab is not a hang.
    const farm = await startTabFarm({ tabs: 1, frames: 12, framesPerJob: 2, grabTimeoutMs: 10_000 });
    try {
      const origin = new URL(farm.run.url).origin;
      const real = await new Promise<Session>((resolve) => {
        const find = () => [...farm.run.farm.sessions.values()].find((s) => s.info.worker === "tab-0");
        const now = find();
        if (now) return resolve(now);
        farm.run.farm.on("session", (s: Session) => s.info.worker === "tab-0" && resolve(s));
      });
      // The hostile page: right token, claims tab-0, takes a job and never answers its grabs.
      const hostile = connect(origin, { auth: { token: farm.run.farm.token } });
      assert.equal(await outcome(hostile), "connected");
      const hostileSession = new Promise<Session>((resolve) => farm.run.farm.on("session", (s: Session) => s.info.worker.endsWith("tab-0") && s !== real && resolve(s)));
      hostile.emit("hello", { renderer: "fake", vendor: "", webgl: true, userAgent: "hostile", devicePixelRatio: 1, worker: "tab-0" });
      const fake = await hostileSession;
      assert.equal(fake.info.worker, "unverified:tab-0");
      await farm.waitForLog(/claims to be launched tab tab-0 without its worker proof/);
      const hung = new Promise<void>((resolve) => fake.once("hung", () => resolve()));
      await hung; // it took a job and did not answer within grabTimeoutMs
      await farm.finishedWithin(120_000);
      assert.equal(farm.pool.replacements, 0, `the real tab-0 was not replaced:\n${farm.logs.join("\n")}`);
      assert.equal(farm.pool.recycled, 0);
      assert.equal(real.closed, false, "the real tab-0's session is the same one, still connected");
      assert.equal(farm.logged(/tab 0 .*replacing it/).length, 0);
    } finally {
      await farm.close();
    }
  });
});

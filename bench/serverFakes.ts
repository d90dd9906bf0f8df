// Fake sessions for the servers bench (bench/servers.ts), in a child process: like bench/fakeSessions.ts
// (socket.io-client sockets answering every grab at once with one real pre-encoded PNG), but spread over
// several farm servers, and held back: every socket connects first and says hello only on "go", so all
// servers start at once and the timed part excludes the connects (the farm hands out work at hello).
//   parent → child: { targets: [{ url, token, sessions }], width, height, pngBytes }, then "go", then "stop"
//   child → parent: { ready: n, imageBytes } once every socket is connected; { error } on failure;
//                   { grabs: [per target] } when stopped
import { io, type Socket } from "socket.io-client";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { BrowserInfo, ClientToServerEvents, ServerToClientEvents } from "../protocol/events.js";
import type { GrabReply } from "../protocol/grab.js";
import { makePng } from "./fakeSessions.js";

export interface ServerFakesConfig {
  /** One entry per farm server: where it serves, its token, and how many fake sessions it gets. */
  targets: { url: string; token: string; sessions: number }[];
  width: number;
  height: number;
  /** Size of the PNG every session sends (padded with a tEXt chunk, as the ingest bench's). */
  pngBytes: number;
}

export type ServerFakesMessage = { ready: number; imageBytes: number } | { error: string } | { grabs: number[] };

type FakeSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export async function connectServerFakes(c: ServerFakesConfig): Promise<{ go(): void; grabs: number[]; imageBytes: number; close(): void }> {
  const image = makePng(c.width, c.height, c.pngBytes);
  const fy = c.height / 2 / Math.tan((50 * Math.PI) / 360);
  const camera = {
    K: [[fy, 0, c.width / 2], [0, fy, c.height / 2], [0, 0, 1]],
    cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]],
    fov: 50, near: 0.1, far: 100,
  };
  const grabs = c.targets.map(() => 0);
  const sockets: { socket: FakeSocket; info: BrowserInfo }[] = [];
  const connects: Promise<void>[] = [];
  c.targets.forEach((target, t) => {
    for (let i = 0; i < target.sessions; i++) {
      const socket: FakeSocket = io(new URL(target.url).origin, { auth: { token: target.token }, transports: ["websocket"], reconnection: false });
      const info: BrowserInfo = {
        renderer: "fake (bench/serverFakes.ts)", vendor: "bench", webgl: true,
        userAgent: `node ${process.version}`, devicePixelRatio: 1, worker: `fake-${t}-${i}`,
      };
      sockets.push({ socket, info });
      socket.on("grab", (_seq, request, ack) => {
        grabs[t]!++;
        const reply: GrabReply = { ok: true, image, width: c.width, height: c.height, format: request.format ?? "png", camera, renderMs: 0, encodeMs: 0 };
        ack(reply);
      });
      connects.push(new Promise<void>((resolve, reject) => {
        socket.once("connect", () => resolve());
        socket.once("connect_error", reject);
      }));
    }
  });
  try {
    await Promise.all(connects);
  } catch (err) {
    for (const { socket } of sockets) socket.disconnect();
    throw err;
  }
  return {
    go: () => sockets.forEach(({ socket, info }) => socket.emit("hello", info)),
    grabs,
    imageBytes: image.length,
    close: () => sockets.forEach(({ socket }) => socket.disconnect()),
  };
}

// As a child process of bench/servers.ts.
if (process.send && process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  let running: Awaited<ReturnType<typeof connectServerFakes>> | undefined;
  const send = (msg: ServerFakesMessage) => process.send!(msg);
  process.on("message", async (msg: ServerFakesConfig | "go" | "stop") => {
    if (msg === "go") return running?.go();
    if (msg === "stop") {
      running?.close();
      send({ grabs: running?.grabs ?? [] });
      process.disconnect?.();
      setTimeout(() => process.exit(0), 100).unref();
      return;
    }
    try {
      running = await connectServerFakes(msg);
      send({ ready: msg.targets.reduce((a, t) => a + t.sessions, 0), imageBytes: running.imageBytes });
    } catch (err) {
      send({ error: (err as Error)?.message ?? String(err) });
    }
  });
  process.on("disconnect", () => {
    running?.close();
    process.exit(0);
  });
}

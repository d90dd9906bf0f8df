// Fake sessions for the ingest bench, run in a child process (so their CPU is not the server's):
// socket.io-client sockets that say hello with webgl: true and answer every grab at once with one
// pre-encoded image of the asked size. Started by bench/ingest.ts with fork(); talks over IPC.
//   parent → child: { url, token, sessions, width, height, pngBytes, format?, imageFile?, dashboards? }   then "stop"
//   child → parent: { ready: n, imageBytes } once every socket is connected, { error } on failure,
//                   { dashboard: DashboardTally } when stopped (with dashboards)
import { io, type Socket } from "socket.io-client";
import { PNG } from "pngjs";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import zlib from "node:zlib";
import sharp from "sharp";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { BrowserInfo, ClientToServerEvents, ServerToClientEvents } from "../protocol/events.js";
import type { GrabReply, ImageFormat } from "../protocol/grab.js";
import { DASHBOARD_NAMESPACE, type FrameThumbnails } from "../protocol/dashboard.js";

export interface FakeSessionsConfig {
  url: string;
  token: string;
  sessions: number;
  width: number;
  height: number;
  /** Target size of the PNG; a smooth image is padded with a tEXt chunk to about this. */
  pngBytes: number;
  /** Format of the image sent (default png). */
  format?: ImageFormat;
  /** Send this image (of width×height; re-encoded by sharp unless already in `format`) instead of the padded one. */
  imageFile?: string;
  /** Also open this many dashboards (the /dashboard namespace), counting what they get: the dashboard's cost in the ingest bench. */
  dashboards?: number;
}

/** What the fake dashboards got. */
export interface DashboardTally {
  views: number;
  ratePoints: number;
  thumbnails: number;
  thumbnailBytes: number;
}

/** A PNG chunk: length, type, data and the right CRC (tests build damaged PNGs from these too). */
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** A real width×height RGBA PNG (a gradient with some shapes), padded to ~`target` bytes with a tEXt chunk. */
export function makePng(width: number, height: number, target: number): Buffer {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const inDisc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 4) ** 2;
      png.data[i] = inDisc ? 228 : (x * 255) / width;
      png.data[i + 1] = inDisc ? 87 : (y * 255) / height;
      png.data[i + 2] = inDisc ? 46 : 120;
      png.data[i + 3] = 255;
    }
  }
  const plain = PNG.sync.write(png);
  const iend = plain.length - 12; // IEND is the last 12 bytes
  const pad = Math.max(0, target - plain.length - 12 - "Comment".length - 1);
  if (pad === 0) return plain;
  // Printable filler (base64 of random bytes): no NUL in tEXt text, and incompressible like real pixels.
  const filler = randomBytes(Math.ceil((pad * 3) / 4)).toString("base64").slice(0, pad);
  const text = pngChunk("tEXt", Buffer.concat([Buffer.from("Comment\0", "latin1"), Buffer.from(filler, "latin1")]));
  return Buffer.concat([plain.subarray(0, iend), text, plain.subarray(iend)]);
}

type FakeSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** The one image every fake session sends. */
async function benchImage(c: FakeSessionsConfig): Promise<Buffer> {
  const format = c.format ?? "png";
  const source = c.imageFile ? fs.readFileSync(c.imageFile) : makePng(c.width, c.height, c.pngBytes);
  const { width, height, format: sourceFormat } = await sharp(source).metadata();
  if (width !== c.width || height !== c.height) throw new Error(`${c.imageFile}: ${width}×${height}, but the jobs ask for ${c.width}×${c.height}`);
  if (sourceFormat === format) return source;
  return format === "png" ? sharp(source).png().toBuffer() : format === "jpeg" ? sharp(source).jpeg({ quality: 92 }).toBuffer() : sharp(source).webp({ quality: 90 }).toBuffer();
}

export async function startFakeSessions(c: FakeSessionsConfig): Promise<{ sockets: FakeSocket[]; image: Buffer; tally: DashboardTally; close(): void }> {
  const image = await benchImage(c);
  const fy = c.height / 2 / Math.tan((50 * Math.PI) / 360);
  const camera = {
    K: [[fy, 0, c.width / 2], [0, fy, c.height / 2], [0, 0, 1]],
    cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]],
    fov: 50, near: 0.1, far: 100,
  };
  const origin = new URL(c.url).origin;
  const sockets: FakeSocket[] = [];
  await Promise.all(
    Array.from({ length: c.sessions }, (_, i) =>
      new Promise<void>((resolve, reject) => {
        const socket: FakeSocket = io(origin, { auth: { token: c.token }, transports: ["websocket"], reconnection: false });
        sockets.push(socket);
        const info: BrowserInfo = {
          renderer: "fake (bench/fakeSessions.ts)", vendor: "bench", webgl: true,
          userAgent: `node ${process.version}`, devicePixelRatio: 1, worker: `fake-${i}`,
        };
        socket.on("connect", () => {
          socket.emit("hello", info);
          resolve();
        });
        socket.on("connect_error", reject);
        // Answer every grab at once, whatever size was asked: the image is of the size the jobs ask for.
        socket.on("grab", (_seq, request, ack) => {
          const reply: GrabReply = {
            ok: true, image, width: c.width, height: c.height, format: request.format ?? "png",
            camera, renderMs: 0, encodeMs: 0,
          };
          ack(reply);
        });
      }),
    ),
  );
  const tally: DashboardTally = { views: 0, ratePoints: 0, thumbnails: 0, thumbnailBytes: 0 };
  const dashboards = await Promise.all(
    Array.from({ length: c.dashboards ?? 0 }, () =>
      new Promise<Socket>((resolve, reject) => {
        const socket = io(`${origin}${DASHBOARD_NAMESPACE}`, { auth: { token: c.token }, transports: ["websocket"], reconnection: false });
        socket.on("view", () => tally.views++);
        socket.on("rate", (points: unknown[]) => (tally.ratePoints += points.length));
        socket.on("thumbnails", (frame: FrameThumbnails) => {
          tally.thumbnails++;
          for (const layer of frame.layers) tally.thumbnailBytes += layer.data.byteLength;
        });
        socket.on("connect", () => resolve(socket));
        socket.on("connect_error", reject);
      }),
    ),
  );
  return { sockets, image, tally, close: () => [...sockets, ...dashboards].forEach((s) => s.disconnect()) };
}

// As a child process of bench/ingest.ts.
if (process.send && process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  let running: Awaited<ReturnType<typeof startFakeSessions>> | undefined;
  process.on("message", async (msg: FakeSessionsConfig | "stop") => {
    if (msg === "stop") {
      running?.close();
      if (running) process.send!({ dashboard: running.tally });
      process.disconnect?.();
      setTimeout(() => process.exit(0), 100).unref();
      return;
    }
    try {
      running = await startFakeSessions(msg);
      process.send!({ ready: running.sockets.length, imageBytes: running.image.length });
    } catch (err) {
      process.send!({ error: (err as Error)?.message ?? String(err) });
    }
  });
  process.on("disconnect", () => {
    running?.close();
    process.exit(0);
  });
}

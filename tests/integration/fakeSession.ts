// A session that is not a browser: a socket.io client that says hello with the run's token and
// answers every grab itself, with a real PNG of a fixed size or with an error. For tests of the
// server's side (dispatch, queue, accounting) where a browser would only add time, and for a tab
// that misbehaves in one exact way.
import { io, type Socket } from "socket.io-client";
import { PNG } from "pngjs";

export interface FakeSessionOptions {
  port: number;
  token: string;
  /** The hello's worker name (e.g. "fake"; a launched tab's "tab-N" needs the harness's proof). */
  worker: string;
  webgl?: boolean;
  /** "png": a valid image of `width`×`height`; "error": `{ok: false}` with a message. */
  answer: "png" | "error";
  width?: number;
  height?: number;
  /** Delay before each answer (ms), to look like a render. */
  delayMs?: number;
}

export interface FakeSession {
  socket: Socket;
  /** Grabs answered so far. */
  grabs(): number;
  /** Reasons the server said bye with. */
  byes: string[];
  close(): void;
}

function png(width: number, height: number): Buffer {
  const image = new PNG({ width, height });
  for (let i = 0; i < image.data.length; i += 4) image.data.set([40, 120, 200, 255], i);
  return PNG.sync.write(image);
}

const camera = {
  K: [[100, 0, 80], [0, 100, 60], [0, 0, 1]],
  cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]],
  fov: 50, near: 0.1, far: 100,
};

export async function fakeSession(options: FakeSessionOptions): Promise<FakeSession> {
  const { width = 160, height = 120 } = options;
  const image = png(width, height);
  const socket = io(`http://127.0.0.1:${options.port}`, { transports: ["websocket"], auth: { token: options.token }, reconnection: false });
  let grabs = 0;
  const byes: string[] = [];
  socket.on("bye", (reason: string) => byes.push(reason));
  socket.on("grab", (_seq: number, request: { format: string }, ack: (reply: unknown) => void) => {
    grabs++;
    const reply =
      options.answer === "png"
        ? { ok: true, image, width, height, format: request.format, camera, renderMs: 1, encodeMs: 1 }
        : { ok: false, error: `${options.worker}: WebGL context lost (this tab fails every grab)` };
    setTimeout(() => ack(reply), options.delayMs ?? 0);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("connect_error", reject);
    // A closing farm may drop the connection before accepting it: then neither of the above comes.
    socket.once("disconnect", (reason) => reject(new Error(`fake session: disconnected before connecting (${reason})`)));
  });
  socket.emit("hello", {
    renderer: options.webgl === false ? "" : "fake renderer", vendor: "fake", webgl: options.webgl !== false,
    userAgent: "tabfarm fake session", devicePixelRatio: 1, worker: options.worker,
  });
  return { socket, grabs: () => grabs, byes, close: () => void socket.close() };
}

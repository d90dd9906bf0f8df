// The page's side of a session: applies ops and answers grabs strictly in the order the server sent
// them, so a grab always sees every op sent before it. Encoding runs after the reply is scheduled,
// so the next op/grab is handled while the previous frame is still being encoded.
import { io, type Socket } from "socket.io-client";
import { ZodError } from "zod";
import { describeIssues } from "../../../protocol/describeIssues.js";
import { SceneOpSchema } from "../../../protocol/elements.js";
import { grabLayers, GrabRequestSchema, PAGE_LAYERS, packBoxes3d, type GrabReply, type GrabRequest, type GrabSuccess } from "../../../protocol/grab.js";
import { passesFor } from "../../../protocol/layers.js";
import { MAX_ERROR_CHARS, type ClientToServerEvents, type ServerToClientEvents, type BrowserInfo, type HandshakeAuth } from "../../../protocol/events.js";
import { sceneStore } from "../scene/sceneStore.js";
import { cameraRegistry } from "../camera/cameraRegistry.js";
import { glContext } from "../capture/glContext.js";
import { renderFrame, type RenderedFrame } from "../capture/renderFrame.js";
import { needsInstanceIds } from "../../../protocol/layers.js";
import { EncoderPool } from "../capture/encoderPool.js";
import { showStatus, showPreview } from "./statusView.js";

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export function connectSession(info: BrowserInfo, token: string): ClientSocket {
  // The token goes in the handshake request's query too, so the server checks it before a websocket
  // exists; `auth` is where socket.io's CONNECT carries it. A tab the harness launched also proves it
  // (`workerProof` in its URL) so the server admits it under its worker name.
  const auth: HandshakeAuth = { token, workerProof: new URLSearchParams(location.search).get("workerProof") ?? undefined };
  const socket: ClientSocket = io({ auth, query: token ? { token } : {}, transports: ["websocket"] });
  const encoder = new EncoderPool();
  let chain: Promise<void> = Promise.resolve();
  let frames = 0;
  const inOrder = (task: () => Promise<void> | void) => {
    chain = chain.then(task).catch((err) => console.error("tabfarm: task failed", err));
  };

  // Error texts are cut to what the server keeps: it refuses (disconnects) a text message over 64 KB.
  sceneStore.onError = (message) => socket.emit("sceneError", { seq: -1, message: message.slice(0, MAX_ERROR_CHARS) });

  socket.on("connect", () => {
    socket.emit("hello", info);
    showStatus(`connected as ${socket.id}\n${info.renderer}`);
  });
  // A token the server refuses in the handshake request leaves the browser only "websocket error".
  socket.on("connect_error", (err) => showStatus(`cannot connect: ${err.message}${/websocket error/i.test(err.message) ? " (is the token in this URL the one the server printed?)" : ""}`));
  socket.on("disconnect", (reason) => showStatus(`disconnected: ${reason}`));
  socket.on("bye", (reason) => showStatus(`server finished: ${reason}`));

  socket.on("op", (seq, op) =>
    inOrder(() => {
      try {
        sceneStore.apply(SceneOpSchema.parse(op));
      } catch (err) {
        const message = `op #${seq} (${(op as { op?: string })?.op ?? "?"}): ${describe(err)}`;
        sceneStore.errors.push(message);
        socket.emit("sceneError", { seq, message: message.slice(0, MAX_ERROR_CHARS) });
      }
    }),
  );

  socket.on("grab", (_seq, request, reply) =>
    inOrder(async () => {
      // The chain waits only for the render; encoding and the reply overlap the next ops and grabs.
      const { encoded } = await renderForGrab(request, encoder);
      void encoded.then((result) => {
        reply(result);
        if (!result.ok) return;
        frames++;
        showPreview(result.image, result.format, `${socket.id}: ${frames} frames\n${info.renderer}`);
      });
    }),
  );
  return socket;
}

/**
 * Renders now, in order; `encoded` settles when the image is ready. (Wrapped in an object because
 * an async function returning a promise would wait for it, serialising the encode again.)
 */
async function renderForGrab(raw: GrabRequest, encoder: EncoderPool): Promise<{ encoded: Promise<GrabReply> }> {
  const fail = (error: string) => ({ encoded: Promise.resolve<GrabReply>({ ok: false, error: error.slice(0, MAX_ERROR_CHARS) }) });
  try {
    const request = GrabRequestSchema.parse(raw);
    await sceneStore.settled();
    const errors = sceneStore.takeErrors();
    if (errors.length) return fail(errors.join("; "));
    const view = cameraRegistry.get(request.key);
    if (!view) return fail(`no CameraView with key '${request.key}' (have: ${[...cameraRegistry.keys()].join(", ") || "none"})`);
    const { gl, scene } = glContext;
    if (!gl || !scene) return fail("renderer not ready");
    const layers = grabLayers(request);
    const instances = passesFor(layers).has("ids") ? sceneStore.instanceResolution() : undefined;
    // Ids in error (the server refuses such grabs first) would make a wrong mask: refuse it here too.
    if (instances?.errors.length && needsInstanceIds(layers)) return fail(`cannot render the mask: ${instances.errors.join("; ")}`);
    const frame = renderFrame(gl, scene, view, { downsample: request.downsample, layers, instances });
    const extras = layerReply(frame);
    if (request.encoding === "raw") {
      const bytes = frame.pixels.byteLength;
      if (request.maxBytes !== undefined && bytes > request.maxBytes) return fail(`raw frame is ${bytes} bytes, over the server's limit of ${request.maxBytes}`);
      return {
        encoded: Promise.resolve<GrabReply>({
          ok: true, raw: true, image: frame.pixels.buffer, ...extras, width: frame.width, height: frame.height, format: request.format,
          camera: frame.camera, renderMs: frame.renderMs, encodeMs: 0,
        }),
      };
    }
    const encoded = encoder.encode(frame.pixels, frame.width, frame.height, request.format, request.quality).then(
      ({ bytes, encodeMs }): GrabReply => {
        if (request.maxBytes !== undefined && bytes.byteLength > request.maxBytes) {
          return { ok: false, error: `encoded ${request.format} is ${bytes.byteLength} bytes, over the server's limit of ${request.maxBytes}` };
        }
        return {
          ok: true, image: bytes, ...extras, width: frame.width, height: frame.height, format: request.format,
          camera: frame.camera, renderMs: frame.renderMs, encodeMs,
        };
      },
      (err): GrabReply => ({ ok: false, error: describe(err).slice(0, MAX_ERROR_CHARS) }),
    );
    return { encoded };
  } catch (err) {
    return fail(describe(err));
  }
}

/** The reply's layer fields: each page layer's pixels as its own ArrayBuffer (sent as binary), and the 3D boxes. */
function layerReply(frame: RenderedFrame): Pick<GrabSuccess, "layers" | "boxes3d"> {
  const layers: NonNullable<GrabSuccess["layers"]> = {};
  for (const name of PAGE_LAYERS) {
    const pixels = frame.layers[name];
    if (pixels) layers[name] = pixels.buffer;
  }
  return {
    ...(Object.keys(layers).length ? { layers } : {}),
    ...(frame.boxes3d ? { boxes3d: packBoxes3d(frame.boxes3d) } : {}),
  };
}

function describe(err: unknown): string {
  if (err instanceof ZodError) return describeIssues(err);
  return (err as Error)?.message ?? String(err);
}

// One connected browser tab, driven the Vuer way: session.set/update/upsert/add/remove and
// `await session.grabRender({key})`. Ops and grabs share one ordered channel (the socket), and the
// page applies them in order, so a grab always renders every op sent before it.
import { EventEmitter } from "node:events";
import type { Socket } from "socket.io";
import { SceneOpSchema, type NodePatch, type SceneElement, type SceneOp } from "../../protocol/elements.js";
import { GrabSuccessMetaSchema, LIMITS, type GrabReply, type GrabRequest, type GrabSuccess } from "../../protocol/grab.js";
import { MAX_ERROR_CHARS, type BrowserInfo, type ClientToServerEvents, type ServerToClientEvents } from "../../protocol/events.js";
import { checkGrabRequest, type ParsedGrabRequest } from "./checkGrabRequest.js";
import { SentScene } from "./SentScene.js";
import { checkImage, ImageCheckError } from "../capture/checkImage.js";
import { describeIssues } from "../../protocol/describeIssues.js";
import { encodeDepthPng, encodeRgba } from "../capture/encodeFrame.js";

export type SessionSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

/** A checked, encoded frame: the page's reply with its bytes as a Buffer. */
export interface GrabbedFrame extends Omit<GrabSuccess, "ok" | "image" | "raw" | "depth"> {
  image: Buffer;
  /** With `depth: true`: a 16-bit greyscale PNG of depth in millimetres (0 = nothing hit). */
  depth?: Buffer;
  /** Wall time from request to reply, as the server saw it. */
  roundTripMs: number;
}

export interface GrabOptions extends GrabRequest {
  /** Overrides the session's grab timeout (ms). */
  timeoutMs?: number;
}

/**
 * A text field from a page, cut to `max`; anything else (numbers, objects, missing) is "". Only a string
 * is taken: String() of {toString: 1}, valid JSON, throws a TypeError that names nothing.
 */
export function peerText(value: unknown, max: number): string {
  return typeof value === "string" ? value.slice(0, max) : "";
}

export class GrabError extends Error {}
/** The page did not answer a grab in time: it is probably hung. */
export class GrabTimeoutError extends GrabError {}

export class Session extends EventEmitter {
  private seq = 0;
  private pending = new Map<number, (err: Error) => void>();
  closed = false;
  /** Set by retire(): the session finishes what it holds and takes no more jobs. */
  retiring = false;
  /** Frames this session has delivered (grabs answered with a valid image). */
  framesDelivered = 0;
  /** Scene errors the page reported (bad op, failed asset), newest last; also emitted as "sceneError". */
  readonly sceneErrors: string[] = [];
  /** The scene as sent to the page: the size every grab must come back at. */
  private readonly sentScene = new SentScene();

  constructor(
    readonly id: string,
    private readonly socket: SessionSocket,
    readonly info: BrowserInfo,
    private readonly grabTimeoutMs: number,
    private readonly maxFrameBytes: number = LIMITS.maxFrameBytes,
    /** Where grabs are encoded unless a grab says otherwise: in the page, or on the server from raw pixels. */
    private readonly defaultEncoding: "browser" | "raw" = "browser",
    private readonly pngLevel = 3,
  ) {
    super();
    socket.on("sceneError", (report) => {
      const message = `session ${id}: ${peerText((report as { message?: unknown } | null)?.message, MAX_ERROR_CHARS) || "scene error"}`;
      this.sceneErrors.push(message);
      if (this.sceneErrors.length > 100) this.sceneErrors.shift(); // bounded: pages may send many
      this.emit("sceneError", message);
    });
    socket.on("disconnect", (reason) => {
      this.closed = true;
      const err = new GrabError(`session ${id} disconnected (${reason})`);
      for (const reject of this.pending.values()) reject(err);
      this.pending.clear();
      this.emit("close", reason);
    });
  }

  set(scene: SceneElement): void {
    this.send({ op: "set", scene });
  }
  update(nodes: NodePatch | NodePatch[]): void {
    this.send({ op: "update", nodes: Array.isArray(nodes) ? nodes : [nodes] });
  }
  upsert(nodes: SceneElement | SceneElement[], parentKey?: string): void {
    this.send({ op: "upsert", nodes: Array.isArray(nodes) ? nodes : [nodes], parentKey });
  }
  add(nodes: SceneElement | SceneElement[], parentKey?: string): void {
    this.send({ op: "add", nodes: Array.isArray(nodes) ? nodes : [nodes], parentKey });
  }
  remove(keys: string | string[]): void {
    this.send({ op: "remove", keys: Array.isArray(keys) ? keys : [keys] });
  }

  /** Validated here so a bad op fails in the caller's code, with the caller's stack. */
  private send(op: SceneOp): void {
    if (this.closed) throw new GrabError(`session ${this.id} is closed`);
    const parsed = SceneOpSchema.safeParse(op);
    if (!parsed.success) {
      throw new TypeError(`session.${op.op}: invalid ${op.op} op: ${describeIssues(parsed.error)}`);
    }
    this.socket.emit("op", ++this.seq, op);
    this.sentScene.apply(op);
  }

  /** Renders the named CameraView now (after every op sent before) and resolves with the encoded image. */
  grabRender(options: GrabOptions): Promise<GrabbedFrame> {
    const { timeoutMs = this.grabTimeoutMs, ...raw } = options;
    const input = { maxBytes: this.maxFrameBytes, encoding: this.defaultEncoding, ...raw };
    const checked = checkGrabRequest(input);
    if (!checked.ok) return Promise.reject(new TypeError(`session.grabRender: ${checked.error}`));
    const request = checked.request;
    if (this.closed) return Promise.reject(new GrabError(`session ${this.id} is closed`));
    const size = this.sentScene.grabSize(request.key, request.downsample);
    if (!size) {
      return Promise.reject(new GrabError(`grabRender('${request.key}') on session ${this.id}: no CameraView with key '${request.key}' in the scene sent to this session`));
    }
    const seq = ++this.seq;
    const started = performance.now();
    return new Promise<GrabbedFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new GrabTimeoutError(`grabRender('${request.key}') on session ${this.id} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(seq, (err) => {
        clearTimeout(timer);
        reject(err);
      });
      this.socket.emit("grab", seq, request, (reply: GrabReply) => {
        if (!this.pending.delete(seq)) return; // timed out or disconnected already
        clearTimeout(timer);
        this.acceptReply(request, size, reply, performance.now() - started).then(resolve, reject);
      });
    });
  }

  /** Takes the reply to `request` if it is a complete image of exactly the size asked for (`size`). */
  private async acceptReply(request: ParsedGrabRequest, size: { width: number; height: number }, reply: GrabReply, roundTripMs: number): Promise<GrabbedFrame> {
    // Everything in a reply comes from a page: trust nothing until checked.
    const what = `grabRender('${request.key}') on session ${this.id}`;
    if (!reply || typeof reply !== "object") throw new GrabError(`${what}: malformed reply`);
    if (reply.ok !== true) {
      throw new GrabError(`${what} failed: ${peerText((reply as { error?: unknown }).error, MAX_ERROR_CHARS) || "the page gave no error message"}`);
    }
    const meta = GrabSuccessMetaSchema.safeParse(reply);
    if (!meta.success) {
      throw new ImageCheckError(`${what}: malformed reply: ${describeIssues(meta.error, 3)}`);
    }
    if (!Buffer.isBuffer(reply.image)) throw new ImageCheckError(`${what}: image is not binary data`);
    const { width, height, camera, renderMs } = meta.data;
    if (width !== size.width || height !== size.height) {
      throw new ImageCheckError(`${what}: the reply is ${width}×${height}, but ${size.width}×${size.height} was asked for`);
    }
    let image: Buffer = reply.image;
    let encodeMs = meta.data.encodeMs;
    if (request.encoding === "raw") {
      if (!meta.data.raw || image.length !== width * height * 4) {
        throw new ImageCheckError(`${what}: raw frame of ${image.length} bytes is not ${width}×${height} RGBA (${width * height * 4} bytes)`);
      }
      const started = performance.now();
      image = await encodeRgba(image, width, height, { format: request.format, quality: request.quality, pngLevel: this.pngLevel });
      encodeMs = performance.now() - started; // encoded here by sharp: no need to check it
    } else {
      await checkImage(image, { format: request.format, width, height, maxBytes: this.maxFrameBytes, what });
    }
    let depth: Buffer | undefined;
    if (request.depth) {
      const raw = (reply as { depth?: unknown }).depth;
      if (!Buffer.isBuffer(raw) || raw.length !== width * height * 2) {
        throw new ImageCheckError(`${what}: depth is not ${width}×${height} uint16 (${width * height * 2} bytes)`);
      }
      depth = await encodeDepthPng(raw, width, height);
    }
    this.framesDelivered++;
    return { image, depth, width, height, format: request.format, camera, renderMs, encodeMs, roundTripMs };
  }

  /** Tells the page the server is done with it. */
  bye(reason: string): void {
    if (!this.closed) this.socket.emit("bye", reason);
  }

  disconnect(): void {
    this.socket.disconnect(true);
  }

  /**
   * Asks the dispatcher to give this session no more jobs; it emits "retired" once its jobs are
   * finished, when a harness can replace the tab (e.g. to bound a long run's browser memory).
   */
  retire(): void {
    this.retiring = true;
  }

  /** Drops a session whose page stopped answering; emits "hung" first so a harness can replace the tab. */
  dropHung(reason: string): void {
    this.emit("hung", reason);
    this.disconnect();
  }
}

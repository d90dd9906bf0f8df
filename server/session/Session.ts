// One connected browser tab, driven the Vuer way: session.set/update/upsert/add/remove and
// `await session.grabRender({key})`. Ops and grabs share one ordered channel (the socket), and the
// page applies them in order, so a grab always renders every op sent before it.
import { RUN_DEFAULTS } from "../runDefaults.js";
import { EventEmitter } from "node:events";
import type { Socket } from "socket.io";
import { SceneOpSchema, type NodePatch, type SceneElement, type SceneOp } from "../../protocol/elements.js";
import { BOX3D_NUMBERS, grabLayers, GrabSuccessMetaSchema, LIMITS, type GrabReply, type GrabRequest, type GrabSuccess } from "../../protocol/grab.js";
import { needsInstanceIds, type LayerName } from "../../protocol/layers.js";
import type { InstanceResolution } from "../../protocol/instances.js";
import { MAX_ERROR_CHARS, unprovenWorkerOf, type BrowserInfo, type ClientToServerEvents, type ServerToClientEvents } from "../../protocol/events.js";
import { checkGrabRequest, type ParsedGrabRequest } from "./checkGrabRequest.js";
import { SentScene } from "./SentScene.js";
import { checkImage, ImageCheckError, type ImageSource } from "../capture/checkImage.js";
import { describeIssues } from "../../protocol/describeIssues.js";
import { encodeRgba } from "../capture/encodeFrame.js";
import { ClassTable } from "../capture/ClassTable.js";
import {
  checkBoxes3d, checkPageLayers, encodeLayers, pageLayersOf, wireBytesPerPixel, type FrameInstance,
} from "../capture/layers.js";

export type { FrameInstance } from "../capture/layers.js";
export type SessionSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

/** A checked, encoded frame: the page's reply with its bytes as Buffers (encodeMs: the server's, for raw pixels). */
export interface GrabbedFrame extends Pick<GrabSuccess, "width" | "height" | "format" | "camera" | "renderMs" | "encodeMs"> {
  /** The rgb layer, encoded as `format`. */
  image: Buffer;
  /** Wall time from request to reply, as the server saw it. */
  roundTripMs: number;
  /** The grab's layers, resolved (resolveLayers): rgb first. */
  layers: LayerName[];
  /** Encoded file bytes of every file layer except rgb: depth/mask/class/normal PNG, depth32 .npy. */
  files: Partial<Record<LayerName, Buffer>>;
  /** = files.depth (kept for handlers written before layers): a 16-bit greyscale PNG of millimetres. */
  depth?: Buffer;
  /** With mask, class or boxes: every instance visible in this frame (pixels > 0), by id ascending. */
  instances?: FrameInstance[];
}

/**
 * What one websocket message from an authenticated page may hold (Farm applies it): the largest frame,
 * plus room for socket.io's framing. A grab reply travels as one text message (its JSON, at most
 * 64 KiB) and one binary message per attachment (the image, the 3D boxes, each page layer).
 */
export function messageLimitFor(maxFrameBytes: number): number {
  return maxFrameBytes + 1024 * 1024;
}

/**
 * The most binary data one grab reply may carry in all (image, layers, 3D boxes; Farm's decoder enforces
 * it): two of the largest messages. It bounds what one socket makes the server hold, and takes every layer
 * of frames up to about 2900×2900 besides an image of the largest size.
 */
export function replyLimitFor(maxFrameBytes: number): number {
  return 2 * messageLimitFor(maxFrameBytes);
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

/** The grab is refused before it is sent, or its reply is not a frame. */
export class GrabError extends Error {}
/** The page did not answer a grab in time: it is probably hung. */
export class GrabTimeoutError extends GrabError {}

/** A grab as sent to the page, with what its reply is checked against. */
interface PreparedGrab {
  /** The request as sent: `layers` resolved (rgb first, with what each needs), `maxBytes` the image's limit. */
  request: Readonly<ParsedGrabRequest>;
  layers: LayerName[];
  what: string;
  /** With mask, class or boxes: the scene's instance ids when the grab was sent. */
  instances?: InstanceResolution;
}

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
    private readonly pngLevel: number = RUN_DEFAULTS.pngLevel,
    /** The run's class table (one per Farm, shared by its sessions). */
    private readonly classes: ClassTable = new ClassTable(),
    /** Who sends this session's frames, for how deep they are checked (checkImage; Farm decides: imageSourceOf). */
    readonly imageSource: ImageSource = "any",
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
    const grab = this.prepareLayers(request, size);
    if (grab instanceof Error) return Promise.reject(grab);
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
      this.socket.emit("grab", seq, grab.request, (reply: GrabReply) => {
        if (!this.pending.delete(seq)) return; // timed out or disconnected already
        clearTimeout(timer);
        this.acceptReply(grab, size, reply, performance.now() - started).then(resolve, reject);
      });
    });
  }

  /**
   * The layers of a grab, and what its reply will be checked against: the scene's instance ids as
   * of now (ops sent after the grab do not change what its mask may hold). An Error when the grab
   * cannot be made: instance ids in error, or a reply that could not reach the server whole.
   */
  private prepareLayers(request: Readonly<ParsedGrabRequest>, size: { width: number; height: number }): PreparedGrab | Error {
    const what = `grabRender('${request.key}') on session ${this.id}`;
    const layers = grabLayers(request);
    const limit = messageLimitFor(this.maxFrameBytes);
    for (const name of pageLayersOf(layers)) {
      const bytes = size.width * size.height * wireBytesPerPixel(name);
      if (bytes > limit) {
        return new GrabError(
          `${what}: layer ${name} of a ${size.width}×${size.height} frame is ${bytes} bytes, over the ${limit}-byte limit of one message ` +
            `(the largest frame + 1 MiB); grab it smaller (downsample) or raise the frame limit (--max-frame-mb)`,
        );
      }
    }
    // The image's own limit: what the caller asked, never above the session's (one message).
    const maxBytes = Math.min(request.maxBytes ?? this.maxFrameBytes, this.maxFrameBytes);
    const sent: ParsedGrabRequest = { ...request, maxBytes, layers };
    const instances = needsInstanceIds(layers) ? this.sentScene.instances() : undefined;
    if (instances?.errors.length) {
      const shown = instances.errors.slice(0, 5).join("; ");
      return new GrabError(`${what}: layers ${layers.join(", ")} need instance ids, but the scene's are wrong: ${shown}${instances.errors.length > 5 ? ` (and ${instances.errors.length - 5} more)` : ""}`);
    }
    // The whole reply must pass the decoder's limit, or the page's socket would be cut for a legitimate answer.
    const imageBytes = request.encoding === "raw" ? size.width * size.height * 4 : maxBytes;
    const layerBytes = pageLayersOf(layers).reduce((sum, name) => sum + size.width * size.height * wireBytesPerPixel(name), 0);
    const replyBytes = imageBytes + layerBytes + (instances ? instances.ids.size * BOX3D_NUMBERS * 8 : 0);
    const replyLimit = replyLimitFor(this.maxFrameBytes);
    if (replyBytes > replyLimit) {
      return new GrabError(
        `${what}: the reply to layers ${layers.join(", ")} of a ${size.width}×${size.height} frame could hold ${replyBytes} bytes, over the ${replyLimit}-byte ` +
          `limit of one reply (twice the largest frame + 1 MiB); grab fewer layers or a smaller frame (downsample), or raise the frame limit (--max-frame-mb)`,
      );
    }
    if (!instances) return { request: sent, layers, what };
    return { request: sent, layers, what, instances };
  }

  /** Takes the reply to a grab if it is a complete image of exactly the size asked for (`size`), with every asked layer. */
  private async acceptReply(grab: PreparedGrab, size: { width: number; height: number }, reply: GrabReply, roundTripMs: number): Promise<GrabbedFrame> {
    // Everything in a reply comes from a page: trust nothing until checked.
    const { request, layers, what } = grab;
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
    if (request.encoding === "raw" && (!meta.data.raw || image.length !== width * height * 4)) {
      throw new ImageCheckError(`${what}: raw frame of ${image.length} bytes is not ${width}×${height} RGBA (${width * height * 4} bytes)`);
    }
    // Every layer is checked before anything is encoded; then the image and the layers are encoded at once.
    const pixels = checkPageLayers((reply as { layers?: unknown }).layers, pageLayersOf(layers), width, height, what);
    const boxes3d = grab.instances
      ? checkBoxes3d((reply as { boxes3d?: unknown }).boxes3d, grab.instances, layers.includes("boxes"), what)
      : new Map();
    let encodeMs = meta.data.encodeMs;
    const encodeImage = async () => {
      if (request.encoding !== "raw") return checkImage(image, { format: request.format, width, height, maxBytes: request.maxBytes, what, source: this.imageSource });
      const started = performance.now();
      image = await encodeRgba(image, width, height, { format: request.format, quality: request.quality, pngLevel: this.pngLevel });
      encodeMs = performance.now() - started; // encoded here by sharp: no need to check it
    };
    const [, { files, instances }] = await Promise.all([
      encodeImage(),
      encodeLayers({ layers, width, height, pixels, boxes3d, instances: grab.instances, classes: this.classes, pngLevel: this.pngLevel, what }),
    ]);
    this.framesDelivered++;
    const frame: GrabbedFrame = { image, width, height, format: request.format, camera, renderMs, encodeMs, roundTripMs, layers, files };
    if (files.depth) frame.depth = files.depth;
    if (instances) frame.instances = instances;
    return frame;
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
   * False when no "retired" will come: the session is closed, or never had a job loop (getsWork).
   */
  retire(): boolean {
    if (this.closed || !this.getsWork) return false;
    this.retiring = true;
    return true;
  }

  /**
   * Whether the farm runs the job loop (its handlers) for this session: it has WebGL, and it is not a remote
   * worker's tab admitted without that worker's current proof (whose worker will reload it: work given to it
   * now would be cut, an attempt each).
   */
  get getsWork(): boolean {
    return this.info.webgl && unprovenWorkerOf(this.info.worker) === undefined;
  }

  /** Drops a session whose page stopped answering; emits "hung" first so a harness can replace the tab. */
  dropHung(reason: string): void {
    this.emit("hung", reason);
    this.disconnect();
  }
}

// What a job handler gets besides the session: the job, and saveFrame to put frames in the dataset.
// A frame's files (rgb and every other layer's) are written at once; its frames.jsonl line is held
// until the job completes, so a job that fails or loses its lease leaves no lines behind (its files
// are overwritten when it is re-run).
import { openCvWorldToCamera } from "../../protocol/camera.js";
import type { JobSpec } from "../../protocol/job.js";
import { FILE_LAYERS, LAYERS, type LayerName } from "../../protocol/layers.js";
import type { DatasetWriter } from "../dataset/DatasetWriter.js";
import { FRAME_RECORD_FIELDS, type FrameRecord } from "../dataset/FrameRecord.js";
import { MAX_FRAME_LINE_BYTES } from "../dataset/readDataset.js";
import type { GrabbedFrame } from "../session/Session.js";
import { frameSeed } from "../dataset/seeds.js";
import type { RunEvents } from "../events/RunEvents.js";

export class LeaseLostError extends Error {}

export interface SaveFrameOptions {
  /** Frame index within the job; defaults to the next one (0, 1, 2, …). */
  index?: number;
  /** Extra fields for the frame's metadata line (must be JSON). */
  extra?: Record<string, unknown>;
  /** The values randomizers drew for this frame (its line's `randomized`). */
  randomized?: Record<string, unknown>;
}

export class JobContext {
  readonly id: string;
  readonly params: Record<string, unknown>;
  readonly records: FrameRecord[] = [];
  /** Each record as its frames.jsonl line (serialised once, when it was checked), in the same order. */
  readonly lines: string[] = [];
  /** Position in `records` (and `lines`) of each saved frame index. */
  private readonly recordAt = new Map<number, number>();
  private readonly abort = new AbortController();
  private nextIndex = 0;
  /** Set when the runner has returned: its frames' lines are being appended, so no frame may join them. */
  private ended = false;
  private issued!: () => void;
  /** Resolves once the runner has sent its last grab (see markAllIssued). */
  readonly allIssued = new Promise<void>((resolve) => (this.issued = resolve));

  constructor(
    readonly spec: JobSpec,
    readonly attempt: number,
    readonly sessionId: string,
    private readonly dataset: DatasetWriter,
    /**
     * Checked before each file write: a job whose lease was lost must not write. May answer at once
     * (a boolean) when the caller knows the lease cannot have ended yet, which spares a query per frame.
     */
    private readonly leaseIsCurrent: () => boolean | Promise<boolean>,
    /** The run's seed (--seed, or the dataset's): frame seeds derive from it (frameSeed). */
    readonly runSeed: number,
    /** Where each written frame is told (frame.written); absent: nowhere. */
    private readonly events?: RunEvents,
  ) {
    this.id = spec.id;
    this.params = spec.params ?? {};
  }

  /**
   * The seed of frame `index` of this job: the same on every attempt and every machine, so a frame
   * rendered again draws the same values. Handlers may seed their own draws with it (rngFor in
   * server/dispatch/randomizeFrame.ts); every frame's line records it as `seed`.
   */
  frameSeed(index: number): number {
    return frameSeed(this.runSeed, this.id, index);
  }

  /** Aborted when the lease is lost (expired and taken by another session) or the session went away. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /**
   * Says every grab of this job has been sent: the session may take its next job now, so the tab
   * renders that job's frames while this one's last frames are still encoding and uploading.
   */
  markAllIssued(): void {
    this.issued();
  }

  /** The runner returned: a saveFrame not awaited by then is refused rather than written without its line. */
  end(): void {
    this.ended = true;
  }

  private refuseIfEnded(): void {
    if (this.ended) throw new Error(`job ${this.id}: saveFrame after the handler returned; frame not written (await every saveFrame before returning)`);
  }

  cancel(reason: string): void {
    if (!this.abort.signal.aborted) this.abort.abort(new LeaseLostError(`job ${this.id}: ${reason}`));
  }

  async saveFrame(frame: GrabbedFrame, options: SaveFrameOptions = {}): Promise<FrameRecord> {
    this.refuseIfEnded();
    this.signal.throwIfAborted();
    const index = options.index ?? this.nextIndex;
    // A field of the line's own would be overwritten, or (depth_file, instances) misdescribe the frame's files.
    const clashing = Object.keys(options.extra ?? {}).filter((name) => FRAME_RECORD_FIELDS.has(name));
    if (clashing.length) throw new Error(`job ${this.id} frame ${index}: extra field(s) ${clashing.join(", ")} are the line's own fields; name them otherwise. Frame not written`);
    // Readers (verify, export) take `randomized` as drawn values by name: anything else would be a line they refuse.
    const { randomized } = options;
    if (randomized !== undefined && (typeof randomized !== "object" || randomized === null || Array.isArray(randomized))) {
      throw new Error(`job ${this.id} frame ${index}: randomized must be an object of drawn values by name ("box.color": "#…"), got ${Array.isArray(randomized) ? "a list" : typeof randomized}. Frame not written`);
    }
    this.nextIndex = Math.max(this.nextIndex, index + 1);
    const file = this.dataset.framePath(this.id, index, frame.format);
    const current = this.leaseIsCurrent();
    if (!(current === true || (await current))) {
      this.cancel("lease is no longer held; frame not written");
    }
    // Also when the answer came while waiting: the job may have been cancelled meanwhile.
    this.signal.throwIfAborted();
    const layers = await this.writeLayerFiles(frame, index, file);
    this.events?.emit({
      type: "frame.written", at: Date.now(), job: this.id, frame: index, session: this.sessionId, bytes: frameBytes(frame),
      render_ms: round(frame.renderMs), encode_ms: round(frame.encodeMs), files: layers,
    });
    const { cameraToWorld } = frame.camera;
    const record: FrameRecord = {
      ...(options.extra ?? {}),
      job: this.id,
      frame: index,
      file,
      width: frame.width,
      height: frame.height,
      format: frame.format,
      layers,
      ...(layers.depth ? { depth_file: layers.depth, depth_scale: DEPTH_SCALE } : {}),
      K: frame.camera.K,
      cameraToWorld,
      world_to_camera_opencv: openCvWorldToCamera(cameraToWorld),
      fov: frame.camera.fov,
      near: frame.camera.near,
      far: frame.camera.far,
      ...(frame.instances ? { instances: frame.instances } : {}),
      params: this.params,
      seed: this.frameSeed(index),
      ...(options.randomized ? { randomized: options.randomized } : {}),
      session: this.sessionId,
      render_ms: round(frame.renderMs),
      encode_ms: round(frame.encodeMs),
      attempt: this.attempt,
    };
    this.refuseIfEnded(); // its file is written, but it is not one of the job's frames: the next run overwrites it
    const line = this.readableLine(record, index);
    // A frame saved twice in one attempt keeps only its last line (found by index: jobs may be long).
    const existing = this.recordAt.get(index);
    if (existing !== undefined) {
      this.records[existing] = record;
      this.lines[existing] = line;
    } else {
      this.recordAt.set(index, this.records.push(record) - 1);
      this.lines.push(line);
    }
    return record;
  }

  /**
   * The record's frames.jsonl line, serialised once: the text checked here is the text appended. A line
   * readers could not read back is not kept (its files are, and a re-run overwrites them): one that is no
   * JSON (a BigInt or a cycle in `extra`), or longer than readFrameLines reads (tens of thousands of
   * visible instances, or a huge `extra`).
   */
  private readableLine(record: FrameRecord, index: number): string {
    let line: string;
    try {
      line = JSON.stringify(record);
    } catch (err) {
      throw new Error(`job ${this.id} frame ${index}: its frames.jsonl line is not JSON (${(err as Error).message}); frame not kept`);
    }
    const bytes = Buffer.byteLength(line);
    if (bytes > MAX_FRAME_LINE_BYTES) {
      throw new Error(
        `job ${this.id} frame ${index}: its frames.jsonl line would be ${bytes} bytes (${record.instances?.length ?? 0} instances), ` +
          `over the ${MAX_FRAME_LINE_BYTES}-byte limit of a line readers accept; frame not kept (show fewer instances per frame)`,
      );
    }
    return line;
  }

  /**
   * Writes the frame's rgb image at `rgbFile` and every other layer's file beside it
   * (images/<job>/<frame>.<suffix>.<ext>), all before its line can be kept; returns their paths by layer.
   */
  private async writeLayerFiles(frame: GrabbedFrame, index: number, rgbFile: string): Promise<Partial<Record<LayerName, string>>> {
    // `depth` alone: a frame made before layers (kept on GrabbedFrame for such handlers).
    const files: Partial<Record<LayerName, Buffer>> = { ...frame.files };
    if (!files.depth && frame.depth) files.depth = frame.depth;
    for (const name of frame.layers ?? []) {
      if (name !== "rgb" && LAYERS[name].file && !files[name]) throw new Error(`job ${this.id} frame ${index}: the ${name} layer was asked for but the frame has no ${name} file; nothing written`);
    }
    // A mask or class image means nothing without the ids it uses (verify refuses such a line).
    const idFiles = (["mask", "class"] as const).filter((name) => files[name]);
    if (idFiles.length && !frame.instances) throw new Error(`job ${this.id} frame ${index}: the frame has a ${idFiles.join(" and ")} file but no instances; nothing written`);
    const paths: Partial<Record<LayerName, string>> = { rgb: rgbFile };
    const writes = [this.dataset.writeFile(rgbFile, frame.image)];
    for (const name of FILE_LAYERS) {
      const bytes = files[name];
      const file = LAYERS[name].file!;
      if (name === "rgb" || !bytes || file.ext === "format") continue;
      paths[name] = this.dataset.framePath(this.id, index, file.ext, file.suffix);
      writes.push(this.dataset.writeFile(paths[name], bytes));
    }
    await Promise.all(writes);
    return paths;
  }
}

/** depth PNGs hold millimetres: metres per step. */
const DEPTH_SCALE = 0.001;
const round = (ms: number) => Math.round(ms * 100) / 100;
const frameBytes = (frame: GrabbedFrame) => Object.values(frame.files ?? {}).reduce((n, bytes) => n + (bytes?.length ?? 0), frame.image.length);

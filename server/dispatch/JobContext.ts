// What a job handler gets besides the session: the job, and saveFrame to put frames in the dataset.
// Files are written at once; their frames.jsonl lines are held until the job completes, so a job that
// fails or loses its lease leaves no lines behind (its files are overwritten when it is re-run).
import type { JobSpec } from "../../protocol/job.js";
import type { DatasetWriter } from "../dataset/DatasetWriter.js";
import type { FrameRecord } from "../dataset/FrameRecord.js";
import type { GrabbedFrame } from "../session/Session.js";

export class LeaseLostError extends Error {}

export interface SaveFrameOptions {
  /** Frame index within the job; defaults to the next one (0, 1, 2, …). */
  index?: number;
  /** Extra fields for the frame's metadata line (must be JSON). */
  extra?: Record<string, unknown>;
}

export class JobContext {
  readonly id: string;
  readonly params: Record<string, unknown>;
  readonly records: FrameRecord[] = [];
  /** Position in `records` of each saved frame index. */
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
  ) {
    this.id = spec.id;
    this.params = spec.params ?? {};
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
    this.nextIndex = Math.max(this.nextIndex, index + 1);
    const file = this.dataset.framePath(this.id, index, frame.format);
    const current = this.leaseIsCurrent();
    if (!(current === true || (await current))) {
      this.cancel("lease is no longer held; frame not written");
    }
    // Also when the answer came while waiting: the job may have been cancelled meanwhile.
    this.signal.throwIfAborted();
    await this.dataset.writeFile(file, frame.image);
    const depthFile = frame.depth ? this.dataset.framePath(this.id, index, "png", "depth") : undefined;
    if (depthFile) await this.dataset.writeFile(depthFile, frame.depth!);
    const record: FrameRecord = {
      ...(options.extra ?? {}),
      job: this.id,
      frame: index,
      file,
      width: frame.width,
      height: frame.height,
      format: frame.format,
      K: frame.camera.K,
      cameraToWorld: frame.camera.cameraToWorld,
      params: this.params,
      session: this.sessionId,
      render_ms: round(frame.renderMs),
      encode_ms: round(frame.encodeMs),
      attempt: this.attempt,
      ...(depthFile ? { depth_file: depthFile, depth_scale: 0.001 } : {}),
    };
    this.refuseIfEnded(); // its file is written, but it is not one of the job's frames: the next run overwrites it
    // A frame saved twice in one attempt keeps only its last line (found by index: jobs may be long).
    const existing = this.recordAt.get(index);
    if (existing !== undefined) this.records[existing] = record;
    else this.recordAt.set(index, this.records.push(record) - 1);
    return record;
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;

// The run's events: one typed stream that everything showing a run reads (the CLI's progress and
// failure lines, the dashboard, GET /api/status, the end-of-run summary, `status`). Dispatch, the farm
// and the dataset emit them (server/events/RunEvents.ts); RunStats folds them into a RunView. Times are
// epoch milliseconds. Events marked "kept" are also appended to the dataset's run-events.jsonl, so a
// later run and `status` can read the history.

/** A job's lease went to a session (its attempt counted). */
export interface JobLeased { type: "job.leased"; at: number; job: string; session: string; attempt: number }
/** A job completed: its frames' lines are in frames.jsonl. */
export interface JobDone { type: "job.done"; at: number; job: string; session: string; frames: number; attempt: number }
/** An attempt failed and the job went back to the queue for another (kept). */
export interface JobRetried { type: "job.retried"; at: number; job: string; session: string; attempt: number; error: string }
/** An attempt failed and the job has no attempts left: it is failed (kept). */
export interface JobFailed { type: "job.failed"; at: number; job: string; session: string; attempt: number; error: string }
/** A lease went back without counting the attempt (a stop of ours, storage refusing writes). */
export interface JobReleased { type: "job.released"; at: number; job: string; session: string; reason: string }
/** Failed jobs were put back in the queue (the dashboard's retry button), attempts reset (kept). */
export interface JobsRequeued { type: "jobs.requeued"; at: number; jobs: string[]; by: string }
/** A frame's files are written (its line is appended when its job completes). */
export interface FrameWritten {
  type: "frame.written";
  at: number;
  job: string;
  frame: number;
  session: string;
  /** Bytes of all its files. */
  bytes: number;
  render_ms: number;
  encode_ms: number;
  /** Its files by layer, relative to the dataset folder. */
  files: Record<string, string>;
}
/** A tab said hello (kept). */
export interface SessionJoined {
  type: "session.joined";
  at: number;
  session: string;
  worker: string;
  renderer: string;
  userAgent: string;
  webgl: boolean;
}
/** A session disconnected (kept), with what it did. */
export interface SessionLeft { type: "session.left"; at: number; session: string; reason: string; frames: number; jobs: number; failures: number }
/** A session stopped answering grabs and was dropped (kept). */
export interface SessionHung { type: "session.hung"; at: number; session: string; reason: string }
/** A session finished its jobs and takes no more, to be replaced (bounded browser memory) (kept). */
export interface SessionRecycled { type: "session.recycled"; at: number; session: string; frames: number }
/** A session failed far more than its peers and gets no more jobs (kept). */
export interface SessionQuarantined { type: "session.quarantined"; at: number; session: string; reason: string }
/** The dataset or the queue refused writes: dispatch paused (kept). */
export interface WritePaused { type: "write.paused"; at: number; store: "dataset" | "queue"; error: string }
/** Storage takes writes again: dispatch resumed (kept). */
export interface WriteResumed { type: "write.resumed"; at: number; seconds: number }
/** Someone (the dashboard) paused or resumed handing out jobs; running jobs finish (kept). */
export interface DispatchPaused { type: "dispatch.paused"; at: number; by: string }
export interface DispatchResumed { type: "dispatch.resumed"; at: number; by: string }
/** The run started serving: the queue's counts once, from which the events count on (kept). */
export interface RunStarted {
  type: "run.started";
  at: number;
  out: string;
  counts: JobCounts;
  /** frames.jsonl's lines when the run started. */
  frames: number;
}
/** Every few seconds while frames land: the run's totals so far (kept; the frames/s history is rebuilt from these). */
export interface RunProgress { type: "run.progress"; at: number; frames: number; jobs_done: number; failed: number }
/** Every job is done or failed, or the run was stopped (kept). */
export interface RunDone { type: "run.done"; at: number; frames: number; jobs_done: number; counts: JobCounts; seconds: number; stopped?: string }

/**
 * `text` with each control character (C0 but tab and newline, DEL, C1, and the bidi overrides that
 * reorder what a terminal shows) as "?": error texts come from pages and handlers, and an escape sequence
 * in one would rewrite a terminal or a CI log. A stack trace keeps its lines. What the CLI prints and what
 * the view shows go through this.
 */
export const withoutControlCharacters = (text: string): string => text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, "?");

export type RunEvent =
  | JobLeased | JobDone | JobRetried | JobFailed | JobReleased | JobsRequeued | FrameWritten
  | SessionJoined | SessionLeft | SessionHung | SessionRecycled | SessionQuarantined
  | WritePaused | WriteResumed | DispatchPaused | DispatchResumed
  | RunStarted | RunProgress | RunDone;

export type RunEventType = RunEvent["type"];

/** The events appended to run-events.jsonl: few per run, unlike leases and frames. */
export const KEPT_EVENTS: ReadonlySet<RunEventType> = new Set<RunEventType>([
  "job.retried", "job.failed", "jobs.requeued", "session.joined", "session.left", "session.hung", "session.recycled",
  "session.quarantined", "write.paused", "write.resumed", "dispatch.paused", "dispatch.resumed", "run.started", "run.progress", "run.done",
]);

export interface JobCounts {
  pending: number;
  leased: number;
  done: number;
  failed: number;
  total: number;
}

// --- What the dashboard and /api/status show: the events folded (server/events/RunStats.ts) ------------

export type SessionState = "idle" | "working" | "recycling" | "quarantined" | "hung" | "left";

export interface SessionRow {
  id: string;
  /** `tab-N` for launched tabs, else what the page called itself. */
  worker: string;
  /** Browser name and version from the user agent ("Chrome 143"), or the user agent cut short. */
  browser: string;
  renderer: string;
  state: SessionState;
  frames: number;
  /** Over the last RATE_WINDOW_S seconds. */
  framesPerSecond: number;
  jobs: number;
  failures: number;
  /** The job it holds now (the latest leased), if any. */
  job: string | null;
  lastError: string | null;
  /** Epoch ms. */
  since: number;
  /** Epoch ms it left, for rows kept after a session left. */
  leftAt?: number;
}

export interface FailedJobRow {
  id: string;
  attempts: number;
  error: string;
  at: number;
}

/** One point of the frames/s chart: frames per second over the bucket ending at `t` (epoch ms). */
export interface RatePoint {
  t: number;
  fps: number;
}

export interface RunView {
  out: string;
  /** Epoch ms the run started serving, and now (the server's clock). */
  startedAt: number;
  now: number;
  counts: JobCounts;
  /** Frames of jobs completed in this run, and in frames.jsonl now (earlier runs included). */
  frames: number;
  framesTotal: number;
  jobsDone: number;
  /** Failed attempts put back for another, and jobs failed for good, in this run. */
  retries: number;
  failures: number;
  /** Over the last RATE_WINDOW_S seconds. */
  framesPerSecond: number;
  /** Seconds until every pending and leased job is done at the recent job rate; null when unknown. */
  etaSeconds: number | null;
  /** Handing out jobs is paused: by whom (the dashboard), or by storage refusing writes. */
  paused: { by: string; since: number } | null;
  writePaused: { store: string; error: string; since: number } | null;
  sessions: SessionRow[];
  /** The latest failed jobs (newest first; at most MAX_FAILED_ROWS). */
  failed: FailedJobRow[];
  /** run.done came: the run is over (every job done or failed, or stopped: see `stopped`). */
  finished: boolean;
  /** Why the run ended before every job was done or failed (a stop, storage given up on); null otherwise. */
  stopped: string | null;
}

/** Seconds the live rates (frames/s, ETA) average over. */
export const RATE_WINDOW_S = 10;
/** Rows the view keeps: sessions that left, and failed jobs (the queue has them all). */
export const MAX_LEFT_SESSION_ROWS = 64;
export const MAX_FAILED_ROWS = 100;
/** Longest error text the view carries (a row's lastError, a failed job's error); the rest is cut. */
export const MAX_VIEW_TEXT_CHARS = 300;

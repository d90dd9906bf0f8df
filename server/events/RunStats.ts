// The run's events folded into what the CLI, the dashboard and /api/status show (protocol RunView):
// counts by state (the queue's once at the start, then moved by each event), frames, rates over a
// short window, ETA, a row per session, the latest failed jobs, and the frames/s chart. Everything here
// is bounded: rows of sessions that left and failed jobs are capped, the chart merges its buckets.
import type { FailedJobRow, JobCounts, RatePoint, RunEvent, RunView, SessionRow } from "../../protocol/runEvents.js";
import { MAX_FAILED_ROWS, MAX_LEFT_SESSION_ROWS, MAX_VIEW_TEXT_CHARS, RATE_WINDOW_S, withoutControlCharacters } from "../../protocol/runEvents.js";
import { MAX_RATE_POINTS } from "../../protocol/dashboard.js";

/** Counts per whole second over the last `seconds` seconds (a ring of buckets), for a rate. */
export class RateWindow {
  private readonly buckets: Float64Array;
  private readonly stamps: Float64Array;

  constructor(private readonly seconds: number) {
    this.buckets = new Float64Array(seconds);
    this.stamps = new Float64Array(seconds).fill(-1);
  }

  add(at: number, n: number): void {
    const second = Math.floor(at / 1000);
    const slot = second % this.seconds;
    if (this.stamps[slot] !== second) {
      this.stamps[slot] = second;
      this.buckets[slot] = 0;
    }
    this.buckets[slot] += n;
  }

  /** Per second over the window's seconds before `now` (the current, unfinished second counted in), or over `since` when it is shorter. */
  perSecond(now: number, since = 0): number {
    const second = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 0; i < this.seconds; i++) if (this.stamps[i] > second - this.seconds && this.stamps[i] <= second) sum += this.buckets[i];
    const span = Math.min(this.seconds, Math.max(1, (now - since) / 1000));
    return sum / span;
  }
}

/** The frames/s chart: buckets of `width` ms; past MAX_RATE_POINTS neighbours are merged and the width doubles. */
export class RateSeries {
  private readonly points: { t: number; fps: number; ms: number }[] = [];
  private width = 1000;
  private bucketStart: number;
  private count = 0;
  private fresh: RatePoint[] = [];
  private reset = true;

  constructor(start: number, history: readonly RatePoint[] = []) {
    for (const [i, p] of history.entries()) this.points.push({ ...p, ms: Math.max(1, p.t - (history[i - 1]?.t ?? p.t - 1000)) });
    while (this.points.length > MAX_RATE_POINTS / 2) this.merge();
    // Nothing ran between the last run's end and this start: zero there, not a line across the gap.
    const last = this.points.at(-1);
    if (last && start > last.t + 1) this.points.push({ t: last.t + 1, fps: 0, ms: 1 }, { t: start, fps: 0, ms: start - last.t - 1 });
    this.bucketStart = start;
  }

  add(at: number, frames: number): void {
    this.advance(at);
    this.count += frames;
  }

  /** Closes the buckets that ended by `now` (an idle stretch becomes one zero point at each end). */
  advance(now: number): void {
    // The width of the buckets being closed: close() may double this.width for the next ones.
    const width = this.width;
    const end = this.bucketStart + width;
    if (now < end) return;
    const idle = Math.floor((now - this.bucketStart) / width) - 1;
    this.close(end, this.count / (width / 1000), width);
    if (idle > 0) this.close(end + width * idle, 0, width * idle);
    this.bucketStart = end + width * idle;
    this.count = 0;
  }

  /** Every point, for a new dashboard. */
  all(): RatePoint[] {
    return this.points.map(({ t, fps }) => ({ t, fps }));
  }

  /** Points closed since the last call, and whether they replace the series (buckets were merged). */
  takeChanges(): { points: RatePoint[]; reset: boolean } {
    const changes = this.reset ? { points: this.all(), reset: true } : { points: this.fresh, reset: false };
    this.fresh = [];
    this.reset = false;
    return changes;
  }

  private close(t: number, fps: number, ms: number): void {
    const point = { t, fps: Math.round(fps * 100) / 100, ms };
    this.points.push(point);
    this.fresh.push({ t: point.t, fps: point.fps });
    if (this.points.length > MAX_RATE_POINTS) {
      this.merge();
      this.width *= 2;
      this.reset = true;
    }
  }

  /** Halves the points: each pair becomes one, its rate weighted by the time each covered. */
  private merge(): void {
    const merged = [];
    for (let i = 0; i < this.points.length; i += 2) {
      const a = this.points[i];
      const b = this.points[i + 1];
      if (!b) merged.push(a);
      else merged.push({ t: b.t, ms: a.ms + b.ms, fps: Math.round(((a.fps * a.ms + b.fps * b.ms) / (a.ms + b.ms)) * 100) / 100 });
    }
    this.points.splice(0, this.points.length, ...merged);
  }
}

/** Browsers by precedence: an agent names several (Edge's names Chrome and Safari too). */
const BROWSERS: [RegExp, string][] = [
  [/Edg(?:e|A|iOS)?\/(\d+)/, "Edge"],
  [/HeadlessChrome\/(\d+)/, "Chrome (headless)"],
  [/Chromium\/(\d+)/, "Chromium"],
  [/Firefox\/(\d+)/, "Firefox"],
  [/Chrome\/(\d+)/, "Chrome"],
  [/Version\/(\d+)[\d.]* (?:Mobile\/\w+ )?Safari\//, "Safari"],
];

/** "Chrome 143" from a user agent; the agent cut short when it names no browser we know. */
export function browserName(userAgent: string): string {
  for (const [pattern, name] of BROWSERS) {
    const m = pattern.exec(userAgent);
    if (m) return `${name} ${m[1]}`;
  }
  return userAgent.slice(0, 40);
}

interface SessionFigures extends SessionRow {
  held: string[];
  rate: RateWindow;
}

export interface RunStatsOptions {
  out: string;
  startedAt: number;
  counts: JobCounts;
  framesAtStart: number;
  /** The frames/s chart of earlier runs on this dataset (run-events.jsonl). */
  history?: readonly RatePoint[];
}

export class RunStats {
  readonly counts: JobCounts;
  frames = 0;
  jobsDone = 0;
  retries = 0;
  failures = 0;
  readonly rate: RateSeries;
  private readonly frameRate = new RateWindow(RATE_WINDOW_S);
  /** Jobs done per second over a longer window: ETA is about jobs, which take seconds each. */
  private readonly jobRate = new RateWindow(60);
  private readonly sessions = new Map<string, SessionFigures>();
  private readonly failed = new Map<string, FailedJobRow>();
  private paused: RunView["paused"] = null;
  private writePaused: RunView["writePaused"] = null;
  private finished = false;
  private stopped: string | null = null;
  /** Bumped by every event: a reader sends a view only when it changed. */
  version = 0;

  constructor(private readonly options: RunStatsOptions) {
    this.counts = { ...options.counts };
    this.rate = new RateSeries(options.startedAt, options.history);
  }

  /** Failed jobs known before the run (the queue's), shown until retried. */
  noteFailed(rows: readonly FailedJobRow[]): void {
    for (const row of rows) this.keepFailed(row);
  }

  advance(now: number): void {
    this.rate.advance(now);
  }

  apply(e: RunEvent): void {
    this.version++;
    const c = this.counts;
    switch (e.type) {
      case "job.leased": {
        c.pending--;
        c.leased++;
        const s = this.sessions.get(e.session);
        if (s) s.held.push(e.job);
        break;
      }
      case "job.done": {
        c.leased--;
        c.done++;
        this.frames += e.frames;
        this.jobsDone++;
        this.jobRate.add(e.at, 1);
        const s = this.release(e.session, e.job);
        if (s) s.jobs++;
        break;
      }
      case "job.retried":
      case "job.failed": {
        c.leased--;
        const s = this.release(e.session, e.job);
        if (s) {
          s.failures++;
          s.lastError = shownText(e.error);
        }
        if (e.type === "job.retried") {
          c.pending++;
          this.retries++;
        } else {
          c.failed++;
          this.failures++;
          this.keepFailed({ id: e.job, attempts: e.attempt, error: e.error, at: e.at });
        }
        break;
      }
      case "job.released":
        c.leased--;
        c.pending++;
        this.release(e.session, e.job);
        break;
      case "jobs.requeued":
        c.failed -= e.jobs.length;
        c.pending += e.jobs.length;
        for (const id of e.jobs) this.failed.delete(id);
        break;
      case "frame.written": {
        this.frameRate.add(e.at, 1);
        this.rate.add(e.at, 1);
        const s = this.sessions.get(e.session);
        if (s) {
          s.frames++;
          s.rate.add(e.at, 1);
        }
        break;
      }
      case "session.joined":
        this.sessions.set(e.session, {
          // Names a page gave itself: shown, so without control characters.
          id: e.session, worker: withoutControlCharacters(e.worker), browser: withoutControlCharacters(browserName(e.userAgent)),
          renderer: withoutControlCharacters(e.renderer), state: "idle",
          frames: 0, framesPerSecond: 0, jobs: 0, failures: 0, job: null, lastError: null, since: e.at, held: [], rate: new RateWindow(RATE_WINDOW_S),
        });
        break;
      case "session.left": {
        const s = this.sessions.get(e.session);
        if (!s) break;
        if (s.state !== "hung" && s.state !== "quarantined") s.state = "left"; // else its row keeps why it went
        s.leftAt = e.at;
        s.held = [];
        this.dropOldLeftSessions();
        break;
      }
      case "session.hung":
      case "session.quarantined":
      case "session.recycled": {
        const s = this.sessions.get(e.session);
        if (!s) break;
        s.state = e.type === "session.hung" ? "hung" : e.type === "session.quarantined" ? "quarantined" : "recycling";
        if (e.type !== "session.recycled") s.lastError = shownText(e.reason);
        break;
      }
      case "write.paused":
        this.writePaused = { store: e.store, error: shownText(e.error), since: e.at };
        break;
      case "write.resumed":
        this.writePaused = null;
        break;
      case "dispatch.paused":
        this.paused = { by: e.by, since: e.at };
        break;
      case "dispatch.resumed":
        this.paused = null;
        break;
      case "run.done":
        this.finished = true;
        this.stopped = e.stopped === undefined ? null : shownText(e.stopped);
        break;
      case "run.started":
      case "run.progress":
        break;
    }
  }

  /** The figures of session `id` (for its session.left event). */
  session(id: string): SessionRow | undefined {
    return this.sessions.get(id);
  }

  view(now = Date.now()): RunView {
    const { startedAt } = this.options;
    const c = this.counts;
    const jobsPerSecond = this.jobRate.perSecond(now, startedAt);
    const remaining = c.pending + c.leased;
    return {
      out: this.options.out,
      startedAt,
      now,
      counts: { ...c },
      frames: this.frames,
      framesTotal: this.options.framesAtStart + this.frames,
      jobsDone: this.jobsDone,
      retries: this.retries,
      failures: this.failures,
      framesPerSecond: round(this.frameRate.perSecond(now, startedAt)),
      etaSeconds: remaining === 0 ? 0 : jobsPerSecond > 0 ? Math.round(remaining / jobsPerSecond) : null,
      paused: this.paused,
      writePaused: this.writePaused,
      sessions: [...this.sessions.values()].map(({ held: _held, rate, ...row }) => ({
        ...row,
        job: row.state === "left" ? null : (_held.at(-1) ?? null),
        state: row.state === "idle" && _held.length ? "working" : row.state,
        framesPerSecond: round(rate.perSecond(now, row.since)),
      })),
      failed: [...this.failed.values()].reverse(),
      finished: this.finished,
      stopped: this.stopped,
    };
  }

  /** The session's row after it let go of `job`. */
  private release(session: string, job: string): SessionFigures | undefined {
    const s = this.sessions.get(session);
    if (!s) return undefined;
    const at = s.held.indexOf(job);
    if (at >= 0) s.held.splice(at, 1);
    return s;
  }

  private keepFailed(row: FailedJobRow): void {
    this.failed.delete(row.id); // re-inserted as the newest
    this.failed.set(row.id, { ...row, error: shownText(row.error) });
    if (this.failed.size > MAX_FAILED_ROWS) this.failed.delete(this.failed.keys().next().value!);
  }

  private dropOldLeftSessions(): void {
    // The earliest to leave go first (not the earliest to join: a long-lived session just left).
    const left = [...this.sessions.values()].filter((s) => s.leftAt !== undefined).sort((a, b) => a.leftAt! - b.leftAt!);
    for (const s of left.slice(0, Math.max(0, left.length - MAX_LEFT_SESSION_ROWS))) this.sessions.delete(s.id);
  }
}

const round = (n: number) => Math.round(n * 10) / 10;
/**
 * A text from a page or a handler as the view shows it: without control characters, and cut to
 * MAX_VIEW_TEXT_CHARS (the view goes to every dashboard 4 times a second; the queue and the log keep it whole).
 */
const shownText = (text: string) => withoutControlCharacters(text.slice(0, MAX_VIEW_TEXT_CHARS));

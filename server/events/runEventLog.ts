// run-events.jsonl at the top of a dataset: the run events worth keeping (KEPT_EVENTS: sessions, failed
// attempts, pauses, the run's totals every few seconds, its start and end), one JSON object a line, so
// a later run rebuilds its frames/s history and `status` shows the last run's figures. Only a farm holding
// the dataset's lock appends to it; readers read the last MAX_HISTORY_BYTES and skip lines they can't use.
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { RatePoint, RunEvent } from "../../protocol/runEvents.js";
import { KEPT_EVENTS } from "../../protocol/runEvents.js";

export const RUN_EVENTS_FILE = "run-events.jsonl";
/** What a reader reads of the file: its end (a long history's start is dropped, not the recent runs). */
export const MAX_HISTORY_BYTES = 8 * 1024 * 1024;
/** Failed attempts kept per run: a run where every job fails writes the first ones, then one line saying how many more. */
export const MAX_FAILURE_LINES_PER_RUN = 10_000;
/** Lines waiting for the disk at most; past it (a disk that stopped taking writes) new ones are dropped and counted. */
const MAX_PENDING_LINES = 10_000;
const FLUSH_EVERY_MS = 1000;

// O_NONBLOCK: a FIFO at the path fails at once (ENXIO) instead of waiting for a reader; a regular file ignores it.
const APPEND = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/** Appends events to `<root>/run-events.jsonl` in batches (each second, and at close); a failing disk is logged once per outage. */
export class RunEventLog {
  readonly file: string;
  private pending: string[] = [];
  private dropped = 0;
  private failureLines = 0;
  private failing = false;
  private writing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;

  constructor(root: string, private readonly log: (line: string) => void) {
    this.file = path.join(root, RUN_EVENTS_FILE);
    this.timer = setInterval(() => void this.flush(), FLUSH_EVERY_MS);
    this.timer.unref();
  }

  append(event: RunEvent): void {
    if (event.type === "job.retried" || event.type === "job.failed") {
      if (++this.failureLines > MAX_FAILURE_LINES_PER_RUN) return;
    }
    if (event.type === "run.done" && this.failureLines > MAX_FAILURE_LINES_PER_RUN) {
      this.pending.push(JSON.stringify({ type: "log.note", at: event.at, note: `${this.failureLines - MAX_FAILURE_LINES_PER_RUN} failed attempts of this run were not kept here (the queue has every failed job)` }));
    }
    if (this.pending.length >= MAX_PENDING_LINES) {
      this.dropped++;
      return;
    }
    this.pending.push(JSON.stringify(event));
  }

  /** Writes what is pending (in order: one write at a time). */
  flush(): Promise<void> {
    this.writing = this.writing.then(() => this.writePending());
    return this.writing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async writePending(): Promise<void> {
    if (this.pending.length === 0 && this.dropped === 0) return;
    const lines = this.pending;
    const dropped = this.dropped;
    this.pending = [];
    this.dropped = 0;
    // The dropped lines' note is written with them, never queued: a queued note would take a line's place.
    const note = dropped ? [JSON.stringify({ type: "log.note", at: Date.now(), note: `${dropped} run events were dropped while ${RUN_EVENTS_FILE} could not be written` })] : [];
    try {
      const handle = await fsp.open(this.file, APPEND, 0o644);
      try {
        const stat = await handle.stat();
        if (!stat.isFile()) throw new Error("not a regular file");
        // A hard link would carry the appends to a file outside the dataset.
        if (stat.nlink > 1) throw new Error("it has other names (hard links); it is not the dataset's own file");
        await handle.appendFile([...lines, ...note].join("\n") + "\n");
      } finally {
        await handle.close();
      }
      if (this.failing) this.log(`run events: ${RUN_EVENTS_FILE} is written again`);
      this.failing = false;
    } catch (err) {
      // The run goes on (the frames matter, not their history); the lines wait for the next try, within
      // bounds: the oldest are kept (a reader needs the run's start), the newest dropped and counted.
      if (!this.failing) this.log(`run events: could not append to ${this.file} (${(err as Error)?.message ?? err}); the run goes on, its history may miss events`);
      this.failing = true;
      const back = [...lines, ...this.pending];
      this.pending = back.slice(0, MAX_PENDING_LINES);
      this.dropped += dropped + back.length - this.pending.length;
    }
  }
}

/** One session of a past run, from its joined and left events. */
export interface PastSession {
  session: string;
  worker: string;
  renderer: string;
  frames: number;
  jobs: number;
  failures: number;
  joined: number;
  left?: number;
  reason?: string;
}

export interface PastRun {
  started: number;
  /** Epoch ms of its run.done, or of its last event when it did not end (killed). */
  ended: number;
  /** Whether it ended with run.done. */
  finished: boolean;
  frames: number;
  jobsDone: number;
  sessions: PastSession[];
  retries: number;
  failures: number;
}

export interface RunHistory {
  /** The frames/s chart of earlier runs: a point per kept progress line, a zero between runs. */
  rate: RatePoint[];
  /** The last run in the file, if any. */
  lastRun?: PastRun;
  /** Lines that were no event (cut, edited, from a newer tabfarm): skipped. */
  skipped: number;
}

/** Reads the end of `<root>/run-events.jsonl`; a dataset without one has no history. */
export async function readRunHistory(root: string): Promise<RunHistory> {
  const text = await readEnd(path.join(root, RUN_EVENTS_FILE), MAX_HISTORY_BYTES);
  const history: RunHistory = { rate: [], skipped: 0 };
  if (text === undefined) return history;
  let run: PastRun | undefined;
  let last: { at: number; frames: number } | undefined;
  for (const line of text.split("\n")) {
    if (!line) continue;
    const event = parseEvent(line);
    if (!event) {
      history.skipped++;
      continue;
    }
    if (event.type === "run.started") {
      if (last) history.rate.push({ t: last.at + 1, fps: 0 });
      last = { at: event.at, frames: 0 };
      run = { started: event.at, ended: event.at, finished: false, frames: 0, jobsDone: 0, sessions: [], retries: 0, failures: 0 };
      history.lastRun = run;
      continue;
    }
    if (!run) continue; // the start of this run was cut off with the file's beginning
    run.ended = Math.max(run.ended, event.at);
    switch (event.type) {
      case "run.progress":
        if (last && event.at > last.at) history.rate.push({ t: event.at, fps: Math.max(0, (event.frames - last.frames) / ((event.at - last.at) / 1000)) });
        last = { at: event.at, frames: event.frames };
        run.frames = event.frames;
        run.jobsDone = event.jobs_done;
        break;
      case "run.done":
        run.finished = true;
        run.frames = event.frames;
        run.jobsDone = event.jobs_done;
        break;
      case "session.joined":
        run.sessions.push({ session: event.session, worker: event.worker, renderer: event.renderer, frames: 0, jobs: 0, failures: 0, joined: event.at });
        break;
      case "session.left": {
        const s = run.sessions.findLast((x) => x.session === event.session);
        if (s) Object.assign(s, { frames: event.frames, jobs: event.jobs, failures: event.failures, left: event.at, reason: event.reason });
        break;
      }
      case "job.retried":
        run.retries++;
        break;
      case "job.failed":
        run.failures++;
        break;
    }
  }
  return history;
}

/** The last `maxBytes` of a regular file (from its first whole line), or undefined when there is none; never follows a link. */
async function readEnd(file: string, maxBytes: number): Promise<string | undefined> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${file} is not a regular file`);
    const start = Math.max(0, stat.size - maxBytes);
    // One byte more, before the window: whether the window starts at a line (after a newline) or inside one.
    const from = Math.max(0, start - 1);
    const buffer = Buffer.alloc(stat.size - from);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, from);
    const text = buffer.subarray(0, bytesRead).toString("utf8");
    return start === 0 ? text : text.slice(text.indexOf("\n") + 1);
  } finally {
    await handle.close();
  }
}

/** A count or a time as a run writes them: a whole number, exact in a double (a corrupt 1e300 would wreck the chart). */
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
/** An epoch time in ms that a Date can hold (a tampered 9e15 would throw in toISOString). */
const isTime = (v: unknown): v is number => isCount(v) && v <= 8.64e15;
const isText = (v: unknown): v is string => typeof v === "string";

/** A kept event, checked for the fields readRunHistory uses; anything else is undefined. */
function parseEvent(line: string): RunEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) return undefined;
  const e = value as Record<string, unknown>;
  if (!isText(e.type) || !KEPT_EVENTS.has(e.type as RunEvent["type"]) || !isTime(e.at)) return undefined;
  const fields: Partial<Record<RunEvent["type"], [string, (v: unknown) => boolean][]>> = {
    "run.progress": [["frames", isCount], ["jobs_done", isCount]],
    "run.done": [["frames", isCount], ["jobs_done", isCount]],
    "session.joined": [["session", isText], ["worker", isText], ["renderer", isText]],
    "session.left": [["session", isText], ["frames", isCount], ["jobs", isCount], ["failures", isCount], ["reason", isText]],
  };
  for (const [name, check] of fields[e.type as RunEvent["type"]] ?? []) if (!check(e[name])) return undefined;
  return e as unknown as RunEvent;
}

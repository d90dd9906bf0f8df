// The run's event stream (protocol/runEvents.ts): dispatch, the farm's sessions and the dataset emit;
// the CLI, the dashboard, /api/status and the run's summary read RunStats, the stream folded. A
// listener that throws is logged and the others still get the event: an observer never breaks dispatch.
import type { JobCounts, RunEvent } from "../../protocol/runEvents.js";
import { KEPT_EVENTS } from "../../protocol/runEvents.js";
import { RunStats } from "./RunStats.js";
import { RunEventLog, readRunHistory } from "./runEventLog.js";

export type RunEventListener = (event: RunEvent) => void;

export class RunEvents {
  private readonly listeners = new Set<RunEventListener>();

  constructor(private readonly log: (line: string) => void = () => {}) {}

  /** Calls `listener` with every event from now on; returns the call that stops it. */
  subscribe(listener: RunEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: RunEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.log(`run events: a listener failed on ${event.type}: ${(err as Error)?.message ?? err}`);
      }
    }
  }
}

/** How often the run's totals are kept (run.progress) while frames land: the history chart's resolution. */
export const PROGRESS_EVERY_MS = 5000;

export interface RunRecorder {
  events: RunEvents;
  stats: RunStats;
  /** Emits run.done (once; later calls do nothing). */
  done(done: Omit<Extract<RunEvent, { type: "run.done" }>, "type" | "at">): void;
  /** Stops the clock and writes what is left of the log: after the sessions left. */
  close(): Promise<void>;
}

/**
 * Starts a run's event stream on dataset `root`: the fold (RunStats, its frames/s history rebuilt from
 * the dataset's run-events.jsonl), the log that keeps the few events worth keeping, and the clock that
 * closes the chart's buckets each second and keeps the run's totals every PROGRESS_EVERY_MS.
 */
export async function recordRun(options: { root: string; counts: JobCounts; framesAtStart: number; log: (line: string) => void }): Promise<RunRecorder> {
  const { root, framesAtStart, log } = options;
  const { pending, leased, done, failed, total } = options.counts; // a queue's counts carry more than the jobs'
  const counts = { pending, leased, done, failed, total };
  const history = await readRunHistory(root).catch((err: unknown) => {
    log(`run events: the history in ${root} could not be read (${(err as Error)?.message ?? err}); the chart starts empty`);
    return undefined;
  });
  const events = new RunEvents(log);
  const stats = new RunStats({ out: root, counts, framesAtStart, startedAt: Date.now(), history: history?.rate });
  const eventLog = new RunEventLog(root, log);
  events.subscribe((event) => stats.apply(event));
  events.subscribe((event) => {
    if (KEPT_EVENTS.has(event.type)) eventLog.append(event);
  });
  events.emit({ type: "run.started", at: Date.now(), out: root, counts, frames: framesAtStart });
  await eventLog.flush(); // on disk before the farm says it serves: from then on only events write to the dataset

  let kept = { frames: stats.frames, failed: counts.failed };
  const keepProgress = () => {
    const view = { frames: stats.frames, failed: stats.counts.failed };
    if (view.frames === kept.frames && view.failed === kept.failed) return;
    kept = view;
    events.emit({ type: "run.progress", at: Date.now(), frames: stats.frames, jobs_done: stats.jobsDone, failed: stats.counts.failed });
  };
  let ticks = 0;
  const clock = setInterval(() => {
    stats.advance(Date.now());
    if (++ticks % (PROGRESS_EVERY_MS / 1000) === 0) keepProgress();
  }, 1000);
  clock.unref();

  let ended = false;
  return {
    events,
    stats,
    done(done) {
      if (ended) return;
      ended = true;
      keepProgress();
      events.emit({ type: "run.done", at: Date.now(), ...done });
    },
    async close() {
      clearInterval(clock);
      await eventLog.close();
    },
  };
}

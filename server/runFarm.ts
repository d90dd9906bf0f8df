// One run of the farm: open the dataset and its queue under --out, enqueue the jobs, serve the
// client, hand jobs to every session that connects, and report when all jobs are done or failed.
// Re-running with the same --out resumes: done jobs are skipped, leased ones re-queued.
import type { JobSpec } from "../protocol/job.js";
import type { ImageFormat } from "../protocol/grab.js";
import type { SceneElement } from "../protocol/elements.js";
import type { AddResult, JobQueue, QueueCounts } from "./queue/JobQueue.js";
import { describeChangedJobs } from "./queue/changedJobs.js";
import { DatasetWriter, FRAMES_INDEX } from "./dataset/DatasetWriter.js";
import { Farm } from "./session/Farm.js";
import type { Session } from "./session/Session.js";
import { dispatchJobs, type JobRunner } from "./dispatch/dispatchJobs.js";
import { renderDeclarativeJob } from "./dispatch/renderDeclarativeJob.js";
import { demoScene } from "./jobs/demoJobs.js";
import { DatasetOpenError, openDataset, QUEUE_FILE, type OpenDataset } from "./dataset/openDataset.js";

class UnknownJobError extends DatasetOpenError {
  constructor(out: string, job: string) {
    super(
      `--out ${out}: ${FRAMES_INDEX} has lines of job ${JSON.stringify(job)}, which ${QUEUE_FILE} does not know: it is not the queue ` +
        `this dataset was written with (emptied, replaced or lost). Nothing in the dataset was rewritten: restore its ${QUEUE_FILE}, or choose another --out.`,
    );
  }
}

export { QUEUE_FILE } from "./dataset/openDataset.js";

export interface RunOptions {
  out: string;
  /** Built client folder (dist/client). */
  clientDir: string;
  /** Jobs to enqueue (idempotent: ids already in the queue are skipped, and reported if they differ). */
  jobs?: Iterable<JobSpec> | AsyncIterable<JobSpec>;
  /** Known ids whose spec differs replace the queued spec while still pending (--replace-pending). */
  replacePending?: boolean;
  /** User code run per job instead of the declarative renderer. */
  handler?: JobRunner;
  width?: number;
  height?: number;
  format?: ImageFormat;
  quality?: number;
  /** Scene for declarative jobs that have none. */
  scene?: SceneElement;
  /** Grabs in flight per session. */
  inFlight?: number;
  /** Also write 16-bit depth PNGs (millimetres), unless a job says otherwise. */
  depth?: boolean;
  host?: string;
  port?: number;
  token?: string;
  leaseTtlMs?: number;
  maxAttempts?: number;
  grabTimeoutMs?: number;
  maxFrameBytes?: number;
  maxSessions?: number;
  encode?: "browser" | "server";
  pngLevel?: number;
  /** Aborted (a signal): queueing the jobs stops between jobs and startRun rejects with the abort's reason. */
  stop?: AbortSignal;
  /** Give up (the run fails) when the dataset refuses writes this long (ms). */
  maxWriteStallMs?: number;
  log?: (line: string) => void;
  onFrames?: (frames: number, session: Session) => void;
}

export interface RunSummary {
  out: string;
  frames: number;
  jobsDone: number;
  seconds: number;
  framesPerSecond: number;
  counts: QueueCounts;
}

export interface Run {
  url: string;
  farm: Farm;
  queue: JobQueue;
  dataset: DatasetWriter;
  added: AddResult;
  /** Resolves when every job is done or failed. */
  finished: Promise<RunSummary>;
  /**
   * Stops dispatch, returns the leases of running jobs to the queue without counting the attempt (a
   * stop of ours is never the job's fault), then closes sessions, the server and the queue. Resolves
   * with how many leases went back.
   */
  close(reason?: string): Promise<number>;
}

export async function startRun(options: RunOptions): Promise<Run> {
  const log = options.log ?? ((line: string) => console.log(line));
  const leaseTtlMs = options.leaseTtlMs ?? 30_000;
  // Checks --out, refuses a folder that is not a tabfarm dataset, and takes the dataset's lock: resume
  // below runs only on our own dataset, with no other farm writing it.
  const opened = await openDataset(options.out, { leaseTtlMs, maxAttempts: options.maxAttempts ?? 3, log });
  try {
    return await startOnDataset(opened, options, log);
  } catch (err) {
    // A failed start (resume, a jobs generator that throws, a port in use) must not keep the lock.
    await opened.close();
    throw err;
  }
}

async function startOnDataset(opened: OpenDataset, options: RunOptions, log: (line: string) => void): Promise<Run> {
  const { root: out, writer: dataset, queue } = opened;
  const leaseTtlMs = queue.leaseTtlMs; // as startRun opened the queue with: heartbeats follow the queue's TTL

  // frames.jsonl lines are appended only for queued jobs: a line of a job the queue does not know means the
  // queue is not the one the dataset was written with (emptied, replaced, lost). Dropping those lines as
  // "not done" would destroy the dataset's index, so the run refuses before anything is rewritten.
  const jobIsDone = async (job: string) => {
    const state = await queue.state(job);
    if (state === null) throw new UnknownJobError(out, job);
    return state === "done";
  };
  // Resume: leases of a previous process are void; lines of jobs that never completed are dropped.
  const recovered = await queue.recoverLeased();
  if (recovered) log(`resume: ${recovered} job(s) leased by an earlier run returned to the queue`);
  const temps = await dataset.removeStaleTemps();
  if (temps) log(`resume: removed ${temps} temp file(s) left by an interrupted write`);
  const compacted = await dataset.compact(jobIsDone);
  if (compacted.dropped) log(`resume: dropped ${compacted.dropped} frames.jsonl line(s) of unfinished or repeated jobs`);

  // Queueing a million jobs takes a minute: a stop is honoured between jobs (what was committed stays, adds are idempotent).
  const added = options.jobs ? await queue.add(untilStopped(options.jobs, options.stop), { replacePending: options.replacePending }) : { added: 0, duplicates: 0 };
  options.stop?.throwIfAborted();
  const startCounts = await queue.counts();
  log(
    `queue: ${added.added} job(s) added${added.duplicates ? `, ${added.duplicates} already known` : ""}; ` +
      `${startCounts.pending} pending, ${startCounts.done} done, ${startCounts.failed} failed`,
  );
  if (added.changed) log(`queue: of the known jobs, ${describeChangedJobs(added.changed)}`);

  const farm = new Farm({
    clientDir: options.clientDir,
    host: options.host,
    port: options.port,
    token: options.token,
    grabTimeoutMs: options.grabTimeoutMs,
    maxFrameBytes: options.maxFrameBytes,
    maxSessions: options.maxSessions,
    encode: options.encode,
    pngLevel: options.pngLevel,
    log,
  });
  const url = await farm.listen().catch(async (err) => {
    await farm.close();
    throw err;
  });

  const defaults = {
    width: options.width ?? 640,
    height: options.height ?? 480,
    format: options.format ?? "png",
    quality: options.quality,
    scene: options.scene ?? demoScene(),
    inFlight: options.inFlight ?? 3,
    depth: options.depth ?? false,
  } as const;
  const run: JobRunner = options.handler ?? ((session, job) => renderDeclarativeJob(session, job, defaults));

  const started = performance.now();
  let frames = 0;
  let jobsDone = 0;
  farm.setStatus(async () => ({
    out,
    frames,
    jobsDone,
    seconds: (performance.now() - started) / 1000,
    queue: await queue.counts(),
    sessions: [...farm.sessions.values()].map((s) => ({ id: s.id, worker: s.info.worker, renderer: s.info.renderer })),
  }));
  const dispatch = dispatchJobs({
    farm, queue, dataset, run, leaseTtlMs, log, maxWriteStallMs: options.maxWriteStallMs,
    onJobDone: (_job, count, session) => {
      frames += count;
      jobsDone++;
      options.onFrames?.(count, session);
    },
  });

  const finished = dispatch.finished.then(async (): Promise<RunSummary> => {
    const seconds = (performance.now() - started) / 1000;
    const final = await dataset.compact(jobIsDone);
    if (final.dropped) log(`dataset: dropped ${final.dropped} repeated frames.jsonl line(s)`);
    return { out, frames, jobsDone, seconds, framesPerSecond: frames / Math.max(seconds, 1e-9), counts: await queue.counts() };
  });

  let closed = false;
  return {
    url, farm, queue, dataset, added, finished,
    async close(reason?: string) {
      if (closed) return 0;
      closed = true;
      // Leases go back before the sessions close, so no disconnect is counted against a job.
      const released = await dispatch.stop(reason);
      await farm.close(reason);
      await opened.close(); // the queue, then the dataset's lock
      return released;
    },
  };
}

async function* untilStopped<T>(items: Iterable<T> | AsyncIterable<T>, stop: AbortSignal | undefined): AsyncGenerator<T> {
  for await (const item of items) {
    stop?.throwIfAborted();
    yield item;
  }
}

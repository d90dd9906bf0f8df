// Hands jobs from the queue to sessions: each session takes a job, runs the handler with the lease
// kept alive by heartbeats, and on success appends the job's frame lines and marks it done.
// A failure puts the job back (its attempt counted); a session that goes away releases its leases.
import type { JobQueue, Lease } from "../queue/JobQueue.js";
import type { DatasetWriter } from "../dataset/DatasetWriter.js";
import type { Farm } from "../session/Farm.js";
import { GrabTimeoutError, type Session } from "../session/Session.js";
import { DatasetWriteError } from "../dataset/DatasetWriter.js";
import { LeaseWatch } from "./LeaseWatch.js";
import { JobContext } from "./JobContext.js";
import { forgetScene } from "./renderDeclarativeJob.js";

export type JobRunner = (session: Session, job: JobContext) => Promise<void>;

export interface DispatchOptions {
  farm: Farm;
  queue: JobQueue;
  dataset: DatasetWriter;
  run: JobRunner;
  /** Lease TTL (ms); heartbeats go out at a third of it. */
  leaseTtlMs: number;
  log: (line: string) => void;
  /** Called after each completed job with its frame count. */
  onJobDone?: (jobId: string, frames: number, session: Session) => void;
  /** Called when a job fails an attempt. */
  onJobError?: (jobId: string, error: Error, session: Session) => void;
  /** How long dispatch stays paused on a dataset that refuses writes before the run fails (ms). */
  maxWriteStallMs?: number;
  /** How often a paused dispatch checks whether the dataset takes writes again (ms). */
  writeProbeMs?: number;
}

export interface Dispatch {
  /**
   * Resolves when no job is pending or leased (all done or failed); rejects with a DatasetWriteError
   * when the dataset refused writes for longer than maxWriteStallMs.
   */
  finished: Promise<void>;
  stop(): void;
}

export function dispatchJobs(options: DispatchOptions): Dispatch {
  const { farm, queue, dataset, run, leaseTtlMs, log } = options;
  let stopped = false;
  let finish!: () => void;
  let fail!: (err: Error) => void;
  const finished = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
  const idleWaiters = new Set<() => void>();
  const wakeIdle = () => {
    for (const wake of idleWaiters) wake();
    idleWaiters.clear();
  };

  const checkFinished = async () => {
    if (stopped) return;
    const counts = await queue.counts();
    if (counts.pending === 0 && counts.leased === 0) {
      stopped = true;
      clearInterval(housekeeping);
      wakeIdle();
      finish();
    }
  };

  // A dataset that refuses writes (disk full, permissions) pauses dispatch instead of burning
  // attempts: the job is released uncounted, the error shown once, and a probe resumes the run.
  let writeStall: { since: number; probe: NodeJS.Timeout } | null = null;
  const pauseForWrites = (error: DatasetWriteError) => {
    if (writeStall || stopped) return;
    log(`dataset write failed: ${error.message}; dispatch paused until ${dataset.root} takes writes again`);
    const since = Date.now();
    const probe = setInterval(async () => {
      if (await dataset.probeWritable()) {
        clearInterval(probe);
        writeStall = null;
        log(`dataset writable again after ${((Date.now() - since) / 1000).toFixed(1)} s; dispatch resumed`);
        wakeIdle();
      } else if (Date.now() - since > (options.maxWriteStallMs ?? 600_000)) {
        clearInterval(probe);
        stopped = true;
        clearInterval(housekeeping);
        wakeIdle();
        fail(new DatasetWriteError(`the dataset for ${((Date.now() - since) / 1000).toFixed(0)} s; giving up`, error.cause));
      }
    }, options.writeProbeMs ?? 2000);
    writeStall = { since, probe };
  };

  // Expired leases (a hung tab) go back; then sessions waiting for work are woken.
  const housekeeping = setInterval(async () => {
    const reclaimed = await queue.housekeep();
    if (reclaimed) {
      log(`housekeeping: ${reclaimed} expired lease(s) returned to the queue`);
      wakeIdle();
    }
    await checkFinished();
  }, Math.max(200, Math.min(5000, leaseTtlMs / 3)));

  farm.spawn(async (session) => {
    session.once("close", async () => {
      const released = await queue.releaseOwner(session.id, { message: `session ${session.id} disconnected` });
      if (released) log(`session ${session.id} left holding ${released} job(s); returned to the queue`);
      wakeIdle();
    });
    // The job still finishing (its last frames encoding/uploading) while the next one renders.
    let finishing: Promise<void> | null = null;
    while (!stopped && !session.closed && !session.retiring) {
      if (writeStall) {
        await new Promise<void>((resolve) => idleWaiters.add(resolve));
        continue;
      }
      const lease = await queue.take(session.id);
      const takenAt = Date.now();
      if (!lease) {
        if (finishing) {
          await finishing;
          finishing = null;
          continue;
        }
        await checkFinished();
        if (stopped) break;
        await new Promise<void>((resolve) => {
          idleWaiters.add(resolve);
          setTimeout(resolve, 1000); // also poll: another process may add jobs to the same queue
        });
        continue;
      }
      const watch = new LeaseWatch(queue, lease, leaseTtlMs, takenAt);
      const job = new JobContext(lease.job, lease.attempt, session.id, dataset, () => watch.isCurrent());
      const running = runLease(session, lease, job, watch);
      await Promise.race([job.allIssued, running]);
      // At most two jobs per session: the previous one must be finished before a third is taken.
      if (finishing) await finishing;
      finishing = running;
    }
    if (finishing) await finishing;
    if (session.retiring && !session.closed) session.emit("retired");
  });

  async function runLease(session: Session, lease: Lease, job: JobContext, watch: LeaseWatch): Promise<void> {
    const heartbeat = setInterval(async () => {
      if (!(await watch.extend())) job.cancel("lease expired or was taken over");
    }, Math.max(100, leaseTtlMs / 3));
    const onClose = () => job.cancel(`session ${session.id} disconnected`);
    session.once("close", onClose);
    try {
      await run(session, job);
      watch.end(); // from here the lease is being ended: a late saveFrame asks the queue, which knows
      job.signal.throwIfAborted();
      // Lines are appended only while the lease is still ours; then the job is done.
      if (!(await queue.isCurrent(lease.token))) throw new Error(`job ${lease.job.id}: lease lost before completion`);
      await dataset.appendRecords(job.records);
      if (!(await queue.complete(lease.token))) log(`job ${lease.job.id}: lease lost while appending; it will be re-run and compacted`);
      options.onJobDone?.(lease.job.id, job.records.length, session);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      watch.end();
      job.cancel("failed");
      forgetScene(session);
      if (error instanceof DatasetWriteError) {
        await queue.release(lease.token, { message: error.message, stack: error.stack });
        pauseForWrites(error);
        return;
      }
      if (await queue.isCurrent(lease.token)) {
        await queue.putBack(lease.token, { message: error.message, stack: error.stack });
      }
      options.onJobError?.(lease.job.id, error, session);
      if (!session.closed) log(`job ${lease.job.id} attempt ${lease.attempt} failed on session ${session.id}: ${error.message}`);
      // A grab that never answered means the tab is hung: drop it so it cannot take more work
      // (the harness replaces hung tabs it launched).
      if (error instanceof GrabTimeoutError) session.dropHung(error.message);
    } finally {
      clearInterval(heartbeat);
      session.off("close", onClose);
      wakeIdle();
    }
  }

  return {
    finished,
    stop() {
      stopped = true;
      clearInterval(housekeeping);
      if (writeStall) clearInterval(writeStall.probe);
      wakeIdle();
      finish();
    },
  };
}

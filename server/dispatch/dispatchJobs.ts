// Hands jobs from the queue to sessions: each session takes a job, runs the handler with the lease
// kept alive by heartbeats, and on success appends the job's frame lines and marks it done.
// A failure puts the job back (its attempt counted); a session that goes away releases its leases.
// Storage that refuses writes (the dataset's files or the queue's own SQLite file) pauses the run;
// a stop of ours (signal, close) returns every lease without counting the attempt.
import { leaseClock, type JobError, type JobQueue, type Lease } from "../queue/JobQueue.js";
import type { DatasetWriter } from "../dataset/DatasetWriter.js";
import type { Farm } from "../session/Farm.js";
import { GrabTimeoutError, type Session } from "../session/Session.js";
import { DatasetWriteError } from "../dataset/DatasetWriter.js";
import { LeaseWatch } from "./LeaseWatch.js";
import { JobContext } from "./JobContext.js";
import { SessionHealth } from "./SessionHealth.js";
import { forgetScene } from "./renderDeclarativeJob.js";
import { RunEvents } from "../events/RunEvents.js";

export type JobRunner = (session: Session, job: JobContext) => Promise<void>;

export interface DispatchOptions {
  farm: Farm;
  queue: JobQueue;
  dataset: DatasetWriter;
  run: JobRunner;
  /** The run's seed: every job's frame seeds derive from it (JobContext.frameSeed). */
  runSeed: number;
  /** Lease TTL (ms); heartbeats go out at a third of it. */
  leaseTtlMs: number;
  log: (line: string) => void;
  /** Where the run's events go (job leased / done / retried / failed / released, frames, pauses); default: nowhere. */
  events?: RunEvents;
  /** How long dispatch stays paused on storage that refuses writes before the run fails (ms). */
  maxWriteStallMs?: number;
  /** How often a paused dispatch checks whether storage takes writes again (ms). */
  writeProbeMs?: number;
}

export interface Dispatch {
  /**
   * Resolves when no job is pending or leased (all done or failed), or once stopped; rejects with a
   * DatasetWriteError when storage refused writes for longer than maxWriteStallMs.
   */
  finished: Promise<void>;
  /**
   * Stops handing out jobs, cancels the running ones and returns their leases without counting the
   * attempt (a stop of ours is never the job's fault). Resolves with how many went back.
   */
  stop(reason?: string): Promise<number>;
  /** Stops handing out jobs (running ones finish) until resume; false when already paused or stopped. */
  pause(by: string): boolean;
  resume(by: string): boolean;
  /** Wakes sessions waiting for work: jobs were put back in the queue from outside (a retry). */
  wake(): void;
}

/** A queue call failed (SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY…): the queue's storage, not the job. */
export class QueueWriteError extends Error {
  constructor(what: string, readonly cause: unknown) {
    super(`queue write failed (${what}): ${(cause as Error)?.message ?? cause}`);
  }
}

const isStorageError = (error: unknown): error is DatasetWriteError | QueueWriteError =>
  error instanceof DatasetWriteError || error instanceof QueueWriteError;

/** How long a session that failed every job it took waits for a peer before it goes on alone. */
const PEER_GRACE_MS = 10_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));
const jobError = (error: Error): JobError => ({ message: error.message, stack: error.stack });

export function dispatchJobs(options: DispatchOptions): Dispatch {
  const { farm, queue, dataset, run, leaseTtlMs, log } = options;
  const events = options.events ?? new RunEvents();
  let stopped = false;
  /** Paused by hand (the dashboard): no job is taken until resumed. */
  let pausedBy: string | null = null;
  let finish!: () => void;
  let fail!: (err: Error) => void;
  const finished = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
  const idleWaiters = new Set<() => void>();
  const wakeIdle = () => {
    for (const wake of idleWaiters) wake();
    idleWaiters.clear();
  };
  const idle = (pollMs?: number) =>
    new Promise<void>((resolve) => {
      idleWaiters.add(resolve);
      if (pollMs) setTimeout(resolve, pollMs);
    });

  /** Every queue call goes through here, so a failing queue is told apart from a failing job. */
  const viaQueue = async <T>(what: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      throw new QueueWriteError(what, err);
    }
  };

  /** Leases this process holds now, by token: a stop or a storage pause returns them uncounted. */
  const active = new Map<string, JobContext>();
  const health = new SessionHealth();
  const quarantined = new Set<string>();

  const end = (stopError?: Error) => {
    stopped = true;
    clearInterval(housekeeping);
    if (stall) clearInterval(stall.probe);
    wakeIdle();
    if (stopError) fail(stopError);
    else finish();
  };

  const checkFinished = async () => {
    if (stopped) return;
    const counts = await viaQueue("counts", () => queue.counts());
    if (counts.pending === 0 && counts.leased === 0 && !stopped) end();
  };

  // --- Storage that refuses writes -------------------------------------------------------------
  // The dataset (disk full, permissions) or the queue's own file (SQLITE_FULL, IOERR, READONLY):
  // either way dispatch pauses instead of burning attempts. Running jobs are cancelled and returned
  // uncounted, the error is shown once, and a probe that writes to both resumes the run; returns the
  // queue refused meanwhile are retried before anything else. The stall clock is reset only by a
  // completed job, so storage that fails again right after each resume still ends the run.
  let stall: { probe: NodeJS.Timeout } | null = null;
  let troubleSince: number | null = null;
  /** Queue writes that failed while returning a lease; retried (in order) before dispatch resumes. */
  const deferredReturns: { what: string; call: () => Promise<unknown> }[] = [];

  const pauseForStorage = (error: DatasetWriteError | QueueWriteError) => {
    if (stall || stopped) return;
    troubleSince ??= Date.now();
    const what = error instanceof DatasetWriteError ? "dataset" : "queue";
    log(`${what === "dataset" ? "dataset write failed: " : ""}${error.message}; dispatch paused until ${dataset.root} and its queue take writes again`);
    events.emit({ type: "write.paused", at: Date.now(), store: what, error: error.message });
    for (const job of active.values()) job.cancel("storage refused writes; the job goes back uncounted");
    let probing = false;
    const probe = setInterval(async () => {
      if (probing || stopped) return;
      probing = true;
      try {
        if (await storageWritable()) {
          clearInterval(probe);
          stall = null;
          const seconds = (Date.now() - troubleSince!) / 1000;
          log(`${what} writable again after ${seconds.toFixed(1)} s; dispatch resumed`);
          events.emit({ type: "write.resumed", at: Date.now(), seconds });
          wakeIdle();
        } else if (Date.now() - troubleSince! > (options.maxWriteStallMs ?? 600_000)) {
          const seconds = ((Date.now() - troubleSince!) / 1000).toFixed(0);
          end(new DatasetWriteError(`${dataset.root} (the dataset or its queue) for ${seconds} s; giving up`, error.cause));
        }
      } finally {
        probing = false;
      }
    }, options.writeProbeMs ?? 2000);
    stall = { probe };
  };

  /** A real write to each store, then the returns that failed earlier; true when all went through. */
  async function storageWritable(): Promise<boolean> {
    if (!(await dataset.probeWritable())) return false;
    try {
      await queue.checkWritable();
      while (deferredReturns.length > 0) {
        await deferredReturns[0].call();
        deferredReturns.shift();
      }
      return true;
    } catch {
      return false;
    }
  }

  /** Runs a queue write that returns a lease; if the queue refuses it, pauses and keeps it for later. */
  async function returnLease(what: string, call: () => Promise<unknown>): Promise<void> {
    try {
      await viaQueue(what, call);
    } catch (err) {
      if (stopped) return logUnreturned(err as QueueWriteError);
      deferredReturns.push({ what, call });
      pauseForStorage(err as QueueWriteError);
    }
  }

  function logUnreturned(error: QueueWriteError): void {
    log(`${error.message}; the job stays leased and the next run returns it (counting that attempt)`);
  }

  /** Returns a lease this process holds without counting the attempt, once (later calls do nothing). */
  async function releaseUncounted(token: string, why: string): Promise<boolean> {
    const job = active.get(token);
    if (!job || !active.delete(token)) return false;
    let released = true; // a release the queue refused now is retried later: it goes back all the same
    await returnLease("release", async () => (released = await queue.release(token, { message: why })));
    // Not released: its lease had expired, and housekeeping ends it counting the attempt.
    if (released) events.emit({ type: "job.released", at: Date.now(), job: job.id, session: job.sessionId, reason: why });
    else attemptFailed(job, new Error(`its lease expired before it could go back (${why})`));
    return true;
  }

  // Expired leases (a hung tab) go back; then sessions waiting for work are woken. Not while paused:
  // leases cannot be extended then, and their jobs were cancelled and are being returned uncounted.
  const housekeeping = setInterval(async () => {
    if (stall || stopped) return;
    try {
      const reclaimed = await viaQueue("housekeeping", () => queue.housekeep());
      if (reclaimed) {
        log(`housekeeping: ${reclaimed} expired lease(s) returned to the queue`);
        wakeIdle();
      }
      await checkFinished();
    } catch (err) {
      if (isStorageError(err)) pauseForStorage(err);
      else log(`housekeeping failed: ${toError(err).message}`);
    }
  }, Math.max(200, Math.min(5000, leaseTtlMs / 3)));

  /** Sessions other than `id` that can take work now. */
  const workingPeers = (id: string) =>
    [...farm.sessions.values()].filter((s) => s.id !== id && s.getsWork && !s.closed && !s.retiring && !quarantined.has(s.id)).map((s) => s.id);

  const quarantine = (session: Session, why: string) => {
    quarantined.add(session.id);
    log(`session ${session.id}${session.info.worker ? ` (${session.info.worker})` : ""} quarantined: it ${why}; it gets no more jobs`);
    // The page learns why; a harness replaces a tab it launched.
    session.bye(`quarantined: it ${why}`);
    session.emit("quarantined", why);
    events.emit({ type: "session.quarantined", at: Date.now(), session: session.id, reason: why });
    wakeIdle();
  };

  farm.spawn(async (session) => {
    session.once("close", async () => {
      health.forget(session.id);
      quarantined.delete(session.id);
      // When we closed it (stop), its leases were already returned uncounted.
      if (stopped) return;
      // Its attempts end now, each reported once, here, before its leases go back: the run may not end
      // with an attempt unreported (a handler that does not watch job.signal runs on a while).
      for (const [token, job] of active) {
        if (job.sessionId === session.id && active.delete(token)) attemptFailed(job, new Error(`session ${session.id} disconnected`));
      }
      let released = 0;
      await returnLease("releaseOwner", async () => (released = await queue.releaseOwner(session.id, { message: `session ${session.id} disconnected` })));
      if (released) log(`session ${session.id} left holding ${released} job(s); returned to the queue`);
      wakeIdle();
    });
    // The job still finishing (its last frames encoding/uploading) while the next one renders.
    let finishing: Promise<void> | null = null;
    const canWork = () => !stopped && !session.closed && !session.retiring && !quarantined.has(session.id);
    let waitedForPeers = false;
    while (canWork()) {
      // Any failure in here is the queue's (runLease catches its own): pause, then go round again.
      try {
        if (stall || pausedBy !== null) {
          await idle();
          continue;
        }
        if (health.isSuspect(session.id)) {
          const why = health.verdict(session.id, workingPeers(session.id));
          if (why) {
            quarantine(session, why);
            break;
          }
          // Alone, it would burn every job's attempts before a healthy tab joins: wait for one, once.
          if (!waitedForPeers && workingPeers(session.id).length === 0) {
            waitedForPeers = true;
            log(`session ${session.id} failed every job it took; it waits up to ${PEER_GRACE_MS / 1000} s for another session before it takes more`);
            for (const until = Date.now() + PEER_GRACE_MS; Date.now() < until && canWork() && workingPeers(session.id).length === 0; ) await sleep(250);
            continue;
          }
        } else waitedForPeers = false;
        const lease = await viaQueue("take", () => queue.take(session.id));
        const takenAt = leaseClock(); // the queue's clock, which the watch compares the lease's expiry with
        if (lease && !canWork()) {
          // Stopped (or quarantined) while the take was under way: this lease is not the job's fault.
          const why = stopped ? "the farm was stopped" : `session ${session.id} can take no more work`;
          await returnLease("release", () => queue.release(lease.token, { message: why }));
          break;
        }
        if (!lease) {
          if (finishing) {
            await finishing;
            finishing = null;
            continue;
          }
          await checkFinished();
          if (stopped) break;
          await idle(1000); // also poll: another process may add jobs to the same queue
          continue;
        }
        const watch = new LeaseWatch(queue, lease, leaseTtlMs, takenAt);
        const job = new JobContext(lease.job, lease.attempt, session.id, dataset, () => watch.isCurrent(), options.runSeed, events);
        active.set(lease.token, job);
        events.emit({ type: "job.leased", at: Date.now(), job: lease.job.id, session: session.id, attempt: lease.attempt });
        const running = runLease(session, lease, job, watch);
        await Promise.race([job.allIssued, running]);
        // At most two jobs per session: the previous one must be finished before a third is taken.
        if (finishing) await finishing;
        finishing = running;
      } catch (err) {
        if (isStorageError(err)) pauseForStorage(err);
        else {
          log(`session ${session.id}: dispatch error: ${toError(err).message}`);
          await idle(1000);
        }
      }
    }
    if (finishing) await finishing;
    if (session.retiring && !session.closed) session.emit("retired");
  });

  async function runLease(session: Session, lease: Lease, job: JobContext, watch: LeaseWatch): Promise<void> {
    const heartbeat = setInterval(async () => {
      try {
        if (!(await viaQueue("extend", () => watch.extend()))) job.cancel("lease expired or was taken over");
      } catch (err) {
        pauseForStorage(err as QueueWriteError);
      }
    }, Math.max(100, leaseTtlMs / 3));
    const onClose = () => job.cancel(`session ${session.id} disconnected`);
    session.once("close", onClose);
    try {
      await run(session, job);
      job.end(); // the job's frames are final: records below are the ones appended
      watch.end(); // from here the lease is being ended: a late saveFrame asks the queue, which knows
      job.signal.throwIfAborted();
      // Lines are appended only while the lease is still ours; then the job is done.
      if (!(await viaQueue("isCurrent", () => queue.isCurrent(lease.token)))) throw new Error(`job ${lease.job.id}: lease lost before completion`);
      await dataset.appendLines(job.lines);
      const completed = await viaQueue("complete", () => queue.complete(lease.token));
      const ours = active.delete(lease.token); // false: a stop or its session's close took it back and reported it
      if (!completed) {
        // Its session went away (or the lease expired) between the check and the append: the job is
        // someone else's now and will be re-run; its lines here are dropped by compaction. Not a frame
        // delivered, and not this session's success.
        if (ours) attemptFailed(job, new Error("lease lost while appending its lines; it will be re-run and compacted"));
        return;
      }
      if (!stall) troubleSince = null; // real progress: storage works (during a pause, the pause's clock runs on)
      health.succeeded(session.id);
      events.emit({ type: "job.done", at: Date.now(), job: lease.job.id, session: session.id, frames: job.records.length, attempt: lease.attempt });
    } catch (err) {
      const error = toError(err);
      watch.end();
      job.cancel("failed");
      forgetScene(session);
      // Not the job's fault: storage refused a write, or the run is pausing or stopping.
      if (stopped || stall || isStorageError(error)) {
        if (isStorageError(error)) pauseForStorage(error);
        await releaseUncounted(lease.token, isStorageError(error) ? error.message : stopped ? "the farm was stopped" : "storage refused writes");
        if (error instanceof GrabTimeoutError && !stopped) session.dropHung(error.message); // hung all the same
        return;
      }
      if (!active.delete(lease.token)) return; // already returned (a stop raced with this failure)
      await returnLease("putBack", async () => {
        if (await queue.isCurrent(lease.token)) await queue.putBack(lease.token, jobError(error));
      });
      attemptFailed(job, error);
      if (session.closed) return;
      // A grab that never answered means the tab is hung: drop it so it cannot take more work
      // (the harness replaces hung tabs it launched).
      if (error instanceof GrabTimeoutError) return void session.dropHung(error.message);
      health.failed(session.id);
      const why = health.verdict(session.id, workingPeers(session.id));
      if (why && !quarantined.has(session.id)) quarantine(session, why);
    } finally {
      clearInterval(heartbeat);
      session.off("close", onClose);
      wakeIdle();
    }
  }

  /**
   * An attempt failed, and its lease is gone or going (put back here, or by housekeeping or its owner's
   * release, all of which count the attempt): logged and told once, here. Whether the job is retried
   * follows from this attempt's number, as the queue decides it, not from the job's state now, which a
   * later attempt may have changed already.
   */
  function attemptFailed(job: JobContext, error: Error): void {
    log(`job ${job.id} attempt ${job.attempt} failed on session ${job.sessionId}: ${error.message}`);
    const event = { at: Date.now(), job: job.id, session: job.sessionId, attempt: job.attempt, error: error.message };
    if (job.attempt >= queue.maxAttempts) {
      log(`job ${job.id} failed: no attempts left after ${job.attempt}`);
      events.emit({ type: "job.failed", ...event });
    } else events.emit({ type: "job.retried", ...event });
  }

  return {
    finished,
    pause(by) {
      if (stopped || pausedBy !== null) return false;
      pausedBy = by;
      log(`dispatch paused by ${by}: running jobs finish, no new job is handed out`);
      events.emit({ type: "dispatch.paused", at: Date.now(), by });
      return true;
    },
    resume(by) {
      if (stopped || pausedBy === null) return false;
      pausedBy = null;
      log(`dispatch resumed by ${by}`);
      events.emit({ type: "dispatch.resumed", at: Date.now(), by });
      wakeIdle();
      return true;
    },
    wake: wakeIdle,
    async stop(reason = "the farm was stopped") {
      if (!stopped) end();
      const leases = [...active];
      for (const [, job] of leases) job.cancel(reason);
      const released = await Promise.all(leases.map(([token]) => releaseUncounted(token, reason)));
      // Returns the queue refused during a pause get one more try (the run may be giving up on storage).
      for (const { what, call } of deferredReturns.splice(0)) await call().catch((err) => logUnreturned(new QueueWriteError(what, err)));
      return released.filter(Boolean).length;
    },
  };
}

// The queue contract every backend (SQLite now, Redis later) implements, tested by one shared suite.
// Semantics follow the seed's JobQueue (take → in progress, done, put back, housekeeping by TTL)
// made safe: every lease carries a token, and only the current token may finish or put back a job.
import type { JobSpec } from "../../protocol/job.js";

export type JobState = "pending" | "leased" | "done" | "failed";

export interface Lease {
  job: JobSpec;
  /** Unique per take; a later take of the same job gets a new token and the old one goes stale. */
  token: string;
  /** Who holds it (a session id), so a disconnect can release all its leases at once. */
  owner: string;
  /** Epoch ms; housekeeping returns the job to pending after this unless extended. */
  expiresAt: number;
  /** 1 on the first take. */
  attempt: number;
}

export interface JobError {
  message: string;
  stack?: string;
}

export interface AddResult {
  added: number;
  /** Ids that already existed: adds are idempotent no-ops for them (unless replaced, see `changed`). */
  duplicates: number;
  /** Of the duplicates, those whose spec differs from the queued one (canonical JSON); absent when none does. */
  changed?: ChangedJobs;
}

export interface ChangedJobs {
  count: number;
  /** Pending jobs whose queued spec was replaced by the new one (`replacePending`). */
  replaced: number;
  /** By the queued job's state: how many, and the first ids (server/queue/changedJobs.ts). */
  byState: Partial<Record<JobState, { count: number; ids: string[] }>>;
}

export interface AddOptions {
  /**
   * A job whose id is queued and still pending, but whose spec differs, replaces the queued spec
   * (its attempts and last error are reset: it is a new job). Leased, done and failed jobs are never
   * changed by an add; they are only reported.
   */
  replacePending?: boolean;
  /**
   * A job whose id is queued with another spec throws a ChangedJobError (server/queue/changedJobs.ts)
   * instead, and the add leaves nothing queued: for sources whose ids must mean one spec (a template's jobs).
   */
  refuseChanged?: boolean;
}

export interface QueueCounts {
  pending: number;
  leased: number;
  done: number;
  failed: number;
  total: number;
  /** Calls made with a token that was not the current lease (stale or foreign); they changed nothing. */
  staleRejections: number;
}

export interface FailedJob {
  id: string;
  attempts: number;
  error: JobError | null;
}

/**
 * The clock of lease expiries: monotonic (epoch-based at the process's start, then never stepped), so a
 * wall-clock jump (NTP step, a VM resumed, a manual date change) neither expires every running lease
 * at once (counting an attempt against each job) nor keeps them alive. Leases live in one process
 * (a dataset has one writer, and resume voids the last process's leases), so its clock is the only one.
 */
export const leaseClock = (): number => performance.timeOrigin + performance.now();

/** Why a lease ended, when its session did not say (the job's last error): the same words in every backend. */
export const LEASE_END_REASONS = {
  putBack: "put back without an error",
  released: "released without counting the attempt",
  expired: "lease expired",
  ownerGone: "owner went away",
} as const;

export interface QueueOptions {
  /** Lease time-to-live in ms (default 30 000). */
  leaseTtlMs?: number;
  /** Takes after which a job that is put back or expires is failed instead (default 3). */
  maxAttempts?: number;
  /** Clock of lease expiries (default leaseClock); tests pass a fake one. */
  now?: () => number;
}

export interface JobQueue {
  /** Takes after which a job whose lease ends badly (put back, its owner gone, expired) is failed. */
  readonly maxAttempts: number;
  /**
   * Adds jobs; an id that exists already is skipped and counted as a duplicate, and reported in
   * `changed` when its spec differs from the queued one (replaced if pending and `replacePending`).
   */
  add(jobs: Iterable<JobSpec> | AsyncIterable<JobSpec>, options?: AddOptions): Promise<AddResult>;
  /**
   * Leases the oldest pending job to `owner`, or null when none is pending. Counts an attempt.
   * A job whose last counted attempt failed on this same owner (put back, owner gone, expired) is
   * skipped while another job is pending, so a retry goes to another session when one can take
   * it; it is still served when nothing else is pending.
   */
  take(owner: string): Promise<Lease | null>;
  /** Heartbeat: pushes the lease's expiry a TTL ahead. False (and counted) if the token is not current. */
  extend(token: string): Promise<boolean>;
  /** True while `token` is the job's current, unexpired lease. Does not count a rejection. */
  isCurrent(token: string): Promise<boolean>;
  /** Marks the job done. False (and counted) if the token is not current. */
  complete(token: string): Promise<boolean>;
  /** Returns the job to pending, or to failed when its attempts are used up. False (and counted) if stale. */
  putBack(token: string, error?: JobError): Promise<boolean>;
  /**
   * Returns the job to pending without counting the attempt: for failures that are not the job's
   * fault (the dataset disk is full, the farm is shutting down), so they do not burn its attempts and
   * do not mark the owner as one that failed the job. False (and counted) if stale.
   */
  release(token: string, error?: JobError): Promise<boolean>;
  /** A session went away: all its leases go back (or fail if out of attempts). Returns how many. */
  releaseOwner(owner: string, error?: JobError): Promise<number>;
  /** Expired leases go back (or fail if out of attempts). Returns how many. */
  housekeep(): Promise<number>;
  /** On resume after a crash: every leased job goes back to pending (its attempt stays counted). */
  recoverLeased(): Promise<number>;
  /** Failed jobs (all, or those of `ids`) back to pending with their attempts reset. Returns how many; ids not failed are skipped. */
  retryFailed(ids?: readonly string[]): Promise<number>;
  /**
   * Makes a real (tiny) durable write and resolves, or throws the backend's error (disk full,
   * read-only file): a paused run asks this before it resumes.
   */
  checkWritable(): Promise<void>;
  counts(): Promise<QueueCounts>;
  /** Failed jobs in queue order (the first `limit` of them). */
  failures(limit?: number): Promise<FailedJob[]>;
  state(id: string): Promise<JobState | null>;
  close(): Promise<void>;
}

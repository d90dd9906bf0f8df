// A run on a queue shared by several farm servers (--queue redis://…): each server writes its own
// dataset folder, a shard. The shared queue says which jobs are pending, leased, done or failed for the
// whole run; the shard's own queue.sqlite becomes its ledger: the jobs this server leased (with their
// specs) and those whose every frame it wrote. The ledger is what the shard's frames.jsonl is checked
// against — by resume's compaction, `verify` and `merge` — so a shard keeps exactly the jobs it finished,
// whatever the other servers did.
//
// Order on completion: the ledger first, then the shared queue. A server that dies between the two has
// a complete job the others will render again: a duplicate `merge` drops, never a loss.
import type { JobSpec } from "../../protocol/job.js";
import type { AddOptions, AddResult, FailedJob, JobError, JobQueue, JobState, Lease, QueueCounts } from "./JobQueue.js";
import type { SqliteQueue } from "./SqliteQueue.js";

/**
 * A queue other processes share, with the lease time its heartbeats must follow, and the settings every
 * server of the run must share (agree: the first server's value wins).
 */
export type SharedQueue = JobQueue & { readonly leaseTtlMs: number; agree(setting: string, proposed: string): Promise<string> };

export class ShardQueue implements JobQueue {
  /** The job (and owner) of each lease this server holds, by token: complete() writes it to the ledger. */
  private readonly leased = new Map<string, { id: string; owner: string }>();

  constructor(
    readonly shared: SharedQueue,
    readonly ledger: SqliteQueue,
  ) {}

  get maxAttempts(): number {
    return this.shared.maxAttempts;
  }

  get leaseTtlMs(): number {
    return this.shared.leaseTtlMs;
  }

  add(jobs: Iterable<JobSpec> | AsyncIterable<JobSpec>, options?: AddOptions): Promise<AddResult> {
    return this.shared.add(jobs, options);
  }

  async take(owner: string): Promise<Lease | null> {
    const lease = await this.shared.take(owner);
    if (!lease) return null;
    try {
      this.ledger.noteLeased(lease.job); // before any frame of it is written
    } catch (err) {
      await this.shared.release(lease.token, { message: `the shard's ledger could not be written: ${(err as Error)?.message ?? err}` }).catch(() => {});
      throw err;
    }
    this.leased.set(lease.token, { id: lease.job.id, owner });
    return lease;
  }

  extend(token: string): Promise<boolean> {
    return this.shared.extend(token);
  }

  isCurrent(token: string): Promise<boolean> {
    return this.shared.isCurrent(token);
  }

  async complete(token: string): Promise<boolean> {
    const id = this.leased.get(token)?.id;
    if (id === undefined) return false; // not a lease this server holds: its frames are not in this shard
    // Stale (expired, taken again): the shared queue refuses and counts it, and the ledger marks nothing.
    if (!(await this.shared.isCurrent(token))) return this.shared.complete(token);
    this.ledger.noteDone(id);
    this.leased.delete(token);
    return this.shared.complete(token);
  }

  putBack(token: string, error?: JobError): Promise<boolean> {
    this.leased.delete(token);
    return this.shared.putBack(token, error);
  }

  release(token: string, error?: JobError): Promise<boolean> {
    this.leased.delete(token);
    return this.shared.release(token, error);
  }

  releaseOwner(owner: string, error?: JobError): Promise<number> {
    for (const [token, lease] of this.leased) if (lease.owner === owner) this.leased.delete(token);
    return this.shared.releaseOwner(owner, error);
  }

  async housekeep(): Promise<number> {
    const returned = await this.shared.housekeep();
    if (returned > 0) for (const token of [...this.leased.keys()]) if (!(await this.shared.isCurrent(token))) this.leased.delete(token);
    return returned;
  }

  recoverLeased(): Promise<number> {
    return this.shared.recoverLeased();
  }

  retryFailed(ids?: readonly string[]): Promise<number> {
    return this.shared.retryFailed(ids);
  }

  async checkWritable(): Promise<void> {
    await this.ledger.checkWritable(); // the shard's disk
    await this.shared.checkWritable();
  }

  counts(): Promise<QueueCounts> {
    return this.shared.counts();
  }

  failures(limit?: number): Promise<FailedJob[]> {
    return this.shared.failures(limit);
  }

  state(id: string): Promise<JobState | null> {
    return this.shared.state(id);
  }

  async close(): Promise<void> {
    this.leased.clear();
    await Promise.allSettled([this.shared.close(), this.ledger.close()]);
  }
}

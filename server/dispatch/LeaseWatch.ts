import { leaseClock, type JobQueue, type Lease } from "../queue/JobQueue.js";

/**
 * Answers "is this lease still ours?" before each frame write without a queue query per frame.
 *
 * A current lease stops being ours only when (a) it expires and housekeeping or a take (of this or
 * another process) reclaims it, (b) this process ends it (complete/putBack/release; end() is called
 * first, so from then on the queue is asked), or (c) its session closes and releaseOwner returns
 * it; the same "close" cancels the job, so its signal stops every later write. (recoverLeased voids
 * leases too, but only when a farm starts on a dataset, which assumes no other process is running
 * it.) So before the expiry set at the take or the last extend, nothing can take the lease away.
 * The expiry kept here is a lower bound of the queue's: for an extend, the time the call was made
 * + the TTL, the TTL estimated from the take, so a queue with a shorter TTL than leaseTtlMs is safe.
 * Writes more than a third of the TTL before it need no query (heartbeats every TTL/3 keep it there);
 * nearer (a heartbeat is late or failed) every check asks the queue, as before. Uses the queue's
 * clock (leaseClock: monotonic, so a wall-clock jump moves neither).
 */
export class LeaseWatch {
  private knownExpiry: number;
  private readonly ttlMs: number;
  private readonly marginMs: number;
  private ended = false;

  constructor(
    private readonly queue: JobQueue,
    private readonly lease: Lease,
    leaseTtlMs: number,
    /** When take() returned (by `now`): bounds the queue's real TTL from above. */
    takenAt: number,
    private readonly now: () => number = leaseClock,
  ) {
    this.knownExpiry = lease.expiresAt;
    this.ttlMs = Math.min(leaseTtlMs, lease.expiresAt - takenAt);
    this.marginMs = Math.max(0, leaseTtlMs) / 3;
  }

  /** True (at once) while the lease cannot have expired; otherwise the queue's answer. */
  isCurrent(): boolean | Promise<boolean> {
    if (!this.ended && this.now() < this.knownExpiry - this.marginMs) return true;
    return this.queue.isCurrent(this.lease.token);
  }

  /** This process is ending the lease (complete or put back): no more answers without the queue. */
  end(): void {
    this.ended = true;
  }

  /** The heartbeat: extends the lease in the queue and, on success, moves the known expiry. */
  async extend(): Promise<boolean> {
    const asked = this.now();
    const ok = await this.queue.extend(this.lease.token);
    if (ok) this.knownExpiry = Math.max(this.knownExpiry, asked + this.ttlMs);
    return ok;
  }
}

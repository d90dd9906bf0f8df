// Failures counted per session as well as per job: one broken tab (every grab fails at once) would
// otherwise burn every job's attempts while a healthy tab is still busy with its first job. A session
// that fails far more than its peers is quarantined (it gets no more jobs).

export interface SessionHealthOptions {
  /** Failures in a row, while other sessions completed jobs meanwhile, that quarantine a session. */
  failuresInARow?: number;
  /**
   * Failures with no success at all that quarantine a session when a peer has failed at most
   * a third as often (a job that fails everywhere hits every session alike, and quarantines none).
   */
  failuresWithoutSuccess?: number;
}

interface Record {
  failures: number;
  successes: number;
  inARow: number;
  /** Jobs the other sessions had completed when this session's current run of failures began. */
  othersDoneAtStreakStart: number;
}

export class SessionHealth {
  private readonly sessions = new Map<string, Record>();
  private jobsDone = 0;
  private readonly failuresInARow: number;
  private readonly failuresWithoutSuccess: number;

  constructor(options: SessionHealthOptions = {}) {
    this.failuresInARow = options.failuresInARow ?? 5;
    this.failuresWithoutSuccess = options.failuresWithoutSuccess ?? 3;
  }

  private of(id: string): Record {
    let record = this.sessions.get(id);
    if (!record) this.sessions.set(id, (record = { failures: 0, successes: 0, inARow: 0, othersDoneAtStreakStart: 0 }));
    return record;
  }

  succeeded(id: string): void {
    const record = this.of(id);
    record.successes++;
    record.inARow = 0;
    this.jobsDone++;
  }

  /** Counts a failed job against session `id`. */
  failed(id: string): void {
    const record = this.of(id);
    if (record.inARow === 0) record.othersDoneAtStreakStart = this.jobsDone - record.successes;
    record.failures++;
    record.inARow++;
  }

  /** Fails like a broken session would (a run of failures, or failures and no success at all). */
  isSuspect(id: string): boolean {
    const record = this.sessions.get(id);
    if (!record) return false;
    return record.inARow >= this.failuresInARow || (record.successes === 0 && record.failures >= this.failuresWithoutSuccess);
  }

  /**
   * Why session `id` should be quarantined, compared with `peers` (the other sessions that can take
   * work now), or null. Never with no peer: the last session standing keeps working, and its jobs
   * fail as jobs do.
   */
  verdict(id: string, peers: string[]): string | null {
    const record = this.sessions.get(id);
    if (!record || peers.length === 0) return null;
    const othersDoneSince = this.jobsDone - record.successes - record.othersDoneAtStreakStart;
    if (record.inARow >= this.failuresInARow && othersDoneSince > 0) {
      return `failed ${record.inARow} jobs in a row while other sessions completed ${othersDoneSince}`;
    }
    const fewestPeerFailures = Math.min(...peers.map((peer) => this.sessions.get(peer)?.failures ?? 0));
    if (record.successes === 0 && record.failures >= this.failuresWithoutSuccess && record.failures >= 3 * (fewestPeerFailures + 1)) {
      return `failed all ${record.failures} jobs it took while another session failed ${fewestPeerFailures}`;
    }
    return null;
  }

  forget(id: string): void {
    this.sessions.delete(id);
  }
}

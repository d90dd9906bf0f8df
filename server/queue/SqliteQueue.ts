// The durable job queue on SQLite: one file, safe to share between processes (WAL + busy_timeout),
// every lease fenced by a random token so a session that lost its lease can't finish or put back the job.
// A token is "<job id>~<random UUID>": carrying the id makes every token call a primary-key lookup, so
// the hot path needs no token index (each index is another page written to the WAL per commit).
import { RUN_DEFAULTS } from "../runDefaults.js";
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import type { JobSpec } from "../../protocol/job.js";
import { ChangedJobError, countChanged, noChangedJobs, specDiffers } from "./changedJobs.js";
import { LEASE_END_REASONS, leaseClock } from "./JobQueue.js";
import type {
  AddOptions,
  AddResult,
  ChangedJobs,
  FailedJob,
  JobError,
  JobQueue,
  JobState,
  Lease,
  QueueCounts,
  QueueOptions,
} from "./JobQueue.js";

const SCHEMA_VERSION = 1;
const TOKEN_SEP = "~";
const UUID_LENGTH = 36;
/** Rows per write transaction in `add`: large enough to amortise commits, small enough not to hold the lock long. */
const ADD_BATCH = 5_000;
const DEFAULTS = { leaseTtlMs: RUN_DEFAULTS.leaseTtlMs, maxAttempts: RUN_DEFAULTS.maxAttempts, busyTimeoutMs: 10_000 };

// Why resume ended a lease (the other reasons: LEASE_END_REASONS).
const REASON_RESTART = "lease lost: server restarted";

export interface SqliteQueueOptions extends QueueOptions {
  /** How long a write waits for another process's lock before throwing SQLITE_BUSY (default 10 000). */
  busyTimeoutMs?: number;
}

/** An added job's id differs only by case from a queued one: both would be one folder on macOS and Windows. */
export class CaseCollisionError extends Error {
  constructor(readonly id: string, readonly queuedId: string) {
    super(
      `job ${JSON.stringify(id)}: its id differs only by case from the job ${JSON.stringify(queuedId)} already in the queue ` +
        `(ids are folder names: one folder on macOS and Windows); give it another id`,
    );
  }
}

interface LeasedRow {
  spec: string;
  attempts: number;
  expires_at: number;
}

export class SqliteQueue implements JobQueue {
  readonly leaseTtlMs: number;
  readonly maxAttempts: number;
  private readonly now: () => number;
  private readonly db: Database.Database;
  private readonly stmt: ReturnType<typeof prepareStatements>;
  private readonly insertBatch: (rows: JobSpec[], changed: ChangedJobs, options: AddOptions) => number;
  private readonly takeTx: (owner: string) => Lease | null;
  private readonly countsTx: () => QueueCounts;

  constructor(dbPath: string, options: SqliteQueueOptions = {}) {
    this.leaseTtlMs = options.leaseTtlMs ?? DEFAULTS.leaseTtlMs;
    this.maxAttempts = options.maxAttempts ?? DEFAULTS.maxAttempts;
    this.now = options.now ?? leaseClock;
    if (!(this.leaseTtlMs > 0)) throw new RangeError(`leaseTtlMs must be > 0, got ${this.leaseTtlMs}`);
    if (!(this.maxAttempts >= 1)) throw new RangeError(`maxAttempts must be >= 1, got ${this.maxAttempts}`);

    const db = new Database(dbPath);
    this.db = db;
    try {
      // busy_timeout first: switching to WAL and creating the schema may meet another process doing the same.
      db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? DEFAULTS.busyTimeoutMs}`);
      // Before anything is written: tabfarm makes its tables only in an empty database, never in another application's.
      const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[];
      if (tables.length > 0 && !isTabfarmQueue(db)) {
        throw new Error(`${db.name} is not tabfarm's queue: it is an SQLite database holding the tables ${tables.join(", ")}`);
      }
      db.pragma("journal_mode = WAL"); // readers never block the writer, and commits are appends
      db.pragma("synchronous = NORMAL"); // in WAL: durable against process crashes, fsync only at checkpoints
      db.transaction(() => {
        db.exec(`
          CREATE TABLE IF NOT EXISTS jobs (
            id            TEXT PRIMARY KEY,
            seq           INTEGER NOT NULL,          -- insertion order: take serves the lowest pending seq
            spec          TEXT NOT NULL,             -- the JobSpec as JSON
            state         TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'done', 'failed')),
            token         TEXT,                      -- the current (or, once finished, the last) lease's token
            owner         TEXT,
            expires_at    INTEGER,                   -- epoch ms; meaningful only while leased
            attempts      INTEGER NOT NULL DEFAULT 0,
            error_message TEXT,                      -- why the last lease ended badly
            error_stack   TEXT,
            updated_at    INTEGER NOT NULL
          );
          -- take reads the lowest pending seq from it, counts() reads it alone,
          -- and releaseOwner / housekeep / recoverLeased scan just its (few) leased entries.
          CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs (state, seq);
          -- Ids are folder names: add refuses one that differs from a queued id only by case. Written only
          -- by add (an id never changes), so take and complete do not pay for it.
          CREATE INDEX IF NOT EXISTS jobs_folded_id ON jobs (lower(id));
          CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
          INSERT OR IGNORE INTO meta (key, value) VALUES ('stale_rejections', 0), ('next_seq', 1);
        `);
        const version = db.pragma("user_version", { simple: true }) as number;
        if (version === 0) db.pragma(`user_version = ${SCHEMA_VERSION}`);
        else if (version !== SCHEMA_VERSION) {
          throw new Error(`${db.name}: queue schema version ${version}, this code knows ${SCHEMA_VERSION}`);
        }
      }).immediate();

      this.stmt = prepareStatements(db);

      // Both are read-then-write, so both run IMMEDIATE: the write lock is taken before the read, so two
      // processes can't pick the same oldest job or the same next_seq (a deferred transaction would read,
      // then fail to upgrade with SQLITE_BUSY, which busy_timeout does not retry).
      this.insertBatch = db.transaction((rows: JobSpec[], changed: ChangedJobs, { replacePending, refuseChanged }: AddOptions) => {
        let seq = this.stmt.getMeta.get("next_seq") as number;
        const now = this.now();
        let added = 0;
        for (const job of rows) {
          const spec = JSON.stringify(job);
          const sameFolder = this.stmt.idDifferingByCase.get({ id: job.id }) as string | undefined;
          if (sameFolder !== undefined) throw new CaseCollisionError(job.id, sameFolder);
          if (this.stmt.insert.run(job.id, seq++, spec, now).changes > 0) {
            added++;
            continue;
          }
          // Known id: an edited job is reported, and replaced only while nobody has started it.
          const queued = this.stmt.specAndState.get(job.id) as { spec: string; state: JobState };
          if (!specDiffers(job, queued.spec)) continue;
          if (refuseChanged) throw new ChangedJobError(job.id, queued.state); // rolls this batch back
          const replace = replacePending === true && queued.state === "pending";
          if (replace) this.stmt.replacePendingSpec.run({ id: job.id, spec, now });
          countChanged(changed, job.id, queued.state, replace);
        }
        this.stmt.setMeta.run(seq, "next_seq");
        return added;
      }).immediate;

      this.takeTx = db.transaction((owner: string): Lease | null => {
        const oldest = this.stmt.oldestPending.get() as { id: string; owner: string | null; attempts: number } | undefined;
        if (oldest === undefined) return null;
        // A retry prefers another session: skip the jobs this owner failed last, unless only those are left.
        const failedHere = oldest.owner === owner && oldest.attempts > 0;
        const id = (failedHere ? (this.stmt.oldestPendingNotFailedBy.get({ owner }) as string | undefined) : undefined) ?? oldest.id;
        const now = this.now();
        const token = `${id}${TOKEN_SEP}${randomUUID()}`;
        const row = this.stmt.lease.get({ id, token, owner, expires: now + this.leaseTtlMs, now }) as LeasedRow;
        return { job: JSON.parse(row.spec) as JobSpec, token, owner, expiresAt: row.expires_at, attempt: row.attempts };
      }).immediate;

      // One read transaction so the numbers are a consistent snapshot even while another process writes.
      this.countsTx = db.transaction((): QueueCounts => {
        const counts: QueueCounts = { pending: 0, leased: 0, done: 0, failed: 0, total: 0, staleRejections: 0 };
        for (const { state, n } of this.stmt.counts.all() as { state: JobState; n: number }[]) {
          counts[state] = n;
          counts.total += n;
        }
        counts.staleRejections = this.stmt.getMeta.get("stale_rejections") as number;
        return counts;
      }).deferred;
    } catch (err) {
      db.close(); // a refused file keeps no connection, and no -wal/-shm beside it
      throw err;
    }
  }

  async add(jobs: Iterable<JobSpec> | AsyncIterable<JobSpec>, options: AddOptions = {}): Promise<AddResult> {
    // Each batch commits on its own: if the source throws midway, the jobs before it stay queued,
    // and adding the same source again is safe because adds are idempotent.
    let added = 0;
    let seen = 0;
    let batch: JobSpec[] = [];
    const changed = noChangedJobs();
    const push = (job: JobSpec) => {
      if (typeof job?.id !== "string" || job.id === "") throw new TypeError(`job #${seen} has no string id`);
      batch.push(job);
      seen++;
      if (batch.length >= ADD_BATCH) {
        added += this.insertBatch(batch, changed, options);
        batch = [];
      }
    };
    const firstSeq = this.stmt.getMeta.get("next_seq") as number;
    try {
      if (Symbol.asyncIterator in jobs) for await (const job of jobs) push(job);
      else for (const job of jobs) push(job);
      if (batch.length > 0) added += this.insertBatch(batch, changed, options);
    } catch (err) {
      // refuseChanged: the whole add is refused, so the jobs its earlier batches added go too (one add per
      // dataset at a time: the rows from firstSeq on, never taken, are this call's).
      if (err instanceof ChangedJobError) this.stmt.removeAddedSince.run(firstSeq);
      throw err;
    }
    return { added, duplicates: seen - added, ...(changed.count > 0 ? { changed } : {}) };
  }

  async take(owner: string): Promise<Lease | null> {
    return this.takeTx(owner);
  }

  async extend(token: string): Promise<boolean> {
    const id = tokenJobId(token);
    const now = this.now();
    return this.counted(id !== null && this.stmt.extend.run({ id, token, expires: now + this.leaseTtlMs, now }).changes > 0);
  }

  async isCurrent(token: string): Promise<boolean> {
    const id = tokenJobId(token);
    return id !== null && this.stmt.isCurrent.get({ id, token, now: this.now() }) !== undefined;
  }

  async complete(token: string): Promise<boolean> {
    const id = tokenJobId(token);
    return this.counted(id !== null && this.stmt.complete.run({ id, token, now: this.now() }).changes > 0);
  }

  async putBack(token: string, error?: JobError): Promise<boolean> {
    const id = tokenJobId(token);
    const params = { id, token, ...this.endParams(error, LEASE_END_REASONS.putBack) };
    return this.counted(id !== null && this.stmt.putBack.run(params).changes > 0);
  }

  async release(token: string, error?: JobError): Promise<boolean> {
    const id = tokenJobId(token);
    const params = { id, token, message: error?.message ?? LEASE_END_REASONS.released, stack: error?.stack ?? null, now: this.now() };
    return this.counted(id !== null && this.stmt.release.run(params).changes > 0);
  }

  async releaseOwner(owner: string, error?: JobError): Promise<number> {
    return this.stmt.releaseOwner.run({ owner, ...this.endParams(error, `${LEASE_END_REASONS.ownerGone}: ${owner}`) }).changes;
  }

  async housekeep(): Promise<number> {
    return this.stmt.housekeep.run(this.endParams(undefined, LEASE_END_REASONS.expired)).changes;
  }

  async recoverLeased(): Promise<number> {
    // The attempt that was running when the server died stays counted: a job that keeps killing the
    // server must eventually fail rather than loop forever.
    return this.stmt.recoverLeased.run(this.endParams(undefined, REASON_RESTART)).changes;
  }

  async retryFailed(ids?: readonly string[]): Promise<number> {
    if (ids === undefined) return this.stmt.retryFailed.run({ now: this.now() }).changes;
    const now = this.now();
    return this.db.transaction(() => ids.reduce((n, id) => n + this.stmt.retryFailedJob.run({ now, id }).changes, 0)).immediate();
  }

  async checkWritable(): Promise<void> {
    // A write that changes a value: SQLite skips writing a page whose content would not change.
    this.stmt.writeProbe.run();
  }

  async counts(): Promise<QueueCounts> {
    return this.countsTx();
  }

  async failures(limit?: number): Promise<FailedJob[]> {
    const rows = (limit === undefined ? this.stmt.failures.all() : this.stmt.failuresUpTo.all(limit)) as {
      id: string;
      attempts: number;
      error_message: string | null;
      error_stack: string | null;
    }[];
    return rows.map(({ id, attempts, error_message, error_stack }) => ({
      id,
      attempts,
      error: error_message === null ? null : { message: error_message, ...(error_stack === null ? {} : { stack: error_stack }) },
    }));
  }

  async state(id: string): Promise<JobState | null> {
    return (this.stmt.state.get(id) as JobState | undefined) ?? null;
  }

  /**
   * Every done job with its spec as queued (JSON text), in queue order, streamed (`verify` checks each has
   * its frames; a queue of a million jobs is not held). The connection runs nothing else until it ends.
   */
  doneJobs(): IterableIterator<{ id: string; spec: string }> {
    return this.stmt.doneJobs.iterate() as IterableIterator<{ id: string; spec: string }>;
  }

  /**
   * As a shard's ledger (./ShardQueue.ts: the run's queue is shared, e.g. on Redis): the job this server
   * leased, with its spec, so its frames.jsonl lines belong to a known job. A job already done here keeps its entry.
   */
  noteLeased(job: JobSpec): void {
    const spec = JSON.stringify(job);
    this.db.transaction(() => {
      const seq = this.stmt.getMeta.get("next_seq") as number;
      if (this.stmt.insert.run(job.id, seq, spec, this.now()).changes > 0) this.stmt.setMeta.run(seq + 1, "next_seq");
      else this.stmt.noteSpec.run({ id: job.id, spec, now: this.now() });
    }).immediate();
  }

  /** As a shard's ledger: every frame of the job is in this dataset (written before the shared queue is told). */
  noteDone(id: string): void {
    this.stmt.noteDone.run({ id, now: this.now() });
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /** A token call that matched no current lease changed nothing; count it so fencing problems are visible. */
  private counted(matched: boolean): boolean {
    if (!matched) this.stmt.countStale.run();
    return matched;
  }

  private endParams(error: JobError | undefined, fallback: string) {
    return { max: this.maxAttempts, now: this.now(), message: error?.message ?? fallback, stack: error?.stack ?? null };
  }
}

/** Whether `db` holds tabfarm's queue tables (the columns every version of them has). */
export function isTabfarmQueue(db: Database.Database): boolean {
  const columns = (table: string) => (db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name);
  const jobs = columns("jobs");
  return ["id", "seq", "spec", "state", "token", "attempts"].every((c) => jobs.includes(c)) && columns("meta").includes("value");
}

/** The job id a token was minted for, or null if it can't be one of ours. */
function tokenJobId(token: string): string | null {
  if (typeof token !== "string") return null;
  const cut = token.length - UUID_LENGTH - TOKEN_SEP.length;
  return cut > 0 && token[cut] === TOKEN_SEP ? token.slice(0, cut) : null;
}

/** Prepared once: compiling SQL per call would dominate the per-job cost. */
function prepareStatements(db: Database.Database) {
  // A lease matches only with its job id, its token, and the job still leased.
  const current = `id = @id AND token = @token AND state = 'leased'`;
  const endLease = `
    state = CASE WHEN attempts >= @max THEN 'failed' ELSE 'pending' END,
    expires_at = NULL, error_message = @message, error_stack = @stack, updated_at = @now`;
  return {
    insert: db.prepare(
      `INSERT OR IGNORE INTO jobs (id, seq, spec, state, attempts, updated_at) VALUES (?, ?, ?, 'pending', 0, ?)`,
    ),
    specAndState: db.prepare(`SELECT spec, state FROM jobs WHERE id = ?`),
    // ASCII case folding is enough: ids are ASCII (protocol/names.ts).
    idDifferingByCase: db.prepare(`SELECT id FROM jobs WHERE lower(id) = lower(@id) AND id <> @id LIMIT 1`).pluck(),
    // An edited job replaces a pending one as a new job: no attempts, no last error, no last owner.
    replacePendingSpec: db.prepare(`
      UPDATE jobs SET spec = @spec, attempts = 0, owner = NULL, token = NULL, error_message = NULL, error_stack = NULL,
                      updated_at = @now
      WHERE id = @id AND state = 'pending'`),
    getMeta: db.prepare(`SELECT value FROM meta WHERE key = ?`).pluck(),
    setMeta: db.prepare(`UPDATE meta SET value = ? WHERE key = ?`),
    countStale: db.prepare(`UPDATE meta SET value = value + 1 WHERE key = 'stale_rejections'`),
    oldestPending: db.prepare(`SELECT id, owner, attempts FROM jobs WHERE state = 'pending' ORDER BY seq LIMIT 1`),
    // A pending job's owner is who held its last lease; with attempts > 0 that lease ended counted
    // (release, uncounted, clears the owner), so it is the session the job last failed on.
    oldestPendingNotFailedBy: db.prepare(
      `SELECT id FROM jobs WHERE state = 'pending' AND (owner IS NOT @owner OR attempts = 0) ORDER BY seq LIMIT 1`,
    ).pluck(),
    lease: db.prepare(`
      UPDATE jobs SET state = 'leased', token = @token, owner = @owner, expires_at = @expires,
                      attempts = attempts + 1, updated_at = @now
      WHERE id = @id AND state = 'pending'
      RETURNING spec, attempts, expires_at`),
    extend: db.prepare(`UPDATE jobs SET expires_at = @expires, updated_at = @now WHERE ${current}`),
    isCurrent: db.prepare(`SELECT 1 FROM jobs WHERE ${current} AND expires_at > @now`).pluck(),
    complete: db.prepare(`UPDATE jobs SET state = 'done', expires_at = NULL, updated_at = @now WHERE ${current}`),
    putBack: db.prepare(`UPDATE jobs SET ${endLease} WHERE ${current}`),
    release: db.prepare(`
      UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), expires_at = NULL, owner = NULL,
                      error_message = @message, error_stack = @stack, updated_at = @now
      WHERE ${current}`),
    releaseOwner: db.prepare(`UPDATE jobs SET ${endLease} WHERE owner = @owner AND state = 'leased'`),
    housekeep: db.prepare(`UPDATE jobs SET ${endLease} WHERE expires_at <= @now AND state = 'leased'`),
    recoverLeased: db.prepare(`UPDATE jobs SET ${endLease} WHERE state = 'leased'`),
    retryFailed: db.prepare(`
      UPDATE jobs SET state = 'pending', attempts = 0, error_message = NULL, error_stack = NULL, updated_at = @now
      WHERE state = 'failed'`),
    retryFailedJob: db.prepare(`
      UPDATE jobs SET state = 'pending', attempts = 0, error_message = NULL, error_stack = NULL, updated_at = @now
      WHERE state = 'failed' AND id = @id`),
    counts: db.prepare(`SELECT state, COUNT(*) AS n FROM jobs GROUP BY state`),
    failures: db.prepare(
      `SELECT id, attempts, error_message, error_stack FROM jobs WHERE state = 'failed' ORDER BY seq`,
    ),
    failuresUpTo: db.prepare(
      `SELECT id, attempts, error_message, error_stack FROM jobs WHERE state = 'failed' ORDER BY seq LIMIT ?`,
    ),
    state: db.prepare(`SELECT state FROM jobs WHERE id = ?`).pluck(),
    removeAddedSince: db.prepare(`DELETE FROM jobs WHERE seq >= ? AND state = 'pending' AND attempts = 0`),
    doneJobs: db.prepare(`SELECT id, spec FROM jobs WHERE state = 'done' ORDER BY seq`),
    noteSpec: db.prepare(`UPDATE jobs SET spec = @spec, updated_at = @now WHERE id = @id AND state <> 'done'`),
    noteDone: db.prepare(`UPDATE jobs SET state = 'done', expires_at = NULL, updated_at = @now WHERE id = @id`),
    writeProbe: db.prepare(
      `INSERT INTO meta (key, value) VALUES ('write_probes', 1) ON CONFLICT (key) DO UPDATE SET value = value + 1`,
    ),
  };
}

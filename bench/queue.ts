// Queue benchmark: what durability costs. SqliteQueue on a fresh file and RedisQueue on a redis-server
// started here (its own port, nothing persisted: tests/redisServer.ts) run the same operations, in
// interleaved rounds (sqlite, redis, sqlite, redis, ...) so machine noise hits both alike; each figure is
// the median over the rounds. A naive in-memory port of the seed's queue (a Map with take / mark done,
// nothing fenced, nothing persisted) is the floor. All in one run, so the ratios mean something anywhere.
// Run: npx tsx bench/queue.ts [jobs] [rounds]   (default 100 000 jobs, 3 rounds)
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import type { JobSpec } from "../protocol/job.js";
import type { JobQueue } from "../server/queue/JobQueue.js";
import { SqliteQueue } from "../server/queue/SqliteQueue.js";
import { openRedisQueue } from "../server/queue/RedisQueue.js";
import { Redis } from "ioredis";
import { startRedis } from "../tests/redisServer.js";

/** The seed's queue, ported as-is: pending in a Map (insertion order), taken jobs in another. */
class InMemorySeedQueue {
  private pending = new Map<string, JobSpec>();
  private inProgress = new Map<string, { job: JobSpec; takenAt: number }>();
  private done = new Set<string>();

  add(jobs: Iterable<JobSpec>): number {
    let added = 0;
    for (const job of jobs) {
      if (this.pending.has(job.id) || this.inProgress.has(job.id) || this.done.has(job.id)) continue;
      this.pending.set(job.id, job);
      added++;
    }
    return added;
  }
  take(): JobSpec | null {
    for (const [id, job] of this.pending) {
      this.pending.delete(id);
      this.inProgress.set(id, { job, takenAt: Date.now() });
      return job;
    }
    return null;
  }
  markDone(id: string): void {
    this.inProgress.delete(id);
    this.done.add(id);
  }
}

function* jobs(n: number, prefix = "job"): Generator<JobSpec> {
  for (let i = 0; i < n; i++) {
    yield {
      id: `${prefix}-${String(i).padStart(7, "0")}`,
      params: { seed: i, variant: i % 7 },
      frames: [{ camera: { position: [i % 10, 1.5, 6], lookAt: [0, 0, 0], fov: 50 } }],
      width: 640,
      height: 480,
      format: "png",
    };
  }
}

async function time(fn: () => Promise<void> | void): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** Takes and completes `n` jobs, `owners` sessions taking in turn: each round every owner takes one, then all complete. */
async function takeComplete(q: JobQueue, n: number, owners: number): Promise<number> {
  const names = Array.from({ length: owners }, (_, i) => `session-${i}`);
  let finished = 0;
  while (finished < n) {
    const leases = [];
    for (const owner of names) {
      if (finished + leases.length >= n) break;
      const lease = await q.take(owner);
      if (!lease) throw new Error(`queue ran dry after ${finished} jobs`);
      leases.push(lease);
    }
    for (const lease of leases) {
      if (!(await q.complete(lease.token))) throw new Error(`lost lease on ${lease.job.id}`);
      finished++;
    }
  }
  return finished;
}

/** The same operations on one backend: returns its figures under `prefix` (sqlite…, redis…). */
async function benchBackend(prefix: string, q: JobQueue, total: number, cycle: number): Promise<Record<string, number>> {
  const r: Record<string, number> = {};
  try {
    r[`${prefix}EnqueueS`] = await time(async () => {
      const { added } = await q.add(jobs(total));
      if (added !== total) throw new Error(`added ${added} of ${total}`);
    });
    r[`${prefix}EnqueuePerS`] = total / r[`${prefix}EnqueueS`]!;
    r[`${prefix}ReAddS`] = await time(async () => void (await q.add(jobs(Math.min(total, 10_000)))));
    r[`${prefix}TakeComplete1PerS`] = cycle / (await time(() => takeComplete(q, cycle, 1).then(() => {})));
    r[`${prefix}TakeComplete8PerS`] = cycle / (await time(() => takeComplete(q, cycle, 8).then(() => {})));
    // The hot path with a heartbeat per job, as a session would run it.
    r[`${prefix}TakeExtendCompletePerS`] =
      cycle /
      (await time(async () => {
        for (let i = 0; i < cycle; i++) {
          const lease = (await q.take("s"))!;
          await q.extend(lease.token);
          await q.complete(lease.token);
        }
      }));
    r[`${prefix}CountsMs`] = 1000 * (await time(() => q.counts().then(() => {})));
    r[`${prefix}HousekeepMs`] = 1000 * (await time(() => q.housekeep().then(() => {})));
  } finally {
    await q.close();
  }
  return r;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export async function benchQueue(opts: { jobs?: number; rounds?: number } = {}): Promise<Record<string, number>> {
  const total = opts.jobs ?? 100_000;
  const rounds = Math.max(1, opts.rounds ?? 3);
  const cycle = Math.min(20_000, Math.floor(total / 3)); // three take+complete runs must fit in the queue
  const dir = mkdtempSync(join(tmpdir(), "tabfarm-bench-queue-"));
  const redis = await startRedis();
  const admin = new Redis(redis.url);
  const r: Record<string, number> = { jobs: total, cycleJobs: cycle, rounds };
  const perRound: Record<string, number[]> = {};
  const keep = (figures: Record<string, number>) => {
    for (const [k, v] of Object.entries(figures)) (perRound[k] ??= []).push(v);
  };
  try {
    for (let round = 0; round < rounds; round++) {
      const path = join(dir, `queue-${round}.db`);
      const sqlite = await benchBackend("sqlite", new SqliteQueue(path), total, cycle);
      sqlite.sqliteFileMB = (statSync(path).size + (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0)) / 2 ** 20;
      rmSync(path, { force: true });
      rmSync(`${path}-wal`, { force: true });
      keep(sqlite);

      const before = Number(/used_memory:(\d+)/.exec(await admin.info("memory"))?.[1] ?? 0);
      const q = await openRedisQueue(redis.url, { name: `bench-${round}` });
      const redisFigures = await benchBackend("redis", q, total, cycle);
      const afterMem = Number(/used_memory:(\d+)/.exec(await admin.info("memory"))?.[1] ?? 0);
      redisFigures.redisMemoryMB = (afterMem - before) / 2 ** 20;
      await admin.flushdb();
      keep(redisFigures);
    }
    for (const [k, vs] of Object.entries(perRound)) r[k] = median(vs);

    const mem = new InMemorySeedQueue();
    r.memEnqueueS = await time(() => void mem.add(jobs(total)));
    r.memEnqueuePerS = total / r.memEnqueueS;
    r.memTakeCompletePerS =
      cycle /
      (await time(() => {
        for (let i = 0; i < cycle; i++) mem.markDone(mem.take()!.id);
      }));

    r.ratioEnqueue = r.sqliteEnqueuePerS! / r.memEnqueuePerS;
    r.ratioTakeComplete = r.sqliteTakeComplete1PerS! / r.memTakeCompletePerS;
    r.redisVsSqliteEnqueue = r.redisEnqueuePerS! / r.sqliteEnqueuePerS!;
    r.redisVsSqliteTakeComplete = r.redisTakeComplete1PerS! / r.sqliteTakeComplete1PerS!;
    return r;
  } finally {
    admin.disconnect();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function printTable(r: Record<string, number>): void {
  const n = (x: number | undefined, digits = 0) =>
    x === undefined ? "-" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const rows: [string, string, string, string][] = [
    ["enqueue (jobs/s)", n(r.sqliteEnqueuePerS), n(r.redisEnqueuePerS), n(r.memEnqueuePerS)],
    [`enqueue ${n(r.jobs)} (s)`, n(r.sqliteEnqueueS, 3), n(r.redisEnqueueS, 3), n(r.memEnqueueS, 3)],
    ["take+complete, 1 owner (jobs/s)", n(r.sqliteTakeComplete1PerS), n(r.redisTakeComplete1PerS), n(r.memTakeCompletePerS)],
    ["take+complete, 8 owners (jobs/s)", n(r.sqliteTakeComplete8PerS), n(r.redisTakeComplete8PerS), "-"],
    ["take+extend+complete (jobs/s)", n(r.sqliteTakeExtendCompletePerS), n(r.redisTakeExtendCompletePerS), "-"],
    ["re-add 10k duplicates (s)", n(r.sqliteReAddS, 3), n(r.redisReAddS, 3), "-"],
    [`counts() at ${n(r.jobs)} (ms)`, n(r.sqliteCountsMs, 2), n(r.redisCountsMs, 2), "-"],
    ["housekeep() (ms)", n(r.sqliteHousekeepMs, 2), n(r.redisHousekeepMs, 2), "-"],
    ["file + WAL / Redis memory (MB)", n(r.sqliteFileMB, 1), n(r.redisMemoryMB, 1), "-"],
  ];
  const w = [36, 14, 14, 14];
  const line = (c: string[]) => console.log(`${c[0]!.padEnd(w[0]!)}${c.slice(1).map((x, i) => x.padStart(w[i + 1]!)).join("")}`);
  line(["", "sqlite", "redis", "in-memory"]);
  rows.forEach(line);
  console.log(
    `sqlite / in-memory: enqueue ${n(r.ratioEnqueue, 3)}x, take+complete ${n(r.ratioTakeComplete, 4)}x ` +
      `(${r.cycleJobs} jobs per take+complete run); redis / sqlite: enqueue ${n(r.redisVsSqliteEnqueue, 3)}x, ` +
      `take+complete ${n(r.redisVsSqliteTakeComplete, 3)}x; medians of ${r.rounds} interleaved rounds`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const arg = process.argv[2] ? Number(process.argv[2]) : undefined;
  const rounds = process.argv[3] ? Number(process.argv[3]) : undefined;
  const r = await benchQueue({ jobs: arg, rounds });
  printTable(r);
  const rounded = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v.toPrecision(4))]));
  console.log(JSON.stringify(rounded));
}

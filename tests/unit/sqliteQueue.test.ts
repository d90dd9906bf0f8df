// SqliteQueue: the shared contract, plus what only a durable, multi-process backend must show —
// state survives a reopen, two processes never share a job, and a randomized farm of flaky sessions
// ends with every job done exactly once (or failed with a reason) and no stale token ever winning.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import type { JobError, JobQueue, QueueCounts } from "../../server/queue/JobQueue.js";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";
import { FakeClock, makeJob, queueContractSuite } from "./queueContract.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO_ROOT = resolve(dirname(THIS_FILE), "../..");
/** Set in the forked child: the database file it takes jobs from. */
const CHILD_DB = process.env.TABFARM_QUEUE_CHILD_DB;

if (CHILD_DB) await childWorker(CHILD_DB);
else registerTests();

// ---------------------------------------------------------------------------------------------

function registerTests(): void {
  const dir = mkdtempSync(join(tmpdir(), "tabfarm-queue-test-"));
  let files = 0;
  const dbFile = (label: string) => join(dir, `${label}-${++files}.db`);
  after(() => rmSync(dir, { recursive: true, force: true }));

  queueContractSuite("SqliteQueue (file)", async (opts) => new SqliteQueue(dbFile("contract"), opts));
  queueContractSuite("SqliteQueue (:memory:)", async (opts) => new SqliteQueue(":memory:", opts));

  describe("SqliteQueue durability", () => {
    it("uses WAL with synchronous NORMAL on a file", async () => {
      const path = dbFile("pragmas");
      const q = new SqliteQueue(path);
      await q.add([makeJob("a")]);
      const raw = new Database(path, { readonly: true });
      try {
        assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
      } finally {
        raw.close();
        await q.close();
      }
      await q.close(); // closing twice is harmless
    });

    it("doneJobs lists exactly the done jobs, in queue order, with their specs as queued", async () => {
      const q = new SqliteQueue(":memory:");
      try {
        await q.add([makeJob("a", 1), makeJob("b", 2), makeJob("c", 3)]);
        for (let i = 0; i < 3; i++) {
          const lease = (await q.take("s1"))!;
          if (lease.job.id !== "b") assert.ok(await q.complete(lease.token));
        }
        const done = [...q.doneJobs()];
        assert.deepEqual(done.map((j) => j.id), ["a", "c"]);
        assert.deepEqual(JSON.parse(done[1]!.spec), makeJob("c", 3));
      } finally {
        await q.close();
      }
    });

    it("rejects a forged token that names a real job, and a lease's token swapped onto another job", async () => {
      const q = new SqliteQueue(":memory:");
      try {
        await q.add([makeJob("a"), makeJob("b")]);
        const a = await q.take("s1");
        const b = await q.take("s1");
        assert.ok(a && b);
        const uuid = (token: string) => token.slice(token.lastIndexOf("~") + 1);
        assert.ok(a.token.startsWith("a~"), "tokens name their job (that is what makes them a key lookup)");
        const forged = [`a~${randomUUID()}`, `b~${uuid(a.token)}`, `a~${uuid(b.token)}`, uuid(a.token), "", "~", `${a.token}x`];
        for (const token of forged) {
          assert.equal(await q.isCurrent(token), false, token);
          assert.equal(await q.complete(token), false, token);
          assert.equal(await q.extend(token), false, token);
          assert.equal(await q.putBack(token), false, token);
        }
        assert.deepEqual(await q.counts(), { pending: 0, leased: 2, done: 0, failed: 0, total: 2, staleRejections: forged.length * 3 });
        assert.equal(await q.complete(a.token), true);
        assert.equal(await q.complete(b.token), true);
      } finally {
        await q.close();
      }
    });

    it("keeps every state, error, attempt and the stale counter across close and reopen", async () => {
      const path = dbFile("reopen");
      const clock = new FakeClock();
      const opts = { leaseTtlMs: 1_000, maxAttempts: 2, now: clock.now };
      const q1 = new SqliteQueue(path, opts);
      await q1.add(["a", "b", "c", "d", "e"].map((id, n) => makeJob(id, n)));
      const a = await q1.take("s1");
      const b = await q1.take("s1");
      const c = await q1.take("s2");
      assert.ok(a && b && c);
      assert.equal(await q1.complete(a.token), true);
      assert.equal(await q1.complete(a.token), false); // one stale rejection
      assert.equal(await q1.putBack(c.token, { message: "first", stack: "s" }), true);
      const c2 = await q1.take("s3"); // another session: s2 would be given d, not the job it just failed
      assert.ok(c2);
      assert.equal(c2.job.id, "c");
      assert.equal(await q1.putBack(c2.token, { message: "second", stack: "at frame 3" }), true); // c fails
      const before = await q1.counts();
      await q1.close();

      const q2 = new SqliteQueue(path, opts);
      try {
        assert.deepEqual(await q2.counts(), before);
        assert.deepEqual(before, { pending: 2, leased: 1, done: 1, failed: 1, total: 5, staleRejections: 1 });
        assert.deepEqual(await q2.failures(), [{ id: "c", attempts: 2, error: { message: "second", stack: "at frame 3" } }]);
        // The lease itself survived; a restarted server recovers it, keeping the attempt counted.
        assert.equal(await q2.isCurrent(b.token), true);
        assert.equal(await q2.recoverLeased(), 1);
        assert.equal(await q2.complete(b.token), false);
        const b2 = await q2.take("s3");
        assert.deepEqual([b2?.job, b2?.attempt], [makeJob("b", 1), 2]);
        // Insertion order carries on after the reopen: f queues behind d and e.
        assert.deepEqual(await q2.add([makeJob("f"), makeJob("a")]), { added: 1, duplicates: 1 });
        const order = [];
        for (let lease = await q2.take("s3"); lease; lease = await q2.take("s3")) order.push(lease.job.id);
        assert.deepEqual(order, ["d", "e", "f"]);
        assert.equal((await q2.counts()).staleRejections, 2);
      } finally {
        await q2.close();
      }
    });

    it("two instances on one file share the queue and never hand out the same job", async () => {
      const path = dbFile("two");
      const clock = new FakeClock();
      const q1 = new SqliteQueue(path, { now: clock.now });
      const q2 = new SqliteQueue(path, { now: clock.now });
      try {
        await q1.add(Array.from({ length: 200 }, (_, i) => makeJob(`j${i}`, i)));
        assert.deepEqual(await q2.add([makeJob("j0")]), { added: 0, duplicates: 1 });
        const seen = new Set<string>();
        const tokens: string[] = [];
        for (let i = 0; ; i++) {
          const lease = await (i % 2 ? q1 : q2).take(`owner${i % 2}`);
          if (!lease) break;
          assert.ok(!seen.has(lease.job.id), `${lease.job.id} handed out twice`);
          seen.add(lease.job.id);
          tokens.push(lease.token);
        }
        assert.equal(seen.size, 200);
        // A lease is the queue's, not the connection's: either instance may finish it.
        for (const [i, token] of tokens.entries()) assert.equal(await (i % 3 ? q1 : q2).complete(token), true);
        assert.equal(await q1.complete(tokens[0]!), false);
        assert.deepEqual(await q2.counts(), { pending: 0, leased: 0, done: 200, failed: 0, total: 200, staleRejections: 1 });
      } finally {
        await q1.close();
        await q2.close();
      }
    });

    it("a real child process and this one add and take on the same file concurrently: no job leased twice", async (t) => {
      const path = dbFile("fork");
      const q = new SqliteQueue(path, { leaseTtlMs: 600_000 });
      try {
        const env: NodeJS.ProcessEnv = { ...process.env, TABFARM_QUEUE_CHILD_DB: path };
        delete env.NODE_TEST_CONTEXT; // the child is a plain script, not a test runner's subprocess
        const child = fork(THIS_FILE, [], {
          cwd: REPO_ROOT,
          env,
          execArgv: ["--import", "tsx"],
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        });
        const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
        // The child's next message, or its exit if it dies first (its stderr shows why).
        const nextMessage = () =>
          Promise.race([
            new Promise<ChildMessage>((res) => child.once("message", (m) => res(m as ChildMessage))),
            exited.then((code): ChildMessage => ({ type: "exit", code })),
          ]);
        const ready = await nextMessage();
        assert.equal(ready.type, "ready", `child did not start: ${JSON.stringify(ready)}`);
        const result = nextMessage();
        // Wait until "go" is on the wire: the loop below never yields to the event loop.
        await new Promise<void>((res, rej) => child.send("go", (err) => (err ? rej(err) : res())));
        const { added, duplicates } = await q.add(forkJobs());
        const mine = await takeAll(q, "parent");
        const theirs = await result;
        assert.ok(theirs.type === "done", `child failed: ${JSON.stringify(theirs)}`);
        assert.equal(await exited, 0);

        t.diagnostic(`added: parent ${added}, child ${theirs.added}; taken: parent ${mine.length}, child ${theirs.ids.length}`);
        assert.equal(added + theirs.added, FORK_JOBS, "each id added exactly once between the two");
        assert.equal(duplicates + theirs.duplicates, FORK_JOBS);
        const all = [...mine, ...theirs.ids];
        assert.equal(new Set(all).size, all.length, "a job was leased twice");
        assert.equal(all.length, FORK_JOBS);
        assert.ok(mine.length > 0 && theirs.ids.length > 0, `both took some: ${mine.length} / ${theirs.ids.length}`);
        assert.deepEqual(await q.counts(), { pending: 0, leased: 0, done: FORK_JOBS, failed: 0, total: FORK_JOBS, staleRejections: 0 });
        const raw = new Database(path, { readonly: true });
        try {
          assert.equal(raw.prepare("SELECT COUNT(*) FROM jobs WHERE attempts <> 1").pluck().get(), 0);
          assert.equal(raw.prepare("SELECT COUNT(DISTINCT seq) FROM jobs").pluck().get(), FORK_JOBS, "seq is unique");
        } finally {
          raw.close();
        }
      } finally {
        await q.close();
      }
    });
  });

  describe("SqliteQueue randomized farm", () => {
    const seeds = process.env.QUEUE_FUZZ_SEED
      ? process.env.QUEUE_FUZZ_SEED.split(",").map(Number)
      : [1, 2, 3, 20240611];
    for (const seed of seeds) {
      it(`seed ${seed}: every job done exactly once or failed with a reason; stale tokens never win`, async (t) => {
        t.diagnostic(JSON.stringify(await simulateFarm(seed, dbFile(`farm-${seed}`))));
      });
    }
  });
}

// --- the child process ------------------------------------------------------------------------

type ChildMessage =
  | { type: "ready" }
  | { type: "done"; added: number; duplicates: number; ids: string[] }
  | { type: "exit"; code: number | null };

/** Both processes add this same list at once (so each id is won by one of them), then both drain it. */
const FORK_JOBS = 6_000;
function* forkJobs() {
  for (let i = 0; i < FORK_JOBS; i++) yield makeJob(`j${i}`, i);
}

async function childWorker(path: string): Promise<void> {
  const q = new SqliteQueue(path, { leaseTtlMs: 600_000 });
  const send = (m: ChildMessage) => new Promise<void>((res) => process.send!(m, () => res()));
  process.once("message", async () => {
    const { added, duplicates } = await q.add(forkJobs());
    const ids = await takeAll(q, `child-${process.pid}`);
    await q.close();
    await send({ type: "done", added, duplicates, ids });
    process.disconnect();
  });
  await send({ type: "ready" });
}

/** Takes and completes until the queue is empty; returns the ids this owner finished. */
async function takeAll(q: JobQueue, owner: string): Promise<string[]> {
  const ids: string[] = [];
  for (let lease = await q.take(owner); lease; lease = await q.take(owner)) {
    assert.equal(await q.complete(lease.token), true);
    ids.push(lease.job.id);
  }
  return ids;
}

// --- the randomized farm ------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    chance: (p: number) => next() < p,
    pick<T>(xs: readonly T[]): T {
      return xs[Math.floor(next() * xs.length)]!;
    },
  };
}

/**
 * The reference model: the contract's semantics in plain memory. The farm checks every answer the
 * real queue gives against it, so a divergence fails at the step where it happens, not at the end.
 */
class ModelQueue {
  readonly jobs = new Map<string, { seq: number; state: string; token?: string; owner?: string; expiresAt: number; attempts: number; error?: string }>();
  private readonly leases = new Map<string, string>(); // current token -> job id
  staleRejections = 0;

  constructor(
    private readonly ttl: number,
    private readonly maxAttempts: number,
    private readonly now: () => number,
  ) {}

  add(ids: string[]): void {
    for (const id of ids) this.jobs.set(id, { seq: this.jobs.size, state: "pending", expiresAt: 0, attempts: 0 });
  }
  /** The job take must hand out next, and its lease once the real queue has chosen the token. */
  take(owner: string, token: string): { id: string; attempt: number; expiresAt: number } | null {
    // Oldest pending first, but a job this owner failed last only when nothing else is pending.
    const failedHere = (j: { owner?: string; attempts: number }) => j.owner === owner && j.attempts > 0;
    let best: string | undefined;
    const better = (id: string) => {
      if (best === undefined) return true;
      const [a, b] = [this.jobs.get(id)!, this.jobs.get(best)!];
      return failedHere(a) === failedHere(b) ? a.seq < b.seq : !failedHere(a);
    };
    for (const [id, j] of this.jobs) if (j.state === "pending" && better(id)) best = id;
    if (best === undefined) return null;
    const j = this.jobs.get(best)!;
    Object.assign(j, { state: "leased", token, owner, expiresAt: this.now() + this.ttl, attempts: j.attempts + 1 });
    this.leases.set(token, best);
    return { id: best, attempt: j.attempts, expiresAt: j.expiresAt };
  }
  isLeased(token: string): boolean {
    return this.leases.has(token);
  }
  isCurrent(token: string): boolean {
    const id = this.leases.get(token);
    return id !== undefined && this.jobs.get(id)!.expiresAt > this.now();
  }
  extend(token: string): boolean {
    const id = this.leases.get(token);
    if (id === undefined) return this.reject();
    this.jobs.get(id)!.expiresAt = this.now() + this.ttl;
    return true;
  }
  complete(token: string): boolean {
    const id = this.leases.get(token);
    if (id === undefined) return this.reject();
    this.leases.delete(token);
    this.jobs.get(id)!.state = "done";
    return true;
  }
  putBack(token: string, message: string): boolean {
    const id = this.leases.get(token);
    if (id === undefined) return this.reject();
    this.end(token, message);
    return true;
  }
  releaseOwner(owner: string, message: string): number {
    return this.endWhere((j) => j.owner === owner, message);
  }
  housekeep(): number {
    return this.endWhere((j) => j.expiresAt <= this.now(), "expired");
  }
  recoverLeased(): number {
    return this.endWhere(() => true, "restart");
  }
  counts(): QueueCounts {
    const c: QueueCounts = { pending: 0, leased: 0, done: 0, failed: 0, total: 0, staleRejections: this.staleRejections };
    for (const j of this.jobs.values()) {
      c[j.state as "pending"]++;
      c.total++;
    }
    return c;
  }
  private endWhere(match: (j: { owner?: string; expiresAt: number }) => boolean, message: string): number {
    let n = 0;
    for (const [token, id] of [...this.leases]) {
      if (match(this.jobs.get(id)!)) {
        this.end(token, message);
        n++;
      }
    }
    return n;
  }
  private end(token: string, message: string): void {
    const j = this.jobs.get(this.leases.get(token)!)!;
    this.leases.delete(token);
    j.state = j.attempts >= this.maxAttempts ? "failed" : "pending";
    j.error = message;
  }
  private reject(): false {
    this.staleRejections++;
    return false;
  }
}

interface Session {
  name: string;
  owner: string;
  generation: number;
  q: JobQueue;
  leases: { token: string; id: string; expiresAt: number }[];
  /** Stopped heartbeating (a frozen tab): wakes only after housekeeping has passed all its expiries. */
  stalled: boolean;
  /** Tokens this session held and knows (or will find) are no longer its. */
  oldTokens: string[];
}

async function simulateFarm(seed: number, path: string): Promise<Record<string, number>> {
  const JOBS = 300;
  const SESSIONS = 20;
  const TTL = 3_000;
  const MAX_ATTEMPTS = 4;
  const MAX_STEPS = 30_000;
  const rnd = prng(seed);
  const clock = new FakeClock();
  const open = () => new SqliteQueue(path, { leaseTtlMs: TTL, maxAttempts: MAX_ATTEMPTS, now: clock.now });
  // Two connections to one file, like two server processes; sessions are spread over both.
  let queues: [SqliteQueue, SqliteQueue] = [open(), open()];
  const model = new ModelQueue(TTL, MAX_ATTEMPTS, clock.now);
  const ids = Array.from({ length: JOBS }, (_, i) => `job-${i}`);

  const writes = new Map<string, number>(); // frames written per job: only ever under a current lease
  const completes = new Map<string, number>(); // successful completes per job
  const stats = { steps: 0, takes: 0, writes: 0, staleAttempts: 0, crashes: 0, disconnects: 0, stalls: 0, reclaimed: 0, restarts: 0 };
  const log: string[] = [];
  const note = (s: string) => {
    log.push(`#${stats.steps} t+${clock.t - 1_700_000_000_000}: ${s}`);
    if (log.length > 40) log.shift();
  };
  let lastHousekeep = -Infinity;

  const sessions: Session[] = Array.from({ length: SESSIONS }, (_, i) => ({
    name: `s${i}`,
    owner: `s${i}#0`,
    generation: 0,
    q: queues[i % 2]!,
    leases: [],
    stalled: false,
    oldTokens: [],
  }));

  // Every token call goes through these, checked against the model before the model moves.
  async function take(s: Session): Promise<void> {
    const lease = await s.q.take(s.owner);
    const expected = model.take(s.owner, lease?.token ?? "");
    assert.deepEqual(
      lease && { id: lease.job.id, attempt: lease.attempt, expiresAt: lease.expiresAt },
      expected,
      "take served the wrong job",
    );
    if (!lease) return;
    assert.equal(lease.owner, s.owner);
    s.leases.push({ token: lease.token, id: lease.job.id, expiresAt: lease.expiresAt });
    stats.takes++;
    note(`${s.owner} took ${lease.job.id} (attempt ${lease.attempt})`);
  }
  async function tokenCall(kind: "complete" | "extend" | "putBack", s: Session, token: string, error?: JobError) {
    const wasLeased = model.isLeased(token);
    const ok = await (kind === "putBack" ? s.q.putBack(token, error) : s.q[kind](token));
    assert.equal(ok, kind === "putBack" ? model.putBack(token, error!.message) : model[kind](token), `${kind} disagreed with the model`);
    assert.ok(wasLeased || !ok, `a stale token succeeded at ${kind}`);
    if (!wasLeased) stats.staleAttempts++;
    note(`${s.owner} ${kind} …${token.slice(-8)} -> ${ok}`);
    return ok;
  }
  async function isCurrent(s: Session, token: string) {
    const current = await s.q.isCurrent(token);
    assert.equal(current, model.isCurrent(token), "isCurrent disagreed with the model");
    return current;
  }
  async function housekeep() {
    const n = await rnd.pick(queues).housekeep();
    assert.equal(n, model.housekeep(), "housekeep count");
    lastHousekeep = clock.t;
    stats.reclaimed += n;
    if (n) note(`housekeep reclaimed ${n}`);
  }
  const dropLease = (s: Session, token: string) => {
    s.leases = s.leases.filter((l) => l.token !== token);
    s.oldTokens.push(token);
  };

  /** The honest path: write the frame only under a current lease, then the completion must hold. */
  async function finish(s: Session, lease: Session["leases"][number]): Promise<void> {
    if (await isCurrent(s, lease.token)) {
      writes.set(lease.id, (writes.get(lease.id) ?? 0) + 1);
      stats.writes++;
      assert.equal(await tokenCall("complete", s, lease.token), true, "a completion right after a write failed");
      completes.set(lease.id, (completes.get(lease.id) ?? 0) + 1);
      s.leases = s.leases.filter((l) => l !== lease);
    } else if (await tokenCall("extend", s, lease.token)) {
      lease.expiresAt = clock.t + TTL; // expired, but nobody took it: revived, finish later
    } else {
      dropLease(s, lease.token);
    }
  }

  async function step(s: Session): Promise<void> {
    if (s.stalled) {
      // Wake only once housekeeping has surely reclaimed everything this session held.
      if (s.leases.some((l) => l.expiresAt > lastHousekeep)) return;
      s.stalled = false;
      note(`${s.owner} wakes from a stall with ${s.leases.length} stale leases`);
      // It doesn't know it stalled: it tries to finish its work with tokens that must all be stale.
      for (const lease of s.leases) {
        const kind = rnd.pick(["complete", "complete", "extend", "putBack"] as const);
        assert.equal(await tokenCall(kind, s, lease.token, { message: "late" }), false, "a woken staller's token won");
        s.oldTokens.push(lease.token);
      }
      s.leases = [];
      return;
    }
    const r = rnd.next();
    if (r < 0.3) {
      if (s.leases.length < 3) await take(s);
    } else if (r < 0.62) {
      if (s.leases.length) await finish(s, rnd.pick(s.leases));
    } else if (r < 0.77) {
      for (const lease of [...s.leases]) {
        if (await tokenCall("extend", s, lease.token)) lease.expiresAt = clock.t + TTL;
        else dropLease(s, lease.token);
      }
    } else if (r < 0.84) {
      if (!s.leases.length) return;
      const lease = rnd.pick(s.leases);
      const error = { message: `${s.owner} crashed rendering ${lease.id}`, stack: `Error\n    at step ${stats.steps}` };
      await tokenCall("putBack", s, lease.token, error);
      dropLease(s, lease.token);
      stats.crashes++;
    } else if (r < 0.88) {
      const n = await s.q.releaseOwner(s.owner, { message: `${s.owner} disconnected` });
      assert.equal(n, model.releaseOwner(s.owner, `${s.owner} disconnected`), "releaseOwner count");
      note(`${s.owner} disconnected, released ${n}`);
      for (const lease of s.leases) s.oldTokens.push(lease.token);
      s.leases = [];
      s.owner = `${s.name}#${++s.generation}`;
      stats.disconnects++;
    } else if (r < 0.92) {
      if (!s.leases.length) return;
      s.stalled = true;
      stats.stalls++;
      note(`${s.owner} stalls holding ${s.leases.map((l) => l.id).join(",")}`);
    } else if (s.oldTokens.length) {
      // A confused or replayed message: an old token must change nothing.
      const kind = rnd.pick(["complete", "extend", "putBack"] as const);
      assert.equal(await tokenCall(kind, s, rnd.pick(s.oldTokens), { message: "replayed" }), false, "an old token won");
    }
  }

  const unfinished = () => {
    const c = model.counts();
    return c.pending + c.leased;
  };

  try {
    await queues[0].add(ids.map((id, n) => makeJob(id, n)));
    model.add(ids);
    while (unfinished() > 0 && stats.steps < MAX_STEPS) {
      stats.steps++;
      await step(rnd.pick(sessions));
      clock.advance(rnd.int(120));
      if (rnd.chance(0.1)) await housekeep();
      if (rnd.chance(0.0008)) {
        // The server restarts: reopen the file, recover every lease; all sessions' tokens go stale.
        for (const q of queues) await q.close();
        queues = [open(), open()];
        for (const [i, s] of sessions.entries()) s.q = queues[i % 2]!;
        const n = await queues[0].recoverLeased();
        assert.equal(n, model.recoverLeased(), "recoverLeased count");
        stats.restarts++;
        note(`server restart, recovered ${n}`);
      }
      if (stats.steps % 200 === 0) assert.deepEqual(await queues[1].counts(), model.counts(), "counts");
    }

    // Bounded drain, in case the random phase ran out of steps: reclaim everything, one honest worker.
    clock.advance(TTL);
    await housekeep();
    const drainer: Session = { name: "drain", owner: "drain", generation: 0, q: queues[0], leases: [], stalled: false, oldTokens: [] };
    for (let i = 0; i < JOBS * MAX_ATTEMPTS && unfinished() > 0; i++) {
      await take(drainer);
      for (const lease of [...drainer.leases]) await finish(drainer, lease);
    }

    // The ledger.
    const counts = await queues[0].counts();
    assert.deepEqual(counts, model.counts(), "final counts");
    assert.equal(counts.pending + counts.leased, 0, "everything finished");
    assert.equal(counts.done + counts.failed, JOBS);
    const failures = new Map((await queues[1].failures()).map((f) => [f.id, f]));
    for (const id of ids) {
      const state = await queues[0].state(id);
      if (state === "done") {
        assert.equal(completes.get(id), 1, `${id}: completed exactly once`);
        assert.equal(writes.get(id), 1, `${id}: written exactly once`);
      } else {
        assert.equal(state, "failed", `${id} is ${state}`);
        assert.equal(completes.get(id) ?? 0, 0, `${id}: failed yet completed`);
        assert.equal(writes.get(id) ?? 0, 0, `${id}: failed yet written`);
        const failure = failures.get(id);
        assert.ok(failure?.error?.message, `${id}: failed without a reason`);
        assert.equal(failure.attempts, MAX_ATTEMPTS);
      }
    }
    assert.equal(counts.staleRejections, model.staleRejections);
    // The run must actually have exercised the dangerous paths.
    assert.ok(stats.staleAttempts > 0 && stats.reclaimed > 0 && stats.stalls > 0 && stats.crashes > 0, JSON.stringify(stats));
    return { ...stats, done: counts.done, failed: counts.failed, staleRejections: counts.staleRejections };
  } catch (err) {
    const e = err as Error;
    e.message = `[seed ${seed}; rerun with QUEUE_FUZZ_SEED=${seed}] ${e.message}\nstats: ${JSON.stringify(stats)}\nlast steps:\n  ${log.join("\n  ")}`;
    throw e;
  } finally {
    for (const q of queues) await q.close();
  }
}

describe("SqliteQueue: a wall-clock jump", () => {
  // Lease expiries used Date.now: an NTP step or a resumed VM an hour ahead expired every running lease at
  // once (an attempt counted against each job; with --max-attempts 1 all of them failed), and a step back
  // kept dead leases alive. The default clock is monotonic.
  it("an hour forward or back changes no lease: housekeeping reclaims nothing, the lease stays current, a real expiry still happens", async () => {
    const realNow = Date.now;
    const queue = new SqliteQueue(":memory:", { leaseTtlMs: 200 });
    try {
      await queue.add([makeJob("a")]);
      const lease = (await queue.take("s1"))!;
      for (const jump of [3_600_000, -3_600_000]) {
        Date.now = () => realNow() + jump;
        assert.equal(await queue.housekeep(), 0, `a ${jump > 0 ? "forward" : "backward"} jump expires nothing`);
        assert.equal(await queue.isCurrent(lease.token), true);
      }
      Date.now = realNow;
      await new Promise((resolve) => setTimeout(resolve, 250)); // the TTL really passes
      assert.equal(await queue.isCurrent(lease.token), false);
      assert.equal(await queue.housekeep(), 1);
    } finally {
      Date.now = realNow;
      await queue.close();
    }
  });
});

// RedisQueue against a real redis-server started here (its own port, nothing persisted): the shared queue
// contract, with the semantics of several servers on one queue; then the hostile and careless class:
// bad URLs (a password is never printed), an unreachable or evicting Redis, a Redis that goes away,
// BullMQ's id traps, two instances racing for the same jobs, and a dead server's leases coming back.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Job, Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import type { JobSpec } from "../../protocol/job.js";
import type { Lease } from "../../server/queue/JobQueue.js";
import {
  fromBullId,
  isRedisQueueUrl,
  MAX_PRIORITY,
  openRedisQueue,
  parseRedisQueueUrl,
  RedisQueue,
  RedisQueueError,
  RedisQueueUrlError,
  redactRedisUrl,
  toBullId,
  type RedisQueueOptions,
} from "../../server/queue/RedisQueue.js";
import { startRedis } from "../redisServer.js";
import { FakeClock, makeJob, queueContractSuite } from "./queueContract.js";

const server = await startRedis();
after(() => server.stop());

let queues = 0;
/** A fresh queue name per call: tests never see each other's jobs. */
const freshName = (label = "t") => `${label}-${++queues}-${process.pid}`;

queueContractSuite(
  "RedisQueue",
  (opts) => openRedisQueue(server.url, { ...opts, name: freshName("contract") }),
  { openPeer: (q, opts) => openRedisQueue(server.url, { ...opts, name: (q as RedisQueue).name }) },
);

async function withQueues<T>(count: number, opts: RedisQueueOptions, fn: (...qs: RedisQueue[]) => Promise<T>, url = server.url): Promise<T> {
  const name = opts.name ?? freshName();
  const qs: RedisQueue[] = [];
  try {
    for (let i = 0; i < count; i++) qs.push(await openRedisQueue(url, { ...opts, name }));
    return await fn(...qs);
  } finally {
    await Promise.all(qs.map((q) => q.close()));
  }
}

describe("RedisQueue URLs", () => {
  it("parses redis:// and rediss:// URLs with user, password, db and ?queue=", () => {
    assert.deepEqual(parseRedisQueueUrl("redis://alice:p%40ss@127.0.0.1:6390/2?queue=farm-1_a"), {
      host: "127.0.0.1", port: 6390, username: "alice", password: "p@ss", db: 2, tls: false, queueName: "farm-1_a",
      display: "redis://alice:***@127.0.0.1:6390/2?queue=farm-1_a",
    });
    const tls = parseRedisQueueUrl("rediss://[::1]:6380");
    assert.deepEqual([tls.host, tls.port, tls.tls, tls.db, tls.queueName], ["::1", 6380, true, 0, undefined]);
    assert.equal(parseRedisQueueUrl("redis://localhost").port, 6379);
    assert.equal(parseRedisQueueUrl("REDIS://h:1/").db, 0);
    for (const s of ["redis://h", "rediss://h:1", " redis://x"]) assert.equal(isRedisQueueUrl(s), true, s);
    for (const s of ["queue.db", "/tmp/redis://x", "http://h", "redis:/h", "", "redis.db"]) assert.equal(isRedisQueueUrl(s), false, s);
  });

  it("refuses every malformed URL with an error naming --queue and the URL, never its password", async () => {
    const secret = "s3cr3t-Pa55";
    const bad = [
      "http://127.0.0.1:6379",
      "garbage",
      "",
      "redis://",
      "redis://:6379",
      "redis://host:notaport",
      `redis://user:${secret}@host:notaport`,
      `redis://:${secret}@host:0`,
      `redis://u:${secret}@host:70000`,
      `user:${secret}@host:6379`,
      `redis://u:${secret}@h/abc`,
      `redis://u:${secret}@h/1/2`,
      `redis://u:${secret}@h?queue=bad name`,
      `redis://u:${secret}@h?queue=${"x".repeat(65)}`,
      `redis://u:${secret}@h?queue=`,
      `redis://u:${secret}@h?queue=a&queue=b`,
      `redis://h?password=${secret}`,
      `redis://u:${secret}@h#frag`,
      `redis://u:${secret}/x@h:6379/0`, // an unescaped "/" in the password
    ];
    for (const url of bad) {
      await assert.rejects(openRedisQueue(url, { connectTimeoutMs: 500 }), (err: Error) => {
        assert.ok(err instanceof RedisQueueUrlError, `${url}: ${err}`);
        assert.match(err.message, /^--queue /, url);
        assert.ok(!err.message.includes(secret), `password printed: ${err.message}`);
        return true;
      });
    }
    // A bad name passed in code is refused the same way, and a URL's name must agree with it.
    await assert.rejects(openRedisQueue(server.url, { name: "a:b" }), /queue name "a:b"/);
    await assert.rejects(openRedisQueue(`${server.url}?queue=x`, { name: "y" }), /names queue "x" but "y"/);
    assert.equal(redactRedisUrl(`redis://${secret}@h:1`), "redis://***@h:1");
    assert.equal(redactRedisUrl("redis://h:1/0"), "redis://h:1/0");
  });
});

describe("RedisQueue: a Redis it must not use", () => {
  it("an unreachable address fails fast with an error naming it (no retry loop), and no password", async () => {
    const gone = await startRedis();
    const port = gone.port;
    await gone.stop(); // a port where nothing listens now
    for (const url of [`redis://127.0.0.1:${port}`, `redis://u:hunter2@127.0.0.1:${port}/0`]) {
      await assert.rejects(openRedisQueue(url, { connectTimeoutMs: 2_000 }), (err: Error) => {
        assert.ok(err instanceof RedisQueueError, String(err));
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
        assert.ok(!err.message.includes("hunter2"), err.message);
        return true;
      });
    }
  });

  it("a Redis that may evict keys (allkeys-lru, volatile-lru) is refused, saying why and how to fix it", async () => {
    for (const policy of ["allkeys-lru", "volatile-lru"]) {
      const evicting = await startRedis({ maxmemoryPolicy: policy });
      try {
        await assert.rejects(openRedisQueue(evicting.url, {}), (err: Error) => {
          assert.ok(err instanceof RedisQueueError);
          assert.match(err.message, new RegExp(`maxmemory-policy ${policy}`));
          assert.match(err.message, /silently deletes queued jobs/);
          assert.match(err.message, /redis-cli config set maxmemory-policy noeviction/);
          return true;
        });
      } finally {
        await evicting.stop();
      }
    }
  });

  it("a wrong or missing password is an error naming the address and what Redis said, never the password", async () => {
    const locked = await startRedis({ args: ["--requirepass", "right-pass"] });
    try {
      for (const [userinfo, said] of [[":wrong-pass@", /WRONGPASS|invalid password/i], ["", /NOAUTH|Authentication required/i]] as const) {
        await assert.rejects(openRedisQueue(locked.url.replace("redis://", `redis://${userinfo}`), {}), (err: Error) => {
          assert.ok(err instanceof RedisQueueError, String(err));
          assert.ok(err.message.includes(`127.0.0.1:${locked.port}`), err.message);
          assert.match(err.message, said);
          assert.ok(!err.message.includes("wrong-pass") && !err.message.includes("right-pass"), err.message);
          return true;
        });
      }
      const q = await openRedisQueue(locked.url.replace("redis://", "redis://:right-pass@"), { name: freshName() });
      await q.close();
    } finally {
      await locked.stop();
    }
  });

  it("a Redis that goes away mid-run: every call rejects with an error naming it, and close() still ends", async () => {
    const doomed = await startRedis();
    const q = await openRedisQueue(doomed.url, { name: freshName("doomed"), commandTimeoutMs: 2_000, connectTimeoutMs: 1_000 });
    try {
      await q.add([makeJob("a"), makeJob("b")]);
      const lease = (await q.take("s1"))!;
      assert.equal(lease.job.id, "a");
      await doomed.stop();
      const calls: [string, () => Promise<unknown>][] = [
        ["take", () => q.take("s1")],
        ["complete", () => q.complete(lease.token)],
        ["extend", () => q.extend(lease.token)],
        ["add", () => q.add([makeJob("c")])],
        ["counts", () => q.counts()],
        ["checkWritable", () => q.checkWritable()],
        ["housekeep", () => q.housekeep()],
        ["state", () => q.state("a")],
      ];
      for (const [what, call] of calls) {
        await assert.rejects(call(), (err: Error) => {
          assert.ok(err instanceof RedisQueueError, `${what}: ${err}`);
          assert.ok(err.message.includes(`127.0.0.1:${doomed.port}`) && err.message.includes(what), err.message);
          return true;
        });
      }
    } finally {
      await q.close();
    }
    await assert.rejects(q.counts(), /is closed/);
  });

  it("a take given up on while Redis stalls, answered late: the job goes back uncounted, never failed for an attempt nobody made", async () => {
    const stalling = await startRedis();
    const q = await openRedisQueue(stalling.url, { name: freshName("stall"), commandTimeoutMs: 1_000, leaseTtlMs: 60_000, maxAttempts: 1 });
    try {
      await q.add([makeJob("a"), makeJob("b")]);
      process.kill(stalling.pid, "SIGSTOP"); // a network stall: Redis answers nothing, then everything at once
      try {
        await assert.rejects(q.take("s1"), (err: Error) => err instanceof RedisQueueError && /take got no answer/.test(err.message));
      } finally {
        process.kill(stalling.pid, "SIGCONT");
      }
      // Redis now answers the take, which leases "a" to nobody: wait until that lease has ended (our record says why).
      const admin = new Redis(stalling.url);
      const why = () => admin.hget(`tabfarm:${q.name}:tf:job:${toBullId("a")}`, "errMsg");
      try {
        for (let i = 0; i < 200 && !(await why()); i++) await new Promise((r) => setTimeout(r, 25));
        assert.match((await why()) ?? "(none)", /taken after its caller had given up/);
      } finally {
        admin.disconnect();
      }
      let counts = await q.counts();
      for (let i = 0; i < 200 && counts.leased > 0; i++) counts = await new Promise((r) => setTimeout(r, 25)).then(() => q.counts()); // BullMQ's half of the release
      assert.deepEqual([counts.pending, counts.leased, counts.failed], [2, 0, 0], "nobody holds a lease");
      const lease = (await q.take("s2"))!;
      assert.deepEqual([lease.job.id, lease.attempt], ["a", 1], "its first attempt, in its place in line");
      assert.equal(await q.complete(lease.token), true);
      assert.deepEqual(await q.failures(), []);
    } finally {
      await q.close();
      await stalling.stop();
    }
  });

  it("checkWritable makes a real write: it rejects when Redis refuses writes (out of memory), and passes again after", async () => {
    await withQueues(1, {}, async (q) => {
      await q.add([makeJob("a")]);
      await q.checkWritable();
      const admin = new Redis(server.url);
      try {
        await admin.config("SET", "maxmemory", "1");
        await assert.rejects(q.checkWritable(), (err: Error) => err instanceof RedisQueueError && /OOM/.test(err.message));
        await assert.rejects(q.add([makeJob("b")]), /OOM/);
        await admin.config("SET", "maxmemory", "0");
        await q.checkWritable();
        assert.equal((await q.take("s1"))?.job.id, "a", "nothing was lost");
      } finally {
        await admin.config("SET", "maxmemory", "0");
        admin.disconnect();
      }
    });
  });
});

describe("RedisQueue on BullMQ", () => {
  it("ids BullMQ refuses (digits only, ':') and any other characters map reversibly and round-trip", async () => {
    const odd = ["123", "0", "a:b", "a~b", "%41", "x%y", "é", "a b", "j", "job/1", "007:", "~", "*()!'"];
    for (const id of odd) {
      const bullId = toBullId(id);
      assert.equal(fromBullId(bullId), id);
      assert.ok(!bullId.includes(":") && !/^\d+$/.test(bullId) && !bullId.includes("~"), bullId);
    }
    assert.equal(new Set(odd.map(toBullId)).size, odd.length, "no two ids share a BullMQ id");
    await withQueues(1, { maxAttempts: 1 }, async (q) => {
      assert.equal((await q.add(odd.map((id, n) => makeJob(id, n)))).added, odd.length);
      assert.equal((await q.add(odd.map((id, n) => makeJob(id, n)))).duplicates, odd.length);
      for (const [n, id] of odd.entries()) {
        const lease = (await q.take("s1"))!;
        assert.deepEqual(lease.job, makeJob(id, n), "served in order with its spec");
        if (n % 2 === 0) assert.equal(await q.complete(lease.token), true);
        else assert.equal(await q.putBack(lease.token, { message: `bad ${id}` }), true);
      }
      assert.deepEqual((await q.failures()).map((f) => f.id), odd.filter((_, n) => n % 2 === 1));
      const done: string[] = [];
      for await (const { id, spec } of q.doneJobs()) {
        assert.equal((JSON.parse(spec) as JobSpec).id, id);
        done.push(id);
      }
      assert.deepEqual(done, odd.filter((_, n) => n % 2 === 0), "doneJobs in queue order");
      for (const id of odd) assert.equal(await q.state(id), odd.indexOf(id) % 2 === 0 ? "done" : "failed");
    });
  });

  it("finished jobs stay in BullMQ (removeOnComplete/removeOnFail off): its counts match ours, and a re-add is a duplicate", async () => {
    await withQueues(1, { maxAttempts: 1 }, async (q) => {
      await q.add([makeJob("d"), makeJob("f"), makeJob("p")]);
      assert.equal(await q.complete((await q.take("s1"))!.token), true);
      assert.equal(await q.putBack((await q.take("s1"))!.token), true);
      const admin = new Redis(server.url);
      try {
        assert.equal(await admin.zcard(`tabfarm:${q.name}:completed`), 1);
        assert.equal(await admin.zcard(`tabfarm:${q.name}:failed`), 1);
        assert.equal(await admin.exists(`tabfarm:${q.name}:${toBullId("d")}`), 1);
      } finally {
        admin.disconnect();
      }
      assert.deepEqual(await q.add([makeJob("d"), makeJob("f")]), { added: 0, duplicates: 2 });
      assert.deepEqual(await q.counts(), { pending: 1, leased: 0, done: 1, failed: 1, total: 3, staleRejections: 0 });
      assert.ok(MAX_PRIORITY === 2_097_151);
    });
  });

  it("past BullMQ's top priority (2,097,151) jobs are still all served, in add order", async () => {
    await withQueues(1, {}, async (q) => {
      const admin = new Redis(server.url);
      try {
        // As if 2,097,140 jobs had been added to this queue before: the next seqs cross the cap.
        await admin.set(`tabfarm:${q.name}:tf:seq`, String(MAX_PRIORITY - 11));
      } finally {
        admin.disconnect();
      }
      const ids = Array.from({ length: 30 }, (_, i) => `cap-${i}`);
      assert.equal((await q.add(ids.map((id) => makeJob(id)))).added, 30);
      const first = (await q.take("s1"))!;
      assert.equal(await q.putBack(first.token), true, "a job below the cap goes back to its place");
      const served: string[] = [];
      for (let lease = await q.take("s2"); lease; lease = await q.take("s2")) {
        served.push(lease.job.id);
        assert.equal(await q.complete(lease.token), true);
      }
      assert.deepEqual(served, ids);
    });
  });

  it("the BullMQ lock outlives the lease by a margin, and extend renews both", async () => {
    const clock = new FakeClock();
    await withQueues(1, { now: clock.now, leaseTtlMs: 1_000 }, async (q) => {
      await q.add([makeJob("a")]);
      const lease = (await q.take("s1"))!;
      const admin = new Redis(server.url);
      try {
        const lockTtl = () => admin.pttl(`tabfarm:${q.name}:${toBullId("a")}:lock`);
        const atTake = await lockTtl();
        assert.ok(atTake > 1_000 && atTake <= 6_000, `lock TTL ${atTake} ms: lease TTL 1 000 + a 5 000 margin`);
        clock.advance(900);
        assert.equal(await q.extend(lease.token), true);
        assert.ok((await lockTtl()) > 1_000, "renewed");
        assert.equal((await q.isCurrent(lease.token)), true);
      } finally {
        admin.disconnect();
      }
    });
  });

  it("a big add goes in batches and keeps its order", async () => {
    await withQueues(1, {}, async (q) => {
      const n = 25_000;
      const jobs = Array.from({ length: n }, (_, i) => makeJob(`big-${i}`, i));
      assert.deepEqual(await q.add(jobs), { added: n, duplicates: 0 });
      assert.deepEqual((await q.counts()).pending, n);
      for (let i = 0; i < 5; i++) assert.equal((await q.take("s1"))!.job.params?.n, i);
    });
  });
});

describe("RedisQueue: retry-failed on many jobs", () => {
  it("puts back more failed jobs than one call's time limit covers: the limit holds per job, not for all", async () => {
    await withQueues(1, { maxAttempts: 1, commandTimeoutMs: 1_000 }, async (q) => {
      const n = 3_000; // about 0.5 ms each here: the whole retry takes longer than the 1 s limit
      await q.add(Array.from({ length: n }, (_, i) => makeJob(`f${i}`, i)));
      for (let i = 0; i < n; i++) await q.putBack((await q.take("s1"))!.token, { message: "broke" });
      assert.equal((await q.counts()).failed, n);
      assert.equal(await q.retryFailed(), n);
      assert.deepEqual([(await q.counts()).pending, (await q.counts()).failed], [n, 0]);
    });
  });
});

describe("RedisQueue: several instances on one queue", () => {
  it("two instances taking concurrently never lease one job twice, and every job ends done exactly once", async () => {
    await withQueues(2, { maxAttempts: 5 }, async (a, b) => {
      const n = 3_000; // about 0.5 ms each here: the whole retry takes longer than the 1 s limit
      await Promise.all([
        a.add(Array.from({ length: n }, (_, i) => makeJob(`race-${i}`, i))),
        b.add(Array.from({ length: n }, (_, i) => makeJob(`race-${i}`, i))), // the same jobs, added twice at once
      ]);
      assert.equal((await a.counts()).total, n);
      const leasedBy = new Map<string, string>();
      const doubles: string[] = [];
      let putBacks = 0;
      // 4 loops per instance race for jobs; every 7th lease is put back once (retaken later, by anyone).
      const loop = async (q: RedisQueue, owner: string) => {
        for (let i = 0; i < 10 * n; i++) {
          const lease: Lease | null = await q.take(owner);
          if (!lease) return;
          const holder = leasedBy.get(lease.job.id);
          if (holder !== undefined) doubles.push(`${lease.job.id}: ${holder} and ${owner}`);
          leasedBy.set(lease.job.id, owner);
          if (lease.attempt === 1 && (lease.job.params?.n as number) % 7 === 0) {
            leasedBy.delete(lease.job.id);
            assert.equal(await q.putBack(lease.token, { message: "flaky" }), true);
            putBacks++;
            continue;
          }
          leasedBy.delete(lease.job.id);
          assert.equal(await q.complete(lease.token), true, `complete ${lease.job.id}`);
        }
      };
      await Promise.all([0, 1, 2, 3].flatMap((i) => [loop(a, `s${i}`), loop(b, `s${i}`)]));
      assert.deepEqual(doubles, []);
      assert.ok(putBacks > 0);
      assert.deepEqual(await b.counts(), { pending: 0, leased: 0, done: n, failed: 0, total: n, staleRejections: 0 });
      let done = 0;
      for await (const _ of a.doneJobs(97)) done++;
      assert.equal(done, n);
    });
  });

  it("a server that dies between BullMQ's completion and our record of it: housekeep records the job done, not pending (BullMQ would never serve it again, and the run would never end)", async () => {
    const clock = new FakeClock();
    await withQueues(1, { now: clock.now, leaseTtlMs: 1_000 }, async (survivor) => {
      const dying = await openRedisQueue(server.url, { name: survivor.name, now: clock.now, leaseTtlMs: 1_000 });
      await dying.add([makeJob("a"), makeJob("b")]);
      const lease = (await dying.take("s1"))!;
      // Killed right after BullMQ's moveToCompleted, before our record says done.
      (dying as unknown as { markEnded: () => Promise<never> }).markEnded = () => Promise.reject(new Error("SIGKILL"));
      await assert.rejects(dying.complete(lease.token), /SIGKILL/);
      await dying.close();
      clock.advance(5_000);
      await survivor.housekeep();
      assert.equal(await survivor.state("a"), "done");
      const counts = await survivor.counts();
      assert.deepEqual([counts.pending, counts.leased, counts.done], [1, 0, 1]);
      const next = (await survivor.take("s1"))!;
      assert.equal(next.job.id, "b");
      assert.equal(await survivor.complete(next.token), true);
      assert.deepEqual([(await survivor.counts()).pending, (await survivor.counts()).done], [0, 2], "the run can end");
    });
  });

  it("a complete that failed after BullMQ's part (a timeout), then released by its own server: the job stays done", async () => {
    await withQueues(1, { leaseTtlMs: 60_000 }, async (q) => {
      await q.add([makeJob("a")]);
      const lease = (await q.take("s1"))!;
      const internals = q as unknown as { markEnded: (...args: unknown[]) => Promise<boolean> };
      const markEnded = internals.markEnded;
      internals.markEnded = () => Promise.reject(new Error("timed out"));
      await assert.rejects(q.complete(lease.token), /timed out/);
      internals.markEnded = markEnded;
      assert.equal(await q.release(lease.token, { message: "the farm gave the job back" }), false, "the lease was over: BullMQ completed it");
      assert.equal(await q.state("a"), "done");
      assert.deepEqual([(await q.counts()).pending, (await q.counts()).leased, (await q.counts()).done], [0, 0, 1]);
    });
  });

  it("the same for a failure: a job BullMQ failed but our record still holds as leased is recorded failed, with its error", async () => {
    const clock = new FakeClock();
    await withQueues(1, { now: clock.now, leaseTtlMs: 1_000, maxAttempts: 1 }, async (survivor) => {
      const dying = await openRedisQueue(server.url, { name: survivor.name, now: clock.now, leaseTtlMs: 1_000, maxAttempts: 1 });
      await dying.add([makeJob("a")]);
      const lease = (await dying.take("s1"))!;
      (dying as unknown as { markEnded: () => Promise<never> }).markEnded = () => Promise.reject(new Error("SIGKILL"));
      await assert.rejects(dying.putBack(lease.token, { message: "the page broke" }), /SIGKILL/);
      await dying.close();
      clock.advance(5_000);
      await survivor.housekeep();
      assert.equal(await survivor.state("a"), "failed");
      assert.deepEqual((await survivor.failures()).map((f) => f.error?.message), ["the page broke"]);
      const counts = await survivor.counts();
      assert.deepEqual([counts.leased, counts.failed], [0, 1], "the run can end");
    });
  });

  it("a server that dies holding leases: another's housekeep returns them after the lease clock, counted", async () => {
    const clock = new FakeClock();
    await withQueues(1, { now: clock.now, leaseTtlMs: 1_000 }, async (survivor) => {
      const dying = await openRedisQueue(server.url, { name: survivor.name, now: clock.now, leaseTtlMs: 1_000 });
      await dying.add([makeJob("a"), makeJob("b")]);
      const lease = (await dying.take("s1"))!;
      await dying.close(); // dies: nobody ends its lease
      assert.equal(await survivor.housekeep(), 0, "still live");
      clock.advance(1_000);
      assert.equal(await survivor.housekeep(), 1);
      const again = (await survivor.take("s1"))!;
      assert.deepEqual([again.job.id, again.attempt], ["a", 2]);
      assert.equal(await survivor.complete(lease.token), false, "the dead server's token is stale");
      assert.equal(await survivor.complete(again.token), true);
    });
  });

  for (const skewMs of [-120_000, 120_000]) {
    it(`servers whose clocks differ (${skewMs / 1000} s): neither ends the other's live leases`, async () => {
      const name = freshName("skew");
      const here = await openRedisQueue(server.url, { name, leaseTtlMs: 5_000 });
      const skewed = await openRedisQueue(server.url, { name, leaseTtlMs: 5_000, wallClock: () => Date.now() + skewMs });
      try {
        await here.add([makeJob("a"), makeJob("b")]);
        const mine = (await here.take("s1"))!;
        const theirs = (await skewed.take("s1"))!;
        for (const q of [here, skewed]) {
          assert.equal(await q.housekeep(), 0, "every lease is live");
          assert.equal(await q.recoverLeased(), 0, "every lease is live");
        }
        assert.ok(Math.abs(theirs.expiresAt - (Date.now() + skewMs) - 5_000) < 2_000, "a lease's expiry is told on its server's own clock");
        assert.equal(await here.extend(mine.token), true);
        assert.equal(await skewed.extend(theirs.token), true);
        assert.equal(await here.isCurrent(theirs.token), true);
        assert.equal(await skewed.isCurrent(mine.token), true);
        assert.equal(await here.complete(mine.token), true);
        assert.equal(await skewed.complete(theirs.token), true);
        assert.deepEqual(await here.counts(), { pending: 0, leased: 0, done: 2, failed: 0, total: 2, staleRejections: 0 });
      } finally {
        await Promise.all([here.close(), skewed.close()]);
      }
    });
  }

  it("the BullMQ lock is the net under the lease clock: a lease whose lock lapsed (its holder stopped renewing) is recovered", async () => {
    // The lease clock never moves here (a frozen clock, or one far behind): only Redis's lock expiry can end it.
    const frozen = new FakeClock();
    // A lock long enough that a slow machine still checks it while live, short enough for the test.
    await withQueues(2, { now: frozen.now, leaseTtlMs: 60_000, lockDurationMs: 2000 }, async (holder, other) => {
      await holder.add([makeJob("a")]);
      const lease = (await holder.take("s1"))!;
      assert.equal(await other.recoverLeased(), 0, "its lock is live");
      let recovered = 0;
      for (let i = 0; i < 200 && recovered === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        recovered = await other.recoverLeased();
      }
      assert.equal(recovered, 1);
      assert.equal(await holder.isCurrent(lease.token), false);
      assert.equal(await holder.extend(lease.token), false, "too late to renew");
      const again = (await other.take("s2"))!;
      assert.deepEqual([again.job.id, again.attempt], ["a", 2]);
    });
  });

  it("a job BullMQ itself put back while our record still shows it leased (e.g. its stalled-job check) counts as an expired attempt", async () => {
    await withQueues(1, { maxAttempts: 2 }, async (q) => {
      const bull = new Queue(q.name, { connection: { host: "127.0.0.1", port: server.port }, prefix: "tabfarm" });
      // What BullMQ's stalled check does to a job whose lock lapsed: back to waiting, behind our back.
      const putBackBehindOurBack = async (id: string) => (await Job.fromId(bull, toBullId(id)))!.moveToWait("0");
      try {
        await q.add([makeJob("a")]);
        const first = (await q.take("s1"))!;
        await putBackBehindOurBack("a");
        const second = (await q.take("s2"))!;
        assert.deepEqual([second.job.id, second.attempt], ["a", 2], "the lapsed attempt stayed counted");
        assert.equal(await q.complete(first.token), false, "the lapsed lease's token is stale");
        await putBackBehindOurBack("a");
        assert.equal(await q.take("s3"), null, "its attempts were used up: failed, not served");
        assert.deepEqual(await q.failures(), [{ id: "a", attempts: 2, error: { message: "lease expired" } }]);
        assert.deepEqual(await q.counts(), { pending: 0, leased: 0, done: 0, failed: 1, total: 1, staleRejections: 1 });
      } finally {
        await bull.close();
      }
    });
  });

  it("a job a server got from BullMQ but died before recording the lease comes back by BullMQ's stalled check, uncounted", async () => {
    await withQueues(1, { lockDurationMs: 200 }, async (q) => {
      await q.add([makeJob("a")]);
      // A server's take that stopped right after BullMQ handed the job over (a crash, a kill -9).
      const dying = new Worker(q.name, null, { connection: { host: "127.0.0.1", port: server.port, maxRetriesPerRequest: null }, prefix: "tabfarm", lockDuration: 200, autorun: false });
      try {
        assert.equal((await dying.getNextJob("dead-server-token", { block: false }))?.id, toBullId("a"));
      } finally {
        await dying.close();
      }
      assert.equal(await q.take("s1"), null, "leased in BullMQ, by nobody we know");
      let lease: Lease | null = null;
      for (let i = 0; i < 200 && !lease; i++) {
        await new Promise((r) => setTimeout(r, 25));
        lease = await q.take("s1");
      }
      assert.deepEqual([lease?.job.id, lease?.attempt], ["a", 1], "back in line; the unrecorded take did not count");
      assert.equal(await q.complete(lease!.token), true);
    });
  });

  it("two servers adding the same jobs at once, the first killed between its record and its BullMQ add: the other serves every job", async () => {
    await withQueues(2, {}, async (killed, other) => {
      const jobs = [makeJob("a"), makeJob("b"), makeJob("c")];
      // The kill lands right after `killed` wrote its records (BullMQ's add never runs)...
      const killedInternals = killed as unknown as { queue: { addBulk: () => Promise<never> } };
      killedInternals.queue.addBulk = async () => {
        throw new Error("SIGKILL");
      };
      // ...and `other` had read the ids as unknown just before: its own records are refused as duplicates.
      const otherRedis = (other as unknown as { redis: Redis }).redis;
      const incrby = otherRedis.incrby.bind(otherRedis);
      let interleaved = false;
      otherRedis.incrby = (async (...args: Parameters<Redis["incrby"]>) => {
        if (!interleaved) {
          interleaved = true;
          await assert.rejects(killed.add(jobs), /SIGKILL/);
        }
        return incrby(...args);
      }) as Redis["incrby"];
      assert.deepEqual(await other.add(jobs), { added: 0, duplicates: 3 });
      assert.ok(interleaved);
      assert.equal((await other.counts()).pending, 3, "every job is in line");
      const served: string[] = [];
      for (let lease = await other.take("s1"); lease; lease = await other.take("s1")) {
        served.push(lease.job.id);
        assert.equal(await other.complete(lease.token), true);
      }
      assert.deepEqual(served, ["a", "b", "c"]);
    });
  });

  it("a release racing with another server's take: the released attempt is not counted, and the job is not failed for it", async () => {
    await withQueues(2, { maxAttempts: 1 }, async (releasing, taking) => {
      await releasing.add([makeJob("a"), makeJob("b")]);
      const lease = (await releasing.take("s1"))!;
      // The other server's take lands in the middle of the release, between its two writes (BullMQ's and ours).
      const redis = (releasing as unknown as { redis: Record<string, (...args: unknown[]) => Promise<unknown>> }).redis;
      const tfEnd = redis.tfEnd!.bind(redis);
      let raced: Lease | null | undefined;
      redis.tfEnd = async (...args) => {
        if (raced === undefined) raced = await taking.take("s2");
        return tfEnd(...args);
      };
      assert.equal(await releasing.release(lease.token, { message: "the farm was stopped" }), true);
      assert.notEqual(raced, undefined, "the take ran mid-release");
      if (raced) assert.equal(await taking.complete(raced.token), true);
      const served: [string, number][] = [];
      for (let l = await taking.take("s2"); l; l = await taking.take("s2")) {
        served.push([l.job.id, l.attempt]);
        assert.equal(await taking.complete(l.token), true);
      }
      assert.deepEqual(await taking.failures(), [], "nothing failed");
      assert.ok(served.some(([id, attempt]) => id === "a" && attempt === 1) || raced?.job.id === "a", JSON.stringify(served));
      assert.deepEqual(await taking.counts(), { pending: 0, leased: 0, done: 2, failed: 0, total: 2, staleRejections: 0 });
    });
  });

  it("close() ends only its own connections: another instance on the same queue keeps working", async () => {
    await withQueues(2, {}, async (a, b) => {
      await a.add([makeJob("x"), makeJob("y")]);
      const x = (await a.take("s1"))!;
      await a.close();
      await a.close(); // twice is fine
      assert.equal(await b.complete(x.token), true);
      assert.equal((await b.take("s1"))?.job.id, "y");
    });
  });
});

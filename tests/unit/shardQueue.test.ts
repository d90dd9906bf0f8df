// A dataset folder as one shard of a run on a shared queue (server/queue/ShardQueue.ts, openDataset's
// `shared`): the ledger in queue.sqlite against a real redis-server, the folder's marker, the refusals
// that keep a shard a shard, the run seed agreed through the queue, and passwords kept out of files.
//
// Run: node --import tsx --test tests/unit/shardQueue.test.ts
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startRedis, type RedisServer } from "../redisServer.js";
import { openRedisQueue, type RedisQueue } from "../../server/queue/RedisQueue.js";
import { ShardQueue } from "../../server/queue/ShardQueue.js";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";
import { MANIFEST_FILE, openDataset, readSharedQueue } from "../../server/dataset/openDataset.js";
import { recordableOptions } from "../../server/dataset/RunManifest.js";
import { printStatus, retryFailed } from "../../harness/queueCommands.js";
import { makeJob } from "./queueContract.js";
import { startRun, type RunOptions } from "../../server/runFarm.js";

let redis: RedisServer;
let base = "";
let count = 0;
const fresh = (name = "shard") => path.join(base, `${name}${++count}`);
const queueUrl = (name: string) => `${redis.url}/0?queue=${name}`;
const opened: { close(): Promise<void> }[] = [];
async function sharedQueue(name: string): Promise<RedisQueue> {
  const q = await openRedisQueue(queueUrl(name), { leaseTtlMs: 60_000, maxAttempts: 2 });
  opened.push(q);
  return q;
}

before(async () => {
  redis = await startRedis();
  base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-shard-"));
});
after(async () => {
  for (const q of opened) await q.close().catch(() => {});
  await redis?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

describe("ShardQueue: the shared queue decides, the shard's ledger records what this server took and finished", () => {
  it("a take notes the job in the ledger (pending); complete marks it done there before the shared queue; counts and states are the run's", async () => {
    const shared = await sharedQueue("ledger");
    const ledger = new SqliteQueue(":memory:");
    const shard = new ShardQueue(shared, ledger);
    await shard.add([makeJob("a"), makeJob("b"), makeJob("c")]);
    const lease = (await shard.take("s1"))!;
    assert.equal(lease.job.id, "a");
    assert.equal(await ledger.state("a"), "pending", "noted as soon as it is leased: its frame lines belong to a known job");
    assert.equal(await ledger.state("b"), null, "jobs this server never took are not in its ledger");
    assert.equal(await shard.complete(lease.token), true);
    assert.equal(await ledger.state("a"), "done");
    assert.equal(await shared.state("a"), "done");
    assert.deepEqual((await shard.counts()).done, 1);
    assert.equal(shard.leaseTtlMs, 60_000);
    assert.equal(shard.maxAttempts, 2);

    // Another server (its own shard) takes b; this shard can't complete it, and its ledger never lists it.
    const other = new ShardQueue(await sharedQueue("ledger"), new SqliteQueue(":memory:"));
    const elsewhere = (await other.take("s1"))!;
    assert.equal(elsewhere.job.id, "b");
    assert.equal(await shard.complete(elsewhere.token), false, "a foreign token is refused");
    assert.equal(await ledger.state("b"), null);
    assert.equal(await shard.state("b"), "leased", "state is the run's");

    // A put back or released lease leaves the ledger entry pending (its lines are dropped by resume's compaction).
    const c = (await shard.take("s1"))!;
    assert.equal(c.job.id, "c");
    assert.equal(await shard.release(c.token), true);
    assert.equal(await ledger.state("c"), "pending");
    assert.equal(await shard.complete(c.token), false, "a released token is stale");
    assert.equal(await ledger.state("c"), "pending", "a stale completion marks nothing done");
    await shard.close();
    await other.close();
  });

  it("a job whose spec was replaced while pending is noted again with its new spec; a done entry keeps its spec", async () => {
    const ledger = new SqliteQueue(":memory:");
    ledger.noteLeased(makeJob("x", 1));
    ledger.noteLeased(makeJob("x", 2));
    ledger.noteDone("x");
    ledger.noteLeased(makeJob("x", 3));
    const done = [...ledger.doneJobs()];
    assert.deepEqual(done.map((d) => JSON.parse(d.spec).params.n), [2]);
    await ledger.close();
  });
});

describe("openDataset with a shared queue", () => {
  it("a new folder becomes a shard (marked with the queue, no password); reopening it without the queue is refused, naming the queue", async () => {
    const out = fresh();
    const queue = await sharedQueue("marker");
    const dataset = await openDataset(out, { log: () => {}, shared: { queue, describe: "redis://:***@127.0.0.1/0?queue=marker" } });
    assert.ok(dataset.queue instanceof ShardQueue);
    assert.notEqual(dataset.ledger as unknown, dataset.queue as unknown);
    await dataset.close();
    assert.equal(readSharedQueue(out), "redis://:***@127.0.0.1/0?queue=marker");

    await assert.rejects(openDataset(out, { log: () => {} }), /is a shard of a run on the shared queue redis:\/\/:\*\*\*@127\.0\.0\.1\/0\?queue=marker.*Resume it with --queue/s);
    await assert.rejects(retryFailed({ out }, () => {}), /is a shard of a run on the shared queue/);
    const lines: string[] = [];
    await printStatus({ out }, (l) => lines.push(l));
    assert.match(lines[0]!, /is a shard of the run on redis:\/\/:\*\*\*@127\.0\.0\.1\/0\?queue=marker: the counts below are this server's jobs/);
  });

  it("a dataset with unfinished jobs in its own queue is not turned into a shard; one whose jobs are all done is", async () => {
    const out = fresh();
    const own = await openDataset(out, { log: () => {} });
    await own.queue.add([makeJob("mine")]);
    await own.close();
    const queue = await sharedQueue("convert");
    await assert.rejects(openDataset(out, { log: () => {}, shared: { queue, describe: "q1" } }), /has its own queue with 1 unfinished job\(s\) \(1 pending, 0 leased, 0 failed\)/);
    assert.equal(readSharedQueue(out), undefined, "the refused open did not mark it");

    const finished = await openDataset(out, { log: () => {} });
    const lease = (await finished.queue.take("s1"))!;
    await finished.queue.complete(lease.token);
    await finished.close();
    const logs: string[] = [];
    const shard = await openDataset(out, { log: (l) => logs.push(l), shared: { queue, describe: "q1" } });
    await shard.close();
    assert.equal(readSharedQueue(out), "q1");
    // Another queue later (Redis moved): said, and the marker follows.
    const again = await openDataset(out, { log: (l) => logs.push(l), shared: { queue, describe: "q2" } });
    await again.close();
    assert.ok(logs.some((l) => /was a shard of q1; it is now one of q2/.test(l)), logs.join("\n"));
  });
});

describe("the run's seed on a shared queue", () => {
  it("the first value proposed is the run's; later ones get it back", async () => {
    const q1 = await sharedQueue("seed");
    const q2 = await sharedQueue("seed");
    assert.equal(await q1.agree("seed", "42"), "42");
    assert.equal(await q2.agree("seed", "7"), "42");
    assert.equal(await (await sharedQueue("seed-other")).agree("seed", "7"), "7", "per queue name");
  });
});

describe("the run's render settings on a shared queue", () => {
  const clientDir = () => {
    const dir = path.join(base, "client");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "index.html"), "<!doctype html>");
    return dir;
  };
  const start = (name: string, settings: Partial<RunOptions>) =>
    startRun({ out: fresh("render"), clientDir: clientDir(), sharedQueue: queueUrl(name), host: "127.0.0.1", port: 0, jobs: [makeJob("a")], log: () => {}, ...settings });

  it("a server whose defaults would render the run's jobs otherwise (size, format, quality, layers, scene) or fail them otherwise (--max-attempts) is refused, naming each; the same ones join", async () => {
    const first = await start("render", { width: 16, height: 12 });
    try {
      const same = await start("render", { width: 16, height: 12 });
      await same.close();
      for (const [settings, named] of [
        [{ width: 32, height: 12 }, /--width: the run's 16, this server's 32/],
        [{ width: 16, height: 12, format: "jpeg", quality: 80 }, /--format: the run's "png", this server's "jpeg"; --quality: the run's null, this server's 80/],
        [{ width: 16, height: 12, depth: true }, /--layers\/--depth: the run's \["rgb"\], this server's \["rgb","depth"\]/],
        [{ width: 16, height: 12, scene: { type: "scene", children: [] } as unknown as RunOptions["scene"] }, /the run's scene differs from this server's/],
        [{ width: 16, height: 12, maxAttempts: 5 }, /--max-attempts: the run's 3, this server's 5/],
      ] as const) {
        // A server that starts all the same is closed (its run would keep the test's process alive).
        const refused = await start("render", settings).then(async (run) => void (await run.close()), (err: Error) => err);
        assert.match(refused?.message ?? "(it started)", named);
      }
    } finally {
      await first.close();
    }
  });
});

describe("status and retry-failed --queue", () => {
  it("show and mend the whole run's queue", async () => {
    const q = await sharedQueue("status");
    await q.add([makeJob("ok"), makeJob("bad")]);
    const ok = (await q.take("s1"))!;
    await q.complete(ok.token);
    for (let i = 0; i < 2; i++) await q.putBack((await q.take(`s${i}`))!.token, { message: "it broke" });
    const lines: string[] = [];
    await printStatus({ queue: queueUrl("status") }, (l) => lines.push(l));
    assert.match(lines[0]!, /queue status\): 2 jobs — 1 done, 0 pending, 0 leased, 1 failed/);
    assert.ok(lines.some((l) => /^failed bad after 2 attempt\(s\): it broke$/.test(l)), lines.join("\n"));
    assert.equal(await retryFailed({ queue: queueUrl("status") }, () => {}), 1);
    assert.equal(await q.state("bad"), "pending");
    const typo: string[] = [];
    await printStatus({ queue: queueUrl("statsu") }, (l) => typo.push(l));
    assert.match(typo.join("\n"), /0 jobs[^]*no job was ever queued as "statsu" on this Redis: is the queue name right/);
  });
});

describe("manifest.json never records a URL's password", () => {
  it("redis URLs with a user and password, a bare password, or both in a list", () => {
    const recorded = recordableOptions({
      queue: "redis://user:pa@ss@host:6379/0?queue=x",
      bare: "redis://s3cret@host:6379",
      list: ["rediss://:p@h", "plain text with an @ sign"],
      other: "https://example.com/a@b", // over-redacted rather than leaked: a careless password may hold "/"
    });
    assert.deepEqual(recorded, {
      queue: "redis://user:***@host:6379/0?queue=x",
      bare: "redis://***@host:6379",
      list: ["rediss://:***@h", "plain text with an @ sign"],
      other: "https://***@b",
    });
  });
});

// Several farm servers on one Redis queue (--queue redis://…), as users run them: real CLI processes,
// a real redis-server on a free loopback port, real Chromium. One server is SIGKILLed mid-run; the
// other finishes the job set, the dead one's leases included once they run out; `merge` of the two
// shards and `verify` find every (job, frame) exactly once.
//
// Run: node --import tsx --test tests/integration/sharedQueue.test.ts
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { readFrames, runFarmCli, spawnFarmCli, withTempDir } from "./cli.js";
import { HANDLER, orbitJob, writeJobsFile } from "./fixtures/dashboard/jobs.js";
import { delay, exitCode, killGroup, waitForOutput } from "./fixtures/dashboard/farmProcess.js";
import { startRedis, type RedisServer } from "../redisServer.js";
import { buildClient } from "../../harness/buildClient.js";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
  await buildClient(); // once, so the farms below start without building it
});
after(async () => {
  await redis?.stop();
});

/** The number of lines of `<out>/frames.jsonl` (0 while there is none). */
const lines = (out: string) => readFrames(out).length;

describe("two farm servers on one Redis queue", { timeout: 400_000 }, () => {
  it("render one job set; one is SIGKILLed mid-run, the other finishes the rest (the dead one's leases once they run out); merge + verify find every (job, frame) once", { timeout: 380_000 }, async () => {
    await withTempDir("tabfarm-shared-", async (dir) => {
      const queue = `${redis.url}/0?queue=two-servers`;
      // go: every job waits for it (both servers get to hold a lease first); hold: the last four wait for it
      // once leased, so when the other ten are done each server holds one of them — B's dies with it.
      const go = path.join(dir, "go");
      const hold = path.join(dir, "hold");
      const size = { frames: 3, width: 160, height: 120 };
      const jobs = Array.from({ length: 14 }, (_, i) => orbitJob(`job-${String(i).padStart(2, "0")}`, { before: go, ...(i >= 10 ? { after: hold } : {}) }, size));
      const jobsFile = writeJobsFile(dir, jobs);
      const [outA, outB, merged] = ["shard-a", "shard-b", "merged"].map((n) => path.join(dir, n));
      const common = ["--sessions", "1", "--jobs", jobsFile, "--handler", HANDLER, "--queue", queue, "--lease-ttl", "3000", "--seed", "7", "--no-progress"];
      const a = spawnFarmCli([...common, "--out", outA], { detached: true });
      const b = spawnFarmCli([...common, "--out", outB], { detached: true });
      try {
        // Both serve, both queued the same jobs (the second finds them known), each tab holds one lease at the gate.
        await waitForOutput(a.child, a.output, /tabfarm: WebGL renderer of the first tab/, 120_000);
        await waitForOutput(b.child, b.output, /tabfarm: WebGL renderer of the first tab/, 120_000);
        // Both added the job set at about the same time: between them each job was added once, the rest known.
        const added = (output: string) => Number(/queue: (\d+) job\(s\) added/.exec(output)?.[1] ?? NaN);
        assert.equal(added(a.output()) + added(b.output()), 14, `each job added once:\n${a.output()}\n${b.output()}`);
        const leasedBoth = await pollStatus(queue, (s) => /, 2 leased,/.test(s), 60_000);
        assert.match(leasedBoth, /14 jobs — 0 done, 12 pending, 2 leased, 0 failed/);

        // Let them render the ten; then each holds one of the last four. Kill B (and its browser) without warning.
        fs.writeFileSync(go, "");
        await pollStatus(queue, (s) => /14 jobs — 10 done, 2 pending, 2 leased, 0 failed/.test(s), 120_000);
        assert.ok(lines(outB) >= 3, `server B rendered a job before it died:\n${b.output()}`);
        await killGroup(b.child);
        assert.equal(b.child.signalCode, "SIGKILL");
        const ledgerB = new SqliteQueue(path.join(outB, "queue.sqlite"));
        const heldByB = (await ledgerB.counts()).pending;
        await ledgerB.close();
        assert.equal(heldByB, 1, "B's ledger lists the job it held, not done");
        fs.writeFileSync(hold, "");

        // A finishes everything: its share, and B's leased job once its lease runs out.
        assert.equal(await exitCode(a.child, a.output, 240_000), 0, a.output());
        assert.match(a.output(), /jobs: 14 done, 0 failed of 14/);
        const final = await runFarmCli(["status", "--queue", queue], 60_000);
        assert.equal(final.code, 0, final.output);
        assert.match(final.output, /14 jobs — 14 done, 0 pending, 0 leased, 0 failed/);

        // Each shard alone: B's lists only what it finished. Both together: every (job, frame) once.
        const inA = new Set(readFrames(outA).map((r) => r.job));
        assert.ok(inA.size >= 1 && inA.size < 14, `A rendered a share, not all: ${[...inA].join(" ")}`);
        const mergedRun = await runFarmCli(["merge", outA, outB, "--into", merged], 120_000);
        assert.equal(mergedRun.code, 0, mergedRun.output);
        const verified = await runFarmCli(["verify", "--out", merged], 120_000);
        assert.equal(verified.code, 0, verified.output);
        const records = readFrames(merged);
        const pairs = records.map((r) => `${r.job}#${r.frame}`);
        assert.equal(new Set(pairs).size, pairs.length, "no (job, frame) twice");
        assert.deepEqual(new Set(pairs), new Set(jobs.flatMap((j) => j.frames!.map((_, f) => `${j.id}#${f}`))), "every (job, frame)");

        // The dead server's shard can't be resumed as a dataset of its own: it names the queue to pass.
        const alone = await runFarmCli(["--sessions", "1", "--jobs", jobsFile, "--handler", HANDLER, "--out", outB, "--no-progress"], 60_000);
        assert.equal(alone.code, 2, alone.output);
        assert.match(alone.output, /is a shard of a run on the shared queue redis:\/\/127\.0\.0\.1:\d+\/0\?queue=two-servers/);
        // With the queue it resumes (nothing is left to render) and exits 0.
        const resumed = await runFarmCli([...common, "--out", outB], 120_000);
        assert.equal(resumed.code, 0, resumed.output);
        assert.match(resumed.output, /jobs: 14 done, 0 failed of 14/);
      } finally {
        await killGroup(a.child);
        await killGroup(b.child);
      }
    });
  });
});

describe("--queue: careless and hostile values", { timeout: 200_000 }, () => {
  it("a bad URL, an unreachable or evicting Redis, a --seed other than the run's: exit 2 naming it, no password printed, nothing written", { timeout: 190_000 }, async () => {
    await withTempDir("tabfarm-shared-bad-", async (dir) => {
      const out = path.join(dir, "out");
      const farm = (queue: string, ...more: string[]) => runFarmCli(["--sessions", "1", "--demo", "2", "--queue", queue, "--out", out, "--no-progress", ...more], 90_000);
      for (const [queue, pattern] of [
        ["http://127.0.0.1:6379", /--queue "http:\/\/127\.0\.0\.1:6379"/],
        ["redis://user:hunter2@127.0.0.1:notaport", /--queue "redis:\/\/user:\*\*\*@127\.0\.0\.1:notaport"/],
        ["garbage", /--queue "garbage"/],
      ] as const) {
        const { code, output } = await farm(queue);
        assert.equal(code, 2, output);
        assert.match(output, pattern);
        assert.ok(!output.includes("hunter2"), output);
      }
      const status = await runFarmCli(["status", "--queue", "redis://u:hunter2@127.0.0.1:1/0"], 60_000);
      assert.equal(status.code, 2, status.output);
      assert.match(status.output, /cannot (reach|use) Redis at redis:\/\/u:\*\*\*@127\.0\.0\.1:1\/0/);
      assert.ok(!status.output.includes("hunter2"));
      const neither = await runFarmCli(["status"], 30_000);
      assert.equal(neither.code, 2);
      assert.match(neither.output, /give either --out <dir> \(a dataset\) or --queue <url>/);

      const evicting = await startRedis({ maxmemoryPolicy: "allkeys-lru" });
      try {
        const { code, output } = await farm(evicting.url);
        assert.equal(code, 2, output);
        assert.match(output, /maxmemory-policy allkeys-lru; the queue needs noeviction/);
      } finally {
        await evicting.stop();
      }
      assert.ok(!fs.existsSync(out), "a refused queue leaves --out untouched");

      // The run's seed is the first server's: another --seed is refused, the same one (or none) runs.
      const queue = `${redis.url}/0?queue=seeded`;
      const first = await farm(queue, "--seed", "11");
      assert.equal(first.code, 0, first.output);
      const other = await runFarmCli(["--sessions", "1", "--demo", "2", "--queue", queue, "--out", path.join(dir, "second"), "--seed", "12", "--no-progress"], 90_000);
      assert.equal(other.code, 2, other.output);
      assert.match(other.output, /--seed 12: the run on this shared queue draws with seed 11/);
      const same = await runFarmCli(["--sessions", "1", "--demo", "2", "--queue", queue, "--out", path.join(dir, "third"), "--no-progress"], 90_000);
      assert.equal(same.code, 0, same.output);
      assert.match(same.output, /seed: 11/);
      assert.ok(!JSON.stringify(fs.readFileSync(path.join(out, "manifest.json"), "utf8")).includes("hunter2"));
    });
  });
});

/** Polls `status --queue` until its output satisfies `ok`; returns it (rejects with the last one after `ms`). */
async function pollStatus(queue: string, ok: (output: string) => boolean, ms: number): Promise<string> {
  const until = Date.now() + ms;
  let last = "";
  while (Date.now() < until) {
    const status = await runFarmCli(["status", "--queue", queue], 30_000);
    last = status.output;
    if (status.code === 0 && ok(last)) return last;
    await delay(500);
  }
  throw new Error(`status --queue ${queue} never showed what was expected within ${ms} ms; the last:\n${last}`);
}

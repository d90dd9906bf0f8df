// The queue's own storage fails: its SQLite file lives on a real tmpfs that the test fills while the
// dataset (on the ordinary disk) still takes writes, so every queue write (take, extend, complete,
// release, releaseOwner, housekeep) fails with "database or disk is full". Dispatch must pause as it
// does for the dataset, keep every session's loop alive, return the leases it could not return when
// space comes back (uncounted), and finish the run with every frame exactly once.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";
import { DatasetWriter } from "../../server/dataset/DatasetWriter.js";
import { Farm } from "../../server/session/Farm.js";
import { dispatchJobs } from "../../server/dispatch/dispatchJobs.js";
import { renderDeclarativeJob, type RenderDefaults } from "../../server/dispatch/renderDeclarativeJob.js";
import { demoJobs, demoScene } from "../../server/jobs/demoJobs.js";
import { buildClient } from "../../harness/buildClient.js";
import { fakeSession } from "./fakeSession.js";
import { readFrames } from "./cli.js";
import { RunEvents } from "../../server/events/RunEvents.js";
import { canMountTmpfs, fillDisk, mountTmpfs, unmount } from "./fullDisk.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("the queue's file system fills", () => {
  it("dispatch pauses on SQLITE_FULL, every session takes jobs again once space returns, nothing is lost or counted", { timeout: 90_000 }, async (t) => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-queuefull-"));
    const queueDir = path.join(root, "queue");
    fs.mkdirSync(queueDir);
    if (!canMountTmpfs()) {
      fs.rmSync(root, { recursive: true, force: true });
      return t.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)");
    }
    mountTmpfs(queueDir, "4m");
    const logs: string[] = [];
    const log = (line: string) => {
      logs.push(line);
      if (process.env.TABFARM_TEST_VERBOSE === "1") process.stderr.write(`[${(performance.now() / 1000).toFixed(2)}] ${line}\n`);
    };
    const jobs = [...demoJobs(120, 4)]; // 30 jobs
    const queue = new SqliteQueue(path.join(queueDir, "queue.sqlite"), { leaseTtlMs: 3000, maxAttempts: 3 });
    const dataset = new DatasetWriter(path.join(root, "out"));
    const farm = new Farm({ clientDir: await buildClient({ log }), log });
    const sessions: Awaited<ReturnType<typeof fakeSession>>[] = [];
    let frames = 0;
    const done = new Set<string>();
    try {
      await queue.add(jobs);
      await farm.listen();
      const defaults = { width: 160, height: 120, format: "png", scene: demoScene(), inFlight: 2, layers: ["rgb"] } satisfies RenderDefaults;
      const events = new RunEvents();
      events.subscribe((event) => {
        if (event.type !== "job.done") return;
        frames += event.frames;
        done.add(event.job);
      });
      const dispatch = dispatchJobs({
        farm, queue, dataset, leaseTtlMs: 3000, log, writeProbeMs: 500, maxWriteStallMs: 60_000, runSeed: 1,
        run: (session, job) => renderDeclarativeJob(session, job, defaults),
        events,
      });
      dispatch.finished.catch(() => {});
      for (const worker of ["fake-a", "fake-b"]) {
        sessions.push(await fakeSession({ port: farm.port, token: farm.token, worker, answer: "png", delayMs: 30 }));
      }
      while (frames < 12) await sleep(50);

      const filler = path.join(queueDir, "filler");
      fillDisk(filler);
      while (!logs.some((l) => /^queue write failed \(\w+\): /.test(l))) await sleep(50);
      const failure = logs.find((l) => /^queue write failed \(\w+\): /.test(l))!;
      assert.match(failure, /database or disk is full/);
      // Paused: nothing completes (no queue write can) for 2 s, and the process is still up.
      await sleep(500);
      const framesAtPause = frames;
      await sleep(2000);
      assert.equal(frames, framesAtPause, "no job completes while the queue cannot write");
      const linesAtResume = readFrames(dataset.root).length;
      const grabsAtResume = sessions.map((s) => s.grabs());

      fs.rmSync(filler);
      let deadline: NodeJS.Timeout | undefined;
      const resumed = await Promise.race([
        dispatch.finished.then(() => true),
        new Promise<false>((resolve) => (deadline = setTimeout(() => resolve(false), 60_000))),
      ]).finally(() => clearTimeout(deadline));
      assert.ok(resumed, `the run finished after space returned; log:\n${logs.join("\n")}`);
      assert.ok(logs.some((l) => /dispatch resumed$/.test(l)), "dispatch resumed");
      assert.equal(logs.filter((l) => /write failed/.test(l)).length, 1, "the failure is logged once");

      const counts = await queue.counts();
      assert.deepEqual([counts.done, counts.failed, counts.pending, counts.leased], [jobs.length, 0, 0, 0]);
      // Both sessions went back to work after the pause: their loops did not die.
      sessions.forEach((s, i) => assert.ok(s.grabs() > grabsAtResume[i], `session ${i} answered grabs after the resume`));
      // Nothing lost, nothing twice once compacted (as runFarm does at the end of a run).
      await dataset.compact(async (id) => (await queue.state(id)) === "done");
      const ids = readFrames(dataset.root).map((r) => `${r.job}/${r.frame}`);
      assert.equal(new Set(ids).size, ids.length, "no (job, frame) twice");
      assert.equal(ids.length, 120);
      assert.ok(linesAtResume < 120);
      // The pause burned no attempt: every lease it interrupted went back uncounted.
      assert.deepEqual(await queue.failures(), []);
      const db = new Database(path.join(queueDir, "queue.sqlite"), { readonly: true });
      const recounted = db.prepare(`SELECT id, attempts FROM jobs WHERE attempts != 1`).all();
      db.close();
      assert.deepEqual(recounted, [], "every job took exactly one counted attempt");
      await dispatch.stop();
    } finally {
      for (const s of sessions) s.close();
      await farm.close();
      await queue.close();
      unmount(queueDir);
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

// Crash and resume: SIGKILL the farm (server and its browsers) mid-run, start it again with the
// same --out; the dataset ends with every (job, frame) exactly once and every file decodable.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runFarmCli, spawnFarmCli, readFrames, decodePng } from "./cli.js";
import { openDataset } from "../../server/dataset/openDataset.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { startRun } from "../../server/runFarm.js";

/** Starts the CLI in its own process group, and SIGKILLs that group once `ready` says so. */
function startAndKill(args: string[], ready: () => boolean, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const { child, output } = spawnFarmCli(args, { detached: true });
    const started = Date.now();
    const poll = setInterval(() => {
      if (ready() || Date.now() - started > timeoutMs) {
        clearInterval(poll);
        try {
          process.kill(-child.pid!, "SIGKILL"); // the farm and the Chromium it launched: all ours
        } catch {}
      }
    }, 50);
    child.on("exit", (code, signal) => {
      clearInterval(poll);
      if (signal === "SIGKILL") resolve(output());
      else reject(new Error(`farm exited by itself (code ${code}) before it was killed:\n${output()}`));
    });
  });
}

const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean).length : 0);

describe("crash and resume", () => {
  it("finishes after a SIGKILL with every (job, frame) exactly once", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-crash-"));
    try {
      const args = ["--sessions", "2", "--demo", "60", "--frames-per-job", "4", "--width", "160", "--height", "120", "--out", out, "--no-progress"];
      // Kill once some jobs are done but (almost surely) not all: mid-run.
      await startAndKill(args, () => lines(path.join(out, "frames.jsonl")) >= 12);
      const before = lines(path.join(out, "frames.jsonl"));
      assert.ok(before >= 12 && before < 60, `killed mid-run (${before} lines)`);

      const { code, output } = await runFarmCli(args);
      assert.equal(code, 0, output);
      assert.match(output, /resume: \d+ job\(s\) leased by an earlier run returned to the queue|queue: 0 job\(s\) added, 15 already known/);
      const frames = readFrames(out);
      const ids = frames.map((f) => `${f.job}/${f.frame}`);
      assert.equal(new Set(ids).size, ids.length, "no duplicated (job, frame)");
      assert.equal(ids.length, 60);
      for (const f of frames) {
        const png = decodePng(path.join(out, f.file));
        assert.deepEqual([png.width, png.height], [160, 120]);
      }
      // Resuming did not re-render jobs that were done before the crash.
      assert.ok(frames.filter((f) => f.attempt === 1).length >= before - 4);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

describe("resume with a queue that is not the dataset's own", () => {
  // frames.jsonl lines exist only for queued jobs; a queue.sqlite emptied (a zero-byte file), deleted or
  // swapped knows none of them. Resume used to read that as "not done" and drop every line.
  for (const [how, lose] of [
    ["emptied to zero bytes", (file: string) => fs.truncateSync(file, 0)],
    ["deleted", (file: string) => fs.rmSync(file)],
  ] as const) {
    it(`queue.sqlite ${how}: the run is refused naming a job, and frames.jsonl and the images are left as they were`, async () => {
      const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-lostqueue-"));
      try {
        const first = await openDataset(out, { log: () => {} });
        await first.queue.add([{ id: "kept-1" }]);
        const lease = await first.queue.take("s1");
        await first.writer.writeFile("images/kept-1/000000.png", Buffer.from("png"));
        await first.writer.appendRecords([{ job: "kept-1", frame: 0, file: "images/kept-1/000000.png" } as FrameRecord]);
        assert.equal(await first.queue.complete(lease!.token), true);
        await first.close();
        const index = fs.readFileSync(path.join(out, "frames.jsonl"));
        lose(path.join(out, "queue.sqlite"));

        await assert.rejects(
          startRun({ out, clientDir: out, jobs: [{ id: "kept-1" }], log: () => {} }),
          (err: Error) => /frames\.jsonl has lines of job "kept-1", which queue\.sqlite does not know/.test(err.message),
        );
        assert.deepEqual(fs.readFileSync(path.join(out, "frames.jsonl")), index, "frames.jsonl unchanged");
        assert.ok(fs.existsSync(path.join(out, "images/kept-1/000000.png")));
        // The refused start let go of the dataset: it can be opened again.
        await (await openDataset(out, { log: () => {} })).close();
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    });
  }
});

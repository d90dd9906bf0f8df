// Edges of the newest export and template code (third hostile review of issue 14): an export's claim on
// its targets (exportClaim.ts) where a pid is reused or the targets' lock files collide, a dataset
// compacted between verify and the export's passes, and a template start refused after some of its
// batches were committed. No browser: runs use the fake session (./fakeRun.ts).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { JobSpec } from "../../protocol/job.js";
import { runExport } from "../../harness/exportCommand.js";
import { claimTarget, cocoFileLock, shardFolderLock } from "../../server/export/exportClaim.js";
import { ExportRefused } from "../../server/export/exportSource.js";
import { DatasetLock, DatasetLockedError } from "../../server/dataset/datasetLock.js";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";
import { frameSeed } from "../../server/dataset/seeds.js";
import { BOX_COLOUR_TEMPLATE as TEMPLATE, BOX_SCENE as SCENE, runToEnd, templateFrames, upTo } from "./fakeRun.js";
import { runFarmCli } from "../integration/cli.js";

let base: string;
before(() => (base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-export-template-edges-"))));
after(() => fs.rmSync(base, { recursive: true, force: true }));
let count = 0;
const fresh = (name: string) => path.join(base, `${name}-${++count}`);

const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (err: unknown) => err as Error);

describe("an export's claim when a pid is reused", () => {
  it("a lock naming this very process, but none of its claims (a container restarted: the export has the killed one's pid), is taken over", () => {
    const dest = fresh("dest");
    fs.mkdirSync(dest);
    // What an export killed outright in an earlier container left: the same host name, the same (small) pid.
    const left = { pid: process.pid, host: os.hostname(), started: "2001-01-01T00:00:00.000Z", claim: "0123456789abcdef" };
    fs.writeFileSync(shardFolderLock(dest), JSON.stringify(left) + "\n");
    let claim;
    try {
      claim = claimTarget(shardFolderLock(dest), "--webdataset", dest, "folder");
    } catch (err) {
      assert.fail(`refused as if another export ran, though this process holds no claim on ${dest}: ${(err as Error).message}`);
    }
    claim.release();
    assert.ok(!fs.existsSync(shardFolderLock(dest)));
  });
});

describe("lock files that are not a lock's file", () => {
  it("a FIFO, a folder, a 1 MiB file, a dangling link at DEST/.tabfarm-export.lock: refused at once naming it, and left as they are", () => {
    const makers: [string, (lock: string) => void][] = [
      ["FIFO", (lock) => execFileSync("mkfifo", [lock])],
      ["folder", (lock) => fs.mkdirSync(lock)],
      ["huge", (lock) => fs.writeFileSync(lock, Buffer.alloc(1 << 20, 0x20))],
      ["dangling link", (lock) => fs.symlinkSync(path.join(base, "nowhere"), lock)],
    ];
    for (const [what, make] of makers) {
      const dest = fresh("dest");
      fs.mkdirSync(dest);
      const lock = shardFolderLock(dest);
      make(lock);
      const before = fs.lstatSync(lock);
      assert.throws(() => claimTarget(lock, "--webdataset", dest, "folder"), (err: Error) => err instanceof ExportRefused && err.message.includes(lock), what);
      const after = fs.lstatSync(lock);
      assert.deepEqual([after.ino, after.mode, after.size], [before.ino, before.mode, before.size], `${what}: left as it was`);
    }
  });
});

describe("lock files of two targets of one export that collide", () => {
  it("--webdataset FILE.lock and --coco FILE: refused up front naming the collision, not as 'another export may be starting'; nothing left", async () => {
    const out = fresh("out");
    await runToEnd(base, { out, seed: 1, template: { spec: TEMPLATE, frames: 2, framesPerJob: 2 } });
    const coco = path.join(fresh("targets"), "coco.json");
    fs.mkdirSync(path.dirname(coco));
    const err = await failure(runExport({ out, webdataset: cocoFileLock(coco), coco }, () => undefined, () => undefined));
    assert.ok(err instanceof ExportRefused, `refused: ${err?.stack}`);
    assert.doesNotMatch(err.message, /another export/, `no other export runs; the message sends the user looking for one: ${err.message}`);
    assert.deepEqual(fs.readdirSync(path.dirname(coco)), [], "nothing is left");
  });
});

describe("a dataset compacted between verify and the export's passes", () => {
  /**
   * Runs runExport, doing `meanwhile` to the dataset right after verify (when it notes that verify passed).
   * Export holds the dataset's lock, so no farm can do this: it stands for another program changing the files.
   */
  async function exportWhile(out: string, meanwhile: () => void, targets: { webdataset?: string; coco?: string }) {
    return await runExport({ out, ...targets }, () => undefined, (line) => {
      if (/verify passed/.test(line)) meanwhile();
    });
  }

  it("frames.jsonl rewritten (a farm's compaction: a new file, the same lines): refused naming frames.jsonl; no shard, no COCO file, no lock, no folder made", async () => {
    const out = fresh("out");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 3, framesPerJob: 1 } });
    const index = path.join(out, "frames.jsonl");
    for (const target of ["webdataset", "coco"] as const) {
      const where = fresh("targets");
      const targets = target === "webdataset" ? { webdataset: path.join(where, "wds") } : { coco: path.join(where, "coco.json") };
      const err = await failure(exportWhile(out, () => {
        const text = fs.readFileSync(index);
        fs.writeFileSync(`${index}.new`, text);
        fs.renameSync(`${index}.new`, index);
      }, targets));
      assert.match(String(err?.message), /frames\.jsonl: was replaced after it was verified/, `${target}: ${err?.stack}`);
      assert.ok(!fs.existsSync(where), `${target}: the folders it made are gone: ${fs.existsSync(where) && fs.readdirSync(where, { recursive: true })}`);
    }
  });

  it("a farm caught between appending a job's lines and marking it done (its lease not yet completed): export is refused up front (the farm holds the dataset's lock), nothing written", async () => {
    const out = fresh("out");
    await runToEnd(base, { out, seed: 2, jobs: [{ id: "a", scene: SCENE, frames: [{}] }, { id: "b", scene: SCENE, frames: [{}] }] as JobSpec[] });
    // What dispatchJobs does for job c: appendLines, then queue.complete. Verify reads in between.
    const queue = new SqliteQueue(path.join(out, "queue.sqlite"));
    try {
      await queue.add([{ id: "c", scene: SCENE, frames: [{}] } as JobSpec]);
      assert.equal((await queue.take("farm"))?.job.id, "c");
    } finally {
      await queue.close();
    }
    const index = path.join(out, "frames.jsonl");
    const lineOfB = fs.readFileSync(index, "utf8").split("\n").find((l) => JSON.parse(l || "{}").job === "b")!;
    const recordOfB = JSON.parse(lineOfB);
    fs.cpSync(path.join(out, "images", "b"), path.join(out, "images", "c"), { recursive: true });
    const lineOfC = lineOfB.replaceAll('"b"', '"c"').replaceAll("images/b/", "images/c/").replace(`"seed":${recordOfB.seed}`, `"seed":${frameSeed(2, "c", 0)}`);
    fs.appendFileSync(index, lineOfC + "\n");
    const farm = DatasetLock.acquire(fs.realpathSync(out), () => undefined); // as openDataset takes it for a farm
    const printed: string[] = [];
    const dest = fresh("wds");
    try {
      const err = await failure(runExport({ out, webdataset: dest }, (line) => printed.push(line), (line) => printed.push(line)));
      assert.ok(err instanceof DatasetLockedError, `not refused as the farm's dataset: ${err?.stack ?? printed.join(" | ")}`);
    } finally {
      farm.release();
    }
    assert.deepEqual(printed, [], "refused before verify");
    assert.ok(!fs.existsSync(dest), "nothing written");
  });

  it("frames.jsonl replaced twice (a farm run's start and end compactions) and its inode number reused: still refused, not read as the verified file", async () => {
    const out = fresh("out");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 3, framesPerJob: 1 } });
    const index = path.join(out, "frames.jsonl");
    const verified = fs.readFileSync(index, "utf8").split("\n").filter(Boolean);
    // Other lines at the same numbers: the first one gone, the last one twice.
    const other = [...verified.slice(1), verified.at(-1)!.replace(/"frame":0/, '"frame":9')].join("\n") + "\n";
    let reused = false;
    const dest = fresh("wds");
    const result = await exportWhile(out, () => {
      const inode = fs.statSync(index).ino;
      // ext4 hands freed inode numbers to new files of the folder, lower ones first: empty files beside it
      // take those, until a replacement gets the first frames.jsonl's number back.
      for (let i = 0; i < 2000 && !reused; i++) {
        fs.writeFileSync(`${index}.aside-${i}`, "");
        fs.writeFileSync(`${index}.new`, other);
        fs.renameSync(`${index}.new`, index);
        reused = fs.statSync(index).ino === inode;
      }
    }, { webdataset: dest }).catch((err: unknown) => err as Error);
    // No farm can replace it during an export (the dataset's lock): another program did. The export holds the
    // verified file open, so its inode number is not free to be reused, and the replacement is told apart.
    assert.ok(!reused, "the verified frames.jsonl's inode number was given to a replacement");
    assert.ok(result instanceof Error && /was replaced/.test(result.message), `exported a file verify never read (exit ${result}): ${fs.existsSync(dest) && fs.readdirSync(dest)}`);
  });

  it("lines appended meanwhile (a farm rendering on: the same file): the export goes on with the verified lines, exit 0", async () => {
    const out = fresh("out");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 3, framesPerJob: 1 } });
    const index = path.join(out, "frames.jsonl");
    const first = fs.readFileSync(index, "utf8").split("\n")[0]!;
    const dest = fresh("wds");
    const code = await exportWhile(out, () => fs.appendFileSync(index, first.replace(/"frame":0/, '"frame":5') + "\n"), { webdataset: dest });
    assert.equal(code, 0);
    assert.ok(!fs.existsSync(shardFolderLock(dest)), "the lock is released");
  });
});

describe("a template start refused by a job of a later batch (queued 5,000 at a time)", () => {
  it("a jobs-file job named frame-00005001, then the template --frames 5002 in jobs of 1: refused, and none of the template's jobs stay queued", async () => {
    const out = fresh("late-conflict");
    await runToEnd(base, { out, seed: 5, template: { spec: TEMPLATE, frames: 2, framesPerJob: 1 } });
    await runToEnd(base, { out, jobs: [{ id: "frame-00005001", scene: SCENE, frames: [{}] } as JobSpec] });
    const err = await failure(runToEnd(base, { out, template: { spec: TEMPLATE, frames: 5002 } }));
    assert.match(String(err?.message), /frame-00005001/, "refused naming the job");
    const queue = new SqliteQueue(path.join(out, "queue.sqlite"));
    let counts;
    try {
      counts = await queue.counts();
    } finally {
      await queue.close();
    }
    assert.equal(counts.pending, 0, `the refused start left ${counts.pending} template job(s) queued (its first batches): the next run of any kind renders them`);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8"));
    assert.deepEqual(manifest.template.frames, [2], "the refused start's --frames is not recorded as a cut");
    // (The jobs file's frame-00005001 is a line too: it was rendered before, as that file's job.)
    assert.deepEqual(templateFrames(out), [...upTo(2), 5001]);
  });
});

describe("--frames-per-job without a commander default", () => {
  it("given with --jobs (which it does not cut) is refused naming it, as --frames without --template is, not silently ignored", async () => {
    const dir = fresh("cli");
    fs.mkdirSync(dir);
    const jobs = path.join(dir, "jobs.jsonl");
    fs.writeFileSync(jobs, JSON.stringify({ id: "a", scene: SCENE, frames: [{}] }) + "\n");
    // --out is a file: a run that got past the flags stops there, before any browser starts.
    const notAFolder = path.join(dir, "not-a-folder");
    fs.writeFileSync(notAFolder, "");
    const { code, output } = await runFarmCli(["--jobs", jobs, "--frames-per-job", "3", "--out", notAFolder], 60_000);
    assert.equal(code, 2);
    assert.match(output, /--frames-per-job/, `the flag that does nothing here is not named: ${output}`);
  });
});

// `npm run farm -- merge SHARD... --into DIR` as users run it, on shards that real farms (the CLI, real Chromium)
// rendered from overlapping parts of one job set: A (j0–j3), B (j2–j5) and C (j4–j7, whose --classes gives
// 'ball' and 'crate' the other ids), all with --seed 7, and D (j6 alone) with --seed 8. Jobs have
// 2 frames of 160×120 with rgb, mask, class and boxes; j1 randomizes a position. What merge wrote is checked
// by `verify`, by `export`, by reading its lines and by comparing its files with the shards' files.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import sharp from "sharp";
import { REPO, readFrames, runFarmCli, spawnFarmCli } from "./cli.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { recordFiles } from "../../server/dataset/readDataset.js";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";
import { frameSeed } from "../../server/dataset/seeds.js";
import { STAGING_PREFIX } from "../../server/dataset/mergeShards.js";

const world = (children: object[]) => ({ tag: "Group", key: "world", children: [{ tag: "AmbientLight", key: "amb", intensity: 1 }, { tag: "DirectionalLight", key: "sun", position: [2, 3, 4] }, ...children] });
const labelled = [
  { tag: "Box", key: "crate", label: "crate", position: [-1, 0, 0] },
  { tag: "Sphere", key: "ball", label: "ball", position: [1, 0, 0] },
];
const camera = (position: number[]) => ({ camera: { position, lookAt: [0, 0, 0] } });
const JOBS = Array.from({ length: 8 }, (_, i) => ({
  id: `j${i}`,
  scene: world(labelled),
  frames: [camera([0, 0, 5]), camera([1, i * 0.2, 5])],
  ...(i === 1 ? { randomize: [{ key: "crate", prop: "position", uniform: [[-1.5, 0, 0], [-0.5, 0.5, 0]] }] } : {}),
}));
const ids = (...n: number[]) => n.map((i) => `j${i}`);

let base: string;
const shard: Record<"A" | "B" | "C" | "D", string> = { A: "", B: "", C: "", D: "" };
let count = 0;
const fresh = (name: string) => path.join(base, `${name}-${++count}`);

async function renderShard(name: keyof typeof shard, jobs: string[], classes: string, seed: number): Promise<void> {
  const jobsFile = path.join(base, `${name}.jsonl`);
  fs.writeFileSync(jobsFile, JOBS.filter((j) => jobs.includes(j.id)).map((j) => JSON.stringify(j) + "\n").join(""));
  shard[name] = path.join(base, name);
  const { code, output } = await runFarmCli([
    "--sessions", "1", "--jobs", jobsFile, "--out", shard[name], "--width", "160", "--height", "120", "--no-progress",
    "--layers", "rgb,mask,class,boxes", "--classes", classes, "--seed", String(seed),
  ]);
  assert.equal(code, 0, output);
}

before(async () => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-merge-")));
  await renderShard("A", ids(0, 1, 2, 3), "crate,ball", 7);
  await renderShard("B", ids(2, 3, 4, 5), "crate,ball", 7);
  await renderShard("C", ids(4, 5, 6, 7), "ball,crate", 7);
  await renderShard("D", ids(6), "crate,ball", 8);
});
after(() => fs.rmSync(base, { recursive: true, force: true }));

const merge = (...args: string[]) => runFarmCli(["merge", ...args], 180_000);
async function verifyPasses(out: string): Promise<void> {
  const { code, output } = await runFarmCli(["verify", "--out", out], 120_000);
  assert.equal(code, 0, output);
  assert.match(output, /no problems/);
}
const pairsOf = (out: string) => readFrames(out).map((r) => `${r.job}/${r.frame}`);
const recordOf = (out: string, job: string, frame: number) => readFrames(out).find((r) => r.job === job && r.frame === frame)!;
const classesOf = (out: string) => JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")).classes as { id: number; label: string }[];
async function pixels16(file: string): Promise<Uint16Array> {
  const { data } = await sharp(file).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
  return new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
}
/** A refused merge wrote nothing: no DIR, and no staging folder beside it. */
function assertNothingWritten(into: string): void {
  assert.ok(!fs.existsSync(into) || fs.readdirSync(into).length === 0, `${into} holds nothing`);
  assert.deepEqual(fs.readdirSync(path.dirname(into)).filter((n) => n.startsWith(STAGING_PREFIX)), [], "no staging folder left");
}
async function refused(args: string[], pattern: RegExp, into?: string): Promise<string> {
  const { code, output } = await merge(...args);
  assert.equal(code, 2, output);
  assert.match(output, pattern);
  if (into) assertNothingWritten(into);
  return output;
}
const copyShard = (from: string, name: string) => {
  const to = fresh(name);
  fs.cpSync(from, to, { recursive: true });
  return to;
};

describe("merge of shards that overlap", () => {
  it("A + B: every (job, frame) once, each job's files from the first shard that has it; verify passes, duplicates counted, export reads it", async () => {
    const into = fresh("ab");
    const { code, output } = await merge(shard.A, shard.B, "--into", into);
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`shard ${shard.A}: 4 job\\(s\\) done; took 4 job\\(s\\), 8 frame\\(s\\); 0 duplicate`));
    assert.match(output, new RegExp(`shard ${shard.B}: 4 job\\(s\\) done; took 2 job\\(s\\), 4 frame\\(s\\); 4 duplicate frame\\(s\\) dropped`));
    assert.match(output, /2 job\(s\) done in more than one shard \(4 \(job, frame\) pair\(s\) twice or more\): j2 \(taken from .*\/A; also in .*\/B\); j3/);
    assert.match(output, /: 6 job\(s\), 12 frame\(s\) from 2 shard\(s\) \(copied\), 2 class\(es\), seed 7/);
    await verifyPasses(into);

    const pairs = pairsOf(into);
    assert.deepEqual([...pairs].sort(), ids(0, 1, 2, 3, 4, 5).flatMap((j) => [`${j}/0`, `${j}/1`]).sort(), "every (job, frame) exactly once");
    for (const record of readFrames(into)) {
      const from = ["j4", "j5"].includes(record.job) ? shard.B : shard.A;
      assert.deepEqual(record, recordOf(from, record.job, record.frame), `${record.job}/${record.frame}: its line as the shard wrote it`);
      for (const { path: file } of recordFiles(record)) {
        assert.ok(fs.readFileSync(path.join(into, file)).equals(fs.readFileSync(path.join(from, file))), `${file}: the bytes of ${from}'s file`);
        assert.notEqual(fs.statSync(path.join(into, file)).ino, fs.statSync(path.join(from, file)).ino, `${file}: copied, not linked`);
      }
    }
    const db = new Database(path.join(into, "queue.sqlite"), { readonly: true });
    const rows = db.prepare("SELECT id, state, spec FROM jobs ORDER BY seq").all() as { id: string; state: string; spec: string }[];
    db.close();
    assert.deepEqual(rows.map((r) => `${r.id}:${r.state}`), ids(0, 1, 2, 3, 4, 5).map((j) => `${j}:done`));
    assert.deepEqual(JSON.parse(rows[1]!.spec), JOBS[1], "the spec as the shard queued it");

    const manifest = JSON.parse(fs.readFileSync(path.join(into, "manifest.json"), "utf8"));
    assert.equal(manifest.seed, 7);
    assert.deepEqual(Object.keys(manifest.layers), ["rgb", "mask", "class", "boxes"]);
    assert.deepEqual(manifest.runs.slice(0, -1).map((r: { shard: string }) => r.shard), [shard.A, shard.B], "every shard's runs, each with its shard");
    assert.deepEqual(manifest.runs.at(-1).options, { command: "merge", shards: [shard.A, shard.B], link: false });
    assert.deepEqual(manifest.runs.at(-1).counts, { jobs_total: 6, jobs_done: 6, jobs_failed: 0, frames: 12 });

    const coco = path.join(base, `coco-${++count}.json`);
    const exported = await runFarmCli(["export", "--out", into, "--coco", coco], 120_000);
    assert.equal(exported.code, 0, exported.output);
    assert.equal(JSON.parse(fs.readFileSync(coco, "utf8")).images.length, 12);

    // The merged dataset is a dataset a farm resumes: the same jobs again render nothing new.
    const resumed = await runFarmCli(["--sessions", "1", "--jobs", path.join(base, "A.jsonl"), "--out", into, "--width", "160", "--height", "120", "--no-progress", "--layers", "rgb,mask,class,boxes"]);
    assert.equal(resumed.code, 0, resumed.output);
    assert.equal(readFrames(into).length, 12, resumed.output);
  });

  it("A + C, whose class tables disagree: C's class ids move to A's table, in its lines and (re-encoded, lossless) its class images; masks unchanged", async () => {
    assert.deepEqual(classesOf(shard.A), [{ id: 1, label: "crate" }, { id: 2, label: "ball" }]);
    assert.deepEqual(classesOf(shard.C), [{ id: 1, label: "ball" }, { id: 2, label: "crate" }]);
    const into = fresh("ac");
    const { code, output } = await merge(shard.A, shard.C, "--into", into);
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`shard ${shard.C}: class ids moved to the merged table: 'ball' 1 → 2, 'crate' 2 → 1`));
    await verifyPasses(into); // the class image agrees with the mask and instances pixel by pixel, one table in the whole dataset
    assert.deepEqual(classesOf(into), classesOf(shard.A));

    const table = new Map(classesOf(into).map((c) => [c.label, c.id]));
    for (const job of ids(6, 7)) {
      for (const frame of [0, 1]) {
        const before = recordOf(shard.C, job, frame);
        const after = recordOf(into, job, frame);
        assert.deepEqual(after.instances!.map((i) => i.label), before.instances!.map((i) => i.label));
        assert.deepEqual(after.instances!.map((i) => i.class), before.instances!.map((i) => table.get(i.label!)), `${job}/${frame}: classes by label in the merged table`);
        assert.ok(after.instances!.some((i, n) => i.class !== before.instances![n]!.class), "some class moved");
        assert.deepEqual({ ...after, instances: undefined }, { ...before, instances: undefined }, "nothing else in the line changes");
        const moveBack = new Map(before.instances!.map((i, n) => [after.instances![n]!.class, i.class]));
        const [was, is] = [await pixels16(path.join(shard.C, before.layers.class!)), await pixels16(path.join(into, after.layers.class!))];
        assert.equal(is.length, 160 * 120);
        assert.ok(is.every((v, p) => (v === 0 ? was[p] === 0 : moveBack.get(v) === was[p])), `${job}/${frame}: every class pixel moved, none else`);
        assert.ok(fs.readFileSync(path.join(into, after.layers.mask!)).equals(fs.readFileSync(path.join(shard.C, before.layers.mask!))), "the mask's bytes unchanged");
      }
    }
    for (const job of ids(0, 1)) assert.deepEqual(recordOf(into, job, 0), recordOf(shard.A, job, 0), "the first shard's lines are as written");
  });

  it("--link: files are hard links to the shards' (same inode), except class images that had to be rewritten", async () => {
    const into = fresh("linked");
    const { code, output } = await merge(shard.A, shard.C, "--into", into, "--link");
    assert.equal(code, 0, output);
    assert.match(output, /\(hard-linked\)/);
    await verifyPasses(into);
    const ino = (file: string) => fs.statSync(file).ino;
    const a = recordOf(into, "j0", 0);
    for (const { path: file } of recordFiles(a)) assert.equal(ino(path.join(into, file)), ino(path.join(shard.A, file)), file);
    const c = recordOf(into, "j6", 0);
    assert.equal(ino(path.join(into, c.layers.rgb!)), ino(path.join(shard.C, c.layers.rgb!)));
    assert.notEqual(ino(path.join(into, c.layers.class!)), ino(path.join(shard.C, c.layers.class!)), "a moved class image is a new file");
  });

  it("--dry-run reports jobs done in several shards and jobs done in none, and writes nothing; the merge leaves the latter out", async () => {
    // B2: B with a job queued but never rendered (a farm stopped before it).
    const b2 = copyShard(shard.B, "b-pending");
    const queue = new SqliteQueue(path.join(b2, "queue.sqlite"));
    await queue.add([{ ...JOBS[6]!, id: "j9" } as never]);
    await queue.close();
    const into = fresh("dry");
    const { code, output } = await merge(shard.A, b2, shard.C, "--into", into, "--dry-run");
    assert.equal(code, 0, output);
    assert.match(output, /4 job\(s\) done in more than one shard \(8 \(job, frame\) pair\(s\) twice or more\)/);
    assert.match(output, /1 job\(s\) done in no shard, left out: j9/);
    assert.match(output, /would move to the merged table: 'ball' 1 → 2, 'crate' 2 → 1/);
    assert.match(output, /dry run: 8 job\(s\), 16 frame\(s\) from 3 shard\(s\), 2 class\(es\), seed 7; nothing written/);
    assert.ok(!fs.existsSync(into), "nothing written");

    const merged = await merge(shard.A, b2, shard.C, "--into", into);
    assert.equal(merged.code, 0, merged.output);
    assert.match(merged.output, /left out: j9/);
    await verifyPasses(into);
    assert.equal(new Set(pairsOf(into)).size, 16);
    assert.ok(!pairsOf(into).some((p) => p.startsWith("j9/")));
    const db = new Database(path.join(into, "queue.sqlite"), { readonly: true });
    assert.equal(db.prepare("SELECT count(*) FROM jobs WHERE id = 'j9'").pluck().get(), 0, "a job done nowhere is not queued");
    db.close();
  });
});

describe("a shard of a server that died mid-job", () => {
  it("lines of a job its queue does not mark done (one of their files gone) and a torn last line are let pass and not taken; the job is left out", async () => {
    // B after a crash between appending j5's lines and marking j5 done, and a write cut off at the end.
    const crashed = copyShard(shard.B, "crashed");
    const db = new Database(path.join(crashed, "queue.sqlite"));
    db.prepare("UPDATE jobs SET state = 'pending' WHERE id = 'j5'").run();
    db.close();
    fs.rmSync(path.join(crashed, recordOf(crashed, "j5", 1).layers.mask!));
    fs.appendFileSync(path.join(crashed, "frames.jsonl"), '{"job":"j5","fra');
    const check = await runFarmCli(["verify", "--out", crashed]);
    assert.equal(check.code, 1, "verify reports the crash's traces");
    assert.match(check.output, /job j5 is pending in queue\.sqlite, not done/);
    assert.match(check.output, /torn last line/);

    const into = fresh("after-crash");
    const { code, output } = await merge(shard.A, crashed, "--into", into);
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`shard ${crashed}: 3 job\\(s\\) done; took 1 job\\(s\\), 2 frame\\(s\\); 4 duplicate frame\\(s\\) dropped .*; 2 frame\\(s\\) of jobs it did not finish dropped`));
    assert.match(output, /1 job\(s\) done in no shard, left out: j5/);
    assert.match(output, /4 problem\(s\) of lines it never finished .* let pass/);
    await verifyPasses(into);
    assert.deepEqual([...pairsOf(into)].sort(), ids(0, 1, 2, 3, 4).flatMap((j) => [`${j}/0`, `${j}/1`]).sort());
    assert.ok(!fs.existsSync(path.join(into, "images", "j5")), "no file of the unfinished job");
  });
});

describe("seeds", () => {
  it("a randomized job taken (j1, from A) with shards of different seeds refuses, naming the shards and their seeds", async () => {
    const into = fresh("seeds");
    await refused([shard.A, shard.D, "--into", into], new RegExp(`different seeds: ${shard.A} \\(seed 7\\), ${shard.D} \\(seed 8\\), and jobs taken from ${shard.A} are randomized`), into);
  });

  it("different seeds without randomized jobs merge: no seed recorded (with a note), and verify passes", async () => {
    const into = fresh("seedless");
    const { code, output } = await merge(shard.B, shard.D, "--into", into);
    assert.equal(code, 0, output);
    assert.match(output, /note: the shards have different seeds .*none of the jobs taken is randomized/);
    assert.equal(JSON.parse(fs.readFileSync(path.join(into, "manifest.json"), "utf8")).seed, undefined);
    await verifyPasses(into);
    assert.equal(recordOf(into, "j6", 0).seed, frameSeed(8, "j6", 0));
    assert.equal(recordOf(into, "j2", 0).seed, frameSeed(7, "j2", 0));
  });
});

describe("careless and hostile input: exit 2 naming it, nothing written", () => {
  it("DIR not empty, DIR a file, DIR inside a shard or holding one, DIR the shard", async () => {
    const full = fresh("full");
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, "notes.txt"), "mine");
    await refused([shard.A, "--into", full], /--into .*full-\d+: is not empty \(it holds notes\.txt\)/);
    assert.deepEqual(fs.readdirSync(full), ["notes.txt"]);
    await refused([shard.A, "--into", path.join(full, "notes.txt")], /--into .*notes\.txt: is a file/);
    await refused([shard.A, "--into", path.join(shard.A, "merged")], new RegExp(`--into .*: is inside the shard ${shard.A}`));
    assert.ok(!fs.existsSync(path.join(shard.A, "merged")));
    const holder = fresh("holder");
    const inner = copyShard(shard.B, "x");
    fs.mkdirSync(holder);
    fs.renameSync(inner, path.join(holder, "b"));
    await refused([shard.A, path.join(holder, "b"), "--into", holder], /--into .*holder-\d+: is not empty/);
    await refused([shard.A, "--into", shard.A], /--into .*: is not empty/);
    await refused([shard.A, "--dry-run", "--into", path.join(shard.A, "x")], /is inside the shard/);
    // An empty DIR the merge runs in: the merged folder would replace it under the user's shell.
    const here = fresh("here");
    fs.mkdirSync(here);
    const inHere = spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), path.join(REPO, "harness/cli.ts"), "merge", shard.A, "--into", "."], { cwd: here, encoding: "utf8", timeout: 120_000 });
    assert.equal(inHere.status, 2, inHere.stderr);
    assert.match(inHere.stderr, /--into \.: is the folder this merge runs in/);
    assertNothingWritten(here);
  });

  it("the same shard twice, also through a link or another spelling", async () => {
    const into = fresh("twice");
    await refused([shard.A, shard.A, "--into", into], new RegExp(`shard ${shard.A}: is given twice; give each shard once`), into);
    const link = fresh("link-to-a");
    fs.symlinkSync(shard.A, link);
    await refused([shard.A, link, "--into", into], new RegExp(`shard ${link}: is given twice \\(${shard.A} and ${link} are both ${shard.A}\\)`), into);
    await refused([shard.A, `${shard.A}/../A/`, "--into", into], /is given twice/, into);
  });

  it("a folder that is not a dataset: missing, a file, empty, someone else's files, a link to nowhere", async () => {
    const into = fresh("notds");
    const empty = fresh("empty");
    fs.mkdirSync(empty);
    const foreign = fresh("foreign");
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, "frames.jsonl"), "{}\n");
    const dangling = fresh("dangling");
    fs.symlinkSync(path.join(base, "nowhere"), dangling);
    const file = path.join(base, "A.jsonl");
    await refused([shard.A, path.join(base, "missing"), "--into", into], /shard .*missing: no such folder/, into);
    await refused([shard.A, file, "--into", into], /shard .*A\.jsonl: is a file, not a dataset folder/, into);
    await refused([shard.A, empty, "--into", into], new RegExp(`shard ${empty}: the folder is empty, not a tabfarm dataset`), into);
    await refused([shard.A, foreign, "--into", into], new RegExp(`shard ${foreign}: the folder is not empty and is not a tabfarm dataset`), into);
    assert.ok(!fs.existsSync(path.join(empty, "tabfarm.lock")) && !fs.existsSync(path.join(foreign, "tabfarm.lock")), "no lock file made in a folder that is not a dataset");
    await refused([shard.A, dangling, "--into", into], /shard .*dangling-\d+: a symbolic link to .*nowhere, which does not exist/, into);
    await refused([shard.A, "--into", ""], /--into "": an empty path names no folder/);
    await refused([shard.A], /give --into DIR/);
  });

  it("a shard locked by a running tabfarm (another process holds its lock): refused naming the pid", async () => {
    const locked = copyShard(shard.B, "locked");
    const script = path.join(base, "hold-lock.ts");
    fs.writeFileSync(script, `import { DatasetLock } from ${JSON.stringify(path.join(REPO, "server/dataset/datasetLock.ts"))};\nDatasetLock.acquire(process.argv[2]!, () => {});\nconsole.log("locked");\nsetInterval(() => {}, 1000);\n`);
    const { spawn } = await import("node:child_process");
    const holder = spawn(process.execPath, ["--import", "tsx", script, locked], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.on("data", (d) => String(d).includes("locked") && resolve());
        holder.on("exit", (code) => reject(new Error(`the lock holder exited (${code})`)));
      });
      const into = fresh("locked-into");
      await refused([shard.A, locked, "--into", into], new RegExp(`shard ${locked}: the dataset is in use by another tabfarm \\(pid ${holder.pid} on host`), into);
      assert.ok(fs.existsSync(path.join(shard.A, "tabfarm.lock")) && !fs.existsSync(path.join(shard.A, "tabfarm.lock.json")), "A's lock, taken first, was released");
    } finally {
      holder.kill("SIGTERM");
    }
  });

  it("a broken shard (a file missing, a line pointing outside the shard) is refused listing verify's problems", async () => {
    const broken = copyShard(shard.A, "broken");
    const r = recordOf(broken, "j2", 1);
    fs.rmSync(path.join(broken, r.layers.mask!));
    const into = fresh("broken-into");
    const output = await refused([broken, shard.B, "--into", into], new RegExp(`shard ${broken}: \\d+ problem\\(s\\):\\n  frames.jsonl:\\d+: images/j2/000001.mask.png: is missing`), into);
    assert.match(output, /merge reads only shards that `verify` passes, but for lines of jobs they did not finish/);

    const outside = copyShard(shard.A, "outside");
    const index = path.join(outside, "frames.jsonl");
    const escape = "../A/images/j0/000000.png";
    const lines = fs.readFileSync(index, "utf8").replace(/"images\/j0\/000000\.png"/g, JSON.stringify(escape));
    fs.writeFileSync(index, lines);
    // The line j0's frame 0 is on: jobs finish in whatever order the shard's tabs took them.
    const line = lines.split("\n").findIndex((l) => l.includes(escape)) + 1;
    assert.ok(line > 0);
    await refused([outside, "--into", into], new RegExp(`frames\\.jsonl:${line}: \\.\\./A/images/j0/000000\\.png: escapes the dataset folder`), into);
  });

  it("a line naming a file of another job's folder (verify can't tell: the file is there and decodes) is refused, naming shard, job and file", async () => {
    const odd = copyShard(shard.A, "odd");
    const index = path.join(odd, "frames.jsonl");
    fs.writeFileSync(index, fs.readFileSync(index, "utf8").replace(/"images\/j1\/000000\.png"/g, '"images/j0/000000.png"'));
    await verifyPasses(odd);
    const into = fresh("odd-into");
    await refused([odd, "--into", into], new RegExp(`shard ${odd}: job j1 frame 0: its rgb file images/j0/000000.png is not in its job's folder images/j1/`), into);
  });

  it("the same job id done in two shards with different specs is refused, naming the id and both shards", async () => {
    const edited = copyShard(shard.B, "edited");
    const db = new Database(path.join(edited, "queue.sqlite"));
    db.prepare("UPDATE jobs SET spec = ? WHERE id = 'j2'").run(JSON.stringify({ ...JOBS[2], frames: [camera([0, 0, 6]), camera([1, 0.4, 5])] }));
    db.close();
    const into = fresh("conflict");
    await refused([shard.A, edited, "--into", into], new RegExp(`job j2: is done in shard ${shard.A} and in shard ${edited} with different specs`), into);
  });
});

describe("a merge stopped by a signal", () => {
  // A shard of 300 jobs (A's j0 under 300 new ids, their seeds redrawn): long enough to signal mid-copy.
  let big: string;
  before(async () => {
    big = copyShard(shard.A, "big");
    const seed = 7;
    const template = readFrames(big).filter((r) => r.job === "j0");
    const lines: string[] = [];
    const jobs = [];
    for (let k = 0; k < 300; k++) {
      const id = `c${k}`;
      fs.mkdirSync(path.join(big, "images", id));
      for (const r of template) {
        const moved = (file: string) => `images/${id}/${path.basename(file)}`;
        for (const { path: file } of recordFiles(r)) fs.copyFileSync(path.join(big, file), path.join(big, moved(file)));
        const layers = Object.fromEntries(Object.entries(r.layers).map(([layer, file]) => [layer, moved(file!)]));
        lines.push(JSON.stringify({ ...r, job: id, file: moved(r.file), layers, seed: frameSeed(seed, id, r.frame) } satisfies FrameRecord));
      }
      jobs.push({ ...JOBS[0]!, id });
    }
    fs.appendFileSync(path.join(big, "frames.jsonl"), lines.join("\n") + "\n");
    const queue = new SqliteQueue(path.join(big, "queue.sqlite"));
    await queue.add(jobs as never[]);
    for (let lease = await queue.take("t"); lease; lease = await queue.take("t")) await queue.complete(lease.token);
    await queue.close();
  });

  it("SIGTERM or SIGINT mid-copy: exits 128 + the signal, leaves no DIR and no staging folder, and releases the shards", async () => {
    for (const [signal, exitCode] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
      const into = fresh(`stopped-${signal}`);
      const { child, output } = spawnFarmCli(["merge", big, "--into", into]);
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      const copying = () => {
        const staging = fs.readdirSync(base).find((n) => n.startsWith(STAGING_PREFIX));
        const images = staging && path.join(base, staging, "images");
        return images !== undefined && fs.existsSync(images) && fs.readdirSync(images).length >= 5;
      };
      for (let i = 0; i < 3000 && child.exitCode === null && !copying(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.ok(copying(), `the merge was copying: ${output()}`);
      child.kill(signal);
      assert.equal(await exited, exitCode, output());
      assert.match(output(), new RegExp(`merge stopped by ${signal}; what it had written was removed`));
      assertNothingWritten(into);
      assert.ok(!fs.existsSync(into));
      assert.ok(!fs.existsSync(path.join(big, "tabfarm.lock.json")), "the shard's lock released");
    }
    const into = fresh("whole");
    const { code, output } = await merge(big, "--into", into);
    assert.equal(code, 0, output);
    assert.equal(readFrames(into).length, 8 + 600);
  });
});

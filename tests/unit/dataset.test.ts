// The dataset writer (server/dataset/DatasetWriter.ts), its name checks (server/dataset/safeName.ts)
// and what JobContext.saveFrame writes for a frame (its layer files and frames.jsonl line), on real
// files in a temp folder.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { DatasetWriteError, DatasetWriter, FRAMES_INDEX } from "../../server/dataset/DatasetWriter.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { JobContext } from "../../server/dispatch/JobContext.js";
import { frameSeed } from "../../server/dataset/seeds.js";
import type { GrabbedFrame } from "../../server/session/Session.js";
import { MAX_ID } from "../../protocol/layers.js";
import { MAX_LABEL_CHARS } from "../../protocol/instances.js";
import { assertSafeName, insideRoot } from "../../server/dataset/safeName.js";
import { canMountTmpfs, fillDisk, mountTmpfs, unmount } from "../integration/fullDisk.js";

let base: string;
let count = 0;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), "tabfarm-dataset-test-"));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A fresh dataset root per test. */
function freshRoot(): string {
  return path.join(base, `ds${++count}`);
}

function record(job: string, frame: number, extra: Partial<FrameRecord> = {}): FrameRecord {
  return {
    job,
    frame,
    file: `images/${job}/${String(frame).padStart(6, "0")}.png`,
    width: 4,
    height: 3,
    format: "png",
    K: [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ],
    cameraToWorld: [
      [1, 0, 0, 0],
      [0, 1, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ],
    layers: { rgb: `images/${job}/${String(frame).padStart(6, "0")}.png` },
    world_to_camera_opencv: { R: [[1, 0, 0], [0, -1, 0], [0, 0, -1]], t: [0, 0, 0] },
    fov: 60,
    near: 0.1,
    far: 100,
    params: {},
    session: "s1",
    render_ms: 1,
    encode_ms: 1,
    attempt: 1,
    ...extra,
  };
}

async function listAll(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/"));
}

async function indexLines(w: DatasetWriter): Promise<string[]> {
  const text = await readFile(w.indexPath, "utf8");
  assert.ok(text === "" || text.endsWith("\n"), "index ends with a newline");
  return text === "" ? [] : text.slice(0, -1).split("\n");
}

describe("safeName", () => {
  it("accepts ordinary names", () => {
    for (const name of ["job1", "orbit-0001", "a.b_c-d", "_x", "0", "A".repeat(200)]) assert.equal(assertSafeName(name, "job id"), name);
  });

  it("rejects unsafe names with a message naming what and the value", () => {
    for (const name of ["", "../x", "a/b", "a\\b", ".hidden", "-flag", "a\u0000b", "..", "a..b", "a b", "A".repeat(201), "é"]) {
      assert.throws(() => assertSafeName(name, "job id"), /job id .* is not a safe file name/, JSON.stringify(name));
    }
    assert.throws(() => assertSafeName(undefined as unknown as string, "job id"), /not a safe file name/);
  });

  it("insideRoot resolves inside and refuses escapes and the root itself", () => {
    const root = path.resolve(base, "r");
    assert.equal(insideRoot(root, "images/a/1.png"), path.join(root, "images", "a", "1.png"));
    for (const rel of ["../x", "images/../../x", "/etc/passwd", "", "."]) {
      assert.throws(() => insideRoot(root, rel), /escapes the dataset folder/, rel);
    }
  });
});

describe("DatasetWriter.framePath", () => {
  const w = () => new DatasetWriter(freshRoot());

  it("lays frames out as images/<job>/<6-digit frame>.<ext>", () => {
    const d = w();
    assert.equal(d.framePath("job1", 7, "png"), "images/job1/000007.png");
    assert.equal(d.framePath("job1", 0, "jpeg"), "images/job1/000000.jpg");
    assert.equal(d.framePath("job1", 123456, "webp"), "images/job1/123456.webp");
    assert.equal(d.framePath("job1", 1234567, "png"), "images/job1/1234567.png");
  });

  it("puts extra layers beside the image; 'rgb' is the plain name", () => {
    const d = w();
    assert.equal(d.framePath("j", 7, "png", "depth"), "images/j/000007.depth.png");
    assert.equal(d.framePath("j", 7, "jpeg", "normal"), "images/j/000007.normal.jpg");
    assert.equal(d.framePath("j", 7, "png", "rgb"), "images/j/000007.png");
    assert.equal(d.framePath("j", 7, "npy", "depth32"), "images/j/000007.depth32.npy");
    assert.throws(() => d.framePath("j", 7, "png", "../x"), /layer name/);
    assert.throws(() => d.framePath("j", 7, "png", "a/b"), /layer name/);
  });

  it("rejects unsafe job ids", () => {
    const d = w();
    for (const job of ["../x", "a/b", ".hidden", "a\u0000b", "", "..", "a\\b"]) {
      assert.throws(() => d.framePath(job, 1, "png"), /job id .* is not a safe file name/, JSON.stringify(job));
    }
  });

  it("rejects negative, fractional and non-finite frame indices and unknown formats", () => {
    const d = w();
    for (const frame of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
      assert.throws(() => d.framePath("j", frame, "png"), /frame index .* must be a whole number/, String(frame));
    }
    assert.throws(() => d.framePath("j", 1, "gif"), /unknown image format "gif"/);
    assert.throws(() => d.framePath("j", 1, ""), /unknown image format ""/);
  });

  // Regression test (fixed bug in DatasetWriter.framePath): EXT is a plain object literal, so EXT[format] finds inherited
  // Object.prototype members; "toString" gives the file name "000001.function toString() { [native code] }".
  it("rejects format names that are Object.prototype members", () => {
    const d = w();
    for (const format of ["toString", "constructor", "__proto__", "hasOwnProperty"]) {
      assert.throws(() => d.framePath("j", 1, format), /unknown image format/, format);
    }
  });
});

describe("DatasetWriter.writeFile", () => {
  it("writes the bytes, creating folders, and leaves no temp files", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    const rel = d.framePath("job1", 7, "png");
    const bytes = Buffer.from("hello frame 7");
    await d.writeFile(rel, bytes);
    assert.deepEqual(await readFile(path.join(root, rel)), bytes);
    assert.deepEqual(await listAll(root), ["images/job1/000007.png"]);
  });

  it("overwrites an existing file atomically (same name, new content, no leftovers)", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    await d.writeFile("images/j/a.png", Buffer.alloc(100_000, 1));
    await d.writeFile("images/j/a.png", Buffer.from("short"));
    assert.equal(await readFile(path.join(root, "images/j/a.png"), "utf8"), "short");
    assert.deepEqual(await listAll(root), ["images/j/a.png"]);
  });

  it("many concurrent writes to one path end with one complete version and no temp files", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    const versions = Array.from({ length: 30 }, (_, i) => Buffer.alloc(50_000 + i, i));
    await Promise.all(versions.map((v) => d.writeFile("images/j/x.png", v)));
    const got = await readFile(path.join(root, "images/j/x.png"));
    assert.ok(
      versions.some((v) => v.equals(got)),
      "final content is exactly one of the written versions",
    );
    assert.deepEqual(await listAll(root), ["images/j/x.png"]);
  });

  it("a reader polling during rewrites never sees a partial file", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    const full = path.join(root, "images/j/r.png");
    const a = Buffer.alloc(2_000_000, 0xaa);
    const b = Buffer.alloc(2_000_000, 0xbb);
    await d.writeFile("images/j/r.png", a);
    let stop = false;
    let reads = 0;
    const reader = (async () => {
      while (!stop) {
        const got = await readFile(full);
        reads++;
        assert.ok(got.equals(a) || got.equals(b), `partial read of ${got.length} bytes`);
      }
    })();
    for (let i = 0; i < 10; i++) await d.writeFile("images/j/r.png", i % 2 ? a : b);
    stop = true;
    await reader;
    assert.ok(reads > 0);
  });

  it("refuses paths escaping the root and writes nothing", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    const outside = path.join(base, `escaped-${count}.png`);
    await assert.rejects(d.writeFile(path.relative(root, outside), Buffer.from("x")), /escapes the dataset folder/);
    await assert.rejects(d.writeFile(outside, Buffer.from("x")), /escapes the dataset folder/);
    await assert.rejects(d.writeFile("", Buffer.from("x")), /escapes the dataset folder/);
    assert.equal(fs.existsSync(outside), false);
    assert.deepEqual(await listAll(root), []);
  });

  it("cleans up its temp file when the rename fails", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    // a non-empty directory where the file should go makes rename() fail
    await d.writeFile("images/j/blocked/inner.png", Buffer.from("x"));
    await assert.rejects(d.writeFile("images/j/blocked", Buffer.from("y")));
    assert.deepEqual(await listAll(root), ["images/j/blocked/inner.png"]);
  });
});

describe("DatasetWriter.writeFile: writer thread, temp names, failures", () => {
  it("names its temp files so removeStaleTemps finds them (dot first, .tmp last, beside the file)", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    await d.writeFile("images/j/000000.png", Buffer.from("first")); // the folder exists from here
    const dir = path.join(root, "images/j");
    const seen: string[] = [];
    const watcher = fs.watch(dir, (_event, name) => name && seen.push(String(name)));
    try {
      await d.writeFile("images/j/000001.png", Buffer.alloc(100_000, 7));
      for (let i = 0; i < 50 && !seen.some((n) => n.endsWith(".tmp")); i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      watcher.close();
    }
    const temps = [...new Set(seen.filter((n) => n.endsWith(".tmp")))];
    assert.equal(temps.length, 1, `one temp file seen: ${JSON.stringify(seen)}`);
    assert.match(temps[0]!, /^\.000001\.png\.[0-9a-z]+\.tmp$/);
    // What a killed process would leave: the same name, never renamed.
    fs.writeFileSync(path.join(dir, temps[0]!), "torn");
    assert.equal(await d.removeStaleTemps(), 1);
    assert.deepEqual((await listAll(root)).sort(), ["images/j/000000.png", "images/j/000001.png"]);
  });

  it("two writers (two processes' worth of temp names) racing on the same paths leave complete files and no temps", async () => {
    const root = freshRoot();
    const a = new DatasetWriter(root);
    const b = new DatasetWriter(root);
    const version = (i: number) => Buffer.alloc(20_000 + i, i);
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).writeFile(`images/j/${i % 4}.png`, version(i))));
    for (let f = 0; f < 4; f++) {
      const got = await readFile(path.join(root, `images/j/${f}.png`));
      assert.ok(Array.from({ length: 40 }, (_, i) => i).some((i) => i % 4 === f && version(i).equals(got)), `file ${f} is one whole version`);
    }
    assert.deepEqual((await listAll(root)).sort(), ["images/j/0.png", "images/j/1.png", "images/j/2.png", "images/j/3.png"]);
  });

  it("leaves the caller's buffer as it was (the thread writes a copy)", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    const pool = Buffer.alloc(300_000, 9);
    const bytes = pool.subarray(1000, 71_000);
    const writes = [d.writeFile("images/j/a.png", bytes), d.writeFile("images/j/b.png", bytes)];
    bytes.fill(1, 0, 10); // changed after the call: the file keeps what was passed
    await Promise.all(writes);
    assert.equal(bytes.length, 70_000);
    assert.equal(pool.length, 300_000);
    const a = await readFile(path.join(root, "images/j/a.png"));
    assert.equal(a.length, 70_000);
    assert.ok(a.every((x) => x === 9));
  });

  it("with several writer threads, many writes to many folders all land whole", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root, { writeThreads: 3 });
    const files = Array.from({ length: 60 }, (_, i) => ({ rel: d.framePath(`job${i % 7}`, i, "png"), bytes: Buffer.alloc(1000 + i * 997, i) }));
    await Promise.all(files.map((f) => d.writeFile(f.rel, f.bytes)));
    for (const f of files) assert.deepEqual(await readFile(path.join(root, f.rel)), f.bytes);
    assert.equal((await listAll(root)).length, 60);
  });

  it("a folder that cannot be created fails with DatasetWriteError, and writes work once it can", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    fs.writeFileSync(path.join(root, "images"), "not a folder");
    await assert.rejects(d.writeFile("images/j/000000.png", Buffer.from("x")), (err: Error) => {
      assert.ok(err instanceof DatasetWriteError, `a DatasetWriteError, got ${err}`);
      assert.match(err.message, /^cannot write images\/j\/000000\.png: E[A-Z]+/);
      return true;
    });
    assert.equal(await d.probeWritable(), false);
    fs.rmSync(path.join(root, "images"));
    assert.equal(await d.probeWritable(), true);
    await d.writeFile("images/j/000000.png", Buffer.from("x"));
    assert.deepEqual(await listAll(root), ["images/j/000000.png"]);
  });

  it("a folder removed after its first file is not recreated: the write fails cleanly (DatasetWriteError)", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    await d.writeFile("images/j/000000.png", Buffer.from("x"));
    fs.rmSync(path.join(root, "images"), { recursive: true });
    await assert.rejects(d.writeFile("images/j/000001.png", Buffer.from("y")), DatasetWriteError);
    assert.deepEqual(await listAll(root), []);
  });

  it("an idle writer thread does not keep the process alive", { timeout: 20_000 }, async () => {
    const script = [
      `import { DatasetWriter } from ${JSON.stringify(new URL("../../server/dataset/DatasetWriter.ts", import.meta.url).href)};`,
      `const d = new DatasetWriter(${JSON.stringify(freshRoot())});`,
      `await d.writeFile("images/j/000000.png", Buffer.from("x"));`,
      `console.log("written");`,
    ].join("\n");
    const { execFileSync } = await import("node:child_process");
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 15_000 });
    assert.equal(out.trim(), "written");
  });
});

describe("DatasetWriter.appendRecords", () => {
  it("appends one JSON line per record, in order", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0), record("a", 1)]);
    await d.appendRecords([]);
    await d.appendRecords([record("b", 0)]);
    const lines = await indexLines(d);
    assert.deepEqual(
      lines.map((l) => JSON.parse(l)),
      [record("a", 0), record("a", 1), record("b", 0)],
    );
    assert.equal(path.basename(d.indexPath), FRAMES_INDEX);
  });

  it("never interleaves lines of concurrent calls (50 calls × 20 records)", async () => {
    const d = new DatasetWriter(freshRoot());
    const pad = "x".repeat(3000); // big lines so a single call's text is ~60 KB
    await Promise.all(
      Array.from({ length: 50 }, (_, c) => d.appendRecords(Array.from({ length: 20 }, (_, f) => record(`job${c}`, f, { pad })))),
    );
    const lines = await indexLines(d);
    assert.equal(lines.length, 1000);
    const parsed = lines.map((l) => JSON.parse(l) as FrameRecord);
    for (let start = 0; start < 1000; start += 20) {
      const block = parsed.slice(start, start + 20);
      const job = block[0]!.job;
      assert.deepEqual(
        block.map((r) => `${r.job}/${r.frame}`),
        Array.from({ length: 20 }, (_, f) => `${job}/${f}`),
        `lines ${start}..${start + 19} are one call's records, contiguous and in order`,
      );
    }
    assert.equal(new Set(parsed.map((r) => r.job)).size, 50);
  });

  it("a failed append rejects that call but later appends still work", async () => {
    const root = freshRoot();
    const d = new DatasetWriter(root);
    fs.mkdirSync(d.indexPath); // appendFile on a directory fails
    await assert.rejects(d.appendRecords([record("a", 0)]));
    fs.rmdirSync(d.indexPath);
    await d.appendRecords([record("b", 0)]);
    assert.deepEqual(
      (await indexLines(d)).map((l) => JSON.parse(l).job),
      ["b"],
    );
  });
});

describe("DatasetWriter.compact", () => {
  it("returns zeros when there is no index yet", async () => {
    const d = new DatasetWriter(freshRoot());
    assert.deepEqual(await d.compact(() => true), { kept: 0, dropped: 0 });
    assert.equal(fs.existsSync(d.indexPath), false);
  });

  it("keeps only done jobs, one line per (job, frame), the last written, in last-write order", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0, { attempt: 1 }), record("a", 1, { attempt: 1 })]);
    await d.appendRecords([record("b", 0, { attempt: 1 })]); // b is not done
    await d.appendRecords([record("a", 0, { attempt: 2 }), record("a", 1, { attempt: 2 })]);
    await d.appendRecords([record("c", 5, { attempt: 1 })]);
    const asked: string[] = [];
    const result = await d.compact(async (job) => {
      asked.push(job);
      return job !== "b";
    });
    assert.deepEqual(result, { kept: 3, dropped: 3 });
    const kept = (await indexLines(d)).map((l) => JSON.parse(l) as FrameRecord);
    assert.deepEqual(
      kept.map((r) => `${r.job}/${r.frame}#${r.attempt}`),
      ["a/0#2", "a/1#2", "c/5#1"],
    );
    assert.deepEqual(asked.sort(), ["a", "b", "c"], "isDone asked once per job");
    assert.deepEqual(await listAll(path.dirname(d.indexPath)), [FRAMES_INDEX], "no temp file left");
  });

  it("drops a torn (unparseable) last line", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0), record("a", 1)]);
    const torn = JSON.stringify(record("a", 2)).slice(0, 40);
    fs.appendFileSync(d.indexPath, torn);
    assert.deepEqual(await d.compact(() => true), { kept: 2, dropped: 1 });
    const lines = await indexLines(d);
    assert.deepEqual(
      lines.map((l) => JSON.parse(l).frame),
      [0, 1],
    );
    // appending after compaction yields valid lines again
    await d.appendRecords([record("a", 2)]);
    assert.deepEqual(
      (await indexLines(d)).map((l) => JSON.parse(l).frame),
      [0, 1, 2],
    );
  });

  it("drops everything when no job is done, leaving an empty index", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0), record("b", 0)]);
    assert.deepEqual(await d.compact(() => false), { kept: 0, dropped: 2 });
    assert.equal(await readFile(d.indexPath, "utf8"), "");
  });

  it("is a no-op (same inode, same mtime, same bytes) when nothing needs dropping", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0), record("a", 1), record("b", 0)]);
    const past = new Date(Date.now() - 60_000);
    fs.utimesSync(d.indexPath, past, past);
    const before = await stat(d.indexPath);
    const bytes = await readFile(d.indexPath);
    assert.deepEqual(await d.compact(() => true), { kept: 3, dropped: 0 });
    const after = await stat(d.indexPath);
    assert.equal(after.ino, before.ino);
    assert.equal(after.mtimeMs, before.mtimeMs);
    assert.deepEqual(await readFile(d.indexPath), bytes);
  });

  it("waits for appends issued before it", async () => {
    const d = new DatasetWriter(freshRoot());
    const appends = [d.appendRecords([record("a", 0)]), d.appendRecords([record("a", 0, { attempt: 2 })])];
    const result = await d.compact(() => true);
    await Promise.all(appends);
    assert.deepEqual(result, { kept: 1, dropped: 1 });
    assert.equal(JSON.parse((await indexLines(d))[0]!).attempt, 2);
  });

  // Regression test (fixed bug in DatasetWriter.compact): compact awaits the append chain once, then reads and renames without
  // holding it; an append made while compact runs goes to the old file and is lost by the rename.
  it("does not lose records appended while it runs", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0), record("a", 0, { attempt: 2 }), record("b", 0)]);
    let late: Promise<void> | undefined;
    const compacting = d.compact(async (job) => {
      // while compact is reading (isDone may well be a slow queue lookup), another job completes and
      // its lines are appended; not awaited here, so a compact that queues behind appends cannot deadlock
      late ??= d.appendRecords([record("c", 0), record("c", 1)]);
      await new Promise((r) => setTimeout(r, 30));
      return job !== "b";
    });
    await compacting;
    await late;
    const jobs = (await indexLines(d)).map((l) => `${JSON.parse(l).job}/${JSON.parse(l).frame}`);
    assert.ok(jobs.includes("c/0") && jobs.includes("c/1"), `lines of job c lost: ${JSON.stringify(jobs)}`);
  });

  // Regression test (fixed bug in DatasetWriter.compact): a crash can leave a complete last line without its "\n". compact()
  // counts it as kept and returns early (no rewrite), so the next append glues two records into one
  // unparseable line, and the next compact drops both.
  it("repairs a complete last line missing its newline so later appends stay valid", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0)]);
    fs.appendFileSync(d.indexPath, JSON.stringify(record("a", 1))); // torn exactly before "\n"
    await d.compact(() => true);
    await d.appendRecords([record("a", 2)]);
    const text = await readFile(d.indexPath, "utf8");
    const frames = text
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l).frame as number;
        } catch {
          return `unparseable: ${l.slice(0, 30)}…`;
        }
      });
    assert.deepEqual(frames, [0, 1, 2]);
  });

  it("keeps the last line of each (job, frame) of done jobs, byte for byte, in file order, whatever the mix of lines", async () => {
    const line = (job: string, frame: number, attempt = 1) => JSON.stringify(record(job, frame, { attempt }));
    const body = [
      line("a", 0), line("b", 0), line("a", 1), "", line("x", 0), '{"job":"a"}', "not json", line("a", 0, 2),
      line("s", 2 ** 40), line("s", 5), line("s", 1_000_000), `${line("s", 5, 2)}\r`, "[1]",
      line("t", 40), ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((f) => line("t", f)), line("t", 40, 2), line("c", 0),
    ];
    const kept = [line("b", 0), line("a", 1), line("a", 0, 2), line("s", 2 ** 40), line("s", 1_000_000), line("s", 5, 2),
      ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((f) => line("t", f)), line("t", 40, 2), line("c", 0)];
    for (const [ending, last, keptToo] of [["a torn last line", line("c", 1).slice(0, 30), []], ["a whole last line without its newline", line("c", 1), [line("c", 1)]]] as const) {
      const d = new DatasetWriter(freshRoot());
      fs.writeFileSync(d.indexPath, [...body, last].join("\n"));
      const asked: string[] = [];
      const result = await d.compact((job) => (asked.push(job), job !== "x"));
      const expected = [...kept, ...keptToo];
      const lines = body.filter((l) => l !== "").length + 1; // blank lines are not counted
      assert.deepEqual(result, { kept: expected.length, dropped: lines - expected.length }, ending);
      assert.equal(await readFile(d.indexPath, "utf8"), `${expected.join("\n")}\n`, ending);
      assert.deepEqual(asked, ["a", "b", "x", "s", "t", "c"], "isDone asked once per job, in order of first line");
      assert.deepEqual(await listAll(d.root), [FRAMES_INDEX], "no temp file left");
    }
  });

  it("holds a few bytes per frame, not the lines: 200,000 lines compact in a process whose heap is capped at 48 MB", async () => {
    // The old compaction held every kept line (≈ 100 MB here) and joined them into one string: over the cap, the child dies.
    const d = new DatasetWriter(freshRoot());
    const out = fs.openSync(d.indexPath, "w");
    const lines = (job: number, attempt: number) => Array.from({ length: 10 }, (_, f) => JSON.stringify(record(`j${String(job).padStart(6, "0")}`, f, { attempt }))).join("\n") + "\n";
    const expected = createHash("sha256"); // of what compaction must leave
    for (let job = 0; job < 20_000; job++) {
      fs.writeSync(out, lines(job, 1));
      if (job !== 5 && job !== 7) expected.update(lines(job, 1));
    }
    fs.writeSync(out, lines(7, 2)); // job 7 re-run: its first 10 lines are dropped; job 5 is not done: 10 more
    expected.update(lines(7, 2));
    fs.closeSync(out);
    const child = `const [url, root] = process.argv.slice(1);
      const { DatasetWriter } = await import(url);
      const result = await new DatasetWriter(root).compact((job) => job !== "j000005");
      (await import("node:fs")).writeSync(1, JSON.stringify(result));
      process.exit(0);`;
    const run = spawnSync(process.execPath, ["--import", "tsx", "--max-old-space-size=48", "--input-type=module", "-e", child,
      new URL("../../server/dataset/DatasetWriter.ts", import.meta.url).href, d.root], { encoding: "utf8", timeout: 120_000 });
    assert.equal(run.status, 0, `the compacting process failed (${run.signal ?? run.status}): ${run.stderr.slice(-600)}`);
    assert.deepEqual(JSON.parse(run.stdout), { kept: 199_990, dropped: 20 });
    const written = createHash("sha256");
    for await (const chunk of fs.createReadStream(d.indexPath)) written.update(chunk);
    assert.equal(written.digest("hex"), expected.digest("hex"), "the kept lines, byte for byte, in order");
  });

  it("throws rather than rewrite frames.jsonl changed by another process between its two reads, which keeps that change", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0), record("a", 0, { attempt: 2 })]);
    const foreign = `${JSON.stringify(record("z", 0))}\n`;
    const compacting = d.compact(() => {
      fs.appendFileSync(d.indexPath, foreign); // not through the writer's append chain
      return true;
    });
    await assert.rejects(compacting, /frames\.jsonl changed while it was being compacted/);
    assert.ok((await readFile(d.indexPath, "utf8")).endsWith(foreign));
    assert.deepEqual(await listAll(d.root), [FRAMES_INDEX], "no temp file left");
  });
});

describe("DatasetWriter.compact never costs a line already there", () => {
  it("an isDone that throws (a job the queue does not know) leaves frames.jsonl as it was, and no temp file", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0), record("b", 0), record("b", 0)]);
    const bytes = await readFile(d.indexPath);
    await assert.rejects(
      d.compact((job) => {
        if (job === "b") throw new Error("unknown job b");
        return true;
      }),
      /unknown job b/,
    );
    assert.deepEqual(await readFile(d.indexPath), bytes);
    assert.deepEqual(await listAll(path.dirname(d.indexPath)), [FRAMES_INDEX]);
  });

  it("a disk that fills while the rewrite is written (a real full tmpfs): the old frames.jsonl stays whole, no temp file is left", async (t) => {
    if (!canMountTmpfs()) return t.skip("cannot mount a tmpfs here (needs root)");
    const root = freshRoot();
    fs.mkdirSync(root);
    mountTmpfs(root, "256k");
    try {
      const d = new DatasetWriter(root);
      // Many lines, most of them dropped by compact: the rewrite is smaller, but still does not fit.
      const records = Array.from({ length: 300 }, (_, i) => record(i % 3 === 0 ? "done" : "lost", i));
      await d.appendRecords(records);
      const bytes = await readFile(d.indexPath);
      fillDisk(path.join(root, "filler"));
      await assert.rejects(d.compact((job) => job === "done"), /ENOSPC/);
      assert.deepEqual(await readFile(d.indexPath), bytes, "frames.jsonl unchanged");
      assert.deepEqual((await listAll(root)).sort(), ["filler", FRAMES_INDEX], "no temp file left");
      fs.rmSync(path.join(root, "filler"));
      assert.deepEqual(await d.compact((job) => job === "done"), { kept: 100, dropped: 200 });
    } finally {
      unmount(root);
    }
  });
});

describe("DatasetWriter: the dataset folder deleted or moved while the farm runs", () => {
  for (const how of ["deleted", "moved"] as const) {
    it(`${how}: image writes and appends fail (DatasetWriteError), nothing is recreated at its path, the probe says unwritable`, async () => {
      const root = freshRoot();
      const d = new DatasetWriter(root);
      await d.writeFile("images/j1/000000.png", Buffer.from("x"));
      await d.appendRecords([record("j1", 0)]);
      if (how === "deleted") fs.rmSync(root, { recursive: true });
      else fs.renameSync(root, `${root}-moved`);
      await assert.rejects(d.writeFile("images/j2/000000.png", Buffer.from("y")), (err: Error) => err instanceof DatasetWriteError && /is gone/.test(err.message));
      await assert.rejects(d.appendRecords([record("j2", 0)]), DatasetWriteError);
      assert.equal(await d.probeWritable(), false);
      assert.equal(fs.existsSync(root), false, "the dataset folder is not recreated");
      if (how === "moved") {
        fs.renameSync(`${root}-moved`, root); // moved back: writable again
        assert.equal(await d.probeWritable(), true);
      }
    });
  }

  it("frames.jsonl replaced by a folder: the probe says unwritable until it is a file again", async () => {
    const d = new DatasetWriter(freshRoot());
    await d.appendRecords([record("a", 0)]);
    fs.rmSync(d.indexPath);
    fs.mkdirSync(d.indexPath);
    assert.equal(await d.probeWritable(), false);
    fs.rmdirSync(d.indexPath);
    assert.equal(await d.probeWritable(), true);
    assert.equal(fs.existsSync(d.indexPath), false, "the probe creates no frames.jsonl");
  });
});

describe("DatasetWriter root", () => {
  it("a writer over an existing folder reuses it and resolves symlinked roots", async () => {
    const real = freshRoot();
    fs.mkdirSync(real, { recursive: true });
    const link = `${real}-link`;
    fs.symlinkSync(real, link);
    const d = new DatasetWriter(link);
    assert.equal(d.root, fs.realpathSync(real));
    await d.writeFile("images/j/000000.png", Buffer.from("x"));
    assert.ok(fs.existsSync(path.join(real, "images/j/000000.png")));
    await writeFile(path.join(real, "other.txt"), "keep");
    assert.deepEqual((await listAll(real)).sort(), ["images/j/000000.png", "other.txt"]);
  });
});

describe("JobContext.saveFrame: a frame's layer files and its frames.jsonl line", () => {
  // A camera at (3, 0, 0) looking at the origin, +Y up (three.js: looks down its -Z). Its axes in the
  // world, by hand: right x = up × z = (0, 0, -1), up y = (0, 1, 0), backwards z = (1, 0, 0).
  const cameraToWorld = [
    [0, 0, 1, 3],
    [0, 1, 0, 0],
    [-1, 0, 0, 0],
    [0, 0, 0, 1],
  ];
  const K = [[100, 0, 80], [0, 100, 60], [0, 0, 1]];
  const bytes = (text: string) => Buffer.from(text);
  const instances = [
    { id: 1, key: "box", label: "crate", class: 1, pixels: 12, bbox: [1, 1, 4, 3] as [number, number, number, number] },
    { id: 2, key: "ball", pixels: 5, bbox: [6, 2, 2, 3] as [number, number, number, number] },
  ];
  const frame = (over: Partial<GrabbedFrame> = {}): GrabbedFrame => ({
    image: bytes("rgb"), width: 160, height: 120, format: "png",
    camera: { K, cameraToWorld, fov: 61.93, near: 0.25, far: 40 },
    renderMs: 1.234, encodeMs: 2, roundTripMs: 5,
    layers: ["rgb", "depth", "depth32", "mask", "class", "normal", "boxes"],
    files: { depth: bytes("depth"), depth32: bytes("depth32"), mask: bytes("mask"), class: bytes("class"), normal: bytes("normal") },
    instances,
    ...over,
  });
  const context = (root: string, id = "j1") => new JobContext({ id, params: { seed: 3 } }, 2, "s7", new DatasetWriter(root), () => true, 1);

  it("writes every layer's file beside the image and names each in `layers` (rgb too); keeps file, depth_file, depth_scale", async () => {
    const root = freshRoot();
    const job = context(root);
    const record = await job.saveFrame(frame(), { index: 4 });
    const expected = {
      rgb: "images/j1/000004.png",
      depth: "images/j1/000004.depth.png",
      depth32: "images/j1/000004.depth32.npy",
      mask: "images/j1/000004.mask.png",
      class: "images/j1/000004.class.png",
      normal: "images/j1/000004.normal.png",
    };
    assert.deepEqual(record.layers, expected);
    assert.deepEqual(Object.keys(record.layers), ["rgb", "depth", "depth32", "mask", "class", "normal"], "in declaration order, rgb first");
    for (const [name, file] of Object.entries(expected)) assert.equal(await readFile(path.join(root, file), "utf8"), name, file);
    assert.equal(record.file, expected.rgb);
    assert.equal(record.depth_file, expected.depth);
    assert.equal(record.depth_scale, 0.001);
    assert.deepEqual(record.instances, instances);
    assert.deepEqual([record.fov, record.near, record.far], [61.93, 0.25, 40]);
    assert.deepEqual([record.K, record.cameraToWorld], [K, cameraToWorld]);
    assert.deepEqual([record.job, record.frame, record.session, record.attempt, record.params, record.render_ms], ["j1", 4, "s7", 2, { seed: 3 }, 1.23]);
    assert.deepEqual(job.records, [record]);
    assert.deepEqual(job.lines, [JSON.stringify(record)], "the line appended is the record as checked");
  });

  it("a frame saved again at the same index replaces its record and its line, which stay in step", async () => {
    const job = context(freshRoot());
    await job.saveFrame(frame(), { index: 0 });
    await job.saveFrame(frame(), { index: 1, extra: { take: 1 } });
    const again = await job.saveFrame(frame(), { index: 1, extra: { take: 2 } });
    assert.deepEqual(job.records.map((r) => [r.frame, r.take]), [[0, undefined], [1, 2]]);
    assert.deepEqual(job.lines, job.records.map((r) => JSON.stringify(r)));
    assert.equal(job.lines[1], JSON.stringify(again));
  });

  it("world_to_camera_opencv is the hand-computed OpenCV pose: x_cam = R·x_world + t, +Z ahead, +Y down", async () => {
    const record = await context(freshRoot()).saveFrame(frame());
    const { R, t } = record.world_to_camera_opencv;
    // Rows: right, down (-up), ahead (-backwards); t = -R·(3, 0, 0).
    assert.deepEqual(R.map((row) => row.map((v) => v + 0)), [[0, 0, -1], [0, -1, 0], [-1, 0, 0]]);
    assert.deepEqual(t.map((v) => v + 0), [0, 0, 3]);
    const project = (p: number[]) => {
      const c = R.map((row, i) => row[0] * p[0] + row[1] * p[1] + row[2] * p[2] + t[i]);
      return [K[0][0] * (c[0] / c[2]) + K[0][2], K[1][1] * (c[1] / c[2]) + K[1][2], c[2]];
    };
    assert.deepEqual(project([0, 0, 0]), [80, 60, 3], "the point looked at: image centre, 3 ahead");
    assert.deepEqual(project([0, 0, -1]).map((v) => Math.round(v * 100) / 100), [113.33, 60, 3], "world -Z is the camera's right: larger u");
    assert.deepEqual(project([0, 1, 0]).map((v) => Math.round(v * 100) / 100), [80, 26.67, 3], "world up: smaller v (rows run down)");
  });

  it("rgb only: `layers` names the image alone, no depth or instance fields", async () => {
    const record = await context(freshRoot()).saveFrame(frame({ layers: ["rgb"], files: {}, instances: undefined }));
    assert.deepEqual(record.layers, { rgb: "images/j1/000000.png" });
    for (const field of ["depth_file", "depth_scale", "instances"]) assert.equal(field in record, false, field);
  });

  it("an empty `instances` list is kept (mask asked, nothing visible)", async () => {
    const record = await context(freshRoot()).saveFrame(frame({ layers: ["rgb", "mask"], files: { mask: bytes("m") }, instances: [] }));
    assert.deepEqual(record.instances, []);
  });

  it("a frame from before layers (only `depth`) still writes its depth file", async () => {
    const root = freshRoot();
    const record = await context(root).saveFrame(frame({ layers: undefined, files: undefined, depth: bytes("old depth"), instances: undefined } as unknown as Partial<GrabbedFrame>));
    assert.deepEqual(record.layers, { rgb: "images/j1/000000.png", depth: "images/j1/000000.depth.png" });
    assert.equal(await readFile(path.join(root, "images/j1/000000.depth.png"), "utf8"), "old depth");
  });

  it("a layer asked for without its file is refused: no file written, no line kept", async () => {
    const root = freshRoot();
    const job = context(root);
    await assert.rejects(job.saveFrame(frame({ files: { depth: bytes("d") } })), /the depth32 layer was asked for but the frame has no depth32 file/);
    assert.deepEqual(job.records, []);
    assert.equal(fs.existsSync(path.join(root, "images")), false);
  });

  it("a frame a handler built with a mask or class file but no instances is refused: no file written, no line kept", async () => {
    const root = freshRoot();
    const job = context(root);
    await assert.rejects(job.saveFrame(frame({ layers: ["rgb"], files: { mask: bytes("m") }, instances: undefined })), /job j1 frame 0: the frame has a mask file but no instances; nothing written/);
    await assert.rejects(job.saveFrame(frame({ instances: undefined })), /has a mask and class file but no instances/);
    assert.deepEqual(job.records, []);
    assert.equal(fs.existsSync(path.join(root, "images")), false);
  });

  it("extra fields that are the line's own (instances, depth_file, … which would misdescribe its files) are refused before anything is written", async () => {
    const root = freshRoot();
    const job = context(root);
    for (const extra of [{ instances: [] }, { depth_file: "images/x.png", depth_scale: 1 }, { layers: {}, step: 1 }, { job: "other" }, { seed: 1 }, { randomized: {} }]) {
      await assert.rejects(job.saveFrame(frame({ layers: ["rgb"], files: {}, instances: undefined }), { extra }), /job j1 frame 0: extra field\(s\) .* are the line's own fields; name them otherwise/, JSON.stringify(extra));
    }
    assert.equal(fs.existsSync(path.join(root, "images")), false);
    const record = await job.saveFrame(frame(), { extra: { step: 3, instances_note: "x" } });
    assert.deepEqual([record.step, record.instances_note, record.instances], [3, "x", instances]);
  });

  it("every line carries its frame's seed, from the run's seed, the job and the index, and the values randomizers drew", async () => {
    const job = new JobContext({ id: "j9" }, 1, "s1", new DatasetWriter(freshRoot()), () => true, 77);
    const first = await job.saveFrame(frame(), { index: 0, randomized: { "box.color": "#ffffff" } });
    const second = await job.saveFrame(frame(), { index: 1 });
    assert.equal(first.seed, frameSeed(77, "j9", 0));
    assert.equal(second.seed, frameSeed(77, "j9", 1));
    assert.notEqual(first.seed, second.seed);
    assert.equal(job.frameSeed(1), second.seed, "a handler seeds its own draws with what the line records");
    assert.deepEqual(first.randomized, { "box.color": "#ffffff" });
    assert.equal(Object.hasOwn(second, "randomized"), false);
    assert.equal(JSON.parse(job.lines[0]).seed, first.seed);
  });

  it("a line readers could not read back is not kept: longer than readFrameLines reads (65,535 instances with boxes), or no JSON", async () => {
    const n = () => Math.random() * 100 - 50; // 17-19 characters in JSON, as real coordinates
    const box3d = () => ({ min: [n(), n(), n()], max: [n(), n(), n()], objectToWorld: [0, 1, 2, 3].map(() => [n(), n(), n(), n()]), corners: Array.from({ length: 8 }, () => [n(), n(), n()]) });
    const many = Array.from({ length: MAX_ID }, (_, i) => ({
      id: i + 1, key: `k${i}`.padEnd(128, "k"), label: `l${i}`.padEnd(MAX_LABEL_CHARS, "l"), class: i + 1, pixels: 1, bbox: [0, 0, 1, 1] as [number, number, number, number], box3d: box3d(),
    }));
    const job = context(freshRoot());
    await assert.rejects(job.saveFrame(frame({ instances: many })), /job j1 frame 0: its frames\.jsonl line would be \d+ bytes \(65535 instances\), over the 67108864-byte limit/);
    await assert.rejects(job.saveFrame(frame(), { index: 1, extra: { my_seed: 10n } }), /job j1 frame 1: its frames\.jsonl line is not JSON \(.*BigInt/);
    assert.deepEqual(job.records, []);
  });

  it("a layer file that cannot be written keeps the line out (the rest may be written; a re-run overwrites them)", async () => {
    const root = freshRoot();
    fs.mkdirSync(path.join(root, "images/j1/000000.mask.png"), { recursive: true }); // a folder where the mask goes
    const job = context(root);
    await assert.rejects(job.saveFrame(frame()), (err: unknown) => err instanceof DatasetWriteError && /000000\.mask\.png/.test(err.message));
    assert.deepEqual(job.records, []);
  });
});

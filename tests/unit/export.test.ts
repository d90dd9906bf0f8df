// The pieces of `export` that need no dataset: --shard-size, sample keys and member names, where an export
// may be written (server/export/webdataset.ts, server/export/exportSource.ts).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { createFolders, exportTarget, removeCreatedFolders } from "../../server/export/exportSource.js";
import { checkShardFolder, parseShardSize, sampleKey, sampleMembers } from "../../server/export/webdataset.js";

const exportTargetOutside = (root: string, target: string, what: string) => exportTarget(root, target, what, "folder").path;

describe("--shard-size", () => {
  it("takes bytes, and B/KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024) in any case", () => {
    const cases: [string, number][] = [
      ["1GB", 1e9], ["1gb", 1e9], ["500MB", 5e8], ["64KiB", 65_536], ["64kib", 65_536], ["1KB", 1000], ["1000", 1000],
      ["1000B", 1000], ["250000000", 2.5e8], ["1.5GiB", 1.5 * 2 ** 30], ["2 MiB", 2 * 2 ** 20], ["1TB", 1e12], ["0.5TB", 5e11],
      ["1.0001KB", 1000], [" 3MB ", 3e6], ["1000KB", 1e6],
    ];
    for (const [text, bytes] of cases) assert.equal(parseShardSize(text), bytes, text);
  });

  it("decimals are exact, from the digits: every 1.000KB … 6.999KB, binary units, only a real fraction of a byte dropped", () => {
    const wrong: string[] = [];
    for (let bytes = 1000; bytes < 7000; bytes++) {
      const text = `${Math.floor(bytes / 1000)}.${String(bytes % 1000).padStart(3, "0")}KB`;
      if (parseShardSize(text) !== bytes) wrong.push(`${text} → ${parseShardSize(text)}`);
    }
    assert.deepEqual(wrong, []);
    const cases: [string, number][] = [
      ["1.0009765625KiB", 1025], ["1.0001KiB", 1024], ["1.1MiB", 1_153_433], ["0.999999999999TB", 999_999_999_999], ["1.000000000001KB", 1000], ["00001.5KB", 1500],
    ];
    for (const [text, bytes] of cases) assert.equal(parseShardSize(text), bytes, text);
  });

  it("refuses anything else, saying what it takes", () => {
    for (const text of ["", "GB", "1e9", "1E9", "-1GB", "+1GB", "1,000", "1_000", "0x400", "1 G", "1K", "1M", "1GBB", "1 GB extra", "1.5", "1.GB", ".5GB", "Infinity", "NaN", "1PB", "1 KiBs"]) {
      assert.throws(() => parseShardSize(text), /is not (a size|a whole number of bytes): give bytes, or a number with B, KB, MB, GB, TB \(powers of 1000\) or KiB, MiB, GiB, TiB \(powers of 1024\)/, JSON.stringify(text));
    }
    for (const text of ["0", "999", "0.9KB", "1.000001TB", "2TB", "1TiB", "99999999999999999999"]) {
      assert.throws(() => parseShardSize(text), /bytes; a shard size is from 1KB \(1000 bytes\) to 1TB/, text);
    }
  });
});

describe("WebDataset samples", () => {
  it("a key is <job>/<frame as 6 digits> with the job's dots as %2E: no dot, and distinct jobs never share one", () => {
    assert.equal(sampleKey("j1", 0), "j1/000000");
    assert.equal(sampleKey("cars.v2.night", 12), "cars%2Ev2%2Enight/000012");
    assert.equal(sampleKey("big", 1_234_567), "big/1234567");
    // "a.b" and "a%2Eb" can't both be job ids ("%" is not allowed), and "a_2Eb" stays itself.
    assert.notEqual(sampleKey("a.b", 0), sampleKey("a_2Eb", 0));
    for (const job of ["x.y", "a.b.c", "v1.0-final"]) assert.ok(!sampleKey(job, 3).includes("."));
  });

  it("members are <key>.<layer>.<ext> per file the line names (rgb by its format), then <key>.json", () => {
    const record = {
      job: "a.b", frame: 3, file: "images/a.b/000003.jpg", format: "jpeg",
      layers: { rgb: "images/a.b/000003.jpg", depth: "images/a.b/000003.depth.png", depth32: "images/a.b/000003.depth32.npy", mask: "images/a.b/000003.mask.png", class: "images/a.b/000003.class.png", normal: "images/a.b/000003.normal.png" },
    } as unknown as FrameRecord;
    assert.deepEqual(sampleMembers(record), [
      { name: "a%2Eb/000003.rgb.jpg", file: "images/a.b/000003.jpg" },
      { name: "a%2Eb/000003.depth.png", file: "images/a.b/000003.depth.png" },
      { name: "a%2Eb/000003.depth32.npy", file: "images/a.b/000003.depth32.npy" },
      { name: "a%2Eb/000003.mask.png", file: "images/a.b/000003.mask.png" },
      { name: "a%2Eb/000003.class.png", file: "images/a.b/000003.class.png" },
      { name: "a%2Eb/000003.normal.png", file: "images/a.b/000003.normal.png" },
      { name: "a%2Eb/000003.json" },
    ]);
    // A line written before layers: file and depth_file.
    const old = { job: "j", frame: 0, file: "images/j/000000.webp", depth_file: "images/j/000000.depth.png", format: "webp" } as unknown as FrameRecord;
    assert.deepEqual(sampleMembers(old).map((m) => m.name), ["j/000000.rgb.webp", "j/000000.depth.png", "j/000000.json"]);
  });
});

describe("export targets", () => {
  it("refuses the dataset folder itself and anything inside it, also through a link or ..; allows beside it", () => {
    const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-export-unit-")));
    try {
      const root = path.join(base, "out");
      fs.mkdirSync(path.join(root, "images"), { recursive: true });
      fs.symlinkSync(path.join(root, "images"), path.join(base, "link"));
      fs.symlinkSync(root, path.join(base, "rootlink"));
      for (const target of [root, path.join(root, "shards"), path.join(root, "a", "b", "c.json"), path.join(base, "link", "x"), path.join(base, "rootlink"), path.join(base, "x", "..", "out", "y")]) {
        assert.throws(() => exportTargetOutside(root, target, "--webdataset"), /^Error: --webdataset .*: is inside the dataset folder .*\/out; write exports elsewhere/, target);
      }
      assert.throws(() => exportTargetOutside(root, "", "--coco"), /--coco "": an empty path names nothing/);
      // A file target ending in a separator names a folder (path.resolve would drop the "/").
      for (const target of [path.join(base, "new") + "/", path.join(base, "new") + "//", `${base}/`, `${base}/new/.`, `${base}/new/..`, ".", ".."]) {
        assert.throws(() => exportTarget(root, target, "--coco", "file"), /--coco .*: names a folder \(it ends in "(\/|\.|\.\.)"\); give a file name \(e\.g\. .*coco\.json\)/, target);
      }
      // A link to a folder that does not exist yet inside the dataset: writing through it would land there.
      fs.symlinkSync(path.join(root, "later"), path.join(base, "dangling"));
      assert.throws(() => exportTargetOutside(root, path.join(base, "dangling"), "--webdataset"), /cannot be resolved \(ENOENT; a link to nowhere\?\)/);
      assert.throws(() => exportTargetOutside(root, path.join(base, "dangling", "coco.json"), "--coco"), /cannot be resolved/);
      for (const target of [base, path.join(base, "out-shards"), path.join(base, "outside", "deep", "coco.json")]) {
        assert.equal(exportTargetOutside(root, target, "--webdataset"), target);
      }
      // The folders to create, outermost first: a folder target's own, a file target's parents only.
      assert.deepEqual(exportTarget(root, path.join(base, "a", "b"), "--webdataset", "folder").missing, [path.join(base, "a"), path.join(base, "a", "b")]);
      assert.deepEqual(exportTarget(root, path.join(base, "a", "b", "c.json"), "--coco", "file").missing, [path.join(base, "a"), path.join(base, "a", "b")]);
      assert.deepEqual(exportTarget(root, path.join(base, "c.json"), "--coco", "file").missing, []);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });

  it("creates missing folders one level at a time, naming the target and the real error; removes only the empty ones it made", () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-export-unit-"));
    try {
      const folders = [path.join(base, "a"), path.join(base, "a", "b"), path.join(base, "a", "c")];
      fs.mkdirSync(folders[0]!); // already there: not created, so never removed
      assert.deepEqual(createFolders(folders, "T", "--webdataset"), folders.slice(1));
      fs.writeFileSync(path.join(folders[2]!, "someone's"), "");
      removeCreatedFolders(folders.slice(1));
      assert.deepEqual(fs.readdirSync(folders[0]!), ["c"], "b (empty) removed, c (not empty) and a (not made) left");
      // procfs answers ENOENT to every mkdir (recursive mkdir loops forever on it); a file in the way: ENOTDIR.
      assert.throws(() => createFolders(["/proc/tabfarm-unit", "/proc/tabfarm-unit/x"], "/proc/tabfarm-unit/x", "--webdataset"), /^Error: --webdataset \/proc\/tabfarm-unit\/x: cannot create the folder \/proc\/tabfarm-unit: ENOENT/);
      const file = path.join(base, "file");
      fs.writeFileSync(file, "");
      const made = path.join(base, "made");
      assert.throws(() => createFolders([made, path.join(file, "x")], "T", "--coco"), /--coco T: cannot create the folder .*file\/x: ENOTDIR/);
      assert.ok(!fs.existsSync(made), "what it made before the failure is removed");
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });

  it("refuses a shard folder that is a file, or holds shard-*.tar files, unless --overwrite", () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-export-unit-"));
    try {
      checkShardFolder(path.join(base, "new"), false); // created later
      fs.writeFileSync(path.join(base, "file"), "");
      assert.throws(() => checkShardFolder(path.join(base, "file"), true), /--webdataset .*file: is a file, not a folder/);
      const dest = path.join(base, "dest");
      fs.mkdirSync(dest);
      fs.writeFileSync(path.join(dest, "shard-000000.tar.partial"), ""); // a killed export's: replaced, not stale
      fs.writeFileSync(path.join(dest, "other.tar"), "");
      checkShardFolder(dest, false);
      for (const name of ["shard-000003.tar", "shard-x.tar", "shard-000000.tar"]) fs.writeFileSync(path.join(dest, name), "");
      assert.throws(() => checkShardFolder(dest, false), /already holds 3 shard\(s\) \(shard-000000\.tar, shard-000003\.tar, shard-x\.tar\); a new export must not mix with them: give another folder, or --overwrite to remove them first/);
      checkShardFolder(dest, true);
      fs.mkdirSync(path.join(dest, "shard-000009.tar"));
      assert.throws(() => checkShardFolder(dest, true), /shard-000009\.tar is not a file; move it away/);
      // Staging folders are no obstacle, even one named for a live pid: a running export is told by DEST's claim (exportClaim.test.ts).
      const other = path.join(base, "other");
      fs.mkdirSync(path.join(other, ".tabfarm-export-99999999-0123abcd"), { recursive: true });
      fs.mkdirSync(path.join(other, `.tabfarm-export-${process.pid}-0123abcd`));
      checkShardFolder(other, false);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

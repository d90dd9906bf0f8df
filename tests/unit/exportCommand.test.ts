// Hostile cases of `export` (server/export/*, harness/exportCommand.ts) on datasets `verify` passes but that
// are odd: built without Chromium (real files made with sharp, a real queue through openDataset, lines
// in the farm's format) and checked to pass verify before each export. What export writes is read back
// independently: shards with Python's tarfile, COCO JSON with Python's json, RLE masks with a Python
// (numpy) rewrite of pycocotools' encoder and decoder compared with the ids each mask was made from.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import sharp from "sharp";
import { openDataset } from "../../server/dataset/openDataset.js";
import { DatasetLockedError, LOCK_HOLDER_FILE } from "../../server/dataset/datasetLock.js";
import { claimTarget, cocoFileLock, shardFolderLock } from "../../server/export/exportClaim.js";
import { verifyDataset } from "../../server/dataset/verifyDataset.js";
import { RUN_MANIFEST_FILE } from "../../server/dataset/RunManifest.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import type { FrameInstance } from "../../server/session/Session.js";
import { ExportRefused, indexIdentity } from "../../server/export/exportSource.js";
import { parseShardSize, writeWebDataset } from "../../server/export/webdataset.js";
import { writeCoco } from "../../server/export/coco.js";
import { runExport } from "../../harness/exportCommand.js";
import { canMountTmpfs, fillDisk, mountTmpfs, unmount } from "../integration/fullDisk.js";
import { runFarmCli, spawnFarmCli } from "../integration/cli.js";
import { python, pythonRle } from "../pythonCoco.js";

let base: string;
let count = 0;
before(() => void (base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-export-hostile-")))));
after(() => fs.rmSync(base, { recursive: true, force: true }));
const fresh = (name: string) => path.join(base, `${name}-${++count}`);

// ---------- datasets verify passes ----------

/** What an instance id of a frame's mask is: its label and class, either may be absent. */
type Labels = Record<number, { label?: string; class?: number }>;

interface FrameSpec {
  job: string;
  frame: number;
  width: number;
  height: number;
  /** Instance ids, row-major (a mask file is written when given). */
  ids?: Uint16Array;
  labels?: Labels;
  format?: "png" | "jpeg" | "webp";
  /** The rgb file's name in images/<job>/ (default <frame>.<png|jpg|webp>). */
  rgbName?: string;
  /** A line written before layers: file and depth_file only. */
  old?: boolean;
}

/** The instances a mask shows, as the farm lists them: by id ascending, with pixels and tight box. */
function instancesOf(ids: Uint16Array, width: number, labels: Labels = {}): FrameInstance[] {
  const seen = new Map<number, { pixels: number; minX: number; minY: number; maxX: number; maxY: number }>();
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id === 0) continue;
    const x = i % width;
    const y = Math.floor(i / width);
    const s = seen.get(id);
    if (!s) seen.set(id, { pixels: 1, minX: x, minY: y, maxX: x, maxY: y });
    else {
      s.pixels++;
      s.minX = Math.min(s.minX, x);
      s.maxX = Math.max(s.maxX, x);
      s.maxY = y;
    }
  }
  return [...seen].sort(([a], [b]) => a - b).map(([id, s]) => ({
    id, key: `e${id}`, ...labels[id], pixels: s.pixels, bbox: [s.minX, s.minY, s.maxX - s.minX + 1, s.maxY - s.minY + 1],
  }) as FrameInstance);
}

const EXT = { png: "png", jpeg: "jpg", webp: "webp" } as const;
const identity4 = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]];

async function rgbBytes(format: "png" | "jpeg" | "webp", width: number, height: number): Promise<Buffer> {
  const image = sharp({ create: { width, height, channels: 3, background: { r: 40, g: 90, b: 200 } } });
  return format === "png" ? image.png().toBuffer() : format === "jpeg" ? image.jpeg().toBuffer() : image.webp().toBuffer();
}
const grey16 = (ids: Uint16Array, width: number, height: number) => sharp(ids, { raw: { width, height, channels: 1 } }).toColourspace("grey16").png().toBuffer();

/**
 * A dataset at `out` with these frames (jobs done, each job's lines as given), a manifest.json with
 * `classes` and a --handler run (so a job may have any frames, e.g. frame 1,000,000), checked to pass verify.
 */
async function makeDataset(out: string, frames: FrameSpec[], classes: { id: number; label: string }[] = []): Promise<FrameRecord[]> {
  const dataset = await openDataset(out, { log: () => {} });
  const records: FrameRecord[] = [];
  try {
    const jobs = [...new Set(frames.map((f) => f.job))];
    await dataset.queue.add(jobs.map((id) => ({ id })));
    for (const f of frames) {
      const format = f.format ?? "png";
      const dir = `images/${f.job}`;
      const stem = `${dir}/${String(f.frame).padStart(6, "0")}`;
      const rgb = f.rgbName ? `${dir}/${f.rgbName}` : `${stem}.${EXT[format]}`;
      await dataset.writer.writeFile(rgb, await rgbBytes(format, f.width, f.height));
      const common = {
        job: f.job, frame: f.frame, file: rgb, width: f.width, height: f.height, format,
        K: [[10, 0, f.width / 2], [0, 10, f.height / 2], [0, 0, 1]], cameraToWorld: identity4,
        params: {}, session: "s1", render_ms: 1, encode_ms: 1, attempt: 1,
      };
      if (f.old) {
        const depth = `${stem}.depth.png`;
        await dataset.writer.writeFile(depth, await grey16(new Uint16Array(f.width * f.height).fill(1000), f.width, f.height));
        records.push({ ...common, depth_file: depth, depth_scale: 0.001 } as unknown as FrameRecord);
        continue;
      }
      const layers: Record<string, string> = { rgb };
      const record = { ...common, layers } as FrameRecord;
      if (f.ids) {
        layers.mask = `${stem}.mask.png`;
        await dataset.writer.writeFile(layers.mask, await grey16(f.ids, f.width, f.height));
        record.instances = instancesOf(f.ids, f.width, f.labels);
      }
      records.push(record);
    }
    await dataset.writer.appendRecords(records);
    for (let i = 0; i < jobs.length; i++) {
      const lease = await dataset.queue.take("s1");
      assert.ok(lease);
      assert.equal(await dataset.queue.complete(lease.token), true);
    }
  } finally {
    await dataset.close();
  }
  const manifest = {
    format: "tabfarm-manifest", version: 1, tabfarm: "0.1.0", created: "2026-01-01T00:00:00Z", updated: "2026-01-01T00:00:00Z",
    layers: {}, classes, runs: [{ started: "2026-01-01T00:00:00Z", options: { handler: "handler.ts" }, browsers: [] }],
  };
  fs.writeFileSync(path.join(out, RUN_MANIFEST_FILE), JSON.stringify(manifest));
  const report = await verifyDataset(out);
  assert.deepEqual(report.problems, [], "the dataset passes verify");
  assert.equal(report.lines, records.length);
  return records;
}

/** An export through the command (verify, then write); its log lines. Throws what the command throws. */
/** The smallest dataset an export writes everything for: one 3×2 frame with one labelled instance (class 1, "a"). */
const makeOneFrameDataset = (out: string) =>
  makeDataset(out, [{ job: "j", frame: 0, width: 3, height: 2, ids: idsFrom(3, 2, (x) => (x === 1 ? 1 : 0)), labels: { 1: { label: "a", class: 1 } } }], [{ id: 1, label: "a" }]);

async function exportDataset(options: Parameters<typeof runExport>[0]): Promise<{ code: number; log: string[] }> {
  const log: string[] = [];
  const code = await runExport(options, (line) => log.push(line), (line) => log.push(line));
  return { code, log };
}

// ---------- independent readers (Python; ../pythonCoco.ts) ----------

/** Every member of every shard in `dest` as Python's tarfile reads it: name, whether a plain file, sha256. */
function tarMembers(dest: string): { shard: string; name: string; file: boolean; sha256: string }[] {
  return python(`
import hashlib, json, os, sys, tarfile
dest = json.load(sys.stdin)
out = []
for shard in sorted(n for n in os.listdir(dest) if n.endswith(".tar")):
    with tarfile.open(os.path.join(dest, shard), "r:") as t:
        for m in t.getmembers():
            data = t.extractfile(m).read() if m.isfile() else b""
            out.append({"shard": shard, "name": m.name, "file": m.isfile(), "sha256": hashlib.sha256(data).hexdigest()})
print(json.dumps(out))
`, dest);
}

/** What verify passed: the first `lines` lines of the frames.jsonl `root` has now. */
const verified = (root: string, lines: number) => ({ lines, identity: indexIdentity(root) });

const sha256 = (bytes: Buffer) => crypto.createHash("sha256").update(bytes).digest("hex");
/** WebDataset's split of a member name (webdataset's base_plus_ext): the key is up to the first dot of the file name. */
const splitMember = (name: string) => /^((?:.*\/|)[^./]+)\.([^/]*)$/.exec(name)!.slice(1) as [string, string];

/** Checks every annotation of `coco` against the records: bbox, area, category, and its RLE by pycocotools' rules. */
function checkAnnotations(coco: any, records: FrameRecord[], idsFiles: Map<number, { file: string; ids: Uint16Array }>): void {
  const expected = records.flatMap((r, i) => (r.instances ?? []).filter((x) => x.label !== undefined && x.class !== undefined).map((x) => ({ r, imageId: i + 1, x })));
  assert.equal(coco.annotations.length, expected.length);
  const cases: Parameters<typeof pythonRle>[0] = [];
  for (const [n, { r, imageId, x }] of expected.entries()) {
    const a = coco.annotations[n];
    assert.deepEqual([a.image_id, a.category_id, a.bbox, a.area], [imageId, x.class, x.bbox, x.pixels], `annotation ${n + 1}`);
    assert.deepEqual(a.segmentation.size, [r.height, r.width]);
    cases.push({ ids: idsFiles.get(imageId)!.file, width: r.width, height: r.height, id: x.id, counts: a.segmentation.counts });
  }
  const results = pythonRle(cases);
  results.forEach((result, n) => {
    assert.ok(result.decodesRight, `annotation ${n + 1} (id ${cases[n]!.id}): its RLE decodes to the instance's pixels`);
    if (result.expected !== null) assert.equal(cases[n]!.counts, result.expected, `annotation ${n + 1}: the string pycocotools writes`);
  });
}

/** The ids of each image (by COCO image id) as raw little-endian uint16 files, for the Python checks. */
function idsFilesOf(frames: FrameSpec[]): Map<number, { file: string; ids: Uint16Array }> {
  const files = new Map<number, { file: string; ids: Uint16Array }>();
  frames.forEach((f, i) => {
    if (!f.ids) return;
    const file = fresh("ids") + ".u16";
    fs.writeFileSync(file, Buffer.from(f.ids.buffer, f.ids.byteOffset, f.ids.byteLength));
    files.set(i + 1, { file, ids: f.ids });
  });
  return files;
}

const idsFrom = (width: number, height: number, at: (x: number, y: number) => number) =>
  Uint16Array.from({ length: width * height }, (_, i) => at(i % width, Math.floor(i / width)));

// ---------- WebDataset ----------

describe("WebDataset shards of odd datasets verify passes", () => {
  // 200 characters with 99 dots (the longest job id), one with dots and digits, frames past 999,999,
  // an old line without layers, jpeg and webp rgb, and a frame with a mask.
  const LONGEST = `${"a.".repeat(99)}bb`;
  const FRAMES: FrameSpec[] = [
    { job: LONGEST, frame: 0, width: 5, height: 3 },
    { job: "v1.0-final", frame: 1_000_000, width: 4, height: 4, format: "jpeg" },
    { job: "v1.0-final", frame: 9_999_999, width: 4, height: 4, format: "webp" },
    { job: "v1_0-final", frame: 0, width: 3, height: 3, old: true },
    { job: "masked", frame: 0, width: 6, height: 4, ids: idsFrom(6, 4, (x, y) => (x === 0 && y === 0 ? 1 : x > 3 ? 2 : 0)), labels: { 1: { label: "a", class: 1 } } },
  ];
  let out: string;
  let records: FrameRecord[];
  before(async () => {
    out = fresh("odd");
    records = await makeDataset(out, FRAMES, [{ id: 1, label: "a" }]);
  });

  it("Python's tarfile gives every frame exactly once, all its members in one shard, bytes unchanged; keys hold no dot", async () => {
    for (const shardSize of ["1KB", "1GB"]) {
      const dest = fresh("wds");
      const { code } = await exportDataset({ out, webdataset: dest, shardSize });
      assert.equal(code, 0);
      const members = tarMembers(dest);
      const samples = new Map<string, { shard: string; exts: string[] }>();
      for (const m of members) {
        assert.ok(m.file, `${m.name}: a plain file`);
        const [key, ext] = splitMember(m.name);
        assert.ok(!key.includes("."), `${key}: no dot in a key`);
        const sample = samples.get(key) ?? { shard: m.shard, exts: [] };
        assert.equal(sample.shard, m.shard, `${key}: one shard`);
        sample.exts.push(ext);
        samples.set(key, sample);
      }
      assert.equal(samples.size, records.length, `${shardSize}: one sample per frame`);
      const exts = [...samples.values()].map((s) => s.exts.sort().join(" "));
      assert.deepEqual(exts, ["json rgb.png", "json rgb.jpg", "json rgb.webp", "depth.png json rgb.png", "json mask.png rgb.png"]);
      // Every file's bytes, unchanged.
      for (const r of records) {
        const files = r.layers ? Object.values(r.layers) : [r.file, r.depth_file!];
        for (const file of files) assert.ok(members.some((m) => m.sha256 === sha256(fs.readFileSync(path.join(out, file!)))), `${file} is in a shard`);
      }
      if (shardSize === "1KB") assert.equal(new Set(members.map((m) => m.shard)).size, records.length, "1KB: a shard per sample");
    }
  });

  it("byte-identical shards from two exports of the same dataset, and from a copy of it elsewhere (no path, time or owner in them)", async () => {
    const copy = fresh("odd-copy");
    fs.cpSync(out, copy, { recursive: true });
    const a = fresh("wds");
    const b = fresh("wds");
    const c = fresh("wds");
    await exportDataset({ out, webdataset: a, shardSize: "2KB" });
    await new Promise((resolve) => setTimeout(resolve, 1100)); // another second on the clock
    await exportDataset({ out, webdataset: b, shardSize: "2KB" });
    await exportDataset({ out: copy, webdataset: c, shardSize: "2KB" });
    const names = fs.readdirSync(a).sort();
    assert.ok(names.length > 1);
    for (const other of [b, c]) {
      assert.deepEqual(fs.readdirSync(other).sort(), names);
      for (const name of names) assert.ok(fs.readFileSync(path.join(a, name)).equals(fs.readFileSync(path.join(other, name))), `${other}/${name}`);
    }
  });

  it("byte-identical COCO files from two exports of the same dataset a second apart (the dataset's date, not the export's; no absolute path)", async () => {
    const files = [fresh("coco") + ".json", fresh("coco") + ".json"];
    await exportDataset({ out, coco: files[0] });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await exportDataset({ out, coco: files[1] });
    assert.ok(fs.readFileSync(files[0]).equals(fs.readFileSync(files[1])));
    const { info } = JSON.parse(fs.readFileSync(files[0], "utf8"));
    assert.equal(info.tabfarm_dataset, path.basename(fs.realpathSync(out)));
    assert.equal(info.date_created, JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")).updated, "manifest.json's last update");
  });

  it("an rgb file whose name has no extension or an upper-case one still gets the member rgb.<format> (WebDataset decodes by extension)", async () => {
    const odd = fresh("rgb-names");
    await makeDataset(odd, [
      { job: "j", frame: 0, width: 4, height: 4, rgbName: "000000.PNG" },
      { job: "j", frame: 1, width: 4, height: 4, rgbName: "frame1", format: "jpeg" },
    ]);
    const dest = fresh("wds");
    assert.equal((await exportDataset({ out: odd, webdataset: dest })).code, 0);
    assert.deepEqual(tarMembers(dest).map((m) => m.name), ["j/000000.rgb.png", "j/000000.json", "j/000001.rgb.jpg", "j/000001.json"]);
  });

  it("the json member is the line's bytes as written, also a line with spaces, 1.50 or an integer past 2^53 (verify passes those)", async () => {
    const spaced = fresh("spaced");
    const [record] = await makeDataset(spaced, [{ job: "j", frame: 0, width: 2, height: 2 }]);
    const { params: _, ...rest } = record!;
    const line = `${JSON.stringify(rest).slice(0, -1)}, "params": {"seed": 12345678901234567890, "scale": 1.50}}`;
    fs.writeFileSync(path.join(spaced, "frames.jsonl"), `${line}\n`);
    assert.equal((await verifyDataset(spaced)).problemCount, 0);
    const dest = fresh("wds");
    assert.equal((await exportDataset({ out: spaced, webdataset: dest })).code, 0);
    const json = tarMembers(dest).find((m) => m.name === "j/000000.json")!;
    assert.equal(json.sha256, sha256(Buffer.from(line)), "the member holds the line's bytes");
  });

  it("a dataset with no line: no shard, no partial file, exit 0 (nothing to export is not an error)", async () => {
    const empty = fresh("empty");
    const dataset = await openDataset(empty, { log: () => {} });
    await dataset.close();
    const dest = fresh("wds");
    const { code, log } = await exportDataset({ out: empty, webdataset: dest });
    assert.equal(code, 0);
    assert.deepEqual(fs.readdirSync(dest), []);
    assert.match(log.join("\n"), /0 shard\(s\), 0 sample\(s\)/);
  });

  it("lines a farm appends after verify are not exported, by shards or COCO", async () => {
    const grown = fresh("grown");
    fs.cpSync(out, grown, { recursive: true });
    const extra = fs.readFileSync(path.join(grown, "frames.jsonl"), "utf8").split("\n")[0]!.replace('"frame":0', '"frame":7');
    fs.appendFileSync(path.join(grown, "frames.jsonl"), `${extra}\n`);
    const dest = fresh("wds");
    const written = await writeWebDataset(grown, dest, { shardBytes: 1e9, overwrite: false, index: verified(grown, records.length) });
    assert.equal(written.samples, records.length);
    const coco = fresh("coco") + ".json";
    assert.equal((await writeCoco(grown, coco, { index: verified(grown, records.length) })).images, records.length);
  });

  it("a folder of the dataset turned into a link after verify is not followed (verify refuses one; export must too)", async () => {
    // images/masked → a link to a folder outside the dataset holding other files under the same names.
    const swapped = fresh("swapped");
    fs.cpSync(out, swapped, { recursive: true });
    const outside = fresh("outside");
    fs.cpSync(path.join(swapped, "images", "masked"), outside, { recursive: true });
    fs.writeFileSync(path.join(outside, "000000.png"), "not the dataset's file");
    fs.rmSync(path.join(swapped, "images", "masked"), { recursive: true });
    fs.symlinkSync(outside, path.join(swapped, "images", "masked"));
    const dest2 = fresh("wds");
    await assert.rejects(writeWebDataset(swapped, dest2, { shardBytes: 1e9, overwrite: false, index: verified(swapped, records.length) }), /masked/);
    assert.deepEqual(fs.existsSync(dest2) ? fs.readdirSync(dest2) : [], []);
  });

  it("a file replaced after verify by a link or a FIFO is refused, naming it; nothing is left", async () => {
    for (const kind of ["link", "fifo"]) {
      const changed = fresh(`changed-${kind}`);
      fs.cpSync(out, changed, { recursive: true });
      const file = path.join(changed, records[4]!.layers.mask!);
      fs.rmSync(file);
      if (kind === "link") fs.symlinkSync(path.join(out, records[4]!.layers.mask!), file);
      else execFileSync("mkfifo", [file]);
      const dest = fresh("wds");
      await assert.rejects(writeWebDataset(changed, dest, { shardBytes: 1000, overwrite: false, index: verified(changed, records.length) }), /000000\.mask\.png/);
      assert.ok(!fs.existsSync(dest), "the folder it made is removed, with nothing in it");
      const coco = fresh("coco") + ".json";
      await assert.rejects(writeCoco(changed, coco, { index: verified(changed, records.length) }), /000000\.mask\.png/);
      assert.ok(!fs.existsSync(coco) && !fs.existsSync(`${coco}.partial`));
    }
  });

  it("a full disk during a shard: the export fails naming the disk, and leaves no shard and no partial file", { skip: !canMountTmpfs() && "needs root to mount a tmpfs" }, async () => {
    const big = fresh("big");
    const frames: FrameSpec[] = Array.from({ length: 6 }, (_, i) => ({ job: "big", frame: i, width: 128, height: 128, ids: idsFrom(128, 128, (x, y) => (((x * 7919 + y * 104729 + i) * 2654435761) >>> 29) % 5), labels: { 1: { label: "a", class: 1 }, 2: { label: "a", class: 1 }, 3: { label: "a", class: 1 }, 4: { label: "a", class: 1 } } }));
    await makeDataset(big, frames, [{ id: 1, label: "a" }]);
    const disk = fresh("disk");
    fs.mkdirSync(disk);
    mountTmpfs(disk, "256k");
    try {
      // Room for about half the shards.
      const whole = fresh("wds");
      const { bytes } = await writeWebDataset(big, whole, { shardBytes: 1000, overwrite: false, index: verified(big, frames.length) });
      const filler = path.join(disk, "filler");
      fillDisk(filler);
      fs.truncateSync(filler, fs.statSync(filler).size - Math.floor(bytes / 2));
      const dest = path.join(disk, "wds");
      await assert.rejects(exportDataset({ out: big, webdataset: dest, shardSize: "1KB" }), /ENOSPC|disk is full|no space/i);
      assert.ok(!fs.existsSync(dest), "no shard, no partial, not even the folder it made");
      const coco = path.join(disk, "coco.json");
      fillDisk(path.join(disk, "filler2"));
      await assert.rejects(exportDataset({ out: big, coco }), /ENOSPC|disk is full|no space/i);
      assert.deepEqual(fs.readdirSync(disk).sort(), ["filler", "filler2"], "no COCO file, no partial");
    } finally {
      unmount(disk);
    }
  });
});

// ---------- COCO ----------

describe("COCO of odd masks, read back by pycocotools' rules", () => {
  it("1-pixel instances at the four corners, a full-image instance, and 1×1, 1×n, n×1, odd sizes: strings and pixels as pycocotools has them", async () => {
    const labels: Labels = { 1: { label: "a", class: 1 }, 2: { label: "a", class: 1 }, 3: { label: "b", class: 2 }, 4: { label: "b", class: 2 }, 9: { label: "a", class: 1 } };
    const corners = (w: number, h: number) => idsFrom(w, h, (x, y) => (x === 0 && y === 0 ? 1 : x === w - 1 && y === 0 ? 2 : x === 0 && y === h - 1 ? 3 : x === w - 1 && y === h - 1 ? 4 : 0));
    const frames: FrameSpec[] = [
      { job: "corners", frame: 0, width: 7, height: 5, ids: corners(7, 5), labels },
      { job: "corners", frame: 1, width: 2, height: 2, ids: corners(2, 2), labels },
      { job: "full", frame: 0, width: 5, height: 3, ids: idsFrom(5, 3, () => 9), labels },
      { job: "full", frame: 1, width: 1, height: 1, ids: idsFrom(1, 1, () => 9), labels },
      { job: "thin", frame: 0, width: 1, height: 9, ids: idsFrom(1, 9, (_, y) => [0, 1, 1, 0, 2, 0, 0, 9, 9][y]!), labels },
      { job: "thin", frame: 1, width: 11, height: 1, ids: idsFrom(11, 1, (x) => [1, 0, 2, 2, 2, 0, 0, 3, 0, 0, 4][x]!), labels },
      // Long runs and many alternations: differences from the fourth count on go negative and past 5 bits.
      { job: "stripes", frame: 0, width: 37, height: 23, ids: idsFrom(37, 23, (x, y) => ((x * 31 + y * 17) % 11 === 0 ? 1 : (x > 20 && y > 3) ? 2 : (x + y) % 3 === 0 ? 3 : 0)), labels },
    ];
    const out = fresh("rle");
    const records = await makeDataset(out, frames, [{ id: 1, label: "a" }, { id: 2, label: "b" }]);
    const file = fresh("coco") + ".json";
    const { code } = await exportDataset({ out, coco: file });
    assert.equal(code, 0);
    const coco = python("import json,sys; print(json.dumps(json.load(open(json.load(sys.stdin)))))", file);
    checkAnnotations(coco, records, idsFilesOf(frames));
  });

  it("65,535 instances in one frame (every id there is), all annotated with the right box, area and mask", async () => {
    const width = 256;
    const height = 256;
    const ids = idsFrom(width, height, (x, y) => (y * width + x + 1) % 65536); // the last pixel is background
    const labels: Labels = {};
    for (let id = 1; id <= 65535; id++) labels[id] = { label: "pixel", class: 1 };
    const frames: FrameSpec[] = [{ job: "many", frame: 0, width, height, ids, labels }];
    const out = fresh("many");
    const records = await makeDataset(out, frames, [{ id: 1, label: "pixel" }]);
    const file = fresh("coco") + ".json";
    assert.equal((await exportDataset({ out, coco: file })).code, 0);
    const coco = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.equal(coco.annotations.length, 65535);
    // Python checks a sample (each decode is a whole image): the first, the last, the column and row edges.
    const some = new Set([1, 2, 255, 256, 257, 65280, 65281, 65534, 65535]);
    const sample = { ...coco, annotations: coco.annotations.filter((a: any) => some.has(a.tabfarm_instance)) };
    const sampleRecord = { ...records[0]!, instances: records[0]!.instances!.filter((i) => some.has(i.id)) };
    checkAnnotations(sample, [sampleRecord], idsFilesOf(frames));
    for (const a of coco.annotations) assert.deepEqual([a.bbox.slice(2), a.area], [[1, 1], 1]);
  });

  it("a 4096×4096 frame: corner pixels and a big block, RLE as pycocotools decodes it", async () => {
    const width = 4096;
    const height = 4096;
    const ids = idsFrom(width, height, (x, y) => ((x === 0 || x === width - 1) && (y === 0 || y === height - 1) ? 1 : x >= 1000 && x < 3001 && y >= 7 && y < 4000 ? 2 : 0));
    const frames: FrameSpec[] = [{ job: "huge", frame: 0, width, height, ids, labels: { 1: { label: "corner", class: 1 }, 2: { label: "block", class: 2 } } }];
    const out = fresh("huge");
    const records = await makeDataset(out, frames, [{ id: 1, label: "corner" }, { id: 2, label: "block" }]);
    const file = fresh("coco") + ".json";
    assert.equal((await exportDataset({ out, coco: file })).code, 0);
    checkAnnotations(JSON.parse(fs.readFileSync(file, "utf8")), records, idsFilesOf(frames));
  });

  it("labels with quotes, backslashes, newlines, control characters and non-BMP text: the JSON parses in Python and keeps them", async () => {
    const names = ['say "hi"', "back\\slash", "two\nlines", "tab\tand\u0001", "ünïcødé 漢字 🚗", "</script>"];
    const labels: Labels = Object.fromEntries(names.map((label, i) => [i + 1, { label, class: i + 1 }]));
    const frames: FrameSpec[] = [{ job: "labels", frame: 0, width: names.length, height: 1, ids: idsFrom(names.length, 1, (x) => x + 1), labels }];
    const out = fresh("labels");
    await makeDataset(out, frames, names.map((label, i) => ({ id: i + 1, label })));
    const file = fresh("coco") + ".json";
    assert.equal((await exportDataset({ out, coco: file })).code, 0);
    const coco = python("import json,sys; print(json.dumps(json.load(open(json.load(sys.stdin), encoding='utf-8'))))", file);
    assert.deepEqual(coco.categories.map((c: any) => c.name), names);
    assert.deepEqual(coco.annotations.map((a: any) => a.category_id), names.map((_, i) => i + 1));
  });

  it("a dataset with no line: valid COCO JSON with no image, annotation or category", async () => {
    const empty = fresh("empty");
    await (await openDataset(empty, { log: () => {} })).close();
    const file = fresh("coco") + ".json";
    assert.equal((await exportDataset({ out: empty, coco: file })).code, 0);
    const coco = python("import json,sys; print(json.dumps(json.load(open(json.load(sys.stdin)))))", file);
    assert.deepEqual([coco.images, coco.annotations, coco.categories], [[], [], []]);
  });

  it("every annotation's category_id is one of the categories, also for an instance whose label no class table takes (blank, too long)", async () => {
    // verify passes these: a line's label is only checked to be a string; frameClasses skips labels a class table refuses.
    const labels: Labels = { 1: { label: " ", class: 7 }, 2: { label: "x".repeat(300), class: 8 }, 3: { label: "ok", class: 1 } };
    const frames: FrameSpec[] = [{ job: "j", frame: 0, width: 3, height: 1, ids: idsFrom(3, 1, (x) => x + 1), labels }];
    const out = fresh("dangling");
    await makeDataset(out, frames, [{ id: 1, label: "ok" }]);
    const file = fresh("coco") + ".json";
    assert.equal((await exportDataset({ out, coco: file })).code, 0);
    const coco = JSON.parse(fs.readFileSync(file, "utf8"));
    const categories = new Set(coco.categories.map((c: any) => c.id));
    for (const a of coco.annotations) assert.ok(categories.has(a.category_id), `annotation ${a.id}: category ${a.category_id} is in categories ${[...categories]}`);
    // Named by the class table, else by a label a class table would take, else "class <id>"; all three annotated.
    assert.deepEqual(coco.categories.map((c: any) => [c.id, c.name]), [[1, "ok"], [7, "class 7"], [8, "class 8"]]);
    assert.deepEqual(coco.annotations.map((a: any) => [a.tabfarm_instance, a.category_id]), [[1, 7], [2, 8], [3, 1]]);
  });

  it("a class not in manifest.json's table is named by an instance's usable label, wherever in the lines it comes", async () => {
    const frames: FrameSpec[] = [
      { job: "j", frame: 0, width: 2, height: 1, ids: idsFrom(2, 1, (x) => x + 1), labels: { 1: { label: " ", class: 4 }, 2: { label: "from the table", class: 5 } } },
      { job: "j", frame: 1, width: 1, height: 1, ids: idsFrom(1, 1, () => 1), labels: { 1: { label: "dog", class: 4 } } },
    ];
    const out = fresh("late-label");
    await makeDataset(out, frames, [{ id: 5, label: "from the table" }]);
    const file = fresh("coco") + ".json";
    assert.equal((await exportDataset({ out, coco: file })).code, 0);
    const coco = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.deepEqual(coco.categories.map((c: any) => [c.id, c.name]), [[4, "dog"], [5, "from the table"]]);
  });

  it("an instance with a class but no label is annotated (its class is a category); one with a label but no class is not called unlabelled", async () => {
    const labels: Labels = { 1: { class: 1 }, 2: { label: "crate" }, 3: { label: "crate", class: 1 } };
    const frames: FrameSpec[] = [{ job: "j", frame: 0, width: 3, height: 1, ids: idsFrom(3, 1, (x) => x + 1), labels }];
    const out = fresh("halves");
    await makeDataset(out, frames, [{ id: 1, label: "crate" }]);
    const file = fresh("coco") + ".json";
    const { code, log } = await exportDataset({ out, coco: file });
    assert.equal(code, 0);
    const coco = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.ok(coco.annotations.some((a: any) => a.tabfarm_instance === 1 && a.category_id === 1), "class 1 without a label: category 1 (crate, from the class table)");
    assert.doesNotMatch(log.join("\n"), /2 instances have no label/, "instance 2 has a label");
    assert.deepEqual(coco.annotations.map((a: any) => a.tabfarm_instance), [1, 3], "instance 2 (no class) is left out");
    assert.match(log.join("\n"), /export: 1 instances have a label but no class \(their lines were not written by a farm\): left out of COCO/);
    assert.doesNotMatch(log.join("\n"), /no class \(no label\)/, "no instance lacks both");
  });
});

// ---------- targets ----------

describe("export targets that are odd", () => {
  let out: string;
  before(async () => {
    out = fresh("targets");
    await makeOneFrameDataset(out);
  });

  it("--coco a folder, a FIFO, /dev/null, or the same path as --webdataset or a shard in it: refused, nothing written", async () => {
    const folder = fresh("folder");
    fs.mkdirSync(folder);
    const fifo = fresh("fifo");
    execFileSync("mkfifo", [fifo]);
    const dest = fresh("wds");
    for (const options of [{ coco: folder }, { coco: fifo }, { coco: "/dev/null" }, { webdataset: dest, coco: dest }, { webdataset: dest, coco: path.join(dest, "shard-000000.tar") }, { webdataset: "/dev/null" }]) {
      await assert.rejects(exportDataset({ out, overwrite: true, ...options }), ExportRefused, JSON.stringify(options));
    }
    assert.ok(!fs.existsSync(dest));
    assert.deepEqual(fs.readdirSync(folder), []);
  });

  it("a stale FILE.json.partial that is a link (symbolic or hard) into the dataset is not written through (the dataset is untouched)", async () => {
    const changed: string[] = [];
    for (const [victim, link] of [[RUN_MANIFEST_FILE, fs.symlinkSync], ["frames.jsonl", fs.symlinkSync], [RUN_MANIFEST_FILE, fs.linkSync]] as const) {
      const copy = fresh("victim");
      fs.cpSync(out, copy, { recursive: true }); // its own copy: the export may wreck it
      const file = fresh("coco") + ".json";
      const bytes = fs.readFileSync(path.join(copy, victim));
      link(path.join(copy, victim), `${file}.partial`);
      await exportDataset({ out: copy, coco: file, overwrite: true }).catch(() => undefined);
      if (!fs.readFileSync(path.join(copy, victim)).equals(bytes)) changed.push(`${victim} (${link.name})`);
    }
    assert.deepEqual(changed, [], "dataset files written through the link");
  });

  it("--overwrite and an export that fails: the old shards stay (they are replaced only once the new ones are all written)", async () => {
    const dest = fresh("wds");
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(dest, "shard-000000.tar"), "old");
    fs.writeFileSync(path.join(dest, "shard-000007.tar"), "old");
    const changed = fresh("changed");
    fs.cpSync(out, changed, { recursive: true });
    fs.rmSync(path.join(changed, "images", "j", "000000.mask.png"));
    await assert.rejects(writeWebDataset(changed, dest, { shardBytes: 1e9, overwrite: true, index: verified(changed, 1) }), /000000\.mask\.png: is missing/);
    assert.deepEqual(fs.readdirSync(dest).sort(), ["shard-000000.tar", "shard-000007.tar"]);
    assert.equal(fs.readFileSync(path.join(dest, "shard-000000.tar"), "utf8"), "old");
    await writeWebDataset(out, dest, { shardBytes: 1e9, overwrite: true, index: verified(out, 1) });
    assert.deepEqual(fs.readdirSync(dest), ["shard-000000.tar"], "all old shards replaced");
  });

  it("a killed export's staging folder is removed by the next export into DEST; nothing else with a like name is", async () => {
    const dest = fresh("wds");
    const stale = path.join(dest, ".tabfarm-export-99999999-0123abcd"); // no such process
    fs.mkdirSync(stale, { recursive: true });
    fs.writeFileSync(path.join(stale, "shard-000000.tar"), "half");
    const outside = fresh("outside");
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "keep"), "");
    fs.symlinkSync(outside, path.join(dest, ".tabfarm-export-99999998-0123abcd")); // a link: not ours
    fs.mkdirSync(path.join(dest, ".tabfarm-export-x")); // not a staging name
    assert.equal((await exportDataset({ out, webdataset: dest })).code, 0);
    assert.deepEqual(fs.readdirSync(dest).sort(), [".tabfarm-export-99999998-0123abcd", ".tabfarm-export-x", "shard-000000.tar"]);
    assert.deepEqual(fs.readdirSync(outside), ["keep"]);
  });

  it("--webdataset the parent of --out, with --overwrite: shards beside the dataset, the dataset untouched", async () => {
    const parent = fresh("parent");
    const inner = path.join(parent, "out");
    fs.cpSync(out, inner, { recursive: true });
    const { code } = await exportDataset({ out: inner, webdataset: parent, overwrite: true });
    assert.equal(code, 0);
    assert.deepEqual(fs.readdirSync(parent).sort(), ["out", "shard-000000.tar"]);
    assert.equal((await verifyDataset(inner)).problemCount, 0);
  });

  it("--coco FILE and --webdataset DEST whose paths or lock files overlap (DEST = FILE.lock or under it, FILE = DEST's lock, DEST under FILE): refused naming both, nothing made", async () => {
    const where = fresh("overlap");
    fs.mkdirSync(where);
    const file = path.join(where, "coco.json");
    const dest = path.join(where, "wds");
    for (const [webdataset, coco] of [
      [cocoFileLock(file), file], [path.join(cocoFileLock(file), "wds"), file], [path.join(file, "wds"), file],
      [dest, shardFolderLock(dest)], [dest, path.join(dest, ".tabfarm-export")], [dest, path.join(dest, "sub", "coco.json")],
    ]) {
      await assert.rejects(exportDataset({ out, webdataset, coco }), (err: Error) =>
        err instanceof ExportRefused && err.message.startsWith(`--coco ${coco} and --webdataset ${webdataset}: `) && /overlap/.test(err.message), `${webdataset} ${coco}`);
      assert.deepEqual(fs.readdirSync(where), [], `${webdataset} ${coco}: nothing made`);
    }
  });

  it("--coco with a trailing slash names a folder: not written as a file of that name", async () => {
    const dir = fresh("slash");
    await assert.rejects(exportDataset({ out, coco: `${dir}/` }), /--coco .*: names a folder \(it ends in "\/"\)/);
    assert.ok(!fs.existsSync(dir) || fs.statSync(dir).isDirectory(), `${dir}/ was written as a file`);
  });
});

describe("--shard-size, hostile", () => {
  it("decimals give exactly the bytes they say (no floating-point floor)", () => {
    for (const [text, bytes] of [["1.001KB", 1001], ["1.003KB", 1003], ["4.35MB", 4_350_000], ["2.3MB", 2_300_000], ["0.001MB", 1000], ["1.000001GB", 1_000_001_000]] as const) {
      assert.equal(parseShardSize(text), bytes, text);
    }
  });

  it("refuses digits other than ASCII (Arabic-Indic, full-width) and a Unicode minus", () => {
    for (const text of ["١GB", "１GB", "٣٠٠٠", "−1GB", "1E3KB"]) assert.throws(() => parseShardSize(text), /is not a size/, text);
  });
});

describe("an export stopped by a signal", () => {
  it("an export whose AbortSignal is aborted throws its reason and leaves no shard, no COCO file, no partial file", async () => {
    const out = fresh("aborted");
    await makeDataset(out, [{ job: "j", frame: 0, width: 2, height: 1, ids: idsFrom(2, 1, () => 1), labels: { 1: { label: "a", class: 1 } } }], [{ id: 1, label: "a" }]);
    const stop = new AbortController();
    stop.abort(new Error("stopped by a test"));
    const dest = fresh("wds");
    await assert.rejects(writeWebDataset(out, dest, { shardBytes: 1e9, overwrite: false, index: verified(out, 1), signal: stop.signal }), /stopped by a test/);
    assert.ok(!fs.existsSync(dest));
    const coco = fresh("coco") + ".json";
    await assert.rejects(writeCoco(out, coco, { index: verified(out, 1), signal: stop.signal }), /stopped by a test/);
    assert.ok(!fs.existsSync(coco) && !fs.existsSync(`${coco}.partial`));
    const parent = fresh("made");
    await assert.rejects(exportDataset({ out, webdataset: path.join(parent, "wds"), coco: path.join(parent, "c", "coco.json"), signal: stop.signal }), /stopped by a test/);
    assert.ok(!fs.existsSync(parent), "the folders it made are removed");
  });

  // Shards are written into a staging folder in DEST (moved into DEST only when all are written): the
  // third shard there shows the export is mid-way.
  const stagedShard = (dest: string, name: string) => {
    const staging = fs.existsSync(dest) ? fs.readdirSync(dest).find((n) => n.startsWith(".tabfarm-export-")) : undefined;
    return staging !== undefined && fs.existsSync(path.join(dest, staging, name));
  };
  async function exportUntilMidway(out: string, dest: string) {
    const { child, output } = spawnFarmCli(["export", "--out", out, "--webdataset", dest, "--shard-size", "1KB"]);
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on("exit", (code, sig) => resolve({ code, signal: sig })));
    // Bounded wait for the third shard.
    for (let i = 0; i < 600 && !stagedShard(dest, "shard-000002.tar"); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(stagedShard(dest, "shard-000002.tar"), `shards were being written: ${output()}`);
    return { child, output, exited };
  }
  let out: string;
  before(async () => {
    out = fresh("signals");
    const frames: FrameSpec[] = Array.from({ length: 300 }, (_, i) => ({ job: `j${i % 3}`, frame: Math.floor(i / 3), width: 24, height: 16 }));
    await makeDataset(out, frames);
  });

  it("SIGTERM or SIGINT mid-export: exits 128 + the signal and leaves no shard (finished ones would pass for a whole export), no partial file, not the folder it made", async () => {
    const left: Record<string, string[] | "no folder"> = {};
    for (const [signal, exitCode] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
      const dest = fresh("wds");
      const { child, output, exited } = await exportUntilMidway(out, dest);
      child.kill(signal);
      const { code } = await exited;
      assert.equal(code, exitCode, `${signal}: ${output()}`);
      assert.match(output(), /export stopped by SIG(TERM|INT); what it had not finished was removed/);
      left[signal] = fs.existsSync(dest) ? fs.readdirSync(dest).sort() : "no folder";
    }
    assert.deepEqual(left, { SIGTERM: "no folder", SIGINT: "no folder" }, "what each stopped export left");
  });

  it("a farm started while an export runs is refused, naming the export's pid (the export holds the dataset's lock); the export goes on", async () => {
    const dest = fresh("wds");
    const { child, output, exited } = await exportUntilMidway(out, dest);
    try {
      await assert.rejects(openDataset(out, { create: false, log: () => {} }), (err: Error) =>
        err instanceof DatasetLockedError && err.message.includes(`in use by another tabfarm (pid ${child.pid} on host ${os.hostname()}`));
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal((await exited).code, 143, output());
    await (await openDataset(out, { create: false, log: () => {} })).close(); // the stopped export released it
  });

  it("SIGKILL mid-export: no shard in DEST (only the staging folder and the lock); the next export takes the lock over, removes that folder and writes a whole export", async () => {
    const dest = fresh("wds");
    const { child, exited } = await exportUntilMidway(out, dest);
    child.kill("SIGKILL");
    await exited;
    const left = fs.readdirSync(dest);
    assert.equal(left.filter((n) => n.startsWith("shard-")).length, 0, `no shard in DEST: ${left}`);
    assert.equal(left.filter((n) => /^\.tabfarm-export-\d+-[0-9a-f]{8}$/.test(n)).length, 1, `the staging folder: ${left}`);
    assert.equal(JSON.parse(fs.readFileSync(path.join(dest, ".tabfarm-export.lock"), "utf8")).pid, child.pid, "its lock, naming a process that is gone");
    const { code } = await exportDataset({ out, webdataset: dest, shardSize: "1KB" });
    assert.equal(code, 0);
    const names = fs.readdirSync(dest);
    assert.equal(names.length, 300, "300 shards (one per 1KB sample), the staging folder gone");
    assert.ok(names.every((n) => /^shard-\d{6}\.tar$/.test(n)));
  });
});

describe("export targets the file system can't hold", () => {
  it("--webdataset or --coco under /proc: exit 2 naming the target, not a spin at 100 % CPU (Node's recursive mkdir loops there)", async () => {
    const out = fresh("proc");
    await makeDataset(out, [{ job: "j", frame: 0, width: 2, height: 2 }]);
    const results = await Promise.all([["--webdataset", "/proc/tabfarm-hostile-wds"], ["--coco", "/proc/tabfarm-hostile/coco.json"]].map(async (target) => {
      const { child, output } = spawnFarmCli(["export", "--out", out, ...target]);
      const code = await new Promise<number | null | "still running">((resolve) => {
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve("still running");
        }, 30_000);
        child.on("exit", (exit) => {
          clearTimeout(timer);
          resolve(exit);
        });
      });
      return { target: target.join(" "), code, output: output().trim() };
    }));
    assert.deepEqual(results.map((r) => [r.target, r.code]), [["--webdataset /proc/tabfarm-hostile-wds", 2], ["--coco /proc/tabfarm-hostile/coco.json", 2]], JSON.stringify(results));
    for (const { target, output } of results) assert.match(output, /^tabfarm: .*\/proc\/tabfarm-hostile/m, target);
  });
});

describe("one export per target", () => {
  let out: string;
  let frames: number;
  before(async () => {
    out = fresh("claimed");
    // Masks to decode: a COCO export takes long enough for a file to appear while it writes.
    const specs: FrameSpec[] = Array.from({ length: 40 }, (_, i) => ({ job: "j", frame: i, width: 64, height: 48, ids: idsFrom(64, 48, (x) => (x % 3) + 1), labels: { 1: { label: "a", class: 1 }, 2: { label: "b", class: 2 }, 3: { label: "c", class: 3 } } }));
    frames = (await makeDataset(out, specs)).length;
  });
  /** Runs `then` once `ready()` holds, looking every millisecond (bounded: 20,000 looks). */
  async function when(ready: () => boolean, then: () => void): Promise<void> {
    for (let i = 0; i < 20_000 && !ready(); i++) await new Promise((resolve) => setTimeout(resolve, 1));
    assert.ok(ready(), "the export got that far");
    then();
  }

  it("a target another live export has claimed is refused before verify (ExportRefused naming its pid and lock file), and nothing of the other's is touched", async () => {
    const dest = fresh("wds");
    fs.mkdirSync(path.join(dest, `.tabfarm-export-${process.pid}-0123abcd`), { recursive: true });
    // A live export's claims: this process's own (a lock naming this pid but none of its claims is stale).
    const other = claimTarget(shardFolderLock(dest), "--webdataset", dest, "folder");
    const notADataset = fresh("nothing"); // verify would refuse it: the claim is refused first
    await assert.rejects(exportDataset({ out: notADataset, webdataset: dest }), (err: Error) =>
      err instanceof ExportRefused && err.message === `--webdataset ${dest}: another export (pid ${process.pid}) is writing into it; wait for it, or remove ${dest}/.tabfarm-export.lock if no export runs`);
    assert.deepEqual(fs.readdirSync(dest).sort(), [`.tabfarm-export-${process.pid}-0123abcd`, ".tabfarm-export.lock"]);

    const file = path.join(fresh("coco"), "coco.json");
    fs.mkdirSync(path.dirname(file));
    const otherCoco = claimTarget(cocoFileLock(file), "--coco", file, "file");
    fs.writeFileSync(`${file}.partial`, "being written");
    await assert.rejects(exportDataset({ out, coco: file }), (err: Error) =>
      err instanceof ExportRefused && err.message === `--coco ${file}: another export (pid ${process.pid}) is writing it; wait for it, or remove ${file}.lock if no export runs`);
    assert.equal(fs.readFileSync(`${file}.partial`, "utf8"), "being written", "the live export's partial file is not removed");
    assert.ok(!fs.existsSync(file));
    other.release();
    otherCoco.release();
  });

  it("with DEST claimed, a staging folder not its own is a dead export's, whatever pid it names: removed", async () => {
    const dest = fresh("wds");
    fs.mkdirSync(path.join(dest, `.tabfarm-export-${process.pid}-0123abcd`), { recursive: true });
    assert.equal((await exportDataset({ out, webdataset: dest })).code, 0);
    assert.deepEqual(fs.readdirSync(dest), ["shard-000000.tar"], "the staging folder and the lock gone");
  });

  it("shards that appear in DEST while an export writes (not an export's): refused without --overwrite, DEST left as it was", async () => {
    const dest = fresh("wds");
    const running = writeWebDataset(out, dest, { shardBytes: 1000, overwrite: false, index: verified(out, frames) });
    const staged = () => fs.existsSync(dest) && fs.readdirSync(dest).some((n) => n.startsWith(".tabfarm-export-") && n !== ".tabfarm-export.lock" && fs.existsSync(path.join(dest, n, "shard-000001.tar")));
    await when(staged, () => fs.writeFileSync(path.join(dest, "shard-000000.tar"), "copied in"));
    await assert.rejects(running, (err: Error) => err instanceof ExportRefused && /already holds 1 shard\(s\) \(shard-000000\.tar\); a new export must not mix with them/.test(err.message));
    assert.deepEqual(fs.readdirSync(dest), ["shard-000000.tar"]);
    assert.equal(fs.readFileSync(path.join(dest, "shard-000000.tar"), "utf8"), "copied in");
  });

  it("a COCO FILE that appears while an export writes it: refused without --overwrite, FILE kept, no partial file, no lock", async () => {
    const folder = fresh("coco");
    fs.mkdirSync(folder);
    const file = path.join(folder, "coco.json");
    const running = writeCoco(out, file, { index: verified(out, frames) });
    await when(() => fs.existsSync(`${file}.partial`), () => fs.writeFileSync(file, "someone's"));
    await assert.rejects(running, (err: Error) => err instanceof ExportRefused && err.message === `--coco ${file}: already exists; give another name, or --overwrite to replace it`);
    assert.deepEqual(fs.readdirSync(folder), ["coco.json"]);
    assert.equal(fs.readFileSync(file, "utf8"), "someone's");
  });
});

describe("export and a farm on the same dataset: export takes the dataset's lock", () => {
  let out: string;
  before(async () => {
    out = fresh("locked");
    await makeOneFrameDataset(out);
  });

  it("while a farm holds it (another process): exit 2 with the lock's message before verify, nothing written, the dataset untouched", async () => {
    const before = fs.readdirSync(out).sort();
    const farm = await openDataset(out, { create: false, log: () => {} }); // this process is the farm; the CLI is another
    const targets = fresh("targets");
    try {
      const { code, output } = await runFarmCli(["export", "--out", out, "--webdataset", path.join(targets, "wds"), "--coco", path.join(targets, "c", "coco.json")], 60_000);
      assert.equal(code, 2, output);
      assert.match(output, new RegExp(`^tabfarm: --out ${out}: the dataset is in use by another tabfarm \\(pid ${process.pid} on host `, "m"));
      assert.doesNotMatch(output, /verif/, "refused before verify");
    } finally {
      await farm.close();
    }
    assert.ok(!fs.existsSync(targets), "no folder, shard, COCO file or lock made");
    assert.deepEqual(fs.readdirSync(out).sort(), before, "the farm's files as it left them");
  });

  it("a missing or foreign --out is refused with verify's message, and gets no lock file", async () => {
    const foreign = fresh("foreign");
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, "notes.txt"), "mine");
    for (const [folder, message] of [[fresh("missing"), /no such folder/], [foreign, /not a tabfarm dataset|someone else/]] as const) {
      const err = await runExport({ out: folder, coco: path.join(fresh("c"), "coco.json") }, () => {}, () => {}).then(() => undefined, (e: Error) => e);
      const verifyErr = await verifyDataset(folder).then(() => undefined, (e: Error) => e);
      assert.equal(err?.message, verifyErr?.message);
      assert.match(String(err?.message), message);
    }
    assert.deepEqual(fs.readdirSync(foreign), ["notes.txt"]);
  });

  it("released when the export ends, written or refused (a farm can open the dataset; no holder left)", async () => {
    const dest = fresh("wds");
    assert.equal((await exportDataset({ out, webdataset: dest })).code, 0);
    await assert.rejects(exportDataset({ out, webdataset: dest }), ExportRefused); // shards there, no --overwrite
    await assert.rejects(exportDataset({ out, coco: "/proc/tabfarm-no/coco.json" }), ExportRefused);
    assert.ok(!fs.existsSync(path.join(out, LOCK_HOLDER_FILE)));
    await (await openDataset(out, { create: false, log: () => {} })).close();
  });
});

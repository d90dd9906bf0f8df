// `npm run farm -- export` as a user runs it, on one small dataset the farm CLI rendered with real Chromium
// (jobs "cars.v2" — a dot in the id — and "j1", 3 frames each with rgb, depth, mask, normal and boxes, labelled
// and unlabelled objects, --classes; and a 197-character job id with 65 dots — its escaped key is too long for a
// plain tar header, so tar-stream writes a pax one — one JPEG frame with its own layers depth32 and class).
// What export writes is read back independently: the shards by Python's tarfile, the COCO RLE masks by a
// decoder written in Python from pycocotools' maskApi.c (../pythonCoco.ts), against masks decoded here with sharp.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { runFarmCli } from "./cli.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { readFrameRecords } from "../../server/dataset/readDataset.js";
import { writeCoco } from "../../server/export/coco.js";
import { writeWebDataset } from "../../server/export/webdataset.js";
import { indexIdentity } from "../../server/export/exportSource.js";
import { pythonRle, type RleCase } from "../pythonCoco.js";

const W = 64;
const H = 48;
const world = (children: object[]) => ({ tag: "Group", key: "world", children: [{ tag: "AmbientLight", key: "amb", intensity: 1 }, { tag: "DirectionalLight", key: "sun", position: [2, 3, 4] }, ...children] });
const labelled = [
  { tag: "Box", key: "crate", label: "crate", position: [-1, 0, 0] },
  { tag: "Sphere", key: "ball", label: "ball", position: [1, 0, 0] },
];
const camera = (position: number[]) => ({ camera: { position, lookAt: [0, 0, 0] } });
const LONG_JOB = `odd.${"ab.".repeat(64)}z`;
const JOBS = [
  { id: "cars.v2", scene: world([...labelled, { tag: "Box", key: "plain", position: [0, 1.2, 0], scale: [0.5, 0.5, 0.5] }]), frames: [camera([0, 0, 5]), camera([1, 0.5, 5]), camera([-1, 1, 4])] },
  { id: "j1", scene: world(labelled), frames: [camera([0, 0, 5]), camera([2, 1, 5]), camera([0, 3, 4])] },
  { id: LONG_JOB, scene: world(labelled), frames: [camera([0, 1, 5])], format: "jpeg", layers: ["depth32", "class"] },
];
/** The members each sample must have, by job (the part of the name after the key). */
const MEMBERS: Record<string, string[]> = {
  "cars.v2": ["rgb.png", "depth.png", "mask.png", "normal.png", "json"],
  j1: ["rgb.png", "depth.png", "mask.png", "normal.png", "json"],
  [LONG_JOB]: ["rgb.jpg", "depth32.npy", "mask.png", "class.png", "json"],
};

let base: string;
let out: string;
let records: FrameRecord[];
/** The lines of frames.jsonl as written. */
let lines: string[];
before(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-export-"));
  out = path.join(base, "out");
  const jobs = path.join(base, "jobs.jsonl");
  fs.writeFileSync(jobs, JOBS.map((j) => JSON.stringify(j)).join("\n") + "\n");
  const { code, output } = await runFarmCli([
    "--sessions", "1", "--jobs", jobs, "--out", out, "--width", String(W), "--height", String(H), "--no-progress",
    "--layers", "rgb,depth,mask,normal,boxes", "--classes", "ball,crate",
  ]);
  assert.equal(code, 0, output);
  records = readFrameRecords(out);
  lines = fs.readFileSync(path.join(out, "frames.jsonl"), "utf8").split("\n").filter(Boolean);
  assert.equal(records.length, 7);
});
after(() => fs.rmSync(base, { recursive: true, force: true }));

const exportCli = (...args: string[]) => runFarmCli(["export", ...args], 120_000);

interface TarMember { name: string; size: number; mtime: number; mode: number; uid: number; gid: number; uname: string; gname: string; file: boolean; sha256: string; json?: unknown }
/** Every shard (.tar) of `dest` (sorted) as Python's tarfile reads it: its size and members in order. */
function readShards(dest: string): { name: string; size: number; members: TarMember[] }[] {
  const script = `
import hashlib, json, os, sys, tarfile
dest = sys.argv[1]
shards = []
for name in sorted(n for n in os.listdir(dest) if n.endswith(".tar")):
    members = []
    with tarfile.open(os.path.join(dest, name), "r:") as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isfile() else b""
            entry = dict(name=m.name, size=m.size, mtime=m.mtime, mode=m.mode, uid=m.uid, gid=m.gid, uname=m.uname, gname=m.gname,
                         file=m.isfile(), sha256=hashlib.sha256(data).hexdigest())
            if m.name.endswith(".json"): entry["json"] = json.loads(data)
            members.append(entry)
    shards.append(dict(name=name, size=os.path.getsize(os.path.join(dest, name)), members=members))
print(json.dumps(shards))
`;
  return JSON.parse(execFileSync("python3", ["-c", script, dest], { encoding: "utf8", maxBuffer: 64 * 2 ** 20 }));
}

/** What verify passed: the first `lines` lines of the frames.jsonl `root` has now. */
const verified = (root: string, lines: number) => ({ lines, identity: indexIdentity(root) });

const sha256 = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const keyOf = (r: FrameRecord) => `${r.job.replaceAll(".", "%2E")}/${String(r.frame).padStart(6, "0")}`;
/** WebDataset's split of a member name: the key is up to the first dot of the file name, the rest is the extension. */
const splitMember = (name: string) => /^((?:.*\/|)[^./]+)\.([^/]*)$/.exec(name)!.slice(1) as [string, string];

/** Checks that the shards hold every frame exactly once, whole, with its files' bytes and its record as json. */
function checkSamples(shards: ReturnType<typeof readShards>): void {
  const seen = new Map<string, { shard: string; exts: string[] }>();
  for (const shard of shards) {
    for (const m of shard.members) {
      assert.ok(m.file, `${m.name} is a plain file`);
      assert.deepEqual([m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname], [0, 0o644, 0, 0, "", ""], `${m.name}: reproducible entry fields`);
      const [key, ext] = splitMember(m.name);
      const sample = seen.get(key) ?? { shard: shard.name, exts: [] };
      assert.equal(sample.shard, shard.name, `${key}: all its members in one shard`);
      sample.exts.push(ext);
      seen.set(key, sample);
    }
  }
  assert.deepEqual([...seen.keys()], records.map(keyOf), "every (job, frame) once, in frames.jsonl order");
  for (const r of records) {
    const key = keyOf(r);
    assert.ok(!key.includes("."), `${key}: a key holds no dot`);
    assert.deepEqual(seen.get(key)!.exts, MEMBERS[r.job], key);
    const members = shards.flatMap((s) => s.members).filter((m) => m.name.startsWith(`${key}.`));
    const json = members.find((m) => m.name === `${key}.json`)!;
    assert.deepEqual(json.json, r, `${key}.json is the frame's line`);
    assert.equal(json.sha256, crypto.createHash("sha256").update(lines[records.indexOf(r)]!).digest("hex"), `${key}.json: the line's bytes as is`);
    for (const m of members.filter((m) => !m.name.endsWith(".json"))) {
      const layer = splitMember(m.name)[1].split(".")[0] as keyof FrameRecord["layers"];
      assert.equal(m.sha256, sha256(path.join(out, r.layers[layer]!)), `${m.name} holds ${r.layers[layer]}`);
    }
  }
}

describe("export --webdataset (CLI)", () => {
  it("writes one shard holding every frame once with all its members, as Python's tarfile reads it; a second export is byte-identical", async () => {
    const dest = path.join(base, "wds-one");
    const { code, output } = await exportCli("--out", out, "--webdataset", dest);
    assert.equal(code, 0, output);
    assert.match(output, /export: .*wds-one: 1 shard\(s\), 7 sample\(s\), \d+ bytes/);
    const shards = readShards(dest);
    assert.deepEqual(shards.map((s) => s.name), ["shard-000000.tar"]);
    checkSamples(shards);
    assert.deepEqual(fs.readdirSync(dest), ["shard-000000.tar"], "no partial file left");

    const again = path.join(base, "wds-again");
    assert.equal((await exportCli("--out", out, "--webdataset", again)).code, 0);
    assert.ok(fs.readFileSync(path.join(dest, "shard-000000.tar")).equals(fs.readFileSync(path.join(again, "shard-000000.tar"))), "byte-identical");
  });

  it("a small --shard-size gives several shards of whole samples, none over the size unless it holds one sample", async () => {
    // Sample sizes in the tar: a 512-byte header per member, data padded to 512; a shard adds 1024 bytes at its end.
    const sampleBytes = records.map((r) =>
      [...Object.values(r.layers).map((f) => fs.statSync(path.join(out, f)).size), Buffer.byteLength(JSON.stringify(r))]
        .reduce((sum, size) => sum + 512 + Math.ceil(size / 512) * 512, 0));
    const size = Math.max(...sampleBytes) * 2 + 1024; // at least two samples fit in a shard
    for (const [shardSize, atLeast] of [[String(size), 2], ["1KB", 7], [`${(size / 1024).toFixed(3)}KiB`, 2]] as const) {
      const dest = fs.mkdtempSync(path.join(base, "wds-small-"));
      const { code, output } = await exportCli("--out", out, "--webdataset", dest, "--shard-size", shardSize);
      assert.equal(code, 0, output);
      const shards = readShards(dest);
      assert.ok(shards.length >= atLeast && shards.length < 7 + 1, `${shardSize}: ${shards.length} shards`);
      assert.deepEqual(shards.map((s) => s.name), shards.map((_, i) => `shard-${String(i).padStart(6, "0")}.tar`));
      const limit = shardSize === "1KB" ? 1000 : Math.floor(Number(shardSize.replace("KiB", "")) * (shardSize.endsWith("KiB") ? 1024 : 1));
      for (const shard of shards) {
        const samples = new Set(shard.members.map((m) => splitMember(m.name)[0])).size;
        assert.ok(shard.size <= limit || samples === 1, `${shardSize}: ${shard.name} is ${shard.size} bytes with ${samples} samples`);
      }
      checkSamples(shards);
      if (shardSize === "1KB") assert.equal(shards.length, 7, "each sample bigger than 1 KB: a shard each");
      else assert.ok(shards.some((s) => new Set(s.members.map((m) => splitMember(m.name)[0])).size >= 2), "shards hold several samples");
      assert.match(output, new RegExp(`${shards.length} shard\\(s\\), 7 sample\\(s\\), ${shards.reduce((n, s) => n + s.size, 0)} bytes`));
    }
  });

  it("refuses a folder holding shards already (exit 2, nothing touched) unless --overwrite, which removes only old shards", async () => {
    const dest = path.join(base, "wds-stale");
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(dest, "shard-000042.tar"), "stale");
    fs.writeFileSync(path.join(dest, "notes.txt"), "mine");
    const refused = await exportCli("--out", out, "--webdataset", dest);
    assert.equal(refused.code, 2, refused.output);
    assert.match(refused.output, /tabfarm: --webdataset .*wds-stale: already holds 1 shard\(s\) \(shard-000042\.tar\); a new export must not mix with them: give another folder, or --overwrite/);
    assert.deepEqual(fs.readdirSync(dest).sort(), ["notes.txt", "shard-000042.tar"]);

    const { code, output } = await exportCli("--out", out, "--webdataset", dest, "--overwrite");
    assert.equal(code, 0, output);
    assert.deepEqual(fs.readdirSync(dest).sort(), ["notes.txt", "shard-000000.tar"]);
    assert.equal(fs.readFileSync(path.join(dest, "notes.txt"), "utf8"), "mine");
    checkSamples(readShards(dest));
  });
});

/** The annotations whose RLE does not decode (pycocotools' rules, ../pythonCoco.ts) to the instance's pixels of its mask. */
function pythonRleMismatches(cases: RleCase[]): string[] {
  return pythonRle(cases).flatMap((result, i) => (result.decodesRight ? [] : [`${cases[i]!.ids} id ${cases[i]!.id}`]));
}

describe("export --coco (CLI)", () => {
  it("images per frame, an annotation per labelled instance with its bbox, area and RLE mask, categories from the class table", async () => {
    const file = path.join(base, "coco", "train.json"); // its folder is created
    const { code, output } = await exportCli("--out", out, "--coco", file);
    assert.equal(code, 0, output);
    const unlabelled = records.flatMap((r) => r.instances ?? []).filter((i) => i.label === undefined).length;
    assert.ok(unlabelled >= 1, "the scene has an unlabelled object in view");
    assert.match(output, new RegExp(`export: ${unlabelled} instances have no class \\(no label\\): left out of COCO \\(give elements a "label"\\)`));
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["train.json"], "no partial file left");
    const coco = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.deepEqual(coco.categories, [{ id: 1, name: "ball", supercategory: "" }, { id: 2, name: "crate", supercategory: "" }]);
    assert.deepEqual(coco.licenses, []);
    assert.equal(typeof coco.info.date_created, "string");
    assert.deepEqual(coco.images, records.map((r, i) => ({ id: i + 1, file_name: r.file, width: W, height: H, tabfarm_job: r.job, tabfarm_frame: r.frame })));

    const expected = records.flatMap((r, i) => (r.instances ?? []).filter((inst) => inst.class !== undefined).map((inst) => ({ r, imageId: i + 1, inst })));
    assert.equal(coco.annotations.length, expected.length);
    assert.match(output, new RegExp(`train\\.json: 7 image\\(s\\), ${expected.length} annotation\\(s\\), 2 categories`));
    const cases: Parameters<typeof pythonRleMismatches>[0] = [];
    for (const [n, { r, imageId, inst }] of expected.entries()) {
      const a = coco.annotations[n];
      assert.deepEqual(
        { id: a.id, image_id: a.image_id, category_id: a.category_id, bbox: a.bbox, area: a.area, iscrowd: a.iscrowd, tabfarm_instance: a.tabfarm_instance, tabfarm_key: a.tabfarm_key },
        { id: n + 1, image_id: imageId, category_id: inst.class, bbox: inst.bbox, area: inst.pixels, iscrowd: 0, tabfarm_instance: inst.id, tabfarm_key: inst.key },
      );
      assert.deepEqual(a.segmentation.size, [H, W]);
      const raw = path.join(base, `mask-${imageId}.u16`);
      if (!fs.existsSync(raw)) fs.writeFileSync(raw, await sharp(path.join(out, r.layers.mask!)).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer());
      cases.push({ counts: a.segmentation.counts, width: W, height: H, ids: raw, id: inst.id });
    }
    assert.deepEqual(pythonRleMismatches(cases), []);
    // The check itself catches a wrong mask: the same RLEs against another id.
    assert.equal(pythonRleMismatches(cases.map((c) => ({ ...c, id: c.id + 1 }))).length, cases.length);

    const again = await exportCli("--out", out, "--coco", file);
    assert.equal(again.code, 2, again.output);
    assert.match(again.output, /tabfarm: --coco .*train\.json: already exists; give another name, or --overwrite to replace it/);
    const replaced = await exportCli("--out", out, "--coco", file, "--overwrite");
    assert.equal(replaced.code, 0, replaced.output);
  });
});

describe("an export cut short", () => {
  it("leaves no shard and no COCO file (a file gone, or lines, after verify): finished shards are removed too", async () => {
    const changed = path.join(base, "changed");
    fs.cpSync(out, changed, { recursive: true });
    // A frame near the end (lines of one job land in the order its frames finished, so it is named from its line).
    const gone = records.at(-2)!.layers.mask!;
    fs.rmSync(path.join(changed, gone));
    const missing = new RegExp(`${path.basename(gone).replaceAll(".", "\\.")}: is missing`);
    const dest = path.join(base, "wds-cut");
    await assert.rejects(writeWebDataset(changed, dest, { shardBytes: 1000, overwrite: false, index: verified(changed, records.length) }), missing);
    assert.ok(!fs.existsSync(dest), "the shards written before the fault are removed, the partial one, and the folder it made");
    const file = path.join(base, "cut.json");
    await assert.rejects(writeCoco(changed, file, { index: verified(changed, records.length) }), missing);
    assert.ok(!fs.existsSync(file) && !fs.existsSync(`${file}.partial`));
    // frames.jsonl shorter than when it was verified.
    fs.mkdirSync(dest);
    await assert.rejects(writeWebDataset(out, dest, { shardBytes: 1e9, overwrite: false, index: verified(out, records.length + 1) }), /has 7 line\(s\), but verify read 8 \(the dataset changed after it was verified\)/);
    assert.deepEqual(fs.readdirSync(dest), [], "a folder it did not make is left, empty");
  });
});

describe("export refuses", () => {
  it("a dataset verify fails: exit 1, the problem listed, nothing written", async () => {
    const broken = path.join(base, "broken");
    fs.cpSync(out, broken, { recursive: true });
    const mask = path.join(broken, records[1]!.layers.mask!);
    fs.truncateSync(mask, fs.statSync(mask).size - 16);
    const dest = path.join(base, "wds-broken");
    const file = path.join(base, "broken.json");
    const { code, output } = await exportCli("--out", broken, "--webdataset", dest, "--coco", file);
    assert.equal(code, 1, output);
    const escaped = records[1]!.layers.mask!.replace(/[.]/g, "\\.");
    assert.match(output, new RegExp(`^frames\\.jsonl:2: ${escaped}: mask layer: .*truncated`, "m"));
    assert.match(output, /export reads only a dataset that `verify` passes: fix or re-render, then export again/);
    assert.ok(!fs.existsSync(dest) && !fs.existsSync(file) && !fs.existsSync(`${file}.partial`), "nothing written");
  });

  it("bad options and targets: exit 2 naming them, nothing written", async () => {
    const dest = path.join(base, "wds-never");
    const cases: [string[], RegExp][] = [
      [["--webdataset", dest, "--shard-size", "1e9"], /tabfarm: --shard-size: '1e9' is not a size: give bytes, or a number with B, KB, MB, GB, TB/],
      [["--webdataset", dest, "--shard-size", "999"], /tabfarm: --shard-size: '999' is 999 bytes; a shard size is from 1KB \(1000 bytes\) to 1TB/],
      [["--webdataset", path.join(out, "shards")], /tabfarm: --webdataset .*out\/shards: is inside the dataset folder .*out; write exports elsewhere/],
      [["--coco", path.join(out, "images", "coco.json")], /tabfarm: --coco .*coco\.json: is inside the dataset folder/],
      [[], /tabfarm: export: give --webdataset DEST, --coco FILE\.json, or both/],
    ];
    for (const [args, message] of cases) {
      const { code, output } = await exportCli("--out", out, ...args);
      assert.equal(code, 2, `${args.join(" ")}: ${output}`);
      assert.match(output, message);
    }
    // Through a link to a folder inside the dataset, too.
    fs.symlinkSync(path.join(out, "images"), path.join(base, "link-in"));
    const linked = await exportCli("--out", out, "--webdataset", path.join(base, "link-in", "shards"));
    assert.equal(linked.code, 2, linked.output);
    assert.match(linked.output, /is inside the dataset folder/);
    const notDataset = await exportCli("--out", path.join(base, "nowhere"), "--coco", path.join(base, "x.json"));
    assert.equal(notDataset.code, 2, notDataset.output);
    assert.match(notDataset.output, /tabfarm: --out .*nowhere: no such folder/);
    assert.ok(!fs.existsSync(dest) && !fs.existsSync(path.join(out, "shards")) && !fs.existsSync(path.join(base, "x.json")));
    assert.equal(readFrameRecords(out).length, 7);
  });
});

// `verify` (server/dataset/verifyDataset.ts) on real datasets: a real SQLite queue opened by the
// project's openDataset, real files made with sharp, lines in the LAYERS_SPEC format. A good dataset
// has no problems; each fault is made on its own copy and must be found, named by file (and line).
import assert from "node:assert/strict";
import fs from "node:fs";
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import sharp from "sharp";
import zlib from "node:zlib";
import { pngChunk } from "../../bench/fakeSessions.js";
import { openDataset, DatasetOpenError } from "../../server/dataset/openDataset.js";
import { formatProblem, npyProblem, verifyDataset, type VerifyReport } from "../../server/dataset/verifyDataset.js";
import { FRAMES_INDEX } from "../../server/dataset/readDataset.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import type { JobSpec } from "../../protocol/job.js";
import { npyHeader } from "../../server/capture/layers.js";
import { RUN_MANIFEST_FILE, RunManifest } from "../../server/dataset/RunManifest.js";
import { frameSeed } from "../../server/dataset/seeds.js";

const W = 8;
const H = 6;
let base: string;
let good: string;
let count = 0;

// ---------- a good synthetic dataset ----------

/** A .npy file of `values` (float32 LE) with the header the farm writes (server/capture/layers.ts), for `shape` and `descr`. */
const npy = (values: Float32Array, shape: number[], descr = "<f4") => Buffer.concat([npyHeader(descr, shape), Buffer.from(values.buffer, values.byteOffset, values.byteLength)]);

const grey16 = (ids: Uint16Array, w = W, h = H) => sharp(ids, { raw: { width: w, height: h, channels: 1 } }).toColourspace("grey16").png().toBuffer();
const rgb8 = (w = W, h = H, channels: 3 | 4 = 3) => sharp({ create: { width: w, height: h, channels, background: { r: 128, g: 128, b: 255, alpha: 1 } } }).png().toBuffer();
const grey8 = (w = W, h = H) => sharp(Buffer.alloc(w * h, 7), { raw: { width: w, height: h, channels: 1 } }).toColourspace("b-w").png().toBuffer();

/** Mask ids: id 1 in the box x 1..3, y 1..2; id 2 in x 5..6, y 3..5; 0 elsewhere. */
function maskIds(): Uint16Array {
  const ids = new Uint16Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (x >= 1 && x <= 3 && y >= 1 && y <= 2) ids[y * W + x] = 1;
      if (x >= 5 && x <= 6 && y >= 3 && y <= 5) ids[y * W + x] = 2;
    }
  }
  return ids;
}
/** The class image of maskIds: id 1 is a crate (class 1), id 2 is unlabelled. */
const classIds = () => maskIds().map((id) => (id === 1 ? 1 : 0));

const identity4 = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]];
const file = (job: string, frame: number, suffix: string, ext: string) => `images/${job}/${String(frame).padStart(6, "0")}${suffix ? `.${suffix}` : ""}.${ext}`;

/** A line as LAYERS_SPEC writes it, with every layer. */
function layeredRecord(job: string, frame: number): FrameRecord {
  const layers = {
    rgb: file(job, frame, "", "png"),
    depth: file(job, frame, "depth", "png"),
    depth32: file(job, frame, "depth32", "npy"),
    mask: file(job, frame, "mask", "png"),
    class: file(job, frame, "class", "png"),
    normal: file(job, frame, "normal", "png"),
  };
  return {
    job, frame, file: layers.rgb, width: W, height: H, format: "png", layers,
    depth_file: layers.depth, depth_scale: 0.001,
    K: [[10, 0, 4], [0, 10, 3], [0, 0, 1]], cameraToWorld: identity4,
    world_to_camera_opencv: { R: [[1, 0, 0], [0, -1, 0], [0, 0, -1]], t: [0, 0, 0] }, fov: 60, near: 0.1, far: 100,
    instances: [
      { id: 1, key: "box", label: "crate", class: 1, pixels: 6, bbox: [1, 1, 3, 2] },
      { id: 2, key: "ball", pixels: 6, bbox: [5, 3, 2, 3] },
    ],
    params: {}, session: "s1", render_ms: 1, encode_ms: 1, attempt: 1,
  };
}

/** A line written before layers: rgb (file) and depth (depth_file) only. */
function oldRecord(job: string, frame: number): FrameRecord {
  return {
    job, frame, file: file(job, frame, "", "png"), width: W, height: H, format: "png",
    depth_file: file(job, frame, "depth", "png"), depth_scale: 0.001,
    K: [[10, 0, 4], [0, 10, 3], [0, 0, 1]], cameraToWorld: identity4,
    params: { p: 1 }, session: "s1", render_ms: 1, encode_ms: 1, attempt: 1,
  } as unknown as FrameRecord;
}

/**
 * The good dataset: job "layered" (2 frames, every layer), job "old" (1 frame, pre-layers line with
 * depth), job "jpeg" (1 frame of jpeg rgb), job "waiting" (pending, no lines). All but "waiting" done.
 */
async function makeGoodDataset(out: string): Promise<void> {
  const dataset = await openDataset(out, { log: () => {} });
  try {
    const jobs: JobSpec[] = [{ id: "layered", frames: [{}, {}] }, { id: "old" }, { id: "jpeg" }, { id: "waiting" }];
    await dataset.queue.add(jobs);
    const depth32 = new Float32Array(W * H).fill(2.5);
    const records: FrameRecord[] = [];
    for (const frame of [0, 1]) {
      const r = layeredRecord("layered", frame);
      const l = r.layers as Record<string, string>;
      await dataset.writer.writeFile(l.rgb!, await rgb8(W, H, 4));
      await dataset.writer.writeFile(l.depth!, await grey16(new Uint16Array(W * H).fill(2500)));
      await dataset.writer.writeFile(l.depth32!, npy(depth32, [H, W]));
      await dataset.writer.writeFile(l.mask!, await grey16(maskIds()));
      await dataset.writer.writeFile(l.class!, await grey16(classIds()));
      await dataset.writer.writeFile(l.normal!, await rgb8());
      records.push(r);
    }
    const old = oldRecord("old", 0);
    await dataset.writer.writeFile(old.file, await rgb8());
    await dataset.writer.writeFile(old.depth_file as string, await grey16(new Uint16Array(W * H)));
    records.push(old);
    const jpeg = { ...oldRecord("jpeg", 0), file: file("jpeg", 0, "", "jpg"), format: "jpeg" } as FrameRecord;
    delete jpeg.depth_file;
    delete jpeg.depth_scale;
    await dataset.writer.writeFile(jpeg.file, await sharp({ create: { width: W, height: H, channels: 3, background: "#808080" } }).jpeg().toBuffer());
    records.push(jpeg);
    await dataset.writer.appendRecords(records);
    for (let i = 0; i < 3; i++) {
      const lease = await dataset.queue.take("s1");
      assert.ok(lease && lease.job.id !== "waiting");
      assert.equal(await dataset.queue.complete(lease.token), true);
    }
  } finally {
    await dataset.close();
  }
}

before(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-verify-test-"));
  good = path.join(base, "good");
  await makeGoodDataset(good);
});
after(() => fs.rmSync(base, { recursive: true, force: true }));

/** A copy of the good dataset to break. */
function copyOfGood(): string {
  const out = path.join(base, `copy${++count}`);
  fs.cpSync(good, out, { recursive: true });
  return out;
}

const lines = (out: string) => fs.readFileSync(path.join(out, FRAMES_INDEX), "utf8").split("\n").filter(Boolean);
const writeLines = (out: string, text: string[]) => fs.writeFileSync(path.join(out, FRAMES_INDEX), text.map((l) => `${l}\n`).join(""));
/** Rewrites line `n` (1-based) of frames.jsonl through `edit`. */
function editLine(out: string, n: number, edit: (record: FrameRecord) => void): void {
  const all = lines(out);
  const record = JSON.parse(all[n - 1]!) as FrameRecord;
  edit(record);
  all[n - 1] = JSON.stringify(record);
  writeLines(out, all);
}

/** A manifest.json with one run of these options. */
const manifest = (options: Record<string, unknown>) =>
  JSON.stringify({ format: "tabfarm-manifest", version: 1, tabfarm: "0.1.0", created: "2026-01-01T00:00:00Z", updated: "2026-01-01T00:00:00Z", layers: {}, classes: [], runs: [{ started: "2026-01-01T00:00:00Z", options, browsers: [] }] });

/** Verifies `out` and asserts exactly one problem, naming `file` (and `line`), whose message matches `pattern`. */
async function onlyProblem(out: string, expected: { file: string; line?: number; message: RegExp }): Promise<VerifyReport> {
  const report = await verifyDataset(out);
  assert.equal(report.problemCount, 1, `one problem expected, got:\n${report.problems.map(formatProblem).join("\n")}`);
  const [problem] = report.problems;
  assert.equal(problem!.file, expected.file);
  assert.equal(problem!.line, expected.line);
  assert.match(problem!.message, expected.message);
  return report;
}

// ---------- the tests ----------

describe("verify: a good dataset", () => {
  it("has no problems, and every file of every line was checked", async () => {
    const report = await verifyDataset(good);
    assert.deepEqual(report.problems, []);
    assert.equal(report.problemCount, 0);
    assert.equal(report.lines, 4);
    assert.equal(report.files, 6 + 6 + 2 + 1);
    assert.deepEqual([report.jobs, report.jobsDone], [4, 3]);
  });

  it("is left exactly as it was (verify writes nothing)", async () => {
    const out = copyOfGood();
    const listing = () =>
      (fs.readdirSync(out, { recursive: true }) as string[]).sort().map((name) => {
        const stat = fs.statSync(path.join(out, name));
        return `${name} ${stat.size} ${stat.mtimeMs}`;
      });
    const before = listing();
    await verifyDataset(out);
    assert.deepEqual(listing(), before);
  });
});

describe("verify: each fault on its own", () => {
  it("a truncated file", async () => {
    const out = copyOfGood();
    const rgb = path.join(out, "images/layered/000001.png");
    fs.truncateSync(rgb, fs.statSync(rgb).size - 20);
    await onlyProblem(out, { file: "images/layered/000001.png", line: 2, message: /truncated/ });
  });

  it("a PNG whose every CRC is right but whose image data inflates one row short (verify inflates every PNG, whoever sent it)", async () => {
    const out = copyOfGood();
    const rgb = path.join(out, "images/layered/000001.png");
    const original = fs.readFileSync(rgb);
    const ihdr = original.subarray(16, 29); // after the signature, IHDR's length and type
    const [width, height, colourType] = [ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ihdr[9]!];
    const rowBytes = 1 + width * (colourType === 6 ? 4 : 3);
    const short = zlib.deflateSync(Buffer.alloc(rowBytes * (height - 1)));
    fs.writeFileSync(rgb, Buffer.concat([original.subarray(0, 8), pngChunk("IHDR", ihdr), pngChunk("IDAT", short), pngChunk("IEND", Buffer.alloc(0))]));
    await onlyProblem(out, { file: "images/layered/000001.png", line: 2, message: new RegExp(`inflates to ${rowBytes * (height - 1)} bytes; ${width}×${height} needs ${rowBytes * height}`) });
  });

  it("a truncated 16-bit layer and a truncated jpeg", async () => {
    const out = copyOfGood();
    const mask = path.join(out, "images/layered/000000.mask.png");
    fs.truncateSync(mask, fs.statSync(mask).size - 30);
    const jpeg = path.join(out, "images/jpeg/000000.jpg");
    fs.truncateSync(jpeg, fs.statSync(jpeg).size - 10);
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map((p) => `${p.file}:${p.line}`).sort(), ["images/jpeg/000000.jpg:4", "images/layered/000000.mask.png:1"]);
    for (const p of report.problems) assert.match(p.message, /truncated|ends without/);
  });

  it("a missing file", async () => {
    const out = copyOfGood();
    fs.rmSync(path.join(out, "images/layered/000000.normal.png"));
    await onlyProblem(out, { file: "images/layered/000000.normal.png", line: 1, message: /^is missing$/ });
  });

  it("a missing job folder", async () => {
    const out = copyOfGood();
    fs.rmSync(path.join(out, "images/old"), { recursive: true });
    const report = await verifyDataset(out);
    assert.equal(report.problemCount, 2);
    for (const p of report.problems) assert.match(p.message, /is missing \(images\/old does not exist\)/);
  });

  it("a duplicated line", async () => {
    const out = copyOfGood();
    const all = lines(out);
    writeLines(out, [...all, all[0]!]);
    await onlyProblem(out, { file: FRAMES_INDEX, line: 5, message: /job layered frame 0 is also on line 1/ });
  });

  it("an 8-bit file where 16 bits are declared (depth)", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "images/old/000000.depth.png"), await grey8());
    await onlyProblem(out, { file: "images/old/000000.depth.png", line: 3, message: /IHDR says 8-bit samples of colour type 0; expected 16-bit/ });
  });

  it("an 8-bit mask, and an RGB normal where 16-bit grey is declared", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "images/layered/000001.mask.png"), await grey8());
    fs.writeFileSync(path.join(out, "images/layered/000001.class.png"), await rgb8());
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map((p) => p.file).sort(), ["images/layered/000001.class.png", "images/layered/000001.mask.png"]);
    assert.match(report.problems.find((p) => p.file.endsWith("mask.png"))!.message, /8-bit samples of colour type 0; expected 16-bit, colour type 0/);
    assert.match(report.problems.find((p) => p.file.endsWith("class.png"))!.message, /8-bit samples of colour type 2; expected 16-bit, colour type 0/);
  });

  it("a 16-bit normal where 8-bit RGB is declared", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "images/layered/000000.normal.png"), await grey16(maskIds()));
    await onlyProblem(out, { file: "images/layered/000000.normal.png", line: 1, message: /16-bit samples of colour type 0; expected 8-bit, colour type 2/ });
  });

  it("a mask id the metadata does not name", async () => {
    const out = copyOfGood();
    const ids = maskIds();
    ids[0] = 9; // top-left pixel
    fs.writeFileSync(path.join(out, "images/layered/000001.mask.png"), await grey16(ids));
    // The class image still says 0 there, which is right for an id that has no class.
    await onlyProblem(out, { file: "images/layered/000001.mask.png", line: 2, message: /holds id 9 \(1 pixel, first at \(0, 0\)\) that the line's instances do not name \(they name 1, 2\)/ });
  });

  it("a mask whose instance's pixel count or box is not what the line says", async () => {
    const out = copyOfGood();
    editLine(out, 1, (r) => {
      r.instances![0]!.pixels = 7;
      r.instances![1]!.bbox = [5, 3, 2, 2];
    });
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map((p) => p.message).sort(), [
      "has 6 pixels of id 1; the line's instances say 7",
      "has id 2 in the box [5, 3, 2, 3]; the line's instances say [5,3,2,2]",
    ]);
  });

  it("an instance the mask does not show", async () => {
    const out = copyOfGood();
    editLine(out, 2, (r) => r.instances!.push({ id: 3, key: "hidden", pixels: 1, bbox: [0, 0, 1, 1] }));
    await onlyProblem(out, { file: "images/layered/000001.mask.png", line: 2, message: /has no pixel of id 3 \(key "hidden"\)/ });
  });

  it("a class image that disagrees with the mask", async () => {
    const out = copyOfGood();
    const classes = classIds();
    classes[5 * W + 6] = 1; // where the mask has id 2 (unlabelled)
    fs.writeFileSync(path.join(out, "images/layered/000000.class.png"), await grey16(classes));
    await onlyProblem(out, { file: "images/layered/000000.class.png", line: 1, message: /has class 1 at \(6, 5\), where the mask has id 2, whose class in the line's instances is 0/ });
  });

  it("a seed that is not the frame's under the dataset's seed (a re-render would draw other values), and one that is no seed", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, RUN_MANIFEST_FILE), JSON.stringify({ ...JSON.parse(manifest({})), seed: 5 }));
    editLine(out, 1, (r) => void (r.seed = frameSeed(5, "layered", 0)));
    editLine(out, 2, (r) => void (r.seed = frameSeed(5, "layered", 0)));
    await onlyProblem(out, { file: FRAMES_INDEX, line: 2, message: /"seed" \d+ is not frame 1 of job layered's seed under the dataset's seed 5 \(manifest\.json\)/ });
    editLine(out, 2, (r) => void (r.seed = -1 as number));
    await onlyProblem(out, { file: FRAMES_INDEX, line: 2, message: /"seed" must be the frame's seed, a whole number from 0 to 281474976710655, got -1/ });
  });

  it("a wrong size", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "images/layered/000000.normal.png"), await rgb8(W + 1, H));
    await onlyProblem(out, { file: "images/layered/000000.normal.png", line: 1, message: /is 9×6, but 8×6 was asked for/ });
  });

  it("a line whose size disagrees with its files", async () => {
    const out = copyOfGood();
    editLine(out, 3, (r) => (r.height = H + 1));
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map((p) => p.file).sort(), ["images/old/000000.depth.png", "images/old/000000.png"]);
    for (const p of report.problems) assert.match(p.message, /is 8×6, but 8×7 was asked for/);
  });

  for (const [name, escaping, pattern] of [
    ["..", "../outside.png", /escapes the dataset folder/],
    ["../ in the middle", "images/../../outside.png", /escapes the dataset folder/],
    ["an absolute path", "/etc/passwd", /is an absolute path/],
    ["a backslash", "images\\layered\\000000.png", /backslash/],
    ["an empty part", "images//layered/000000.png", /not a plain relative path/],
    ["a Windows drive", "C:outside.png", /its part "C:outside.png" may hold only ASCII letters, digits and _ \. -/],
    ["a hidden name", "images/layered/.000000.normal.png", /its part ".000000.normal.png" must not start with \. or -/],
  ] as const) {
    it(`a path escaping --out: ${name}`, async () => {
      const out = copyOfGood();
      fs.writeFileSync(path.join(base, "outside.png"), await rgb8());
      editLine(out, 1, (r) => ((r.layers as Record<string, string>).normal = escaping));
      await onlyProblem(out, { file: escaping, line: 1, message: pattern });
    });
  }

  it("a symlink at a file, even to a good file inside --out", async () => {
    const out = copyOfGood();
    const normal = path.join(out, "images/layered/000000.normal.png");
    fs.rmSync(normal);
    fs.symlinkSync(path.join(out, "images/layered/000001.normal.png"), normal);
    await onlyProblem(out, { file: "images/layered/000000.normal.png", line: 1, message: /^is a symbolic link \(to .*000001\.normal\.png\); verify follows no links/ });
  });

  it("a symlink at a job folder", async () => {
    const out = copyOfGood();
    fs.renameSync(path.join(out, "images/old"), path.join(base, `moved${count}`));
    fs.symlinkSync(path.join(base, `moved${count}`), path.join(out, "images/old"));
    const report = await verifyDataset(out);
    assert.equal(report.problemCount, 2);
    for (const p of report.problems) assert.match(p.message, /is reached through images\/old, which is a symbolic link/);
  });

  it("a folder or a FIFO where a file should be (a FIFO without a writer does not block verify)", async () => {
    const out = copyOfGood();
    fs.rmSync(path.join(out, "images/layered/000000.normal.png"));
    fs.mkdirSync(path.join(out, "images/layered/000000.normal.png"));
    fs.rmSync(path.join(out, "images/layered/000001.normal.png"));
    assert.equal(spawnSync("mkfifo", [path.join(out, "images/layered/000001.normal.png")]).status, 0);
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map(formatProblem), [
      "frames.jsonl:1: images/layered/000000.normal.png: is not a regular file (a folder)",
      "frames.jsonl:2: images/layered/000001.normal.png: is not a regular file (a device, FIFO or socket)",
    ]);
  });

  it("a torn last line", async () => {
    const out = copyOfGood();
    fs.appendFileSync(path.join(out, FRAMES_INDEX), JSON.stringify(layeredRecord("layered", 1)).slice(0, 50));
    await onlyProblem(out, { file: FRAMES_INDEX, line: 5, message: /^torn last line: 50 byte\(s\) without a newline/ });
  });

  it("a whole last line without its newline", async () => {
    const out = copyOfGood();
    const index = path.join(out, FRAMES_INDEX);
    fs.writeFileSync(index, fs.readFileSync(index, "utf8").replace(/\n$/, ""));
    await onlyProblem(out, { file: FRAMES_INDEX, line: 4, message: /the last line ends without a newline/ });
  });

  it("a line that is not JSON in the middle, and one without a job", async () => {
    const out = copyOfGood();
    const all = lines(out);
    writeLines(out, [all[0]!, "{not json", all[1]!, all[2]!, '{"frame":0}', all[3]!]);
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map((p) => `${p.line}: ${p.message.slice(0, 10)}`), ["2: not JSON: ", '5: "job" must']);
  });

  it("a done job missing a frame", async () => {
    const out = copyOfGood();
    writeLines(out, lines(out).filter((l) => !(JSON.parse(l).job === "layered" && JSON.parse(l).frame === 1)));
    await onlyProblem(out, { file: FRAMES_INDEX, message: /^job layered is done in queue\.sqlite but frames\.jsonl has no line for frame 1 \(its spec lists 2 frames\)$/ });
  });

  it("a done job with no line at all, and a frame beyond its spec (manifest.json: declarative runs)", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "manifest.json"), manifest({ width: 8 }));
    writeLines(out, lines(out).filter((l) => JSON.parse(l).job !== "old"));
    editLine(out, 3, (r) => (r.frame = 1)); // job jpeg (one frame from the default camera) gets frame 1 instead of 0
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map(formatProblem), [
      "frames.jsonl:3: job jpeg has frame 1, but its spec lists no frames: one from the default camera",
      "frames.jsonl: job old is done in queue.sqlite but frames.jsonl has no line for frame 0 (its spec lists no frames: one from the default camera)",
      "frames.jsonl: job jpeg is done in queue.sqlite but frames.jsonl has no line for frame 0 (its spec lists no frames: one from the default camera)",
    ]);
  });

  it("lines of a job the queue does not mark done, or does not know", async () => {
    const out = copyOfGood();
    const all = lines(out);
    const waiting = JSON.parse(all[2]!);
    waiting.job = "waiting";
    const stranger = { ...waiting, job: "stranger" };
    writeLines(out, [...all, JSON.stringify(waiting), JSON.stringify(stranger)]);
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map(formatProblem), [
      "frames.jsonl:5: job waiting is pending in queue.sqlite, not done: only done jobs have lines",
      "frames.jsonl:6: job stranger is not in queue.sqlite: a line of a job the queue does not know",
    ]);
  });

  it("a .npy with a bad header, a wrong shape or dtype, or short data", async () => {
    const values = new Float32Array(W * H).fill(1);
    assert.equal(npyProblem(npy(values, [H, W]), W, H), undefined);
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.concat([Buffer.from("\x93NUMPX", "latin1"), npy(values, [H, W]).subarray(6)]), /no \\x93NUMPY magic/],
      [npy(values, [H, W], "<f8"), /dtype '<f8', not '<f4'/],
      [npy(values, [W, H]), /shape \(8, 6\), not \(6, 8\)/],
      [npy(values, [H, W]).subarray(0, -4), /188 bytes of data, not 192/],
      [(() => { const b = npy(values, [H, W]); b.write("{'descr'; garbage", 10, "latin1"); return b; })(), /its header is not \{'descr'/],
      [(() => { const b = npy(values, [H, W]); b.writeUInt16LE(60000, 8); return b; })(), /its header says 60000 bytes, but the file ends before/],
      [(() => { const b = npy(values, [H, W]); b[6] = 2; return b; })(), /format version 2\.0, not 1\.0/],
      [npy(new Float32Array(W * H).fill(Number.NaN), [H, W]), /has NaN at pixel \(0, 0\)/],
    ];
    for (const [bytes, pattern] of cases) assert.match(npyProblem(bytes, W, H) ?? "no problem", pattern);
    // And in a dataset, named by file and line.
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "images/layered/000001.depth32.npy"), npy(values, [H, W], "<f8"));
    await onlyProblem(out, { file: "images/layered/000001.depth32.npy", line: 2, message: /dtype '<f8'/ });
  });

  it("a line missing required fields, or with fields of the wrong kind", async () => {
    const out = copyOfGood();
    editLine(out, 1, (r) => {
      delete (r as Partial<FrameRecord>).K;
      r.attempt = 0;
      (r.layers as Record<string, string>).boxes = "x.png";
      (r.layers as Record<string, string>).rgb = "images/layered/000001.png";
    });
    const report = await verifyDataset(out);
    const messages = report.problems.filter((p) => p.line === 1 && p.file === FRAMES_INDEX).map((p) => p.message);
    assert.ok(messages.includes('"K" is missing (a 3×3 matrix of numbers)'), messages.join("\n"));
    assert.ok(messages.includes('"attempt" must be a whole number ≥ 1, got 0'), messages.join("\n"));
    assert.ok(messages.includes('"layers" gives a file for boxes, which is metadata only'), messages.join("\n"));
    assert.ok(messages.some((m) => /"layers.rgb" .* must be the same path as "file"/.test(m)), messages.join("\n"));
  });

  it("a mask line without instances", async () => {
    const out = copyOfGood();
    editLine(out, 2, (r) => delete r.instances);
    await onlyProblem(out, { file: FRAMES_INDEX, line: 2, message: /"instances" is missing: a line with a mask or class file lists the instances/ });
  });

  it("a file far larger than its size allows is not read", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "images/old/000000.png"), Buffer.alloc(3 * 2 ** 20));
    await onlyProblem(out, { file: "images/old/000000.png", line: 3, message: /holds 3145728 bytes, more than a 8×6 rgb file can/ });
  });

  it("a class id that means two labels, across lines or against manifest.json (a dataset a resume refuses to start on)", async () => {
    const out = copyOfGood();
    // Line 2's id 1 is a barrel of class 1; line 1 says class 1 is a crate. Its class image is as the line says.
    editLine(out, 2, (r) => void (r.instances![0]!.label = "barrel"));
    await onlyProblem(out, { file: FRAMES_INDEX, line: 2, message: /the class tables disagree: frames.jsonl line 1 gives 'crate' class 1, but frames.jsonl line 2 gives 'barrel' class 1/ });
    await assert.rejects(RunManifest.start({ root: out, previous: undefined, options: {}, layers: ["rgb"], log: () => {} }), /the class tables disagree/);

    const other = copyOfGood();
    const withClasses = { ...JSON.parse(manifest({})), classes: [{ id: 1, label: "pallet" }] };
    fs.writeFileSync(path.join(other, RUN_MANIFEST_FILE), JSON.stringify(withClasses));
    const report = await verifyDataset(other);
    assert.deepEqual(report.problems.map((p) => [p.file, p.line]), [[FRAMES_INDEX, 1], [FRAMES_INDEX, 2]], report.problems.map(formatProblem).join("\n"));
    assert.match(report.problems[0]!.message, /manifest.json gives 'pallet' class 1, but frames.jsonl line 1 gives 'crate' class 1/);
  });
});

describe("verify: how many frames a done job needs", () => {

  it("a run with a --handler (manifest.json): at least one frame, any number", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "manifest.json"), manifest({ handler: "examples/handler.ts" }));
    writeLines(out, lines(out).filter((l) => JSON.parse(l).frame === 0)); // layered keeps 1 of its 2
    assert.equal((await verifyDataset(out)).problemCount, 0);
    writeLines(out, lines(out).filter((l) => JSON.parse(l).job !== "old"));
    await onlyProblem(out, { file: FRAMES_INDEX, message: /^job old is done in queue\.sqlite but has no line \(manifest\.json records a run with a --handler/ });
  });

  it("declarative runs only (manifest.json): exactly the spec's frames", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "manifest.json"), manifest({ width: 8 }));
    assert.equal((await verifyDataset(out)).problemCount, 0);
    editLine(out, 4, (r) => (r.frame = 3));
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map(formatProblem), [
      "frames.jsonl:4: job jpeg has frame 3, but its spec lists no frames: one from the default camera",
      "frames.jsonl: job jpeg is done in queue.sqlite but frames.jsonl has no line for frame 0 (its spec lists no frames: one from the default camera)",
    ]);
  });

  it("no manifest.json (a dataset made before manifests): a job that lists frames needs them all, one that lists none at least one", async () => {
    const out = copyOfGood();
    editLine(out, 4, (r) => (r.frame = 3)); // jpeg lists no frames: could be a handler's
    assert.equal((await verifyDataset(out)).problemCount, 0);
    writeLines(out, lines(out).filter((l) => JSON.parse(l).job !== "jpeg" && !(JSON.parse(l).job === "layered" && JSON.parse(l).frame === 0)));
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map(formatProblem), [
      "frames.jsonl: job layered is done in queue.sqlite but frames.jsonl has no line for frame 0 (its spec lists 2 frames)",
      "frames.jsonl: job jpeg is done in queue.sqlite but has no line (its spec lists no frames and there is no manifest.json to say whether a --handler made it: at least one)",
    ]);
  });

  it("an unreadable manifest.json is a problem named by file", async () => {
    const out = copyOfGood();
    fs.writeFileSync(path.join(out, "manifest.json"), "{");
    await onlyProblem(out, { file: "manifest.json", message: /manifest\.json: cannot be read: not valid JSON/ });
  });
});

describe("verify: not a dataset", () => {
  it("an empty folder, a folder of someone else's files, or a missing one is refused (DatasetOpenError)", async () => {
    const empty = fs.mkdtempSync(path.join(base, "empty-"));
    await assert.rejects(verifyDataset(empty), (err: Error) => err instanceof DatasetOpenError && /the folder is empty, not a tabfarm dataset/.test(err.message));
    const theirs = fs.mkdtempSync(path.join(base, "theirs-"));
    fs.writeFileSync(path.join(theirs, FRAMES_INDEX), "{}\n");
    await assert.rejects(verifyDataset(theirs), (err: Error) => err instanceof DatasetOpenError && /not a tabfarm dataset/.test(err.message));
    await assert.rejects(verifyDataset(path.join(base, "nowhere")), (err: Error) => err instanceof DatasetOpenError && /no such folder/.test(err.message));
  });
});

describe("formatProblem", () => {
  it("keeps a problem on one line whatever a hostile line holds", () => {
    assert.equal(
      formatProblem({ file: "images/x\nframes.jsonl:1: fake", line: 3, message: "is missing\r\n" }),
      "frames.jsonl:3: images/x\\u000aframes.jsonl:1: fake: is missing\\u000d\\u000a",
    );
    assert.equal(formatProblem({ file: FRAMES_INDEX, message: "job a is done" }), "frames.jsonl: job a is done");
  });
});

// Layers end to end, as a user runs them: the real CLI and Chromium render a small scene of labelled
// objects with --layers rgb,depth,mask,class,normal,boxes and --classes; every file must be there with
// its declared bit depth, each frames.jsonl line must name them, masks, classes and `instances` must
// agree, manifest.json must describe the run, and a resumed run must append a run and keep the class
// table. Bad --layers, --classes and job `layers` are refused before anything starts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { PNG } from "pngjs";
import { openCvWorldToCamera } from "../../protocol/camera.js";
import { LAYER_NAMES } from "../../protocol/layers.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { readFrameRecords } from "../../server/dataset/readDataset.js";
import { verifyDataset, formatProblem } from "../../server/dataset/verifyDataset.js";
import type { RunManifestData } from "../../server/dataset/RunManifest.js";
import { runFarmCli, withTempDir } from "./cli.js";

const W = 64;
const H = 48;
const TOKEN = "layers-test-token-not-for-the-manifest";
const scene = (extra: object[] = []) => ({
  tag: "Group", key: "world",
  children: [
    { tag: "AmbientLight", key: "amb", intensity: 1 },
    { tag: "DirectionalLight", key: "sun", position: [2, 3, 4] },
    { tag: "Box", key: "crate", label: "crate", position: [-1, 0, 0] },
    { tag: "Sphere", key: "ball", label: "ball", position: [1, 0, 0] },
    { tag: "Box", key: "plain", position: [0, 1.2, 0], scale: [0.5, 0.5, 0.5] },
    ...extra,
  ],
});
const front = { camera: { position: [0, 0, 5], lookAt: [0, 0, 0] } };
const FIRST_JOBS = [
  { id: "j1", scene: scene(), frames: [front, { camera: { position: [0.5, 0.5, 5], lookAt: [0, 0, 0] } }] },
  { id: "j2", scene: scene(), frames: [front] }, // same scene: the tab keeps it (no `set`), ids must not change
  { id: "j3", scene: scene(), frames: [front], layers: ["depth32"] }, // a job's own layers replace the run's
];
const CONE_JOB = { id: "j4", scene: scene([{ tag: "Cylinder", key: "cone", label: "cone", position: [0, -1.2, 0], scale: [0.5, 0.5, 0.5] }]), frames: [front] };

/** A PNG's header (bit depth, colour type) and its first sample per pixel, without rescaling 16-bit values. */
function readPng(file: string): { bits: number; colorType: number; width: number; height: number; values: number[] } {
  const png = PNG.sync.read(fs.readFileSync(file), { skipRescale: true } as never) as unknown as { depth: number; colorType: number; width: number; height: number; data: ArrayLike<number> };
  const values: number[] = [];
  for (let i = 0; i < png.width * png.height; i++) values.push(png.data[i * 4]);
  return { bits: png.depth, colorType: png.colorType, width: png.width, height: png.height, values };
}

const frameName = (r: FrameRecord) => `images/${r.job}/${String(r.frame).padStart(6, "0")}`;

/** Checks one line against its files: names, bit depths, and that mask, class and instances agree. */
function checkFrame(out: string, r: FrameRecord, classes: Map<string, number>): void {
  const base = frameName(r);
  assert.deepEqual(r.layers, {
    rgb: `${base}.png`, depth: `${base}.depth.png`, mask: `${base}.mask.png`, class: `${base}.class.png`, normal: `${base}.normal.png`,
  });
  assert.equal(r.file, r.layers.rgb);
  assert.equal(r.depth_file, r.layers.depth);
  assert.equal(r.depth_scale, 0.001);
  assert.deepEqual(r.world_to_camera_opencv, JSON.parse(JSON.stringify(openCvWorldToCamera(r.cameraToWorld))), "as JSON keeps it (no -0)");
  assert.deepEqual([r.fov, r.near, r.far], [60, 0.1, 100]);

  const rgb = readPng(path.join(out, r.layers.rgb!));
  const depth = readPng(path.join(out, r.layers.depth!));
  const mask = readPng(path.join(out, r.layers.mask!));
  const cls = readPng(path.join(out, r.layers.class!));
  const normal = readPng(path.join(out, r.layers.normal!));
  for (const png of [rgb, depth, mask, cls, normal]) assert.deepEqual([png.width, png.height], [W, H]);
  assert.equal(rgb.bits, 8);
  assert.deepEqual([depth.bits, depth.colorType, mask.bits, mask.colorType, cls.bits, cls.colorType], [16, 0, 16, 0, 16, 0], "16-bit greyscale");
  assert.deepEqual([normal.bits, normal.colorType], [8, 2], "8-bit RGB");

  // instances: exactly the ids the mask holds, each with its pixel count and tight box.
  const instances = r.instances ?? assert.fail(`${base}: no instances`);
  const seen = new Map<number, { pixels: number; minX: number; minY: number; maxX: number; maxY: number }>();
  mask.values.forEach((id, i) => {
    if (id === 0) return;
    const x = i % W;
    const y = Math.floor(i / W);
    const s = seen.get(id) ?? { pixels: 0, minX: x, minY: y, maxX: x, maxY: y };
    seen.set(id, { pixels: s.pixels + 1, minX: Math.min(s.minX, x), minY: Math.min(s.minY, y), maxX: Math.max(s.maxX, x), maxY: Math.max(s.maxY, y) });
  });
  assert.deepEqual(instances.map((i) => i.id), [...seen.keys()].sort((a, b) => a - b), "the line names every id the mask holds, and no other");
  for (const instance of instances) {
    const s = seen.get(instance.id)!;
    assert.equal(instance.pixels, s.pixels, instance.key);
    assert.deepEqual(instance.bbox, [s.minX, s.minY, s.maxX - s.minX + 1, s.maxY - s.minY + 1], instance.key);
    assert.equal(instance.box3d?.corners.length, 8, `${instance.key}: a 3D box (boxes)`);
    // class: from the label, through the run's class table; unlabelled objects have none.
    assert.equal(instance.class, instance.label === undefined ? undefined : classes.get(instance.label), instance.key);
  }
  const byId = new Map(instances.map((i) => [i.id, i]));
  cls.values.forEach((c, i) => assert.equal(c, byId.get(mask.values[i])?.class ?? 0, `class pixel ${i} agrees with the mask`));
  // Depth where something was hit, none elsewhere; normals likewise.
  mask.values.forEach((id, i) => {
    if (id) assert.ok(depth.values[i] > 0, `depth at ${i}`);
  });
}

describe("layers through the CLI (real Chromium)", () => {
  it("writes every asked layer at its bit depth, names them per line, keeps ids and classes consistent, records manifest.json; a resume appends a run and keeps the classes", () =>
    withTempDir("tabfarm-layers-", async (dir) => {
      const jobs = path.join(dir, "jobs.jsonl");
      const classesFile = path.join(dir, "classes.json");
      fs.writeFileSync(jobs, FIRST_JOBS.map((j) => JSON.stringify(j)).join("\n") + "\n");
      fs.writeFileSync(classesFile, JSON.stringify({ ball: 7 }));
      const out = path.join(dir, "out");
      const args = [
        "--sessions", "1", "--jobs", jobs, "--out", out, "--width", String(W), "--height", String(H), "--no-progress", "--token", TOKEN,
        "--layers", "rgb,depth,mask,class,normal,boxes", "--classes", classesFile,
      ];
      const first = await runFarmCli(args);
      assert.equal(first.code, 0, first.output);

      const records = readFrameRecords(out).sort((a, b) => `${a.job}/${a.frame}`.localeCompare(`${b.job}/${b.frame}`));
      assert.deepEqual(records.map((r) => `${r.job}/${r.frame}`), ["j1/0", "j1/1", "j2/0", "j3/0"]);
      const manifest = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")) as RunManifestData;
      const classes = new Map(manifest.classes.map((c) => [c.label, c.id]));
      assert.deepEqual(manifest.classes, [{ id: 1, label: "crate" }, { id: 7, label: "ball" }], "--classes fixed ball; crate got the lowest free id");
      for (const r of records.filter((r) => r.job !== "j3")) checkFrame(out, r, classes);
      const [j1, , j2] = records;
      assert.deepEqual(j1.instances!.map((i) => i.key).sort(), ["ball", "crate", "plain"]);
      assert.deepEqual(j2.instances, j1.instances, "a job on a tab that kept the scene has the ids (and pixels) of the first");

      // j3 asked for its own layers: rgb and depth32 only.
      const j3 = records[3];
      assert.deepEqual(j3.layers, { rgb: "images/j3/000000.png", depth32: "images/j3/000000.depth32.npy" });
      for (const field of ["instances", "depth_file"]) assert.equal(field in j3, false, field);
      const npy = fs.readFileSync(path.join(out, j3.layers.depth32!));
      assert.equal(npy.toString("latin1", 0, 6), "\x93NUMPY");
      assert.match(npy.toString("latin1", 10, 10 + npy.readUInt16LE(8)), new RegExp(`'descr': '<f4'.*'shape': \\(${H}, ${W}\\)`));

      const report = await verifyDataset(out);
      assert.equal(report.problemCount, 0, report.problems.map(formatProblem).join("\n"));

      assert.equal(manifest.format, "tabfarm-manifest");
      assert.deepEqual(Object.keys(manifest.layers), [...LAYER_NAMES], "every layer any job asked for (j3's depth32 too)");
      assert.equal(manifest.runs.length, 1);
      const run = manifest.runs[0];
      assert.ok(run.ended);
      assert.deepEqual(run.counts, { jobs_total: 3, jobs_done: 3, jobs_failed: 0, frames: 4 });
      // --gl auto: llvmpipe where Mesa is installed (CI installs it), else SwiftShader.
      assert.match(run.browsers[0]?.renderer ?? "", /SwiftShader|llvmpipe/i);
      assert.match(run.browsers[0]?.browser ?? "", /Chrome\/\d+/);
      assert.deepEqual(run.options.layers, ["rgb", "depth", "mask", "class", "normal", "boxes"]);
      assert.ok(!fs.readFileSync(path.join(out, "manifest.json"), "utf8").includes(TOKEN), "the token is not recorded");

      // A class table that contradicts the dataset's is refused before any browser starts; nothing changes.
      fs.writeFileSync(classesFile, JSON.stringify({ ball: 3 }));
      const manifestBefore = fs.readFileSync(path.join(out, "manifest.json"), "utf8");
      const refused = await runFarmCli(args);
      assert.equal(refused.code, 2, refused.output);
      assert.match(refused.output, /manifest\.json: the class tables disagree: manifest\.json gives 'ball' class 7, but --classes gives 'ball' class 3/);
      assert.equal(fs.readFileSync(path.join(out, "manifest.json"), "utf8"), manifestBefore);

      // Resume with one more job that shows a new label: a run is appended, the old classes keep their ids.
      fs.writeFileSync(classesFile, JSON.stringify({ ball: 7 }));
      fs.appendFileSync(jobs, JSON.stringify(CONE_JOB) + "\n");
      const second = await runFarmCli(args);
      assert.equal(second.code, 0, second.output);
      const resumed = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")) as RunManifestData;
      assert.equal(resumed.runs.length, 2);
      assert.deepEqual(resumed.runs[0], manifest.runs[0], "the first run's entry is kept as it was");
      assert.equal(resumed.created, manifest.created);
      assert.deepEqual(resumed.classes, [{ id: 1, label: "crate" }, { id: 2, label: "cone" }, { id: 7, label: "ball" }]);
      assert.deepEqual(resumed.runs[1].counts, { jobs_total: 4, jobs_done: 4, jobs_failed: 0, frames: 5 });
      const j4 = readFrameRecords(out).find((r) => r.job === "j4")!;
      checkFrame(out, j4, new Map(resumed.classes.map((c) => [c.label, c.id])));
      assert.deepEqual(j4.instances!.filter((i) => i.label).map((i) => [i.key, i.class]).sort(), [["ball", 7], ["cone", 2], ["crate", 1]]);
      const final = await verifyDataset(out);
      assert.equal(final.problemCount, 0, final.problems.map(formatProblem).join("\n"));
    }));

  it("refuses an unknown --layers name, a bad --classes file and a job's bad layers before anything starts", () =>
    withTempDir("tabfarm-layers-", async (dir) => {
      const out = path.join(dir, "out");
      const layers = await runFarmCli(["--layers", "rgb,heatmap", "--out", out, "--no-progress"]);
      assert.equal(layers.code, 2, "a usage error exits 2 (1 means jobs failed)");
      assert.match(layers.output, /option '--layers <list>' argument 'rgb,heatmap' is invalid\. unknown layer 'heatmap'/);

      const classesFile = path.join(dir, "classes.json");
      fs.writeFileSync(classesFile, JSON.stringify(["car", "car"]));
      const classes = await runFarmCli(["--classes", classesFile, "--out", out, "--no-progress"]);
      assert.equal(classes.code, 2, classes.output);
      assert.match(classes.output, /classes\.json: \[1\]: label 'car' is given twice/);

      const jobs = path.join(dir, "jobs.jsonl");
      fs.writeFileSync(jobs, `{"id":"a","layers":["rgb","mask"]}\n{"id":"b","layers":["rgb","heatmap"]}\n{"id":"c","layers":["depth"],"depth":false}\n`);
      const job = await runFarmCli(["--jobs", jobs, "--out", out, "--no-progress"]);
      assert.equal(job.code, 2, job.output);
      assert.match(job.output, /jobs\.jsonl:2: layers\[1\]: must be one of .* got "heatmap"/);
      assert.match(job.output, /jobs\.jsonl:3: depth: must not be false when "layers" names depth/);
      assert.equal(fs.existsSync(path.join(out, "queue.sqlite")), false, "nothing was queued");
    }));
});

// manifest.json (server/dataset/RunManifest.ts): written at start, on change (coalesced) and at the end;
// read and appended to on resume, with its class table checked against frames.jsonl and --classes;
// refused when unreadable; never holding the token. Also --classes as a file or a list. Real files in
// a temp folder; the run-level tests use startRun with a fake session (a socket.io client, no browser).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { LAYERS, MAX_ID } from "../../protocol/layers.js";
import { MAX_LABEL_CHARS } from "../../protocol/instances.js";
import { DatasetOpenError, writeManifest } from "../../server/dataset/openDataset.js";
import {
  ClassTableError, classEntriesFrom, readClassesOption, readRunManifest, recordableOptions, RUN_MANIFEST_FILE, RunManifest, type RunManifestData,
} from "../../server/dataset/RunManifest.js";
import { startRun } from "../../server/runFarm.js";
import { DEFAULT_FRAMES_PER_JOB } from "../../server/jobs/templateJobs.js";
import { frameSeed } from "../../server/dataset/seeds.js";
import { fakeSession } from "../integration/fakeSession.js";

let base: string;
let count = 0;
before(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-manifest-test-"));
});
after(() => fs.rmSync(base, { recursive: true, force: true }));

/** A new dataset folder (marked with tabfarm.json, as openDataset leaves it). */
function freshRoot(): string {
  const root = path.join(base, `ds${++count}`);
  fs.mkdirSync(root);
  writeManifest(root);
  return root;
}
const manifestPath = (root: string) => path.join(root, RUN_MANIFEST_FILE);
const readJson = (root: string): RunManifestData => JSON.parse(fs.readFileSync(manifestPath(root), "utf8"));
const start = (root: string, more: Partial<Parameters<typeof RunManifest.start>[0]> = {}) =>
  RunManifest.start({ root, previous: readRunManifest(root), options: {}, layers: ["rgb"], log: () => {}, ...more });

/** frames.jsonl with one line per given list of instances. */
function writeFrames(root: string, lines: Array<Array<{ label?: string; class?: number }>>): void {
  const text = lines.map((instances, frame) => JSON.stringify({ job: "j", frame, file: `images/j/${frame}.png`, instances: instances.map((i, n) => ({ id: n + 1, key: `k${n}`, pixels: 1, bbox: [0, 0, 1, 1], ...i })) }));
  fs.writeFileSync(path.join(root, "frames.jsonl"), text.join("\n") + "\n");
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(check(), what);
}

describe("manifest.json: a new dataset", () => {
  it("is written at start: format, version, tabfarm version, dates, layer declarations, class table, the run", async () => {
    const root = freshRoot();
    await start(root, { options: { width: 64, layers: ["rgb", "mask"] }, layers: ["rgb", "depth", "mask"], classes: [{ id: 4, label: "crate" }] });
    const m = readJson(root);
    assert.equal(m.format, "tabfarm-manifest");
    assert.equal(m.version, 1);
    assert.equal(m.tabfarm, JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "../../package.json"), "utf8")).version);
    assert.ok(!Number.isNaN(Date.parse(m.created)) && m.updated >= m.created);
    const { name: _, ...depth } = LAYERS.depth;
    assert.deepEqual(Object.keys(m.layers), ["rgb", "depth", "mask"]);
    assert.deepEqual(m.layers.depth, JSON.parse(JSON.stringify(depth)), "each declaration as protocol/layers.ts has it, without its name");
    assert.deepEqual(m.classes, [{ id: 4, label: "crate" }]);
    assert.equal(m.runs.length, 1);
    assert.deepEqual(m.runs[0].options, { width: 64, layers: ["rgb", "mask"] });
    assert.deepEqual(m.runs[0].browsers, []);
    assert.equal(m.runs[0].ended, undefined, "no end while running");
  });

  it("a grown class table, a new browser and new layers are written soon, coalesced, not at once", async () => {
    const root = freshRoot();
    const manifest = await start(root);
    const written = fs.readFileSync(manifestPath(root), "utf8");
    assert.equal(manifest.classes.classOf("pallet"), 1);
    assert.equal(manifest.classes.classOf("crate"), 2);
    manifest.noteBrowser({ userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/143.0.7499.4 Safari/537.36", renderer: "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device))" });
    manifest.noteBrowser({ userAgent: "HeadlessChrome/143.0.7499.4", renderer: "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device))" }); // the same pair
    manifest.noteLayers(["normal", "rgb"]);
    assert.equal(fs.readFileSync(manifestPath(root), "utf8"), written, "not written synchronously inside a grab");
    await until(() => fs.readFileSync(manifestPath(root), "utf8") !== written, "written within a second or so");
    const m = readJson(root);
    assert.deepEqual(m.classes, [{ id: 1, label: "pallet" }, { id: 2, label: "crate" }]);
    assert.deepEqual(m.runs[0].browsers, [{ browser: "HeadlessChrome/143.0.7499.4", renderer: "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device))" }]);
    assert.deepEqual(Object.keys(m.layers), ["rgb", "normal"]);
    manifest.finish({ jobs_total: 3, jobs_done: 2, jobs_failed: 1, frames: 7 });
  });

  it("a peer cannot grow the manifest without bound: at most 32 browser entries per run", async () => {
    const root = freshRoot();
    const manifest = await start(root);
    for (let i = 0; i < 200; i++) manifest.noteBrowser({ userAgent: `Chrome/${i}.0`, renderer: "r".repeat(1000) });
    manifest.finish(undefined);
    const browsers = readJson(root).runs[0].browsers;
    assert.equal(browsers.length, 32);
    assert.ok(browsers.every((b) => b.renderer.length <= 300));
  });

  it("finish writes the end and the counts at once, with anything still pending", async () => {
    const root = freshRoot();
    const manifest = await start(root);
    manifest.classes.classOf("late");
    manifest.finish({ jobs_total: 3, jobs_done: 2, jobs_failed: 1, frames: 7 });
    const m = readJson(root);
    assert.ok(m.runs[0].ended && m.runs[0].ended >= m.runs[0].started);
    assert.deepEqual(m.runs[0].counts, { jobs_total: 3, jobs_done: 2, jobs_failed: 1, frames: 7 });
    assert.deepEqual(m.classes, [{ id: 1, label: "late" }]);
    assert.ok(manifest.ended);
  });

  it("a change after the end is written at once, never later over the manifest of the run that took the dataset next", async () => {
    const root = freshRoot();
    const first = await start(root, { options: { run: 1 } });
    first.finish(undefined);
    // Between the end and the farm's close, a tab joins with a browser this run has not seen.
    first.noteBrowser({ userAgent: "HeadlessChrome/144.0.1.2", renderer: "late renderer" });
    assert.deepEqual(readJson(root).runs[0].browsers.map((b) => b.renderer), ["late renderer"]);
    // The first run has released the lock; the next one starts and writes its own entry.
    const second = await start(root, { options: { run: 2 } });
    await new Promise((resolve) => setTimeout(resolve, 1200)); // longer than the coalescing interval (1 s)
    assert.deepEqual(readJson(root).runs.map((r) => r.options), [{ run: 1 }, { run: 2 }], "the second run's entry is still there");
    second.finish(undefined);
  });
});

describe("manifest.json: resume", () => {
  it("a second run is appended; created, layers and the class table are kept; new labels continue after them", async () => {
    const root = freshRoot();
    const first = await start(root, { layers: ["rgb", "depth"], options: { run: 1 } });
    first.classes.classOf("crate");
    first.finish({ jobs_total: 1, jobs_done: 1, jobs_failed: 0, frames: 1 });
    const before = readJson(root);
    const second = await start(root, { layers: ["rgb", "normal"], options: { run: 2 } });
    assert.equal(second.classes.classOf("crate"), 1, "a known label keeps its id");
    assert.equal(second.classes.classOf("ball"), 2);
    second.finish(undefined);
    const m = readJson(root);
    assert.equal(m.created, before.created);
    assert.deepEqual(m.runs.map((r) => r.options), [{ run: 1 }, { run: 2 }]);
    assert.deepEqual(m.runs[0], before.runs[0], "the first run's entry is as it was");
    assert.deepEqual(Object.keys(m.layers), ["rgb", "depth", "normal"]);
    assert.deepEqual(m.classes, [{ id: 1, label: "crate" }, { id: 2, label: "ball" }]);
  });

  it("keeps what it does not know: a layer and a run written by a newer tabfarm", async () => {
    const root = freshRoot();
    const thermal = { meaning: "heat", pass: "thermal", wire: { bytesPerPixel: 2 }, needs: [], metadata: [] };
    const future = { started: "2030-01-01T00:00:00.000Z", options: { x: 1 }, browsers: [], extra: true };
    fs.writeFileSync(manifestPath(root), JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "2030-01-01T00:00:00.000Z", layers: { thermal }, classes: [], runs: [future] }));
    (await start(root, { layers: ["rgb", "mask"] })).finish(undefined);
    const m = readJson(root);
    assert.deepEqual(Object.keys(m.layers), ["rgb", "mask", "thermal"]);
    assert.deepEqual((m.layers as Record<string, unknown>).thermal, thermal);
    assert.deepEqual(m.runs[0], future);
    assert.equal(m.created, "2030-01-01T00:00:00.000Z");
  });

  it("classes frames.jsonl holds but manifest.json missed (a crash before its write) are restored", async () => {
    const root = freshRoot();
    (await start(root)).finish(undefined); // a manifest with no classes
    writeFrames(root, [[{ label: "crate", class: 1 }, { label: "pallet", class: 3 }], [{}], [{ label: "crate", class: 1 }]]);
    const manifest = await start(root, { classes: [{ id: 2, label: "box" }] });
    assert.deepEqual(manifest.snapshot().classes, [{ id: 1, label: "crate" }, { id: 2, label: "box" }, { id: 3, label: "pallet" }]);
    assert.equal(manifest.classes.classOf("new"), 4);
    manifest.finish(undefined);
  });

  it("frames.jsonl labels a manifest could not hold (blank, too long) are not restored: the next start still reads manifest.json", async () => {
    const root = freshRoot();
    writeFrames(root, [[{ label: "", class: 1 }, { label: " ", class: 2 }, { label: "x".repeat(MAX_LABEL_CHARS + 1), class: 3 }, { label: "crate", class: 4 }]]);
    (await start(root)).finish(undefined);
    assert.deepEqual(readJson(root).classes, [{ id: 4, label: "crate" }]);
    (await start(root)).finish(undefined);
  });

  it("a dataset made before manifest.json gets one, with the classes of its frames", async () => {
    const root = freshRoot();
    writeFrames(root, [[{ label: "crate", class: 5 }]]);
    (await start(root)).finish(undefined);
    assert.deepEqual(readJson(root).classes, [{ id: 5, label: "crate" }]);
    assert.equal(readJson(root).runs.length, 1);
  });

  const conflicts: Array<[string, (root: string) => Promise<void>, RegExp]> = [
    ["manifest.json and frames.jsonl give a label different ids", async (root) => {
      const m = await start(root, { classes: [{ id: 1, label: "crate" }] });
      m.finish(undefined);
      writeFrames(root, [[{}], [{ label: "crate", class: 2 }]]);
    }, /manifest\.json gives 'crate' class 1, but frames\.jsonl line 2 gives 'crate' class 2/],
    ["manifest.json and frames.jsonl give an id to different labels", async (root) => {
      (await start(root, { classes: [{ id: 1, label: "crate" }] })).finish(undefined);
      writeFrames(root, [[{ label: "box", class: 1 }]]);
    }, /manifest\.json gives 'crate' class 1, but frames\.jsonl line 1 gives 'box' class 1/],
    ["two lines of frames.jsonl disagree", async (root) => {
      writeFrames(root, [[{ label: "crate", class: 1 }], [{ label: "crate", class: 1 }, { label: "box", class: 1 }]]);
    }, /frames\.jsonl line 1 gives 'crate' class 1, but frames\.jsonl line 2 gives 'box' class 1/],
  ];
  for (const [what, prepare, message] of conflicts) {
    it(`refuses the start when ${what}, naming both`, async () => {
      const root = freshRoot();
      await prepare(root);
      const before = fs.existsSync(manifestPath(root)) ? fs.readFileSync(manifestPath(root), "utf8") : undefined;
      await assert.rejects(start(root), (err: unknown) => err instanceof DatasetOpenError && message.test(err.message) && err.message.includes(manifestPath(root)));
      assert.equal(fs.existsSync(manifestPath(root)) ? fs.readFileSync(manifestPath(root), "utf8") : undefined, before, "manifest.json untouched");
    });
  }

  it("refuses --classes that give a known label another id, or a known id to another label", async () => {
    const root = freshRoot();
    (await start(root, { classes: [{ id: 1, label: "crate" }, { id: 2, label: "box" }] })).finish(undefined);
    await assert.rejects(start(root, { classes: [{ id: 3, label: "crate" }] }), /manifest\.json gives 'crate' class 1, but --classes gives 'crate' class 3/);
    await assert.rejects(start(root, { classes: [{ id: 2, label: "ball" }] }), /manifest\.json gives 'box' class 2, but --classes gives 'ball' class 2/);
    const ok = await start(root, { classes: [{ id: 2, label: "box" }, { id: 9, label: "ball" }] });
    assert.deepEqual(ok.snapshot().classes, [{ id: 1, label: "crate" }, { id: 2, label: "box" }, { id: 9, label: "ball" }]);
    ok.finish(undefined);
  });

  it("options are recorded as given up to 16 KiB of JSON each; a bigger one (a programmatic scene) by its size", async () => {
    const root = freshRoot();
    const small = [{ id: 1, label: "crate" }];
    const scene = { tag: "Group", key: "g", children: Array.from({ length: 1000 }, (_, i) => ({ tag: "Box", key: `b${i}` })) };
    (await start(root, { options: { classes: small, scene, out: "x".repeat(4096) }, classes: small })).finish(undefined);
    const { options } = readJson(root).runs[0]!;
    assert.deepEqual(options.classes, small);
    assert.equal(options.out, "x".repeat(4096));
    assert.deepEqual(options.scene, { omitted: `${Buffer.byteLength(JSON.stringify(scene))} bytes of JSON` });
  });

  it(`the largest class table (${MAX_ID} labels of ${MAX_LABEL_CHARS} characters) given on every run is stored once: resumes keep the file readable`, async () => {
    const root = freshRoot();
    const classes = Array.from({ length: MAX_ID }, (_, i) => ({ id: i + 1, label: String(i).padEnd(MAX_LABEL_CHARS, "x") }));
    const sizes: number[] = [];
    for (let run = 0; run < 4; run++) {
      (await start(root, { options: { classes, width: 64 }, classes })).finish(undefined);
      sizes.push(fs.statSync(manifestPath(root)).size);
    }
    for (const run of readJson(root).runs) assert.deepEqual(run.options.classes, { omitted: `${Buffer.byteLength(JSON.stringify(classes))} bytes of JSON`, items: MAX_ID });
    assert.ok(sizes[3]! - sizes[0]! < 10_000, `a run adds its entry, not a copy of the table (sizes ${sizes.join(", ")})`);
  });
});

describe("manifest.json: the dataset's seed", () => {
  it("a new dataset takes --seed, or a random one it prints; a resume keeps it", async () => {
    const lines: string[] = [];
    const given = freshRoot();
    const a = await start(given, { seed: 2 ** 53 - 1, log: (l) => lines.push(l) });
    a.finish(undefined);
    assert.equal(a.seed, 2 ** 53 - 1);
    assert.equal(readJson(given).seed, 2 ** 53 - 1);
    const resumed = await start(given, { log: (l) => lines.push(l) });
    resumed.finish(undefined);
    assert.equal(resumed.seed, 2 ** 53 - 1, "no --seed on resume: the dataset's");
    assert.match(lines.at(-1)!, /seed: 9007199254740991 \(the dataset's/);

    const drawn = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const root = freshRoot();
      const m = await start(root, { log: (l) => lines.push(l) });
      m.finish(undefined);
      assert.ok(Number.isSafeInteger(m.seed) && m.seed >= 0);
      assert.equal(readJson(root).seed, m.seed);
      assert.match(lines.at(-1)!, new RegExp(`seed: ${m.seed} \\(random; pass --seed ${m.seed}`));
      drawn.add(m.seed);
    }
    assert.equal(drawn.size, 3, "random seeds differ");
  });

  it("frames drawn bind the seed: another --seed, a lost or edited manifest.json seed is refused, naming the line; no frame drawn binds nothing", async () => {
    const root = freshRoot();
    (await start(root, { seed: 5 })).finish(undefined);
    // Nothing drawn yet: another seed replaces it (a start that rendered nothing does not pin its seed).
    const lines: string[] = [];
    const replaced = await start(root, { seed: 6, log: (l) => lines.push(l) });
    replaced.finish(undefined);
    assert.equal(replaced.seed, 6);
    assert.match(lines.at(-1)!, /seed: 6 \(replaces 5, which drew no frame yet\)/);

    // A frame drawn with seed 6 (a line written before seeds comes first: it binds nothing).
    fs.writeFileSync(path.join(root, "frames.jsonl"), [
      JSON.stringify({ job: "old", frame: 0, file: "images/old/000000.png" }),
      JSON.stringify({ job: "j", frame: 3, file: "images/j/000003.png", seed: frameSeed(6, "j", 3) }),
    ].join("\n") + "\n");
    const same = await start(root, { log: (l) => lines.push(l) });
    same.finish(undefined);
    assert.equal(same.seed, 6);
    await assert.rejects(start(root, { seed: 7 }), (err: unknown) => {
      assert.ok(err instanceof DatasetOpenError);
      assert.match(err.message, /^--seed 7: this dataset was rendered with seed 6: it did not draw frames\.jsonl line 2 \(job j frame 3, seed \d+\).*Leave --seed out \(seed 6 is used\)/);
      return true;
    });
    const manifestText = fs.readFileSync(manifestPath(root), "utf8");
    fs.writeFileSync(manifestPath(root), manifestText.replace(/"seed": 6/, '"seed": 8')); // edited by hand
    await assert.rejects(start(root), /manifest\.json: its seed 8: it did not draw frames\.jsonl line 2 .*Pass the --seed its frames were drawn with/);
    const rescued = await start(root, { seed: 6 }); // the lines' seed, given: accepted, and recorded again
    rescued.finish(undefined);
    assert.equal(readJson(root).seed, 6);
    fs.rmSync(manifestPath(root)); // lost (its own error message advises moving a bad one away)
    await assert.rejects(start(root), /records no seed, but frames\.jsonl line 2 \(job j frame 3, seed \d+\) was drawn with one: pass the --seed/);
    (await start(root, { seed: 6 })).finish(undefined);
  });

  it("a template's cut is kept: the same frames per job, and a job ending at every earlier --frames; it grows, never shrinks", async () => {
    const root = freshRoot();
    const first = await start(root, { template: { frames: 7, framesPerJob: 5 } });
    assert.equal(readJson(root).template, undefined, "recorded once the jobs are queued, not before");
    first.templateQueued();
    first.finish(undefined);
    assert.deepEqual(first.templateSplit, { frames: 7, framesPerJob: 5, cuts: [7] });
    assert.deepEqual(readJson(root).template, { frames_per_job: 5, frames: [7] });
    (await start(root)).finish(undefined); // a run without --template keeps the record
    assert.deepEqual(readJson(root).template, { frames_per_job: 5, frames: [7] });
    const grown = await start(root, { template: { frames: 12 } }); // --frames-per-job left out: the dataset's
    grown.templateQueued();
    grown.finish(undefined);
    assert.deepEqual(grown.templateSplit, { frames: 12, framesPerJob: 5, cuts: [7, 12] });
    await assert.rejects(start(root, { template: { frames: 12, framesPerJob: 4 } }), /--frames-per-job 4: this dataset's template frames were cut into jobs of 5/);
    await assert.rejects(start(root, { template: { frames: 11 } }), /--frames 11: this dataset's template already has 12 frames/);
    const fresh = await start(freshRoot(), { template: { frames: 3 } });
    fresh.finish(undefined);
    assert.equal(fresh.templateSplit!.framesPerJob, DEFAULT_FRAMES_PER_JOB);
  });
});

describe("manifest.json that can't be used refuses the start, naming the file and the fault", () => {
  const cases: Array<[string, (file: string) => void, RegExp]> = [
    ["not JSON (a torn write by something else)", (f) => fs.writeFileSync(f, '{"format":"tabfarm-manif'), /cannot be read: not valid JSON/],
    ["empty", (f) => fs.writeFileSync(f, ""), /cannot be read: not valid JSON/],
    ["another program's JSON", (f) => fs.writeFileSync(f, '{"name":"my-app","version":"1.0.0"}'), /is not a tabfarm manifest \(expected "format": "tabfarm-manifest"\)/],
    ["a JSON array", (f) => fs.writeFileSync(f, "[]"), /is not a tabfarm manifest/],
    ["a newer version", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 9, created: "x", layers: {}, classes: [], runs: [] })), /has version 9; this tabfarm reads up to 1/],
    ["runs not a list", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "x", layers: {}, classes: [], runs: {} })), /"runs" must be a list/],
    ["a class id out of range", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "x", layers: {}, classes: [{ id: 70000, label: "a" }], runs: [] })), /class table is wrong: manifest\.json: classes: \[0\]: the id of 'a' must be a whole number from 1 to 65535/],
    ["a label given twice", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "x", layers: {}, classes: [{ id: 1, label: "a" }, { id: 2, label: "a" }], runs: [] })), /label 'a' is given twice/],
    ["a seed that is not a whole number ≥ 0", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "x", layers: {}, classes: [], seed: -1, runs: [] })), /"seed" must be a whole number from 0/],
    ["a seed as a string", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "x", layers: {}, classes: [], seed: "5", runs: [] })), /"seed" must be a whole number/],
    ["a template cut of 0 frames", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "x", layers: {}, classes: [], template: { frames_per_job: 0 }, runs: [] })), /"template" must be/],
    ["a template that is not an object", (f) => fs.writeFileSync(f, JSON.stringify({ format: "tabfarm-manifest", version: 1, created: "x", layers: {}, classes: [], template: null, runs: [] })), /"template" must be/],
    ["a folder", (f) => fs.mkdirSync(f), /cannot be read: .*(it is a folder|not a regular file)/],
    ["a symbolic link", (f) => fs.symlinkSync("/etc/hostname", f), /cannot be read: too many symbolic links \(ELOOP\)/],
  ];
  for (const [what, make, fault] of cases) {
    it(what, async () => {
      const root = freshRoot();
      make(manifestPath(root));
      assert.throws(() => readRunManifest(root), (err: unknown) => {
        assert.ok(err instanceof DatasetOpenError, String(err));
        assert.ok(err.message.startsWith(`${manifestPath(root)}: `), err.message);
        assert.match(err.message, fault);
        return true;
      });
    });
  }
});

describe("a manifest.json that can't be written refuses the start", () => {
  it("names the file and the fault", async () => {
    const root = freshRoot();
    fs.mkdirSync(manifestPath(root)); // a folder where the file goes: the rename fails
    await assert.rejects(RunManifest.start({ root, previous: undefined, options: {}, layers: ["rgb"] }), (err: unknown) => {
      assert.ok(err instanceof DatasetOpenError);
      assert.match(err.message, new RegExp(`^${manifestPath(root)}: cannot be written: `));
      return true;
    });
    assert.deepEqual(fs.readdirSync(root).sort(), ["manifest.json", "tabfarm.json"], "no temp file left");
  });
});

describe("recorded options hold no secrets", () => {
  it("recordableOptions drops the token (any *token*, *secret*, *password* name, nested too), functions, streams and signals", () => {
    const jobs = (function* () {})();
    const recorded = recordableOptions({
      out: "o", token: "s3cr3t", TABFARM_TOKEN: "s3cr3t", apiSecret: "x", nested: { password: "p", keep: 1 }, width: 64, depth: undefined,
      log: () => {}, jobs, stop: new AbortController().signal, chromiumArg: ["--a"], quality: NaN,
    });
    assert.deepEqual(recorded, { out: "o", nested: { keep: 1 }, width: 64, chromiumArg: ["--a"] });
  });

  it("a --queue URL's password is recorded as ***, whatever it holds (spaces, @, /, : a URL parser takes them all)", () => {
    for (const password of ["plain", "pa ss", "a b@c", "x/y@z", "t:o p", " lead"]) {
      for (const queue of [`redis://:${password}@10.0.0.5:6379/2`, `rediss://bob:${password}@h:1?queue=q`, `redis://${password}@h:1`]) {
        const recorded = JSON.stringify(recordableOptions({ queue, argv: ["--queue", queue] }));
        assert.ok(!recorded.includes(password), recorded);
        assert.match(recorded, /"queue":"rediss?:\/\/[^"@*]*\*\*\*@(h:1|10\.0\.0\.5:6379)/, recorded);
      }
    }
  });
});

describe("a run's manifest.json through startRun (a fake session, no browser)", () => {
  const clientDir = () => {
    const dir = path.join(base, "client");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "index.html"), "<!doctype html>");
    return dir;
  };

  it("records the options without the token, the session's browser, and the end with counts; a resumed run appends", async () => {
    const out = path.join(base, `run${++count}`);
    const token = "the-run-token-must-stay-secret";
    const options = { out, clientDir: clientDir(), token, width: 16, height: 12, layers: ["rgb" as const], classes: [{ id: 3, label: "crate" }], log: () => {} };
    const run = await startRun({ ...options, jobs: [{ id: "a" }, { id: "b" }] });
    const session = await fakeSession({ port: Number(new URL(run.url).port), token, worker: "fake", answer: "png", width: 16, height: 12 });
    try {
      const summary = await run.finished;
      assert.equal(summary.frames, 2);
    } finally {
      session.close();
      await run.close();
    }
    const text = fs.readFileSync(manifestPath(out), "utf8");
    assert.ok(!text.includes(token), "the token is not in manifest.json");
    const m = JSON.parse(text) as RunManifestData;
    assert.equal(m.runs.length, 1);
    assert.deepEqual(m.runs[0].options.width, 16);
    assert.equal("token" in m.runs[0].options, false);
    assert.deepEqual(m.runs[0].browsers, [{ browser: "tabfarm fake session", renderer: "fake renderer" }]);
    assert.deepEqual(m.runs[0].counts, { jobs_total: 2, jobs_done: 2, jobs_failed: 0, frames: 2 });
    assert.ok(m.runs[0].ended);
    assert.deepEqual(m.classes, [{ id: 3, label: "crate" }]);

    // Resume with a class table that contradicts the dataset's: refused, the dataset's lock released.
    await assert.rejects(startRun({ ...options, classes: [{ id: 1, label: "crate" }] }), /gives 'crate' class 3, but --classes gives 'crate' class 1/);
    const again = await startRun({ ...options, jobs: [{ id: "c" }] });
    const second = await fakeSession({ port: Number(new URL(again.url).port), token, worker: "fake", answer: "png", width: 16, height: 12 });
    try {
      await again.finished;
    } finally {
      second.close();
      await again.close();
    }
    const resumed = readJson(out);
    assert.equal(resumed.runs.length, 2, "the refused start added no run");
    assert.deepEqual(resumed.runs[1].counts, { jobs_total: 3, jobs_done: 3, jobs_failed: 0, frames: 3 });
  });

  it("a blank label fails its job with a message naming the element, and never reaches the class table (the dataset stays resumable)", async () => {
    const out = path.join(base, `run${++count}`);
    const token = "blank-label-token";
    const scene = { tag: "Group", key: "world", children: [{ tag: "Box", key: "crate", label: "crate" }, { tag: "Box", key: "blank", label: " " }] };
    const options = { out, clientDir: clientDir(), token, width: 16, height: 12, maxAttempts: 1, log: () => {} };
    const run = await startRun({ ...options, jobs: [{ id: "a", scene, layers: ["mask" as const, "class" as const] }] });
    const session = await fakeSession({ port: Number(new URL(run.url).port), token, worker: "fake", answer: "png", width: 16, height: 12 });
    try {
      const summary = await run.finished;
      assert.equal(summary.counts.failed, 1);
      const [failure] = await run.queue.failures();
      assert.match(failure?.error?.message ?? "", /element 'blank': label must be a non-empty string, got " "/);
    } finally {
      session.close();
      await run.close();
    }
    assert.deepEqual(readJson(out).classes, []);
    const again = await startRun(options); // resume reads the manifest back
    await again.close();
  });

  it("a handler given as a function is recorded by name (verify reads from it that jobs' frame counts are the handler's)", async () => {
    const out = path.join(base, `run${++count}`);
    const run = await startRun({ out, clientDir: clientDir(), log: () => {}, handler: async function renderMine() {} });
    await run.close();
    assert.equal(readJson(out).runs[0].options.handler, "function renderMine");
  });

  it("a job without a scene randomizes the run's: a key the run's scene lacks refuses the start, naming job and field; one it has is drawn", async () => {
    const out = path.join(base, `run${++count}`);
    const scene = { tag: "Group", key: "root", children: [{ tag: "Box", key: "box" }] };
    const bad = { id: "r2", randomize: [{ key: "box", prop: "color", hsv: {} }, { key: "bx", prop: "position", uniform: [0, 1] }] };
    await assert.rejects(
      startRun({ out, clientDir: clientDir(), scene, seed: 9, log: () => {}, jobs: [{ id: "r1" }, bad] as never }),
      /^Error: job r2: randomize\[1\]\.key: no element with key "bx" in the run's scene \(there is no scene of its own to randomize\)$/,
    );
    // The lock is released; the good job queued before the bad one renders with the run's scene.
    const token = "t";
    const run = await startRun({ out, clientDir: clientDir(), scene, token, width: 16, height: 12, log: () => {}, jobs: [{ id: "r3", randomize: [{ key: "box", prop: "color", hsv: {} }] }] });
    const session = await fakeSession({ port: Number(new URL(run.url).port), token, worker: "fake", answer: "png", width: 16, height: 12 });
    try {
      assert.equal((await run.finished).counts.failed, 0);
    } finally {
      session.close();
      await run.close();
    }
    const lines = fs.readFileSync(path.join(out, "frames.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const r3 = lines.find((l) => l.job === "r3");
    assert.match(r3.randomized["box.color"], /^#[0-9a-f]{6}$/);
    assert.equal(readJson(out).seed, 9, "the dataset keeps the seed of its first start");
  });

  it("an unreadable manifest.json refuses the run before resume touches the dataset, and releases the lock", async () => {
    const out = path.join(base, `run${++count}`);
    fs.mkdirSync(out);
    writeManifest(out);
    fs.writeFileSync(manifestPath(out), "garbage");
    const staleTemp = path.join(out, "images/j/.000000.png.abc.tmp"); // what resume would remove
    fs.mkdirSync(path.dirname(staleTemp), { recursive: true });
    fs.writeFileSync(staleTemp, "x");
    const options = { out, clientDir: clientDir(), log: () => {} };
    await assert.rejects(startRun(options), (err: unknown) => err instanceof DatasetOpenError && err.message.startsWith(`${fs.realpathSync(out)}/manifest.json: cannot be read: not valid JSON`));
    assert.ok(fs.existsSync(staleTemp), "resume did not run");
    assert.equal(fs.readFileSync(manifestPath(out), "utf8"), "garbage", "the file is left for the user to repair");
    fs.rmSync(manifestPath(out));
    const run = await startRun(options); // the lock was released
    await run.close();
    assert.equal(readJson(out).runs.length, 1);
  });
});

describe("--classes: a JSON file or a comma list", () => {
  const file = (name: string, text: string) => {
    const f = path.join(base, name);
    fs.writeFileSync(f, text);
    return f;
  };

  it("a list of labels gives ids 1, 2, … in order; an object gives its ids; a comma list like a list", () => {
    assert.deepEqual(readClassesOption(file("list.json", '["car", "person"]')), [{ id: 1, label: "car" }, { id: 2, label: "person" }]);
    assert.deepEqual(readClassesOption(file("map.json", '{"person": 5, "car": 1}')), [{ id: 1, label: "car" }, { id: 5, label: "person" }]);
    assert.deepEqual(readClassesOption("car, person ,tree"), [{ id: 1, label: "car" }, { id: 2, label: "person" }, { id: 3, label: "tree" }]);
    assert.deepEqual(readClassesOption(file("classes", '["x"]')), [{ id: 1, label: "x" }], "an existing file without .json is read as a file");
    assert.deepEqual(readClassesOption(file("empty.json", "[]")), []);
    assert.deepEqual(readClassesOption(file("bom.json", '\ufeff["car"]\r\n')), [{ id: 1, label: "car" }], "a UTF-8 BOM and CRLF, as Windows editors save");
  });

  const bad: Array<[string, string, RegExp]> = [
    ["id0.json", '{"car": 0}', /id0\.json: "car": the id of 'car' must be a whole number from 1 to 65535 \(0 is unlabelled\), got 0/],
    ["big.json", '{"car": 65536}', /big\.json: "car": the id of 'car' must be .* got 65536/],
    ["frac.json", '{"car": 1.5}', /frac\.json: "car": .* got 1\.5/],
    ["text.json", '{"car": "1"}', /text\.json: "car": .* got "1"/],
    ["dupid.json", '{"car": 1, "van": 1}', /dupid\.json: "van": id 1 is given to 'van' and to 'car' \("car"\)/],
    ["duplabel.json", '["car", "car"]', /duplabel\.json: \[1\]: label 'car' is given twice \(also at \[0\]\)/],
    ["emptylabel.json", '["car", ""]', /emptylabel\.json: \[1\]: the label must be a non-empty string, got ""/],
    ["numlabel.json", '["car", 7]', /numlabel\.json: \[1\]: the label must be a non-empty string, got 7/],
    ["scalar.json", '"car"', /scalar\.json: must be a list of labels .* or an object of label → id/],
    ["broken.json", '["car"', /broken\.json: not valid JSON/],
  ];
  for (const [name, text, message] of bad) {
    it(`refuses ${name}, naming the file and the field`, () => {
      assert.throws(() => readClassesOption(file(name, text)), (err: unknown) => err instanceof ClassTableError && message.test(err.message));
    });
  }

  it("refuses a missing .json file and bad comma lists", () => {
    assert.throws(() => readClassesOption(path.join(base, "nope.json")), /nope\.json: cannot read the class table: it does not exist \(ENOENT\)/);
    assert.throws(() => readClassesOption("car,,van"), /--classes: \[1\]: the label must be a non-empty string/);
    assert.throws(() => readClassesOption("car,van,car"), /--classes: \[2\]: label 'car' is given twice/);
  });

  it("a comma list is a list whatever the file system says of it: too long to be a path, a path under a file, a folder of that name", () => {
    const long = Array.from({ length: 60 }, (_, i) => `label${i}`).join(","); // over 255 bytes: ENAMETOOLONG as a path
    assert.equal(readClassesOption(long).length, 60);
    const plain = file("plain.txt", "x");
    assert.deepEqual(readClassesOption(`${plain}/a,b`), [{ id: 1, label: `${plain}/a` }, { id: 2, label: "b" }], "ENOTDIR as a path");
    fs.mkdirSync(path.join(base, "car"), { recursive: true });
    const cwd = process.cwd();
    process.chdir(base);
    try {
      assert.deepEqual(readClassesOption("car"), [{ id: 1, label: "car" }], "a folder named like the label");
    } finally {
      process.chdir(cwd);
    }
  });

  it("reads a class file through a link (the user's own file), but refuses a FIFO without waiting", () => {
    const target = file("target.json", '["car"]');
    const link = path.join(base, "link.json");
    fs.symlinkSync(target, link);
    assert.deepEqual(readClassesOption(link), [{ id: 1, label: "car" }]);
    const fifo = path.join(base, "fifo.json");
    execFileSync("mkfifo", [fifo]);
    assert.throws(() => readClassesOption(fifo), /fifo\.json: cannot read the class table: it is not a regular file/);
  });

  it(`refuses a label longer than ${MAX_LABEL_CHARS} characters (it is copied into every frame line and the manifest)`, () => {
    assert.throws(() => readClassesOption(file("long.json", JSON.stringify(["car", "x".repeat(MAX_LABEL_CHARS + 1)]))), /long\.json: \[1\]: the label must be at most 256 characters \(it has 257\)/);
    assert.equal(readClassesOption(file("fits.json", JSON.stringify(["x".repeat(MAX_LABEL_CHARS)])))[0]!.label.length, MAX_LABEL_CHARS);
    assert.throws(() => readClassesOption("car,  "), /--classes: \[1\]: the label must be a non-empty string/);
  });

  it("classEntriesFrom reads the manifest's own form ({id, label} entries)", () => {
    assert.deepEqual(classEntriesFrom([{ id: 9, label: "b" }, { id: 2, label: "a" }], "m"), [{ id: 2, label: "a" }, { id: 9, label: "b" }]);
    assert.throws(() => classEntriesFrom([{ id: 0, label: "a" }], "m"), /m: \[0\]: the id of 'a'/);
  });
});

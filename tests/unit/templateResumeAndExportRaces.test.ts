// Template runs resumed and grown in every way a dataset allows (several steps, manifest.json lost or
// edited, a jobs file on the same --out): every frame rendered exactly once or the start refused; and
// exports raced against each other. Runs use startRun with a fake session (no browser), as
// randomizedRuns.test.ts does. (Written as the second hostile review of issue 14.)
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { JobSpec } from "../../protocol/job.js";
import { readFrameRecords } from "../../server/dataset/readDataset.js";
import { runExport } from "../../harness/exportCommand.js";
import { shardName } from "../../server/export/webdataset.js";
import { verifyDataset } from "../../server/dataset/verifyDataset.js";
import { BOX_COLOUR_TEMPLATE as TEMPLATE, BOX_SCENE as SCENE, runToEnd, templateFrames, upTo } from "./fakeRun.js";
import { frameSeed } from "../../server/dataset/seeds.js";

let base: string;
before(() => (base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-issue14-round2-"))));
after(() => fs.rmSync(base, { recursive: true, force: true }));
let count = 0;
const fresh = (name: string) => path.join(base, `${name}-${++count}`);



const manifestFile = (out: string) => path.join(out, "manifest.json");
const editManifest = (out: string, edit: (m: Record<string, any>) => void) => {
  const m = JSON.parse(fs.readFileSync(manifestFile(out), "utf8"));
  edit(m);
  fs.writeFileSync(manifestFile(out), JSON.stringify(m));
};

describe("a template grown in several steps renders every frame exactly once", () => {
  it("--frames 3 → 4 → 4 → 9 → 10 in jobs of 2: cuts pile up (the same N twice, --frames-per-job given again explicitly)", async () => {
    const out = fresh("steps");
    await runToEnd(base, { out, seed: 1, template: { spec: TEMPLATE, frames: 3, framesPerJob: 2 } });
    for (const frames of [4, 4, 9, 10]) {
      await runToEnd(base, { out, template: { spec: TEMPLATE, frames, framesPerJob: frames === 9 ? 2 : undefined } });
      assert.deepEqual(templateFrames(out), upTo(frames), `after --frames ${frames}`);
    }
  });
});

describe("the template cut follows the queue, not only manifest.json", () => {
  /** Either the start is refused naming what is wrong, or every template frame up to `frames` is rendered exactly once. */
  async function eachFrameOnce(out: string, template: { frames: number; framesPerJob?: number }, seed?: number): Promise<void> {
    const refused = await runToEnd(base, { out, seed, template: { spec: TEMPLATE, ...template } }).then(() => undefined, (err: unknown) => err as Error);
    if (refused) {
      assert.match(refused.message, /frames|template|manifest/, `refused, but not clearly: ${refused.stack}`);
      assert.equal(refused.constructor.name, "DatasetOpenError", `refused with a bare ${refused.constructor.name} (a stack trace, not a dataset error): ${refused.message}`);
      return;
    }
    assert.deepEqual(templateFrames(out), upTo(template.frames), "every template frame exactly once");
  }

  it("manifest.json moved away (as its unreadable-file message advises), then --frames 3 → 4 in jobs of 2: frame 3 is not lost", async () => {
    const out = fresh("moved");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 3, framesPerJob: 2 } });
    fs.renameSync(manifestFile(out), manifestFile(out) + ".bak");
    await eachFrameOnce(out, { frames: 4, framesPerJob: 2 }, 2); // the seed its lines were drawn with: the seed check passes
  });

  it("manifest.json's template.frames hand-edited: unsorted and repeated cuts are the same cuts; a dropped cut does not lose a frame", async () => {
    const out = fresh("edited-cuts");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 3, framesPerJob: 2 } });
    await runToEnd(base, { out, template: { spec: TEMPLATE, frames: 4 } });
    editManifest(out, (m) => void (m.template.frames = [4, 3, 3, 4]));
    await eachFrameOnce(out, { frames: 5 });
    assert.deepEqual(JSON.parse(fs.readFileSync(manifestFile(out), "utf8")).template.frames, [3, 4, 5], "kept sorted, once each");
    editManifest(out, (m) => void (m.template.frames = [])); // the cuts at 3, 4 and 5 lost: frame-00000004 ([4]) is done
    await eachFrameOnce(out, { frames: 6 });
  });

  it("manifest.json's frames_per_job hand-edited (2 → 3): no frame rendered twice under other job ids", async () => {
    const out = fresh("edited-perjob");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 4, framesPerJob: 2 } });
    editManifest(out, (m) => void (m.template.frames_per_job = 3));
    await eachFrameOnce(out, { frames: 6 });
  });

  it("manifest.json's frames_per_job hand-edited above the per-job limit: a dataset error naming manifest.json, not a RangeError", async () => {
    const out = fresh("huge-perjob");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 2, framesPerJob: 2 } });
    editManifest(out, (m) => void (m.template.frames_per_job = 1_000_000));
    const refused = await runToEnd(base, { out, template: { spec: TEMPLATE, frames: 3 } }).then(() => undefined, (err: unknown) => err as Error);
    assert.ok(refused, "a cut of 1,000,000 frames per job is above LIMITS.maxFramesPerJob: it cannot be used");
    // The lock is released: the next start (with the cut fixed) runs.
    editManifest(out, (m) => void (m.template.frames_per_job = 2));
    await eachFrameOnce(out, { frames: 3 });
    assert.match(refused.message, /manifest\.json/, `blames a --frames-per-job the user did not give (${refused.constructor.name}): ${refused.message}`);
  });

  it("manifest.json's template.frames hand-edited above --frames' maximum: the refusal does not ask for an impossible --frames", async () => {
    const out = fresh("huge-cut");
    await runToEnd(base, { out, seed: 2, template: { spec: TEMPLATE, frames: 2, framesPerJob: 2 } });
    editManifest(out, (m) => void (m.template.frames = [2, 200_000_000]));
    const refused = await runToEnd(base, { out, template: { spec: TEMPLATE, frames: 3 } }).then(() => undefined, (err: unknown) => err as Error);
    assert.ok(refused);
    assert.doesNotMatch(refused.message, /give --frames 200000000 or more/, `asks for more than the 100,000,000 --frames allows: ${refused.message}`);
  });
});

describe("a template start that is refused", () => {
  it("refused before anything was queued (a --handler given a template with randomize): its --frames does not pin the template, a smaller --frames runs next", async () => {
    const out = fresh("refused-pins");
    const refused = await runToEnd(base, { out, seed: 4, template: { spec: TEMPLATE, frames: 1000, framesPerJob: 2 }, handler: async () => undefined }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    assert.match(String(refused), /randomize/, "a handler would draw nothing: refused");
    assert.deepEqual(readFrameRecords(out), []);
    const next = await runToEnd(base, { out, template: { spec: TEMPLATE, frames: 2 } }).then(() => undefined, (err: unknown) => err as Error);
    assert.equal(next, undefined, `nothing was queued or rendered, yet: ${next?.message}`);
    assert.deepEqual(templateFrames(out), upTo(2));
  });
});

describe("a template and a jobs file on the same --out", () => {
  it("a jobs-file job named frame-00000000 (1 frame, its own scene), then --template --frames 4 in jobs of 2: refused, or template frames 0…3 all rendered", async () => {
    const out = fresh("jobs-then-template");
    await runToEnd(base, { out, seed: 3, jobs: [{ id: "frame-00000000", scene: SCENE, frames: [{}] } as JobSpec] });
    const refused = await runToEnd(base, { out, template: { spec: TEMPLATE, frames: 4, framesPerJob: 2 } }).then(() => undefined, (err: unknown) => err as Error);
    if (refused) return assert.match(refused.message, /frame-00000000/);
    const lines = readFrameRecords(out).filter((r) => r.job === "frame-00000000");
    assert.equal(lines.length, 2, `template frame 1 (job frame-00000000 frame 1) was never rendered: the jobs file's job of that id was taken for it`);
    assert.ok(lines.every((r) => r.randomized), "frame-00000000's lines were drawn from the template");
  });

  it("a template, then a jobs file, then the template grown: the cut survives the jobs-file run", async () => {
    const out = fresh("template-jobs-template");
    await runToEnd(base, { out, seed: 3, template: { spec: TEMPLATE, frames: 3, framesPerJob: 2 } });
    await runToEnd(base, { out, jobs: [{ id: "other", scene: SCENE, frames: [{}] } as JobSpec] });
    await runToEnd(base, { out, template: { spec: TEMPLATE, frames: 4 } });
    assert.deepEqual(templateFrames(out), upTo(4));
  });
});

/** The member names of every shard-*.tar in `dest` (plain ustar headers: our names are short). */
function shardMembers(dest: string): string[] {
  const names: string[] = [];
  for (const shard of fs.readdirSync(dest).filter((n) => /^shard-\d+\.tar$/.test(n)).sort()) {
    const bytes = fs.readFileSync(path.join(dest, shard));
    for (let at = 0; at + 512 <= bytes.length; ) {
      const header = bytes.subarray(at, at + 512);
      if (header.every((b) => b === 0)) break;
      const name = header.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
      const size = parseInt(header.subarray(124, 136).toString("utf8").replace(/\0.*$/s, "").trim(), 8);
      names.push(name);
      at += 512 + Math.ceil(size / 512) * 512;
    }
  }
  return names;
}

describe("two exports into the same target at once", () => {
  let dataset: string;
  before(async () => {
    dataset = fresh("export-source");
    await runToEnd(base, { out: dataset, seed: 9, template: { spec: TEMPLATE, frames: 6, framesPerJob: 2 } });
  });
  const quiet = { log: () => undefined, note: () => undefined };
  const exportTo = (options: Omit<Parameters<typeof runExport>[0], "out">) =>
    runExport({ out: dataset, ...options }, quiet.log, quiet.note).then((code) => ({ code }), (err: unknown) => ({ err: err as Error }));

  it("--webdataset DEST from two datasets at once (20 frames in one shard, 2 frames in shards of 1KB): DEST is one export's shards, not a mix, or one is refused", async () => {
    const small = fresh("export-small");
    await runToEnd(base, { out: small, seed: 9, jobs: [{ id: "small", scene: SCENE, frames: [{}, {}] } as JobSpec] });
    const big = fresh("export-big");
    await runToEnd(base, { out: big, seed: 9, template: { spec: TEMPLATE, frames: 20, framesPerJob: 5 } });
    const dest = fresh("same-dest");
    // Both pass the target check before either has a staging folder; the one with less to do finishes first.
    const outcomes = await Promise.all([
      runExport({ out: big, webdataset: dest, shardSize: "1GB" }, quiet.log, quiet.note).then((code) => ({ code }), (err: unknown) => ({ err: err as Error })),
      runExport({ out: small, webdataset: dest, shardSize: "1KB" }, quiet.log, quiet.note).then((code) => ({ code }), (err: unknown) => ({ err: err as Error })),
    ]);
    for (const outcome of outcomes) if ("err" in outcome) assert.equal(outcome.err.constructor.name, "ExportRefused", outcome.err.stack);
    const jobs = new Set(shardMembers(dest).map((name) => name.split("/")[0].startsWith("frame-") ? "big" : "small"));
    assert.equal(jobs.size, 1, `DEST mixes both exports' shards (${fs.readdirSync(dest).sort().join(", ")}): a reader of shard-{000000..} gets samples of two datasets`);
  });

  it("--coco FILE twice at once: FILE is one whole COCO JSON, and an export that says it wrote FILE did", async () => {
    const file = path.join(fresh("same-coco"), "coco.json");
    fs.mkdirSync(path.dirname(file));
    const outcomes = await Promise.all([exportTo({ coco: file }), exportTo({ coco: file })]);
    for (const outcome of outcomes) if ("err" in outcome) assert.equal(outcome.err.constructor.name, "ExportRefused", outcome.err.stack);
    const coco = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.equal(coco.images.length, readFrameRecords(dataset).length);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["coco.json"], "no partial file left");
  });

  it("COCO of a dataset without masks or instances: every frame an image, no annotation, no category, exit 0", async () => {
    const file = path.join(fresh("no-mask-coco"), "coco.json");
    const outcome = await exportTo({ coco: file });
    assert.deepEqual(outcome, { code: 0 });
    const coco = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.equal(coco.images.length, readFrameRecords(dataset).length);
    assert.deepEqual([coco.annotations, coco.categories], [[], []]);
  });
});

describe("the line that binds the seed", () => {
  it("a line before the first real one with a seed but a bogus frame (-1, 1.5, \"0\") does not bind the dataset to another seed", async () => {
    const out = fresh("bogus-first");
    await runToEnd(base, { out, seed: 5, template: { spec: TEMPLATE, frames: 2, framesPerJob: 2 } });
    const index = path.join(out, "frames.jsonl");
    const [first] = readFrameRecords(out);
    const bogus = [-1, 1.5, "0"].map((frame) => JSON.stringify({ ...first, frame, seed: frameSeed(99, first.job, 0) }) + "\n");
    fs.writeFileSync(index, bogus.join("") + fs.readFileSync(index, "utf8"));
    const log = await runToEnd(base, { out, template: { spec: TEMPLATE, frames: 3 } }).then((l) => l, (err: unknown) => err as Error);
    assert.ok(Array.isArray(log), `refused: ${(log as Error).message}`);
    assert.deepEqual(templateFrames(out), upTo(3));
    assert.ok(readFrameRecords(out).every((r) => r.seed === frameSeed(5, r.job, r.frame)));
  });
});

describe("shard names past shard-999999", () => {
  // The fix chosen: shard 1,000,000 is refused (a 7-digit name would sort before shard-999999.tar), so every
  // name an export writes sorts in order; the names past it are not names at all.
  it("shard 1,000,000 sorts after shard 999,999 (ls, glob and sorted(glob) order shards by name): it is refused, every shard name below sorts in order", () => {
    const names = [0, 9, 10, 99_999, 100_000, 999_998, 999_999].map(shardName);
    assert.deepEqual([...names].sort(), names, `by name: ${[...names].sort().join(", ")}`);
    for (const index of [1_000_000, 1_000_001]) {
      assert.throws(() => shardName(index), (err: Error) => err.constructor.name === "ExportRefused" && /^more than 1,000,000 shards: give a larger --shard-size$/.test(err.message));
    }
  });
});

describe("verify of a dataset whose manifest.json is gone", () => {
  it("lines are not reported for a seed nobody recorded; nothing else changes", async () => {
    const out = fresh("verify-no-manifest");
    await runToEnd(base, { out, seed: 11, template: { spec: TEMPLATE, frames: 2, framesPerJob: 2 } });
    fs.renameSync(manifestFile(out), manifestFile(out) + ".bak");
    const report = await verifyDataset(out);
    assert.ok(report.problems.every((p) => !/seed/.test(p.message)), report.problems.map((p) => p.message).join("\n"));
  });
});

// The pure parts of `merge` (server/dataset/mergeShards.ts): which shard a job is taken from, one class table
// from tables that disagree, moving class ids in lines and images, the seed rule, layers and template cuts,
// and which paths overlap. The merge itself runs on real shards in tests/integration/merge.test.ts.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import {
  checkOverlaps, folderChain, JobPicks, MergeRefused, mergeClassTables, mergedSeed, mergeLayers, mergeTemplates, moveClassPixels, moveLineClasses, pathsOverlap,
} from "../../server/dataset/mergeShards.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { LAYERS } from "../../protocol/layers.js";

const spec = (id: string, extra: object = {}) => JSON.stringify({ id, frames: [{}, {}], ...extra });

describe("JobPicks: each job from the first shard where it is done", () => {
  it("takes the first shard, counts the later ones, and lists jobs done nowhere in the order first seen", () => {
    const picks = new JobPicks(["A", "B", "C"]);
    picks.addDone(0, "j1", spec("j1"));
    picks.addNotDone("j9");
    picks.addNotDone("j2");
    picks.addDone(1, "j1", spec("j1"));
    picks.addDone(1, "j2", spec("j2"));
    picks.addDone(2, "j1", spec("j1"));
    picks.addNotDone("j8");
    assert.equal(picks.picks.get("j1")!.shard, 0);
    assert.equal(picks.picks.get("j2")!.shard, 1, "a job pending in one shard and done in another is taken from the one where it is done");
    assert.deepEqual([...picks.alsoDoneIn], [["j1", [1, 2]]]);
    assert.deepEqual(picks.leftOut(), ["j9", "j8"]);
  });

  it("compares specs as canonical JSON: key order does not matter, a different value refuses naming the id and both shards", () => {
    const picks = new JobPicks(["shard-a", "shard-b"]);
    picks.addDone(0, "j", JSON.stringify({ id: "j", frames: [{}], width: 64 }));
    picks.addDone(1, "j", JSON.stringify({ width: 64, frames: [{}], id: "j" }));
    assert.throws(() => picks.addDone(1, "j", JSON.stringify({ id: "j", frames: [{}], width: 65 })), (err: Error) =>
      err instanceof MergeRefused && /job j: is done in shard shard-a and in shard shard-b with different specs/.test(err.message));
  });

  it("knows a job randomizes by its spec's non-empty randomize list", () => {
    const picks = new JobPicks(["A"]);
    picks.addDone(0, "r", spec("r", { randomize: [{ key: "b", prop: "x", uniform: [0, 1] }] }));
    picks.addDone(0, "e", spec("e", { randomize: [] }));
    picks.addDone(0, "p", spec("p"));
    assert.deepEqual(["r", "e", "p"].map((id) => picks.picks.get(id)!.randomized), [true, false, false]);
  });

  it("refuses a spec that is not JSON, naming the shard and job", () => {
    assert.throws(() => new JobPicks(["A"]).addDone(0, "j", "{"), /shard A: queue.sqlite: job j's spec is not JSON/);
  });
});

describe("mergeClassTables", () => {
  it("keeps tables that agree as they are, with nothing to move", () => {
    const table = [{ id: 1, label: "crate" }, { id: 2, label: "ball" }];
    const merged = mergeClassTables([table, [{ id: 2, label: "ball" }], []]);
    assert.deepEqual(merged.entries, table);
    assert.deepEqual(merged.moves.map((m) => m.size), [0, 0, 0]);
  });

  it("moves a later shard's ids to the first one's labels: a swap is a swap", () => {
    const merged = mergeClassTables([[{ id: 1, label: "crate" }, { id: 2, label: "ball" }], [{ id: 1, label: "ball" }, { id: 2, label: "crate" }]]);
    assert.deepEqual(merged.entries, [{ id: 1, label: "crate" }, { id: 2, label: "ball" }]);
    assert.deepEqual([...merged.moves[1]!], [[1, 2], [2, 1]]);
    assert.equal(merged.labels[1]!.get(1), "ball");
  });

  it("a new label keeps its id when free, else gets the lowest free id; every label has one id, every id one label", () => {
    const merged = mergeClassTables([
      [{ id: 1, label: "a" }, { id: 3, label: "c" }],
      [{ id: 1, label: "b" }, { id: 5, label: "e" }, { id: 3, label: "c" }],
      [{ id: 2, label: "d" }, { id: 1, label: "e" }],
    ]);
    assert.deepEqual(merged.entries, [{ id: 1, label: "a" }, { id: 2, label: "b" }, { id: 3, label: "c" }, { id: 4, label: "d" }, { id: 5, label: "e" }]);
    assert.deepEqual([...merged.moves[1]!], [[1, 2]]);
    assert.deepEqual([...merged.moves[2]!].sort(), [[1, 5], [2, 4]]);
    assert.equal(new Set(merged.entries.map((e) => e.label)).size, merged.entries.length);
  });

  it("refuses more labels than the 16-bit class layer holds", () => {
    const many = (prefix: string) => Array.from({ length: 40_000 }, (_, i) => ({ id: i + 1, label: `${prefix}${i}` }));
    assert.throws(() => mergeClassTables([many("a"), many("b")]), (err: Error) => err instanceof MergeRefused && /more than 65535 labels/.test(err.message));
  });
});

describe("moving class ids", () => {
  const record = {
    job: "j", frame: 0,
    instances: [{ id: 1, key: "c", label: "crate", class: 2, pixels: 3, bbox: [0, 0, 1, 3] }, { id: 2, key: "p", pixels: 1, bbox: [1, 0, 1, 1] }, { id: 3, key: "b", label: "ball", class: 1, pixels: 1, bbox: [1, 1, 1, 1] }],
  } as unknown as FrameRecord;

  it("a line's instances get their new classes, in a new record; unlabelled ones and other fields are kept", () => {
    const moved = moveLineClasses(record, new Map([[1, 2], [2, 1]]))!;
    assert.deepEqual(moved.instances!.map((i) => i.class), [1, undefined, 2]);
    assert.deepEqual(record.instances!.map((i) => i.class), [2, undefined, 1], "the record read is not changed");
    assert.equal(moved.job, "j");
  });

  it("a line whose classes don't move, or without instances, is kept as written (undefined)", () => {
    assert.equal(moveLineClasses(record, new Map()), undefined);
    assert.equal(moveLineClasses(record, new Map([[7, 8]])), undefined);
    assert.equal(moveLineClasses({ job: "j", frame: 0 } as unknown as FrameRecord, new Map([[1, 2]])), undefined);
  });

  it("pixels move all at once (1↔2 swaps), 0 and other ids stay", () => {
    const samples = Uint16Array.from([0, 1, 2, 3, 65535, 1]);
    assert.equal(moveClassPixels(samples, new Map([[1, 2], [2, 1]])), true);
    assert.deepEqual([...samples], [0, 2, 1, 3, 65535, 2]);
    assert.equal(moveClassPixels(Uint16Array.from([0, 3]), new Map([[1, 2]])), false);
  });
});

describe("mergedSeed", () => {
  it("with a randomized job taken, shards that gave jobs with different seeds refuse, naming them and their seeds", () => {
    assert.throws(
      () => mergedSeed([{ name: "A", seed: 7, jobs: 2, randomizedJobs: 1 }, { name: "B", seed: 8, jobs: 2, randomizedJobs: 0 }]),
      (err: Error) => err instanceof MergeRefused && err.message.includes("different seeds: A (seed 7), B (seed 8), and jobs taken from A are randomized"),
    );
    assert.throws(() => mergedSeed([{ name: "A", seed: 7, jobs: 1, randomizedJobs: 1 }, { name: "B", jobs: 1, randomizedJobs: 1 }]), /B \(seed not recorded\)/);
  });

  it("one seed is kept; different seeds without randomized jobs are recorded as none, with a note; shards that gave nothing don't count", () => {
    assert.deepEqual(mergedSeed([{ name: "A", seed: 7, jobs: 2, randomizedJobs: 1 }, { name: "B", seed: 7, jobs: 1, randomizedJobs: 0 }, { name: "C", seed: 9, jobs: 0, randomizedJobs: 0 }]), { seed: 7 });
    const mixed = mergedSeed([{ name: "A", seed: 7, jobs: 2, randomizedJobs: 0 }, { name: "B", seed: 8, jobs: 1, randomizedJobs: 0 }]);
    assert.equal(mixed.seed, undefined);
    assert.match(mixed.note!, /different seeds \(A \(seed 7\), B \(seed 8\); none of the jobs taken is randomized/);
    assert.deepEqual(mergedSeed([{ name: "A", seed: 7, jobs: 0, randomizedJobs: 0 }]), {});
  });
});

describe("layers and template cuts", () => {
  it("every layer of any shard, in declaration order; unknown ones after", () => {
    const { name: _m, ...mask } = LAYERS.mask;
    const { name: _r, ...rgb } = LAYERS.rgb;
    const merged = mergeLayers([{ mask, future: { meaning: "x" } as never }, { rgb }]);
    assert.deepEqual(Object.keys(merged), ["rgb", "mask", "future"]);
  });

  it("template cuts: one frames_per_job is kept with every --frames; different ones are dropped with a note", () => {
    assert.deepEqual(mergeTemplates([{ name: "A", template: { frames_per_job: 10, frames: [100] } }, { name: "B" }, { name: "C", template: { frames_per_job: 10, frames: [50, 100] } }]), { template: { frames_per_job: 10, frames: [50, 100] } });
    const differ = mergeTemplates([{ name: "A", template: { frames_per_job: 10, frames: [100] } }, { name: "B", template: { frames_per_job: 5, frames: [100] } }]);
    assert.equal(differ.template, undefined);
    assert.match(differ.note!, /A: 10 per job, B: 5 per job/);
  });
});

describe("paths", () => {
  it("pathsOverlap: the same folder, or one inside the other; a common prefix is not inside", () => {
    assert.equal(pathsOverlap("/d/a", "/d/a"), true);
    assert.equal(pathsOverlap("/d/a/b", "/d/a"), true);
    assert.equal(pathsOverlap("/d/a", "/d/a/b"), true);
    assert.equal(pathsOverlap("/d/ab", "/d/a"), false);
    assert.equal(pathsOverlap("/d/a", "/d/b"), false);
  });

  it("checkOverlaps: a shard twice (also under another name), nested shards, and DIR that is, holds or is inside a shard", () => {
    const a = { given: "a", root: "/d/a" };
    assert.throws(() => checkOverlaps([a, { given: "a", root: "/d/a" }]), /shard a: is given twice; give each shard once/);
    assert.throws(() => checkOverlaps([a, { given: "link", root: "/d/a" }]), /shard link: is given twice \(a and link are both \/d\/a\)/);
    assert.throws(() => checkOverlaps([a, { given: "inner", root: "/d/a/x" }]), /shards a and inner: one is inside the other/);
    assert.throws(() => checkOverlaps([a], { given: "out", real: "/d/a" }), /--into out: is the shard a/);
    assert.throws(() => checkOverlaps([a], { given: "out", real: "/d/a/m" }), /--into out: is inside the shard a/);
    assert.throws(() => checkOverlaps([a], { given: "out", real: "/d" }), /--into out: holds the shard a/);
    checkOverlaps([a, { given: "b", root: "/d/b" }], { given: "m", real: "/d/m" });
  });

  it("checkOverlaps: one folder at two real paths (a bind mount) is told by its identity: given twice, nested, or DIR inside it", () => {
    // Chains of folder identities, innermost first: /d/a is folder 3 in 2 in 1; /mnt/alias is the same folder 3, mounted elsewhere.
    const a = { given: "a", root: "/d/a", folders: ["1:3", "1:2", "1:1"] };
    const alias = { given: "/mnt/alias", root: "/mnt/alias", folders: ["1:3", "1:9", "1:1"] };
    assert.throws(() => checkOverlaps([a, alias]), /shard \/mnt\/alias: is given twice \(a and \/mnt\/alias are one folder, seen at two places: a bind mount\)/);
    assert.throws(() => checkOverlaps([a, { given: "x", root: "/mnt/alias/x", folders: ["1:7", "1:3", "1:9", "1:1"] }]), /shards a and x: one is inside the other/);
    assert.throws(() => checkOverlaps([{ given: "x", root: "/mnt/alias/x", folders: ["1:7", "1:3", "1:9", "1:1"] }, a]), /shards x and a: one is inside the other/);
    // DIR /mnt/alias/m (missing): its nearest folder is the alias, so it would be written inside shard a.
    assert.throws(() => checkOverlaps([a], { given: "/mnt/alias/m", real: "/mnt/alias/m", folders: alias.folders }), /--into \/mnt\/alias\/m: is inside the shard a \(\/d\/a\)/);
    checkOverlaps([a, { given: "b", root: "/d/b", folders: ["1:4", "1:2", "1:1"] }], { given: "m", real: "/d/m", folders: ["1:2", "1:1"] });
  });

  it("folderChain: a folder's identity and those above it, up to the root", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-chain-"));
    try {
      fs.mkdirSync(path.join(dir, "in"));
      const inner = folderChain(path.join(dir, "in"));
      assert.deepEqual(inner.slice(1), folderChain(dir));
      assert.equal(inner.at(-1), folderChain("/")[0]);
      assert.equal(new Set(inner).size, inner.length);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

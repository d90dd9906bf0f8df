// protocol/randomize (the randomizer schema) and server/dispatch/randomizeFrame (seeds and draws).
// Every class of bad spec is refused with a path naming the field; draws are checked for
// reproducibility, stream independence and, statistically, for the distribution each sampler
// promises (checks a constant, badly scaled or wrongly shaped sampler cannot pass).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { PerspectiveCamera, Vector3 } from "three";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import {
  MAX_RANDOMIZERS, RandomizeListSchema, randomizerKeyProblems, RESERVED_PROPS, type Randomizer,
} from "../../protocol/randomize.js";
import type { SceneElement } from "../../protocol/elements.js";
import { CameraPoseSchema, type CameraPose } from "../../protocol/camera.js";
import { describeIssues } from "../../protocol/describeIssues.js";
import { drawFrame, hsvToHex, rngFor } from "../../server/dispatch/randomizeFrame.js";
import { frameSeed, parseRunSeed, RUN_SEED_MAX } from "../../server/dataset/seeds.js";

/** The randomize list of the issue's example job. */
const EXAMPLE = [
  { key: "box", prop: "position", uniform: [[-1, 0, -1], [1, 1, 1]] },
  { key: "box", prop: "color", choice: ["#e4572e", "#669bbc", "#f3a712"] },
  { camera: { orbit: { target: [0, 0.5, 0], radius: [4, 6], elevation: [10, 60] } } },
];

const parse = (list: unknown): Randomizer[] => RandomizeListSchema.parse(list);

/** Asserts `list` is refused with an issue at `path` whose message matches `message`. */
function refusedList(list: unknown, path: PropertyKey[], message: RegExp): void {
  const result = RandomizeListSchema.safeParse(list);
  assert.ok(!result.success, `accepted ${JSON.stringify(list)}`);
  const issues = result.error.issues.map((i) => ({ path: i.path, message: i.message }));
  assert.ok(
    issues.some((i) => JSON.stringify(i.path) === JSON.stringify(path) && message.test(i.message)),
    `wanted ${JSON.stringify(path)} ~ ${message} for ${JSON.stringify(list)}; got ${describeIssues(result.error)}`,
  );
}
/** One randomizer, refused at [0, ...path]. */
const refused = (randomizer: unknown, path: PropertyKey[], message: RegExp) => refusedList([randomizer], [0, ...path], message);
const box = (sampler: Record<string, unknown>) => ({ key: "box", prop: "position", ...sampler });
const orbit = (fields: Record<string, unknown>) => ({ camera: { orbit: { radius: 5, ...fields } } });

describe("randomizer schema", () => {
  it("accepts the issue's example and every sampler's full form", () => {
    assert.equal(parse(EXAMPLE).length, 3);
    parse([
      box({ uniform: [0, 1] }),
      { key: "a", prop: "scale", normal: { mean: [1, 2, 3], std: 0.5, clamp: [0, [2, 3, 4]] } },
      { key: "a", prop: "roughness", normal: { mean: 0.5, std: 0.1, clamp: [0, 1] } },
      { key: "a", prop: "material", choice: [{ color: "red" }, null, [1, 2], "x", 3, true], weights: [1, 0, 2, 0.5, 1, 1] },
      { key: "a", prop: "color", hsv: {} },
      { key: "b", prop: "color", hsv: { h: [0, 360], s: [0.5, 0.5], v: [0, 1] } },
      { camera: { orbit: { radius: 3, shell: "sphere", azimuth: [-360, 360], fov: [20, 179] } } },
    ]);
    parse(Array.from({ length: MAX_RANDOMIZERS }, (_, i) => ({ key: "box", prop: `p${i}`, uniform: [0, 1] })));
  });

  it("refuses uniform bounds of different shapes, min above max, and bad numbers", () => {
    refused(box({ uniform: [0, [1, 1]] }), ["uniform", 1], /max has 2 components but min has a number/);
    refused(box({ uniform: [[0, 0, 0], [1, 1]] }), ["uniform", 1], /max has 2 components but min has 3 components/);
    refused(box({ uniform: [[0], 1] }), ["uniform", 1], /max has a number but min has 1 component/);
    refused(box({ uniform: [[3, 0], [1, 1]] }), ["uniform"], /^min 3 is above max 1 at component 0$/);
    refused(box({ uniform: [[0, 5], [1, 1]] }), ["uniform"], /^min 5 is above max 1 at component 1$/);
    refused(box({ uniform: [2, 1] }), ["uniform"], /^min 2 is above max 1$/);
    refused(box({ uniform: [NaN, 1] }), ["uniform", 0], /NaN/);
    refused(box({ uniform: [0, Infinity] }), ["uniform", 1], /Infinity/);
    refused(box({ uniform: [[0, -Infinity], [1, 1]] }), ["uniform", 0, 1], /Infinity/);
    refused(box({ uniform: [["0"], [1]] }), ["uniform", 0, 0], /expected number/);
    refused(box({ uniform: [0, null] }), ["uniform", 1], /expected number/);
    refused(box({ uniform: [[], []] }), ["uniform", 0], /empty list/);
    refused(box({ uniform: [Array(17).fill(0), Array(17).fill(1)] }), ["uniform", 0], /at most 16 components/);
    refused(box({ uniform: [1] }), ["uniform"], /two entries: \[min, max\]/);
    refused(box({ uniform: [0, 1, 2] }), ["uniform"], /two entries/);
    refused(box({ uniform: { min: 0, max: 1 } }), ["uniform"], /two entries/);
  });

  it("refuses normal specs with a negative std, mismatched shapes, bad clamps or overflowing draws", () => {
    const normal = (n: Record<string, unknown>) => box({ normal: { mean: 0, std: 1, ...n } });
    refused(normal({ std: -0.1 }), ["normal", "std"], /std must be 0 or more \(is -0.1\)/);
    refused(normal({ mean: [0, 0], std: [1, -1] }), ["normal", "std", 1], /std must be 0 or more/);
    refused(normal({ mean: [0, 0], std: [1, 1, 1] }), ["normal", "std"], /std has 3 components but mean has 2/);
    refused(normal({ mean: 0, std: [1] }), ["normal", "std"], /std has 1 component but mean has a number/);
    refused(normal({ clamp: [1, -1] }), ["normal", "clamp"], /^min 1 is above max -1$/);
    refused(normal({ mean: [0, 0], std: 1, clamp: [[0, 2], 1] }), ["normal", "clamp"], /min 2 is above max 1 at component 1/);
    refused(normal({ mean: [0, 0], clamp: [[0, 0, 0], 1] }), ["normal", "clamp", 0], /min has 3 components but mean has 2/);
    refused(normal({ mean: 0, clamp: [[0], [1]] }), ["normal", "clamp", 0], /min has 1 component but mean has a number/);
    refused(normal({ mean: NaN }), ["normal", "mean"], /NaN/);
    refused(normal({ std: Infinity }), ["normal", "std"], /Infinity/);
    refused(normal({ mean: [] }), ["normal", "mean"], /empty list/);
    refused(normal({ mean: Array(17).fill(0) }), ["normal", "mean"], /at most 16/);
    refused(normal({ mean: 1e308, std: 1e308 }), ["normal", "std"], /beyond the largest finite number/);
    refused(normal({ mean: [0, -1.7e308], std: [1, 1e307] }), ["normal", "std", 1], /beyond the largest finite number/);
    refused(box({ normal: { mean: 0 } }), ["normal", "std"], /expected number/);
    refused(normal({ sigma: 1 }), ["normal"], /Unrecognized key: "sigma"/);
  });

  it("refuses empty choices, non-JSON options and bad weights", () => {
    refused(box({ choice: [] }), ["choice"], /at least 1 option/);
    refused(box({ choice: "red" }), ["choice"], /expected array/);
    refused(box({ choice: Array(10_001).fill(1) }), ["choice"], /at most 10000 options/);
    refused(box({ choice: [1, NaN] }), ["choice", 1], /not a JSON number/);
    refused(box({ choice: [{ a: [1, undefined] }] }), ["choice", 0, "a", 1], /undefined is not a JSON value/);
    // Holes read as undefined but forEach and Object.keys skip them; JSON.stringify would write null.
    refused(box({ choice: [[1, , 3]] }), ["choice", 0, 1], /hole in the list/);
    refused(box({ choice: ["ok", { a: [[0, , 2]] }] }), ["choice", 1, "a", 0, 1], /hole in the list/);
    const far: number[] = [0];
    far[2 ** 32 - 2] = 1; // found at index 1 without walking four billion indices
    const farIssues = RandomizeListSchema.safeParse([box({ choice: [far] })]).error?.issues;
    assert.deepEqual(farIssues?.map((i) => i.path), [[0, "choice", 0, 1]]);
    refused(box({ choice: [() => 1] }), ["choice", 0], /function is not a JSON value/);
    refused(box({ choice: [new Date(0)] }), ["choice", 0], /not a JSON value/);
    refused(box({ choice: [1, 2, 3], weights: [1, 2] }), ["weights"], /^weights has 2 entries but choice has 3/);
    refused(box({ choice: [1], weights: [1, 2] }), ["weights"], /weights has 2 entries but choice has 1/);
    refused(box({ choice: [1, 2], weights: [-1, 2] }), ["weights", 0], /weight must be 0 or more/);
    refused(box({ choice: [1, 2], weights: [0, 0] }), ["weights"], /all 0/);
    refused(box({ choice: [1, 2], weights: [1, NaN] }), ["weights", 1], /NaN/);
    refused(box({ choice: [1, 2], weights: [1, Infinity] }), ["weights", 1], /Infinity/);
    refused(box({ uniform: [0, 1], weights: [1] }), ["weights"], /weights go with choice/);
  });

  it("refuses hsv ranges outside 0…360 / 0…1 or reversed", () => {
    refused(box({ hsv: { h: [-1, 10] } }), ["hsv", "h", 0], /within 0…360/);
    refused(box({ hsv: { h: [0, 360.5] } }), ["hsv", "h", 1], /within 0…360/);
    refused(box({ hsv: { h: [350, 10] } }), ["hsv", "h"], /lo 350 is above hi 10.*do not wrap/);
    refused(box({ hsv: { s: [0, 1.5] } }), ["hsv", "s", 1], /within 0…1/);
    refused(box({ hsv: { v: [-0.1, 1] } }), ["hsv", "v", 0], /within 0…1/);
    refused(box({ hsv: { v: [0.8, 0.2] } }), ["hsv", "v"], /lo 0.8 is above hi 0.2/);
    refused(box({ hsv: { s: 0.5 } }), ["hsv", "s"], /two entries: \[lo, hi\]/);
    refused(box({ hsv: { h: [0, NaN] } }), ["hsv", "h", 1], /NaN/);
    refused(box({ hsv: { hue: [0, 10] } }), ["hsv"], /Unrecognized key: "hue"/);
  });

  it("refuses no sampler, two samplers and unknown fields", () => {
    refused({ key: "box", prop: "position" }, [], /needs a sampler: one of uniform, normal, choice, hsv/);
    refused(box({ uniform: [0, 1], normal: { mean: 0, std: 1 } }), ["normal"], /one sampler.*uniform already/);
    refused(box({ choice: [1], hsv: {} }), ["hsv"], /one sampler.*choice already/);
    refused(box({ uniform: [0, 1], normal: { mean: 0, std: 1 }, hsv: {} }), ["hsv"], /one sampler/);
    refused(box({ uniform: [0, 1], seed: 3 }), [], /Unrecognized key: "seed"/);
    refused(box({ uniform: [0, 1], camera: { orbit: { radius: 1 } } }), [], /Unrecognized keys?: .*"key"/);
    refused(5, [], /expected object/);
    refused(null, [], /expected object/);
    refused([], [], /expected object/);
  });

  it("refuses blank, malformed and reserved keys", () => {
    refused(box({ key: "", uniform: [0, 1] }), ["key"], /must not be empty/);
    refused(box({ key: "a b", uniform: [0, 1] }), ["key"], /letters, digits/);
    refused(box({ key: 7, uniform: [0, 1] }), ["key"], /expected string/);
    refused({ prop: "x", uniform: [0, 1] }, ["key"], /expected string/);
    for (const key of ["tabfarm.camera", "TabFarm.root", "TABFARM.x"]) refused(box({ key, uniform: [0, 1] }), ["key"], /reserved|farm's own/);
  });

  it("refuses prop names that are not plain names or that name the element's identity", () => {
    for (const prop of RESERVED_PROPS) refused({ key: "box", prop, uniform: [0, 1] }, ["prop"], /cannot be randomized/);
    for (const prop of ["key", "tag", "children", "instance", "label", "__proto__", "constructor", "prototype"]) {
      refused({ key: "box", prop, uniform: [0, 1] }, ["prop"], new RegExp(`"${prop}" cannot be randomized`));
    }
    refused({ key: "box", prop: "", uniform: [0, 1] }, ["prop"], /must not be empty/);
    for (const prop of ["a.b", "position.x", "1st", "a-b", "a b", "é", "a[0]"]) refused({ key: "box", prop, uniform: [0, 1] }, ["prop"], /letters, digits and _/);
    refused({ key: "box", prop: "p".repeat(65), uniform: [0, 1] }, ["prop"], /at most 64 characters/);
    refused({ key: "box", uniform: [0, 1] }, ["prop"], /expected string/);
    parse([{ key: "box", prop: "p".repeat(64), uniform: [0, 1] }, { key: "box", prop: "_x9", uniform: [0, 1] }]);
  });

  it("refuses bad camera orbits", () => {
    const at = ["camera", "orbit"];
    refused(orbit({ radius: 0 }), [...at, "radius"], /radius must be above 0/);
    refused(orbit({ radius: -2 }), [...at, "radius"], /radius must be above 0/);
    refused(orbit({ radius: [0, 1] }), [...at, "radius", 0], /radius must be above 0/);
    refused(orbit({ radius: [3, 1] }), [...at, "radius"], /lo 3 is above hi 1/);
    refused(orbit({ radius: [1] }), [...at, "radius"], /two entries/);
    refused({ camera: { orbit: {} } }, [...at, "radius"], /expected number/);
    refused(orbit({ elevation: [-91, 0] }), [...at, "elevation", 0], /within -90…90/);
    refused(orbit({ elevation: [0, 90.5] }), [...at, "elevation", 1], /within -90…90/);
    refused(orbit({ elevation: [60, 10] }), [...at, "elevation"], /lo 60 is above hi 10/);
    refused(orbit({ azimuth: [90, 0] }), [...at, "azimuth"], /lo 90 is above hi 0/);
    refused(orbit({ azimuth: [0, 720] }), [...at, "azimuth", 1], /within -360…360/);
    refused(orbit({ shell: "sphere", elevation: [0, 10] }), [...at, "shell"], /shell or elevation, not both/);
    refused(orbit({ shell: "cube" }), [...at, "shell"], /"sphere" or "hemisphere"/);
    refused(orbit({ fov: 0 }), [...at, "fov"], /fov must be above 0/);
    refused(orbit({ fov: 180 }), [...at, "fov"], /at most 179/);
    refused(orbit({ fov: [10, 200] }), [...at, "fov", 1], /at most 179/);
    refused(orbit({ fov: [60, 30] }), [...at, "fov"], /lo 60 is above hi 30/);
    refused(orbit({ target: [0, 0] }), [...at, "target"], /./);
    refused(orbit({ target: [0, NaN, 0] }), [...at, "target", 1], /NaN/);
    refused(orbit({ target: [1.7e308, 0, 0], radius: 1e308 }), [...at, "target", 0], /beyond the largest finite number/);
    // A radius lost in the rounding of the target's coordinates would put the camera on the point it looks at.
    refused(orbit({ target: [1e9, 1e9, 1e9], radius: 1e-9 }), [...at, "radius"], /radius 1e-9 is below 1000, the smallest this target allows \(1e-6 × its largest coordinate/);
    refused(orbit({ target: [0, -2e9, 0], radius: [1999, 1e4] }), [...at, "radius", 0], /radius 1999 is below 2000/);
    refused(orbit({ radius: [1e-7, 1] }), [...at, "radius", 0], /radius 1e-7 is below 0.000001, the smallest orbit radius/);
    parse([orbit({ target: [0, -2e9, 0], radius: [2000, 1e4] })]);
    parse([orbit({ target: [0.5, 0, 0], radius: 1e-6 })]);
    refused(orbit({ distance: 3 }), at, /Unrecognized key: "distance"/);
    refused({ camera: { orbit: { radius: 1 }, fov: 30 } }, ["camera"], /Unrecognized key: "fov"/);
    refused({ camera: {} }, [...at], /expected object/);
    refused({ camera: 5 }, ["camera"], /camera must be an object/);
  });

  it("refuses list-level problems: too many, two cameras, a prop drawn twice, a clash with the camera's record", () => {
    refusedList(Array.from({ length: MAX_RANDOMIZERS + 1 }, (_, i) => ({ key: "box", prop: `p${i}`, uniform: [0, 1] })), [], /at most 256 randomizers/);
    refusedList([orbit({}), box({ uniform: [0, 1] }), orbit({ radius: 2 })], [2, "camera"], /randomize 0 is a camera randomizer already/);
    refusedList([box({ uniform: [0, 1] }), box({ choice: [1, 2] })], [1, "prop"], /randomize 0 draws "position" of "box" already/);
    refusedList([{ key: "camera", prop: "position", uniform: [0, 1] }, orbit({})], [0, "prop"], /"camera.position" is what randomize 1/);
    refusedList([orbit({}), { key: "camera", prop: "fov", uniform: [1, 2] }], [1, "prop"], /"camera.fov"/);
    refusedList({ randomizers: [] }, [], /expected array/);
    // The same prop of different keys, and a key "camera" without a camera randomizer, are fine.
    parse([box({ uniform: [0, 1] }), { key: "other", prop: "position", uniform: [0, 1] }, { key: "camera", prop: "position", uniform: [0, 1] }]);
    parse([]);
  });
});

describe("randomizerKeyProblems", () => {
  const scene: SceneElement = {
    tag: "DefaultScene", key: "root",
    children: [{ tag: "Group", key: "g", children: [{ tag: "Group", key: "inner", children: [{ tag: "Box", key: "deep" }] }] }, { tag: "Box", key: "box" }],
  };
  it("accepts keys anywhere in the tree and names each missing one", () => {
    const list = parse([
      { key: "deep", prop: "position", uniform: [0, 1] },
      { key: "missing", prop: "position", uniform: [0, 1] },
      { key: "root", prop: "background", hsv: {} },
      orbit({}),
      { key: "box", prop: "color", hsv: {} },
      { key: "Box", prop: "color", hsv: {} },
    ]);
    assert.deepEqual(randomizerKeyProblems(list, scene), [
      { path: [1, "key"], message: 'no element with key "missing" in the job\'s scene' },
      { path: [5, "key"], message: 'no element with key "Box" in the job\'s scene' },
    ]);
    assert.deepEqual(randomizerKeyProblems(parse([orbit({})]), undefined), []);
    assert.match(randomizerKeyProblems(parse([box({ uniform: [0, 1] })]), undefined)[0].message, /no element with key "box"/);
  });
  it("walks a deep scene without recursion", () => {
    let node: SceneElement = { tag: "Box", key: "leaf" };
    for (let i = 0; i < 50_000; i++) node = { tag: "Group", key: `g${i}`, children: [node] };
    assert.deepEqual(randomizerKeyProblems(parse([{ key: "leaf", prop: "x", uniform: [0, 1] }]), node), []);
  });
});

describe("run and frame seeds", () => {
  it("parseRunSeed takes plain decimal whole numbers 0 … 2^53−1 and says why it refuses others", () => {
    assert.equal(parseRunSeed("0"), 0);
    assert.equal(parseRunSeed("42"), 42);
    assert.equal(parseRunSeed(String(RUN_SEED_MAX)), RUN_SEED_MAX);
    assert.equal(RUN_SEED_MAX, 2 ** 53 - 1);
    const cases: [string, RegExp][] = [
      ["", /is empty/], ["1e3", /"e", which is not a decimal digit/], ["0x10", /"x", which is not a decimal digit/],
      ["-1", /is negative/], [" 5", /whitespace/], ["5\n", /whitespace/], ["1.5", /not a whole number/], ["1.0", /not a whole number/],
      ["+5", /"\+"/], ["Infinity", /"I"/], ["NaN", /"N"/], ["١٢", /not a decimal digit/], ["1_000", /"_"/],
      [String(2 ** 53), /above 9007199254740991/], ["99999999999999999999999", /above 9007199254740991/],
    ];
    for (const [text, why] of cases) {
      assert.throws(() => parseRunSeed(text), (e: Error) => e instanceof RangeError && why.test(e.message) && e.message.includes(JSON.stringify(text)), text);
    }
  });

  it("frameSeed is the documented sha256 derivation: deterministic, 48-bit, integer", () => {
    const documented = (run: number, job: string, frame: number) =>
      createHash("sha256").update(`tabfarm-frame\0${run}\0${job}\0${frame}`).digest().readUIntBE(0, 6);
    for (const [run, job, frame] of [[0, "job", 0], [RUN_SEED_MAX, "a.b-c_d", 99_999], [7, "x", 3]] as const) {
      assert.equal(frameSeed(run, job, frame), documented(run, job, frame));
      assert.equal(frameSeed(run, job, frame), frameSeed(run, job, frame));
    }
    // Pinned: a change to the derivation would change every past run's draws.
    assert.equal(frameSeed(0, "job", 0), documented(0, "job", 0));
    assert.equal(frameSeed(42, "job-1", 0), 152935885588426);
    const base = frameSeed(42, "job-1", 0);
    assert.notEqual(frameSeed(43, "job-1", 0), base);
    assert.notEqual(frameSeed(42, "job-2", 0), base);
    assert.notEqual(frameSeed(42, "job-1", 1), base);
  });

  it("frameSeed separates its parts, so concatenations that read alike do not collide", () => {
    assert.notEqual(frameSeed(1, "a1", 2), frameSeed(1, "a", 12));
    assert.notEqual(frameSeed(12, "a", 0), frameSeed(1, "2a", 0));
    assert.notEqual(frameSeed(1, "a\u00001", 2), frameSeed(1, "a", 1));
    assert.notEqual(frameSeed(1, "a\u0000", 12), frameSeed(1, "a", 12));
  });

  it("100,000 frames of a run get distinct seeds below 2^48", () => {
    const seen = new Set<number>();
    for (let job = 0; job < 10; job++) {
      for (let frame = 0; frame < 10_000; frame++) {
        const seed = frameSeed(123, `job-${job}`, frame);
        assert.ok(Number.isSafeInteger(seed) && seed >= 0 && seed < 2 ** 48);
        seen.add(seed);
      }
    }
    assert.equal(seen.size, 100_000);
  });

  it("frameSeed and rngFor refuse seeds and indices they would not derive exactly", () => {
    for (const run of [-1, 1.5, 2 ** 53, NaN, Infinity]) assert.throws(() => frameSeed(run, "j", 0), /run seed must be a whole number/);
    for (const frame of [-1, 0.5, NaN]) assert.throws(() => frameSeed(0, "j", frame), /frame index must be a whole number/);
    for (const seed of [-1, 2 ** 48, 0.5]) assert.throws(() => rngFor(seed, "box.position"), /frame seed must be a whole number/);
  });

  it("rngFor gives each stream its own sequence, repeatably", () => {
    const first = (seed: number, stream: string) => uniformFloat64(rngFor(seed, stream));
    assert.equal(first(5, "box.position"), first(5, "box.position"));
    assert.notEqual(first(5, "box.position"), first(5, "box.color"));
    assert.notEqual(first(5, "box.position"), first(6, "box.position"));
  });
});

describe("drawFrame", () => {
  const example = parse(EXAMPLE);

  it("draws the example: one merged patch per key, the camera pose and the record", () => {
    const draw = drawFrame(example, frameSeed(42, "job-1", 0));
    assert.equal(draw.patches.length, 1);
    const [patch] = draw.patches;
    assert.deepEqual(Object.keys(patch), ["key", "position", "color"]);
    assert.equal(patch.key, "box");
    assert.ok(["#e4572e", "#669bbc", "#f3a712"].includes(patch.color as string));
    assert.deepEqual(Object.keys(draw.randomized), ["box.position", "box.color", "camera.position"]);
    assert.deepEqual(draw.randomized["box.position"], patch.position);
    assert.deepEqual(draw.randomized["camera.position"], draw.camera?.position);
    assert.deepEqual(draw.camera?.lookAt, [0, 0.5, 0]);
    assert.ok(!("up" in draw.camera!), "no up away from the poles: the page's up applies");
    // The record survives JSON exactly (the frame's line).
    assert.deepEqual(JSON.parse(JSON.stringify(draw.randomized)), draw.randomized);
  });

  it("gives two keys two patches and no camera without a camera randomizer", () => {
    const draw = drawFrame(parse([box({ uniform: [0, 1] }), { key: "ball", prop: "radius", uniform: [1, 2] }, { key: "box", prop: "color", hsv: {} }]), 9);
    assert.deepEqual(draw.patches.map((p) => Object.keys(p)), [["key", "position", "color"], ["key", "radius"]]);
    assert.equal(draw.camera, undefined);
    assert.ok(!("camera" in draw));
  });

  it("draws the same values from the same seed and different values from another", () => {
    const seed = frameSeed(1, "job", 3);
    assert.deepEqual(drawFrame(example, seed), drawFrame(example, seed));
    const other = drawFrame(example, frameSeed(1, "job", 4));
    assert.notDeepEqual(other.randomized["box.position"], drawFrame(example, seed).randomized["box.position"]);
    assert.notDeepEqual(other.randomized["camera.position"], drawFrame(example, seed).randomized["camera.position"]);
  });

  it("draws each randomizer from its own stream: adding or reordering others changes nothing", () => {
    const seed = frameSeed(1, "job", 0);
    const alone = drawFrame(parse([EXAMPLE[0]]), seed).randomized;
    const crowded = drawFrame(parse([
      { key: "ball", prop: "position", uniform: [[-1, 0, -1], [1, 1, 1]] }, EXAMPLE[2], EXAMPLE[1], EXAMPLE[0],
    ]), seed).randomized;
    assert.deepEqual(crowded["box.position"], alone["box.position"]);
    assert.deepEqual(drawFrame(parse([EXAMPLE[2]]), seed).randomized["camera.position"], crowded["camera.position"]);
    assert.notDeepEqual(crowded["ball.position"], crowded["box.position"], "same sampler, other key: other stream");
  });

  it("hands out copies: editing a patch changes neither the record nor the spec", () => {
    const list = parse([{ key: "box", prop: "material", choice: [{ color: "red" }] }, box({ uniform: [[0, 0], [1, 1]] })]);
    const draw = drawFrame(list, 1);
    (draw.patches[0].material as { color: string }).color = "blue";
    (draw.patches[0].position as number[])[0] = 99;
    assert.deepEqual(draw.randomized["box.material"], { color: "red" });
    assert.notEqual((draw.randomized["box.position"] as number[])[0], 99);
    assert.deepEqual(drawFrame(list, 1).randomized["box.material"], { color: "red" });
  });

  it("draws a degenerate range, huge bounds and zero std without leaving the finite numbers", () => {
    const draw = drawFrame(parse([
      box({ uniform: [[0.1, -1.7e308], [0.1, 1.7e308]] }),
      { key: "box", prop: "n", normal: { mean: [3, 1e300], std: [0, 1e299] } },
    ]), 77);
    const [a, b] = draw.randomized["box.position"] as number[];
    assert.equal(a, 0.1);
    assert.ok(Number.isFinite(b));
    const [n0, n1] = draw.randomized["box.n"] as number[];
    assert.equal(n0, 3);
    assert.ok(Number.isFinite(n1));
  });
});

/** `count` draws of `list`, one per frame of a job (as a run makes them). */
function drawMany(list: unknown, count = 5000): ReturnType<typeof drawFrame>[] {
  const parsed = parse(list);
  return Array.from({ length: count }, (_, frame) => drawFrame(parsed, frameSeed(2024, "stats", frame)));
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const variance = (xs: number[]) => {
  const m = mean(xs);
  return xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1);
};
/** Asserts |actual − expected| < 5 standard errors. */
function near(actual: number, expected: number, standardError: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 5 * standardError, `${what}: ${actual}, expected ${expected} ± ${5 * standardError}`);
}
/** A fraction of n draws near probability p (binomial standard error). */
const nearFraction = (hits: number, n: number, p: number, what: string) => near(hits / n, p, Math.sqrt((p * (1 - p)) / n), what);

/** Digest of the weighted picks below, drawn by the first (linear-scan) pickIndex. */
const PINNED_WEIGHTED_PICKS = "476bdb9fd30ac13f";

describe("sampler distributions (5,000 draws each)", () => {
  it("uniform: every component in range, mean and variance of the uniform", () => {
    const lo = [-1, 0, -1, 10];
    const hi = [1, 1, 1, 10.5];
    const values = drawMany([box({ uniform: [lo, hi] })]).map((d) => d.randomized["box.position"] as number[]);
    for (let c = 0; c < lo.length; c++) {
      const xs = values.map((v) => v[c]);
      assert.ok(xs.every((x) => x >= lo[c] && x <= hi[c]), `component ${c} leaves [${lo[c]}, ${hi[c]}]`);
      const width = hi[c] - lo[c];
      near(mean(xs), (lo[c] + hi[c]) / 2, width / Math.sqrt(12 * xs.length), `mean of component ${c}`);
      // Var of the sample variance of a uniform: (μ4 − σ⁴)/n with μ4 = w⁴/80, σ⁴ = w⁴/144.
      near(variance(xs), width ** 2 / 12, width ** 2 * Math.sqrt((1 / 80 - 1 / 144) / xs.length), `variance of component ${c}`);
    }
    const scalars = drawMany([box({ uniform: [2, 3] })], 500).map((d) => d.randomized["box.position"]);
    assert.ok(scalars.every((x) => typeof x === "number" && x >= 2 && x <= 3), "a scalar range draws scalars");
  });

  it("normal: mean, variance and the one-sigma fraction of a normal; clamp keeps draws in bounds", () => {
    const xs = drawMany([box({ normal: { mean: 2, std: 0.5 } })]).map((d) => d.randomized["box.position"] as number);
    near(mean(xs), 2, 0.5 / Math.sqrt(xs.length), "mean");
    near(variance(xs), 0.25, 0.25 * Math.sqrt(2 / xs.length), "variance");
    nearFraction(xs.filter((x) => Math.abs(x - 2) < 0.5).length, xs.length, 0.682689, "within one std");
    nearFraction(xs.filter((x) => Math.abs(x - 2) < 1).length, xs.length, 0.954500, "within two std");

    const vectors = drawMany([box({ normal: { mean: [0, 100], std: [1, 10], clamp: [[-0.4, 0], [0.4, 1000]] } })]).map((d) => d.randomized["box.position"] as number[]);
    const first = vectors.map((v) => v[0]);
    assert.ok(first.every((x) => x >= -0.4 && x <= 0.4));
    nearFraction(first.filter((x) => Math.abs(x) === 0.4).length, first.length, 0.689157, "clamped at ±0.4 (P(|z| > 0.4))");
    const second = vectors.map((v) => v[1]);
    near(mean(second), 100, 10 / Math.sqrt(second.length), "per-component mean and std");
    near(variance(second), 100, 100 * Math.sqrt(2 / second.length), "per-component variance");
  });

  it("choice: every option appears with its odds; a zero-weight option never", () => {
    const plain = drawMany([box({ choice: ["a", "b", "c"] })]).map((d) => d.randomized["box.position"]);
    for (const option of ["a", "b", "c"]) nearFraction(plain.filter((x) => x === option).length, plain.length, 1 / 3, `option ${option}`);

    const weighted = drawMany([box({ choice: ["a", "never", "b", "c"], weights: [1, 0, 3, 1e-300] })]).map((d) => d.randomized["box.position"]);
    assert.equal(weighted.filter((x) => x === "never").length, 0);
    nearFraction(weighted.filter((x) => x === "a").length, weighted.length, 0.25, "weight 1 of 4");
    nearFraction(weighted.filter((x) => x === "b").length, weighted.length, 0.75, "weight 3 of 4");

    const huge = drawMany([box({ choice: ["x", "y"], weights: [1.7e308, 1.7e308] })], 2000).map((d) => d.randomized["box.position"]);
    nearFraction(huge.filter((x) => x === "x").length, huge.length, 0.5, "weights whose sum overflows");
  });

  it("choice: weighted draws are pinned (the same seed picks the same option as it always did, whatever the weights' shape)", () => {
    const shapes: number[][] = [
      [0, 0, 1, 0, 0], [0.2, 1e-9, 3], [1e308, 1e308, 1e308], [1e-300, 1, 1e-300], [5e-324, 0, 5e-324], [1e308, 5e-324, 1],
      [3, 0, 0, 0, 2, 0], Array.from({ length: 10 }, () => 0.1), Array.from({ length: 97 }, (_, i) => (i % 3 ? i * 0.1 : 0)),
      Array.from({ length: 1000 }, (_, i) => 1 / (i + 1)), Array.from({ length: 1000 }, (_, i) => (i === 999 ? 1 : 1e-17)),
    ];
    const list = parse(shapes.map((weights, r) => ({ key: "box", prop: `p${r}`, choice: weights.map((_, i) => i), weights })));
    const picks = drawMany(list, 2000).map((d) => shapes.map((_, r) => d.randomized[`box.p${r}`]).join(",")).join(";");
    assert.equal(createHash("sha256").update(picks).digest("hex").slice(0, 16), PINNED_WEIGHTED_PICKS);
  });

  it("hsv: lowercase #rrggbb whose hue, saturation and value land in their ranges, spread over them", () => {
    const colours = drawMany([box({ hsv: { h: [100, 140], s: [0.6, 1], v: [0.5, 0.9] } })]).map((d) => d.randomized["box.position"] as string);
    const hsvs = colours.map((hex) => {
      assert.match(hex, /^#[0-9a-f]{6}$/);
      return hexToHsv(hex);
    });
    // 8-bit channels move the hue by under 1° at these saturations and values.
    assert.ok(hsvs.every(([h, s, v]) => h > 99 && h < 141 && s > 0.59 && s <= 1 && v > 0.49 && v < 0.91), "in range");
    near(mean(hsvs.map(([h]) => h)), 120, 40 / Math.sqrt(12 * hsvs.length) + 0.1, "hue mean");
    near(mean(hsvs.map(([, , v]) => v)), 0.7, 0.4 / Math.sqrt(12 * hsvs.length) + 0.002, "value mean");
    assert.ok(Math.min(...hsvs.map(([h]) => h)) < 102 && Math.max(...hsvs.map(([h]) => h)) > 138, "spread over the hue range");

    const any = drawMany([box({ hsv: {} })], 2000).map((d) => hexToHsv(d.randomized["box.position"] as string));
    for (let sextant = 0; sextant < 6; sextant++) {
      nearFraction(any.filter(([h, s]) => s > 0.2 && Math.floor(h / 60) === sextant).length, any.length, 0.8 / 6, `default hue sextant ${sextant}`);
    }
  });

  it("hsvToHex converts the primary and edge colours", () => {
    assert.equal(hsvToHex(0, 1, 1), "#ff0000");
    assert.equal(hsvToHex(120, 1, 1), "#00ff00");
    assert.equal(hsvToHex(240, 1, 1), "#0000ff");
    assert.equal(hsvToHex(360, 1, 1), "#ff0000");
    assert.equal(hsvToHex(60, 1, 0.5), "#808000");
    assert.equal(hsvToHex(200, 0, 1), "#ffffff");
    assert.equal(hsvToHex(200, 1, 0), "#000000");
  });

  it("orbit: radius, elevation band (area-uniform) and azimuth around the target; looks at it", () => {
    const target = [1, 0.5, -2];
    const draws = drawMany([{ camera: { orbit: { target, radius: [4, 6], elevation: [10, 60], fov: [30, 50] } } }]);
    const rel = draws.map((d) => (d.randomized["camera.position"] as number[]).map((x, i) => x - target[i]));
    const distances = rel.map((v) => Math.hypot(...v));
    assert.ok(distances.every((r) => r >= 4 - 1e-9 && r <= 6 + 1e-9));
    near(mean(distances), 5, 2 / Math.sqrt(12 * distances.length), "radius mean");
    const sines = rel.map((v, i) => v[1] / distances[i]);
    const degrees = (rad: number) => (rad * 180) / Math.PI;
    assert.ok(sines.every((s) => degrees(Math.asin(s)) >= 10 - 1e-9 && degrees(Math.asin(s)) <= 60 + 1e-9));
    // Area-uniform: sin(elevation) is uniform, so half the draws lie above the middle sine
    // (uniform elevation angles would put 57% there: 10 standard errors away).
    const middle = (Math.sin((10 * Math.PI) / 180) + Math.sin((60 * Math.PI) / 180)) / 2;
    nearFraction(sines.filter((s) => s > middle).length, sines.length, 0.5, "draws above the middle sine");
    // Azimuth uniform over the full turn: each quadrant a quarter.
    const azimuths = rel.map(([x, , z]) => (degrees(Math.atan2(x, z)) + 360) % 360);
    for (let q = 0; q < 4; q++) nearFraction(azimuths.filter((a) => Math.floor(a / 90) === q).length, azimuths.length, 0.25, `azimuth quadrant ${q}`);
    for (const d of draws) {
      const pose = d.camera!;
      assert.deepEqual(CameraPoseSchema.parse(pose satisfies CameraPose), pose, "a pose a job could give");
      assert.deepEqual(pose.lookAt, target);
      assert.ok(pose.fov! >= 30 && pose.fov! <= 50);
      assert.equal(d.randomized["camera.fov"], pose.fov);
    }
    near(mean(draws.map((d) => d.randomized["camera.fov"] as number)), 40, 20 / Math.sqrt(12 * draws.length), "fov mean");
  });

  it("orbit shells: the hemisphere stays above the target, the sphere covers both halves", () => {
    const above = drawMany([orbit({})], 2000).map((d) => (d.randomized["camera.position"] as number[])[1]);
    assert.ok(above.every((y) => y >= 0));
    nearFraction(above.filter((y) => y > 2.5).length, above.length, 0.5, "hemisphere: area-uniform (half above 30°)");
    const sphere = drawMany([orbit({ shell: "sphere" })], 2000).map((d) => (d.randomized["camera.position"] as number[])[1]);
    nearFraction(sphere.filter((y) => y < 0).length, sphere.length, 0.5, "sphere: half below");
    assert.ok(drawMany([orbit({})], 50).every((d) => !("camera.fov" in d.randomized)), "no fov recorded when none is asked for");
    assert.equal(drawFrame(parse([orbit({ fov: 35 })]), 3).randomized["camera.fov"], 35);
  });
});

describe("orbit conventions", () => {
  const pose = (fields: Record<string, unknown>) => drawFrame(parse([orbit(fields)]), 11).camera!;
  const close = (a: number[], b: number[]) => a.every((x, i) => Math.abs(x - b[i]) < 1e-9);

  it("azimuth 0° is on +Z and 90° on +X; elevation 90° is straight up; y is up", () => {
    assert.ok(close(pose({ azimuth: [0, 0], elevation: [0, 0] }).position, [0, 0, 5]));
    assert.ok(close(pose({ azimuth: [90, 90], elevation: [0, 0] }).position, [5, 0, 0]));
    assert.ok(close(pose({ azimuth: [180, 180], elevation: [0, 0] }).position, [0, 0, -5]));
    assert.ok(close(pose({ azimuth: [0, 0], elevation: [90, 90] }).position, [0, 5, 0]));
    assert.ok(close(pose({ azimuth: [0, 0], elevation: [-90, -90], target: [1, 2, 3], radius: 2 }).position, [1, 0, 3]));
  });

  /** The camera three.js poses from `p` (as the page's CameraView does: up, then lookAt). */
  function threeCamera(p: { position: number[]; lookAt: number[]; up?: number[] }): PerspectiveCamera {
    const camera = new PerspectiveCamera();
    camera.position.set(p.position[0], p.position[1], p.position[2]);
    if (p.up) camera.up.set(p.up[0], p.up[1], p.up[2]).normalize();
    camera.lookAt(new Vector3(p.lookAt[0], p.lookAt[1], p.lookAt[2]));
    camera.updateMatrixWorld(true);
    return camera;
  }

  for (const elevation of [90, -90]) {
    it(`a camera on the pole (elevation ${elevation}) gets a usable up, continuing its neighbours' orientation`, () => {
      for (const azimuth of [0, 37, 200]) {
        const target = [1, 0.5, -2];
        const atPole = pose({ target, azimuth: [azimuth, azimuth], elevation: [elevation, elevation] });
        assert.ok(atPole.up, "up given on the pole");
        CameraPoseSchema.parse(atPole);
        assert.ok([...atPole.position, ...atPole.up].every(Number.isFinite));
        const view = atPole.lookAt.map((t, i) => t - atPole.position[i]);
        const dot = view.reduce((a, v, i) => a + v * atPole.up![i], 0);
        assert.ok(Math.abs(dot) < 1e-9 && Math.abs(Math.hypot(...atPole.up) - 1) < 1e-9, "up is a unit vector across the view");
        const camera = threeCamera(atPole);
        assert.ok(camera.matrixWorld.elements.every(Number.isFinite));
        const looking = camera.getWorldDirection(new Vector3());
        assert.ok(looking.distanceTo(new Vector3(0, -Math.sign(elevation), 0)) < 1e-9, "looks at the target");
        const beside = threeCamera(pose({ target, azimuth: [azimuth, azimuth], elevation: [elevation - Math.sign(elevation) * 0.01, elevation - Math.sign(elevation) * 0.01] }));
        assert.ok(!("up" in pose({ target, azimuth: [azimuth, azimuth], elevation: [45, 45] })));
        assert.ok(camera.quaternion.angleTo(beside.quaternion) < 0.001, `orientation jumps at the pole (azimuth ${azimuth})`);
      }
    });
  }
});

/** [hue degrees, saturation, value] of "#rrggbb". */
function hexToHsv(hex: string): [number, number, number] {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const max = Math.max(r, g, b);
  const chroma = max - Math.min(r, g, b);
  let h = 0;
  if (chroma > 0) {
    if (max === r) h = 60 * (((g - b) / chroma + 6) % 6);
    else if (max === g) h = 60 * ((b - r) / chroma + 2);
    else h = 60 * ((r - g) / chroma + 4);
  }
  return [h, max === 0 ? 0 : chroma / max, max];
}

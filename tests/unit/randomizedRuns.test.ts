// Runs with randomizers, templates and seeds, through startRun with a fake session (no browser): template
// files that are not files, a template run grown or resumed, a dataset whose seed is lost or edited, a
// handler given randomizers, values JSON cannot hold, a camera lost in rounding, record names, and draws in
// a fresh process. (Written as the first hostile review of issue 14.)
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { RandomizeListSchema, randomizedName, type Randomizer } from "../../protocol/randomize.js";
import type { JobSpec } from "../../protocol/job.js";
import { drawFrame } from "../../server/dispatch/randomizeFrame.js";
import { frameSeed, parseRunSeed } from "../../server/dataset/seeds.js";
import { JobInputError, validateJob } from "../../server/jobs/readJobsFile.js";
import { readTemplate, type Template } from "../../server/jobs/templateJobs.js";
import { readFrameRecords } from "../../server/dataset/readDataset.js";
import { DatasetOpenError } from "../../server/dataset/openDataset.js";
import { verifyDataset } from "../../server/dataset/verifyDataset.js";
import { BOX_SCENE as SCENE, runToEnd, templateFrames } from "./fakeRun.js";

let base: string;
before(() => (base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-randomize-hostile-"))));
after(() => fs.rmSync(base, { recursive: true, force: true }));
let count = 0;
const fresh = (name: string) => path.join(base, `${name}-${++count}`);

const TEMPLATE = {
  scene: SCENE, width: 16, height: 12,
  randomize: [{ key: "box", prop: "position", uniform: [[-1, 0, -1], [1, 1, 1]] }, { key: "box", prop: "color", hsv: {} }],
};
const parse = (list: unknown): Randomizer[] => RandomizeListSchema.parse(list);



describe("template files that are not plain files", () => {
  it("a FIFO is refused at once, not waited on until some process writes to it", async () => {
    const fifo = path.join(fresh("fifo"), "template.json");
    fs.mkdirSync(path.dirname(fifo));
    execFileSync("mkfifo", [fifo]);
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<"hung">((resolve) => (timer = setTimeout(() => resolve("hung"), 3000)));
    const reading = readTemplate(fifo).then(() => "read" as const, (err: unknown) => err);
    const outcome = await Promise.race([reading, hung]);
    clearTimeout(timer);
    if (outcome === "hung") {
      // Let the blocked open() return (a writer appears), so the test process can end.
      fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      await reading;
    }
    assert.ok(outcome instanceof JobInputError, `readTemplate on a FIFO: ${outcome === "hung" ? "still waiting after 3 s" : String(outcome)}`);
    assert.match(outcome.message, /not a regular file/);
  });

  it("a device or a folder is refused with advice about templates (a .json file), not about jobs files", async () => {
    for (const file of ["/dev/null", fresh("folder")]) {
      if (!file.startsWith("/dev")) fs.mkdirSync(file);
      const err = await readTemplate(file).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof JobInputError, String(err));
      assert.match(err.message, /cannot read the template/);
      assert.doesNotMatch(err.message, /\.jsonl|\.ts\/\.js module/, `a template is one .json file: ${err.message}`);
    }
  });

  it("a symlink to a template is read; UTF-16, two objects and trailing text are refused naming the file", async () => {
    const dir = fresh("encodings");
    fs.mkdirSync(dir);
    const real = path.join(dir, "real.json");
    fs.writeFileSync(real, JSON.stringify(TEMPLATE));
    const link = path.join(dir, "link.json");
    fs.symlinkSync(real, link);
    assert.deepEqual(await readTemplate(link), TEMPLATE);
    const bad: [string, Buffer | string][] = [
      ["utf16.json", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(JSON.stringify(TEMPLATE), "utf16le")])],
      ["two.json", JSON.stringify(TEMPLATE) + "\n" + JSON.stringify(TEMPLATE)],
      ["trailing.json", JSON.stringify(TEMPLATE) + " garbage"],
    ];
    for (const [name, content] of bad) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content);
      await assert.rejects(readTemplate(file), (err: unknown) => err instanceof JobInputError && err.message.includes(file) && /not valid JSON|is not UTF-8 text/.test(err.message), name);
    }
  });
});

describe("a template run grown or cut again", () => {
  it("--frames 3 then --frames 4 (jobs of 2) renders template frames 0…3, each once: the short last job does not keep frame 3 out", async () => {
    const out = fresh("grow");
    const spec = TEMPLATE as Template;
    await runToEnd(base, { out, seed: 7, template: { spec, frames: 3, framesPerJob: 2 } });
    assert.deepEqual(templateFrames(out), [0, 1, 2]);
    await runToEnd(base, { out, template: { spec, frames: 4 } }); // --frames-per-job left out: the dataset's
    assert.deepEqual(templateFrames(out), [0, 1, 2, 3], "the dataset holds every frame --frames 4 asked for");
  });
});

describe("a dataset keeps the seed its lines were drawn with", () => {
  async function seededDataset(): Promise<string> {
    const out = fresh("seeded");
    await runToEnd(base, { out, seed: 5, template: { spec: TEMPLATE as Template, frames: 2, framesPerJob: 2 } });
    const [line] = readFrameRecords(out);
    assert.equal(line.seed, frameSeed(5, line.job, line.frame));
    return out;
  }
  /** Either the start is refused naming the seed, or the run goes on under the lines' seed 5 and verify stays clean. */
  async function keepsSeedFive(out: string, options: { seed?: number }): Promise<void> {
    const started: string[] | Error = await runToEnd(base, { out, ...options, jobs: [{ id: "more", scene: SCENE, randomize: TEMPLATE.randomize } as JobSpec] }).then(
      (log) => log,
      (err: unknown) => err as Error,
    );
    if (started instanceof Error) {
      assert.ok(started instanceof DatasetOpenError && /seed/.test(started.message), String(started));
      return;
    }
    const report = await verifyDataset(out);
    assert.deepEqual(report.problems.map((p) => p.message), [], `the run went on under another seed: ${started.find((l) => l.startsWith("seed:"))}`);
  }

  it("manifest.json moved away (as its unreadable-file message advises): a start without --seed does not draw under a new random seed", async () => {
    const out = await seededDataset();
    fs.renameSync(path.join(out, "manifest.json"), path.join(out, "manifest.json.bak"));
    await keepsSeedFive(out, {});
  });

  it("manifest.json moved away: a start with another --seed than the lines' is refused", async () => {
    const out = await seededDataset();
    fs.rmSync(path.join(out, "manifest.json"));
    await keepsSeedFive(out, { seed: 6 });
  });

  it("manifest.json's seed edited by hand: the resume does not go on under a seed its lines were not drawn with", async () => {
    const out = await seededDataset();
    const file = path.join(out, "manifest.json");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace(/"seed": 5\b/, '"seed": 6'));
    assert.match(fs.readFileSync(file, "utf8"), /"seed": 6/);
    await keepsSeedFive(out, {});
  });
});

describe("randomizers a run cannot apply", () => {
  it("a handler run given jobs with randomizers neither drops them silently: refused, or each line records its draws", async () => {
    const out = fresh("handler");
    const job = { id: "h", scene: SCENE, frames: [{}], randomize: TEMPLATE.randomize } as JobSpec;
    const started = await runToEnd(base, {
      out, seed: 3, jobs: [job],
      handler: async function grabOnce(session, context) {
        session.set({ ...SCENE, children: [...SCENE.children, { tag: "CameraView", key: "cam", width: 16, height: 12 }] });
        await context.saveFrame(await session.grabRender({ key: "cam" }));
      },
    }).then(() => undefined, (err: unknown) => err);
    if (started instanceof Error) {
      assert.match(started.message, /randomize/, "the refusal names the field");
      return;
    }
    const lines = readFrameRecords(out);
    assert.ok(lines.length > 0, "the handler saved its frame");
    for (const line of lines) assert.ok(line.randomized && "box.position" in line.randomized, `job h's randomize was accepted and then ignored: ${JSON.stringify(line)}`);
  });

  it("saveFrame(frame, {randomized}) keeps only lines verify reads back: a list or a string as `randomized` is refused, not written", async () => {
    const out = fresh("handler-record");
    const given: Record<string, unknown> = { list: ["x"], text: "not an object", numbers: [1, 2], fine: { "box.color": "#ffffff" } };
    const errors: string[] = [];
    await runToEnd(base, {
      out, seed: 3, maxAttempts: 1, jobs: Object.keys(given).map((id) => ({ id })) as JobSpec[],
      handler: async function saveWithRecord(session, context) {
        session.set({ ...SCENE, children: [...SCENE.children, { tag: "CameraView", key: "cam", width: 16, height: 12 }] });
        const frame = await session.grabRender({ key: "cam" });
        await context.saveFrame(frame, { randomized: given[context.id] as Record<string, unknown> }).catch((err: Error) => {
          errors.push(err.message);
          throw err;
        });
      },
    });
    assert.deepEqual(readFrameRecords(out).map((r) => r.job), ["fine"], "only the line with an object of drawn values is written");
    assert.deepEqual((await verifyDataset(out)).problems.map((p) => p.message), []);
    assert.equal(errors.length, 3);
    for (const message of errors) assert.match(message, /randomized/);
  });

  it("a job without a scene that randomizes a key the run's scene lacks stops the start, naming job and field; the dataset stays usable", async () => {
    const out = fresh("runscene");
    const jobs = [{ id: "ok", frames: [{}] }, { id: "ghostly", frames: [{}], randomize: [{ key: "ghost", prop: "color", hsv: {} }] }] as JobSpec[];
    const refusal = await runToEnd(base, { out, seed: 1, jobs }).then(() => undefined, (err: unknown) => err as Error);
    assert.match(String(refusal), /job ghostly: randomize.*0.*key: no element with key "ghost"/);
    assert.doesNotMatch(refusal!.message, /in the job's scene/, `the job has no scene: the message must not say the key is missing from it (${refusal!.message})`);
    assert.deepEqual(readFrameRecords(out), [], "nothing rendered");
    await runToEnd(base, { out, jobs: [{ id: "fine", frames: [{}], randomize: [{ key: "box", prop: "color", hsv: {} }] } as JobSpec], scene: SCENE });
    assert.equal(readFrameRecords(out).length >= 1, true, "the lock was released and the next start runs");
  });

  it("a start refused before anything rendered does not pin its random seed: the next start may choose --seed", async () => {
    const out = fresh("pinned");
    const bad = [{ id: "ghostly", frames: [{}], randomize: [{ key: "ghost", prop: "color", hsv: {} }] }] as JobSpec[];
    await assert.rejects(runToEnd(base, { out, jobs: bad }), /no element with key "ghost"/);
    assert.deepEqual(readFrameRecords(out), [], "nothing rendered under the first start's seed");
    await runToEnd(base, { out, seed: 5, jobs: [{ id: "fixed", scene: SCENE, frames: [{}], randomize: TEMPLATE.randomize } as JobSpec] });
    const [line] = readFrameRecords(out);
    assert.equal(line.seed, frameSeed(5, "fixed", 0));
  });
});

describe("values a job module can pass", () => {
  it("a hole in a nested choice option is refused like the undefined it reads as (not written as null)", () => {
    // eslint-disable-next-line no-sparse-arrays
    const sparse = [1, , 3];
    const checked = validateJob({ id: "j", scene: SCENE, randomize: [{ key: "box", prop: "p", choice: [sparse] }] }, { source: "module" });
    assert.equal(checked.ok, false, `accepted ${JSON.stringify(checked.ok && checked.job.randomize)}`);
    const explicit = validateJob({ id: "j", scene: SCENE, randomize: [{ key: "box", prop: "p", choice: [[1, undefined, 3]] }] }, { source: "module" });
    assert.equal(explicit.ok, false, "an explicit undefined is refused (the rule the hole should follow)");
  });

  it("refuses what the first tests did not try: BigInt, class instances, toJSON objects, Maps, symbols, a deep -Infinity", () => {
    class Colour { constructor(readonly hex: string) {} }
    for (const value of [1n, new Colour("#fff"), { toJSON: () => 1 }, new Map(), Symbol("s"), [[{ deep: [-Infinity] }]]]) {
      const result = RandomizeListSchema.safeParse([{ key: "box", prop: "p", choice: ["ok", value] }]);
      assert.equal(result.success, false, `accepted ${String(value)}`);
      assert.equal(result.error.issues[0].path.slice(0, 3).join("."), "0.choice.1");
    }
  });
});

describe("camera orbits at the edges", () => {
  it("an orbit whose radius is lost in the target's rounding is refused (the camera would sit on the point it looks at)", () => {
    const orbit = { target: [1e9, 1e9, 1e9], radius: 1e-9 };
    const result = RandomizeListSchema.safeParse([{ camera: { orbit } }]);
    if (result.success) {
      const pose = drawFrame(result.data, frameSeed(1, "j", 0)).camera!;
      assert.notDeepEqual(pose.position, pose.lookAt, "accepted, and the drawn camera sits on its target: its view direction is undefined");
    }
  });
});

describe("record names and streams", () => {
  it("keys with dots never share a record name (or stream) with another (key, prop): props have no dots", () => {
    const list = parse([
      { key: "a.b", prop: "c", uniform: [0, 1] },
      { key: "a", prop: "b_c", uniform: [0, 1] },
      { key: "a.b.c", prop: "d", uniform: [0, 1] },
      { key: "a", prop: "b", uniform: [0, 1] },
      { key: "camera", prop: "rotation", uniform: [0, 1] },
      { camera: { orbit: { radius: 3 } } },
    ]);
    const names = list.filter((r) => !("camera" in r)).map((r) => randomizedName(r as Exclude<Randomizer, { camera: unknown }>));
    assert.equal(new Set(names).size, names.length);
    const draw = drawFrame(list, 4);
    assert.deepEqual(Object.keys(draw.randomized).sort(), [...names, "camera.position"].sort());
    assert.equal(new Set(Object.values(draw.randomized).map((v) => JSON.stringify(v))).size, Object.keys(draw.randomized).length, "each its own stream");
  });
});

describe("seeds", () => {
  it("--seed with leading zeros is the number it spells; 100,000 zeros before it are fine, 100,000 nines are refused at once", () => {
    assert.equal(parseRunSeed("007"), 7);
    assert.equal(parseRunSeed("0".repeat(100_000) + "7"), 7);
    assert.equal(parseRunSeed("0000"), 0);
    assert.throws(() => parseRunSeed("9".repeat(100_000)), (e: Error) => e instanceof RangeError && /above 9007199254740991/.test(e.message) && e.message.length < 400);
  });

  it("draws depend on nothing but the seed: a fresh process (another Math.random, another clock, another timezone) draws the same values", () => {
    const list = [
      { key: "box", prop: "position", uniform: [[-1, 0, -1], [1, 1, 1]] },
      { key: "box", prop: "scale", normal: { mean: [1, 1, 1], std: 0.3, clamp: [0.1, 3] } },
      { key: "box", prop: "material", choice: [{ m: "a" }, { m: "b" }, "c"], weights: [0.2, 1e-9, 3] },
      { key: "box", prop: "color", hsv: { h: [10, 350] } },
      { camera: { orbit: { target: [0, 0.5, 0], radius: [4, 6], shell: "sphere", fov: [20, 90] } } },
    ];
    const seeds = [0, 1, 2 ** 48 - 1, frameSeed(Number.MAX_SAFE_INTEGER, "frame-99999999", 99_999)];
    const here = seeds.map((s) => drawFrame(parse(list), s));
    const module = path.resolve(import.meta.dirname, "../../server/dispatch/randomizeFrame.ts");
    const schema = path.resolve(import.meta.dirname, "../../protocol/randomize.ts");
    const script =
      `Math.random = () => 0.5; const { drawFrame } = await import(${JSON.stringify(module)}); const { RandomizeListSchema } = await import(${JSON.stringify(schema)});` +
      `const list = RandomizeListSchema.parse(${JSON.stringify(list)}); console.log(JSON.stringify(${JSON.stringify(seeds)}.map((s) => drawFrame(list, s))));`;
    const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", env: { ...process.env, TZ: "Pacific/Chatham", LANG: "tr_TR.UTF-8" } });
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), JSON.parse(JSON.stringify(here)));
  });
});

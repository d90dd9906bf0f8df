// --template: reading a template file (every bad file named, with the field at fault) and expanding it
// into jobs lazily, with ids that name each job's first frame and stay the same from run to run.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { JobSpecSchema } from "../../protocol/job.js";
import { JobInputError } from "../../server/jobs/readJobsFile.js";
import { MAX_TEMPLATE_FRAMES, readTemplate, templateJobs, type Template } from "../../server/jobs/templateJobs.js";

let dir: string;
before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-template-test-"))));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let count = 0;
const write = (text: string) => {
  const file = path.join(dir, `t${++count}.json`);
  fs.writeFileSync(file, text);
  return file;
};
const GOOD = {
  scene: { tag: "DefaultScene", key: "root", children: [{ tag: "Box", key: "box" }] },
  width: 320, height: 240,
  randomize: [
    { key: "box", prop: "position", uniform: [[-1, 0, -1], [1, 1, 1]] },
    { key: "box", prop: "color", choice: ["#e4572e", "#669bbc", "#f3a712"] },
    { camera: { orbit: { target: [0, 0.5, 0], radius: [4, 6], elevation: [10, 60] } } },
  ],
};

async function refused(text: string, ...faults: RegExp[]): Promise<string> {
  const file = write(text);
  const err = await readTemplate(file).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof JobInputError, `expected a JobInputError, got ${String(err)}`);
  assert.ok(err.message.includes(file), `names the file: ${err.message}`);
  for (const fault of faults) assert.match(err.message, fault);
  return err.message;
}

describe("readTemplate", () => {
  it("reads the issue's template, pretty-printed, with a BOM", async () => {
    const template = await readTemplate(write("\uFEFF" + JSON.stringify(GOOD, null, 2)));
    assert.deepEqual(template, GOOD);
  });

  it("refuses what is not one JSON object, naming the file", async () => {
    await refused("", /not valid JSON/);
    await refused("{\"scene\": ", /not valid JSON/);
    await refused("[]", /must be one JSON object/);
    await refused("null", /must be one JSON object/);
    await refused("42", /must be one JSON object/);
    await refused('{"width": NaN}', /not valid JSON/);
  });

  it("refuses id and frames (the expansion gives them) and every bad field, all in one message", async () => {
    const message = await refused(
      JSON.stringify({ ...GOOD, id: "x", frames: [{}], width: -3, randomize: [{ key: "box", prop: "position", uniform: [[1], [0]] }] }),
      /id: not allowed in a template/, /frames: not allowed in a template/, /width: must be at least 1/, /randomize\[0\]\.uniform: min 1 is above max 0/,
    );
    assert.doesNotMatch(message, /frames\.0|frames\[0\]/, "no problem of the frames the check adds itself");
    // Keys are checked against the template's scene once the list itself is valid.
    await refused(JSON.stringify({ ...GOOD, randomize: [{ key: "ghost", prop: "color", hsv: {} }] }), /randomize\[0\]\.key: no element with key "ghost"/);
  });

  it("refuses a misspelt field (frames_per_job, framesPerJob: not the template's, not a crash), a file not UTF-8, and says where JSON breaks", async () => {
    await refused(JSON.stringify({ ...GOOD, framesPerJob: 5 }), /framesPerJob: unknown field/);
    await refused(JSON.stringify({ ...GOOD, frames_per_job: 5 }), /frames_per_job: unknown field/);
    const utf16 = path.join(dir, "utf16.json");
    fs.writeFileSync(utf16, Buffer.from("\uFEFF" + JSON.stringify(GOOD), "utf16le"));
    await assert.rejects(readTemplate(utf16), /is not UTF-8 text/);
    await refused('{\n  "width": 3,\n  "height": 4 x\n}', /not valid JSON: .*\(line 3, column \d+\)/);
  });

  it("refuses a folder, a missing file and a file over the size of a job", async () => {
    await assert.rejects(readTemplate(dir), /cannot read the template: it is a directory/);
    await assert.rejects(readTemplate(path.join(dir, "none.json")), /cannot read the template: no such file/);
    const big = write(JSON.stringify({ ...GOOD, params: { pad: "x".repeat(17 * 2 ** 20) } }));
    await assert.rejects(readTemplate(big), /a template may be at most/);
  });
});

describe("templateJobs", () => {
  const template = GOOD as Template;

  it("cuts N frames into jobs of K, the last one shorter; ids name the first frame; every job is valid", () => {
    const jobs = [...templateJobs(template, { frames: 25, framesPerJob: 10 })];
    assert.deepEqual(jobs.map((j) => j.id), ["frame-00000000", "frame-00000010", "frame-00000020"]);
    assert.deepEqual(jobs.map((j) => j.frames!.length), [10, 10, 5]);
    for (const job of jobs) {
      assert.deepEqual(JobSpecSchema.parse(job), job);
      assert.deepEqual(job.randomize, GOOD.randomize);
    }
    // One job per frame, and exactly K frames: no empty job, nothing lost.
    assert.equal([...templateJobs(template, { frames: 3, framesPerJob: 1 })].length, 3);
    assert.deepEqual([...templateJobs(template, { frames: 10, framesPerJob: 10 })].map((j) => j.frames!.length), [10]);
  });

  it("gives the same ids for the same cut (a larger --frames only adds jobs after the last full one)", () => {
    const ids = (frames: number) => [...templateJobs(template, { frames, framesPerJob: 4 })].map((j) => j.id);
    assert.deepEqual(ids(12), ids(12));
    assert.deepEqual(ids(20).slice(0, 3), ids(12));
  });

  it("is lazy: the largest run yields its first job without making the others", () => {
    const jobs = templateJobs(template, { frames: MAX_TEMPLATE_FRAMES, framesPerJob: 1 });
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1000; i++) jobs.next();
    assert.equal(jobs.next().value!.id, "frame-00001000");
    assert.ok(process.memoryUsage().heapUsed - before < 64 * 2 ** 20, "1,000 of 100 million jobs did not make the rest");
  });

  it("refuses a bad split", () => {
    for (const split of [{ frames: 0, framesPerJob: 1 }, { frames: 1.5, framesPerJob: 1 }, { frames: MAX_TEMPLATE_FRAMES + 1, framesPerJob: 1 }, { frames: 5, framesPerJob: 0 }, { frames: 5, framesPerJob: NaN }]) {
      assert.throws(() => templateJobs(template, split).next(), RangeError, JSON.stringify(split));
    }
  });
});

// Job input: JSONL files (all-or-nothing, every problem reported with line and field), job modules
// (validated as they stream) and handler modules. Fixtures are written to a temp dir per run.
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { constants as fsConstants } from "node:fs";
import { createServer } from "node:net";
import { mkdtemp, open, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { SceneElement, SceneOp } from "../../protocol/elements.js";
import { jobLayers, MAX_JOB_DATA_DEPTH, MAX_JOB_SCENE_DEPTH, type JobSpec } from "../../protocol/job.js";
import { LAYER_NAMES, parseLayerList, type LayerName } from "../../protocol/layers.js";
import { DatasetWriter } from "../../server/dataset/DatasetWriter.js";
import { JobContext } from "../../server/dispatch/JobContext.js";
import { renderDeclarativeJob } from "../../server/dispatch/renderDeclarativeJob.js";
import { renderDefaults } from "../../server/runFarm.js";
import { SentScene } from "../../server/session/SentScene.js";
import type { GrabbedFrame, GrabOptions, Session } from "../../server/session/Session.js";
import { demoJobs } from "../../server/jobs/demoJobs.js";
import { loadHandlerModule } from "../../server/jobs/loadHandlerModule.js";
import { loadJobsModule } from "../../server/jobs/loadJobsModule.js";
import { JobInputError, MAX_LINE_BYTES, openJobsFile, parseJobLine, readJobsFile, type JobIssue } from "../../server/jobs/readJobsFile.js";
import { promisify } from "node:util";

const run = promisify(execFile);

let dir: string;
let fileCount = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tabfarm-jobs-test-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a fixture with a fresh name (modules are cached by URL, so names must not repeat). */
async function fixture(ext: string, text: string | Buffer): Promise<string> {
  const path = join(dir, `f${++fileCount}.${ext}`);
  await writeFile(path, text);
  return path;
}

/** A JSONL file; objects are serialized, strings are written as-is (for deliberately broken lines). */
function jsonl(lines: (string | object)[]): Promise<string> {
  return fixture("jsonl", lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
}

const EXAMPLE =
  '{"id":"orbit-0001","params":{"i":1},"scene":{"tag":"DefaultScene","key":"root","children":[{"tag":"Box","key":"box"}]},' +
  '"frames":[{"camera":{"position":[4,3,4],"lookAt":[0,0,0],"fov":60},"update":[{"key":"box","position":[0,1,0]}]}]}';

const good = (id: string): JobSpec => ({ id, frames: [{ camera: { position: [1, 2, 3] } }] });

/**
 * Asserts the file is rejected as a whole and that there is an issue on `line` for `field` whose
 * message matches; also that the readable message carries `file:line: field:`.
 */
async function expectRejected(
  path: string,
  expected: { line: number; field?: string; message?: RegExp }[],
  limits?: Parameters<typeof readJobsFile>[1],
): Promise<JobInputError> {
  let returned: unknown;
  let error: unknown;
  try {
    returned = await readJobsFile(path, limits);
  } catch (err) {
    error = err;
  }
  assert.equal(returned, undefined, "nothing may be returned from a bad file");
  assert.ok(error instanceof JobInputError, `expected JobInputError, got ${String(error)}`);
  assert.equal(error.file, path);
  for (const want of expected) {
    const hit = error.issues.find((i: JobIssue) => i.line === want.line && i.field === want.field);
    assert.ok(hit, `no issue for line ${want.line} field ${want.field}; issues: ${JSON.stringify(error.issues, null, 1)}`);
    if (want.message) assert.match(hit.message, want.message);
    assert.ok(
      error.message.includes(`${path}:${want.line}: ${want.field ? `${want.field}: ` : ""}`),
      `message lacks location for line ${want.line}:\n${error.message}`,
    );
  }
  return error;
}

describe("readJobsFile: good input", () => {
  it("round-trips a file with several kinds of jobs", async () => {
    const matrix = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1.5, 5, 1];
    const jobs: JobSpec[] = [
      JSON.parse(EXAMPLE),
      { id: "matrix-cam", frames: [{ camera: { matrix, fov: 45, near: 0.1, far: 100 } }, { camera: { matrix } }] },
      { id: "sized.jpeg_1", width: 640, height: 480, format: "jpeg", quality: 0.8 },
      {
        id: "tree",
        params: { seed: 7, tags: ["a", "b"], nested: { x: null } },
        scene: {
          tag: "Group",
          key: "root",
          children: [
            { tag: "Mesh", key: "m:1", color: "red", position: [0, 1, 0], children: [{ tag: "Light", key: "l.1", intensity: 2 }] },
            { tag: "CameraView", key: "cam-main", width: 256 },
          ],
        },
        frames: [
          { update: [{ key: "m:1", rotation: [0, 0.5, 0] }, { key: "l.1", intensity: 3, tag: "Light" }] },
          { camera: { position: [0, 0, 5], rotation: [0, 0, 0], up: [0, 1, 0] }, update: [{ key: "m:1", visible: false }] },
        ],
      },
      { id: "minimal" },
      { id: "no-frames", format: "webp", params: { note: "NaN and Infinity in strings are fine" } },
    ];
    // Blank lines (including whitespace-only) are skipped.
    const path = await jsonl([jobs[0], "", jobs[1], "   ", jobs[2], jobs[3], "\t", jobs[4], jobs[5]]);
    assert.deepEqual(await readJobsFile(path), jobs);
  });

  it("handles CRLF line endings, a BOM and a missing final newline", async () => {
    const path = await fixture("jsonl", "\uFEFF" + [good("a"), good("b")].map((j) => JSON.stringify(j)).join("\r\n"));
    assert.deepEqual(await readJobsFile(path), [good("a"), good("b")]);
  });

  it("returns [] for an empty file", async () => {
    assert.deepEqual(await readJobsFile(await fixture("jsonl", "")), []);
  });

  it("loads a 10k-line file", async () => {
    const lines: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      lines.push(JSON.stringify({ id: `job-${i}`, params: { i }, frames: [{ camera: { position: [i, 1, 2], lookAt: [0, 0, 0] } }] }));
    }
    const path = await fixture("jsonl", lines.join("\n"));
    const jobs = await readJobsFile(path);
    assert.equal(jobs.length, 10_000);
    assert.equal(jobs[0].id, "job-0");
    assert.equal(jobs[9_999].id, "job-9999");
    assert.deepEqual(jobs[9_999].params, { i: 9_999 });
  });

  it("parseJobLine returns the job for a good line", () => {
    assert.deepEqual(parseJobLine(EXAMPLE, 1), { ok: true, job: JSON.parse(EXAMPLE) });
  });

  it("a missing file or a directory is a JobInputError naming the path and what is wrong", async () => {
    const missing = join(dir, "does-not-exist.jsonl");
    await assert.rejects(readJobsFile(missing), (err: unknown) => {
      assert.ok(err instanceof JobInputError);
      assert.equal(err.message, `${missing}: cannot read the jobs file: no such file`);
      return true;
    });
    await assert.rejects(readJobsFile(dir), { name: "JobInputError", message: `${dir}: cannot read the jobs file: it is a directory; give a .jsonl file or a .ts/.js module` });
    await assert.rejects(loadJobsModule(dir), { name: "JobInputError", message: new RegExp(`cannot read the jobs module: it is a directory`) });
    await assert.rejects(loadJobsModule(join(dir, "gone.ts")), { message: /gone\.ts: cannot read the jobs module: no such file/ });
    await assert.rejects(readJobsFile("/dev/null"), { message: /\/dev\/null: cannot read the jobs file: it is not a regular file/ });
  });

  /** What `reading` fails with, or "hung" after 3 s; a blocked open of `fifo` is then given a writer so the test process can end. */
  async function refusedWithin3s(reading: Promise<unknown>, fifo?: string): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve("hung after 3 s"), 3000)));
    const outcome = await Promise.race([reading.then(() => "read", (err: unknown) => err), hung]);
    clearTimeout(timer);
    if (outcome === "hung after 3 s" && fifo) {
      const writer = await open(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      await writer.close();
      await reading.catch(() => undefined);
    }
    return outcome;
  }

  it("a FIFO or a socket is refused at once, saying what it is (not waited on until something writes to it)", async () => {
    const fifo = join(dir, `jobs-fifo-${++fileCount}.jsonl`);
    await run("mkfifo", [fifo]);
    const socketPath = join(dir, `jobs-${++fileCount}.sock`);
    const server = createServer().listen(socketPath);
    await once(server, "listening");
    try {
      for (const [path, kind] of [[fifo, "a named pipe \\(FIFO\\)"], [socketPath, "a socket"]]) {
        const refusal = new RegExp(`cannot read the jobs (file|module): it is not a regular file but ${kind}; give a \\.jsonl file`);
        for (const read of [readJobsFile, loadJobsModule]) {
          const outcome = await refusedWithin3s(read(path) as Promise<unknown>, path === fifo ? fifo : undefined);
          assert.ok(outcome instanceof JobInputError, `${read.name}(${kind}): ${String(outcome)}`);
          assert.match(outcome.message, refusal);
        }
      }
    } finally {
      server.close();
    }
  });
});

describe("readJobsFile: bad input names the line and field, and returns nothing", () => {
  it("a line that is not JSON", async () => {
    const path = await jsonl([good("a"), good("b"), "{id: 'c'}", "// a comment is not skipped", good("e")]);
    const err = await expectRejected(path, [
      { line: 3, message: /^not valid JSON: .*property name/ },
      { line: 4, message: /^not valid JSON: / },
    ]);
    assert.equal(err.issues.length, 2);
  });

  it("a line that is JSON but not an object", async () => {
    const path = await jsonl([good("a"), "[1,2]", '"job"', "null", "42"]);
    await expectRejected(path, [
      { line: 2, message: /must be a JSON object.*got an array/ },
      { line: 3, message: /got "job"/ },
      { line: 4, message: /got null/ },
      { line: 5, message: /got 42/ },
    ]);
  });

  it("a missing id", async () => {
    const path = await jsonl([good("a"), { frames: [] }]);
    await expectRejected(path, [{ line: 2, field: "id", message: /is required/ }]);
  });

  it("wrong types, top-level and nested", async () => {
    const path = await jsonl([
      { id: "a", width: "640" },
      { id: "b", frames: {} },
      { id: "c", params: [1, 2] },
      { id: "d", quality: "high", height: 1.5 },
      { id: "e", frames: [{ camera: { position: [0, "1", 0] } }] },
      { id: "f", frames: [{ update: [{ position: [1, 2, 3] }] }] },
      { id: "g", scene: { tag: "Group", key: "root", children: [{ tag: "", key: "bad key" }] } },
      { id: 7 },
      { id: "i", frames: [{ camera: "front" }] },
    ]);
    await expectRejected(path, [
      { line: 1, field: "width", message: /must be a number, got "640"/ },
      { line: 2, field: "frames", message: /must be an array/ },
      { line: 3, field: "params", message: /must be an object, got an array/ },
      { line: 4, field: "quality", message: /must be a number/ },
      { line: 4, field: "height", message: /integer, got 1.5/ },
      { line: 5, field: "frames[0].camera.position[1]", message: /must be a number, got "1"/ },
      { line: 6, field: "frames[0].update[0].key", message: /is required/ },
      { line: 7, field: "scene.children[0].tag", message: /must not be empty/ },
      { line: 7, field: "scene.children[0].key", message: /letters, digits/ },
      { line: 8, field: "id", message: /must be a string, got 7/ },
      { line: 9, field: "frames[0].camera", message: /must be an object, got "front"/ },
    ]);
  });

  it("out-of-range values", async () => {
    const path = await jsonl([
      { id: "a", quality: 2 },
      { id: "b", format: "gif" },
      { id: "c", frames: [{ camera: { position: [0, 0, 0], fov: 0 } }] },
      { id: "d", frames: [{ camera: { matrix: [1, 2, 3] } }] },
      { id: "e", frames: [{ camera: { position: [0, 0] } }] },
    ]);
    await expectRejected(path, [
      { line: 1, field: "quality", message: /at most 1, got 2/ },
      { line: 2, field: "format", message: /one of "png", "jpeg", "webp", got "gif"/ },
      { line: 3, field: "frames[0].camera.fov", message: /greater than 0, got 0/ },
      { line: 4, field: "frames[0].camera.matrix", message: /16 numbers.*has 3 items/ },
      { line: 5, field: "frames[0].camera.position", message: /at least 3 items/ },
    ]);
  });

  it("unknown fields (the schema is strict), top-level and nested", async () => {
    const path = await jsonl([
      { id: "a", frame: [] },
      { id: "b", frames: [{ camera: { position: [0, 0, 0], lookat: [0, 0, 0] } }] },
      { id: "c", frames: [{ cam: {} }] },
      { id: "d", frames: [{ camera: { position: [0, 0, 0], matrix: new Array(16).fill(0) } }] },
      { id: "e", frames: [{ camera: {} }] },
    ]);
    await expectRejected(path, [
      { line: 1, field: "frame", message: /unknown field; a job may have only: id, params/ },
      { line: 2, field: "frames[0].camera.lookat", message: /^unknown field$/ },
      { line: 3, field: "frames[0].cam", message: /unknown field/ },
      { line: 4, field: "frames[0].camera", message: /none of the allowed forms.*position: unknown field.*matrix: unknown field/ },
      { line: 5, field: "frames[0].camera", message: /none of the allowed forms.*matrix: is required.*position: is required/ },
    ]);
  });

  it("non-finite numbers: overflowing literals and bare NaN/Infinity tokens", async () => {
    const path = await jsonl([
      good("a"),
      '{"id":"b","frames":[{"camera":{"position":[0,1e999,0]}}]}',
      '{"id":"c","params":{"big":-1e999}}',
      '{"id":"d","frames":[{"camera":{"position":[0,NaN,0]}}]}',
      '{"id":"e","width":Infinity,"params":{"x":-Infinity,"s":"NaN stays a string"}}',
      '{"id":"f","scene":{"tag":"Box","key":"b","scale":1e400}}',
    ]);
    const err = await expectRejected(path, [
      { line: 2, field: "frames[0].camera.position[1]", message: /^must be a finite number, got Infinity/ },
      { line: 3, field: "params.big", message: /must be a finite number, got -Infinity/ },
      { line: 4, field: "frames[0].camera.position[1]", message: /must be a finite number \(NaN is not valid JSON\)/ },
      { line: 5, field: "width", message: /Infinity is not valid JSON/ },
      { line: 5, field: "params.x", message: /-Infinity is not valid JSON/ },
      { line: 6, field: "scene.scale", message: /finite/ },
    ]);
    assert.ok(err.message.includes(`${path}:2: frames[0].camera.position[1]: must be a finite number`));
    // One problem per field: zod's own "expected number" for the same field is not repeated.
    assert.equal(err.issues.filter((i) => i.line === 2).length, 1);
    assert.equal(err.issues.filter((i) => i.line === 5).length, 2);
  });

  it("a duplicate id names both lines", async () => {
    const path = await jsonl([good("a"), good("b"), good("c"), good("a"), good("d"), good("a")]);
    const err = await expectRejected(path, [
      { line: 4, field: "id", message: /duplicate id "a" \(first used on line 1\)/ },
      { line: 6, field: "id", message: /first used on line 1/ },
    ]);
    assert.equal(err.issues.length, 2);
  });

  it("ids that are not safe file names", async () => {
    const bad = ["a/b", "a\\b", "..", "../up", ".hidden", "-dash", "tab\there", "nul\u0000", "bell\u0007", "", " sp", "é"];
    const path = await jsonl([good("ok"), ...bad.map((id) => ({ id }))]);
    const err = await expectRejected(
      path,
      bad.map((_, i) => ({ line: i + 2, field: "id", message: /^(may hold only|must not)/ })),
    );
    assert.equal(err.issues.length, bad.length, "one problem per bad id");
    assert.ok(err.message.includes('got "../up"'));
  });

  it("frame count over the run's limit and over the protocol's hard cap", async () => {
    const frames = (n: number) => Array.from({ length: n }, () => ({}));
    const path = await jsonl([{ id: "a", frames: frames(5) }, { id: "b", frames: frames(6) }]);
    await expectRejected(path, [{ line: 2, field: "frames", message: /has 6 frames, over the limit of 5/ }], { maxFramesPerJob: 5 });

    const hard = await jsonl([{ id: "a", frames: frames(100_001) }]);
    await expectRejected(hard, [{ line: 1, field: "frames", message: /at most 100000 frames.*has 100001 items/ }]);
  });

  it("an empty frames list is refused (leaving it out asks for one frame from the default camera)", async () => {
    const path = await jsonl([{ id: "a" }, { id: "b", frames: [] }]);
    await expectRejected(path, [{ line: 2, field: "frames", message: /must hold at least 1 frame/ }]);
  });

  it("width/height over the run's limit and over the protocol's hard cap", async () => {
    const path = await jsonl([{ id: "a", width: 1024, height: 1024 }, { id: "b", width: 1025 }, { id: "c", height: 2048 }]);
    await expectRejected(
      path,
      [
        { line: 2, field: "width", message: /1025 is over the limit of 1024 pixels/ },
        { line: 3, field: "height", message: /2048 is over the limit/ },
      ],
      { maxImageSide: 1024 },
    );
    const hard = await jsonl([{ id: "a", width: 8193 }, { id: "b", height: 0 }]);
    await expectRejected(hard, [
      { line: 1, field: "width", message: /at most 8192/ },
      { line: 2, field: "height", message: /at least 1/ },
    ]);
  });

  it('a "__proto__" key is refused rather than silently dropped', async () => {
    const path = await jsonl(['{"id":"a","params":{"__proto__":{"admin":true}}}']);
    await expectRejected(path, [{ line: 1, field: "params.__proto__", message: /not allowed/ }]);
  });

  it("collects every problem in the file; the message shows 20 and counts the rest", async () => {
    const lines: object[] = [];
    for (let i = 0; i < 30; i++) lines.push({ id: `j${i}`, width: -1 });
    lines.push(good("fine"));
    const path = await jsonl(lines);
    const err = await expectRejected(path, [{ line: 1, field: "width" }]);
    assert.equal(err.issues.length, 30);
    const messageLines = err.message.split("\n");
    assert.match(messageLines[0], /30 problems on 30 lines; no jobs were loaded/);
    assert.equal(messageLines.length, 1 + 20 + 1);
    assert.equal(messageLines.at(-1), "… and 10 more");
  });

  it("reports several problems on one line at once", async () => {
    const path = await jsonl([{ width: "x", bogus: 1, frames: [{ camera: { position: [0, 0, null] } }] }]);
    const err = await expectRejected(path, [
      { line: 1, field: "id", message: /is required/ },
      { line: 1, field: "width" },
      { line: 1, field: "bogus" },
      { line: 1, field: "frames[0].camera.position[2]", message: /got null/ },
    ]);
    assert.equal(err.issues.length, 4);
  });

  it("caps the problems reported for one job", async () => {
    const path = await jsonl([{ id: "a", frames: Array.from({ length: 100 }, () => ({ camera: { position: [0, 0, "z"] } })) }]);
    const err = await expectRejected(path, [{ line: 1, field: "frames[0].camera.position[2]" }]);
    assert.equal(err.issues.length, 21);
    assert.match(err.issues[20].message, /and 80 more problems in this job/);
  });
});

describe("loadJobsModule", () => {
  async function collect(iterable: AsyncIterable<JobSpec>): Promise<JobSpec[]> {
    const out: JobSpec[] = [];
    for await (const job of iterable) out.push(job);
    return out;
  }
  const ids = (jobs: JobSpec[]) => jobs.map((j) => j.id);

  it("default export: an array (.ts module)", async () => {
    const path = await fixture("ts", `const jobs: { id: string; width?: number }[] = [{ id: "a" }, { id: "b", width: 64 }];\nexport default jobs;\n`);
    assert.deepEqual(await collect(await loadJobsModule(path)), [{ id: "a" }, { id: "b", width: 64 }]);
  });

  it('named export "jobs" (.mjs module)', async () => {
    const path = await fixture("mjs", `export const jobs = [{ id: "n1" }, { id: "n2" }];\n`);
    assert.deepEqual(ids(await collect(await loadJobsModule(path))), ["n1", "n2"]);
  });

  it("CommonJS: module.exports = { jobs } and module.exports = [...] (.cjs modules)", async () => {
    const named = await fixture("cjs", `module.exports = { jobs: [{ id: "c1" }] };\n`);
    assert.deepEqual(ids(await collect(await loadJobsModule(named))), ["c1"]);
    const whole = await fixture("cjs", `module.exports = [{ id: "c2" }];\n`);
    assert.deepEqual(ids(await collect(await loadJobsModule(whole))), ["c2"]);
  });

  it("a generator function", async () => {
    const path = await fixture(
      "ts",
      `export default function* () {\n  for (let i = 0; i < 3; i++) yield { id: \`g\${i}\`, frames: [{ camera: { position: [i, 0, 0] as [number, number, number] } }] };\n}\n`,
    );
    const jobs = await collect(await loadJobsModule(path));
    assert.deepEqual(ids(jobs), ["g0", "g1", "g2"]);
    assert.deepEqual(jobs[2].frames, [{ camera: { position: [2, 0, 0] } }]);
  });

  it("an async generator function, consumed lazily", async () => {
    // Endless: only works if jobs are validated as they are pulled, not collected up front.
    const path = await fixture(
      "ts",
      `export default async function* () {\n  for (let i = 0; ; i++) { await new Promise((r) => setTimeout(r, 0)); yield { id: \`ag\${i}\` }; }\n}\n`,
    );
    const got: string[] = [];
    for await (const job of await loadJobsModule(path)) {
      got.push(job.id);
      if (got.length === 4) break;
    }
    assert.deepEqual(got, ["ag0", "ag1", "ag2", "ag3"]);
  });

  it("a generator that throws midway: the error names the module and the job index; the jobs before it came through", async () => {
    for (const star of ["function*", "async function*"]) {
      const path = await fixture("ts", `export default ${star} () {\n  yield { id: "t0" };\n  yield { id: "t1" };\n  throw new Error("out of seeds");\n}\n`);
      const got: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const job of await loadJobsModule(path)) got.push(job.id);
        })(),
        (err: Error) => err.message === `jobs module ${path}: producing the job at index 2 failed: out of seeds`,
      );
      assert.deepEqual(got, ["t0", "t1"]);
    }
  });

  it("stopping early closes the module's generator (its finally runs)", async () => {
    const path = await fixture("mjs", `export const state = { closed: false };\nexport default function* () {\n  try { for (let i = 0; ; i++) yield { id: \`c\${i}\` }; } finally { state.closed = true; }\n}\n`);
    for await (const job of await loadJobsModule(path)) if (job.id === "c2") break;
    assert.equal(((await import(pathToFileURL(path).href)) as { state: { closed: boolean } }).state.closed, true);
  });

  it("a function returning an array, and an async one", async () => {
    const sync = await fixture("ts", `export default () => [{ id: "f1" }, { id: "f2" }];\n`);
    assert.deepEqual(ids(await collect(await loadJobsModule(sync))), ["f1", "f2"]);
    const async_ = await fixture("mjs", `export default async () => [{ id: "af1" }];\n`);
    assert.deepEqual(ids(await collect(await loadJobsModule(async_))), ["af1"]);
  });

  it("an async iterable object, and a Set", async () => {
    const asyncIt = await fixture("mjs", `async function* g() { yield { id: "ai1" }; }\nexport default g();\n`);
    assert.deepEqual(ids(await collect(await loadJobsModule(asyncIt))), ["ai1"]);
    const set = await fixture("mjs", `export default new Set([{ id: "s1" }]);\n`);
    assert.deepEqual(ids(await collect(await loadJobsModule(set))), ["s1"]);
  });

  it("an invalid job throws JobInputError naming the module, the index and the field", async () => {
    const path = await fixture(
      "ts",
      `export default [{ id: "ok0" }, { id: "ok1" }, { id: "bad", frames: [{ camera: { position: [0, Number.NaN, 0] } }] }, { id: "never" }];\n`,
    );
    const seen: string[] = [];
    const iterable = await loadJobsModule(path);
    await assert.rejects(
      (async () => {
        for await (const job of iterable) seen.push(job.id);
      })(),
      (err: unknown) => {
        assert.ok(err instanceof JobInputError);
        assert.equal(err.file, path);
        assert.deepEqual(err.issues, [{ index: 2, field: "frames[0].camera.position[1]", message: "must be a finite number, got NaN" }]);
        assert.ok(err.message.includes(`${path}: job at index 2: frames[0].camera.position[1]: must be a finite number`), err.message);
        return true;
      },
    );
    assert.deepEqual(seen, ["ok0", "ok1"], "jobs before the bad one stream through; none after");
  });

  it("module jobs must be plain JSON data", async () => {
    const path = await fixture("mjs", `export default [{ id: "d", params: { when: new Date(0), f() {} } }];\n`);
    await assert.rejects(collect(await loadJobsModule(path)), (err: unknown) => {
      assert.ok(err instanceof JobInputError);
      assert.deepEqual(
        err.issues.map((i) => [i.index, i.field]),
        [
          [0, "params.when"],
          [0, "params.f"],
        ],
      );
      assert.match(err.issues[0].message, /plain JSON data, got a Date/);
      return true;
    });
    const notObject = await fixture("mjs", `export default ["just-an-id"];\n`);
    await assert.rejects(collect(await loadJobsModule(notObject)), /job at index 0: must be an object, got "just-an-id"/);
    const cyclic = await fixture("mjs", `const p = {}; p.self = p;\nexport default [{ id: "c", params: p }];\n`);
    await assert.rejects(collect(await loadJobsModule(cyclic)), /params\.self: is a circular reference/);
  });

  it("a hole or an undefined in a list (which the queue would store as null) is refused anywhere, naming the field", async () => {
    const path = await fixture(
      "mjs",
      `const scene = { tag: "DefaultScene", key: "root", children: [{ tag: "Box", key: "box", points: [1, , 3] }] };\n` +
        `const far = [1, 2]; far[2 ** 32 - 2] = 3;\n` +
        `export default [{ id: "h", scene, frames: [{}, , {}], params: { a: [0, undefined], b: far, c: { gone: undefined } } }];\n`,
    );
    await assert.rejects(collect(await loadJobsModule(path)), (err: unknown) => {
      assert.ok(err instanceof JobInputError);
      assert.deepEqual(err.issues.map((i) => [i.field, i.message]), [
        ["scene.children[0].points[1]", "is a hole in the list (as in [1, , 3]), which JSON cannot hold; give a value or null"],
        ["frames[1]", "is a hole in the list (as in [1, , 3]), which JSON cannot hold; give a value or null"],
        ["params.a[1]", "must be JSON data, got undefined (a list would store it as null)"],
        ["params.b[2]", "is a hole in the list (as in [1, , 3]), which JSON cannot hold; give a value or null"],
      ], "an undefined field of an object (params.c.gone) is as good as absent");
      return true;
    });
  });

  it("the run's limits apply to module jobs too", async () => {
    const path = await fixture("mjs", `export default [{ id: "w", width: 4000 }];\n`);
    await assert.rejects(collect(await loadJobsModule(path, { maxImageSide: 2048 })), /index 0: width: 4000 is over the limit of 2048/);
  });

  it("a module without a usable export fails at load time, saying what it found", async () => {
    const obj = await fixture("mjs", `export default { id: "a" };\nexport const other = 1;\n`);
    await assert.rejects(loadJobsModule(obj), (err: Error) => {
      assert.ok(err.message.includes(obj));
      assert.match(err.message, /default export is an object; export "other" is 1/);
      return true;
    });
    const none = await fixture("mjs", `export const notJobs = [];\n`);
    await assert.rejects(loadJobsModule(none), /default export or an export named "jobs".*export "notJobs" is an array/);
    const empty = await fixture("mjs", `\n`);
    await assert.rejects(loadJobsModule(empty), /exports nothing/);
    const str = await fixture("mjs", `export default "jobs.jsonl";\n`);
    await assert.rejects(loadJobsModule(str), /default export is "jobs.jsonl"/);
    const fnNumber = await fixture("mjs", `export default () => 42;\n`);
    await assert.rejects(loadJobsModule(fnNumber), /default export is a function, but it returned 42/);
    const throwing = await fixture("mjs", `export default () => { throw new Error("boom"); };\n`);
    await assert.rejects(loadJobsModule(throwing), /calling the default export failed: boom/);
  });

  it("a module that cannot be imported names the file", async () => {
    const missing = join(dir, "missing.ts");
    await assert.rejects(loadJobsModule(missing), (err: Error) => err.message === `${missing}: cannot read the jobs module: no such file`);
    const broken = await fixture("mjs", `export default [;\n`);
    await assert.rejects(loadJobsModule(broken), /could not load jobs module/);
  });
});

// These tests are about loading; they call the handler with plain objects, not a live session.
const asPlain = (h: unknown) => h as (session: object, job: object) => Promise<void> | void;

describe("loadHandlerModule", () => {
  it("default export function", async () => {
    const path = await fixture(
      "ts",
      `export default async function handle(session: { log: string[] }, job: { id: string }) { session.log.push(job.id); }\n`,
    );
    const handler = asPlain(await loadHandlerModule(path));
    const session = { log: [] as string[] };
    await handler(session, { id: "h1" });
    assert.deepEqual(session.log, ["h1"]);
  });

  it('named export "handler"', async () => {
    const path = await fixture("mjs", `export function handler(session, job) { session.seen = job.id; }\nexport const other = 1;\n`);
    const handler = asPlain(await loadHandlerModule(path));
    const session: { seen?: string } = {};
    await handler(session, { id: "h2" });
    assert.equal(session.seen, "h2");
    const cjs = await fixture("cjs", `module.exports = { handler: (session, job) => { session.seen = job.id; } };\n`);
    await asPlain(await loadHandlerModule(cjs))(session, { id: "h3" });
    assert.equal(session.seen, "h3");
  });

  it("a module without a function export is refused, naming the file and what it found", async () => {
    const obj = await fixture("mjs", `export default { run() {} };\n`);
    await assert.rejects(loadHandlerModule(obj), (err: Error) => {
      assert.ok(err.message.startsWith(`handler module ${obj}:`), err.message);
      assert.match(err.message, /default export is an object/);
      return true;
    });
    const wrongName = await fixture("mjs", `export const handle = () => {};\n`);
    await assert.rejects(loadHandlerModule(wrongName), /export named "handler".*export "handle" is a function \(handle\)/);
    const cls = await fixture("mjs", `export default class Handler {}\n`);
    await assert.rejects(loadHandlerModule(cls), /default export is a class/);
    const missing = join(dir, "no-handler.ts");
    await assert.rejects(loadHandlerModule(missing), /could not load handler module/);
  });
});

// ---------------------------------------------------------------------------------------------
// Issue 9: job input refused at load, once, with file:line: field: reason

/** The problems parseJobLine finds in one job value, as "field: message" strings. */
function problemsOf(job: unknown): string[] {
  const result = parseJobLine(JSON.stringify(job), 1);
  return result.ok ? [] : result.issues.map((i) => `${i.field ?? ""}: ${i.message}`);
}

/** Loads a jobs module and reads all its jobs (rejects with the first bad one). */
async function drainModule(path: string): Promise<void> {
  for await (const _ of await loadJobsModule(path));
}

/** A chain of `levels` elements, each the only child of the one above. */
function nestedScene(levels: number): SceneElement {
  return JSON.parse(nestedSceneJson(levels)) as SceneElement;
}

/** The same as JSON text, built without recursion (JSON.stringify overflows at 10,000 levels). */
function nestedSceneJson(levels: number): string {
  let open = "";
  for (let i = 1; i < levels; i++) open += `{"tag":"Group","key":"g${i}","children":[`;
  return `${open}{"tag":"Box","key":"leaf"}${"]}".repeat(levels - 1)}`;
}

describe("job ids: one rule, checked at load", () => {
  // Each is refused by the dataset too, except digits-only ids, which only a queue backend minds.
  const BAD_IDS = [
    "..", "a..b", "x/../y", ".", ".a", "-a", "a.", "a ", " a", "a b", "a/b", "a\\b", "a\u0000b", "a\tb", "a\nb",
    "ａ", "a\u2024b", "a\u2215b", "é", "a:b", "CON", "con", "Con.txt", "nul.tar.gz", "COM1", "lpt9.png", "AUX", "prn", "com0",
    "A".repeat(201), "123", "0",
  ];
  const GOOD_IDS = ["con-1", "console", "nullable", "comet", "a.b", "_x", "x".repeat(200), "job-0001", "0a", "1.5", "A_b-C.d"];

  it("refuses every kind of unsafe id, naming the field and the reason", () => {
    for (const id of BAD_IDS) {
      const problems = problemsOf({ id });
      assert.equal(problems.length, 1, `${JSON.stringify(id)}: ${problems.join("; ")}`);
      assert.match(problems[0], /^id: (may hold only|must)/, JSON.stringify(id));
    }
  });

  it("accepts ids that are safe everywhere", () => {
    for (const id of GOOD_IDS) assert.deepEqual(problemsOf({ id }), [], id);
  });

  it("says why: '..', Windows device names, digits only, look-alike characters", () => {
    assert.match(problemsOf({ id: "a..b" })[0], /must not contain "\.\."/);
    assert.match(problemsOf({ id: "nul.txt" })[0], /Windows device name/);
    assert.match(problemsOf({ id: "42" })[0], /digits only/);
    assert.match(problemsOf({ id: "a\u2215b" })[0], /ASCII .* U\+2215/);
    assert.match(problemsOf({ id: "a." })[0], /must not end with \./);
    assert.match(problemsOf({ id: "x".repeat(201) })[0], /at most 200 characters/);
  });

  it("the same rule in a jobs file (file:line: id:) and in a jobs module (index)", async () => {
    const path = await jsonl([good("fine"), { id: "a..b" }, { id: "CON" }]);
    await expectRejected(path, [
      { line: 2, field: "id", message: /must not contain "\.\."/ },
      { line: 3, field: "id", message: /Windows device name/ },
    ]);
    const mod = await fixture("mjs", `export default [{ id: "ok" }, { id: "a..b" }];\n`);
    await assert.rejects(
      drainModule(mod),
      (err: unknown) => err instanceof JobInputError && err.issues[0].index === 1 && err.issues[0].field === "id",
    );
  });

  it("ids that differ only by case are refused in a file (both lines named) and in a module", async () => {
    const path = await jsonl([good("Job-1"), good("other"), good("job-1"), good("JOB-1")]);
    await expectRejected(path, [
      { line: 3, field: "id", message: /"job-1" differs only by case from "Job-1" on line 1/ },
      { line: 4, field: "id", message: /differs only by case from "Job-1" on line 1/ },
    ]);
    const mod = await fixture("mjs", `export default function* () { yield { id: "a" }; yield { id: "b" }; yield { id: "A" }; }\n`);
    await assert.rejects(
      drainModule(mod),
      (err: unknown) => {
        assert.ok(err instanceof JobInputError);
        assert.deepEqual([err.issues[0].index, err.issues[0].field], [2, "id"]);
        assert.match(err.message, /job at index 2: id: id "A" was already used by the job at index 0/);
        return true;
      },
    );
  });

  it("a module that yields the same id twice is refused at the second", async () => {
    const mod = await fixture("mjs", `export default [{ id: "x" }, { id: "x" }];\n`);
    await assert.rejects(drainModule(mod), /job at index 1: id: id "x" was already used by the job at index 0/);
  });

  it("the built-in demo's jobs pass the same schema", () => {
    for (const job of demoJobs(2_000, 1)) assert.deepEqual(problemsOf(job), [], job.id);
  });
});

describe("scene and data depth: a stated limit, never a stack overflow", () => {
  it(`a scene nested 10,000 deep is refused with the limit (${MAX_JOB_SCENE_DEPTH} levels)`, async () => {
    const path = await jsonl([good("ok"), `{"id":"deep","scene":${nestedSceneJson(10_000)}}`]);
    await expectRejected(path, [{ line: 2, field: "scene", message: new RegExp(`elements nest deeper than the limit of ${MAX_JOB_SCENE_DEPTH} levels`) }]);
  });

  it(`a scene of exactly ${MAX_JOB_SCENE_DEPTH} levels is accepted, one more is not`, () => {
    assert.deepEqual(problemsOf({ id: "edge", scene: nestedScene(MAX_JOB_SCENE_DEPTH) }), []);
    assert.match(problemsOf({ id: "over", scene: nestedScene(MAX_JOB_SCENE_DEPTH + 1) }).join(), /^scene: elements nest deeper/);
  });

  it("params (or any other value) nested 100,000 deep are refused, naming the field", () => {
    const text = `{"id":"deep","params":{"v":${"[".repeat(100_000)}${"]".repeat(100_000)}}}`;
    const result = parseJobLine(text, 7);
    assert.equal(result.ok, false);
    assert.deepEqual(!result.ok && result.issues, [{ line: 7, field: "params", message: `nests deeper than the limit of ${MAX_JOB_DATA_DEPTH} levels` }]);
  });

  it("subtrees in frame updates are bounded too", () => {
    const result = parseJobLine(`{"id":"u","frames":[{"update":[{"key":"box","children":[${nestedSceneJson(5_000)}]}]}]}`, 1);
    const problems = result.ok ? [] : result.issues.map((i) => `${i.field}: ${i.message}`);
    assert.match(problems.join("\n"), /^frames\[0\]\.update\[0\]\.children\[0\]: elements nest deeper than the limit of 64 levels/m);
  });

  it("a module job with a deep scene is refused with the limit", async () => {
    const mod = await fixture(
      "mjs",
      `let n = { tag: "Box", key: "leaf" }; for (let i = 0; i < 10000; i++) n = { tag: "Group", key: "g" + i, children: [n] };\n` +
        `export default [{ id: "deep", scene: n }];\n`,
    );
    await assert.rejects(drainModule(mod), /job at index 0: scene: elements nest deeper than the limit of 63 levels/);
  });
});

describe("reserved keys: jobs may not touch the farm's own nodes", () => {
  it("a scene with the farm's camera key (or any tabfarm. key, any case) is refused, naming the element", () => {
    const scene = { tag: "Group", key: "root", children: [{ tag: "Box", key: "b", children: [{ tag: "CameraView", key: "tabfarm.camera", width: 8 }] }] };
    assert.deepEqual(problemsOf({ id: "s", scene }), [
      'scene.children[0].children[0].key: keys starting with "tabfarm." are reserved for the farm\'s own nodes (its camera is "tabfarm.camera"), got "tabfarm.camera"',
    ]);
    assert.match(problemsOf({ id: "r", scene: { tag: "Scene", key: "TabFarm.Root" } }).join(), /^scene\.key: keys starting with "tabfarm\." are reserved/);
  });

  it("an update of the farm's camera is refused at load (it would change the output size)", async () => {
    const path = await jsonl([
      good("ok"),
      { id: "resize", frames: [{}, { update: [{ key: "box", color: "red" }, { key: "tabfarm.camera", width: 4000 }] }] },
      { id: "nested", frames: [{ update: [{ key: "g", children: [{ tag: "Box", key: "tabfarm.x" }] }] }] },
    ]);
    await expectRejected(path, [
      { line: 2, field: "frames[1].update[1].key", message: /reserved for the farm/ },
      { line: 3, field: "frames[0].update[0].children[0].key", message: /reserved for the farm/ },
    ]);
  });

  it("keys that only contain the word are fine", () => {
    const scene = { tag: "Group", key: "my.tabfarm.camera", children: [{ tag: "Box", key: "tabfarmer" }] };
    assert.deepEqual(problemsOf({ id: "fine", scene, frames: [{ update: [{ key: "tabfarmer", color: "red" }] }] }), []);
  });

  it("an `instance` or `label` the mask and class layers could not use is refused at load, naming the element (scene and updates); null is unset", () => {
    const badInstances = [-1, 1.5, 65536, 1e300, "1", true, [1], { id: 1 }];
    const badLabels = ["", "  ", 7, false, ["crate"], { name: "crate" }, "x".repeat(257)];
    for (const instance of badInstances) {
      const problems = problemsOf({ id: "i", scene: { tag: "Group", key: "g", children: [{ tag: "Box", key: "b", instance }] } });
      assert.deepEqual(problems.map((p) => p.replace(/(, got .*| \(has 1 item\))$/, "")), ["scene.children[0].instance: must be a whole number from 0 to 65535"], JSON.stringify(instance));
    }
    for (const label of badLabels) {
      const problems = problemsOf({ id: "l", scene: { tag: "Box", key: "b" }, frames: [{ update: [{ key: "b", label }] }] });
      assert.match(problems.join("\n"), /^frames\[0\]\.update\[0\]\.label: must be (a non-empty string|at most 256 characters \(it has 257\))/, JSON.stringify(label));
    }
    const fine = { tag: "Group", key: "g", label: "x".repeat(256), children: [{ tag: "Box", key: "b", instance: 0, label: null }, { tag: "Box", key: "c", instance: 65535 }, { tag: "Box", key: "d", instance: null }] };
    assert.deepEqual(problemsOf({ id: "ok", scene: fine }), []);
  });

  it("module jobs are held to the same rule", async () => {
    const mod = await fixture("mjs", `export default [{ id: "m", frames: [{ update: [{ key: "tabfarm.camera", fov: 10 }] }] }];\n`);
    await assert.rejects(drainModule(mod), /job at index 0: frames\[0\]\.update\[0\]\.key: keys starting with "tabfarm\." are reserved/);
  });
});

describe("readJobsFile: careless files", () => {
  it("a line over the cap is refused by number and size, the lines after it are still checked", async () => {
    const long = JSON.stringify({ id: "long", params: { pad: "x".repeat(500) } });
    const path = await fixture("jsonl", [JSON.stringify(good("a")), long, JSON.stringify(good("b")), '{"id":"../c"}', long.replace('"long"', '"long2"')].join("\r\n"));
    const err = await expectRejected(
      path,
      [
        { line: 2, message: /^line is longer than 100 bytes \(5\d\d bytes\); one job per line/ },
        { line: 4, field: "id" },
        { line: 5, message: /line is longer than 100 bytes/ },
      ],
      { maxLineBytes: 100 },
    );
    assert.equal(err.issues.length, 3);
    assert.deepEqual(await readJobsFile(path, { maxLineBytes: 1_000 }).catch((e: JobInputError) => e.issues.map((i) => i.line)), [4]);
  });

  it(`a 48 MB line is refused at the default cap (${MAX_LINE_BYTES} bytes) without holding the line in memory`, async () => {
    const path = join(dir, "big.jsonl");
    const numbers = Array(1_000_000).fill("0.125").join(",");
    const handle = await open(path, "w");
    await handle.write('{"id":"big","params":{"v":[');
    for (let i = 0; i < 8; i++) await handle.write(`${numbers},`);
    await handle.write("1]}}\n");
    await handle.close();
    const size = (await stat(path)).size;
    // In a child, so its peak memory is this read's alone. Before the cap it took ≈ 30× the line.
    const script = await fixture(
      "mts",
      `import { readJobsFile } from ${JSON.stringify(join(process.cwd(), "server/jobs/readJobsFile.ts"))};\n` +
        `const message = await readJobsFile(${JSON.stringify(path)}).then(() => "loaded", (e) => e.message);\n` +
        `console.log(JSON.stringify({ message, maxRssBytes: process.resourceUsage().maxRSS * 1024 }));\n`,
    );
    const { stdout } = await run(process.execPath, ["--import", "tsx", script]);
    const { message, maxRssBytes } = JSON.parse(stdout) as { message: string; maxRssBytes: number };
    assert.match(message, new RegExp(`big\\.jsonl:1: line is longer than ${MAX_LINE_BYTES} bytes \\(${size - 1} bytes\\)`));
    assert.ok(maxRssBytes < 6 * size, `peak RSS ${(maxRssBytes / 2 ** 20).toFixed(0)} MB for a ${(size / 2 ** 20).toFixed(0)} MB line`);
  });

  it("a JSON array file is refused at once with a hint, also pretty-printed and after a BOM and blank lines", async () => {
    const oneLine = await fixture("json", JSON.stringify([good("a"), good("b")]));
    const err = await expectRejected(oneLine, [{ line: 1, message: /JSON array; a jobs file has one job object per line \(JSONL\)/ }]);
    assert.equal(err.issues.length, 1);
    const pretty = await fixture("json", "\uFEFF\n\n" + JSON.stringify([good("a"), good("b")], null, 2));
    const err2 = await expectRejected(pretty, [{ line: 3, message: /JSON array/ }]);
    assert.equal(err2.issues.length, 1, "stops at the array: the lines after it are not jobs");
  });

  it("a pretty-printed job says a job must be on one line", async () => {
    const path = await fixture("jsonl", JSON.stringify(good("a"), null, 2) + "\n");
    await expectRejected(path, [{ line: 1, message: /not valid JSON: .*a job must be on one line \(JSONL\)/ }]);
  });

  it("binary files, invalid UTF-8 and UTF-16 are refused as such, at the first bad line", async () => {
    const withNul = await fixture("jsonl", Buffer.from([0x7b, 0x00, 0x01, 0x02, 0x0a, 0x00, 0x0a, 0x41]));
    const e1 = await expectRejected(withNul, [{ line: 1, message: /NUL byte.*binary file/ }]);
    assert.equal(e1.issues.length, 1);
    await expectRejected(await fixture("jsonl", Buffer.from([0x7b, 0xc3, 0x28, 0x7d, 0x0a])), [{ line: 1, message: /not UTF-8 text/ }]);
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(JSON.stringify(good("a")) + "\n", "utf16le")]);
    await expectRejected(await fixture("jsonl", utf16), [{ line: 1, message: /UTF-16 text; save it as UTF-8/ }]);
  });

  it("blank lines of any kind (CRLF, spaces, a lone CR) are skipped and do not shift line numbers", async () => {
    const path = await fixture("jsonl", `\r\n  \r\n${JSON.stringify(good("a"))}\r\n\r\n{"id":"../b"}\r\n`);
    await expectRejected(path, [{ line: 5, field: "id" }]);
  });

  it('numbers out of range and "__proto__" keys anywhere (params, scene props) name the field', async () => {
    const path = await jsonl([
      '{"id":"a","params":{"x":-1e400}}',
      '{"id":"b","scene":{"tag":"Box","key":"k","__proto__":{"polluted":true}}}',
    ]);
    await expectRejected(path, [
      { line: 1, field: "params.x", message: /must be a finite number/ },
      { line: 2, field: "scene.__proto__", message: /not allowed/ },
    ]);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it("openJobsFile checks the whole file first, then streams; a file changed in between is refused", async () => {
    const path = await jsonl([good("a"), good("b")]);
    const stream = await openJobsFile(path);
    assert.ok(!Array.isArray(stream) && Symbol.asyncIterator in stream);
    await writeFile(path, [good("a"), good("b"), good("c")].map((j) => JSON.stringify(j)).join("\n"));
    await assert.rejects(
      (async () => {
        for await (const _ of stream);
      })(),
      /jobs file changed while it was being queued/,
    );
    await assert.rejects(openJobsFile(await jsonl([good("a"), { id: ".." }])), JobInputError);
  });

  it("a file with a million bad lines keeps only the first 1,000 problems but counts all", async () => {
    const path = await fixture("jsonl", '{"id":"../x"}\n'.repeat(3_000));
    const err = await expectRejected(path, [{ line: 1, field: "id" }]);
    assert.equal(err.issues.length, 1_000);
    assert.match(err.message, /^.*: 3000 problems on 3000 lines; no jobs were loaded/);
    assert.match(err.message, /… and 2980 more$/);
  });
});

describe("job layers: asked for per job, refused before anything renders", () => {
  it("a job's layers and depth are read; a bad value names the line and the field", async () => {
    const path = await jsonl([
      { id: "ok", layers: ["mask", "normal"], depth: true },
      { id: "a", layers: ["rgb", "mask", "segmentation"] },
      { id: "b", layers: "mask" },
      { id: "c", layers: ["mask", "mask"] },
      { id: "d", layers: ["depth"], depth: false },
      { id: "e", layers: [1] },
      { id: "f", depth: "yes" },
      { id: "g", layers: ["Mask"] },
      { id: "h", layers: ["rgb", "depth", "depth32", "mask", "class", "normal", "boxes", "rgb"] },
    ]);
    await expectRejected(path, [
      { line: 2, field: "layers[2]", message: /must be one of "rgb", "depth", .* got "segmentation"/ },
      { line: 3, field: "layers", message: /must be a list of layer names/ },
      { line: 4, field: "layers", message: /names a layer twice/ },
      { line: 5, field: "depth", message: /must not be false when "layers" names depth/ },
      { line: 6, field: "layers[0]", message: /got 1/ },
      { line: 7, field: "depth", message: /must be a boolean, got "yes"/ },
      { line: 8, field: "layers[0]", message: /got "Mask"/ },
      { line: 9, field: "layers", message: /^names more layers than there are \(7\): a layer twice/ },
    ]);
    assert.deepEqual(await readJobsFile(await jsonl([{ id: "ok", layers: ["mask", "normal"], depth: true }])), [{ id: "ok", layers: ["mask", "normal"], depth: true }]);
  });

  it("a job module's bad layers are refused the same way", async () => {
    const path = await fixture("ts", `export default [{ id: "m", layers: ["rgb", "heat"] }];`);
    await assert.rejects(loadJobsModule(path).then(async (jobs) => { for await (const _ of jobs); }), (err: unknown) => {
      assert.ok(err instanceof JobInputError);
      assert.match(err.message, /layers\[1\]: must be one of .* got "heat"/);
      return true;
    });
  });

  it("jobLayers: the job's own list, else the run's; depth true adds, false drops; rgb first, needs added", () => {
    const run: LayerName[] = ["rgb", "depth", "mask"];
    assert.deepEqual(jobLayers({}, run), ["rgb", "depth", "mask"]);
    assert.deepEqual(jobLayers({ layers: ["normal"] }, run), ["rgb", "normal"]);
    assert.deepEqual(jobLayers({ layers: [] }, run), ["rgb"], "an empty list is rgb only, not the run's");
    assert.deepEqual(jobLayers({ depth: true }, ["rgb"]), ["rgb", "depth"]);
    assert.deepEqual(jobLayers({ depth: false }, run), ["rgb", "mask"], "depth: false drops the run's depth");
    assert.deepEqual(jobLayers({ layers: ["boxes", "class"], depth: true }, run), ["rgb", "depth", "mask", "class", "boxes"], "class and boxes need the mask");
  });
});

describe("run layers: --layers and --depth, defaults filled in one place", () => {
  it("parseLayerList resolves a comma list; an unknown name is named", () => {
    assert.deepEqual(parseLayerList("normal, depth,class"), ["rgb", "depth", "mask", "class", "normal"]);
    assert.deepEqual(parseLayerList("rgb,rgb"), ["rgb"]);
    assert.deepEqual(parseLayerList(LAYER_NAMES.join(",")), [...LAYER_NAMES]);
    assert.throws(() => parseLayerList("rgb,semantic"), /unknown layer 'semantic'/);
    for (const typo of ["", " ", "rgb,,mask", "rgb,", ",depth"]) assert.throws(() => parseLayerList(typo), /empty layer name in/, JSON.stringify(typo));
  });

  it("renderDefaults: rgb only unless asked; --depth adds depth to --layers", () => {
    const d = renderDefaults({});
    assert.deepEqual([d.width, d.height, d.format, d.inFlight, d.layers], [640, 480, "png", 3, ["rgb"]]);
    assert.deepEqual(renderDefaults({ depth: true }).layers, ["rgb", "depth"]);
    assert.deepEqual(renderDefaults({ layers: ["rgb", "mask"], depth: true }).layers, ["rgb", "depth", "mask"]);
    assert.deepEqual(renderDefaults({ layers: ["normal"], depth: false }).layers, ["rgb", "normal"]);
  });
});

/**
 * A session that records what renderDeclarativeJob sends: ops go through the server's own SentScene
 * (which keeps instance ids exactly as the page does), and each grab notes the ids of the scene it
 * renders and the layers it asks for.
 */
function recordingSession() {
  const scene = new SentScene();
  const grabs: Array<{ layers: readonly string[] | undefined; ids: Array<[number, string]> }> = [];
  const send = (op: SceneOp) => scene.apply(op);
  const session = {
    set: (tree: SceneElement) => send({ op: "set", scene: tree }),
    update: (nodes: unknown) => send({ op: "update", nodes: (Array.isArray(nodes) ? nodes : [nodes]) as never }),
    grabRender: async (options: GrabOptions): Promise<GrabbedFrame> => {
      grabs.push({ layers: options.layers, ids: [...scene.instances().ids].map(([id, info]) => [id, info.key]) });
      return {
        image: Buffer.from("png"), width: 4, height: 3, format: "png", renderMs: 1, encodeMs: 1, roundTripMs: 1, layers: ["rgb"], files: {},
        camera: { K: [[1, 0, 2], [0, 1, 1.5], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]], fov: 50, near: 0.1, far: 100 },
      };
    },
  };
  return { session: session as unknown as Session, grabs };
}

describe("renderDeclarativeJob: layers asked per grab, mask ids the same on a fresh tab or after another job", () => {
  const scene = {
    tag: "DefaultScene", key: "root",
    children: [{ tag: "Group", key: "shelf", children: [{ tag: "Box", key: "crate", label: "crate" }, { tag: "Sphere", key: "ball" }] }, { tag: "Box", key: "floor", instance: 7 }],
  };
  const run = async (session: Session, spec: JobSpec, layers: LayerName[] = ["rgb", "mask"]) => {
    const job = new JobContext(spec, 1, "s1", new DatasetWriter(join(dir, `render-${++fileCount}`)), () => true, 1);
    await renderDeclarativeJob(session, job, { ...renderDefaults({ layers }), width: 4, height: 3 });
  };
  const measured: JobSpec = { id: "measured", scene, frames: [{ camera: { position: [0, 0, 4] } }, { camera: { position: [1, 0, 4] } }] };

  it("each grab asks for the job's layers (its own, else the run's)", async () => {
    const { session, grabs } = recordingSession();
    await run(session, { id: "own", scene, layers: ["normal"], depth: true });
    await run(session, { id: "runs", scene });
    assert.deepEqual(grabs.map((g) => g.layers), [["rgb", "depth", "normal"], ["rgb", "mask"]]);
  });

  const cases: Array<[string, JobSpec]> = [
    ["after a job with the same scene", { id: "same", scene, frames: [{ camera: { position: [2, 2, 2] } }] }],
    ["after a job whose updates added and re-keyed elements", {
      id: "changer", scene,
      frames: [{ update: [{ key: "shelf", children: [{ tag: "Box", key: "extra" }, { tag: "Box", key: "crate" }, { tag: "Sphere", key: "ball" }] }] }],
    }],
    ["after a job with another scene", { id: "other", scene: { tag: "Group", key: "g", children: [{ tag: "Box", key: "ball" }] } }],
  ];
  for (const [what, before] of cases) {
    it(`ids are those of a fresh tab ${what}`, async () => {
      const fresh = recordingSession();
      await run(fresh.session, measured);
      const reused = recordingSession();
      await run(reused.session, before);
      const skip = reused.grabs.length;
      await run(reused.session, measured);
      assert.deepEqual(reused.grabs.slice(skip).map((g) => g.ids), fresh.grabs.map((g) => g.ids));
      const keys = new Map(fresh.grabs[0].ids.map(([id, key]) => [key, id]));
      assert.ok(keys.has("crate") && keys.has("ball"), "the objects have ids");
      assert.equal(keys.get("floor"), 7, "an explicit `instance` is the id");
    });
  }
});

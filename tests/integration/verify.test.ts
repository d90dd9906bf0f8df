// `npm run farm -- verify --out DIR` as a user runs it: on a dataset the farm CLI wrote with real
// Chromium (jobs asking for every file layer: mask + class, normal, depth, depth32; and a --handler run),
// then on the same dataset broken in several ways at once, then on folders that are not datasets.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PNG } from "pngjs";
import { runFarmCli } from "./cli.js";
import { FRAMES_INDEX } from "../../server/dataset/readDataset.js";
import type { VerifyReport } from "../../server/dataset/verifyDataset.js";

const camera = (x: number) => ({ camera: { position: [x, 3, 4], lookAt: [0, 0, 0] } });
// Each job's own "layers" picks the files it writes; the last asks for every layer at once.
const JOBS = [
  { id: "ids", layers: ["mask", "class"], frames: [camera(4), camera(-4)] },
  { id: "normals", layers: ["normal"], frames: [camera(4), camera(-4)] },
  { id: "depth16", depth: true },
  { id: "depth32", layers: ["depth32"], frames: [camera(3)] },
  { id: "all", layers: ["depth", "depth32", "mask", "class", "normal", "boxes"], frames: [camera(4), camera(2)] },
];

let base: string;
let out: string;
before(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-verify-cli-"));
  out = path.join(base, "out");
  const jobs = path.join(base, "jobs.jsonl");
  fs.writeFileSync(jobs, JOBS.map((j) => JSON.stringify(j)).join("\n") + "\n");
  const { code, output } = await runFarmCli(["--sessions", "2", "--jobs", jobs, "--width", "96", "--height", "64", "--out", out, "--no-progress"]);
  assert.equal(code, 0, output);
});
after(() => fs.rmSync(base, { recursive: true, force: true }));

const verify = (...args: string[]) => runFarmCli(["verify", ...args], 60_000);

describe("verify (CLI)", () => {
  it("a dataset the farm wrote with real Chromium: exit 0, no problems; --json says the same", async () => {
    const { code, output } = await verify("--out", out);
    assert.equal(code, 0, output);
    assert.match(output, /verify: .*: 8 line\(s\), 26 file\(s\) checked, 5 of 5 job\(s\) done, [\d.]+ s: no problems/);
    const json = await verify("--out", out, "--json");
    assert.equal(json.code, 0, json.output);
    const report = JSON.parse(json.output) as VerifyReport;
    assert.deepEqual([report.lines, report.files, report.jobsDone, report.problemCount, report.problems], [8, 26, 5, 0, []]);
  });

  it("the same dataset broken four ways: exit 1, each problem named by line and file, all counted", async () => {
    const broken = path.join(base, "broken");
    fs.cpSync(out, broken, { recursive: true });
    const lines = fs.readFileSync(path.join(broken, FRAMES_INDEX), "utf8").split("\n").filter(Boolean);
    const lineOf = (job: string, frame: number) => lines.findIndex((l) => JSON.parse(l).job === job && JSON.parse(l).frame === frame) + 1;
    // A truncated mask, a missing normal, an 8-bit depth image, and a duplicated line.
    const mask = path.join(broken, "images/ids/000001.mask.png");
    fs.truncateSync(mask, fs.statSync(mask).size - 16);
    fs.rmSync(path.join(broken, "images/normals/000000.normal.png"));
    const eightBit = new PNG({ width: 96, height: 64, colorType: 0, bitDepth: 8, inputColorType: 0, inputHasAlpha: false });
    fs.writeFileSync(path.join(broken, "images/depth16/000000.depth.png"), PNG.sync.write(eightBit, { colorType: 0, bitDepth: 8, inputColorType: 0, inputHasAlpha: false }));
    const copied = lines[lineOf("depth32", 0) - 1]!;
    fs.appendFileSync(path.join(broken, FRAMES_INDEX), `${copied}\n`);

    const { code, output } = await verify("--out", broken);
    assert.equal(code, 1, output);
    for (const expected of [
      new RegExp(`^frames\\.jsonl:${lineOf("ids", 1)}: images/ids/000001\\.mask\\.png: mask layer: .*truncated`, "m"),
      new RegExp(`^frames\\.jsonl:${lineOf("normals", 0)}: images/normals/000000\\.normal\\.png: is missing$`, "m"),
      new RegExp(`^frames\\.jsonl:${lineOf("depth16", 0)}: images/depth16/000000\\.depth\\.png: depth layer: .*IHDR says 8-bit samples of colour type 0; expected 16-bit`, "m"),
      new RegExp(`^frames\\.jsonl:9: job depth32 frame 0 is also on line ${lineOf("depth32", 0)}: each \\(job, frame\\) has one line$`, "m"),
    ]) {
      assert.match(output, expected);
    }
    assert.match(output, /verify: .*: 9 line\(s\), .*: 4 problem\(s\)$/m);
  });

  it("a run with a --handler: its jobs need at least one frame, as many as the handler saved", async () => {
    const handlerOut = path.join(base, "handler-out");
    const handler = path.join(base, "handler.ts");
    fs.writeFileSync(handler, `export default async function (session, job) {
  session.set({ tag: "DefaultScene", key: "root", children: [
    { tag: "Box", key: "box" },
    { tag: "CameraView", key: "ego", width: 64, height: 48, position: [3, 2, 3], lookAt: [0, 0, 0] },
  ] });
  for (let step = 0; step < 3; step++) {
    session.update({ key: "box", rotation: [0, step / 5, 0] });
    await job.saveFrame(await session.grabRender({ key: "ego" }));
  }
}
`);
    const { code, output } = await runFarmCli(["--sessions", "1", "--demo", "2", "--frames-per-job", "1", "--handler", handler, "--out", handlerOut, "--no-progress"]);
    assert.equal(code, 0, output);
    const checked = await verify("--out", handlerOut);
    assert.equal(checked.code, 0, checked.output);
    assert.match(checked.output, /6 line\(s\), 6 file\(s\) checked, 2 of 2 job\(s\) done.*no problems/);
  });

  it("a folder that is not a dataset, or no --out: exit 2 naming it", async () => {
    const empty = fs.mkdtempSync(path.join(base, "empty-"));
    let result = await verify("--out", empty);
    assert.equal(result.code, 2, result.output);
    assert.match(result.output, /tabfarm: --out .*empty-\w+: the folder is empty, not a tabfarm dataset/);
    result = await verify("--out", path.join(base, "nowhere"));
    assert.equal(result.code, 2, result.output);
    assert.match(result.output, /tabfarm: --out .*nowhere: no such folder/);
    // A usage error is bad input too, never 1 ("problems found").
    result = await verify();
    assert.equal(result.code, 2, result.output);
    assert.match(result.output, /required option '--out <dir>' not specified/);
  });
});

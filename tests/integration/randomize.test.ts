// Seeds and randomizers end to end, as a user runs them: the real CLI and Chromium render a --template
// with the randomizers. Every line carries its frame's seed and drawn values; a second dataset
// rendered with the same seed, killed mid-run and resumed, has byte-identical images and equal values;
// a resume under another seed, a bad template and --frames without --template are refused up front.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import type { RunManifestData } from "../../server/dataset/RunManifest.js";
import { frameSeed } from "../../server/dataset/seeds.js";
import { readFrames, runFarmCli, spawnFarmCli, withTempDir } from "./cli.js";

const COLOURS = ["#e4572e", "#669bbc", "#f3a712"];
const TEMPLATE = {
  scene: {
    tag: "DefaultScene", key: "root", grid: false,
    children: [{ tag: "Box", key: "box" }, { tag: "Sphere", key: "ball", position: [0, 0.5, -1], scale: [0.4, 0.4, 0.4] }],
  },
  width: 96, height: 72,
  randomize: [
    { key: "box", prop: "position", uniform: [[-1, 0, -1], [1, 1, 1]] },
    { key: "box", prop: "color", choice: COLOURS },
    { key: "ball", prop: "color", hsv: { h: [180, 240], s: [0.5, 1], v: [0.5, 1] } },
    { camera: { orbit: { target: [0, 0.5, 0], radius: [4, 6], elevation: [10, 60] } } },
  ],
};
const SEED = 424242;
const FRAMES = 8;
const PER_JOB = 2;

const args = (template: string, out: string, extra: string[] = []) => [
  "--template", template, "--frames", String(FRAMES), "--frames-per-job", String(PER_JOB), "--out", out,
  "--sessions", "1", "--browsers", "1", "--no-progress", ...extra,
];
const byFrame = (records: FrameRecord[]) => new Map(records.map((r) => [`${r.job}/${r.frame}`, r]));
const length = (v: number[]) => Math.hypot(...v);

describe("seeded randomizers (real CLI and Chromium)", { timeout: 600_000 }, () => {
  it("draws per-frame values from the seed, records them, and renders them again identically after a kill and resume", async () => {
    await withTempDir("tabfarm-randomize-", async (dir) => {
      const template = path.join(dir, "template.json");
      fs.writeFileSync(template, JSON.stringify(TEMPLATE, null, 2)); // a template may span lines

      const a = path.join(dir, "a");
      const first = await runFarmCli(args(template, a, ["--seed", String(SEED)]));
      assert.equal(first.code, 0, first.output);
      assert.match(first.output, new RegExp(`seed: ${SEED}\\b`));
      const records = readFrames(a);
      assert.equal(records.length, FRAMES);
      const manifest = JSON.parse(fs.readFileSync(path.join(a, "manifest.json"), "utf8")) as RunManifestData;
      assert.equal(manifest.seed, SEED);
      assert.deepEqual(manifest.template, { frames_per_job: PER_JOB, frames: [FRAMES] });
      assert.deepEqual([...new Set(records.map((r) => r.job))].sort(), ["frame-00000000", "frame-00000002", "frame-00000004", "frame-00000006"]);
      for (const r of records) {
        assert.equal(r.seed, frameSeed(SEED, r.job, r.frame), "the line's seed is the frame's, from (run seed, job, frame)");
        const drawn = r.randomized as Record<string, unknown>;
        assert.deepEqual(Object.keys(drawn).sort(), ["ball.color", "box.color", "box.position", "camera.position"]);
        const [x, y, z] = drawn["box.position"] as number[];
        assert.ok(x >= -1 && x <= 1 && y >= 0 && y <= 1 && z >= -1 && z <= 1, `box.position ${drawn["box.position"]}`);
        assert.ok(COLOURS.includes(drawn["box.color"] as string));
        assert.match(drawn["ball.color"] as string, /^#[0-9a-f]{6}$/);
        const camera = drawn["camera.position"] as number[];
        const offset = [camera[0], camera[1] - 0.5, camera[2]];
        const radius = length(offset);
        assert.ok(radius >= 4 - 1e-9 && radius <= 6 + 1e-9, `camera radius ${radius}`);
        const elevation = (Math.asin(offset[1] / radius) * 180) / Math.PI;
        assert.ok(elevation >= 10 - 1e-6 && elevation <= 60 + 1e-6, `camera elevation ${elevation}`);
        // The camera really went there: the frame's pose is the drawn one.
        const pose = r.cameraToWorld;
        assert.deepEqual([pose[0][3], pose[1][3], pose[2][3]].map((v) => Math.round(v * 1e4)), camera.map((v) => Math.round(v * 1e4)));
      }
      const positions = new Set(records.map((r) => JSON.stringify((r.randomized as Record<string, unknown>)["box.position"])));
      assert.equal(positions.size, FRAMES, "each frame draws its own values");

      // The same seed in another dataset, killed while a job is half written, then resumed (no --seed: the dataset's).
      const b = path.join(dir, "b");
      const killed = spawnFarmCli(args(template, b, ["--seed", String(SEED)]), { detached: true });
      const exited = new Promise((resolve) => killed.child.once("exit", resolve));
      const deadline = Date.now() + 180_000;
      const framesOf = (job: string) => fs.readdirSync(path.join(b, "images", job), { withFileTypes: true }).length;
      while (Date.now() < deadline && !(fs.existsSync(path.join(b, "images", "frame-00000002")) && framesOf("frame-00000002") > 0)) {
        await new Promise((r) => setTimeout(r, 20));
      }
      process.kill(-killed.child.pid!, "SIGKILL"); // the farm and the Chromium it launched
      await exited;
      assert.ok(readFrames(b).length < FRAMES, `the kill came before the run ended:\n${killed.output()}`);
      const resumed = await runFarmCli(args(template, b));
      assert.equal(resumed.code, 0, resumed.output);
      assert.match(resumed.output, new RegExp(`seed: ${SEED} \\(the dataset's`));

      const again = byFrame(readFrames(b));
      assert.equal(again.size, FRAMES);
      for (const [name, r] of byFrame(records)) {
        const other = again.get(name)!;
        assert.equal(other.seed, r.seed, name);
        assert.deepEqual(other.randomized, r.randomized, `${name}: the same values drawn`);
        assert.ok(fs.readFileSync(path.join(b, other.file)).equals(fs.readFileSync(path.join(a, r.file))), `${name}: byte-identical image`);
      }

      // Another seed on this dataset would draw other values for jobs it resumes: refused before anything runs.
      const otherSeed = await runFarmCli(args(template, b, ["--seed", "7"]));
      assert.equal(otherSeed.code, 2, otherSeed.output);
      assert.match(otherSeed.output, new RegExp(`--seed 7: this dataset was rendered with seed ${SEED}`));
      const otherCut = await runFarmCli([...args(template, b), "--frames-per-job", "4"]);
      assert.equal(otherCut.code, 2, otherCut.output);
      assert.match(otherCut.output, /--frames-per-job 4: this dataset's template frames were cut into jobs of 2/);
      const fewer = await runFarmCli([...args(template, b), "--frames", "3"]);
      assert.equal(fewer.code, 2, fewer.output);
      assert.match(fewer.output, /--frames 3: this dataset's template already has 8 frames/);
    });
  });

  it("refuses a bad template, --frames without --template and --template without --frames before anything renders", async () => {
    await withTempDir("tabfarm-randomize-bad-", async (dir) => {
      const out = path.join(dir, "out");
      const bad = path.join(dir, "bad.json");
      fs.writeFileSync(bad, JSON.stringify({
        ...TEMPLATE,
        id: "mine",
        randomize: [{ key: "box", prop: "position", uniform: [[-1, 0, 0], [1, 1, 1]] }, { key: "nobody", prop: "color", choice: COLOURS }],
      }));
      const refused = await runFarmCli(args(bad, out));
      assert.equal(refused.code, 2, refused.output);
      assert.match(refused.output, /bad\.json: id: not allowed in a template/);
      assert.match(refused.output, /bad\.json: randomize\[1\]\.key: no element with key "nobody"/);
      assert.equal(fs.existsSync(path.join(out, "images")), false, "nothing rendered");

      const noTemplate = await runFarmCli(["--frames", "5", "--out", out, "--no-progress"]);
      assert.equal(noTemplate.code, 2, noTemplate.output);
      assert.match(noTemplate.output, /--frames counts the frames of a --template/);
      const noFrames = await runFarmCli(["--template", bad, "--out", out, "--no-progress"]);
      assert.equal(noFrames.code, 2, noFrames.output);
      assert.match(noFrames.output, /--template needs --frames/);
      const badSeed = await runFarmCli([...args(bad, out), "--seed", "1e3"]);
      assert.equal(badSeed.code, 2, badSeed.output);
      assert.match(badSeed.output, /--seed/);
    });
  });
});

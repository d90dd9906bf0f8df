// Randomizers at their edges with the real CLI and Chromium: cameras drawn on the poles, props drawn with
// shapes the page's components do not expect, and flags that do not go together with --template.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { decodePng, readFrames, runFarmCli, withTempDir } from "./cli.js";

const SCENE = { tag: "DefaultScene", key: "root", grid: false, children: [{ tag: "Box", key: "box", color: "#e4572e" }] };
const orbitJob = (id: string, elevation: number) => ({
  id, scene: SCENE, width: 48, height: 36, frames: [{}],
  randomize: [{ camera: { orbit: { radius: 3, elevation: [elevation, elevation] } } }],
});

describe("randomizers on a real page", { timeout: 300_000 }, () => {
  it("cameras drawn on both poles look at the target; props drawn in shapes components ignore leave the tab rendering", async () => {
    await withTempDir("tabfarm-randomize-hostile-", async (dir) => {
      const jobs = [
        orbitJob("north", 90),
        orbitJob("south", -90),
        {
          id: "odd-props", scene: SCENE, width: 48, height: 36, frames: [{}, {}],
          randomize: [
            { key: "box", prop: "scale", uniform: [0.5, 2] }, // a number: the page reads it as a uniform scale
            { key: "box", prop: "rotation", uniform: [[0, 0], [1, 1]] }, // two components where three are read
            { key: "box", prop: "position", choice: ["up", null, { x: 1 }] },
            { key: "box", prop: "color", choice: [{ r: 1 }, 7, null] },
            { key: "box", prop: "opacity", normal: { mean: 0.5, std: 10, clamp: [-5, 5] } },
            { key: "root", prop: "background", choice: [42, "#102030"] },
          ],
        },
      ];
      const file = path.join(dir, "jobs.jsonl");
      fs.writeFileSync(file, jobs.map((j) => JSON.stringify(j)).join("\n") + "\n");
      const out = path.join(dir, "out");
      const run = await runFarmCli(["--jobs", file, "--out", out, "--seed", "11", "--sessions", "1", "--browsers", "1", "--no-progress"]);
      assert.equal(run.code, 0, run.output);
      const records = readFrames(out);
      assert.equal(records.length, 4, run.output);
      for (const r of records) {
        assert.ok(r.cameraToWorld.flat().every(Number.isFinite), `${r.job}/${r.frame}: a finite pose ${JSON.stringify(r.cameraToWorld)}`);
        assert.ok(decodePng(path.join(out, r.file)).colours > 1, `${r.job}/${r.frame}: not a blank image`);
      }
      for (const [job, sign] of [["north", 1], ["south", -1]] as const) {
        const r = records.find((x) => x.job === job)!;
        const m = r.cameraToWorld;
        const position = [m[0][3], m[1][3], m[2][3]];
        assert.deepEqual(position.map((v) => Math.round(v * 1e6) / 1e6 + 0), [0, 3 * sign, 0], `${job}: the camera is on the pole`);
        // three.js cameras look down their −Z axis: that axis, negated, points from the camera to the target.
        const view = [-m[0][2], -m[1][2], -m[2][2]];
        assert.ok(view[1] * -sign > 0.999999, `${job}: looks at the target, straight ${sign > 0 ? "down" : "up"} (${view})`);
        assert.deepEqual((r.randomized as Record<string, number[]>)["camera.position"].map((v) => Math.round(v * 1e6) / 1e6 + 0), [0, 3 * sign, 0]);
      }
    });
  });

  it("a template resume that leaves --frames-per-job out keeps the dataset's cut, as a resume without --seed keeps its seed", async () => {
    await withTempDir("tabfarm-randomize-hostile-cut-", async (dir) => {
      const template = path.join(dir, "t.json");
      fs.writeFileSync(template, JSON.stringify({ scene: SCENE, width: 32, height: 24, randomize: [{ key: "box", prop: "color", hsv: {} }] }));
      const out = path.join(dir, "out");
      const common = ["--template", template, "--out", out, "--sessions", "1", "--browsers", "1", "--no-progress"];
      const first = await runFarmCli([...common, "--frames", "3", "--frames-per-job", "2"]);
      assert.equal(first.code, 0, first.output);
      const resumed = await runFarmCli([...common, "--frames", "3"]);
      assert.equal(resumed.code, 0, `a resume with the same flags but the default --frames-per-job:\n${resumed.output}`);
      assert.deepEqual(readFrames(out).map((r) => `${r.job}/${r.frame}`).sort(), ["frame-00000000/0", "frame-00000000/1", "frame-00000002/0"]);
    });
  });

  it("--template with an explicit --demo is refused like --template with --jobs (one job source per run)", async () => {
    await withTempDir("tabfarm-randomize-hostile-flags-", async (dir) => {
      const template = path.join(dir, "t.json");
      fs.writeFileSync(template, JSON.stringify({ scene: SCENE, randomize: [{ key: "box", prop: "color", hsv: {} }] }));
      // --out is a file: were the flags accepted, the run would stop at the dataset, before any browser starts.
      const out = path.join(dir, "not-a-folder");
      fs.writeFileSync(out, "");
      const both = await runFarmCli(["--template", template, "--frames", "1", "--demo", "5", "--out", out, "--no-progress"], 120_000);
      assert.equal(both.code, 2, both.output);
      assert.match(both.output, /--demo/, "the refusal names the flag that does not go with --template");
    });
  });
});

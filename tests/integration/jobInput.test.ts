// Jobs from a .jsonl file and from a --handler module, through the real CLI and Chromium.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { PNG } from "pngjs";
import { REPO, runFarmCli, readFrames, withTempDir } from "./cli.js";


describe("job input through the CLI", () => {
  it("renders a .jsonl job set with per-job sizes, matrix poses, updates and depth (run-level --depth, a job's depth: false)", () =>
    withTempDir("tabfarm-jobs-", async (dir) => {
      const matrix = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 5, 1]; // camera at (0,1,5) looking down -Z
      const jobs = [
        { id: "a", params: { k: 1 }, width: 80, height: 60, depth: true, frames: [{ camera: { position: [3, 2, 3], lookAt: [0, 0, 0] } }, { camera: { matrix } }] },
        { id: "b", format: "jpeg", width: 64, height: 48, depth: false, scene: { tag: "DefaultScene", key: "r", children: [{ tag: "Box", key: "box" }] },
          frames: [{ camera: { position: [0, 0, 3] }, update: [{ key: "box", color: "#00ff00" }] }] },
        { id: "c", width: 32, height: 24 },
      ];
      const file = path.join(dir, "jobs.jsonl");
      fs.writeFileSync(file, jobs.map((j) => JSON.stringify(j)).join("\n") + "\n");
      const out = path.join(dir, "out");
      const { code, output } = await runFarmCli(["--sessions", "1", "--jobs", file, "--out", out, "--no-progress", "--depth"]);
      assert.equal(code, 0, output);
      const frames = readFrames(out).sort((x, y) => `${x.job}${x.frame}`.localeCompare(`${y.job}${y.frame}`));
      assert.deepEqual(frames.map((f) => [f.job, f.frame, f.width, f.height, f.format]), [
        ["a", 0, 80, 60, "png"], ["a", 1, 80, 60, "png"], ["b", 0, 64, 48, "jpeg"], ["c", 0, 32, 24, "png"],
      ]);
      assert.deepEqual(frames[0].params, { k: 1 });
      // The matrix pose comes back as the camera-to-world of the frame (row-major).
      assert.deepEqual(frames[1].cameraToWorld.map((r) => r.map((v) => Math.round(v * 1e6) / 1e6)), [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 5], [0, 0, 0, 1]]);
      // Depth (--depth, or a job's depth: true) writes a 16-bit depth PNG beside each frame; depth: false leaves it out.
      const depth = PNG.sync.read(fs.readFileSync(path.join(out, String(frames[0].depth_file))), { skipRescale: true } as never);
      assert.deepEqual([depth.width, depth.height, depth.depth, frames[0].depth_scale], [80, 60, 16, 0.001]);
      assert.deepEqual(frames[0].layers, { rgb: "images/a/000000.png", depth: "images/a/000000.depth.png" });
      assert.equal(frames[2].depth_file, undefined);
      assert.deepEqual(frames[2].layers, { rgb: "images/b/000000.jpg" });
      assert.deepEqual(frames[3].layers, { rgb: "images/c/000000.png", depth: "images/c/000000.depth.png" }, "--depth applies to jobs that say nothing");
      assert.ok(frames[2].file.endsWith(".jpg"));
      const jpeg = fs.readFileSync(path.join(out, frames[2].file));
      assert.deepEqual([...jpeg.subarray(0, 2)], [0xff, 0xd8]);
    }));

  it("refuses a bad jobs file before starting, naming line and field, and enqueues nothing", () =>
    withTempDir("tabfarm-jobs-", async (dir) => {
      const file = path.join(dir, "bad.jsonl");
      fs.writeFileSync(file, `{"id":"ok","frames":[]}\n{"id":"../evil"}\n{"id":"x","frames":[{"camera":{"position":[1,1e999,0]}}]}\n`);
      const out = path.join(dir, "out");
      const { code, output } = await runFarmCli(["--jobs", file, "--out", out, "--no-progress"]);
      assert.equal(code, 2, output);
      assert.match(output, /bad\.jsonl:2: id: /);
      assert.match(output, /bad\.jsonl:3: frames\[0\]\.camera\.position\[1\]/);
      assert.equal(fs.existsSync(path.join(out, "queue.sqlite")), false, "nothing was enqueued");
    }));

  it("refuses bad ids, reserved keys, deep scenes and careless files before starting (exit 2, file:line: field)", () =>
    withTempDir("tabfarm-jobs-", async (dir) => {
      let deep = '{"tag":"Box","key":"leaf"}';
      for (let i = 0; i < 10_000; i++) deep = `{"tag":"Group","key":"g${i}","children":[${deep}]}`;
      const file = path.join(dir, "careless.jsonl");
      fs.writeFileSync(file, [
        '{"id":"a..b"}',
        '{"id":"CON.txt"}',
        '{"id":"resize","frames":[{"update":[{"key":"tabfarm.camera","width":4000}]}]}',
        `{"id":"deep","scene":${deep}}`,
        '{"id":"Ok"}',
        '{"id":"ok"}',
      ].join("\r\n"));
      const out = path.join(dir, "out");
      const { code, output } = await runFarmCli(["--jobs", file, "--out", out, "--no-progress"]);
      assert.equal(code, 2, output);
      assert.match(output, /careless\.jsonl: 5 problems on 5 lines; no jobs were loaded/);
      assert.match(output, /careless\.jsonl:1: id: must not contain "\.\."/);
      assert.match(output, /careless\.jsonl:2: id: must not be a Windows device name/);
      assert.match(output, /careless\.jsonl:3: frames\[0\]\.update\[0\]\.key: keys starting with "tabfarm\." are reserved/);
      assert.match(output, /careless\.jsonl:4: scene: elements nest deeper than the limit of 63 levels/);
      assert.match(output, /careless\.jsonl:6: id: id "ok" differs only by case from "Ok" on line 5/);
      assert.doesNotMatch(output, /Maximum call stack/);
      assert.equal(fs.existsSync(path.join(out, "queue.sqlite")), false, "nothing was enqueued");

      for (const [jobs, message] of [
        [dir, /cannot read the jobs module: it is a directory/],
        [path.join(dir, "missing.jsonl"), /missing\.jsonl: cannot read the jobs file: no such file/],
      ] as const) {
        const run = await runFarmCli(["--jobs", jobs, "--out", out, "--no-progress"]);
        assert.equal(run.code, 2, run.output);
        assert.match(run.output, message);
      }
    }));

  it("resuming with an edited jobs file names the jobs that differ; --replace-pending replaces pending ones", () =>
    withTempDir("tabfarm-jobs-", async (dir) => {
      const file = path.join(dir, "jobs.jsonl");
      const write = (jobs: object[]) => fs.writeFileSync(file, jobs.map((j) => JSON.stringify(j)).join("\n") + "\n");
      const frame = { camera: { position: [3, 2, 3], lookAt: [0, 0, 0] } };
      const scene = (tag: string) => ({ tag: "DefaultScene", key: "root", children: [{ tag, key: "thing" }] });
      // First run: "good" renders; "broken" names a tag that does not exist, so it fails (one attempt).
      write([
        { id: "good", width: 32, height: 24, frames: [frame] },
        { id: "broken", width: 32, height: 24, scene: scene("NoSuchTag"), frames: [frame] },
      ]);
      const out = path.join(dir, "out");
      const args = ["--sessions", "1", "--jobs", file, "--out", out, "--no-progress", "--max-attempts", "1"];
      const first = await runFarmCli(args);
      assert.equal(first.code, 1, first.output);
      assert.deepEqual(readFrames(out).map((f) => f.job), ["good"]);

      // The user fixes "broken", changes "good" too, and puts the failed job back.
      write([
        { id: "good", width: 40, height: 30, frames: [frame] },
        { id: "broken", width: 32, height: 24, scene: scene("Box"), frames: [frame] },
      ]);
      const retry = await runFarmCli(["retry-failed", "--out", out]);
      assert.equal(retry.code, 0, retry.output);

      // Without the flag the queued versions are kept (so "broken" fails again), and the run says which jobs differ.
      const kept = await runFarmCli(args);
      assert.equal(kept.code, 1, kept.output);
      assert.match(kept.output, /2 already known/);
      assert.match(kept.output, /of the known jobs, 2 differ from what is queued \(pending: broken; done: good\); the queued versions are kept: pass --replace-pending/);
      assert.match(kept.output, /done ones keep their frames/);
      assert.equal((await runFarmCli(["retry-failed", "--out", out])).code, 0);

      const replaced = await runFarmCli([...args, "--replace-pending"]);
      assert.equal(replaced.code, 0, replaced.output);
      assert.match(replaced.output, /2 differ from what is queued \(pending: broken; done: good\); 1 pending job\(s\) replaced by the new version/);
      const frames = readFrames(out).sort((a, b) => a.job.localeCompare(b.job));
      assert.deepEqual(frames.map((f) => [f.job, f.width]), [["broken", 32], ["good", 32]], "the done job keeps its first frames");
    }));

  it("runs a --handler module; a job that throws is retried and its first attempt leaves no lines", () =>
    withTempDir("tabfarm-jobs-", async (dir) => {
      const file = path.join(dir, "jobs.jsonl");
      fs.writeFileSync(file, [
        JSON.stringify({ id: "spin", params: { steps: 4 } }),
        JSON.stringify({ id: "flaky", params: { steps: 2, failFirstAttempt: true } }),
      ].join("\n"));
      const out = path.join(dir, "out");
      const { code, output } = await runFarmCli([
        "--sessions", "1", "--jobs", file, "--handler", path.join(REPO, "tests/fixtures/spinHandler.ts"), "--out", out, "--no-progress",
      ]);
      assert.equal(code, 0, output);
      assert.match(output, /job flaky attempt 1 failed .*deliberate failure/);
      const frames = readFrames(out);
      assert.deepEqual(frames.filter((f) => f.job === "spin").map((f) => f.step).sort(), [0, 1, 2, 3]);
      const flaky = frames.filter((f) => f.job === "flaky");
      assert.deepEqual(flaky.map((f) => f.attempt), [2, 2], "only the successful attempt's lines");
      for (const f of frames) assert.equal(PNG.sync.read(fs.readFileSync(path.join(out, f.file))).width, 96);
    }));
});

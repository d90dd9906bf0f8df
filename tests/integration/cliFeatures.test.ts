// CLI features beyond the plain run: tabs opened by hand (--serve-only), a browser without WebGL,
// --plugins, a --jobs module, and failed jobs with status / retry-failed.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { chromium } from "playwright-core";
import { PNG } from "pngjs";
import { REPO, runFarmCli, readFrames } from "./cli.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { chromiumArgs } from "../../harness/chromiumFlags.js";

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-cli-"));

describe("CLI features", () => {
  it("--serve-only prints a URL; a tab opened by hand there becomes a session and renders the jobs", async () => {
    const out = tempDir();
    const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "harness/cli.ts"), "--serve-only", "--demo", "6", "--frames-per-job", "3", "--width", "64", "--height", "48", "--out", out, "--no-progress"], {
      cwd: REPO, stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const browser = await chromium.launch({ executablePath: findBrowser().path, args: chromiumArgs("swiftshader") });
    try {
      const started = Date.now();
      while (!/serving (http\S+)/.test(output) && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 100));
      const url = /serving (http\S+)/.exec(output)?.[1];
      assert.ok(url, output);
      const page = await browser.newPage();
      await page.goto(url); // exactly what a person would paste into a browser
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r("timeout"), 90_000))]);
      assert.equal(code, 0, output);
      assert.match(output, /first session renderer: .*SwiftShader/i);
      assert.equal(readFrames(out).length, 6);
    } finally {
      child.kill("SIGKILL");
      await browser.close();
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("stops with a clear error naming the browser and flags when the tabs have no WebGL", async () => {
    const out = tempDir();
    try {
      const { code, output } = await runFarmCli([
        "--sessions", "1", "--demo", "2", "--gl", "auto", "--out", out, "--no-progress",
        "--chromium-arg=--disable-gpu", "--chromium-arg=--disable-software-rasterizer",
      ]);
      assert.equal(code, 2, output);
      assert.match(output, /WebGL is not available in the launched browser \(.+\); tried .* \(picked by --gl auto\) plus --disable-gpu --disable-software-rasterizer\. Try without those --chromium-arg flags, or another browser/);
      // auto's probe launched the browser with the user's flags too, so it saw no WebGL either.
      assert.match(output, /GL: swiftshader \(auto: egl gave no WebGL/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("--plugins bundles the user's components: a registered Arrow tag renders", async () => {
    const out = tempDir();
    try {
      const { code, output } = await runFarmCli([
        "--sessions", "1", "--plugins", path.join(REPO, "client/src/plugins/example.tsx"),
        "--jobs", path.join(REPO, "tests/fixtures/arrowJobs.jsonl"), "--out", out, "--no-progress",
      ]);
      assert.equal(code, 0, output);
      const [frame] = readFrames(out);
      const png = PNG.sync.read(fs.readFileSync(path.join(out, frame.file)));
      let greenish = 0;
      for (let i = 0; i < png.data.length; i += 4) if (png.data[i + 1] > 120 && png.data[i] < 90) greenish++;
      assert.ok(greenish > 30, `the green arrow is in the image (${greenish} green pixels)`);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("--recycle-after replaces tabs between jobs without losing or repeating a frame", async () => {
    const out = tempDir();
    try {
      const { code, output } = await runFarmCli(["--sessions", "2", "--demo", "40", "--frames-per-job", "5", "--width", "64", "--height", "48", "--recycle-after", "10", "--out", out, "--no-progress"]);
      assert.equal(code, 0, output);
      assert.match(output, /tab \d rendered \d+ frames; replacing it/);
      assert.ok((output.match(/session s\d+ joined/g) ?? []).length > 2, "replacement tabs joined as new sessions");
      const ids = readFrames(out).map((f) => `${f.job}/${f.frame}`);
      assert.equal(ids.length, 40);
      assert.equal(new Set(ids).size, 40);
      assert.doesNotMatch(output, /attempt \d failed/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("--jobs accepts a module exporting an async generator", async () => {
    const out = tempDir();
    try {
      const { code, output } = await runFarmCli(["--sessions", "1", "--jobs", path.join(REPO, "tests/fixtures/generatorJobs.ts"), "--out", out, "--no-progress"]);
      assert.equal(code, 0, output);
      assert.deepEqual(readFrames(out).map((f) => [f.job, f.width, f.height]).sort(), [["gen-0", 48, 32], ["gen-1", 48, 32], ["gen-2", 48, 32]]);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("a job that keeps failing is dead-lettered with its error; status shows it; retry-failed and a re-run finish it", async () => {
    const dir = tempDir();
    try {
      const jobs = path.join(dir, "jobs.jsonl");
      fs.writeFileSync(jobs, `{"id":"fine"}\n{"id":"doomed"}\n`);
      const out = path.join(dir, "out");
      const args = ["--sessions", "1", "--jobs", jobs, "--handler", path.join(REPO, "tests/fixtures/alwaysFails.ts"), "--max-attempts", "2", "--out", out, "--no-progress"];
      const first = await runFarmCli(args);
      assert.equal(first.code, 1, first.output);
      assert.match(first.output, /1 failed of 2/);

      const status = await runFarmCli(["status", "--out", out]);
      assert.equal(status.code, 0, status.output);
      assert.match(status.output, /2 jobs — 1 done, 0 pending, 0 leased, 1 failed/);
      assert.match(status.output, /failed doomed after 2 attempt\(s\): cannot render doomed: deliberately broken/);

      const retry = await runFarmCli(["retry-failed", "--out", out]);
      assert.match(retry.output, /1 failed job\(s\) returned to the queue/);
      process.env.TABFARM_TEST_HEAL = "1"; // inherited by the child: the handler now succeeds
      try {
        const second = await runFarmCli(args);
        assert.equal(second.code, 0, second.output);
        assert.match(second.output, /2 already known/);
      } finally {
        delete process.env.TABFARM_TEST_HEAL;
      }
      assert.deepEqual(readFrames(out).map((f) => f.job).sort(), ["doomed", "fine"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

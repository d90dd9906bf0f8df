// The bundled Chromium (@sparticuz/chromium, extracted by harness/bundledBrowser.ts) runs the farm as users
// run it, even where a system Chromium exists: `--browser bundled`, a fresh cache, frames decoded.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runFarmCli, readFrames, decodePng } from "./cli.js";
import { whyBundledUnavailable } from "../../harness/bundledBrowser.js";

const unavailable = whyBundledUnavailable();

describe("bundled browser", { skip: unavailable && `the bundled Chromium cannot run here: ${unavailable}` }, () => {
  it("extracts into an empty cache once, then renders decodable frames with the farm; the next run uses the cache", async (t) => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bundled-it-"));
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));
    // The CLI children inherit this: the cache goes to a temp folder, not ~/.cache.
    process.env.TABFARM_CACHE_DIR = path.join(root, "cache");
    const common = ["--sessions", "2", "--demo", "12", "--frames-per-job", "3", "--width", "160", "--height", "120", "--no-progress"];

    const first = await runFarmCli([...common, "--browser", "bundled", "--out", path.join(root, "out1")]);
    assert.equal(first.code, 0, first.output);
    const lines = first.output.split("\n");
    assert.match(lines[0]!, /extracting the bundled Chromium [\d.]+ into .*cache/, `the first line says it extracts:\n${first.output}`);
    assert.match(lines[1]!, /^tabfarm: browser .*tabfarm-chromium \(bundled: --browser bundled \(@sparticuz\/chromium [\d.]+, extracted into .* in [\d.]+ s\)\)/, first.output);
    assert.match(first.output, /WebGL renderer of the first tab: .*SwiftShader/);
    assert.match(first.output, /12 frames in .* jobs: 4 done, 0 failed of 4/);
    checkFrames(path.join(root, "out1"), 12);

    // Chosen through the environment this time; the cache is complete, so no extraction.
    process.env.TABFARM_BROWSER = "bundled";
    try {
      const second = await runFarmCli([...common, "--out", path.join(root, "out2")]);
      assert.equal(second.code, 0, second.output);
      assert.doesNotMatch(second.output, /extracting/);
      assert.match(second.output, /tabfarm: browser .*\(bundled: TABFARM_BROWSER bundled \(.*cached in /);
      checkFrames(path.join(root, "out2"), 12);
    } finally {
      delete process.env.TABFARM_BROWSER;
    }
    assert.deepEqual(fs.readdirSync(path.join(root, "cache")).filter((n) => /\.(partial|stale)-/.test(n)), [], "no staging folders left");
  });
});

// Runs everywhere: no browser is launched, only programs that are none.
describe("a --browser that is no browser", () => {
  for (const exe of ["/bin/true", "/bin/sleep"]) {
    it(`${exe}: exit 2 with one line naming it and how to choose another, not Playwright's dump`, async (t) => {
      const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-not-a-browser-"));
      t.after(() => fs.rmSync(out, { recursive: true, force: true }));
      const r = await runFarmCli(["--browser", exe, "--sessions", "1", "--demo", "2", "--no-progress", "--out", out]);
      assert.equal(r.code, 2, r.output);
      const line = r.output.split("\n").find((l) => l.startsWith("tabfarm: the browser "));
      assert.ok(line, r.output);
      assert.match(line, new RegExp(`^tabfarm: the browser ${exe} \\(path: --browser ${exe}\\) did not start: .*; it exited with code \\d.*Is it a Chromium/Chrome binary\\? .*--browser auto\\|system\\|bundled\\|PATH`));
      assert.doesNotMatch(r.output, /<launching>|Call log/, "no command-line dump");
    });
  }
});

function checkFrames(out: string, count: number): void {
  const frames = readFrames(out);
  assert.equal(frames.length, count);
  for (const f of frames) {
    const image = decodePng(path.join(out, f.file));
    assert.deepEqual([image.width, image.height], [160, 120], f.file);
    assert.ok(image.colours > 20, `${f.file} looks blank (${image.colours} colours)`);
  }
  const files = frames.map((f) => fs.readFileSync(path.join(out, f.file)).toString("base64"));
  assert.ok(new Set(files).size > count / 2, "the orbit's frames differ");
}

// The farm end to end, as users run it: the CLI in a child process, real Chromium tabs, real files.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runFarmCli, readFrames, decodePng, withTempDir, REPO } from "./cli.js";

describe("farm CLI", () => {
  it("renders 20 demo frames with 2 tabs into decodable, non-blank PNGs of the requested size", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-it-"));
    try {
      const { code, output } = await runFarmCli(["--sessions", "2", "--demo", "20", "--frames-per-job", "5", "--width", "320", "--height", "240", "--out", out, "--no-progress"]);
      assert.equal(code, 0, output);
      assert.match(output, /WebGL renderer of the first tab: .+/);
      assert.match(output, /20 frames in .* jobs: 4 done, 0 failed of 4/);
      const frames = readFrames(out);
      assert.equal(frames.length, 20);
      const seen = new Set(frames.map((f) => `${f.job}/${f.frame}`));
      assert.equal(seen.size, 20, "one line per (job, frame)");
      // Both tabs came up: the run may end before the second one joins (the next test makes them meet).
      assert.match(output, /2 tab\(s\) in /);
      for (const f of frames) {
        assert.equal(f.format, "png");
        assert.deepEqual([f.width, f.height], [320, 240]);
        assert.equal(f.K[0][2], 160);
        assert.equal(f.cameraToWorld.length, 4);
        const image = decodePng(path.join(out, f.file));
        assert.deepEqual([image.width, image.height], [320, 240], f.file);
        assert.ok(image.colours > 20, `${f.file} looks blank (${image.colours} colours)`);
      }
      // Consecutive orbit poses are different images.
      const a = fs.readFileSync(path.join(out, frames.find((f) => f.job === "demo-0000" && f.frame === 0)!.file));
      const b = fs.readFileSync(path.join(out, frames.find((f) => f.job === "demo-0000" && f.frame === 1)!.file));
      assert.notDeepEqual(a, b);
      const leftovers = fs.readdirSync(out, { recursive: true }).map(String).filter((n) => n.endsWith(".tmp"));
      assert.deepEqual(leftovers, [], "no temp files left behind");
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  // The farm hands out work as soon as its first tab is ready; on a fast machine one tab once finished the
  // 20 frames above before the other joined. Here every job waits until two sessions have asked for work.
  it("gives work to both of its 2 tabs", async () => {
    await withTempDir("tabfarm-it-", async (out) => {
      const handler = path.join(REPO, "tests/fixtures/meetBothTabsHandler.ts");
      const { code, output } = await runFarmCli(["--sessions", "2", "--demo", "8", "--frames-per-job", "2", "--handler", handler, "--out", out, "--no-progress"]);
      assert.equal(code, 0, output);
      assert.match(output, /jobs: 4 done, 0 failed of 4/);
      const frames = readFrames(out);
      assert.equal(frames.length, 8);
      const sessions = new Set(frames.map((f) => f.session));
      assert.equal(sessions.size, 2, `both sessions rendered (got ${[...sessions]})`);
      for (const f of frames) assert.ok(decodePng(path.join(out, f.file)).colours > 20, `${f.file} looks blank`);
    });
  });
});

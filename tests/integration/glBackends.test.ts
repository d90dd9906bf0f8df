// Every software backend this machine has renders the same demo frames, within a tolerance: the backends
// rasterize and filter differently (edges, shading rounding), so not bit for bit; goldens stay on one named
// backend (swiftshader). llvmpipe is tested where `--gl auto` finds it (CI installs Debian's chromium and Mesa).
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import pixelmatch from "pixelmatch";
import { PNG } from "pngjs";
import { chooseGl } from "../../harness/chooseGl.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { whyBundledUnavailable } from "../../harness/bundledBrowser.js";
import type { ConcreteGlBackend } from "../../harness/chromiumFlags.js";
import { readFrames, runFarmCli, withTempDir } from "./cli.js";

const RENDERER: Record<"swiftshader" | "llvmpipe", RegExp> = { swiftshader: /SwiftShader/, llvmpipe: /llvmpipe/ };
const SIZE = ["--width", "320", "--height", "240"];
/** At most this share of pixels may differ by more than pixelmatch's threshold between two backends. */
const MAX_DIFFERENT = 0.02;

type Frames = Map<string, PNG>;

async function render(gl: string, out: string): Promise<{ output: string; frames: Frames }> {
  const { code, output } = await runFarmCli(["--gl", gl, "--demo", "6", "--frames-per-job", "3", "--sessions", "2", ...SIZE, "--no-progress", "--out", out]);
  assert.equal(code, 0, output);
  const frames: Frames = new Map();
  for (const record of readFrames(out)) frames.set(`${record.job}/${record.frame}`, PNG.sync.read(fs.readFileSync(path.join(out, record.file))));
  assert.equal(frames.size, 6, output);
  return { output, frames };
}

describe("software GL backends", { timeout: 600_000 }, () => {
  let backends: ("swiftshader" | "llvmpipe")[] = ["swiftshader"];
  let autoPick: ConcreteGlBackend = "swiftshader";
  before(async () => {
    autoPick = (await chooseGl(findBrowser().path, "auto")).gl;
    if (autoPick === "llvmpipe") backends = ["swiftshader", "llvmpipe"];
  });

  it("each available backend renders the demo on the renderer it names, and they agree within the tolerance", async (t) => {
    t.diagnostic(`backends here: ${backends.join(", ")}`);
    await withTempDir("tabfarm-gl-", async (dir) => {
      const rendered = new Map<string, Frames>();
      for (const gl of backends) {
        const { output, frames } = await render(gl, path.join(dir, gl));
        assert.match(output, new RegExp(`GL: ${gl} \\(--gl ${gl}\\)`), output);
        assert.match(output, new RegExp(`WebGL renderer of the first tab: .*${RENDERER[gl].source}`), output);
        assert.doesNotMatch(output, /warning: --gl/, output);
        rendered.set(gl, frames);
      }
      const base = rendered.get("swiftshader")!;
      for (const [gl, frames] of rendered) {
        if (gl === "swiftshader") continue;
        for (const [id, png] of frames) {
          const other = base.get(id)!;
          assert.deepEqual([png.width, png.height], [other.width, other.height]);
          const differing = pixelmatch(png.data, other.data, undefined, png.width, png.height, { threshold: 0.1 });
          const share = differing / (png.width * png.height);
          t.diagnostic(`${gl} vs swiftshader, frame ${id}: ${(share * 100).toFixed(2)} % of pixels differ`);
          assert.ok(share <= MAX_DIFFERENT, `${gl} vs swiftshader, frame ${id}: ${(share * 100).toFixed(2)} % of pixels differ (at most ${MAX_DIFFERENT * 100} %)`);
        }
      }
    });
  });

  it("the default (--gl auto) says what it chose and why, and the tabs render on it", async () => {
    await withTempDir("tabfarm-gl-auto-", async (dir) => {
      const { code, output } = await runFarmCli(["--demo", "2", ...SIZE, "--no-progress", "--out", dir]);
      assert.equal(code, 0, output);
      assert.match(output, new RegExp(`GL: ${autoPick} \\(auto: `), output);
      if (autoPick === "swiftshader" || autoPick === "llvmpipe") assert.match(output, new RegExp(`WebGL renderer of the first tab: .*${RENDERER[autoPick].source}`), output);
    });
  });

  it("--gl llvmpipe on a browser that cannot reach Mesa (the bundled Chromium) still renders, with a warning naming the fix", { skip: whyBundledUnavailable() && `the bundled Chromium cannot run here: ${whyBundledUnavailable()}` }, async () => {
    await withTempDir("tabfarm-gl-bundled-", async (dir) => {
      const { code, output } = await runFarmCli(["--gl", "llvmpipe", "--browser", "bundled", "--demo", "2", ...SIZE, "--no-progress", "--out", dir]);
      assert.equal(code, 0, output);
      assert.match(output, /warning: --gl llvmpipe asked for Mesa's llvmpipe, but the tabs got another renderer \(apt-get install -y chromium/, output);
    });
  });
});

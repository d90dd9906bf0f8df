// Chaos, small: the real CLI renders 40 demo frames while tabs (renderer processes) and the whole farm
// (process group) are SIGKILLed; after restarts with the same --out, the dataset holds every
// (job, frame) exactly once, each a decodable PNG of the requested size. See bench/chaos.ts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { benchChaos, descendants } from "../../bench/chaos.js";
import { Farm } from "../../server/session/Farm.js";
import { TabPool } from "../../harness/TabPool.js";
import { buildClient } from "../../harness/buildClient.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { runFarmCli } from "./cli.js";
import { writeManifest } from "../../server/dataset/openDataset.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


describe("chaos", () => {
  it("survives 2 tab kills and 1 farm restart with a complete, duplicate-free, decodable dataset", { timeout: 120_000 }, async (t) => {
    const lines: string[] = [];
    const f = await benchChaos({
      frames: 40, kills: 2, restarts: 1, sessions: 3, seed: 7, baseline: false, print: false,
      runTimeoutMs: 90_000, stallMs: 30_000, maxGapMs: 500, log: (l) => lines.push(l),
    });
    const why = `${JSON.stringify(f)}\n${lines.join("\n")}`;
    t.diagnostic(JSON.stringify(f));
    assert.equal(f.frames_expected, 40, why);
    assert.equal(f.frames_written, f.frames_expected, why);
    assert.equal(f.frames_duplicated, 0, why);
    assert.equal(f.frames_corrupt, 0, why);
    assert.equal(f.frames_unexpected, 0, why);
    assert.equal(f.bad_lines, 0, why);
    assert.equal(f.tmp_files_left, 0, why);
    // The chaos did happen (the plan fires while the run is still going, so nothing is skipped).
    assert.equal(f.restarts, 1, why);
    assert.ok(f.tab_kills >= 1, why);
    assert.equal(f.tab_kills + f.restarts + f.events_skipped, 3, why);
  });

  // Regression tests for bugs found here and fixed.
  it(
    "a replacement tab whose renderer dies while it is being created is replaced again",
    { timeout: 120_000 },
    async (t) => {
      const logs: string[] = [];
      const live = () => farm.sessions.size;
      const farm = new Farm({ clientDir: await buildClient(), log: (l) => logs.push(l) });
      await farm.listen();
      const pool = new TabPool({ executablePath: findBrowser().path, gl: "swiftshader", url: farm.url, proveLaunched: (worker) => farm.launchedTabProof(worker), tabs: 1, log: (l) => logs.push(`pool: ${l}`) });
      try {
        await pool.start();
        for (let i = 0; i < 600 && live() === 0; i++) await sleep(50);
        assert.equal(live(), 1, "the tab joined");
        // Renderers of this process's own Chromium (not WebUI ones), via /proc.
        const cmd = (pid: number) => { try { return fs.readFileSync(`/proc/${pid}/cmdline`, "latin1"); } catch { return ""; } };
        const renderers = () => descendants(process.pid).filter((p) => /--type=renderer/.test(cmd(p.pid)) && !/top-chrome-webui/.test(cmd(p.pid)));
        const known = new Set(renderers().map((p) => p.pid));
        const tab = renderers().sort((a, b) => b.ticks - a.ticks)[0];
        assert.ok(tab, "found the tab's renderer");
        process.kill(tab.pid, "SIGKILL");
        // Kill every new renderer the moment it appears, from the first one (the replacement's, while newPage()
        // is still pending; bounded wait for it) until 1.5 s after it. After that, a pool that replaces crashed
        // tabs recovers.
        let more = 0;
        let until = Date.now() + 15_000;
        for (; Date.now() < until; await sleep(10)) {
          for (const p of renderers()) {
            if (known.has(p.pid)) continue;
            known.add(p.pid);
            process.kill(p.pid, "SIGKILL");
            if (more++ === 0) until = Date.now() + 1500;
          }
        }
        assert.ok(more >= 1, "a replacement renderer appeared and was killed");
        // A pool that replaces crashed tabs must have a live session again (within 30 s).
        for (let i = 0; i < 600 && live() === 0; i++) await sleep(50);
        t.diagnostic(logs.join(" | "));
        assert.equal(live(), 1, `a replacement tab joined again:\n${logs.join("\n")}`);
      } finally {
        await pool.close();
        await farm.close();
      }
    },
  );

  it(
    "temp files of a farm SIGKILLed mid-write are swept on resume",
    { timeout: 90_000 },
    async () => {
      const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-staletmp-"));
      try {
        // What DatasetWriter.writeFile leaves when the process dies between writeFile(temp) and rename.
        writeManifest(out);
        fs.mkdirSync(path.join(out, "images", "demo-0000"), { recursive: true });
        const stale = path.join(out, "images", "demo-0000", ".000001.png.0123456789ab.tmp");
        fs.writeFileSync(stale, Buffer.alloc(100));
        const old = new Date(Date.now() - 3600_000);
        fs.utimesSync(stale, old, old);
        const { code, output } = await runFarmCli(["--sessions", "1", "--demo", "5", "--frames-per-job", "5", "--width", "32", "--height", "24", "--out", out, "--no-progress"]);
        assert.equal(code, 0, output);
        const leftovers = fs.readdirSync(out, { recursive: true }).map(String).filter((n) => n.endsWith(".tmp"));
        assert.deepEqual(leftovers, [], "a finished dataset holds no temp files");
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    },
  );
});

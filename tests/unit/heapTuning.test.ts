// V8's heap growing factor that startRun sets for a farm's process (server/heapTuning.ts); what it buys
// is measured by the bench (README "Speed"), not here. Each case runs in a fresh node process.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { FARM_HEAP_GROWING_PERCENT } from "../../server/heapTuning.js";

const module = JSON.stringify(new URL("../../server/heapTuning.ts", import.meta.url).href);

/** tuneHeapForFarm()'s answer in a node started with `nodeFlags`. */
function tunedIn(nodeFlags: string[]): unknown {
  const script = `import { tuneHeapForFarm } from ${module}; console.log(JSON.stringify(tuneHeapForFarm()));`;
  return JSON.parse(execFileSync(process.execPath, [...nodeFlags, "--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8" }));
}

describe("tuneHeapForFarm", () => {
  it(`sets V8's heap growing factor to 1 + ${FARM_HEAP_GROWING_PERCENT} %`, () => {
    assert.deepEqual(tunedIn([]), { percent: FARM_HEAP_GROWING_PERCENT, from: "tabfarm" });
  });

  it("keeps a growing percent node was started with, in either spelling", () => {
    assert.deepEqual(tunedIn(["--heap-growing-percent=50"]), { percent: 50, from: "node's command line" });
    assert.deepEqual(tunedIn(["--heap_growing_percent=30"]), { percent: 30, from: "node's command line" });
  });

  it("startRun sets it", async () => {
    const script = [
      `import fs from "node:fs"; import os from "node:os"; import path from "node:path";`,
      `import v8 from "node:v8";`,
      `const calls = []; const set = v8.setFlagsFromString; v8.setFlagsFromString = (f) => (calls.push(f), set(f));`,
      `const { startRun } = await import(${JSON.stringify(new URL("../../server/runFarm.ts", import.meta.url).href)});`,
      `const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-heap-"));`,
      `const clientDir = path.join(out, "client"); fs.mkdirSync(clientDir); fs.writeFileSync(path.join(clientDir, "index.html"), "<!doctype html>");`,
      `const run = await startRun({ out: path.join(out, "ds"), clientDir, jobs: [], port: 0, log: () => {} });`,
      `await run.close(); fs.rmSync(out, { recursive: true, force: true });`,
      `console.log(JSON.stringify(calls));`,
    ].join("\n");
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    assert.deepEqual(JSON.parse(out.trim().split("\n").at(-1)!), [`--heap-growing-percent=${FARM_HEAP_GROWING_PERCENT}`]);
  });
});

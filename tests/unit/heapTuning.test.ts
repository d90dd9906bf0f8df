// V8's heap growing factor that startRun sets for a farm's process (server/heapTuning.ts); what it buys
// is measured by the bench (README "Speed"), not here. Each case runs in a fresh node process.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { FARM_HEAP_GROWING_PERCENT } from "../../server/heapTuning.js";

const module = JSON.stringify(new URL("../../server/heapTuning.ts", import.meta.url).href);
const FLAG = `--heap-growing-percent=${FARM_HEAP_GROWING_PERCENT}`;

/** tuneHeapForFarm()'s answer in a node started with `nodeFlags`. */
function tunedIn(nodeFlags: string[]): unknown {
  const script = `import { tuneHeapForFarm } from ${module}; console.log(JSON.stringify(tuneHeapForFarm()));`;
  return JSON.parse(execFileSync(process.execPath, [...nodeFlags, "--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8" }));
}

describe("tuneHeapForFarm", () => {
  it("this node's V8 has the flag (a name V8 does not know is only warned about, so this guards a node upgrade)", () => {
    const options = execFileSync(process.execPath, ["--v8-options"], { encoding: "utf8", maxBuffer: 16 * 2 ** 20 });
    assert.match(options, /^\s*--heap-growing-percent\b/m);
  });

  it(`sets V8's heap growing factor to 1 + ${FARM_HEAP_GROWING_PERCENT} %`, () => {
    assert.deepEqual(tunedIn([]), { set: true, flag: FLAG });
  });

  it("keeps any growing percent node was started with, in every spelling V8 accepts, 0 (V8 chooses) included", () => {
    for (const given of ["--heap-growing-percent=50", "--heap_growing_percent=30", "-heap-growing-percent=10", "--heap-growing-percent=+40", "--heap-growing-percent=0"]) {
      assert.deepEqual(tunedIn([given]), { set: false, flag: given }, given);
    }
  });

  it("startRun sets it", () => {
    const script = [
      `import fs from "node:fs"; import os from "node:os"; import path from "node:path";`,
      `import v8 from "node:v8";`,
      `const calls = []; const set = v8.setFlagsFromString; v8.setFlagsFromString = (f) => (calls.push(f), set(f));`,
      `const { startRun } = await import(${JSON.stringify(new URL("../../server/runFarm.ts", import.meta.url).href)});`,
      `const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-heap-"));`,
      `try {`,
      `  const clientDir = path.join(out, "client"); fs.mkdirSync(clientDir); fs.writeFileSync(path.join(clientDir, "index.html"), "<!doctype html>");`,
      `  const run = await startRun({ out: path.join(out, "ds"), clientDir, jobs: [], port: 0, log: () => {} });`,
      `  await run.close();`,
      `} finally { fs.rmSync(out, { recursive: true, force: true }); }`,
      `console.log(JSON.stringify(calls));`,
    ].join("\n");
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    assert.deepEqual(JSON.parse(out.trim().split("\n").at(-1)!), [FLAG]);
  });
});

// V8's heap growing factor for a farm's process, set by startRun.
//
// After each full garbage collection V8 lets the old generation grow by a factor it derives from how fast
// it marks against how fast the program allocates. In a farm both cores are busy rendering, so V8's
// marking threads measure slow, and the factor fell to ≈ 1.2: with a 60 MB heap, V8 marked the whole of it
// again every 0.2–1 s for the whole run (78 full collections in one light bench round; 1–4 ms of CPU per
// light frame and up to 10 per heavy one, in V8's marking threads; in some processes and not others,
// depending on how the first collections went). A fixed factor of 2 (V8's --heap-growing-percent=100)
// leaves room for a heap's worth of garbage between full collections: 4–5 in the same round, the
// server's CPU per frame halved (npm run bench, README "Speed"). The cost is memory: the heap may reach
// twice its live size before it is collected (60 → 120 MB here).
//
// The flag is read at each collection, so it can be set after start. A process whose node was started
// with its own --heap-growing-percent keeps it.
import v8 from "node:v8";

export const FARM_HEAP_GROWING_PERCENT = 100;

/** Sets V8's heap growing factor for this process (each call sets the same value); returns the percent in effect and where it came from. */
export function tuneHeapForFarm(execArgv: readonly string[] = process.execArgv): { percent: number; from: "tabfarm" | "node's command line" } {
  const given = execArgv.map((arg) => /^--heap[-_]growing[-_]percent=(\d+)$/.exec(arg)).find(Boolean);
  if (given) return { percent: Number(given[1]), from: "node's command line" };
  v8.setFlagsFromString(`--heap-growing-percent=${FARM_HEAP_GROWING_PERCENT}`);
  return { percent: FARM_HEAP_GROWING_PERCENT, from: "tabfarm" };
}

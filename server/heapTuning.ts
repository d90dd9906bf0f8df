// V8's heap growing factor for a farm's process, set by startRun.
//
// After each full garbage collection V8 lets the old generation grow by a factor it derives from how fast
// it marks against how fast the program allocates. In a farm both cores are busy rendering, so V8's
// marking threads measure slow, and the factor fell to ≈ 1.2: with a 60 MB heap, V8 marked the whole of it
// again every 0.2–1 s for the whole run (78 full collections in one light bench round; 1–4 ms of CPU per
// light frame and up to 10 per heavy one, in V8's marking threads; in some processes and not others,
// depending on how the first collections went). A fixed factor of 2 (V8's --heap-growing-percent=100)
// leaves room for a heap's worth of garbage between full collections: 4–5 in the same round, the
// server's CPU per frame halved in the bench's process (npm run bench, README "Speed"). The cost: more
// garbage held between collections than the collapsed factor allowed; on a quiet machine V8's own factor
// goes up to 4, so there a farm collects more often than V8 would (a server whose cores are idle pays CPU).
//
// The flag is read at each full collection, so it can be set after start (it applies from the next one). A
// process whose node was started with its own --heap-growing-percent keeps it, whatever its value
// (0 gives the choice back to V8). It is process-wide and stays set after the run closes.
import v8 from "node:v8";

export const FARM_HEAP_GROWING_PERCENT = 100;

/** A --heap-growing-percent given on node's command line, in any spelling V8 accepts (-/--, - or _). */
const GIVEN = /^--?heap[-_]growing[-_]percent(=|$)/;

/**
 * Sets V8's heap growing factor for this process (each call sets the same value), unless node was started
 * with one; returns what it did.
 */
export function tuneHeapForFarm(execArgv: readonly string[] = process.execArgv): { set: boolean; flag: string } {
  const given = execArgv.find((arg) => GIVEN.test(arg));
  if (given) return { set: false, flag: given };
  const flag = `--heap-growing-percent=${FARM_HEAP_GROWING_PERCENT}`;
  v8.setFlagsFromString(flag);
  return { set: true, flag };
}

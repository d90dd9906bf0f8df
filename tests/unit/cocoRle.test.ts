// COCO compressed RLE (server/export/cocoRle.ts) against outputs derived by hand from pycocotools' maskApi.c
// (rleEncode, rleToString, rleFrString), and by decoding back.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { cocoStringToRuns, instanceRuns, maskRuns, runsToCocoString } from "../../server/export/cocoRle.js";

/** A mask from rows of "0"/"1" characters (top row first). */
function rows(...lines: string[]): { width: number; height: number; on: boolean[] } {
  return { width: lines[0]!.length, height: lines.length, on: lines.join("").split("").map((c) => c === "1") };
}
const runsOf = (m: ReturnType<typeof rows>) => maskRuns(m.width, m.height, (i) => m.on[i]!);

describe("COCO RLE", () => {
  it("runs go down the columns, start with a (possibly empty) run of 0s, and end with the last run", () => {
    assert.deepEqual(runsOf(rows("00", "00")), [4]);
    assert.deepEqual(runsOf(rows("11", "11")), [0, 4]);
    assert.deepEqual(runsOf(rows("1")), [0, 1]);
    // Columns: (1,0), (1,1), (0,0): 0 zeros, 3 ones, 3 zeros.
    assert.deepEqual(runsOf(rows("110", "010")), [0, 1, 1, 2, 2]);
    // Column-major, not row-major: rows "10" / "10" are one run of 2 ones, then 2 zeros.
    assert.deepEqual(runsOf(rows("10", "10")), [0, 2, 2]);
    assert.deepEqual(runsOf(rows("01", "01")), [2, 2]);
  });

  it("strings as pycocotools' rleToString writes them (worked by hand from maskApi.c)", () => {
    assert.equal(runsToCocoString([4]), "4");
    assert.equal(runsToCocoString([0, 4]), "04");
    assert.equal(runsToCocoString([0, 1]), "01");
    // The fourth count on is written as the difference from the count two before: 4 − 2 = 2.
    assert.equal(runsToCocoString([1, 2, 3, 4]), "1232");
    // The third is not (pycocotools: i > 2): 3 stays 3, though 3 − 1 = 2.
    assert.equal(runsToCocoString([1, 5, 3]), "153");
    // 16 needs a second group: 16 = 0b10000 → group 16 has the sign bit, so "more": (16|32)+48 = '`', then 0 → '0'.
    assert.equal(runsToCocoString([16]), "`0");
    // 20 − 1 = 19: (19|32)+48 = 'c', then '0'; 1 − 1 = 0; then 1 − 20 = −19: low 5 bits 13 → (13|32)+48 = ']',
    // then −1 → 31+48 = 'O' (its sign bit set, so no more groups).
    assert.equal(runsToCocoString([1, 1, 1, 20, 1, 1]), "111c00]O");
    // 15 fits one group (no sign bit): '?'; 32 = 0b1_00000 → 0 with more (0|32)+48 = 'P', then 1 → '1'.
    assert.equal(runsToCocoString([15, 32]), "?P1");
    // A negative difference of −1 is the single group 31: 'O'.
    assert.equal(runsToCocoString([3, 2, 1, 1]), "321O");
  });

  it("decodes back every string it writes, including large and negative differences", () => {
    const cases = [[4], [0, 4], [1, 2, 3, 4], [1, 5, 3], [16], [1, 1, 1, 20, 1, 1], [15, 32], [3, 2, 1, 1],
      [0, 268_435_456, 7], [100_000, 1, 1, 99_999, 3, 0, 0, 1]];
    for (const counts of cases) assert.deepEqual(cocoStringToRuns(runsToCocoString(counts)), counts, JSON.stringify(counts));
    // Random runs, as large as a 16384 × 16384 image's.
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let t = 0; t < 200; t++) {
      const counts = Array.from({ length: 1 + (next() % 40) }, () => next() % (t % 2 ? 40 : 2 ** 28));
      assert.deepEqual(cocoStringToRuns(runsToCocoString(counts)), counts);
    }
  });

  it("refuses a string with a character outside the alphabet or cut inside a count", () => {
    assert.throws(() => cocoStringToRuns("4 "), /" " at character 1, outside its alphabet/);
    assert.throws(() => cocoStringToRuns("P"), /ends inside a count at character 1/);
  });

  it("instanceRuns gives, in one pass, each id's runs as maskRuns gives them for mask == id", () => {
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let t = 0; t < 100; t++) {
      const width = 1 + (next() % 9);
      const height = 1 + (next() % 9);
      const mask = Uint16Array.from({ length: width * height }, () => (next() >> 8) % 4);
      const ids = [1, 2, 3, 9]; // 9 is in no pixel: one run of 0s
      const runs = instanceRuns(mask, width, height, ids);
      for (const id of ids) assert.deepEqual(runs.get(id), maskRuns(width, height, (i) => mask[i] === id), `${width}×${height} id ${id}`);
    }
    assert.deepEqual(instanceRuns(Uint16Array.from([5, 5, 5, 5]), 2, 2, [5]).get(5), [0, 4]);
  });
});

// COCO's compressed run-length encoding of instance masks, as pycocotools writes it (maskApi.c: rleEncode,
// rleToString, rleFrString). No maintained npm package does this (checked: coco-rle, rle-coco, pycocotools,
// cocoapi, mask-rle do not exist on npm), and it is short.
//
// Runs go down the columns (column-major, "Fortran order"): the first run counts 0s (it may be 0), then
// runs alternate. The string form writes each count — from the fourth on, as the difference from the count
// two before — in 5-bit groups, low first, each as a character 48 + group (+32 when more groups follow;
// bit 16 of the last group is the sign).

/**
 * Column-major runs of a mask of `height` rows and `width` columns where `isOn(index)` (row-major index) holds.
 * Used only by the tests, as the plain reference instanceRuns is checked against (export uses instanceRuns).
 */
export function maskRuns(width: number, height: number, isOn: (rowMajorIndex: number) => boolean): number[] {
  const counts: number[] = [];
  let on = false;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      if (isOn(y * width + x) !== on) {
        counts.push(run);
        run = 0;
        on = !on;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/**
 * The runs of every id in `ids` in a mask of instance ids (row-major, `width` × `height`), in one pass over
 * the mask: id → the runs `maskRuns` gives for `mask == id`.
 */
export function instanceRuns(mask: Uint16Array, width: number, height: number, ids: Iterable<number>): Map<number, number[]> {
  // Per id: its runs so far, and the column-major span [start, end) of its current (last) run of pixels.
  const state = new Map<number, { counts: number[]; start: number; end: number }>();
  for (const id of ids) state.set(id, { counts: [], start: 0, end: 0 });
  const total = width * height;
  for (let x = 0, k = 0; x < width; x++) {
    for (let y = 0; y < height; y++, k++) {
      const s = state.get(mask[y * width + x]!);
      if (!s) continue;
      if (k === s.end && s.end > s.start) {
        s.end++;
        continue;
      }
      if (s.end > s.start) s.counts.push(s.end - s.start);
      s.counts.push(k - s.end);
      s.start = k;
      s.end = k + 1;
    }
  }
  const runs = new Map<number, number[]>();
  for (const [id, s] of state) {
    if (s.end > s.start) s.counts.push(s.end - s.start);
    if (total - s.end > 0 || s.counts.length === 0) s.counts.push(total - s.end);
    runs.set(id, s.counts);
  }
  return runs;
}

/** pycocotools' rleToString: the `counts` string of a compressed RLE. */
export function runsToCocoString(counts: readonly number[]): string {
  let text = "";
  for (let i = 0; i < counts.length; i++) {
    // pycocotools takes differences from the fourth count on (i > 2, not i >= 2): kept, or its readers disagree.
    let x = counts[i]! - (i > 2 ? counts[i - 2]! : 0);
    for (let more = true; more; ) {
      let c = x & 0x1f;
      x = Math.floor(x / 32); // an arithmetic shift that stays exact past 32 bits
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      text += String.fromCharCode(c + 48);
    }
  }
  return text;
}

/**
 * pycocotools' rleFrString: the runs of a compressed RLE's `counts` string. Throws on a character outside its alphabet.
 * Used only by the tests, to read back what runsToCocoString wrote (export writes COCO, never reads it).
 */
export function cocoStringToRuns(text: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < text.length) {
    let x = 0;
    let k = 0;
    for (let more = true; more; k++, p++) {
      if (p >= text.length) throw new Error(`COCO RLE string ends inside a count at character ${p}`);
      const c = text.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`COCO RLE string has ${JSON.stringify(text[p])} at character ${p}, outside its alphabet`);
      x += (c & 0x1f) * 32 ** k;
      more = (c & 0x20) !== 0;
      if (!more && c & 0x10) x -= 32 ** (k + 1); // sign-extend the last group
    }
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  return counts;
}

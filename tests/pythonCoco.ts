// Independent readers of what `export --coco` writes, for the tests: Python's json, and pycocotools' RLE
// encoder (rleEncode + rleToString) and decoder (rleFrString + rleDecode) rewritten with numpy from
// maskApi.c (pycocotools itself is not installed here), compared with the instance ids each mask was made from.
import { execFileSync } from "node:child_process";

/** Runs a Python 3 script with `input` as JSON on stdin; returns the JSON it prints. */
export function python(script: string, input: unknown): any {
  return JSON.parse(execFileSync("python3", ["-c", script], { input: JSON.stringify(input), encoding: "utf8", maxBuffer: 1 << 30 }));
}

/** One annotation's mask to check: `ids` is a raw little-endian uint16 file of the frame's instance ids, row-major. */
export interface RleCase {
  ids: string;
  width: number;
  height: number;
  /** The instance whose pixels (`ids == id`) the RLE should give. */
  id: number;
  /** The RLE string export wrote. */
  counts: string;
}

/**
 * For each case: the string pycocotools would write for `ids == id` (null past a megapixel: the encoder is
 * a slow Python loop) and whether decoding `counts` gives back exactly those pixels.
 */
export function pythonRle(cases: RleCase[]): { expected: string | null; decodesRight: boolean }[] {
  return python(`
import json, sys
import numpy as np
def encode(m):
    flat = m.flatten(order="F").astype(np.uint8)
    cnts, p, c = [], 0, 0
    for v in flat:
        if v != p: cnts.append(c); c = 0; p = v
        c += 1
    cnts.append(c)
    s = []
    for i, x in enumerate(cnts):
        if i > 2: x -= cnts[i - 2]
        more = 1
        while more:
            c = x & 0x1f; x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more: c |= 0x20
            s.append(chr(c + 48))
    return "".join(s)
def decode(s, h, w):
    cnts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, 1
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1f) << (5 * k)
            more = c & 0x20
            p += 1; k += 1
            if not more and (c & 0x10): x |= -1 << (5 * k)
        if len(cnts) > 2: x += cnts[-2]
        cnts.append(x)
    flat = np.zeros(h * w, dtype=bool)
    at, value = 0, False
    for n in cnts:
        if n < 0: return None
        flat[at:at + n] = value
        at += n; value = not value
    if at != h * w: return None
    return flat.reshape((h, w), order="F")
out = []
cache = {}
for c in json.load(sys.stdin):
    if c["ids"] not in cache: cache[c["ids"]] = np.fromfile(c["ids"], dtype="<u2").reshape((c["height"], c["width"]))
    m = cache[c["ids"]] == c["id"]
    d = decode(c["counts"], c["height"], c["width"])
    out.append({"expected": encode(m) if m.size <= 1 << 20 else None, "decodesRight": d is not None and bool(np.array_equal(d, m))})
print(json.dumps(out))
`, cases);
}

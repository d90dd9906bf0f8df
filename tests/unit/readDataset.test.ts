// The one reader of frames.jsonl (server/dataset/readDataset.ts), on real files: lines as the writer
// appends them, torn and unterminated last lines, blank and over-long lines, lines that are not records,
// a link or a folder at frames.jsonl, and which files a record names (layers, or file/depth_file).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { DatasetWriter } from "../../server/dataset/DatasetWriter.js";
import {
  countFrameLines, FRAMES_INDEX, frameRecordProblems, readFrameLines, readFrameRecords, recordFiles, type FrameLine,
} from "../../server/dataset/readDataset.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";

let base: string;
let count = 0;
before(() => void (base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-read-test-"))));
after(() => fs.rmSync(base, { recursive: true, force: true }));

function fresh(index?: string | Buffer): string {
  const root = path.join(base, `ds${++count}`);
  fs.mkdirSync(root);
  if (index !== undefined) fs.writeFileSync(path.join(root, FRAMES_INDEX), index);
  return root;
}

function record(job: string, frame: number, extra: Record<string, unknown> = {}): FrameRecord {
  return {
    job, frame, file: `images/${job}/${String(frame).padStart(6, "0")}.png`, width: 4, height: 3, format: "png",
    K: [[1, 0, 2], [0, 1, 1.5], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    params: {}, session: "s1", render_ms: 1, encode_ms: 1, attempt: 1, ...extra,
  } as FrameRecord;
}

async function all(root: string, options?: { maxLineBytes?: number }): Promise<FrameLine[]> {
  const lines: FrameLine[] = [];
  for await (const line of readFrameLines(root, options)) lines.push(line);
  return lines;
}
const summary = (lines: FrameLine[]) => lines.map((l) => (l.record ? `${l.line}: ${l.record.job}/${l.record.frame}${l.unterminated ? " (unterminated)" : ""}` : `${l.line}: ${l.error}`));

describe("readFrameLines", () => {
  it("yields the writer's lines as records, numbered from 1, and nothing when there is no index", async () => {
    const root = fresh();
    assert.deepEqual(await all(root), []);
    const writer = new DatasetWriter(root);
    await writer.appendRecords([record("a", 0), record("a", 1)]);
    await writer.appendRecords([record("b", 0)]);
    const lines = await all(root);
    assert.deepEqual(summary(lines), ["1: a/0", "2: a/1", "3: b/0"]);
    assert.deepEqual(lines[2]!.record, record("b", 0));
    assert.equal(await countFrameLines(root), 3);
    assert.deepEqual(readFrameRecords(root), [record("a", 0), record("a", 1), record("b", 0)]);
  });

  it("reports a torn last line (not thrown), and keeps the lines before it", async () => {
    const root = fresh(JSON.stringify(record("a", 0)) + "\n" + JSON.stringify(record("a", 1)).slice(0, 30));
    assert.deepEqual(summary(await all(root)), ["1: a/0", "2: torn last line: 30 byte(s) without a newline at the end of the file that are not a whole JSON line (a write was cut off)"]);
    assert.throws(() => readFrameRecords(root), /frames\.jsonl:2: torn last line/);
  });

  it("marks a whole last line without its newline as unterminated", async () => {
    const root = fresh(JSON.stringify(record("a", 0)) + "\n" + JSON.stringify(record("a", 1)));
    assert.deepEqual(summary(await all(root)), ["1: a/0", "2: a/1 (unterminated)"]);
    assert.equal(readFrameRecords(root).length, 2);
  });

  it("skips blank lines (counting them), accepts CRLF, and names lines that are not records", async () => {
    const lines = [
      JSON.stringify(record("a", 0)), "", "   ", `${JSON.stringify(record("a", 1))}\r`, "{not json", "[1,2]", "null",
      '{"frame":0}', '{"job":"x","frame":-1}', '{"job":"x","frame":1.5}', '{"job":"","frame":0}',
    ];
    const root = fresh(lines.join("\n") + "\n");
    assert.deepEqual(summary(await all(root)), [
      "1: a/0",
      "4: a/1",
      `5: not JSON: ${(() => { try { JSON.parse("{not json"); } catch (e) { return (e as Error).message; } })()}`,
      "6: not a JSON object",
      "7: not a JSON object",
      '8: "job" must be a job id (a non-empty string), got nothing',
      '9: "frame" must be a whole number ≥ 0, got -1',
      '10: "frame" must be a whole number ≥ 0, got 1.5',
      '11: "job" must be a job id (a non-empty string), got ""',
    ]);
  });

  it("names invalid UTF-8; a last line cut inside a character is torn", async () => {
    const root = fresh(Buffer.concat([Buffer.from('{"job":"a","frame":0,"x":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]));
    assert.deepEqual(summary(await all(root)), ["1: not UTF-8 text"]);
    const cut = fresh(Buffer.concat([Buffer.from('{"job":"a","frame":0,"x":"'), Buffer.from("é").subarray(0, 1)]));
    assert.match(summary(await all(cut))[0]!, /^1: torn last line: 27 byte\(s\)/);
  });

  it("skips a line over the cap as it reads it, and goes on", async () => {
    const long = JSON.stringify(record("a", 1, { pad: "x".repeat(200_000) }));
    const root = fresh([JSON.stringify(record("a", 0)), long, JSON.stringify(record("a", 2))].join("\n") + "\n");
    assert.deepEqual(summary(await all(root, { maxLineBytes: 100_000 })), ["1: a/0", `2: longer than 100000 bytes (${long.length} bytes); not read`, "3: a/2"]);
  });

  it("refuses a link or a folder at frames.jsonl, naming it", async () => {
    const outside = fresh(JSON.stringify(record("secret", 0)) + "\n");
    const linked = fresh();
    fs.symlinkSync(path.join(outside, FRAMES_INDEX), path.join(linked, FRAMES_INDEX));
    await assert.rejects(all(linked), /frames\.jsonl is a symbolic link; tabfarm does not read the index through a link/);
    assert.throws(() => readFrameRecords(linked), /ELOOP/);
    const folder = fresh();
    fs.mkdirSync(path.join(folder, FRAMES_INDEX));
    await assert.rejects(all(folder), /frames\.jsonl is not a regular file/);
  });
});

describe("recordFiles", () => {
  it("names every file layer of `layers`, in declaration order", () => {
    const layers = { normal: "n.png", rgb: "r.png", mask: "m.png", depth32: "d.npy", depth: "d.png", class: "c.png" };
    assert.deepEqual(recordFiles(record("a", 0, { file: "r.png", layers, depth_file: "d.png" })).map((f) => `${f.layer}=${f.path}`), [
      "rgb=r.png", "depth=d.png", "depth32=d.npy", "mask=m.png", "class=c.png", "normal=n.png",
    ]);
  });

  it("falls back to file and depth_file for lines written before layers", () => {
    assert.deepEqual(recordFiles(record("a", 0)), [{ layer: "rgb", path: "images/a/000000.png" }]);
    assert.deepEqual(recordFiles(record("a", 0, { depth_file: "images/a/000000.depth.png" })), [
      { layer: "rgb", path: "images/a/000000.png" },
      { layer: "depth", path: "images/a/000000.depth.png" },
    ]);
  });

  it("ignores what is not a file layer with a string path (frameRecordProblems reports it)", () => {
    const odd = record("a", 0, { layers: { rgb: "images/a/000000.png", boxes: "b.png", unknown: "u.png", mask: 7, __proto__: { depth: "p.png" } } });
    assert.deepEqual(recordFiles(odd), [{ layer: "rgb", path: "images/a/000000.png" }]);
    assert.deepEqual(frameRecordProblems(odd), [
      '"layers" gives a file for boxes, which is metadata only',
      `"layers" names an unknown layer 'unknown' (known: rgb, depth, depth32, mask, class, normal, boxes)`,
      '"layers.mask" must be a file path, got 7',
      '"instances" is missing: a line with a mask or class file lists the instances it shows',
    ]);
  });
});

describe("frameRecordProblems", () => {
  it("names a wrong size, and then checks boxes without it", () => {
    const bad = record("a", 0, { width: 0, instances: [{ id: 1, key: "a", pixels: 100, bbox: [30, 0, 2, 1] }] });
    assert.deepEqual(frameRecordProblems(bad), ['"width" must be a whole number from 1 to 8192, got 0']);
  });

  it("accepts a line as the writer makes it, before and after layers", () => {
    assert.deepEqual(frameRecordProblems(record("a", 0)), []);
    const layered = record("a", 0, {
      layers: { rgb: "images/a/000000.png", depth: "images/a/000000.depth.png" }, depth_file: "images/a/000000.depth.png", depth_scale: 0.001,
      world_to_camera_opencv: { R: [[1, 0, 0], [0, -1, 0], [0, 0, -1]], t: [0, 0, 0] }, fov: 60, near: 0.1, far: 100,
      instances: [{ id: 1, key: "box", label: "crate", class: 1, pixels: 3, bbox: [0, 0, 2, 2] }],
    });
    assert.deepEqual(frameRecordProblems(layered), []);
  });

  it("names each missing or wrong field", () => {
    const bad = record("../x", 0, { format: "gif", K: [[1, 2]], session: 5, instances: [{ id: 2, key: "a", pixels: 1, bbox: [3, 0, 2, 1] }, { id: 2, key: "", pixels: 0, bbox: [] }] });
    delete (bad as Partial<FrameRecord>).cameraToWorld;
    assert.deepEqual(frameRecordProblems(bad), [
      '"job" is not a job id: it may hold only ASCII letters, digits and _ . - (found "/" U+002F)',
      '"format" must be png, jpeg, webp, got "gif"',
      '"K" must be a 3×3 matrix of numbers, got [[1,2]]',
      '"cameraToWorld" is missing (a 4×4 matrix of numbers)',
      '"session" must be a session id, got 5',
      '"instances[0]".bbox must be [x, y, w, h] inside the 4×3 image, got [3,0,2,1]',
      '"instances[1]".id 2 is listed twice',
      '"instances[1]".key must be the element\'s key, got ""',
      "\"instances[1]\".pixels must be a whole number from 1 to 12 (the image's pixels), got 0",
      '"instances[1]".bbox must be [x, y, w, h] inside the 4×3 image, got []',
    ]);
  });
});

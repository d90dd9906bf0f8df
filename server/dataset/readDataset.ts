// The one reader of a dataset's frames.jsonl: every part of tabfarm that reads the index (resume's
// compaction, `verify`, the tests, the benches) parses its lines here, so what a line is, what a torn
// line is and which files a line names are decided in one place.
//
// Lines are streamed in bounded memory (a line over MAX_FRAME_LINE_BYTES is skipped as it is read,
// never held), the index is opened without following a link (O_NOFOLLOW) and without waiting on a
// FIFO (O_NONBLOCK), and a bad line is reported by number, never thrown: a dataset with a torn last
// line (a write cut off by a crash) is still readable up to it.
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { FILE_LAYERS, LAYER_NAMES, LAYERS, MAX_ID, type LayerName } from "../../protocol/layers.js";
import { LIMITS } from "../../protocol/grab.js";
import { fileNameProblem } from "../../protocol/names.js";
import { readBoundedLines, type RawLine } from "../jobs/boundedLines.js";
import { FRAME_SEED_MAX, isFrameSeed } from "./seeds.js";
import type { FrameRecord } from "./FrameRecord.js";

export const FRAMES_INDEX = "frames.jsonl";

/**
 * Longest line read. A line grows with its `instances` (a few hundred bytes each with a 3D box):
 * 64 MiB holds tens of thousands of them, and a longer one is not a tabfarm line.
 */
export const MAX_FRAME_LINE_BYTES = 64 * 2 ** 20;

const READ_INDEX = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/** One line of frames.jsonl, numbered from 1 (blank lines are skipped, but counted). */
export interface FrameLine {
  line: number;
  /**
   * The line's object when it is one with a string `job` and a whole-number `frame` ≥ 0: the identity
   * compaction and duplicate checks need. Its other fields are as written; `frameRecordProblems`
   * checks them.
   */
  record?: FrameRecord;
  /** The line's text as written, without its newline (or "\r\n"): set with `record` (export copies it unchanged). */
  text?: string;
  /** Why the line is not a record: too long, not JSON (a torn last line says so), no job or frame. */
  error?: string;
  /** The file's last line, without a newline after it (a write cut off just before its "\n"). */
  unterminated?: boolean;
}

/** Where frames.jsonl of the dataset folder `root` is. */
export const framesIndexPath = (root: string) => path.join(root, FRAMES_INDEX);

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses one line (without its newline). `unterminated`: it is the last line of the file and no
 * newline follows it, so a parse failure is a torn write rather than a bad line.
 */
export function parseFrameLine(bytes: Uint8Array, line: number, unterminated = false): FrameLine {
  const at = unterminated ? { line, unterminated } : { line };
  let value: unknown;
  let fault: string | undefined;
  let text = "";
  try {
    text = utf8.decode(bytes);
    try {
      value = JSON.parse(text);
    } catch (err) {
      fault = `not JSON: ${(err as Error).message}`;
    }
  } catch {
    fault = "not UTF-8 text";
  }
  if (fault !== undefined) {
    // A write cut off mid-line (even mid-character) leaves exactly this: a last line without its newline.
    if (unterminated) {
      return { ...at, error: `torn last line: ${bytes.length} byte(s) without a newline at the end of the file that are not a whole JSON line (a write was cut off)` };
    }
    return { ...at, error: fault };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { ...at, error: "not a JSON object" };
  const { job, frame } = value as { job?: unknown; frame?: unknown };
  if (typeof job !== "string" || job === "") return { ...at, error: `"job" must be a job id (a non-empty string), got ${describe(job)}` };
  if (typeof frame !== "number" || !Number.isSafeInteger(frame) || frame < 0) {
    return { ...at, error: `"frame" must be a whole number ≥ 0, got ${describe(frame)}` };
  }
  return { ...at, record: value as FrameRecord, text };
}

/** Opens frames.jsonl for reading, or undefined when there is none; refuses a link, a folder or a FIFO by name. */
async function openIndex(root: string): Promise<fsp.FileHandle | undefined> {
  const file = framesIndexPath(root);
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, READ_INDEX);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ELOOP") throw new Error(`${file} is a symbolic link; tabfarm does not read the index through a link`);
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (!(await handle.stat()).isFile()) {
    await handle.close();
    throw new Error(`${file} is not a regular file`);
  }
  return handle;
}

/**
 * Yields every non-blank line of `<root>/frames.jsonl` in order (none when the file does not exist).
 * Bad lines are yielded with `error`, never thrown; the file itself being a link, a folder or a FIFO
 * (or unreadable) throws an Error naming it.
 */
export async function* readFrameLines(root: string, options: { maxLineBytes?: number } = {}): AsyncGenerator<FrameLine> {
  const maxLineBytes = options.maxLineBytes ?? MAX_FRAME_LINE_BYTES;
  const handle = await openIndex(root);
  if (!handle) return;
  try {
    // One line is held back: only at the end of the file is it known whether the last one had its newline.
    let held: RawLine | undefined;
    for await (const raw of readBoundedLines(handle, maxLineBytes)) {
      const parsed = held && parseRawLine(held, maxLineBytes, false);
      if (parsed) yield parsed;
      held = raw;
    }
    const parsed = held && parseRawLine(held, maxLineBytes, !(await endsWithNewline(handle)));
    if (parsed) yield parsed;
  } finally {
    await handle.close();
  }
}

/** A line as read, parsed; undefined for a blank one. */
function parseRawLine(raw: RawLine, maxLineBytes: number, last: boolean): FrameLine | undefined {
  if ("tooLong" in raw) return { line: raw.line, error: `longer than ${maxLineBytes} bytes (${raw.tooLong} bytes); not read` };
  if (isBlank(raw.bytes)) return undefined;
  return parseFrameLine(raw.bytes, raw.line, last);
}

const isBlank = (bytes: Uint8Array) => bytes.every((b) => b === 0x20 || b === 0x09 || b === 0x0d);

async function endsWithNewline(handle: fsp.FileHandle): Promise<boolean> {
  const { size } = await handle.stat();
  if (size === 0) return true;
  const last = Buffer.alloc(1);
  await handle.read(last, 0, 1, size - 1);
  return last[0] === 0x0a;
}

/**
 * The records of `<root>/frames.jsonl` (none when it does not exist), read at once: for tests and small
 * tools. Throws an Error naming the file and line at the first line that is not a record.
 */
export function readFrameRecords(root: string): FrameRecord[] {
  const file = framesIndexPath(root);
  let fd: number;
  try {
    fd = fs.openSync(file, READ_INDEX);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  let bytes: Buffer;
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error(`${file} is not a regular file`);
    bytes = fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const records: FrameRecord[] = [];
  let start = 0;
  for (let line = 1; start < bytes.length; line++) {
    const newline = bytes.indexOf(0x0a, start);
    const end = newline === -1 ? bytes.length : newline;
    let text = bytes.subarray(start, end);
    if (text.at(-1) === 0x0d) text = text.subarray(0, -1);
    start = end + 1;
    if (isBlank(text)) continue;
    const parsed = text.length > MAX_FRAME_LINE_BYTES
      ? { line, error: `longer than ${MAX_FRAME_LINE_BYTES} bytes` }
      : parseFrameLine(text, line, newline === -1);
    if (!parsed.record) throw new Error(`${file}:${line}: ${parsed.error}`);
    records.push(parsed.record);
  }
  return records;
}

/**
 * How many lines frames.jsonl holds now, counted without parsing them (for progress while a farm writes:
 * a line is appended whole, so a line with its newline is a frame). 0 when there is no index yet.
 */
export async function countFrameLines(root: string): Promise<number> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await openIndex(root);
  } catch {
    return 0;
  }
  if (!handle) return 0;
  try {
    let count = 0;
    const chunk = Buffer.allocUnsafe(256 * 1024);
    for (let n; (n = (await handle.read(chunk, 0, chunk.length, null)).bytesRead) > 0; ) {
      for (let at = chunk.indexOf(0x0a); at !== -1 && at < n; at = chunk.indexOf(0x0a, at + 1)) count++;
    }
    return count;
  } finally {
    await handle.close();
  }
}

/** A file a frame's line names: which layer, and its path relative to the dataset folder. */
export interface RecordFile {
  layer: LayerName;
  path: string;
}

/**
 * The files a record names: every entry of `layers` that is a file layer with a string path, then,
 * for lines written before layers existed (or without those entries), `file` as rgb and `depth_file`
 * as depth. Nothing here is checked for safety: `verify` does that before touching a path.
 */
export function recordFiles(record: FrameRecord): RecordFile[] {
  const files: RecordFile[] = [];
  const layers = record.layers;
  if (typeof layers === "object" && layers !== null && !Array.isArray(layers)) {
    for (const layer of FILE_LAYERS) {
      const file = (layers as Record<string, unknown>)[layer];
      if (Object.hasOwn(layers, layer) && typeof file === "string") files.push({ layer, path: file });
    }
  }
  const named = (layer: LayerName) => files.some((f) => f.layer === layer);
  if (!named("rgb") && typeof record.file === "string") files.push({ layer: "rgb", path: record.file });
  if (!named("depth") && typeof record.depth_file === "string") files.push({ layer: "depth", path: record.depth_file });
  return files;
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

const FORMATS = ["png", "jpeg", "webp"];
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);
const isWhole = (value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max;
const isMatrix = (value: unknown, rows: number, columns: number) =>
  Array.isArray(value) && value.length === rows &&
  value.every((row) => Array.isArray(row) && row.length === columns && row.every((n) => typeof n === "number" && Number.isFinite(n)));
const isVector = (value: unknown, length: number) => isMatrix([value], 1, length);

/**
 * What is wrong with a record's fields (none: an empty list): the fields every tabfarm line has had
 * (job, frame, file, width, height, format, K, cameraToWorld, params, session, render_ms, encode_ms,
 * attempt), and, when present, those layers added (layers, depth_file/depth_scale, instances, the
 * OpenCV pose, fov/near/far) and seeds added (seed, randomized). Each problem names the field.
 */
export function frameRecordProblems(record: FrameRecord): string[] {
  const problems: string[] = [];
  const field = (name: string, ok: boolean, want: string) => {
    if (!ok) problems.push(`"${name}" ${Object.hasOwn(record, name) ? `must be ${want}, got ${describe(record[name])}` : `is missing (${want})`}`);
  };
  const jobProblem = fileNameProblem(record.job);
  if (jobProblem) problems.push(`"job" is not a job id: it ${jobProblem}`);
  field("file", typeof record.file === "string" && record.file !== "", "the rgb image's path");
  field("width", isWhole(record.width, 1, LIMITS.maxImageSide), `a whole number from 1 to ${LIMITS.maxImageSide}`);
  field("height", isWhole(record.height, 1, LIMITS.maxImageSide), `a whole number from 1 to ${LIMITS.maxImageSide}`);
  field("format", FORMATS.includes(record.format), FORMATS.join(", "));
  field("K", isMatrix(record.K, 3, 3), "a 3×3 matrix of numbers");
  field("cameraToWorld", isMatrix(record.cameraToWorld, 4, 4), "a 4×4 matrix of numbers");
  field("params", isObject(record.params), "an object");
  field("session", typeof record.session === "string", "a session id");
  field("render_ms", typeof record.render_ms === "number" && record.render_ms >= 0, "a number ≥ 0");
  field("encode_ms", typeof record.encode_ms === "number" && record.encode_ms >= 0, "a number ≥ 0");
  field("attempt", isWhole(record.attempt, 1), "a whole number ≥ 1");
  const has = (name: string) => Object.hasOwn(record, name);

  const layers = record.layers as unknown;
  if (has("layers")) {
    if (!isObject(layers)) field("layers", false, "an object of layer → file path");
    else {
      for (const [name, file] of Object.entries(layers)) {
        if (!(LAYER_NAMES as readonly string[]).includes(name)) problems.push(`"layers" names an unknown layer '${name}' (known: ${LAYER_NAMES.join(", ")})`);
        else if (!LAYERS[name as LayerName].file) problems.push(`"layers" gives a file for ${name}, which is metadata only`);
        else if (typeof file !== "string" || file === "") problems.push(`"layers.${name}" must be a file path, got ${describe(file)}`);
      }
      if (layers.rgb !== record.file) problems.push(`"layers.rgb" (${describe(layers.rgb)}) must be the same path as "file" (${describe(record.file)})`);
      if (has("depth_file") !== Object.hasOwn(layers, "depth") || (has("depth_file") && layers.depth !== record.depth_file)) {
        problems.push(`"depth_file" (${describe(record.depth_file)}) must be the same path as "layers.depth" (${describe(layers.depth)})`);
      }
      if ((Object.hasOwn(layers, "mask") || Object.hasOwn(layers, "class")) && !has("instances")) {
        problems.push(`"instances" is missing: a line with a mask or class file lists the instances it shows`);
      }
    }
  }
  if (has("depth_file")) {
    field("depth_file", typeof record.depth_file === "string" && record.depth_file !== "", "the depth image's path");
    field("depth_scale", typeof record.depth_scale === "number" && record.depth_scale > 0 && Number.isFinite(record.depth_scale), "metres per unit, a number > 0");
  }
  if (has("world_to_camera_opencv")) {
    const pose = record.world_to_camera_opencv as unknown;
    field("world_to_camera_opencv", isObject(pose) && isMatrix(pose.R, 3, 3) && isVector(pose.t, 3), "{R: 3×3, t: 3 numbers}");
  }
  if (has("seed")) field("seed", isFrameSeed(record.seed), `the frame's seed, a whole number from 0 to ${FRAME_SEED_MAX}`);
  if (has("randomized")) field("randomized", isObject(record.randomized), "an object of drawn values by \"key.prop\"");
  for (const name of ["fov", "near", "far"]) if (has(name)) field(name, typeof record[name] === "number" && (record[name] as number) > 0 && Number.isFinite(record[name]), "a number > 0");
  if (has("instances")) {
    const sized = isWhole(record.width, 1, LIMITS.maxImageSide) && isWhole(record.height, 1, LIMITS.maxImageSide);
    problems.push(...instancesProblems(record.instances, sized ? record.width : Infinity, sized ? record.height : Infinity));
  }
  return problems;
}

/** What is wrong with a line's `instances`; boxes are checked against its image's size when that is right (else Infinity). */
function instancesProblems(instances: unknown, width: number, height: number): string[] {
  if (!Array.isArray(instances)) return [`"instances" must be a list, got ${describe(instances)}`];
  const problems: string[] = [];
  let previous = 0;
  instances.forEach((instance: unknown, i) => {
    const at = `"instances[${i}]"`;
    if (!isObject(instance)) return void problems.push(`${at} must be an object, got ${describe(instance)}`);
    const { id, key, label, pixels, bbox, box3d } = instance;
    if (!isWhole(id, 1, MAX_ID)) problems.push(`${at}.id must be a whole number from 1 to ${MAX_ID}, got ${describe(id)}`);
    else if (id <= previous) problems.push(`${at}.id ${id} ${id === previous ? "is listed twice" : "is out of order (instances are listed by id ascending)"}`);
    else previous = id;
    if (typeof key !== "string" || key === "") problems.push(`${at}.key must be the element's key, got ${describe(key)}`);
    if (Object.hasOwn(instance, "label") && typeof label !== "string") problems.push(`${at}.label must be a string, got ${describe(label)}`);
    if (Object.hasOwn(instance, "class") && !isWhole(instance.class, 1, MAX_ID)) problems.push(`${at}.class must be a whole number from 1 to ${MAX_ID}, got ${describe(instance.class)}`);
    if (!isWhole(pixels, 1, Math.min(width * height, Number.MAX_SAFE_INTEGER))) problems.push(`${at}.pixels must be a whole number from 1 to ${width * height} (the image's pixels), got ${describe(pixels)}`);
    const [x, y, w, h] = Array.isArray(bbox) ? (bbox as number[]) : [];
    if (!Array.isArray(bbox) || bbox.length !== 4 || !isWhole(x, 0) || !isWhole(y, 0) || !isWhole(w, 1) || !isWhole(h, 1) || x + w > width || y + h > height) {
      problems.push(`${at}.bbox must be [x, y, w, h] inside the ${width === Infinity ? "" : `${width}×${height} `}image, got ${describe(bbox)}`);
    }
    if (Object.hasOwn(instance, "box3d")) {
      const ok = isObject(box3d) && isVector(box3d.min, 3) && isVector(box3d.max, 3) && isMatrix(box3d.objectToWorld, 4, 4) && isMatrix(box3d.corners, 8, 3);
      if (!ok) problems.push(`${at}.box3d must be {min: 3 numbers, max: 3 numbers, objectToWorld: 4×4, corners: 8×3}`);
    }
  });
  return problems;
}

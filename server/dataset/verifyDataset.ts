// `verify`: checks a dataset as a training job will read it. Every line of frames.jsonl parses and has
// its fields; every file a line names is a regular file inside --out (reached without a link) that
// decodes at the line's size with its layer's channels and bit depth (protocol/layers.ts); no
// (job, frame) is there twice; every job the queue marks done has all its frames, and no line belongs
// to a job that is not done; masks use only the ids the line's `instances` names (with their pixel
// counts and boxes), and the class image agrees with the mask; a label has one class id in the whole
// dataset (manifest.json's and every line's, by the rule a resume applies, so a dataset verify passes resumes).
//
// Lines are streamed (./readDataset.ts); the files of a few lines are checked at once (PNG inflation and
// sharp's decodes run on libuv's pool, so both cores work); memory holds the (job, frame) ids seen, a
// state per job, and at most MAX_PROBLEMS_KEPT problems (all are counted).
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { LAYERS, type LayerFile } from "../../protocol/layers.js";
import type { ImageFormat } from "../../protocol/grab.js";
import { checkImage, ImageCheckError } from "../capture/checkImage.js";
import { fileNameProblem } from "../../protocol/names.js";
import type { FrameRecord } from "./FrameRecord.js";
import { FRAMES_INDEX, frameRecordProblems, readFrameLines, recordFiles, type RecordFile } from "./readDataset.js";
import { inspectDataset, QUEUE_FILE } from "./openDataset.js";
import { ClassAgreement, frameClasses, readRunManifest, RUN_MANIFEST_FILE, type RunManifestData } from "./RunManifest.js";
import { frameSeed, isFrameSeed } from "./seeds.js";

/** Problems kept for the report; more are counted, not kept (a broken 100k-frame dataset has 100k). */
export const MAX_PROBLEMS_KEPT = 1000;

export interface VerifyProblem {
  /** The file at fault, relative to the dataset folder (frames.jsonl for a line's own faults). */
  file: string;
  /** The frames.jsonl line that names it, when one does. */
  line?: number;
  message: string;
}

export interface VerifyReport {
  /** The dataset folder (real path). */
  root: string;
  /** Non-blank lines of frames.jsonl. */
  lines: number;
  /** Files named by lines and checked. */
  files: number;
  /** Jobs in the queue, and of them done. */
  jobs: number;
  jobsDone: number;
  /** All problems found. */
  problemCount: number;
  /** The first MAX_PROBLEMS_KEPT found, by frames.jsonl line (those of no line last). */
  problems: VerifyProblem[];
}

export interface VerifyOptions {
  /** Lines whose files are checked at the same time (default: 2 per core). */
  parallel?: number;
  /** Called now and then while lines are read (for a progress line). */
  onProgress?: (linesRead: number) => void;
}

/**
 * "frames.jsonl:12: images/j/000003.mask.png: …", one line: control characters (a path or job id from a
 * hostile line may hold a newline) are shown escaped, so a problem can't pose as another line.
 */
export function formatProblem(problem: VerifyProblem): string {
  const where = problem.line === undefined ? problem.file : `${FRAMES_INDEX}:${problem.line}${problem.file === FRAMES_INDEX ? "" : `: ${problem.file}`}`;
  return `${where}: ${problem.message}`.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * Verifies the dataset at `out`. Throws DatasetOpenError when `out` is not a tabfarm dataset with a
 * queue (nothing to verify against); every fault inside one is a problem in the report.
 */
export async function verifyDataset(out: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const inspected = inspectDataset(out);
  const root = inspected.root;
  const report: VerifyReport = { root, lines: 0, files: 0, jobs: 0, jobsDone: 0, problemCount: 0, problems: [] };
  const problem = (file: string, line: number | undefined, message: string) => {
    report.problemCount++;
    if (report.problems.length < MAX_PROBLEMS_KEPT) report.problems.push(line === undefined ? { file, message } : { file, line, message });
  };

  const { queue } = inspected;
  try {
    const counts = await queue.counts();
    report.jobs = counts.total;
    report.jobsDone = counts.done;
    let manifest: RunManifestData | undefined;
    try {
      manifest = readRunManifest(root);
    } catch (err) {
      problem(RUN_MANIFEST_FILE, undefined, (err as Error).message);
    }
    const frameCount = frameCountRule(manifest);
    const classes = new ClassAgreement();
    for (const entry of manifest?.classes ?? []) classes.add({ ...entry, from: RUN_MANIFEST_FILE });

    // Per job: its queue state and the frames its lines give (a bitmap would do, but jobs are small).
    const jobs = new Map<string, { state: string | null; frames: Map<number, number> }>();
    const parallel = Math.max(1, options.parallel ?? 2 * os.availableParallelism());
    const files = new DatasetFiles(root);
    const running = new Set<Promise<void>>();
    for await (const { line, record, error, unterminated } of readFrameLines(root)) {
      report.lines++;
      if (report.lines % 1000 === 0) options.onProgress?.(report.lines);
      if (!record) {
        problem(FRAMES_INDEX, line, error!);
        continue;
      }
      if (unterminated) problem(FRAMES_INDEX, line, "the last line ends without a newline (a write cut off just before it; the next farm run adds it)");
      const fieldProblems = frameRecordProblems(record);
      for (const message of fieldProblems) problem(FRAMES_INDEX, line, message);
      // A seed that is not the frame's would not draw the values a re-render draws (frames before seeds have none).
      // (Only a well-formed seed of a well-formed frame: the others are field problems above.)
      // (readFrameLines checked job and frame: a record's are a string and a whole number ≥ 0.)
      const checkable = isFrameSeed(record.seed);
      if (checkable && manifest?.seed !== undefined && record.seed !== frameSeed(manifest.seed, record.job, record.frame)) {
        problem(FRAMES_INDEX, line, `"seed" ${JSON.stringify(record.seed)} is not frame ${record.frame} of job ${record.job}'s seed under the dataset's seed ${manifest.seed} (${RUN_MANIFEST_FILE})`);
      }
      for (const entry of frameClasses(record)) {
        const conflict = classes.add({ ...entry, from: `${FRAMES_INDEX} line ${line}` });
        if (conflict) problem(FRAMES_INDEX, line, `${conflict}: a class id means one label in the whole dataset (a resume refuses to start on this)`);
      }

      let job = jobs.get(record.job);
      if (!job) jobs.set(record.job, (job = { state: await queue.state(record.job), frames: new Map() }));
      const earlier = job.frames.get(record.frame);
      if (earlier !== undefined) problem(FRAMES_INDEX, line, `job ${record.job} frame ${record.frame} is also on line ${earlier}: each (job, frame) has one line`);
      else job.frames.set(record.frame, line);
      if (job.state === null) problem(FRAMES_INDEX, line, `job ${record.job} is not in ${QUEUE_FILE}: a line of a job the queue does not know`);
      else if (job.state !== "done") problem(FRAMES_INDEX, line, `job ${record.job} is ${job.state} in ${QUEUE_FILE}, not done: only done jobs have lines`);

      // A line whose fields are wrong may still name files: check those it can (not with a bad size).
      if (fieldProblems.some((p) => /^"(width|height|format)"/.test(p))) continue;
      while (running.size >= parallel) await Promise.race(running);
      // Never rejects (a fault no check foresaw is a problem of the line too), so none goes unhandled.
      const task = checkRecordFiles(files, record, line, problem).then(
        (n) => void (report.files += n),
        (err: Error) => problem(FRAMES_INDEX, line, `its files could not be checked: ${err?.message ?? err}`),
      );
      running.add(task);
      void task.then(() => running.delete(task));
    }
    await Promise.all(running);

    // Every done job has all its frames.
    for (const { id, spec } of queue.doneJobs()) {
      const frames = jobs.get(id)?.frames ?? new Map<number, number>();
      const rule = frameCount(spec);
      if (rule.atLeastOne) {
        if (frames.size === 0) problem(FRAMES_INDEX, undefined, `job ${id} is done in ${QUEUE_FILE} but has no line (${rule.why})`);
        continue;
      }
      const missing: number[] = [];
      for (let i = 0; i < rule.exactly; i++) if (!frames.has(i)) missing.push(i);
      if (missing.length) {
        problem(FRAMES_INDEX, undefined, `job ${id} is done in ${QUEUE_FILE} but frames.jsonl has no line for frame${missing.length > 1 ? "s" : ""} ${listed(missing)} (${rule.why})`);
      }
      for (const [frame, line] of frames) {
        if (frame >= rule.exactly) problem(FRAMES_INDEX, line, `job ${id} has frame ${frame}, but ${rule.why}`);
      }
    }
  } finally {
    await queue.close();
  }
  // By line (files of a few lines are checked at once, so they are found slightly out of order); then the jobs' own.
  report.problems.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  return report;
}

type FrameCountRule = { atLeastOne: true; why: string } | { atLeastOne: false; exactly: number; why: string };

/**
 * How many frames a done job must have. A declarative job renders its spec's frames (or one); a
 * --handler decides for itself, so its jobs need at least one. Which kind ran is in manifest.json's
 * runs (a run whose options name a handler); a dataset without one (made before manifests) tells by
 * the spec: a job that lists frames must have them all, one that lists none needs at least one.
 */
function frameCountRule(manifest: RunManifestData | undefined): (spec: string) => FrameCountRule {
  const handlerRuns = manifest?.runs.some((run) => run.options?.handler !== undefined && run.options.handler !== null && run.options.handler !== false);
  return (specJson) => {
    if (handlerRuns) return { atLeastOne: true, why: `${RUN_MANIFEST_FILE} records a run with a --handler, whose jobs have as many frames as the handler saves: at least one` };
    let listedFrames: number | undefined;
    try {
      const spec = JSON.parse(specJson) as { frames?: unknown };
      if (Array.isArray(spec.frames)) listedFrames = spec.frames.length;
    } catch {}
    if (listedFrames !== undefined) return { atLeastOne: false, exactly: listedFrames, why: `its spec lists ${listedFrames} frame${listedFrames === 1 ? "" : "s"}` };
    if (handlerRuns === false) return { atLeastOne: false, exactly: 1, why: "its spec lists no frames: one from the default camera" };
    return { atLeastOne: true, why: `its spec lists no frames and there is no ${RUN_MANIFEST_FILE} to say whether a --handler made it: at least one` };
  };
}

/** "1, 2, 5 and 12 more" */
function listed(numbers: number[], max = 10): string {
  const shown = numbers.slice(0, max).join(", ");
  return numbers.length > max ? `${shown} and ${numbers.length - max} more` : shown;
}

// ---------- the files of one line ----------

type Problem = (file: string, line: number | undefined, message: string) => void;
/** The ids of a line's mask and class images, once they decoded (top row first). */
type Decoded = { mask?: Uint16Array; class?: Uint16Array };

/** Checks every file `record` names; returns how many it looked at. */
async function checkRecordFiles(dataset: DatasetFiles, record: FrameRecord, line: number, problem: Problem): Promise<number> {
  const files = recordFiles(record);
  const decoded: Decoded = {};
  await Promise.all(
    files.map(async (file) => {
      const fault = await checkFile(dataset, record, file, decoded).catch((err: Error) => `cannot be checked: ${err.message}`);
      if (fault) problem(file.path, line, fault);
    }),
  );
  const pathOf = (layer: "mask" | "class") => (decoded[layer] ? files.find((f) => f.layer === layer)?.path : undefined);
  for (const fault of idProblems(record, decoded, { mask: pathOf("mask"), class: pathOf("class") })) problem(fault.file, line, fault.message);
  return files.length;
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

/**
 * Reads files of the dataset by the paths lines give, never outside it and never through a link: a
 * path must be plain and relative ("images/j/000000.png": not absolute, no `..`, no `.` or empty part,
 * no backslash, every part a safe name); each folder on the way is checked once per run with lstat (a real folder, not a
 * link), and the file itself is opened with O_NOFOLLOW (a link there fails) and O_NONBLOCK (a FIFO
 * does not block), then must be a regular file. `export` reads the files it copies with it too.
 */
export class DatasetFiles {
  /** Folder (relative path) → why it can't hold files, or undefined when it is a real folder. */
  private readonly folders = new Map<string, Promise<string | undefined>>();

  constructor(private readonly root: string) {}

  /** The file's bytes, or the fault that kept it from being read. */
  async read(relative: string, maxBytes: (size: number) => string | undefined): Promise<{ bytes: Buffer } | { fault: string }> {
    const parts = relative.split("/");
    const bad = this.pathProblem(relative, parts);
    if (bad) return { fault: bad };
    for (let i = 1; i < parts.length; i++) {
      const folder = parts.slice(0, i).join("/");
      let checked = this.folders.get(folder);
      if (!checked) this.folders.set(folder, (checked = this.folderProblem(folder)));
      const fault = await checked;
      if (fault) return { fault };
    }
    const full = path.join(this.root, relative);
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(full, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return { fault: "is missing" };
      if (code === "ELOOP") return { fault: `is a symbolic link (to ${await fsp.readlink(full).catch(() => "?")}); verify follows no links, and tabfarm writes none` };
      return { fault: `cannot be opened: ${(err as Error).message}` };
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) return { fault: `is not a regular file (${stat.isDirectory() ? "a folder" : "a device, FIFO or socket"})` };
      const tooBig = maxBytes(stat.size);
      if (tooBig) return { fault: tooBig };
      // One read of the size fstat gave (a file that grows meanwhile is read as it was).
      const bytes = Buffer.allocUnsafe(stat.size);
      let got = 0;
      for (let n = -1; got < bytes.length && n !== 0; got += n) ({ bytesRead: n } = await handle.read(bytes, got, bytes.length - got, got));
      return { bytes: bytes.subarray(0, got) };
    } finally {
      await handle.close();
    }
  }

  private pathProblem(relative: string, parts: string[]): string | undefined {
    if (path.posix.isAbsolute(relative) || path.win32.isAbsolute(relative)) return "is an absolute path; a line names files relative to the dataset folder";
    if (relative.includes("\\")) return "holds a backslash; a line names files with / between folders";
    if (relative.includes("\0")) return "holds a NUL character";
    if (parts.includes("..")) return "escapes the dataset folder (..)";
    if (parts.some((part) => part === "" || part === ".")) return "is not a plain relative path (an empty or . part)";
    // Every part of a path tabfarm writes is a safe name (images/<job id>/<frame>.<layer>.<ext>).
    for (const part of parts) {
      const problem = fileNameProblem(part);
      if (problem) return `is not a path tabfarm writes: its part ${JSON.stringify(part)} ${problem}`;
    }
    return undefined;
  }

  /** Why files can't be inside `folder` (its parents are checked already). */
  private async folderProblem(folder: string): Promise<string | undefined> {
    const full = path.join(this.root, folder);
    const stat = await fsp.lstat(full).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
      throw err;
    });
    if (!stat) return `is missing (${folder} does not exist)`;
    if (stat.isSymbolicLink()) {
      return `is reached through ${folder}, which is a symbolic link (to ${await fsp.readlink(full).catch(() => "?")}); verify follows no links, and tabfarm writes none`;
    }
    if (!stat.isDirectory()) return `is missing (${folder} is not a folder)`;
    return undefined;
  }
}

/**
 * The largest file of a layer at `width`×`height` worth reading: twice its raw pixels and 1 MiB
 * (a PNG stored without compression is hardly bigger than its pixels). Bigger is not one of ours.
 */
const maxFileBytes = (decl: LayerFile, width: number, height: number) => 2 * width * height * decl.channels * (decl.bits / 8) + 2 ** 20;

/** Checks one file; returns its fault or undefined. Keeps the mask's and class's ids in `decoded`. */
async function checkFile(files: DatasetFiles, record: FrameRecord, file: RecordFile, decoded: Decoded): Promise<string | undefined> {
  const decl = LAYERS[file.layer].file!;
  const { width, height } = record;
  const max = maxFileBytes(decl, width, height);
  const read = await files.read(file.path, (size) => (size > max ? `holds ${size} bytes, more than a ${width}×${height} ${file.layer} file can (${max})` : undefined));
  if ("fault" in read) return read.fault;
  const { bytes } = read;
  const label = `${file.layer} layer`;
  if (decl.ext === "npy") return npyProblem(bytes, width, height);
  const format: ImageFormat = decl.ext === "format" ? (record.format as ImageFormat) : decl.ext;
  try {
    await checkImage(bytes, {
      format, width, height, what: label, maxBytes: bytes.length,
      // rgb is what the page (or the server's encoder) writes: 8-bit RGB or RGBA. Other layers are exactly as declared.
      ...(file.layer === "rgb" ? {} : { pngSamples: { channels: decl.channels as 1 | 3 | 4, bits: decl.bits as 8 | 16 } }),
    });
  } catch (err) {
    if (err instanceof ImageCheckError) return err.message;
    throw err;
  }
  if (file.layer === "mask" || file.layer === "class") {
    const { data, info } = await sharp(bytes).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 1 || data.length !== width * height * 2) return `decodes to ${info.width}×${info.height}×${info.channels}, not ${width}×${height} 16-bit ids`;
    decoded[file.layer] = new Uint16Array(data.buffer, data.byteOffset, width * height);
  }
  return undefined;
}

/**
 * Why `bytes` are not a NumPy v1.0 file of float32 little-endian (h, w) C-order values ≥ 0 (metres,
 * finite), or undefined.
 */
export function npyProblem(bytes: Buffer, width: number, height: number): string | undefined {
  const wrong = (why: string) => `is not a ${height}×${width} float32 .npy file: ${why}`;
  if (bytes.length < 10 || bytes.toString("latin1", 0, 6) !== "\x93NUMPY") return wrong("no \\x93NUMPY magic");
  if (bytes[6] !== 1 || bytes[7] !== 0) return wrong(`format version ${bytes[6]}.${bytes[7]}, not 1.0`);
  const headerLength = bytes.readUInt16LE(8);
  if (10 + headerLength > bytes.length) return wrong(`its header says ${headerLength} bytes, but the file ends before`);
  const header = bytes.toString("latin1", 10, 10 + headerLength);
  if (!header.endsWith("\n")) return wrong("its header does not end with a newline");
  const dict = /^\{\s*'descr':\s*'([^']*)',\s*'fortran_order':\s*(True|False),\s*'shape':\s*\(([^)]*)\),?\s*\}\s*$/.exec(header.trimEnd());
  if (!dict) return wrong(`its header is not {'descr': …, 'fortran_order': …, 'shape': (…)}: ${JSON.stringify(header.trim().slice(0, 120))}`);
  const [, descr, fortran, shapeText] = dict;
  if (descr !== "<f4") return wrong(`dtype '${descr}', not '<f4' (float32 little-endian)`);
  if (fortran !== "False") return wrong("Fortran order, not C order");
  const shape = shapeText!.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.length !== 2 || shape[0] !== height || shape[1] !== width) return wrong(`shape (${shapeText!.trim()}), not (${height}, ${width})`);
  const dataBytes = bytes.length - 10 - headerLength;
  if (dataBytes !== width * height * 4) return wrong(`${dataBytes} bytes of data, not ${width * height * 4} (${width}×${height}×4)`);
  const values = new Float32Array(width * height);
  Buffer.from(values.buffer).set(bytes.subarray(10 + headerLength));
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!(v >= 0 && v < Infinity)) return `has ${v} at pixel (${i % width}, ${Math.floor(i / width)}); depth is finite metres ≥ 0`;
  }
  return undefined;
}

/**
 * The mask against the line's `instances`: every id in the mask is named, every named id is in the
 * mask with its pixel count and tight box; and the class image is, pixel by pixel, the class of the
 * mask's instance (0 where it has none). Without the mask, the class image uses only the line's classes.
 */
function idProblems(record: FrameRecord, decoded: Decoded, paths: { mask?: string; class?: string }): VerifyProblem[] {
  const instances = Array.isArray(record.instances) ? record.instances : undefined;
  if (!instances) return [];
  const { width } = record;
  const named = new Map<number, { key?: unknown; class?: unknown; pixels?: unknown; bbox?: unknown }>();
  for (const instance of instances) if (typeof instance?.id === "number") named.set(instance.id, instance);
  const problems: VerifyProblem[] = [];

  const mask = decoded.mask;
  if (mask && paths.mask) {
    // Per id: pixels and box, in arrays indexed by id (up to the largest id there), one pass over the mask.
    let largest = 0;
    for (let i = 0; i < mask.length; i++) if (mask[i]! > largest) largest = mask[i]!;
    const pixels = new Uint32Array(largest + 1);
    const minX = new Uint16Array(largest + 1);
    const maxX = new Uint16Array(largest + 1);
    const minY = new Uint16Array(largest + 1);
    const maxY = new Uint16Array(largest + 1);
    const seen: number[] = [];
    for (let i = 0, x = 0, y = 0; i < mask.length; i++, x === width - 1 ? ((x = 0), y++) : x++) {
      const id = mask[i]!;
      if (id === 0) continue;
      if (pixels[id]++ === 0) {
        seen.push(id);
        minX[id] = maxX[id] = x;
        minY[id] = y;
      } else if (x < minX[id]!) minX[id] = x;
      else if (x > maxX[id]!) maxX[id] = x;
      maxY[id] = y;
    }
    const unnamed = seen.filter((id) => !named.has(id)).sort((a, b) => a - b);
    if (unnamed.length) {
      const shown = unnamed.slice(0, 5).map((id) => `${id} (${pixels[id]} pixel${pixels[id] === 1 ? "" : "s"}, first at (${minX[id]}, ${minY[id]}))`);
      problems.push({
        file: paths.mask,
        message: `holds id${unnamed.length > 1 ? "s" : ""} ${shown.join(", ")}${unnamed.length > 5 ? ` and ${unnamed.length - 5} more` : ""} that the line's instances do not name (they name ${describeIds([...named.keys()])})`,
      });
    }
    for (const [id, instance] of named) {
      if (!(id <= largest && pixels[id]! > 0)) {
        problems.push({ file: paths.mask, message: `has no pixel of id ${id} (key ${JSON.stringify(instance.key)}), which the line's instances list as visible` });
        continue;
      }
      const bbox = [minX[id]!, minY[id]!, maxX[id]! - minX[id]! + 1, maxY[id]! - minY[id]! + 1];
      if (instance.pixels !== pixels[id]) problems.push({ file: paths.mask, message: `has ${pixels[id]} pixels of id ${id}; the line's instances say ${JSON.stringify(instance.pixels)}` });
      if (JSON.stringify(instance.bbox) !== JSON.stringify(bbox)) {
        problems.push({ file: paths.mask, message: `has id ${id} in the box [${bbox.join(", ")}]; the line's instances say ${JSON.stringify(instance.bbox)}` });
      }
    }
  }

  if (decoded.class && paths.class) {
    const classOf = new Uint16Array(65536); // mask id → its class (0: unlabelled); ids are 16-bit
    const classes = new Set<number>([0]);
    for (const [id, instance] of named) {
      const c = typeof instance.class === "number" ? instance.class : 0;
      if (id >= 0 && id <= 65535) classOf[id] = c;
      classes.add(c);
    }
    for (let i = 0; i < decoded.class.length; i++) {
      const value = decoded.class[i]!;
      const ok = mask ? value === classOf[mask[i]!] : classes.has(value);
      if (ok) continue;
      const at = `(${i % width}, ${Math.floor(i / width)})`;
      problems.push({
        file: paths.class,
        message: mask
          ? `has class ${value} at ${at}, where the mask has id ${mask[i]}, whose class in the line's instances is ${classOf[mask[i]!]}`
          : `has class ${value} at ${at}, which no instance of the line has (they have ${describeIds([...classes])})`,
      });
      break;
    }
  }
  return problems;
}

function describeIds(ids: number[]): string {
  if (ids.length === 0) return "none";
  const sorted = [...ids].sort((a, b) => a - b);
  return sorted.length <= 10 ? sorted.join(", ") : `${sorted.slice(0, 10).join(", ")}, … (${sorted.length})`;
}

// Writes the dataset under --out: images/<job>/<frame>.<ext> and frames.jsonl.
// A file is complete (temp file + rename) before any line points at it. Lines of a job are appended
// together when the job completes; a crash between append and the queue's "done" can leave lines of a
// job that will be re-run, so compact() (run at start and end) keeps one line per (job, frame) of done jobs.
// Image files are written by a writer thread (./WritePool.ts).
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { FrameRecord } from "./FrameRecord.js";
import { assertSafeName, insideRoot } from "./safeName.js";
import { WritePool } from "./WritePool.js";
import { FRAMES_INDEX, MAX_FRAME_LINE_BYTES, readFrameLines } from "./readDataset.js";
import { readBoundedLines } from "../jobs/boundedLines.js";

export { FRAMES_INDEX };
const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = fs.constants;
/** frames.jsonl is opened with O_NOFOLLOW: a link planted at its name is refused (ELOOP), never written through. */
const APPEND_INDEX = O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW;

/** The dataset folder refused a write (disk full, permissions, …): not the job's fault. */
export class DatasetWriteError extends Error {
  constructor(what: string, readonly cause: unknown) {
    super(`cannot write ${what}: ${(cause as Error)?.message ?? cause}`);
  }
}
/** File extension per image format, and of the layers' own files (protocol/layers.ts: png, npy); export names members with it too. */
export const EXT: Record<string, string> = { png: "png", jpeg: "jpg", webp: "webp", npy: "npy" };

export interface DatasetWriterOptions {
  /** Writer threads creating image files (default 1; threads are shared by writers with the same count). */
  writeThreads?: number;
}

/** A frame's name in the dataset (its files' stem, an export's key): its index in 6 digits, 000042. */
export const frameStem = (frame: number): string => String(frame).padStart(6, "0");

export class DatasetWriter {
  private madeDirs = new Set<string>();
  private appendChain: Promise<void> = Promise.resolve();
  /** Temp names are `.<name>.<tempPrefix><counter>.tmp`: unique per process and writer without a random draw per file. */
  private readonly tempPrefix = randomBytes(4).toString("hex");
  private tempCounter = 0;
  private readonly pool: WritePool;
  readonly indexPath: string;

  constructor(readonly root: string, options: DatasetWriterOptions = {}) {
    fs.mkdirSync(root, { recursive: true });
    this.root = fs.realpathSync(root);
    this.indexPath = path.join(this.root, FRAMES_INDEX);
    this.pool = WritePool.shared(options.writeThreads ?? 1);
  }

  /**
   * Relative path of a frame's image; `layer` is a layer file's suffix (e.g. "depth", LAYERS[name].file)
   * for the files beside the image: images/<job>/<frame>.<layer>.<ext>.
   */
  framePath(job: string, frame: number, format: string, layer = "rgb"): string {
    assertSafeName(job, "job id");
    assertSafeName(layer, "layer name");
    if (!Number.isSafeInteger(frame) || frame < 0) throw new Error(`frame index ${frame} must be a whole number ≥ 0`);
    const ext = Object.hasOwn(EXT, format) ? EXT[format] : undefined;
    if (!ext) throw new Error(`unknown image format ${JSON.stringify(format)}`);
    const name = frameStem(frame);
    return path.posix.join("images", job, layer === "rgb" ? `${name}.${ext}` : `${name}.${layer}.${ext}`);
  }

  /** Writes bytes to `relative` atomically: a reader sees the old file, the new one, or none. */
  async writeFile(relative: string, bytes: Uint8Array): Promise<void> {
    const full = insideRoot(this.root, relative);
    const dir = path.dirname(full);
    const temp = path.join(dir, `.${path.basename(full)}.${this.tempPrefix}${(this.tempCounter++).toString(36)}.tmp`);
    // Every write to a folder not known to exist carries the mkdir (concurrent first writes all do, harmlessly).
    const mkdir = !this.madeDirs.has(dir);
    try {
      await this.pool.write({ dir: mkdir ? dir : undefined, root: this.root, temp, full }, bytes);
    } catch (err) {
      // The writer thread has removed its temp file already.
      throw new DatasetWriteError(relative, err);
    }
    if (mkdir) this.madeDirs.add(dir);
  }

  /**
   * Removes temp files a killed process left between write and rename (nothing points at them): in
   * images/ and images/<job>/, the only folders tabfarm writes. Links are neither followed nor removed.
   * Call only while no writer is active on this folder, i.e. at the start of a run.
   */
  async removeStaleTemps(): Promise<number> {
    const images = path.join(this.root, "images");
    if (!fs.lstatSync(images, { throwIfNoEntry: false })?.isDirectory()) return 0;
    let removed = 0;
    const sweep = async (dir: string, descend: boolean) => {
      for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory() && descend) await sweep(full, false);
        else if (entry.isFile() && entry.name.startsWith(".") && entry.name.endsWith(".tmp")) {
          await fsp.rm(full, { force: true });
          removed++;
        }
      }
    };
    await sweep(images, true);
    return removed;
  }

  /** Whether a write of `bytes` bytes into the dataset would succeed now (used to resume after a failure). */
  async probeWritable(bytes = 256 * 1024): Promise<boolean> {
    try {
      await this.writeFile("images/.tabfarm-probe", new Uint8Array(bytes));
      await fsp.rm(path.join(this.root, "images/.tabfarm-probe"), { force: true });
      // frames.jsonl too, if it exists: a folder or a link planted there would fail every job's append.
      await fsp.open(this.indexPath, O_WRONLY | O_APPEND | O_NOFOLLOW).then((f) => f.close(), (err) => {
        if (err.code !== "ENOENT") throw err;
      });
      return true;
    } catch {
      return false;
    }
  }

  /** Appends records as lines in one write; appends are serialised so lines of two jobs never interleave. */
  appendRecords(records: FrameRecord[]): Promise<void> {
    return this.appendLines(records.map((r) => JSON.stringify(r)));
  }

  /** Appends lines already serialised (a JobContext's, checked when each frame was saved), as appendRecords does. */
  appendLines(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return this.appendChain;
    const text = lines.join("\n") + "\n";
    const next = this.appendChain.then(() => this.appendOrRollBack(text));
    this.appendChain = next.catch(() => undefined);
    return next;
  }

  /** A failed append (disk full) may have written part of a line: cut the file back to where it was. */
  private async appendOrRollBack(text: string): Promise<void> {
    let file: fsp.FileHandle;
    try {
      file = await fsp.open(this.indexPath, APPEND_INDEX);
    } catch (err) {
      throw new DatasetWriteError(FRAMES_INDEX, err);
    }
    try {
      const sizeBefore = (await file.stat()).size;
      try {
        await file.appendFile(text);
      } catch (err) {
        // Through the handle: the file cut back is the one appended to, whatever its name points at now.
        await file.truncate(sizeBefore).catch(() => {});
        throw new DatasetWriteError(FRAMES_INDEX, err);
      }
    } finally {
      await file.close();
    }
  }

  /**
   * Rewrites frames.jsonl keeping, for each (job, frame), the last line whose job is done, copied as it
   * was written (its bytes, less a "\r" before the newline), in file order. Returns how many lines were
   * kept and dropped. Lines that are not records (a torn last line) are dropped. Reads the file twice
   * and holds a few bytes per frame, never the lines.
   * Runs inside the append chain, so no append can land in the file while it is being replaced.
   */
  compact(isDone: (job: string) => boolean | Promise<boolean>): Promise<{ kept: number; dropped: number }> {
    const run = this.appendChain.then(() => this.compactNow(isDone));
    this.appendChain = run.then(() => undefined, () => undefined);
    return run;
  }

  private async compactNow(isDone: (job: string) => boolean | Promise<boolean>): Promise<{ kept: number; dropped: number }> {
    const read = fs.lstatSync(this.indexPath, { throwIfNoEntry: false, bigint: true });
    if (!read) return { kept: 0, dropped: 0 };
    if (!read.isFile()) throw new Error(`${this.indexPath} is not a regular file (a link or a folder); not rewritten`);
    // Two passes over the file, so what is held is a few bytes per frame, never the lines themselves.
    const { keep, total, unterminated } = await linesToKeep(this.root, isDone);
    // A crash can leave a whole last line without its newline; the next append would glue onto it.
    if (keep.size === total && !unterminated) return { kept: total, dropped: 0 };
    await replaceFile(this.indexPath, (temp) => copyLines(this.indexPath, read, keep, temp));
    return { kept: keep.size, dropped: total - keep.size };
  }
}

/**
 * Compaction's first pass: which lines of `<root>/frames.jsonl` to keep, i.e. for each (job, frame) of a
 * done job the last line (the kept lines in file order are the order of the last writes). `total`
 * counts the lines read (blank ones are not); `unterminated`: the last one has no newline.
 * isDone is asked once per job and may throw: nothing is written then.
 */
async function linesToKeep(root: string, isDone: (job: string) => boolean | Promise<boolean>) {
  const jobs = new Map<string, LastLineOfFrames | false>(); // false: the job is not done, its lines are dropped
  let total = 0;
  let lastRecordLine = 0;
  let unterminated = false;
  for await (const { line, record, unterminated: last } of readFrameLines(root)) {
    total++;
    unterminated ||= last === true;
    if (!record) continue;
    let frames = jobs.get(record.job);
    if (frames === undefined) {
      frames = (await isDone(record.job)) ? new LastLineOfFrames() : false;
      jobs.set(record.job, frames);
    }
    if (frames) frames.set(record.frame, line);
    lastRecordLine = line;
  }
  const keep = new LineSet(lastRecordLine);
  for (const frames of jobs.values()) if (frames) frames.addTo(keep);
  return { keep, total, unterminated };
}

/**
 * One done job's frames → the number of each one's last line. A job's frames are numbered from 0, so they
 * are held in an array by frame (8–16 bytes a frame) while it stays at least about half full; a frame far
 * past the others (a line tabfarm did not write) goes to a Map instead.
 */
class LastLineOfFrames {
  private dense: number[] = [];
  private sparse: Map<number, number> | undefined;
  private count = 0;

  set(frame: number, line: number): void {
    if (this.sparse?.has(frame)) this.sparse.set(frame, line);
    else if (frame < this.dense.length || frame <= 2 * this.count + 32) {
      if (this.dense[frame] === undefined) this.count++;
      // A literal has room for exactly one frame: a job of one frame (--frames-per-job 1) then holds 8 bytes, not 136 (V8 grows [] to 17).
      if (frame === 0 && this.dense.length === 0) this.dense = [line];
      else this.dense[frame] = line;
    } else {
      (this.sparse ??= new Map()).set(frame, line);
      this.count++;
    }
  }

  addTo(lines: LineSet): void {
    this.dense.forEach((line) => lines.add(line)); // forEach skips the holes
    this.sparse?.forEach((line) => lines.add(line));
  }
}

/** A set of line numbers (from 1 to `maxLine`), one bit each. */
class LineSet {
  private readonly bits: Uint8Array;
  size = 0;

  constructor(maxLine: number) {
    this.bits = new Uint8Array(Math.floor(maxLine / 8) + 1);
  }

  add(line: number): void {
    const mask = 1 << line % 8;
    const byte = Math.floor(line / 8);
    if (this.bits[byte]! & mask) return;
    this.bits[byte] = this.bits[byte]! | mask;
    this.size++;
  }

  has(line: number): boolean {
    return (this.bits[Math.floor(line / 8)]! & (1 << line % 8)) !== 0;
  }
}

/** Compaction writes in chunks of this size: the lines are never all in memory at once. */
const WRITE_CHUNK_BYTES = 2 ** 20;

/**
 * Compaction's second pass: copies the lines of `index` that `keep` names, in file order, to `out`, each
 * as it was read (without "\r") plus "\n". `read` is the file's stat before the first pass: a file changed
 * since (written by another process) throws rather than be replaced by a copy of lines it no longer has.
 */
async function copyLines(index: string, read: fs.BigIntStats, keep: LineSet, out: fsp.FileHandle): Promise<void> {
  const changed = () => new Error(`${index} changed while it was being compacted (another process writing it?); not rewritten`);
  const source = await fsp.open(index, READ_INDEX);
  try {
    if (!sameFile(read, await source.stat({ bigint: true }))) throw changed();
    const chunk = Buffer.allocUnsafe(WRITE_CHUNK_BYTES);
    let used = 0;
    let copied = 0;
    for await (const raw of readBoundedLines(source, MAX_FRAME_LINE_BYTES)) {
      if (!keep.has(raw.line)) continue;
      if (!("bytes" in raw)) throw changed(); // a kept line was a record when the first pass read it
      if (used + raw.bytes.length + 1 > chunk.length) {
        await writeAll(out, chunk.subarray(0, used));
        used = 0;
      }
      if (raw.bytes.length + 1 > chunk.length) await writeAll(out, Buffer.concat([raw.bytes, NEWLINE]));
      else {
        used += raw.bytes.copy(chunk, used);
        chunk[used++] = 0x0a;
      }
      copied++;
    }
    await writeAll(out, chunk.subarray(0, used));
    // Also through its name: a file renamed over it meanwhile would be lost by the rename that follows.
    if (copied !== keep.size || !sameFile(read, fs.lstatSync(index, { bigint: true, throwIfNoEntry: false }))) throw changed();
  } finally {
    await source.close();
  }
}

const NEWLINE = Buffer.from("\n");
const { O_RDONLY, O_NONBLOCK } = fs.constants;
/** Creates a new file only: never opens an existing one, nor follows a link (symbolic or hard, both are "existing"). */
const CREATE_NEW = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
/** As readDataset opens the index: no link followed, no wait on a FIFO. */
const READ_INDEX = O_RDONLY | O_NOFOLLOW | O_NONBLOCK;

/** The same file with the same bytes, as far as the file system tells: same inode, size and times. */
function sameFile(a: fs.BigIntStats, b: fs.BigIntStats | undefined): boolean {
  return !!b && a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/**
 * Writes all of `bytes` at the handle's position (a write may take only part of them, e.g. on a full disk);
 * each write is awaited, so a reader feeding it waits on the disk.
 */
export async function writeAll(out: fsp.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length; ) {
    const { bytesWritten } = await out.write(bytes, at, bytes.length - at);
    if (bytesWritten === 0) throw new Error("the file system took no bytes of a write");
    at += bytesWritten;
  }
}

/**
 * Replaces `file` with what `write` writes to a temp file beside it: the old file stays whole until the new
 * one is complete and on disk (a full disk or a crash while writing never costs a line already there), and
 * a failed write leaves no temp file. The temp file is created new (an existing one, or a link at its name,
 * fails the open rather than be written through); by default it has a random name.
 */
export async function replaceFile<T>(
  file: string,
  write: (temp: fsp.FileHandle) => Promise<T>,
  options: { temp?: string; mode?: number } = {},
): Promise<T> {
  const temp = options.temp ?? `${file}.${randomBytes(6).toString("hex")}.tmp`;
  // Outside the try: a temp this call could not create is not its own to remove.
  const handle = await fsp.open(temp, CREATE_NEW, options.mode);
  try {
    let result: T;
    try {
      result = await write(handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
    return result;
  } catch (err) {
    await fsp.rm(temp, { force: true }).catch(() => {});
    throw err;
  }
}

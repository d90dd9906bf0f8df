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
import { FRAMES_INDEX, readFrameLines } from "./readDataset.js";

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
/** File extension per image format, and of the layers' own files (protocol/layers.ts: png, npy). */
const EXT: Record<string, string> = { png: "png", jpeg: "jpg", webp: "webp", npy: "npy" };

export interface DatasetWriterOptions {
  /** Writer threads creating image files (default 1; threads are shared by writers with the same count). */
  writeThreads?: number;
}

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
    const name = String(frame).padStart(6, "0");
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
   * Rewrites frames.jsonl keeping, for each (job, frame), the last line whose job is done.
   * Returns how many lines were kept and dropped. Lines that are not records (a torn last line) are dropped.
   * Runs inside the append chain, so no append can land in the file while it is being replaced.
   */
  compact(isDone: (job: string) => boolean | Promise<boolean>): Promise<{ kept: number; dropped: number }> {
    const run = this.appendChain.then(() => this.compactNow(isDone));
    this.appendChain = run.then(() => undefined, () => undefined);
    return run;
  }

  private async compactNow(isDone: (job: string) => boolean | Promise<boolean>): Promise<{ kept: number; dropped: number }> {
    const index = fs.lstatSync(this.indexPath, { throwIfNoEntry: false });
    if (!index) return { kept: 0, dropped: 0 };
    if (!index.isFile()) throw new Error(`${this.indexPath} is not a regular file (a link or a folder); not rewritten`);
    const latest = new Map<string, string>();
    const doneCache = new Map<string, boolean>();
    let total = 0;
    let unterminated = false;
    for await (const { record, unterminated: last } of readFrameLines(this.root)) {
      total++;
      if (!record) continue;
      let done = doneCache.get(record.job);
      if (done === undefined) doneCache.set(record.job, (done = await isDone(record.job))); // may throw: nothing is written then
      if (!done) continue;
      unterminated ||= last === true;
      const id = `${record.job}\u0000${record.frame}`;
      latest.delete(id); // re-insert so the map keeps the order of the last write
      latest.set(id, JSON.stringify(record));
    }
    // A crash can leave a whole last line without its newline; the next append would glue onto it.
    if (latest.size === total && !unterminated) return { kept: total, dropped: 0 };
    await replaceFile(this.indexPath, latest.size ? [...latest.values()].join("\n") + "\n" : "");
    return { kept: latest.size, dropped: total - latest.size };
  }
}

/**
 * Replaces `file` with `text`: the old file stays whole until the new one is complete and on disk (a full
 * disk or a crash while writing never costs a line already there), and a failed write leaves no temp file.
 */
async function replaceFile(file: string, text: string): Promise<void> {
  const temp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const handle = await fsp.open(temp, "wx");
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
  } catch (err) {
    await fsp.rm(temp, { force: true }).catch(() => {});
    throw err;
  }
}

// The one place that opens a dataset folder (--out): checks the path, decides whether it is a new
// empty folder, a tabfarm dataset (marked by tabfarm.json, or an older tabfarm's queue.sqlite), or a
// folder to refuse (someone else's files), refuses symbolic links where tabfarm writes, takes the
// dataset's lock (./datasetLock.ts), and only then hands out the writer and the queue, so resume
// (recoverLeased, removeStaleTemps, compact) never runs on a folder another farm is writing or on
// files tabfarm did not make.
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import { isTabfarmQueue, SqliteQueue, type SqliteQueueOptions } from "../queue/SqliteQueue.js";
import { ShardQueue, type SharedQueue } from "../queue/ShardQueue.js";
import { DatasetWriter, FRAMES_INDEX, type DatasetWriterOptions } from "./DatasetWriter.js";
import type { JobQueue } from "../queue/JobQueue.js";
import { DatasetLock, LOCK_FILE, LOCK_HOLDER_FILE } from "./datasetLock.js";
import { readSmallFile, writeSmallFile } from "./smallFiles.js";

export const MANIFEST_FILE = "tabfarm.json";
/** The dataset's layers, class table and run history (./RunManifest.ts); tabfarm.json stays the marker. */
export const RUN_MANIFEST_FILE = "manifest.json";
export const QUEUE_FILE = "queue.sqlite";
export const IMAGES_DIR = "images";
const MANIFEST_FORMAT = "tabfarm-dataset";
const MANIFEST_VERSION = 1;

/** What tabfarm.json holds. */
export interface DatasetManifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** ISO time the dataset was created (or, for an older tabfarm's dataset, first marked). */
  created: string;
  /**
   * Set when the folder is a shard of a run on a shared queue (--queue): that queue, password left out.
   * Its queue.sqlite is then the shard's ledger (../queue/ShardQueue.ts), not a queue to run alone.
   */
  sharedQueue?: string;
}

/** The folder can't be used as a dataset; the message names the path and the cause. */
export class DatasetOpenError extends Error {}

/** Files tabfarm writes at the top of a dataset: each must be a regular file (not a link, FIFO, folder). */
const OWN_FILES = [MANIFEST_FILE, RUN_MANIFEST_FILE, FRAMES_INDEX, QUEUE_FILE, `${QUEUE_FILE}-wal`, `${QUEUE_FILE}-shm`, `${QUEUE_FILE}-journal`, LOCK_FILE, LOCK_HOLDER_FILE];
/**
 * What a folder may hold and still count as new: the lock (taken before the manifest is written), and
 * the transient files of an opener that is creating the dataset right now (or was killed doing so).
 */
const WRITABLE_PROBE = ".tabfarm-writable-";
const isOpenerFile = (name: string) =>
  name === LOCK_FILE || name === LOCK_HOLDER_FILE || (name.endsWith(".tmp") && [`${LOCK_HOLDER_FILE}.`, `${MANIFEST_FILE}.`, WRITABLE_PROBE].some((p) => name.startsWith(p)));

/** Words for the errno codes an unusable folder produces. */
const ERRNO_WORDS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "the file system is read-only",
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is used up",
  ENOTDIR: "a part of the path is a file, not a folder",
  ENOENT: "it does not exist",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "the name is too long",
  EIO: "input/output error",
  EEXIST: "it already exists",
  EISDIR: "it is a folder",
};

/** An fs error in words, with its code: "the file system is read-only (EROFS)". */
export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code && ERRNO_WORDS[e.code]) return `${ERRNO_WORDS[e.code]} (${e.code})`;
  // Node's system errors read "CODE: libuv words, syscall 'path'": keep the words.
  const words = /^[A-Z]+: ([^,]+),/.exec(e?.message ?? "")?.[1];
  return words && e.code ? `${words} (${e.code})` : String(e?.message ?? err);
}

export interface OpenDatasetOptions extends SqliteQueueOptions, DatasetWriterOptions {
  log?: (line: string) => void;
  /** The run's queue, shared with other servers (--queue redis://…): the folder is one shard of the run. */
  shared?: { queue: SharedQueue; describe: string };
  /** Create the folder (and a new dataset) when it does not exist or is empty (default true). */
  create?: boolean;
}

export interface OpenDataset {
  /** Real path of the dataset folder (a symbolic link given as --out is resolved once, here). */
  root: string;
  /** A new dataset (the folder was empty or did not exist). */
  created: boolean;
  writer: DatasetWriter;
  /** The run's queue: queue.sqlite, or the shared queue with queue.sqlite as the shard's ledger. */
  queue: JobQueue & { readonly leaseTtlMs: number };
  /** queue.sqlite: the jobs this folder's frames.jsonl is checked against (the same object as `queue` unless shared). */
  ledger: SqliteQueue;
  /** Closes the queue and releases the lock (idempotent). */
  close(): Promise<void>;
}

/**
 * Opens `out` for writing: the only writer of that dataset until close(). Throws DatasetOpenError
 * (path and cause) or DatasetLockedError (the holder's pid, host and since).
 */
export async function openDataset(out: string, options: OpenDatasetOptions = {}): Promise<OpenDataset> {
  const log = options.log ?? ((line: string) => console.log(line));
  const root = resolveFolder(out, options.create ?? true);
  // Refuse someone else's folder before writing anything into it (not even the lock).
  if (classify(root, out) === "empty" && options.create === false) throw emptyFolder(out);
  checkWritable(root, out);
  const lock = DatasetLock.acquire(root, log);
  try {
    // Again under the lock: another opener may have created the dataset meanwhile.
    const kind = classify(root, out);
    refuseImageLinks(root, out);
    if (kind !== "dataset") writeManifest(root);
    if (kind === "legacy") log(`dataset: ${root} was made by an earlier tabfarm; marked it with ${MANIFEST_FILE}`);
    const writer = new DatasetWriter(root, options);
    const ledger = openQueue(root, out, options);
    let queue: OpenDataset["queue"] = ledger;
    try {
      if (options.shared) queue = new ShardQueue(options.shared.queue, ledger);
      await checkQueueKind(root, out, ledger, options.shared?.describe, log);
    } catch (err) {
      await ledger.close();
      throw err;
    }
    let closed = false;
    return {
      root, created: kind === "empty", writer, queue, ledger,
      async close() {
        if (closed) return;
        closed = true;
        await queue.close();
        lock.release();
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/**
 * Checks that `out` is a tabfarm dataset and returns its queue, without the lock: for reading
 * (`status`) while a farm may be writing it.
 */
export function inspectDataset(out: string): { root: string; queue: SqliteQueue } {
  const root = resolveFolder(out, false);
  const kind = classify(root, out);
  if (kind === "empty") throw emptyFolder(out);
  // Opening a missing queue would create it: a reader creates nothing.
  if (!fs.existsSync(path.join(root, QUEUE_FILE))) throw new DatasetOpenError(`--out ${out}: the dataset has no ${QUEUE_FILE} yet (no run has queued jobs in it)`);
  return { root, queue: openQueue(root, out) };
}

const emptyFolder = (out: string) => new DatasetOpenError(`--out ${out}: the folder is empty, not a tabfarm dataset`);

/** The real path of the folder `out`, created when missing (if allowed); refuses anything that is not a usable folder. */
function resolveFolder(out: string, create: boolean): string {
  if (typeof out !== "string" || out.trim() === "") {
    throw new DatasetOpenError(`--out ${JSON.stringify(out)}: an empty path names no folder; give the dataset folder, e.g. --out out/run1`);
  }
  try {
    return resolveFolderOrThrow(out, create);
  } catch (err) {
    if (err instanceof DatasetOpenError) throw err;
    throw new DatasetOpenError(`--out ${out}: cannot use the folder: ${describeFsError(err)}`);
  }
}

function resolveFolderOrThrow(out: string, create: boolean): string {
  const full = path.resolve(out);
  let stat = fs.statSync(full, { throwIfNoEntry: false });
  if (!stat) {
    const link = fs.lstatSync(full, { throwIfNoEntry: false });
    if (link?.isSymbolicLink()) throw new DatasetOpenError(`--out ${out}: a symbolic link to ${fs.readlinkSync(full)}, which does not exist`);
    if (!create) throw new DatasetOpenError(`--out ${out}: no such folder`);
    try {
      makeFolder(full);
    } catch (err) {
      throw new DatasetOpenError(`--out ${out}: cannot create the folder: ${describeFsError(err)}`);
    }
    stat = fs.statSync(full);
  }
  if (!stat.isDirectory()) throw new DatasetOpenError(`--out ${out}: ${full} is a file, not a folder`);
  return fs.realpathSync(full);
}

/**
 * mkdir -p, one level at a time, so a failure is the real cause. Node's recursive mkdir reports some
 * failures (EROFS) as ENOENT, and under /proc (where mkdir says ENOENT though the parent exists) it
 * retries forever.
 */
function makeFolder(full: string): void {
  const missing: string[] = [];
  for (let dir = full; !fs.lstatSync(dir, { throwIfNoEntry: false }); dir = path.dirname(dir)) missing.unshift(dir);
  for (const dir of missing) {
    try {
      fs.mkdirSync(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST" && fs.statSync(dir).isDirectory()) continue; // another opener made it meanwhile
      if (code === "ENOENT") throw new Error(`the file system does not let a folder be created at ${dir} (ENOENT, though its parent exists)`);
      throw err;
    }
  }
}

/**
 * "empty" (nothing but a lock: a new dataset), "dataset" (tabfarm.json), "legacy" (an older tabfarm's
 * queue.sqlite, no tabfarm.json); anything else is refused. Refuses links at tabfarm's own names.
 */
function classify(root: string, out: string): "empty" | "dataset" | "legacy" {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch (err) {
    throw new DatasetOpenError(`--out ${out}: cannot read the folder: ${describeFsError(err)}`);
  }
  for (const entry of entries) {
    const own = OWN_FILES.includes(entry.name);
    if ((own || entry.name === IMAGES_DIR) && entry.isSymbolicLink()) refuseLink(root, entry.name, out);
    if (own && !entry.isFile()) throw new DatasetOpenError(`--out ${out}: ${entry.name} is not a regular file; tabfarm writes it as one: remove it or choose another --out`);
  }
  const names = entries.map((e) => e.name);
  if (names.every(isOpenerFile)) return "empty";
  if (names.includes(MANIFEST_FILE)) {
    readManifest(root, out);
    return "dataset";
  }
  if (names.includes(QUEUE_FILE) && hasTabfarmSchema(path.join(root, QUEUE_FILE))) return "legacy";
  const shown = names.filter((n) => !isOpenerFile(n)).sort();
  throw new DatasetOpenError(
    `--out ${out}: the folder is not empty and is not a tabfarm dataset (no ${MANIFEST_FILE}, no tabfarm ${QUEUE_FILE}); ` +
      `it holds ${shown.slice(0, 5).join(", ")}${shown.length > 5 ? ` and ${shown.length - 5} more` : ""}. ` +
      `tabfarm writes only into an empty folder or a dataset it made: choose another --out.`,
  );
}

function readManifest(root: string, out: string): DatasetManifest {
  const file = path.join(root, MANIFEST_FILE);
  let manifest: DatasetManifest;
  try {
    manifest = JSON.parse(readSmallFile(file, MAX_MANIFEST_BYTES).text);
  } catch (err) {
    throw new DatasetOpenError(`--out ${out}: ${MANIFEST_FILE} can't be read: ${err instanceof SyntaxError || err instanceof RangeError ? err.message : describeFsError(err)}`);
  }
  if (manifest?.format !== MANIFEST_FORMAT || !Number.isInteger(manifest.version)) {
    throw new DatasetOpenError(`--out ${out}: ${MANIFEST_FILE} is not a tabfarm dataset manifest (expected "format": "${MANIFEST_FORMAT}")`);
  }
  if (manifest.version > MANIFEST_VERSION) {
    throw new DatasetOpenError(`--out ${out}: the dataset has format version ${manifest.version}; this tabfarm reads up to ${MANIFEST_VERSION}: use a newer tabfarm`);
  }
  return manifest;
}

/** The shared queue (password left out) whose run `root` is a shard of; undefined for a dataset with its own queue. */
export function readSharedQueue(root: string): string | undefined {
  const manifest = readManifest(root, root);
  return typeof manifest.sharedQueue === "string" ? manifest.sharedQueue : undefined;
}

/**
 * A shard stays a shard, and a dataset with its own unfinished queue is not turned into one: either way
 * jobs would be rendered twice or never. Marks a folder that becomes a shard in tabfarm.json.
 */
async function checkQueueKind(root: string, out: string, ledger: SqliteQueue, shared: string | undefined, log: (line: string) => void): Promise<void> {
  const manifest = readManifest(root, out);
  if (manifest.sharedQueue !== undefined && shared === undefined) {
    throw new DatasetOpenError(
      `--out ${out}: this dataset is a shard of a run on the shared queue ${manifest.sharedQueue}: its ${QUEUE_FILE} lists only the jobs this ` +
        `server took. Resume it with --queue (the same queue), or merge the shards: npm run farm -- merge SHARD... --into DIR`,
    );
  }
  if (shared === undefined || manifest.sharedQueue === shared) return;
  if (manifest.sharedQueue === undefined) {
    const c = await ledger.counts();
    const unfinished = c.pending + c.leased + c.failed;
    if (unfinished > 0) {
      throw new DatasetOpenError(
        `--out ${out}: this dataset has its own queue with ${unfinished} unfinished job(s) (${c.pending} pending, ${c.leased} leased, ${c.failed} failed); ` +
          `a --queue run would leave them there. Finish them without --queue, or give the shared run another --out.`,
      );
    }
  } else {
    log(`dataset: ${out} was a shard of ${manifest.sharedQueue}; it is now one of ${shared}`);
  }
  writeSmallFile(path.join(root, MANIFEST_FILE), JSON.stringify({ ...manifest, sharedQueue: shared }, null, 2) + "\n");
}

/** tabfarm.json is a few dozen bytes; a bigger one is not ours, and is not read into memory. */
const MAX_MANIFEST_BYTES = 64 * 1024;

/** Marks `root` as a tabfarm dataset (what a new dataset gets first; tests use it to prepare one). */
export function writeManifest(root: string): void {
  const manifest: DatasetManifest = { format: MANIFEST_FORMAT, version: MANIFEST_VERSION, created: new Date().toISOString() };
  writeSmallFile(path.join(root, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
}

/** Whether `file` is an SQLite database with tabfarm's queue tables (a dataset made before tabfarm.json existed). */
function hasTabfarmSchema(file: string): boolean {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    return isTabfarmQueue(db);
  } catch {
    return false;
  } finally {
    db?.close();
  }
}

/** Creating a file is the only reliable test (permission bits say nothing for root, nor about a read-only mount). */
function checkWritable(root: string, out: string): void {
  const probe = path.join(root, `${WRITABLE_PROBE}${randomBytes(6).toString("hex")}.tmp`); // random: pids are reused
  try {
    fs.closeSync(fs.openSync(probe, "wx"));
    fs.rmSync(probe);
  } catch (err) {
    throw new DatasetOpenError(`--out ${out}: cannot write into ${root}: ${describeFsError(err)}`);
  }
}

/** images/ and each images/<job> must be real folders: a link there would take image writes elsewhere. */
function refuseImageLinks(root: string, out: string): void {
  const images = path.join(root, IMAGES_DIR);
  if (!fs.lstatSync(images, { throwIfNoEntry: false })?.isDirectory()) return; // missing, or a file: writes fail and are reported
  const dir = fs.opendirSync(images);
  try {
    for (let entry = dir.readSync(); entry; entry = dir.readSync()) {
      if (entry.isSymbolicLink()) refuseLink(root, path.join(IMAGES_DIR, entry.name), out);
    }
  } finally {
    dir.closeSync();
  }
}

function refuseLink(root: string, relative: string, out: string): never {
  let target = "?";
  try {
    target = fs.readlinkSync(path.join(root, relative));
  } catch {}
  throw new DatasetOpenError(
    `--out ${out}: ${relative} is a symbolic link (to ${target}); tabfarm never writes through links inside a dataset: ` +
      `replace it with a real file or folder, or choose another --out`,
  );
}

function openQueue(root: string, out: string, options: SqliteQueueOptions = {}): SqliteQueue {
  try {
    return new SqliteQueue(path.join(root, QUEUE_FILE), options);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new DatasetOpenError(`--out ${out}: cannot open ${QUEUE_FILE}: ${(err as Error).message}${code ? ` (${code})` : ""}`);
  }
}

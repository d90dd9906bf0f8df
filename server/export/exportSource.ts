// What both exports (WebDataset shards, COCO JSON) share: the frames they read (those `verify` passed, no
// more), the dataset's files by the paths lines give, where an export may be written (never inside the
// dataset folder: a farm resuming there, or `verify`, must find only its own files), the folders it
// creates on the way, and how a file is written so that a link or a stale file in its way is never
// written through.
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { FrameRecord } from "../dataset/FrameRecord.js";
import { FRAMES_INDEX, readFrameLines } from "../dataset/readDataset.js";
import { replaceFile } from "../dataset/DatasetWriter.js";
import { DatasetFiles } from "../dataset/verifyDataset.js";

/**
 * A refusal: a bad target or option, another export writing the same target, or more shards than names
 * sort in order; what the export had written is removed. The CLI prints "tabfarm: " and its message, and
 * exits 2 (as for any error export throws: a write failure too); the class tells a caller it was refused.
 */
export class ExportRefused extends Error {}

/** A verified line: its record and its text as written (without its newline). */
export interface VerifiedLine {
  record: FrameRecord;
  text: string;
}

/** What `verify` passed: the first `lines` lines of frames.jsonl, as the file was when verify began (its identity). */
export interface VerifiedIndex {
  lines: number;
  /** frames.jsonl's device and inode before verify read it; undefined when there was none. */
  identity: string | undefined;
}

/** frames.jsonl's identity (device and inode): appends keep it; a rewrite (a farm's compaction) changes it. */
export function indexIdentity(root: string): string | undefined {
  const stat = fs.statSync(path.join(root, FRAMES_INDEX), { throwIfNoEntry: false });
  return stat && `${stat.dev}:${stat.ino}`;
}

/** frames.jsonl held open by an export: its identity, and release() to close it. */
export interface HeldIndex {
  identity: string | undefined;
  release(): void;
}

/**
 * Opens frames.jsonl and keeps it open until release(): while a file is open its inode is not freed, so a
 * file that replaces it (the export holds the dataset's lock, so not a farm's) can't be given the same
 * inode number and pass for it. Never follows a link nor waits on a FIFO; one that can't be opened is not
 * held (verify reports it), and its identity is read as indexIdentity does.
 */
export function holdIndex(root: string): HeldIndex {
  let fd: number;
  try {
    fd = fs.openSync(path.join(root, FRAMES_INDEX), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return { identity: indexIdentity(root), release() {} };
  }
  const stat = fs.fstatSync(fd);
  let open = true;
  return {
    identity: `${stat.dev}:${stat.ino}`,
    release() {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

/**
 * The lines `verify` read and passed. Lines a farm appends after that are not exported (they were not
 * verified). Every pass first checks that frames.jsonl is the file verify read: a file that replaces it
 * (a farm compacts it at its start and end; export holds the dataset's lock, so only another program
 * can) would give other lines at the same numbers. Throws
 * if it was replaced or a line is not a record (the dataset changed since it was verified).
 */
export async function* verifiedLines(root: string, index: VerifiedIndex): AsyncGenerator<VerifiedLine> {
  const { lines } = index;
  let read = 0;
  if (lines <= 0) return;
  if (indexIdentity(root) !== index.identity) {
    throw new Error(`${path.join(root, FRAMES_INDEX)}: was replaced after it was verified (by a program other than tabfarm: no farm runs during an export): export again`);
  }
  for await (const { line, record, text, error } of readFrameLines(root)) {
    if (!record || text === undefined) throw new Error(`${path.join(root, FRAMES_INDEX)}:${line}: ${error} (the dataset changed after it was verified)`);
    yield { record, text };
    if (++read === lines) return;
  }
  throw new Error(`${path.join(root, FRAMES_INDEX)}: has ${read} line(s), but verify read ${lines} (the dataset changed after it was verified)`);
}

/**
 * A file of the dataset by the path a (verified) line gives, read as verify reads it: no folder on the
 * way and not the file itself may be a link, and a FIFO is not waited on. Each call checks the folders
 * afresh (a folder swapped for a link after verify is refused, naming it).
 */
export async function readDatasetFile(root: string, relative: string): Promise<Buffer> {
  const read = await new DatasetFiles(root).read(relative, () => undefined);
  if ("fault" in read) throw new Error(`${path.join(root, relative)}: ${read.fault} (the dataset changed after it was verified)`);
  return read.bytes;
}

/** Where an export will be written: its absolute path, and the folders on the way that don't exist yet. */
export interface ExportTarget {
  /** The target's absolute path, through the links of the folders that exist. */
  path: string;
  /** The folders that don't exist yet, outermost first: created by createFolders. */
  missing: string[];
}

/**
 * Where `target` will be, refused when it is the dataset folder `root` (a real path) or inside it, or
 * (`kind` "file") when it ends in a path separator. `what` names the option ("--webdataset"). Writes nothing.
 */
export function exportTarget(root: string, target: string, what: string, kind: "folder" | "file"): ExportTarget {
  if (typeof target !== "string" || target.trim() === "") throw new ExportRefused(`${what} ${JSON.stringify(target)}: an empty path names nothing`);
  // path.resolve drops a trailing "/" (and resolves a last "." or ".."): "newdir/" would be written as a file named newdir.
  const last = target.split(path.sep).at(-1);
  if (kind === "file" && (last === "" || last === "." || last === "..")) {
    throw new ExportRefused(`${what} ${target}: names a folder (it ends in ${JSON.stringify(last || path.sep)}); give a file name (e.g. ${path.join(target, "coco.json")})`);
  }
  const { existing, rest } = splitAtExisting(path.resolve(target));
  let resolved: string;
  try {
    resolved = fs.realpathSync(existing);
  } catch (err) {
    throw new ExportRefused(`${what} ${target}: ${existing} cannot be resolved (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; a link to nowhere?)`);
  }
  const real = path.join(resolved, ...rest);
  if (real === root || real.startsWith(root + path.sep)) {
    throw new ExportRefused(`${what} ${target}: is inside the dataset folder ${root}; write exports elsewhere (the dataset folder holds only what the farm writes)`);
  }
  const folders = kind === "folder" ? rest : rest.slice(0, -1);
  const missing = folders.map((_, i) => path.join(resolved, ...folders.slice(0, i + 1)));
  return { path: real, missing };
}

/**
 * `full` (absolute) as the longest part that exists and the names after it: links are resolved through the
 * part that exists, the rest is created as named. lstat, not exists: a dangling link exists (writing through
 * it would follow it wherever it points).
 */
export function splitAtExisting(full: string): { existing: string; rest: string[] } {
  let existing = full;
  const rest: string[] = [];
  while (!fs.lstatSync(existing, { throwIfNoEntry: false }) && path.dirname(existing) !== existing) {
    rest.unshift(path.basename(existing));
    existing = path.dirname(existing);
  }
  return { existing, rest };
}

/**
 * Creates `folders` (outermost first) one level at a time; returns those it created. Not fs.mkdir's
 * `recursive`: that loops forever at 100 % CPU where every mkdir answers ENOENT (under /proc), and
 * reports ENOENT for a read-only or full disk. A failure removes what it created and throws ExportRefused
 * naming `target` and the real error.
 */
export function createFolders(folders: string[], target: string, what: string): string[] {
  const created: string[] = [];
  for (const folder of folders) {
    try {
      fs.mkdirSync(folder);
      created.push(folder);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST" && fs.lstatSync(folder).isDirectory()) continue; // made meanwhile
      removeCreatedFolders(created);
      throw new ExportRefused(`${what} ${target}: cannot create the folder ${folder}: ${(err as Error).message}`);
    }
  }
  return created;
}

/** Removes folders createFolders made, innermost first, each only if empty (never what someone put there). */
export function removeCreatedFolders(created: string[]): void {
  for (const folder of [...created].reverse()) {
    try {
      fs.rmdirSync(folder);
    } catch {
      // not empty (someone's files, or whole shards) or gone: left as it is
    }
  }
}

/** What a file being written is called until it is complete: "<name>.partial". */
export const PARTIAL = ".partial";

/**
 * Writes `file` as `file.partial`, renamed over `file` when `write` finished; the partial file is removed
 * if it fails. The caller holds the target's claim (./exportClaim.ts), so a `file.partial` already there
 * is no live export's (a killed export's, or a link someone left): it is removed first, never opened
 * (opening it would write through a link into whatever it names).
 */
export async function writeThenRename<T>(file: string, write: (handle: fsp.FileHandle) => Promise<T>): Promise<T> {
  const partial = file + PARTIAL;
  await fsp.rm(partial, { force: true });
  return replaceFile(file, write, { temp: partial, mode: 0o644 });
}

/** Throws the abort reason (a FarmStopped for a signal) once `signal` is aborted: checked between pieces of work. */
export function throwIfStopped(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

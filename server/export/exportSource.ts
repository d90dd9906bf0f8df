// What both exports (WebDataset shards, COCO JSON) share: the frames they read (those `verify` passed, no
// more), the dataset's files by the paths lines give, and where an export may be written (never inside
// the dataset folder: a farm resuming there, or `verify`, must find only its own files).
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { FrameRecord } from "../dataset/FrameRecord.js";
import { FRAMES_INDEX, readFrameLines } from "../dataset/readDataset.js";

/** A refusal before anything is written: a bad target or option (the CLI exits 2 with its message). */
export class ExportRefused extends Error {}

/**
 * The first `lines` records of the dataset at `root`: the lines `verify` read and passed. Lines a farm
 * appends after that are not exported (they were not verified). Throws if a line is not a record (the
 * dataset changed since it was verified).
 */
export async function* verifiedRecords(root: string, lines: number): AsyncGenerator<FrameRecord> {
  let read = 0;
  if (lines <= 0) return;
  for await (const { line, record, error } of readFrameLines(root)) {
    if (!record) throw new Error(`${path.join(root, FRAMES_INDEX)}:${line}: ${error} (the dataset changed after it was verified)`);
    yield record;
    if (++read === lines) return;
  }
  throw new Error(`${path.join(root, FRAMES_INDEX)}: has ${read} line(s), but verify read ${lines} (the dataset changed after it was verified)`);
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

/** A file of the dataset by the path a (verified) line gives: opened without following a link or waiting on a FIFO. */
export async function readDatasetFile(root: string, relative: string): Promise<Buffer> {
  const handle = await fsp.open(path.join(root, relative), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    if (!(await handle.stat()).isFile()) throw new Error(`${relative} is not a regular file (the dataset changed after it was verified)`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/**
 * The absolute path `target` will have (through links of the folders that exist), refused when it is the
 * dataset folder `root` (a real path) or inside it. `what` names the option ("--webdataset").
 */
export function exportTargetOutside(root: string, target: string, what: string): string {
  if (typeof target !== "string" || target.trim() === "") throw new ExportRefused(`${what} ${JSON.stringify(target)}: an empty path names nothing`);
  const full = path.resolve(target);
  // Resolve links through the part that exists; the rest is created as named.
  let existing = full;
  const rest: string[] = [];
  // lstat, not exists: a dangling link exists (writing through it would follow it wherever it points).
  while (!fs.lstatSync(existing, { throwIfNoEntry: false }) && path.dirname(existing) !== existing) {
    rest.unshift(path.basename(existing));
    existing = path.dirname(existing);
  }
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
  return real;
}

/** What a file being written is called until it is complete: "<name>.partial". */
export const PARTIAL = ".partial";

/** Writes `file` as `file.partial`, renamed over `file` when `write` finished; the partial file is removed if it fails. */
export async function writeThenRename<T>(file: string, write: (handle: fsp.FileHandle) => Promise<T>): Promise<T> {
  const partial = file + PARTIAL;
  const handle = await fsp.open(partial, "w", 0o644);
  try {
    const result = await write(handle);
    await handle.sync();
    await handle.close();
    await fsp.rename(partial, file);
    return result;
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fsp.rm(partial, { force: true });
    throw err;
  }
}

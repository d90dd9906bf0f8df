// `export --webdataset DEST`: the dataset as .tar shards in WebDataset's convention. One sample per frame:
// its key is "<job>/<frame as 6 digits>", a "." in the job id written as "%2E" (job ids never hold "%" or
// "/", so keys can't collide). WebDataset itself would cope (its base_plus_ext splits at the first dot of
// the file name, keeping dots in the folder part), but the issue asks for keys without dots, and other
// readers split at the first dot of the whole path (a `tar` listing split at the first dot of each name,
// loaders that take the key up to it): "j.v2/000000.rgb.png" would be key "j" there. Its members are
// "<key>.<layer>.<ext>" for every file the frame wrote (rgb.png or rgb.jpg/rgb.webp, depth.png, depth32.npy,
// mask.png, class.png, normal.png) and "<key>.json", the frame's frames.jsonl record.
//
// Shards hold whole samples: a new one starts before a sample would take it past the shard size (a sample
// bigger than that gets a shard of its own). Each sample is packed by tar-stream into memory (one frame's
// files at a time), measured, then appended to the shard file; a shard ends with tar's two zero blocks.
// Entries are reproducible (mtime 0, mode 0644, uid/gid 0, no user names): the same dataset exported twice
// gives byte-identical shards.
//
// Shard names have 6 digits (shard-000000.tar …), so that sorting them by name (ls, a glob, sorted(glob))
// is their order: an export that would need shard 1,000,000 is refused (a larger --shard-size needs fewer).
//
// An export is whole or absent: the shards are written into a staging folder inside DEST
// (.tabfarm-export-<pid>-<random>/) and moved into DEST only once all are written. An export that fails or
// is stopped by a signal removes its staging folder; one killed outright (SIGKILL, a crash) leaves it, and
// the next export into DEST removes it. One export writes into DEST at a time: it holds DEST's claim
// (DEST/.tabfarm-export.lock, ./exportClaim.ts), so a staging folder its holder did not make is a dead one's.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import tar from "tar-stream";
import { LAYERS } from "../../protocol/layers.js";
import { EXT, frameStem, writeAll } from "../dataset/DatasetWriter.js";
import type { FrameRecord } from "../dataset/FrameRecord.js";
import { recordFiles } from "../dataset/readDataset.js";
import { claimTarget, shardFolderLock, type ExportClaim } from "./exportClaim.js";
import { createFolders, ExportRefused, PARTIAL, readDatasetFile, removeCreatedFolders, throwIfStopped, verifiedLines, type VerifiedIndex, type VerifiedLine, writeThenRename } from "./exportSource.js";

export const DEFAULT_SHARD_BYTES = 1e9;
export const MIN_SHARD_BYTES = 1e3;
export const MAX_SHARD_BYTES = 1e12;

const UNITS: Record<string, bigint> = {
  "": 1n, b: 1n,
  kb: 10n ** 3n, mb: 10n ** 6n, gb: 10n ** 9n, tb: 10n ** 12n,
  kib: 2n ** 10n, mib: 2n ** 20n, gib: 2n ** 30n, tib: 2n ** 40n,
};

/**
 * "1GB" (10⁹ bytes), "500MB", "64KiB" (65,536), "1.5GiB", "250000000": a number (decimals only with a unit)
 * and an optional unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), any case,
 * from 1 KB to 1 TB. Throws an Error saying what it takes otherwise.
 */
export function parseShardSize(text: string): number {
  const match = /^\s*([0-9]+)(?:\.([0-9]+))?\s*([a-z]*)\s*$/i.exec(text);
  const unit = match && Object.hasOwn(UNITS, match[3]!.toLowerCase()) ? UNITS[match[3]!.toLowerCase()] : undefined;
  const takes = "give bytes, or a number with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 1GB or 64MiB";
  if (!match || unit === undefined) throw new Error(`'${text}' is not a size: ${takes}`);
  const [, whole, decimals = ""] = match;
  if (unit === 1n && match[2] !== undefined) throw new Error(`'${text}' is not a whole number of bytes: ${takes}`);
  // Exactly, from the digits: 1.001KB is 1001 bytes (a float gives 1000.9999…); only a real fraction of a byte is dropped.
  const bytes = (BigInt(whole! + decimals) * unit!) / 10n ** BigInt(decimals.length);
  if (!(bytes >= BigInt(MIN_SHARD_BYTES) && bytes <= BigInt(MAX_SHARD_BYTES))) throw new Error(`'${text}' is ${bytes} bytes; a shard size is from 1KB (1000 bytes) to 1TB`);
  return Number(bytes);
}

/** A frame's sample key: "<job>/<frame as 6 digits>", with any "." of the job id as "%2E" (a key holds no dot). */
export function sampleKey(job: string, frame: number): string {
  return `${job.replaceAll(".", "%2E")}/${frameStem(frame)}`;
}

/** The member names of a frame's sample, with the dataset path each comes from (the json member has none). */
export function sampleMembers(record: FrameRecord): { name: string; file?: string }[] {
  const key = sampleKey(record.job, record.frame);
  const members: { name: string; file?: string }[] = recordFiles(record).map(({ layer, path: file }) => {
    const declared = LAYERS[layer].file!.ext;
    // rgb's extension is the line's format's, as the farm names its files (png, jpg, webp): not the file
    // name's, which an old or hand-made line may give in upper case or without one (WebDataset decodes by it).
    const ext = declared === "format" ? formatExt(record) : declared;
    return { name: `${key}.${layer}.${ext}`, file };
  });
  members.push({ name: `${key}.json` });
  return members;
}

function formatExt(record: FrameRecord): string {
  const format = String(record.format);
  if (!Object.hasOwn(EXT, format) || format === "npy") throw new Error(`${record.job}/${record.frame}: "format" ${JSON.stringify(record.format)} is not png, jpeg or webp (the dataset changed after it was verified)`);
  return EXT[format]!;
}

/** Shards an export may write: their names have 6 digits, and shard-1000000.tar would sort before shard-999999.tar. */
export const MAX_SHARDS = 1_000_000;

/** The name of shard `index` (from 0); ExportRefused from shard MAX_SHARDS on. */
export function shardName(index: number): string {
  if (index >= MAX_SHARDS) throw new ExportRefused("more than 1,000,000 shards: give a larger --shard-size");
  return `shard-${String(index).padStart(6, "0")}.tar`;
}
const isShardFile = (name: string) => name.startsWith("shard-") && name.endsWith(".tar");

/** The staging folder an export writes its shards into: ".tabfarm-export-<pid>-<8 hex digits>". */
const STAGING = /^\.tabfarm-export-\d+-[0-9a-f]{8}$/;
const stagingName = () => `.tabfarm-export-${process.pid}-${randomBytes(4).toString("hex")}`;

/** The staging folders in `dest`: real folders (not links) with a staging name. */
const stagingFolders = (dest: string) => fs.readdirSync(dest).filter((name) => STAGING.test(name) && fs.lstatSync(path.join(dest, name)).isDirectory());

/**
 * Refuses a DEST that can't take shards: a file, or a folder already holding shard-*.tar files (a second
 * export must not mix with stale shards) unless `overwrite`. Writes nothing. (Another export writing into
 * DEST is refused by DEST's claim.)
 */
export function checkShardFolder(dest: string, overwrite: boolean, what = "--webdataset"): void {
  const stat = fs.statSync(dest, { throwIfNoEntry: false });
  if (!stat) return;
  if (!stat.isDirectory()) throw new ExportRefused(`${what} ${dest}: is a file, not a folder`);
  const stale = fs.readdirSync(dest).filter(isShardFile).sort();
  const notFile = stale.find((name) => !fs.lstatSync(path.join(dest, name)).isFile());
  if (notFile) throw new ExportRefused(`${what} ${dest}: ${notFile} is not a file; move it away (export writes its shards under that name)`);
  if (stale.length > 0 && !overwrite) {
    throw new ExportRefused(
      `${what} ${dest}: already holds ${stale.length} shard(s) (${stale.slice(0, 3).join(", ")}${stale.length > 3 ? ", …" : ""}); ` +
        `a new export must not mix with them: give another folder, or --overwrite to remove them first`,
    );
  }
}

/** Claims `dest` (an existing folder) for one export: refuses while another export writes into it. */
export const claimShardFolder = (dest: string): ExportClaim => claimTarget(shardFolderLock(dest), "--webdataset", dest, "folder");

/** Tar's end of archive: two zero blocks. */
const END_OF_ARCHIVE = 1024;
const ENTRY = { mode: 0o644, uid: 0, gid: 0, uname: "", gname: "", mtime: new Date(0), type: "file" } as const;

/** A frame's sample as tar entries (headers, data and padding; no end of archive), packed by tar-stream. */
interface PackedSample {
  chunks: Buffer[];
  length: number;
}

async function packSample(root: string, { record, text }: VerifiedLine): Promise<PackedSample> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  try {
    for (const member of sampleMembers(record)) {
      // The json member is the line as written: a re-serialised record would lose digits of big integers and "1.50"'s zero.
      const bytes = member.file === undefined ? Buffer.from(text) : await readDatasetFile(root, member.file);
      pack.entry({ ...ENTRY, name: member.name, size: bytes.length }, bytes);
    }
    pack.finalize();
  } catch (err) {
    pack.destroy();
    await collected.catch(() => undefined); // "destroyed": the fault is err
    throw err;
  }
  await collected;
  // Drop the end of archive tar-stream wrote (the shard gets one at its end), without copying the entries.
  let length = chunks.reduce((sum, chunk) => sum + chunk.length, 0) - END_OF_ARCHIVE;
  for (let drop = END_OF_ARCHIVE; drop > 0; ) {
    const last = chunks.pop();
    if (!last || last.subarray(Math.max(0, last.length - drop)).some((b) => b !== 0)) throw new Error("tar-stream did not end the archive with two zero blocks");
    if (last.length > drop) chunks.push(last.subarray(0, last.length - drop));
    drop -= Math.min(drop, last.length);
  }
  return { chunks, length };
}

export interface WebDatasetOptions {
  /** Largest shard in bytes (one sample bigger than that gets a shard of its own). */
  shardBytes: number;
  /** Replace the shard-*.tar files DEST holds (removed only once the new shards are all written). */
  overwrite: boolean;
  /** Frames to export: the lines of frames.jsonl `verify` passed. */
  index: VerifiedIndex;
  /** Stops the export (it throws the signal's reason, leaving DEST as it was) once aborted. */
  signal?: AbortSignal;
  /** DEST's claim, when the caller took it (runExport does, before verify); else writeWebDataset claims DEST while it writes. */
  claim?: ExportClaim;
}

export interface WebDatasetResult {
  shards: number;
  samples: number;
  bytes: number;
}

/**
 * Writes the frames of the dataset at `root` (a verified one) as shards into `dest` (checked by
 * checkShardFolder; created if missing, its parent must exist). On a failure or a stop, DEST is as it was.
 */
export async function writeWebDataset(root: string, dest: string, options: WebDatasetOptions): Promise<WebDatasetResult> {
  const created = fs.existsSync(dest) ? [] : createFolders([dest], dest, "--webdataset");
  let claim: ExportClaim | undefined;
  let staging: string | undefined;
  try {
    claim = options.claim ?? claimShardFolder(dest);
    // A killed export's leftovers (DEST is claimed: no live export's): ours to remove, nothing else is.
    // (Partial shards in DEST are an older tabfarm's.)
    for (const name of stagingFolders(dest)) fs.rmSync(path.join(dest, name), { recursive: true });
    for (const name of fs.readdirSync(dest)) {
      if (name.endsWith(PARTIAL) && isShardFile(name.slice(0, -PARTIAL.length))) fs.rmSync(path.join(dest, name));
    }
    staging = path.join(dest, stagingName());
    fs.mkdirSync(staging);
    const result = await writeShards(root, staging, options);
    throwIfStopped(options.signal);
    // Shards that came while these were written (not by an export: DEST is claimed) must not be mixed with.
    checkShardFolder(dest, options.overwrite);
    // All written: old shards out (with --overwrite), the new ones in, the staging folder gone.
    if (options.overwrite) for (const name of fs.readdirSync(dest)) if (isShardFile(name)) fs.rmSync(path.join(dest, name));
    for (let i = 0; i < result.shards; i++) fs.renameSync(path.join(staging, shardName(i)), path.join(dest, shardName(i)));
    fs.rmdirSync(staging);
    if (claim !== options.claim) claim.release();
    return result;
  } catch (err) {
    // An export cut short is no export: its finished shards would pass for a whole one.
    if (staging !== undefined) fs.rmSync(staging, { recursive: true, force: true });
    if (claim !== options.claim) claim?.release(); // before DEST, which holds its lock file
    removeCreatedFolders(created);
    throw err;
  }
}

/** Writes the shards into `folder` (the staging folder), shard-000000.tar on. */
async function writeShards(root: string, folder: string, options: WebDatasetOptions): Promise<WebDatasetResult> {
  const result: WebDatasetResult = { shards: 0, samples: 0, bytes: 0 };
  const lines = verifiedLines(root, options.index);
  try {
    let pending = await nextSample(root, lines, options.signal);
    while (pending) {
      const file = path.join(folder, shardName(result.shards));
      await writeThenRename(file, async (handle) => {
        let bytes = 0;
        // A shard takes samples while they fit (and always its first one).
        while (pending && (bytes === 0 || bytes + pending.length + END_OF_ARCHIVE <= options.shardBytes)) {
          for (const chunk of pending.chunks) await writeAll(handle, chunk);
          bytes += pending.length;
          result.samples++;
          pending = await nextSample(root, lines, options.signal);
        }
        await writeAll(handle, Buffer.alloc(END_OF_ARCHIVE));
        result.bytes += bytes + END_OF_ARCHIVE;
      });
      result.shards++;
    }
  } finally {
    await lines.return(undefined);
  }
  return result;
}

async function nextSample(root: string, lines: AsyncGenerator<VerifiedLine>, signal: AbortSignal | undefined): Promise<PackedSample | undefined> {
  throwIfStopped(signal);
  const next = await lines.next();
  return next.done ? undefined : packSample(root, next.value);
}

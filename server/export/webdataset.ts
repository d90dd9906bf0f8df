// `export --webdataset DEST`: the dataset as .tar shards in WebDataset's convention. One sample per frame:
// its key is "<job>/<frame as 6 digits>" (a "." in the job id written as "%2E": WebDataset takes a member's
// key up to the first dot of its file name; job ids never hold "%" or "/", so keys can't collide); its
// members are "<key>.<layer>.<ext>" for every file the frame wrote (rgb.png or rgb.jpg/rgb.webp, depth.png,
// depth32.npy, mask.png, class.png, normal.png) and "<key>.json", the frame's frames.jsonl record.
//
// Shards hold whole samples: a new one starts before a sample would take it past the shard size (a sample
// bigger than that gets a shard of its own). Each sample is packed by tar-stream into memory (one frame's
// files at a time), measured, then appended to the shard file; a shard ends with tar's two zero blocks.
// Entries are reproducible (mtime 0, mode 0644, uid/gid 0, no user names): the same dataset exported twice
// gives byte-identical shards. A shard is written as shard-NNNNNN.tar.partial and renamed when complete.
import fs from "node:fs";
import path from "node:path";
import tar from "tar-stream";
import { LAYERS } from "../../protocol/layers.js";
import type { FrameRecord } from "../dataset/FrameRecord.js";
import { recordFiles } from "../dataset/readDataset.js";
import { ExportRefused, PARTIAL, readDatasetFile, verifiedRecords, writeThenRename } from "./exportSource.js";

export const DEFAULT_SHARD_BYTES = 1e9;
export const MIN_SHARD_BYTES = 1e3;
export const MAX_SHARD_BYTES = 1e12;

const UNITS: Record<string, number> = {
  "": 1, b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/**
 * "1GB" (10⁹ bytes), "500MB", "64KiB" (65,536), "1.5GiB", "250000000": a number (decimals only with a unit)
 * and an optional unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), any case,
 * from 1 KB to 1 TB. Throws an Error saying what it takes otherwise.
 */
export function parseShardSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  const takes = "give bytes, or a number with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 1GB or 64MiB";
  if (!match || unit === undefined) throw new Error(`'${text}' is not a size: ${takes}`);
  if (unit === 1 && match[1]!.includes(".")) throw new Error(`'${text}' is not a whole number of bytes: ${takes}`);
  const bytes = Math.floor(Number(match[1]) * unit);
  if (!(bytes >= MIN_SHARD_BYTES && bytes <= MAX_SHARD_BYTES)) throw new Error(`'${text}' is ${bytes} bytes; a shard size is from 1KB (1000 bytes) to 1TB`);
  return bytes;
}

/** A frame's sample key: "<job>/<frame as 6 digits>", with any "." of the job id as "%2E" (a key holds no dot). */
export function sampleKey(job: string, frame: number): string {
  return `${job.replaceAll(".", "%2E")}/${String(frame).padStart(6, "0")}`;
}

/** The member names of a frame's sample, with the dataset path each comes from (the json member has none). */
export function sampleMembers(record: FrameRecord): { name: string; file?: string }[] {
  const key = sampleKey(record.job, record.frame);
  const members: { name: string; file?: string }[] = recordFiles(record).map(({ layer, path: file }) => {
    const declared = LAYERS[layer].file!.ext;
    // rgb's extension is the run's format, as the file has it (png, jpg, webp).
    const ext = declared === "format" ? path.extname(file).slice(1) : declared;
    return { name: `${key}.${layer}.${ext}`, file };
  });
  members.push({ name: `${key}.json` });
  return members;
}

export const shardName = (index: number) => `shard-${String(index).padStart(6, "0")}.tar`;
const isShardFile = (name: string) => name.startsWith("shard-") && name.endsWith(".tar");

/**
 * Refuses a DEST that can't take shards: a file, or a folder already holding shard-*.tar files (a second
 * export must not mix with stale shards) unless `overwrite`. Writes nothing.
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

/** Tar's end of archive: two zero blocks. */
const END_OF_ARCHIVE = 1024;
const ENTRY = { mode: 0o644, uid: 0, gid: 0, uname: "", gname: "", mtime: new Date(0), type: "file" } as const;

/** A frame's sample as tar entries (headers, data and padding; no end of archive), packed by tar-stream. */
interface PackedSample {
  chunks: Buffer[];
  length: number;
}

async function packSample(root: string, record: FrameRecord): Promise<PackedSample> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  try {
    for (const member of sampleMembers(record)) {
      const bytes = member.file === undefined ? Buffer.from(JSON.stringify(record)) : await readDatasetFile(root, member.file);
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
  /** Remove the shard-*.tar files DEST holds first. */
  overwrite: boolean;
  /** Frames to export: the first `lines` lines of frames.jsonl (those `verify` passed). */
  lines: number;
}

export interface WebDatasetResult {
  shards: number;
  samples: number;
  bytes: number;
}

/** Writes the frames of the dataset at `root` (a verified one) as shards into `dest` (checked by checkShardFolder). */
export async function writeWebDataset(root: string, dest: string, options: WebDatasetOptions): Promise<WebDatasetResult> {
  fs.mkdirSync(dest, { recursive: true });
  for (const name of fs.readdirSync(dest)) {
    // Old shards (with --overwrite) and a killed export's partial shards: ours to remove, nothing else is.
    const partialShard = name.endsWith(PARTIAL) && isShardFile(name.slice(0, -PARTIAL.length));
    if ((options.overwrite && isShardFile(name)) || partialShard) fs.rmSync(path.join(dest, name));
  }
  const result: WebDatasetResult = { shards: 0, samples: 0, bytes: 0 };
  const records = verifiedRecords(root, options.lines);
  let pending = await nextSample(root, records);
  try {
    while (pending) {
      const file = path.join(dest, shardName(result.shards));
      await writeThenRename(file, async (handle) => {
        let bytes = 0;
        // A shard takes samples while they fit (and always its first one).
        while (pending && (bytes === 0 || bytes + pending.length + END_OF_ARCHIVE <= options.shardBytes)) {
          const { bytesWritten } = await handle.writev(pending.chunks);
          if (bytesWritten !== pending.length) throw new Error(`${file}${PARTIAL}: wrote ${bytesWritten} of ${pending.length} bytes (is the disk full?)`);
          bytes += pending.length;
          result.samples++;
          pending = await nextSample(root, records);
        }
        await handle.write(Buffer.alloc(END_OF_ARCHIVE));
        result.bytes += bytes + END_OF_ARCHIVE;
      });
      result.shards++;
    }
  } catch (err) {
    // An export cut short is no export: its finished shards would pass for a whole one.
    for (let i = 0; i < result.shards; i++) fs.rmSync(path.join(dest, shardName(i)), { force: true });
    await records.return(undefined);
    throw err;
  }
  return result;
}

async function nextSample(root: string, records: AsyncGenerator<FrameRecord>): Promise<PackedSample | undefined> {
  const next = await records.next();
  return next.done ? undefined : packSample(root, next.value);
}

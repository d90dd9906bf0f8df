// `export --out DIR [--webdataset DEST [--shard-size 1GB]] [--coco FILE.json] [--overwrite]`: writes a dataset
// that `verify` passes as WebDataset shards (server/export/webdataset.ts) and/or COCO JSON (server/export/coco.ts).
// The targets are checked, their missing folders created and each claimed for this export (./exportClaim.ts:
// another export writing it is refused) first (bad ones throw: the CLI exits 2), then the export takes the
// dataset's own lock (server/dataset/datasetLock.ts), as a farm and `retry-failed` do: while a farm runs it is
// refused (DatasetLockedError), and a farm started during the export is refused, so no line is appended and
// frames.jsonl is not compacted while the export reads it. Then the dataset is verified (problems: exit 1,
// nothing written), then the exports read exactly the lines verify passed. An export that fails or is stopped
// (`signal`) leaves no file, and removes the folders it created; its claims and the lock end with it.
import fs from "node:fs";
import path from "node:path";
import { formatProblem, verifyDataset } from "../server/dataset/verifyDataset.js";
import { DatasetLock } from "../server/dataset/datasetLock.js";
import { inspectDataset } from "../server/dataset/openDataset.js";
import { checkCocoFile, claimCocoFile, writeCoco } from "../server/export/coco.js";
import { cocoFileLock, type ExportClaim } from "../server/export/exportClaim.js";
import { createFolders, ExportRefused, exportTarget, holdIndex, removeCreatedFolders, throwIfStopped, type ExportTarget, type HeldIndex } from "../server/export/exportSource.js";
import { checkShardFolder, claimShardFolder, DEFAULT_SHARD_BYTES, parseShardSize, writeWebDataset } from "../server/export/webdataset.js";
import { untilAborted } from "./shutdown.js";

export interface ExportCommandOptions {
  out: string;
  webdataset?: string;
  /** As given: "1GB", "64MiB", bytes (parseShardSize); default 1GB. */
  shardSize?: string;
  coco?: string;
  overwrite?: boolean;
  /** Stops the export (runExport throws its reason, e.g. a FarmStopped from stopOnSignals) once aborted. */
  signal?: AbortSignal;
}

/** Problems of a failed verify that export prints before refusing. */
export const EXPORT_PROBLEMS_SHOWN = 5;

/** Runs `export`; returns the exit code (0 written, 1 the dataset has problems). Bad options or targets, write failures and stops throw. */
export async function runExport(options: ExportCommandOptions, log = (line: string) => console.log(line), note = (line: string) => console.error(line)): Promise<number> {
  if (options.webdataset === undefined && options.coco === undefined) {
    throw new ExportRefused("export: give --webdataset DEST, --coco FILE.json, or both");
  }
  const overwrite = options.overwrite ?? false;
  let shardBytes = DEFAULT_SHARD_BYTES;
  try {
    if (options.shardSize !== undefined) shardBytes = parseShardSize(options.shardSize);
  } catch (err) {
    throw new ExportRefused(`--shard-size: ${(err as Error).message}`);
  }
  // The targets are checked before the (slow) verify. A missing --out holds no target; verify then names it.
  const root = realPathOrSelf(options.out);
  const dest = options.webdataset === undefined ? undefined : exportTarget(root, options.webdataset, "--webdataset", "folder");
  const coco = options.coco === undefined ? undefined : exportTarget(root, options.coco, "--coco", "file");
  if (dest !== undefined && coco !== undefined) refuseOverlap(dest, options.webdataset!, coco, options.coco!);
  if (dest !== undefined) checkShardFolder(dest.path, overwrite);
  if (coco !== undefined) checkCocoFile(coco.path, overwrite);

  // Also before verify: a target the file system can't hold (read-only, full, under /proc) fails fast.
  const created: string[] = [];
  const claims: { dest?: ExportClaim; coco?: ExportClaim } = {};
  let lock: DatasetLock | undefined;
  let held: HeldIndex | undefined;
  /** Targets written completely (each is whole or absent; with both, the first may be written when the second fails). */
  const written: string[] = [];
  let succeeded = false;
  try {
    if (dest !== undefined) created.push(...createFolders(dest.missing, options.webdataset!, "--webdataset"));
    if (coco !== undefined) created.push(...createFolders(coco.missing, options.coco!, "--coco"));
    // Claimed before verify: of two exports to one target, the second is refused before its (slow) verify.
    if (dest !== undefined) claims.dest = claimShardFolder(dest.path);
    if (coco !== undefined) claims.coco = claimCocoFile(coco.path);

    const locked = await lockDataset(options.out, note);
    lock = locked.lock;
    held = holdIndex(locked.root); // before verify reads it: the exports read the file verify read
    const report = await Promise.race([verifyDataset(locked.root), untilAborted(options.signal)]);
    const index = { lines: report.lines, identity: held.identity };
    if (report.problemCount > 0) {
      for (const problem of report.problems.slice(0, EXPORT_PROBLEMS_SHOWN)) log(formatProblem(problem));
      if (report.problemCount > EXPORT_PROBLEMS_SHOWN) log(`… and ${report.problemCount - EXPORT_PROBLEMS_SHOWN} more problem(s) (\`verify --out ${options.out}\` lists them)`);
      log("export reads only a dataset that `verify` passes: fix or re-render, then export again");
      return 1;
    }
    throwIfStopped(options.signal);
    note(`export: verify passed (${report.lines} line(s)); writing the export`);

    if (dest !== undefined) {
      const shards = await writeWebDataset(report.root, dest.path, { shardBytes, overwrite, index, signal: options.signal, claim: claims.dest });
      log(`export: ${dest.path}: ${shards.shards} shard(s), ${shards.samples} sample(s), ${shards.bytes} bytes`);
      written.push(`the shards in ${dest.path}`);
    }
    if (coco !== undefined) {
      const json = await writeCoco(report.root, coco.path, { index, overwrite, signal: options.signal, claim: claims.coco });
      if (json.unlabelled > 0) log(`export: ${json.unlabelled} instances have no class (no label): left out of COCO (give elements a "label")`);
      if (json.labelledWithoutClass > 0) log(`export: ${json.labelledWithoutClass} instances have a label but no class (their lines were not written by a farm): left out of COCO`);
      if (json.framesWithoutMask > 0) log(`export: ${json.framesWithoutMask} frame(s) have no mask file: their annotations have bbox and area but no segmentation (render with --layers mask)`);
      log(`export: ${coco.path}: ${json.images} image(s), ${json.annotations} annotation(s), ${json.categories} categor${json.categories === 1 ? "y" : "ies"}`);
    }
    succeeded = true;
    return 0;
  } finally {
    claims.dest?.release(); // before the folders: DEST holds its lock file
    claims.coco?.release();
    held?.release();
    lock?.release();
    // The folders made for an export that failed, each only if empty (whole shards written before COCO failed stay).
    if (!succeeded) removeCreatedFolders(created);
    if (!succeeded && written.length) note(`export: ${written.join(" and ")} had been written completely before the export ended; kept`);
  }
}

/**
 * The dataset's lock, taken only on a folder `verify` accepts (a missing or foreign --out throws verify's
 * DatasetOpenError: no lock file is made in someone else's folder); a farm holding it throws DatasetLockedError.
 */
async function lockDataset(out: string, log: (line: string) => void): Promise<{ root: string; lock: DatasetLock }> {
  const { root, queue } = inspectDataset(out);
  await queue.close();
  return { root, lock: DatasetLock.acquire(root, log) };
}

/**
 * Refuses a --coco FILE or its lock FILE.lock that is the --webdataset folder, inside it, or holds it (so
 * also FILE or FILE.lock being DEST/.tabfarm-export.lock): the two targets would write or lock each other's files.
 */
function refuseOverlap(dest: ExportTarget, webdataset: string, coco: ExportTarget, cocoOption: string): void {
  const overlap = (a: string, b: string) => a === b || a.startsWith(b + path.sep) || b.startsWith(a + path.sep);
  for (const [file, what] of [[coco.path, "the COCO file"], [cocoFileLock(coco.path), `the COCO file's lock ${cocoFileLock(coco.path)}`]] as const) {
    if (overlap(file, dest.path)) {
      throw new ExportRefused(`--coco ${cocoOption} and --webdataset ${webdataset}: ${what} and the --webdataset folder ${dest.path} overlap (one is, or is inside, the other); give them paths apart`);
    }
  }
}

function realPathOrSelf(folder: string): string {
  try {
    return fs.realpathSync(folder);
  } catch {
    return path.resolve(folder);
  }
}

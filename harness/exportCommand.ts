// `export --out DIR [--webdataset DEST [--shard-size 1GB]] [--coco FILE.json] [--overwrite]`: writes a dataset
// that `verify` passes as WebDataset shards (server/export/webdataset.ts) and/or COCO JSON (server/export/coco.ts).
// The targets are checked first (bad ones throw: the CLI exits 2), then the dataset is verified (problems:
// exit 1, nothing written), then the exports read exactly the lines verify passed.
import fs from "node:fs";
import path from "node:path";
import { formatProblem, verifyDataset } from "../server/dataset/verifyDataset.js";
import { readHolder } from "../server/dataset/datasetLock.js";
import { writeCoco } from "../server/export/coco.js";
import { ExportRefused, exportTargetOutside } from "../server/export/exportSource.js";
import { checkShardFolder, DEFAULT_SHARD_BYTES, parseShardSize, writeWebDataset } from "../server/export/webdataset.js";

export interface ExportCommandOptions {
  out: string;
  webdataset?: string;
  /** As given: "1GB", "64MiB", bytes (parseShardSize); default 1GB. */
  shardSize?: string;
  coco?: string;
  overwrite?: boolean;
}

/** Problems of a failed verify that export prints before refusing. */
export const EXPORT_PROBLEMS_SHOWN = 5;

/** Runs `export`; returns the exit code (0 written, 1 the dataset has problems). Bad options or targets throw. */
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
  const dest = options.webdataset === undefined ? undefined : exportTargetOutside(root, options.webdataset, "--webdataset");
  const coco = options.coco === undefined ? undefined : exportTargetOutside(root, options.coco, "--coco");
  if (dest !== undefined) checkShardFolder(dest, overwrite);
  if (coco !== undefined) checkCocoFile(coco, overwrite);
  if (dest !== undefined && coco !== undefined && (coco === dest || coco.startsWith(dest + path.sep))) {
    throw new ExportRefused(`--coco ${options.coco}: is inside the --webdataset folder; write it elsewhere`);
  }

  const report = await verifyDataset(options.out);
  const holder = readHolder(report.root);
  if (holder) note(`export: note: a farm (pid ${holder.pid} on host ${holder.host}, since ${holder.started}) holds this dataset's lock; only the ${report.lines} line(s) verified now are exported`);
  if (report.problemCount > 0) {
    for (const problem of report.problems.slice(0, EXPORT_PROBLEMS_SHOWN)) log(formatProblem(problem));
    if (report.problemCount > EXPORT_PROBLEMS_SHOWN) log(`… and ${report.problemCount - EXPORT_PROBLEMS_SHOWN} more problem(s) (\`verify --out ${options.out}\` lists them)`);
    log("export reads only a dataset that `verify` passes: fix or re-render, then export again");
    return 1;
  }

  if (dest !== undefined) {
    const written = await writeWebDataset(report.root, dest, { shardBytes, overwrite, lines: report.lines });
    log(`export: ${dest}: ${written.shards} shard(s), ${written.samples} sample(s), ${written.bytes} bytes`);
  }
  if (coco !== undefined) {
    const written = await writeCoco(report.root, coco, { lines: report.lines });
    if (written.unlabelled > 0) log(`export: ${written.unlabelled} instances have no label: left out of COCO (give elements a "label")`);
    if (written.framesWithoutMask > 0) log(`export: ${written.framesWithoutMask} frame(s) have no mask file: their annotations have bbox and area but no segmentation (render with --layers mask)`);
    log(`export: ${coco}: ${written.images} image(s), ${written.annotations} annotation(s), ${written.categories} categor${written.categories === 1 ? "y" : "ies"}`);
  }
  return 0;
}

/** Refuses a COCO target that is a folder, or an existing file unless `overwrite`. */
function checkCocoFile(file: string, overwrite: boolean): void {
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  if (!stat) return;
  if (!stat.isFile()) throw new ExportRefused(`--coco ${file}: is not a file`);
  if (!overwrite) throw new ExportRefused(`--coco ${file}: already exists; give another name, or --overwrite to replace it`);
}

function realPathOrSelf(folder: string): string {
  try {
    return fs.realpathSync(folder);
  } catch {
    return path.resolve(folder);
  }
}

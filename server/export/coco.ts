// `export --coco FILE.json`: the dataset as COCO detection JSON. images: one per frame (frames.jsonl order,
// ids from 1), file_name the rgb path relative to the dataset folder; annotations: one per instance of a
// frame's `instances` that has a class, bbox exactly the instance's [x, y, w, h], area its visible pixels,
// and the instance's pixels of the mask as COCO compressed RLE (./cocoRle.ts); categories: every class id
// there is (manifest.json's class table, and every class an instance has), named by the table, else by an
// instance's label when a class table would take it, else "class <id>": every category_id is a category.
// Instances without a class (the farm gives one to every labelled element) are left out, counted.
//
// Streamed: the images in one pass over frames.jsonl, the annotations in a second, one mask decoded at a
// time; the JSON goes to FILE.partial through a 1 MiB buffer and is renamed to FILE when complete. One export
// writes FILE at a time: it holds FILE's claim (FILE.lock, ./exportClaim.ts), so a FILE.partial there is a
// dead export's (removed), never a live one's.
import fs from "node:fs";
import type fsp from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import { readRunManifest } from "../dataset/RunManifest.js";
import { FRAMES_INDEX, writeAll } from "../dataset/DatasetWriter.js";
import { labelProblem } from "../../protocol/instances.js";
import type { FrameInstance } from "../session/Session.js";
import { instanceRuns, runsToCocoString } from "./cocoRle.js";
import { claimTarget, cocoFileLock, type ExportClaim } from "./exportClaim.js";
import { ExportRefused, readDatasetFile, throwIfStopped, verifiedLines, writeThenRename, type VerifiedIndex } from "./exportSource.js";

export interface CocoOptions {
  /** Frames to export: the lines of frames.jsonl `verify` passed. */
  index: VerifiedIndex;
  /** Stops the export (it throws the signal's reason; no file, no partial file is left) once aborted. */
  signal?: AbortSignal;
  /** Replace FILE if it exists; else an existing FILE is refused (checked again right before FILE is renamed into place). */
  overwrite?: boolean;
  /** FILE's claim, when the caller took it (runExport does, before verify); else writeCoco claims FILE while it writes. */
  claim?: ExportClaim;
}

/** Refuses a COCO target that is not a file, or an existing file unless `overwrite`. Writes nothing. */
export function checkCocoFile(file: string, overwrite: boolean): void {
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  if (!stat) return;
  if (!stat.isFile()) throw new ExportRefused(`--coco ${file}: is not a file`);
  if (!overwrite) throw new ExportRefused(`--coco ${file}: already exists; give another name, or --overwrite to replace it`);
}

/** Claims `file` for one export: refuses while another export writes it. */
export const claimCocoFile = (file: string): ExportClaim => claimTarget(cocoFileLock(file), "--coco", file, "file");

export interface CocoResult {
  images: number;
  annotations: number;
  categories: number;
  /** Instances left out: no class (the farm gives every labelled element one), and no label. */
  unlabelled: number;
  /** Instances left out: a label but no class (a line not written by a farm). */
  labelledWithoutClass: number;
  /** Frames with instances that have a class but no mask file: their annotations have no segmentation. */
  framesWithoutMask: number;
}

/** Text written in pieces, to the file in 1 MiB writes. */
class BufferedText {
  private text = "";
  constructor(private readonly handle: fsp.FileHandle) {}
  async write(piece: string): Promise<void> {
    this.text += piece;
    if (this.text.length >= 2 ** 20) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.text === "") return;
    await writeAll(this.handle, Buffer.from(this.text));
    this.text = "";
  }
}

type ClassedInstance = FrameInstance & { class: number };
const hasClass = (instance: FrameInstance): instance is ClassedInstance => typeof instance.class === "number";

/** The categories: every class id seen, named by the class table, else by the first label a class table would take. */
class Categories {
  private readonly names = new Map<number, string>();
  private readonly unnamed = new Set<number>();
  constructor(table: { id: number; label: string }[]) {
    for (const { id, label } of table) this.names.set(id, label);
  }
  add({ class: id, label }: ClassedInstance): void {
    if (this.names.has(id)) return;
    if (labelProblem(label) === undefined) {
      this.names.set(id, label!);
      this.unnamed.delete(id);
    } else this.unnamed.add(id);
  }
  sorted(): { id: number; name: string; supercategory: string }[] {
    const all: [number, string][] = [...this.names, ...[...this.unnamed].map((id): [number, string] => [id, `class ${id}`])];
    return all.sort(([a], [b]) => a - b).map(([id, name]) => ({ id, name, supercategory: "" }));
  }
}

/** A 16-bit grey PNG's samples (instance ids), top row first. */
async function decodeMask(bytes: Buffer, width: number, height: number, file: string): Promise<Uint16Array> {
  const { data, info } = await sharp(bytes).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 1 || data.length !== width * height * 2) throw new Error(`${file}: decodes to ${info.width}×${info.height}×${info.channels}, not ${width}×${height} 16-bit ids`);
  return new Uint16Array(Uint8Array.from(data).buffer);
}

/** Writes the COCO JSON of the dataset at `root` (a verified one) to `file` (its folder must exist). */
export async function writeCoco(root: string, file: string, options: CocoOptions): Promise<CocoResult> {
  const claim = options.claim ?? claimCocoFile(file);
  try {
    return await writeClaimedCoco(root, file, options);
  } finally {
    if (claim !== options.claim) claim.release();
  }
}

async function writeClaimedCoco(root: string, file: string, options: CocoOptions): Promise<CocoResult> {
  const result: CocoResult = { images: 0, annotations: 0, categories: 0, unlabelled: 0, labelledWithoutClass: 0, framesWithoutMask: 0 };
  await writeThenRename(file, async (handle) => {
    const out = new BufferedText(handle);
    // Reproducible, as the shards are: the dataset's own date (manifest.json's last update, else frames.jsonl's
    // modification time) and its folder's name, not the time of the export or where the folder is.
    const manifest = readRunManifest(root);
    const dated = manifest?.updated ?? fs.statSync(path.join(root, FRAMES_INDEX), { throwIfNoEntry: false })?.mtime.toISOString() ?? null;
    const info = { description: "tabfarm dataset", date_created: dated, tabfarm_dataset: path.basename(root) };
    await out.write(`{"info":${JSON.stringify(info)},"licenses":[],"images":[`);
    // Every class a line names is in manifest.json's table too unless the manifest lagged behind a crash,
    // or the line was written by hand (verify takes any label string).
    const categories = new Categories(manifest?.classes ?? []);
    for await (const { record } of verifiedLines(root, options.index)) {
      throwIfStopped(options.signal);
      const image = { id: ++result.images, file_name: record.file, width: record.width, height: record.height, tabfarm_job: record.job, tabfarm_frame: record.frame };
      await out.write(`${result.images > 1 ? "," : ""}\n${JSON.stringify(image)}`);
      for (const instance of record.instances ?? []) if (hasClass(instance)) categories.add(instance);
    }
    await out.write(`],"annotations":[`);
    let imageId = 0;
    for await (const { record } of verifiedLines(root, options.index)) {
      throwIfStopped(options.signal);
      imageId++;
      const all = record.instances ?? [];
      const classed = all.filter(hasClass);
      for (const instance of all) {
        if (hasClass(instance)) continue;
        if (instance.label === undefined) result.unlabelled++;
        else result.labelledWithoutClass++;
      }
      if (classed.length === 0) continue;
      const maskFile = record.layers?.mask;
      let runs: Map<number, number[]> | undefined;
      if (maskFile === undefined) result.framesWithoutMask++;
      else {
        const mask = await decodeMask(await readDatasetFile(root, maskFile), record.width, record.height, maskFile);
        runs = instanceRuns(mask, record.width, record.height, classed.map((i) => i.id));
      }
      for (const instance of classed) {
        const counts = runs?.get(instance.id);
        const annotation = {
          id: ++result.annotations,
          image_id: imageId,
          category_id: instance.class,
          bbox: instance.bbox,
          area: instance.pixels,
          iscrowd: 0,
          ...(counts ? { segmentation: { size: [record.height, record.width], counts: runsToCocoString(counts) } } : {}),
          tabfarm_instance: instance.id,
          tabfarm_key: instance.key,
        };
        await out.write(`${result.annotations > 1 ? "," : ""}\n${JSON.stringify(annotation)}`);
      }
    }
    const sorted = categories.sorted();
    result.categories = sorted.length;
    await out.write(`],"categories":${JSON.stringify(sorted)}}\n`);
    await out.flush();
    // A FILE that came while this was written (not by an export: FILE is claimed) is not replaced without --overwrite.
    checkCocoFile(file, options.overwrite ?? false);
  });
  return result;
}

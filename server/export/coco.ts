// `export --coco FILE.json`: the dataset as COCO detection JSON. images: one per frame (frames.jsonl order,
// ids from 1), file_name the rgb path relative to the dataset folder; annotations: one per labelled instance
// of a frame's `instances`, bbox exactly the instance's [x, y, w, h], area its visible pixels, and the
// instance's pixels of the mask as COCO compressed RLE (./cocoRle.ts); categories: the class table
// (manifest.json's, and any class a line names). Instances without a label have no category: left out, counted.
//
// Streamed: the images in one pass over frames.jsonl, the annotations in a second, one mask decoded at a
// time; the JSON goes to FILE.partial through a 1 MiB buffer and is renamed to FILE when complete.
import fs from "node:fs";
import type fsp from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import type { FrameRecord } from "../dataset/FrameRecord.js";
import { frameClasses, readRunManifest } from "../dataset/RunManifest.js";
import { instanceRuns, runsToCocoString } from "./cocoRle.js";
import { readDatasetFile, verifiedRecords, writeThenRename } from "./exportSource.js";

export interface CocoOptions {
  /** Frames to export: the first `lines` lines of frames.jsonl (those `verify` passed). */
  lines: number;
}

export interface CocoResult {
  images: number;
  annotations: number;
  categories: number;
  /** Instances left out: they have no label, so no category. */
  unlabelled: number;
  /** Frames with labelled instances but no mask file: their annotations have no segmentation. */
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
    await this.handle.write(this.text);
    this.text = "";
  }
}

/** The instances of a line that have a category (a label and its class), and how many do not. */
function labelledInstances(record: FrameRecord) {
  const all = record.instances ?? [];
  const labelled = all.filter((i) => typeof i.label === "string" && typeof i.class === "number");
  return { labelled, unlabelled: all.length - labelled.length };
}

/** A 16-bit grey PNG's samples (instance ids), top row first. */
async function decodeMask(bytes: Buffer, width: number, height: number, file: string): Promise<Uint16Array> {
  const { data, info } = await sharp(bytes).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 1 || data.length !== width * height * 2) throw new Error(`${file}: decodes to ${info.width}×${info.height}×${info.channels}, not ${width}×${height} 16-bit ids`);
  return new Uint16Array(Uint8Array.from(data).buffer);
}

/** Writes the COCO JSON of the dataset at `root` (a verified one) to `file`. */
export async function writeCoco(root: string, file: string, options: CocoOptions): Promise<CocoResult> {
  const result: CocoResult = { images: 0, annotations: 0, categories: 0, unlabelled: 0, framesWithoutMask: 0 };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await writeThenRename(file, async (handle) => {
    const out = new BufferedText(handle);
    const info = { description: "tabfarm dataset", date_created: new Date().toISOString(), tabfarm_dataset: root };
    await out.write(`{"info":${JSON.stringify(info)},"licenses":[],"images":[`);
    // Every class a line names is in manifest.json's table too unless the manifest lagged behind a crash.
    const categories = new Map((readRunManifest(root)?.classes ?? []).map((c) => [c.id, c.label]));
    for await (const record of verifiedRecords(root, options.lines)) {
      const image = { id: ++result.images, file_name: record.file, width: record.width, height: record.height, tabfarm_job: record.job, tabfarm_frame: record.frame };
      await out.write(`${result.images > 1 ? "," : ""}\n${JSON.stringify(image)}`);
      for (const { id, label } of frameClasses(record)) categories.set(id, label);
    }
    await out.write(`],"annotations":[`);
    let imageId = 0;
    for await (const record of verifiedRecords(root, options.lines)) {
      imageId++;
      const { labelled, unlabelled } = labelledInstances(record);
      result.unlabelled += unlabelled;
      if (labelled.length === 0) continue;
      const maskFile = record.layers?.mask;
      let runs: Map<number, number[]> | undefined;
      if (maskFile === undefined) result.framesWithoutMask++;
      else {
        const mask = await decodeMask(await readDatasetFile(root, maskFile), record.width, record.height, maskFile);
        runs = instanceRuns(mask, record.width, record.height, labelled.map((i) => i.id));
      }
      for (const instance of labelled) {
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
    const sorted = [...categories].sort(([a], [b]) => a - b).map(([id, name]) => ({ id, name, supercategory: "" }));
    result.categories = sorted.length;
    await out.write(`],"categories":${JSON.stringify(sorted)}}\n`);
    await out.flush();
  });
  return result;
}

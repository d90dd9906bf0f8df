// The README's picture of the layers: one frame of a small labelled scene rendered through the real farm
// (startRun + a TabPool tab in headless Chromium) with layers rgb, depth, mask and normal, read back
// from the dataset and laid out side by side in one PNG.
//
//   npx tsx bench/layersDemo.ts [--out docs/layers-demo.png] [--keep]
//
// Panels: rgb as written; depth near = bright, far = dark (inverse depth, normalised to the frame's range;
// 0, no hit, stays black); mask one fixed colour per instance id (0, background, black); normal as stored (n·0.5+0.5).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import sharp from "sharp";
import type { SceneElement } from "../protocol/elements.js";
import type { CameraPose } from "../protocol/camera.js";
import type { LayerName } from "../protocol/layers.js";
import { startRun } from "../server/runFarm.js";
import { readFrameRecords, recordFiles } from "../server/dataset/readDataset.js";
import { buildClientInChild } from "./buildClientChild.js";
import { tabPoolOpener, type Tabs } from "./throughput.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PANEL = { width: 320, height: 240 };
const LABEL_HEIGHT = 26;
const SHOWN: LayerName[] = ["rgb", "depth", "mask", "normal"];

/** A few labelled objects on DefaultScene's grid. */
const DEMO_SCENE: SceneElement = {
  tag: "DefaultScene", key: "demo", grid: true, background: "#20232a",
  children: [
    { tag: "Box", key: "crate", label: "box", args: [1, 1, 1], position: [-1.6, 0.5, 0.4], rotation: [0, 0.5, 0], color: "#e4572e", roughness: 0.6 },
    { tag: "Box", key: "tall-crate", label: "box", args: [0.6, 1.6, 0.6], position: [1.5, 0.8, -1.2], rotation: [0, -0.3, 0], color: "#f3a712", roughness: 0.6 },
    { tag: "Sphere", key: "ball", label: "sphere", args: [0.6, 48, 24], position: [0.3, 0.6, 1.4], color: "#669bbc", metalness: 0.2, roughness: 0.3 },
    { tag: "Sphere", key: "small-ball", label: "sphere", args: [0.35, 48, 24], position: [1.9, 0.35, 1.0], color: "#a8c686", roughness: 0.4 },
    { tag: "TorusKnot", key: "knot", label: "knot", args: [0.5, 0.16, 128, 16], position: [-0.2, 1.1, -0.9], rotation: [0.3, 0.6, 0], color: "#8b5fbf", metalness: 0.3, roughness: 0.4 },
  ],
};

/** Three-quarter view from above and to the side. */
const DEMO_CAMERA: CameraPose = { position: [4.6, 3.4, 5.4], lookAt: [0, 0.5, 0], fov: 45 };

/** Distinct colours for instance ids 1, 2, … (repeating past its length). */
const ID_PALETTE: Array<[number, number, number]> = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
];

/** 16-bit greyscale PNG → its samples, top row first. */
async function grey16(file: string): Promise<{ samples: Uint16Array; width: number; height: number }> {
  const { data, info } = await sharp(file).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
  const samples = new Uint16Array(data.buffer, data.byteOffset, data.byteLength >> 1);
  return { samples, width: info.width, height: info.height };
}

const rgbImage = (pixels: Uint8Array, width: number, height: number) => sharp(pixels, { raw: { width, height, channels: 3 } });

/**
 * Depth in mm → grey by inverse depth, normalised to the frame's range: the nearest hit 255, the farthest
 * 48, no hit (0) black. Inverse depth keeps the objects apart when the grid runs far behind them.
 */
function depthToGrey(mm: Uint16Array): Uint8Array {
  let near = Infinity, far = 0;
  for (const v of mm) if (v > 0) (near = Math.min(near, v), (far = Math.max(far, v)));
  const span = Math.max(1e-9, 1 / near - 1 / far);
  const out = new Uint8Array(mm.length * 3);
  mm.forEach((v, i) => out.fill(v === 0 ? 0 : Math.round(48 + ((1 / v - 1 / far) / span) * (255 - 48)), i * 3, i * 3 + 3));
  return out;
}

/** Instance ids → a fixed colour per id, 0 black. */
function maskToColour(ids: Uint16Array): Uint8Array {
  const out = new Uint8Array(ids.length * 3);
  ids.forEach((id, i) => id > 0 && out.set(ID_PALETTE[(id - 1) % ID_PALETTE.length]!, i * 3));
  return out;
}

const labelSvg = (text: string) =>
  Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL.width}" height="${LABEL_HEIGHT}">` +
      `<text x="${PANEL.width / 2}" y="18" font-family="DejaVu Sans, sans-serif" font-size="15" fill="#e8e8e8" text-anchor="middle">${text}</text></svg>`,
  );

/** Renders the demo frame through the farm and writes the side-by-side PNG to `target`. */
async function renderLayersDemo(target: string, options: { keep?: boolean; log?: (line: string) => void } = {}): Promise<void> {
  const log = options.log ?? (() => {});
  const clientDir = buildClientInChild();
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-layers-demo-"));
  const lines: string[] = [];
  const run = await startRun({
    out, clientDir, width: PANEL.width, height: PANEL.height, format: "png", layers: SHOWN,
    jobs: [{ id: "demo", scene: DEMO_SCENE, frames: [{ camera: DEMO_CAMERA }], width: PANEL.width, height: PANEL.height, format: "png" }],
    log: (line) => lines.push(line),
  });
  let tabs: Tabs | undefined;
  try {
    tabs = await tabPoolOpener(run.url, 1, 1, log);
    const summary = await run.finished;
    if (summary.frames !== 1) throw new Error(`layers demo: the farm wrote ${summary.frames} frame(s), not 1:\n${lines.slice(-20).join("\n")}`);
    const [record] = readFrameRecords(out);
    const file = (layer: LayerName) => {
      const named = recordFiles(record!).find((f) => f.layer === layer);
      if (!named) throw new Error(`layers demo: the frame's line names no ${layer} file`);
      return path.join(out, named.path);
    };
    const depth = await grey16(file("depth"));
    const mask = await grey16(file("mask"));
    const panels: Buffer[] = [
      await sharp(file("rgb")).removeAlpha().png().toBuffer(),
      await rgbImage(depthToGrey(depth.samples), depth.width, depth.height).png().toBuffer(),
      await rgbImage(maskToColour(mask.samples), mask.width, mask.height).png().toBuffer(),
      await sharp(file("normal")).png().toBuffer(),
    ];
    const ids = [...new Set(mask.samples)].filter((id) => id > 0).sort((a, b) => a - b);
    log(`instances in the mask: ${ids.join(", ")}; line's instances: ${(record!.instances ?? []).map((i) => `${i.id}=${i.key}${i.label ? ` (${i.label})` : ""}`).join(", ")}`);
    const composites = SHOWN.flatMap((layer, i) => [
      { input: panels[i]!, left: i * PANEL.width, top: 0 },
      { input: labelSvg(layer), left: i * PANEL.width, top: PANEL.height },
    ]);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    await sharp({ create: { width: PANEL.width * SHOWN.length, height: PANEL.height + LABEL_HEIGHT, channels: 3, background: "#111111" } })
      .composite(composites)
      .png({ compressionLevel: 9, palette: false })
      .toFile(target);
    log(`wrote ${target} (${fs.statSync(target).size} bytes)${options.keep ? `; dataset kept in ${out}` : ""}`);
  } finally {
    await run.close();
    await tabs?.close();
    if (!options.keep) fs.rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--out");
  const target = at >= 0 && args[at + 1] ? path.resolve(args[at + 1]!) : path.join(HERE, "..", "docs", "layers-demo.png");
  await renderLayersDemo(target, { keep: args.includes("--keep"), log: (line) => console.error(line) });
  process.exit(0);
}

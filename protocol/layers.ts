// The layers a frame can have, declared once: the page reads how to produce each, the server how to
// check, encode and describe it, the dataset reader how to verify its file, README how to explain it.
// Adding a layer means one entry here, its render pass (client/src/capture/layerPasses.ts), its codec
// (server/capture/layers.ts) and its tests; both sides index their maps by LayerName, so the compiler
// names any side that forgets one.
import { z } from "zod";

export const LAYER_NAMES = ["rgb", "depth", "depth32", "mask", "class", "normal", "boxes"] as const;
export const LayerName = z.enum(LAYER_NAMES);
export type LayerName = z.infer<typeof LayerName>;

/** The render pass on the page that makes a layer; several layers share one pass. */
export type LayerPass =
  /** The scene as the user sees it (the colour target). */
  | "colour"
  /** A full-screen pass over the colour pass's depth texture: metric depth along the camera axis. */
  | "depth"
  /** One override pass with two colour attachments: instance ids and camera-space normals. */
  | "ids";

/** How a layer's pixels travel from the page to the server (top row first, little-endian). */
export type LayerWire =
  /** rgb: the page's encoded image, or RGBA8 pixels with `encoding: "raw"`. */
  | "image"
  | { bytesPerPixel: number }
  /** Made by the server from other layers' data (class from the mask; boxes from the mask and the page's 3D boxes). */
  | "derived";

/** The file a layer writes beside the rgb image: images/<job>/<frame>.<suffix>.<ext>. */
export interface LayerFile {
  /** "" for rgb (images/<job>/<frame>.<format>); otherwise the name part before the extension. */
  suffix: string;
  /** "png", "npy" (NumPy array, float32 little-endian), or "format" (the run's image format: png/jpg/webp). */
  ext: "png" | "npy" | "format";
  /** Samples per pixel in the file. */
  channels: 1 | 3 | 4;
  /** Bits per sample in the file. */
  bits: 8 | 16 | 32;
  sample: "uint" | "float";
}

export interface LayerDeclaration {
  name: LayerName;
  /** What a value means, for README and manifest.json. */
  meaning: string;
  pass: LayerPass;
  wire: LayerWire;
  /** Absent for metadata-only layers (boxes). */
  file?: LayerFile;
  /** Other layers the page must render for this one (class and boxes read the mask). */
  needs: readonly LayerName[];
  /** The frames.jsonl fields this layer adds to a frame's line. */
  metadata: readonly string[];
}

/** Every layer, by name. */
export const LAYERS: { readonly [N in LayerName]: LayerDeclaration & { name: N } } = {
  rgb: {
    name: "rgb",
    meaning: "the scene's colour, sRGB, as the run's image format (png/jpeg/webp); always written",
    pass: "colour",
    wire: "image",
    file: { suffix: "", ext: "format", channels: 4, bits: 8, sample: "uint" },
    needs: [],
    metadata: ["file", "format"],
  },
  depth: {
    name: "depth",
    meaning: "distance along the camera's viewing axis in millimetres (uint16, 0 = nothing hit, 65535 = 65.535 m or farther)",
    pass: "depth",
    wire: { bytesPerPixel: 2 },
    file: { suffix: "depth", ext: "png", channels: 1, bits: 16, sample: "uint" },
    needs: [],
    metadata: ["depth_file", "depth_scale"],
  },
  depth32: {
    name: "depth32",
    meaning: "distance along the camera's viewing axis in metres (float32 .npy, 0 = nothing hit), for ranges beyond 65 m",
    pass: "depth",
    wire: { bytesPerPixel: 4 },
    file: { suffix: "depth32", ext: "npy", channels: 1, bits: 32, sample: "float" },
    needs: [],
    metadata: [],
  },
  mask: {
    name: "mask",
    meaning: "instance id of the object seen at each pixel (uint16, 0 = background); `instances` maps ids to element keys",
    pass: "ids",
    wire: { bytesPerPixel: 2 },
    file: { suffix: "mask", ext: "png", channels: 1, bits: 16, sample: "uint" },
    needs: [],
    metadata: ["instances"],
  },
  class: {
    name: "class",
    meaning: "class id of the object seen at each pixel, from its `label` prop and the run's class table (uint16, 0 = unlabelled)",
    pass: "ids",
    wire: "derived",
    file: { suffix: "class", ext: "png", channels: 1, bits: 16, sample: "uint" },
    needs: ["mask"],
    metadata: ["instances"],
  },
  normal: {
    name: "normal",
    meaning: "camera-space surface normal as n·0.5+0.5 per channel (OpenGL camera: +x right, +y up, +z towards the camera; 0,0,0 = nothing hit)",
    pass: "ids",
    wire: { bytesPerPixel: 3 },
    file: { suffix: "normal", ext: "png", channels: 3, bits: 8, sample: "uint" },
    needs: [],
    metadata: [],
  },
  boxes: {
    name: "boxes",
    meaning: "per visible instance: its tight 2D box in pixels, visible pixel count, and 3D box (no image)",
    pass: "ids",
    wire: "derived",
    needs: ["mask"],
    metadata: ["instances"],
  },
};

/** Layers that write a file, in declaration order. */
export const FILE_LAYERS = LAYER_NAMES.filter((name) => LAYERS[name].file !== undefined);

/**
 * The layers a run, job or grab asks for, completed and ordered: rgb always, plus what each asked
 * layer needs. Unknown names are refused by LayerListSchema before this is called.
 */
export function resolveLayers(asked: readonly LayerName[] | undefined): LayerName[] {
  const want = new Set<LayerName>(["rgb", ...(asked ?? [])]);
  for (const name of [...want]) for (const need of LAYERS[name].needs) want.add(need);
  return LAYER_NAMES.filter((name) => want.has(name));
}

/**
 * `layers` plus the `depth: true` short form, resolved: how a grab and a run read the two fields (a job,
 * where `depth: false` also drops depth, has its own rule: jobLayers in protocol/job.ts).
 */
export function layersWithDepth(layers: readonly LayerName[] | undefined, depth: boolean | undefined): LayerName[] {
  return resolveLayers(depth ? [...(layers ?? []), "depth"] : layers);
}

/** Which page passes a set of layers needs. */
export function passesFor(layers: readonly LayerName[]): Set<LayerPass> {
  return new Set(layers.map((name) => LAYERS[name].pass));
}

/** Whether `layers` need the scene's instance ids to be right: those whose metadata lists the instances (mask, class, boxes). */
export function needsInstanceIds(layers: readonly LayerName[]): boolean {
  return layers.some((name) => LAYERS[name].metadata.includes("instances"));
}

/** A list of layer names as jobs, grabs and options give it: known names, each at most once. */
export const LayerListSchema = z
  .array(LayerName, { message: `must be a list of layer names (${LAYER_NAMES.join(", ")})` })
  .max(LAYER_NAMES.length, `names more layers than there are (${LAYER_NAMES.length}): a layer twice`)
  .refine((names) => new Set(names).size === names.length, "names a layer twice");

/** Parses "rgb,depth,mask" (the --layers flag); throws an Error naming the unknown layer. */
export function parseLayerList(text: string): LayerName[] {
  const names = text.split(",").map((s) => s.trim());
  // An empty name is a typo ("rgb,,mask", or an empty variable in a script), not "nothing more".
  if (names.some((name) => name === "")) throw new Error(`empty layer name in '${text}' (give names separated by commas, e.g. rgb,depth,mask)`);
  for (const name of names) {
    if (!(LAYER_NAMES as readonly string[]).includes(name)) throw new Error(`unknown layer '${name}' (have: ${LAYER_NAMES.join(", ")})`);
  }
  return resolveLayers([...new Set(names)] as LayerName[]);
}

/** Largest instance or class id: the mask and class layers are 16-bit. */
export const MAX_ID = 65535;

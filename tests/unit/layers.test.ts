// server/capture/layers: the server's side of the layers besides rgb. Pages are hostile: every check
// is driven with wrong lengths, wrong types, unasked layers and bad ids. The files it writes are
// decoded with sharp (PNG bit depth, channels, values) and by parsing the .npy header.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import sharp from "sharp";
import {
  box3dCorners, checkBoxes3d, checkPageLayers, encodeDepthNpy, encodeLayers, npyHeader, scanMask,
} from "../../server/capture/layers.js";
import { ClassTable } from "../../server/capture/ClassTable.js";
import { ImageCheckError } from "../../server/capture/checkImage.js";
import { InstanceTable, type InstanceResolution } from "../../protocol/instances.js";
import { applyOp, EMPTY_SCENE } from "../../protocol/applyOp.js";
import { LAYER_NAMES, LAYERS, resolveLayers } from "../../protocol/layers.js";
import type { SceneElement } from "../../protocol/elements.js";
import { BOX3D_NUMBERS, grabLayers, PAGE_LAYERS, packBoxes3d, type Box3dWire } from "../../protocol/grab.js";

const what = "grabRender('cam') on session s1";

/** The instances of a scene `set` with these children of the root. */
function instancesOf(...children: SceneElement[]): InstanceResolution {
  const table = new InstanceTable();
  const op = { op: "set" as const, scene: { tag: "Scene", key: "root", children } };
  const tree = applyOp(EMPTY_SCENE, op, () => true);
  table.observe(op, tree);
  return table.resolve(tree);
}

/** uint16 LE bytes of `ids` (as the page sends a mask or depth). */
const u16 = (values: number[]) => {
  const out = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => out.writeUInt16LE(v, i * 2));
  return out;
};
const f32 = (values: number[]) => {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeFloatLE(v, i * 4));
  return out;
};

async function decode(png: Buffer) {
  const meta = await sharp(png).metadata();
  const sixteen = meta.depth === "ushort";
  // Kept in the file's own colour space (sharp would otherwise make grey into sRGB).
  const { data, info } = await sharp(png).toColourspace(sixteen ? "grey16" : "srgb").raw({ depth: sixteen ? "ushort" : "uchar" }).toBuffer({ resolveWithObject: true });
  const samples = sixteen ? Array.from(new Uint16Array(data.buffer, data.byteOffset, data.length / 2)) : Array.from(data);
  return { format: meta.format, depth: meta.depth, channels: meta.channels, decodedChannels: info.channels, width: info.width, height: info.height, samples };
}

/** A .npy file's header dict and its float32 data. */
function readNpy(file: Buffer) {
  assert.equal(file.toString("latin1", 0, 6), "\x93NUMPY");
  assert.deepEqual([file[6], file[7]], [1, 0], "format version 1.0");
  const headerLength = file.readUInt16LE(8);
  assert.equal((10 + headerLength) % 64, 0, "the data starts at a multiple of 64 bytes");
  const header = file.toString("latin1", 10, 10 + headerLength);
  assert.ok(header.endsWith("\n"));
  const data = file.subarray(10 + headerLength);
  const values = Array.from({ length: data.length / 4 }, (_, i) => data.readFloatLE(i * 4));
  return { header: header.trim(), values };
}

describe("the layers of a grab request, and those whose pixels the page sends", () => {
  it("are exactly the layers LAYERS declares with a per-pixel wire layout (a new one can't be left out of the reply)", () => {
    assert.deepEqual([...PAGE_LAYERS], LAYER_NAMES.filter((name) => typeof LAYERS[name].wire === "object"));
  });

  it("grabLayers reads a request as page and server both do: its layers resolved, plus depth for `depth: true`", () => {
    assert.deepEqual(grabLayers({}), ["rgb"]);
    assert.deepEqual(grabLayers({ depth: true }), ["rgb", "depth"]);
    assert.deepEqual(grabLayers({ depth: false, layers: ["class"] }), ["rgb", "mask", "class"]);
    assert.deepEqual(grabLayers({ depth: true, layers: ["normal", "depth"] }), ["rgb", "depth", "normal"]);
  });
});

describe("checkPageLayers: every asked page layer, binary, of exactly width×height×bytes per pixel", () => {
  const w = 4, h = 3;
  const good = { depth: Buffer.alloc(24), depth32: Buffer.alloc(48), mask: Buffer.alloc(24), normal: Buffer.alloc(36) };

  it("takes the asked layers at their exact sizes", () => {
    const got = checkPageLayers(good, ["depth", "depth32", "mask", "normal"], w, h, what);
    assert.deepEqual(Object.keys(got).sort(), ["depth", "depth32", "mask", "normal"]);
    assert.deepEqual(checkPageLayers(undefined, [], w, h, what), {}, "no layers asked, none sent");
  });

  it("refuses a wrong length, a missing layer, a layer that is not binary, naming the layer and the sizes", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ ...good, depth: Buffer.alloc(23) }, /layer depth is 23 bytes, not 4×3×2 bytes \(24\)/],
      [{ ...good, depth32: Buffer.alloc(24) }, /layer depth32 is 24 bytes, not 4×3×4 bytes \(48\)/],
      [{ ...good, normal: Buffer.alloc(48) }, /layer normal is 48 bytes, not 4×3×3 bytes \(36\)/],
      [{ depth: good.depth, depth32: good.depth32, normal: good.normal }, /layer mask is missing/],
      [{ ...good, mask: "AAAA" }, /layer mask is not binary data/],
      [{ ...good, mask: Array.from({ length: 24 }, () => 0) }, /layer mask is not binary data/],
      [{ ...good, mask: { length: 24 } }, /layer mask is not binary data/],
      [{ ...good, mask: null }, /layer mask is not binary data/],
    ];
    for (const [layers, message] of cases) {
      assert.throws(() => checkPageLayers(layers, ["depth", "depth32", "mask", "normal"], w, h, what), (err: Error) => err instanceof ImageCheckError && message.test(err.message) && err.message.startsWith(what), String(message));
    }
  });

  it("refuses layers that are not an object, and layers not asked for (also unknown names and __proto__)", () => {
    assert.deepEqual(checkPageLayers(null, [], w, h, what), {}, "nothing asked: null is nothing sent");
    for (const layers of [undefined, null, 7, "x", [good.depth], good.depth]) {
      assert.throws(() => checkPageLayers(layers, ["depth"], w, h, what), /the reply's layers are not an object of binary layers \(asked for: depth\)/, String(layers));
    }
    assert.throws(() => checkPageLayers({ depth: good.depth, mask: good.mask }, ["depth"], w, h, what), /the reply has layer 'mask', which was not asked for \(asked for: depth\)/);
    assert.throws(() => checkPageLayers({ rgb: good.depth }, [], w, h, what), /layer 'rgb', which was not asked for \(asked for: none\)/);
    assert.throws(() => checkPageLayers(JSON.parse('{"depth": 1, "__proto__": {"x": 1}}'), ["depth"], w, h, what), /layer '__proto__', which was not asked for/);
  });
});

describe("checkBoxes3d: valid boxes for the scene's ids, bounded", () => {
  const instances = instancesOf({ tag: "Box", key: "a" }, { tag: "Box", key: "b" });
  const identity = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]];
  const entry = (id: number, extra: Partial<Box3dWire> = {}): Box3dWire => ({ id, min: [-1, -1, -1], max: [1, 1, 1], objectToWorld: identity, ...extra });
  const pack = (boxes: Box3dWire[]) => Buffer.from(packBoxes3d(boxes));

  it("takes valid boxes by id; absent is fine unless boxes were asked", () => {
    assert.deepEqual([...checkBoxes3d(pack([entry(2), entry(1)]), instances, true, what).keys()], [2, 1]);
    assert.equal(checkBoxes3d(undefined, instances, false, what).size, 0);
    assert.throws(() => checkBoxes3d(undefined, instances, true, what), /boxes3d is missing/);
  });

  it("refuses NaN/Infinity, ids out of range, unknown or repeated ids, a torn box, JSON instead of binary, and more entries than the scene has ids", () => {
    const cases: Array<[unknown, RegExp]> = [
      [pack([entry(1, { min: [NaN, 0, 0] })]), /boxes3d\[0\]: .*min/],
      [pack([entry(1, { max: [0, Infinity, 0] })]), /boxes3d\[0\]: .*max/],
      [pack([entry(1, { objectToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -Infinity]] })]), /boxes3d\[0\]: .*objectToWorld/],
      [pack([entry(1), entry(1.5)]), /boxes3d\[1\]: .*id/],
      [pack([entry(0)]), /boxes3d\[0\]: .*id/],
      [pack([entry(65536)]), /boxes3d\[0\]: .*id/],
      [pack([entry(7)]), /boxes3d\[0\] is for id 7, which no element of the scene has/],
      [pack([entry(1), entry(1)]), /boxes3d\[1\] is for id 1, which an earlier entry has too/],
      [pack([entry(1), entry(2), entry(1)]), /boxes3d has 3 entries, but the scene has 2 instance\(s\)/],
      [Buffer.alloc(BOX3D_NUMBERS * 8 * 1_000_000), /boxes3d has 1000000 entries, but the scene has 2 instance\(s\)/],
      [pack([entry(1)]).subarray(1), /boxes3d is 183 bytes, not a whole number of 184-byte boxes/],
      [[entry(1)], /boxes3d is not binary data/],
      ["[]", /boxes3d is not binary data/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => checkBoxes3d(value, instances, true, what), (err: Error) => err instanceof ImageCheckError && message.test(err.message), String(message));
    }
  });

  it("computes the 8 world corners with the object's transform (corner i: max x if i&1, max y if i&2, max z if i&4)", () => {
    const objectToWorld = [[0, -1, 0, 10], [1, 0, 0, 20], [0, 0, 2, 30], [0, 0, 0, 1]]; // 90° about z, z scaled ×2, moved
    const corners = box3dCorners({ min: [0, 0, 0], max: [1, 2, 3], objectToWorld });
    assert.deepEqual(corners[0], [10, 20, 30]);
    assert.deepEqual(corners[1], [10, 21, 30], "x max → world +y");
    assert.deepEqual(corners[2], [8, 20, 30], "y max → world -x");
    assert.deepEqual(corners[7], [8, 21, 36]);
    assert.equal(corners.length, 8);
  });
});

describe("scanMask: ids, pixel counts, tight boxes and classes in one pass", () => {
  const instances = instancesOf({ tag: "Box", key: "a", label: "crate" }, { tag: "Box", key: "b" }, { tag: "Box", key: "c", label: "cup" });
  // 5×4, ids 1 (a) and 3 (c); b (2) hidden.
  const mask = [
    0, 1, 1, 0, 0,
    0, 1, 0, 0, 3,
    1, 0, 0, 0, 3,
    0, 0, 0, 0, 0,
  ];

  it("lists the visible ids ascending with key, label, class, pixel count and tight box; the class image follows the table", () => {
    const classes = new ClassTable([["cup", 9]]);
    const scan = scanMask(Uint16Array.from(mask), 5, 4, instances, classes, { withClasses: true, what });
    assert.deepEqual(scan.instances, [
      { id: 1, key: "a", label: "crate", class: 1, pixels: 4, bbox: [0, 0, 3, 3] },
      { id: 3, key: "c", label: "cup", class: 9, pixels: 2, bbox: [4, 1, 1, 2] },
    ]);
    assert.deepEqual(Array.from(scan.classes!), mask.map((id) => (id === 1 ? 1 : id === 3 ? 9 : 0)));
    assert.equal(scanMask(Uint16Array.from(mask), 5, 4, instances, classes, { withClasses: false, what }).classes, undefined);
  });

  it("an id no element of the scene has is an ImageCheckError naming it and where it is", () => {
    const bad = Uint16Array.from(mask);
    bad[13] = 4;
    assert.throws(() => scanMask(bad, 5, 4, instances, new ClassTable(), { withClasses: true, what }), (err: Error) =>
      err instanceof ImageCheckError && /the mask has id 4 at pixel \(3, 2\), which no element of the scene has \(its ids: 1, 2, 3\)/.test(err.message));
    bad[13] = 65535;
    assert.throws(() => scanMask(bad, 5, 4, instances, new ClassTable(), { withClasses: true, what }), /id 65535 at pixel \(3, 2\)/);
  });

  it("agrees with a pixel-by-pixel count on random masks of runs and of noise (counts, boxes, classes)", () => {
    const scene = instancesOf(...Array.from({ length: 6 }, (_, i): SceneElement => ({ tag: "Box", key: `k${i}`, ...(i % 2 ? { label: `l${i % 3}` } : {}) })));
    let seed = 12345;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    for (let trial = 0; trial < 40; trial++) {
      const width = 1 + random(37), height = 1 + random(23);
      const ids = new Uint16Array(width * height);
      for (let i = 0; i < ids.length; ) {
        const run = trial % 4 === 0 ? 1 : 1 + random(12);
        ids.fill(random(7), i, Math.min(ids.length, i + run));
        i += run;
      }
      const classes = new ClassTable();
      const scan = scanMask(ids, width, height, scene, classes, { withClasses: true, what });
      const expected = new Map<number, { pixels: number; x0: number; y0: number; x1: number; y1: number }>();
      ids.forEach((id, i) => {
        if (!id) return;
        const x = i % width, y = Math.floor(i / width);
        const e = expected.get(id) ?? { pixels: 0, x0: x, y0: y, x1: x, y1: y };
        expected.set(id, { pixels: e.pixels + 1, x0: Math.min(e.x0, x), y0: Math.min(e.y0, y), x1: Math.max(e.x1, x), y1: Math.max(e.y1, y) });
      });
      const wanted = [...expected].sort((a, b) => a[0] - b[0]).map(([id, e]) => [id, e.pixels, [e.x0, e.y0, e.x1 - e.x0 + 1, e.y1 - e.y0 + 1]]);
      assert.deepEqual(scan.instances.map((i) => [i.id, i.pixels, i.bbox]), wanted, `trial ${trial} (${width}×${height})`);
      const classOfId = (id: number) => { const label = scene.ids.get(id)?.label; return label === undefined ? 0 : classes.classOf(label); };
      assert.deepEqual(Array.from(scan.classes!), Array.from(ids, (id) => (id ? classOfId(id) : 0)), `trial ${trial}: classes`);
    }
  });

  it("a full class table is an error naming the grab and the label", () => {
    const full = new ClassTable(Array.from({ length: 65535 }, (_, i): [string, number] => [`c${i}`, i + 1]));
    assert.throws(() => scanMask(Uint16Array.from(mask), 5, 4, instances, full, { withClasses: true, what }), /^Error: grabRender\('cam'\) on session s1: class table: no class id left for label 'crate'/);
  });

  it("an empty mask lists no instance; a mask all of one id boxes the whole frame", () => {
    assert.deepEqual(scanMask(new Uint16Array(20), 5, 4, instances, new ClassTable(), { withClasses: false, what }).instances, []);
    const full = scanMask(new Uint16Array(20).fill(2), 5, 4, instances, new ClassTable(), { withClasses: true, what });
    assert.deepEqual(full.instances, [{ id: 2, key: "b", pixels: 20, bbox: [0, 0, 5, 4] }]);
    assert.deepEqual(Array.from(full.classes!), new Array(20).fill(0), "unlabelled → class 0");
  });
});

describe("depth32: a numpy-loadable .npy of float32 metres", () => {
  it("writes a v1.0 header ('<f4', C order, shape (height, width)) padded to 64 bytes, and the values as sent", () => {
    const values = [0, 0.5, 1.25, 1000, 65.5361, 3.4e38];
    const { header, values: back } = readNpy(encodeDepthNpy(f32(values), 3, 2, what));
    assert.equal(header, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    assert.deepEqual(back, values.map((v) => Math.fround(v)));
    assert.equal(npyHeader("<f4", [7]).toString("latin1").includes("'shape': (7,)"), true, "a 1-d shape is a Python 1-tuple");
  });

  it("refuses NaN, ±Infinity and negative values, naming the pixel", () => {
    for (const bad of [NaN, Infinity, -Infinity, -0.001]) {
      assert.throws(() => encodeDepthNpy(f32([1, 2, 3, bad]), 2, 2, what), (err: Error) =>
        err instanceof ImageCheckError && err.message.includes(`layer depth32 has ${Math.fround(bad)} at pixel (1, 1)`), String(bad));
    }
  });
});

describe("encodeLayers: every file layer decodes at its declared bit depth with the values sent", () => {
  const instances = instancesOf({ tag: "Box", key: "a", label: "crate" }, { tag: "Box", key: "b", label: "crate" }, { tag: "Box", key: "c" });
  const w = 3, h = 2;
  const mask = [1, 0, 2, 3, 3, 0];
  const depth = [0, 1, 1000, 65535, 2, 3];
  const depth32 = [0, 1.5, 2.25, 100, 0.001, 7];
  const normal = Buffer.from(Array.from({ length: w * h * 3 }, (_, i) => (i * 37) & 0xff));

  it("depth, depth32, mask, class and normal; instances with their 3D boxes", async () => {
    const layers = resolveLayers(["depth", "depth32", "mask", "class", "normal", "boxes"]);
    const classes = new ClassTable();
    const { files, instances: seen } = await encodeLayers({
      layers, width: w, height: h, classes, what, instances,
      pixels: { depth: u16(depth), depth32: f32(depth32), mask: u16(mask), normal },
      boxes3d: new Map([[3, { id: 3, min: [0, 0, 0], max: [1, 1, 1] as [number, number, number], objectToWorld: [[1, 0, 0, 5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] }]]),
    });
    assert.deepEqual(Object.keys(files).sort(), ["class", "depth", "depth32", "mask", "normal"]);
    for (const [name, values] of [["depth", depth], ["mask", mask], ["class", [1, 0, 1, 0, 0, 0]]] as const) {
      const png = await decode(files[name]!);
      assert.deepEqual([png.format, png.depth, png.channels, png.width, png.height], ["png", "ushort", 1, w, h], `${name}: 16-bit grey`);
      assert.deepEqual(png.samples, values, `${name}: values`);
    }
    const n = await decode(files.normal!);
    assert.deepEqual([n.format, n.depth, n.channels], ["png", "uchar", 3], "normal: 8-bit RGB");
    assert.deepEqual(n.samples, Array.from(normal));
    assert.deepEqual(readNpy(files.depth32!).values, depth32.map((v) => Math.fround(v)));
    assert.equal(classes.entries().length, 1, "one label, one class");
    assert.deepEqual(seen!.map((i) => [i.id, i.key, i.label, i.class, i.pixels, i.bbox]), [
      [1, "a", "crate", 1, 1, [0, 0, 1, 1]],
      [2, "b", "crate", 1, 1, [2, 0, 1, 1]],
      [3, "c", undefined, undefined, 2, [0, 1, 2, 1]],
    ]);
    assert.equal(seen![0]!.box3d, undefined, "no 3D box when the page sent none");
    assert.deepEqual(seen![2]!.box3d!.corners[7], [6, 1, 1]);
    assert.equal("class" in seen![2]!, false, "an unlabelled instance has no class field");
  });

  it("a 3D box whose world corners overflow is refused", async () => {
    const huge = { id: 1, min: [1e300, 0, 0] as [number, number, number], max: [1e300, 1, 1] as [number, number, number], objectToWorld: [[1e300, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] };
    await assert.rejects(encodeLayers({ layers: resolveLayers(["boxes"]), width: w, height: h, classes: new ClassTable(), what, instances, pixels: { mask: u16(mask) }, boxes3d: new Map([[1, huge]]) }),
      /the 3D box of id 1 has corners out of range/);
  });

  it("only what was asked: depth alone writes only depth, with no instances", async () => {
    const out = await encodeLayers({ layers: resolveLayers(["depth"]), width: w, height: h, classes: new ClassTable(), what, pixels: { depth: u16(depth) }, boxes3d: new Map() });
    assert.deepEqual(Object.keys(out.files), ["depth"]);
    assert.equal(out.instances, undefined);
  });
});

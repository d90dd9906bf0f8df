// The page's layer passes in real Chromium, end to end through a Session: instance ids in the mask,
// camera-space normals, metric depth (uint16 mm and float32 m), all from the same scene state.
import { test, expect } from "../../harness/testing.js";
import type { SceneElement } from "../../protocol/elements.js";
import type { GrabbedFrame } from "../../server/session/Session.js";
import { PNG } from "pngjs";

declare global {
  interface Window {
    tabfarm: { loadLayerDiagnostics(): Promise<unknown> };
    tabfarmLayers: { maskThrough(key: string, space: "none" | "srgb"): Promise<number[]> };
  }
}

const W = 64;
const H = 48;
/** Focal length in pixels of the test camera (fov 60°, 48 rows). */
const F = H / 2 / Math.tan(Math.PI / 6);
const CAMERA = { tag: "CameraView", key: "cam", width: W, height: H, fov: 60, near: 0.1, far: 200, position: [0, 0, 5], lookAt: [0, 0, 0] };

const scene = (...children: SceneElement[]): SceneElement => ({ tag: "Scene", key: "root", background: "#000000", children: [...children, CAMERA] });

/** A 1-channel image as a function of (x, y), top row first. */
type Image1 = (x: number, y: number) => number;

function gray16(png: Buffer | undefined): Image1 {
  expect(png, "layer file").toBeDefined();
  const image = PNG.sync.read(png!, { skipRescale: true } as never);
  expect([image.width, image.height, image.depth]).toEqual([W, H, 16]);
  return (x, y) => image.data[(y * W + x) * 4];
}

/** Camera-space normal at (x, y), decoded from n·0.5+0.5 in 8 bits; [0,0,0] bytes decode to [-1,-1,-1]. */
function normals(png: Buffer | undefined): (x: number, y: number) => { n: number[]; bytes: number[] } {
  expect(png, "normal file").toBeDefined();
  const image = PNG.sync.read(png!);
  expect([image.width, image.height]).toEqual([W, H]);
  return (x, y) => {
    const bytes = [0, 1, 2].map((c) => image.data[(y * W + x) * 4 + c]);
    return { bytes, n: bytes.map((b) => (b / 255) * 2 - 1) };
  };
}

/** A float32 .npy of shape (H, W), little-endian. */
function npyFloat32(npy: Buffer | undefined): Image1 {
  expect(npy, "depth32 file").toBeDefined();
  expect(npy!.subarray(0, 6).toString("latin1")).toBe("\x93NUMPY");
  const headerLength = npy!.readUInt16LE(8);
  const header = npy!.subarray(10, 10 + headerLength).toString("latin1");
  expect(header).toContain("'<f4'");
  expect(header).toContain(`(${H}, ${W})`);
  const data = npy!.subarray(10 + headerLength);
  expect(data.length).toBe(W * H * 4);
  return (x, y) => data.readFloatLE((y * W + x) * 4);
}

/** Where pixel (x, y)'s centre looks at on the plane z = 0 (the camera sits at z = 5 looking down -z). */
const onPlane = (x: number, y: number) => ({ X: ((x + 0.5 - W / 2) / F) * 5, Y: ((H / 2 - y - 0.5) / F) * 5 });
/** Pixels from pixel (x, y)'s centre to the edge of the rectangle [x0,x1]×[y0,y1] on z = 0; negative inside. */
function pixelsOutside(x: number, y: number, [x0, x1, y0, y1]: number[]): number {
  const { X, Y } = onPlane(x, y);
  const metres = Math.max(x0 - X, X - x1, y0 - Y, Y - y1);
  return (metres / 5) * F;
}

/** Every pixel clearly inside a rectangle has its id, every pixel clearly outside all of them 0; half a pixel at the edges is left out. */
function expectMaskRegions(mask: Image1, regions: Array<{ id: number; rect: number[] }>, skip?: (x: number, y: number) => boolean): void {
  const wrong: string[] = [];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (skip?.(x, y)) continue;
      const d = regions.map((r) => pixelsOutside(x, y, r.rect));
      if (d.some((v) => Math.abs(v) < 0.5)) continue;
      const inside = regions.find((_, i) => d[i] < 0);
      const want = inside?.id ?? 0;
      if (mask(x, y) !== want) wrong.push(`(${x},${y}) ${mask(x, y)} ≠ ${want}`);
    }
  }
  expect(wrong.slice(0, 10)).toEqual([]);
}

function maskValues(mask: Image1): Set<number> {
  const values = new Set<number>();
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) values.add(mask(x, y));
  return values;
}

const grab = (tabfarm: { renderLayers: (s: SceneElement, o: object) => Promise<GrabbedFrame> }, s: SceneElement, layers: string[]) =>
  tabfarm.renderLayers(s, { cameraKey: "cam", layers });

// Two planes facing the camera: "left" (x -3..-1, y -1..1) with an explicit id whose both bytes are
// non-zero, "right" (x 1..3, y -1..1) with the first automatic id.
const twoPlanes = scene(
  { tag: "Plane", key: "left", instance: 258, args: [2, 2], position: [-2, 0, 0], material: "basic" },
  { tag: "Plane", key: "right", args: [2, 2], position: [2, 0, 0], material: "basic", color: "#ff0000" },
);
const LEFT = [-3, -1, -1, 1];
const RIGHT = [1, 3, -1, 1];

test("mask: exactly the known ids in the expected regions, named in the frame's instances", async ({ tabfarm }) => {
  const frame = await grab(tabfarm, twoPlanes, ["mask", "boxes"]);
  expect(frame.layers).toEqual(["rgb", "mask", "boxes"]);
  const mask = gray16(frame.files.mask);
  expect([...maskValues(mask)].sort((a, b) => a - b)).toEqual([0, 1, 258]);
  expectMaskRegions(mask, [{ id: 258, rect: LEFT }, { id: 1, rect: RIGHT }]);
  expect(frame.instances?.map(({ id, key }) => ({ id, key }))).toEqual([{ id: 1, key: "right" }, { id: 258, key: "left" }]);
  // 2D boxes: the projected rectangles, within a pixel.
  const projected = (rect: number[]) => {
    const px = (X: number) => W / 2 + (X / 5) * F;
    const py = (Y: number) => H / 2 - (Y / 5) * F;
    return [px(rect[0]), py(rect[3]), px(rect[1]) - px(rect[0]), py(rect[2]) - py(rect[3])];
  };
  for (const [id, rect] of [[1, RIGHT], [258, LEFT]] as const) {
    const got = frame.instances!.find((i) => i.id === id)!;
    projected(rect).forEach((v, i) => expect(Math.abs(got.bbox[i] - v)).toBeLessThanOrEqual(1));
    // The 3D box: the plane's own geometry in its frame, and its pose.
    expect(got.box3d?.min).toEqual([-1, -1, 0]);
    expect(got.box3d?.max).toEqual([1, 1, 0]);
    expect(got.box3d?.objectToWorld[0][3]).toBeCloseTo(id === 1 ? 2 : -2, 6);
  }
});

test("the ids pass leaves the scene as it was: rgb is the same before, with and after it", async ({ tabfarm }) => {
  const s = scene(
    { tag: "TorusKnot", key: "knot", position: [-1.5, 0, 0], color: "#669bbc" },
    { tag: "Box", key: "box", position: [1.5, 0, 0], rotation: [0.4, 0.6, 0], color: "#c1121f", opacity: 0.7 },
  );
  const plain = await grab(tabfarm, s, []);
  const withIds = await grab(tabfarm, s, ["mask", "normal"]);
  const after = await grab(tabfarm, s, []);
  const pixels = (f: GrabbedFrame) => PNG.sync.read(f.image).data;
  expect(Buffer.compare(pixels(plain), pixels(withIds))).toBe(0);
  expect(Buffer.compare(pixels(plain), pixels(after))).toBe(0);
});

test("an explicit id on a group is its children's; instance 0 hides an element from the mask but it still occludes", async ({ tabfarm }) => {
  const s = scene(
    {
      tag: "Group", key: "pair", instance: 7, position: [-2, 0, 0], children: [
        { tag: "Plane", key: "a", args: [1, 2], position: [-0.5, 0, 0], material: "basic" },
        { tag: "Plane", key: "b", args: [1, 2], position: [0.5, 0, 0], material: "basic" },
      ],
    },
    { tag: "Plane", key: "behind", args: [2, 2], position: [2, 0, 0], material: "basic" },
    { tag: "Plane", key: "blocker", instance: 0, args: [0.4, 0.4], position: [2, 0, 1], material: "basic" },
  );
  const frame = await grab(tabfarm, s, ["mask", "boxes"]);
  const mask = gray16(frame.files.mask);
  const behind = frame.instances!.find((i) => i.key === "behind")!;
  expect(frame.instances!.map((i) => i.key)).toEqual(["behind", "pair"]); // by id: automatic 3, explicit 7
  const nearBlocker = (x: number, y: number) => Math.abs(x + 0.5 - W / 2 - (2 / 4) * F) <= (0.2 / 4) * F + 1 && Math.abs(y + 0.5 - H / 2) <= (0.2 / 4) * F + 1;
  expectMaskRegions(mask, [{ id: 7, rect: LEFT }, { id: behind.id, rect: RIGHT }], nearBlocker);
  // The blocker, 1 m in front of "behind" (at 4 m from the camera): background, and "behind" is hidden there.
  expect(mask(Math.floor(W / 2 + (2 / 4) * F), H / 2)).toBe(0);
  const pair = frame.instances!.find((i) => i.key === "pair")!;
  expect(pair.id).toBe(7);
  // The group's box: both planes, in the group's frame; the group's pose.
  expect(pair.box3d?.min).toEqual([-1, -1, 0]);
  expect(pair.box3d?.max).toEqual([1, 1, 0]);
  expect(pair.box3d?.objectToWorld[0][3]).toBeCloseTo(-2, 6);
});

test("mask: ids written through an sRGB target come out corrupted (why the ids pass has no colour space)", async ({ tabfarm, page }) => {
  const frame = await grab(tabfarm, twoPlanes, ["mask"]);
  const mask = gray16(frame.files.mask);
  await page.evaluate(() => window.tabfarm.loadLayerDiagnostics());
  const exact = await page.evaluate(() => window.tabfarmLayers.maskThrough("cam", "none"));
  const srgb = await page.evaluate(() => window.tabfarmLayers.maskThrough("cam", "srgb"));
  const centres = { left: [15, 24], right: [48, 24] };
  for (const [x, y] of Object.values(centres)) expect(exact[y * W + x]).toBe(mask(x, y));
  expect(exact[24 * W + 15]).toBe(258);
  expect(exact[24 * W + 48]).toBe(1);
  // The GL encodes each byte as if it were a linear colour: 1 → 13, and 258 (bytes 2, 1) → 13·256 + 22ish.
  expect(srgb[24 * W + 15]).not.toBe(258);
  expect(srgb[24 * W + 48]).not.toBe(1);
});

test("a plane facing the camera: normal (0,0,1) at the centre, depth and depth32 its distance", async ({ tabfarm }) => {
  const wall = (z: number, rotation: number[] = [0, 0, 0]) =>
    scene({ tag: "Plane", key: "wall", args: [30, 30], position: [0, 0, z], rotation, material: "basic" });
  const frame = await grab(tabfarm, wall(0), ["depth", "depth32", "normal"]);
  expect(frame.layers).toEqual(["rgb", "depth", "depth32", "normal"]);
  const normal = normals(frame.files.normal);
  const depth = gray16(frame.files.depth);
  const depth32 = npyFloat32(frame.files.depth32);
  const centre = normal(W / 2, H / 2).n;
  expect(Math.abs(centre[0])).toBeLessThanOrEqual(1 / 127);
  expect(Math.abs(centre[1])).toBeLessThanOrEqual(1 / 127);
  expect(centre[2]).toBeGreaterThanOrEqual(1 - 1 / 127);
  // Depth along the camera axis: 5 m over the whole plane, centre or corner.
  for (const [x, y] of [[W / 2, H / 2], [1, 1], [W - 2, H - 2]]) {
    expect(Math.abs(depth(x, y) - 5000)).toBeLessThanOrEqual(50);
    expect(Math.abs(depth32(x, y) - 5)).toBeLessThanOrEqual(0.05);
  }
  // Beyond what 16 bits of millimetres hold: depth saturates, depth32 keeps metres.
  const far = await grab(tabfarm, wall(-75), ["depth", "depth32"]);
  expect(gray16(far.files.depth)(W / 2, H / 2)).toBe(65535);
  expect(Math.abs(npyFloat32(far.files.depth32)(W / 2, H / 2) - 80)).toBeLessThanOrEqual(0.8);
  // Turned 30° about +y the plane faces right: +x; tilted 30° back about x it faces up: +y (OpenGL camera).
  const s = 0.5;
  const c = Math.sqrt(3) / 2;
  const right = normals((await grab(tabfarm, wall(0, [0, Math.PI / 6, 0]), ["normal"])).files.normal)(W / 2, H / 2).n;
  [s, 0, c].forEach((v, i) => expect(Math.abs(right[i] - v)).toBeLessThanOrEqual(1 / 127));
  const up = normals((await grab(tabfarm, wall(0, [-Math.PI / 6, 0, 0]), ["normal"])).files.normal)(W / 2, H / 2).n;
  [0, s, c].forEach((v, i) => expect(Math.abs(up[i] - v)).toBeLessThanOrEqual(1 / 127));
});

test("nothing hit: depth, depth32, mask and normal are all 0", async ({ tabfarm }) => {
  const frame = await grab(tabfarm, scene({ tag: "Plane", key: "p", args: [1, 1], position: [0, 0, 0] }), ["depth", "depth32", "mask", "normal"]);
  expect(gray16(frame.files.depth)(2, 2)).toBe(0);
  expect(npyFloat32(frame.files.depth32)(2, 2)).toBe(0);
  expect(gray16(frame.files.mask)(2, 2)).toBe(0);
  expect(normals(frame.files.normal)(2, 2).bytes).toEqual([0, 0, 0]);
});

test("an update sent just before a grab is in rgb, depth, mask and normal alike", async ({ tabfarm }) => {
  const s = scene({ tag: "Plane", key: "obj", args: [2, 2], position: [-2, 0, 0], material: "basic", color: "#ffffff" });
  const layers = ["depth", "mask", "normal"];
  const before = await grab(tabfarm, s, layers);
  // Not awaited in between: the update and the grab go out back to back.
  tabfarm.session.update({ key: "obj", position: [2, 0, 0] });
  const after = await tabfarm.session.grabRender({ key: "cam", layers: layers as never });
  const id = before.instances![0].id;
  expect(after.instances!.map((i) => i.id)).toEqual([id]);
  const look = (frame: GrabbedFrame, x: number, y: number) => {
    const rgb = PNG.sync.read(frame.image);
    return {
      rgb: rgb.data[(y * W + x) * 4] > 200,
      depth: Math.abs(gray16(frame.files.depth)(x, y) - 5000) <= 50,
      mask: gray16(frame.files.mask)(x, y) === id,
      normal: normals(frame.files.normal)(x, y).n[2] > 0.99,
    };
  };
  const all = { rgb: true, depth: true, mask: true, normal: true };
  const none = { rgb: false, depth: false, mask: false, normal: false };
  expect(look(before, 15, 24)).toEqual(all);
  expect(look(before, 48, 24)).toEqual(none);
  expect(look(after, 15, 24)).toEqual(none);
  expect(look(after, 48, 24)).toEqual(all);
});

test("back faces: a plane turned away is drawn only with side back or double, its normal towards the camera", async ({ tabfarm }) => {
  for (const side of ["front", "back", "double"]) {
    const s = scene({ tag: "Plane", key: "away", args: [4, 4], rotation: [0, Math.PI, 0], side, material: "basic" });
    const frame = await grab(tabfarm, s, ["mask", "normal", "depth"]);
    const mask = gray16(frame.files.mask)(W / 2, H / 2);
    const normal = normals(frame.files.normal)(W / 2, H / 2);
    if (side === "front") {
      expect(mask, side).toBe(0);
      expect(normal.bytes, side).toEqual([0, 0, 0]);
    } else {
      expect(mask, side).toBe(frame.instances![0].id);
      expect(normal.n[2], side).toBeGreaterThanOrEqual(1 - 1 / 127);
      expect(Math.abs(gray16(frame.files.depth)(W / 2, H / 2) - 5000), side).toBeLessThanOrEqual(50);
    }
  }
  // A box seen from inside (back faces only): its far wall faces the camera, so the normal is +z.
  const inside = scene({ tag: "Box", key: "room", args: [4, 4, 4], position: [0, 0, 4], side: "back", material: "basic" });
  const frame = await grab(tabfarm, inside, ["normal", "mask"]);
  expect(normals(frame.files.normal)(W / 2, H / 2).n[2]).toBeGreaterThanOrEqual(1 - 1 / 127);
  expect(gray16(frame.files.mask)(W / 2, H / 2)).toBe(frame.instances![0].id);
});

test("DefaultScene's grid is drawn in rgb but is background in the mask and the normals", async ({ tabfarm }) => {
  const s: SceneElement = {
    tag: "DefaultScene", key: "root", background: "#000000", children: [
      { tag: "Box", key: "box", args: [0.5, 0.5, 0.5] },
      { ...CAMERA, position: [0, 6, 0.01], lookAt: [0, 0, 0] },
    ],
  };
  const frame = await grab(tabfarm, s, ["mask", "normal"]);
  const rgb = PNG.sync.read(frame.image);
  const mask = gray16(frame.files.mask);
  const normal = normals(frame.files.normal);
  let gridPixels = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (mask(x, y) !== 0) continue;
      expect(normal(x, y).bytes).toEqual([0, 0, 0]);
      if (rgb.data[(y * W + x) * 4 + 1] > 40) gridPixels++;
    }
  }
  expect(gridPixels).toBeGreaterThan(50);
  expect([...maskValues(mask)].sort((a, b) => a - b)).toEqual([0, frame.instances![0].id]);
  expect(frame.instances!.map((i) => i.key)).toEqual(["box"]);
});

test("an element whose instance ids are in error: a grab with mask fails naming it", async ({ tabfarm }) => {
  const bad = scene({ tag: "Plane", key: "odd", instance: 1.5, args: [2, 2] });
  await expect(grab(tabfarm, bad, ["mask"])).rejects.toThrow(/'odd'.*instance must be a whole number/);
  // Layers that do not draw ids still render.
  const frame = await grab(tabfarm, bad, ["depth"]);
  expect(frame.files.depth).toBeDefined();
});

// The mask with a plugin's tags (client/src/plugins/example.tsx: `Arrow`, `Stack`): ElementNode wraps a plugin
// component in a group tagged with its element key, so its meshes get the element's id. (Its own file:
// the plugin needs its own client build, hence its own worker.)
import { test, expect } from "../../harness/testing.js";
import type { SceneElement } from "../../protocol/elements.js";
import { PNG } from "pngjs";

test.use({ tabfarmPlugins: "client/src/plugins/example.tsx" });

const W = 64;
const H = 48;
const F = H / 2 / Math.tan(Math.PI / 6);

test("a plugin's element gets its own id, a child element inside it its own", async ({ tabfarm }) => {
  const scene: SceneElement = {
    tag: "Scene", key: "plugins", background: "#000000", children: [
      { tag: "Arrow", key: "arrow", position: [-1, -0.5, 0], children: [{ tag: "Box", key: "inner", args: [0.3, 0.3, 0.3], position: [2, 0.5, 0] }] },
    ],
  };
  const frame = await tabfarm.renderLayers(scene, { camera: { position: [0, 0, 5], fov: 60 }, width: W, height: H, layers: ["mask", "boxes"] });
  const png = PNG.sync.read(frame.files.mask!, { skipRescale: true } as never);
  const mask = (x: number, y: number) => png.data[(y * W + x) * 4];
  const byKey = new Map(frame.instances!.map((i) => [i.key, i]));
  expect([...byKey.keys()].sort()).toEqual(["arrow", "inner"]);
  const arrow = byKey.get("arrow")!;
  const inner = byKey.get("inner")!;
  expect(arrow.id).not.toBe(inner.id);
  // The shaft at x = -1 m, y = -0.1 m; the box at x = 1 m, y = 0.
  expect(mask(Math.floor(W / 2 + (-1 / 5) * F), Math.floor(H / 2 + (0.1 / 5) * F))).toBe(arrow.id);
  expect(mask(Math.floor(W / 2 + (1 / 5) * F), H / 2)).toBe(inner.id);
  // The arrow's 3D box (shaft and cone, 1 m tall from its base) in its wrapper group's frame, here the world's.
  expect(arrow.box3d!.min[0]).toBeCloseTo(-1.12, 5);
  expect(arrow.box3d!.min[1]).toBeCloseTo(-0.5, 5);
  expect(arrow.box3d!.max[1]).toBeCloseTo(0.5, 5);
  inner.box3d!.min.forEach((v) => expect(v).toBeCloseTo(-0.15, 6));
});

test("an instanced mesh: every instance is drawn where it stands, with the element's id, and boxed whole", async ({ tabfarm }) => {
  const scene: SceneElement = {
    tag: "Scene", key: "plugins", background: "#000000", children: [
      { tag: "Stack", key: "stack", count: 3, size: 0.5, position: [0, -1, 0], color: "#ffffff" },
    ],
  };
  const frame = await tabfarm.renderLayers(scene, { camera: { position: [0, 0, 5], fov: 60 }, width: W, height: H, layers: ["mask", "normal", "boxes"] });
  const png = PNG.sync.read(frame.files.mask!, { skipRescale: true } as never);
  const mask = (x: number, y: number) => png.data[(y * W + x) * 4];
  const [stack] = frame.instances!;
  expect(stack.key).toBe("stack");
  // Cube centres at y = -0.75, -0.25, 0.25 (front faces 0.25 m nearer): each one's pixel has the id.
  for (const Y of [-0.75, -0.25, 0.25]) expect(mask(W / 2, Math.floor(H / 2 - (Y / 4.75) * F)), `cube at y=${Y}`).toBe(stack.id);
  expect(mask(W / 2, Math.floor(H / 2 - (0.75 / 4.75) * F))).toBe(0);
  // All three cubes, in the frame of the group that wraps the plugin (at the origin: the world's).
  expect(stack.box3d!.min[1]).toBeCloseTo(-1, 5);
  expect(stack.box3d!.max[1]).toBeCloseTo(0.5, 5);
  expect(stack.box3d!.objectToWorld[1][3]).toBe(0);
});

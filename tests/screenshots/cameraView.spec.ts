// CameraView sizes: the image is exactly width/downsample × height/downsample whatever the page's
// devicePixelRatio, and the intrinsics describe the image that was written.
import { test, expect } from "../../harness/testing.js";
import { PNG } from "pngjs";

test.use({ deviceScaleFactor: 2 });

test("image size ignores devicePixelRatio and follows downsample", async ({ tabfarm, page }) => {
  expect(await page.evaluate(() => window.devicePixelRatio)).toBe(2);
  const scene = {
    tag: "DefaultScene", key: "root", children: [
      { tag: "Box", key: "box" },
      { tag: "CameraView", key: "cam", width: 300, height: 200, fov: 60, downsample: 2, position: [2, 2, 2], lookAt: [0, 0, 0] },
    ],
  };
  tabfarm.session.set(scene);
  const half = await tabfarm.session.grabRender({ key: "cam" });
  expect([half.width, half.height]).toEqual([150, 100]);
  const png = PNG.sync.read(half.image);
  expect([png.width, png.height]).toEqual([150, 100]);
  // fy = (h/2) / tan(fov/2) for the written image; principal point at its centre.
  expect(half.camera.K[1][1]).toBeCloseTo(50 / Math.tan(Math.PI / 6), 6);
  expect(half.camera.K[0][2]).toBe(75);

  const full = await tabfarm.session.grabRender({ key: "cam", downsample: 1 });
  expect([full.width, full.height]).toEqual([300, 200]);
  const webp = await tabfarm.session.grabRender({ key: "cam", format: "webp", quality: 0.8 });
  expect(webp.image.subarray(8, 12).toString()).toBe("WEBP");
});

test("server-side encoding (raw pixels + sharp) gives the same pixels as the page's encoder", async ({ tabfarm }) => {
  tabfarm.session.set({
    tag: "DefaultScene", key: "root", children: [
      { tag: "TorusKnot", key: "k", color: "#669bbc" },
      { tag: "CameraView", key: "cam", width: 120, height: 90, position: [2, 2, 2], lookAt: [0, 0, 0] },
    ],
  });
  const browser = await tabfarm.session.grabRender({ key: "cam", encoding: "browser" });
  const server = await tabfarm.session.grabRender({ key: "cam", encoding: "raw" });
  expect(server.format).toBe("png");
  const a = PNG.sync.read(browser.image);
  const b = PNG.sync.read(server.image);
  expect([b.width, b.height]).toEqual([120, 90]);
  expect(Buffer.compare(a.data, b.data)).toBe(0);
  const jpeg = await tabfarm.session.grabRender({ key: "cam", encoding: "raw", format: "jpeg", quality: 0.7 });
  expect([...jpeg.image.subarray(0, 2)]).toEqual([0xff, 0xd8]);
});

test("depth: millimetres along the camera axis, 0 where nothing is hit", async ({ tabfarm }) => {
  tabfarm.session.set({
    tag: "Scene", key: "root", background: "#000000", children: [
      // A wall facing the camera 5 m away, filling the left half of the view; nothing on the right.
      { tag: "Plane", key: "wall", args: [4, 20], position: [-2, 0, 0], material: "basic" },
      { tag: "CameraView", key: "cam", width: 64, height: 48, fov: 60, near: 0.1, far: 50, position: [0, 0, 5], lookAt: [0, 0, 0] },
    ],
  });
  const frame = await tabfarm.session.grabRender({ key: "cam", layers: ["depth"] });
  expect(frame.layers).toEqual(["rgb", "depth"]);
  expect(frame.files.depth).toBeDefined();
  const png = PNG.sync.read(frame.files.depth!, { skipRescale: true } as never);
  expect([png.width, png.height, png.depth]).toEqual([64, 48, 16]);
  const at = (x: number, y: number) => png.data[(y * 64 + x) * 4];
  // Depth along the axis is the same 5 m across a plane facing the camera, centre or edge.
  for (const [x, y] of [[5, 24], [20, 5], [28, 40]]) expect(Math.abs(at(x, y) - 5000)).toBeLessThanOrEqual(2);
  for (const [x, y] of [[40, 24], [60, 3]]) expect(at(x, y)).toBe(0);
});

test("depth and colour come out top row first (a wall over the top half)", async ({ tabfarm }) => {
  tabfarm.session.set({
    tag: "Scene", key: "root", background: "#000000", children: [
      { tag: "Plane", key: "wall", args: [20, 4], position: [0, 2, 0], material: "basic" },
      { tag: "CameraView", key: "cam", width: 64, height: 48, fov: 60, near: 0.1, far: 50, position: [0, 0, 5], lookAt: [0, 0, 0] },
    ],
  });
  // `depth: true` is the short form of layers: ["depth"]; frame.depth = frame.files.depth.
  const frame = await tabfarm.session.grabRender({ key: "cam", depth: true });
  expect(frame.depth).toBe(frame.files.depth);
  const depth = PNG.sync.read(frame.depth!, { skipRescale: true } as never);
  const colour = PNG.sync.read(frame.image);
  const at = (png: PNG, x: number, y: number) => png.data[(y * 64 + x) * 4];
  for (const y of [2, 12, 20]) {
    expect(Math.abs(at(depth, 32, y) - 5000)).toBeLessThanOrEqual(2);
    expect(at(colour, 32, y)).toBeGreaterThan(200);
  }
  for (const y of [28, 38, 46]) {
    expect(at(depth, 32, y)).toBe(0);
    expect(at(colour, 32, y)).toBeLessThan(20);
  }
});

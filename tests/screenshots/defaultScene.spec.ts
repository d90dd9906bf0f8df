// Golden images of a DefaultScene with a few objects from three camera poses. A change in how the
// client renders (colour, lights, camera conventions, row order) shows up here as a pixel diff.
import { test, expect } from "../../harness/testing.js";
import { demoScene } from "../../server/jobs/demoJobs.js";
import { PNG } from "pngjs";

const poses = {
  front: { position: [0, 2, 6], lookAt: [0, 0.5, 0], fov: 50 },
  side: { position: [6, 2.5, 0.5], lookAt: [0, 0.5, 0], fov: 50 },
  top: { position: [0.01, 8, 0.01], lookAt: [0, 0, 0], fov: 45 },
} as const;

for (const [name, camera] of Object.entries(poses)) {
  test(`DefaultScene from the ${name}`, async ({ tabfarm }) => {
    const png = await tabfarm.render(demoScene(), { camera: camera as never, width: 320, height: 240 });
    const decoded = PNG.sync.read(png);
    expect([decoded.width, decoded.height]).toEqual([320, 240]);
    expect(png).toMatchSnapshot(`default-scene-${name}.png`, { maxDiffPixelRatio: 0.005, threshold: 0.1 });
  });
}

test("an update sent before a grab is in that grab's image", async ({ tabfarm }) => {
  const scene = { tag: "DefaultScene", key: "s", grid: false, children: [{ tag: "Box", key: "b", color: "#ff0000" }] };
  const camera = { position: [0, 0, 3], lookAt: [0, 0, 0] } as const;
  const red = PNG.sync.read(await tabfarm.render(scene, { camera: camera as never, width: 64, height: 64 }));
  tabfarm.session.update({ key: "b", color: "#00ff00" });
  const green = PNG.sync.read(await tabfarm.render(scene, { camera: camera as never, width: 64, height: 64 }));
  const centre = (p: PNG) => [...p.data.subarray((32 * 64 + 32) * 4, (32 * 64 + 32) * 4 + 3)];
  const [r1, g1] = centre(red);
  const [r2, g2] = centre(green);
  expect(r1).toBeGreaterThan(g1);
  expect(g2).toBeGreaterThan(r2);
});

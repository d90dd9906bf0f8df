// How users test their own scenes in CI: a scene JSON with its own CameraView, compared to a golden.
import fs from "node:fs";
import path from "node:path";
import { test, expect } from "../../harness/testing.js";

test("a user's scene JSON rendered from its own CameraView matches its golden image", async ({ tabfarm }) => {
  const scene = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "scenes/robot-arm.json"), "utf8"));
  const png = await tabfarm.render(scene, { cameraKey: "inspect" });
  expect(png).toMatchSnapshot("robot-arm.png", { maxDiffPixelRatio: 0.005, threshold: 0.1 });
});

test("a scene with an unknown tag is a clear error, and the page keeps working", async ({ tabfarm }) => {
  await expect(tabfarm.render({ tag: "Scene", key: "s", children: [{ tag: "Teapot", key: "t" }] }, { width: 32, height: 32 }))
    .rejects.toThrow(/unknown tag 'Teapot' \(key 't'\)/);
  const png = await tabfarm.render({ tag: "DefaultScene", key: "ok", children: [] }, { width: 32, height: 32 });
  expect(png.subarray(1, 4).toString()).toBe("PNG");
});

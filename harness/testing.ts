// A Playwright Test fixture for screenshot (golden image) tests of your own scenes:
//
//   import { test, expect } from "<path to tabfarm>/harness/testing";
//   test("my scene", async ({ tabfarm }) => {
//     const png = await tabfarm.render(myScene, { camera: { position: [4, 3, 4], lookAt: [0, 0, 0] } });
//     expect(png).toMatchSnapshot("my-scene.png", { maxDiffPixelRatio: 0.01 });
//   });
//
// The scene is rendered by the real client in Playwright's `page` (same renderer as the farm) from a
// CameraView, read from a render target and returned as PNG bytes; Playwright compares and updates
// the golden file (`npx playwright test --update-snapshots`).
//
// Other layers (depth, depth32, mask, class, normal, boxes) of the same frame, as the farm writes them:
//
//   const frame = await tabfarm.renderLayers(myScene, { camera: { position: [0, 0, 5] }, layers: ["mask", "normal"] });
//   frame.files.mask;      // 16-bit PNG of instance ids; frame.instances maps them to element keys
//   frame.files.normal;    // 8-bit RGB PNG of camera-space normals
//
// The browser is found as the farm finds it (findBrowser: --browser's env TABFARM_BROWSER, CHROMIUM_PATH,
// Playwright's, the system's, then the bundled one) and launched with the farm's flags (TABFARM_GL, default
// swiftshader: goldens stay on one named backend, not the farm's per-machine `auto`), unless your playwright.config's launchOptions name an executablePath of their own; args your
// config gives are added after the farm's.
import { test as base, expect } from "@playwright/test";
import type { SceneElement } from "../protocol/elements.js";
import type { CameraPose } from "../protocol/camera.js";
import type { ImageFormat } from "../protocol/grab.js";
import type { LayerName } from "../protocol/layers.js";
import { Farm } from "../server/session/Farm.js";
import type { GrabbedFrame, Session } from "../server/session/Session.js";
import { FARM_CAMERA_KEY, poseProps, withFarmCamera } from "../server/dispatch/farmCamera.js";
import { buildClient } from "./buildClient.js";
import { findBrowser } from "./findBrowser.js";
import { chromiumArgs, GL_BACKENDS, isGlBackend, type ConcreteGlBackend } from "./chromiumFlags.js";

export interface RenderOptions {
  /** Pose of the camera the fixture adds (ignored with cameraKey). */
  camera?: CameraPose;
  /** Grab from a CameraView of your own scene instead; the scene is then set as given. */
  cameraKey?: string;
  width?: number;
  height?: number;
  format?: ImageFormat;
  quality?: number;
}

export interface RenderLayersOptions extends RenderOptions {
  /** Layers besides rgb (protocol/layers.ts), e.g. ["depth", "mask", "normal"]. */
  layers?: LayerName[];
}

export interface TabfarmFixture {
  /** The live session of this test's page, for anything render() does not cover (update, grabRender…). */
  session: Session;
  /** Renders `scene` (an element tree) from a camera and returns the encoded image bytes. */
  render(scene: SceneElement, options?: RenderOptions): Promise<Buffer>;
  /** Renders `scene` with `layers` and returns the whole frame: `image` (rgb), `files` (each layer's encoded file), `instances`. */
  renderLayers(scene: SceneElement, options?: RenderLayersOptions): Promise<GrabbedFrame>;
}

let nextPage = 0;

/**
 * The farm's browser and flags, where the config's launchOptions do not name a browser. The config's own
 * args come after the farm's (Chromium keeps the last of a repeated switch), so adding one flag does not
 * drop the GL flags the goldens were rendered with.
 */
export function farmLaunchOptions<T extends { executablePath?: string; args?: string[] }>(configured: T, env: NodeJS.ProcessEnv = process.env): T {
  if (configured.executablePath) return configured;
  const gl = env["TABFARM_GL"]?.trim() || "swiftshader";
  const named = GL_BACKENDS.filter((b) => b !== "auto");
  if (gl === "auto") throw new Error(`TABFARM_GL is set to "auto": golden images need one named backend, the same on every machine (one of ${named.join(", ")}; default swiftshader)`);
  if (!isGlBackend(gl)) throw new Error(`TABFARM_GL is set to "${gl}": expected one of ${named.join(", ")}`);
  return { ...configured, executablePath: findBrowser(env).path, args: [...chromiumArgs(gl as ConcreteGlBackend), ...(configured.args ?? [])] };
}

export const test = base.extend<{ tabfarm: TabfarmFixture }, { tabfarmServer: Farm; tabfarmPlugins: string }>({
  launchOptions: [async ({ launchOptions }, use) => use(farmLaunchOptions(launchOptions)), { scope: "worker" }],
  /** A --plugins module to build the client with (`test.use({ tabfarmPlugins: "my/plugins.tsx" })`); default $TABFARM_PLUGINS. */
  tabfarmPlugins: [process.env.TABFARM_PLUGINS ?? "", { scope: "worker", option: true }],
  tabfarmServer: [
    async ({ tabfarmPlugins }, use) => {
      const farm = new Farm({ clientDir: await buildClient({ plugins: tabfarmPlugins || undefined }), log: () => {} });
      await farm.listen();
      await use(farm);
      await farm.close();
    },
    { scope: "worker" },
  ],
  tabfarm: async ({ page, tabfarmServer }, use) => {
    const worker = `playwright-${process.pid}-${nextPage++}`;
    const joined = new Promise<Session>((resolve) => {
      const onSession = (s: Session) => s.info.worker === worker && (tabfarmServer.off("session", onSession), resolve(s));
      tabfarmServer.on("session", onSession);
    });
    await page.goto(`${tabfarmServer.url}&worker=${worker}`);
    const session = await joined;
    if (!session.info.webgl) throw new Error(`tabfarm fixture: this browser has no WebGL (${session.info.userAgent})`);
    let sceneSet = "";
    /** Sends `scene` (only when it changed since the last call), poses the camera, grabs. */
    const grab = async (scene: SceneElement, options: RenderLayersOptions): Promise<GrabbedFrame> => {
      const { width = 640, height = 480, format = "png", quality, cameraKey, layers } = options;
      const camera = options.camera ?? { position: [4, 3, 4], lookAt: [0, 0, 0] };
      const wrapped = cameraKey ? scene : withFarmCamera(scene, width, height, camera);
      const json = JSON.stringify(wrapped);
      if (json !== sceneSet) {
        session.set(wrapped);
        sceneSet = json;
      }
      if (!cameraKey) session.update({ key: FARM_CAMERA_KEY, ...poseProps(camera) });
      return session.grabRender({ key: cameraKey ?? FARM_CAMERA_KEY, format, quality, layers });
    };
    await use({
      session,
      render: async (scene, options = {}) => (await grab(scene, options)).image,
      renderLayers: (scene, options = {}) => grab(scene, options),
    });
  },
});

export { expect };

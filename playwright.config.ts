// Screenshot tests (golden images) run in the same Chromium the farm uses: found by findBrowser
// (CHROMIUM_PATH, Playwright's own browser, or a system Chromium) with the farm's GL flags.
import { defineConfig } from "@playwright/test";
import { findBrowser } from "./harness/findBrowser.js";
import { chromiumArgs, isGlBackend } from "./harness/chromiumFlags.js";

const gl = process.env.TABFARM_GL ?? "swiftshader";
if (!isGlBackend(gl)) throw new Error(`TABFARM_GL=${gl}: expected swiftshader, egl, vulkan or auto`);

export default defineConfig({
  testDir: "./tests/screenshots",
  // Goldens are named by the test, not by platform or browser: the same scene must render the same.
  snapshotPathTemplate: "{testDir}/golden/{arg}{ext}",
  globalSetup: "./tests/screenshots/globalSetup.ts",
  workers: 1,
  timeout: 60_000,
  reporter: [["list"]],
  use: {
    browserName: "chromium",
    headless: true,
    viewport: { width: 320, height: 240 },
    launchOptions: { executablePath: findBrowser().path, args: chromiumArgs(gl) },
  },
});

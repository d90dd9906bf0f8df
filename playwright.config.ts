// Screenshot tests (golden images). The browser and its flags come from the fixture (harness/testing.ts):
// the farm's own discovery (findBrowser: TABFARM_BROWSER, CHROMIUM_PATH, Playwright's, the system's, then the
// bundled Chromium) and the farm's GL flags (TABFARM_GL, default swiftshader), so goldens render as the farm does.
import { defineConfig } from "@playwright/test";

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
  },
});

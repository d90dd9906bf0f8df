// Builds the browser client (client/) into dist/client, which the server serves. Two pages, each its
// own entry so neither loads the other's code: index.html (a farm tab: R3F, three.js) and
// dashboard.html (the live dashboard: React, uPlot).
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";
import path from "node:path";

// A user's own components (registerComponent calls) are bundled in from TABFARM_PLUGINS.
const plugins = process.env.TABFARM_PLUGINS
  ? path.resolve(process.env.TABFARM_PLUGINS)
  : fileURLToPath(new URL("./client/src/plugins/none.ts", import.meta.url));

const page = (name: string) => fileURLToPath(new URL(`./client/${name}`, import.meta.url));

export default defineConfig({
  resolve: { alias: { "virtual:tabfarm-plugins": plugins } },
  root: fileURLToPath(new URL("./client", import.meta.url)),
  base: "./",
  build: {
    outDir: process.env.TABFARM_CLIENT_OUT ?? fileURLToPath(new URL("./dist/client", import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    // Vite 8 (rolldown) reads multi-page inputs here; `rollupOptions` is its deprecated alias.
    rolldownOptions: { input: { index: page("index.html"), dashboard: page("dashboard.html") } },
  },
  worker: { format: "es" },
  logLevel: "warn",
});

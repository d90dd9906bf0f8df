// Builds the browser client (client/) into dist/client, which the server serves.
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";
import path from "node:path";

// A user's own components (registerComponent calls) are bundled in from TABFARM_PLUGINS.
const plugins = process.env.TABFARM_PLUGINS
  ? path.resolve(process.env.TABFARM_PLUGINS)
  : fileURLToPath(new URL("./client/src/plugins/none.ts", import.meta.url));

export default defineConfig({
  resolve: { alias: { "virtual:tabfarm-plugins": plugins } },
  root: fileURLToPath(new URL("./client", import.meta.url)),
  base: "./",
  build: {
    outDir: process.env.TABFARM_CLIENT_OUT ?? fileURLToPath(new URL("./dist/client", import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
  },
  worker: { format: "es" },
  logLevel: "warn",
});

// Entry point of a session page: check WebGL, mount the R3F canvas (frameloop "never": nothing renders
// unless the server asks for a grab) and connect to the server with the run's token.
import { createRoot } from "react-dom/client";
import { Canvas } from "@react-three/fiber";
import "./scene/builtins.js";
import "virtual:tabfarm-plugins";
import { SceneRoot } from "./scene/SceneRoot.js";
import { GlContextBridge } from "./capture/glContext.js";
import { browserInfo } from "./session/probeWebgl.js";
import { connectSession } from "./session/connection.js";
import { showStatus } from "./session/statusView.js";
import { registerComponent, knownTags } from "./scene/registry.js";

const params = new URLSearchParams(location.search);
const info = browserInfo(params.get("worker") ?? "");

// For user scripts and tests: register components at run time, list tags. The layer diagnostics
// (window.tabfarmLayers) and the bench's in-page loop are separate chunks, fetched only when a test or
// `npm run bench` asks: tab pages do not load them.
Object.assign(window, {
  tabfarm: {
    registerComponent, knownTags, info,
    loadLayerDiagnostics: () => import("./capture/layerProbe.js"),
    loadBench: () => import("./bench/rawLoop.js"),
  },
});

if (!info.webgl) {
  showStatus("WebGL is not available in this browser: tabfarm cannot render here.");
}
connectSession(info, params.get("token") ?? "");
if (info.webgl) {
  createRoot(document.getElementById("root")!).render(
    <Canvas frameloop="never" flat dpr={1} gl={{ antialias: false, powerPreference: "high-performance" }}>
      <GlContextBridge />
      <SceneRoot />
    </Canvas>,
  );
}

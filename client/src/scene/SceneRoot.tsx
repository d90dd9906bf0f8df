// The live scene inside the R3F canvas: subscribes to the store and reports each committed version.
import { useLayoutEffect, useSyncExternalStore } from "react";
import { sceneStore } from "./sceneStore.js";
import { ElementNode } from "./ElementNode.js";

export function SceneRoot() {
  const tree = useSyncExternalStore(sceneStore.subscribe, sceneStore.getTree);
  const version = sceneStore.version;
  useLayoutEffect(() => sceneStore.markCommitted(version), [tree, version]);
  return <ElementNode element={tree} />;
}

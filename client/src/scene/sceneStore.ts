// Holds the current element tree and lets a grab wait until React has committed it.
// Ops bump `version`; SceneRoot reports each committed version; a grab awaits its version
// and all pending asset loads, so an update sent before a grab is always in that grab's image.
// It also keeps the instance ids of the mask layer: the server's SentScene observes the same ops in the
// same order with the same InstanceTable, so both sides give every element the same id.
import type { SceneElement, SceneOp } from "../../../protocol/elements.js";
import { applyOp, EMPTY_SCENE } from "../../../protocol/applyOp.js";
import { InstanceTable, type InstanceResolution } from "../../../protocol/instances.js";
import { isKnownTag } from "./registry.js";

type Listener = () => void;

class SceneStore {
  tree: SceneElement = EMPTY_SCENE;
  version = 0;
  private committed = 0;
  private listeners = new Set<Listener>();
  private commitWaiters: Array<{ version: number; resolve: () => void }> = [];
  private pendingLoads = 0;
  private loadWaiters: Array<() => void> = [];
  /** Errors from ops or asset loads since the last grab; the next grab fails with them. */
  errors: string[] = [];
  private instances = new InstanceTable();

  apply(op: SceneOp): void {
    const next = applyOp(this.tree, op, isKnownTag);
    // Every op applied without error, changed tree or not, as SentScene observes it.
    this.instances.observe(op, next);
    if (next === this.tree) return;
    this.tree = next;
    this.version++;
    for (const l of this.listeners) l();
  }

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getTree = (): SceneElement => this.tree;

  /** Instance ids and labels of the current tree (what a grab's mask draws). */
  instanceResolution(): InstanceResolution {
    return this.instances.resolve(this.tree);
  }

  markCommitted(version: number): void {
    this.committed = Math.max(this.committed, version);
    this.commitWaiters = this.commitWaiters.filter((w) => (w.version <= this.committed ? (w.resolve(), false) : true));
  }

  /** Resolves once React has committed the current tree and no asset is still loading. */
  async settled(): Promise<void> {
    const version = this.version;
    if (this.committed < version) await new Promise<void>((resolve) => this.commitWaiters.push({ version, resolve }));
    while (this.pendingLoads > 0) await new Promise<void>((resolve) => this.loadWaiters.push(resolve));
  }

  /**
   * Marks an asset load as pending so grabs wait for it. Call the returned function once the loaded
   * object is committed (or the load failed); calling it again does nothing.
   */
  beginLoad(): () => void {
    this.pendingLoads++;
    let finished = false;
    return () => {
      if (finished) return;
      finished = true;
      this.pendingLoads--;
      if (this.pendingLoads === 0) for (const w of this.loadWaiters.splice(0)) w();
    };
  }

  /** Kept for the next grab to report, and sent to the server at once by the session. */
  reportError(message: string): void {
    this.errors.push(message);
    this.onError?.(message);
  }

  onError?: (message: string) => void;

  takeErrors(): string[] {
    return this.errors.splice(0);
  }
}

export const sceneStore = new SceneStore();

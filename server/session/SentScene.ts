// The scene a session's page shows, as the server sent it: every op the Session sends is applied here
// too, with the page's own applyOp, so the server knows the size of every CameraView and hence of
// every image it asks for. A reply of any other size is refused (Session.acceptReply) whatever the
// page claims: a handler cannot forget the check, since every op goes through its Session.
// It also keeps the scene's instance ids (protocol/instances.ts) the way the page does, so the server
// knows which ids a mask may hold and which element and label each names.
import { applyOp, EMPTY_SCENE, findNode, SceneOpError } from "../../protocol/applyOp.js";
import type { SceneElement, SceneOp } from "../../protocol/elements.js";
import { cameraViewSize, grabImageSize } from "../../protocol/grab.js";
import { InstanceTable, type InstanceResolution } from "../../protocol/instances.js";

/** Tags are the page's business (plugins add their own): an unknown one is reported by the page. */
const anyTag = () => true;

export class SentScene {
  private tree: SceneElement = EMPTY_SCENE;
  private readonly instanceTable = new InstanceTable();

  apply(op: SceneOp): void {
    try {
      // As the page receives it, through JSON: a prop set to undefined is absent (an update keeps the old
      // value), and later changes to the caller's objects do not reach what was sent.
      this.tree = applyOp(this.tree, JSON.parse(JSON.stringify(op)), anyTag);
    } catch (err) {
      // The page refuses the op too (a missing or duplicate key…), keeps its tree, and fails the next grab.
      if (!(err instanceof SceneOpError)) throw err;
      return;
    }
    // Only ops applied successfully, as the page does: both sides then draw the same ids.
    this.instanceTable.observe(op, this.tree);
  }

  /**
   * The instance ids of the scene as sent so far. The result describes this scene state for good
   * (trees are immutable, and later ops make a new resolution): a grab keeps the one of its send time.
   */
  instances(): InstanceResolution {
    return this.instanceTable.resolve(this.tree);
  }

  /** The exact size a grab of CameraView `key` renders, or undefined when no CameraView has that key. */
  grabSize(key: string, downsample?: number): { width: number; height: number } | undefined {
    const node = findNode(this.tree, key);
    if (node?.tag !== "CameraView") return undefined;
    return grabImageSize(cameraViewSize(node), downsample);
  }
}

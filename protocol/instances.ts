// Instance ids for the mask layer, computed the same way on both sides: the page (sceneStore) and the
// server (SentScene) apply the same ops in the same order, each keeps an InstanceTable, so the id the
// page draws for an element is the id the server writes in the frame's metadata, with no id table sent.
//
// Rules (README "Layers"):
//  - An element's `instance` prop (a whole number 0..65535; 0 hides it from the mask) is its id, and the
//    id of every descendant that sets none. `label` (a non-blank string of at most MAX_LABEL_CHARS
//    characters) is inherited the same way. Either prop set to null is unset (as every prop: null is
//    the default).
//  - Elements may share an explicit id (one instance made of several parts) if they agree on its label.
//  - Any other element gets an automatic id: on `set`, in tree order (pre-order) from 1; an element added
//    later gets the next unused one. Automatic ids skip ids given explicitly at the time they are drawn,
//    and an element keeps its id until the next `set`, also when removed and added again.
//  - An instance's label is the label of the element that owns its id (children under an explicit id
//    share that id and its label).
//  - The scene's root and the built-ins that draw no mesh of their own (Scene, DefaultScene, Group, lights,
//    CameraView) get no automatic id.
import type { SceneElement, SceneOp } from "./elements.js";
import { MAX_ID } from "./layers.js";

/** What one element resolves to for the mask: its id, the element that owns that id, and its label. */
export interface ElementInstance {
  /** 0: not in the mask (background). */
  id: number;
  /** The element whose id this is: itself for automatic ids, the element that set `instance` otherwise. */
  owner: string;
  label?: string;
}

/** An id's entry in a frame's metadata. */
export interface InstanceInfo {
  id: number;
  key: string;
  label?: string;
}

export interface InstanceResolution {
  /** By element key. */
  elements: Map<string, ElementInstance>;
  /** By id (ids > 0 only), the owner element and its label. */
  ids: Map<number, InstanceInfo>;
  /** Problems that make a mask wrong (a bad `instance` value, an explicit id that is another element's automatic id). */
  errors: string[];
}

/** Longest `label`: a label is copied into every frame line that shows it and into manifest.json's class table. */
export const MAX_LABEL_CHARS = 256;

/**
 * Why `label` cannot name a class (an element's `label` prop, a --classes entry, a manifest entry), or
 * undefined when it can: a string of 1..MAX_LABEL_CHARS characters that is not all blank (a blank label
 * would be a class nobody can tell from "unlabelled").
 */
export function labelProblem(label: unknown): string | undefined {
  if (typeof label !== "string" || label.trim() === "") return "must be a non-empty string";
  if (label.length > MAX_LABEL_CHARS) return `must be at most ${MAX_LABEL_CHARS} characters (it has ${label.length})`;
  return undefined;
}

/** Why `instance` (set, not null) cannot be an element's id, or undefined when it can. */
export function instanceProblem(instance: unknown): string | undefined {
  return explicitId(instance) === undefined ? `must be a whole number from 0 to ${MAX_ID}` : undefined;
}

/** A prop's value in a message: its JSON, cut short. */
export function shortJson(value: unknown): string {
  return String(JSON.stringify(value) ?? typeof value).slice(0, 40);
}

/**
 * Built-in tags that draw no mesh of their own (a scene root nested in the farm's, a group whose children
 * are elements with their own ids, lights, a camera): no automatic id, so ids go to what can be seen.
 */
const NO_ID_TAGS = new Set(["CameraView", "Scene", "DefaultScene", "Group", "AmbientLight", "DirectionalLight", "HemisphereLight"]);

export class InstanceTable {
  /** Automatic ids by element key, since the last `set` (at most MAX_ID entries: elements added past them are not kept). */
  private auto = new Map<string, number>();
  private nextAuto = 1;
  /** All MAX_ID automatic ids are taken: an element without one gets none until the next `set`. */
  private exhausted = false;
  private cache?: { tree: SceneElement; resolution: InstanceResolution };

  /** Call after `op` was applied successfully and `tree` is the result. */
  observe(op: SceneOp, tree: SceneElement): void {
    // Only a new element, or an `instance` unset, can need an automatic id: a remove, or an update that
    // touches neither children nor `instance` (a camera pose per frame), leaves the table as it is. This
    // spares two walks of the tree per op (1.9 ms per op on a 10,000-element scene) on page and server.
    if (op.op === "remove" || (op.op === "update" && !op.nodes.some((patch) => "instance" in patch || "children" in patch))) return;
    if (op.op === "set") {
      this.auto.clear();
      this.nextAuto = 1;
      this.exhausted = false;
    }
    const explicit = new Set<number>();
    walk(tree, (node) => {
      const id = explicitId(node.instance);
      if (id !== undefined && id > 0) explicit.add(id);
    });
    // Elements under an explicit id share it: they take no automatic id (until that id is unset).
    walk(tree, (node, isRoot, underExplicit) => {
      if (isRoot || underExplicit || NO_ID_TAGS.has(node.tag) || node.instance != null || this.auto.has(node.key) || this.exhausted) return;
      while (explicit.has(this.nextAuto)) this.nextAuto++;
      // Past 65535 the element gets no id (and is not recorded: a session that adds new keys for ever must
      // not grow this map for ever); resolve() reports it when a mask is asked for.
      if (this.nextAuto <= MAX_ID) this.auto.set(node.key, this.nextAuto++);
      else this.exhausted = true;
    });
  }

  /** Ids and labels of every element of `tree` (cached per tree: trees are immutable). */
  resolve(tree: SceneElement): InstanceResolution {
    if (this.cache?.tree === tree) return this.cache.resolution;
    const elements = new Map<string, ElementInstance>();
    const ids = new Map<number, InstanceInfo>();
    const errors: string[] = [];
    const explicitOwner = new Map<number, { key: string; label?: string }>();
    const autoOwner = new Map<number, string>();
    // Recursion is bounded: trees are at most MAX_SCENE_DEPTH levels (checked when they arrive).
    const visit = (node: SceneElement, explicitAbove: ElementInstance | undefined, labelAbove: string | undefined, isRoot: boolean) => {
      // null is unset (inherits); anything else that is no usable label makes the mask's metadata wrong.
      const problem = node.label == null ? undefined : labelProblem(node.label);
      if (problem) errors.push(`element '${node.key}': label ${problem}, got ${shortJson(node.label)}`);
      const label = node.label != null && !problem ? (node.label as string) : labelAbove;
      let here: ElementInstance | undefined;
      let passDown = explicitAbove;
      if (node.instance != null) {
        const id = explicitId(node.instance);
        if (id === undefined) errors.push(`element '${node.key}': instance ${instanceProblem(node.instance)}, got ${shortJson(node.instance)}`);
        // Parts of one instance share its first element's key (the id's owner) and must share its label.
        const first = id ? explicitOwner.get(id) : undefined;
        if (id && !first) explicitOwner.set(id, { key: node.key, label });
        if (first && first.label !== label) {
          errors.push(`element '${node.key}': instance ${id} is also '${first.key}', with ${describeLabel(first.label)}, but this one has ${describeLabel(label)} (one id has one label)`);
        }
        here = passDown = { id: id ?? 0, owner: first?.key ?? node.key, label };
      } else if (explicitAbove) {
        here = { ...explicitAbove };
      } else if (!isRoot && !NO_ID_TAGS.has(node.tag)) {
        const id = this.auto.get(node.key) ?? (this.exhausted ? -1 : 0);
        if (id === -1) errors.push(`element '${node.key}': more than ${MAX_ID} instances since the last set`);
        here = { id: Math.max(0, id), owner: node.key, label };
        if (id > 0) autoOwner.set(id, node.key);
      }
      if (here) {
        elements.set(node.key, here);
        if (here.id > 0 && here.owner === node.key && !ids.has(here.id)) {
          ids.set(here.id, here.label === undefined ? { id: here.id, key: node.key } : { id: here.id, key: node.key, label: here.label });
        }
      }
      for (const child of node.children ?? []) visit(child, passDown, label, false);
    };
    visit(tree, undefined, undefined, true);
    for (const [id, { key }] of explicitOwner) {
      const other = autoOwner.get(id);
      if (other !== undefined) errors.push(`element '${key}': instance ${id} is already the automatic id of '${other}' (give '${other}' an instance too, or pick another id)`);
    }
    const resolution = { elements, ids, errors };
    this.cache = { tree, resolution };
    return resolution;
  }
}

function describeLabel(label: string | undefined): string {
  return label === undefined ? "no label" : `label '${label.slice(0, 60)}'`;
}

function explicitId(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_ID ? value : undefined;
}

/** Pre-order, without recursion (trees are at most MAX_SCENE_DEPTH levels, but stay safe); `underExplicit`: an ancestor sets `instance`. */
function walk(tree: SceneElement, visit: (node: SceneElement, isRoot: boolean, underExplicit: boolean) => void): void {
  const stack: Array<{ node: SceneElement; isRoot: boolean; underExplicit: boolean }> = [{ node: tree, isRoot: true, underExplicit: false }];
  while (stack.length) {
    const { node, isRoot, underExplicit } = stack.pop()!;
    visit(node, isRoot, underExplicit);
    const children = node.children ?? [];
    const below = underExplicit || node.instance != null;
    for (let i = children.length - 1; i >= 0; i--) stack.push({ node: children[i], isRoot: false, underExplicit: below });
  }
}

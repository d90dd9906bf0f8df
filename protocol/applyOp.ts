// Applies one scene op to an immutable element tree. Pure and shared: the page applies the ops it
// receives, and the server applies the ops it sends to its copy of the page's scene (SentScene).
// Unchanged subtrees keep their identity, which lets React skip re-rendering them.
import type { NodePatch, SceneElement, SceneOp } from "./elements.js";

export class SceneOpError extends Error {}

export type TagCheck = (tag: string) => boolean;

/** An empty scene: what a page shows before the server's first `set`. */
export const EMPTY_SCENE: SceneElement = { tag: "Scene", key: "scene", children: [] };

export function applyOp(tree: SceneElement, op: SceneOp, isKnownTag: TagCheck): SceneElement {
  switch (op.op) {
    case "set":
      checkTree(op.scene, isKnownTag, new Set());
      return op.scene;
    case "update":
      return op.nodes.reduce<SceneElement>((t, patch) => updateNode(t, patch, isKnownTag), tree);
    case "upsert":
      return op.nodes.reduce<SceneElement>(
        (t, node) => (findNode(t, node.key) ? updateNode(t, node, isKnownTag) : insertNode(t, node, op.parentKey, isKnownTag)),
        tree,
      );
    case "add":
      return op.nodes.reduce<SceneElement>((t, node) => insertNode(t, node, op.parentKey, isKnownTag), tree);
    case "remove":
      return op.keys.reduce<SceneElement>((t, key) => removeNode(t, key), tree);
  }
}

export function findNode(tree: SceneElement, key: string): SceneElement | undefined {
  if (tree.key === key) return tree;
  for (const child of tree.children ?? []) {
    const found = findNode(child, key);
    if (found) return found;
  }
  return undefined;
}

function checkTree(node: SceneElement, isKnownTag: TagCheck, seen: Set<string>): void {
  if (typeof node.key !== "string" || node.key === "") throw new SceneOpError(`element with tag '${node.tag}' has no key`);
  if (!isKnownTag(node.tag)) throw new SceneOpError(`unknown tag '${node.tag}' (key '${node.key}')`);
  if (seen.has(node.key)) throw new SceneOpError(`duplicate key '${node.key}'`);
  seen.add(node.key);
  for (const child of node.children ?? []) checkTree(child, isKnownTag, seen);
}

function collectKeys(node: SceneElement, into = new Set<string>()): Set<string> {
  into.add(node.key);
  for (const child of node.children ?? []) collectKeys(child, into);
  return into;
}

/** Rebuilds only the path to the node with `key`; returns the same tree when the key is absent. */
function mapNode(tree: SceneElement, key: string, fn: (node: SceneElement) => SceneElement | null): SceneElement | null {
  if (tree.key === key) return fn(tree);
  const children = tree.children;
  if (!children) return tree;
  let changed = false;
  const next: SceneElement[] = [];
  for (const child of children) {
    const mapped = mapNode(child, key, fn);
    if (mapped !== child) changed = true;
    if (mapped) next.push(mapped);
  }
  return changed ? { ...tree, children: next } : tree;
}

function updateNode(tree: SceneElement, patch: NodePatch | SceneElement, isKnownTag: TagCheck): SceneElement {
  const target = findNode(tree, patch.key);
  if (!target) throw new SceneOpError(`update: no node with key '${patch.key}'`);
  if (patch.tag !== undefined && patch.tag !== target.tag) {
    throw new SceneOpError(`update: node '${patch.key}' is a ${target.tag}, cannot become a ${patch.tag}`);
  }
  if (patch.children !== undefined && !Array.isArray(patch.children)) {
    throw new SceneOpError(`update: children of '${patch.key}' must be a list of elements`);
  }
  if (Array.isArray(patch.children)) {
    const others = collectKeys(tree);
    for (const k of collectKeys(target)) others.delete(k);
    others.add(target.key); // the node keeps its key; its new children may not reuse it
    for (const child of patch.children as SceneElement[]) checkTree(child, isKnownTag, others);
  }
  return mapNode(tree, patch.key, (node) => ({ ...node, ...patch, tag: node.tag }))!;
}

function insertNode(tree: SceneElement, node: SceneElement, parentKey: string | undefined, isKnownTag: TagCheck): SceneElement {
  checkTree(node, isKnownTag, collectKeys(tree));
  const parent = parentKey ?? tree.key;
  if (!findNode(tree, parent)) throw new SceneOpError(`no parent node with key '${parent}'`);
  return mapNode(tree, parent, (p) => ({ ...p, children: [...(p.children ?? []), node] }))!;
}

function removeNode(tree: SceneElement, key: string): SceneElement {
  if (tree.key === key) throw new SceneOpError(`remove: cannot remove the root '${key}'; use set`);
  if (!findNode(tree, key)) throw new SceneOpError(`remove: no node with key '${key}'`);
  return mapNode(tree, key, () => null)!;
}

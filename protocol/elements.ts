// The scene as data: a JSON element tree `{tag, key, ...props, children}` and the ops that edit it.
// Declared once here; the server validates what it sends, the client validates what it receives.
import { z } from "zod";

export interface SceneElement {
  tag: string;
  key: string;
  children?: SceneElement[];
  [prop: string]: unknown;
}

// A key names a node in the tree (keys are not used in file names: job ids and layer names are).
export const ElementKey = z
  .string()
  .min(1, "key must not be empty")
  .max(128)
  .regex(/^[A-Za-z0-9_.:-]+$/, "key may hold only letters, digits and _ . : -");

/** Keys the farm gives its own nodes (its root and CameraView); jobs may not use them (see job.ts). */
export const RESERVED_KEY_PREFIX = "tabfarm.";

/** True for keys in the farm's namespace; compared without case so `TabFarm.camera` is refused too. */
export function isReservedKey(key: unknown): boolean {
  return typeof key === "string" && key.slice(0, RESERVED_KEY_PREFIX.length).toLowerCase() === RESERVED_KEY_PREFIX;
}

/**
 * Most levels of elements one tree (a scene, or a node an op inserts) may nest. Real scenes nest a
 * handful; the limit keeps validation, JSON encoding and React rendering far from the stack's end
 * (10,000 levels overflowed it), and is checked without recursion before anything else walks the tree.
 */
export const MAX_SCENE_DEPTH = 64;

/**
 * The first element nested deeper than `maxDepth` levels (the root is level 1), found without
 * recursion whatever the input, or undefined. Only `children` arrays of objects are followed.
 */
export function findTooDeep(root: unknown, maxDepth: number): { depth: number; key: unknown } | undefined {
  const stack: { node: unknown; depth: number }[] = [{ node: root, depth: 1 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (typeof node !== "object" || node === null) continue;
    if (depth > maxDepth) return { depth, key: (node as { key?: unknown }).key };
    const children = (node as { children?: unknown }).children;
    if (Array.isArray(children)) for (const child of children) stack.push({ node: child, depth: depth + 1 });
  }
  return undefined;
}

export function tooDeepMessage(found: { key: unknown }, maxDepth: number): string {
  const key = typeof found.key === "string" ? ` (element ${JSON.stringify(found.key.slice(0, 60))} is level ${maxDepth + 1})` : "";
  return `elements nest deeper than the limit of ${maxDepth} levels${key}`;
}

const SceneNodeSchema: z.ZodType<SceneElement> = z.lazy(() =>
  z.looseObject({
    tag: z.string().min(1, "tag must not be empty"),
    key: ElementKey,
    children: z.array(SceneNodeSchema).optional(),
  }),
) as z.ZodType<SceneElement>;

/** An element tree at most `maxDepth` levels deep; the depth is checked first, so deep input cannot overflow the stack. */
export function sceneTreeSchema(maxDepth: number): z.ZodType<SceneElement> {
  return z
    .unknown()
    .superRefine((value, ctx) => {
      const found = findTooDeep(value, maxDepth);
      if (found) ctx.addIssue({ code: "custom", message: tooDeepMessage(found, maxDepth), input: value });
    })
    .pipe(SceneNodeSchema) as unknown as z.ZodType<SceneElement>;
}

export const SceneElementSchema = sceneTreeSchema(MAX_SCENE_DEPTH);

// A partial node for `update`: props to assign to the node with this key.
export const NodePatchSchema = z.looseObject({
  key: ElementKey,
  tag: z.string().optional(),
  children: z.array(SceneElementSchema).optional(),
});
export type NodePatch = z.infer<typeof NodePatchSchema>;

export const SceneOpSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("set"), scene: SceneElementSchema }),
  z.object({ op: z.literal("update"), nodes: z.array(NodePatchSchema) }),
  z.object({ op: z.literal("upsert"), nodes: z.array(SceneElementSchema), parentKey: ElementKey.optional() }),
  z.object({ op: z.literal("add"), nodes: z.array(SceneElementSchema), parentKey: ElementKey.optional() }),
  z.object({ op: z.literal("remove"), keys: z.array(ElementKey) }),
]);
export type SceneOp = z.infer<typeof SceneOpSchema>;

/** Walks a tree depth-first; used for key lookups on both sides. */
export function* walkElements(node: SceneElement): Generator<SceneElement> {
  yield node;
  for (const child of node.children ?? []) yield* walkElements(child);
}

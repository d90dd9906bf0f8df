// The scene as data: a JSON element tree `{tag, key, ...props, children}` and the ops that edit it.
// Declared once here; the server validates what it sends, the client validates what it receives.
import { z } from "zod";

export interface SceneElement {
  tag: string;
  key: string;
  children?: SceneElement[];
  [prop: string]: unknown;
}

// A key names a node in the tree; it is also used in file names (CameraView keys), so keep it tame.
export const ElementKey = z
  .string()
  .min(1, "key must not be empty")
  .max(128)
  .regex(/^[A-Za-z0-9_.:-]+$/, "key may hold only letters, digits and _ . : -");

export const SceneElementSchema: z.ZodType<SceneElement> = z.lazy(() =>
  z.looseObject({
    tag: z.string().min(1, "tag must not be empty"),
    key: ElementKey,
    children: z.array(SceneElementSchema).optional(),
  }),
) as z.ZodType<SceneElement>;

// A partial node for `update`: props to assign to the node with this key.
export const NodePatchSchema = z.looseObject({
  key: ElementKey,
  tag: z.string().optional(),
  children: z.array(z.lazy(() => SceneElementSchema)).optional(),
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

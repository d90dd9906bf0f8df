// A job: a unit of work a session leases from the queue. The declarative form renders without user code.
import { z } from "zod";
import { CameraPoseSchema } from "./camera.js";
import { isReservedKey, MAX_SCENE_DEPTH, NodePatchSchema, RESERVED_KEY_PREFIX, sceneTreeSchema } from "./elements.js";
import { jobIdProblem } from "./names.js";
import { ImageFormat, LIMITS } from "./grab.js";
import { LayerListSchema, resolveLayers, type LayerName } from "./layers.js";
import { instanceProblem, labelProblem } from "./instances.js";
import { isCameraRandomizer, RandomizeListSchema, randomizerKeyProblems } from "./randomize.js";

// Job ids become folder names in the dataset: the rule is protocol/names.ts, shared with the dataset writer.
export const JobId = z.string().superRefine((id, ctx) => {
  const problem = jobIdProblem(id);
  if (problem) ctx.addIssue({ code: "custom", message: problem, input: id });
});

/** The farm wraps a job's scene in its own root (server/dispatch/farmCamera.ts), one level more. */
export const MAX_JOB_SCENE_DEPTH = MAX_SCENE_DEPTH - 1;

/**
 * Most levels of JSON any job value may nest (params included): encoding a job (the queue stores it
 * as JSON, frames.jsonl copies params) recurses, and 10,000 levels overflow the stack. Well above
 * what a scene of MAX_JOB_SCENE_DEPTH levels needs (two per level: the element and its children).
 */
export const MAX_JOB_DATA_DEPTH = 256;

/**
 * An issue for each element key in the farm's namespace, and each `instance` or `label` the mask and
 * class layers could not use (protocol/instances.ts: null is unset), anywhere in the tree `root` (of
 * any shape; no recursion). Refused when the job is read, not after its attempts at a grab with layers.
 */
function refuseBadElements(root: unknown, rootPath: PropertyKey[], ctx: z.RefinementCtx): void {
  const stack: { node: unknown; path: PropertyKey[] }[] = [{ node: root, path: rootPath }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (typeof node !== "object" || node === null) continue;
    const { key, children, instance, label } = node as { key?: unknown; children?: unknown; instance?: unknown; label?: unknown };
    const instanceIssue = instance == null ? undefined : instanceProblem(instance);
    if (instanceIssue) ctx.addIssue({ code: "custom", path: [...path, "instance"], input: instance, message: instanceIssue });
    const labelIssue = label == null ? undefined : labelProblem(label);
    if (labelIssue) ctx.addIssue({ code: "custom", path: [...path, "label"], input: label, message: labelIssue });
    if (isReservedKey(key)) {
      ctx.addIssue({
        code: "custom",
        path: [...path, "key"],
        input: key,
        message: `keys starting with "${RESERVED_KEY_PREFIX}" are reserved for the farm's own nodes (its camera is "${RESERVED_KEY_PREFIX}camera")`,
      });
    }
    if (Array.isArray(children)) {
      for (let i = children.length - 1; i >= 0; i--) stack.push({ node: children[i], path: [...path, "children", i] });
    }
  }
}

export const FrameSpecSchema = z.strictObject({
  camera: CameraPoseSchema.optional(),
  /** Node patches applied (as an `update` op) before this frame is grabbed. */
  update: z
    .array(NodePatchSchema)
    .superRefine((patches, ctx) => patches.forEach((patch, i) => refuseBadElements(patch, [i], ctx)))
    .optional(),
});
export type FrameSpec = z.infer<typeof FrameSpecSchema>;

export const JobSpecSchema = z.strictObject({
  id: JobId,
  /** Free-form, copied into every frame's metadata line. */
  params: z.record(z.string(), z.unknown()).optional(),
  /** Element tree set before the first frame; the farm's default scene when absent. */
  scene: sceneTreeSchema(MAX_JOB_SCENE_DEPTH)
    .superRefine((scene, ctx) => refuseBadElements(scene, [], ctx))
    .optional(),
  /** Absent: one frame from the default camera. Present: at least one (an empty list asks for nothing renderable). */
  frames: z.array(FrameSpecSchema).min(1, "must hold at least 1 frame (leave it out for one frame from the default camera)").max(LIMITS.maxFramesPerJob, `a job may hold at most ${LIMITS.maxFramesPerJob} frames`).optional(),
  width: z.number().int().min(1).max(LIMITS.maxImageSide).optional(),
  height: z.number().int().min(1).max(LIMITS.maxImageSide).optional(),
  format: ImageFormat.optional(),
  quality: z.number().min(0).max(1).optional(),
  /** The layers each frame writes (protocol/layers.ts); absent: the run's (--layers). rgb is always written. */
  layers: LayerListSchema.optional(),
  /** Short form: true adds the depth layer, false leaves it out (also when the run asks for it). */
  depth: z.boolean().optional(),
  /**
   * Props drawn afresh for every frame, from the frame's seed (protocol/randomize.ts), applied after the
   * frame's own `update` and `camera`; the drawn values go in its line's `randomized`.
   */
  randomize: RandomizeListSchema.optional(),
}).superRefine((job, ctx) => {
  // A job without a scene renders the run's: its keys are checked when the run starts (runFarm).
  if (job.randomize && job.scene) {
    for (const problem of randomizerKeyProblems(job.randomize, job.scene)) {
      ctx.addIssue({ code: "custom", path: ["randomize", ...problem.path], message: problem.message });
    }
  }
  const cameraFrame = job.randomize?.some(isCameraRandomizer) ? job.frames?.findIndex((f) => f.camera) ?? -1 : -1;
  if (cameraFrame >= 0) {
    ctx.addIssue({ code: "custom", path: ["frames", cameraFrame, "camera"], message: "a camera randomizer poses every frame: leave out the frames' camera, or the randomizer" });
  }
  if (job.depth === false && job.layers?.includes("depth")) {
    ctx.addIssue({ code: "custom", path: ["depth"], input: job.depth, message: 'must not be false when "layers" names depth (say one or the other)' });
  }
});
export type JobSpec = z.infer<typeof JobSpecSchema>;

/**
 * The layers a job's frames are grabbed with, resolved (rgb first, needs added): the job's own `layers`,
 * else the run's; then `depth` adds (true) or drops (false) the depth layer.
 */
export function jobLayers(job: Pick<JobSpec, "layers" | "depth">, runLayers: readonly LayerName[]): LayerName[] {
  const asked = new Set<LayerName>(job.layers ?? runLayers);
  if (job.depth === true) asked.add("depth");
  if (job.depth === false) asked.delete("depth");
  return resolveLayers([...asked]);
}

/**
 * A job spec as JSON with object keys sorted, so two specs that mean the same compare equal however
 * their keys were ordered. Used to tell an edited job from the one already queued under its id.
 */
export function canonicalJobJson(job: unknown): string {
  return JSON.stringify(job, (_key, value: unknown) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
    const sorted: Record<string, unknown> = Object.create(null); // an own "__proto__" key stays a key
    for (const key of Object.keys(value).sort()) sorted[key] = (value as Record<string, unknown>)[key];
    return sorted;
  });
}

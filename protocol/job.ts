// A job: a unit of work a session leases from the queue. The declarative form renders without user code.
import { z } from "zod";
import { CameraPoseSchema } from "./camera.js";
import { NodePatchSchema, SceneElementSchema } from "./elements.js";
import { ImageFormat, LIMITS } from "./grab.js";

// Job ids become folder names in the dataset: no separators, no dots-only names, no control characters.
export const JobId = z
  .string()
  .min(1, "id must not be empty")
  .max(200, "id must be at most 200 characters")
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, "id must be a safe file name: letters, digits, _ . - (not starting with . or -)");

export const FrameSpecSchema = z.strictObject({
  camera: CameraPoseSchema.optional(),
  /** Node patches applied (as an `update` op) before this frame is grabbed. */
  update: z.array(NodePatchSchema).optional(),
});
export type FrameSpec = z.infer<typeof FrameSpecSchema>;

export const JobSpecSchema = z.strictObject({
  id: JobId,
  /** Free-form, copied into every frame's metadata line. */
  params: z.record(z.string(), z.unknown()).optional(),
  /** Element tree set before the first frame; the farm's default scene when absent. */
  scene: SceneElementSchema.optional(),
  frames: z.array(FrameSpecSchema).max(LIMITS.maxFramesPerJob, `a job may hold at most ${LIMITS.maxFramesPerJob} frames`).optional(),
  width: z.number().int().min(1).max(LIMITS.maxImageSide).optional(),
  height: z.number().int().min(1).max(LIMITS.maxImageSide).optional(),
  format: ImageFormat.optional(),
  quality: z.number().min(0).max(1).optional(),
  /** Also write a 16-bit depth PNG (millimetres) per frame. */
  depth: z.boolean().optional(),
});
export type JobSpec = z.infer<typeof JobSpecSchema>;

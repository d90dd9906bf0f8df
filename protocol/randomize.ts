// Declarative randomizers: what a job (or template) may vary per frame, and the checks that refuse a
// bad spec before anything renders. The draws themselves are the server's (server/dispatch/randomizeFrame.ts).
//
// Every issue names its field (zod path) and says why in the user's terms. Where a value may take
// two forms (a number or a list of numbers; an element or a camera randomizer) the form is picked by
// looking at the value, not with z.union, whose failure is one unhelpful "Invalid input".
import { z } from "zod";
import { FiniteNumber, MAX_FOV, Vec3 } from "./camera.js";
import { ElementKey, isReservedKey, RESERVED_KEY_PREFIX, type SceneElement } from "./elements.js";

export const MAX_RANDOMIZERS = 256;
export const MAX_VECTOR_COMPONENTS = 16;
export const MAX_CHOICES = 10_000;
/** Largest fov a drawn pose may have: a camera pose's (protocol/camera.ts). */
export { MAX_FOV };

/**
 * Props a randomizer may not set: the element's identity and tree (key, tag, children), its mask
 * and class identity (instance tables must not change under a randomizer), and names that would
 * reach an object's prototype.
 */
export const RESERVED_PROPS: readonly string[] = ["key", "tag", "children", "instance", "label", "__proto__", "constructor", "prototype"];
const PROP_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Normal draws are mean + std·z with |z| < 9 (Box–Muller from 53-bit uniforms); beyond, a draw could overflow. */
export const NORMAL_MAX_SIGMAS = 9;

type Components = number | number[];

/** A schema that checks `value` with the schema `pick` chooses for it, keeping that schema's issues and paths. */
function picked<T>(pick: (value: unknown) => z.ZodType<T>): z.ZodType<T> {
  return z.custom<T>().superRefine((value, ctx) => {
    const result = pick(value).safeParse(value);
    if (!result.success) {
      // Not `continue`: the checks around this value (which read it as a T) must not run on it.
      for (const issue of result.error.issues) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message, input: value, continue: false });
    }
  });
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** A list of exactly two entries, `[first, second]` as the user would write them (for the message). */
function pair<A extends z.ZodType, B extends z.ZodType>(a: A, b: B, names: string) {
  return z.tuple([a, b], { error: () => `must be a list of two entries: ${names}` });
}

const Vector = z
  .array(FiniteNumber)
  .min(1, "an empty list has no components to draw (give 1 to 16 numbers, or a single number)")
  .max(MAX_VECTOR_COMPONENTS, `a vector may have at most ${MAX_VECTOR_COMPONENTS} components`);
/** A finite number, or a list of 1–16 finite numbers (a vector). */
const NumberOrVector: z.ZodType<Components> = picked<Components>((value) => (Array.isArray(value) ? Vector : FiniteNumber));

const describeShape = (v: Components) => (typeof v === "number" ? "a number" : `${v.length} component${v.length === 1 ? "" : "s"}`);
const componentsOf = (v: Components, length: number): number[] => (typeof v === "number" ? Array(length).fill(v) : v);
const sameShape = (a: Components, b: Components) =>
  typeof a === "number" ? typeof b === "number" : typeof b !== "number" && a.length === b.length;
const at = (v: Components, i: number) => (typeof v === "number" ? "" : ` at component ${i}`);

/**
 * Issues for [min, max] bounds, min ≤ max per component. Without `shapeOfMean` both have one shape;
 * with it (normal's clamp) each is a number (for every component) or a list as long as the mean.
 */
function checkBounds(
  [min, max]: [Components, Components],
  ctx: z.RefinementCtx,
  path: PropertyKey[],
  shapeOfMean?: Components,
): void {
  if (shapeOfMean === undefined) {
    if (!sameShape(min, max)) {
      ctx.addIssue({
        code: "custom", path: [...path, 1], input: max,
        message: `max has ${describeShape(max)} but min has ${describeShape(min)} (give both as numbers, or both as lists of the same length)`,
      });
      return;
    }
  } else {
    let shapesOk = true;
    for (const [i, bound] of [min, max].entries()) {
      if (typeof bound === "number" || sameShape(bound, shapeOfMean)) continue;
      shapesOk = false;
      ctx.addIssue({
        code: "custom", path: [...path, i], input: bound,
        message: `${i === 0 ? "min" : "max"} has ${describeShape(bound)} but mean has ${describeShape(shapeOfMean)} (give a number, or a list as long as mean)`,
      });
    }
    if (!shapesOk) return;
  }
  const length = typeof min === "number" ? (typeof max === "number" ? 1 : max.length) : min.length;
  const lows = componentsOf(min, length);
  const highs = componentsOf(max, length);
  for (let i = 0; i < length; i++) {
    if (lows[i] > highs[i]) {
      ctx.addIssue({
        code: "custom", path, input: [min, max],
        message: `min ${lows[i]} is above max ${highs[i]}${typeof min === "number" && typeof max === "number" ? "" : ` at component ${i}`}`,
      });
    }
  }
}

/** `uniform: [min, max]`: numbers or vectors of the same shape, min ≤ max per component. */
export const UniformSchema = pair(NumberOrVector, NumberOrVector, "[min, max]").superRefine((bounds, ctx) =>
  checkBounds(bounds as [Components, Components], ctx, []),
);

/** `normal: {mean, std, clamp?}`: std ≥ 0 (a number, or one per component of mean); clamp bounds a number or mean's shape. */
export const NormalSchema = z
  .strictObject({
    mean: NumberOrVector,
    std: NumberOrVector,
    clamp: pair(NumberOrVector, NumberOrVector, "[min, max]").optional(),
  })
  .superRefine(({ mean, std, clamp }, ctx) => {
    if (typeof std !== "number" && !sameShape(std, mean)) {
      ctx.addIssue({
        code: "custom", path: ["std"], input: std,
        message: `std has ${describeShape(std)} but mean has ${describeShape(mean)} (give one number for every component, or a list as long as mean)`,
      });
      return;
    }
    const length = typeof mean === "number" ? 1 : mean.length;
    const means = componentsOf(mean, length);
    const stds = componentsOf(std, length);
    for (let i = 0; i < length; i++) {
      const path = typeof std === "number" ? ["std"] : ["std", i];
      if (stds[i] < 0) {
        ctx.addIssue({ code: "custom", path, input: stds[i], message: `std must be 0 or more (is ${stds[i]})` });
      } else if (!Number.isFinite(Math.abs(means[i]) + NORMAL_MAX_SIGMAS * stds[i])) {
        ctx.addIssue({
          code: "custom", path, input: stds[i],
          message: `mean ${means[i]} with std ${stds[i]}${at(mean, i)} can draw values beyond the largest finite number (mean ± ${NORMAL_MAX_SIGMAS}·std must stay finite)`,
        });
      }
    }
    if (clamp) checkBounds(clamp as [Components, Components], ctx, ["clamp"], mean);
  });

/** What is wrong with a hole in a list (`[1, , 3]`, from a job module): JSON has none, and JSON.stringify would write null. */
export const LIST_HOLE_PROBLEM = "is a hole in the list (as in [1, , 3]), which JSON cannot hold; give a value or null";

/** Why `value` is not plain JSON (finite numbers, strings, booleans, null, arrays, plain objects), found without recursion. */
function jsonProblem(root: unknown): { path: PropertyKey[]; message: string } | undefined {
  const stack: { value: unknown; path: PropertyKey[] }[] = [{ value: root, path: [] }];
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (value === null || typeof value === "string" || typeof value === "boolean") continue;
    if (typeof value === "number") {
      if (Number.isFinite(value)) continue;
      return { path, message: `${value} is not a JSON number (numbers must be finite)` };
    }
    if (Array.isArray(value)) {
      // An index loop, not forEach (which skips holes): [1, , 3] would otherwise be stored as [1, null, 3].
      // It stops at the first hole, so a huge sparse list costs no more than its entries.
      for (let i = 0; i < value.length; i++) {
        if (!Object.hasOwn(value, i)) return { path: [...path, i], message: LIST_HOLE_PROBLEM };
        stack.push({ value: value[i], path: [...path, i] });
      }
      continue;
    }
    if (typeof value === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
      for (const [k, item] of Object.entries(value)) stack.push({ value: item, path: [...path, k] });
      continue;
    }
    return { path, message: `${value === undefined ? "undefined" : `a ${typeof value}`} is not a JSON value` };
  }
  return undefined;
}

const JsonValue = z.unknown().superRefine((value, ctx) => {
  const problem = jsonProblem(value);
  if (problem) ctx.addIssue({ code: "custom", path: problem.path, input: value, message: problem.message, continue: false });
});

/** `choice: [v, …]`: 1–10,000 JSON values, drawn with equal odds unless the randomizer has `weights`. */
export const ChoiceSchema = z
  .array(z.unknown())
  .min(1, "must list at least 1 option to choose from")
  .max(MAX_CHOICES, `may list at most ${MAX_CHOICES} options`)
  .pipe(z.array(JsonValue));

/** `weights: [w, …]`: one finite weight ≥ 0 per choice option (the length is checked beside `choice`), not all 0. */
export const WeightsSchema = z
  .array(FiniteNumber.min(0, "a weight must be 0 or more"))
  .max(MAX_CHOICES, `may list at most ${MAX_CHOICES} weights`)
  .superRefine((weights, ctx) => {
    if (weights.length > 0 && weights.every((w) => w === 0)) {
      ctx.addIssue({ code: "custom", input: weights, message: "weights are all 0: at least one option needs a weight above 0" });
    }
  });

/** A [lo, hi] range of numbers `bound` accepts, lo ≤ hi. */
function orderedPair(bound: z.ZodType<number>, extra = "") {
  return pair(bound, bound, "[lo, hi]").superRefine(([lo, hi], ctx) => {
    if (lo > hi) ctx.addIssue({ code: "custom", input: [lo, hi], message: `lo ${lo} is above hi ${hi}${extra}` });
  });
}

/** A [lo, hi] range within [min, max] (bounds included), lo ≤ hi. */
function range(min: number, max: number, unit: string, extra?: string) {
  const within = `must be within ${min}…${max}${unit}`;
  return orderedPair(FiniteNumber.min(min, within).max(max, within), extra);
}

/** `hsv: {h?, s?, v?}`: ranges drawn uniformly, hue in degrees (0…360, no wrap), saturation and value 0…1. */
export const HsvSchema = z.strictObject({
  h: range(0, 360, "°", " (hue ranges do not wrap around 360°)").optional(),
  s: range(0, 1, "").optional(),
  v: range(0, 1, "").optional(),
});
export const HSV_DEFAULTS = { h: [0, 360], s: [0, 1], v: [0, 1] } as const;

const Prop = z.string().superRefine((prop, ctx) => {
  const problem =
    prop.length === 0 ? "must not be empty"
    : prop.length > 64 ? `must be at most 64 characters (has ${prop.length})`
    : !PROP_NAME.test(prop) ? "must be a name of letters, digits and _ not starting with a digit (no dots: a randomizer sets one prop of the element)"
    : RESERVED_PROPS.includes(prop) ? `"${prop}" cannot be randomized (${RESERVED_PROPS.join(", ")} are the element's identity or reach its prototype)`
    : undefined;
  if (problem) ctx.addIssue({ code: "custom", input: prop, message: problem });
});

const Key = ElementKey.superRefine((key, ctx) => {
  if (isReservedKey(key)) {
    ctx.addIssue({ code: "custom", input: key, message: `keys starting with "${RESERVED_KEY_PREFIX}" are the farm's own nodes and cannot be randomized` });
  }
});

export const SAMPLERS = ["uniform", "normal", "choice", "hsv"] as const;

/** `{key, prop, <one sampler>}`: draws one prop of one element of the job's scene. */
export const ElementRandomizerSchema = z
  .strictObject({
    key: Key,
    prop: Prop,
    uniform: UniformSchema.optional(),
    normal: NormalSchema.optional(),
    choice: ChoiceSchema.optional(),
    weights: WeightsSchema.optional(),
    hsv: HsvSchema.optional(),
  })
  .superRefine((r, ctx) => {
    const given = SAMPLERS.filter((name) => r[name] !== undefined);
    if (given.length === 0) {
      ctx.addIssue({ code: "custom", input: r, message: `needs a sampler: one of ${SAMPLERS.join(", ")}` });
    }
    for (const extra of given.slice(1)) {
      ctx.addIssue({ code: "custom", path: [extra], input: r[extra], message: `a randomizer has one sampler, and this one has ${given[0]} already (use two randomizers for two props)` });
    }
    if (r.weights !== undefined && r.choice === undefined) {
      ctx.addIssue({ code: "custom", path: ["weights"], input: r.weights, message: "weights go with choice (they give each option's odds)" });
    } else if (r.weights !== undefined && r.choice !== undefined && r.weights.length !== r.choice.length) {
      ctx.addIssue({
        code: "custom", path: ["weights"], input: r.weights,
        message: `weights has ${r.weights.length} entries but choice has ${r.choice.length} (give one weight per option)`,
      });
    }
  });

/** A number `bound` accepts, fixed, or a [lo, hi] range of them drawn uniformly. */
function fixedOrRange(bound: z.ZodType<number>) {
  const ranged = orderedPair(bound);
  return picked<number | [number, number]>((value) => (Array.isArray(value) ? ranged : bound));
}
const fovWithin = `fov must be above 0 and at most ${MAX_FOV} degrees`;

/**
 * Smallest orbit radius, relative to the target's largest coordinate (and at least this much near the
 * origin): a camera this close still moves off its target in float64 by about 2^32 steps of rounding,
 * so its view direction is well defined (three.js's lookAt needs position ≠ target).
 */
export const MIN_ORBIT_RADIUS_RATIO = 1e-6;

/** Elevation bands the `shell` names stand for, in degrees. */
export const SHELLS = { sphere: [-90, 90], hemisphere: [0, 90] } as const satisfies Record<string, readonly [number, number]>;

/**
 * `orbit`: a camera on a sphere band around `target`, looking at it. Radius uniform; azimuth uniform
 * (degrees, 0 = on the +Z axis, 90 = on the +X axis); elevation area-uniform on the band (degrees
 * above the target's horizontal plane, y up), from `elevation` or `shell` (default hemisphere).
 */
export const OrbitSchema = z
  .strictObject({
    target: Vec3.optional(),
    radius: fixedOrRange(FiniteNumber.gt(0, "radius must be above 0")),
    elevation: range(-90, 90, "°").optional(),
    azimuth: range(-360, 360, "°").optional(),
    shell: z.enum(Object.keys(SHELLS) as [keyof typeof SHELLS], { error: 'shell must be "sphere" or "hemisphere"' }).optional(),
    fov: fixedOrRange(FiniteNumber.gt(0, fovWithin).max(MAX_FOV, fovWithin)).optional(),
  })
  .superRefine((orbit, ctx) => {
    if (orbit.shell !== undefined && orbit.elevation !== undefined) {
      ctx.addIssue({ code: "custom", path: ["shell"], input: orbit.shell, message: "give shell or elevation, not both (shell names an elevation range)" });
    }
    const target = orbit.target ?? [0, 0, 0];
    const [nearest, farthest] = typeof orbit.radius === "number" ? [orbit.radius, orbit.radius] : orbit.radius;
    const largest = Math.max(...target.map(Math.abs));
    const least = MIN_ORBIT_RADIUS_RATIO * Math.max(1, largest);
    if (nearest < least) {
      const ratio = MIN_ORBIT_RADIUS_RATIO.toExponential();
      const why = largest > 1 ? `the smallest this target allows (${ratio} × its largest coordinate, ${largest})` : "the smallest orbit radius";
      ctx.addIssue({
        code: "custom", path: typeof orbit.radius === "number" ? ["radius"] : ["radius", 0], input: nearest,
        message: `radius ${nearest} is below ${least}, ${why}: any closer and rounding could put the camera on the point it looks at`,
      });
    }
    target.forEach((t, i) => {
      if (!Number.isFinite(Math.abs(t) + farthest)) {
        ctx.addIssue({ code: "custom", path: ["target", i], input: t, message: `target ${t} plus radius ${farthest} is beyond the largest finite number` });
      }
    });
  });

/** `{camera: {orbit: {…}}}`: poses the farm's camera for each frame. */
export const CameraRandomizerSchema = z.strictObject({
  camera: z.strictObject({ orbit: OrbitSchema }, { error: (issue) => (issue.code === "invalid_type" ? "camera must be an object such as {orbit: {radius: 5}}" : undefined) }),
});

export type ElementRandomizer = z.infer<typeof ElementRandomizerSchema>;
export type CameraRandomizer = z.infer<typeof CameraRandomizerSchema>;
export type Randomizer = ElementRandomizer | CameraRandomizer;
export type Orbit = CameraRandomizer["camera"]["orbit"];

export function isCameraRandomizer(r: Randomizer): r is CameraRandomizer {
  return "camera" in r;
}

/** One randomizer: a camera randomizer when it has a `camera` field, else an element randomizer. */
export const RandomizerSchema: z.ZodType<Randomizer> = picked<Randomizer>((value) =>
  isPlainObject(value) && Object.hasOwn(value, "camera") ? CameraRandomizerSchema : ElementRandomizerSchema,
);

/** The name a randomizer's drawn value has in a frame's `randomized` record, and its random stream's name. */
export function randomizedName(r: ElementRandomizer): string {
  return `${r.key}.${r.prop}`;
}
/** The names the camera randomizer records (also its stream's name, "camera"). */
export const CAMERA_RECORD = { stream: "camera", position: "camera.position", fov: "camera.fov" } as const;

/** A job's `randomize` list: at most 256, at most one camera randomizer, each (key, prop) at most once. */
export const RandomizeListSchema = z
  .array(z.unknown())
  .max(MAX_RANDOMIZERS, `may hold at most ${MAX_RANDOMIZERS} randomizers`)
  .pipe(z.array(RandomizerSchema))
  .superRefine((list, ctx) => {
    const seen = new Map<string, number>();
    let camera: number | undefined;
    list.forEach((r, i) => {
      if (isCameraRandomizer(r)) {
        if (camera !== undefined) {
          ctx.addIssue({ code: "custom", path: [i, "camera"], input: r, message: `randomize ${camera} is a camera randomizer already (one camera randomizer per job)` });
        } else camera = i;
        return;
      }
      const name = randomizedName(r);
      const first = seen.get(name);
      if (first !== undefined) {
        ctx.addIssue({ code: "custom", path: [i, "prop"], input: r.prop, message: `randomize ${first} draws "${r.prop}" of "${r.key}" already (one randomizer per prop)` });
      } else seen.set(name, i);
    });
    if (camera === undefined) return;
    // The camera records "camera.position" and "camera.fov": an element keyed "camera" must not record the same names.
    for (const name of [CAMERA_RECORD.position, CAMERA_RECORD.fov]) {
      const clash = seen.get(name);
      if (clash !== undefined) {
        ctx.addIssue({
          code: "custom", path: [clash, "prop"], input: name,
          message: `"${name}" is what randomize ${camera} (the camera randomizer) records; randomizing the same prop of element "camera" would make the frame's record ambiguous`,
        });
      }
    }
  });

/**
 * An issue for each element randomizer whose key names no element of `scene` (walked without
 * recursion); paths are relative to the list. `scene` undefined: the job has no scene of its own.
 * `whose` names the scene in the message (a job's own, or the run's for a job without one).
 */
export function randomizerKeyProblems(
  list: readonly Randomizer[],
  scene: SceneElement | undefined,
  whose = "the job's scene",
): { path: PropertyKey[]; message: string }[] {
  const keys = new Set<unknown>();
  const stack: unknown[] = scene === undefined ? [] : [scene];
  while (stack.length > 0) {
    const node = stack.pop();
    if (!isPlainObject(node)) continue;
    keys.add(node.key);
    if (Array.isArray(node.children)) for (const child of node.children) stack.push(child);
  }
  const problems: { path: PropertyKey[]; message: string }[] = [];
  list.forEach((r, i) => {
    if (isCameraRandomizer(r) || keys.has(r.key)) return;
    problems.push({
      path: [i, "key"],
      message: scene === undefined
        ? `no element with key "${r.key}": the job has no scene of its own to randomize`
        : `no element with key "${r.key}" in ${whose}`,
    });
  });
  return problems;
}

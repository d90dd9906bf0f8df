// Seeds and draws for declarative randomizers (protocol/randomize.ts), made on the server before a
// frame is grabbed so the page stays a plain renderer.
//
// Reproducible by construction: a frame's seed depends only on (run seed, job id, frame index), and
// each randomizer draws from its own stream of that seed, so a job re-rendered after a crash or a
// retry draws the same values, and adding or reordering randomizers leaves the others' values alone.
import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import type { RandomGenerator } from "pure-rand/types/RandomGenerator";
import type { NodePatch } from "../../protocol/elements.js";
import { FRAME_SEED_MAX, isFrameSeed, sha256 } from "../dataset/seeds.js";
import {
  CAMERA_RECORD, HSV_DEFAULTS, isCameraRandomizer, randomizedName, SHELLS,
  type ElementRandomizer, type Orbit, type Randomizer,
} from "../../protocol/randomize.js";

/**
 * The generator of stream `streamName` of a frame: pure-rand's xoroshiro128+ started from four
 * 32-bit words of sha256("tabfarm-rng\0<frameSeed>\0<streamName>"). Each randomizer has its own
 * stream ("key.prop", or "camera"). Mutable: every draw advances it.
 */
export function rngFor(seed: number, streamName: string): RandomGenerator {
  if (!isFrameSeed(seed)) throw new RangeError(`frame seed must be a whole number from 0 to ${FRAME_SEED_MAX} (is ${seed})`);
  const digest = sha256(`tabfarm-rng\0${seed}\0${streamName}`);
  return xoroshiro128plusFromState([0, 4, 8, 12].map((offset) => digest.readInt32BE(offset)));
}

type Vec3 = [number, number, number];
/** A pose drawn by an orbit randomizer: a CameraPose (protocol/camera.ts) of the position + lookAt form. */
export interface OrbitPose {
  position: Vec3;
  lookAt: Vec3;
  /** Only on the poles, where the scene's up is parallel to the view (see drawOrbit). */
  up?: Vec3;
  fov?: number;
}

export interface FrameDraw {
  /** One patch per randomized element (its drawn props merged), for an `update` op before the grab. */
  patches: NodePatch[];
  /** The drawn camera pose, when the job has a camera randomizer. */
  camera?: OrbitPose;
  /** Drawn values by name ("key.prop", "camera.position", "camera.fov"), for the frame's line. */
  randomized: Record<string, unknown>;
}

/** Draws every randomizer of a frame from its seed (see frameSeed). The same arguments give equal results. */
export function drawFrame(randomizers: readonly Randomizer[], seed: number): FrameDraw {
  const patches = new Map<string, NodePatch>();
  const randomized: Record<string, unknown> = {};
  let camera: OrbitPose | undefined;
  for (const r of randomizers) {
    if (isCameraRandomizer(r)) {
      camera = drawOrbit(r.camera.orbit, rngFor(seed, CAMERA_RECORD.stream));
      randomized[CAMERA_RECORD.position] = [...camera.position];
      if (camera.fov !== undefined) randomized[CAMERA_RECORD.fov] = camera.fov;
      continue;
    }
    const name = randomizedName(r);
    const value = drawElementProp(r, rngFor(seed, name));
    let patch = patches.get(r.key);
    if (!patch) patches.set(r.key, (patch = { key: r.key }));
    patch[r.prop] = value;
    randomized[name] = copyJson(value); // the record must not change if the patch's value is edited
  }
  return { patches: [...patches.values()], ...(camera && { camera }), randomized };
}

const copyJson = (value: unknown): unknown => (typeof value === "object" && value !== null ? JSON.parse(JSON.stringify(value)) : value);

/** A number uniform in [lo, hi]: interpolated without hi − lo (which can overflow), kept inside the bounds. */
function between(lo: number, hi: number, u: number): number {
  return Math.min(hi, Math.max(lo, lo * (1 - u) + hi * u));
}

/** Standard normal by Box–Muller; 1 − u keeps the logarithm's argument in (0, 1], so |z| < 9. */
function standardNormal(rng: RandomGenerator): number {
  const u1 = 1 - uniformFloat64(rng);
  const u2 = uniformFloat64(rng);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Applies `draw` to each component (index i) of a number or vector, keeping its shape. */
function perComponent(shape: number | number[], draw: (i: number) => number): number | number[] {
  return typeof shape === "number" ? draw(0) : shape.map((_, i) => draw(i));
}
const component = (v: number | number[], i: number) => (typeof v === "number" ? v : v[i]);

function drawElementProp(r: ElementRandomizer, rng: RandomGenerator): unknown {
  if (r.uniform) {
    const [min, max] = r.uniform;
    return perComponent(min, (i) => between(component(min, i), component(max, i), uniformFloat64(rng)));
  }
  if (r.normal) {
    const { mean, std, clamp } = r.normal;
    return perComponent(mean, (i) => {
      const value = component(mean, i) + component(std, i) * standardNormal(rng);
      return clamp ? Math.min(component(clamp[1], i), Math.max(component(clamp[0], i), value)) : value;
    });
  }
  if (r.choice) return copyJson(r.choice[pickIndex(r.choice.length, r.weights, uniformFloat64(rng))]);
  if (r.hsv) {
    const { h = HSV_DEFAULTS.h, s = HSV_DEFAULTS.s, v = HSV_DEFAULTS.v } = r.hsv;
    return hsvToHex(between(h[0], h[1], uniformFloat64(rng)), between(s[0], s[1], uniformFloat64(rng)), between(v[0], v[1], uniformFloat64(rng)));
  }
  throw new Error(`randomizer for "${randomizedName(r)}" has no sampler (it was not checked with RandomizerSchema)`);
}

/** The index drawn by `u` in [0, 1): equal odds, or odds proportional to `weights` (zero-weight options never). */
function pickIndex(count: number, weights: readonly number[] | undefined, u: number): number {
  if (!weights) return Math.min(count - 1, Math.floor(u * count));
  const { sums, lastWithWeight } = cumulativeWeights(weights);
  const target = u * sums[count - 1];
  // The first option whose running sum passes the target (one with weight: a zero weight adds nothing to the sum).
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (target < sums[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo < count ? lo : lastWithWeight; // rounding left target at the sum: the last option with weight
}

interface CumulativeWeights {
  /** Running sums of the weights scaled by the largest (so the sum cannot overflow), added in order. */
  sums: Float64Array;
  lastWithWeight: number;
}

// A job's randomizers stay the same objects for all its frames: the sums are built once per
// randomizer, not on every draw (256 choices of 10,000 options would cost tens of ms per frame).
// Keyed by the parsed weights array, which nothing edits after the schema made it.
const cumulativeCache = new WeakMap<readonly number[], CumulativeWeights>();

function cumulativeWeights(weights: readonly number[]): CumulativeWeights {
  let cached = cumulativeCache.get(weights);
  if (cached) return cached;
  let largest = 0;
  for (const w of weights) largest = Math.max(largest, w);
  const sums = new Float64Array(weights.length);
  let sum = 0;
  let lastWithWeight = 0;
  for (let i = 0; i < weights.length; i++) {
    const scaled = weights[i] / largest;
    if (scaled !== 0) lastWithWeight = i;
    sums[i] = sum += scaled;
  }
  cached = { sums, lastWithWeight };
  cumulativeCache.set(weights, cached);
  return cached;
}

/** "#rrggbb" (lowercase) of hue h in degrees, saturation s and value v in 0…1. */
export function hsvToHex(h: number, s: number, v: number): string {
  const sector = ((h % 360) + 360) % 360 / 60;
  const channel = (n: number) => {
    const k = (n + sector) % 6;
    return v - v * s * Math.max(0, Math.min(k, 4 - k, 1));
  };
  return `#${[5, 3, 1].map((n) => Math.round(channel(n) * 255).toString(16).padStart(2, "0")).join("")}`;
}

const RADIANS = Math.PI / 180;

/**
 * A pose on the orbit's band, drawn in this order from the stream: radius (uniform), azimuth
 * (uniform, degrees, 0 on +Z turning towards +X), elevation (area-uniform: its sine uniform between
 * the band's sines), fov. Looks at the target; y is up. Where the camera is straight above or below
 * the target, "up" would be parallel to the view: the pose then gives the band's own up (the
 * direction of rising elevation), which continues the orientation of the poses beside the pole.
 */
function drawOrbit(orbit: Orbit, rng: RandomGenerator): OrbitPose {
  const target = orbit.target ?? [0, 0, 0];
  const radius = typeof orbit.radius === "number" ? orbit.radius : between(orbit.radius[0], orbit.radius[1], uniformFloat64(rng));
  const [azLo, azHi] = orbit.azimuth ?? [0, 360];
  const azimuth = between(azLo, azHi, uniformFloat64(rng)) * RADIANS;
  const [elLo, elHi] = orbit.elevation ?? SHELLS[orbit.shell ?? "hemisphere"];
  const sine = between(Math.sin(elLo * RADIANS), Math.sin(elHi * RADIANS), uniformFloat64(rng));
  const elevation = Math.asin(sine);
  const fov = orbit.fov === undefined || typeof orbit.fov === "number" ? orbit.fov : between(orbit.fov[0], orbit.fov[1], uniformFloat64(rng));

  const cosEl = Math.cos(elevation);
  const direction = [cosEl * Math.sin(azimuth), sine, cosEl * Math.cos(azimuth)];
  const position = target.map((t, i) => t + radius * direction[i]) as Vec3;
  const atPole = Math.abs(cosEl) < 1e-6;
  const up: Vec3 = [-sine * Math.sin(azimuth), cosEl, -sine * Math.cos(azimuth)];
  return {
    position,
    lookAt: [...target] as Vec3,
    ...(atPole && { up }),
    ...(fov !== undefined && { fov }),
  };
}

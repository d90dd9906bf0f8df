// Seeds: the run's (one per dataset, kept in manifest.json) and each frame's, derived from (run seed, job
// id, frame index), so a frame rendered again draws what it drew the first time. The dataset keeps them
// (manifest.json, every frames.jsonl line); dispatch draws from them (server/dispatch/randomizeFrame.ts).
import { createHash, randomInt } from "node:crypto";

/** Largest run seed: a JSON number carries every whole number up to 2^53−1 exactly. */
export const RUN_SEED_MAX = Number.MAX_SAFE_INTEGER;
/**
 * Frame seeds have 48 bits: exact in JSON, and 100k frames of a run practically never share one
 * (birthday bound ≈ n²/2^49), which 32 bits would not give.
 */
export const FRAME_SEED_BYTES = 6;

/** The run seed written as `value` (a --seed flag): plain decimal digits, 0 … 2^53−1. Throws a RangeError saying why not. */
export function parseRunSeed(value: string): number {
  const why = runSeedProblem(value);
  if (why) throw new RangeError(`seed ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)} ${why}`);
  return Number(value);
}

function runSeedProblem(value: string): string | undefined {
  const wanted = `(write a whole number from 0 to ${RUN_SEED_MAX} in decimal digits)`;
  if (value.length === 0) return `is empty ${wanted}`;
  const notDigit = [...value].find((ch) => ch < "0" || ch > "9");
  if (notDigit !== undefined) {
    const what =
      notDigit === "-" ? "is negative"
      : notDigit === "." ? "is not a whole number"
      : /\s/.test(notDigit) ? "has whitespace"
      : `has ${JSON.stringify(notDigit)}, which is not a decimal digit`;
    return `${what} ${wanted}`;
  }
  if (BigInt(value) > BigInt(RUN_SEED_MAX)) return `is above ${RUN_SEED_MAX} (2^53−1, the largest whole number a JSON number holds exactly)`;
  return undefined;
}

export function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

const isWhole = (value: unknown, max: number): value is number => Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= max;
/** A run seed: a whole number 0 … RUN_SEED_MAX. */
export const isRunSeed = (value: unknown): value is number => isWhole(value, RUN_SEED_MAX);
/** Largest frame seed: FRAME_SEED_BYTES bytes. */
export const FRAME_SEED_MAX = 2 ** (8 * FRAME_SEED_BYTES) - 1;
/** A frame seed: a whole number 0 … FRAME_SEED_MAX. */
export const isFrameSeed = (value: unknown): value is number => isWhole(value, FRAME_SEED_MAX);

function checkWhole(name: string, value: number, max: number): void {
  if (!isWhole(value, max)) throw new RangeError(`${name} must be a whole number from 0 to ${max} (is ${value})`);
}

/** A random run seed (when --seed is absent and the dataset has none): as many bits as a frame seed. */
export const randomRunSeed = (): number => randomInt(0, FRAME_SEED_MAX);

/**
 * The seed of frame `frame` (0-based) of job `jobId` in a run with seed `runSeed`: the first 6 bytes
 * of sha256("tabfarm-frame\0<runSeed>\0<jobId>\0<frame>"), an integer below 2^48. The two numbers
 * hold no "\0", so the job id is exactly what lies between the second and the last separator.
 */
export function frameSeed(runSeed: number, jobId: string, frame: number): number {
  checkWhole("run seed", runSeed, RUN_SEED_MAX);
  checkWhole("frame index", frame, RUN_SEED_MAX);
  return sha256(`tabfarm-frame\0${runSeed}\0${jobId}\0${frame}`).readUIntBE(0, FRAME_SEED_BYTES);
}

// A template: one job without id or frames (a scene, settings, randomizers), expanded into `frames`
// frames in jobs of `framesPerJob`, lazily: the jobs are generated as the queue takes them in, so
// neither a file of N lines nor N jobs exist at once. Job ids name the first frame they hold
// (frame-00000120 holds frames 120…), so the same template and cut give the same ids on every run:
// a resume (or a larger --frames) queues only what is new.
import type { JobSpec } from "../../protocol/job.js";
import { LIMITS } from "../../protocol/grab.js";
import { JobInputError, MAX_LINE_BYTES, openRegularFile, validateJob, type JobIssue } from "./readJobsFile.js";

/** Most frames a template run may ask for: ids hold the first frame's index in FRAME_DIGITS digits. */
export const MAX_TEMPLATE_FRAMES = 100_000_000;
/** Frames per job of the demo and of templates, unless --frames-per-job (or, for a template, the dataset) says otherwise. */
export const DEFAULT_FRAMES_PER_JOB = 10;
const FRAME_DIGITS = 8;
/** A template is one job: as large as a job line may be. */
const MAX_TEMPLATE_BYTES = MAX_LINE_BYTES;

/** Fields a template may not hold: the expansion gives them. */
const GIVEN_BY_EXPANSION: Record<string, string> = {
  id: "each job's id is made from its first frame (frame-00000000, …)",
  frames: "a template's frames come from --frames; per-frame poses come from a camera randomizer",
};

export type Template = Omit<JobSpec, "id" | "frames">;

/** Reads and checks a template file (one JSON object, any layout); throws JobInputError naming the file and every field at fault. */
export async function readTemplate(file: string): Promise<Template> {
  const { handle, stat } = await openRegularFile(file, "template", "give a .json file holding one job without id and frames");
  let text: string;
  try {
    if (stat.size > MAX_TEMPLATE_BYTES) throw new JobInputError(file, [{ message: `is ${stat.size} bytes; a template may be at most ${MAX_TEMPLATE_BYTES} bytes` }]);
    const bytes = await handle.readFile();
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes).replace(/^\uFEFF/, "");
    } catch {
      throw new JobInputError(file, [{ message: "is not UTF-8 text (a binary file, or another encoding such as UTF-16)" }]);
    }
  } finally {
    await handle.close();
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new JobInputError(file, [{ message: `not valid JSON: ${withLineAndColumn((err as Error).message, text)}` }]);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new JobInputError(file, [{ message: "must be one JSON object: a job without \"id\" and \"frames\"" }]);
  }
  const issues: JobIssue[] = Object.keys(GIVEN_BY_EXPANSION)
    .filter((field) => Object.hasOwn(value, field))
    .map((field) => ({ field, message: `not allowed in a template: ${GIVEN_BY_EXPANSION[field]}` }));
  // The template is checked as the job it becomes (one frame: the count does not change what is valid).
  const checked = validateJob({ ...value, id: "template", frames: [{}] }, { source: "json" });
  // Problems of the id and frames the check put there are the expansion's, not the template's (a
  // template's own "frames" or "id" is reported above); every other field's are.
  const ours = (field: string | undefined) => field === "id" || field === "frames" || /^frames[[.]/.test(field ?? "");
  if (!checked.ok) issues.push(...checked.problems.filter((p) => !ours(p.field)));
  if (!checked.ok && issues.length === 0) issues.push(...checked.problems); // never accept what the check refused
  if (issues.length || !checked.ok) throw new JobInputError(file, issues.map(({ field, message }) => ({ message: field ? `${field}: ${message}` : message })));
  const { id: _id, frames: _frames, ...template } = checked.job;
  return template;
}

/** A JSON.parse message with "at position N" given as line and column too (templates are often pretty-printed). */
function withLineAndColumn(message: string, text: string): string {
  return message.replace(/at position (\d+)/, (whole, n: string) => {
    const before = text.slice(0, Number(n));
    const line = before.split("\n").length;
    return `${whole} (line ${line}, column ${Number(n) - before.lastIndexOf("\n")})`;
  });
}

/**
 * How a template's frames are cut into jobs: every `framesPerJob` frames, and also at every frame count an
 * earlier run of the dataset asked for (`cuts`), so that growing `--frames` keeps the jobs already queued
 * as they are (a short last job keeps its frames) and starts a job of its own at the old end.
 */
export interface TemplateSplit {
  /** Frames to render in all. */
  frames: number;
  /** Frames per job (a job before a cut, or the last one, may hold fewer). */
  framesPerJob: number;
  /** Frame counts of earlier runs: a job also ends there. */
  cuts?: readonly number[];
}

/** The jobs of `split.frames` frames of `template`, generated one at a time. */
export function* templateJobs(template: Template, split: TemplateSplit): Generator<JobSpec> {
  const { frames, framesPerJob } = checkSplit(split);
  const cuts = [...new Set(split.cuts ?? [])].filter((n) => n > 0 && n < frames).sort((a, b) => a - b);
  let nextCut = 0;
  for (let first = 0; first < frames; ) {
    while (nextCut < cuts.length && cuts[nextCut] <= first) nextCut++;
    const end = Math.min(frames, first + framesPerJob - (first % framesPerJob), cuts[nextCut] ?? Infinity);
    yield { ...template, id: `frame-${String(first).padStart(FRAME_DIGITS, "0")}`, frames: Array.from({ length: end - first }, () => ({})) };
    first = end;
  }
}

function checkSplit(split: TemplateSplit): TemplateSplit {
  const { frames, framesPerJob } = split;
  if (!Number.isInteger(frames) || frames < 1 || frames > MAX_TEMPLATE_FRAMES) throw new RangeError(`--frames must be a whole number from 1 to ${MAX_TEMPLATE_FRAMES} (got ${frames})`);
  if (!Number.isInteger(framesPerJob) || framesPerJob < 1 || framesPerJob > LIMITS.maxFramesPerJob) {
    throw new RangeError(`--frames-per-job must be a whole number from 1 to ${LIMITS.maxFramesPerJob} (got ${framesPerJob})`);
  }
  return split;
}

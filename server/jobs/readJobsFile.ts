// Reads a JSONL jobs file (one job per line) and validates every line before anything is queued.
// All-or-nothing: a file with any bad line yields no jobs, and the error lists every problem found,
// so a user fixes the whole file in one pass instead of one line per run.
import { constants, type Stats } from "node:fs";
import { open, stat as statOf, type FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import type { z } from "zod";
import { JobSpecSchema, MAX_JOB_DATA_DEPTH, type JobSpec } from "../../protocol/job.js";
import { caseFoldedName, jobIdProblem } from "../../protocol/names.js";
import { LIST_HOLE_PROBLEM } from "../../protocol/randomize.js";
import { readBoundedLines } from "./boundedLines.js";

/** Per-run limits; they can only tighten the protocol's hard caps (LIMITS), which the schema enforces. */
export interface JobLimits {
  maxFramesPerJob?: number;
  maxImageSide?: number;
  /** Longest line a jobs file may have, in bytes (default MAX_LINE_BYTES). */
  maxLineBytes?: number;
}

/**
 * Longest line of a jobs file: a job with the most frames a job may have (100,000 simple poses) fits,
 * and refusing a longer one costs at most this much memory, not the line's size (the line is skipped
 * as it is read). A line at the cap still takes ≈ 30× its size to parse and validate.
 */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

/** One problem with one job. Files set `line` (1-based); job modules set `index` (0-based). */
export interface JobIssue {
  line?: number;
  index?: number;
  /** Path inside the job, e.g. `frames[0].camera.position[1]`; absent when the problem is the whole line. */
  field?: string;
  message: string;
}

/** A problem inside one job value, before we know where the job came from. */
export interface JobProblem {
  field?: string;
  message: string;
}

const MAX_MESSAGE_LINES = 20;
// A single bad job (say 100k frames with the same mistake) must not flood the report.
const MAX_PROBLEMS_PER_JOB = 20;
// A file whose every line is bad is counted, not kept: memory stays bounded for any file size.
const MAX_KEPT_ISSUES = 1_000;

export class JobInputError extends Error {
  override name = "JobInputError";
  constructor(
    /** The file or module path, as the caller gave it. */
    readonly file: string,
    /** The first problems found (at most MAX_KEPT_ISSUES of a file). */
    readonly issues: JobIssue[],
    /** All problems found, and on how many lines, when more were found than kept. */
    total?: { problems: number; lines: number },
  ) {
    super(formatIssues(file, issues, total));
  }
}

function formatIssues(file: string, issues: JobIssue[], total?: { problems: number; lines: number }): string {
  const where = (issue: JobIssue) =>
    issue.line !== undefined ? `${file}:${issue.line}` : issue.index !== undefined ? `${file}: job at index ${issue.index}` : file;
  // A problem with the file itself (missing, a directory, not text) is one line.
  if (issues.length === 1 && issues[0].line === undefined && issues[0].index === undefined) return `${file}: ${issues[0].message}`;
  const problems = total?.problems ?? issues.length;
  const shown = issues
    .slice(0, MAX_MESSAGE_LINES)
    .map((issue) => `${where(issue)}: ${issue.field ? `${issue.field}: ` : ""}${issue.message}`);
  if (problems > shown.length) shown.push(`… and ${problems - shown.length} more`);
  // Files are all-or-nothing; modules stream, so jobs before the bad one may already be queued.
  const fromFile = issues.some((i) => i.line !== undefined);
  const jobs = total?.lines ?? new Set(issues.map((i) => i.line ?? i.index)).size;
  const head = fromFile
    ? `${file}: ${plural(problems, "problem")} on ${plural(jobs, "line")}; no jobs were loaded`
    : `${file}: invalid job (${plural(problems, "problem")})`;
  return [head, ...shown].join("\n");
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// ---------------------------------------------------------------------------------------------
// Reading a file

/**
 * Reads and validates a JSONL jobs file; returns every job, or throws JobInputError naming every
 * problem (and no jobs) — see openJobsFile. For files that fit in memory; the farm streams them.
 */
export async function readJobsFile(path: string, limits?: JobLimits): Promise<JobSpec[]> {
  const jobs: JobSpec[] = [];
  for await (const job of await openJobsFile(path, limits)) jobs.push(job);
  return jobs;
}

/**
 * Validates a JSONL jobs file as a whole, then returns its jobs as a stream, so a file of millions of
 * jobs is queued in bounded memory and a bad file still yields nothing (all-or-nothing). The first
 * pass checks every line (and that no two ids name the same folder) keeping only the ids; the stream
 * reads the file again and checks each job again, failing if the file changed in between.
 * Blank lines, a UTF-8 BOM and CRLF line ends are accepted.
 */
export async function openJobsFile(path: string, limits?: JobLimits): Promise<AsyncIterable<JobSpec>> {
  const before = await checkJobsFile(path, limits);
  return (async function* () {
    const changed = (why: string) => new Error(`${path}: the jobs file changed while it was being queued (${why}); run again to load it`);
    const now = await openRegularFile(path);
    try {
      if (now.stat.size !== before.size || now.stat.mtimeMs !== before.mtimeMs) throw changed("size or modification time");
      for await (const entry of jobLines(path, now.handle, limits)) {
        if (!entry.ok) throw changed(`line ${entry.issues[0]?.line}: ${entry.issues[0]?.message}`);
        yield entry.job;
      }
    } finally {
      await now.handle.close();
    }
  })();
}

/** First pass: every line checked, only ids kept; throws JobInputError listing the problems. */
async function checkJobsFile(path: string, limits: JobLimits | undefined): Promise<{ size: number; mtimeMs: number }> {
  const { handle, stat } = await openRegularFile(path);
  const issues: JobIssue[] = [];
  let problems = 0;
  let badLines = 0;
  // Ids by their case-folded form: ids that differ only by case would be one folder on macOS and Windows.
  // The value is the line, or the line and the id when the id is not already in folded form.
  const seen = new Map<string, number | { line: number; id: string }>();
  try {
    for await (const entry of jobLines(path, handle, limits)) {
      const lineIssues = entry.ok ? [] : entry.issues;
      const id = entry.ok ? entry.job.id : entry.id;
      // Checked even when the line has other problems, so one pass reports duplicates too (but a bad
      // id is reported once, as bad, not again as a duplicate).
      if (id !== undefined && jobIdProblem(id) === undefined) {
        const folded = caseFoldedName(id);
        const earlier = seen.get(folded);
        if (earlier === undefined) seen.set(folded, folded === id ? entry.line : { line: entry.line, id });
        else {
          const first = typeof earlier === "number" ? { line: earlier, id: folded } : earlier;
          const message =
            first.id === id
              ? `duplicate id ${JSON.stringify(id)} (first used on line ${first.line})`
              : `id ${JSON.stringify(id)} differs only by case from ${JSON.stringify(first.id)} on line ${first.line}; ` +
                "ids are folder names, and macOS and Windows ignore case";
          lineIssues.push({ line: entry.line, field: "id", message });
        }
      }
      if (lineIssues.length > 0) {
        badLines++;
        problems += lineIssues.length;
        issues.push(...lineIssues.slice(0, Math.max(0, MAX_KEPT_ISSUES - issues.length)));
        if (entry.ok === false && entry.stop) break;
      }
    }
  } finally {
    await handle.close();
  }
  if (problems > 0) throw new JobInputError(path, issues, { problems, lines: badLines });
  return { size: stat.size, mtimeMs: stat.mtimeMs };
}

type JobLine = ({ ok: true; job: JobSpec } | { ok: false; id?: string; issues: JobIssue[]; stop?: boolean }) & { line: number };

/** The jobs of a file, line by line, each parsed and validated; blank lines skipped. */
async function* jobLines(path: string, handle: FileHandle, limits: JobLimits | undefined): AsyncGenerator<JobLine> {
  const maxLineBytes = limits?.maxLineBytes ?? MAX_LINE_BYTES;
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  let firstContent = true;
  for await (const raw of readBoundedLines(handle, maxLineBytes)) {
    const { line } = raw;
    const refuse = (message: string, stop = false): JobLine => ({ ok: false, line, issues: [{ line, message }], stop });
    if ("tooLong" in raw) {
      yield refuse(`line is longer than ${maxLineBytes} bytes (${raw.tooLong} bytes); one job per line, each at most ${describeBytes(maxLineBytes)}`);
      firstContent = false;
      continue;
    }
    if (line === 1 && (raw.bytes[0] === 0xff || raw.bytes[0] === 0xfe) && (raw.bytes[1] === 0xfe || raw.bytes[1] === 0xff)) {
      yield refuse("the file is UTF-16 text; save it as UTF-8", true);
      return;
    }
    let text: string;
    try {
      text = decoder.decode(raw.bytes);
    } catch {
      yield refuse("is not UTF-8 text; is this a binary file?", true);
      return;
    }
    // Editors on Windows like to start UTF-8 files with a BOM; it is not part of the JSON.
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.includes("\u0000")) {
      yield refuse("holds a NUL byte, which JSON text never does; is this a binary file?", true);
      return;
    }
    if (text.trim() === "") continue;
    if (firstContent && text.trimStart().startsWith("[")) {
      yield refuse(`starts with "[": the file looks like a JSON array; a jobs file has one job object per line (JSONL), e.g. jq -c '.[]' ${basename(path)}`, true);
      return;
    }
    firstContent = false;
    yield { ...parseJobLine(text, line, limits), line };
  }
}

/**
 * Opens `path` for reading if it is a regular file; anything else is a JobInputError saying what it
 * is, ending with `advice` (what to give instead). Opened non-blocking, so a FIFO is refused at once
 * instead of waiting for a writer (and holding a libuv thread); reads of a regular file ignore the flag.
 */
export async function openRegularFile(
  path: string,
  what = "jobs file",
  advice = "give a .jsonl file or a .ts/.js module",
): Promise<{ handle: FileHandle; stat: Stats }> {
  const refuse = (why: string) => new JobInputError(path, [{ message: `cannot read the ${what}: ${why}` }]);
  const notRegular = (stat: Stats) => refuse(`it is ${stat.isDirectory() ? "a directory" : `not a regular file but ${describeFileType(stat)}`}; ${advice}`);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A socket cannot be opened at all (ENXIO); say what it is rather than "no such device or address".
    const kind = code === "ENXIO" ? await statOf(path).catch(() => undefined) : undefined;
    if (kind && !kind.isFile()) throw notRegular(kind);
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" || code === "EPERM" ? "permission denied" : (err as Error).message;
    throw refuse(why);
  }
  const stat = await handle.stat();
  if (!stat.isFile()) {
    await handle.close();
    throw notRegular(stat);
  }
  return { handle, stat };
}

function describeFileType(stat: Stats): string {
  if (stat.isFIFO()) return "a named pipe (FIFO)";
  if (stat.isSocket()) return "a socket";
  if (stat.isCharacterDevice()) return "a character device";
  if (stat.isBlockDevice()) return "a block device";
  return "an unknown kind of file";
}

function describeBytes(bytes: number): string {
  return bytes % 1048576 === 0 ? `${bytes / 1048576} MiB` : `${bytes} bytes`;
}

export type ParsedJobLine =
  | { ok: true; job: JobSpec }
  /** `id` is the line's id when it had a string one, so callers can still detect duplicates. */
  | { ok: false; id?: string; issues: JobIssue[] };

/** Parses and validates one line of a jobs file. `line` is only used to label the issues. */
export function parseJobLine(text: string, line: number, limits?: JobLimits): ParsedJobLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // JSON has no NaN/Infinity; people write them anyway (Python's json.dumps does by default).
    // Re-parse with those tokens swapped for markers so the error can name the field.
    const swapped = swapNonJsonNumbers(text);
    try {
      if (swapped === undefined) throw err;
      value = JSON.parse(swapped);
    } catch {
      // `{` alone on a line: a job written over several lines, as pretty-printers do.
      const hint = /^\s*[{[]\s*$/.test(text) ? "; a job must be on one line (JSONL), not spread over several" : "";
      return { ok: false, issues: [{ line, message: `not valid JSON: ${describeJsonError(err)}${hint}` }] };
    }
  }

  const id = isPlainRecord(value) && typeof value.id === "string" ? value.id : undefined;
  const result = validateJob(value, { limits, source: "json" });
  if (result.ok) return result;
  return { ok: false, id, issues: result.problems.map((p) => ({ line, ...p })) };
}

function describeJsonError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // V8 says "at position N" (0-based); editors show 1-based columns.
  const withColumn = message.replace(/at position (\d+)/, (_, n: string) => `at column ${Number(n) + 1}`);
  return withColumn.length > 300 ? `${withColumn.slice(0, 300)}…` : withColumn;
}

// Markers are strings JSON can carry; a real job would never contain a NUL-prefixed string like this.
const NON_JSON_MARKER = "\u0000tabfarm-non-json-number:";

/** Replaces bare NaN / Infinity / -Infinity tokens outside strings with marker strings, or undefined if none. */
function swapNonJsonNumbers(text: string): string | undefined {
  let out = "";
  let found = false;
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"') {
      // Copy the string literal through untouched, honouring escapes.
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    const token = /^-?(?:NaN|Infinity)(?![\w$])/.exec(text.slice(i, i + 10))?.[0];
    if (token && !/[\w$.]/.test(text[i - 1] ?? "")) {
      out += JSON.stringify(NON_JSON_MARKER + token);
      found = true;
      i += token.length;
      continue;
    }
    out += ch;
    i++;
  }
  return found ? out : undefined;
}

// ---------------------------------------------------------------------------------------------
// Validating one job value (shared with loadJobsModule)

export interface ValidateOptions {
  limits?: JobLimits;
  /**
   * "json": the value came from JSON.parse. "module": it came from user code, so it may hold things
   * JSON cannot (functions, class instances, cycles) — rejected, since the queue stores jobs as JSON.
   */
  source: "json" | "module";
}

/** Validates one job value against JobSpecSchema plus the checks the schema cannot express. */
export function validateJob(
  value: unknown,
  options: ValidateOptions,
): { ok: true; job: JobSpec } | { ok: false; problems: JobProblem[] } {
  if (!isPlainRecord(value)) {
    const what = options.source === "json" ? "a JSON object (one job per line)" : "an object";
    return { ok: false, problems: [{ message: `must be ${what}, got ${describeValue(value)}` }] };
  }

  // Order matters: the first problem reported for a field wins (see dedupe below), and these
  // checks say more than zod's generic "expected number, received Infinity".
  const { problems: dataProblems, tooDeep } = inspectData(value, options.source);
  const problems: JobProblem[] = [...dataProblems, ...checkLimits(value, options.limits)];

  let parsed: ReturnType<typeof JobSpecSchema.safeParse>;
  try {
    parsed = JobSpecSchema.safeParse(value);
  } catch (err) {
    // Deeply nested scene trees can overflow zod's recursion.
    return { ok: false, problems: [...problems, { message: `could not be validated: ${(err as Error).message}` }] };
  }
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push(...describeZodIssue(issue, value, []));
  // After the schema's: a scene too deep is better described by its levels of elements than of JSON.
  problems.push(...tooDeep);

  if (problems.length === 0 && parsed.success) return { ok: true, job: parsed.data };
  return { ok: false, problems: capProblems(dedupeByField(problems)) };
}

function dedupeByField(problems: JobProblem[]): JobProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = p.field ?? "";
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function capProblems(problems: JobProblem[]): JobProblem[] {
  if (problems.length <= MAX_PROBLEMS_PER_JOB) return problems;
  const rest = problems.length - MAX_PROBLEMS_PER_JOB;
  return [...problems.slice(0, MAX_PROBLEMS_PER_JOB), { message: `… and ${plural(rest, "more problem")} in this job` }];
}

/** Run limits are checked on the raw value so they are reported even when the schema finds other problems. */
function checkLimits(job: Record<string, unknown>, limits: JobLimits | undefined): JobProblem[] {
  const problems: JobProblem[] = [];
  const maxFrames = limits?.maxFramesPerJob;
  if (maxFrames !== undefined && Array.isArray(job.frames) && job.frames.length > maxFrames) {
    problems.push({ field: "frames", message: `has ${job.frames.length} frames, over the limit of ${maxFrames} per job` });
  }
  const maxSide = limits?.maxImageSide;
  for (const side of ["width", "height"] as const) {
    const v = job[side];
    if (maxSide !== undefined && typeof v === "number" && v > maxSide) {
      problems.push({ field: side, message: `${v} is over the limit of ${maxSide} pixels` });
    }
  }
  return problems;
}

/** Stands for a hole in a list (`[1, , 3]`) on inspectData's stack. */
const HOLE = Symbol("hole");

/**
 * Walks the whole value (params and element props included, which the schema leaves open) for data
 * that would not survive the queue's JSON round trip: non-finite numbers, `__proto__` keys, nesting
 * deeper than MAX_JOB_DATA_DEPTH (reported apart, as `tooDeep`, by top-level field), and — for
 * module jobs — functions, bigints, class instances, cycles, and holes or undefined in lists. This
 * runs on every value of every job, so it is iterative (deep nesting cannot overflow the stack), keeps
 * paths as parent links instead of copied arrays, and only tracks cycles for module data (parsed
 * JSON cannot have any).
 */
function inspectData(root: unknown, source: "json" | "module"): { problems: JobProblem[]; tooDeep: JobProblem[] } {
  const problems: JobProblem[] = [];
  const tooDeep: JobProblem[] = [];
  type PathNode = { key: PropertyKey; parent: PathNode | undefined } | undefined;
  const fieldOf = (node: PathNode) => {
    const keys: PropertyKey[] = [];
    for (let n = node; n; n = n.parent) keys.push(n.key);
    return formatPath(keys.reverse());
  };
  const trackCycles = source === "module";
  const onPath = new Set<object>();
  const done = new Set<object>();
  type Step = { value: unknown; at: PathNode; depth: number; leave?: object };
  const stack: Step[] = [{ value: root, at: undefined, depth: 0 }];

  while (stack.length > 0 && problems.length <= MAX_PROBLEMS_PER_JOB) {
    const { value, at, depth, leave } = stack.pop()!;
    if (leave) {
      onPath.delete(leave);
      done.add(leave);
      continue;
    }
    if (value === HOLE) {
      problems.push({ field: fieldOf(at), message: LIST_HOLE_PROBLEM });
    } else if (value === undefined && typeof at?.key === "number") {
      // In an object an undefined field is as good as absent; a list would keep its place as null.
      problems.push({ field: fieldOf(at), message: "must be JSON data, got undefined (a list would store it as null)" });
    } else if (typeof value === "number") {
      if (!Number.isFinite(value)) {
        // JSON itself has no NaN/Infinity: from a file, this is a literal like 1e999 that overflowed.
        const why = source === "json" ? " (the number is out of range)" : "";
        problems.push({ field: fieldOf(at), message: `must be a finite number, got ${value}${why}` });
      }
    } else if (typeof value === "string") {
      if (source === "json" && value.startsWith(NON_JSON_MARKER)) {
        const token = value.slice(NON_JSON_MARKER.length);
        problems.push({ field: fieldOf(at), message: `must be a finite number (${token} is not valid JSON)` });
      }
    } else if (typeof value === "bigint" || typeof value === "function" || typeof value === "symbol") {
      problems.push({ field: fieldOf(at), message: `must be JSON data, got ${describeValue(value)}` });
    } else if (typeof value === "object" && value !== null) {
      const isArray = Array.isArray(value);
      if (!isArray && !isPlainRecord(value)) {
        problems.push({ field: fieldOf(at), message: `must be plain JSON data, got ${describeValue(value)}` });
        continue;
      }
      if (depth >= MAX_JOB_DATA_DEPTH) {
        // Named by the job's field holding it: the full path would be hundreds of steps long.
        let top = at;
        while (top?.parent) top = top.parent;
        const field = fieldOf(top);
        if (!tooDeep.some((p) => p.field === field)) {
          tooDeep.push({ field, message: `nests deeper than the limit of ${MAX_JOB_DATA_DEPTH} levels` });
        }
        continue;
      }
      if (trackCycles) {
        if (onPath.has(value)) {
          problems.push({ field: fieldOf(at), message: "is a circular reference" });
          continue;
        }
        if (done.has(value)) continue; // shared (not circular) references are fine
        onPath.add(value);
        stack.push({ value: undefined, at, depth, leave: value });
      }
      // Pushed in reverse so problems come out in document order.
      if (isArray) {
        // By index, not Object.keys (which skips holes: [1, , 3] would be stored as [1, null, 3]), and
        // only up to the first hole, so a huge sparse list costs no more than its entries.
        let end = 0;
        while (end < value.length && Object.hasOwn(value, end)) end++;
        if (end < value.length) stack.push({ value: HOLE, at: { key: end, parent: at }, depth: depth + 1 });
        for (let i = end - 1; i >= 0; i--) stack.push({ value: value[i], at: { key: i, parent: at }, depth: depth + 1 });
        continue;
      }
      const keys = Object.keys(value);
      for (let k = keys.length - 1; k >= 0; k--) {
        const key = keys[k];
        const child: PathNode = { key, parent: at };
        if (key === "__proto__") {
          // JSON.parse makes it an own key; copying it anywhere (zod does) would set a prototype instead.
          problems.push({ field: fieldOf(child), message: 'the key "__proto__" is not allowed' });
          continue;
        }
        stack.push({ value: (value as Record<string, unknown>)[key], at: child, depth: depth + 1 });
      }
    }
  }
  return { problems, tooDeep };
}

// ---------------------------------------------------------------------------------------------
// Turning zod issues into messages that name the field and say what was wrong with the value

type ZodIssue = z.core.$ZodIssue;

const MISSING = Symbol("missing");

/** The value at `path` inside `root`, or MISSING if some step does not exist. */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const key of path) {
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, key)) return MISSING;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

// Zod's built-in messages start like this; anything else is a message the schema author wrote.
const ZOD_DEFAULT_MESSAGE = /^(Invalid input|Invalid option|Invalid string|Invalid number|Too big|Too small|Unrecognized key)/;

function describeZodIssue(issue: ZodIssue, root: unknown, base: readonly PropertyKey[]): JobProblem[] {
  const path = [...base, ...issue.path];
  const field = formatPath(path) || undefined;
  const value = valueAt(root, path);

  switch (issue.code) {
    case "unrecognized_keys": {
      const hint = path.length === 0 ? `; a job may have only: ${Object.keys(JobSpecSchema.shape).join(", ")}` : "";
      return issue.keys.map((key) => ({ field: formatPath([...path, key]), message: `unknown field${hint}` }));
    }
    case "invalid_union":
      return describeUnionIssue(issue, root, path);
    case "invalid_type":
      if (value === MISSING || value === undefined) return [{ field, message: "is required" }];
      if (!ZOD_DEFAULT_MESSAGE.test(issue.message)) break;
      return [{ field, message: `must be ${expectedName(issue.expected)}, got ${describeValue(value)}` }];
    case "too_big":
    case "too_small": {
      if (!ZOD_DEFAULT_MESSAGE.test(issue.message)) break;
      return [{ field, message: describeBound(issue, value) }];
    }
    case "invalid_value":
      if (!ZOD_DEFAULT_MESSAGE.test(issue.message)) break;
      return [{ field, message: `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}, got ${describeValue(value)}` }];
  }
  // The schema's own wording, plus what was actually there.
  return [{ field, message: `${issue.message}${gotSuffix(value)}` }];
}

/**
 * A union (the camera: matrix form or position form) reports every branch's failures. Pick the branch
 * the value was evidently meant for and report its problems: a branch is ruled out when the value
 * lacks one of its required fields (or is the wrong kind of value altogether), and among the rest the
 * one with the fewest unknown fields wins — so `{position, lookat}` gets "lookat: unknown field".
 * When no single branch stands out (say both `matrix` and `position` given), list each form's problems.
 */
function describeUnionIssue(issue: z.core.$ZodIssueInvalidUnion, root: unknown, path: PropertyKey[]): JobProblem[] {
  const field = formatPath(path) || undefined;
  const value = valueAt(root, path);
  const branches = issue.errors;
  if (branches.length === 0) return [{ field, message: `${issue.message}${gotSuffix(value)}` }];
  const wrongKind = branches.map((b) => b.find((i) => i.path.length === 0 && i.code === "invalid_type"));
  if (wrongKind.every((i) => i !== undefined)) {
    const expected = [...new Set(wrongKind.map((i) => expectedName((i as z.core.$ZodIssueInvalidType).expected)))];
    return [{ field, message: `must be ${expected.join(" or ")}, got ${describeValue(value)}` }];
  }

  const isUnknownField = (i: ZodIssue) => i.path.length === 0 && i.code === "unrecognized_keys";
  const rulesOut = (i: ZodIssue) =>
    (i.path.length === 0 && !isUnknownField(i)) ||
    (i.path.length === 1 && i.code === "invalid_type" && valueAt(value, i.path) === MISSING);
  const unknownCount = (b: ZodIssue[]) => b.filter(isUnknownField).reduce((n, i) => n + (i as z.core.$ZodIssueUnrecognizedKeys).keys.length, 0);
  const candidates = branches.filter((b) => !b.some(rulesOut)).sort((a, b) => unknownCount(a) - unknownCount(b));
  const best = candidates[0];
  const tied = candidates.length > 1 && unknownCount(candidates[1]) === unknownCount(best) && unknownCount(best) > 0;
  if (best && !tied) return best.flatMap((i) => describeZodIssue(i, root, path));

  // Described relative to the union's own field, which the message is already labelled with.
  const forms = branches.map((b, n) => {
    const what = b.flatMap((i) => describeZodIssue(i, value, [])).map((p) => (p.field ? `${p.field}: ${p.message}` : p.message));
    return `form ${n + 1}: ${what.join("; ")}`;
  });
  return [{ field, message: `matches none of the allowed forms (${forms.join(" | ")})` }];
}

function describeBound(issue: z.core.$ZodIssueTooBig | z.core.$ZodIssueTooSmall, value: unknown): string {
  const big = issue.code === "too_big";
  const limit = Number(big ? (issue as z.core.$ZodIssueTooBig).maximum : (issue as z.core.$ZodIssueTooSmall).minimum);
  if (issue.origin === "number" || issue.origin === "int" || issue.origin === "bigint") {
    const rel = issue.inclusive ? (big ? "at most" : "at least") : big ? "less than" : "greater than";
    return `must be ${rel} ${limit}${gotSuffix(value)}`;
  }
  const unit = issue.origin === "string" ? "character" : "item";
  const rel = issue.exact ? "exactly" : big ? "at most" : "at least";
  return `must have ${rel} ${plural(limit, unit)}${gotSuffix(value)}`;
}

function expectedName(expected: string): string {
  switch (expected) {
    case "int":
      return "an integer";
    case "array":
    case "tuple":
      return "an array";
    case "object":
    case "record":
      return "an object";
    default:
      return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
  }
}

function gotSuffix(value: unknown): string {
  if (value === MISSING) return "";
  if (Array.isArray(value)) return ` (has ${plural(value.length, "item")})`;
  if (typeof value === "object" && value !== null) return "";
  return `, got ${describeValue(value)}`;
}

export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string": {
      const s = JSON.stringify(value);
      return s.length > 60 ? `${s.slice(0, 57)}…"` : s;
    }
    case "number":
    case "boolean":
      return String(value);
    case "bigint":
      return `a bigint (${value}n)`;
    case "function":
      return `a function${value.name ? ` (${value.name})` : ""}`;
    case "symbol":
      return "a symbol";
  }
  const ctor = Object.getPrototypeOf(value)?.constructor?.name;
  return ctor && ctor !== "Object" ? `a ${ctor}` : "an object";
}

/** `frames[0].camera.position[1]`; keys that are not identifiers are quoted: `params["a b"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)) out += out ? `.${key}` : key;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

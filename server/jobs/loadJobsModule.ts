// Loads jobs from user code: a .ts/.js/.mjs module whose export produces jobs, possibly lazily
// (a generator can describe a million jobs without building them all). Jobs are validated as they
// stream, by the same rules as a jobs file; only their ids are kept, to refuse a repeated one.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { JobSpec } from "../../protocol/job.js";
import { caseFoldedName } from "../../protocol/names.js";
import { describeValue, JobInputError, openRegularFile, validateJob, type JobLimits } from "./readJobsFile.js";

/**
 * Imports the module at `path` and returns its jobs as an async iterable. The jobs come from the
 * default export, or the named export `jobs` when there is no usable default. Accepted: an array or
 * any iterable, an async iterable, a (possibly async) generator function, a function returning (a
 * promise of) any of those, or a promise of any of those.
 *
 * The export is resolved (and a function export called) here, so a module with nothing usable
 * fails now; each job is validated when the iteration reaches it, and an invalid job throws a
 * JobInputError naming its index.
 */
export async function loadJobsModule(path: string, limits?: JobLimits): Promise<AsyncIterable<JobSpec>> {
  await (await openRegularFile(path, "jobs module")).handle.close(); // a missing file or a folder, said plainly
  const mod = await importUserModule(path, "jobs");
  const source = await resolveJobSource(mod, path);
  return validateStream(source, path, limits);
}

/** Imports a user module by file path (relative to the working directory); tsx's loader handles .ts. */
export async function importUserModule(path: string, what: string): Promise<Record<string, unknown>> {
  try {
    return (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`could not load ${what} module ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Says what a module exports, for errors about exports that are missing or of the wrong kind. */
export function describeExports(mod: Record<string, unknown>): string {
  const names = Object.keys(mod);
  if (names.length === 0) return "the module exports nothing";
  return names.map((name) => `${name === "default" ? "default export" : `export "${name}"`} is ${describeValue(mod[name])}`).join("; ");
}

/**
 * Picks the default export if it is `usable`, else the export called `name`. A CommonJS module's
 * default is its whole `module.exports` object, and its named exports are not always surfaced (not
 * under tsx), so `module.exports.<name>` counts as that named export. Falls back to whatever is
 * there, for the caller's error message.
 */
export function pickExport(
  mod: Record<string, unknown>,
  name: string,
  usable: (value: unknown) => boolean,
): [label: string, value: unknown] {
  const cjs = mod.default;
  const fromCjs = typeof cjs === "object" && cjs !== null && !Array.isArray(cjs) ? (cjs as Record<string, unknown>)[name] : undefined;
  const candidates: [string, unknown][] = [
    ["default export", mod.default],
    [`export "${name}"`, mod[name]],
    [`module.exports.${name}`, fromCjs],
  ];
  return candidates.find(([, v]) => v !== undefined && usable(v)) ?? candidates.find(([, v]) => v !== undefined) ?? candidates[0];
}

type JobSource = Iterable<unknown> | AsyncIterable<unknown>;

async function resolveJobSource(mod: Record<string, unknown>, path: string): Promise<JobSource> {
  const [name, value] = pickExport(mod, "jobs", (v) => typeof v === "function" || isThenable(v) || asSource(v) !== undefined);

  let produced: unknown = await value; // `export default fetchJobs()` is a promise
  if (typeof produced === "function") {
    try {
      produced = await produced();
    } catch (err) {
      throw new Error(`jobs module ${path}: calling the ${name} failed: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
    const source = asSource(produced);
    if (source) return source;
    throw new Error(`jobs module ${path}: the ${name} is a function, but it returned ${describeValue(produced)}, not jobs (an array or (async) iterable)`);
  }
  const source = asSource(produced);
  if (source) return source;
  throw new Error(
    `jobs module ${path}: expected the default export or an export named "jobs" to be an array, an (async) iterable, ` +
      `or a function producing one; ${describeExports(mod)}`,
  );
}

function isThenable(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

function asSource(value: unknown): JobSource | undefined {
  // Strings are iterable too, but a string of jobs is a mistake, not a stream of characters.
  if (typeof value !== "object" || value === null) return undefined;
  if (Symbol.asyncIterator in value || Symbol.iterator in value) return value as JobSource;
  return undefined;
}

async function* validateStream(source: JobSource, path: string, limits: JobLimits | undefined): AsyncGenerator<JobSpec> {
  let index = 0;
  // Ids seen so far by case-folded form (the index of the first job with each): a repeated id, or one
  // differing only by case (one folder on macOS and Windows), is a mistake in the generator.
  const seen = new Map<string, number>();
  // for await also accepts sync iterables (awaiting each item), and closes the source if we throw.
  for await (const value of namedFailures(source, path, () => index)) {
    const result = validateJob(value, { limits, source: "module" });
    if (!result.ok) throw new JobInputError(path, result.problems.map((p) => ({ index, ...p })));
    const folded = caseFoldedName(result.job.id);
    const first = seen.get(folded);
    if (first !== undefined) {
      const message = `id ${JSON.stringify(result.job.id)} was already used by the job at index ${first} (ids are compared ignoring case: they are folder names)`;
      throw new JobInputError(path, [{ index, field: "id", message }]);
    }
    seen.set(folded, index);
    yield result.job;
    index++;
  }
}

/** The source's own items; an error it throws (a generator that fails midway) names the module and the job index. */
async function* namedFailures(source: JobSource, path: string, index: () => number): AsyncGenerator<unknown> {
  const iterator: Iterator<unknown> | AsyncIterator<unknown> = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  let finished = false; // the source ended or threw: nothing to close
  try {
    for (;;) {
      let value: unknown;
      try {
        const step = await iterator.next();
        if (step.done) {
          finished = true;
          return;
        }
        value = await step.value; // like for await: a sync iterable's promises are awaited
      } catch (err) {
        finished = true;
        throw new Error(`jobs module ${path}: producing the job at index ${index()} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      yield value;
    }
  } finally {
    if (!finished) await iterator.return?.(); // stopped early (a bad job, or the consumer stopped): the source may clean up
  }
}

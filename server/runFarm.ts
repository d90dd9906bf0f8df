// One run of the farm: open the dataset and its queue under --out, enqueue the jobs, serve the
// client, hand jobs to every session that connects, and report when all jobs are done or failed.
// Re-running with the same --out resumes: done jobs are skipped, leased ones re-queued.
import { canonicalJobJson, jobLayers, type JobSpec } from "../protocol/job.js";
import type { ImageFormat } from "../protocol/grab.js";
import type { SceneElement } from "../protocol/elements.js";
import { layersWithDepth, type LayerName } from "../protocol/layers.js";
import type { AddResult, FailedJob, JobQueue, QueueCounts } from "./queue/JobQueue.js";
import { ChangedJobError, describeChangedJobs } from "./queue/changedJobs.js";
import { DatasetWriter, FRAMES_INDEX } from "./dataset/DatasetWriter.js";
import { Farm } from "./session/Farm.js";
import type { Session } from "./session/Session.js";
import { onSessionRendered } from "./session/workerLink.js";
import { dispatchJobs, type JobRunner } from "./dispatch/dispatchJobs.js";
import { renderDeclarativeJob, type RenderDefaults } from "./dispatch/renderDeclarativeJob.js";
import { demoScene } from "./jobs/demoJobs.js";
import { DatasetOpenError, openDataset, QUEUE_FILE, type OpenDataset } from "./dataset/openDataset.js";
import { readRunManifest, RunManifest } from "./dataset/RunManifest.js";
import { randomizerKeyProblems, type Randomizer } from "../protocol/randomize.js";
import { templateJobs, type Template } from "./jobs/templateJobs.js";
import { formatPath } from "./jobs/readJobsFile.js";
import type { ClassEntry } from "./capture/ClassTable.js";
import { recordRun } from "./events/RunEvents.js";
import type { RunEvents } from "./events/RunEvents.js";
import type { RunStats } from "./events/RunStats.js";
import { serveDashboard } from "./dashboard/dashboard.js";
import { MAX_FAILED_ROWS } from "../protocol/runEvents.js";
import { RUN_DEFAULTS } from "./runDefaults.js";
import { tuneHeapForFarm } from "./heapTuning.js";
import { openRedisQueue } from "./queue/RedisQueue.js";
import { ShardQueue, type SharedQueue } from "./queue/ShardQueue.js";
import { isRunSeed, randomRunSeed } from "./dataset/seeds.js";
import { createHash } from "node:crypto";
import { parseLaunchedTab } from "../protocol/events.js";

class UnknownJobError extends DatasetOpenError {
  constructor(out: string, job: string) {
    super(
      `--out ${out}: ${FRAMES_INDEX} has lines of job ${JSON.stringify(job)}, which ${QUEUE_FILE} does not know: it is not the queue ` +
        `this dataset was written with (emptied, replaced or lost). Nothing in the dataset was rewritten: restore its ${QUEUE_FILE}, or choose another --out.`,
    );
  }
}

export { QUEUE_FILE } from "./dataset/openDataset.js";

/** What declarative jobs are rendered with when they leave a setting out. */
export function renderDefaults(options: Pick<RunOptions, "width" | "height" | "format" | "quality" | "scene" | "inFlight" | "layers" | "depth">): RenderDefaults {
  return {
    width: options.width ?? RUN_DEFAULTS.width,
    height: options.height ?? RUN_DEFAULTS.height,
    format: options.format ?? RUN_DEFAULTS.format,
    quality: options.quality,
    scene: options.scene ?? demoScene(),
    inFlight: options.inFlight ?? RUN_DEFAULTS.inFlight,
    layers: layersWithDepth(options.layers, options.depth),
  };
}

export interface RunOptions {
  out: string;
  /** Built client folder (dist/client). */
  clientDir: string;
  /** Jobs to enqueue (idempotent: ids already in the queue are skipped, and reported if they differ). */
  jobs?: Iterable<JobSpec> | AsyncIterable<JobSpec>;
  /** Known ids whose spec differs replace the queued spec while still pending (--replace-pending). */
  replacePending?: boolean;
  /** User code run per job instead of the declarative renderer. */
  handler?: JobRunner;
  width?: number;
  height?: number;
  format?: ImageFormat;
  quality?: number;
  /** Scene for declarative jobs that have none. */
  scene?: SceneElement;
  /** Grabs in flight per session. */
  inFlight?: number;
  /** Layers every frame writes besides rgb, unless a job names its own (protocol/layers.ts). */
  layers?: LayerName[];
  /** Short form: adds the depth layer (16-bit PNG, millimetres). */
  depth?: boolean;
  /** The run's class table (--classes); labels not in it get the next free ids as frames show them. */
  classes?: ClassEntry[];
  /** The run's seed (--seed); absent: the dataset's, else a random one (RunManifest); on a shared queue, the run's (the first server's). */
  seed?: number;
  /**
   * --queue: a queue shared by several farm servers (redis://HOST:PORT/DB[?queue=NAME]); `out` is then this
   * server's shard of the dataset (server/queue/ShardQueue.ts). Absent: the dataset's own queue.sqlite.
   */
  sharedQueue?: string;
  /**
   * Render a template (instead of `jobs`): `frames` frames in jobs of `framesPerJob` (absent: the dataset's
   * cut, else 10), cut as every earlier run of the dataset cut them (RunManifest, templateJobs).
   */
  template?: { spec: Template; frames: number; framesPerJob?: number; /** Its file, for messages. */ file?: string };
  /** The options manifest.json records for this run (the command line's); default: these. Secrets are left out. */
  recordedOptions?: object;
  host?: string;
  port?: number;
  token?: string;
  leaseTtlMs?: number;
  maxAttempts?: number;
  grabTimeoutMs?: number;
  maxFrameBytes?: number;
  maxSessions?: number;
  encode?: "browser" | "server";
  pngLevel?: number;
  /** A launched tab (local or a remote worker's) is retired, and replaced by its harness, after this many frames (0/absent: never). */
  recycleAfterFrames?: number;
  /** Aborted (a signal): queueing the jobs stops between jobs and startRun rejects with the abort's reason. */
  stop?: AbortSignal;
  /** Give up (the run fails) when the dataset refuses writes this long (ms). */
  maxWriteStallMs?: number;
  log?: (line: string) => void;
}

export interface RunSummary {
  out: string;
  frames: number;
  jobsDone: number;
  seconds: number;
  framesPerSecond: number;
  counts: QueueCounts;
  /** The first SUMMARY_FAILED_JOBS failed jobs (all runs'), with why their last attempt failed. */
  failedJobs: FailedJob[];
}

/** Failed jobs the end of a run lists (`status --out` lists more). */
export const SUMMARY_FAILED_JOBS = 20;

export interface Run {
  url: string;
  /** The live dashboard's URL (with the token). */
  dashboardUrl: string;
  farm: Farm;
  /** The run's events (protocol/runEvents.ts), and their fold: what progress, the dashboard and /api/status show. */
  events: RunEvents;
  stats: RunStats;
  queue: JobQueue;
  dataset: DatasetWriter;
  added: AddResult;
  /** Resolves when every job is done or failed. */
  finished: Promise<RunSummary>;
  /**
   * Stops dispatch, returns the leases of running jobs to the queue without counting the attempt (a
   * stop of ours is never the job's fault), then closes sessions, the server and the queue. Resolves
   * with how many leases went back.
   */
  close(reason?: string): Promise<number>;
}

export async function startRun(options: RunOptions): Promise<Run> {
  const log = options.log ?? ((line: string) => console.log(line));
  tuneHeapForFarm();
  checkTemplate(options); // before the dataset is opened: a bad template leaves nothing behind
  const leaseTtlMs = options.leaseTtlMs ?? RUN_DEFAULTS.leaseTtlMs;
  // Checks --out, refuses a folder that is not a tabfarm dataset, and takes the dataset's lock: resume
  // below runs only on our own dataset, with no other farm writing it.
  const maxAttempts = options.maxAttempts ?? RUN_DEFAULTS.maxAttempts;
  // A queue shared with other servers (--queue redis://…) first: a Redis that is down or would evict jobs refuses the start before --out is touched.
  const shared = options.sharedQueue === undefined ? undefined : await openRedisQueue(options.sharedQueue, { leaseTtlMs, maxAttempts, log });
  const opened = await openDataset(options.out, { leaseTtlMs, maxAttempts, log, shared: shared && { queue: shared, describe: shared.display } }).catch(async (err: unknown) => {
    await shared?.close();
    throw err;
  });
  try {
    return await startOnDataset(opened, options, log);
  } catch (err) {
    // A failed start (resume, a jobs generator that throws, a port in use) must not keep the lock.
    await opened.close();
    throw err;
  }
}

async function startOnDataset(opened: OpenDataset, options: RunOptions, log: (line: string) => void): Promise<Run> {
  const { root: out, writer: dataset, queue } = opened;
  // First: an unreadable manifest.json refuses the start before resume changes anything.
  const previousManifest = readRunManifest(out);

  // frames.jsonl lines are appended only for queued jobs: a line of a job the queue does not know means the
  // queue is not the one the dataset was written with (emptied, replaced, lost). Dropping those lines as
  // "not done" would destroy the dataset's index, so the run refuses before anything is rewritten.
  // (Against the ledger: a shard keeps the jobs it finished itself, whatever other servers of its run did.)
  const jobIsDone = async (job: string) => {
    const state = await opened.ledger.state(job);
    if (state === null) throw new UnknownJobError(out, job);
    return state === "done";
  };
  // Resume: leases of a previous process are void; lines of jobs that never completed are dropped.
  const recovered = await queue.recoverLeased();
  if (recovered) log(`resume: ${recovered} job(s) leased by an earlier run returned to the queue`);
  const temps = await dataset.removeStaleTemps();
  if (temps) log(`resume: removed ${temps} temp file(s) left by an interrupted write`);
  const compacted = await dataset.compact(jobIsDone);
  if (compacted.dropped) log(`resume: dropped ${compacted.dropped} frames.jsonl line(s) of unfinished or repeated jobs`);

  const defaults = renderDefaults(options);
  // The run's own settings unless the caller gives its own (the command line's); a handler function is
  // named, not dropped with the other functions: `verify` reads from it how many frames a job must have.
  const { jobs: _jobs, handler, ...settings } = options;
  const recorded = options.recordedOptions ?? { ...settings, ...(handler ? { handler: `function ${handler.name || "(anonymous)"}` } : {}) };
  // After compact: the class table is restored from the lines of done jobs only.
  const seed = queue instanceof ShardQueue ? await sharedSeed(queue.shared, options.seed, previousManifest?.seed) : options.seed;
  if (queue instanceof ShardQueue) await checkSharedRunSettings(queue.shared, defaults);
  const manifest = await RunManifest.start({ root: out, previous: previousManifest, options: recorded, layers: defaults.layers, classes: options.classes, seed,
    template: options.template && { frames: options.template.frames, framesPerJob: options.template.framesPerJob }, log });
  try {
    return await serveRun(opened, options, log, { jobIsDone, manifest, defaults, linesAtStart: compacted.kept });
  } catch (err) {
    await endManifest(manifest, queue, compacted.kept);
    throw err;
  }
}

/** What startOnDataset hands on once the dataset is resumed and its manifest started. */
interface RunSetup {
  jobIsDone: (job: string) => Promise<boolean>;
  manifest: RunManifest;
  defaults: RenderDefaults;
  /** frames.jsonl's lines after resume's compact. */
  linesAtStart: number;
}

async function serveRun(opened: OpenDataset, options: RunOptions, log: (line: string) => void, setup: RunSetup): Promise<Run> {
  const { root: out, writer: dataset, queue } = opened;
  const leaseTtlMs = queue.leaseTtlMs; // as startRun opened the queue with: heartbeats follow the queue's TTL
  const { jobIsDone, manifest, defaults } = setup;

  // Queueing a million jobs takes a minute: a stop is honoured between jobs (what was committed stays, adds are idempotent).
  const given = options.template ? templateJobs(options.template.spec, manifest.templateSplit!) : options.jobs;
  const jobs = given && checkedForTheRun(untilStopped(given, options.stop), defaults.scene, options.handler !== undefined);
  // A template's job ids mean one spec: a queued one that differs (a template, cut or manifest.json changed
  // since) would lose or repeat frames, so the start is refused rather than reported.
  const added = jobs
    ? await queue.add(jobs, { replacePending: options.replacePending, refuseChanged: options.template !== undefined }).catch((err: unknown) => {
        if (!(err instanceof ChangedJobError)) throw err;
        throw new DatasetOpenError(
          `--out ${out}: template job ${err.id} is queued (${err.state}) with other frames or settings than this template and cut give: ` +
            `the template, --frames-per-job or manifest.json's record of the cut changed since it was queued, or a jobs file used that id. ` +
            `Rendering on would lose or repeat frames: restore what changed, or render into another --out.`,
        );
      })
    : { added: 0, duplicates: 0 };
  manifest.templateQueued();
  options.stop?.throwIfAborted();
  const startCounts = await queue.counts();
  log(
    `queue: ${added.added} job(s) added${added.duplicates ? `, ${added.duplicates} already known` : ""}; ` +
      `${startCounts.pending} pending, ${startCounts.done} done, ${startCounts.failed} failed`,
  );
  if (added.changed) log(`queue: of the known jobs, ${describeChangedJobs(added.changed)}`);

  const farm = new Farm({
    clientDir: options.clientDir,
    host: options.host,
    port: options.port,
    token: options.token,
    grabTimeoutMs: options.grabTimeoutMs,
    maxFrameBytes: options.maxFrameBytes,
    maxSessions: options.maxSessions,
    encode: options.encode,
    pngLevel: options.pngLevel,
    classes: manifest.classes,
    log,
  });
  const url = await farm.listen().catch(async (err) => {
    await farm.close();
    throw err;
  });
  // Once serving (a start that fails before leaves no run in run-events.jsonl); no tab can have said hello yet.
  const recorder = await recordRun({ root: out, counts: startCounts, framesAtStart: setup.linesAtStart, log });
  // The dashboard lists failed jobs of earlier runs too, to retry them; a queue that can't say is no reason not to run.
  const failedBefore = await queue.failures(MAX_FAILED_ROWS).catch((err: unknown) => void log(`queue: failed jobs not read (${(err as Error)?.message ?? err})`));
  recorder.stats.noteFailed((failedBefore ?? []).map((f) => ({ id: f.id, attempts: f.attempts, error: f.error?.message ?? "", at: Date.now() })));
  farm.on("session", (session: Session) => {
    if (session.info.webgl) manifest.noteBrowser(session.info);
    noteSession(session, recorder);
  });

  // manifest.json lists every layer asked for: a declarative job's before it renders, a handler's from the files it wrote.
  const handler = options.handler;
  const run: JobRunner = handler
    ? async (session, job) => {
        await handler(session, job);
        manifest.noteLayers(new Set(job.records.flatMap((r) => Object.keys(r.layers ?? {}))));
      }
    : (session, job) => {
        manifest.noteLayers(jobLayers(job.spec, defaults.layers));
        return renderDeclarativeJob(session, job, defaults);
      };

  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const { stats, events } = recorder;
  retireLaunchedTabs(farm, events, options.recycleAfterFrames ?? 0);
  farm.workers.forwardRendered(events); // remote workers' --relaunch-after counts
  const dispatch = dispatchJobs({ farm, queue, dataset, run, leaseTtlMs, log, maxWriteStallMs: options.maxWriteStallMs, runSeed: manifest.seed, events });
  /** Dispatch has ended (every job done or failed, or stopped): a job put back now would not be rendered. */
  let runOver = false;
  void dispatch.finished.finally(() => (runOver = true)).catch(() => {});
  const dashboard = serveDashboard({
    farm, url, root: out, events, stats, log,
    controls: {
      pause: (by) => dispatch.pause(by),
      resume: (by) => dispatch.resume(by),
      async retry(id) {
        if (runOver) return "run over";
        if ((await queue.retryFailed([id])) === 0) return "not failed";
        events.emit({ type: "jobs.requeued", at: Date.now(), jobs: [id], by: "dashboard" });
        dispatch.wake();
        return "requeued";
      },
    },
  });
  // The view, with the fields /api/status answered before run events (out, frames, jobsDone, seconds, queue, sessions).
  farm.setStatus(() => {
    const view = stats.view();
    return { ...view, seconds: seconds(), queue: view.counts };
  });
  const runDone = (stopped?: string) =>
    recorder.done({ frames: stats.frames, jobs_done: stats.jobsDone, counts: { ...stats.counts }, seconds: seconds(), ...(stopped ? { stopped } : {}) });

  const finished = dispatch.finished.then(async (): Promise<RunSummary> => {
    const elapsed = seconds();
    const final = await dataset.compact(jobIsDone);
    if (final.dropped) log(`dataset: dropped ${final.dropped} repeated frames.jsonl line(s)`);
    await endManifest(manifest, queue, final.kept);
    runDone(stopping);
    const { frames, jobsDone } = stats;
    const counts = await queue.counts();
    const failedJobs = counts.failed ? await queue.failures(SUMMARY_FAILED_JOBS) : [];
    return { out, frames, jobsDone, seconds: elapsed, framesPerSecond: frames / Math.max(elapsed, 1e-9), counts, failedJobs };
  });

  let closing: Promise<number> | undefined;
  /** Why close() stopped the run before every job was done or failed (run.done says so). */
  let stopping: string | undefined;
  return {
    url, dashboardUrl: dashboard.url, farm, events, stats, queue, dataset, added, finished,
    close(reason?: string) {
      // Once: a second call waits for the first (the dataset's lock is free when either resolves).
      closing ??= closeRun(reason);
      return closing;
    },
  };

  async function closeRun(reason?: string): Promise<number> {
    if (!runOver) stopping = reason ?? "closed";
    // Leases go back before the sessions close, so no disconnect is counted against a job.
    const released = await dispatch.stop(reason);
    // Stopping ends dispatch, and the run's end (compaction, manifest, run.done) runs as for a finished
    // run: it needs the queue and the dataset, so they are closed only after it.
    // A run whose end failed (storage given up on, compaction) did not finish: run.done says why.
    await finished.catch((err: unknown) => void (stopping ??= `failed: ${(err as Error)?.message ?? err}`));
    runDone(stopping); // when the end failed
    await dashboard.close(); // its last view says so
    await farm.close(reason, { runOver: stopping === undefined }); // remote workers exit only when the run is over, else wait for a restart
    await recorder.close(); // after the sessions' left events
    await endManifest(manifest, queue, setup.linesAtStart + stats.frames); // a stopped run's end, while the lock is still ours
    await opened.close(); // the queue, then the dataset's lock
    return released;
  }
}

/** A session's life as run events: joined now, then hung, recycled, left (with what it did). */
function noteSession(session: Session, { events, stats }: { events: RunEvents; stats: RunStats }): void {
  const { id, info } = session;
  events.emit({ type: "session.joined", at: Date.now(), session: id, worker: info.worker, renderer: info.renderer, userAgent: info.userAgent, webgl: info.webgl });
  session.once("hung", (reason: string) => events.emit({ type: "session.hung", at: Date.now(), session: id, reason }));
  session.once("retired", () => events.emit({ type: "session.recycled", at: Date.now(), session: id, frames: session.framesDelivered }));
  session.once("close", (reason: string) => {
    const row = stats.session(id);
    events.emit({ type: "session.left", at: Date.now(), session: id, reason: String(reason), frames: row?.frames ?? 0, jobs: row?.jobs ?? 0, failures: row?.failures ?? 0 });
  });
}

/**
 * Bounded browser memory on long runs: a launched tab (the local farm's or a remote worker's, admitted
 * with its proof) is retired after `frames` frames; its harness replaces it on "retired" (onRecycleDue).
 */
function retireLaunchedTabs(farm: Farm, events: RunEvents, frames: number): void {
  if (frames <= 0) return;
  onSessionRendered(events, farm.sessions, (session) => {
    if (session.framesDelivered >= frames && parseLaunchedTab(session.info.worker) !== undefined) session.retire();
  });
}

/**
 * The seed of a run on a shared queue: one for all its servers (else their shards would draw other values
 * for the same frames), agreed through the queue — the first server's --seed, dataset seed or random one.
 */
async function sharedSeed(shared: SharedQueue, given: number | undefined, recorded: number | undefined): Promise<number> {
  const agreed = Number(await shared.agree("seed", String(given ?? recorded ?? randomRunSeed())));
  if (!isRunSeed(agreed)) throw new DatasetOpenError(`the shared queue holds no usable run seed (${JSON.stringify(agreed)})`);
  if (given !== undefined && given !== agreed) {
    throw new DatasetOpenError(`--seed ${given}: the run on this shared queue draws with seed ${agreed} (its first server's): leave --seed out, or pass --seed ${agreed}`);
  }
  return agreed; // a shard that drew frames with another seed is refused by RunManifest, naming both
}

/**
 * What the servers of a run on a shared queue must agree on, by the options that set it: what a job may leave
 * to the run (it changes its frames), and how many takes fail a job (any server may end another's lease).
 */
const SHARED_RUN_SETTINGS = {
  width: "--width", height: "--height", format: "--format", quality: "--quality", layers: "--layers/--depth", scene: "scene", maxAttempts: "--max-attempts",
} as const;

/**
 * The settings of a run on a shared queue (SHARED_RUN_SETTINGS): one set for all its servers (else a job that
 * leaves its size, format, layers or scene to the run comes out differently in each shard, and merge mixes
 * them; or a job's fate depends on which server ends its lease), agreed through the queue: the first
 * server's; a server started with others is refused, naming them.
 */
async function checkSharedRunSettings(shared: SharedQueue, defaults: RenderDefaults): Promise<void> {
  const mine: Record<keyof typeof SHARED_RUN_SETTINGS, unknown> = {
    maxAttempts: shared.maxAttempts,
    width: defaults.width, height: defaults.height, format: defaults.format, quality: defaults.quality ?? null, layers: [...defaults.layers],
    scene: createHash("sha256").update(canonicalJobJson(defaults.scene)).digest("base64"), // a digest: a scene may be large
  };
  const agreed = await shared.agree("run-settings", JSON.stringify(mine));
  let theirs: Record<string, unknown>;
  try {
    theirs = JSON.parse(agreed) as Record<string, unknown>;
  } catch {
    throw new DatasetOpenError(`the shared queue holds no usable run settings (${JSON.stringify(agreed.slice(0, 200))})`);
  }
  const differ = (Object.keys(SHARED_RUN_SETTINGS) as (keyof typeof SHARED_RUN_SETTINGS)[]).filter((k) => JSON.stringify(mine[k]) !== JSON.stringify(theirs[k]));
  if (differ.length === 0) return;
  const describe = (k: keyof typeof SHARED_RUN_SETTINGS) =>
    k === "scene" ? "the run's scene differs from this server's" : `${SHARED_RUN_SETTINGS[k]}: the run's ${JSON.stringify(theirs[k] ?? null)}, this server's ${JSON.stringify(mine[k] ?? null)}`;
  throw new DatasetOpenError(
    `the run on this shared queue has other settings (its first server's): ` +
      differ.map(describe).join("; ") +
      `. Start this server with the run's settings, or give it another queue (?queue=NAME).`,
  );
}

/** Ends the run's entry in manifest.json (once) with the dataset's totals: queue states and frames.jsonl lines. */
async function endManifest(manifest: RunManifest, queue: JobQueue, linesInIndex: number): Promise<void> {
  if (manifest.ended) return;
  const c = await queue.counts().catch(() => undefined); // a failing queue must not keep the run from ending
  manifest.finish(c && { jobs_total: c.total, jobs_done: c.done, jobs_failed: c.failed, frames: linesInIndex });
}

/** Why a job's or template's `randomize` can't be drawn in this run (undefined: it can). */
function randomizeProblem(randomize: readonly Randomizer[] | undefined, ownScene: SceneElement | undefined, runScene: SceneElement, handler: boolean): string | undefined {
  if (!randomize?.length) return undefined;
  if (handler) {
    return "randomize: a --handler renders the job itself, so nothing would draw these; draw them in the handler " +
      "(drawFrame(job.spec.randomize, job.frameSeed(i)) from server/dispatch/randomizeFrame.ts; save with {randomized}) and name them otherwise, e.g. in params";
  }
  if (ownScene) return undefined; // checked against its own scene when the job was read (protocol/job.ts)
  const problem = randomizerKeyProblems(randomize, runScene, "the run's scene (there is no scene of its own to randomize)")[0];
  return problem && `${formatPath(["randomize", ...problem.path])}: ${problem.message}`;
}

/** A template the run can't render refuses the start. */
function checkTemplate(options: RunOptions): void {
  if (!options.template) return;
  if (options.jobs) throw new Error("a run renders either jobs or a template, not both");
  const { spec, file } = options.template;
  const problem = randomizeProblem(spec.randomize, spec.scene, renderDefaults(options).scene, options.handler !== undefined);
  if (problem) throw new Error(`${file ?? "template"}: ${problem}`);
}

/**
 * The jobs, each checked for what only the run can tell: randomizers drawn by a run that has a handler
 * (which would ignore them), or keys the run's scene lacks in a job without a scene of its own. A bad
 * job stops the queueing before anything renders.
 */
async function* checkedForTheRun(jobs: AsyncIterable<JobSpec>, scene: SceneElement, handler: boolean): AsyncGenerator<JobSpec> {
  for await (const job of jobs) {
    const problem = randomizeProblem(job.randomize, job.scene, scene, handler);
    if (problem) throw new Error(`job ${job.id}: ${problem}`);
    yield job;
  }
}

async function* untilStopped<T>(items: Iterable<T> | AsyncIterable<T>, stop: AbortSignal | undefined): AsyncGenerator<T> {
  for await (const item of items) {
    stop?.throwIfAborted();
    yield item;
  }
}

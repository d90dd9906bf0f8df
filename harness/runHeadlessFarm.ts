// `npm run farm`: build the client, start a run, launch headless tabs (unless --serve-only),
// print the URL, the first tab's WebGL renderer, progress and a summary.
import path from "node:path";
import type { JobSpec } from "../protocol/job.js";
import type { ImageFormat } from "../protocol/grab.js";
import type { LayerName } from "../protocol/layers.js";
import type { ClassEntry } from "../server/capture/ClassTable.js";
import { startRun, type RunOptions, type RunSummary } from "../server/runFarm.js";
import type { RunStats } from "../server/events/RunStats.js";
import { demoJobs } from "../server/jobs/demoJobs.js";
import { openJobsFile } from "../server/jobs/readJobsFile.js";
import { DEFAULT_FRAMES_PER_JOB, readTemplate } from "../server/jobs/templateJobs.js";
import { loadJobsModule } from "../server/jobs/loadJobsModule.js";
import { loadHandlerModule } from "../server/jobs/loadHandlerModule.js";
import type { JobRunner } from "../server/dispatch/dispatchJobs.js";
import type { Session } from "../server/session/Session.js";
import { launchedTabOf } from "../protocol/events.js";
import { buildClient } from "./buildClient.js";
import { BrowserLaunchError, findBrowser } from "./findBrowser.js";
import { describeGl, type GlBackend } from "./chromiumFlags.js";
import { TabPool } from "./TabPool.js";
import { isSoftwareRenderer } from "./webglProbe.js";
import { FarmStopped, untilAborted } from "./shutdown.js";
import { watchLaunchedTabs } from "./launchedTabs.js";
import { progressView } from "./progressView.js";

export interface FarmCommandOptions {
  sessions: number;
  browsers: number;
  demo: number;
  /** --frames-per-job; absent: DEFAULT_FRAMES_PER_JOB for the demo, the dataset's cut (else the default) for a template. */
  framesPerJob?: number;
  jobs?: string;
  /** --template: one job (no id, no frames) rendered `frames` times, in jobs of framesPerJob. */
  template?: string;
  frames?: number;
  /** --seed; absent: the dataset's, else random. */
  seed?: number;
  handler?: string;
  plugins?: string;
  out: string;
  width: number;
  height: number;
  format: ImageFormat;
  quality?: number;
  host: string;
  port: number;
  token?: string;
  headed: boolean;
  /** --browser: auto | system | bundled | a path; absent: $TABFARM_BROWSER, else auto (findBrowser). */
  browser?: string;
  gl: GlBackend;
  serveOnly: boolean;
  leaseTtl: number;
  maxAttempts: number;
  grabTimeout: number;
  maxFrameMb: number;
  maxSessions: number;
  encode: "browser" | "server";
  pngLevel: number;
  inFlight: number;
  progress: boolean;
  chromiumArg: string[];
  recycleAfter: number;
  /** Absent: startRun's defaults (rgb only). */
  layers?: LayerName[];
  depth?: boolean;
  classes?: ClassEntry[];
  verbose: boolean;
  replacePending: boolean;
}

export class FarmError extends Error {}

/** The run's jobs: a jobs file or module, a template (its jobs are cut by the run: runFarm), or the demo. */
async function jobSource(options: FarmCommandOptions): Promise<Pick<RunOptions, "jobs" | "template">> {
  if (options.template) {
    const file = path.resolve(options.template);
    return { template: { spec: await readTemplate(file), frames: options.frames!, framesPerJob: options.framesPerJob, file: options.template } };
  }
  if (!options.jobs) return { jobs: demoJobs(options.demo, options.framesPerJob ?? DEFAULT_FRAMES_PER_JOB) };
  const file = path.resolve(options.jobs);
  return { jobs: await (/\.(jsonl|ndjson|json)$/i.test(file) ? openJobsFile(file) : loadJobsModule(file)) };
}

/**
 * Runs the farm until every job is done or failed. When `stop` is aborted (a signal; its reason a
 * FarmStopped), it stops: running jobs go back to the queue uncounted, the browsers close, and the
 * FarmStopped is thrown with `released` filled in.
 */
export async function runHeadlessFarm(options: FarmCommandOptions, log = (line: string) => console.log(line), stop?: AbortSignal): Promise<RunSummary> {
  const stopped = untilAborted(stop);
  // Inputs first: a bad jobs file must fail before anything starts.
  const source = await Promise.race([jobSource(options), stopped]); // checking a big jobs file takes a while: a signal does not wait for it
  const userHandler = options.handler ? await loadHandlerModule(path.resolve(options.handler)) : undefined;
  const handler: JobRunner | undefined = userHandler && (async (session, job) => void (await userHandler(session, job)));
  // The browser next, so that a setup error comes before any work and the first lines say which browser and why.
  const browser = options.serveOnly ? undefined : findBrowser(process.env, { choice: options.browser, bundled: { log: (l) => log(`tabfarm: ${l}`) } });
  if (browser) log(`tabfarm: browser ${browser.path} (${browser.source}: ${browser.reason})`);
  const clientDir = await buildClient({ plugins: options.plugins, log });
  stop?.throwIfAborted();

  // With a terminal, a progress bar (log lines are printed above it); without, a status line every few seconds.
  let stats: RunStats | undefined;
  const progress = progressView({ stats: () => stats, enabled: options.progress, tty: process.stderr.isTTY === true, log });
  const say = progress.say;
  const run = await startRun({
    out: options.out, clientDir, ...source, handler,
    width: options.width, height: options.height, format: options.format, quality: options.quality,
    host: options.host, port: options.port, token: options.token,
    leaseTtlMs: options.leaseTtl, maxAttempts: options.maxAttempts, grabTimeoutMs: options.grabTimeout,
    maxFrameBytes: Math.round(options.maxFrameMb * 1024 * 1024), maxSessions: options.maxSessions,
    encode: options.encode, pngLevel: options.pngLevel,
    inFlight: options.inFlight, layers: options.layers, depth: options.depth, classes: options.classes, replacePending: options.replacePending,
    seed: options.seed,
    recordedOptions: options, log: say, stop,
  });
  stats = run.stats;
  run.finished.catch(() => {}); // awaited below; after a stop nobody waits for it
  run.events.subscribe((event) => {
    if (event.type !== "job.done" || options.recycleAfter <= 0) return;
    // Bounded browser memory on long runs: a tab is replaced after --recycle-after frames.
    const session = run.farm.sessions.get(event.session);
    if (session && session.framesDelivered >= options.recycleAfter && launchedTabOf(session.info.worker) !== undefined) session.retire();
  });
  say(`tabfarm: serving ${run.url}`);
  say(`tabfarm: open that URL in any browser to add a session; dataset → ${run.dataset.root}`);
  say(`tabfarm: dashboard ${run.dashboardUrl}`);

  let pool: TabPool | undefined;
  let firstSession: (session: Session) => void = () => {};
  const firstHello = new Promise<Session>((resolve) => (firstSession = resolve));
  run.farm.on("session", (session: Session) => {
    firstSession(session);
    session.once("hung", () => pool?.recycle(session.info.worker, "is hung"));
    session.once("retired", () => pool?.recycle(session.info.worker, `rendered ${session.framesDelivered} frames`, false));
    session.once("quarantined", (why: string) => pool?.recycle(session.info.worker, `is quarantined (it ${why})`));
  });
  // Before anything can close a browser: a stop must not look like a crash to the pool.
  stop?.addEventListener("abort", () => pool?.stopReplacing(), { once: true });
  try {
    if (browser) {
      say(`tabfarm: ${options.sessions} tab(s) in ${options.browsers} ${browser.source} browser(s) at ${browser.path}, GL: ${options.gl}`);
      pool = new TabPool({
        executablePath: browser.path, gl: options.gl, headed: options.headed, url: run.url, proveLaunched: (worker) => run.farm.launchedTabProof(worker),
        tabs: options.sessions, browsers: options.browsers, log: say, verbose: options.verbose, extraArgs: options.chromiumArg,
      });
      // Only launched tabs say whether the launched browser renders (a hand-opened tab without WebGL
      // is just left without work); the run stops only when no launched tab can render.
      const verdict = watchLaunchedTabs(run.farm, options.sessions, 60_000);
      stop?.throwIfAborted(); // no browser is launched after a signal
      // A program that is no browser (--browser /bin/true) fails here: say which one and why, not Playwright's dump.
      const starting = pool.start().catch((err: unknown) => Promise.reject(stop?.aborted ? err : new BrowserLaunchError(browser, err)));
      starting.catch(() => {}); // raced with a stop below
      await Promise.race([starting, stopped]);
      const launched = await Promise.race([verdict, stopped]);
      if ("none" in launched) throw new FarmError(`no tab connected within 60 s (browser ${browser.path}, ${describeGl(options.gl)})`);
      if ("noWebGl" in launched) {
        throw new FarmError(
          `WebGL is not available in the launched browser (${browser.path}); tried ${describeGl(options.gl)}` +
            `${options.chromiumArg.length ? ` plus ${options.chromiumArg.join(" ")}` : ""}. ` +
            `Try --gl swiftshader (software), --gl auto, or another browser (--browser system, bundled or a path).`,
        );
      }
      const first = launched.rendering;
      say(`tabfarm: WebGL renderer of the first tab: ${first.info.renderer}`);
      if ((options.gl === "egl" || options.gl === "vulkan") && isSoftwareRenderer(first.info.renderer)) {
        say(`tabfarm: warning: --gl ${options.gl} asked for a GPU, but the tabs got a software renderer`);
      }
    } else {
      void firstHello.then((s) => say(`tabfarm: first session renderer: ${s.info.renderer || "(no WebGL)"}`));
    }

    progress.start();
    return await Promise.race([run.finished, stopped]);
  } catch (err) {
    if (err instanceof FarmStopped) err.released = await run.close(err.message);
    throw err;
  } finally {
    progress.stop();
    await run.close();
    await pool?.close();
  }
}

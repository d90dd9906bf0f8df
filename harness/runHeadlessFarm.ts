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
import { buildClient } from "./buildClient.js";
import { findBrowser } from "./findBrowser.js";
import type { GlBackend } from "./chromiumFlags.js";
import { chooseGl } from "./chooseGl.js";
import { FarmStopped, untilAborted } from "./shutdown.js";
import { farmTabSignals, TabLifecycle } from "./tabLifecycle.js";
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
  /** --relaunch-after: relaunch a browser once its tabs rendered this many frames (0: never). */
  relaunchAfter: number;
  /** Absent: startRun's defaults (rgb only). */
  layers?: LayerName[];
  depth?: boolean;
  classes?: ClassEntry[];
  verbose: boolean;
  replacePending: boolean;
  /** --queue: a queue shared by several farm servers (redis://…); --out is this server's shard. */
  queue?: string;
}

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

/** How to add headless tabs from another machine (`farm worker`), given where the server listens. */
function workerHint(host: string, url: string): string {
  const { origin, port } = new URL(url);
  if (host === "127.0.0.1" || host === "localhost" || host === "::1") return `headless tabs of another machine can join once the server listens on its network (--host 0.0.0.0): npm run farm -- worker --connect http://HOST:PORT --token T`;
  const address = host === "0.0.0.0" || host === "::" ? `http://<this machine's address>:${port}` : origin;
  return `add headless tabs from another machine: npm run farm -- worker --connect ${address} --token <the token in that URL>`;
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
  // --gl auto's probe launches the browser once: it runs while the client is built and the run opens.
  const glChoice = browser && chooseGl(browser.path, options.gl, { extraArgs: options.chromiumArg });
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
    seed: options.seed, sharedQueue: options.queue,
    // Bounded browser memory on long runs: a launched tab (ours or a remote worker's) is replaced after --recycle-after frames.
    recycleAfterFrames: options.recycleAfter,
    recordedOptions: options, log: say, stop,
  });
  stats = run.stats;
  run.finished.catch(() => {}); // awaited below; after a stop nobody waits for it
  say(`tabfarm: serving ${run.url}`);
  say(`tabfarm: open that URL in any browser to add a session; dataset → ${run.dataset.root}`);
  say(`tabfarm: ${workerHint(options.host, run.url)}`);
  say(`tabfarm: dashboard ${run.dashboardUrl}`);

  let tabs: TabLifecycle | undefined;
  const firstHello = new Promise<Session>((resolve) => run.farm.once("session", resolve));
  // Before anything can close a browser: a stop must not look like a crash to the pool.
  stop?.addEventListener("abort", () => tabs?.stopReplacing(), { once: true });
  try {
    if (browser) {
      const { gl, why } = await Promise.race([glChoice!, stopped]);
      say(`tabfarm: ${options.sessions} tab(s) in ${options.browsers} ${browser.source} browser(s) at ${browser.path}, GL: ${gl} (${why})`);
      tabs = new TabLifecycle({
        browser, executablePath: browser.path, gl, autoGl: options.gl === "auto", headed: options.headed, url: run.url, proveLaunched: (worker) => run.farm.launchedTabProof(worker),
        tabs: options.sessions, browsers: options.browsers, log: say, verbose: options.verbose, extraArgs: options.chromiumArg,
        relaunchAfterFrames: options.relaunchAfter,
      }, farmTabSignals(run.farm, run.events));
      // Only launched tabs say whether the launched browser renders (a hand-opened tab without WebGL
      // is just left without work); the run stops only when no launched tab can render.
      const first = await tabs.start(stopped, stop);
      for (const line of TabLifecycle.describeFirstTab(first, gl, options.gl === "auto")) say(`tabfarm: ${line}`);
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
    if (tabs?.pool.relaunches) log(`tabfarm: browsers relaunched ${tabs.pool.relaunches} time(s) (--relaunch-after ${options.relaunchAfter}); tabs recycled ${tabs.pool.recycled} time(s)`);
    await run.close();
    await tabs?.close();
  }
}

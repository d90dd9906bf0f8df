// The life of launched tabs, the same for the local farm (`npm run farm`) and a remote worker
// (`npm run farm -- worker`): a TabPool of headless tabs, replaced when the server says a tab must go
// (hung, quarantined, or retired after --recycle-after frames: onRecycleDue), and a verdict on whether
// the launched browser renders at all. Only where the signals come from differs: the Farm's session
// events locally (farmTabSignals), the worker-control socket for a worker (workerCommand.ts).
// Browsers are relaunched after --relaunch-after frames where the signals carry the frames each tab
// rendered and can retire a tab between jobs: the local farm's run events and sessions, a worker's
// `rendered` messages and `retire` requests (protocol/worker.ts; the server answers those asynchronously).
import type { Farm } from "../server/session/Farm.js";
import type { Session } from "../server/session/Session.js";
import { onRecycleDue, onSessionRendered } from "../server/session/workerLink.js";
import type { RunEvents } from "../server/events/RunEvents.js";
import type { RecycleOrder, TabJoined } from "../protocol/worker.js";
import { describeGl, type ConcreteGlBackend } from "./chromiumFlags.js";
import { LLVMPIPE_APT } from "./chooseGl.js";
import type { FoundBrowser } from "./findBrowser.js";
import { BrowserLaunchError } from "./findBrowser.js";
import { TabPool, type TabPoolOptions } from "./TabPool.js";
import { watchLaunchedTabs, type TabHellos } from "./launchedTabs.js";
import { isSoftwareRenderer } from "./webglProbe.js";

/** How long the launched tabs have to say hello before the verdict "no tab connected". */
export const LAUNCH_VERDICT_MS = 60_000;

/** What the server says about launched tabs. */
export interface TabSignals {
  /** Hellos of tabs (a pool keeps its own). */
  joined: TabHellos;
  /** Subscribes to the server's orders to replace a tab. */
  recycle(listener: (order: RecycleOrder) => void): void;
  /** Subscribes to frames rendered by tabs (one call per job done), for --relaunch-after; absent: not known here. */
  rendered?(listener: (worker: string, frames: number) => void): void;
  /**
   * Asks the server to retire the session of tab `worker` between jobs (then recycle it); false when it has
   * none that will be retired (none, closed, or without WebGL) or cannot say (a worker's request not acknowledged in time).
   */
  retire?(worker: string): boolean | Promise<boolean>;
}

/** The local farm's signals: its own sessions' hellos and events, and its run's events (frames rendered, for --relaunch-after). */
export function farmTabSignals(farm: Farm, events?: RunEvents): TabSignals {
  const sessionOf = (worker: string) => [...farm.sessions.values()].find((s) => s.info.worker === worker && !s.closed);
  const hello = (session: Session): TabJoined => ({ tab: session.info.worker, webgl: session.info.webgl, renderer: session.info.renderer });
  return {
    joined: (listener) => {
      const onSession = (session: Session) => listener(hello(session));
      farm.on("session", onSession);
      return () => farm.off("session", onSession);
    },
    recycle: (listener) => farm.on("session", (session: Session) => onRecycleDue(session, listener)),
    rendered: events && ((listener) => onSessionRendered(events, farm.sessions, (session, frames) => listener(session.info.worker, frames))),
    retire: (worker) => sessionOf(worker)?.retire() ?? false,
  };
}

/** The launched tabs cannot work: none said hello, or none has WebGL. */
export class TabLaunchError extends Error {}

export interface TabLifecycleOptions extends Omit<TabPoolOptions, "retire"> {
  browser: FoundBrowser;
  gl: ConcreteGlBackend;
  /** `gl` was picked by --gl auto (harness/chooseGl.ts), not named by the user: the messages say so. */
  autoGl?: boolean;
}

export class TabLifecycle {
  readonly pool: TabPool;

  constructor(private readonly options: TabLifecycleOptions, private readonly signals: TabSignals) {
    const relaunching = (options.relaunchAfterFrames ?? 0) > 0 && signals.rendered && signals.retire;
    this.pool = new TabPool({ ...options, retire: relaunching ? (worker) => signals.retire!(worker) : undefined });
    // The pool ignores names that are not its own (hand-opened pages, another worker's tabs).
    signals.recycle((order) => this.pool.recycle(order.tab, order.reason, order.fault));
    if (relaunching) {
      signals.rendered!((worker, frames) => this.pool.rendered(worker, frames));
      signals.joined((tab) => this.pool.tabJoined(tab.tab)); // a relaunched browser's tabs are back
    }
  }

  /**
   * Launches the tabs and waits for the verdict: resolves with the first launched tab that renders
   * (describeFirstTab says what to print); rejects with a TabLaunchError when none said hello in time or
   * none has WebGL, with a BrowserLaunchError when the browser does not start, or with `stopped`'s reason.
   */
  async start(stopped: Promise<never>, stop?: AbortSignal): Promise<TabJoined> {
    const { browser, gl, extraArgs = [], autoGl = false } = this.options;
    const verdict = watchLaunchedTabs(this.signals.joined, this.options.tabs, LAUNCH_VERDICT_MS, this.options.owner);
    stop?.throwIfAborted(); // no browser is launched after a signal
    // A program that is no browser (--browser /bin/true) fails here: say which one and why, not Playwright's dump.
    const starting = this.pool.start().catch((err: unknown) => Promise.reject(stop?.aborted ? err : new BrowserLaunchError(browser, err)));
    starting.catch(() => {}); // raced with a stop below
    await Promise.race([starting, stopped]);
    const launched = await Promise.race([verdict, stopped]);
    if ("none" in launched) throw new TabLaunchError(`no tab connected within ${LAUNCH_VERDICT_MS / 1000} s (browser ${browser.path}, ${describeGl(gl)})`);
    if ("noWebGl" in launched) {
      throw new TabLaunchError(
        `WebGL is not available in the launched browser (${browser.path}); tried ${describeGl(gl)}${autoGl ? " (picked by --gl auto)" : ""}` +
          `${extraArgs.length ? ` plus ${extraArgs.join(" ")}` : ""}. ` +
          `Try ${[
            ...(extraArgs.length ? ["without those --chromium-arg flags"] : []),
            ...(gl === "swiftshader" ? [] : ["--gl swiftshader (software)"]),
            ...(autoGl ? [] : ["--gl auto"]),
          ].map((t) => `${t}, `).join("")}or another browser (--browser system, bundled or a path).`,
      );
    }
    return launched.rendering;
  }

  /** What to say about the first tab that renders: its renderer, and whether it is the GPU asked for. */
  static describeFirstTab(first: TabJoined, gl: ConcreteGlBackend, autoGl = false): string[] {
    const lines = [`WebGL renderer of the first tab: ${first.renderer}`];
    const asked = autoGl ? `--gl auto picked ${gl} (its probe saw it), ` : `--gl ${gl} asked for ${gl === "llvmpipe" ? "Mesa's llvmpipe" : "a GPU"}, `;
    if ((gl === "egl" || gl === "vulkan") && isSoftwareRenderer(first.renderer)) lines.push(`warning: ${asked}but the tabs got a software renderer`);
    if (gl === "llvmpipe" && !/llvmpipe/i.test(first.renderer)) lines.push(`warning: ${asked}but the tabs got another renderer${autoGl ? "" : ` (${LLVMPIPE_APT} brings it)`}`);
    return lines;
  }

  /** Nothing lost is replaced from now on (call before anything closes a browser: a stop is no crash). */
  stopReplacing(): void {
    this.pool.stopReplacing();
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

// Whether the tabs the harness launched can render. Only their hellos say anything about the
// launched browser: a tab opened by hand without WebGL (an old laptop) is left without work by the
// Farm and must not stop the run. The hellos come from the Farm's sessions (the local farm) or from
// the server over the worker-control socket (a remote worker): see tabLifecycle.ts.
import { launchedTabOf } from "../protocol/events.js";
import type { TabJoined } from "../protocol/worker.js";

/** Subscribes to the hellos of tabs (any tabs: the watch keeps its pool's own); returns the unsubscribe. */
export type TabHellos = (listener: (tab: TabJoined) => void) => () => void;

export type LaunchedTabsVerdict =
  /** The first launched tab with WebGL. */
  | { rendering: TabJoined }
  /** Launched tabs said hello, none with WebGL: every launched tab, or those in by the deadline. */
  | { noWebGl: TabJoined[] }
  /** No launched tab said hello by the deadline. */
  | { none: true };

/**
 * Watches hellos from now on (call before launching) until a verdict on `tabs` launched tabs of
 * `owner` (a remote worker's name; absent: the local farm's tabs).
 */
export function watchLaunchedTabs(hellos: TabHellos, tabs: number, timeoutMs: number, owner?: string): Promise<LaunchedTabsVerdict> {
  return new Promise((resolve) => {
    const withoutWebGl = new Map<string, TabJoined>(); // by name: a replaced tab counts once
    const done = (verdict: LaunchedTabsVerdict) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(verdict);
    };
    const timer = setTimeout(() => done(withoutWebGl.size ? { noWebGl: [...withoutWebGl.values()] } : { none: true }), timeoutMs);
    timer.unref();
    const unsubscribe = hellos((tab) => {
      if (launchedTabOf(tab.tab, owner) === undefined) return;
      if (tab.webgl) return done({ rendering: tab });
      withoutWebGl.set(tab.tab, tab);
      if (withoutWebGl.size >= tabs) done({ noWebGl: [...withoutWebGl.values()] });
    });
  });
}

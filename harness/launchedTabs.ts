// Whether the tabs the harness launched can render. Only their hellos say anything about the
// launched browser: a tab opened by hand without WebGL (an old laptop) is left without work by the
// Farm and must not stop the run.
import { launchedTabOf } from "../protocol/events.js";
import type { Farm } from "../server/session/Farm.js";
import type { Session } from "../server/session/Session.js";

export type LaunchedTabsVerdict =
  /** The first launched tab with WebGL. */
  | { rendering: Session }
  /** Launched tabs said hello, none with WebGL: every launched tab, or those in by the deadline. */
  | { noWebGl: Session[] }
  /** No launched tab said hello by the deadline. */
  | { none: true };

/** Watches the farm's hellos from now on (call before launching) until a verdict on `tabs` launched tabs. */
export function watchLaunchedTabs(farm: Farm, tabs: number, timeoutMs: number): Promise<LaunchedTabsVerdict> {
  return new Promise((resolve) => {
    const withoutWebGl = new Map<string, Session>(); // by worker name: a replaced tab counts once
    const done = (verdict: LaunchedTabsVerdict) => {
      clearTimeout(timer);
      farm.off("session", onSession);
      resolve(verdict);
    };
    const onSession = (session: Session) => {
      if (launchedTabOf(session.info.worker) === undefined) return;
      if (session.info.webgl) return done({ rendering: session });
      withoutWebGl.set(session.info.worker, session);
      if (withoutWebGl.size >= tabs) done({ noWebGl: [...withoutWebGl.values()] });
    };
    const timer = setTimeout(() => done(withoutWebGl.size ? { noWebGl: [...withoutWebGl.values()] } : { none: true }), timeoutMs);
    timer.unref();
    farm.on("session", onSession);
  });
}

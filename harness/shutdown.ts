// Graceful stop on SIGTERM, SIGINT and SIGHUP: the first signal stops dispatch, returns the leases of
// running jobs uncounted (a stop of ours is never the job's fault), closes the browsers and exits
// 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP); a second signal exits
// at once (Playwright's exit hook still kills the browsers it launched).
import os from "node:os";

export const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** The run was stopped by a signal; `released` is filled in once its leases are back in the queue. */
export class FarmStopped extends Error {
  released = 0;
  constructor(readonly signal: StopSignal) {
    super(`stopped by ${signal}`);
  }
}

/** The shell's convention for a process ended by `signal`. */
export function exitCodeFor(signal: StopSignal): number {
  return 128 + os.constants.signals[signal];
}

/** What the signal handlers say the command does: on the first signal, and on a second one (exit at once). */
export interface StopMessages {
  stopping: string;
  atOnce: string;
}
const FARM_STOP_MESSAGES: StopMessages = {
  stopping: "returning running jobs to the queue, closing the browsers",
  atOnce: "running jobs stay leased; the next run returns them",
};

/**
 * Installs the handlers; returns the AbortSignal the farm watches (its reason is a FarmStopped).
 * `exitNow` is called on a second signal.
 *
 * `npm run farm` runs the farm under a shell, and npm passes SIGINT/SIGTERM to that shell alone, which
 * dies without passing them on: the farm, orphaned, would render on (`docker stop` of a container whose
 * command is `npm run farm`, `kill <npm pid>`). So a farm started by an npm script (`watchParent`) also
 * stops, as on SIGHUP, when the process that started it goes away.
 */
export function stopOnSignals(
  log: (line: string) => void,
  exitNow: (code: number) => void = (code) => process.exit(code),
  watchParent = process.env.npm_lifecycle_event !== undefined,
  says: StopMessages = FARM_STOP_MESSAGES,
): AbortSignal {
  const controller = new AbortController();
  const onSignal = (signal: StopSignal) => {
    if (controller.signal.aborted) {
      log(`tabfarm: ${signal} again; exiting at once (${says.atOnce})`);
      exitNow(exitCodeFor(signal));
      return;
    }
    log(`tabfarm: ${signal}: stopping (${says.stopping}); send it again to exit at once`);
    controller.abort(new FarmStopped(signal));
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  if (watchParent) {
    const parent = process.ppid;
    const orphaned = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(orphaned);
      log(`tabfarm: the process that started the farm (pid ${parent}, npm's shell) is gone`);
      onSignal("SIGHUP");
    }, 500);
    orphaned.unref();
  }
  return controller.signal;
}

/** Rejects with the abort reason once `signal` is aborted (never settles otherwise). */
export function untilAborted(signal: AbortSignal | undefined): Promise<never> {
  const aborted = new Promise<never>((_, reject) => {
    if (!signal) return;
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => {}); // only ever raced; never an unhandled rejection by itself
  return aborted;
}

// What the command line shows while a run goes: with a terminal, a progress bar (log lines above it);
// without one (CI, a log file), one plain status line every PLAIN_EVERY_MS. Both read the run's
// events folded (RunStats), never the queue. Lines carry no control characters: text from pages (error
// messages) could hold escape codes that would rewrite a terminal or a CI log.
import cliProgress from "cli-progress";
import { withoutControlCharacters, type RunView } from "../protocol/runEvents.js";
import type { RunStats } from "../server/events/RunStats.js";
import { isRedisQueueUrl, redactRedisUrl } from "../server/queue/RedisQueue.js";

export { withoutControlCharacters };

export const PLAIN_EVERY_MS = 5000;
const BAR_EVERY_MS = 500;

/** "1 h 02 m", "3 m 20 s", "42 s"; "—" when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
}

/** `arg` as one word for a POSIX shell. */
export const shellQuote = (arg: string): string => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`);

/**
 * The commands that put a run's failed jobs back and render them: retry-failed, then the same farm command
 * (its arguments as given, with the --out it used when it picked one itself). A run on a shared queue
 * (`queue`, --queue redis://…) retries on that queue (its --out is a shard, which retry-failed --out
 * refuses); a queue URL's password is printed as *** wherever it appears.
 */
export function retryCommand(args: readonly string[], out: string, queue?: string): string {
  const gaveOut = args.some((a) => a === "--out" || a.startsWith("--out="));
  const again = (gaveOut ? [...args] : [...args, "--out", out]).map(withoutQueuePassword);
  const retry = queue === undefined ? `--out ${shellQuote(out)}` : `--queue ${shellQuote(redactRedisUrl(queue))}`;
  return `npm run farm -- retry-failed ${retry} && npm run farm -- ${again.map(shellQuote).join(" ")}`;
}

/** An argument that is (or sets, --queue=…) a Redis URL, with its password as ***. */
const withoutQueuePassword = (arg: string): string => {
  const value = arg.startsWith("--queue=") ? arg.slice("--queue=".length) : arg;
  if (!isRedisQueueUrl(value)) return arg;
  return arg.slice(0, arg.length - value.length) + redactRedisUrl(value);
};

/** Sessions connected now (rows of sessions that left are kept, with why they went). */
const liveSessions = (view: RunView) => view.sessions.filter((s) => s.leftAt === undefined && s.state !== "hung").length;

/** The plain status line. */
export function statusLine(view: RunView): string {
  const c = view.counts;
  // Texts in the view (who paused) are not ours: the line is cleaned whoever prints it.
  return withoutControlCharacters(
    `progress: ${c.done}/${c.total} jobs done, ${c.leased} leased, ${c.failed} failed, ${view.retries} retries, ` +
    `${liveSessions(view)} sessions, ${view.frames} frames, ${view.framesPerSecond.toFixed(1)} frames/s, ETA ${formatDuration(view.etaSeconds)}` +
    `${view.paused ? ` (paused by ${view.paused.by})` : ""}${view.writePaused ? ` (paused: ${view.writePaused.store} refuses writes)` : ""}`
  );
}

export interface ProgressView {
  /** Prints a log line (above the bar, if any), without control characters. */
  say(line: string): void;
  /** Starts showing progress (after the browsers are up). */
  start(): void;
  stop(): void;
}

/**
 * `tty` (a terminal on stderr): the bar; else, when `enabled`, a status line every PLAIN_EVERY_MS
 * through `log`; not enabled (--no-progress): log lines only.
 */
export function progressView(options: { stats: () => RunStats | undefined; enabled: boolean; tty: boolean; log: (line: string) => void }): ProgressView {
  const { enabled, log } = options;
  const bars = enabled && options.tty
    ? new cliProgress.MultiBar(
        {
          format: "{bar} {value}/{total} jobs | {frames} frames | {fps} frames/s | ETA {remaining} | {sessions} sessions | {leased} leased | {failed} failed | {retries} retries",
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  // A text's own lines (a stack trace, or a page's error text posing as a line of ours) are indented under the line they belong to.
  const printable = (line: string) => withoutControlCharacters(line).replace(/\n(?=.)/g, "\n    ");
  let timer: NodeJS.Timeout | undefined;
  let bar: cliProgress.SingleBar | undefined;
  let stopped = false;
  // cli-progress prints logged lines only when it redraws a bar: before the bar and after it, print them directly.
  const say = (line: string) => (bars && bar && !stopped ? bars.log(`${printable(line)}\n`) : log(printable(line)));
  // A second signal exits at once (shutdown.ts): the terminal gets its cursor back all the same.
  if (bars) process.once("exit", () => bars.stop());
  return {
    say,
    start() {
      if (!enabled || timer) return;
      const show = () => {
        const stats = options.stats();
        if (!stats) return;
        const view = stats.view();
        if (!bars) return say(statusLine(view));
        const payload = {
          frames: view.frames, fps: view.framesPerSecond.toFixed(1), remaining: formatDuration(view.etaSeconds),
          sessions: liveSessions(view), leased: view.counts.leased, failed: view.counts.failed, retries: view.retries,
        };
        // Failed jobs leave the bar's total: a run with failures still ends at 100 %.
        const total = Math.max(1, view.counts.total - view.counts.failed);
        bar ??= bars.create(total, view.counts.done, payload);
        bar.setTotal(total);
        bar.update(view.counts.done, payload);
      };
      timer = setInterval(show, bars ? BAR_EVERY_MS : PLAIN_EVERY_MS);
      timer.unref();
    },
    stop() {
      stopped = true;
      clearInterval(timer);
      bars?.stop();
    },
  };
}

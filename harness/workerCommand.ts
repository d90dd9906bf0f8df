// `npm run farm -- worker --connect http://HOST:PORT --token T`: headless tabs on this machine as
// sessions of a farm server elsewhere, with the local farm's tab lifecycle (tabLifecycle.ts). A
// control socket (protocol/worker.ts) comes first: it gets the proofs the tabs' URLs carry, the
// server's orders to replace a tab, the frames each tab rendered (--relaunch-after: a browser is
// relaunched between jobs, its tabs retired through the server first), and the run's end. Frames go
// to the server; nothing is written here but the browsers' temporary profiles.
//
// Exit codes: 0 when the server says the run is over; 2 when the server refuses the token or this
// worker, is unreachable for --wait seconds, or the tabs cannot render; 128 + n on signal n.
import os from "node:os";
import { randomBytes } from "node:crypto";
import { Command, Option } from "commander";
import { io, type Socket } from "socket.io-client";
import { launchedTabOf, WORKER_NAME } from "../protocol/events.js";
import {
  describeRefusal, MAX_WORKER_TABS, ReasonSchema, RecycleOrderSchema, TabJoinedSchema, TabRenderedSchema, WORKER_NAMESPACE, WORKER_PROTOCOL_VERSION, WorkerWelcomeSchema,
  type RecycleOrder, type ServerToWorkerEvents, type TabJoined, type WorkerToServerEvents,
} from "../protocol/worker.js";
import { withoutControlCharacters } from "../protocol/runEvents.js";
import { throttledLog } from "../server/session/accessControl.js";
import type { GlBackend } from "./chromiumFlags.js";
import { chooseGl, glOption } from "./chooseGl.js";
import { int } from "./cliArguments.js";
import { findBrowser, type FoundBrowser } from "./findBrowser.js";
import { defaultBrowsers, DEFAULT_RELAUNCH_AFTER_FRAMES, relaunchAfterOption } from "./TabPool.js";
import { FarmStopped, exitCodeFor, stopOnSignals, untilAborted } from "./shutdown.js";
import { TabLifecycle, type TabSignals } from "./tabLifecycle.js";

export interface WorkerOptions {
  /** --connect: the server's URL (http://HOST:PORT; a `?token=` in it is used when --token is absent). */
  connect: string;
  token?: string;
  sessions: number;
  browsers: number;
  gl: GlBackend;
  browser?: string;
  chromiumArg: string[];
  /** This worker's name on the server; its tabs are `<name>.tab-N`. */
  name: string;
  /** Seconds the server may be unreachable (at the start, or after it went away) before the worker gives up; 0: forever. */
  wait: number;
  /** --relaunch-after: relaunch a browser once its tabs rendered this many frames (0: never; absent: DEFAULT_RELAUNCH_AFTER_FRAMES). */
  relaunchAfter?: number;
  verbose: boolean;
}

/** The worker cannot go on: the server refused it, stayed unreachable, or sent what it cannot use. Exit 2. */
export class WorkerError extends Error {}

/** How long a connected server may take to answer the hello. */
const WELCOME_TIMEOUT_MS = 30_000;
/** How long the server may take to acknowledge a `retire`; no answer counts as "no session" (the tab is closed, its job put back). */
const RETIRE_ACK_TIMEOUT_MS = 10_000;
/**
 * Least time between two `retire` requests: a browser's drain asks for all its tabs at once, and the server
 * cuts a control socket that sends more than 50 messages a second (Farm's messagesPerSecond): 40 a second at most.
 */
const RETIRE_SPACING_MS = 25;

/** The server's origin and the token to present, from --connect and --token. */
export function serverOf(connect: string, token: string | undefined): { origin: string; token: string } {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(connect)) throw new WorkerError(`--connect ${JSON.stringify(connect)}: give the server's URL with its scheme, e.g. http://HOST:PORT`);
  let url: URL;
  try {
    url = new URL(connect);
  } catch {
    throw new WorkerError(`--connect ${JSON.stringify(connect)} is not a URL; give the server's, e.g. http://192.168.1.10:8080`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new WorkerError(`--connect ${JSON.stringify(connect)}: the server's URL starts with http:// or https://`);
  if (url.pathname !== "/" || url.hash) throw new WorkerError(`--connect ${JSON.stringify(url.origin + url.pathname)}: give the server's address only (http://HOST:PORT), no path`);
  const given = token ?? url.searchParams.get("token") ?? undefined;
  if (!given) throw new WorkerError("the server's access token is missing: --token T (or $TABFARM_TOKEN, or ?token=T in --connect's URL)");
  return { origin: url.origin, token: given };
}

/** This machine's name, as a worker name (WORKER_NAME) with the process id: unique per process. */
export function defaultWorkerName(): string {
  const host = os.hostname().split(".")[0]!.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 30) || "worker";
  return `${host}-${process.pid}`;
}

/**
 * The control socket: says hello on every (re)connect, turns the server's messages (each checked)
 * into the lifecycle's signals, and settles `ended` when the run is over or the worker must give up.
 */
class ControlLink {
  private readonly socket: Socket<ServerToWorkerEvents, WorkerToServerEvents>;
  private readonly instance = randomBytes(12).toString("base64url");
  private proofs: string[] | undefined;
  private readonly joinedListeners = new Set<(tab: TabJoined) => void>();
  private readonly recycleListeners = new Set<(order: RecycleOrder) => void>();
  private readonly renderedListeners = new Set<(tab: string, frames: number) => void>();
  /** When the next `retire` request may go (RETIRE_SPACING_MS). */
  private nextRetireAt = 0;
  private unreachable?: NodeJS.Timeout;
  private welcomeTimer?: NodeJS.Timeout;
  private tries = 0;
  /** Why the last connection failed: unreachable, or refused for now (the server is full). */
  private lastProblem = "";
  private over = false;
  private settle!: { resolve: (reason: string) => void; reject: (err: Error) => void };
  /** Resolves with the server's reason when the run is over; rejects with a WorkerError when the worker must give up. */
  readonly ended = new Promise<string>((resolve, reject) => (this.settle = { resolve, reject }));
  private welcomed!: (proofs: string[]) => void;
  /** The first welcome's proofs. */
  readonly firstWelcome = new Promise<string[]>((resolve) => (this.welcomed = resolve));
  /** Called when a later welcome brings other proofs (the server restarted): the tabs must reload. */
  onNewProofs: () => void = () => {};
  /** Malformed or unexpected server messages are logged a few a minute per event: a broken server must not flood the worker's log. */
  private readonly logThrottled: (event: string, line: string) => void;

  constructor(private readonly origin: string, token: string, private readonly options: WorkerOptions, private readonly browser: FoundBrowser, private readonly log: (line: string) => void) {
    this.ended.catch(() => {}); // raced by the caller
    this.logThrottled = throttledLog(log);
    // The token in the CONNECT packet only: a refusal then comes back as a message that says why.
    this.socket = io(`${origin}${WORKER_NAMESPACE}`, {
      auth: { token }, transports: ["websocket"], reconnectionDelay: 500, reconnectionDelayMax: 5000, timeout: 10_000,
    });
    this.waitForServer();
    this.socket.on("connect", () => this.connected());
    this.socket.on("connect_error", (err) => this.connectFailed(err));
    this.socket.on("disconnect", (reason) => this.disconnected(reason));
    // Every message from the server is checked: a hostile or broken server gets it dropped and logged.
    this.socket.on("welcome", (raw) => this.checked("welcome", WorkerWelcomeSchema.safeParse(raw), (w) => this.welcome(w.worker, w.proofs)));
    this.socket.on("tabJoined", (raw) => this.checked("tabJoined", TabJoinedSchema.safeParse(raw), (tab) => this.joinedListeners.forEach((l) => l(tab))));
    this.socket.on("recycle", (raw) => this.checked("recycle", RecycleOrderSchema.safeParse(raw), (order) => this.recycleListeners.forEach((l) => l(order))));
    this.socket.on("rendered", (raw) => this.checked("rendered", TabRenderedSchema.safeParse(raw), ({ tab, frames }) => this.renderedListeners.forEach((l) => l(tab, frames))));
    this.socket.on("refused", (raw) =>
      this.checked("refused", ReasonSchema.safeParse(raw), ({ reason }) => this.giveUp(`the server at ${origin} refused this worker: ${reason}`)),
    );
    this.socket.on("stopping", (raw, ack) => {
      if (typeof ack === "function") ack();
      this.checked("stopping", ReasonSchema.safeParse(raw), ({ reason }) => this.logThrottled("stopping", `the server is stopping (${reason}); ${this.waitText()} for it to come back`));
    });
    this.socket.on("runOver", (raw, ack) => {
      if (typeof ack === "function") ack();
      this.checked("runOver", ReasonSchema.safeParse(raw), ({ reason }) => {
        this.over = true;
        this.settle.resolve(reason);
      });
    });
  }

  /** The signals the tab lifecycle listens to. */
  get signals(): TabSignals {
    return {
      joined: (listener) => {
        this.joinedListeners.add(listener);
        return () => this.joinedListeners.delete(listener);
      },
      recycle: (listener) => void this.recycleListeners.add(listener),
      rendered: (listener) => void this.renderedListeners.add(listener),
      retire: (tab) => this.retire(tab),
    };
  }

  /** Asks the server to retire one of this worker's tabs between jobs: true when it did; false when it has no session for it, or no answer came. */
  private async retire(tab: string): Promise<boolean> {
    const at = Math.max(Date.now(), this.nextRetireAt);
    this.nextRetireAt = at + RETIRE_SPACING_MS;
    if (at > Date.now()) await new Promise((resolve) => setTimeout(resolve, at - Date.now()));
    if (!this.socket.connected || this.over) return false; // (socket.io would buffer it until a reconnect)
    try {
      return (await this.socket.timeout(RETIRE_ACK_TIMEOUT_MS).emitWithAck("retire", { tab })) === true;
    } catch {
      this.log(`the server did not answer the retire request for ${tab} within ${RETIRE_ACK_TIMEOUT_MS / 1000} s; closing the tab (the server puts its job back)`);
      return false;
    }
  }

  /** The proof for one of this worker's tabs (its latest, from the server's last welcome). */
  proofOf(name: string): string | undefined {
    const tab = launchedTabOf(name, this.options.name);
    return tab === undefined ? undefined : this.proofs?.[tab];
  }

  close(): void {
    this.over = true;
    clearTimeout(this.unreachable);
    clearTimeout(this.welcomeTimer);
    this.socket.close();
  }

  private checked<T>(event: string, parsed: { success: true; data: T } | { success: false; error: import("zod").ZodError }, use: (data: T) => void): void {
    if (parsed.success) return use(parsed.data);
    this.logThrottled(event, `ignored a malformed "${event}" from the server (${describeRefusal(parsed.error)})`);
  }

  private connected(): void {
    clearTimeout(this.unreachable);
    if (this.tries > 0 || this.proofs) this.log(`connected to the server at ${this.origin}`);
    this.tries = 0;
    this.socket.emit("hello", {
      name: this.options.name, instance: this.instance, tabs: this.options.sessions,
      browser: `${this.browser.source} ${this.browser.path}`.slice(0, 300), gl: this.options.gl, version: WORKER_PROTOCOL_VERSION,
    });
    this.welcomeTimer = setTimeout(
      () => this.giveUp(`the server at ${this.origin} did not answer this worker's hello within ${WELCOME_TIMEOUT_MS / 1000} s (is it a tabfarm server that speaks worker protocol ${WORKER_PROTOCOL_VERSION}?)`),
      WELCOME_TIMEOUT_MS,
    );
  }

  private welcome(worker: string, proofs: string[]): void {
    if (worker !== this.options.name || proofs.length !== this.options.sessions) {
      return this.logThrottled("welcome", `ignored a "welcome" for ${worker} with ${proofs.length} proof(s): this worker is ${this.options.name} with ${this.options.sessions} tab(s)`);
    }
    clearTimeout(this.welcomeTimer);
    const before = this.proofs;
    this.proofs = proofs;
    if (!before) return this.welcomed(proofs);
    // A restarted server has a new proof secret: pages that reconnected by themselves carry stale proofs.
    if (proofs.some((proof, i) => proof !== before[i])) this.onNewProofs();
  }

  private connectFailed(err: Error & { data?: unknown }): void {
    const why = withoutControlCharacters(String(err.message).slice(0, 300));
    this.lastProblem = why;
    if (this.socket.active) {
      // Unreachable (or restarting): socket.io retries with backoff.
      this.tries++;
      this.log(`cannot reach the server at ${this.origin} (${why}); retrying (try ${this.tries}; ${this.waitText()})`);
      return;
    }
    // Refused by the server's access rules: no retry makes the token right.
    if (/access token|failed access attempts/.test(why)) return this.giveUp(`the server at ${this.origin} refused the token (${why.replace(/^tabfarm: /, "").split(";")[0]})`);
    // Full (or another refusal that may pass): try again in a while.
    this.tries++;
    this.log(`the server at ${this.origin} refused the connection (${why}); retrying in 5 s (try ${this.tries})`);
    setTimeout(() => !this.over && this.socket.connect(), 5000).unref();
  }

  private disconnected(reason: string): void {
    clearTimeout(this.welcomeTimer);
    if (this.over) return;
    this.log(`lost the server at ${this.origin} (${reason}); reconnecting (${this.waitText()}); the tabs keep running`);
    this.waitForServer();
    // The server closed this socket itself (a flood, a replaced link): socket.io does not reconnect then.
    if (reason === "io server disconnect") setTimeout(() => !this.over && this.socket.connect(), 1000).unref();
  }

  /** Gives up when the server stays unreachable for --wait seconds. */
  private waitForServer(): void {
    clearTimeout(this.unreachable);
    if (this.options.wait <= 0) return;
    this.unreachable = setTimeout(
      () => this.giveUp(`the server at ${this.origin} has been unreachable for ${this.options.wait} s (--wait)${this.lastProblem ? `; the last try: ${this.lastProblem}` : ""}`),
      this.options.wait * 1000,
    );
  }

  private waitText(): string {
    return this.options.wait > 0 ? `waiting up to ${this.options.wait} s` : "waiting as long as it takes";
  }

  private giveUp(why: string): void {
    this.settle.reject(new WorkerError(why));
    this.close();
  }
}

/**
 * Runs the worker until the server says the run is over (resolves), the worker must give up
 * (WorkerError), the tabs cannot render (TabLaunchError, BrowserLaunchError), or `stop` is aborted
 * (its FarmStopped). The browsers are closed either way.
 */
export async function runWorker(options: WorkerOptions, log: (line: string) => void = (line) => console.log(line), stop?: AbortSignal): Promise<string> {
  const say = (line: string) => log(withoutControlCharacters(`tabfarm worker: ${line}`));
  const stopped = untilAborted(stop);
  const { origin, token } = serverOf(options.connect, options.token);
  if (!WORKER_NAME.test(options.name)) throw new WorkerError(`--name ${JSON.stringify(options.name)}: a worker name is 1-40 letters, digits, _ or -`);
  const browser = findBrowser(process.env, { choice: options.browser, bundled: { log: (l) => say(l) } });
  say(`browser ${browser.path} (${browser.source}: ${browser.reason})`);
  // The probe takes up to 30 s on a browser that hangs: a signal does not wait for it.
  const { gl, why } = await Promise.race([chooseGl(browser.path, options.gl, { extraArgs: options.chromiumArg }), stopped]);
  const autoGl = options.gl === "auto";
  options = { ...options, gl };
  say(`${options.sessions} tab(s) in ${options.browsers} browser(s), GL: ${gl} (${why}); server ${origin} as worker ${options.name}; frames go to the server, nothing is written here`);

  const control = new ControlLink(origin, token, options, browser, say);
  let tabs: TabLifecycle | undefined;
  stop?.addEventListener("abort", () => tabs?.stopReplacing(), { once: true }); // a stop is no crash to the pool
  try {
    // The tabs start once the server has welcomed this worker (their URLs carry its proofs), unless the run is over first.
    const welcomed = await Promise.race([control.firstWelcome.then(() => true), control.ended.then(() => false), stopped]);
    if (welcomed) {
      const lifecycle = (tabs = new TabLifecycle({
        browser, executablePath: browser.path, gl, autoGl, url: `${origin}/?token=${encodeURIComponent(token)}`, owner: options.name,
        proveLaunched: (name) => control.proofOf(name) ?? "", tabs: options.sessions, browsers: options.browsers, log: say,
        verbose: options.verbose, extraArgs: options.chromiumArg, relaunchAfterFrames: options.relaunchAfter ?? DEFAULT_RELAUNCH_AFTER_FRAMES,
      }, control.signals));
      control.onNewProofs = () => lifecycle.pool.recycleAll("reloads with the restarted server's proof");
      const first = await Promise.race([lifecycle.start(stopped, stop), control.ended.then(() => undefined)]);
      if (first) for (const line of TabLifecycle.describeFirstTab(first, gl, autoGl)) say(line);
    }
    const reason = await Promise.race([control.ended, stopped]);
    const pool = tabs?.pool;
    if (pool?.relaunches) say(`browsers relaunched ${pool.relaunches} time(s) (--relaunch-after ${options.relaunchAfter ?? DEFAULT_RELAUNCH_AFTER_FRAMES}); tabs recycled ${pool.recycled} time(s)`);
    say(`the run is over (${reason}); closing the browsers`);
    return reason;
  } finally {
    control.close();
    await tabs?.close();
  }
}

/** Adds `worker` to the command line (harness/cli.ts). */
export function addWorkerCommand(program: Command): void {
  program
    .command("worker")
    .description(
      "run headless tabs on this machine as sessions of a farm server elsewhere (its frames go to the server; nothing is written here). " +
        "Exit 0: the run is over; 2: the server refused the token or this worker, was unreachable for --wait seconds, or the tabs cannot render; 128 + n on signal n",
    )
    .requiredOption("--connect <url>", "the server: http://HOST:PORT (the URL it printed; a ?token= in it is used when --token is absent)")
    .addOption(new Option("--token <token>", "the server's access token").env("TABFARM_TOKEN"))
    .addOption(new Option("--sessions <n>", "headless tabs to run (one session each)").argParser(int("--sessions", 1, MAX_WORKER_TABS)).default(Math.max(1, Math.min(8, os.cpus().length))))
    .addOption(new Option("--browsers <n>", "Chromium processes to spread the tabs over (default: one per core, at most one per tab)").argParser(int("--browsers", 1, 64)))
    .addOption(glOption())
    .option("--browser <auto|system|bundled|path>", "which Chromium to launch (as the farm's --browser; default: $TABFARM_BROWSER, else auto)")
    .option("--chromium-arg <flag>", "an extra Chromium flag (repeatable)", (v: string, all: string[]) => [...all, v], [] as string[])
    .option("--name <name>", "this worker's name on the server (1-40 letters, digits, _ or -; its tabs are NAME.tab-N) (default: host name and process id)")
    .addOption(new Option("--wait <seconds>", "how long the server may be unreachable, at the start or after it went away, before the worker gives up (0: forever)").argParser(int("--wait", 0, 7 * 86_400)).default(120))
    .addOption(relaunchAfterOption())
    .option("--verbose", "print browser console errors", false)
    .action(async (raw) => {
      const options: WorkerOptions = { ...raw, gl: raw.gl as GlBackend, browsers: raw.browsers ?? defaultBrowsers(raw.sessions), name: raw.name ?? defaultWorkerName() };
      const stop = stopOnSignals((line) => console.error(line), undefined, undefined, {
        stopping: "closing the browsers; the server puts their running jobs back",
        atOnce: "the browsers are killed with the worker",
      });
      try {
        await runWorker(options, undefined, stop);
      } catch (err) {
        if (err instanceof FarmStopped) {
          console.error(`tabfarm worker: ${err.message}`);
          process.exitCode = exitCodeFor(err.signal);
          return;
        }
        throw err; // the command line prints it and exits 2
      }
    });
}

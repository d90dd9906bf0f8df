// Headless Chromium tabs as farm sessions: B browser processes, N tabs spread over them.
// A tab that crashes or closes is replaced; a browser that dies is relaunched with its tabs.
// With relaunchAfterFrames, a browser whose tabs together rendered that many frames since its launch is
// relaunched on purpose (memory outside the tabs, e.g. the network service that carries every frame,
// is not given back by replacing tabs; issue 15's soak once measured 5-6 MB per 1,000 frames there):
// its tabs are retired by the server between jobs (the recycle path), the drained browser closes, a
// fresh one starts with the same tabs. One browser at a time, so with several browsers the farm keeps
// working tabs throughout.
import os from "node:os";
import { Option } from "commander";
import { argument } from "./cliArguments.js";
import { chromium, type Browser } from "playwright-core";
import { chromiumArgs, type ConcreteGlBackend } from "./chromiumFlags.js";
import { BrowserTargets } from "./BrowserTargets.js";
import { launchedTabOf, launchedWorkerName } from "../protocol/events.js";

export interface TabPoolOptions {
  executablePath: string;
  gl: ConcreteGlBackend;
  headed?: boolean;
  /** The farm URL with its token. */
  url: string;
  /**
   * Signs a tab's worker name (`Farm.launchedTabProof`): the farm admits a page as `tab-N` only with
   * that proof in its URL, so only these tabs can be replaced by name. Without it tabs are unverified.
   */
  proveLaunched?: (worker: string) => string;
  tabs: number;
  /** A remote worker's name: its tabs are `<owner>.tab-N`; absent: the local farm's `tab-N`. */
  owner?: string;
  browsers?: number;
  /** Replacements allowed over the run before the pool gives up (a crash loop is a bug, not bad luck). */
  maxReplacements?: number;
  log: (line: string) => void;
  /** Forward page console errors to the log. */
  verbose?: boolean;
  /** More Chromium flags, after the farm's own. */
  extraArgs?: string[];
  /**
   * --relaunch-after: relaunch a browser once its tabs rendered this many frames since it was launched
   * (0 or absent: never). Needs `retire` and the frames fed to rendered().
   */
  relaunchAfterFrames?: number;
  /**
   * Asks the server to retire the session of launched tab `worker` between jobs (it is then recycled:
   * recycle(worker, …, false)); false when the server has no session of that name (nothing in flight).
   * A remote worker's answer comes over its control socket (a promise; false when not acknowledged in time).
   */
  retire?: (worker: string) => boolean | Promise<boolean>;
}

/**
 * How long the tabs of a browser due for a relaunch may take to finish their jobs before they are closed anyway
 * (their jobs are put back, an attempt each). Generous: a job may hold up to 100,000 frames, and a hung page is
 * dropped by the server's --grab-timeout long before this; only a handler that never returns is cut here.
 */
export const RELAUNCH_DRAIN_MS = 30 * 60_000;

/**
 * The CLI's default --relaunch-after: frames a browser's tabs render before it is relaunched. From the soak
 * (bench/soak.ts, README's Benchmarks): a relaunch idles one browser's tabs ≈ 1.5 s (drain and restart), so
 * every 10,000 frames costs well under 1 % of its time, and a growth like the 5–6 MB per 1,000 frames once
 * measured in the network service stays under ≈ 60 MB per browser.
 */
export const DEFAULT_RELAUNCH_AFTER_FRAMES = 10_000;
/** Largest --relaunch-after. */
export const MAX_RELAUNCH_AFTER_FRAMES = 100_000_000;

/** --relaunch-after's value: digits only (not "", " ", "1e3", "0x10", which Number() would take), 0 to the maximum. */
export function parseRelaunchAfter(value: string): number {
  const n = /^\d{1,12}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 0 && n <= MAX_RELAUNCH_AFTER_FRAMES)) {
    throw new Error(`--relaunch-after must be a whole number of frames from 0 to ${MAX_RELAUNCH_AFTER_FRAMES} (0: never), not ${JSON.stringify(value.slice(0, 40))}`);
  }
  return n;
}

/** `--relaunch-after` of the farm and of `worker`: one definition, one parser, one default. */
export function relaunchAfterOption(): Option {
  return new Option(
    "--relaunch-after <frames>",
    "relaunch a launched browser (not only its tabs) once its tabs rendered this many frames, between jobs, one browser at a time (0: never)",
  ).argParser(argument(parseRelaunchAfter)).default(DEFAULT_RELAUNCH_AFTER_FRAMES);
}

/** The CLI's default --browsers: one Chromium per core, at most one per tab. */
export function defaultBrowsers(tabs: number): number {
  return Math.max(1, Math.min(tabs, os.availableParallelism()));
}

interface BrowserSlot {
  index: number;
  browser?: Browser;
  targets?: BrowserTargets;
  tabs: Set<number>;
  /** Frames its tabs rendered since this browser was launched (rendered()). */
  frames: number;
  /** Due for a relaunch: its tabs are being retired; none is opened in it until the fresh browser is up. */
  draining: boolean;
  drainTimer?: NodeJS.Timeout;
  /** A planned relaunch under way: from the drain until the fresh browser's tabs said hello (tabJoined). */
  relaunch?: { drainStarted: number; closedAt?: number; awaitingHello: Set<number>; timer?: NodeJS.Timeout };
}

/** How long a relaunched browser's tabs have to say hello before the next browser's relaunch may start anyway. */
const RELAUNCH_HELLO_MS = 60_000;

/** A live tab: its DevTools target and the browser context it owns. */
interface Tab {
  slot: BrowserSlot;
  targetId: string;
  contextId: string;
}

export class TabPool {
  private slots: BrowserSlot[] = [];
  private live = new Map<number, Tab>();
  /** Tabs whose target is being created. */
  private opening = new Set<number>();
  private closing = false;
  /** Tabs replaced after a fault (crash, close, hang, dead browser). */
  replacements = 0;
  /** Tabs replaced on purpose (retired after --recycle-after frames); not counted as faults. */
  recycled = 0;
  /** Browsers relaunched on purpose (--relaunch-after); not counted as faults. */
  relaunches = 0;
  private plannedRecycle = new Set<string>();
  /** Each tab's last fault loss and how many came within 10 s of each other (see lossStreak). */
  private losses = new Map<number, { at: number; streak: number }>();

  constructor(private readonly options: TabPoolOptions) {}

  async start(): Promise<void> {
    const browsers = Math.max(1, Math.min(this.options.browsers ?? 1, this.options.tabs));
    this.slots = Array.from({ length: browsers }, (_, index) => ({ index, tabs: new Set<number>(), frames: 0, draining: false }));
    for (let tab = 0; tab < this.options.tabs; tab++) this.slots[tab % browsers].tabs.add(tab);
    await Promise.all(this.slots.map((slot) => this.launch(slot)));
  }

  private async launch(slot: BrowserSlot): Promise<void> {
    const browser = await chromium.launch({
      executablePath: this.options.executablePath,
      headless: !this.options.headed,
      args: [...chromiumArgs(this.options.gl, { headed: this.options.headed }), ...(this.options.extraArgs ?? [])],
      // The farm decides what a signal does (harness/shutdown.ts): Playwright's own handlers would kill
      // the browsers on SIGINT/SIGTERM/SIGHUP, the pool would take that for a crash and relaunch them.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      timeout: 60_000, // a --browser that is no browser and hangs fails in a minute, not after Playwright's 3 minutes
    });
    if (this.closing) {
      // Closed while this browser was launching: nobody else knows of it.
      await browser.close().catch(() => {});
      return;
    }
    slot.browser = browser;
    slot.frames = 0;
    // While its tabs are being set up, a browser that dies is this launch's failure: the setup throws and
    // launch's caller tries again. Relaunching it from here as well would start a second browser for the slot.
    let settingUp = true;
    browser.on("disconnected", () => {
      if (slot.browser !== browser || settingUp) return; // the old browser of a planned relaunch, or see above
      slot.targets?.closeAll("the browser process died");
      // Died while draining for a relaunch: the crash relaunch below replaces the planned one.
      clearTimeout(slot.drainTimer);
      clearTimeout(slot.relaunch?.timer);
      slot.draining = false;
      slot.relaunch = undefined;
      for (const [tab, t] of this.live) if (t.slot === slot) this.live.delete(tab);
      if (this.closing) return;
      this.options.log(`browser process died; relaunching it with ${slot.tabs.size} tab(s)`);
      void this.replace(() => this.launch(slot));
    });
    try {
      slot.targets = await BrowserTargets.open(browser, {
        crashed: (targetId) => void this.lost(slot, targetId, "crashed"),
        destroyed: (targetId) => void this.lost(slot, targetId, "closed"),
        console: this.options.verbose ? (targetId, text) => this.options.log(`tab ${this.tabOf(targetId) ?? "?"} console: ${text}`) : undefined,
      });
      await Promise.all([...slot.tabs].map((tab) => this.openTab(slot, tab)));
      settingUp = false;
      if (!browser.isConnected()) throw new Error("the browser process died while its tabs were being set up");
    } catch (err) {
      settingUp = false;
      // A browser whose tabs could not be set up is closed here, not left running when replace() launches another;
      // the tabs it did open go with it, so the next browser opens them again.
      if (slot.browser === browser) {
        slot.browser = undefined;
        slot.targets = undefined;
        for (const [tab, t] of this.live) if (t.slot === slot) this.live.delete(tab);
      }
      await browser.close().catch(() => {});
      throw err;
    }
  }

  private async openTab(slot: BrowserSlot, tab: number): Promise<void> {
    const { browser, targets } = slot;
    if (!browser?.isConnected() || !targets || this.closing || slot.draining) return; // a draining browser's tabs open in its successor
    const separator = this.options.url.includes("?") ? "&" : "?";
    // Nobody sees a headless tab: previews would only cost GPU-process time (≈50 ms/frame on SwiftShader).
    const preview = this.options.headed ? "" : "&preview=off";
    const worker = launchedWorkerName(tab, this.options.owner);
    const proof = this.options.proveLaunched?.(worker);
    const proven = proof ? `&workerProof=${encodeURIComponent(proof)}` : "";
    if (this.live.has(tab) || this.opening.has(tab)) return; // already (being) opened: a retry raced a relaunch
    this.opening.add(tab);
    let created: { targetId: string; contextId: string };
    try {
      created = await targets.create(`${this.options.url}${separator}worker=${worker}${proven}${preview}`);
    } finally {
      this.opening.delete(tab);
    }
    const { targetId, contextId } = created;
    if (slot.targets !== targets) return; // its browser was relaunched meanwhile: the fresh one opens the tab
    this.live.set(tab, { slot, targetId, contextId });
    // Opened while its browser became due: it has barely loaded, so it goes at once unless the server has its session.
    if (slot.draining) this.retireOrClose(slot, tab);
  }

  /** A tab crashed or closed: open a replacement (unless the whole browser is going, or it was retired). */
  private async lost(slot: BrowserSlot, targetId: string, why: string): Promise<void> {
    // When the browser process dies, tabs may report "closed" before the browser reports
    // "disconnected": wait a turn so a dead browser is relaunched, not asked for new tabs.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const tab = this.tabOf(targetId);
    const t = tab === undefined ? undefined : this.live.get(tab);
    if (this.closing || tab === undefined || !t || t.slot !== slot || !slot.browser?.isConnected()) return;
    this.live.delete(tab);
    void slot.targets?.dispose(t.contextId).catch(() => {}); // a crashed tab's context is still there
    if (slot.draining) {
      // Retired (or lost) for the relaunch: it reopens in the fresh browser.
      this.plannedRecycle.delete(targetId);
      if (this.slotTabsLive(slot) === 0) void this.relaunch(slot);
      return;
    }
    if (this.plannedRecycle.delete(targetId)) {
      this.recycled++;
      void this.replace(() => this.openTab(slot, tab), false);
      return;
    }
    // A tab that keeps dying right after it opens (a scene that crashes the renderer, memory pressure)
    // is replaced with growing delays, so a crash loop does not spend every replacement in a second.
    const streak = this.lossStreak(tab);
    const delay = streak > 1 ? Math.min(5000, 250 * 2 ** (streak - 2)) : 0;
    this.options.log(`tab ${tab} ${why}; opening a replacement${delay ? ` in ${delay} ms (lost ${streak} times in a row)` : ""}`);
    void this.replace(() => this.openTab(slot, tab), true, delay);
  }

  /** How many times in a row `tab` was lost within 10 s of its previous loss (this loss included). */
  private lossStreak(tab: number): number {
    const now = performance.now();
    const last = this.losses.get(tab);
    const streak = last && now - last.at < 10_000 ? last.streak + 1 : 1;
    this.losses.set(tab, { at: now, streak });
    return streak;
  }

  private tabOf(targetId: string): number | undefined {
    for (const [tab, t] of this.live) if (t.targetId === targetId) return tab;
    return undefined;
  }

  /**
   * Opens a tab again, retrying with backoff: a replacement can itself crash while opening.
   * Each try of a fault replacement counts against maxReplacements, so a crash loop ends.
   */
  private async replace(open: () => Promise<void>, fault = true, delayMs = 0): Promise<void> {
    const max = this.options.maxReplacements ?? Math.max(20, this.options.tabs * 10);
    if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
    for (let attempt = 0; !this.closing; attempt++) {
      if (fault && ++this.replacements > max) {
        this.options.log(`gave up replacing tabs after ${max} replacements`);
        return;
      }
      try {
        return await open();
      } catch (err) {
        if (this.closing) return;
        this.options.log(`could not open a replacement tab (try ${attempt + 1}): ${(err as Error).message}`);
        if (!fault && attempt >= 5) return;
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
  }

  /**
   * Replaces the tab whose session the farm admitted as `worker` (hung, or due for recycling); other
   * names are ignored. The farm admits a page as `tab-N` only with the proof this pool put in its URL.
   */
  recycle(worker: string, why: string, fault = true): void {
    const tab = launchedTabOf(worker, this.options.owner);
    const t = tab === undefined ? undefined : this.live.get(tab);
    if (!t) return;
    if (t.slot.draining) this.options.log(`tab ${tab} ${fault ? `${why}; closing it` : "finished its jobs"} before browser ${t.slot.index}'s relaunch`);
    else this.options.log(`tab ${tab} ${why}; replacing it`);
    if (!fault) this.plannedRecycle.add(t.targetId);
    // Disposing the context fires "closed", which opens the replacement; a hung renderer ignores a polite close.
    void t.slot.targets?.dispose(t.contextId).catch(() => {});
  }

  /** Replaces every open tab (planned, not a fault): they reopen with fresh proofs (proveLaunched), e.g. after the server restarted. */
  recycleAll(why: string): void {
    for (const tab of [...this.live.keys()]) this.recycle(launchedWorkerName(tab, this.options.owner), why, false);
  }

  /**
   * `frames` more frames rendered by launched tab `worker` (a job done): counted for its browser, which is
   * relaunched once the count reaches relaunchAfterFrames. Other names are ignored.
   */
  rendered(worker: string, frames: number): void {
    const tab = launchedTabOf(worker, this.options.owner);
    const slot = tab === undefined ? undefined : this.live.get(tab)?.slot;
    if (!slot || !Number.isFinite(frames) || frames <= 0) return;
    slot.frames += frames;
    this.relaunchDue();
  }

  /** Starts draining the first browser due for a relaunch, unless one is being relaunched already (one at a time). */
  private relaunchDue(): void {
    const after = this.options.relaunchAfterFrames ?? 0;
    if (after <= 0 || !this.options.retire || this.closing || this.slots.some((s) => s.relaunch)) return;
    const slot = this.slots.find((s) => s.frames >= after && s.browser?.isConnected());
    if (!slot) return;
    slot.draining = true;
    slot.relaunch = { drainStarted: performance.now(), awaitingHello: new Set(slot.tabs) };
    this.options.log(`browser ${slot.index}: its tabs rendered ${slot.frames} frames since it was launched; relaunching it once they finish their jobs`);
    const tabs = [...this.live].filter(([, t]) => t.slot === slot).map(([tab]) => tab);
    for (const tab of tabs) this.retireOrClose(slot, tab);
    if (this.slotTabsLive(slot) === 0) return void this.relaunch(slot);
    // A job that never ends (a hung page the server has not dropped yet) must not hold the relaunch for ever.
    slot.drainTimer = setTimeout(() => {
      this.options.log(`browser ${slot.index}: tabs still busy after ${RELAUNCH_DRAIN_MS / 60_000} min; closing them (the server puts their jobs back)`);
      for (const [, t] of this.live) if (t.slot === slot) void slot.targets?.dispose(t.contextId).catch(() => {});
    }, RELAUNCH_DRAIN_MS);
    slot.drainTimer.unref();
  }

  /**
   * Asks the server to retire tab `tab` of draining `slot` between jobs; when it has no session for it (a tab
   * without one holds no job) or cannot say, the tab is closed at once (the server puts back a job it held).
   * A synchronous answer (the local farm's) is acted on at once; an asynchronous one (a worker's) when it
   * comes, if the tab is still the same one in the still-draining browser.
   */
  private retireOrClose(slot: BrowserSlot, tab: number): void {
    const asked = this.live.get(tab);
    const closeUnlessRetired = (retired: boolean) => {
      if (retired || this.live.get(tab) !== asked || !asked || !slot.draining) return;
      void slot.targets?.dispose(asked.contextId).catch(() => {});
    };
    let answer: boolean | Promise<boolean>;
    try {
      answer = this.options.retire?.(launchedWorkerName(tab, this.options.owner)) ?? false;
    } catch {
      answer = false;
    }
    if (typeof answer === "boolean") closeUnlessRetired(answer);
    else answer.then((retired) => closeUnlessRetired(retired === true), () => closeUnlessRetired(false));
  }

  private slotTabsLive(slot: BrowserSlot): number {
    let n = 0;
    for (const t of this.live.values()) if (t.slot === slot) n++;
    return n;
  }

  /** The drained browser closes and a fresh one starts with its tabs; once they said hello, the next browser due, if any. */
  private async relaunch(slot: BrowserSlot): Promise<void> {
    clearTimeout(slot.drainTimer);
    const state = slot.relaunch;
    if (state) state.closedAt = performance.now();
    const old = slot.browser;
    slot.browser = undefined; // its "disconnected" is no crash
    slot.targets?.closeAll("the browser is being relaunched");
    slot.targets = undefined;
    await old?.close().catch(() => {});
    if (this.closing) return;
    slot.draining = false;
    await this.replace(() => this.launch(slot), false); // planned, not a fault: retried a few times
    if (!slot.browser && slot.relaunch === state) {
      // Given up (replace logged why): the other browsers go on, and may still be relaunched.
      slot.relaunch = undefined;
      return this.relaunchDue();
    }
    if (this.closing || !state || slot.relaunch !== state) return; // (its tabs may have said hello already)
    // Done when its tabs are back at work (their hellos), so the next browser never drains before.
    state.timer = setTimeout(() => slot.relaunch === state && this.relaunched(slot, "its tabs did not all say hello within 60 s"), RELAUNCH_HELLO_MS);
    state.timer.unref();
    if (state.awaitingHello.size === 0) this.relaunched(slot);
  }

  /** Launched tab `worker` said hello to the server: a relaunched browser's tabs are back. Other names are ignored. */
  tabJoined(worker: string): void {
    const tab = launchedTabOf(worker, this.options.owner);
    const slot = tab === undefined ? undefined : this.slots.find((s) => s.tabs.has(tab));
    const state = slot?.relaunch;
    // Hellos before the old browser closed are its own tabs' (late, or a reload): not the fresh browser's.
    if (!slot || !state?.closedAt || !state.awaitingHello.delete(tab!)) return;
    if (state.awaitingHello.size === 0 && slot.targets) this.relaunched(slot);
  }

  private relaunched(slot: BrowserSlot, note?: string): void {
    const state = slot.relaunch;
    if (!state || this.closing) return;
    clearTimeout(state.timer);
    slot.relaunch = undefined;
    this.relaunches++;
    const now = performance.now();
    const seconds = (ms: number) => (ms / 1000).toFixed(1);
    this.options.log(
      `browser ${slot.index} relaunched in ${seconds(now - (state.closedAt ?? now))} s (its tabs drained in ${seconds((state.closedAt ?? now) - state.drainStarted)} s; ` +
        `${this.relaunches} relaunch(es) so far)${note ? `; ${note}` : ""}`,
    );
    this.relaunchDue();
  }

  /** Tabs open now. */
  get openTabs(): number {
    return this.live.size;
  }

  /**
   * Runs `fn(arg)` in tab `tab` and returns its (JSON) result, awaiting a promise. For the bench's
   * in-page loop and for tests; the farm itself never talks to its tabs but through the socket.
   */
  evaluate<T, A = undefined>(tab: number, fn: string | ((arg: A) => T | Promise<T>), arg?: A): Promise<Awaited<T>> {
    const t = this.live.get(tab);
    if (!t?.slot.targets) return Promise.reject(new Error(`tab ${tab} is not open`));
    const expression = typeof fn === "string" ? fn : `(${fn.toString()})(${arg === undefined ? "" : JSON.stringify(arg)})`;
    return t.slot.targets.evaluate<Awaited<T>>(t.targetId, expression);
  }

  /** For fault tests: crashes tab `tab`'s renderer. */
  crash(tab: number): void {
    const t = this.live.get(tab);
    if (t) t.slot.targets?.crash(t.targetId);
  }

  browser(index = 0): Browser | undefined {
    return this.slots[index]?.browser;
  }

  /** From now on nothing lost is replaced: the farm is shutting down (call before anything closes a browser). */
  stopReplacing(): void {
    this.closing = true;
  }

  async close(): Promise<void> {
    this.stopReplacing();
    for (const slot of this.slots) {
      clearTimeout(slot.drainTimer);
      clearTimeout(slot.relaunch?.timer);
    }
    await Promise.all(this.slots.map((s) => s.browser?.close().catch(() => {})));
  }
}

// Headless Chromium tabs as farm sessions: B browser processes, N tabs spread over them.
// A tab that crashes or closes is replaced; a browser that dies is relaunched with its tabs.
import os from "node:os";
import { chromium, type Browser } from "playwright-core";
import { chromiumArgs, type GlBackend } from "./chromiumFlags.js";
import { BrowserTargets } from "./BrowserTargets.js";
import { launchedTabOf, launchedWorkerName } from "../protocol/events.js";

export interface TabPoolOptions {
  executablePath: string;
  gl: GlBackend;
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
}

/** The CLI's default --browsers: one Chromium per core, at most one per tab. */
export function defaultBrowsers(tabs: number): number {
  return Math.max(1, Math.min(tabs, os.availableParallelism()));
}

interface BrowserSlot {
  browser?: Browser;
  targets?: BrowserTargets;
  tabs: Set<number>;
}

/** A live tab: its DevTools target and the browser context it owns. */
interface Tab {
  slot: BrowserSlot;
  targetId: string;
  contextId: string;
}

export class TabPool {
  private slots: BrowserSlot[] = [];
  private live = new Map<number, Tab>();
  private closing = false;
  /** Tabs replaced after a fault (crash, close, hang, dead browser). */
  replacements = 0;
  /** Tabs replaced on purpose (retired after --recycle-after frames); not counted as faults. */
  recycled = 0;
  private plannedRecycle = new Set<string>();
  /** Each tab's last fault loss and how many came within 10 s of each other (see lossStreak). */
  private losses = new Map<number, { at: number; streak: number }>();

  constructor(private readonly options: TabPoolOptions) {}

  async start(): Promise<void> {
    const browsers = Math.max(1, Math.min(this.options.browsers ?? 1, this.options.tabs));
    this.slots = Array.from({ length: browsers }, () => ({ tabs: new Set<number>() }));
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
    browser.on("disconnected", () => {
      slot.targets?.closeAll("the browser process died");
      for (const [tab, t] of this.live) if (t.slot === slot) this.live.delete(tab);
      if (this.closing) return;
      this.options.log(`browser process died; relaunching it with ${slot.tabs.size} tab(s)`);
      void this.replace(() => this.launch(slot));
    });
    slot.targets = await BrowserTargets.open(browser, {
      crashed: (targetId) => void this.lost(slot, targetId, "crashed"),
      destroyed: (targetId) => void this.lost(slot, targetId, "closed"),
      console: this.options.verbose ? (targetId, text) => this.options.log(`tab ${this.tabOf(targetId) ?? "?"} console: ${text}`) : undefined,
    });
    await Promise.all([...slot.tabs].map((tab) => this.openTab(slot, tab)));
  }

  private async openTab(slot: BrowserSlot, tab: number): Promise<void> {
    const { browser, targets } = slot;
    if (!browser?.isConnected() || !targets || this.closing) return;
    const separator = this.options.url.includes("?") ? "&" : "?";
    // Nobody sees a headless tab: previews would only cost GPU-process time (≈50 ms/frame on SwiftShader).
    const preview = this.options.headed ? "" : "&preview=off";
    const worker = launchedWorkerName(tab, this.options.owner);
    const proof = this.options.proveLaunched?.(worker);
    const proven = proof ? `&workerProof=${encodeURIComponent(proof)}` : "";
    const { targetId, contextId } = await targets.create(`${this.options.url}${separator}worker=${worker}${proven}${preview}`);
    this.live.set(tab, { slot, targetId, contextId });
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
    this.options.log(`tab ${tab} ${why}; replacing it`);
    if (!fault) this.plannedRecycle.add(t.targetId);
    // Disposing the context fires "closed", which opens the replacement; a hung renderer ignores a polite close.
    void t.slot.targets?.dispose(t.contextId).catch(() => {});
  }

  /** Replaces every open tab (planned, not a fault): they reopen with fresh proofs (proveLaunched), e.g. after the server restarted. */
  recycleAll(why: string): void {
    for (const tab of [...this.live.keys()]) this.recycle(launchedWorkerName(tab, this.options.owner), why, false);
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
    await Promise.all(this.slots.map((s) => s.browser?.close().catch(() => {})));
  }
}

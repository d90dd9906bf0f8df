// Headless Chromium tabs as farm sessions: B browser processes, N tabs spread over them.
// A tab that crashes or closes is replaced; a browser that dies is relaunched with its tabs.
import { chromium, type Browser, type Page } from "playwright-core";
import { chromiumArgs, type GlBackend } from "./chromiumFlags.js";

export interface TabPoolOptions {
  executablePath: string;
  gl: GlBackend;
  headed?: boolean;
  /** The farm URL with its token. */
  url: string;
  tabs: number;
  browsers?: number;
  /** Replacements allowed over the run before the pool gives up (a crash loop is a bug, not bad luck). */
  maxReplacements?: number;
  log: (line: string) => void;
  /** Forward page console errors to the log. */
  verbose?: boolean;
  /** More Chromium flags, after the farm's own. */
  extraArgs?: string[];
}

interface BrowserSlot {
  browser?: Browser;
  tabs: Set<number>;
}

export class TabPool {
  private slots: BrowserSlot[] = [];
  private pages = new Map<number, Page>();
  private closing = false;
  /** Tabs replaced after a fault (crash, close, hang, dead browser). */
  replacements = 0;
  /** Tabs replaced on purpose (retired after --recycle-after frames); not counted as faults. */
  recycled = 0;
  private plannedRecycle = new Set<Page>();

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
    });
    slot.browser = browser;
    browser.on("disconnected", () => {
      if (this.closing) return;
      this.options.log(`browser process died; relaunching it with ${slot.tabs.size} tab(s)`);
      void this.replace(() => this.launch(slot));
    });
    await Promise.all([...slot.tabs].map((tab) => this.openTab(slot, tab)));
  }

  private async openTab(slot: BrowserSlot, tab: number): Promise<void> {
    const browser = slot.browser;
    if (!browser?.isConnected() || this.closing) return;
    const context = await browser.newContext({ viewport: { width: 320, height: 240 } });
    let page: Page;
    try {
      page = await context.newPage();
    } catch (err) {
      await context.close().catch(() => {}); // a renderer that died while opening leaves a half-made context
      throw err;
    }
    this.pages.set(tab, page);
    const lost = async (why: string) => {
      // When the browser process dies, pages report "close" before the browser reports
      // "disconnected": wait a turn so a dead browser is relaunched, not asked for new tabs.
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (this.closing || this.pages.get(tab) !== page || !browser.isConnected()) return;
      this.pages.delete(tab);
      void context.close().catch(() => {});
      if (this.plannedRecycle.delete(page)) {
        this.recycled++;
        void this.replace(() => this.openTab(slot, tab), false);
        return;
      }
      this.options.log(`tab ${tab} ${why}; opening a replacement`);
      void this.replace(() => this.openTab(slot, tab));
    };
    page.on("crash", () => void lost("crashed"));
    page.on("close", () => void lost("closed"));
    if (this.options.verbose) {
      page.on("console", (m) => m.type() === "error" && this.options.log(`tab ${tab} console: ${m.text()}`));
      page.on("pageerror", (e) => this.options.log(`tab ${tab} page error: ${e.message}`));
    }
    const separator = this.options.url.includes("?") ? "&" : "?";
    try {
      // Nobody sees a headless tab: previews would only cost GPU-process time (≈50 ms/frame on SwiftShader).
      const preview = this.options.headed ? "" : "&preview=off";
      await page.goto(`${this.options.url}${separator}worker=tab-${tab}${preview}`, { waitUntil: "load" });
    } catch (err) {
      // Crashed or stuck while loading: forget this page so the caller's retry opens a fresh one.
      if (this.pages.get(tab) === page) this.pages.delete(tab);
      await context.close().catch(() => {});
      throw err;
    }
  }

  /**
   * Opens a tab again, retrying with backoff: a replacement can itself crash while opening.
   * Each try of a fault replacement counts against maxReplacements, so a crash loop ends.
   */
  private async replace(open: () => Promise<void>, fault = true): Promise<void> {
    const max = this.options.maxReplacements ?? Math.max(20, this.options.tabs * 10);
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

  /** Replaces the tab whose page says `?worker=<worker>` (hung, or due for recycling); unknown names are ignored. */
  recycle(worker: string, why: string, fault = true): void {
    const tab = /^tab-(\d+)$/.exec(worker)?.[1];
    const page = tab === undefined ? undefined : this.pages.get(Number(tab));
    if (!page) return;
    this.options.log(`tab ${tab} ${why}; replacing it`);
    if (!fault) this.plannedRecycle.add(page);
    // Closing fires "close", which opens the replacement; a hung renderer may ignore a polite close.
    void page.context().close().catch(() => {});
  }

  /** For fault tests: the live page of tab `i`. */
  page(tab: number): Page | undefined {
    return this.pages.get(tab);
  }

  browser(index = 0): Browser | undefined {
    return this.slots[index]?.browser;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.browser?.close().catch(() => {})));
  }
}

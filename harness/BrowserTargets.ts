// Tabs opened through the browser's own DevTools session, so Playwright never instruments them.
// A Playwright Page enables the Network domain, and Chromium then copies every WebSocket frame (each
// encoded image, base64) into a DevTools event for the driver to parse: measured on the light bench
// scene, that cost ≈ 15 % of the farm's frames/s and ≈ 3.5 ms of server CPU per frame. Playwright still
// launches and watches the browser; it ignores pages in browser contexts it did not create.
import type { Browser, CDPSession } from "playwright-core";

export interface TargetEvents {
  /** The tab's renderer crashed (the target stays until disposed). */
  crashed(targetId: string): void;
  /** The tab is gone (closed, disposed, or its context was). */
  destroyed(targetId: string): void;
  /** With `console`: console errors and uncaught exceptions of a tab. */
  console?(targetId: string, text: string): void;
}

interface Attached {
  sessionId: string;
  pending: Map<number, { resolve: (result: unknown) => void; reject: (err: Error) => void }>;
}

interface RemoteObject { value?: unknown; description?: string }
interface ProtocolMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: { result?: RemoteObject; exceptionDetails?: { text?: string; exception?: RemoteObject } };
  error?: { message: string };
}

export class BrowserTargets {
  private attached = new Map<string, Attached>();
  private bySession = new Map<string, string>();
  private nextId = 1;

  private constructor(private readonly cdp: CDPSession, private readonly events: TargetEvents) {
    cdp.on("Target.targetCrashed", ({ targetId }) => {
      this.fail(targetId, "the tab crashed");
      events.crashed(targetId);
    });
    cdp.on("Target.targetDestroyed", ({ targetId }) => {
      this.fail(targetId, "the tab was closed");
      events.destroyed(targetId);
    });
    cdp.on("Target.detachedFromTarget", ({ sessionId }) => {
      const targetId = sessionId ? this.bySession.get(sessionId) : undefined;
      if (targetId) this.fail(targetId, "detached from the tab");
    });
    cdp.on("Target.receivedMessageFromTarget", ({ sessionId, message }) => this.onMessage(sessionId, message));
  }

  static async open(browser: Browser, events: TargetEvents): Promise<BrowserTargets> {
    const cdp = await browser.newBrowserCDPSession();
    await cdp.send("Target.setDiscoverTargets", { discover: true });
    return new BrowserTargets(cdp, events);
  }

  /** A tab in a browser context of its own (its own renderer process), loading `url`. */
  async create(url: string, size = { width: 320, height: 240 }): Promise<{ targetId: string; contextId: string }> {
    const { browserContextId } = await this.cdp.send("Target.createBrowserContext", {});
    try {
      const { targetId } = await this.cdp.send("Target.createTarget", { url, browserContextId, ...size });
      if (this.events.console) void this.attach(targetId).catch(() => {}); // starts console forwarding
      return { targetId, contextId: browserContextId };
    } catch (err) {
      await this.cdp.send("Target.disposeBrowserContext", { browserContextId }).catch(() => {});
      throw err;
    }
  }

  /** Closes the tab's whole context: a hung renderer ignores a polite close, a disposed context doesn't. */
  async dispose(contextId: string): Promise<void> {
    await this.cdp.send("Target.disposeBrowserContext", { browserContextId: contextId });
  }

  /** Evaluates `expression` in the tab (awaiting a promise) and returns its JSON value. */
  async evaluate<T>(targetId: string, expression: string): Promise<T> {
    const reply = await this.call(targetId, "Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    const result = reply as ProtocolMessage["result"];
    if (result?.exceptionDetails) {
      const d = result.exceptionDetails;
      throw new Error(`in the tab: ${d.exception?.description ?? d.text ?? "exception"}`);
    }
    return result?.result?.value as T;
  }

  /** For fault tests: crashes the tab's renderer. */
  crash(targetId: string): void {
    void this.call(targetId, "Page.crash", {}).catch(() => {}); // never answers: the renderer is gone
  }

  /** Sends one protocol call to the tab over a (non-flat) session of the browser's DevTools session. */
  private async call(targetId: string, method: string, params: Record<string, unknown>): Promise<unknown> {
    const session = await this.attach(targetId);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      session.pending.set(id, { resolve, reject });
      this.cdp.send("Target.sendMessageToTarget", { sessionId: session.sessionId, message: JSON.stringify({ id, method, params }) }).catch((err: Error) => {
        session.pending.delete(id);
        reject(err);
      });
    });
  }

  private attaching = new Map<string, Promise<Attached>>();

  private attach(targetId: string): Promise<Attached> {
    let session = this.attaching.get(targetId);
    if (!session) {
      session = (async () => {
        // flatten:false keeps the tab's messages inside this session's events, away from Playwright's router.
        const { sessionId } = await this.cdp.send("Target.attachToTarget", { targetId, flatten: false });
        const attached: Attached = { sessionId, pending: new Map() };
        this.attached.set(targetId, attached);
        this.bySession.set(sessionId, targetId);
        // Runtime (not Network): console errors and exceptions only, for --verbose.
        if (this.events.console) void this.call(targetId, "Runtime.enable", {}).catch(() => {});
        return attached;
      })();
      this.attaching.set(targetId, session);
      session.catch(() => this.attaching.delete(targetId));
    }
    return session;
  }

  private onMessage(sessionId: string, text: string): void {
    const targetId = this.bySession.get(sessionId);
    const session = targetId ? this.attached.get(targetId) : undefined;
    if (!targetId || !session) return;
    const msg = JSON.parse(text) as ProtocolMessage;
    if (msg.id !== undefined) {
      const p = session.pending.get(msg.id);
      session.pending.delete(msg.id);
      if (msg.error) p?.reject(new Error(msg.error.message));
      else p?.resolve(msg.result);
      return;
    }
    const forward = this.events.console;
    if (!forward) return;
    if (msg.method === "Runtime.consoleAPICalled" && msg.params?.type === "error") {
      const args = (msg.params.args as RemoteObject[] | undefined) ?? [];
      forward(targetId, args.map((a) => (a.value !== undefined ? String(a.value) : a.description ?? "")).join(" "));
    } else if (msg.method === "Runtime.exceptionThrown") {
      const d = msg.params?.exceptionDetails as { text?: string; exception?: RemoteObject } | undefined;
      forward(targetId, `page error: ${d?.exception?.description ?? d?.text ?? "exception"}`);
    }
  }

  /** Rejects what was waiting on a tab that is gone. */
  private fail(targetId: string, why: string): void {
    const session = this.attached.get(targetId);
    this.attached.delete(targetId);
    this.attaching.delete(targetId);
    if (!session) return;
    this.bySession.delete(session.sessionId);
    for (const p of session.pending.values()) p.reject(new Error(why));
    session.pending.clear();
  }

  /** The browser went away: reject everything still waiting. */
  closeAll(why: string): void {
    for (const targetId of [...this.attached.keys()]) this.fail(targetId, why);
  }
}

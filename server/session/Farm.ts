// The socket.io server: serves the built client, admits browser tabs that present the run's token,
// and runs the spawned handler once per session (Vuer's `app.spawn`). Everything here reads input
// from the network, so nothing a peer sends may throw out of a handler: requests are parsed once and
// answered 400/500, socket events are checked field by field.
import http from "node:http";
import { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import type { AddressInfo, Socket } from "node:net";
import { Server, type Namespace, type Socket as IoSocket } from "socket.io";
import { launchedTabOf, parseLaunchedTab, unprovenWorkerOf, UNVERIFIED_PREFIX, type BrowserInfo, type ClientToServerEvents, type HandshakeAuth, type ServerToClientEvents } from "../../protocol/events.js";
import { LIMITS } from "../../protocol/grab.js";
import { messageLimitFor, peerText, replyLimitFor, Session, type SessionSocket } from "./Session.js";
import { ClassTable } from "../capture/ClassTable.js";
import type { ImageSource } from "../capture/checkImage.js";
import { loadClientFiles, type ClientFiles } from "./clientFiles.js";
import { RUN_DEFAULTS } from "../runDefaults.js";
import { WORKER_NAMESPACE } from "../../protocol/worker.js";
import { WorkerLinks, type WorkerNamespace } from "./workerLink.js";
import { AccessControl, pageParser, parseRequestTarget, requestToken, throttledLog, tokenMatches, workerProof } from "./accessControl.js";

/**
 * Largest message a websocket may send before it has shown the token: room for socket.io's CONNECT
 * packet with its auth, nothing like a frame. An authenticated socket gets the frame limit.
 */
export const UNAUTHENTICATED_MESSAGE_BYTES = 16 * 1024;

export interface FarmOptions {
  /** Folder with the built client (index.html). */
  clientDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Access token; a random one when absent. */
  token?: string;
  grabTimeoutMs?: number;
  /** Largest encoded frame accepted (bytes); pages answer larger ones with an error. */
  maxFrameBytes?: number;
  /** The run's class table (label → class id), shared by every session; an empty one when absent. */
  classes?: ClassTable;
  /** Where frames are encoded: "browser" (in the page's worker) or "server" (raw pixels, sharp). */
  encode?: "browser" | "server";
  /** zlib level for PNGs encoded on the server (0..9). */
  pngLevel?: number;
  /** Most sessions connected at once; more connections are refused. */
  maxSessions?: number;
  /** Most remote workers (`farm worker`) connected at once (default 100). */
  maxWorkers?: number;
  /** How long a tab may take to say hello after connecting. */
  helloTimeoutMs?: number;
  /**
   * Failed authentications per address per 10 s (default 100); past it, that address's failures are
   * answered "too many failed access attempts". The right token is never refused by this limit.
   */
  failedAuthPer10s?: number;
  /** Events one socket may send per second (default 50). */
  messagesPerSecond?: number;
  /**
   * How long a connection may take to send a request's headers (default 10 s; checked every second):
   * a peer that trickles them (slowloris) or sends nothing is answered 408 and closed. Node's default,
   * 60 s checked every 30 s, let each such connection hold a file descriptor for 90 s.
   */
  headersTimeoutMs?: number;
  log?: (line: string) => void;
}

/** Answers GET /api/status (token required) with the run's state. */
export type StatusProvider = () => Promise<unknown> | unknown;

export type SessionHandler = (session: Session) => Promise<void> | void;

/** Emits "session" (a Session) when a tab has said hello, before handlers run. */
export class Farm extends EventEmitter {
  readonly token: string;
  /** The run's class table: options.classes, or one this Farm made. */
  readonly classes: ClassTable;
  readonly sessions = new Map<string, Session>();
  private readonly server: http.Server;
  private readonly io: Server<ClientToServerEvents, ServerToClientEvents>;
  private handlers: SessionHandler[] = [];
  private nextSession = 1;
  private readonly log: (line: string) => void;
  private running = new Set<Promise<void>>();
  private readonly connections = new Set<Socket>();
  private readonly access: AccessControl;
  private readonly logThrottled: (topic: string, line: string) => void;
  private status: StatusProvider = () => ({ sessions: this.sessions.size });
  private readonly client: ClientFiles;
  /** Pages served only with the token (the dashboard), by path. */
  private readonly tokenPages = new Map<string, string>();
  private readonly messagesPerSecond: number;
  /** Signs the worker names of launched tabs (see launchedTabProof); never leaves this process but in those proofs. */
  private readonly workerSecret = randomBytes(32);
  /** Remote `farm worker` processes (protocol/worker.ts). */
  readonly workers: WorkerLinks;
  url = "";

  constructor(private readonly options: FarmOptions) {
    super();
    this.token = options.token ?? randomBytes(18).toString("base64url");
    this.classes = options.classes ?? new ClassTable();
    this.log = options.log ?? ((line) => console.log(line));
    this.logThrottled = throttledLog(this.log);
    const maxSessions = options.maxSessions ?? RUN_DEFAULTS.maxSessions;
    const messagesPerSecond = (this.messagesPerSecond = options.messagesPerSecond ?? 50);
    const helloTimeoutMs = options.helloTimeoutMs ?? 10_000;
    this.access = new AccessControl({ failedAuthPer10s: options.failedAuthPer10s ?? 100, messagesPerSecond });
    this.client = loadClientFiles(options.clientDir);
    const headersTimeout = options.headersTimeoutMs ?? 10_000;
    const serverOptions = { headersTimeout, requestTimeout: headersTimeout, connectionsCheckingInterval: Math.min(1000, headersTimeout) };
    this.server = http.createServer(serverOptions, (req, res) => {
      try {
        const target = parseRequestTarget(req.url);
        if (!target) return answer(res, 400, "bad request target");
        // The client's static files are public (they hold no secret); every other route needs the token.
        if (target.pathname.startsWith("/api/")) return void this.api(req, res, target).catch((err) => this.requestFailed(res, err));
        if (this.tokenPages.has(target.pathname)) return this.serveTokenPage(req, res, target);
        if (this.client.serve(req, res, target.pathname)) return;
        answer(res, 404, "not found");
      } catch (err) {
        this.requestFailed(res, err);
      }
    });
    // A request Node cannot parse (bad request line, header too large, bytes that are not HTTP).
    this.server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      if (err.code === "ECONNRESET" || !socket.writable) return void socket.destroy();
      const code = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
      socket.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    this.server.on("connection", (socket) => {
      this.connections.add(socket);
      socket.once("close", () => this.connections.delete(socket));
    });
    // A frame's image and each of its layers travel as one binary message each, so an authenticated
    // socket may send messages of one frame plus framing (Session refuses a grab whose layer would not
    // fit); until then a websocket is held to UNAUTHENTICATED_MESSAGE_BYTES (allowLargeMessages).
    const authenticatedMessageBytes = messageLimitFor(options.maxFrameBytes ?? LIMITS.maxFrameBytes);
    this.io = new Server(this.server, {
      transports: ["websocket"],
      maxHttpBufferSize: UNAUTHENTICATED_MESSAGE_BYTES,
      parser: pageParser(replyLimitFor(options.maxFrameBytes ?? LIMITS.maxFrameBytes)),
      // A websocket that has not authenticated (sent socket.io's CONNECT) within 10 s is closed.
      connectTimeout: 10_000,
      pingTimeout: 20_000,
      // Runs on the handshake request, before any websocket exists: a wrong token there is refused
      // at once. A request without one may still authenticate with `auth: {token}`, in tiny messages.
      allowRequest: (req, callback) => {
        this.checkHandshake(req).then(
          (refusal) => callback(refusal ?? null, refusal === undefined),
          () => callback("bad request", false),
        );
      },
    });
    // A websocket that breaks the protocol or the message limit is cut at once: after refusing a
    // message, ws would go on reading (and dropping) whatever the peer sends until its 30 s close timeout.
    this.io.engine.on("connection", (conn: { transport: unknown; once(event: "close", listener: (reason: string) => void): void }) => {
      conn.once("close", (reason) => {
        if (reason === "transport error") websocketOf(conn.transport)?.terminate();
      });
    });
    this.guard(this.io.of("/"), maxSessions, "sessions", (socket) => allowLargeMessages(socket, authenticatedMessageBytes));
    const workerNamespace = this.io.of(WORKER_NAMESPACE) as unknown as WorkerNamespace;
    this.guard(workerNamespace as unknown as Namespace, options.maxWorkers ?? 100, "workers");
    this.workers = new WorkerLinks(workerNamespace, this, (name) => this.launchedTabProof(name), this.log, this.logThrottled);
    this.io.on("connection", (socket) => {
      const timer = setTimeout(() => {
        this.logThrottled("no-hello", `dropped a connection from ${socket.handshake.address}: no hello within ${helloTimeoutMs} ms`);
        socket.disconnect(true);
      }, helloTimeoutMs).unref();
      socket.once("disconnect", () => clearTimeout(timer));
      socket.once("hello", (info: unknown) => {
        clearTimeout(timer);
        try {
          this.admit(socket, info);
        } catch (err) {
          this.logThrottled("bad-hello", `disconnected ${socket.handshake.address}: its hello could not be handled: ${(err as Error)?.message}`);
          socket.disconnect(true);
        }
      });
    });
  }

  /**
   * The access rules of every namespace (sessions, the dashboard), in one place: the run's token in the
   * socket's auth or its handshake request (constant-time check; failures counted per address), at most
   * `maxSockets` connected (the right token is never refused by a rate limiter, only by this cap), at
   * most messagesPerSecond events a socket, and a socket whose packets the parser refused is cut.
   */
  private guard(namespace: Namespace, maxSockets: number, what: string, admitted?: (socket: IoSocket) => void): void {
    namespace.use(async (socket, next) => {
      const address = socket.handshake.address;
      const refuse = (why: string) => next(new Error(`tabfarm: ${why}`));
      try {
        const auth = socket.handshake.auth as HandshakeAuth | undefined;
        const given = auth?.token ?? requestToken(socket.request.headers, parseRequestTarget(socket.request.url));
        if (!tokenMatches(this.token, given)) {
          return refuse(await this.failedAuthentication(address, `${given ? "wrong" : "missing"} access token; open the URL the server printed`));
        }
        if (namespace.sockets.size >= maxSockets) {
          this.logThrottled("refused", `refused a connection from ${address}: server full`);
          return refuse(`server full (${maxSockets} ${what})`);
        }
        admitted?.(socket);
        next();
      } catch (err) {
        this.logThrottled("refused", `refused a connection from ${address}: ${(err as Error)?.message}`);
        refuse("internal error");
      }
    });
    namespace.on("connection", (socket) => {
      socket.use(async (_packet, next) => {
        if (await this.access.allowMessage(socket.id)) return next();
        this.logThrottled("flood", `disconnected ${socket.handshake.address}: more than ${this.messagesPerSecond} messages a second`);
        socket.disconnect(true);
      });
      // socket.io emits here the packets its decoder refused (see pageParser) and middleware errors, and a
      // peer may send an event named "error": without a listener any of them would be thrown, out of the
      // server. A refused packet (an Error; a peer's event carries JSON) gets the websocket cut at once,
      // like any other protocol error, not left to read whatever the peer sends until ws's close timeout.
      socket.on("error", (err: unknown) => {
        if (!(err instanceof Error)) return;
        this.logThrottled("bad-packet", `disconnected ${socket.handshake.address}: ${err.message}`);
        websocketOf(socket.conn.transport)?.terminate();
      });
    });
  }

  /**
   * A namespace for pages that are not sessions (the dashboard), under the sessions' access rules
   * (guard); at most `maxSockets` connected at once. Its sockets never get jobs.
   */
  pageNamespace<ListenEvents extends object, EmitEvents extends object>(name: string, maxSockets: number): Namespace<ListenEvents, EmitEvents> {
    if (name === "/" || name === WORKER_NAMESPACE) throw new Error(`${name} is not a page namespace`);
    const namespace = this.io.of(name) as unknown as Namespace<ListenEvents, EmitEvents>;
    this.guard(namespace as unknown as Namespace, maxSockets, "pages");
    return namespace;
  }

  /**
   * Serves the built client's `file` at `pathname` to requests with the run's token only (401 without
   * one, 403 for a wrong one, counted like a socket's failures); the file is not served under its own name.
   */
  serveWithToken(pathname: string, file: string): void {
    this.client.withhold(file);
    this.tokenPages.set(pathname, file);
  }

  private serveTokenPage(req: http.IncomingMessage, res: http.ServerResponse, target: URL): void {
    if (req.method !== "GET" && req.method !== "HEAD") return answer(res, 405, "method not allowed");
    const token = requestToken(req.headers, target);
    if (token === undefined) return answer(res, 401, "access token required (?token= or Authorization: Bearer <token>)");
    if (!tokenMatches(this.token, token)) {
      void this.failedAuthentication(req.socket.remoteAddress ?? "unknown", "wrong access token").then(
        (why) => answer(res, 403, why),
        (err) => this.requestFailed(res, err),
      );
      return;
    }
    // The page's URL holds the token: no framing by another site, no referrer, no cache.
    const extra = { "x-frame-options": "DENY", "content-security-policy": "frame-ancestors 'none'", "referrer-policy": "no-referrer", "cache-control": "no-store" };
    if (!this.client.serveFile(req, res, this.tokenPages.get(target.pathname)!, extra)) answer(res, 404, "not built: run npm run build");
  }

  /** A refusal for the handshake request's token (query or Authorization header), or undefined to let it on. */
  private async checkHandshake(req: http.IncomingMessage): Promise<string | undefined> {
    const token = requestToken(req.headers, parseRequestTarget(req.url));
    if (!token || tokenMatches(this.token, token)) return undefined;
    return this.failedAuthentication(req.socket.remoteAddress ?? "unknown", "wrong access token; open the URL the server printed");
  }

  /** Counts a failed authentication, logs it (throttled) and returns the reason to give the peer. */
  private async failedAuthentication(address: string, why: string): Promise<string> {
    const reason = (await this.access.recordFailure(address)) ? "too many failed access attempts; slow down" : why;
    this.logThrottled("refused", `refused a connection from ${address}: ${reason}`);
    return reason;
  }

  /** A route threw: answer 500 if nothing was sent yet, else cut the response; the server goes on. */
  private requestFailed(res: http.ServerResponse, err: unknown): void {
    this.logThrottled("request-failed", `a request failed: ${(err as Error)?.message ?? err}`);
    if (res.headersSent) res.destroy();
    else answer(res, 500, "internal error");
  }

  /** What GET /api/status answers (with the token). */
  setStatus(provider: StatusProvider): void {
    this.status = provider;
  }

  private async api(req: http.IncomingMessage, res: http.ServerResponse, target: URL): Promise<void> {
    const send = (code: number, body: unknown) => {
      const json = JSON.stringify(body); // before the head: a body that cannot be serialised is a 500
      res.writeHead(code, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(json);
    };
    const token = requestToken(req.headers, target);
    if (token === undefined) return send(401, { error: "access token required (Authorization: Bearer <token> or ?token=)" });
    if (!tokenMatches(this.token, token)) return send(403, { error: "wrong access token" });
    const route = target.pathname;
    if (req.method !== "GET" || route !== "/api/status") return send(404, { error: `no route ${String(req.method).slice(0, 20)} ${route.slice(0, 200)}` });
    try {
      send(200, await this.status());
    } catch (err) {
      send(500, { error: (err as Error).message });
    }
  }

  /** Runs `handler` once for every session, those connected now and those to come. */
  spawn(handler: SessionHandler): void {
    this.handlers.push(handler);
    for (const session of this.sessions.values()) this.runHandler(handler, session);
  }

  async listen(): Promise<string> {
    const { host = RUN_DEFAULTS.host, port = 0 } = this.options;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const address = this.server.address() as AddressInfo;
    const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.url = `http://${shownHost === "0.0.0.0" || shownHost === "[::]" ? "127.0.0.1" : shownHost}:${address.port}/?token=${encodeURIComponent(this.token)}`;
    return this.url;
  }

  /**
   * The proof a tab the harness launches carries in its URL (`workerProof=`), so this farm admits it
   * under `worker` (`tab-N`): only such tabs are replaced as hung, quarantined or recycled by name. A remote
   * worker's tabs get theirs over its control socket, signed with the worker process's instance (WorkerLinks.proofSubject).
   */
  launchedTabProof(worker: string): string {
    return workerProof(this.workerSecret, worker);
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /**
   * Tells remote workers the run is over (`runOver`: every job done or failed; they exit) or that the
   * server is stopping (they wait for it to come back), says `bye` (with `reason`) to sessions, waits
   * for running handlers to return, then closes every socket and the server.
   */
  async close(reason = "run finished", { runOver = false }: { runOver?: boolean } = {}): Promise<void> {
    await this.workers.end(reason, runOver);
    for (const session of this.sessions.values()) session.bye(reason);
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => (waited = setTimeout(r, 2000)))]);
    clearTimeout(waited); // else it holds the process up to 2 s after the run
    this.io.disconnectSockets(true);
    // io.close waits for every connection to end; a peer that never answers the websocket close
    // would hold it for 30 s, so whatever is still open after a second is destroyed.
    const closed = new Promise<void>((resolve) => this.io.close(() => resolve()));
    const timer = setTimeout(() => {
      for (const socket of this.connections) socket.destroy();
    }, 1000);
    await closed;
    clearTimeout(timer);
  }

  private admit(socket: SessionSocket, hello: unknown): void {
    const address = socket.handshake.address;
    if (!hello || typeof hello !== "object" || Array.isArray(hello)) {
      this.logThrottled("bad-hello", `disconnected ${address}: hello is not an object`);
      return void socket.disconnect(true);
    }
    const info = hello as Record<string, unknown>;
    const dpr = info.devicePixelRatio;
    const safeInfo: BrowserInfo = {
      renderer: peerText(info.renderer, 300),
      vendor: peerText(info.vendor, 300),
      webgl: info.webgl === true,
      userAgent: peerText(info.userAgent, 300),
      devicePixelRatio: typeof dpr === "number" && dpr > 0 && dpr <= 16 ? dpr : 1,
      worker: this.verifiedWorker(peerText(info.worker, 100), (socket.handshake.auth as HandshakeAuth | undefined)?.workerProof, address),
    };
    const session = new Session(
      `s${this.nextSession++}`, socket, safeInfo, this.options.grabTimeoutMs ?? RUN_DEFAULTS.grabTimeoutMs, this.options.maxFrameBytes ?? LIMITS.maxFrameBytes,
      this.options.encode === "server" ? "raw" : "browser", this.options.pngLevel, this.classes,
      imageSourceOf(safeInfo.worker, socket.request.socket),
    );
    this.sessions.set(session.id, session);
    this.log(`session ${session.id} joined${safeInfo.worker ? ` (${safeInfo.worker})` : ""}: ${this.sessions.size} live`);
    session.once("close", (reason: string) => {
      this.sessions.delete(session.id);
      this.log(`session ${session.id} left (${reason}): ${this.sessions.size} live`);
    });
    this.emit("session", session);
    // Whether it gets work is Session.getsWork's rule (runHandler applies it); here only why not is said.
    const staleOf = unprovenWorkerOf(safeInfo.worker);
    if (!safeInfo.webgl) this.log(`session ${session.id} has no WebGL (${safeInfo.userAgent}); it will not be given work`);
    else if (staleOf !== undefined) {
      // Most likely a worker's tab from before this server (re)started, back before its worker: the worker
      // reloads it with a current proof. Work given to it now would be cut by that reload, an attempt each.
      this.logThrottled("unproven-worker-tab", `session ${session.id} (${safeInfo.worker}) gets no work: it claims a tab of worker ${staleOf} without that worker's current proof`);
    }
    for (const handler of this.handlers) this.runHandler(handler, session);
  }

  /**
   * The worker name to admit: a launched tab's name (`tab-N`, `<worker>.tab-N`) only with its proof, so no other page
   * can get that tab recycled or killed as hung; without it, `unverified:tab-N` (opened by hand).
   */
  private verifiedWorker(claimed: string, proof: unknown, address: string): string {
    const launched = parseLaunchedTab(claimed);
    if (launched === undefined) return claimed;
    // A remote worker's tab: its proof holds only for the worker process that owns the name now (WorkerLinks.proofSubject).
    const subject = launched.worker === undefined ? claimed : this.workers.proofSubject(claimed);
    if (subject !== undefined && tokenMatches(workerProof(this.workerSecret, subject), proof)) return claimed;
    this.logThrottled("unverified", `a page from ${address} claims to be launched tab ${claimed} without its worker proof; admitted as opened by hand`);
    return `${UNVERIFIED_PREFIX}${claimed}`;
  }

  private runHandler(handler: SessionHandler, session: Session): void {
    if (!session.getsWork) return;
    const run = (async () => {
      try {
        await handler(session);
      } catch (err) {
        if (!session.closed) this.log(`session ${session.id}: handler failed: ${(err as Error)?.stack ?? err}`);
      }
    })();
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }
}

/**
 * Who sends a new session's frames, for how deep they are checked (server/capture/checkImage.ts): "launched" for
 * a tab of this farm's own harness — admitted as `tab-N`, a name verifiedWorker grants only with the proof the
 * harness put in the tab's URL, over a connection from this machine (both ends on one address: loopback, or the
 * --host the harness's tabs connect to), so a proof seen in a headed tab's address bar is worth nothing from
 * another machine — and "any" for every other page, remote workers' tabs included (their frames come from another machine).
 */
export function imageSourceOf(admittedWorker: string, connection: { remoteAddress?: string; localAddress?: string }): ImageSource {
  const fromThisMachine = connection.remoteAddress !== undefined && connection.remoteAddress === connection.localAddress;
  return launchedTabOf(admittedWorker) !== undefined && fromThisMachine ? "launched" : "any";
}

function answer(res: http.ServerResponse, code: number, body: string): void {
  res.writeHead(code, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** The `ws` WebSocket under an engine.io websocket transport (undefined for any other transport). */
function websocketOf(transport: unknown): { terminate(): void; _receiver?: { _maxPayload?: unknown } } | undefined {
  const ws = (transport as { socket?: { terminate?: unknown } } | undefined)?.socket;
  return typeof ws?.terminate === "function" ? (ws as ReturnType<typeof websocketOf>) : undefined;
}

/**
 * Lifts an authenticated socket's message limit to `bytes`. socket.io has one limit for every
 * websocket, applied from before a socket shows its token, and ws has no public setter for one
 * socket, so this sets ws's receiver limit (the same field ws's own maxPayload option sets).
 * tests/integration/access.test.ts fails if a ws upgrade moves it.
 */
function allowLargeMessages(socket: SessionSocket, bytes: number): void {
  const receiver = websocketOf(socket.conn.transport)?._receiver;
  if (typeof receiver?._maxPayload !== "number") throw new Error("cannot lift this websocket's message limit (ws internals changed?)");
  receiver._maxPayload = bytes;
}

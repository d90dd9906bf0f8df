// The socket.io server: serves the built client, admits browser tabs that present the run's token,
// and runs the spawned handler once per session (Vuer's `app.spawn`).
import http from "node:http";
import { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import type { AddressInfo, Socket } from "node:net";
import { Server } from "socket.io";
import type { BrowserInfo, ClientToServerEvents, ServerToClientEvents } from "../../protocol/events.js";
import { LIMITS } from "../../protocol/grab.js";
import { Session, type SessionSocket } from "./Session.js";
import { loadClientFiles } from "./clientFiles.js";
import { AccessControl, requestToken, throttledLog, tokenMatches } from "./accessControl.js";

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
  /** Where frames are encoded: "browser" (in the page's worker) or "server" (raw pixels, sharp). */
  encode?: "browser" | "server";
  /** zlib level for PNGs encoded on the server (0..9). */
  pngLevel?: number;
  /** Most sessions connected at once; more connections are refused. */
  maxSessions?: number;
  /** How long a tab may take to say hello after connecting. */
  helloTimeoutMs?: number;
  /** Connection attempts per address per 10 s (default 100). */
  connectionsPer10s?: number;
  /** Events one socket may send per second (default 50). */
  messagesPerSecond?: number;
  log?: (line: string) => void;
}

/** Answers GET /api/status (token required) with the run's state. */
export type StatusProvider = () => Promise<unknown> | unknown;

export type SessionHandler = (session: Session) => Promise<void> | void;

/** Emits "session" (a Session) when a tab has said hello, before handlers run. */
export class Farm extends EventEmitter {
  readonly token: string;
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
  url = "";

  constructor(private readonly options: FarmOptions) {
    super();
    this.token = options.token ?? randomBytes(18).toString("base64url");
    this.log = options.log ?? ((line) => console.log(line));
    this.logThrottled = throttledLog(this.log);
    this.access = new AccessControl({
      connectionsPer10s: options.connectionsPer10s ?? 100,
      messagesPerSecond: options.messagesPerSecond ?? 50,
    });
    const serveClient = loadClientFiles(options.clientDir);
    this.server = http.createServer((req, res) => {
      // The client's static files are public (they hold no secret); every other route needs the token.
      if (req.url?.startsWith("/api/")) return void this.api(req, res);
      if (serveClient(req, res)) return;
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    });
    this.server.on("connection", (socket) => {
      this.connections.add(socket);
      socket.once("close", () => this.connections.delete(socket));
    });
    this.io = new Server(this.server, {
      transports: ["websocket"],
      // Frames travel as one binary message; socket.io's 1 MB default would drop large PNGs.
      maxHttpBufferSize: (options.maxFrameBytes ?? LIMITS.maxFrameBytes) + 1024 * 1024,
      pingTimeout: 20_000,
    });
    this.io.use(async (socket, next) => {
      const address = socket.handshake.address;
      const refuse = (why: string) => {
        this.logThrottled("refused", `refused a connection from ${address}: ${why}`);
        next(new Error(`tabfarm: ${why}`));
      };
      if (!(await this.access.allowConnection(address))) return refuse("too many connection attempts; slow down");
      const token = (socket.handshake.auth as { token?: unknown })?.token;
      if (!tokenMatches(this.token, token)) return refuse(`${token ? "wrong" : "missing"} access token; open the URL the server printed`);
      if (this.io.of("/").sockets.size >= (options.maxSessions ?? 256)) return refuse(`server full (${options.maxSessions ?? 256} sessions)`);
      next();
    });
    this.io.on("connection", (socket) => {
      socket.use(async (_packet, next) => {
        if (await this.access.allowMessage(socket.id)) return next();
        this.logThrottled("flood", `disconnected ${socket.handshake.address}: more than ${options.messagesPerSecond ?? 50} messages a second`);
        socket.disconnect(true);
      });
      const timer = setTimeout(() => {
        this.logThrottled("no-hello", `dropped a connection from ${socket.handshake.address}: no hello within ${options.helloTimeoutMs ?? 10_000} ms`);
        socket.disconnect(true);
      }, options.helloTimeoutMs ?? 10_000).unref();
      socket.once("disconnect", () => clearTimeout(timer));
      socket.once("hello", (info: BrowserInfo) => {
        clearTimeout(timer);
        this.admit(socket, info);
      });
    });
  }

  /** What GET /api/status answers (with the token). */
  setStatus(provider: StatusProvider): void {
    this.status = provider;
  }

  private async api(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(body));
    };
    const token = requestToken(req.headers, req.url);
    if (token === undefined) return send(401, { error: "access token required (Authorization: Bearer <token> or ?token=)" });
    if (!tokenMatches(this.token, token)) return send(403, { error: "wrong access token" });
    const route = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method !== "GET" || route !== "/api/status") return send(404, { error: `no route ${req.method} ${route}` });
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
    const { host = "127.0.0.1", port = 0 } = this.options;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const address = this.server.address() as AddressInfo;
    const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.url = `http://${shownHost === "0.0.0.0" || shownHost === "[::]" ? "127.0.0.1" : shownHost}:${address.port}/?token=${this.token}`;
    return this.url;
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Waits for running handlers to return (after `bye`), then closes every socket and the server. */
  async close(): Promise<void> {
    for (const session of this.sessions.values()) session.bye("run finished");
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => setTimeout(r, 2000))]);
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

  private admit(socket: SessionSocket, info: BrowserInfo): void {
    const safeInfo: BrowserInfo = {
      renderer: String(info?.renderer ?? "").slice(0, 300),
      vendor: String(info?.vendor ?? "").slice(0, 300),
      webgl: Boolean(info?.webgl),
      userAgent: String(info?.userAgent ?? "").slice(0, 300),
      devicePixelRatio: Number(info?.devicePixelRatio) || 1,
      worker: String(info?.worker ?? "").slice(0, 100),
    };
    const session = new Session(
      `s${this.nextSession++}`, socket, safeInfo, this.options.grabTimeoutMs ?? 30_000, this.options.maxFrameBytes ?? LIMITS.maxFrameBytes,
      this.options.encode === "server" ? "raw" : "browser", this.options.pngLevel,
    );
    this.sessions.set(session.id, session);
    this.log(`session ${session.id} joined${safeInfo.worker ? ` (${safeInfo.worker})` : ""}: ${this.sessions.size} live`);
    session.once("close", (reason: string) => {
      this.sessions.delete(session.id);
      this.log(`session ${session.id} left (${reason}): ${this.sessions.size} live`);
    });
    this.emit("session", session);
    if (!safeInfo.webgl) {
      this.log(`session ${session.id} has no WebGL (${safeInfo.userAgent}); it will not be given work`);
      return;
    }
    for (const handler of this.handlers) this.runHandler(handler, session);
  }

  private runHandler(handler: SessionHandler, session: Session): void {
    if (!session.info.webgl) return;
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

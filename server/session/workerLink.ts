// The server's end of the worker-control namespace (protocol/worker.ts): remote `farm worker`
// processes say hello, get the proofs for their tabs' names, and are told when one of their tabs must
// be replaced, how many frames each finished (for --relaunch-after), and when the run is over; they may
// ask for one of their own tabs to be retired between jobs. The Farm guards the namespace (token, cap, message rate).
import type { EventEmitter } from "node:events";
import type { Namespace, Socket } from "socket.io";
import { launchedWorkerName, parseLaunchedTab } from "../../protocol/events.js";
import {
  describeRefusal, RetireRequestSchema, WORKER_PROTOCOL_VERSION, WorkerHelloSchema,
  type RecycleOrder, type ServerToWorkerEvents, type WorkerToServerEvents,
} from "../../protocol/worker.js";
import { LIMITS } from "../../protocol/grab.js";
import type { RunEvents } from "../events/RunEvents.js";
import type { Session } from "./Session.js";

export type WorkerNamespace = Namespace<WorkerToServerEvents, ServerToWorkerEvents>;
type WorkerSocket = Socket<WorkerToServerEvents, ServerToWorkerEvents>;

/** How long a worker may take to say hello after connecting, and to acknowledge the run's end. */
const HELLO_TIMEOUT_MS = 10_000;
const END_ACK_TIMEOUT_MS = 1000;
/** Worker names whose owner is remembered after it left (WorkerLinks.owners); the oldest gone ones are forgotten first. */
export const MAX_REMEMBERED_OWNERS = 1000;

/**
 * When the harness that launched `session`'s tab should replace it, and why: it hung, it was
 * quarantined (both faults), or it was retired after its share of frames (planned). The one mapping
 * from a session's events to a recycle, for the local farm's tabs and remote workers' alike.
 */
export function onRecycleDue(session: Session, recycle: (order: RecycleOrder) => void): void {
  const tab = session.info.worker;
  session.once("hung", () => recycle({ tab, reason: "is hung", fault: true }));
  session.once("retired", () => recycle({ tab, reason: `rendered ${session.framesDelivered} frames`, fault: false }));
  session.once("quarantined", (why: string) => recycle({ tab, reason: `is quarantined (it ${why})`, fault: true }));
}

/**
 * Frames rendered by sessions, one call per job done, with the session's admitted name (a launched tab's
 * `tab-N` or `<worker>.tab-N`, else whatever a page called itself): what --relaunch-after counts, for the
 * local farm's browsers (farmTabSignals) and remote workers' (WorkerLinks.forwardRendered) alike.
 */
export function onSessionRendered(events: RunEvents, sessions: ReadonlyMap<string, Session>, listener: (session: Session, frames: number) => void): void {
  events.subscribe((event) => {
    if (event.type !== "job.done") return;
    const session = sessions.get(event.session);
    if (session) listener(session, event.frames);
  });
}

/** The Farm as WorkerLinks sees it: it emits "session" (a Session) when a tab said hello, and holds the sessions by id. */
export interface SessionSource extends EventEmitter {
  readonly sessions: ReadonlyMap<string, Session>;
}

interface Link {
  socket: WorkerSocket;
  instance: string;
  address: string;
}

export class WorkerLinks {
  private readonly links = new Map<string, Link>();
  /**
   * Name → the instance of the worker process last welcomed under it, kept after it leaves (its tabs stay
   * admitted by name through a reconnect of its control socket). A remote tab's proof signs its name with
   * this instance (proofSubject): proofs a token holder got by saying hello under a name earlier, before
   * the real worker took it, admit nothing once it has. Local tabs' proofs are unchanged.
   */
  private readonly owners = new Map<string, string>();
  /**
   * Recycle orders for a worker whose control socket is down (a network blip), by tab: sent after its next
   * welcome, else the tab would sit unused for the rest of the run. At most one per tab, for remembered owners.
   */
  private readonly pendingRecycles = new Map<string, { instance: string; orders: Map<string, RecycleOrder> }>();

  /** The worker process (instance) that owned a remote tab's name when its session joined: only that process may hear of it or retire it. */
  private readonly sessionOwners = new WeakMap<Session, string>();

  constructor(
    private readonly namespace: WorkerNamespace,
    /** The Farm. */
    private readonly farm: SessionSource,
    /** Signs a proof subject (Farm.launchedTabProof). */
    private readonly proofOf: (subject: string) => string,
    private readonly log: (line: string) => void,
    private readonly logThrottled: (topic: string, line: string) => void,
  ) {
    namespace.on("connection", (socket) => this.connected(socket));
    farm.on("session", (session: Session) => this.sessionJoined(session));
  }

  /** Workers connected now. */
  get size(): number {
    return this.links.size;
  }

  private connected(socket: WorkerSocket): void {
    const address = socket.handshake.address;
    const timer = setTimeout(() => {
      this.logThrottled("worker-refused", `dropped a worker connection from ${address}: no hello within ${HELLO_TIMEOUT_MS} ms`);
      socket.disconnect(true);
    }, HELLO_TIMEOUT_MS).unref();
    socket.once("disconnect", () => clearTimeout(timer));
    socket.once("hello", (raw: unknown) => {
      clearTimeout(timer);
      const refuse = (why: string) => {
        this.logThrottled("worker-refused", `refused a worker from ${address}: ${why}`);
        socket.emit("refused", { reason: why });
        socket.disconnect(true);
      };
      const parsed = WorkerHelloSchema.safeParse(raw);
      if (!parsed.success) return refuse(`bad hello (${describeRefusal(parsed.error)})`);
      const hello = parsed.data;
      if (hello.version !== WORKER_PROTOCOL_VERSION) return refuse(`it speaks worker protocol ${hello.version}, this server ${WORKER_PROTOCOL_VERSION}`);
      const old = this.links.get(hello.name);
      if (old && old.instance !== hello.instance) return refuse(`another worker is connected as ${hello.name} (from ${old.address}); give each worker its own --name`);
      this.links.set(hello.name, { socket, instance: hello.instance, address });
      this.own(hello.name, hello.instance);
      // The same process again (its old socket not yet timed out): the new socket has replaced it.
      if (old) old.socket.disconnect(true);
      this.log(`worker ${hello.name} from ${address}: ${hello.tabs} tab(s), ${hello.browser}, GL ${hello.gl}`);
      socket.once("disconnect", (reason) => {
        if (this.links.get(hello.name)?.socket !== socket) return; // replaced by its reconnect
        this.links.delete(hello.name);
        this.log(`worker ${hello.name} from ${address} left (${reason})`);
      });
      const proofs = Array.from({ length: hello.tabs }, (_, tab) => this.proofOf(this.proofSubject(launchedWorkerName(tab, hello.name))!));
      socket.on("retire", (...args: unknown[]) => this.retire(hello.name, hello.instance, args));
      socket.emit("welcome", { worker: hello.name, proofs });
      const pending = this.pendingRecycles.get(hello.name);
      this.pendingRecycles.delete(hello.name);
      // Only to the process whose tabs they are: another one under that name has other tabs.
      if (pending?.instance === hello.instance) for (const order of pending.orders.values()) socket.emit("recycle", order);
    });
  }

  /**
   * What the proof of remote tab `tab` (`<worker>.tab-N`) signs: its name bound to the worker process that
   * owns the name (`<instance>/<name>`; an instance has no `/`, a local `tab-N` none either, so no two
   * subjects are alike); undefined when no worker has owned it.
   */
  proofSubject(tab: string): string | undefined {
    const worker = parseLaunchedTab(tab)?.worker;
    const owner = worker === undefined ? undefined : this.owners.get(worker);
    return owner === undefined ? undefined : `${owner}/${tab}`;
  }

  /** Records `instance` as the owner of `name`; forgets the oldest owners no longer connected past MAX_REMEMBERED_OWNERS. */
  private own(name: string, instance: string): void {
    this.owners.delete(name);
    this.owners.set(name, instance);
    for (const old of this.owners.keys()) {
      if (this.owners.size <= MAX_REMEMBERED_OWNERS) break;
      if (!this.links.has(old)) {
        this.owners.delete(old);
        this.pendingRecycles.delete(old);
      }
    }
  }

  /** A session of a worker's tab: the worker hears that it joined, and when it is to be replaced. */
  private sessionJoined(session: Session): void {
    const worker = parseLaunchedTab(session.info.worker)?.worker;
    if (worker === undefined) return;
    this.links.get(worker)?.socket.emit("tabJoined", { tab: session.info.worker, webgl: session.info.webgl, renderer: session.info.renderer });
    // Looked up when it happens: the worker may have reconnected (a new socket) since, or be away for now.
    const owner = this.owners.get(worker);
    if (owner !== undefined) this.sessionOwners.set(session, owner);
    onRecycleDue(session, (order) => {
      if (owner === undefined || this.owners.get(worker) !== owner) return; // another process has the name now: not its tab
      const link = this.links.get(worker);
      if (link) return void link.socket.emit("recycle", order);
      const pending = this.pendingRecycles.get(worker) ?? { instance: owner, orders: new Map<string, RecycleOrder>() };
      pending.orders.set(order.tab, order);
      this.pendingRecycles.set(worker, pending);
    });
  }

  /**
   * A worker's `retire` request (its args as socket.io gave them: the request, then an ack function if it
   * asked for one): the session of one of ITS tabs, admitted while it owned the name, finishes its jobs and
   * takes no more (Session.retire), then goes through onRecycleDue's "recycle" order. Anything else (a
   * malformed request, another worker's or a local tab, a tab with no session or one without WebGL, which
   * never gets a job) is answered false; a
   * request that is not this worker's is logged (throttled). Never throws, with or without an ack.
   */
  private retire(worker: string, instance: string, args: unknown[]): void {
    const ack = typeof args.at(-1) === "function" ? (args.pop() as (retired: boolean) => void) : undefined;
    const answer = (retired: boolean) => {
      try {
        ack?.(retired);
      } catch {
        // the socket is gone: nothing to tell
      }
    };
    const parsed = args.length === 1 ? RetireRequestSchema.safeParse(args[0]) : undefined;
    if (!parsed?.success) {
      const why = parsed ? describeRefusal(parsed.error) : `${args.length} arguments, not 1`;
      this.logThrottled("worker-retire", `ignored a malformed "retire" from worker ${worker} (${why})`);
      return answer(false);
    }
    const { tab } = parsed.data;
    if (parseLaunchedTab(tab)?.worker !== worker) {
      this.logThrottled("worker-retire", `refused worker ${worker}'s "retire" of ${tab}: not one of its tabs`);
      return answer(false);
    }
    if (this.owners.get(worker) !== instance) return answer(false); // (its link was replaced by another process: cannot happen while connected)
    const session = [...this.farm.sessions.values()].find((s) => s.info.worker === tab && !s.closed && this.sessionOwners.get(s) === instance);
    answer(session?.retire() ?? false);
  }

  /**
   * Tells each worker the frames its tabs rendered, one `rendered` per job done (onSessionRendered), for
   * its --relaunch-after. Only while it is connected: a count missed during a network blip only delays a relaunch.
   */
  forwardRendered(events: RunEvents): void {
    onSessionRendered(events, this.farm.sessions, (session, frames) => {
      const tab = session.info.worker;
      const worker = parseLaunchedTab(tab)?.worker;
      const owner = worker === undefined ? undefined : this.owners.get(worker);
      if (owner === undefined || this.sessionOwners.get(session) !== owner || frames < 1) return; // not (or no longer) a connected worker's tab
      // (A handler's job may record more frames than a declared one may hold: the count saturates there.)
      this.links.get(worker!)?.socket.emit("rendered", { tab, frames: Math.min(frames, LIMITS.maxFramesPerJob) });
    });
  }

  /**
   * Tells every worker the server is closing: `runOver` (every job done or failed; they exit) or
   * `stopping` (they wait for the server to come back). Waits up to a second for their acknowledgements.
   */
  async end(reason: string, runOver: boolean): Promise<void> {
    const sent = [...this.links.values()].map(({ socket }) =>
      socket.timeout(END_ACK_TIMEOUT_MS).emitWithAck(runOver ? "runOver" : "stopping", { reason }).catch(() => {}),
    );
    await Promise.all(sent);
  }
}

// The worker-control socket.io namespace: a `farm worker` process on another machine runs headless
// tabs as sessions of a farm server. The tabs themselves connect as any page does (the sessions'
// namespace); this channel carries only what the worker needs to run them: the proofs that let the
// server admit its tabs under their launched names, which tab to replace and when, and the run's end.
//
//   worker → server  hello      {name, instance, tabs, browser, gl, version}   once per connection
//   server → worker  welcome    {worker, proofs}      proofs[i] is the proof of tab `<worker>.tab-i`
//   server → worker  tabJoined  {tab, webgl, renderer}  one of its tabs said hello (for its WebGL verdict)
//   server → worker  recycle    {tab, reason, fault}  replace this tab (fault: hung/quarantined; else planned)
//   server → worker  rendered   {tab, frames}         one of its tabs finished a job of `frames` frames (--relaunch-after counts them)
//   worker → server  retire     {tab} + ack(retired)  retire that tab's session between jobs (then `recycle` it, fault false);
//                                                     false: no session of that tab, not this worker's tab, or a malformed request
//   server → worker  refused    {reason}              the hello is refused; the server disconnects
//   server → worker  stopping   {reason}              the server closes before the run is over (it may come back)
//   server → worker  runOver    {reason}              every job is done or failed: the worker exits 0
//
// Both ends parse every message with these schemas: a hostile peer gets its message dropped (and
// logged), never an exception. Texts are cut and stripped of control characters.
import { z } from "zod";
import { LIMITS } from "./grab.js";
import { parseLaunchedTab, WORKER_NAME } from "./events.js";
import { withoutControlCharacters } from "./runEvents.js";

export const WORKER_NAMESPACE = "/workers";
/**
 * Sent in hello; the server refuses a worker that speaks another version of this protocol.
 * Still "1" with `rendered` and `retire`, which either end may lack: a server that never sends `rendered`
 * means no relaunch (as before), a worker without a handler ignores it, and a `retire` nobody acknowledges
 * counts as "no" after its timeout (the worker closes the tab; the server puts its job back).
 */
export const WORKER_PROTOCOL_VERSION = "1";
/** Most tabs one worker may run (as `farm worker --sessions`). */
export const MAX_WORKER_TABS = 256;
/** Longest text (a reason, a browser path) either end keeps of what the other sends. */
export const MAX_WORKER_TEXT = 300;

/** A peer's text: a string, cut to `max` and stripped of control characters; anything else is refused. */
const text = (max = MAX_WORKER_TEXT) => z.string().transform((s) => withoutControlCharacters(s.slice(0, max)));
const launchedName = z.string().max(100).refine((name) => parseLaunchedTab(name)?.worker !== undefined, "not a remote worker's tab name");

export const WorkerHelloSchema = z.object({
  name: z.string().regex(WORKER_NAME, "a worker name is 1-40 letters, digits, _ or -"),
  /** Random per worker process: a reconnect of the same process replaces its old link, another process with the same name is refused. */
  instance: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  tabs: z.number().int().min(1).max(MAX_WORKER_TABS),
  browser: text(),
  gl: text(40),
  version: text(40),
});
export type WorkerHello = z.input<typeof WorkerHelloSchema>;

export const WorkerWelcomeSchema = z.object({
  worker: z.string().regex(WORKER_NAME),
  proofs: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,100}$/)).min(1).max(MAX_WORKER_TABS),
});
export type WorkerWelcome = z.infer<typeof WorkerWelcomeSchema>;

export const TabJoinedSchema = z.object({ tab: launchedName, webgl: z.boolean(), renderer: text() });
export type TabJoined = z.infer<typeof TabJoinedSchema>;

/** "Replace this tab": `fault` for a hung or quarantined tab, not for a planned one (--recycle-after). */
export const RecycleOrderSchema = z.object({ tab: launchedName, reason: text(), fault: z.boolean() });
export type RecycleOrder = z.infer<typeof RecycleOrderSchema>;

/** "Your tab `tab` finished a job of `frames` frames" (a job holds 1 to LIMITS.maxFramesPerJob frames). */
export const TabRenderedSchema = z.object({ tab: launchedName, frames: z.number().int().min(1).max(LIMITS.maxFramesPerJob) });
export type TabRendered = z.infer<typeof TabRenderedSchema>;

/** "Retire my tab `tab`'s session between jobs". Strict: the server takes exactly this from a worker, nothing more. */
export const RetireRequestSchema = z.object({ tab: launchedName }).strict();
export type RetireRequest = z.infer<typeof RetireRequestSchema>;

export const ReasonSchema = z.object({ reason: text() });
export type Reason = z.infer<typeof ReasonSchema>;

export interface WorkerToServerEvents {
  hello: (hello: WorkerHello) => void;
  /** Acknowledged with whether the server retired the tab's session (it then sends `recycle`). */
  retire: (request: RetireRequest, ack: (retired: boolean) => void) => void;
}

export interface ServerToWorkerEvents {
  welcome: (welcome: WorkerWelcome) => void;
  tabJoined: (tab: TabJoined) => void;
  recycle: (order: RecycleOrder) => void;
  rendered: (rendered: TabRendered) => void;
  refused: (why: Reason) => void;
  /** Acknowledged, so the server knows it was read before it closes the socket. */
  stopping: (why: Reason, ack: () => void) => void;
  runOver: (why: Reason, ack: () => void) => void;
}

/** A message's problem in a few words (zod's first issue), for a log line. */
export function describeRefusal(error: z.ZodError): string {
  const issue = error.issues[0];
  return withoutControlCharacters(`${issue?.path.join(".") || "message"}: ${issue?.message ?? "invalid"}`).slice(0, MAX_WORKER_TEXT);
}

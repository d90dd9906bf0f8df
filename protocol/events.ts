// The socket.io events between server and browser sessions, typed once for both ends.
import type { SceneOp } from "./elements.js";
import type { GrabReply, GrabRequest } from "./grab.js";

export interface BrowserInfo {
  /** UNMASKED_RENDERER_WEBGL, or "" when the page has no WebGL. */
  renderer: string;
  vendor: string;
  webgl: boolean;
  userAgent: string;
  devicePixelRatio: number;
  /**
   * Set by the harness for the tabs it launched (?worker=tab-N, or <worker>.tab-N for a remote worker's),
   * empty or any name for tabs opened by hand. The server keeps a launched tab's name only when the
   * handshake carries its worker proof; a page claiming one without it is admitted as `unverified:tab-N`.
   */
  worker: string;
}

/**
 * A remote worker's name (`farm worker --name`): letters, digits, `_` and `-`, so that its tabs'
 * names (`<worker>.tab-N`) say unambiguously whose they are.
 */
const WORKER_NAME_PART = "[A-Za-z0-9_-]{1,40}";
export const WORKER_NAME = new RegExp(`^${WORKER_NAME_PART}$`);
/** `tab-N`, or `<worker>.tab-N`: a launched tab's name (launchedWorkerName). */
const LAUNCHED_TAB_NAME = new RegExp(`^(?:(${WORKER_NAME_PART})\\.)?tab-(\\d{1,6})$`);

/**
 * The name of launched tab `tab`: `tab-N` for the local farm's own tabs, `<worker>.tab-N` for those of
 * remote worker `worker`. The server admits such names only with a worker proof.
 */
export const launchedWorkerName = (tab: number, worker?: string): string => (worker === undefined ? `tab-${tab}` : `${worker}.tab-${tab}`);

/** Whose launched tab a name is and its number (worker undefined: the local farm's), or undefined for any other name. */
export function parseLaunchedTab(name: string): { worker?: string; tab: number } | undefined {
  const m = LAUNCHED_TAB_NAME.exec(name);
  if (!m) return undefined;
  return m[1] === undefined ? { tab: Number(m[2]) } : { worker: m[1], tab: Number(m[2]) };
}

/** Prefix of an admitted name whose launched-tab claim came without a valid proof (`unverified:tab-N`). */
export const UNVERIFIED_PREFIX = "unverified:";

/**
 * The worker named by an admitted `unverified:<worker>.tab-N` (a remote worker's tab name claimed without
 * that worker's current proof, e.g. a tab back before its worker after a server restart), else undefined.
 */
export function unprovenWorkerOf(admitted: string): string | undefined {
  return admitted.startsWith(UNVERIFIED_PREFIX) ? parseLaunchedTab(admitted.slice(UNVERIFIED_PREFIX.length))?.worker : undefined;
}

/**
 * The tab number in a launched tab's name when it is one of `worker`'s tabs (absent: the local farm's
 * `tab-N`), else undefined: each pool recycles its own tabs only.
 */
export function launchedTabOf(name: string, worker?: string): number | undefined {
  const parsed = parseLaunchedTab(name);
  return parsed && parsed.worker === worker ? parsed.tab : undefined;
}

/**
 * Longest error text a page sends (a scene error, a failed grab's `error`); the server keeps no more of
 * what it gets, and refuses any text message over 64 KB (server/session/accessControl.ts).
 */
export const MAX_ERROR_CHARS = 2000;

export interface SceneErrorReport {
  /** The op's sequence number, so the server can name the call that failed. */
  seq: number;
  message: string;
}

export interface ServerToClientEvents {
  /** Ops are numbered; the client applies them in order before any later grab renders. */
  op: (seq: number, op: SceneOp) => void;
  grab: (seq: number, request: GrabRequest, reply: (result: GrabReply) => void) => void;
  /** The server is done with this session (run finished); the page stays open but idle. */
  bye: (reason: string) => void;
}

export interface ClientToServerEvents {
  hello: (info: BrowserInfo) => void;
  sceneError: (report: SceneErrorReport) => void;
}

/**
 * The handshake's auth payload. The token also travels in the handshake request itself (query
 * `?token=`, or `Authorization: Bearer`), so a wrong one is refused before a websocket exists.
 */
export interface HandshakeAuth {
  token?: string;
  /** From the page URL's `workerProof`: proves the harness launched this tab (see BrowserInfo.worker). */
  workerProof?: string;
}

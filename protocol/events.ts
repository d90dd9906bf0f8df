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
  /** Set by the harness for the tabs it launched (?worker=…), empty for tabs opened by hand. */
  worker: string;
}

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

/** The handshake's auth payload: the run's access token. */
export interface HandshakeAuth {
  token?: string;
}

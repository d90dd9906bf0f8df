// A run's settings when they are left out, in one place: the command line shows these (--help, README's
// table), and startRun, the queue, the farm and its sessions fill in the same values for callers that
// start a run from code. A run writes rgb only unless asked (protocol/layers.ts).
import { LIMITS } from "../protocol/grab.js";

export const RUN_DEFAULTS = {
  width: 640,
  height: 480,
  format: "png",
  /** Grabs in flight per session. */
  inFlight: 3,
  leaseTtlMs: 30_000,
  maxAttempts: 3,
  grabTimeoutMs: 30_000,
  maxFrameBytes: LIMITS.maxFrameBytes,
  maxSessions: 256,
  /** zlib level of PNGs encoded on the server. */
  pngLevel: 3,
  /** A launched tab is replaced after this many frames (bounds browser memory). */
  recycleAfterFrames: 5000,
  host: "127.0.0.1",
} as const;

// The socket.io events between the farm and its dashboard page (/dashboard?token=…), typed once for
// both ends. The dashboard connects to its own namespace with the run's token; it never gets jobs.
import type { RatePoint, RunView } from "./runEvents.js";

export const DASHBOARD_NAMESPACE = "/dashboard";
/** The page: GET /dashboard?token=… (the token also as `Authorization: Bearer`). */
export const DASHBOARD_PATH = "/dashboard";

/** Most RunView updates a dashboard gets per second (changes in between are folded into the next one). */
export const VIEW_UPDATES_PER_SECOND = 4;
/** Most frames per second whose thumbnails are made and sent (the newest frame wins). */
export const THUMBNAIL_FRAMES_PER_SECOND = 1;
/** Width in pixels of a thumbnail (its height keeps the frame's aspect, at most this too). */
export const THUMBNAIL_WIDTH = 240;
/** Frames the page shows as thumbnails: the newest ones (older ones are dropped, their object URLs revoked). */
export const LATEST_FRAMES_SHOWN = 6;
/** Points of the frames/s chart the server keeps: past it, neighbouring buckets are merged (the chart's resolution halves). */
export const MAX_RATE_POINTS = 720;
/** Dashboards connected at once; more are refused. */
export const MAX_DASHBOARDS = 16;
/** How long a closing farm waits for its dashboards to acknowledge the last view (ms). */
export const LAST_VIEW_WAIT_MS = 1000;

/** One layer of a frame, downscaled on the server: a small image the page shows as it is. */
export interface LayerThumbnail {
  /** The layer's name (rgb, depth, mask, class, normal). */
  layer: string;
  mime: "image/jpeg" | "image/png" | "image/webp";
  /** The encoded image (a Buffer on the server, an ArrayBuffer in the page). */
  data: ArrayBuffer | Uint8Array;
  width: number;
  height: number;
}

export interface FrameThumbnails {
  job: string;
  frame: number;
  session: string;
  /** Epoch ms the frame was written. */
  at: number;
  layers: LayerThumbnail[];
}

export type CommandResult = { ok: true; message: string } | { ok: false; error: string };

export interface ServerToDashboardEvents {
  /**
   * The whole run as it is now; sent on connect and then at most VIEW_UPDATES_PER_SECOND times a second.
   * The last one (the run finished or stopped) comes with `received`: the farm closes when each page has
   * called it (or after LAST_VIEW_WAIT_MS), so the page shows how the run ended.
   */
  view: (view: RunView, received?: () => void) => void;
  /** Chart points: `reset` replaces the page's series (on connect, and when the server merged buckets), else they are appended. */
  rate: (points: RatePoint[], reset: boolean) => void;
  /** The newest frame's layers, at most THUMBNAIL_FRAMES_PER_SECOND a second. */
  thumbnails: (frame: FrameThumbnails) => void;
}

export interface DashboardToServerEvents {
  /** Puts one failed job back in the queue (its attempts reset); refused unless the job is failed. */
  retry: (job: string, reply: (result: CommandResult) => void) => void;
  /** Stops handing out jobs (running ones finish) / hands them out again. */
  pause: (reply: (result: CommandResult) => void) => void;
  resume: (reply: (result: CommandResult) => void) => void;
}

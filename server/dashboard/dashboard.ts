// The farm's live dashboard: the page at /dashboard (the client's second entry, served only with the
// token) and its socket.io namespace. It sends the run's view (RunStats) at most VIEW_UPDATES_PER_SECOND
// times a second and only when it changed, new frames/s points, and the newest frame's layers as
// thumbnails at most THUMBNAIL_FRAMES_PER_SECOND; it takes three commands: retry a failed job, pause,
// resume. With no dashboard open it costs one check per event.
import type { Socket } from "socket.io";
import type { CommandResult, DashboardToServerEvents, ServerToDashboardEvents } from "../../protocol/dashboard.js";
import {
  LAST_VIEW_WAIT_MS, DASHBOARD_NAMESPACE, DASHBOARD_PATH, MAX_DASHBOARDS, THUMBNAIL_FRAMES_PER_SECOND, VIEW_UPDATES_PER_SECOND,
} from "../../protocol/dashboard.js";
import type { FrameWritten, RunView } from "../../protocol/runEvents.js";
import type { Farm } from "../session/Farm.js";
import type { RunEvents } from "../events/RunEvents.js";
import type { RunStats } from "../events/RunStats.js";
import { makeThumbnails } from "./thumbnails.js";

/** What the dashboard's buttons do (the run's dispatch and queue). */
export interface DashboardControls {
  /** Puts failed job `id` back in the queue, unless it is not failed or the run is over (nothing would render it). */
  retry(id: string): Promise<"requeued" | "not failed" | "run over">;
  pause(by: string): boolean;
  resume(by: string): boolean;
}

/** Longest job id the retry command takes (job ids are far shorter; protocol/names.ts). */
const MAX_JOB_ID_CHARS = 500;

export interface Dashboard {
  /** The page's URL (with the token). */
  url: string;
  /** Stops sending; resolves when the open dashboards have the last view (or after LAST_VIEW_WAIT_MS). */
  close(): Promise<void>;
}

export function serveDashboard(options: { farm: Farm; url: string; root: string; events: RunEvents; stats: RunStats; controls: DashboardControls; log: (line: string) => void }): Dashboard {
  const { farm, root, events, stats, controls, log } = options;
  farm.serveWithToken(DASHBOARD_PATH, "dashboard.html");
  const namespace = farm.pageNamespace<DashboardToServerEvents, ServerToDashboardEvents>(DASHBOARD_NAMESPACE, MAX_DASHBOARDS);
  const open = () => namespace.sockets.size > 0;

  let sentVersion = -1;
  const sendView = () => {
    const rate = stats.rate.takeChanges(); // also with no dashboard open: a new one gets the whole series
    if (!open()) return;
    if (rate.reset || rate.points.length) namespace.emit("rate", rate.points, rate.reset);
    if (stats.version === sentVersion) return;
    sentVersion = stats.version;
    // Not volatile: a view dropped while the socket is busy would not be sent again until the next change
    // (the last one, "finished", never). A dashboard that stops reading is cut by the ping timeout (~45 s).
    namespace.emit("view", stats.view());
  };

  // A frame whose layers can't be read would be reported each second: once a minute is enough.
  let quietUntil = 0;
  const logThrottled = (line: string) => {
    if (Date.now() < quietUntil) return;
    quietUntil = Date.now() + 60_000;
    log(line);
  };
  // The newest frame written since the last thumbnails were sent: older ones are skipped, not queued.
  let newest: FrameWritten | undefined;
  let making = false;
  let lastThumbnails: Parameters<ServerToDashboardEvents["thumbnails"]>[0] | undefined;
  const unsubscribe = events.subscribe((event) => {
    if (event.type === "frame.written" && open()) newest = event;
  });
  const sendThumbnails = async () => {
    if (!newest || making || !open()) return;
    const frame = newest;
    newest = undefined;
    making = true;
    try {
      // A layer rewritten or removed meanwhile (a retry) is no reason to stop showing the others, or the next frames.
      const { layers, failed } = await makeThumbnails(root, frame.files);
      if (failed.length) logThrottled(`dashboard: thumbnails of job ${frame.job} frame ${frame.frame} left out ${failed.join("; ")}`);
      if (!layers.length) return;
      lastThumbnails = { job: frame.job, frame: frame.frame, session: frame.session, at: frame.at, layers };
      namespace.emit("thumbnails", lastThumbnails);
    } catch (err) {
      logThrottled(`dashboard: thumbnails of job ${frame.job} frame ${frame.frame} could not be made: ${(err as Error)?.message ?? err}`);
    } finally {
      making = false;
    }
  };
  const viewTimer = setInterval(sendView, 1000 / VIEW_UPDATES_PER_SECOND);
  const thumbnailTimer = setInterval(() => void sendThumbnails(), 1000 / THUMBNAIL_FRAMES_PER_SECOND);
  viewTimer.unref();
  thumbnailTimer.unref();

  namespace.on("connection", (socket: Socket<DashboardToServerEvents, ServerToDashboardEvents>) => {
    const who = `dashboard ${socket.handshake.address}`;
    socket.emit("rate", stats.rate.all(), true);
    socket.emit("view", stats.view());
    if (lastThumbnails) socket.emit("thumbnails", lastThumbnails);
    // Each command answers through its ack; one sent without an ack function, or with a bad job id, is
    // answered with an error or ignored, never thrown.
    const command = (reply: unknown, run: () => Promise<CommandResult> | CommandResult) => {
      if (typeof reply !== "function") return;
      Promise.resolve()
        .then(run)
        .catch((err: unknown): CommandResult => ({ ok: false, error: `failed: ${(err as Error)?.message ?? err}` }))
        .then((result) => (reply as (r: CommandResult) => void)(result));
    };
    socket.on("retry", (job: unknown, reply: unknown) =>
      command(reply, async () => {
        if (typeof job !== "string" || job.length === 0 || job.length > MAX_JOB_ID_CHARS) return { ok: false, error: "retry needs a job id (a string)" };
        const outcome = await controls.retry(job);
        if (outcome === "run over") return { ok: false, error: "the run is over: put failed jobs back with retry-failed and run the farm again on this --out" };
        if (outcome === "not failed") return { ok: false, error: `job ${JSON.stringify(job.slice(0, 100))} is not failed (retried already, or unknown)` };
        log(`${who}: job ${job} put back in the queue`);
        return { ok: true, message: `job ${job} is back in the queue` };
      }),
    );
    socket.on("pause", (reply: unknown) =>
      command(reply, () => (controls.pause(who) ? { ok: true, message: "paused: running jobs finish, no new job is handed out" } : { ok: false, error: "already paused, or the run is over" })),
    );
    socket.on("resume", (reply: unknown) =>
      command(reply, () => (controls.resume(who) ? { ok: true, message: "resumed" } : { ok: false, error: "not paused" })),
    );
  });

  const url = options.url.replace(/\/\?/, `${DASHBOARD_PATH}?`);
  return {
    url,
    async close() {
      clearInterval(viewTimer);
      clearInterval(thumbnailTimer);
      unsubscribe();
      // The last view says how the run ended. Closing the farm drops whatever its sockets still buffer
      // (engine.io discards on close), so each page acknowledges it first; a page that doesn't is waited for no longer.
      const rate = stats.rate.takeChanges();
      if (!open()) return;
      if (rate.reset || rate.points.length) namespace.emit("rate", rate.points, rate.reset);
      // (emitWithAck's types want a required callback; `received` is optional for the other views)
      const acknowledged = namespace.timeout(LAST_VIEW_WAIT_MS) as unknown as { emitWithAck(event: "view", view: RunView): Promise<unknown> };
      await acknowledged.emitWithAck("view", stats.view()).catch(() => {});
    },
  };
}

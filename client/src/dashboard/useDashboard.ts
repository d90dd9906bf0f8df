// The dashboard's socket: one connection to the farm's /dashboard namespace with the run's token,
// folded into React state (connection, the latest RunView, the chart's points, the latest frames).
import { useCallback, useEffect, useRef, useState } from "react";
import { io, type Socket } from "socket.io-client";
import {
  DASHBOARD_NAMESPACE,
  type CommandResult,
  type DashboardToServerEvents,
  type ServerToDashboardEvents,
} from "../../../protocol/dashboard.js";
import type { RunView } from "../../../protocol/runEvents.js";
import { addRatePoints, EMPTY_RATE, type RateSeries } from "./rateSeries.js";
import { useLatestFrames } from "./useLatestFrames.js";

type DashboardSocket = Socket<ServerToDashboardEvents, DashboardToServerEvents>;

/** `retrying`: socket.io will try again by itself (the farm was unreachable); a refusal by the farm is final. */
export type Connection =
  | { state: "connecting" }
  | { state: "connected" }
  | { state: "disconnected"; reason: string; retrying: boolean }
  | { state: "error"; message: string; retrying: boolean };

/** A command the farm does not answer within this is reported as failed (the button is usable again). */
const COMMAND_TIMEOUT_MS = 10_000;

export type Command = { name: "pause" } | { name: "resume" } | { name: "retry"; job: string };

export function useDashboard(token: string) {
  const [connection, setConnection] = useState<Connection>(() =>
    token ? { state: "connecting" } : { state: "error", message: "no access token: open the address the farm printed (…/dashboard?token=…)", retrying: false },
  );
  const [view, setView] = useState<RunView | null>(null);
  // The view's `now` minus the page's clock when it came: relative times tick on the server's clock.
  const [clockSkew, setClockSkew] = useState(0);
  const [rate, setRate] = useState<RateSeries>(EMPTY_RATE);
  const { frames, addFrame } = useLatestFrames();
  const socketRef = useRef<DashboardSocket | null>(null);

  useEffect(() => {
    if (!token) return;
    const socket: DashboardSocket = io(DASHBOARD_NAMESPACE, { auth: { token }, transports: ["websocket"] });
    socketRef.current = socket;
    socket.on("connect", () => setConnection({ state: "connected" }));
    socket.on("connect_error", (err) => {
      // A refusal by the farm's middleware (wrong token, too many dashboards) carries its message and
      // is not retried (socket.active is false); an unreachable farm is retried with socket.io's backoff.
      // The token travels in `auth`, so a "websocket error" is an unreachable farm (stopped, or another address), not a refusal.
      const hint = /websocket error/i.test(err.message) ? " (the farm is not reachable: stopped, or not at this address)" : "";
      setConnection({ state: "error", message: `${err.message}${hint}`, retrying: socket.active });
    });
    socket.on("disconnect", (reason) => setConnection({ state: "disconnected", reason, retrying: socket.active }));
    socket.on("view", (next, received) => {
      setView(next);
      setClockSkew(next.now - Date.now());
      if (typeof received === "function") received(); // the last view: the farm waits for it before closing
    });
    socket.on("rate", (points, reset) => setRate((series) => addRatePoints(series, Array.isArray(points) ? points : [], reset)));
    socket.on("thumbnails", addFrame);
    return () => {
      socket.disconnect();
      socketRef.current = null;
    };
  }, [token, addFrame]);

  const send = useCallback(async (command: Command): Promise<CommandResult> => {
    const socket = socketRef.current;
    if (!socket?.connected) return { ok: false, error: "not connected to the farm" };
    try {
      const timed = socket.timeout(COMMAND_TIMEOUT_MS);
      const result =
        command.name === "retry" ? await timed.emitWithAck("retry", command.job) : await timed.emitWithAck(command.name);
      return result ?? { ok: false, error: "the farm gave no answer" };
    } catch {
      return { ok: false, error: `no answer from the farm within ${COMMAND_TIMEOUT_MS / 1000} s` };
    }
  }, []);

  return { connection, view, clockSkew, rate, frames, send };
}

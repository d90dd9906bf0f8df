// The dashboard page: header (dataset, connection, pause), banners, totals, chart, latest frames,
// sessions and failed jobs, all from the farm's /dashboard socket.
import { useEffect, useState } from "react";
import type { CommandResult } from "../../../protocol/dashboard.js";
import type { RunView } from "../../../protocol/runEvents.js";
import { useDashboard, type Command, type Connection } from "./useDashboard.js";
import { Totals } from "./Totals.js";
import { RateChart } from "./RateChart.js";
import { LatestFrames } from "./LatestFrames.js";
import { SessionsTable } from "./SessionsTable.js";
import { FailedJobs } from "./FailedJobs.js";
import { formatAgo, formatDuration, percent } from "./format.js";

/** The server's clock now, ticking each second between views, so "connected 2m ago" moves while the farm is quiet. */
function useServerNow(skew: number): number {
  const [now, setNow] = useState(() => Date.now() + skew);
  useEffect(() => {
    setNow(Date.now() + skew);
    const timer = setInterval(() => setNow(Date.now() + skew), 1000);
    return () => clearInterval(timer);
  }, [skew]);
  return now;
}

function ConnectionState({ connection }: { connection: Connection }) {
  const text =
    connection.state === "connected" ? "connected"
    : connection.state === "connecting" ? "connecting…"
    : connection.state === "disconnected" ? "disconnected"
    : connection.message;
  const retrying = (connection.state === "disconnected" || connection.state === "error") && connection.retrying;
  const why = connection.state === "disconnected" ? connection.reason : undefined;
  return (
    <div className={`conn conn-${connection.state}`} title={why}>
      <span className="dot" />
      <span data-testid="connection">{text}</span>
      {retrying && <span className="muted"> · retrying…</span>}
    </div>
  );
}

function PauseButton({ view, connected, send }: { view: RunView | null; connected: boolean; send: (c: Command) => Promise<CommandResult> }) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<CommandResult | null>(null);
  const paused = view?.paused != null;
  const click = async () => {
    setBusy(true);
    setResult(await send({ name: paused ? "resume" : "pause" }));
    setBusy(false);
  };
  return (
    <div className="pause">
      {result && <span className={`pause-result ${result.ok ? "good" : "bad"}`}>{result.ok ? result.message : result.error}</span>}
      <button type="button" data-testid="pause" disabled={!connected || !view || view.finished || busy} onClick={() => void click()}>
        {paused ? "Resume" : "Pause"}
      </button>
    </div>
  );
}

function RunState({ view }: { view: RunView }) {
  if (view.finished) return <span className="badge good">finished</span>;
  if (view.writePaused) return <span className="badge bad">writes paused</span>;
  if (view.paused) return <span className="badge warn">paused</span>;
  return <span className="badge live">running</span>;
}

function Banners({ view, now }: { view: RunView; now: number }) {
  return (
    <>
      {view.writePaused && (
        <div className="banner bad" data-testid="write-paused">
          <strong>Writes paused</strong> ({view.writePaused.store}, {formatAgo(view.writePaused.since, now)}): {view.writePaused.error}. No jobs are
          handed out until storage takes writes again.
        </div>
      )}
      {view.paused && !view.writePaused && (
        <div className="banner warn">
          Handing out jobs is paused by {view.paused.by} ({formatAgo(view.paused.since, now)}); running jobs finish.
        </div>
      )}
      {view.finished && (
        <div className={view.stopped ? "banner warn" : "banner good"} data-testid="finished">
          {view.stopped ? `Run stopped (${view.stopped})` : "Run finished"}: {view.counts.done} of {view.counts.total} jobs done, {view.frames} frames this run
          {view.counts.failed > 0 ? `, ${view.counts.failed} jobs failed` : ""}, in {formatDuration((view.now - view.startedAt) / 1000)}.
        </div>
      )}
    </>
  );
}

export function App({ token }: { token: string }) {
  const { connection, view, clockSkew, rate, frames, send } = useDashboard(token);
  const now = useServerNow(clockSkew);
  const connected = connection.state === "connected";

  useEffect(() => {
    document.title = view
      ? `${view.finished ? "done" : `${percent(view.counts.done, view.counts.total).toFixed(0)}%`} · tabfarm · ${view.out}`
      : "tabfarm dashboard";
  }, [view]);

  return (
    <div className="page">
      <header>
        <div className="title">
          <span className="brand">tabfarm</span>
          <span className="out mono" title={view?.out}>{view?.out ?? ""}</span>
          {view && <RunState view={view} />}
        </div>
        <ConnectionState connection={connection} />
        <PauseButton view={view} connected={connected} send={send} />
      </header>
      {!view ? (
        <div className={`waiting${connection.state === "error" ? " bad" : ""}`}>
          {connection.state === "error" ? `The farm did not let this dashboard in: ${connection.message}` : "waiting for the farm…"}
        </div>
      ) : (
        <main>
          <Banners view={view} now={now} />
          <Totals view={view} />
          <div className="row">
            <section className="panel chart-panel">
              <h2>frames/s</h2>
              <RateChart series={rate} />
            </section>
            <LatestFrames frames={frames} now={now} />
          </div>
          <SessionsTable sessions={view.sessions} now={now} />
          <FailedJobs failed={view.failed} total={view.counts.failed} now={now} connected={connected} send={send} />
        </main>
      )}
    </div>
  );
}

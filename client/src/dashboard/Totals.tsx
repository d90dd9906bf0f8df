// The run's numbers at a glance: jobs by state, frames, rate, ETA, retries and failures, and the
// progress bar (done and failed out of all jobs).
import type { ReactNode } from "react";
import type { RunView } from "../../../protocol/runEvents.js";
import { formatDuration, formatRate, percent } from "./format.js";

function Stat({ label, hint, children, tone }: { label: string; hint?: string; children: ReactNode; tone?: "good" | "bad" | "warn" }) {
  return (
    <div className={`stat${tone ? ` ${tone}` : ""}`}>
      <div className="stat-label" title={hint ?? label}>{label}</div>
      <div className="stat-value">{children}</div>
    </div>
  );
}

export function Totals({ view }: { view: RunView }) {
  const { counts } = view;
  const donePct = percent(counts.done, counts.total);
  const failedPct = percent(counts.failed, counts.total);
  return (
    <section className="panel totals-panel">
      <div className="stats">
        <Stat label="pending">{counts.pending}</Stat>
        <Stat label="leased">{counts.leased}</Stat>
        <Stat label="done" tone="good"><span data-testid="done">{counts.done}</span></Stat>
        <Stat label="failed" tone={counts.failed > 0 ? "bad" : undefined}>{counts.failed}</Stat>
        <Stat label="total jobs"><span data-testid="total">{counts.total}</span></Stat>
        <Stat label="frames (run)" hint="frames written by this run">{view.frames}</Stat>
        <Stat label="all frames" hint="frames in the dataset (earlier runs included)">{view.framesTotal}</Stat>
        <Stat label="frames/s">{formatRate(view.framesPerSecond)}</Stat>
        <Stat label="ETA">{view.finished ? "—" : formatDuration(view.etaSeconds)}</Stat>
        <Stat label="retries" hint="failed attempts put back for another in this run" tone={view.retries > 0 ? "warn" : undefined}>{view.retries}</Stat>
        <Stat label="failures" hint="jobs failed for good in this run" tone={view.failures > 0 ? "bad" : undefined}>{view.failures}</Stat>
      </div>
      <div
        className="progress"
        role="progressbar"
        aria-valuemin={0}
        aria-valuemax={counts.total}
        aria-valuenow={counts.done}
        title={`${counts.done} done, ${counts.failed} failed of ${counts.total} jobs`}
      >
        <div className="progress-done" style={{ width: `${donePct}%` }} />
        <div className="progress-failed" style={{ width: `${failedPct}%` }} />
      </div>
      <div className="progress-label">
        {counts.done} / {counts.total} jobs done ({donePct.toFixed(1)}%){counts.failed > 0 ? `, ${counts.failed} failed` : ""}
      </div>
    </section>
  );
}

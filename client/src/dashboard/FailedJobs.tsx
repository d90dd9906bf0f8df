// Jobs that used up their attempts, newest first, each with a Retry button (puts it back in the queue).
import { useState } from "react";
import type { CommandResult } from "../../../protocol/dashboard.js";
import type { FailedJobRow } from "../../../protocol/runEvents.js";
import { formatAgo, formatClock } from "./format.js";
import type { Command } from "./useDashboard.js";

type Outcome = "pending" | CommandResult;

export function FailedJobs({ failed, total, now, connected, send }: {
  failed: FailedJobRow[];
  /** All failed jobs in the queue (the view lists only the latest). */
  total: number;
  now: number;
  connected: boolean;
  send: (command: Command) => Promise<CommandResult>;
}) {
  // What the farm answered per job; the latest answer also stays below the list after its row is gone.
  const [outcomes, setOutcomes] = useState<Record<string, Outcome>>({});
  const [latest, setLatest] = useState<{ job: string; result: CommandResult } | null>(null);

  const retry = async (job: string) => {
    // Answers for jobs no longer listed are dropped here, so the map stays as small as the list.
    const listed = new Set(failed.map((f) => f.id));
    setOutcomes((o) => ({ ...Object.fromEntries(Object.entries(o).filter(([id]) => listed.has(id))), [job]: "pending" }));
    const result = await send({ name: "retry", job });
    setOutcomes((o) => ({ ...o, [job]: result }));
    setLatest({ job, result });
  };

  return (
    <section className="panel">
      <h2>
        Failed jobs <span className="muted">{total > failed.length ? `latest ${failed.length} of ${total}` : total}</span>
      </h2>
      {latest && (
        <div className={`notice ${latest.result.ok ? "good" : "bad"}`} data-testid="retry-result">
          retry {latest.job}: {latest.result.ok ? latest.result.message : latest.result.error}
        </div>
      )}
      {failed.length === 0 ? (
        <div className="muted">none</div>
      ) : (
        <div className="table-scroll short">
          <table className="failed">
            <thead>
              <tr>
                <th>job</th>
                <th className="num">attempts</th>
                <th>error</th>
                <th>failed</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {failed.map((f) => {
                const outcome = outcomes[f.id];
                return (
                  <tr key={f.id} data-failed-job={f.id}>
                    <td className="mono">{f.id}</td>
                    <td className="num">{f.attempts}</td>
                    <td><span className="cut error wide" title={f.error}>{f.error}</span></td>
                    <td title={formatClock(f.at)}>{formatAgo(f.at, now)}</td>
                    <td className="actions">
                      <button type="button" disabled={!connected || outcome === "pending"} onClick={() => void retry(f.id)}>Retry</button>
                      {outcome && outcome !== "pending" && (
                        <span className={outcome.ok ? "good" : "bad"}>{outcome.ok ? outcome.message : outcome.error}</span>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

// One row per session (tab): who it is, what it is doing, how fast, its last error.
import type { SessionRow } from "../../../protocol/runEvents.js";
import { formatAgo, formatClock, formatRate } from "./format.js";

/** Long text in a cell: cut by CSS, whole in the tooltip. */
function Cut({ text, className }: { text: string | null; className?: string }) {
  if (!text) return <span className="muted">—</span>;
  return (
    <span className={`cut${className ? ` ${className}` : ""}`} title={text}>
      {text}
    </span>
  );
}

export function SessionsTable({ sessions, now }: { sessions: SessionRow[]; now: number }) {
  const live = sessions.filter((s) => s.leftAt === undefined).length; // hung and quarantined rows stay after they left
  return (
    <section className="panel">
      <h2>
        Sessions <span className="muted">{live} connected{sessions.length > live ? `, ${sessions.length - live} left` : ""}</span>
      </h2>
      <div className="table-scroll">
        <table className="sessions" data-testid="sessions">
          <thead>
            <tr>
              <th>id</th>
              <th>worker</th>
              <th>browser</th>
              <th>renderer</th>
              <th>state</th>
              <th className="num">frames</th>
              <th className="num">frames/s</th>
              <th>job</th>
              <th>last error</th>
              <th>connected</th>
            </tr>
          </thead>
          <tbody>
            {sessions.map((s) => (
              <tr key={s.id} data-session={s.id} className={s.state === "left" ? "gone" : undefined}>
                <td><Cut text={s.id} className="mono id" /></td>
                <td>{s.worker}</td>
                <td><Cut text={s.browser} className="browser" /></td>
                <td><Cut text={s.renderer} className="renderer" /></td>
                <td>
                  <span className={`state state-${s.state}`} title={s.leftAt ? `left ${formatAgo(s.leftAt, now)}` : undefined}>
                    {s.state}
                  </span>
                </td>
                <td className="num">{s.frames}</td>
                <td className="num">{formatRate(s.framesPerSecond)}</td>
                <td><Cut text={s.job} className="mono job" /></td>
                <td><Cut text={s.lastError} className="error" /></td>
                <td title={formatClock(s.since)}>{formatAgo(s.since, now)}</td>
              </tr>
            ))}
            {sessions.length === 0 && (
              <tr>
                <td colSpan={10} className="muted">no sessions yet</td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

// Jobs added again under an id the queue already holds, but with a different spec: the user edited
// the jobs file and resumed. The queue keeps what it has (a done job's frames match its old spec)
// unless asked to replace pending ones; either way the run says which jobs differ.
import { canonicalJobJson, type JobSpec } from "../../protocol/job.js";
import type { ChangedJobs, JobState } from "./JobQueue.js";

/** A job whose id is queued with another spec, added with `refuseChanged`: nothing of that add stays queued. */
export class ChangedJobError extends Error {
  constructor(readonly id: string, readonly state: JobState) {
    super(`job ${id} is queued (${state}) with another spec than the one added now`);
  }
}

/** Ids listed per state in a report; the counts are always complete. */
export const CHANGED_IDS_LISTED = 10;

export function noChangedJobs(): ChangedJobs {
  return { count: 0, replaced: 0, byState: {} };
}

/** True when `job` means something else than the spec stored (as JSON) for its id. */
export function specDiffers(job: JobSpec, storedSpec: string): boolean {
  return canonicalJobJson(job) !== canonicalJobJson(JSON.parse(storedSpec));
}

/** Counts one differing job (in `changed`, in place). */
export function countChanged(changed: ChangedJobs, id: string, state: JobState, replaced: boolean): void {
  changed.count++;
  if (replaced) changed.replaced++;
  const entry = (changed.byState[state] ??= { count: 0, ids: [] });
  entry.count++;
  if (entry.ids.length < CHANGED_IDS_LISTED) entry.ids.push(id);
}

const ORDER: JobState[] = ["pending", "leased", "done", "failed"];

/**
 * One sentence for the run's log, e.g. `3 differ from what is queued (pending: a, b; done: c); the
 * queued versions are kept: pass --replace-pending to replace pending ones; …`, or "" if none differ.
 */
export function describeChangedJobs(changed: ChangedJobs): string {
  if (changed.count === 0) return "";
  const parts = ORDER.flatMap((state) => {
    const entry = changed.byState[state];
    if (!entry) return [];
    const more = entry.count > entry.ids.length ? ` and ${entry.count - entry.ids.length} more` : "";
    return [`${state}: ${entry.ids.join(", ")}${more}`];
  });
  const notes: string[] = [];
  const pending = changed.byState.pending?.count ?? 0;
  if (changed.replaced > 0) notes.push(`${changed.replaced} pending job(s) replaced by the new version`);
  else if (pending > 0) notes.push("the queued versions are kept: pass --replace-pending to replace pending ones");
  if (changed.byState.leased) notes.push("leased ones are being rendered by another process and keep their version");
  if (changed.byState.done) notes.push("done ones keep their frames: give a job a new id (or use a new --out) to render it again");
  if (changed.byState.failed) notes.push("failed ones: run retry-failed, then run again with --replace-pending");
  return `${changed.count} differ from what is queued (${parts.join("; ")}); ${notes.join("; ")}`;
}

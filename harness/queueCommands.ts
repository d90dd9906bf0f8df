// `status`, `retry-failed` and `verify`: look at or mend the queue of a dataset folder, or check the dataset.
// `status` only reads, so it takes no lock and works while a farm is writing the dataset.
// `retry-failed` changes the queue, so like a farm it takes the dataset's lock: SQLite alone would keep
// the queue consistent, but a running farm decides when it is finished from the queue it saw, and one
// writer per dataset is a rule with no exceptions to remember. While a farm runs it is refused with
// the holder's pid, host and since. With --queue (a queue several servers share, e.g. on Redis) both work
// on that queue: the whole run, not one server's shard. `verify` only reads (server/dataset/verifyDataset.ts).
import path from "node:path";
import { inspectDataset, openDataset, readSharedQueue } from "../server/dataset/openDataset.js";
import { openRedisQueue } from "../server/queue/RedisQueue.js";
import type { JobQueue } from "../server/queue/JobQueue.js";
import { readHolder } from "../server/dataset/datasetLock.js";
import { formatProblem, MAX_PROBLEMS_KEPT, verifyDataset } from "../server/dataset/verifyDataset.js";
import { countFrameLines } from "../server/dataset/readDataset.js";
import { readRunHistory, RUN_EVENTS_FILE, type PastRun } from "../server/events/runEventLog.js";
import { formatDuration, withoutControlCharacters } from "./progressView.js";

/** Failed jobs, and sessions of the last run, `status` lists (recycled tabs make many sessions). */
const STATUS_FAILED_SHOWN = 50;
const STATUS_SESSIONS_SHOWN = 50;

/** What `status` and `retry-failed` work on: a dataset folder, or a queue shared by several servers. */
export type QueueTarget = { out: string } | { queue: string };

export async function printStatus(target: QueueTarget, print = (line: string) => console.log(line)): Promise<void> {
  const log = (line: string) => print(withoutControlCharacters(line)); // error texts come from pages
  if ("queue" in target) return printSharedStatus(target.queue, log);
  const { out } = target;
  const { root, queue } = inspectDataset(out);
  try {
    const c = await queue.counts();
    const shard = readSharedQueue(root);
    if (shard) log(`${path.resolve(out)} is a shard of the run on ${shard}: the counts below are this server's jobs; status --queue ${shard} shows the whole run`);
    log(`${path.resolve(out)}: ${c.total} jobs — ${c.done} done, ${c.pending} pending, ${c.leased} leased, ${c.failed} failed`);
    log(`frames written: ${await countFrameLines(root)}`);
    log(`stale or foreign lease tokens rejected: ${c.staleRejections}`);
    const history = await readRunHistory(root).catch((err: unknown) => void log(`${RUN_EVENTS_FILE}: not read (${(err as Error)?.message ?? err})`));
    if (history?.lastRun) for (const line of describeRun(history.lastRun)) log(line);
    await printFailures(queue, c.failed, log);
  } finally {
    await queue.close();
  }
}

/** `status --queue`: the whole run's counts on a shared queue (no dataset: each server has its shard). */
async function printSharedStatus(url: string, log: (line: string) => void): Promise<void> {
  const queue = await openRedisQueue(url);
  try {
    const c = await queue.counts();
    log(`${queue.display} (queue ${queue.name}): ${c.total} jobs — ${c.done} done, ${c.pending} pending, ${c.leased} leased, ${c.failed} failed`);
    if (c.total === 0) log(`no job was ever queued as ${JSON.stringify(queue.name)} on this Redis: is the queue name right (?queue=NAME in the URL)?`);
    log(`stale or foreign lease tokens rejected: ${c.staleRejections}`);
    await printFailures(queue, c.failed, log);
  } finally {
    await queue.close();
  }
}

async function printFailures(queue: JobQueue, failed: number, log: (line: string) => void): Promise<void> {
  const failures = await queue.failures(STATUS_FAILED_SHOWN);
  for (const f of failures) log(`failed ${f.id} after ${f.attempts} attempt(s): ${f.error?.message ?? "(no message)"}`);
  if (failed > failures.length) log(`… and ${failed - failures.length} more failed jobs`);
}

/** The last run's figures from the dataset's run events: when, how fast, and each session's share. */
function describeRun(run: PastRun): string[] {
  const seconds = Math.max(0.001, (run.ended - run.started) / 1000);
  const lines = [
    `last run: started ${new Date(run.started).toISOString()}, ${run.finished ? "ended" : "stopped or killed, last heard"} ${new Date(run.ended).toISOString()} ` +
      `(${formatDuration(seconds)}): ${run.frames} frames, ${run.jobsDone} jobs done, ${(run.frames / seconds).toFixed(1)} frames/s, ` +
      `${run.retries} failed attempt(s) retried, ${run.failures} job(s) failed`,
  ];
  for (const s of run.sessions.slice(0, STATUS_SESSIONS_SHOWN)) {
    const alive = Math.max(0.001, ((s.left ?? run.ended) - s.joined) / 1000);
    lines.push(
      `  session ${s.session}${s.worker ? ` (${s.worker})` : ""}: ${s.frames} frames, ${(s.frames / alive).toFixed(1)} frames/s, ${s.jobs} jobs, ${s.failures} failures, ` +
        `${s.renderer || "no WebGL"}${s.reason ? `; left: ${s.reason}` : ""}`,
    );
  }
  const more = run.sessions.slice(STATUS_SESSIONS_SHOWN);
  if (more.length) lines.push(`  … and ${more.length} more session(s), ${more.reduce((n, s) => n + s.frames, 0)} frames`);
  return lines;
}

export async function retryFailed(target: QueueTarget, log = (line: string) => console.log(line)): Promise<number> {
  if ("queue" in target) {
    const queue = await openRedisQueue(target.queue);
    try {
      const n = await queue.retryFailed();
      log(`${n} failed job(s) returned to the queue ${queue.display}; the servers running on it render them (start one if none runs)`);
      return n;
    } finally {
      await queue.close();
    }
  }
  const { out } = target;
  const dataset = await openDataset(out, { create: false, log });
  try {
    const n = await dataset.queue.retryFailed();
    log(`${n} failed job(s) returned to the queue; run the farm again with --out ${out} to render them`);
    return n;
  } finally {
    await dataset.close();
  }
}

/** Problems `verify` prints (all are counted). */
export const VERIFY_PROBLEMS_SHOWN = 50;

/**
 * `verify --out DIR [--json]`: prints the dataset's problems (the first VERIFY_PROBLEMS_SHOWN, then how
 * many more) and a summary, or the report as JSON. Returns the exit code: 0 clean, 1 with problems; a
 * folder that is not a dataset throws (the CLI exits 2).
 */
export async function printVerify(out: string, options: { json?: boolean } = {}, log = (line: string) => console.log(line), note = (line: string) => console.error(line)): Promise<number> {
  let lastProgress = Date.now();
  const started = Date.now();
  const report = await verifyDataset(out, {
    onProgress: (lines) => {
      if (options.json || Date.now() - lastProgress < 5000) return;
      lastProgress = Date.now();
      note(`verify: ${lines} lines read …`);
    },
  });
  const holder = readHolder(report.root);
  if (holder) note(`verify: note: a farm (pid ${holder.pid} on host ${holder.host}, since ${holder.started}) holds this dataset's lock; lines of jobs finishing right now may show as problems`);
  if (options.json) {
    log(JSON.stringify(report));
  } else {
    for (const problem of report.problems.slice(0, VERIFY_PROBLEMS_SHOWN)) log(formatProblem(problem));
    const more = report.problemCount - Math.min(report.problems.length, VERIFY_PROBLEMS_SHOWN);
    if (more > 0) log(`… and ${more} more problem(s)${report.problemCount > VERIFY_PROBLEMS_SHOWN ? ` (--json lists the first ${Math.min(report.problemCount, MAX_PROBLEMS_KEPT)})` : ""}`);
    log(
      `verify: ${report.root}: ${report.lines} line(s), ${report.files} file(s) checked, ${report.jobsDone} of ${report.jobs} job(s) done, ` +
        `${((Date.now() - started) / 1000).toFixed(1)} s: ${report.problemCount === 0 ? "no problems" : `${report.problemCount} problem(s)`}`,
    );
  }
  return report.problemCount === 0 ? 0 : 1;
}

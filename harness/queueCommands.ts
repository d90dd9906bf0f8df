// `status` and `retry-failed`: look at or mend the queue of a dataset folder, from any process.
import fs from "node:fs";
import path from "node:path";
import { SqliteQueue } from "../server/queue/SqliteQueue.js";
import { QUEUE_FILE } from "../server/runFarm.js";

function openQueue(out: string): SqliteQueue {
  const file = path.join(path.resolve(out), QUEUE_FILE);
  if (!fs.existsSync(file)) throw new Error(`--out ${out}: no ${QUEUE_FILE} there; is it a tabfarm dataset folder?`);
  return new SqliteQueue(file);
}

export async function printStatus(out: string, log = (line: string) => console.log(line)): Promise<void> {
  const queue = openQueue(out);
  try {
    const c = await queue.counts();
    log(`${path.resolve(out)}: ${c.total} jobs — ${c.done} done, ${c.pending} pending, ${c.leased} leased, ${c.failed} failed`);
    log(`stale or foreign lease tokens rejected: ${c.staleRejections}`);
    const failures = await queue.failures();
    for (const f of failures.slice(0, 50)) log(`failed ${f.id} after ${f.attempts} attempt(s): ${f.error?.message ?? "(no message)"}`);
    if (failures.length > 50) log(`… and ${failures.length - 50} more failed jobs`);
  } finally {
    await queue.close();
  }
}

export async function retryFailed(out: string, log = (line: string) => console.log(line)): Promise<number> {
  const queue = openQueue(out);
  try {
    const n = await queue.retryFailed();
    log(`${n} failed job(s) returned to the queue; run the farm again with --out ${out} to render them`);
    return n;
  } finally {
    await queue.close();
  }
}

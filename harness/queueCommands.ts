// `status` and `retry-failed`: look at or mend the queue of a dataset folder.
// `status` only reads, so it takes no lock and works while a farm is writing the dataset.
// `retry-failed` changes the queue, so like a farm it takes the dataset's lock: SQLite alone would keep
// the queue consistent, but a running farm decides when it is finished from the queue it saw, and one
// writer per dataset is a rule with no exceptions to remember. While a farm runs it is refused with
// the holder's pid, host and since.
import path from "node:path";
import { inspectDataset, openDataset } from "../server/dataset/openDataset.js";

export async function printStatus(out: string, log = (line: string) => console.log(line)): Promise<void> {
  const { queue } = inspectDataset(out);
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
  const dataset = await openDataset(out, { create: false, log });
  try {
    const n = await dataset.queue.retryFailed();
    log(`${n} failed job(s) returned to the queue; run the farm again with --out ${out} to render them`);
    return n;
  } finally {
    await dataset.close();
  }
}

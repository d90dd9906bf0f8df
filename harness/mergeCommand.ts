// `merge SHARD... --into DIR [--link] [--dry-run]`: one dataset from the datasets several farm servers wrote
// for one job set (server/dataset/mergeShards.ts has the rules). This file is the command line's part: the
// signal handlers and what is printed. `--dry-run` is the multi-shard check: it verifies and locks every shard,
// and reports the jobs done in several shards (their (job, frame) pairs), the jobs done in none, and how class
// ids would move, writing nothing.
import { mergeShards, type MergeReport } from "../server/dataset/mergeShards.js";
import { FarmStopped, exitCodeFor, stopOnSignals } from "./shutdown.js";
import { withoutControlCharacters } from "./progressView.js";

export interface MergeCommandOptions {
  into?: string;
  link?: boolean;
  dryRun?: boolean;
}

/**
 * Runs `merge` as the CLI does; returns the exit code: 0 merged (or checked, with --dry-run), 128 + the signal's
 * number when stopped (what it wrote is removed). Refusals throw (the CLI prints them and exits 2).
 */
export async function mergeCommand(shards: string[], options: MergeCommandOptions, log = (line: string) => console.log(line), note = (line: string) => console.error(line)): Promise<number> {
  const signal = stopOnSignals(note, undefined, undefined, {
    stopping: "removing what this merge wrote",
    atOnce: "a staging folder .tabfarm-merge-* may be left beside the --into folder: remove it",
  });
  try {
    const report = await mergeShards({ shards, into: options.into, link: options.link, dryRun: options.dryRun, signal, note });
    for (const line of describeMerge(report)) log(withoutControlCharacters(line)); // ids and paths come from shards
    return 0;
  } catch (err) {
    if (!(err instanceof FarmStopped)) throw err;
    note(`tabfarm: merge ${err.message}; what it had written was removed`);
    return exitCodeFor(err.signal);
  }
}

/** The report in lines: per shard, classes that move, jobs in several shards and in none, the total. */
export function describeMerge(report: MergeReport): string[] {
  const lines: string[] = [];
  const verb = report.dryRun ? "would take" : "took";
  for (const s of report.shards) {
    lines.push(
      `merge: shard ${s.given}: ${s.jobsDone} job(s) done; ${verb} ${s.jobsTaken} job(s), ${s.framesTaken} frame(s); ` +
        `${s.duplicatesDropped} duplicate frame(s) dropped (their jobs are taken from an earlier shard)` +
        (s.unfinishedDropped ? `; ${s.unfinishedDropped} frame(s) of jobs it did not finish dropped` : ""),
    );
    if (s.classMoves.length) {
      lines.push(`merge: shard ${s.given}: class ids ${report.dryRun ? "would move" : "moved"} to the merged table: ${s.classMoves.map((m) => `'${m.label}' ${m.from} → ${m.to}`).join(", ")} (its lines' instances and class images rewritten)`);
    }
  }
  const { overlapping, leftOut } = report;
  if (overlapping.count > 0) {
    lines.push(`merge: ${overlapping.count} job(s) done in more than one shard (${overlapping.frames} (job, frame) pair(s) twice or more): ${overlapping.examples.join("; ")}${overlapping.count > overlapping.examples.length ? `; and ${overlapping.count - overlapping.examples.length} more` : ""}`);
  }
  if (leftOut.count > 0) {
    lines.push(`merge: ${leftOut.count} job(s) done in no shard, left out: ${leftOut.ids.join(", ")}${leftOut.count > leftOut.ids.length ? ` and ${leftOut.count - leftOut.ids.length} more` : ""}`);
  }
  for (const n of report.notes) lines.push(`merge: note: ${n}`);
  const classes = `${report.classes.length} class(es)`;
  const seed = report.seed !== undefined ? `, seed ${report.seed}` : "";
  if (report.dryRun) {
    lines.push(`merge: dry run: ${report.jobs} job(s), ${report.frames} frame(s) from ${report.shards.length} shard(s), ${classes}${seed}; nothing written`);
  } else {
    lines.push(`merge: ${report.into}: ${report.jobs} job(s), ${report.frames} frame(s) from ${report.shards.length} shard(s) (${report.linked ? "hard-linked" : "copied"}), ${classes}${seed}`);
  }
  return lines;
}

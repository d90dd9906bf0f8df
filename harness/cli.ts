#!/usr/bin/env node
// The tabfarm command line: `npm run farm -- [options]`, `npm run farm -- status --out DIR`,
// `npm run farm -- retry-failed --out DIR`, `npm run farm -- verify --out DIR [--json]`.
import os from "node:os";
import path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import type { GlBackend } from "./chromiumFlags.js";
import { glOption } from "./chooseGl.js";
import { argument, int } from "./cliArguments.js";
import { defaultBrowsers, relaunchAfterOption } from "./TabPool.js";
import { runHeadlessFarm, type FarmCommandOptions } from "./runHeadlessFarm.js";
import { printStatus, printVerify, retryFailed } from "./queueCommands.js";
import { runExport } from "./exportCommand.js";
import { addWorkerCommand } from "./workerCommand.js";
import { mergeCommand } from "./mergeCommand.js";
import { FarmStopped, exitCodeFor, stopOnSignals } from "./shutdown.js";
import { retryCommand, shellQuote, withoutControlCharacters } from "./progressView.js";
import { LIMITS } from "../protocol/grab.js";
import { LAYER_NAMES, parseLayerList } from "../protocol/layers.js";
import { RUN_DEFAULTS } from "../server/runDefaults.js";
import { readClassesOption } from "../server/dataset/RunManifest.js";
import { DEFAULT_FRAMES_PER_JOB, MAX_TEMPLATE_FRAMES } from "../server/jobs/templateJobs.js";
import { parseRunSeed } from "../server/dataset/seeds.js";
import { parseRedisQueueUrl, redactRedisUrl } from "../server/queue/RedisQueue.js";

const fraction = (value: string) => {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError("must be a number from 0 to 1");
  return n;
};
/**
 * --queue: only Redis URLs, checked here so a typo is a usage error (exit 2) naming the option; opening
 * checks the server. Not through InvalidArgumentError: commander would print the value, password and all.
 */
const checkQueueUrl = (value: string) => {
  try {
    parseRedisQueueUrl(value);
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    process.exit(2);
  }
  return value;
};
/** status and retry-failed work on a dataset (--out) or a shared queue (--queue): exactly one. */
function whichQueue(o: { out?: string; queue?: string }, command: Command): { out: string } | { queue: string } {
  if ((o.out === undefined) === (o.queue === undefined)) command.error("error: give either --out <dir> (a dataset) or --queue <url> (a shared queue)", { exitCode: 2 });
  return o.queue !== undefined ? { queue: o.queue } : { out: o.out! };
}
const timestamp = () => new Date().toISOString().replace(/[:.]/g, "-").replace(/-\d\dZ$/, "Z");

const program = new Command("tabfarm")
  .description("A render farm made of browser tabs: renders jobs in headless Chromium and writes a dataset.")
  .enablePositionalOptions()
  // Exit 1 means "jobs failed" (verify: "problems found"): a usage error (an unknown option, a bad value) exits 2
  // like other bad input. Subcommands inherit this; --help and --version exit 0.
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .addOption(new Option("--sessions <n>", "headless tabs to launch (one session each)").argParser(int("--sessions", 1, 256)).default(Math.max(1, Math.min(8, os.cpus().length))))
  // Measured (README, Benchmarks): on SwiftShader each browser has one GPU process that runs every GL call of
  // its tabs on one thread; two browsers for two tabs on 2 cores gave +13 % frames/s (median of 3).
  .addOption(new Option("--browsers <n>", "Chromium processes to spread the tabs over (default: one per core, at most one per tab)").argParser(int("--browsers", 1, 64)))
  .addOption(new Option("--demo <frames>", "frames of the built-in orbit demo (when no --jobs or --template)").argParser(int("--demo", 1, 10_000_000)).default(100))
  // No commander default: a template resume left without it keeps the dataset's cut (RunManifest); the demo uses DEFAULT_FRAMES_PER_JOB.
  .addOption(new Option("--frames-per-job <n>", `frames per job of --demo and --template (default ${DEFAULT_FRAMES_PER_JOB}; a template resume: the dataset's)`).argParser(int("--frames-per-job", 1, LIMITS.maxFramesPerJob)))
  .addOption(new Option("--jobs <file>", "jobs to render: a .jsonl file (one job per line) or a .ts/.js module exporting jobs").conflicts("template"))
  .addOption(new Option("--template <file>", "one job as a .json file, without id and frames (scene, settings, \"randomize\"), rendered --frames times").conflicts(["jobs", "demo"]))
  .addOption(new Option("--frames <n>", "frames to render from --template, in jobs of --frames-per-job").argParser(int("--frames", 1, MAX_TEMPLATE_FRAMES)))
  .addOption(new Option("--seed <n>", "the run's seed: every frame's randomizer draws derive from it, its job id and its index (default: the dataset's, else random and printed)").argParser(argument(parseRunSeed)))
  .option("--replace-pending", "on resume, jobs whose id is queued but whose spec was edited replace the queued spec if still pending", false)
  .option("--handler <file>", "a .ts/.js module exporting async (session, job) => {...} run for each job")
  .option("--plugins <file>", "a .ts/.tsx module that registers your own scene components (bundled into the client)")
  .option("--out <dir>", "dataset folder; re-running with the same folder resumes", undefined)
  .addOption(new Option("--queue <url>", "a job queue shared by several farm servers: redis://HOST:PORT[/DB][?queue=NAME]; --out is then this server's shard").env("TABFARM_QUEUE").argParser(checkQueueUrl))
  .addOption(new Option("--width <px>", "image width").argParser(int("--width", 1, LIMITS.maxImageSide)).default(RUN_DEFAULTS.width))
  .addOption(new Option("--height <px>", "image height").argParser(int("--height", 1, LIMITS.maxImageSide)).default(RUN_DEFAULTS.height))
  .addOption(new Option("--format <format>", "image format").choices(["png", "jpeg", "webp"]).default(RUN_DEFAULTS.format))
  .addOption(new Option("--layers <list>", `layers every frame writes, comma-separated: ${LAYER_NAMES.join(", ")} (default: rgb; a job's "layers" overrides)`).argParser(argument(parseLayerList)))
  .option("--depth", "add the depth layer: a 16-bit depth PNG per frame (millimetres along the camera axis)")
  .addOption(new Option("--classes <file|list>", "the class table: a JSON file ([\"car\",\"person\"] or {\"car\":1,\"person\":5}) or a comma list of labels; other labels get the next ids").argParser(argument(readClassesOption)))
  .addOption(new Option("--quality <q>", "jpeg/webp quality, 0..1").argParser(fraction))
  .option("--host <address>", "address to listen on (0.0.0.0 to let other machines connect)", RUN_DEFAULTS.host)
  .addOption(new Option("--port <port>", "port to listen on (0: any free port)").argParser(int("--port", 0, 65535)).default(0))
  .addOption(new Option("--token <token>", "access token tabs must present (default: random per run)").env("TABFARM_TOKEN"))
  .option("--headed", "show the browser windows", false)
  .addOption(glOption())
  .option("--browser <auto|system|bundled|path>", "which Chromium to launch: auto (CHROMIUM_PATH, Playwright's, the system's, then the bundled one), system, bundled, or a path (default: $TABFARM_BROWSER, else auto)")
  .option("--chromium-arg <flag>", "an extra Chromium flag (repeatable), e.g. --chromium-arg=--use-angle=metal", (v: string, all: string[]) => [...all, v], [] as string[])
  .option("--serve-only", "start the server, print the URL and wait for tabs opened by hand", false)
  .addOption(new Option("--lease-ttl <ms>", "job lease time-to-live; renewed by heartbeats while a job runs").argParser(int("--lease-ttl", 500, 86_400_000)).default(RUN_DEFAULTS.leaseTtlMs))
  .addOption(new Option("--max-attempts <n>", "takes of a job before it is marked failed").argParser(int("--max-attempts", 1, 1000)).default(RUN_DEFAULTS.maxAttempts))
  .addOption(new Option("--grab-timeout <ms>", "time a tab has to answer one grab").argParser(int("--grab-timeout", 100, 3_600_000)).default(RUN_DEFAULTS.grabTimeoutMs))
  .addOption(new Option("--max-frame-mb <mb>", "largest encoded frame accepted; larger ones are answered with an error").argParser(int("--max-frame-mb", 1, 1024)).default(RUN_DEFAULTS.maxFrameBytes / 2 ** 20))
  .addOption(new Option("--max-sessions <n>", "most sessions connected at once").argParser(int("--max-sessions", 1, 10_000)).default(RUN_DEFAULTS.maxSessions))
  .addOption(new Option("--encode <where>", "encode frames in the page (browser) or send raw pixels and encode on the server").choices(["browser", "server"]).default("browser"))
  .addOption(new Option("--png-level <0-9>", "zlib level of PNGs encoded on the server (lossless at every level)").argParser(int("--png-level", 0, 9)).default(RUN_DEFAULTS.pngLevel))
  .addOption(new Option("--recycle-after <frames>", "replace a launched tab after it has rendered this many frames (0: never)").argParser(int("--recycle-after", 0, 100_000_000)).default(RUN_DEFAULTS.recycleAfterFrames))
  .addOption(relaunchAfterOption())
  .addOption(new Option("--in-flight <n>", "grabs in flight per session").argParser(int("--in-flight", 1, 64)).default(RUN_DEFAULTS.inFlight))
  .option("--no-progress", "no progress bar or progress lines")
  .option("--verbose", "print browser console errors", false)
  .action(async (raw, command: Command) => {
    if (raw.template && raw.frames === undefined) command.error("error: --template needs --frames <n> (how many frames to render)", { exitCode: 2 });
    if (raw.frames !== undefined && !raw.template) command.error("error: --frames counts the frames of a --template; give one (or use --demo <frames>)", { exitCode: 2 });
    if (raw.framesPerJob !== undefined && raw.jobs) command.error("error: --frames-per-job cuts --demo and --template frames into jobs; a --jobs file's jobs list their own frames", { exitCode: 2 });
    const options: FarmCommandOptions = {
      ...raw,
      gl: raw.gl as GlBackend,
      browsers: raw.browsers ?? defaultBrowsers(raw.sessions),
      out: raw.out ?? path.join("out", timestamp()),
    };
    // SIGINT, SIGTERM, SIGHUP: stop gracefully, exit 128 + the signal's number; a second one exits at once.
    const stop = stopOnSignals((line) => console.error(line));
    let summary;
    try {
      summary = await runHeadlessFarm(options, undefined, stop);
    } catch (err) {
      if (!(err instanceof FarmStopped)) throw err;
      console.error(
        `tabfarm: ${err.message}; ${err.released} running job(s) went back to the queue without counting an attempt. ` +
          `Run the same command with --out ${options.out} to resume.`,
      );
      process.exitCode = exitCodeFor(err.signal);
      return;
    }
    const c = summary.counts;
    console.log(
      `tabfarm: ${summary.frames} frames in ${summary.seconds.toFixed(1)} s (${summary.framesPerSecond.toFixed(1)} frames/s); ` +
        `jobs: ${c.done} done, ${c.failed} failed of ${c.total}; dataset: ${summary.out}`,
    );
    if (c.failed > 0) {
      console.error(`tabfarm: ${c.failed} job(s) failed:`);
      for (const job of summary.failedJobs) {
        console.error(withoutControlCharacters(`  ${job.id} after ${job.attempts} attempt(s): ${job.error?.message ?? "(no message)"}`));
      }
      const where = options.queue === undefined ? `--out ${shellQuote(summary.out)}` : `--queue ${shellQuote(redactRedisUrl(options.queue))}`;
      if (c.failed > summary.failedJobs.length) console.error(`  … and ${c.failed - summary.failedJobs.length} more: npm run farm -- status ${where}`);
      console.error(`tabfarm: to render them again: ${retryCommand(process.argv.slice(2), summary.out, options.queue)}`);
      process.exitCode = 1;
    }
  });

program
  .command("status")
  .description("counts per state, attempts and failures of a dataset's queue, or (--queue) of a queue shared by several servers")
  .option("--out <dir>", "dataset folder")
  .addOption(new Option("--queue <url>", "a shared queue (redis://…): the whole run's counts and failures").argParser(checkQueueUrl))
  .action(async (o, command: Command) => printStatus(whichQueue(o, command)));

program
  .command("retry-failed")
  .description("put failed jobs back in the queue (run the farm again with the same --out, or the servers of a --queue, to render them)")
  .option("--out <dir>", "dataset folder")
  .addOption(new Option("--queue <url>", "a shared queue (redis://…)").argParser(checkQueueUrl))
  .action(async (o, command: Command) => void (await retryFailed(whichQueue(o, command))));

program
  .command("verify")
  .description(
    "check a dataset: every line's files exist inside it and decode at their size, channels and bit depth, no (job, frame) twice, " +
      "every done job has all its frames, masks use only the ids their line names. Exit 0: no problems, 1: problems (listed), 2: not a dataset",
  )
  .requiredOption("--out <dir>", "dataset folder")
  .option("--json", "print the report as one JSON object (the first 1000 problems, all counted)", false)
  .action(async (o) => void (process.exitCode = await printVerify(o.out, { json: o.json })));

program
  .command("export")
  .description(
    "write a dataset that `verify` passes as WebDataset .tar shards (one sample per frame) and/or COCO detection JSON. " +
      "It takes the dataset's lock: refused while a farm runs on the dataset, and a farm started during it is refused. " +
      "Exit 0: written, 1: the dataset has problems (listed; nothing written), 2: bad options or targets, not a dataset, a farm holds the dataset, or the export could not be written; " +
      "128 + the signal's number when stopped by SIGINT, SIGTERM or SIGHUP (what it had not finished is removed)",
  )
  .requiredOption("--out <dir>", "dataset folder")
  .option("--webdataset <dir>", "write shards shard-000000.tar … into this folder (created if missing; not inside --out)")
  .option("--shard-size <size>", "largest shard: bytes or e.g. 500MB, 1GB, 64MiB (1KB to 1TB; a bigger sample gets a shard of its own)", "1GB")
  .option("--coco <file>", "write COCO detection JSON (images, annotations with bbox, area and RLE mask, categories) to this file (not inside --out)")
  .option("--overwrite", "remove the shard-*.tar files already in the --webdataset folder, and replace an existing --coco file", false)
  .action(async (o) => {
    // A signal stops the export and its cleanup runs: no shard, no partial file, no folder it created is left.
    const signal = stopOnSignals((line) => console.error(line), undefined, undefined, {
      stopping: "removing what this export wrote",
      atOnce: "a staging folder .tabfarm-export-* and the lock .tabfarm-export.lock may be left in the --webdataset folder, the lock FILE.lock beside the --coco FILE; the next export there removes them",
    });
    try {
      process.exitCode = await runExport({ ...o, signal });
    } catch (err) {
      if (!(err instanceof FarmStopped)) throw err;
      console.error(`tabfarm: export ${err.message}; what it had not finished was removed`);
      process.exitCode = exitCodeFor(err.signal);
    }
  });

program
  .command("merge")
  .description(
    "merge datasets that several farm servers wrote for one job set (shards) into one: each job whole from the first shard where it is done, " +
      "class ids made one table, files copied (or --link). Each shard is verified and locked first. Exit 0: merged, 2: refused (named), 128 + the signal's number when stopped",
  )
  .argument("<shards...>", "dataset folders, in order of preference")
  .option("--into <dir>", "the merged dataset: a new or empty folder, apart from every shard")
  .option("--link", "hard-link files instead of copying them (same file system)", false)
  .option("--dry-run", "verify the shards and report overlaps, jobs done nowhere and class moves; write nothing", false)
  .action(async (shards: string[], o) => void (process.exitCode = await mergeCommand(shards, o)));

// `worker --connect http://HOST:PORT`: headless tabs here as sessions of a farm server elsewhere.
addWorkerCommand(program);

program.parseAsync(process.argv).then(
  () => process.exit(process.exitCode ?? 0),
  (err: Error) => {
    console.error(`tabfarm: ${err.message}`);
    process.exit(2);
  },
);

// In-process farm for fault tests: a real run (server, SQLite queue, dataset) in a fresh temp --out,
// real headless Chromium tabs from TabPool wired exactly as harness/runHeadlessFarm.ts wires them
// (hung sessions → pool.recycle), every log line kept, and a dataset checker.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { PNG } from "pngjs";
import { startRun, QUEUE_FILE, type Run, type RunSummary } from "../../server/runFarm.js";
import { demoJobs } from "../../server/jobs/demoJobs.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { recordFiles } from "../../server/dataset/readDataset.js";
import type { JobSpec } from "../../protocol/job.js";
import { buildClient } from "../../harness/buildClient.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { TabPool } from "../../harness/TabPool.js";
import { farmTabSignals } from "../../harness/tabLifecycle.js";
import { readFrames } from "./cli.js";

export interface StartFarmOptions {
  /** Headless tabs in the pool (default 2). */
  tabs?: number;
  browsers?: number;
  /** Launch the tabs now (default true); otherwise call `startTabs()` later. */
  launchTabs?: boolean;
  /** Demo frames and frames per job (default 24 / 4: 6 jobs). */
  frames?: number;
  framesPerJob?: number;
  /** Image size (default 160×120). */
  width?: number;
  height?: number;
  inFlight?: number;
  grabTimeoutMs?: number;
  leaseTtlMs?: number;
  maxAttempts?: number;
  maxWriteStallMs?: number;
  /** Runs on the empty --out folder before the run opens it (e.g. to plant a fault). */
  prepareOut?: (out: string) => void;
  /** Echo log lines to stderr as they come (also on with TABFARM_TEST_VERBOSE=1). */
  echo?: boolean;
}

export interface FarmUnderTest {
  run: Run;
  pool: TabPool;
  out: string;
  /** Every log line of the run and the pool, in order. */
  logs: string[];
  jobs: JobSpec[];
  /** Every (job, frame) the run must produce, as "job/frame". */
  expectedIds: string[];
  /** Frames of completed jobs so far (from the run's job.done events). */
  frames(): number;
  /** Resolves once `n` frames of completed jobs are in; rejects after `timeoutMs`. */
  waitForFrames(n: number, timeoutMs?: number): Promise<void>;
  /**
   * Resolves with the first log line matching `pattern` at index `since` or later of `logs` (already
   * logged or to come); rejects after `timeoutMs`.
   */
  waitForLog(pattern: RegExp, timeoutMs?: number, since?: number): Promise<string>;
  /** Log lines matching `pattern`. */
  logged(pattern: RegExp): string[];
  /** run.finished (already has a handler attached, so a rejection is never unhandled). */
  finished: Promise<RunSummary>;
  /** run.finished with a deadline: its own result or rejection, or a timeout error with the log. */
  finishedWithin(timeoutMs?: number): Promise<RunSummary>;
  /** Launches the pool's tabs (when started with launchTabs: false). */
  startTabs(): Promise<void>;
  /** Rows of the queue's jobs table (read-only, a separate connection). */
  jobRows(): JobRow[];
  /** Stops the run, closes the browsers and removes the temp folder. Safe to call twice. */
  close(): Promise<void>;
}

export interface JobRow {
  id: string;
  state: string;
  attempts: number;
  owner: string | null;
  error_message: string | null;
}

let clientDir: Promise<string> | undefined;
const tempDirs = new Set<string>();

process.once("exit", () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

export { readFrames };

export async function startFarm(options: StartFarmOptions = {}): Promise<FarmUnderTest> {
  const echo = options.echo ?? process.env.TABFARM_TEST_VERBOSE === "1";
  const logs: string[] = [];
  const listeners = new Set<() => void>();
  const t0 = performance.now();
  const log = (line: string) => {
    logs.push(line);
    if (echo) process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(2)}s] ${line}\n`);
    for (const l of listeners) l();
  };

  clientDir ??= buildClient({ log });
  const dir = await clientDir;
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-fault-"));
  tempDirs.add(out);
  options.prepareOut?.(out);

  const width = options.width ?? 160;
  const height = options.height ?? 120;
  const jobs = [...demoJobs(options.frames ?? 24, options.framesPerJob ?? 4)];
  const expectedIds = jobs.flatMap((j) => (j.frames ?? [{}]).map((_, i) => `${j.id}/${i}`));

  let frames = 0;
  const run = await startRun({
    out, clientDir: dir, jobs, width, height, format: "png",
    inFlight: options.inFlight, grabTimeoutMs: options.grabTimeoutMs, leaseTtlMs: options.leaseTtlMs,
    maxAttempts: options.maxAttempts, maxWriteStallMs: options.maxWriteStallMs,
    log,
  });
  run.events.subscribe((event) => {
    if (event.type !== "job.done") return;
    frames += event.frames;
    for (const l of listeners) l();
  });
  // Never an unhandled rejection: tests read it through finished().
  run.finished.catch(() => {});

  const browser = findBrowser();
  const pool = new TabPool({ executablePath: browser.path, gl: "swiftshader", url: run.url, proveLaunched: (worker) => run.farm.launchedTabProof(worker), tabs: options.tabs ?? 2, browsers: options.browsers, log });
  // Exactly as runHeadlessFarm: a session dropped as hung gets its tab replaced (and a retired one too).
  farmTabSignals(run.farm).recycle((order) => pool.recycle(order.tab, order.reason, order.fault));

  const until = <T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const now = check();
      if (now !== undefined) return resolve(now);
      const listener = () => {
        const value = check();
        if (value === undefined) return;
        done();
        resolve(value);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; log:\n${logs.join("\n")}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(listener);
      };
      listeners.add(listener);
    });

  let db: Database.Database | undefined;
  let closed = false;
  const farm: FarmUnderTest = {
    run, pool, out, logs, jobs, expectedIds,
    frames: () => frames,
    waitForFrames: (n, timeoutMs = 60_000) => until(() => (frames >= n ? true : undefined), timeoutMs, `${n} frames (have ${frames})`).then(() => {}),
    waitForLog: (pattern, timeoutMs = 30_000, since = 0) =>
      until(() => logs.slice(since).find((l) => pattern.test(l)), timeoutMs, `a log line matching ${pattern}${since ? ` after line ${since}` : ""}`),
    logged: (pattern) => logs.filter((l) => pattern.test(l)),
    finished: run.finished,
    finishedWithin: (timeoutMs = 90_000) => {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([
        run.finished,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`run did not finish within ${timeoutMs} ms; log:\n${logs.join("\n")}`)), timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer));
    },
    startTabs: () => pool.start(),
    jobRows: () => {
      db ??= new Database(path.join(out, QUEUE_FILE), { readonly: true, fileMustExist: true });
      return db.prepare(`SELECT id, state, attempts, owner, error_message FROM jobs ORDER BY seq`).all() as JobRow[];
    },
    async close() {
      if (closed) return;
      closed = true;
      db?.close();
      await withTimeout(run.close(), 10_000, "run.close()");
      await withTimeout(pool.close(), 15_000, "pool.close()");
      fs.rmSync(out, { recursive: true, force: true });
      tempDirs.delete(out);
    },
  };
  if (options.launchTabs !== false) await pool.start();
  return farm;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T | void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        process.stderr.write(`farmHarness: ${what} did not settle within ${ms} ms; going on\n`);
        resolve();
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Files under `out` whose name ends in .tmp (an interrupted atomic write would leave one). */
export function tempFiles(out: string): string[] {
  return (fs.readdirSync(out, { recursive: true }) as string[]).map(String).filter((n) => n.endsWith(".tmp"));
}

/**
 * The dataset is exactly right: frames.jsonl has one line per expected (job, frame) and no other,
 * every rgb image it names decodes as a PNG of the line's size (and the expected size), no temp files
 * are left, and no file exists under images/ that no line names (any layer). Returns the records.
 * (`verify`, server/dataset/verifyDataset.ts, checks every layer's file in depth; this checks the run.)
 */
export function checkDataset(out: string, expectedIds: string[], size?: { width: number; height: number }): FrameRecord[] {
  const records = readFrames(out);
  const ids = records.map((r) => `${r.job}/${r.frame}`);
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  const repeated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  assert.deepEqual(repeated, [], "no (job, frame) appears twice in frames.jsonl");
  assert.deepEqual([...ids].sort(), [...expectedIds].sort(), "frames.jsonl has exactly the expected (job, frame) lines");
  for (const r of records) {
    const file = path.join(out, r.file);
    assert.ok(fs.existsSync(file), `${r.file} exists`);
    const png = PNG.sync.read(fs.readFileSync(file));
    assert.deepEqual([png.width, png.height], [r.width, r.height], `${r.file} decodes at the size its line says`);
    if (size) assert.deepEqual([png.width, png.height], [size.width, size.height], `${r.file} has the requested size`);
  }
  const named = records.flatMap((r) => recordFiles(r).map((f) => f.path));
  assert.deepEqual(tempFiles(out), [], "no temp files left behind");
  const images = fs.existsSync(path.join(out, "images"))
    ? (fs.readdirSync(path.join(out, "images"), { recursive: true }) as string[])
        .map((n) => path.posix.join("images", String(n).split(path.sep).join("/")))
        .filter((n) => fs.statSync(path.join(out, n)).isFile())
    : [];
  assert.deepEqual(images.sort(), named.sort(), "every image file is named by exactly one line");
  return records;
}

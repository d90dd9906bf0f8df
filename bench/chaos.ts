// Chaos bench: render a demo job set with the real CLI (a detached child process) and, while it runs,
// SIGKILL tabs (the child's Chromium renderer processes) and the whole farm (its process group, then
// restart it with the same --out), at seeded-random moments. At the end the CLI is run until it exits
// 0, and the dataset is checked: frames expected / written / duplicated / corrupt, kills survived,
// and the time lost against an undisturbed run of the same job set measured in the same bench run.
//
//   npx tsx bench/chaos.ts [--frames N] [--kills N] [--restarts N] [--sessions N] [--seed N] [--quick] [--no-baseline] [--keep]
//   npm run bench -- chaos [--quick]
//
// Standalone, the last line of output is one JSON object with the figures. Linux only (/proc).
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { PNG } from "pngjs";
import { demoJobs } from "../server/jobs/demoJobs.js";
import { buildClient } from "../harness/buildClient.js";
import { countFrameLines, readFrameLines } from "../server/dataset/readDataset.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLI = path.join(REPO, "harness/cli.ts");
const FRAMES_PER_JOB = 5;
const WIDTH = 160;
const HEIGHT = 120;

export interface ChaosOptions {
  /** Demo frames to render (default 200; quick 60). */
  frames?: number;
  /** Tab (renderer) kills (default 4; quick 2). */
  kills?: number;
  /** SIGKILLs of the whole farm, each followed by a restart with the same --out (default 2; quick 1). */
  restarts?: number;
  /** Headless tabs (default 3). */
  sessions?: number;
  quick?: boolean;
  /** PRNG seed for the kill schedule and targets (default 1). */
  seed?: number;
  /** Measure an undisturbed run first for "time lost" (default true). */
  baseline?: boolean;
  /** Keep the datasets and logs (their folder is printed). */
  keep?: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Print the table (default true). */
  print?: boolean;
  /** Give up on one CLI run after this long (default 300 000 ms). */
  runTimeoutMs?: number;
  /**
   * Longest wait between two events (each drawn in [0.5, 1.5] × this; default 2000 ms): events fire at
   * frame marks, or after this gap when the marks are not reached (slow run, or right after a restart).
   */
  maxGapMs?: number;
  /** A farm whose dataset and log do not move for this long is killed and restarted (default 60 000 ms). */
  stallMs?: number;
}

// ---------- seeded PRNG ----------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------- processes via /proc ----------

interface Proc {
  pid: number;
  ppid: number;
  /** Start time in clock ticks since boot: with the pid, names one process (pids are reused). */
  start: string;
  /** utime + stime, clock ticks. */
  ticks: number;
}

function readProc(pid: number): Proc | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    // Fields after "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime … starttime(20th)
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { pid, ppid: Number(f[1]), start: f[19], ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

/** Every live descendant of `root` (not root itself), found by scanning /proc/<pid>/stat for ppid. */
export function descendants(root: number): Proc[] {
  const byParent = new Map<number, Proc[]>();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProc(Number(name));
    if (!p) continue;
    const list = byParent.get(p.ppid);
    if (list) list.push(p);
    else byParent.set(p.ppid, [p]);
  }
  const out: Proc[] = [];
  const queue = [root];
  for (let guard = 0; queue.length && guard < 100_000; guard++) {
    for (const child of byParent.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}

/** SIGKILLs `p` only if that pid still names the same process. */
function killExact(p: Proc): boolean {
  const now = readProc(p.pid);
  if (!now || now.start !== p.start) return false;
  try {
    process.kill(p.pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

const alive = (p: Proc) => readProc(p.pid)?.start === p.start;

/** The tabs' renderer processes of a farm child: `--type=renderer`, not Chromium's own WebUI renderers. */
function tabRenderers(root: number): Proc[] {
  return descendants(root).filter((p) => {
    const cmd = cmdline(p.pid);
    return cmd.includes("--type=renderer") && !cmd.includes("--top-chrome-webui") && !cmd.includes("--extension-process");
  });
}

// ---------- the CLI as a detached child ----------

class FarmChild {
  readonly child: ChildProcess;
  output = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly startedAt = performance.now();

  constructor(args: string[], logFile: string) {
    this.child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
      cwd: REPO, stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, FORCE_COLOR: "0" },
    });
    live.add(this);
    const take = (d: Buffer) => {
      const text = d.toString();
      this.output += text;
      fs.appendFileSync(logFile, text);
    };
    this.child.stdout!.on("data", take);
    this.child.stderr!.on("data", take);
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first tab rendered: tabs are up (TabPool.start has returned). */
  get ready(): boolean {
    return /WebGL renderer of the first tab/.test(this.output);
  }

  /** SIGKILLs the CLI's process group and every process below it (Chromium runs in a group of its own). */
  async killAll(): Promise<void> {
    const below = descendants(this.pid);
    try {
      process.kill(-this.pid, "SIGKILL"); // the group of the child we spawned detached
    } catch {}
    for (const p of below) killExact(p);
    await this.exited;
    for (let i = 0; i < 100 && below.some(alive); i++) await sleep(50);
  }
}

const live = new Set<FarmChild>();
const killLive = () => {
  for (const c of live) {
    try {
      process.kill(-c.pid, "SIGKILL");
    } catch {}
  }
};
process.once("exit", killLive);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Like waitExit, but resolves null when neither frames.jsonl nor the output grew for `stallMs`. */
async function waitExitOrStall(c: FarmChild, out: string, stallMs: number, timeoutMs: number, what: string) {
  const until = Date.now() + timeoutMs;
  let mark = `${await countFrameLines(out)}/${c.output.length}`;
  let since = Date.now();
  while (!c.exit && Date.now() < until) {
    await Promise.race([c.exited, sleep(250)]);
    const now = `${await countFrameLines(out)}/${c.output.length}`;
    if (now !== mark) [mark, since] = [now, Date.now()];
    else if (Date.now() - since > stallMs) return null;
  }
  return c.exit ?? waitExit(c, 0, what);
}

async function waitExit(c: FarmChild, timeoutMs: number, what: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
  const result = await Promise.race([c.exited, timeout]);
  clearTimeout(timer);
  if (result) return result;
  await c.killAll();
  throw new Error(`${what}: the farm did not finish within ${timeoutMs} ms; last output:\n${c.output.slice(-3000)}`);
}

// ---------- dataset check ----------

export interface DatasetCheck {
  expected: number;
  written: number;
  duplicated: number;
  corrupt: number;
  missing: number;
  unexpected: number;
  badLines: number;
  tmpFiles: number;
  problems: string[];
}

export function expectedFrames(frames: number, perJob = FRAMES_PER_JOB): Set<string> {
  const keys = new Set<string>();
  for (const job of demoJobs(frames, perJob)) job.frames!.forEach((_, i) => keys.add(`${job.id}/${i}`));
  return keys;
}

export async function checkDataset(out: string, expected: Set<string>, size = { width: WIDTH, height: HEIGHT }): Promise<DatasetCheck> {
  const problems: string[] = [];
  const note = (p: string) => void (problems.length < 20 && problems.push(p));
  const seen = new Map<string, { count: number; record: { file?: string; width?: number; height?: number } }>();
  let badLines = 0;
  for await (const { line, record, error } of readFrameLines(out)) {
    if (!record) {
      badLines++;
      note(`frames.jsonl:${line}: ${error}`);
      continue;
    }
    const key = `${record.job}/${record.frame}`;
    const entry = seen.get(key);
    if (entry) {
      entry.count++;
      entry.record = record;
    } else seen.set(key, { count: 1, record });
  }
  let duplicated = 0;
  let corrupt = 0;
  let written = 0;
  let unexpected = 0;
  for (const [key, { count, record }] of seen) {
    if (count > 1) {
      duplicated += count - 1;
      note(`${key} appears ${count} times`);
    }
    if (expected.has(key)) written++;
    else {
      unexpected++;
      note(`unexpected frame ${key}`);
    }
    const file = record.file ? path.join(out, record.file) : "";
    try {
      if (!file || !fs.existsSync(file)) throw new Error("file missing");
      const png = PNG.sync.read(fs.readFileSync(file));
      if (png.width !== size.width || png.height !== size.height || record.width !== size.width || record.height !== size.height) {
        throw new Error(`is ${png.width}×${png.height} (line says ${record.width}×${record.height}), expected ${size.width}×${size.height}`);
      }
    } catch (err) {
      corrupt++;
      note(`${key} (${record.file}): ${(err as Error).message}`);
    }
  }
  const missing = [...expected].filter((k) => !seen.has(k));
  for (const k of missing.slice(0, 5)) note(`missing ${k}`);
  const tmpFiles = fs.existsSync(out)
    ? fs.readdirSync(out, { recursive: true }).map(String).filter((n) => n.endsWith(".tmp")).length
    : 0;
  return { expected: expected.size, written, duplicated, corrupt, missing: missing.length, unexpected, badLines, tmpFiles, problems };
}

// ---------- the bench ----------

/** Fires once frames.jsonl has `atFrames` lines or `maxGapMs` after the previous event (or the tabs coming up). */
type ChaosEvent = { kind: "tab" | "restart"; atFrames: number; maxGapMs: number };

export async function benchChaos(opts: ChaosOptions = {}): Promise<Record<string, number>> {
  const quick = Boolean(opts.quick);
  const frames = opts.frames ?? (quick ? 60 : 200);
  const kills = opts.kills ?? (quick ? 2 : 4);
  const restarts = opts.restarts ?? (quick ? 1 : 2);
  const sessions = opts.sessions ?? 3;
  const seed = opts.seed ?? 1;
  const runTimeoutMs = opts.runTimeoutMs ?? 300_000;
  const stallMs = opts.stallMs ?? 60_000;
  const maxGapMs = opts.maxGapMs ?? 2000;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const rng = mulberry32(seed);
  const expected = expectedFrames(frames);

  await buildClient({ log }); // once, here, so no timed run includes a client build
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-chaos-"));
  const cliArgs = (out: string) => [
    "--sessions", String(sessions), "--demo", String(frames), "--frames-per-job", String(FRAMES_PER_JOB),
    "--width", String(WIDTH), "--height", String(HEIGHT), "--out", out, "--no-progress",
  ];
  const figures: Record<string, number> = { seed, frames, sessions };
  try {
    // 1. The undisturbed run of the same job set.
    let baselineS: number | undefined;
    if (opts.baseline ?? true) {
      const out = path.join(root, "baseline");
      const c = new FarmChild(cliArgs(out), path.join(root, "baseline.log"));
      const { code } = await waitExit(c, runTimeoutMs, "baseline");
      baselineS = (performance.now() - c.startedAt) / 1000;
      if (code !== 0) throw new Error(`the undisturbed run exited ${code}:\n${c.output.slice(-3000)}`);
      const check = await checkDataset(out, expected);
      log(`chaos: baseline ${frames} frames in ${baselineS.toFixed(1)} s (written ${check.written}/${check.expected})`);
    }

    // 2. The disturbed run. Events fire as frames.jsonl grows past seeded-random marks spread over the
    // first 60% of the job set, or after a seeded-random gap (so a short run still gets its chaos
    // while it lasts), counted from the previous event or from the tabs coming up after a restart.
    const out = path.join(root, "chaos");
    const logFile = path.join(root, "chaos.log");
    const kinds: Array<ChaosEvent["kind"]> = [...Array(kills).fill("tab"), ...Array(restarts).fill("restart")];
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j], kinds[i]];
    }
    const plan: ChaosEvent[] = kinds.map((kind, i) => ({
      kind,
      atFrames: Math.floor(frames * 0.6 * ((i + rng()) / Math.max(1, kinds.length))),
      maxGapMs: Math.round(maxGapMs * (0.5 + rng())),
    }));
    const started = performance.now();
    const children: FarmChild[] = [];
    const start = () => {
      const c = new FarmChild(cliArgs(out), logFile);
      children.push(c);
      return c;
    };
    let child = start();
    let tabKills = 0;
    let restartsDone = 0;
    let skipped = 0;
    const deadline = Date.now() + runTimeoutMs;
    let lastEvent = 0; // when the previous event fired, or the tabs of the current child came up
    for (const event of plan) {
      // Wait for the mark or the gap (or for the run to end by itself: then the rest of the plan is skipped).
      for (;;) {
        if (child.exit || Date.now() >= deadline) break;
        if (child.ready) {
          if (!lastEvent) lastEvent = Date.now();
          if ((await countFrameLines(out)) >= event.atFrames || Date.now() - lastEvent >= event.maxGapMs) break;
        }
        await sleep(25);
      }
      if (child.exit || Date.now() >= deadline) {
        skipped++;
        continue;
      }
      lastEvent = Date.now();
      const at = await countFrameLines(out);
      if (event.kind === "tab") {
        // A renderer that is working: the busiest ones are the tabs (a fresh spare renderer is idle).
        let victim: Proc | undefined;
        for (let i = 0; i < 60 && !victim && !child.exit; i++) {
          const busy = tabRenderers(child.pid).sort((a, b) => b.ticks - a.ticks).slice(0, sessions);
          if (busy.length) victim = busy[Math.floor(rng() * busy.length)];
          else await sleep(50);
        }
        if (victim && killExact(victim)) {
          tabKills++;
          log(`chaos: SIGKILL renderer ${victim.pid} (tab kill ${tabKills}/${kills}) at ${at}/${frames} frames`);
        } else skipped++;
      } else {
        await child.killAll();
        restartsDone++;
        log(`chaos: SIGKILL farm process group ${child.pid} (restart ${restartsDone}/${restarts}) at ${at}/${frames} frames`);
        child = start();
        lastEvent = 0; // the next gap counts from the new tabs coming up
      }
    }

    // 3. Run the CLI until it exits 0 (failed jobs are put back with retry-failed first). A farm that
    // makes no progress for stallMs (e.g. it lost every tab) is killed and started again, and counted.
    let stalls = 0;
    const finish = async (c: FarmChild, timeoutMs: number, what: string) => {
      const result = await waitExitOrStall(c, out, stallMs, timeoutMs, what);
      if (result) return result;
      stalls++;
      log(`chaos: no progress for ${stallMs / 1000} s; SIGKILL the farm (stall ${stalls})`);
      await c.killAll();
      return c.exit!;
    };
    let last = await finish(child, Math.max(10_000, deadline - Date.now()), "chaos run");
    let finishRuns = 0;
    let retried = 0;
    while (last.code !== 0 && finishRuns < 4) {
      finishRuns++;
      if (last.code === 1) {
        const r = new FarmChild(["retry-failed", "--out", out], logFile);
        await waitExit(r, 60_000, "retry-failed");
        retried++;
      }
      log(`chaos: the farm exited ${last.code ?? last.signal}; running it again with the same --out`);
      child = start();
      last = await finish(child, runTimeoutMs, "finishing run");
    }
    const chaosS = (performance.now() - started) / 1000;
    if (last.code !== 0) throw new Error(`the farm did not exit 0 after ${finishRuns} more run(s):\n${child.output.slice(-3000)}`);

    const output = children.map((c) => c.output).join("\n");
    const recovered = (output.match(/tab \d+ crashed; opening a replacement/g) ?? []).length;
    const replacementsFailed = (output.match(/could not open a replacement/g) ?? []).length;
    // A pool that hit its replacement limit leaves its lost tabs closed for the rest of that run.
    const tabsLost = (output.match(/gave up replacing tabs/g) ?? []).length;
    // Jobs dead-lettered by a run (max attempts: farm and tab kills count as attempts of the jobs they hit).
    const deadLettered = [...output.matchAll(/tabfarm: (\d+) job\(s\) failed/g)].reduce((n, m) => n + Number(m[1]), 0);
    const check = await checkDataset(out, expected);
    Object.assign(figures, {
      frames_expected: check.expected,
      frames_written: check.written,
      frames_duplicated: check.duplicated,
      frames_corrupt: check.corrupt,
      frames_missing: check.missing,
      frames_unexpected: check.unexpected,
      bad_lines: check.badLines,
      tmp_files_left: check.tmpFiles,
      tab_kills: tabKills,
      tab_crashes_seen: recovered,
      replacements_failed: replacementsFailed,
      tabs_lost: tabsLost,
      stalls,
      restarts: restartsDone,
      kills_survived: tabKills + restartsDone,
      events_skipped: skipped,
      cli_runs: children.length,
      finishing_runs: finishRuns,
      retry_failed_runs: retried,
      jobs_dead_lettered: deadLettered,
      chaos_s: chaosS,
      ...(baselineS !== undefined ? { baseline_s: baselineS, time_lost_s: chaosS - baselineS } : {}),
      ok: check.written === check.expected && check.duplicated === 0 && check.corrupt === 0 && check.unexpected === 0 ? 1 : 0,
    });
    if (opts.print ?? true) printTable(figures, check.problems);
    if (opts.keep) log(`chaos: datasets and logs kept in ${root}`);
    return figures;
  } finally {
    killLive();
    if (!opts.keep) fs.rmSync(root, { recursive: true, force: true });
  }
}

function printTable(f: Record<string, number>, problems: string[]): void {
  const s = (v: number | undefined, digits = 0) => (v === undefined ? "-" : v.toFixed(digits));
  const rows: Array<[string, string, string]> = [
    ["frames expected", s(f.frames_expected), ""],
    ["frames written", s(f.frames_written), f.frames_written === f.frames_expected ? "= expected" : "MISSING FRAMES"],
    ["duplicated (job, frame)", s(f.frames_duplicated), f.frames_duplicated === 0 ? "" : "TARGET 0"],
    ["corrupt (missing / bad png)", s(f.frames_corrupt), f.frames_corrupt === 0 ? "" : "TARGET 0"],
    ["unexpected / bad lines", `${s(f.frames_unexpected)} / ${s(f.bad_lines)}`, ""],
    ["temp files left", s(f.tmp_files_left), ""],
    ["tab kills (crashes seen)", `${s(f.tab_kills)} (${s(f.tab_crashes_seen)})`, ""],
    ["replacements that failed to open", s(f.replacements_failed), f.replacements_failed ? "the kill hit a replacement while it opened" : ""],
    ["tabs lost (not replaced again)", s(f.tabs_lost), f.tabs_lost ? "TabPool gave up on them for that run" : ""],
    ["farm restarts (stalls)", `${s(f.restarts)} (${s(f.stalls)})`, ""],
    ["kills survived", s(f.kills_survived), f.events_skipped ? `${f.events_skipped} planned event(s) skipped` : ""],
    ["CLI runs (finishing)", `${s(f.cli_runs)} (${s(f.finishing_runs)})`, ""],
    ["jobs dead-lettered, then retried", s(f.jobs_dead_lettered), f.jobs_dead_lettered ? "hit max attempts by kills; retry-failed + rerun" : ""],
    ["wall time, chaos", `${s(f.chaos_s, 1)} s`, ""],
    ["wall time, undisturbed", f.baseline_s === undefined ? "-" : `${s(f.baseline_s, 1)} s`, ""],
    ["time lost", f.time_lost_s === undefined ? "-" : `${s(f.time_lost_s, 1)} s`, ""],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  console.log(`chaos bench: ${f.frames} frames, ${f.sessions} tabs, seed ${f.seed}`);
  for (const [a, b, c] of rows) console.log(`  ${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`.trimEnd());
  for (const p of problems) console.log(`  ! ${p}`);
}

// ---------- standalone ----------

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (isMain) {
  const { values } = parseArgs({
    options: {
      frames: { type: "string" }, kills: { type: "string" }, restarts: { type: "string" }, sessions: { type: "string" },
      seed: { type: "string" }, quick: { type: "boolean" }, "no-baseline": { type: "boolean" }, keep: { type: "boolean" },
    },
  });
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number ≥ 0, got ${JSON.stringify(v)}`);
    return n;
  };
  benchChaos({
    frames: num("frames", values.frames), kills: num("kills", values.kills), restarts: num("restarts", values.restarts),
    sessions: num("sessions", values.sessions), seed: num("seed", values.seed), quick: values.quick,
    baseline: !values["no-baseline"], keep: values.keep,
  }).then(
    (figures) => {
      console.log(JSON.stringify(Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, Math.round(v * 100) / 100]))));
      process.exit(figures.ok === 1 ? 0 : 1);
    },
    (err: Error) => {
      console.error(`chaos bench failed: ${err.stack ?? err}`);
      console.log(JSON.stringify({ bench: "chaos", ok: 0, error: String(err.message).slice(0, 500) }));
      process.exit(1);
    },
  );
}

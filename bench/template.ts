// Template runs: does the server's memory stay flat as --frames grows? A template (one job with the
// issue's randomizers: a uniform position, a colour choice, an orbit camera) is expanded by templateJobs
// into N frames and rendered by the real startRun, with fake sessions (bench/fakeSessions.ts, in their
// own process) answering every grab with one pre-encoded 320×240 PNG: no Chromium, so what is measured
// is the server alone (queueing, randomizing, checking and writing every frame).
//
// Each trial runs in a fresh server process (this file, forked with --expose-gc) on a fresh --out, so
// no trial inherits another's heap or allocator state; the trials of a small and a large N take turns,
// round after round, and the median of each figure per N is reported. The process's RSS is sampled
// every 50 ms (rssSampler): peak, end, the peak of each half of the frames and the slope of RSS against
// frames written over the second half (the first half holds the warm-up: JIT, heap, SQLite's cache), and
// the heap after a forced gc while the run is still open (what is still referenced at the end).
// "Does not grow with N": the large N's median peak RSS at most FLAT_RATIO × the small N's.
//
// Beside it, queueing only: templateJobs of many more frames added into a SqliteQueue (nothing
// rendered), again in a fresh process: time per 1,000 jobs and RSS before and after, against what the
// same jobs would hold in memory as an array: the expansion is lazy. RSS still rises by some tens of MB
// until bounded caches are warm (SQLite's page cache: 16 MB per connection as better-sqlite3 builds it;
// the heap pages of the queue's 5,000-job insert batches), then stays, however many jobs follow.
// Run: npm run bench -- template [--frames 2000] [--frames-per-job 10] [--sessions 4] [--repeat 3] [--quick]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRun, QUEUE_FILE } from "../server/runFarm.js";
import { readTemplate, templateJobs, type Template } from "../server/jobs/templateJobs.js";
import { SqliteQueue } from "../server/queue/SqliteQueue.js";
import { readFrameLines } from "../server/dataset/readDataset.js";
import { buildClient } from "../harness/buildClient.js";
import { gateTakes } from "./farmGate.js";
import { startFakes, untilSessionsJoined } from "./ingest.js";
import { fmt, lowerMedian, medianFields, printTable, rssSampler, slope } from "./report.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const MB = 2 ** 20;

/** The issue's example: a box at a uniform position, in one of three colours, seen from an orbit camera. */
export const BENCH_TEMPLATE = {
  scene: { tag: "DefaultScene", key: "root", children: [{ tag: "Box", key: "box" }] },
  width: 320,
  height: 240,
  randomize: [
    { key: "box", prop: "position", uniform: [[-1, 0, -1], [1, 1, 1]] },
    { key: "box", prop: "color", choice: ["#e4572e", "#669bbc", "#f3a712"] },
    { camera: { orbit: { target: [0, 0.5, 0], radius: [4, 6], elevation: [10, 60] } } },
  ],
};
/** What every frame's line must hold in `randomized`: proof the randomizers ran. */
const DRAWN = ["box.position", "box.color", "camera.position"];

/** Peak RSS of the large N over the small N's at most this: memory "does not grow with N". */
export const FLAT_RATIO = 1.2;

export interface TemplateBenchOptions {
  /** The two frame counts compared. */
  small: number;
  large: number;
  /** Rounds of (small, large) trials; the median per N is reported. */
  rounds: number;
  framesPerJob: number;
  /** Fake sessions. */
  sessions: number;
  inFlight: number;
  /** Frame counts queued only (not rendered), each in a fresh process. */
  queueOnly: number[];
  /** Size of the PNG the fake sessions send. */
  pngBytes?: number;
  keep: boolean;
  log: (line: string) => void;
}

/** One trial: a fresh server process rendering `frames` frames of the template. */
export interface RunTrial {
  frames: number;
  jobs: number;
  seconds: number;
  fps: number;
  /** RSS after a gc, before startRun: the process with its code loaded. */
  baseline_rss_mb: number;
  peak_rss_mb: number;
  /** RSS when the last frame is done, the run still open. */
  end_rss_mb: number;
  /** Peak RSS while the first half of the frames were written, and while the second half were. */
  peak_rss_first_half_mb: number;
  peak_rss_second_half_mb: number;
  /** Peak RSS after the last frame was written: the run's end (frames.jsonl's final compact, the manifest). */
  peak_rss_finishing_mb: number;
  /** Least-squares slope of RSS against frames written over the second half (after warm-up), per 1,000 frames. */
  second_half_rss_mb_per_1000_frames: number;
  /** heapUsed after a forced gc at the end, the run still open (queue, farm and sessions alive). */
  end_heap_after_gc_mb: number;
  baseline_heap_mb: number;
  /** queue.sqlite (+ WAL) after the run closed. */
  queue_file_bytes: number;
  /** One job's spec as JSON (what the queue stores per job, before SQLite's own overhead). */
  spec_bytes: number;
  png_bytes: number;
}

/** Queueing only: templateJobs of `frames` frames added into a fresh SqliteQueue. */
export interface QueueTrial {
  frames: number;
  jobs: number;
  ms: number;
  ms_per_1000_jobs: number;
  rss_before_mb: number;
  peak_rss_mb: number;
  rss_after_mb: number;
  heap_before_mb: number;
  /** heapUsed after a gc, the queue still open. */
  heap_after_gc_mb: number;
  /** heapUsed growth when the same jobs are held as an array: what a non-lazy expansion would keep. */
  eager_array_heap_mb: number;
  queue_file_bytes: number;
  queue_file_bytes_per_job: number;
}

type WorkerTask =
  | { kind: "run"; frames: number; framesPerJob: number; sessions: number; inFlight: number; pngBytes: number; templateFile: string; clientDir: string; out: string }
  | { kind: "queue"; frames: number; framesPerJob: number; templateFile: string; dir: string };

// ---------- in the forked server process ----------

const rssMb = () => process.memoryUsage().rss / MB;
function heapAfterGcMb(): number {
  if (!globalThis.gc) throw new Error("bench/template.ts workers need node --expose-gc");
  globalThis.gc();
  globalThis.gc(); // a second pass frees what the first one's finalizers released
  return process.memoryUsage().heapUsed / MB;
}

function queueFileBytes(file: string): number {
  return fs.statSync(file).size + (fs.statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0);
}

async function runTrial(t: Extract<WorkerTask, { kind: "run" }>): Promise<RunTrial> {
  const template = await readTemplate(t.templateFile);
  const jobs = () => templateJobs(template, { frames: t.frames, framesPerJob: t.framesPerJob });
  const specBytes = Buffer.byteLength(JSON.stringify(jobs().next().value));
  const lines: string[] = [];
  const baselineHeap = heapAfterGcMb();
  const baselineRss = rssMb();
  let written = 0;
  const samples: [frames: number, rssMb: number][] = [];
  const rss = rssSampler(50, (bytes) => samples.push([written, bytes / MB]));
  const run = await startRun({
    out: t.out, clientDir: t.clientDir, inFlight: t.inFlight, seed: 1,
    template: { spec: template, frames: t.frames, framesPerJob: t.framesPerJob }, log: (line) => lines.push(line),
  });
  run.events.subscribe((event) => {
    if (event.type === "job.done") written += event.frames;
  });
  const gate = gateTakes(run.queue);
  let fakes: ChildProcess | undefined;
  try {
    const started = await startFakes({ url: run.url, token: run.farm.token, sessions: t.sessions, width: template.width!, height: template.height!, pngBytes: t.pngBytes });
    fakes = started.child;
    await untilSessionsJoined(run.farm, t.sessions);
    const t0 = performance.now();
    gate.open();
    const summary = await run.finished;
    const seconds = (performance.now() - t0) / 1000;
    const peak = rss.stop();
    const end = rssMb();
    const endHeap = heapAfterGcMb();
    if (summary.frames !== t.frames || summary.counts.failed) {
      throw new Error(`template run ended with ${summary.frames}/${t.frames} frames, ${summary.counts.failed} job(s) failed:\n${lines.slice(-20).join("\n")}`);
    }
    fakes.send("stop");
    await run.close();
    await checkRandomized(t.out, t.frames);
    const firstHalf = samples.filter(([frames]) => frames < t.frames / 2);
    const secondHalf = samples.filter(([frames]) => frames >= t.frames / 2 && frames < t.frames);
    const finishing = samples.filter(([frames]) => frames === t.frames);
    const peakOf = (points: [number, number][]) => Math.max(...points.map(([, mb]) => mb));
    return {
      frames: t.frames, jobs: run.added.added, seconds, fps: t.frames / seconds,
      baseline_rss_mb: baselineRss, peak_rss_mb: peak / MB, end_rss_mb: end,
      peak_rss_first_half_mb: peakOf(firstHalf), peak_rss_second_half_mb: peakOf(secondHalf), peak_rss_finishing_mb: peakOf(finishing),
      second_half_rss_mb_per_1000_frames: slope(secondHalf) * 1000,
      end_heap_after_gc_mb: endHeap, baseline_heap_mb: baselineHeap,
      queue_file_bytes: queueFileBytes(path.join(t.out, QUEUE_FILE)), spec_bytes: specBytes, png_bytes: started.imageBytes,
    };
  } finally {
    rss.stop();
    await run.close();
    fakes?.kill();
  }
}

/** Every frame's line holds its seed and the three drawn values: the bench measured randomized frames. */
async function checkRandomized(out: string, frames: number): Promise<void> {
  let count = 0;
  for await (const { line, record, error } of readFrameLines(out)) {
    if (!record) throw new Error(`frames.jsonl:${line}: ${error}`);
    const missing = DRAWN.filter((k) => record.randomized?.[k] === undefined);
    if (typeof record.seed !== "number" || missing.length) {
      throw new Error(`frames.jsonl:${line}: ${typeof record.seed !== "number" ? "no seed" : `no randomized ${missing.join(", ")}`}: the template's randomizers did not run`);
    }
    count++;
  }
  if (count !== frames) throw new Error(`frames.jsonl has ${count} lines, expected ${frames}`);
}

async function queueTrial(t: Extract<WorkerTask, { kind: "queue" }>): Promise<QueueTrial> {
  const template: Template = await readTemplate(t.templateFile);
  const split = { frames: t.frames, framesPerJob: t.framesPerJob };
  const file = path.join(t.dir, QUEUE_FILE);
  const heapBefore = heapAfterGcMb();
  const rssBefore = rssMb();
  const rss = rssSampler(50);
  const queue = new SqliteQueue(file);
  let ms: number;
  let jobs: number;
  let heapAfter: number;
  try {
    const t0 = performance.now();
    const { added } = await queue.add(templateJobs(template, split));
    ms = performance.now() - t0;
    jobs = added;
    heapAfter = heapAfterGcMb();
  } finally {
    await queue.close();
  }
  const peak = rss.stop() / MB;
  const rssAfter = rssMb();
  // The reference: the same jobs held at once.
  const heapBeforeArray = heapAfterGcMb();
  const array = Array.from(templateJobs(template, split));
  const eager = heapAfterGcMb() - heapBeforeArray;
  if (array.length !== jobs) throw new Error(`queued ${jobs} jobs, but the template expands into ${array.length}`);
  const bytes = queueFileBytes(file);
  return {
    frames: t.frames, jobs, ms, ms_per_1000_jobs: (ms / jobs) * 1000, rss_before_mb: rssBefore, peak_rss_mb: peak, rss_after_mb: rssAfter,
    heap_before_mb: heapBefore, heap_after_gc_mb: heapAfter, eager_array_heap_mb: eager, queue_file_bytes: bytes, queue_file_bytes_per_job: bytes / jobs,
  };
}

if (process.send && process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.once("message", async (task: WorkerTask) => {
    try {
      const result = task.kind === "run" ? await runTrial(task) : await queueTrial(task);
      process.send!({ result }, () => process.exit(0));
    } catch (err) {
      process.send!({ error: (err as Error)?.stack ?? String(err) }, () => process.exit(1));
    }
  });
}

// ---------- in the bench process ----------

/** Runs `task` in a fresh server process; kills it if it takes longer than `timeoutMs`. */
function inFreshProcess<T>(task: WorkerTask, timeoutMs: number): Promise<T> {
  const child = fork(THIS_FILE, [], { execArgv: ["--expose-gc", "--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`template bench: a ${task.kind} trial of ${task.frames} frames took over ${timeoutMs / 1000} s`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`template bench: the ${task.kind} trial's process exited (${code}) without a result`));
    });
    child.once("message", (msg: { result?: T; error?: string }) => {
      clearTimeout(timer);
      if (msg.error !== undefined) reject(new Error(`template bench, ${task.kind} trial of ${task.frames} frames: ${msg.error}`));
      else resolve(msg.result as T);
    });
    child.send(task);
  });
}

export interface TemplateBenchResult {
  small: RunTrial;
  large: RunTrial;
  rounds: number;
  /** Median peak RSS, large N over small N. */
  peak_rss_ratio: number;
  /** Median peak RSS while frames were being written (the run's end left out), large N over small N. */
  rendering_peak_rss_ratio: number;
  /** The same, of the peak above each process's baseline (what the run itself added). */
  peak_above_baseline_ratio: number;
  /** (large peak − small peak) per 1,000 frames more: includes warm-up the small N has not finished. */
  peak_rss_growth_mb_per_1000_frames: number;
  /** The large N's RSS slope over its second half: growth once warmed up. */
  steady_rss_growth_mb_per_1000_frames: number;
  end_heap_growth_mb_per_1000_frames: number;
  flat: boolean;
  flat_ratio: number;
  /** Queue file growth per job between the two Ns (SQLite's pages, indexes and the spec). */
  queue_bytes_per_job: number;
  peak_rss_runs_mb: { small: number[]; large: number[] };
  queue_only: QueueTrial[];
}

/** Each figure's median (the lower middle value) over the trials of one N. */
const medianTrial = <T extends object>(trials: T[]): T => medianFields(trials, (values) => lowerMedian(values, (x) => x));

export async function benchTemplate(o: TemplateBenchOptions): Promise<TemplateBenchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-template-"));
  try {
    const templateFile = path.join(dir, "template.json");
    fs.writeFileSync(templateFile, JSON.stringify(BENCH_TEMPLATE, null, 2));
    const clientDir = await buildClient({ log: o.log }); // served but never loaded: the sessions are fake
    const trials: Record<"small" | "large", RunTrial[]> = { small: [], large: [] };
    for (let round = 1; round <= o.rounds; round++) {
      for (const size of ["small", "large"] as const) {
        const frames = o[size];
        const out = fs.mkdtempSync(path.join(dir, `out-${size}-${round}-`));
        o.log(`[template] round ${round}/${o.rounds}: ${frames} frames, ${o.framesPerJob} per job, ${o.sessions} fake session(s) …`);
        const t = await inFreshProcess<RunTrial>(
          { kind: "run", frames, framesPerJob: o.framesPerJob, sessions: o.sessions, inFlight: o.inFlight, pngBytes: o.pngBytes ?? 20 * 1024, templateFile, clientDir, out },
          120_000 + frames * 50,
        );
        o.log(`[template]   ${fmt(t.fps, 0)} frames/s; RSS ${fmt(t.baseline_rss_mb, 0)} MB at start, peak ${fmt(t.peak_rss_mb, 0)}, end ${fmt(t.end_rss_mb, 0)}; heap after gc ${fmt(t.end_heap_after_gc_mb)} MB`);
        trials[size].push(t);
        if (!o.keep) fs.rmSync(out, { recursive: true, force: true });
      }
    }
    const queueOnly: QueueTrial[] = [];
    for (const frames of o.queueOnly) {
      const qdir = fs.mkdtempSync(path.join(dir, "queue-only-"));
      o.log(`[template] queue only: ${frames} frames (${Math.ceil(frames / o.framesPerJob)} jobs) into a SqliteQueue …`);
      queueOnly.push(await inFreshProcess<QueueTrial>({ kind: "queue", frames, framesPerJob: o.framesPerJob, templateFile, dir: qdir }, 120_000 + frames));
      if (!o.keep) fs.rmSync(qdir, { recursive: true, force: true });
    }
    const small = medianTrial(trials.small);
    const large = medianTrial(trials.large);
    const perThousand = (o.large - o.small) / 1000;
    const renderingPeak = (t: RunTrial) => Math.max(t.peak_rss_first_half_mb, t.peak_rss_second_half_mb);
    const ratio = large.peak_rss_mb / small.peak_rss_mb;
    return {
      small, large, rounds: o.rounds,
      peak_rss_ratio: ratio,
      rendering_peak_rss_ratio: renderingPeak(large) / renderingPeak(small),
      peak_above_baseline_ratio: (large.peak_rss_mb - large.baseline_rss_mb) / (small.peak_rss_mb - small.baseline_rss_mb),
      peak_rss_growth_mb_per_1000_frames: (large.peak_rss_mb - small.peak_rss_mb) / perThousand,
      steady_rss_growth_mb_per_1000_frames: large.second_half_rss_mb_per_1000_frames,
      end_heap_growth_mb_per_1000_frames: (large.end_heap_after_gc_mb - small.end_heap_after_gc_mb) / perThousand,
      flat: ratio <= FLAT_RATIO, flat_ratio: FLAT_RATIO,
      queue_bytes_per_job: (large.queue_file_bytes - small.queue_file_bytes) / (large.jobs - small.jobs),
      peak_rss_runs_mb: { small: trials.small.map((t) => t.peak_rss_mb), large: trials.large.map((t) => t.peak_rss_mb) },
      queue_only: queueOnly,
    };
  } finally {
    if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
    else o.log(`[template] kept ${dir}`);
  }
}

export function printTemplate(r: TemplateBenchResult, o: Pick<TemplateBenchOptions, "framesPerJob" | "sessions">, out: (line: string) => void = console.log): void {
  out("");
  out(`template: the issue's template (uniform position, colour choice, orbit camera), ${o.framesPerJob} frames per job, ${o.sessions} fake sessions sending one ${fmt(r.small.png_bytes / 1024, 0)} KB PNG;`);
  out(`real startRun, each trial a fresh server process on a fresh --out; median of ${r.rounds} interleaved rounds`);
  const rows: (string | number)[][] = [[
    "frames", "jobs", "frames/s", "RSS start MB", "peak RSS MB", "end RSS MB", "peak − start MB", "peak 1st/2nd half/finish MB", "2nd half MB/1000 f", "heap after gc MB", "queue file KB", "spec bytes/job",
  ]];
  for (const t of [r.small, r.large]) {
    rows.push([
      t.frames, t.jobs, fmt(t.fps, 0), fmt(t.baseline_rss_mb, 0), fmt(t.peak_rss_mb, 0), fmt(t.end_rss_mb, 0), fmt(t.peak_rss_mb - t.baseline_rss_mb, 0),
      `${fmt(t.peak_rss_first_half_mb, 0)} / ${fmt(t.peak_rss_second_half_mb, 0)} / ${fmt(t.peak_rss_finishing_mb, 0)}`, fmt(t.second_half_rss_mb_per_1000_frames, 1),
      fmt(t.end_heap_after_gc_mb), fmt(t.queue_file_bytes / 1024, 0), t.spec_bytes,
    ]);
  }
  printTable(rows, out);
  out(
    `peak RSS ${r.large.frames} / ${r.small.frames} frames: ${fmt(r.peak_rss_ratio, 2)} (${r.flat ? "does not grow" : "GROWS"}: flat means ≤ ${r.flat_ratio}); ` +
      `peak above start ${fmt(r.peak_above_baseline_ratio, 2)}×; while frames were written (the run's end left out) ${fmt(r.rendering_peak_rss_ratio, 2)}`,
  );
  out(
    `growth per 1,000 frames: peak RSS ${fmt(r.peak_rss_growth_mb_per_1000_frames)} MB between the two Ns (warm-up included), ` +
      `${fmt(r.steady_rss_growth_mb_per_1000_frames)} MB over the second half of ${r.large.frames} frames; heap after gc ${fmt(r.end_heap_growth_mb_per_1000_frames, 2)} MB`,
  );
  out(`peak RSS of each round, MB: ${r.small.frames}: ${r.peak_rss_runs_mb.small.map((x) => fmt(x, 0)).join(" ")}; ${r.large.frames}: ${r.peak_rss_runs_mb.large.map((x) => fmt(x, 0)).join(" ")}`);
  out(`queue file: ${fmt(r.queue_bytes_per_job, 0)} bytes per job between the two runs (the spec itself: ${r.small.spec_bytes} bytes as JSON)`);
  if (!r.queue_only.length) return;
  out("");
  out(`queue only: templateJobs added into a fresh SqliteQueue in a fresh process (nothing rendered), against the same jobs held as an array`);
  const q: (string | number)[][] = [["frames", "jobs", "ms", "ms/1000 jobs", "RSS before MB", "peak RSS MB", "RSS after MB", "heap after gc − before MB", "as an array MB", "file bytes/job"]];
  for (const t of r.queue_only) {
    q.push([
      t.frames, t.jobs, fmt(t.ms, 0), fmt(t.ms_per_1000_jobs), fmt(t.rss_before_mb, 0), fmt(t.peak_rss_mb, 0), fmt(t.rss_after_mb, 0),
      fmt(t.heap_after_gc_mb - t.heap_before_mb, 2), fmt(t.eager_array_heap_mb), fmt(t.queue_file_bytes_per_job, 0),
    ]);
  }
  printTable(q, out);
}

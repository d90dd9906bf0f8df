// npm run bench -- soak --frames 20000: a long run of the real CLI, sampling the server's RSS and
// the RSS of every Chromium process it launched, once a second. Reports server growth after
// warm-up (target ≤ 50 MB), browser memory, tabs recycled, browsers relaunched, and frames/s.
//
// Relaunching (--relaunch-after) on vs off: without --relaunch-after the soak runs twice, off (0) then
// on (SOAK_RELAUNCH_AFTER_FRAMES, for several relaunches per browser), and reports each run's figures prefixed `off_` and `on_`. Browser growth is
// measured two ways:
// - browsers_mb_per_1000_frames: the least-squares slope of all the farm's Chromium processes' RSS
//   (summed) against frames written, after warm-up. Off, that is the growth; on, a saw-tooth whose
//   slope is ≈ 0 when each relaunch gives its memory back.
// - baseline_mb_per_1000_frames (on): whether what a relaunch gives back stays the same. Each browser
//   process (a direct Chromium child of the CLI, with all its descendants) is one incarnation; its
//   baseline is its tree's median RSS over the BASELINE_WINDOW_S seconds from BASELINE_SETTLE_S seconds
//   after it appeared (tabs loaded, first jobs done). The slope of the baselines of all incarnations
//   against the farm's frames at that moment, times the number of browsers (they relaunch in turn), is
//   the growth of the post-relaunch baseline of the whole farm per 1,000 frames: the target is ≤ 1 MB.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { descendants } from "./chaos.js";
import { kindOf, slope } from "./report.js";
import { countFrameLines } from "../server/dataset/readDataset.js";
import { DEFAULT_RELAUNCH_AFTER_FRAMES } from "../harness/TabPool.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));

/** Seconds a fresh browser runs before its RSS counts as its baseline (launch, tabs loading, shaders, first jobs). */
const BASELINE_SETTLE_S = 15;
/** The on run's --relaunch-after: often enough for several relaunches of each browser in a 20,000-frame soak. */
const SOAK_RELAUNCH_AFTER_FRAMES = 2000;
/** Seconds of samples whose median is a fresh browser's baseline. */
const BASELINE_WINDOW_S = 15;

const median = (xs: number[]): number => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] : 0);

export interface SoakOptions {
  frames: number;
  sessions: number;
  recycleAfter: number;
  /** --relaunch-after for the farm; absent: two runs, 0 (off) then SOAK_RELAUNCH_AFTER_FRAMES (on). */
  relaunchAfter?: number;
  framesPerJob: number;
  width: number;
  height: number;
  log?: (line: string) => void;
}

const rssMb = (pid: number): number => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
};

const isChromium = (pid: number): boolean => {
  try {
    return /chrom/i.test(fs.readFileSync(`/proc/${pid}/comm`, "utf8"));
  } catch {
    return false;
  }
};

export async function benchSoak(o: SoakOptions): Promise<Record<string, number>> {
  if (o.relaunchAfter !== undefined) return soakRun(o, o.relaunchAfter);
  const off = await soakRun(o, 0);
  const on = await soakRun(o, Math.min(DEFAULT_RELAUNCH_AFTER_FRAMES, SOAK_RELAUNCH_AFTER_FRAMES));
  return {
    ...Object.fromEntries(Object.entries(off).map(([k, v]) => [`off_${k}`, v])),
    ...Object.fromEntries(Object.entries(on).map(([k, v]) => [`on_${k}`, v])),
  };
}

interface Sample {
  t: number;
  frames: number;
  server: number;
  browsers: number;
  byKind: Record<string, number>;
  /** RSS of each browser process's tree, by the browser process's pid. */
  byBrowser: Map<number, number>;
}

async function soakRun(o: SoakOptions, relaunchAfter: number): Promise<Record<string, number>> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-soak-"));
  const args = [
    "--import", "tsx", path.join(REPO, "harness/cli.ts"), "--sessions", String(o.sessions), "--demo", String(o.frames),
    "--frames-per-job", String(o.framesPerJob), "--width", String(o.width), "--height", String(o.height),
    "--recycle-after", String(o.recycleAfter), "--relaunch-after", String(relaunchAfter), "--out", out, "--no-progress",
  ];
  o.log?.(`[soak] --relaunch-after ${relaunchAfter}: ${o.frames} frames, ${o.sessions} tab(s)`);
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const samples: Sample[] = [];
  /** When each browser process was first seen (s since the start). */
  const firstSeen = new Map<number, number>();
  const started = Date.now();
  // Counted between samples (a line is appended whole, with its newline).
  let framesSoFar = 0;
  const timer = setInterval(() => {
    void countFrameLines(out).then((n) => (framesSoFar = n));
    const t = (Date.now() - started) / 1000;
    const procs = descendants(child.pid!);
    const browsers = procs.filter((p) => isChromium(p.pid));
    // By Chromium process kind too: recycling tabs bounds the renderers, not the GPU or browser process.
    const byKind: Record<string, number> = {};
    const rss = new Map(browsers.map((p) => [p.pid, rssMb(p.pid)]));
    for (const p of browsers) byKind[kindOf(p.pid)] = (byKind[kindOf(p.pid)] ?? 0) + rss.get(p.pid)!;
    // Each Chromium process counted for the browser process (a child of the CLI) it descends from.
    const parent = new Map(procs.map((p) => [p.pid, p.ppid]));
    const byBrowser = new Map<number, number>();
    for (const p of browsers) {
      let root = p.pid;
      for (let up = parent.get(root); up !== undefined && up !== child.pid; up = parent.get(root)) root = up;
      byBrowser.set(root, (byBrowser.get(root) ?? 0) + rss.get(p.pid)!);
    }
    for (const pid of byBrowser.keys()) if (!firstSeen.has(pid)) firstSeen.set(pid, t);
    const s: Sample = { t, frames: framesSoFar, server: rssMb(child.pid!), browsers: [...rss.values()].reduce((a, b) => a + b, 0), byKind, byBrowser };
    samples.push(s);
    if (samples.length % 15 === 0) o.log?.(`[soak] ${s.t.toFixed(0)} s: ${s.frames} frames, server ${s.server.toFixed(0)} MB, browsers ${s.browsers.toFixed(0)} MB (${byBrowser.size} browser process(es))`);
  }, 1000);
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  clearInterval(timer);
  fs.rmSync(out, { recursive: true, force: true });
  if (code !== 0) throw new Error(`soak run failed (exit ${code}):\n${output.slice(-3000)}`);
  // Warm-up: the first 10 % of frames (client build, shader compile, first jobs).
  const warm = samples.find((s) => s.frames >= o.frames * 0.1) ?? samples[0];
  // Up to the last frame: after it the farm closes its browsers, which is no change in what they hold.
  const live = samples.filter((s) => s.t >= warm.t && s.frames < o.frames);
  const peak = (key: "server" | "browsers") => Math.max(...live.map((s) => s[key]));
  const seconds = Number(/\d+ frames in ([\d.]+) s/.exec(output)?.[1] ?? 0);
  // Each incarnation's baseline: the median RSS of its tree over BASELINE_WINDOW_S seconds from BASELINE_SETTLE_S
  // after it appeared (the median, not the least: a tab being recycled takes its renderer away for a moment),
  // at the frames of the window's first sample.
  const baselines: [number, number][] = [];
  for (const [pid, seen] of firstSeen) {
    const window = samples.filter((x) => x.t >= seen + BASELINE_SETTLE_S && x.t < seen + BASELINE_SETTLE_S + BASELINE_WINDOW_S && x.frames < o.frames && x.byBrowser.has(pid));
    if (window.length >= BASELINE_WINDOW_S / 2) baselines.push([window[0].frames, median(window.map((x) => x.byBrowser.get(pid)!))]);
  }
  if (baselines.length > 1) o.log?.(`[soak] baselines (frames: MB of one browser): ${baselines.map(([f, mb]) => `${f}: ${mb.toFixed(0)}`).join(", ")}`);
  const browserCount = Math.max(1, ...samples.map((s) => s.byBrowser.size));
  // From the farm's lines: "browser K relaunched in X s (its tabs drained in Y s; …)".
  const relaunchSeconds = [...output.matchAll(/browser \d+ relaunched in ([\d.]+) s/g)].map((m) => Number(m[1]));
  const drainSeconds = [...output.matchAll(/its tabs drained in ([\d.]+) s/g)].map((m) => Number(m[1]));
  return {
    frames: o.frames,
    sessions: o.sessions,
    recycle_after: o.recycleAfter,
    relaunch_after: relaunchAfter,
    seconds,
    fps: o.frames / Math.max(seconds, 1e-9),
    server_rss_after_warmup_mb: warm.server,
    server_rss_peak_mb: peak("server"),
    server_rss_end_mb: live.at(-1)?.server ?? 0,
    server_rss_growth_mb: peak("server") - warm.server,
    browsers_rss_after_warmup_mb: warm.browsers,
    browsers_rss_peak_mb: peak("browsers"),
    browsers_rss_end_mb: live.at(-1)?.browsers ?? 0,
    // Least-squares slope of browser RSS against frames written, after warm-up: what recycling must bound.
    browsers_mb_per_1000_frames: slope(live.map((s) => [s.frames, s.browsers])) * 1000,
    server_mb_per_1000_frames: slope(live.map((s) => [s.frames, s.server])) * 1000,
    ...Object.fromEntries(
      [...new Set(live.flatMap((s) => Object.keys(s.byKind)))].map((kind) => [`${kind}_mb_per_1000_frames`, slope(live.map((s) => [s.frames, s.byKind[kind] ?? 0])) * 1000]),
    ),
    // Browser processes that lived long enough for a baseline (not a launcher's passing process).
    browser_incarnations: baselines.length,
    // Needs two incarnations (with relaunching, a relaunch) to say anything; 0 otherwise.
    baseline_mb_per_1000_frames: baselines.length >= 2 ? slope(baselines) * 1000 * browserCount : 0,
    tabs_recycled: (output.match(/rendered \d+ frames; replacing it/g) ?? []).length,
    browsers_relaunched: relaunchSeconds.length,
    // A relaunched browser's tabs render nothing from the old browser's close to their hellos (relaunch), and
    // those done with their jobs wait for the slowest one before it (drain).
    relaunch_seconds_median: median(relaunchSeconds),
    relaunch_drain_seconds_median: median(drainSeconds),
  };
}

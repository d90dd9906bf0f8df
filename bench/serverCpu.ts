// The farm's own CPU per frame (issue 15): a real farm run (startRun, real Chromium tabs of the farm's
// TabPool, as `npm run farm` and the throughput bench's farm way run them, with the CLI's plain progress
// line) on the bench scenes, timed from the moment every tab is connected (bench/farmGate.ts) to the run's
// end, and what this process spent:
//   srv ms/f   process.cpuUsage per frame: every thread of this process (the event loop, libuv's pool
//              where PNG checks inflate, V8's GC and compiler threads, the dataset writer thread)
//   by thread  the same split by thread (/proc/self/task): main, "pool/V8 workers" (threads there before
//              the run: libuv's pool and V8's platform workers), "later thread" (worker threads: the writer)
//   loop ms/f  the event loop's busy wall time per frame (eventLoopUtilization; with both cores busy
//              rendering, time the loop waits for a core counts too, so it is above its CPU)
//   gc ms/f    garbage collection pauses of the event loop per frame (PerformanceObserver "gc")
// A first, uncounted light trial (--warmup frames) takes V8's compiling of the hot paths out of the
// figures. Scenes take turns (light, heavy, light, …) over --repeat rounds; the median of each is printed.
//   --profile DIR   a .cpuprofile of each timed phase (inspector; the event loop only, wall time) and its
//                   heaviest functions and packages
//   --perf DIR      `perf record -g` of this process over each timed phase (CPU time, every thread, the
//                   kernel too); run node with --perf-basic-prof to get JavaScript names
//   --tabs-in-child the browsers are launched by a child process (its own Playwright driver): what the
//                   in-process driver costs is the difference
//   --check header|structure|full   the server's PNG check depth (bench only): what the check costs
//   --keep          keep each run's dataset
//
//   flock /tmp/tabfarm-bench.lock node --import tsx bench/serverCpu.ts [--scenes light,heavy]
//     [--frames light=400,heavy=120] [--repeat 3] [--warmup 100] [--sessions 2] [--gl auto] [options above]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PerformanceObserver, performance } from "node:perf_hooks";
import { Session as InspectorSession } from "node:inspector/promises";
import { startRun } from "../server/runFarm.js";
import { TabPool } from "../harness/TabPool.js";
import { findBrowser } from "../harness/findBrowser.js";
import { GL_BACKENDS, isGlBackend, type ConcreteGlBackend, type GlBackend } from "../harness/chromiumFlags.js";
import { chooseGl } from "../harness/chooseGl.js";
import { progressView } from "../harness/progressView.js";
import { buildClientInChild } from "./buildClientChild.js";
import { gateTakes } from "./farmGate.js";
import { benchScene, orbit, orbitJobs, type SceneName } from "./scenes.js";
import { fmt, printTable, startPhase, type PhaseMeasure } from "./report.js";
import { fork, spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { launchedWorkerName } from "../protocol/events.js";
import { IMAGE_CHECK_DEPTHS, setImageCheckDepthForBench, type ImageCheckDepth } from "../server/capture/checkImage.js";

interface Options {
  scenes: SceneName[];
  frames: Record<SceneName, number>;
  repeat: number;
  sessions: number;
  /** As asked (auto is resolved by harness/chooseGl.ts in main). */
  gl: GlBackend;
  profileDir?: string;
  /** Keep each run's dataset (its folder is printed). */
  keep: boolean;
  /**
   * Launch the browsers from a child process (its own Playwright driver) instead of this one: the
   * difference in this process's CPU is what the in-process driver costs the farm's server.
   */
  tabsInChild: boolean;
  /** Record this process with `perf record` over each timed phase into DIR (run node with --perf-basic-prof for JS names). */
  perfDir?: string;
  /** The server's image check depth (bench only; default: the farm's own). */
  check?: ImageCheckDepth;
  /** Frames of the uncounted light trial first (0: none). */
  warmup: number;
}

/** Options with --gl auto resolved to the backend the tabs launch with. */
type TrialOptions = Omit<Options, "gl"> & { gl: ConcreteGlBackend };

interface Trial {
  scene: SceneName;
  frames: number;
  fps: number;
  srvMsPerFrame: number;
  loopMsPerFrame: number;
  gcMsPerFrame: number;
  /** CPU ms per frame by thread name: [user, system]. */
  threads: Record<string, [number, number]>;
  phase: PhaseMeasure;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { scenes: ["light", "heavy"], frames: { light: 400, heavy: 120 }, repeat: 3, sessions: 2, gl: "auto", keep: false, tabsInChild: false, warmup: 100 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--scenes") o.scenes = value().split(",").map((s) => s.trim()) as SceneName[];
    else if (flag === "--frames") {
      for (const part of value().split(",")) {
        const [name, n] = part.split("=");
        if ((name !== "light" && name !== "heavy") || !Number.isInteger(Number(n)) || Number(n) < 1) throw new Error(`--frames: '${part}' is not light=N or heavy=N`);
        o.frames[name] = Number(n);
      }
    } else if (flag === "--repeat") o.repeat = Number(value());
    else if (flag === "--sessions") o.sessions = Number(value());
    else if (flag === "--gl") {
      const gl = value();
      if (!isGlBackend(gl)) throw new Error(`--gl: '${gl}' is not one of ${GL_BACKENDS.join(", ")}`);
      o.gl = gl;
    }
    else if (flag === "--profile") o.profileDir = path.resolve(value());
    else if (flag === "--keep") o.keep = true;
    else if (flag === "--tabs-in-child") o.tabsInChild = true;
    else if (flag === "--check") o.check = value() as ImageCheckDepth;
    else if (flag === "--warmup") o.warmup = Number(value());
    else if (flag === "--perf") o.perfDir = path.resolve(value());
    else throw new Error(`unknown option ${flag}`);
  }
  for (const s of o.scenes) if (s !== "light" && s !== "heavy") throw new Error(`--scenes: unknown scene '${s}'`);
  if (!Number.isInteger(o.repeat) || o.repeat < 1) throw new Error("--repeat must be a whole number ≥ 1");
  if (!Number.isInteger(o.sessions) || o.sessions < 1) throw new Error("--sessions must be a whole number ≥ 1");
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new Error("--warmup must be a whole number ≥ 0");
  if (o.check !== undefined && !(IMAGE_CHECK_DEPTHS as readonly string[]).includes(o.check)) throw new Error(`--check: one of ${IMAGE_CHECK_DEPTHS.join(", ")}`);
  return o;
}

/** CPU ms of each of this process's threads by name (main, libuv pool, V8 helpers, worker threads), user + system. */
function threadCpu(): Map<string, { user: number; system: number }> {
  const tick = 1000 / 100; // USER_HZ
  const byName = new Map<string, { user: number; system: number }>();
  for (const tid of fs.readdirSync("/proc/self/task")) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "latin1");
    } catch {
      continue; // the thread ended
    }
    // Node names no thread: the main one, those there when this bench started (V8's platform workers,
    // libuv's pool: the client build and imports use it), and those started later (worker threads).
    const name = tid === String(process.pid) ? "main" : startupThreads.has(tid) ? "pool/V8 workers" : `later thread ${tid}`;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const t = byName.get(name) ?? { user: 0, system: 0 };
    t.user += Number(fields[11]) * tick;
    t.system += Number(fields[12]) * tick;
    byName.set(name, t);
  }
  return byName;
}

await fs.promises.stat("."); // libuv's pool starts at its first use
const startupThreads = new Set(fs.readdirSync("/proc/self/task"));

/** GC pause time from now until stop(). */
function gcClock(): { stop(): number } {
  let ms = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) ms += entry.duration;
  });
  observer.observe({ entryTypes: ["gc"] });
  return {
    stop() {
      observer.disconnect();
      return ms;
    },
  };
}

async function oneTrial(clientDir: string, browserPath: string, scene: SceneName, o: TrialOptions, round: number): Promise<Trial> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `tabfarm-servercpu-${scene}-`));
  const lines: string[] = [];
  const poses = orbit(o.frames[scene]);
  const format = "png";
  const run = await startRun({
    out, clientDir, jobs: orbitJobs(`${scene}`, benchScene(scene), poses, { width: 640, height: 480, format }),
    width: 640, height: 480, format, log: (line) => lines.push(line),
  });
  const gate = gateTakes(run.queue);
  // As the CLI: a plain status line every few seconds (no terminal here).
  const progress = progressView({ stats: () => run.stats, enabled: true, tty: false, log: (line) => lines.push(line) });
  const tabs = { executablePath: browserPath, gl: o.gl, url: run.url, tabs: o.sessions, browsers: Math.min(o.sessions, os.availableParallelism()) };
  const proofs = Object.fromEntries(Array.from({ length: o.sessions }, (_, i) => launchedWorkerName(i)).map((w) => [w, run.farm.launchedTabProof(w)]));
  let pool: TabPool | undefined;
  let child: ChildProcess | undefined;
  let profiler: InspectorSession | undefined;
  try {
    if (o.tabsInChild) {
      child = fork(fileURLToPath(import.meta.url), ["--tabs-child"], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
      child.send({ ...tabs, proofs });
    } else {
      pool = new TabPool({ ...tabs, proveLaunched: (worker) => proofs[worker] ?? "", log: (line) => lines.push(line) });
      await pool.start();
    }
    for (const until = Date.now() + 120_000; [...run.farm.sessions.values()].filter((s) => s.info.webgl).length < o.sessions; ) {
      if (Date.now() > until) throw new Error(`${o.sessions} tab(s) did not connect within 120 s:\n${lines.slice(-10).join("\n")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 1000)); // pages mount their canvas after hello
    if (o.profileDir) {
      profiler = new InspectorSession();
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.setSamplingInterval", { interval: 250 });
      await profiler.post("Profiler.start");
    }
    let perf: ChildProcess | undefined;
    if (o.perfDir) {
      fs.mkdirSync(o.perfDir, { recursive: true });
      perf = spawn("perf", ["record", "-F", "2000", "-g", "-p", String(process.pid), "-o", path.join(o.perfDir, `${scene}-${round + 1}.perf.data`)], { stdio: "ignore" });
      await new Promise((resolve, reject) => {
        perf!.once("error", (err) => reject(new Error(`--perf: cannot run perf (${err.message}); install it (apt-get install linux-perf)`)));
        setTimeout(resolve, 500); // perf attaches
      });
    }
    progress.start();
    const gc = gcClock();
    const elu0 = performance.eventLoopUtilization();
    const threads0 = threadCpu();
    const phase = startPhase();
    gate.open();
    const summary = await run.finished;
    const m = phase.stop();
    const threads1 = threadCpu();
    if (perf) await new Promise((resolve) => (perf!.once("exit", resolve), perf!.kill("SIGINT")));
    const elu = performance.eventLoopUtilization(elu0);
    const gcMs = gc.stop();
    if (profiler) {
      const { profile } = await profiler.post("Profiler.stop");
      fs.mkdirSync(o.profileDir!, { recursive: true });
      const file = path.join(o.profileDir!, `${scene}-${round + 1}.cpuprofile`);
      fs.writeFileSync(file, JSON.stringify(profile));
      printProfile(profile as CpuProfile, summary.frames, file);
    }
    if (summary.frames !== poses.length || summary.counts.failed) {
      throw new Error(`farm run ended with ${summary.frames}/${poses.length} frames, ${summary.counts.failed} failed:\n${lines.slice(-20).join("\n")}`);
    }
    const frames = summary.frames;
    return {
      scene, frames, fps: frames / (m.wallMs / 1000), phase: m,
      srvMsPerFrame: m.serverCpuMs / frames, loopMsPerFrame: (elu.active) / frames, gcMsPerFrame: gcMs / frames,
      threads: Object.fromEntries([...threads1].map(([name, t]) => {
        const before = threads0.get(name) ?? { user: 0, system: 0 };
        return [name, [(t.user - before.user) / frames, (t.system - before.system) / frames]];
      })),
    };
  } finally {
    progress.stop();
    profiler?.disconnect();
    await run.close();
    await pool?.close();
    if (child) await new Promise((resolve) => (child!.once("exit", resolve), child!.kill("SIGTERM")));
    if (o.keep) console.log(`  kept ${out}`);
    else fs.rmSync(out, { recursive: true, force: true });
  }
}

// ---------- profile summary ----------

interface CpuProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface CpuProfile { nodes: CpuProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

/** Where a script belongs: a package under node_modules, a folder of ours, node's own, or V8's (GC, idle, program). */
function areaOf(url: string, fn: string): string {
  if (!url) return fn.startsWith("(") ? fn : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith("node:")) return url;
  const ours = /\/work\/main\/([^/]+\/(?:[^/]+\/)?)/.exec(url);
  return ours ? ours[1]! : url;
}

function printProfile(profile: CpuProfile, frames: number, file: string): void {
  const deltas = profile.timeDeltas ?? [];
  const samples = profile.samples ?? [];
  const selfUs = new Map<number, number>();
  // Each sample's delta is the time since the previous one: the next sample's delta belongs to this one.
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + (deltas[i + 1] ?? 0));
  const byFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (!us) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const key = `${functionName || "(anonymous)"} ${url ? `${url.replace(/^.*\/work\/main\//, "").replace(/^file:\/\//, "")}:${lineNumber + 1}` : ""}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const area = areaOf(url, functionName);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
  }
  const top = (m: Map<string, number>, n: number) => [...m].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1]).slice(0, n);
  console.log(`  profile ${file}: self time per frame (ms), this thread`);
  for (const [area, us] of top(byArea, 14)) console.log(`    ${fmt(us / 1000 / frames, 3).padStart(7)}  ${area}`);
  console.log("  heaviest functions:");
  for (const [fn, us] of top(byFn, 25)) console.log(`    ${fmt(us / 1000 / frames, 3).padStart(7)}  ${fn}`);
}

// ---------- main ----------

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

if (process.argv[2] === "--tabs-child") {
  // The child of --tabs-in-child: a TabPool with its own Playwright driver, until killed.
  process.once("message", async (m: { executablePath: string; gl: ConcreteGlBackend; url: string; tabs: number; browsers: number; proofs: Record<string, string> }) => {
    const pool = new TabPool({ ...m, proveLaunched: (worker) => m.proofs[worker] ?? "", log: () => {} });
    process.once("SIGTERM", () => void pool.close().then(() => process.exit(0)));
    await pool.start();
  });
} else await main();

async function main(): Promise<void> {
const asked = parseArgs(process.argv.slice(2));
setImageCheckDepthForBench(asked.check);
const clientDir = buildClientInChild();
const browser = findBrowser();
const o: TrialOptions = { ...asked, gl: (await chooseGl(browser.path, asked.gl)).gl };
console.log(`server CPU per frame: ${o.sessions} tab(s), 640×480 png, --gl ${o.gl}${o.check ? `, image check ${o.check}` : ""}${o.tabsInChild ? ", browsers launched by a child process" : ""}, browser ${browser.path}; ` +
  o.scenes.map((s) => `${s} ${o.frames[s]} frames`).join(", ") + `, ${o.repeat} round(s)`);
if (o.warmup > 0) {
  const w = await oneTrial(clientDir, browser.path, "light", { ...o, frames: { ...o.frames, light: o.warmup }, profileDir: undefined, perfDir: undefined }, -1);
  console.log(`[warm-up, not counted] light ${w.frames} frames: ${fmt(w.fps)} frames/s, server ${fmt(w.srvMsPerFrame, 2)} ms/frame`);
}
const trials: Trial[] = [];
for (let round = 0; round < o.repeat; round++) {
  for (const scene of o.scenes) {
    const t = await oneTrial(clientDir, browser.path, scene, o, round);
    trials.push(t);
    console.log(`[${scene} ${round + 1}/${o.repeat}] ${fmt(t.fps)} frames/s, server ${fmt(t.srvMsPerFrame, 2)} ms/frame ` +
      `(event loop ${fmt(t.loopMsPerFrame, 2)}, gc ${fmt(t.gcMsPerFrame, 2)}), other processes ${fmt(t.phase.foreignCpuMs / t.phase.wallMs, 2)} cores`);
    console.log(`    by thread, ms/frame user+system: ${Object.entries(t.threads).filter(([, [u, s]]) => u + s > 0).sort((a, b) => b[1][0] + b[1][1] - a[1][0] - a[1][1])
      .map(([name, [u, s]]) => `${name} ${fmt(u, 2)}+${fmt(s, 2)}`).join(", ")}`);
  }
}
const rows: (string | number)[][] = [["scene", "frames", "frames/s", "srv CPU ms/f", "loop ms/f", "gc ms/f", "srv runs"]];
const summary: Record<string, unknown> = {};
for (const scene of o.scenes) {
  const of = trials.filter((t) => t.scene === scene);
  const m = { fps: median(of.map((t) => t.fps)), srv: median(of.map((t) => t.srvMsPerFrame)), loop: median(of.map((t) => t.loopMsPerFrame)), gc: median(of.map((t) => t.gcMsPerFrame)) };
  rows.push([scene, o.frames[scene], fmt(m.fps), fmt(m.srv, 2), fmt(m.loop, 2), fmt(m.gc, 2), of.map((t) => fmt(t.srvMsPerFrame, 2)).join(" ")]);
  summary[scene] = { ...m, runs: of.map((t) => ({ fps: t.fps, srv: t.srvMsPerFrame })) };
}
console.log("");
printTable(rows);
console.log(JSON.stringify({ bench: "serverCpu", sessions: o.sessions, gl: o.gl, medians: summary }));
}

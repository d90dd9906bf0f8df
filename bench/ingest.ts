// Synthetic ingest: what the server side of the farm (socket.io, image check, lease checks, atomic file
// writes, frames.jsonl, the SQLite queue) can take in when rendering costs nothing. Fake sessions in a
// child process answer every grab at once with a pre-encoded ~60 KB 640×480 PNG; a real startRun with
// declarative jobs writes them durably. Reported: frames/s and MB/s written, server CPU per frame.
//
// Beside each trial, in the same run, a file-system floor: the same number of files of the same size,
// in the same layout (images/<job>/<frame>.png, framesPerJob per folder) and with the same pattern
// (dot-named temp file, open/write/close, rename), written synchronously in a plain loop into a folder
// beside the dataset (same file system). Creating a file costs this disk 0.05–1 ms of kernel CPU, and
// that cost drifts with the file system's state (ext4 without a journal scans recently deleted inodes
// at every create), so the server is compared with a floor measured right before and right after it
// (the mean of the two): frames/s and CPU ms per file of the floor, the server/floor ratios and the
// server's CPU above the floor. Datasets and floor folders are deleted only after the last trial, so
// no deletion of the bench's own skews a later measurement.
//
// With --checks header,structure,full the server's image check (server/capture/checkImage.ts) is set to
// each depth in turn, the trials interleaved (--repeat n rounds), and the median of each figure reported
// per depth: what checking every frame in full costs the server, per frame and in frames/s.
// With --dashboard each trial runs twice per round, interleaved: without and with a dashboard open (a
// socket in the fake sessions' process getting the view, the chart and thumbnails): the dashboard's
// cost is the difference in server CPU per frame.
// Run: npm run bench -- ingest [--sweep 4,8] [--frames 3000] [--format png] [--image docs/demo-frame.png]
//      [--checks header,structure,full --repeat 3] [--dashboard --repeat 3]   (or npx tsx bench/ingest.ts)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRun } from "../server/runFarm.js";
import { buildClient } from "../harness/buildClient.js";
import { benchScene, orbit, orbitJobs } from "./scenes.js";
import { gateTakes } from "./farmGate.js";
import { fmt, medianFields, printTable, roundDeep, startPhase, waitQuiet } from "./report.js";
import { type DashboardTally, type FakeSessionsConfig } from "./fakeSessions.js";
import { setImageCheckDepthForBench, type ImageCheckDepth } from "../server/capture/checkImage.js";
import type { ImageFormat } from "../protocol/grab.js";
import { readFrameLines } from "../server/dataset/readDataset.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface IngestOptions {
  /** Fake session counts to run, one trial each. */
  sessions: number[];
  /** Frames per trial. */
  frames: number;
  width: number;
  height: number;
  inFlight: number;
  framesPerJob: number;
  /** Size of the PNG every fake session sends (default 60 KB). */
  pngBytes?: number;
  /** Format of the frames (default png). */
  format?: ImageFormat;
  /** An image file of width×height the fake sessions send instead (e.g. a real frame: docs/demo-frame.png). */
  image?: string;
  /** Compare these depths of the server's image check (one trial each per round, interleaved) instead of the session sweep. */
  checks?: ImageCheckDepth[];
  /** Compare the server without and with an open dashboard (one trial each per round, interleaved). */
  dashboard?: boolean;
  /** Rounds of the check or dashboard comparison; the median of each figure is reported (default 3). */
  repeat?: number;
  keep: boolean;
  log: (line: string) => void;
}

export interface IngestTrial {
  sessions: number;
  /** The image check depth of this trial ("default": the farm's own choice per format). */
  check: ImageCheckDepth | "default";
  /** Dashboards open during the trial, and what they got. */
  dashboards: number;
  dashboard_views: number;
  dashboard_thumbnails: number;
  dashboard_kb: number;
  frames: number;
  fps: number;
  mb_per_s: number;
  png_bytes: number;
  server_cpu_ms_per_frame: number;
  /** Of which the server's main thread (the event loop); the rest is libuv's pool, writer threads, GC helpers. */
  server_main_thread_cpu_ms_per_frame: number;
  /** CPU of the fake sessions' process per frame (the load generator). */
  client_cpu_ms_per_frame: number;
  cores_busy: number;
  not_ours_cores: number;
  peak_server_rss_mb: number;
  seconds: number;
  /** The file-system floor (mean of the runs before and after the trial): files/s of a plain sync loop. */
  floor_fps: number;
  /** CPU (user + sys) per file of that loop. */
  floor_cpu_ms_per_file: number;
  /** Of which kernel (sys) CPU. */
  floor_sys_ms_per_file: number;
  floor_before_fps: number;
  floor_after_fps: number;
  floor_before_cpu_ms_per_file: number;
  floor_after_cpu_ms_per_file: number;
  /** fps / floor_fps. */
  fps_vs_floor: number;
  /** server_cpu_ms_per_frame / floor_cpu_ms_per_file. */
  server_cpu_vs_floor: number;
  /** server_cpu_ms_per_frame − floor_cpu_ms_per_file: what the server spends besides creating the file. */
  server_cpu_above_floor_ms_per_frame: number;
}

/** CPU ms (user + sys) of this process's main thread so far, from /proc (10 ms ticks); NaN off Linux. */
function mainThreadCpuMs(): number {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, "latin1");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields 3… of proc(5)
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

export interface FloorMeasure {
  files: number;
  fps: number;
  cpu_ms_per_file: number;
  sys_ms_per_file: number;
}

/**
 * Writes `files` copies of `bytes` under `dir` exactly as the dataset writer lays them out
 * (images/<job>/<frame>.png, `perDir` per folder, `.name.<n>.tmp` then rename), synchronously.
 */
export function fsFloor(dir: string, files: number, perDir: number, bytes: Uint8Array): FloorMeasure {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let folder = "";
  for (let i = 0; i < files; i++) {
    const frame = i % perDir;
    if (frame === 0) {
      folder = path.join(dir, "images", `floor-${String(i / perDir).padStart(4, "0")}`);
      fs.mkdirSync(folder, { recursive: true });
    }
    const name = `${String(frame).padStart(6, "0")}.png`;
    const temp = path.join(folder, `.${name}.${i.toString(36)}.tmp`);
    const fd = fs.openSync(temp, "w");
    try {
      for (let done = 0; done < bytes.length; ) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, path.join(folder, name));
  }
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { files, fps: files / (wallMs / 1000), cpu_ms_per_file: (cpu.user + cpu.system) / 1000 / files, sys_ms_per_file: cpu.system / 1000 / files };
}

export type IngestResult = Record<string, IngestTrial | number | string>;

/** Fake sessions (bench/fakeSessions.ts) in a child process, so their CPU and memory are not the server's. */
export async function startFakes(config: FakeSessionsConfig): Promise<{ child: ChildProcess; imageBytes: number }> {
  const child = fork(path.join(HERE, "fakeSessions.ts"), [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const imageBytes = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`fake sessions exited (${code}) before connecting`)));
    child.on("message", (msg: { ready?: number; imageBytes?: number; error?: string }) => {
      if (msg.error) reject(new Error(`fake sessions: ${msg.error}`));
      else if (msg.ready !== undefined) resolve(msg.imageBytes ?? 0);
    });
    child.send(config);
  });
  child.removeAllListeners("exit");
  return { child, imageBytes };
}

/** Resolves once the farm has registered `sessions` sessions (a fake's hello reaches the farm a little after it connects). */
export async function untilSessionsJoined(farm: { sessions: { size: number } }, sessions: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (farm.sessions.size < sessions) {
    if (Date.now() > until) throw new Error(`only ${farm.sessions.size}/${sessions} fake sessions said hello`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What one trial varies besides its session count. */
interface Variant {
  check?: ImageCheckDepth;
  dashboards?: number;
}

async function trial(sessions: number, o: IngestOptions, cleanup: string[], variant: Variant = {}): Promise<IngestTrial> {
  const check = variant.check ?? "default";
  const dashboards = variant.dashboards ?? 0;
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-ingest-"));
  if (!o.keep) cleanup.push(out);
  // The floor's folders sit beside the dataset: same file system, same kind of fresh folder.
  const floorDir = (when: string) => {
    const dir = fs.mkdtempSync(path.join(path.dirname(out), `tabfarm-bench-floor-${when}-`));
    cleanup.push(dir);
    return dir;
  };
  const format = o.format ?? "png";
  const clientDir = await buildClient(); // served but never loaded: the sessions here are fake
  const lines: string[] = [];
  setImageCheckDepthForBench(check === "default" ? undefined : check);
  const run = await startRun({
    out, clientDir,
    jobs: orbitJobs(`ingest-${sessions}`, benchScene("light"), orbit(o.frames), { width: o.width, height: o.height, format, perJob: o.framesPerJob }),
    width: o.width, height: o.height, format, inFlight: o.inFlight,
    log: (line) => lines.push(line),
  });
  const gate = gateTakes(run.queue);
  let child: ChildProcess | undefined;
  let stopped = false;
  let tally: DashboardTally = { views: 0, ratePoints: 0, thumbnails: 0, thumbnailBytes: 0 };
  /** Stops the fakes; resolves with what their dashboards got (or after a second without an answer). */
  const stopFakes = () => {
    if (stopped || !child?.connected) return Promise.resolve();
    stopped = true;
    const told = new Promise<void>((resolve) => {
      child!.on("message", (msg: { dashboard?: DashboardTally }) => {
        if (msg.dashboard) (tally = msg.dashboard), resolve();
      });
      setTimeout(resolve, 1000).unref();
    });
    child.send("stop");
    return told;
  };
  try {
    const fakes = await startFakes({
      url: run.url, token: run.farm.token, sessions, width: o.width, height: o.height, pngBytes: o.pngBytes ?? 60 * 1024, format, imageFile: o.image, dashboards,
    });
    child = fakes.child;
    // The floor writes files of the same size (their content does not matter to the file system).
    const floorFile = Buffer.alloc(fakes.imageBytes, 0x5a);
    await untilSessionsJoined(run.farm, sessions);
    await waitQuiet();
    const before = fsFloor(floorDir("before"), o.frames, o.framesPerJob, floorFile);
    const main0 = mainThreadCpuMs();
    const phase = startPhase();
    gate.open();
    const summary = await run.finished;
    const m = phase.stop();
    const mainMs = mainThreadCpuMs() - main0;
    if (summary.frames !== o.frames || summary.counts.failed) {
      throw new Error(`ingest run ended with ${summary.frames}/${o.frames} frames, ${summary.counts.failed} failed:\n${lines.slice(-20).join("\n")}`);
    }
    let indexLines = 0;
    for await (const { line, record, error } of readFrameLines(out)) {
      if (!record) throw new Error(`frames.jsonl:${line}: ${error}`);
      indexLines++;
    }
    if (indexLines !== o.frames) throw new Error(`frames.jsonl has ${indexLines} lines, expected ${o.frames}`);
    const seconds = m.wallMs / 1000;
    const clientCpu = Object.values(m.childCpuMs).reduce((a, b) => a + b, 0);
    await stopFakes();
    await run.close(); // nothing of the run's may share the CPU with the second floor
    const after = fsFloor(floorDir("after"), o.frames, o.framesPerJob, floorFile);
    const fps = summary.frames / seconds;
    const serverCpu = m.serverCpuMs / summary.frames;
    const floorFps = (before.fps + after.fps) / 2;
    const floorCpu = (before.cpu_ms_per_file + after.cpu_ms_per_file) / 2;
    return {
      sessions,
      check,
      dashboards,
      dashboard_views: tally.views,
      dashboard_thumbnails: tally.thumbnails,
      dashboard_kb: tally.thumbnailBytes / 1024,
      frames: summary.frames,
      fps,
      mb_per_s: (summary.frames * fakes.imageBytes) / 2 ** 20 / seconds,
      png_bytes: fakes.imageBytes,
      server_cpu_ms_per_frame: serverCpu,
      server_main_thread_cpu_ms_per_frame: mainMs / summary.frames,
      client_cpu_ms_per_frame: clientCpu / summary.frames,
      cores_busy: m.machineBusy * os.cpus().length,
      not_ours_cores: m.foreignCpuMs / m.wallMs,
      peak_server_rss_mb: m.peakRssBytes / 2 ** 20,
      seconds,
      floor_fps: floorFps,
      floor_cpu_ms_per_file: floorCpu,
      floor_sys_ms_per_file: (before.sys_ms_per_file + after.sys_ms_per_file) / 2,
      floor_before_fps: before.fps,
      floor_after_fps: after.fps,
      floor_before_cpu_ms_per_file: before.cpu_ms_per_file,
      floor_after_cpu_ms_per_file: after.cpu_ms_per_file,
      fps_vs_floor: fps / floorFps,
      server_cpu_vs_floor: serverCpu / floorCpu,
      server_cpu_above_floor_ms_per_frame: serverCpu - floorCpu,
    };
  } finally {
    setImageCheckDepthForBench(undefined);
    await stopFakes();
    await run.close();
    child?.kill();
  }
}

export async function benchIngest(o: IngestOptions): Promise<IngestResult> {
  const result: IngestResult = {};
  const cleanup: string[] = [];
  const format = o.format ?? "png";
  const say = (t: IngestTrial) =>
    o.log(
      `[ingest]   ${fmt(t.fps, 0)} frames/s, ${fmt(t.mb_per_s)} MB/s, server ${fmt(t.server_cpu_ms_per_frame, 2)} ms CPU/frame ` +
        `(main thread ${fmt(t.server_main_thread_cpu_ms_per_frame, 2)}); file-system floor ${fmt(t.floor_fps, 0)} files/s, ${fmt(t.floor_cpu_ms_per_file, 2)} ms CPU/file`,
    );
  try {
    // Compared variants: image check depths, or without and with a dashboard; interleaved rounds.
    const variants: [key: string, what: string, variant: Variant][] | undefined = o.checks?.length
      ? o.checks.map((check) => [`check_${check}`, `image check '${check}'`, { check }])
      : o.dashboard
        ? [["no_dashboard", "no dashboard", {}], ["dashboard", "a dashboard open", { dashboards: 1 }]]
        : undefined;
    if (variants) {
      const rounds = o.repeat ?? 3;
      const runs = new Map<string, IngestTrial[]>();
      for (let round = 1; round <= rounds; round++) {
        for (const n of o.sessions) {
          for (const [name, what, variant] of variants) {
            o.log(`[ingest] round ${round}/${rounds}: ${what}, ${n} fake session(s), ${o.frames} frames of ${o.width}×${o.height} ${format} …`);
            const t = await trial(n, o, cleanup, variant);
            say(t);
            const key = `${name}_sessions_${n}`;
            runs.set(key, [...(runs.get(key) ?? []), t]);
          }
        }
      }
      for (const [key, trials] of runs) {
        result[key] = medianTrial(trials);
        result[`${key}_fps_runs`] = trials.map((t) => Math.round(t.fps)).join(" ");
      }
    } else {
      for (const n of o.sessions) {
        o.log(`[ingest] ${n} fake session(s), ${o.frames} frames of ${o.width}×${o.height} ${format} …`);
        const t = await trial(n, o, cleanup);
        say(t);
        result[`sessions_${n}`] = t;
      }
    }
  } finally {
    for (const dir of cleanup) fs.rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

/** Each figure's median over the runs (figures of one run can be high in one and low in another). */
function medianTrial(trials: IngestTrial[]): IngestTrial {
  // The average of the middle two for an even count (a figure between two runs, unlike lowerMedian).
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  };
  return medianFields(trials, median);
}

export function printIngest(r: IngestResult, out: (line: string) => void = console.log): void {
  const trials = Object.values(r).filter((t): t is IngestTrial => typeof t === "object");
  out("");
  out(`ingest: fake sessions answer every grab at once with the same image; real startRun, declarative jobs, durable writes`);
  const compared = trials.some((t) => t.check !== "default");
  const withDashboard = trials.some((t) => t.dashboards > 0);
  if (compared) out(`image check depths compared: median of each figure over interleaved rounds (frames/s of each round in the JSON)`);
  if (withDashboard) out(`without and with a dashboard open: median of each figure over interleaved rounds (frames/s of each round in the JSON)`);
  const rows: (string | number)[][] = [["fake sessions", withDashboard ? "dashboards" : "check", "frames", "frames/s", "MB/s", "image KB", "srv CPU ms/f", "main thread", "fakes CPU ms/f", "cores busy", "not ours", "peak RSS MB"]];
  for (const t of trials) {
    rows.push([
      t.sessions, withDashboard ? t.dashboards : t.check, t.frames, fmt(t.fps, 0), fmt(t.mb_per_s), fmt(t.png_bytes / 1024, 0), fmt(t.server_cpu_ms_per_frame, 2),
      fmt(t.server_main_thread_cpu_ms_per_frame, 2), fmt(t.client_cpu_ms_per_frame, 2), fmt(t.cores_busy, 2), fmt(t.not_ours_cores, 2), fmt(t.peak_server_rss_mb, 0),
    ]);
  }
  printTable(rows, out);
  if (compared) {
    // What each depth costs over the header-only check, per frame, at the same session count.
    out("");
    const cost: (string | number)[][] = [["fake sessions", "check", "frames/s ÷ header", "srv CPU ms/f − header", "main thread ms/f − header"]];
    for (const t of trials) {
      const header = trials.find((h) => h.check === "header" && h.sessions === t.sessions);
      if (!header || t === header) continue;
      cost.push([
        t.sessions, t.check, fmt(t.fps / header.fps, 2), fmt(t.server_cpu_ms_per_frame - header.server_cpu_ms_per_frame, 2),
        fmt(t.server_main_thread_cpu_ms_per_frame - header.server_main_thread_cpu_ms_per_frame, 2),
      ]);
    }
    if (cost.length > 1) printTable(cost, out);
  }
  if (withDashboard) {
    // What an open dashboard costs the server per frame, at the same session count.
    out("");
    const cost: (string | number)[][] = [["fake sessions", "views", "thumbnail sets", "thumbnail KB", "frames/s with ÷ without", "srv CPU ms/f with − without", "main thread ms/f with − without"]];
    for (const t of trials) {
      const without = trials.find((h) => h.dashboards === 0 && h.sessions === t.sessions);
      if (!without || t.dashboards === 0) continue;
      cost.push([
        t.sessions, fmt(t.dashboard_views, 0), fmt(t.dashboard_thumbnails, 0), fmt(t.dashboard_kb, 0), fmt(t.fps / without.fps, 2),
        fmt(t.server_cpu_ms_per_frame - without.server_cpu_ms_per_frame, 3), fmt(t.server_main_thread_cpu_ms_per_frame - without.server_main_thread_cpu_ms_per_frame, 3),
      ]);
    }
    printTable(cost, out);
  }
  out("");
  out(`file-system floor: the same files written by a plain synchronous loop (temp + rename), right before and after each trial`);
  const floor: (string | number)[][] = [
    ["fake sessions", "check", "floor files/s", "floor CPU ms/file", "of which sys", "srv f/s ÷ floor", "srv CPU ÷ floor", "srv CPU above floor ms/f", "floor before/after files/s"],
  ];
  for (const t of trials) {
    floor.push([
      t.sessions, t.check, fmt(t.floor_fps, 0), fmt(t.floor_cpu_ms_per_file, 2), fmt(t.floor_sys_ms_per_file, 2), fmt(t.fps_vs_floor, 2),
      fmt(t.server_cpu_vs_floor, 2), fmt(t.server_cpu_above_floor_ms_per_frame, 2), `${fmt(t.floor_before_fps, 0)} / ${fmt(t.floor_after_fps, 0)}`,
    ]);
  }
  printTable(floor, out);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const r = await benchIngest({
    sessions: [4, 8], frames: Number(process.argv[2] ?? 3000), width: 640, height: 480, inFlight: 3, framesPerJob: 10, keep: false,
    log: (line) => console.error(line),
  });
  printIngest(r);
  console.log(JSON.stringify(roundDeep(r)));
  process.exit(0);
}

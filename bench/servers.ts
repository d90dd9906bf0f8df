// Servers bench: frames/s of one vs two farm servers sharing one Redis job queue, on this machine, in one run.
// Every trial renders the same job set (a jobs file of declarative orbit jobs) with farm servers started as
// users start them (`npm run farm -- --serve-only --jobs F --out SHARD [--queue redis://…]`, each its own
// process) and fake sessions (bench/serverFakes.ts, one child process for all servers) answering every grab
// at once with a real ~60 KB PNG: no Chromium, so this measures the server and queue side, the ingest ceiling.
//   sqlite   ONE server on its dataset's own SQLite queue, N fake sessions: the baseline
//   redis×1  ONE server on the Redis queue (a fresh queue name per trial), N fake sessions
//   redis×2  TWO servers on the same Redis queue (fresh name), each its own --out shard, N/2 fake sessions each
// The variants take turns in every round (the order rotates round by round, so no variant always runs first
// or last), medians over the rounds; ratios redis×2 / redis×1 and redis×1 / sqlite are of those medians.
// Timing starts when the fakes say hello (all sockets are connected before, all servers serving and their
// jobs queued) and ends when the frames.jsonl lines of all shards count every frame (a job's lines are
// appended once its frames are written). Then each server must exit 0 with no failed job, and the shards
// together must hold every (job, frame) exactly once.
// CPU per frame from /proc: the servers' processes (summed), the fakes' process, the redis-server.
// Run: npm run bench -- servers [--sweep 8,32] [--frames 3000] [--repeat 3]
//      npm run bench -- servers-chromium [--scenes light,heavy] [--frames N (light 300, heavy 120)] [--repeat 3]  (see below)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fork, spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { buildClient } from "../harness/buildClient.js";
import { readFrameLines } from "../server/dataset/readDataset.js";
import { startRedis, type RedisServer } from "../tests/redisServer.js";
import { benchScene, orbit, orbitJobs, type SceneName } from "./scenes.js";
import { fmt, printTable, roundDeep, waitQuiet } from "./report.js";
import type { ServerFakesConfig, ServerFakesMessage } from "./serverFakes.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.join(HERE, "..");

export interface ServersOptions {
  /** Fake session counts (N): one set of variants each per round. */
  sessions: number[];
  /** Frames per trial (the job set). */
  frames: number;
  width: number;
  height: number;
  inFlight: number;
  framesPerJob: number;
  rounds: number;
  /** The ways to compare (default all three). */
  variants?: Variant[];
  /** Size of the PNG the fakes send (default 60 KB, as the ingest bench's). */
  pngBytes?: number;
  keep: boolean;
  log: (line: string) => void;
}

export const VARIANTS = ["sqlite", "redis1", "redis2"] as const;
export type Variant = (typeof VARIANTS)[number];
const DESCRIBE: Record<Variant, string> = {
  sqlite: "1 server, SQLite queue",
  redis1: "1 server, Redis queue",
  redis2: "2 servers, one Redis queue",
};

export interface ServersTrial {
  variant: Variant;
  sessions: number;
  servers: number;
  frames: number;
  seconds: number;
  fps: number;
  /** Frames each server wrote (its shard's frames.jsonl lines). */
  frames_per_server: number[];
  /** Servers that did not exit after the last frame (a server bug; the trial's figures stand: its frames are written). */
  not_exiting: string[];
  /** CPU ms per frame: all servers together, the fakes' process, the redis-server. */
  server_cpu_ms_per_frame: number;
  fakes_cpu_ms_per_frame: number;
  redis_cpu_ms_per_frame: number;
  /** Cores busy machine-wide over the timed part (of os.cpus().length). */
  cores_busy: number;
  /** Of which not ours (neither the servers, the fakes, the redis-server nor this bench process): other people's work. */
  other_cores: number;
}

export interface ServersResult {
  trials: ServersTrial[];
  /** Per session count: median frames/s and CPU per variant, the ratios, every round's frames/s. */
  summary: Record<string, Record<string, number | string>>;
}

// ---------- /proc ----------

const TICK_MS = 10;

/** CPU ms (user + sys) a process has used so far; NaN once it is gone. */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return NaN;
  }
}

function machineTicks(): { busy: number; total: number } {
  const v = fs.readFileSync("/proc/stat", "latin1").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
}

// ---------- a farm server process ----------

interface FarmProcess {
  child: ChildProcess;
  out: string;
  url: string;
  token: string;
  output: () => string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `npm run farm -- --serve-only …` as node --import tsx harness/cli.ts; resolves once it serves (its jobs queued). */
async function startFarm(
  jobsFile: string, out: string, o: Pick<ServersOptions, "width" | "height" | "inFlight">, queue: string | undefined, tabs: string[] = ["--serve-only"],
): Promise<FarmProcess> {
  const token = randomBytes(12).toString("hex");
  const args = [
    "--import", "tsx", path.join(REPO, "harness/cli.ts"),
    ...tabs, "--no-progress", "--jobs", jobsFile, "--out", out, "--token", token,
    "--width", String(o.width), "--height", String(o.height), "--in-flight", String(o.inFlight),
    ...(queue ? ["--queue", queue] : []),
  ];
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const farm = { child, out, token, output: () => output };
  // Bounded: 120 s, and it stops early if the process exits.
  for (let i = 0; i < 2400; i++) {
    const serving = /tabfarm: serving (\S+)/.exec(output);
    if (serving) return { ...farm, url: serving[1]! };
    if (child.exitCode !== null || child.signalCode !== null) break;
    await sleep(50);
  }
  stopProcess(child);
  throw new Error(`farm server (--out ${out}) did not start serving:\n${output.slice(-3000)}`);
}

function stopProcess(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

/** Resolves with the exit code, or rejects after `timeoutMs`. */
function exitOf(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`process ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** `npm run farm -- status --queue URL`: the shared queue's counts, for a report. */
async function farmStatus(queue: string): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "harness/cli.ts"), "status", "--queue", queue], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  await exitOf(child, 60_000).catch(() => stopProcess(child));
  return output.trim();
}

// ---------- the fakes ----------

interface Fakes {
  child: ChildProcess;
  imageBytes: number;
  go(): void;
  /** Stops the sockets; resolves with the grabs each target answered (or [] after a second without an answer). */
  stop(): Promise<number[]>;
}

async function startServerFakes(config: ServerFakesConfig): Promise<Fakes> {
  const child = fork(path.join(HERE, "serverFakes.ts"), [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const imageBytes = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`fake sessions exited (${code}) before connecting`)));
    child.on("message", (msg: ServerFakesMessage) => {
      if ("error" in msg) reject(new Error(`fake sessions: ${msg.error}`));
      else if ("ready" in msg) resolve(msg.imageBytes);
    });
    child.send(config);
  }).catch((err: unknown) => {
    stopProcess(child);
    throw err;
  });
  child.removeAllListeners("exit");
  let stopped: Promise<number[]> | undefined;
  return {
    child, imageBytes,
    go: () => child.send("go"),
    stop: () =>
      (stopped ??= child.connected
        ? new Promise<number[]>((resolve) => {
            child.on("message", (msg: ServerFakesMessage) => "grabs" in msg && resolve(msg.grabs));
            setTimeout(() => resolve([]), 1000).unref();
            child.send("stop");
          })
        : Promise.resolve([])),
  };
}

// ---------- counting written frames ----------

/** Counts the lines of a growing frames.jsonl by reading only what was appended since the last look. */
class LineCounter {
  private offset = 0;
  lines = 0;
  constructor(private readonly file: string) {}
  poll(): number {
    let fd: number;
    try {
      fd = fs.openSync(this.file, "r");
    } catch {
      return this.lines; // not there until the first job completes
    }
    try {
      const buf = Buffer.alloc(1 << 16);
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, this.offset);
        if (n === 0) break;
        for (let i = 0; i < n; i++) if (buf[i] === 0x0a) this.lines++;
        this.offset += n;
      }
    } finally {
      fs.closeSync(fd);
    }
    return this.lines;
  }
}

// ---------- one trial ----------

async function trial(variant: Variant, sessions: number, jobsFile: string, o: ServersOptions, redis: RedisServer, trialNo: number, cleanup: string[]): Promise<ServersTrial> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tabfarm-bench-servers-${variant}-`));
  if (!o.keep) cleanup.push(dir);
  const servers = variant === "redis2" ? 2 : 1;
  const queue = variant === "sqlite" ? undefined : `${redis.url}/0?queue=bench-${process.pid}-${trialNo}-${variant}-${sessions}`;
  const farms: FarmProcess[] = [];
  let fakes: Fakes | undefined;
  try {
    farms.push(...(await Promise.all(Array.from({ length: servers }, (_, i) => startFarm(jobsFile, path.join(dir, `shard-${i}`), o, queue)))));
    await waitQuiet();
    // N sessions in all; with two servers N/2 each (the first gets the odd one).
    const targets = farms.map((f, i) => ({ url: f.url, token: f.token, sessions: Math.floor(sessions / servers) + (i < sessions % servers ? 1 : 0) }));
    fakes = await startServerFakes({ targets, width: o.width, height: o.height, pngBytes: o.pngBytes ?? 60 * 1024 });
    const counters = farms.map((f) => new LineCounter(path.join(f.out, "frames.jsonl")));
    const pids = { servers: farms.map((f) => f.child.pid), fakes: fakes.child.pid, redis: redis.pid };
    const cpu = () => ({
      servers: pids.servers.reduce((a: number, pid) => a + processCpuMs(pid), 0), fakes: processCpuMs(pids.fakes), redis: processCpuMs(pids.redis), bench: processCpuMs(process.pid), machine: machineTicks(),
    });
    const cpu0 = cpu();
    const t0 = performance.now();
    fakes.go();
    // Bounded: until every frame is indexed, a server exits, or 15 minutes pass.
    const deadline = t0 + 15 * 60_000;
    let written = 0;
    while ((written = counters.reduce((a, c) => a + c.poll(), 0)) < o.frames) {
      const gone = farms.find((f) => f.child.exitCode !== null || f.child.signalCode !== null);
      if (gone) throw new Error(`farm server (--out ${gone.out}) exited with ${written}/${o.frames} frames written:\n${gone.output().slice(-3000)}`);
      if (performance.now() > deadline) throw new Error(`${variant}: only ${written}/${o.frames} frames written after 15 minutes`);
      await sleep(5);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = cpu();
    const grabs = await fakes.stop();
    // A server that has not exited a minute after the last frame was indexed is a finding, not a lost
    // measurement: the frames are written (checked below); it is reported with its output and the queue's state.
    const notExiting: string[] = [];
    for (const f of farms) {
      const code = await exitOf(f.child, 60_000).catch(async () => {
        const status = queue ? await farmStatus(queue) : "";
        notExiting.push(`server ${farms.indexOf(f) + 1} of ${servers} (pid ${f.child.pid}, --out ${f.out}) had not exited 60 s after the last frame was indexed; ` +
          `its output:\n${f.output().slice(-2000)}\nthe queue: ${status}`);
        return undefined;
      });
      if (code === undefined) continue;
      if (code !== 0 || !/jobs: \d+ done, 0 failed of \d+/.test(f.output())) {
        throw new Error(`farm server (--out ${f.out}) ended with exit code ${code}:\n${f.output().slice(-3000)}`);
      }
    }
    // The shards together: every (job, frame) of the job set exactly once.
    const seen = new Set<string>();
    for (const f of farms) {
      for await (const { line, record, error } of readFrameLines(f.out)) {
        if (!record) throw new Error(`${f.out}/frames.jsonl:${line}: ${error}`);
        const key = `${record.job}#${record.frame}`;
        if (seen.has(key)) throw new Error(`${variant}: frame ${key} was written twice (by two servers, or twice by one)`);
        seen.add(key);
      }
    }
    if (seen.size !== o.frames) throw new Error(`${variant}: the shards hold ${seen.size} distinct frames, expected ${o.frames}`);
    const grabsTotal = grabs.reduce((a, b) => a + b, 0);
    if (grabs.length && grabsTotal < o.frames) throw new Error(`${variant}: the fakes answered ${grabsTotal} grabs for ${o.frames} frames`);
    const per = (ms: number) => ms / o.frames;
    const ours = [cpu1.servers - cpu0.servers, cpu1.fakes - cpu0.fakes, cpu1.redis - cpu0.redis, cpu1.bench - cpu0.bench].reduce((a, b) => a + b, 0);
    return {
      variant, sessions, servers, frames: o.frames, seconds, fps: o.frames / seconds,
      frames_per_server: counters.map((c) => c.lines),
      not_exiting: notExiting,
      server_cpu_ms_per_frame: per(cpu1.servers - cpu0.servers),
      fakes_cpu_ms_per_frame: per(cpu1.fakes - cpu0.fakes),
      redis_cpu_ms_per_frame: variant === "sqlite" ? 0 : per(cpu1.redis - cpu0.redis),
      cores_busy: ((cpu1.machine.busy - cpu0.machine.busy) / Math.max(1, cpu1.machine.total - cpu0.machine.total)) * os.cpus().length,
      other_cores: Math.max(0, (cpu1.machine.busy - cpu0.machine.busy) * TICK_MS - ours) / 1000 / seconds,
    };
  } finally {
    await fakes?.stop();
    if (fakes) stopProcess(fakes.child);
    for (const f of farms) stopProcess(f.child);
  }
}

// ---------- the bench ----------

/** The average of the middle two for an even count, as the ingest bench's medians. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export async function benchServers(o: ServersOptions): Promise<ServersResult> {
  if (o.sessions.some((n) => n < 2)) throw new Error("servers bench: every fake session count must be at least 2 (two servers get half each)");
  const cleanup: string[] = [];
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-servers-jobs-"));
  cleanup.push(jobsDir);
  const jobsFile = path.join(jobsDir, "jobs.jsonl");
  const jobs = orbitJobs("servers", benchScene("light"), orbit(o.frames), { width: o.width, height: o.height, format: "png", perJob: o.framesPerJob });
  fs.writeFileSync(jobsFile, jobs.map((j) => JSON.stringify(j)).join("\n") + "\n");
  await buildClient(); // once: the servers below find it built (served, never loaded: the sessions are fake)
  const redis = await startRedis();
  const trials: ServersTrial[] = [];
  let trialNo = 0;
  try {
    for (let round = 0; round < o.rounds; round++) {
      for (const n of o.sessions) {
        // Rotated each round: sqlite, redis1, redis2 · redis1, redis2, sqlite · …
        const chosen = o.variants ?? VARIANTS;
        const order = chosen.map((_, i) => chosen[(i + round) % chosen.length]!);
        for (const variant of order) {
          o.log(`[servers] round ${round + 1}/${o.rounds}: ${DESCRIBE[variant]}, ${n} fake session(s), ${o.frames} frames of ${o.width}×${o.height} png …`);
          const t = await trial(variant, n, jobsFile, o, redis, ++trialNo, cleanup);
          o.log(
            `[servers]   ${fmt(t.fps, 0)} frames/s (per server ${t.frames_per_server.join(" + ")} frames); CPU ms/frame: servers ${fmt(t.server_cpu_ms_per_frame, 2)}, ` +
              `fakes ${fmt(t.fakes_cpu_ms_per_frame, 2)}, redis ${fmt(t.redis_cpu_ms_per_frame, 2)}; ${fmt(t.cores_busy, 2)} cores busy (${fmt(t.other_cores, 2)} not ours)`,
          );
          for (const problem of t.not_exiting) o.log(`[servers]   SERVER DID NOT EXIT: ${problem}`);
          trials.push(t);
        }
      }
    }
  } finally {
    await redis.stop();
    for (const dir of cleanup) fs.rmSync(dir, { recursive: true, force: true });
  }
  return { trials, summary: summarize(trials, o.sessions) };
}

function summarize(trials: ServersTrial[], sessions: number[]): ServersResult["summary"] {
  const summary: ServersResult["summary"] = {};
  for (const n of sessions) {
    const row: Record<string, number | string> = {};
    const fps: Partial<Record<Variant, number>> = {};
    for (const v of VARIANTS) {
      const ts = trials.filter((t) => t.sessions === n && t.variant === v);
      if (!ts.length) continue;
      fps[v] = median(ts.map((t) => t.fps));
      row[`${v}_fps`] = fps[v]!;
      row[`${v}_fps_runs`] = ts.map((t) => Math.round(t.fps)).join(" ");
      row[`${v}_server_cpu_ms_per_frame`] = median(ts.map((t) => t.server_cpu_ms_per_frame));
      row[`${v}_fakes_cpu_ms_per_frame`] = median(ts.map((t) => t.fakes_cpu_ms_per_frame));
      if (v !== "sqlite") row[`${v}_redis_cpu_ms_per_frame`] = median(ts.map((t) => t.redis_cpu_ms_per_frame));
      row[`${v}_cores_busy`] = median(ts.map((t) => t.cores_busy));
      row[`${v}_other_cores`] = median(ts.map((t) => t.other_cores));
      row[`${v}_servers_not_exiting`] = ts.reduce((a, t) => a + t.not_exiting.length, 0);
    }
    if (fps.redis2 !== undefined && fps.redis1 !== undefined) row.two_vs_one_redis = fps.redis2 / fps.redis1;
    if (fps.redis1 !== undefined && fps.sqlite !== undefined) row.redis_vs_sqlite = fps.redis1 / fps.sqlite;
    // The same ratios round by round (each against the baseline of its own round), for the spread.
    const rounds = (v: Variant) => trials.filter((t) => t.sessions === n && t.variant === v).map((t) => t.fps);
    const [s, r1, r2] = [rounds("sqlite"), rounds("redis1"), rounds("redis2")];
    row.two_vs_one_redis_runs = r2.map((x, i) => fmt(x / r1[i]!, 2)).join(" ");
    row.redis_vs_sqlite_runs = r1.map((x, i) => fmt(x / s[i]!, 2)).join(" ");
    summary[`sessions_${n}`] = row;
  }
  return summary;
}

export function printServers(r: ServersResult, o: Pick<ServersOptions, "frames" | "rounds" | "width" | "height">, out: (line: string) => void = console.log): void {
  out("");
  out(`servers: fake sessions (no Chromium) answering every grab with a ~60 KB ${o.width}×${o.height} PNG; ${o.frames} frames a trial;`);
  out(`farm servers as separate processes (npm run farm -- --serve-only --jobs …); median of ${o.rounds} interleaved round(s), ${os.cpus().length} cores`);
  const rows: (string | number)[][] = [["fake sessions", "way", "frames/s", "÷ 1 server Redis", "÷ SQLite", "srv CPU ms/f", "redis ms/f", "fakes ms/f", "cores busy", "not ours", "frames/s of each round"]];
  for (const [key, row] of Object.entries(r.summary)) {
    const n = key.replace("sessions_", "");
    for (const v of VARIANTS) {
      if (row[`${v}_fps`] === undefined) continue;
      const f = row[`${v}_fps`] as number;
      rows.push([
        n, DESCRIBE[v], fmt(f, 0), fmt(f / (row.redis1_fps as number), 2), fmt(f / (row.sqlite_fps as number), 2),
        fmt(row[`${v}_server_cpu_ms_per_frame`] as number, 2), v === "sqlite" ? "-" : fmt(row[`${v}_redis_cpu_ms_per_frame`] as number, 2),
        fmt(row[`${v}_fakes_cpu_ms_per_frame`] as number, 2), fmt(row[`${v}_cores_busy`] as number, 2), fmt(row[`${v}_other_cores`] as number, 2), String(row[`${v}_fps_runs`]),
      ]);
    }
  }
  printTable(rows, out);
  out("");
  out("ratios round by round (each against its own round's baseline):");
  for (const [key, row] of Object.entries(r.summary)) {
    out(`  ${key.replace("sessions_", "")} fake sessions: 2 servers ÷ 1 (Redis) ${row.two_vs_one_redis_runs}; 1 server Redis ÷ SQLite ${row.redis_vs_sqlite_runs}`);
  }
  const stuck = r.trials.filter((t) => t.not_exiting.length);
  if (stuck.length) out(`\nservers that did not exit after their last frame (a bug; figures kept): ${stuck.map((t) => `${t.variant} ${t.sessions} sessions`).join(", ")}`);
}

export const serversJson = (r: ServersResult) => roundDeep({ bench: "servers", ...r.summary });

// ---------- real Chromium: 1 server × 2 tabs vs 2 servers × 1 tab, on one Redis queue ----------
// The farm as users run it (`npm run farm -- --sessions K --queue … --out SHARD`, launching its own headless
// tabs, --browsers left at its default: one per tab here, so two Chromium processes in both ways). Launch
// and page load cannot be held back across processes, so the rate is taken from the first job indexed (in
// any shard) to the last: frames indexed after the first look that saw any / the time in between.
// Jobs complete in waves (10 frames a job, a tab works on at most two): give each tab several jobs
// (light 300, heavy 120 frames by default), or the first-to-last window overstates the rate.

export type ChromiumWay = "one_server_two_tabs" | "two_servers_one_tab";
const CHROMIUM_WAYS: ChromiumWay[] = ["one_server_two_tabs", "two_servers_one_tab"];

export interface ServersChromiumOptions {
  scenes: SceneName[];
  frames: Record<SceneName, number>;
  width: number;
  height: number;
  inFlight: number;
  framesPerJob: number;
  rounds: number;
  keep: boolean;
  log: (line: string) => void;
}

export interface ChromiumTrial {
  scene: SceneName;
  way: ChromiumWay;
  frames: number;
  /** Frames indexed after timing started (the first job's are before it). */
  timed_frames: number;
  seconds: number;
  fps: number;
  frames_per_server: number[];
}

async function chromiumTrial(scene: SceneName, way: ChromiumWay, jobsFile: string, frames: number, o: ServersChromiumOptions, redis: RedisServer, trialNo: number, cleanup: string[]): Promise<ChromiumTrial> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tabfarm-bench-servers-chromium-`));
  if (!o.keep) cleanup.push(dir);
  const queue = `${redis.url}/0?queue=bench-chromium-${process.pid}-${trialNo}`;
  const shards = way === "one_server_two_tabs" ? [["--sessions", "2"]] : [["--sessions", "1"], ["--sessions", "1"]];
  const farms: FarmProcess[] = [];
  try {
    await waitQuiet();
    farms.push(...(await Promise.all(shards.map((tabs, i) => startFarm(jobsFile, path.join(dir, `shard-${i}`), o, queue, tabs)))));
    const counters = farms.map((f) => new LineCounter(path.join(f.out, "frames.jsonl")));
    const deadline = performance.now() + 15 * 60_000;
    let start: { at: number; lines: number } | undefined;
    let written = 0;
    while ((written = counters.reduce((a, c) => a + c.poll(), 0)) < frames) {
      if (written > 0 && !start) start = { at: performance.now(), lines: written };
      const gone = farms.find((f) => f.child.exitCode !== null || f.child.signalCode !== null);
      if (gone) throw new Error(`farm server (--out ${gone.out}) exited with ${written}/${frames} frames written:\n${gone.output().slice(-3000)}`);
      if (performance.now() > deadline) throw new Error(`${scene}/${way}: only ${written}/${frames} frames written after 15 minutes`);
      await sleep(5);
    }
    const end = performance.now();
    start ??= { at: end, lines: 0 };
    for (const f of farms) {
      const code = await exitOf(f.child, 120_000);
      if (code !== 0 || !/jobs: \d+ done, 0 failed of \d+/.test(f.output())) throw new Error(`farm server (--out ${f.out}) ended with exit code ${code}:\n${f.output().slice(-3000)}`);
    }
    const timed = frames - start.lines;
    const seconds = (end - start.at) / 1000;
    return { scene, way, frames, timed_frames: timed, seconds, fps: timed / seconds, frames_per_server: counters.map((c) => c.lines) };
  } finally {
    for (const f of farms) stopProcess(f.child);
  }
}

export async function benchServersChromium(o: ServersChromiumOptions): Promise<{ trials: ChromiumTrial[]; summary: Record<string, Record<string, number | string>> }> {
  const cleanup: string[] = [];
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-servers-jobs-"));
  cleanup.push(jobsDir);
  await buildClient();
  const redis = await startRedis();
  const trials: ChromiumTrial[] = [];
  let trialNo = 0;
  try {
    for (let round = 0; round < o.rounds; round++) {
      for (const scene of o.scenes) {
        const jobsFile = path.join(jobsDir, `${scene}.jsonl`);
        const frames = o.frames[scene];
        if (!fs.existsSync(jobsFile)) {
          const jobs = orbitJobs(`servers-${scene}`, benchScene(scene), orbit(frames), { width: o.width, height: o.height, format: "png", perJob: o.framesPerJob });
          fs.writeFileSync(jobsFile, jobs.map((j) => JSON.stringify(j)).join("\n") + "\n");
        }
        const order = round % 2 ? [...CHROMIUM_WAYS].reverse() : CHROMIUM_WAYS;
        for (const way of order) {
          o.log(`[servers chromium] round ${round + 1}/${o.rounds}: ${scene}, ${way.replaceAll("_", " ")}, ${frames} frames …`);
          const t = await chromiumTrial(scene, way, jobsFile, frames, o, redis, ++trialNo, cleanup);
          o.log(`[servers chromium]   ${fmt(t.fps)} frames/s over ${t.timed_frames} frames (per server ${t.frames_per_server.join(" + ")})`);
          trials.push(t);
        }
      }
    }
  } finally {
    await redis.stop();
    for (const dir of cleanup) fs.rmSync(dir, { recursive: true, force: true });
  }
  const summary: Record<string, Record<string, number | string>> = {};
  for (const scene of o.scenes) {
    const row: Record<string, number | string> = {};
    for (const way of CHROMIUM_WAYS) {
      const ts = trials.filter((t) => t.scene === scene && t.way === way);
      row[`${way}_fps`] = median(ts.map((t) => t.fps));
      row[`${way}_fps_runs`] = ts.map((t) => fmt(t.fps)).join(" ");
    }
    row.two_vs_one = (row.two_servers_one_tab_fps as number) / (row.one_server_two_tabs_fps as number);
    summary[scene] = row;
  }
  return { trials, summary };
}

export function printServersChromium(r: Awaited<ReturnType<typeof benchServersChromium>>, o: Pick<ServersChromiumOptions, "rounds" | "width" | "height">, out: (line: string) => void = console.log): void {
  out("");
  out(`servers, real Chromium (SwiftShader), one Redis queue, ${o.width}×${o.height} png; rate from the first job indexed to the last; median of ${o.rounds} interleaved round(s)`);
  const rows: (string | number)[][] = [["scene", "1 server × 2 tabs f/s", "2 servers × 1 tab f/s", "2 ÷ 1", "rounds (1 server | 2 servers)"]];
  for (const [scene, row] of Object.entries(r.summary)) {
    rows.push([scene, fmt(row.one_server_two_tabs_fps as number), fmt(row.two_servers_one_tab_fps as number), fmt(row.two_vs_one as number, 2), `${row.one_server_two_tabs_fps_runs} | ${row.two_servers_one_tab_fps_runs}`]);
  }
  printTable(rows, out);
}

// Measuring helpers for the benches: this process's CPU and peak RSS, the CPU of the browser
// processes it launched (from /proc, by Chromium process type), machine-wide CPU use, and a table printer.
import fs from "node:fs";

// ---------- this process: CPU and RSS ----------

/** Samples process.memoryUsage().rss every `everyMs` until stop(); returns the peak in bytes. `onSample` sees every sample. */
export function rssSampler(everyMs = 100, onSample?: (rssBytes: number) => void): { stop(): number; peak(): number } {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    const rss = process.memoryUsage().rss;
    if (rss > peak) peak = rss;
    onSample?.(rss);
  }, everyMs);
  timer.unref();
  return {
    peak: () => peak,
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage().rss);
    },
  };
}

// ---------- descendant processes (the browsers) via /proc ----------

const TICK_MS = 10; // CLK_TCK is 100 on Linux
type ProcSample = Map<number, { ticks: number; kind: string }>;

function readStat(pid: number): { ppid: number; ticks: number } | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    const after = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // after[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    return { ppid: Number(after[1]), ticks: Number(after[11]) + Number(after[12]) };
  } catch {
    return null;
  }
}

export function kindOf(pid: number): string {
  try {
    // Chromium rewrites its children's titles (setproctitle): one string with spaces, not NUL-separated.
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0+$/, "");
    const cmd = raw.includes("\0") ? raw.split("\0") : raw.split(" ");
    const type = cmd.find((a) => a.startsWith("--type="))?.slice(7);
    const exe = cmd[0] ?? "";
    if (!type) return /chrom/i.test(exe) ? "browser" : "other";
    if (type === "utility") {
      const sub = cmd.find((a) => a.startsWith("--utility-sub-type="))?.slice(19) ?? "";
      return /network/i.test(sub) ? "network" : /storage/i.test(sub) ? "storage" : "utility";
    }
    return type === "gpu-process" ? "gpu" : type; // renderer, zygote, …
  } catch {
    return "gone";
  }
}

/** CPU ticks of every descendant of this process, with its Chromium process type. */
export function sampleChildren(): ProcSample {
  const parents = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s) continue;
    parents.set(Number(name), s.ppid);
    ticks.set(Number(name), s.ticks);
  }
  const mine = new Set<number>([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) if (!mine.has(pid) && mine.has(ppid)) (mine.add(pid), (grew = true));
  }
  mine.delete(process.pid);
  const out: ProcSample = new Map();
  for (const pid of mine) out.set(pid, { ticks: ticks.get(pid) ?? 0, kind: kindOf(pid) });
  return out;
}

/** CPU ms per process kind between two samples (processes born in between count from zero). */
export function childCpuDelta(before: ProcSample, after: ProcSample): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [pid, a] of after) {
    const b = before.get(pid)?.ticks ?? 0;
    out[a.kind] = (out[a.kind] ?? 0) + (a.ticks - b) * TICK_MS;
  }
  return out;
}

// ---------- machine-wide ----------

function cpuTimes(): { busy: number; total: number } {
  const line = fs.readFileSync("/proc/stat", "latin1").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Everything measured over one timed phase. */
export interface PhaseMeasure {
  wallMs: number;
  /** CPU of this (server/bench) process. */
  serverCpuMs: number;
  /** CPU of the launched browsers, by process kind (gpu, renderer, browser, network, …). */
  childCpuMs: Record<string, number>;
  /** Share of all cores busy (0..1) over the phase, machine-wide. */
  machineBusy: number;
  /** CPU ms used machine-wide by processes that are neither this one nor its browsers (other people's work). */
  foreignCpuMs: number;
  peakRssBytes: number;
  /** RSS when the phase started, for the growth. */
  startRssBytes: number;
}

export function startPhase(): { stop(): PhaseMeasure } {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const kids0 = sampleChildren();
  const m0 = cpuTimes();
  const startRssBytes = process.memoryUsage().rss;
  const rss = rssSampler(100);
  return {
    stop() {
      const wallMs = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const m1 = cpuTimes();
      const childCpuMs = childCpuDelta(kids0, sampleChildren());
      const serverCpuMs = (cpu.user + cpu.system) / 1000;
      const ownMs = serverCpuMs + Object.values(childCpuMs).reduce((a, b) => a + b, 0);
      return {
        wallMs,
        serverCpuMs,
        childCpuMs,
        machineBusy: (m1.busy - m0.busy) / Math.max(1, m1.total - m0.total),
        foreignCpuMs: Math.max(0, (m1.busy - m0.busy) * TICK_MS - ownMs),
        peakRssBytes: rss.stop(),
        startRssBytes,
      };
    },
  };
}

/** Least-squares slope of y against x (e.g. RSS against frames written): growth per unit of x. */
export function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0, den = 0;
  for (const [x, y] of points) (num += (x - mx) * (y - my)), (den += (x - mx) ** 2);
  return den === 0 ? 0 : num / den;
}

// ---------- printing ----------

/** The median of `items` by `value`, the lower middle one for an even count: how the bench picks the run it reports. */
export function lowerMedian<T>(items: readonly T[], value: (item: T) => number): T {
  return [...items].sort((a, b) => value(a) - value(b))[Math.floor((items.length - 1) / 2)]!;
}

/**
 * One trial whose every numeric field is `median` of that field over `trials` (other fields: the first
 * trial's). Each bench names its median rule (lowerMedian picks a run's value; ingest averages the middle two).
 */
export function medianFields<T extends object>(trials: readonly T[], median: (values: number[]) => number): T {
  const out = { ...trials[0]! } as Record<string, unknown>;
  for (const [field, value] of Object.entries(out)) {
    if (typeof value === "number") out[field] = median(trials.map((t) => (t as Record<string, number>)[field]!));
  }
  return out as T;
}

export const fmt = (x: number | undefined | null, digits = 1): string =>
  x === undefined || x === null || !Number.isFinite(x) ? "-" : x.toFixed(digits);

/** Prints rows as an aligned table; the first row is the header. */
export function printTable(rows: (string | number)[][], out: (line: string) => void = console.log): void {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? "").length)));
  cells.forEach((r, i) => {
    out(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
    if (i === 0) out(widths.map((w) => "-".repeat(w)).join("  "));
  });
}

/** Rounds every number in a JSON-able value to `sig` significant digits. */
export function roundDeep<T>(value: T, sig = 4): T {
  if (typeof value === "number") return (Number.isFinite(value) ? Number(value.toPrecision(sig)) : value) as T;
  if (Array.isArray(value)) return value.map((v) => roundDeep(v, sig)) as T;
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, roundDeep(v, sig)])) as T;
  }
  return value;
}

// ---------- waiting for a quiet machine ----------

/** Before each timed phase: wait (up to maxWaitMs) for other processes to use less than thresholdCores. */
export const quiet = { maxWaitMs: 60_000, thresholdCores: 0.25, windowMs: 500, log: (_line: string) => {} };

function ownTicks(): number {
  const cpu = process.cpuUsage();
  let ticks = (cpu.user + cpu.system) / 1000 / TICK_MS;
  for (const { ticks: t } of sampleChildren().values()) ticks += t;
  return ticks;
}

/** Resolves once two consecutive windows show less than `quiet.thresholdCores` of other people's CPU. */
export async function waitQuiet(): Promise<{ waitedMs: number; foreignCores: number }> {
  const started = performance.now();
  let calm = 0;
  let foreignCores = 0;
  let said = false;
  while (performance.now() - started < quiet.maxWaitMs) {
    const m0 = cpuTimes();
    const own0 = ownTicks();
    await new Promise((r) => setTimeout(r, quiet.windowMs));
    const m1 = cpuTimes();
    const own1 = ownTicks();
    foreignCores = Math.max(0, (m1.busy - m0.busy - (own1 - own0)) * TICK_MS) / quiet.windowMs;
    calm = foreignCores < quiet.thresholdCores ? calm + 1 : 0;
    if (calm >= 2) break;
    if (!said && performance.now() - started > 2000) {
      quiet.log(`  (waiting for the machine to quiet down: other processes use ${foreignCores.toFixed(2)} cores)`);
      said = true;
    }
  }
  return { waitedMs: performance.now() - started, foreignCores };
}

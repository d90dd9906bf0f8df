// npm run bench -- soak --frames 20000: a long run of the real CLI, sampling the server's RSS and
// the RSS of every Chromium process it launched, once a second. Reports server growth after
// warm-up (target ≤ 50 MB), browser memory, tabs recycled, and frames/s.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { descendants } from "./chaos.js";
import { kindOf, slope } from "./report.js";
import { countFrameLines } from "../server/dataset/readDataset.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));

export interface SoakOptions {
  frames: number;
  sessions: number;
  recycleAfter: number;
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

export async function benchSoak(o: SoakOptions): Promise<Record<string, number>> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-soak-"));
  const args = [
    "--import", "tsx", path.join(REPO, "harness/cli.ts"), "--sessions", String(o.sessions), "--demo", String(o.frames),
    "--frames-per-job", String(o.framesPerJob), "--width", String(o.width), "--height", String(o.height),
    "--recycle-after", String(o.recycleAfter), "--out", out, "--no-progress",
  ];
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const samples: { t: number; frames: number; server: number; browsers: number; byKind: Record<string, number> }[] = [];
  const started = Date.now();
  // Counted between samples (a line is appended whole, with its newline).
  let framesSoFar = 0;
  const timer = setInterval(() => {
    void countFrameLines(out).then((n) => (framesSoFar = n));
    const browsers = descendants(child.pid!).filter((p) => /chrom/i.test(fs.existsSync(`/proc/${p.pid}/comm`) ? fs.readFileSync(`/proc/${p.pid}/comm`, "utf8") : ""));
    // By Chromium process kind too: recycling tabs bounds the renderers, not the GPU or browser process.
    const byKind: Record<string, number> = {};
    for (const p of browsers) byKind[kindOf(p.pid)] = (byKind[kindOf(p.pid)] ?? 0) + rssMb(p.pid);
    const s = { t: (Date.now() - started) / 1000, frames: framesSoFar, server: rssMb(child.pid!), browsers: browsers.reduce((sum, p) => sum + rssMb(p.pid), 0), byKind };
    samples.push(s);
    if (samples.length % 30 === 0) o.log?.(`[soak] ${s.t.toFixed(0)} s: ${s.frames} frames, server ${s.server.toFixed(0)} MB, browsers ${s.browsers.toFixed(0)} MB`);
  }, 1000);
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  clearInterval(timer);
  fs.rmSync(out, { recursive: true, force: true });
  if (code !== 0) throw new Error(`soak run failed (exit ${code}):\n${output.slice(-3000)}`);
  // Warm-up: the first 10 % of frames (client build, shader compile, first jobs).
  const warm = samples.find((s) => s.frames >= o.frames * 0.1) ?? samples[0];
  const live = samples.filter((s) => s.t >= warm.t);
  const peak = (key: "server" | "browsers") => Math.max(...live.map((s) => s[key]));
  const seconds = Number(/\d+ frames in ([\d.]+) s/.exec(output)?.[1] ?? 0);
  return {
    frames: o.frames,
    sessions: o.sessions,
    recycle_after: o.recycleAfter,
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
    tabs_recycled: (output.match(/rendered \d+ frames; replacing it/g) ?? []).length,
  };
}

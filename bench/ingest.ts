// Synthetic ingest: what the server side of the farm (socket.io, image check, lease checks, atomic file
// writes, frames.jsonl, the SQLite queue) can take in when rendering costs nothing. Fake sessions in a
// child process answer every grab at once with a pre-encoded ~60 KB 640×480 PNG; a real startRun with
// declarative jobs writes them durably. Reported: frames/s and MB/s written, server CPU per frame.
// Run: npm run bench -- ingest [--sweep 4,8] [--frames 3000]   (or npx tsx bench/ingest.ts)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRun } from "../server/runFarm.js";
import { buildClient } from "../harness/buildClient.js";
import { benchScene, orbit, orbitJobs } from "./scenes.js";
import { gateTakes } from "./farmGate.js";
import { fmt, printTable, roundDeep, startPhase, waitQuiet } from "./report.js";
import type { FakeSessionsConfig } from "./fakeSessions.js";

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
  keep: boolean;
  log: (line: string) => void;
}

export interface IngestTrial {
  sessions: number;
  frames: number;
  fps: number;
  mb_per_s: number;
  png_bytes: number;
  server_cpu_ms_per_frame: number;
  /** CPU of the fake sessions' process per frame (the load generator). */
  client_cpu_ms_per_frame: number;
  cores_busy: number;
  not_ours_cores: number;
  peak_server_rss_mb: number;
  seconds: number;
}

export type IngestResult = Record<string, IngestTrial | number | string>;

async function startFakes(config: FakeSessionsConfig): Promise<{ child: ChildProcess; pngBytes: number }> {
  const child = fork(path.join(HERE, "fakeSessions.ts"), [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const pngBytes = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`fake sessions exited (${code}) before connecting`)));
    child.on("message", (msg: { ready?: number; pngBytes?: number; error?: string }) => {
      if (msg.error) reject(new Error(`fake sessions: ${msg.error}`));
      else if (msg.ready !== undefined) resolve(msg.pngBytes ?? 0);
    });
    child.send(config);
  });
  child.removeAllListeners("exit");
  return { child, pngBytes };
}

async function trial(sessions: number, o: IngestOptions): Promise<IngestTrial> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-ingest-"));
  const clientDir = await buildClient(); // served but never loaded: the sessions here are fake
  const lines: string[] = [];
  const run = await startRun({
    out, clientDir,
    jobs: orbitJobs(`ingest-${sessions}`, benchScene("light"), orbit(o.frames), { width: o.width, height: o.height, format: "png", perJob: o.framesPerJob }),
    width: o.width, height: o.height, format: "png", inFlight: o.inFlight,
    log: (line) => lines.push(line),
  });
  const gate = gateTakes(run.queue);
  let child: ChildProcess | undefined;
  try {
    const fakes = await startFakes({ url: run.url, token: run.farm.token, sessions, width: o.width, height: o.height, pngBytes: o.pngBytes ?? 60 * 1024 });
    child = fakes.child;
    const until = Date.now() + 30_000;
    while (run.farm.sessions.size < sessions) {
      if (Date.now() > until) throw new Error(`only ${run.farm.sessions.size}/${sessions} fake sessions said hello`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitQuiet();
    const phase = startPhase();
    gate.open();
    const summary = await run.finished;
    const m = phase.stop();
    if (summary.frames !== o.frames || summary.counts.failed) {
      throw new Error(`ingest run ended with ${summary.frames}/${o.frames} frames, ${summary.counts.failed} failed:\n${lines.slice(-20).join("\n")}`);
    }
    const indexLines = fs.readFileSync(path.join(out, "frames.jsonl"), "utf8").split("\n").filter(Boolean).length;
    if (indexLines !== o.frames) throw new Error(`frames.jsonl has ${indexLines} lines, expected ${o.frames}`);
    const seconds = m.wallMs / 1000;
    const clientCpu = Object.values(m.childCpuMs).reduce((a, b) => a + b, 0);
    return {
      sessions,
      frames: summary.frames,
      fps: summary.frames / seconds,
      mb_per_s: (summary.frames * fakes.pngBytes) / 2 ** 20 / seconds,
      png_bytes: fakes.pngBytes,
      server_cpu_ms_per_frame: m.serverCpuMs / summary.frames,
      client_cpu_ms_per_frame: clientCpu / summary.frames,
      cores_busy: m.machineBusy * os.cpus().length,
      not_ours_cores: m.foreignCpuMs / m.wallMs,
      peak_server_rss_mb: m.peakRssBytes / 2 ** 20,
      seconds,
    };
  } finally {
    child?.send("stop");
    await run.close();
    child?.kill();
    if (!o.keep) fs.rmSync(out, { recursive: true, force: true });
  }
}

export async function benchIngest(o: IngestOptions): Promise<IngestResult> {
  const result: IngestResult = {};
  for (const n of o.sessions) {
    o.log(`[ingest] ${n} fake session(s), ${o.frames} frames of ${o.width}×${o.height} png …`);
    const t = await trial(n, o);
    o.log(`[ingest]   ${fmt(t.fps, 0)} frames/s, ${fmt(t.mb_per_s)} MB/s`);
    result[`sessions_${n}`] = t;
  }
  return result;
}

export function printIngest(r: IngestResult, out: (line: string) => void = console.log): void {
  const trials = Object.values(r).filter((t): t is IngestTrial => typeof t === "object");
  out("");
  out(`ingest: fake sessions answer every grab at once with the same PNG; real startRun, declarative jobs, durable writes`);
  const rows: (string | number)[][] = [["fake sessions", "frames", "frames/s", "MB/s", "PNG KB", "srv CPU ms/f", "fakes CPU ms/f", "cores busy", "not ours", "peak RSS MB"]];
  for (const t of trials) {
    rows.push([
      t.sessions, t.frames, fmt(t.fps, 0), fmt(t.mb_per_s), fmt(t.png_bytes / 1024, 0), fmt(t.server_cpu_ms_per_frame, 2),
      fmt(t.client_cpu_ms_per_frame, 2), fmt(t.cores_busy, 2), fmt(t.not_ours_cores, 2), fmt(t.peak_server_rss_mb, 0),
    ]);
  }
  printTable(rows, out);
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

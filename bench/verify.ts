// `verify` on a big dataset: how fast it checks, how many cores it keeps busy, and that its memory stays
// bounded. A synthetic dataset in the farm's layout (images/<job>/<frame>.png + .mask.png, 10 frames per
// job, the queue's jobs done, one frames.jsonl line per frame with its instances) is written once, then
// verified with one line at a time and with the default parallelism, in the same run (the ratio is the
// figure; absolute speed depends on the disk and the machine's load).
// Run: npx tsx bench/verify.ts [frames=100000] [width=64] [height=48]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import sharp from "sharp";
import { openDataset } from "../server/dataset/openDataset.js";
import { FRAMES_INDEX } from "../server/dataset/readDataset.js";
import { verifyDataset } from "../server/dataset/verifyDataset.js";
import { fmt, printTable } from "./report.js";

const PER_JOB = 10;

/** Writes the dataset: `frames` frames of rgb + mask (two instances) at width×height. */
export async function makeDataset(out: string, frames: number, width: number, height: number): Promise<void> {
  const rgb = await sharp({ create: { width, height, channels: 3, background: "#5080c0" } }).png().toBuffer();
  const ids = new Uint16Array(width * height);
  for (let i = 0; i < ids.length; i++) ids[i] = i % width < width / 2 ? 1 : 2;
  const mask = await sharp(ids, { raw: { width, height, channels: 1 } }).toColourspace("grey16").png().toBuffer();
  const half = Math.ceil(width / 2);
  const instances = [
    { id: 1, key: "left", pixels: half * height, bbox: [0, 0, half, height] },
    { id: 2, key: "right", pixels: (width - half) * height, bbox: [half, 0, width - half, height] },
  ];
  const jobs = Math.ceil(frames / PER_JOB);
  const dataset = await openDataset(out, { log: () => {} });
  try {
    await dataset.queue.add(Array.from({ length: jobs }, (_, j) => ({ id: `job-${j}`, frames: Array.from({ length: Math.min(PER_JOB, frames - j * PER_JOB) }, () => ({})) })));
    for (let lease = await dataset.queue.take("bench"); lease; lease = await dataset.queue.take("bench")) await dataset.queue.complete(lease.token);
  } finally {
    await dataset.close();
  }
  const index = fs.openSync(path.join(out, FRAMES_INDEX), "w");
  for (let j = 0; j < jobs; j++) {
    const folder = path.join(out, "images", `job-${j}`);
    fs.mkdirSync(folder, { recursive: true });
    const lines: string[] = [];
    for (let f = 0; f < PER_JOB && j * PER_JOB + f < frames; f++) {
      const name = String(f).padStart(6, "0");
      fs.writeFileSync(path.join(folder, `${name}.png`), rgb);
      fs.writeFileSync(path.join(folder, `${name}.mask.png`), mask);
      const file = `images/job-${j}/${name}.png`;
      lines.push(JSON.stringify({
        job: `job-${j}`, frame: f, file, width, height, format: "png", layers: { rgb: file, mask: `images/job-${j}/${name}.mask.png` },
        K: [[50, 0, width / 2], [0, 50, height / 2], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]],
        instances, params: {}, session: "s1", render_ms: 1, encode_ms: 1, attempt: 1,
      }));
    }
    fs.writeSync(index, lines.join("\n") + "\n");
  }
  fs.closeSync(index);
}

export interface VerifyTrial {
  parallel: number;
  seconds: number;
  lines_per_s: number;
  files_per_s: number;
  /** (user + sys CPU) / wall: cores kept busy, libuv's pool included. */
  cores_busy: number;
  peak_rss_mb: number;
  problems: number;
}

export async function trial(out: string, parallel?: number): Promise<VerifyTrial> {
  const cpu0 = process.cpuUsage();
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
  const t0 = performance.now();
  const report = await verifyDataset(out, parallel ? { parallel } : {});
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const cpu = process.cpuUsage(cpu0);
  return {
    parallel: parallel ?? 2 * os.availableParallelism(),
    seconds,
    lines_per_s: report.lines / seconds,
    files_per_s: report.files / seconds,
    cores_busy: (cpu.user + cpu.system) / 1e6 / seconds,
    peak_rss_mb: Math.max(peak, process.memoryUsage.rss()) / 2 ** 20,
    problems: report.problemCount,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const [frames = 100_000, width = 64, height = 48] = process.argv.slice(2).map(Number);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bench-verify-"));
  try {
    const t0 = performance.now();
    await makeDataset(out, frames, width, height);
    console.error(`[verify] wrote ${frames} frames (${2 * frames} files) in ${((performance.now() - t0) / 1000).toFixed(1)} s; rss before verifying ${fmt(process.memoryUsage.rss() / 2 ** 20, 0)} MB`);
    const trials = [await trial(out, 1), await trial(out)];
    printTable([
      ["parallel lines", "seconds", "lines/s", "files/s", "cores busy", "peak RSS MB", "problems"],
      ...trials.map((t) => [t.parallel, fmt(t.seconds, 1), fmt(t.lines_per_s, 0), fmt(t.files_per_s, 0), fmt(t.cores_busy, 2), fmt(t.peak_rss_mb, 0), t.problems]),
    ]);
    console.log(`default ÷ one at a time: ${fmt(trials[1]!.lines_per_s / trials[0]!.lines_per_s, 2)}× lines/s`);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

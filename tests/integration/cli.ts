// Helpers for tests that run the farm as users do: the CLI in a child process, and its dataset.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable } from "node:stream";
import { PNG } from "pngjs";
import Database from "better-sqlite3";
import { QUEUE_FILE } from "../../server/dataset/openDataset.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";
import { readFrameRecords } from "../../server/dataset/readDataset.js";

export const REPO = path.resolve(import.meta.dirname, "../..");

/**
 * Starts the farm CLI (`node --import tsx harness/cli.ts …`, what `npm run farm` runs) and collects
 * what it prints. `detached` puts it in a process group of its own, so a test can signal the farm and
 * the Chromium it launched together.
 */
export function spawnFarmCli(args: string[], options: { detached?: boolean } = {}): { child: ChildProcessByStdio<null, Readable, Readable>; output: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "harness/cli.ts"), ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  return { child, output: () => output };
}

/** Runs `npm run farm -- …` (as node --import tsx harness/cli.ts) and resolves with its exit code and output. */
export function runFarmCli(args: string[], timeoutMs = 240_000): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const { child, output } = spawnFarmCli(args);
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`farm did not finish within ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output: output() });
    });
  });
}

/** Runs `body` with a new empty folder under the system's temp dir, removed afterwards whatever happens. */
export async function withTempDir(prefix: string, body: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  try {
    await body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The records of `<out>/frames.jsonl` (server/dataset/readDataset.ts); none when the file does not exist yet. */
export function readFrames(out: string): FrameRecord[] {
  return readFrameRecords(out);
}

/** Attempts of each job in a run's queue (queue.sqlite under `out`), in the order the jobs were added. */
export function jobAttempts(out: string): number[] {
  const db = new Database(path.join(out, QUEUE_FILE), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT attempts FROM jobs ORDER BY seq").all() as { attempts: number }[]).map((r) => r.attempts);
  } finally {
    db.close();
  }
}

/** Decodes a PNG and returns how many distinct colours it has (a blank frame has one). */
export function decodePng(file: string): { width: number; height: number; colours: number } {
  const png = PNG.sync.read(fs.readFileSync(file));
  const colours = new Set<number>();
  for (let i = 0; i < png.data.length && colours.size < 1000; i += 4 * 7) colours.add(png.data.readUInt32BE(i));
  return { width: png.width, height: png.height, colours: colours.size };
}

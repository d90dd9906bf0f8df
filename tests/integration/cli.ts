// Helpers for tests that run the farm as users do: the CLI in a child process, and its dataset.
import fs from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import { PNG } from "pngjs";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";

export const REPO = path.resolve(import.meta.dirname, "../..");

/** Runs `npm run farm -- …` (as tsx harness/cli.ts) and resolves with its exit code and output. */
export function runFarmCli(args: string[], timeoutMs = 240_000): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "harness/cli.ts"), ...args], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`farm did not finish within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** The lines of `<out>/frames.jsonl`; none when the file does not exist yet. */
export function readFrames(out: string): FrameRecord[] {
  const file = path.join(out, "frames.jsonl");
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as FrameRecord);
}

/** Decodes a PNG and returns how many distinct colours it has (a blank frame has one). */
export function decodePng(file: string): { width: number; height: number; colours: number } {
  const png = PNG.sync.read(fs.readFileSync(file));
  const colours = new Set<number>();
  for (let i = 0; i < png.data.length && colours.size < 1000; i += 4 * 7) colours.add(png.data.readUInt32BE(i));
  return { width: png.width, height: png.height, colours: colours.size };
}

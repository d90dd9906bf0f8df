// The farm end to end, as users run it: the CLI in a child process, real Chromium tabs, real files.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
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

export function readFrames(out: string): FrameRecord[] {
  const text = fs.readFileSync(path.join(out, "frames.jsonl"), "utf8");
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

/** Decodes a PNG and returns how many distinct colours it has (a blank frame has one). */
export function decodePng(file: string): { width: number; height: number; colours: number } {
  const png = PNG.sync.read(fs.readFileSync(file));
  const colours = new Set<number>();
  for (let i = 0; i < png.data.length && colours.size < 1000; i += 4 * 7) colours.add(png.data.readUInt32BE(i));
  return { width: png.width, height: png.height, colours: colours.size };
}

describe("farm CLI", () => {
  it("renders 20 demo frames with 2 sessions into decodable, non-blank PNGs of the requested size", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-it-"));
    try {
      const { code, output } = await runFarmCli(["--sessions", "2", "--demo", "20", "--frames-per-job", "5", "--width", "320", "--height", "240", "--out", out, "--no-progress"]);
      assert.equal(code, 0, output);
      assert.match(output, /WebGL renderer of the first tab: .+/);
      assert.match(output, /20 frames in .* jobs: 4 done, 0 failed of 4/);
      const frames = readFrames(out);
      assert.equal(frames.length, 20);
      const seen = new Set(frames.map((f) => `${f.job}/${f.frame}`));
      assert.equal(seen.size, 20, "one line per (job, frame)");
      const sessions = new Set(frames.map((f) => f.session));
      assert.equal(sessions.size, 2, `both sessions rendered (got ${[...sessions]})`);
      for (const f of frames) {
        assert.equal(f.format, "png");
        assert.deepEqual([f.width, f.height], [320, 240]);
        assert.equal(f.K[0][2], 160);
        assert.equal(f.cameraToWorld.length, 4);
        const image = decodePng(path.join(out, f.file));
        assert.deepEqual([image.width, image.height], [320, 240], f.file);
        assert.ok(image.colours > 20, `${f.file} looks blank (${image.colours} colours)`);
      }
      // Consecutive orbit poses are different images.
      const a = fs.readFileSync(path.join(out, frames.find((f) => f.job === "demo-0000" && f.frame === 0)!.file));
      const b = fs.readFileSync(path.join(out, frames.find((f) => f.job === "demo-0000" && f.frame === 1)!.file));
      assert.notDeepEqual(a, b);
      const leftovers = fs.readdirSync(out, { recursive: true }).map(String).filter((n) => n.endsWith(".tmp"));
      assert.deepEqual(leftovers, [], "no temp files left behind");
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

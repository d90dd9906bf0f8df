// A whole farm run without a browser, for tests of what a run does with its options (templates, seeds,
// randomizers): startRun with a fake session answering every grab with a 16×12 PNG.
import fs from "node:fs";
import path from "node:path";
import { readFrameRecords } from "../../server/dataset/readDataset.js";
import type { Template } from "../../server/jobs/templateJobs.js";
import { startRun, type RunOptions } from "../../server/runFarm.js";
import { fakeSession } from "../integration/fakeSession.js";

/** A stand-in client folder under `base` (the fake session loads no page). */
function clientDir(base: string): string {
  const dir = path.join(base, "client");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "index.html"), "<!doctype html>");
  return dir;
}

/** Runs the farm with `options` to its end, as `npm run farm` would; resolves with its log lines. */
export async function runToEnd(base: string, options: Omit<RunOptions, "clientDir" | "token" | "log">): Promise<string[]> {
  const lines: string[] = [];
  const token = "fake-run-token";
  const run = await startRun({ width: 16, height: 12, ...options, clientDir: clientDir(base), token, log: (line) => lines.push(line) });
  const session = await fakeSession({ port: Number(new URL(run.url).port), token, worker: "fake", answer: "png", width: 16, height: 12 });
  try {
    await run.finished;
  } finally {
    session.close();
    await run.close();
  }
  return lines;
}

/** The template frame of every template line of a dataset (job frame-00000120's frame f is frame 120 + f), sorted, repeats kept. */
export const templateFrames = (out: string): number[] =>
  readFrameRecords(out).filter((r) => r.job.startsWith("frame-")).map((r) => Number(r.job.slice("frame-".length)) + r.frame).sort((a, b) => a - b);

/** The scene these tests render: a DefaultScene holding one Box, key "box". */
export const BOX_SCENE = { tag: "DefaultScene", key: "root", children: [{ tag: "Box", key: "box" }] };
/** A small template of BOX_SCENE whose box colour is drawn per frame. */
export const BOX_COLOUR_TEMPLATE = { scene: BOX_SCENE, width: 16, height: 12, randomize: [{ key: "box", prop: "color", hsv: {} }] } as Template;
/** 0, 1, …, n − 1: the template frames a dataset of n frames holds. */
export const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

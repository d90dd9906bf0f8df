// Throughput bench: the same scene, size, format and number of sessions rendered several ways in one run.
//   naive — the raw loop with the browser's defaults (SwiftShader, the canvas PNG encoder): what a user
//           writing their own loop gets; the farm against it is "what a user gets".
//   raw   — window.tabfarm.rawLoop in N pages: no server, no queue, render → read → encode awaited in turn,
//           with the farm's GL backend and PNG encoder; the farm against it is the farm's efficiency.
//   seed  — the server asks each session for one frame, awaits it, writes it, asks for the next.
//   farm  — startRun with declarative jobs and TabPool tabs, as users run it (in-flight window, queue, dataset).
// seed and farm use the farm's GL backend (--gl, `auto` resolved by harness/chooseGl.ts) and PNG encoder.
// Then, per scene, the farm way once per layer set (--layers-compare, default rgb vs rgb,depth,mask,normal),
// the sets taking turns in every repeat: what extra layers cost in frames/s, CPU, bytes.
// Every way gets a fresh browser; timing starts when all its pages are connected and their canvas is up,
// so browser launch and page load are excluded from all three. The first scene set (geometry build,
// shader compilation) is inside the timed part of all three.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { SceneElement } from "../protocol/elements.js";
import type { CameraPose } from "../protocol/camera.js";
import type { ImageFormat } from "../protocol/grab.js";
import { resolveLayers, type LayerName } from "../protocol/layers.js";
import { Farm } from "../server/session/Farm.js";
import type { Session } from "../server/session/Session.js";
import { startRun } from "../server/runFarm.js";
import { DatasetWriter } from "../server/dataset/DatasetWriter.js";
import type { FrameRecord } from "../server/dataset/FrameRecord.js";
import { readFrameRecords, recordFiles } from "../server/dataset/readDataset.js";
import { FARM_CAMERA_KEY, poseProps, withFarmCamera } from "../server/dispatch/farmCamera.js";
import { TabPool } from "../harness/TabPool.js";
import { findBrowser } from "../harness/findBrowser.js";
import type { ConcreteGlBackend } from "../harness/chromiumFlags.js";
import { DEFAULT_PNG_ENCODER, type PngEncoderName } from "../client/src/capture/encoderPool.js";
import { buildClientInChild } from "./buildClientChild.js";
import { gateTakes } from "./farmGate.js";
import { benchScene, orbit, orbitJobs, split, type SceneName } from "./scenes.js";
import { fmt, lowerMedian, printTable, roundDeep, startPhase, waitQuiet, type PhaseMeasure } from "./report.js";

export interface ThroughputOptions {
  sessions: number;
  scenes: SceneName[];
  /** Frames per way, per scene (each way renders the same orbit). */
  frames: Record<SceneName, number>;
  /** Session counts for the farm sweep (light scene); empty to skip. */
  sweep: number[];
  sweepFrames: number;
  /** Layer sets the farm renders each scene with, in turn (the first is the baseline of the ratios); none: skipped. */
  layerSets?: LayerName[][];
  /** Frames per layer set, per scene (default: `frames`). */
  layersFrames?: Record<SceneName, number>;
  width: number;
  height: number;
  format: ImageFormat;
  /** Grabs in flight per session in the farm (the CLI's default is 3). */
  inFlight: number;
  framesPerJob: number;
  /** Runs of each way (interleaved); the median run is reported. */
  repeat: number;
  /** Chromium processes for the farm's tabs (the CLI's default is 1). */
  browsers: number;
  /** Where the farm encodes (the CLI's default is the browser); the raw and seed ways always encode in the page. */
  encode?: "browser" | "server";
  /** zlib level of server-side PNG encoding. */
  pngLevel?: number;
  /** The farm's GL backend (--gl resolved): seed, farm and the matched raw loop use it (default swiftshader). */
  gl?: ConcreteGlBackend;
  /** Why that backend (harness/chooseGl.ts's line), for the printout. */
  glWhy?: string;
  /** The farm's PNG encoder in the page: seed, farm and the matched raw loop use it (default: the farm's). */
  pngEncoder?: PngEncoderName;
  /** The ways to run per scene (default all four); the encoder comparison runs the farm alone. */
  ways?: WayName[];
  keep: boolean;
  log: (line: string) => void;
}

export type WayName = "naive" | "raw" | "seed" | "farm";
export const WAY_NAMES: readonly WayName[] = ["naive", "raw", "seed", "farm"];

/** What a way renders and encodes with. */
export interface Setup {
  gl: ConcreteGlBackend;
  pngEncoder: PngEncoderName;
}
/** The naive loop's: what the browser does unless told otherwise. */
export const BROWSER_DEFAULTS: Setup = { gl: "swiftshader", pngEncoder: "canvas" };
/** The farm's setup in these options. */
export const farmSetup = (o: ThroughputOptions): Setup => ({ gl: o.gl ?? "swiftshader", pngEncoder: o.pngEncoder ?? DEFAULT_PNG_ENCODER });
const sameSetup = (a: Setup, b: Setup) => a.gl === b.gl && a.pngEncoder === b.pngEncoder;
const describeSetup = (s: Setup) => `${s.gl}, ${s.pngEncoder} PNG encoder`;

/** What one way measured. */
export interface WayResult {
  way: WayName;
  setup: Setup;
  /** The WebGL renderer the first tab reported. */
  renderer: string;
  /** Frames by the encoder that made them, summed over the tabs (a fallback from jsquash shows here), and the fallbacks' reasons. */
  encodedBy?: Record<PngEncoderName, number>;
  fallbacks?: string[];
  sessions: number;
  frames: number;
  fps: number;
  phase: PhaseMeasure;
  /** Mean per frame, ms, as the page timed it. */
  renderMs: number;
  encodeMs: number;
  /** raw: awaiting the encoder from the page (worker time + messaging); seed: server round trip. */
  waitMs?: number;
  /** raw: op → React commit. */
  settleMs?: number;
  /** raw: time to the end of the first frame, mean over pages. */
  firstFrameMs?: number;
  /** All files of a frame (every layer). */
  bytesPerFrame: number;
  /** farm: the layers every frame was rendered with (resolved), and the bytes per frame of each layer's files. */
  layers?: LayerName[];
  layerBytesPerFrame?: Partial<Record<LayerName, number>>;
}

/** The farm way with each layer set, for one scene: the median run per set, and every run's frames/s. */
export interface LayersComparison {
  sets: WayResult[];
  runs: number[][];
}

export interface ThroughputResult {
  /** Per scene and way, the median of the repeats (runs on this machine vary by ±15 %). */
  scenes: Partial<Record<SceneName, Partial<Record<WayName, WayResult>>>>;
  /** frames/s of every repeat. */
  runs: Partial<Record<SceneName, Partial<Record<WayName, number[]>>>>;
  /** The farm way's server CPU ms per frame in every repeat (it varies more between runs than frames/s). */
  farmServerRuns: Partial<Record<SceneName, number[]>>;
  sweep: WayResult[];
  /** Per scene, the farm with each of `layerSets` (medians of the interleaved repeats). */
  layers: Partial<Record<SceneName, LayersComparison>>;
  /** Wall time of the layers comparison (all scenes, sets and repeats, browser starts included). */
  layersSeconds: number;
  peakServerRssBytes: number;
}

const tmpDir = (what: string) => fs.mkdtempSync(path.join(os.tmpdir(), `tabfarm-bench-${what}-`));

// ---------- tabs ----------

export interface Tabs {
  /** How many tabs can be asked to evaluate (0 when the tabs were opened with no DevTools hook). */
  count: number;
  /** Runs `fn(arg)` in tab `i` and returns its JSON result. */
  evaluate<T, A>(i: number, fn: (arg: A) => T | Promise<T>, arg: A): Promise<Awaited<T>>;
  close(): Promise<void>;
}

/**
 * Opens `tabs` tabs on `url`; resolves once they are open (readiness is checked by waitReady). `proveLaunched`
 * signs their names as the farm's harness does (Farm.launchedTabProof): the server then treats them as users'
 * launched tabs are treated (named tab-N; their PNGs get the launched tabs' check, checkImage.ts).
 */
export type TabOpener = (url: string, tabs: number, browsers: number, log: (l: string) => void, proveLaunched?: (worker: string) => string) => Promise<Tabs>;

/** The farm's own way: harness/TabPool (one browser context per tab), in the browser findBrowser picks, with `gl`'s flags. */
export function tabPoolOpenerFor(gl: ConcreteGlBackend): TabOpener {
  return async (url, tabs, browsers, log, proveLaunched) => {
    const pool = new TabPool({ executablePath: findBrowser().path, gl, url, tabs, browsers, log, proveLaunched });
    await pool.start();
    return { count: tabs, evaluate: (i, fn, arg) => pool.evaluate(i, fn, arg), close: () => pool.close() };
  };
}
export const tabPoolOpener: TabOpener = tabPoolOpenerFor("swiftshader");

/** The tab URL asking the page for `pngEncoder` (client/src/capture/encoderPool.ts reads it). */
const withPngEncoder = (url: string, pngEncoder: PngEncoderName) => `${url}${url.includes("?") ? "&" : "?"}pngEncoder=${pngEncoder}`;

/** The WebGL renderer of the farm's first tab with WebGL. */
const rendererOf = (farm: Farm) => [...farm.sessions.values()].find((s) => s.info.webgl)?.info.renderer ?? "";

interface EncoderReport { frames: Record<PngEncoderName, number>; fallbacks: string[] }

/** What the tabs' encoder pools did (client/src/bench/rawLoop.ts encoderReport), summed; undefined where tabs cannot be asked. */
async function encoderUseOf(tabs: Tabs): Promise<EncoderReport | undefined> {
  if (tabs.count === 0) return undefined;
  const reports = await Promise.all(
    Array.from({ length: tabs.count }, (_, i) =>
      tabs.evaluate(i, async () => (await (window as unknown as BenchWindow).tabfarm!.loadBench!()).encoderReport(), undefined),
    ),
  );
  const sum: EncoderReport = { frames: { canvas: 0, jsquash: 0 }, fallbacks: [] };
  for (const r of reports) {
    sum.frames.canvas += r.frames.canvas;
    sum.frames.jsquash += r.frames.jsquash;
    for (const f of r.fallbacks) if (!sum.fallbacks.includes(f)) sum.fallbacks.push(f);
  }
  return sum;
}

/** Waits until `tabs` sessions have said hello and every page has mounted its canvas. */
async function waitReady(farm: Farm, tabs: number, opened: Tabs): Promise<void> {
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    const live = [...farm.sessions.values()].filter((s) => s.info.webgl).length;
    if (live >= tabs) {
      // Pages opened without Playwright cannot be asked; their canvas mounts right after hello.
      if (opened.count === 0) return void (await new Promise((r) => setTimeout(r, 2000)));
      const ready = await Promise.all(
        Array.from({ length: opened.count }, (_, i) =>
          opened.evaluate(i, async () => Boolean((await (window as unknown as BenchWindow).tabfarm?.loadBench?.())?.benchReady()), undefined).catch(() => false),
        ),
      );
      if (ready.every(Boolean)) return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`bench: ${tabs} tab(s) did not connect and mount their canvas within 120 s (is this client build missing its bench chunk, bench/rawLoop?)`);
}

async function openTabs(farm: Farm, url: string, tabs: number, browsers: number, o: ThroughputOptions, open: TabOpener): Promise<Tabs> {
  const opened = await open(url, tabs, browsers, o.log, (worker) => farm.launchedTabProof(worker));
  try {
    await waitReady(farm, tabs, opened);
    return opened;
  } catch (err) {
    await opened.close();
    throw err;
  }
}

// ---------- way 1: the raw in-page loop ----------

/** What a tab page offers the bench: its in-page loop, a chunk loaded on request (client/src/bench/rawLoop.ts). */
interface BenchWindow {
  tabfarm?: { loadBench?: () => Promise<{ benchReady: () => boolean; rawLoop: (a: unknown) => Promise<RawLoopResult>; encoderReport: () => EncoderReport }> };
}

interface RawLoopResult {
  frames: number; ms: number; settleMs: number; renderMs: number; encodeWaitMs: number; encodeWorkerMs: number; firstFrameMs: number; bytes: number;
  encodedBy: Record<PngEncoderName, number>; fallbacks: string[];
}

export async function runRaw(
  clientDir: string, scene: SceneElement, poses: CameraPose[], o: ThroughputOptions, sessions: number,
  extra: { only?: "render" | "encode"; encoder?: "pool" | "cpu"; open?: TabOpener; browsers?: number; setup?: Setup; way?: "raw" | "naive" } = {},
): Promise<WayResult> {
  const setup = extra.setup ?? farmSetup(o);
  const farm = new Farm({ clientDir, log: () => {} });
  const url = await farm.listen();
  const tabs = await openTabs(farm, url, sessions, extra.browsers ?? o.browsers, o, extra.open ?? tabPoolOpenerFor(setup.gl));
  try {
    const chunks = split(poses, sessions);
    await waitQuiet();
    const phase = startPhase();
    if (tabs.count < sessions) throw new Error(`bench: the raw loop needs tabs it can evaluate in (have ${tabs.count} of ${sessions})`);
    const results = await Promise.all(
      chunks.map((poses, i) =>
        tabs.evaluate(
          i,
          async (args) => (await (window as unknown as BenchWindow).tabfarm!.loadBench!()).rawLoop(args),
          { scene, poses, width: o.width, height: o.height, format: o.format, only: extra.only, encoder: extra.encoder, pngEncoder: setup.pngEncoder },
        ),
      ),
    );
    const m = phase.stop();
    const frames = results.reduce((a, r) => a + r.frames, 0);
    const sum = (f: (r: RawLoopResult) => number) => results.reduce((a, r) => a + f(r), 0);
    const fallbacks = [...new Set(results.flatMap((r) => r.fallbacks))];
    return {
      way: extra.way ?? "raw", setup, renderer: rendererOf(farm), sessions, frames, fps: frames / (m.wallMs / 1000), phase: m,
      encodedBy: { canvas: sum((r) => r.encodedBy.canvas), jsquash: sum((r) => r.encodedBy.jsquash) }, fallbacks,
      renderMs: sum((r) => r.renderMs) / frames,
      encodeMs: sum((r) => r.encodeWorkerMs) / frames,
      waitMs: sum((r) => r.encodeWaitMs) / frames,
      settleMs: sum((r) => r.settleMs) / frames,
      firstFrameMs: sum((r) => r.firstFrameMs) / results.length,
      bytesPerFrame: sum((r) => r.bytes) / frames,
    };
  } finally {
    await tabs.close();
    await farm.close();
  }
}

// ---------- way 2: the seed's pattern ----------

export async function runSeed(
  clientDir: string, scene: SceneElement, poses: CameraPose[], o: ThroughputOptions, sessions: number,
  extra: { open?: TabOpener; browsers?: number } = {},
): Promise<WayResult> {
  const setup = farmSetup(o);
  const farm = new Farm({ clientDir, log: () => {} });
  const url = await farm.listen();
  const out = tmpDir("seed");
  const dataset = new DatasetWriter(out);
  const tabs = await openTabs(farm, withPngEncoder(url, setup.pngEncoder), sessions, extra.browsers ?? o.browsers, o, extra.open ?? tabPoolOpenerFor(setup.gl));
  try {
    const live: Session[] = [...farm.sessions.values()].filter((s) => s.info.webgl).slice(0, sessions);
    const chunks = split(poses, sessions);
    let render = 0, encode = 0, roundTrip = 0, bytes = 0;
    await waitQuiet();
    const phase = startPhase();
    await Promise.all(
      live.map(async (session, i) => {
        session.set(withFarmCamera(scene, o.width, o.height));
        for (const [index, pose] of chunks[i]!.entries()) {
          session.update({ key: FARM_CAMERA_KEY, ...poseProps(pose) });
          const frame = await session.grabRender({ key: FARM_CAMERA_KEY, format: o.format });
          await dataset.writeFile(dataset.framePath(`seed-${session.id}`, index, o.format), frame.image);
          render += frame.renderMs;
          encode += frame.encodeMs;
          roundTrip += frame.roundTripMs;
          bytes += frame.image.length;
        }
      }),
    );
    const m = phase.stop();
    const frames = poses.length;
    const use = await encoderUseOf(tabs);
    return {
      way: "seed", setup, renderer: rendererOf(farm), encodedBy: use?.frames, fallbacks: use?.fallbacks, sessions, frames, fps: frames / (m.wallMs / 1000), phase: m,
      renderMs: render / frames, encodeMs: encode / frames, waitMs: roundTrip / frames, bytesPerFrame: bytes / frames,
    };
  } finally {
    await tabs.close();
    await farm.close();
    if (!o.keep) fs.rmSync(out, { recursive: true, force: true });
  }
}

// ---------- way 3: the farm ----------

export async function runFarmWay(
  clientDir: string, name: string, scene: SceneElement, poses: CameraPose[], o: ThroughputOptions, sessions: number,
  extra: { open?: TabOpener; browsers?: number; layers?: LayerName[] } = {},
): Promise<WayResult> {
  const setup = farmSetup(o);
  const out = tmpDir("farm");
  const lines: string[] = [];
  const run = await startRun({
    out, clientDir,
    jobs: orbitJobs(`${name}-${sessions}`, scene, poses, { width: o.width, height: o.height, format: o.format, perJob: o.framesPerJob }),
    width: o.width, height: o.height, format: o.format, inFlight: o.inFlight, encode: o.encode, pngLevel: o.pngLevel,
    layers: extra.layers,
    log: (line) => lines.push(line),
  });
  // Hold every session at its first take until all tabs are up, so the farm starts with all of them
  // (as the other two ways do); timing starts when the gate opens.
  const gate = gateTakes(run.queue);
  let tabs: Tabs | undefined;
  try {
    tabs = await openTabs(run.farm, withPngEncoder(run.url, setup.pngEncoder), sessions, extra.browsers ?? o.browsers, o, extra.open ?? tabPoolOpenerFor(setup.gl));
    await waitQuiet();
    const phase = startPhase();
    gate.open();
    const summary = await run.finished;
    const m = phase.stop();
    const expected = poses.length;
    if (summary.frames !== expected || summary.counts.failed) {
      throw new Error(`farm run ended with ${summary.frames}/${expected} frames, ${summary.counts.failed} failed job(s):\n${lines.slice(-20).join("\n")}`);
    }
    const records: FrameRecord[] = readFrameRecords(out);
    const layerBytes: Partial<Record<LayerName, number>> = {};
    for (const r of records) {
      for (const f of recordFiles(r)) layerBytes[f.layer] = (layerBytes[f.layer] ?? 0) + fs.statSync(path.join(out, f.path)).size;
    }
    const perFrame = (n: number) => n / records.length;
    const frames = summary.frames;
    const use = await encoderUseOf(tabs);
    return {
      way: "farm", setup, renderer: rendererOf(run.farm), encodedBy: use?.frames, fallbacks: use?.fallbacks, sessions, frames, fps: frames / (m.wallMs / 1000), phase: m,
      renderMs: perFrame(records.reduce((a, r) => a + r.render_ms, 0)),
      encodeMs: perFrame(records.reduce((a, r) => a + r.encode_ms, 0)),
      bytesPerFrame: perFrame(Object.values(layerBytes).reduce((a, b) => a + b, 0)),
      layers: resolveLayers(extra.layers),
      layerBytesPerFrame: Object.fromEntries(Object.entries(layerBytes).map(([layer, n]) => [layer, perFrame(n)])),
    };
  } finally {
    await run.close();
    await tabs?.close();
    if (!o.keep) fs.rmSync(out, { recursive: true, force: true });
  }
}

// ---------- the bench ----------

export async function benchThroughput(o: ThroughputOptions): Promise<ThroughputResult> {
  const clientDir = buildClientInChild();
  const result: ThroughputResult = { scenes: {}, runs: {}, farmServerRuns: {}, sweep: [], layers: {}, layersSeconds: 0, peakServerRssBytes: 0 };
  // The server's peak RSS is taken over the farm phases (the other two barely use the server).
  const keepPeak = (w: WayResult) => (result.peakServerRssBytes = Math.max(result.peakServerRssBytes, w.phase.peakRssBytes), w);
  const say = (w: WayResult, tag: string) => {
    o.log(`${tag}   ${w.way} ${fmt(w.fps)} frames/s${w.phase.foreignCpuMs / w.phase.wallMs > 0.1 ? ` (other processes used ${fmt(w.phase.foreignCpuMs / w.phase.wallMs, 2)} cores meanwhile)` : ""}`);
    // A jsquash way whose wasm did not load measured the canvas encoder: said, so nobody reads it as jsquash.
    for (const f of w.fallbacks ?? []) o.log(`${tag}   ${w.way}: WARNING: ${f}`);
  };
  const farm = farmSetup(o);
  const ways = o.ways ?? WAY_NAMES;
  for (const name of o.scenes) {
    const scene = benchScene(name);
    const poses = orbit(o.frames[name]);
    const runs: Partial<Record<WayName, WayResult[]>> = {};
    const keep = (w: WayResult) => ((runs[w.way] ??= []).push(w), w);
    // With --repeat, the ways take turns (naive, raw, seed, farm, naive, …) and each keeps its median run.
    for (let r = 0; r < o.repeat; r++) {
      const tag = `[${name}${o.repeat > 1 ? ` ${r + 1}/${o.repeat}` : ""}]`;
      o.log(`${tag} ${poses.length} frames ${o.width}×${o.height} ${o.format}, ${o.sessions} session(s): ${ways.join(", ")} …`);
      for (const way of ways) {
        if (way === "raw" && ways.includes("naive") && sameSetup(farm, BROWSER_DEFAULTS)) {
          // The farm's setup is the browser's own: the matched raw loop is the naive one.
          keep({ ...runs.naive!.at(-1)!, way: "raw" });
          continue;
        }
        const w =
          way === "naive" ? await runRaw(clientDir, scene, poses, o, o.sessions, { setup: BROWSER_DEFAULTS, way: "naive" })
          : way === "raw" ? await runRaw(clientDir, scene, poses, o, o.sessions)
          : way === "seed" ? await runSeed(clientDir, scene, poses, o, o.sessions)
          : keepPeak(await runFarmWay(clientDir, name, scene, poses, o, o.sessions));
        say(keep(w), tag);
      }
    }
    result.scenes[name] = Object.fromEntries(Object.entries(runs).map(([way, all]) => [way, median(all)]));
    result.runs[name] = Object.fromEntries(Object.entries(runs).map(([way, all]) => [way, all.map((w) => w.fps)]));
    if (runs.farm) result.farmServerRuns[name] = runs.farm.map((w) => w.phase.serverCpuMs / w.frames);
  }
  const layerSets = o.layerSets ?? [];
  const layersStarted = performance.now();
  for (const name of layerSets.length ? o.scenes : []) {
    const scene = benchScene(name);
    const poses = orbit((o.layersFrames ?? o.frames)[name]);
    const runs: WayResult[][] = layerSets.map(() => []);
    // The sets take turns (a, b, a, b, …) so that other load on the machine falls on all of them alike.
    for (let r = 0; r < o.repeat; r++) {
      const tag = `[${name} layers${o.repeat > 1 ? ` ${r + 1}/${o.repeat}` : ""}]`;
      o.log(`${tag} farm, ${poses.length} frames, layers ${layerSets.map((set) => set.join(",")).join(" vs ")} …`);
      for (const [i, layers] of layerSets.entries()) {
        runs[i]!.push(keepPeak(await runFarmWay(clientDir, `${name}-layers${i}`, scene, poses, o, o.sessions, { layers })));
        say(runs[i]!.at(-1)!, `${tag} ${layers.join(",")}`);
      }
    }
    result.layers[name] = { sets: runs.map(median), runs: runs.map((set) => set.map((w) => w.fps)) };
  }
  result.layersSeconds = (performance.now() - layersStarted) / 1000;
  for (const n of o.sweep) {
    const all: WayResult[] = [];
    for (let r = 0; r < o.repeat; r++) {
      const tag = `[sweep${o.repeat > 1 ? ` ${r + 1}/${o.repeat}` : ""}]`;
      o.log(`${tag} farm, light scene, ${n} session(s), ${o.sweepFrames} frames …`);
      all.push(keepPeak(await runFarmWay(clientDir, `sweep`, benchScene("light"), orbit(o.sweepFrames), o, n)));
      say(all.at(-1)!, tag);
    }
    result.sweep.push(median(all));
  }
  return result;
}

/** The median run by frames/s (the lower middle one for an even count). */
const median = (runs: WayResult[]) => lowerMedian(runs, (w) => w.fps);

// ---------- output ----------

function cpuPerFrame(w: WayResult): { server: number; gpu: number; renderer: number; other: number; total: number } {
  const c = w.phase.childCpuMs;
  const gpu = c.gpu ?? 0;
  const renderer = c.renderer ?? 0;
  const other = Object.entries(c).filter(([k]) => k !== "gpu" && k !== "renderer").reduce((a, [, v]) => a + v, 0);
  const f = w.frames;
  return { server: w.phase.serverCpuMs / f, gpu: gpu / f, renderer: renderer / f, other: other / f, total: (w.phase.serverCpuMs + gpu + renderer + other) / f };
}

/** The issue's bars (issue 15): efficiency = farm / raw loop on the farm's backend and encoder; what a user gets = farm / naive loop. */
export const BARS = {
  farmOverRaw: { floor: 0.95, goal: 1.0 },
  serverCpuMsPerFrame: { light: 1, heavy: 3 } as Partial<Record<SceneName, number>>,
  farmOverNaive: { light: 1.2, heavy: 1.5 } as Partial<Record<SceneName, number>>,
  farmOverNaiveGoal: { heavy: 2 } as Partial<Record<SceneName, number>>,
};

const WAY_LABEL: Record<WayName, string> = { naive: "naive loop", raw: "raw", seed: "seed pattern", farm: "farm" };

export function printThroughput(r: ThroughputResult, o: ThroughputOptions, out: (line: string) => void = console.log): void {
  const farm = farmSetup(o);
  out("");
  out(`throughput: ${o.width}×${o.height} ${o.format}, ${o.sessions} session(s) in ${o.browsers} browser(s) (all ways), farm in-flight ${o.inFlight}, ${o.framesPerJob} frames/job, ` +
    `farm encodes in the ${o.encode ?? "browser"}${o.encode === "server" ? ` (png level ${o.pngLevel ?? "default"})` : ""}, ` +
    `${os.cpus().length} cores${o.repeat > 1 ? `; median of ${o.repeat} interleaved runs per way` : ""}`);
  out(`farm, seed and raw: ${describeSetup(farm)}${o.glWhy ? ` (${o.glWhy})` : ""}; naive loop: ${describeSetup(BROWSER_DEFAULTS)} (the browser's defaults)`);
  const rows: (string | number)[][] = [[
    "scene / way", "frames", "frames/s", "× raw", "render ms", "encode ms", "wait ms", "KB/frame",
    "srv CPU ms/f", "gpu ms/f", "rndr ms/f", "other ms/f", "cores busy", "not ours",
  ]];
  for (const [name, ways] of Object.entries(r.scenes)) {
    if (!ways) continue;
    for (const w of WAY_NAMES.map((way) => ways[way]).filter((w): w is WayResult => Boolean(w))) {
      const c = cpuPerFrame(w);
      rows.push([
        `${name} / ${WAY_LABEL[w.way]}`, w.frames, fmt(w.fps), fmt(ways.raw ? w.fps / ways.raw.fps : NaN, 2),
        fmt(w.renderMs), fmt(w.encodeMs), fmt(w.waitMs), fmt(w.bytesPerFrame / 1024, 0),
        fmt(c.server, 2), fmt(c.gpu), fmt(c.renderer), fmt(c.other), `${fmt(w.phase.machineBusy * os.cpus().length, 2)}/${os.cpus().length}`,
        fmt(w.phase.foreignCpuMs / w.phase.wallMs, 2),
      ]);
    }
  }
  printTable(rows, out);
  out("render ms = render + readPixels in the page; encode ms = PNG encode as the worker timed it; wait ms = raw: awaiting the encoder,");
  out("seed: server round trip per grab. CPU ms per frame: srv = this process (server), gpu = Chromium GPU process (the GL backend),");
  out("rndr = tab renderer processes (JS, React, encoder worker), other = browser/network/utility processes; cores busy is");
  out("machine-wide, 'not ours' = cores used by processes outside this bench (other work on the machine skews the figures).");
  const renderers = new Map<string, string[]>();
  for (const ways of Object.values(r.scenes)) {
    for (const w of Object.values(ways ?? {})) if (w) (renderers.get(w.renderer) ?? renderers.set(w.renderer, []).get(w.renderer)!).push(w.way);
  }
  for (const [renderer, ways] of renderers) out(`  WebGL renderer of ${[...new Set(ways)].join(", ")}: ${renderer || "(not reported)"}`);
  for (const [name, ways] of Object.entries(r.scenes)) {
    if (!ways) continue;
    const ratio = (a?: WayResult, b?: WayResult) => fmt(a && b ? a.fps / b.fps : NaN, 2);
    out(`${name}: farm/raw ${ratio(ways.farm, ways.raw)}×, farm/seed ${ratio(ways.farm, ways.seed)}×, farm/naive ${ratio(ways.farm, ways.naive)}×` +
      (ways.raw ? `; raw first frame (scene build + shader compile) ${fmt(ways.raw.firstFrameMs, 0)} ms, op→commit ${fmt(ways.raw.settleMs)} ms/frame` : ""));
    const runs = r.runs[name as SceneName];
    if (runs && o.repeat > 1) {
      out(`  all runs, frames/s: ${WAY_NAMES.filter((way) => runs[way]).map((way) => `${way} ${runs[way]!.map((x) => fmt(x)).join(" ")}`).join(" | ")}` +
        (r.farmServerRuns[name as SceneName] ? `; farm server CPU ms/frame ${r.farmServerRuns[name as SceneName]!.map((x) => fmt(x, 2)).join(" ")}` : ""));
    }
  }
  printVerdicts(r, o, out);
  if (r.sweep.length) {
    out("");
    const sweepRows: (string | number)[][] = [["farm sessions (light)", "frames", "frames/s", "render ms", "encode ms", "srv CPU ms/f", "gpu ms/f", "rndr ms/f", "cores busy", "not ours"]];
    for (const w of r.sweep) {
      const c = cpuPerFrame(w);
      sweepRows.push([
        w.sessions, w.frames, fmt(w.fps), fmt(w.renderMs), fmt(w.encodeMs), fmt(c.server, 2), fmt(c.gpu), fmt(c.renderer),
        fmt(w.phase.machineBusy * os.cpus().length, 2), fmt(w.phase.foreignCpuMs / w.phase.wallMs, 2),
      ]);
    }
    printTable(sweepRows, out);
  }
  printLayers(r, o, out);
  const farmStart = Math.min(...[...Object.values(r.scenes).map((w) => w?.farm), ...r.sweep].filter((w): w is WayResult => Boolean(w)).map((w) => w.phase.startRssBytes));
  out(`peak server RSS (this process: server + Playwright driver; sampled every 100 ms in the timed phases): ` +
    `${fmt(r.peakServerRssBytes / 2 ** 20)} MB (lowest RSS at the start of a farm phase: ${fmt(farmStart / 2 ** 20)} MB)`);
}

/** The two rows of issue 15 per scene: efficiency (farm / matched raw, server CPU) and what a user gets (farm / naive), against their bars. */
function printVerdicts(r: ThroughputResult, o: ThroughputOptions, out: (line: string) => void): void {
  const scenes = Object.entries(r.scenes).filter(([, ways]) => ways?.farm && (ways.raw || ways.naive));
  if (!scenes.length) return;
  out("");
  out(`efficiency and what a user gets (${o.sessions} session(s)${o.repeat > 1 ? `, medians of ${o.repeat} interleaved runs` : ", one run"}):`);
  const check = (value: number, ok: boolean) => `${fmt(value, 2)} ${ok ? "ok" : "MISSED"}`;
  const rows: (string | number)[][] = [[
    "scene", "farm fps", "raw fps (same GL+encoder)", `farm/raw (≥ ${BARS.farmOverRaw.floor})`, "srv CPU ms/f (bar)", "naive fps (SwiftShader, canvas)", "farm/naive (bar)",
  ]];
  for (const [name, ways] of scenes) {
    const farm = ways!.farm!;
    const serverMs = farm.phase.serverCpuMs / farm.frames;
    const cpuBar = BARS.serverCpuMsPerFrame[name as SceneName];
    const naiveBar = BARS.farmOverNaive[name as SceneName];
    const overRaw = ways!.raw ? farm.fps / ways!.raw.fps : NaN;
    const overNaive = ways!.naive ? farm.fps / ways!.naive.fps : NaN;
    rows.push([
      name, fmt(farm.fps), fmt(ways!.raw?.fps), ways!.raw ? check(overRaw, overRaw >= BARS.farmOverRaw.floor) : "-",
      cpuBar === undefined ? fmt(serverMs, 2) : `${check(serverMs, serverMs <= cpuBar)} (≤ ${cpuBar})`,
      fmt(ways!.naive?.fps), ways!.naive ? (naiveBar === undefined ? fmt(overNaive, 2) : `${check(overNaive, overNaive >= naiveBar)} (≥ ${naiveBar})`) : "-",
    ]);
  }
  printTable(rows, out);
  out(`goals: farm/raw ≥ ${BARS.farmOverRaw.goal}; farm/naive ≥ ${Object.entries(BARS.farmOverNaiveGoal).map(([s, g]) => `${g}× ${s}`).join(", ")}.`);
}

/** The issue's bar for extra layers: frames/s with them over frames/s of rgb alone. */
const LAYERS_FLOOR = 0.5;
const LAYERS_GOAL = 0.7;

function printLayers(r: ThroughputResult, o: ThroughputOptions, out: (line: string) => void): void {
  const scenes = Object.entries(r.layers).filter(([, c]) => c?.sets.length);
  if (!scenes.length) return;
  out("");
  out(`layers (farm, ${o.sessions} session(s), ${o.width}×${o.height} ${o.format}${o.repeat > 1 ? `, median of ${o.repeat} interleaved runs per set` : ""}):`);
  const rows: (string | number)[][] = [[
    "scene / layers", "frames", "frames/s", `× ${scenes[0]![1]!.sets[0]!.layers?.join(",")}`, "render ms", "encode ms", "KB/frame",
    "srv CPU ms/f", "gpu ms/f", "rndr ms/f", "other ms/f", "cores busy", "not ours",
  ]];
  for (const [name, c] of scenes) {
    for (const w of c!.sets) {
      const cpu = cpuPerFrame(w);
      rows.push([
        `${name} / ${w.layers?.join(",")}`, w.frames, fmt(w.fps), fmt(w.fps / c!.sets[0]!.fps, 2), fmt(w.renderMs), fmt(w.encodeMs),
        fmt(w.bytesPerFrame / 1024, 0), fmt(cpu.server, 2), fmt(cpu.gpu), fmt(cpu.renderer), fmt(cpu.other),
        `${fmt(w.phase.machineBusy * os.cpus().length, 2)}/${os.cpus().length}`, fmt(w.phase.foreignCpuMs / w.phase.wallMs, 2),
      ]);
    }
  }
  printTable(rows, out);
  out("render ms = all of a frame's render passes + readbacks in the page; encode ms = the rgb PNG encode in the page (the other layers are");
  out(`encoded on the server, inside srv CPU); KB/frame = all layer files of a frame. The comparison took ${fmt(r.layersSeconds, 0)} s of the bench.`);
  for (const [name, c] of scenes) {
    const base = c!.sets[0]!;
    for (const [i, w] of c!.sets.entries()) {
      if (i === 0) continue;
      const ratio = w.fps / base.fps;
      const verdict = ratio >= LAYERS_GOAL ? "meets the goal" : ratio >= LAYERS_FLOOR ? "above the floor, below the goal" : "BELOW THE FLOOR";
      const kb = Object.entries(w.layerBytesPerFrame ?? {}).map(([layer, n]) => `${layer} ${fmt(n / 1024, 0)}`).join(", ");
      out(`${name}: ${w.layers?.join(",")} / ${base.layers?.join(",")} = ${fmt(ratio, 2)}× frames/s (floor ${LAYERS_FLOOR}×, goal ${LAYERS_GOAL}×: ${verdict}); KB/frame by layer: ${kb}`);
    }
    if (o.repeat > 1) {
      out(`  all runs, frames/s: ${c!.sets.map((w, i) => `${w.layers?.join(",")} ${c!.runs[i]!.map((x) => fmt(x)).join(" ")}`).join(" | ")}; ` +
        `ratio per round: ${c!.runs.slice(1).map((set) => set.map((x, r) => fmt(x / c!.runs[0]![r]!, 2)).join(" ")).join(" | ")}`);
    }
  }
}

export function throughputJson(r: ThroughputResult, o?: ThroughputOptions): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  if (o) {
    const farm = farmSetup(o);
    json.gl = farm.gl;
    json.png_encoder = farm.pngEncoder;
    if (o.glWhy) json.gl_why = o.glWhy;
    json.naive = BROWSER_DEFAULTS;
  }
  for (const [name, ways] of Object.entries(r.scenes)) {
    if (!ways?.farm) continue;
    const farm = ways.farm;
    const ratio = (a?: WayResult, b?: WayResult) => (a && b ? a.fps / b.fps : null);
    json[name] = {
      naive_fps: ways.naive?.fps ?? null,
      raw_fps: ways.raw?.fps ?? null,
      seed_pattern_fps: ways.seed?.fps ?? null,
      farm_fps: farm.fps,
      /** Efficiency: the raw loop with the farm's backend and encoder. */
      farm_over_raw: ratio(farm, ways.raw),
      farm_over_seed: ratio(farm, ways.seed),
      /** What a user gets: the naive loop with the browser's defaults. */
      farm_over_naive: ratio(farm, ways.naive),
      server_cpu_ms_per_frame: farm.phase.serverCpuMs / farm.frames,
      sessions: farm.sessions,
      frames: farm.frames,
      render_ms: farm.renderMs,
      encode_ms: farm.encodeMs,
      kb_per_frame: farm.bytesPerFrame / 1024,
      renderer: farm.renderer,
      encoded_by: farm.encodedBy ?? null,
      runs_fps: r.runs[name as SceneName],
      runs_server_cpu_ms_per_frame: r.farmServerRuns[name as SceneName],
    };
  }
  json.peak_server_rss_mb = r.peakServerRssBytes / 2 ** 20;
  json.sweep = Object.fromEntries(r.sweep.map((w) => [String(w.sessions), w.fps]));
  const layers: Record<string, unknown> = {};
  for (const [name, c] of Object.entries(r.layers)) {
    if (!c?.sets.length) continue;
    layers[name] = c.sets.map((w, i) => ({
      layers: w.layers,
      frames: w.frames,
      fps: w.fps,
      over_first: w.fps / c.sets[0]!.fps,
      render_ms: w.renderMs,
      encode_ms: w.encodeMs,
      kb_per_frame: w.bytesPerFrame / 1024,
      kb_per_frame_by_layer: Object.fromEntries(Object.entries(w.layerBytesPerFrame ?? {}).map(([layer, n]) => [layer, n / 1024])),
      cpu_ms_per_frame: cpuPerFrame(w),
      runs_fps: c.runs[i],
      /** Each round's frames/s over the first set's in the same round. */
      ratio_per_round: c.runs[i]!.map((x, r) => x / c.runs[0]![r]!),
    }));
  }
  json.layers = layers;
  json.layers_seconds = r.layersSeconds;
  return roundDeep(json);
}

// ---------- the farm with each PNG encoder (--png-encoder canvas,jsquash) ----------

/** Per scene, the farm way with each PNG encoder: the median run of each, and every run's frames/s. */
export type PngEncoderComparison = Partial<Record<SceneName, { encoders: PngEncoderName[]; medians: WayResult[]; runs: number[][] }>>;

/**
 * The farm way alone (its GL backend, `o.gl`), once per encoder in every round: round 1 light with each
 * encoder, heavy with each, round 2 …, so other load on the machine falls on every encoder alike.
 */
export async function benchPngEncoders(o: ThroughputOptions, encoders: PngEncoderName[]): Promise<PngEncoderComparison> {
  const clientDir = buildClientInChild();
  const runs: Partial<Record<SceneName, WayResult[][]>> = {};
  for (let r = 0; r < o.repeat; r++) {
    for (const name of o.scenes) {
      const poses = orbit(o.frames[name]);
      for (const [i, pngEncoder] of encoders.entries()) {
        const w = await runFarmWay(clientDir, `${name}-${pngEncoder}`, benchScene(name), poses, { ...o, pngEncoder }, o.sessions);
        ((runs[name] ??= encoders.map(() => []))[i]!).push(w);
        o.log(`[${name} ${r + 1}/${o.repeat}] farm, ${pngEncoder}: ${fmt(w.fps)} frames/s, encode ${fmt(w.encodeMs)} ms, ${fmt(w.bytesPerFrame / 1024, 0)} KB/frame` +
          `${w.encodedBy ? ` (frames by canvas ${w.encodedBy.canvas}, jsquash ${w.encodedBy.jsquash})` : ""}`);
        for (const f of w.fallbacks ?? []) o.log(`  WARNING: ${f}`);
      }
    }
  }
  return Object.fromEntries(Object.entries(runs).map(([name, sets]) => [name, { encoders, medians: sets!.map(median), runs: sets!.map((set) => set.map((w) => w.fps)) }]));
}

export function printPngEncoders(c: PngEncoderComparison, o: ThroughputOptions, out: (line: string) => void = console.log): void {
  out("");
  out(`PNG encoders in the farm: ${o.width}×${o.height}, ${o.sessions} session(s) in ${o.browsers} browser(s), GL ${farmSetup(o).gl}${o.glWhy ? ` (${o.glWhy})` : ""}, ` +
    `median of ${o.repeat} interleaved runs`);
  const rows: (string | number)[][] = [["scene / encoder", "frames", "frames/s", "× first", "encode ms", "KB/frame", "srv CPU ms/f", "gpu ms/f", "rndr ms/f", "cores busy", "all runs"]];
  for (const [name, s] of Object.entries(c)) {
    for (const [i, w] of s!.medians.entries()) {
      const cpu = cpuPerFrame(w);
      rows.push([
        `${name} / ${s!.encoders[i]}`, w.frames, fmt(w.fps), fmt(w.fps / s!.medians[0]!.fps, 2), fmt(w.encodeMs), fmt(w.bytesPerFrame / 1024, 0),
        fmt(cpu.server, 2), fmt(cpu.gpu), fmt(cpu.renderer), `${fmt(w.phase.machineBusy * os.cpus().length, 2)}/${os.cpus().length}`,
        s!.runs[i]!.map((x) => fmt(x)).join(" "),
      ]);
    }
  }
  printTable(rows, out);
  for (const [name, s] of Object.entries(c)) {
    out(`${name}: frames/s over ${s!.encoders[0]}'s in the same round: ${s!.encoders.slice(1).map((e, i) => `${e} ${s!.runs[i + 1]!.map((x, r) => fmt(x / s!.runs[0]![r]!, 2)).join(" ")}`).join(" | ")}`);
  }
  out("encode ms = the PNG encode in the page's worker, as it timed it; rndr = tab renderer processes (where the encoder worker runs).");
}

export function pngEncodersJson(c: PngEncoderComparison): Record<string, unknown> {
  return roundDeep(Object.fromEntries(Object.entries(c).map(([name, s]) => [name, Object.fromEntries(s!.encoders.map((e, i) => {
    const w = s!.medians[i]!;
    return [e, { fps: w.fps, runs_fps: s!.runs[i], encode_ms: w.encodeMs, kb_per_frame: w.bytesPerFrame / 1024, cpu_ms_per_frame: cpuPerFrame(w), encoded_by: w.encodedBy ?? null }];
  }))])));
}

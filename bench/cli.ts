// npm run bench -- [throughput|queue|ingest|chaos|soak|template] [options]
//   throughput (default)  raw in-page loop vs the seed's one-grab-at-a-time pattern vs the farm, + a sessions sweep,
//                         + the farm with rgb alone vs rgb,depth,mask,normal (--layers-compare), + the naive loop
//                         (SwiftShader, canvas encoder) for "what a user gets"; --png-encoder canvas,jsquash: the
//                         farm alone with each PNG encoder
//   queue                 the durable queue against an in-memory one (bench/queue.ts)
//   ingest                fake sessions answering grabs at once with a pre-encoded PNG: what the server can take in
//   chaos                 bench/chaos.ts when present
//   soak                  a long run (--frames 20000): server RSS growth, browser memory, tabs recycled
//   template              a randomized template of 200 and --frames (2000) frames, fake sessions: server RSS flat in N?
//   servers               1 vs 2 farm servers on one Redis queue, and 1 on SQLite, fake sessions (bench/servers.ts)
//   servers-chromium      1 server × 2 tabs vs 2 servers × 1 tab on one Redis queue, real Chromium (bench/servers.ts)
// The last line of output is always one JSON object with the figures.
import path from "node:path";
import fs from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { execFileSync } from "node:child_process";
import { Command, InvalidArgumentError, Option } from "commander";
import { ImageFormat } from "../protocol/grab.js";
import { parseLayerList, type LayerName } from "../protocol/layers.js";
import { SCENE_NAMES, type SceneName } from "./scenes.js";
import { benchPngEncoders, benchThroughput, pngEncodersJson, printPngEncoders, printThroughput, throughputJson, type ThroughputOptions } from "./throughput.js";
import { fmt, lowerMedian, printTable, quiet, roundDeep } from "./report.js";
import { defaultBrowsers, parseRelaunchAfter } from "../harness/TabPool.js";
import { argument, int as wholeNumber } from "../harness/cliArguments.js";
import { findBrowser } from "../harness/findBrowser.js";
import { GL_BACKENDS, type GlBackend } from "../harness/chromiumFlags.js";
import { chooseGl } from "../harness/chooseGl.js";
import { DEFAULT_PNG_ENCODER, PNG_ENCODERS, type PngEncoderName } from "../client/src/capture/encoderPool.js";
import { IMAGE_CHECK_DEPTHS, type ImageCheckDepth } from "../server/capture/checkImage.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));

const int = (name: string) => wholeNumber(name, 1, 1_000_000_000);
const intList = (name: string) => (value: string) => {
  if (value.trim() === "" || value === "none") return [];
  return value.split(",").map((v) => int(name)(v.trim()));
};
const sceneList = (value: string): SceneName[] => {
  const names = value.split(",").map((v) => v.trim()).filter(Boolean);
  for (const n of names) if (!(SCENE_NAMES as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown scene '${n}' (have: ${SCENE_NAMES.join(", ")})`);
  return names as SceneName[];
};

/** "rgb:rgb,depth,mask,normal" → the layer sets to compare (each resolved as --layers is); "none" → []. */
const layerSetList = (value: string): LayerName[][] => {
  if (value.trim() === "none") return [];
  const sets = value.split(":").map((v) => v.trim());
  if (sets.some((set) => set === "")) throw new InvalidArgumentError(`--layers-compare: an empty layer set in '${value}' (e.g. rgb:rgb,depth,mask,normal, or none)`);
  try {
    return sets.map(parseLayerList);
  } catch (err) {
    throw new InvalidArgumentError(`--layers-compare: ${(err as Error).message}`);
  }
};

const pngEncoderList = (value: string): PngEncoderName[] => {
  const names = value.split(",").map((v) => v.trim()).filter(Boolean);
  if (!names.length) throw new InvalidArgumentError(`no encoder in '${value}' (have: ${PNG_ENCODERS.join(", ")})`);
  for (const n of names) if (!(PNG_ENCODERS as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown PNG encoder '${n}' (have: ${PNG_ENCODERS.join(", ")})`);
  return names as PngEncoderName[];
};

const checkList = (value: string): ImageCheckDepth[] => {
  const names = value.split(",").map((v) => v.trim()).filter(Boolean);
  for (const n of names) if (!(IMAGE_CHECK_DEPTHS as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown check depth '${n}' (have: ${IMAGE_CHECK_DEPTHS.join(", ")})`);
  return names as ImageCheckDepth[];
};

interface CliOptions {
  sessions: number;
  frames?: number;
  scenes: SceneName[];
  sweep?: number[];
  width: number;
  height: number;
  format: ImageFormat;
  inFlight: number;
  framesPerJob: number;
  browsers?: number;
  quick: boolean;
  keep: boolean;
  jobs?: number;
  waitQuiet?: number;
  repeat?: number;
  encode: "browser" | "server";
  pngLevel?: number;
  recycleAfter: number;
  relaunchAfter?: number;
  browser?: string[];
  gl: GlBackend;
  pngEncoder: PngEncoderName[];
  layersCompare: LayerName[][];
  checks?: ImageCheckDepth[];
  dashboard: boolean;
  image?: string;
}

// Defaults sized for a 2-core machine with SwiftShader: the whole default run in ~5 min, --quick in ~1.
// layers*: frames per layer set and scene in the layers comparison.
const DEFAULTS = {
  full: { light: 600, heavy: 80, sweepFrames: 300, sweep: [1, 2, 4, 8], ingestFrames: 3000, layersLight: 120, layersHeavy: 16 },
  quick: { light: 40, heavy: 8, sweepFrames: 30, sweep: [1, 4], ingestFrames: 1000, layersLight: 40, layersHeavy: 8 },
};

function commit(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: path.join(HERE, ".."), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "client", "server", "protocol", "harness"], { cwd: path.join(HERE, ".."), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return dirty ? `${head}+local changes` : head;
  } catch {
    return "unknown";
  }
}

async function throughput(o: CliOptions): Promise<void> {
  const d = o.quick ? DEFAULTS.quick : DEFAULTS.full;
  const opts: ThroughputOptions = {
    sessions: o.sessions,
    scenes: o.scenes,
    frames: { light: o.frames ?? d.light, heavy: o.frames ?? d.heavy },
    sweep: o.sweep ?? d.sweep,
    sweepFrames: o.frames ?? d.sweepFrames,
    layerSets: o.layersCompare,
    layersFrames: { light: o.frames ?? d.layersLight, heavy: o.frames ?? d.layersHeavy },
    width: o.width,
    height: o.height,
    format: o.format,
    inFlight: o.inFlight,
    framesPerJob: o.framesPerJob,
    repeat: o.repeat ?? (o.quick ? 1 : 3),
    browsers: o.browsers ?? defaultBrowsers(o.sessions),
    encode: o.encode,
    pngLevel: o.pngLevel,
    keep: o.keep,
    log: (line) => console.error(line),
  };
  const started = performance.now();
  const code = commit();
  if (o.browser && o.browser.length > 1) return compareBrowsers(o.browser, opts, code, started);
  if (o.browser) process.env.TABFARM_BROWSER = o.browser[0];
  console.error(`browser: ${describeBrowser()}`);
  // The farm's backend as the farm picks it (--gl auto: harness/chooseGl.ts), in the browser every bench tab uses.
  const gl = await chooseGl(findBrowser().path, o.gl);
  console.error(`gl: ${gl.gl} (${gl.why})`);
  Object.assign(opts, { gl: gl.gl, glWhy: gl.why, pngEncoder: o.pngEncoder[0] });
  if (o.pngEncoder.length > 1) {
    const c = await benchPngEncoders(opts, o.pngEncoder);
    printPngEncoders(c, opts);
    console.log(`code: ${code}; bench took ${((performance.now() - started) / 1000).toFixed(0)} s`);
    return console.log(JSON.stringify({ png_encoders: pngEncodersJson(c), gl: gl.gl, commit: code }));
  }
  const r = await benchThroughput(opts);
  printThroughput(r, opts);
  console.log(`code: ${code}; bench took ${((performance.now() - started) / 1000).toFixed(0)} s`);
  console.log(JSON.stringify({ ...throughputJson(r, opts), commit: code }));
}

/** Every bench tab pool finds its browser with findBrowser(), which reads TABFARM_BROWSER. */
function describeBrowser(): string {
  const b = findBrowser(process.env, { bundled: { log: (l) => console.error(`bench: ${l}`) } });
  let version = "";
  try {
    version = execFileSync(b.path, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 30_000 }).trim();
  } catch {
    /* a version is nice to have */
  }
  return `${b.path} (${b.source}${version ? `, ${version}` : ""})`;
}

/**
 * --browser a,b: the same throughput bench with each browser, the browsers taking turns in every repeat
 * (a, b, a, b, …) so that other load on the machine falls on both alike; medians per browser, scene and way
 * (no sweep, no layers comparison).
 */
async function compareBrowsers(choices: string[], opts: ThroughputOptions, code: string, started: number): Promise<void> {
  const fps: Record<string, Record<string, number[]>> = {};
  const names: Record<string, string> = {};
  for (let r = 0; r < opts.repeat; r++) {
    for (const choice of choices) {
      process.env.TABFARM_BROWSER = choice;
      names[choice] ??= describeBrowser();
      console.error(`[browser ${choice} ${r + 1}/${opts.repeat}] ${names[choice]}`);
      const result = await benchThroughput({ ...opts, repeat: 1, sweep: [], layerSets: [] });
      for (const [scene, ways] of Object.entries(result.scenes)) {
        for (const w of Object.values(ways ?? {})) ((fps[scene] ??= {})[`${w.way}|${choice}`] ??= []).push(w.fps);
      }
    }
  }
  const middle = (xs: number[]) => lowerMedian(xs, (x) => x);
  console.log(`\nbrowsers, frames/s (median of ${opts.repeat} interleaved runs; ${opts.sessions} session(s) in ${opts.browsers} browser(s), ${opts.width}×${opts.height} ${opts.format}):`);
  for (const choice of choices) console.log(`  ${choice}: ${names[choice]}`);
  const rows: (string | number)[][] = [["scene / way", ...choices, ...choices.slice(1).map((c) => `${c} / ${choices[0]}`), "all runs"]];
  const json: Record<string, Record<string, number>> = {};
  for (const [scene, byWay] of Object.entries(fps)) {
    for (const way of ["naive", "raw", "seed", "farm"]) {
      const medians = choices.map((c) => middle(byWay[`${way}|${c}`] ?? [NaN]));
      rows.push([
        `${scene} / ${way}`, ...medians.map((m) => fmt(m)), ...medians.slice(1).map((m) => fmt(m / medians[0]!, 2)),
        choices.map((c) => `${c}: ${(byWay[`${way}|${c}`] ?? []).map((x) => fmt(x)).join(" ")}`).join(" | "),
      ]);
      choices.forEach((c, i) => ((json[scene] ??= {})[`${way}_fps_${c}`] = medians[i]!));
    }
  }
  printTable(rows, (l) => console.log(l));
  console.log(`code: ${code}; bench took ${((performance.now() - started) / 1000).toFixed(0)} s`);
  console.log(JSON.stringify({ ...roundDeep(json), browsers: names, commit: code }));
}

async function queue(o: CliOptions): Promise<void> {
  const file = path.join(HERE, "queue.ts");
  if (!fs.existsSync(file)) return notAvailable("queue", file);
  const { benchQueue } = (await import(pathToFileURL(file).href)) as { benchQueue: (opts: { jobs?: number }) => Promise<Record<string, number>> };
  const r = await benchQueue({ jobs: o.jobs ?? (o.quick ? 20_000 : undefined) });
  const width = Math.max(...Object.keys(r).map((k) => k.length));
  for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(width)}  ${Number(v.toPrecision(4)).toLocaleString("en-US")}`);
  console.log(JSON.stringify(roundDeep(r)));
}

async function ingest(o: CliOptions): Promise<void> {
  const { benchIngest, printIngest } = await import("./ingest.js");
  const d = o.quick ? DEFAULTS.quick : DEFAULTS.full;
  const r = await benchIngest({
    sessions: o.sweep ?? [4, 8],
    frames: o.frames ?? d.ingestFrames,
    width: o.width,
    height: o.height,
    inFlight: o.inFlight,
    framesPerJob: o.framesPerJob,
    format: o.format,
    image: o.image,
    checks: o.checks,
    dashboard: o.dashboard,
    repeat: o.repeat ?? (o.quick ? 1 : 3),
    keep: o.keep,
    log: (line) => console.error(line),
  });
  printIngest(r);
  console.log(JSON.stringify(roundDeep(r)));
}

// bench/chaos.ts (another engineer's) exports benchChaos(opts); loaded only when asked for, and
// reported as not available when the file or its export is missing.
async function chaos(o: CliOptions): Promise<void> {
  const file = path.join(HERE, "chaos.ts");
  if (!fs.existsSync(file)) return notAvailable("chaos", file);
  const mod = (await import(pathToFileURL(file).href)) as { benchChaos?: (opts: unknown) => Promise<unknown> };
  if (typeof mod.benchChaos !== "function") return notAvailable("chaos", `${file} (no benchChaos export)`);
  // Only what was asked for on the command line: chaos has its own defaults (e.g. 3 tabs).
  const given = (name: string) => program.getOptionValueSource(name) === "cli";
  const r = await mod.benchChaos({
    frames: o.frames, sessions: given("sessions") ? o.sessions : undefined, quick: o.quick, keep: o.keep,
    log: (line: string) => console.error(line),
  });
  console.log(JSON.stringify(r && typeof r === "object" ? roundDeep(r) : { result: r ?? null }));
}

async function soak(o: CliOptions): Promise<void> {
  const { benchSoak } = await import("./soak.js");
  const r = await benchSoak({
    frames: o.frames ?? (o.quick ? 1000 : 20_000), sessions: o.sessions, recycleAfter: o.recycleAfter, relaunchAfter: o.relaunchAfter,
    framesPerJob: o.framesPerJob, width: o.width, height: o.height, log: (line) => console.error(line),
  });
  const width = Math.max(...Object.keys(r).map((k) => k.length));
  for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(width)}  ${Number(v.toPrecision(4))}`);
  console.log(JSON.stringify(roundDeep(r)));
}

async function template(o: CliOptions): Promise<void> {
  const { benchTemplate, printTemplate } = await import("./template.js");
  const given = (name: string) => program.getOptionValueSource(name) === "cli";
  const large = o.frames ?? (o.quick ? 1000 : 2000);
  if (large < 2) program.error("error: template: --frames must be at least 2 (it is compared with a smaller count, at most a tenth of it)");
  const opts = {
    small: Math.max(1, Math.min(o.quick ? 100 : 200, Math.floor(large / 10))), large, rounds: Math.max(3, o.repeat ?? 3), framesPerJob: o.framesPerJob,
    sessions: given("sessions") ? o.sessions : 4, inFlight: o.inFlight,
    // Queued only, 100× apart: RSS rises until SQLite's page cache (16 MB) and the heap are warm, then stays.
    queueOnly: o.quick ? [20_000, 200_000] : [20_000, 2_000_000],
    keep: o.keep, log: (line: string) => console.error(line),
  };
  const r = await benchTemplate(opts);
  printTemplate(r, opts);
  console.log(JSON.stringify(roundDeep({ bench: "template", ...r, commit: commit() })));
}

async function servers(o: CliOptions): Promise<void> {
  const { benchServers, printServers, serversJson } = await import("./servers.js");
  const opts = {
    sessions: o.sweep ?? [8, 32], frames: o.frames ?? (o.quick ? 1000 : 3000), width: o.width, height: o.height,
    inFlight: o.inFlight, framesPerJob: o.framesPerJob, rounds: o.repeat ?? (o.quick ? 1 : 3), keep: o.keep, log: (line: string) => console.error(line),
  };
  const r = await benchServers(opts);
  printServers(r, opts);
  console.log(JSON.stringify({ ...serversJson(r), commit: commit() }));
}

async function serversChromium(o: CliOptions): Promise<void> {
  const { benchServersChromium, printServersChromium } = await import("./servers.js");
  const opts = {
    scenes: o.scenes, frames: { light: o.frames ?? (o.quick ? 60 : 300), heavy: o.frames ?? (o.quick ? 40 : 120) }, width: o.width, height: o.height,
    inFlight: o.inFlight, framesPerJob: o.framesPerJob, rounds: o.repeat ?? (o.quick ? 1 : 3), keep: o.keep, log: (line: string) => console.error(line),
  };
  const r = await benchServersChromium(opts);
  printServersChromium(r, opts);
  console.log(JSON.stringify(roundDeep({ bench: "servers-chromium", ...r.summary, commit: commit() })));
}

function notAvailable(what: string, file: string): void {
  console.log(`${what} bench: not available (${path.relative(process.cwd(), file) || file} is missing)`);
  console.log(JSON.stringify({ bench: what, available: false }));
}

const program = new Command()
  .name("npm run bench --")
  .description("tabfarm benchmarks; the last line of output is one JSON object with the figures")
  .argument("[bench]", "throughput | queue | ingest | chaos | soak | template | servers | servers-chromium", "throughput")
  .option("--sessions <n>", "sessions (headless tabs) for the three-way comparison", int("--sessions"), 2)
  .option("--frames <n>", "frames per way and scene (default: light 600, heavy 80, sweep 300; --quick 40/8/30); ingest: frames per trial (3000; --quick 1000); template: the large count (2000; --quick 1000)", int("--frames"))
  .option("--scenes <list>", "scenes to run: light,heavy", sceneList, ["light", "heavy"] as SceneName[])
  .option("--sweep <list>", "farm session counts for the sweep (light scene), 'none' to skip; ingest: fake session counts (default 4,8)", intList("--sweep"))
  .option("--width <px>", "image width", int("--width"), 640)
  .option("--height <px>", "image height", int("--height"), 480)
  .addOption(new Option("--format <format>", "image format").choices(ImageFormat.options).default("png"))
  .option("--in-flight <n>", "farm: grabs in flight per session", int("--in-flight"), 3)
  .option("--frames-per-job <n>", "farm: frames per job", int("--frames-per-job"), 10)
  .option("--browsers <n>", "Chromium processes to spread the tabs over, the same for all three ways (default: as the CLI, one per core, at most one per tab)", int("--browsers"))
  .addOption(new Option("--encode <where>", "farm: encode in the browser or on the server (raw RGBA sent, sharp)").choices(["browser", "server"]).default("browser"))
  .option("--png-level <0-9>", "farm with --encode server: zlib level", wholeNumber("--png-level", 0, 9))
  .option("--repeat <n>", "throughput: run each way n times, interleaved, and report the median run; ingest --checks: rounds (default 3, --quick 1); template: rounds (at least 3)", int("--repeat"))
  .option("--jobs <n>", "queue: jobs to enqueue", int("--jobs"))
  .option("--wait-quiet <s>", "before each timed phase, wait up to this many whole seconds (0–3600) for other processes to leave the CPUs (default 60, --quick 15; 0: don't)", wholeNumber("--wait-quiet", 0, 3600))
  .option("--checks <list>", `ingest: compare these depths of the server's image check (${IMAGE_CHECK_DEPTHS.join(",")}), interleaved, --repeat rounds`, checkList)
  .option("--dashboard", "ingest: each trial without and with a dashboard open, interleaved, --repeat rounds: what the dashboard costs the server per frame", false)
  .option("--image <file>", "ingest: the image the fake sessions send (of --width × --height), e.g. a real frame: docs/demo-frame.png")
  .option("--recycle-after <n>", "soak: replace a tab after this many frames (0: never)", wholeNumber("--recycle-after", 0, 1_000_000_000), 5000)
  .option("--relaunch-after <n>", "soak: relaunch a browser after its tabs rendered this many frames (0: never; default: two runs, off and every 2000)", argument(parseRelaunchAfter))
  .option("--layers-compare <sets>", "throughput: the farm with each layer set in turn, sets split by ':' (the first is the baseline), 'none' to skip; frames per set: light 120, heavy 16 (--quick 40/8; --frames sets them too)", layerSetList, layerSetList("rgb:rgb,depth,mask,normal"))
  .addOption(new Option("--gl <backend>", "throughput: the farm's WebGL backend (seed, farm and the matched raw loop; the naive loop is always swiftshader): auto as the farm picks it (harness/chooseGl.ts)").choices(GL_BACKENDS as string[]).default("auto"))
  .option("--png-encoder <list>", `throughput: the farm's PNG encoder in the page (${PNG_ENCODERS.join(" | ")}; default ${DEFAULT_PNG_ENCODER}, the naive loop is always canvas); several, comma-separated: the farm alone with each, interleaved, medians`, pngEncoderList, [DEFAULT_PNG_ENCODER])
  .option("--browser <list>", "throughput: auto | system | bundled | a path (as the farm's --browser); several, comma-separated, compare them (interleaved runs, no sweep)", (v: string) => v.split(",").map((x) => x.trim()).filter(Boolean))
  .option("--quick", "small frame counts (about a minute)", false)
  .option("--keep", "keep the temp datasets", false)
  .action(async (bench: string, o: CliOptions) => {
    quiet.maxWaitMs = Math.max(0, o.waitQuiet ?? (o.quick ? 15 : 60)) * 1000;
    quiet.log = (line) => console.error(line);
    switch (bench) {
      case "throughput":
        return throughput(o);
      case "queue":
        return queue(o);
      case "ingest":
        return ingest(o);
      case "chaos":
        return chaos(o);
      case "soak":
        return soak(o);
      case "template":
        return template(o);
      case "servers":
        return servers(o);
      case "servers-chromium":
        return serversChromium(o);
      default:
        program.error(`unknown bench '${bench}': throughput | queue | ingest | chaos | soak | template | servers | servers-chromium`);
    }
  });

await program.parseAsync(process.argv);
// Playwright, socket.io and timers can keep the loop alive after a bench; it is done.
process.exit(0);

// Diagnostics behind the throughput figures (not part of `npm run bench`): where a frame's time goes.
// Run: npx tsx bench/diag.ts [experiment …] [--frames N] [--sessions N] [--repeat N]
//   split      raw loop in 1 and N pages: full, render+readPixels only, encode only (same pixels)
//   inflight   farm with --in-flight 1, 3, 6
//   browsers   farm with the tabs in 1 vs N browsers (one GPU process each)
//   canvas2d   farm with --disable-accelerated-2d-canvas (does the worker's PNG encode go through the GPU process?),
//              and the encode alone in one page with and without it
//   willread   raw loop with the session's encoder vs the same worker on a willReadFrequently (software) 2D context
//   encode     farm with --encode browser vs server (raw RGBA to the server, sharp) at PNG level 3 and 1
//   nocdp      farm with tabs in a Chromium started without Playwright (no CDP): server + browser CPU per frame
//   formats    farm with png vs jpeg vs webp
//   serverpng  encoding a real frame's RGBA to PNG in Node (pngjs + zlib) at several levels
//   rawingest  the ingest bench with a 1.2 MB payload (what sending raw RGBA would cost the server)
// The last line is one JSON object with every figure.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { PNG } from "pngjs";
import { chromium, type Page } from "playwright-core";
// ws is socket.io-client's own WebSocket (Node 20 has no global one); used only to open tabs over DevTools.
import { WebSocket } from "ws";
import { chromiumArgs } from "../harness/chromiumFlags.js";
import { findBrowser } from "../harness/findBrowser.js";
import { buildClientInChild } from "./buildClientChild.js";
import { benchScene, orbit } from "./scenes.js";
import { runFarmWay, runRaw, type TabOpener, type ThroughputOptions, type WayResult } from "./throughput.js";
import { benchIngest } from "./ingest.js";
import { fmt, printTable, quiet, roundDeep } from "./report.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const frames = flag("--frames", 60);
const sessions = flag("--sessions", 2);
const repeat = flag("--repeat", 1);
const ALL = ["split", "canvas2d", "willread", "encode", "inflight", "browsers", "nocdp", "formats", "serverpng", "rawingest"];
const wanted = args.filter((a, i) => !a.startsWith("--") && !(i > 0 && args[i - 1]!.startsWith("--")));
const experiments = wanted.length ? wanted : ALL;

const log = (line: string) => console.error(line);
quiet.log = log;
const base: ThroughputOptions = {
  sessions, scenes: ["light"], frames: { light: frames, heavy: frames }, sweep: [], sweepFrames: frames,
  width: 640, height: 480, format: "png", inFlight: 3, framesPerJob: 10, repeat: 1, browsers: 1, keep: false, log,
};

/** Playwright tabs like TabPool's, with extra Chromium flags. */
function playwrightOpener(extraArgs: string[]): TabOpener {
  return async (url, tabs, browsers) => {
    const launched = await Promise.all(
      Array.from({ length: browsers }, () =>
        chromium.launch({ executablePath: findBrowser().path, args: [...chromiumArgs("swiftshader"), ...extraArgs] })),
    );
    const pages: Page[] = [];
    await Promise.all(
      Array.from({ length: tabs }, async (_, i) => {
        const context = await launched[i % browsers]!.newContext({ viewport: { width: 320, height: 240 } });
        const page = await context.newPage();
        await page.goto(`${url}&worker=diag-${i}`, { waitUntil: "load" });
        pages.push(page);
      }),
    );
    return {
      count: pages.length,
      // Playwright's evaluate takes the same function; its typing of `arg` is stricter than ours.
      evaluate: (i, fn, arg) => pages[i]!.evaluate(fn as never, arg) as never,
      close: async () => void (await Promise.all(launched.map((b) => b.close().catch(() => {})))),
    };
  };
}

/**
 * Tabs in a Chromium started directly, without Playwright: over one browser-level DevTools connection,
 * each tab gets its own browser context + target (as Playwright's newContext/newPage do), and then no
 * DevTools session is attached to any tab (Playwright attaches to each and enables Page, Network, Runtime…).
 */
const spawnOpener: TabOpener = async (url, tabs) => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-diag-profile-"));
  const child = spawn(
    findBrowser().path,
    [...chromiumArgs("swiftshader"), "--headless", "--remote-debugging-port=0", `--user-data-dir=${profile}`, "about:blank"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const wsUrl = await new Promise<string>((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => reject(new Error(`no DevTools endpoint from Chromium: ${text.slice(-500)}`)), 30_000);
    child.stderr!.on("data", (d: Buffer) => {
      text += d.toString();
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
  let id = 0;
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const mine = ++id;
      const onMessage = (data: Buffer) => {
        const msg = JSON.parse(data.toString()) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
        if (msg.id !== mine) return;
        ws.off("message", onMessage);
        if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
        else resolve(msg.result ?? {});
      };
      ws.on("message", onMessage);
      ws.send(JSON.stringify({ id: mine, method, params }));
    });
  for (let i = 0; i < tabs; i++) {
    const { browserContextId } = await call("Target.createBrowserContext");
    await call("Target.createTarget", { url: `${url}&worker=nocdp-${i}`, browserContextId });
  }
  return {
    count: 0,
    evaluate: () => Promise.reject(new Error("tabs opened without DevTools cannot evaluate")),
    async close() {
      ws.close();
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
      try {
        fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
      } catch {
        // Chromium's helpers may still be writing; a temp folder left behind is harmless.
      }
    },
  };
};

interface Row { experiment: string; variant: string; runs: WayResult[] }
const rows: Row[] = [];
const json: Record<string, unknown> = {};

function cpu(w: WayResult) {
  const c = w.phase.childCpuMs;
  const other = Object.entries(c).filter(([k]) => k !== "gpu" && k !== "renderer").reduce((a, [, v]) => a + v, 0);
  return { server: w.phase.serverCpuMs / w.frames, gpu: (c.gpu ?? 0) / w.frames, renderer: (c.renderer ?? 0) / w.frames, other: other / w.frames };
}

/** The run to report: the fastest, i.e. the one least disturbed by other work on the machine. */
const best = (runs: WayResult[]) => runs.reduce((a, b) => (b.fps > a.fps ? b : a));

/** Runs the variants `repeat` times, interleaved (A B A B …), and keeps every run. */
async function compare(experiment: string, variants: [string, () => Promise<WayResult>][]): Promise<void> {
  const mine = variants.map(([variant]) => {
    const row: Row = { experiment, variant, runs: [] };
    rows.push(row);
    return row;
  });
  for (let r = 0; r < repeat; r++) {
    for (const [i, [variant, run]] of variants.entries()) {
      const w = await run();
      mine[i]!.runs.push(w);
      log(`  ${experiment} ${variant}: ${fmt(w.fps)} frames/s (not ours ${fmt(w.phase.foreignCpuMs / w.phase.wallMs, 2)} cores)`);
    }
  }
  for (const row of mine) {
    const w = best(row.runs);
    const c = cpu(w);
    json[`${experiment}.${row.variant}`] = {
      fps: w.fps, all_fps: row.runs.map((x) => x.fps), render_ms: w.renderMs, encode_ms: w.encodeMs, wait_ms: w.waitMs, kb: w.bytesPerFrame / 1024,
      server_cpu_ms: c.server, gpu_cpu_ms: c.gpu, renderer_cpu_ms: c.renderer, other_cpu_ms: c.other,
      cores_busy: w.phase.machineBusy * os.cpus().length, not_ours: w.phase.foreignCpuMs / w.phase.wallMs,
    };
  }
}

const clientDir = buildClientInChild();
const scene = benchScene("light");
const poses = orbit(frames);

for (const e of experiments) {
  log(`[diag] ${e}`);
  switch (e) {
    case "split":
      for (const n of [1, sessions]) {
        const p = n === 1 ? poses.slice(0, Math.ceil(frames / 2)) : poses;
        await compare("split", [
          [`${n}p-full`, () => runRaw(clientDir, scene, p, base, n)],
          [`${n}p-render`, () => runRaw(clientDir, scene, p, base, n, { only: "render" })],
          [`${n}p-encode`, () => runRaw(clientDir, scene, p, base, n, { only: "encode" })],
        ]);
      }
      break;
    case "inflight":
      await compare("inflight", [1, 3, 6].map((k) => [String(k), () => runFarmWay(clientDir, "diag", scene, poses, { ...base, inFlight: k }, sessions)]));
      break;
    case "browsers":
      await compare("browsers", [1, sessions].map((b) => [String(b), () => runFarmWay(clientDir, "diag", scene, poses, base, sessions, { browsers: b })]));
      break;
    case "canvas2d":
      // Farm as a whole, then the raw loop encoding one frame's pixels over and over in one page
      // (where the encode's CPU lands: GPU process or renderer). Encode-only runs 3× the frames so the
      // first frame's render and shader compilation weigh little.
      await compare("canvas2d", [
        ["accelerated(default)", () => runFarmWay(clientDir, "diag", scene, poses, base, sessions, { open: playwrightOpener([]) })],
        ["no-accel-2d", () => runFarmWay(clientDir, "diag", scene, poses, base, sessions, { open: playwrightOpener(["--disable-accelerated-2d-canvas"]) })],
        ["1p-encode-accelerated", () => runRaw(clientDir, scene, orbit(frames * 3), base, 1, { only: "encode", open: playwrightOpener([]) })],
        ["1p-encode-no-accel-2d", () => runRaw(clientDir, scene, orbit(frames * 3), base, 1, { only: "encode", open: playwrightOpener(["--disable-accelerated-2d-canvas"]) })],
        ["1p-render-only", () => runRaw(clientDir, scene, orbit(frames * 3), base, 1, { only: "render", open: playwrightOpener([]) })],
      ]);
      break;
    case "nocdp":
      await compare("nocdp", [
        ["tabpool", () => runFarmWay(clientDir, "diag", scene, poses, base, sessions)],
        ["no-playwright", () => runFarmWay(clientDir, "diag", scene, poses, base, sessions, { open: spawnOpener })],
      ]);
      break;
    case "willread":
      // The encoder worker with a willReadFrequently 2D context (software canvas) vs the session's pool.
      await compare("willread", [
        ["1p-encode-pool", () => runRaw(clientDir, scene, orbit(frames * 3), base, 1, { only: "encode" })],
        ["1p-encode-willread", () => runRaw(clientDir, scene, orbit(frames * 3), base, 1, { only: "encode", encoder: "cpu" })],
        [`${sessions}p-full-pool`, () => runRaw(clientDir, scene, poses, base, sessions)],
        [`${sessions}p-full-willread`, () => runRaw(clientDir, scene, poses, base, sessions, { encoder: "cpu" })],
      ]);
      break;
    case "encode":
      await compare("encode", [
        ["browser", () => runFarmWay(clientDir, "diag", scene, poses, base, sessions)],
        ["server-level3", () => runFarmWay(clientDir, "diag", scene, poses, { ...base, encode: "server" }, sessions)],
        ["server-level1", () => runFarmWay(clientDir, "diag", scene, poses, { ...base, encode: "server", pngLevel: 1 }, sessions)],
      ]);
      break;
    case "formats":
      await compare("formats", (["png", "jpeg", "webp"] as const).map((format) => [format, () => runFarmWay(clientDir, "diag", scene, poses, { ...base, format }, sessions)]));
      break;
    case "serverpng": {
      // A real frame: render one with the farm, decode it, re-encode its RGBA in Node.
      const keepOpts = { ...base, keep: true };
      const outBefore = new Set(fs.readdirSync(os.tmpdir()).filter((d) => d.startsWith("tabfarm-bench-farm-")));
      await runFarmWay(clientDir, "diagpng", scene, poses.slice(0, 10), keepOpts, 1);
      const out = fs.readdirSync(os.tmpdir()).filter((d) => d.startsWith("tabfarm-bench-farm-") && !outBefore.has(d)).map((d) => path.join(os.tmpdir(), d))[0]!;
      const file = path.join(out, "images", fs.readdirSync(path.join(out, "images"))[0]!, "000003.png");
      const browserPng = fs.readFileSync(file);
      const rgba = PNG.sync.read(browserPng);
      fs.rmSync(out, { recursive: true, force: true });
      const variants: [string, { deflateLevel?: number; filterType?: number }][] = [
        ["pngjs-level9-adaptive(default)", {}],
        ["pngjs-level6-adaptive", { deflateLevel: 6 }],
        ["pngjs-level1-adaptive", { deflateLevel: 1 }],
        ["pngjs-level1-sub", { deflateLevel: 1, filterType: 1 }],
        ["pngjs-level1-none", { deflateLevel: 1, filterType: 0 }],
      ];
      const table: (string | number)[][] = [["server-side PNG encode (one 640×480 frame)", "ms", "KB"]];
      table.push(["chromium convertToBlob (as received)", "-", fmt(browserPng.length / 1024, 0)]);
      json["serverpng.browser_kb"] = browserPng.length / 1024;
      for (const [name, opt] of variants) {
        PNG.sync.write(rgba, opt); // warm-up
        const reps = 5;
        const t0 = performance.now();
        let size = 0;
        for (let i = 0; i < reps; i++) size = PNG.sync.write(rgba, opt).length;
        const ms = (performance.now() - t0) / reps;
        table.push([name, fmt(ms), fmt(size / 1024, 0)]);
        json[`serverpng.${name}`] = { ms, kb: size / 1024 };
      }
      console.log("");
      printTable(table);
      break;
    }
    case "rawingest": {
      for (const [name, bytes] of [["png60k", 60 * 1024], ["rgba1200k", 640 * 480 * 4]] as const) {
        const r = await benchIngest({ sessions: [sessions], frames: Math.max(300, frames * 10), width: 640, height: 480, inFlight: 3, framesPerJob: 10, pngBytes: bytes, keep: false, log });
        json[`rawingest.${name}`] = Object.values(r)[0];
      }
      break;
    }
    default:
      throw new Error(`unknown experiment '${e}' (have: ${ALL.join(", ")})`);
  }
}

if (rows.length) {
  console.log("");
  console.log(`diag: light scene, ${frames} frames, ${sessions} session(s) unless the variant says otherwise; best of ${repeat} run(s) shown, all runs' frames/s last`);
  const table: (string | number)[][] = [[
    "experiment", "variant", "frames/s", "render ms", "encode ms", "wait ms", "KB/f", "srv ms/f", "gpu ms/f", "rndr ms/f", "other ms/f", "busy", "not ours", "all runs",
  ]];
  for (const { experiment, variant, runs } of rows) {
    const w = best(runs);
    const c = cpu(w);
    table.push([
      experiment, variant, fmt(w.fps), fmt(w.renderMs), fmt(w.encodeMs), fmt(w.waitMs), fmt(w.bytesPerFrame / 1024, 0),
      fmt(c.server, 2), fmt(c.gpu), fmt(c.renderer), fmt(c.other), fmt(w.phase.machineBusy * os.cpus().length, 2),
      fmt(w.phase.foreignCpuMs / w.phase.wallMs, 2), runs.map((x) => fmt(x.fps)).join(" "),
    ]);
  }
  printTable(table);
}
for (const [k, v] of Object.entries(json)) if (k.startsWith("rawingest.")) console.log(`${k}: ${JSON.stringify(roundDeep(v))}`);
console.log(JSON.stringify(roundDeep(json)));
process.exit(0);

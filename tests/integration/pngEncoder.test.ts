// The page's PNG encoders with real Chromium and the built client: a farm frame (the bench's light scene
// from the farm camera) encoded by @jsquash/png (wasm) or by the canvas decodes, with sharp and with
// pngjs, to exactly the pixels the page rendered (a raw grab of the same pose); JPEG and WebP still come
// from the canvas. A tab whose wasm does not load (missing, not wasm, empty, never answered) encodes PNG
// with the canvas instead, says so once on its console, and every frame still arrives, lossless.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { PNG } from "pngjs";
import { chromium, type Browser, type Page } from "playwright-core";
import { Farm } from "../../server/session/Farm.js";
import type { Session } from "../../server/session/Session.js";
import { FARM_CAMERA_KEY, poseProps, withFarmCamera } from "../../server/dispatch/farmCamera.js";
import { buildClient } from "../../harness/buildClient.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { chromiumArgs } from "../../harness/chromiumFlags.js";
import { benchScene, orbit } from "../../bench/scenes.js";
import { DEFAULT_PNG_ENCODER } from "../../client/src/capture/encoderPool.js";

const W = 640;
const H = 480;
const POSES = orbit(3);

let browser: Browser;
let clientDir: string;
const temps: string[] = [];

before(async () => {
  clientDir = await buildClient();
  browser = await chromium.launch({ executablePath: findBrowser().path, args: chromiumArgs("swiftshader") });
});
after(async () => {
  await browser?.close();
  for (const dir of temps) fs.rmSync(dir, { recursive: true, force: true });
});

interface Tab { farm: Farm; page: Page; session: Session; console: string[] }

/** A farm serving `dir` and one page on it with `?pngEncoder=…`; `route` may hold back requests first. */
async function openTab(dir: string, pngEncoder: string, route?: (page: Page) => Promise<void>): Promise<Tab> {
  const farm = new Farm({ clientDir: dir, log: () => {} });
  await farm.listen();
  const worker = `png-test-${Math.random().toString(36).slice(2, 8)}`;
  const joined = new Promise<Session>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the page with pngEncoder=${pngEncoder} did not join within 60 s`)), 60_000);
    const onSession = (s: Session) => s.info.worker === worker && (farm.off("session", onSession), clearTimeout(timer), resolve(s));
    farm.on("session", onSession);
  });
  const page = await browser.newPage();
  const consoleLines: string[] = [];
  page.on("console", (m) => void (m.type() === "error" && consoleLines.push(m.text())));
  await route?.(page);
  await page.goto(`${farm.url}&worker=${worker}&preview=off&pngEncoder=${encodeURIComponent(pngEncoder)}`);
  const session = await joined;
  assert.ok(session.info.webgl, `no WebGL in ${session.info.userAgent}`);
  session.set(withFarmCamera(benchScene("light"), W, H));
  return { farm, page, session, console: consoleLines };
}

async function closeTab(tab: Tab): Promise<void> {
  await tab.page.close();
  await tab.farm.close();
}

/**
 * The pose's pixels as the page rendered them (a raw grab: RGBA sent as is, no page encoder; the server
 * stores it as a lossless PNG, read back here), then the same pose encoded by the page as `format`.
 */
async function grabBoth(tab: Tab, pose: (typeof POSES)[number], format: "png" | "jpeg" | "webp" = "png") {
  tab.session.update({ key: FARM_CAMERA_KEY, ...poseProps(pose) });
  const rawGrab = await tab.session.grabRender({ key: FARM_CAMERA_KEY, encoding: "raw" });
  const raw = await sharp(rawGrab.image).ensureAlpha().raw().toBuffer();
  const encoded = await tab.session.grabRender({ key: FARM_CAMERA_KEY, format });
  assert.equal(raw.length, W * H * 4);
  return { raw, encoded: encoded.image };
}

/** Both decoders give back exactly `raw`. */
async function assertLossless(png: Buffer, raw: Buffer, what: string): Promise<void> {
  const bySharp = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([bySharp.info.width, bySharp.info.height, bySharp.info.channels], [W, H, 4], what);
  assert.ok(bySharp.data.equals(raw), `${what}: sharp's decode differs from the rendered pixels`);
  const byPngjs = PNG.sync.read(png);
  assert.ok(Buffer.from(byPngjs.data).equals(raw), `${what}: pngjs's decode differs from the rendered pixels`);
}

/** What the page's encoder pools did: frames by encoder, fallbacks (client/src/bench/rawLoop.ts). */
async function encoderReport(page: Page): Promise<{ frames: { canvas: number; jsquash: number }; fallbacks: string[] }> {
  return page.evaluate(async () => {
    const w = window as unknown as { tabfarm: { loadBench: () => Promise<{ encoderReport: () => { frames: { canvas: number; jsquash: number }; fallbacks: string[] } }> } };
    return (await w.tabfarm.loadBench()).encoderReport();
  });
}

describe("PNG encoders in the page", { timeout: 240_000 }, () => {
  it("the wasm is in the built client, next to the worker that loads it", () => {
    const assets = fs.readdirSync(path.join(clientDir, "assets"));
    const wasm = assets.filter((f) => f.endsWith(".wasm"));
    assert.equal(wasm.length, 1, `one wasm in ${assets.join(", ")}`);
    const worker = assets.find((f) => f.startsWith("encoder.worker") && f.endsWith(".js"));
    assert.ok(worker && fs.readFileSync(path.join(clientDir, "assets", worker), "utf8").includes(wasm[0]!), "the worker names the wasm file");
  });

  it("jsquash and canvas PNGs of farm frames decode to exactly the rendered pixels; JPEG and WebP still encode", async () => {
    const jsquash = await openTab(clientDir, "jsquash");
    const canvas = await openTab(clientDir, "canvas");
    try {
      for (const [i, pose] of POSES.entries()) {
        const a = await grabBoth(jsquash, pose);
        const b = await grabBoth(canvas, pose);
        assert.ok(a.raw.equals(b.raw), `pose ${i}: both tabs render the same pixels`);
        assert.ok(!a.encoded.equals(b.encoded), `pose ${i}: the two encoders wrote different files (so each was used)`);
        await assertLossless(a.encoded, a.raw, `pose ${i}, jsquash`);
        await assertLossless(b.encoded, b.raw, `pose ${i}, canvas`);
      }
      assert.deepEqual(await encoderReport(jsquash.page), { frames: { canvas: 0, jsquash: POSES.length }, fallbacks: [] });
      assert.deepEqual(await encoderReport(canvas.page), { frames: { canvas: POSES.length, jsquash: 0 }, fallbacks: [] });

      for (const format of ["jpeg", "webp"] as const) {
        const { raw, encoded } = await grabBoth(jsquash, POSES[0]!, format);
        const meta = await sharp(encoded).metadata();
        assert.deepEqual([meta.format, meta.width, meta.height], [format, W, H]);
        const decoded = await sharp(encoded).ensureAlpha().raw().toBuffer();
        let diff = 0;
        for (let i = 0; i < raw.length; i += 4) for (let c = 0; c < 3; c++) diff += Math.abs(decoded[i + c]! - raw[i + c]!);
        assert.ok(diff / (W * H * 3) < 8, `${format}: mean channel difference ${diff / (W * H * 3)} is that of another image`);
      }
      assert.equal((await encoderReport(jsquash.page)).frames.canvas, 2, "JPEG and WebP from the canvas");
      assert.deepEqual(jsquash.console.filter((l) => /tabfarm|jsquash/.test(l)), [], "no encoder complaint on the console");
    } finally {
      await closeTab(jsquash);
      await closeTab(canvas);
    }
  });

  it("a pngEncoder the page does not know is said on its console and the default used", async () => {
    for (const asked of ["bogus", "Canvas", "jsquash\u0000x", "x".repeat(300)]) {
      const tab = await openTab(clientDir, asked);
      try {
        const { raw, encoded } = await grabBoth(tab, POSES[0]!);
        await assertLossless(encoded, raw, asked);
        assert.deepEqual((await encoderReport(tab.page)).frames, { canvas: 0, jsquash: 0, [DEFAULT_PNG_ENCODER]: 1 }, `the default, ${DEFAULT_PNG_ENCODER}`);
        assert.ok(tab.console.some((l) => l.startsWith("tabfarm: unknown pngEncoder") && l.includes("have: jsquash, canvas")), tab.console.join("\n"));
      } finally {
        await closeTab(tab);
      }
    }
  });

  // Each way the wasm can fail to arrive: the tab falls back once, says so once, and loses no frame.
  const breakages: { name: string; reason: RegExp; spoil?: (wasm: string) => void; route?: (page: Page) => Promise<void> }[] = [
    { name: "missing (404)", reason: /@jsquash\/png failed/, spoil: (wasm) => fs.rmSync(wasm) },
    { name: "not wasm", reason: /@jsquash\/png failed/, spoil: (wasm) => fs.writeFileSync(wasm, "<html>not a module</html>") },
    { name: "empty", reason: /@jsquash\/png failed/, spoil: (wasm) => fs.writeFileSync(wasm, "") },
    {
      name: "never answered",
      reason: /did not load within 10 s/,
      route: async (page) => void (await page.context().route(/\.wasm$/, () => {})), // held: neither served nor failed
    },
  ];
  for (const broken of breakages) {
    it(`a wasm that is ${broken.name}: PNG from the canvas, said once, every frame lossless`, async () => {
      let dir = clientDir;
      if (broken.spoil) {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-pngenc-"));
        temps.push(dir);
        fs.cpSync(clientDir, dir, { recursive: true });
        const wasm = fs.readdirSync(path.join(dir, "assets")).find((f) => f.endsWith(".wasm"))!;
        broken.spoil(path.join(dir, "assets", wasm));
      }
      const tab = await openTab(dir, "jsquash", broken.route);
      try {
        for (const pose of POSES) {
          const { raw, encoded } = await grabBoth(tab, pose);
          await assertLossless(encoded, raw, broken.name);
        }
        const report = await encoderReport(tab.page);
        assert.deepEqual(report.frames, { canvas: POSES.length, jsquash: 0 });
        assert.equal(report.fallbacks.length, 1, report.fallbacks.join("\n"));
        assert.match(report.fallbacks[0]!, broken.reason);
        assert.match(report.fallbacks[0]!, /encodes PNG with the browser's canvas encoder instead/);
        const said = tab.console.filter((l) => l.includes("@jsquash/png failed"));
        assert.equal(said.length, 1, `said once on the console:\n${tab.console.join("\n")}`);
      } finally {
        await closeTab(tab);
      }
    });
  }
});

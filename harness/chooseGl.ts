/**
 * `--gl auto`: which WebGL backend this browser on this machine renders fastest with.
 *
 * One throwaway launch of the browser with the egl flags, asked for its WebGL renderer (webglProbe.ts):
 *  - a hardware renderer: a GPU works through ANGLE's GL-EGL backend → egl;
 *  - Mesa's llvmpipe: no GPU, but Mesa's EGL works → llvmpipe (measured 1.6× SwiftShader's frames/s on the
 *    heavy bench scene, 1.1× on the light one: README, "Speed");
 *  - anything else (SwiftShader: this browser has no GL-EGL backend, or the machine no Mesa; no WebGL; a crash;
 *    no answer within PROBE_TIMEOUT_MS) → swiftshader, which every Chromium has.
 * Vulkan is never probed: ANGLE on Mesa's lavapipe crashed the GPU process here, and a GPU host is served by egl.
 * The launch costs about a second, once per process, browser and set of --chromium-arg flags (remembered below).
 */
import fs from "node:fs";
import { Option } from "commander";
import { chromium } from "playwright-core";
import { chromiumArgs, DEFAULT_GL, GL_BACKENDS, type ConcreteGlBackend, type GlBackend } from "./chromiumFlags.js";
import { isSoftwareRenderer, probeWebgl, type WebglProbe } from "./webglProbe.js";

export interface GlChoice {
  /** The backend to launch with. */
  gl: ConcreteGlBackend;
  /** The probe's WebGL renderer ("" when auto was not probed or found no WebGL). */
  renderer: string;
  /** Why, in one line, for the farm's first lines. */
  why: string;
}

export interface ChooseGlOptions {
  /** The probe's bound: a browser that has not answered by then counts as no egl. */
  timeoutMs?: number;
  /** Whether Mesa's EGL is installed, for the advice when egl did not work (default: looks on disk). */
  mesaInstalled?: () => boolean;
  /** The user's extra Chromium flags (`--chromium-arg`), so the probe launches the browser the tabs will get. */
  extraArgs?: string[];
}

export const PROBE_TIMEOUT_MS = 30_000;
/** How long the probe's browser gets to close before we stop waiting (it is left to Playwright then). */
const PROBE_CLOSE_MS = 5_000;

/** The apt line that brings Mesa's llvmpipe, and a browser that can use it, to Debian/Ubuntu. */
export const LLVMPIPE_APT = "apt-get install -y chromium libegl-mesa0 libgl1-mesa-dri";

const remembered = new Map<string, Promise<GlChoice>>();

/** `requested` as given, or for auto the probe's verdict (once per browser path and flags in this process). */
export function chooseGl(browserPath: string, requested: GlBackend, opts: ChooseGlOptions = {}): Promise<GlChoice> {
  if (requested !== "auto") return Promise.resolve({ gl: requested, renderer: "", why: `--gl ${requested}` });
  const extraArgs = opts.extraArgs ?? [];
  const key = JSON.stringify([browserPath, extraArgs]);
  let choice = remembered.get(key);
  if (!choice) {
    choice = probeEgl(browserPath, extraArgs, opts.timeoutMs ?? PROBE_TIMEOUT_MS).then((probe) => glFromProbe(probe, opts.mesaInstalled ?? mesaInstalled));
    remembered.set(key, choice);
  }
  return choice;
}

/** What the egl probe found: a WebGL answer, or why there was none. */
export type EglProbe = WebglProbe | { failed: string };

/** The verdict on one egl probe (exported for its unit test; chooseGl is the entry point). */
export function glFromProbe(probe: EglProbe, mesa: () => boolean): GlChoice {
  if ("failed" in probe) return { gl: "swiftshader", renderer: "", why: `auto: the egl probe failed (${probe.failed}); SwiftShader works everywhere` };
  const { renderer } = probe;
  if (probe.webgl && renderer && !isSoftwareRenderer(renderer)) return { gl: "egl", renderer, why: `auto: a GPU answers through egl (${renderer})` };
  if (probe.webgl && /llvmpipe/i.test(renderer)) {
    return { gl: "llvmpipe", renderer, why: "auto: no GPU; Mesa's llvmpipe works through egl and is faster than SwiftShader" };
  }
  const got = probe.webgl ? renderer || "an unnamed renderer" : "no WebGL";
  const advice = mesa()
    ? `Mesa is installed, so this browser lacks ANGLE's GL-EGL backend (the bundled Chromium does): Debian's chromium (${LLVMPIPE_APT}) renders on llvmpipe, about 1.6× faster on heavy scenes`
    : `for llvmpipe, about 1.6× faster on heavy scenes: ${LLVMPIPE_APT}`;
  return { gl: "swiftshader", renderer: "", why: `auto: egl gave ${got}, so SwiftShader; ${advice}` };
}

/** Launches the browser headless with the egl flags and asks a blank page for its WebGL renderer. */
async function probeEgl(browserPath: string, extraArgs: string[], timeoutMs: number): Promise<EglProbe> {
  let browser: Awaited<ReturnType<typeof chromium.launch>> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let over = false; // the verdict is in: a browser that lands later is closed at once, not probed
  const timedOut = new Promise<EglProbe>((resolve) => {
    timer = setTimeout(() => resolve({ failed: `no answer within ${timeoutMs / 1000} s` }), timeoutMs);
  });
  const probed = (async (): Promise<EglProbe> => {
    try {
      browser = await chromium.launch({
        executablePath: browserPath, args: [...chromiumArgs("egl"), ...extraArgs], headless: true, timeout: timeoutMs,
        // Ctrl-C is the farm's to handle (it drains and exits 128+n); Playwright's own handlers would close
        // every browser of this process and exit at once.
        handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
      });
      if (over) return { failed: "launched too late" }; // closed by the finally below
      const page = await browser.newPage();
      return await probeWebgl(page);
    } catch (err) {
      return { failed: String((err as Error)?.message ?? err).split("\n")[0]!.slice(0, 200) };
    }
  })();
  try {
    return await Promise.race([probed, timedOut]);
  } finally {
    over = true;
    clearTimeout(timer);
    // Closing also ends a probe that hangs in the page; a launch still under way (bounded by its own
    // timeout) is closed once it lands. A browser that does not close in PROBE_CLOSE_MS does not hold
    // up the farm's start.
    await boundedClose(browser);
    void probed.finally(() => boundedClose(browser));
  }
}

function boundedClose(browser: { close(): Promise<void> } | undefined): Promise<void> {
  if (!browser) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, PROBE_CLOSE_MS); timer.unref(); });
  return Promise.race([browser.close().catch(() => {}), late]).finally(() => clearTimeout(timer));
}

/** Mesa's EGL driver (libegl-mesa0) on this machine, by its glvnd vendor file or library. */
export function mesaInstalled(): boolean {
  const candidates = [
    "/usr/share/glvnd/egl_vendor.d/50_mesa.json",
    "/usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0",
    "/usr/lib/aarch64-linux-gnu/libEGL_mesa.so.0",
    "/usr/lib64/libEGL_mesa.so.0",
    "/usr/lib/libEGL_mesa.so.0",
  ];
  return candidates.some((p) => fs.existsSync(p));
}

/** `--gl` of the farm and of `worker`: one definition, so both read the same choices, default and env. */
export function glOption(): Option {
  return new Option(
    "--gl <backend>",
    "WebGL backend: auto (a GPU through egl, else Mesa's llvmpipe, else SwiftShader; says which at start), " +
      "swiftshader, llvmpipe (Mesa, CPU), egl (GPU via EGL), vulkan (GPU via Vulkan)",
  ).choices(GL_BACKENDS as string[]).default(DEFAULT_GL).env("TABFARM_GL");
}

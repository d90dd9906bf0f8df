/**
 * Chromium command-line flags for farm tabs.
 *
 * Sources for the GL flags (checked, not guessed):
 *  - chromium/src docs/gpu/swiftshader.md: SwANGLE = `--use-gl=angle --use-angle=swiftshader`.
 *  - chromium/src chrome/browser/headless/headless_mode_switches.h: headless
 *    forces SwiftShader unless `--enable-gpu` is passed; specific drivers may be
 *    forced with --use-gl / --use-angle.
 *  - chromium/src docs/gpu/using-gpu-hardware-in-headless-chrome.md: `--enable-gpu`
 *    in headless; default autodetection needs X11 on Linux, `--use-angle=vulkan`
 *    is known to work headless on some Linux setups.
 *  - Remotion @remotion/renderer open-browser.ts: `--gl=angle-egl` maps to
 *    `--use-gl=angle --use-angle=gl-egl` (recommended for cloud GPUs); its
 *    `vulkan` adds `--disable-vulkan-surface --enable-gpu --ignore-gpu-blocklist`.
 *  - jasonmayes/headless-chrome-nvidia-t4-gpu-support (linked from Chromium's
 *    server-side-headless-linux-chrome-with-gpus.md): `--use-angle=vulkan
 *    --enable-features=Vulkan --disable-vulkan-surface` under `--headless=new`.
 *  - SwiftShader deprecation (crbug 40277080): since M139 automatic WebGL
 *    fallback to SwiftShader needs `--enable-unsafe-swiftshader`.
 */

/**
 * `auto` is not a set of flags: harness/chooseGl.ts resolves it to one of the others before a browser is
 * launched (a GPU through egl, else Mesa's llvmpipe, else SwiftShader). `llvmpipe` launches with the egl
 * flags: on a host without a GPU, ANGLE's GL-EGL backend lands on Mesa's CPU rasterizer.
 */
export type GlBackend = "swiftshader" | "llvmpipe" | "egl" | "vulkan" | "auto";
/** A backend with flags of its own: what `auto` resolves to. */
export type ConcreteGlBackend = Exclude<GlBackend, "auto">;

export const GL_BACKENDS: readonly GlBackend[] = ["auto", "swiftshader", "llvmpipe", "egl", "vulkan"];
/** The CLI's default (farm and worker). The screenshot fixture defaults to swiftshader instead (harness/testing.ts): goldens need one named backend. */
export const DEFAULT_GL: GlBackend = "auto";

export interface ChromiumArgsOptions {
  /** Headed (visible window / Xvfb) launch. Drops headless-only GPU switches. */
  headed?: boolean;
  /** Override root detection (tests). Defaults to `process.getuid?.() === 0`. */
  root?: boolean;
}

/** Flags that are the same for every backend. */
const BASE_FLAGS: readonly string[] = [
  "--disable-background-networking", // no update/metrics/safe-browsing traffic from farm tabs
  "--disable-component-update", // don't download components (Widevine, CRLSets...) mid-run
  "--disable-sync", // no Google account sync machinery
  "--no-first-run", // skip first-run wizard / profile import
  "--no-default-browser-check", // skip "make default browser" prompt
  "--disable-background-timer-throttling", // background tabs keep full-rate timers/rAF-driven work
  "--disable-renderer-backgrounding", // don't deprioritise renderers of non-foreground tabs
  "--disable-backgrounding-occluded-windows", // occluded/hidden windows keep rendering
  "--disable-dev-shm-usage", // containers have tiny /dev/shm; use /tmp instead to avoid crashes
  "--mute-audio", // farm tabs never need sound
];

/** Per-backend GL flags (headless variant). */
function glFlags(gl: GlBackend, headed: boolean): string[] {
  switch (gl) {
    case "swiftshader":
      return [
        "--use-gl=angle", // route GL through ANGLE...
        "--use-angle=swiftshader", // ...on SwiftShader's CPU Vulkan (SwANGLE); needs no GPU
        "--enable-unsafe-swiftshader", // M139+: allow SwiftShader for WebGL (crbug 40277080)
        "--ignore-gpu-blocklist", // don't let the blocklist disable WebGL on odd hosts
      ];
    case "llvmpipe":
    case "egl":
      return [
        "--use-gl=angle", // GL via ANGLE; plain --use-gl=egl is reported rejected since Chrome 131 (heygen-com/hyperframes#1493)
        "--use-angle=gl-egl", // ANGLE on the system's native EGL/GL driver: no X11 needed (Remotion "angle-egl")
        "--ignore-gpu-blocklist", // server/datacenter GPUs are often blocklisted
        // headless forces SwiftShader unless told otherwise (headless_mode_switches.h)
        ...(headed ? [] : ["--enable-gpu"]),
      ];
    case "vulkan":
      return [
        "--use-gl=angle", // GL through ANGLE...
        "--use-angle=vulkan", // ...on the system Vulkan driver (the documented headless-Linux GPU path)
        // Vulkan for Chromium's own compositing/raster. NB: Chromium keeps only the
        // LAST --enable-features switch, and Playwright puts its own one before
        // user args, so this replaces Playwright's list (currently
        // CDPScreenshotNewSurface,SkipListAccountsWithoutGaiaCookies).
        "--enable-features=Vulkan",
        "--ignore-gpu-blocklist", // server/datacenter GPUs are often blocklisted
        // headless has no window surface to present to; and headless forces
        // SwiftShader unless --enable-gpu is given.
        ...(headed ? [] : ["--disable-vulkan-surface", "--enable-gpu"]),
      ];
    case "auto":
      throw new Error("chromiumArgs: --gl auto is resolved to a backend first (harness/chooseGl.ts)");
    default: {
      const never: never = gl;
      throw new Error(`unknown GL backend ${String(never)}; expected one of ${GL_BACKENDS.join(", ")}`);
    }
  }
}

export function isGlBackend(x: unknown): x is GlBackend {
  return typeof x === "string" && (GL_BACKENDS as readonly string[]).includes(x);
}

export function chromiumArgs(gl: ConcreteGlBackend, opts: ChromiumArgsOptions = {}): string[] {
  const root = opts.root ?? process.getuid?.() === 0;
  return [
    ...BASE_FLAGS,
    // Chromium refuses to start as root with the sandbox on; only drop it then.
    ...(root ? ["--no-sandbox"] : []),
    ...glFlags(gl, opts.headed ?? false),
  ];
}

/** One-line human explanation of a backend, for logs and error messages. */
export function describeGl(gl: GlBackend, opts: { headed?: boolean } = {}): string {
  if (gl === "auto") return "auto: a GPU through egl if the browser finds one, else Mesa's llvmpipe, else SwiftShader (harness/chooseGl.ts)";
  const flags = glFlags(gl, opts.headed ?? false);
  const tried = flags.length ? `tried: ${flags.join(" ")}` : "tried: no GL flags";
  switch (gl) {
    case "swiftshader":
      return `swiftshader: CPU-only WebGL via ANGLE+SwiftShader (slow, works without a GPU; renderer should mention SwiftShader) — ${tried}`;
    case "llvmpipe":
      return `llvmpipe: CPU-only WebGL via ANGLE on Mesa's EGL (faster than SwiftShader; needs Mesa's libegl-mesa0 libgl1-mesa-dri and a browser with ANGLE's GL-EGL backend, e.g. Debian's chromium) — ${tried}`;
    case "egl":
      return `egl: hardware GPU via ANGLE on the native EGL/GL driver (needs a GPU + its EGL driver, e.g. NVIDIA/Mesa libEGL, no X11) — ${tried}`;
    case "vulkan":
      return `vulkan: hardware GPU via ANGLE on Vulkan (needs a GPU + Vulkan ICD, e.g. nvidia_icd.json) — ${tried}`;
    default: {
      const never: never = gl;
      return `unknown GL backend ${String(never)}`;
    }
  }
}

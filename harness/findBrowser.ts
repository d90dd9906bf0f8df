/**
 * Locate a Chromium-family executable for the farm.
 *
 * The choice (`--browser`, else $TABFARM_BROWSER, else "auto"):
 *  - auto (default), in this order:
 *    1. $CHROMIUM_PATH (must be an executable file, else a clear error — we never
 *       silently fall back when the user asked for a specific binary);
 *    2. Playwright's own downloaded browsers (Chrome for Testing, then
 *       chrome-headless-shell) — `chromium.executablePath()` returns a path even
 *       when nothing is installed, so existence is checked;
 *    3. system browsers: well-known names on $PATH, then well-known absolute paths;
 *    4. the bundled Chromium of the optional npm dependency @sparticuz/chromium (x64 Linux,
 *       glibc), extracted once into a per-user cache (bundledBrowser.ts). Last: frames/s were the
 *       same in the benchmark, and a browser the user installed gets the system's security updates,
 *       while the bundled one is pinned to Chromium 143 by Node 20 support (README, "Which browser").
 *  - system: steps 2–3 only; bundled: step 4 only; anything else: the path of a browser.
 */
import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { BUNDLED_PACKAGE, bundledBrowser, whyBundledUnavailable, type BundledBrowserOptions } from "./bundledBrowser.js";

export type BrowserSource = "CHROMIUM_PATH" | "path" | "playwright" | "system" | "bundled";

export interface FoundBrowser {
  path: string;
  source: BrowserSource;
  /** Why this one, in a few words, for the farm's first lines. */
  reason: string;
}

export const BROWSER_CHOICES = ["auto", "system", "bundled"] as const;
export type BrowserChoice = (typeof BROWSER_CHOICES)[number] | { path: string };

/** `--browser` / $TABFARM_BROWSER: auto, system, bundled, or a path (anything else). Empty means auto. */
export function parseBrowserChoice(value: string | undefined): BrowserChoice {
  const v = value?.trim() ?? "";
  if (v === "") return "auto";
  // Any case: `BUNDLED` is a choice, not a file in the current folder (./BUNDLED is).
  const word = v.toLowerCase();
  return (BROWSER_CHOICES as readonly string[]).includes(word) ? (word as BrowserChoice) : { path: v };
}

export interface FindBrowserOptions {
  /** Is this path a usable executable? Default: regular file with execute permission. */
  exists?: (p: string) => boolean;
  /** Playwright-managed candidates. Default: derived from playwright-core's `chromium.executablePath()`. */
  playwrightCandidates?: () => string[];
  /** Absolute well-known system paths. Default: per-platform list (see `defaultSystemPaths`). */
  systemPaths?: string[];
  /** Executable names looked up on $PATH. Default: chromium, chromium-browser, google-chrome, google-chrome-stable. */
  pathNames?: string[];
  platform?: NodeJS.Platform;
  /** `--browser`'s value; when absent, $TABFARM_BROWSER of the env given, else auto. */
  choice?: string;
  /** For the bundled step (cache folder from the env given, package location, arch…). */
  bundled?: BundledBrowserOptions;
}

export class BrowserNotFoundError extends Error {
  readonly tried: string[];
  constructor(tried: string[], what = "No Chromium/Chrome executable found") {
    super(
      [
        `${what}. Tried:`,
        ...tried.map((t) => `  - ${t}`),
        "Fix one of:",
        "  - Debian/Ubuntu: apt-get install -y chromium   (Ubuntu's chromium-browser is a snap shim; Google Chrome .deb also works)",
        "  - where downloads work: npx playwright install chromium   (or: npx playwright install --with-deps chromium)",
        "  - point at any Chromium/Chrome binary: export CHROMIUM_PATH=/path/to/chrome   (or --browser /path/to/chrome)",
        "  - on x64 Linux with glibc: npm install   (brings the bundled Chromium, @sparticuz/chromium)",
      ].join("\n"),
    );
    this.name = "BrowserNotFoundError";
    this.tried = tried;
  }
}

/** A browser path given by the user (CHROMIUM_PATH, --browser, TABFARM_BROWSER) that cannot be run. */
export class InvalidChromiumPathError extends Error {
  readonly chromiumPath: string;
  constructor(chromiumPath: string, reason: string, setting = "CHROMIUM_PATH") {
    super(
      `${setting} is set to "${chromiumPath}" but ${reason}. ` +
        (setting === "CHROMIUM_PATH"
          ? `Fix or unset CHROMIUM_PATH (unset it to auto-detect Playwright's, the system's or the bundled Chromium).`
          : `Give the path of a Chromium/Chrome binary, or one of ${BROWSER_CHOICES.join(", ")}.`),
    );
    this.name = "InvalidChromiumPathError";
    this.chromiumPath = chromiumPath;
  }
}

export const DEFAULT_PATH_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

export function defaultSystemPaths(platform: NodeJS.Platform = process.platform): string[] {
  if (platform === "darwin") {
    return [
      "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
      "/Applications/Chromium.app/Contents/MacOS/Chromium",
    ];
  }
  if (platform === "win32") {
    const pf = [process.env["PROGRAMFILES"], process.env["PROGRAMFILES(X86)"], process.env["LOCALAPPDATA"]];
    return pf.filter((d): d is string => !!d).map((d) => path.win32.join(d, "Google", "Chrome", "Application", "chrome.exe"));
  }
  return [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/snap/bin/chromium",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/opt/google/chrome/chrome",
  ];
}

/** True if `p` is a regular file (symlinks followed) we may execute. */
export function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Playwright's Chromium (Chrome for Testing) plus chrome-headless-shell of the
 * same revision. Playwright only exposes the former publicly; the latter lives
 * next to it as `chromium_headless_shell-<rev>/chrome-headless-shell-<plat>/chrome-headless-shell`.
 */
export function playwrightChromiumCandidates(): string[] {
  let full: string;
  try {
    full = chromium.executablePath();
  } catch {
    return []; // unsupported platform / broken registry
  }
  if (!full) return [];
  const out = [full];
  // .../chromium-1255/chrome-linux64/chrome  ->  .../chromium_headless_shell-1255/chrome-headless-shell-linux64/chrome-headless-shell
  const m = /^(.*[\\/])chromium-(\d+)[\\/]chrome-([^\\/]+)[\\/]/.exec(full);
  if (m) {
    const [, root, rev, plat] = m;
    const sep = full[root!.length - 1]; // keep the separator style Playwright used
    const exe = plat!.startsWith("win") ? "chrome-headless-shell.exe" : "chrome-headless-shell";
    out.push(`${root}chromium_headless_shell-${rev}${sep}chrome-headless-shell-${plat}${sep}${exe}`);
  }
  return out;
}

export function findBrowser(env: NodeJS.ProcessEnv = process.env, opts: FindBrowserOptions = {}): FoundBrowser {
  const setting = opts.choice !== undefined ? "--browser" : "TABFARM_BROWSER";
  const choice = parseBrowserChoice(opts.choice ?? env["TABFARM_BROWSER"]);
  if (typeof choice === "object") return { path: checkGivenPath(choice.path, setting, opts), source: "path", reason: `${setting} ${choice.path}` };
  const bundledOptions: BundledBrowserOptions = { env, platform: opts.platform, ...opts.bundled };
  if (choice === "bundled") {
    const unavailable = whyBundledUnavailable(bundledOptions);
    const what = `No bundled Chromium (${setting} bundled)`;
    if (unavailable) throw new BrowserNotFoundError([`the bundled Chromium: ${unavailable}`], what);
    return bundled(bundledOptions, `${setting} bundled`, [], what);
  }

  const tried: string[] = [];
  if (choice === "auto") {
    // 1. Explicit override: fail loudly rather than silently using something else.
    const override = env["CHROMIUM_PATH"];
    if (override !== undefined && override.trim() !== "") {
      return { path: checkGivenPath(override.trim(), "CHROMIUM_PATH", opts), source: "CHROMIUM_PATH", reason: "CHROMIUM_PATH is set" };
    }
    tried.push("$CHROMIUM_PATH (not set)");
  }
  const installed = findInstalled(env, opts, tried);
  const because = (found: string, source: BrowserSource) => [found, ...passedOver(choice, source)].join("; ");
  if (installed) return { ...installed, reason: because(installed.reason, installed.source) };
  if (choice === "system") throw new BrowserNotFoundError(tried, `No installed Chromium/Chrome found (${setting} system)`);

  // 4. The bundled browser, where it can run; where it cannot, the error says why and how to fix.
  const unavailable = whyBundledUnavailable(bundledOptions);
  if (unavailable) throw new BrowserNotFoundError([...tried, `the bundled Chromium: ${unavailable}`]);
  return bundled(bundledOptions, because("the bundled Chromium", "bundled"), tried);
}

/** The steps before `found`, for its reason line (their details are in the error when nothing is found). */
function passedOver(choice: "auto" | "system", found: BrowserSource): string[] {
  const steps: [BrowserSource, string][] = [
    ["CHROMIUM_PATH", "CHROMIUM_PATH not set"],
    ["playwright", "no Playwright browser"],
    ["system", "no system Chromium"],
  ];
  const considered = choice === "auto" ? steps : steps.slice(1);
  const at = considered.findIndex(([source]) => source === found);
  return considered.slice(0, at < 0 ? undefined : at).map(([, absent]) => absent);
}

/** The bundled browser; when it cannot be extracted (cache folder, disk space, a damaged package), the error keeps the list of fixes. */
function bundled(opts: BundledBrowserOptions, why: string, tried: string[], what?: string): FoundBrowser {
  let b;
  try {
    b = bundledBrowser(opts);
  } catch (err) {
    throw new BrowserNotFoundError([...tried, `the bundled Chromium: ${(err as Error).message}`], what);
  }
  const cache = b.extractedMs === undefined ? `cached in ${b.dir}` : `extracted into ${b.dir} in ${(b.extractedMs / 1000).toFixed(1)} s`;
  return { path: b.path, source: "bundled", reason: `${why} (${BUNDLED_PACKAGE} ${b.version}, ${cache})` };
}

/**
 * Playwright's launch error for a browser that would not start, made readable: Playwright's first line, the
 * exit code and what the program printed (its whole message repeats the 50-flag command line twice), naming
 * the browser and how it was chosen. E.g. `--browser /bin/true`: "did not start: … it exited with code 0".
 */
export class BrowserLaunchError extends Error {
  constructor(browser: FoundBrowser, cause: unknown) {
    const text = String((cause as Error)?.message ?? cause).replace(/\x1b\[[0-9;]*m/g, "");
    const first = text.split("\n")[0]!.replace(/^browserType\.launch: /, "").replace(/[.]$/, "");
    const exit = /<process did exit: exitCode=(\w+), signal=(\w+)>/.exec(text);
    const printed = [...new Set([...text.matchAll(/^\[pid=\d+\]\[(?:err|out)\] (.*)$/gm)].map((m) => m[1]!.trim()).filter(Boolean))].slice(0, 6);
    super(
      `the browser ${browser.path} (${browser.source}: ${browser.reason}) did not start: ${first}` +
        (exit ? (exit[2] !== "null" ? `; it was killed by ${exit[2]}` : `; it exited with code ${exit[1]}`) : "") +
        (printed.length ? `; it printed: ${printed.join(" | ").replace(/[.]$/, "")}` : "") +
        `. Is it a Chromium/Chrome binary? Choose another with --browser auto|system|bundled|PATH (or TABFARM_BROWSER, CHROMIUM_PATH).`,
      { cause },
    );
    this.name = "BrowserLaunchError";
  }
}

/** A path the user gave must be an executable file: a clear error otherwise, never a silent fallback. */
function checkGivenPath(given: string, setting: string, opts: FindBrowserOptions): string {
  const p = path.resolve(given);
  if (opts.exists) {
    if (!opts.exists(p)) throw new InvalidChromiumPathError(given, "that file does not exist or is not executable", setting);
    return p;
  }
  let st;
  try {
    st = statSync(p);
  } catch {
    throw new InvalidChromiumPathError(given, "that file does not exist", setting);
  }
  if (!st.isFile()) throw new InvalidChromiumPathError(given, "that is not a regular file (a directory?)", setting);
  if (!isExecutableFile(p)) throw new InvalidChromiumPathError(given, "that file is not executable (chmod +x?)", setting);
  return p;
}

/** Steps 2–3: a browser installed on this machine (Playwright's, then the system's); what was tried goes into `tried`. */
function findInstalled(env: NodeJS.ProcessEnv, opts: FindBrowserOptions, tried: string[]): FoundBrowser | undefined {
  const exists = opts.exists ?? isExecutableFile;
  const platform = opts.platform ?? process.platform;

  // 2. Playwright-managed browsers.
  const pw = (opts.playwrightCandidates ?? playwrightChromiumCandidates)();
  if (pw.length === 0) tried.push("Playwright's Chromium (playwright-core could not report a path)");
  for (const p of pw) {
    const what = /headless[_-]shell/.test(p) ? "chrome-headless-shell" : "Chromium";
    if (exists(p)) return { path: p, source: "playwright", reason: `Playwright's ${what}` };
    tried.push(`Playwright's ${what}: ${p} (not installed)`);
  }

  // 3a. Well-known names on $PATH (honouring the env we were given, not process.env).
  const names = opts.pathNames ?? DEFAULT_PATH_NAMES;
  const sep = platform === "win32" ? ";" : ":";
  const dirs = (env["PATH"] ?? "").split(sep).filter(Boolean);
  const exts = platform === "win32" ? [".exe", ""] : [""];
  for (const dir of dirs) {
    for (const name of names) {
      for (const ext of exts) {
        const p = path.join(dir, name + ext);
        if (exists(p)) return { path: p, source: "system", reason: `${name + ext} on $PATH` };
      }
    }
  }
  tried.push(
    dirs.length
      ? `${names.join(", ")} on $PATH (${dirs.join(sep)})`
      : `${names.join(", ")} on $PATH ($PATH is empty)`,
  );

  // 3b. Well-known absolute install locations.
  for (const p of opts.systemPaths ?? defaultSystemPaths(platform)) {
    if (exists(p)) return { path: p, source: "system", reason: "a system Chromium" };
    tried.push(p);
  }
  return undefined;
}

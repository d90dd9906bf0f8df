/**
 * Locate a Chromium-family executable for the farm.
 *
 * Order:
 *  1. $CHROMIUM_PATH (must be an executable file, else a clear error — we never
 *     silently fall back when the user asked for a specific binary);
 *  2. Playwright's own downloaded browsers (Chrome for Testing, then
 *     chrome-headless-shell) — `chromium.executablePath()` returns a path even
 *     when nothing is installed, so existence is checked;
 *  3. system browsers: well-known names on $PATH, then well-known absolute paths.
 */
import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

export type BrowserSource = "CHROMIUM_PATH" | "playwright" | "system";

export interface FoundBrowser {
  path: string;
  source: BrowserSource;
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
}

export class BrowserNotFoundError extends Error {
  readonly tried: string[];
  constructor(tried: string[]) {
    super(
      [
        "No Chromium/Chrome executable found. Tried:",
        ...tried.map((t) => `  - ${t}`),
        "Fix one of:",
        "  - Debian/Ubuntu: apt-get install -y chromium   (Ubuntu's chromium-browser is a snap shim; Google Chrome .deb also works)",
        "  - where downloads work: npx playwright install chromium   (or: npx playwright install --with-deps chromium)",
        "  - point at any Chromium/Chrome binary: export CHROMIUM_PATH=/path/to/chrome",
      ].join("\n"),
    );
    this.name = "BrowserNotFoundError";
    this.tried = tried;
  }
}

export class InvalidChromiumPathError extends Error {
  readonly chromiumPath: string;
  constructor(chromiumPath: string, reason: string) {
    super(
      `CHROMIUM_PATH is set to "${chromiumPath}" but ${reason}. ` +
        `Fix or unset CHROMIUM_PATH (unset it to auto-detect Playwright's or the system's Chromium).`,
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
  const exists = opts.exists ?? isExecutableFile;
  const platform = opts.platform ?? process.platform;
  const tried: string[] = [];

  // 1. Explicit override: fail loudly rather than silently using something else.
  const override = env["CHROMIUM_PATH"];
  if (override !== undefined && override.trim() !== "") {
    const p = path.resolve(override.trim());
    if (opts.exists) {
      if (!exists(p)) throw new InvalidChromiumPathError(override, "that file does not exist or is not executable");
    } else {
      let st;
      try {
        st = statSync(p);
      } catch {
        throw new InvalidChromiumPathError(override, "that file does not exist");
      }
      if (!st.isFile()) throw new InvalidChromiumPathError(override, "that is not a regular file (a directory?)");
      if (!isExecutableFile(p)) throw new InvalidChromiumPathError(override, "that file is not executable (chmod +x?)");
    }
    return { path: p, source: "CHROMIUM_PATH" };
  }
  tried.push("$CHROMIUM_PATH (not set)");

  // 2. Playwright-managed browsers.
  const pw = (opts.playwrightCandidates ?? playwrightChromiumCandidates)();
  if (pw.length === 0) tried.push("Playwright's Chromium (playwright-core could not report a path)");
  for (const p of pw) {
    if (exists(p)) return { path: p, source: "playwright" };
    const what = /headless[_-]shell/.test(p) ? "chrome-headless-shell" : "Chromium";
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
        if (exists(p)) return { path: p, source: "system" };
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
    if (exists(p)) return { path: p, source: "system" };
    tried.push(p);
  }

  throw new BrowserNotFoundError(tried);
}

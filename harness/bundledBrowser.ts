/**
 * The bundled browser: Chromium and SwiftShader from the npm package @sparticuz/chromium (an
 * optional dependency), so that `npm install` alone gives the farm a browser with WebGL on x64
 * Linux with glibc. It is the last step of `findBrowser` and what `--browser bundled` picks.
 *
 * We use the package's files, not its JavaScript: its loader extracts into /tmp on every cold
 * start (where another user or a reboot can change the files under us), and its default flags
 * (--single-process, --in-process-gpu, --disable-web-security) are for one page on AWS Lambda,
 * not a farm of many tabs; ours come from chromiumFlags.ts as for any other browser.
 *
 * Extracted once per user and package version into <cache>/chromium-<version>-linux-x64/:
 *   chromium            the binary (bin/chromium.br, brotli)
 *   libEGL.so, libGLESv2.so, libvk_swiftshader.so, libvulkan.so.1, vk_swiftshader_icd.json
 *                       SwiftShader (bin/swiftshader.tar.br); Chromium loads them from beside itself
 *   lib/                NSS, NSPR and expat (bin/al2023.tar.br), which a minimal Linux may lack
 *   tabfarm-chromium    a shell wrapper that puts lib/ on LD_LIBRARY_PATH and execs the binary, so
 *                       every launcher (TabPool, Playwright's config, tests) needs only a path
 *   .tabfarm-complete.json  written last: version and size of every file, checked on each start
 *
 * The package's fonts are not extracted: frames are read from WebGL render targets, not text.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import * as tar from "tar";
import { processAlive } from "../server/processAlive.js";

export const BUNDLED_PACKAGE = "@sparticuz/chromium";
/** The file the browser is launched through (see the header). */
export const BUNDLED_LAUNCHER = "tabfarm-chromium";
const MARKER = ".tabfarm-complete.json";

export interface BundledBrowserOptions {
  /** For the cache folder: TABFARM_CACHE_DIR, else $XDG_CACHE_HOME/tabfarm, else ~/.cache/tabfarm. */
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  arch?: string;
  /** Default: glibc when the binary's loader (/lib64/ld-linux-x86-64.so.2) exists. */
  libc?: "glibc" | "musl";
  /** Root of the installed package; null: not installed. Default: resolved from this module. */
  packageDir?: string | null;
  /** Told before a (slow, once) extraction starts. */
  log?: (line: string) => void;
}

export interface BundledBrowser {
  /** What to launch (the wrapper script). */
  path: string;
  version: string;
  dir: string;
  /** Milliseconds this call spent extracting; undefined when the cache was already complete. */
  extractedMs?: number;
}

export class BundledBrowserUnavailableError extends Error {
  constructor(readonly reason: string) {
    super(`the bundled Chromium (${BUNDLED_PACKAGE}) cannot be used: ${reason}`);
    this.name = "BundledBrowserUnavailableError";
  }
}

export function bundledCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const own = env["TABFARM_CACHE_DIR"]?.trim();
  if (own) return path.resolve(own);
  const xdg = env["XDG_CACHE_HOME"]?.trim();
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env["HOME"]?.trim() || os.homedir(), ".cache");
  return path.join(base, "tabfarm");
}

/** The binary's ELF interpreter: present on x64 glibc systems, absent on musl ones (Alpine). */
const GLIBC_LOADER = "/lib64/ld-linux-x86-64.so.2";

export function installedPackageDir(): string | null {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(BUNDLED_PACKAGE);
  } catch {
    return null;
  }
  // The package's exports hide package.json; walk up from its entry point.
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      if (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).name === BUNDLED_PACKAGE) return dir;
    } catch {
      /* not the package root yet */
    }
  }
  return null;
}

/** Why the bundled browser cannot run here, or undefined when it can. */
export function whyBundledUnavailable(opts: BundledBrowserOptions = {}): string | undefined {
  const platform = opts.platform ?? process.platform;
  const arch = opts.arch ?? process.arch;
  if (platform !== "linux") return `it is a Linux build and this is ${platform}/${arch}`;
  if (arch !== "x64") return `the package ships an x64 Linux build only and this is linux/${arch}`;
  if ((opts.libc ?? (fs.existsSync(GLIBC_LOADER) ? "glibc" : "musl")) === "musl")
    return `it is built for glibc and this Linux has no ${GLIBC_LOADER} (musl, e.g. Alpine?)`;
  const pkg = opts.packageDir === undefined ? installedPackageDir() : opts.packageDir;
  if (!pkg) {
    return `${BUNDLED_PACKAGE} is not installed (an optional dependency: npm skips it when it cannot be ` +
      `installed, e.g. with --omit=optional or a Node version outside its engines; run npm install)`;
  }
  if (!fs.existsSync(path.join(pkg, "bin", "chromium.br"))) return `${pkg} has no bin/chromium.br (a damaged install? run npm ci)`;
  return undefined;
}

/** The bundled browser, extracted into the cache first if it is not there complete. Synchronous: discovery is. */
export function bundledBrowser(opts: BundledBrowserOptions = {}): BundledBrowser {
  const reason = whyBundledUnavailable(opts);
  if (reason) throw new BundledBrowserUnavailableError(reason);
  const pkg = (opts.packageDir ?? installedPackageDir())!;
  const version = String(JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8")).version);
  const root = bundledCacheRoot(opts.env);
  const dir = path.join(root, `chromium-${version}-linux-x64`);
  const found = { path: path.join(dir, BUNDLED_LAUNCHER), version, dir };
  if (isComplete(dir, version)) return found;

  opts.log?.(`extracting the bundled Chromium ${version} into ${dir} (once per version) …`);
  const started = performance.now();
  try {
    extractOnce(pkg, version, root, dir);
  } catch (err) {
    throw new Error(
      `cannot extract the bundled Chromium into ${dir}: ${(err as Error).message} ` +
        `(the cache folder is TABFARM_CACHE_DIR, else $XDG_CACHE_HOME/tabfarm, else ~/.cache/tabfarm: point it at a writable folder with ~250 MB free)`,
      { cause: err },
    );
  }
  return { ...found, extractedMs: performance.now() - started };
}

function extractOnce(pkg: string, version: string, root: string, dir: string): void {
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  removeAbandoned(root, path.basename(dir));
  // Extract beside the final folder and rename it into place: the folder either does not exist or
  // is complete. Two processes may both extract; the first rename wins and the other uses its result.
  const staging = `${dir}.partial-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    extractInto(staging, pkg, version);
    for (let attempt = 0; ; attempt++) {
      try {
        fs.renameSync(staging, dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
        if (isComplete(dir, version)) break; // another process got there first
        if (attempt >= 3) throw new Error(`cannot replace the incomplete bundled Chromium in ${dir}: it keeps reappearing`);
        // Incomplete or damaged (an older tabfarm, a crash before the marker, a deleted file): move it aside.
        const stale = `${dir}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
        try {
          fs.renameSync(dir, stale);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e; // someone else moved it: retry
        }
        fs.rmSync(stale, { recursive: true, force: true });
      }
    }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  if (!isComplete(dir, version)) throw new Error("the extracted files do not check out (disk full?)");
}

function extractInto(staging: string, pkg: string, version: string): void {
  const bin = path.join(pkg, "bin");
  fs.mkdirSync(staging, { mode: 0o755 });
  decompressBrotli(path.join(bin, "chromium.br"), path.join(staging, "chromium"));
  // node-tar keeps entries inside cwd (drops absolute paths and "..") and reads brotli by the .br name.
  for (const archive of ["swiftshader.tar.br", "al2023.tar.br"]) tar.x({ file: path.join(bin, archive), cwd: staging, sync: true, preserveOwner: false });
  fs.writeFileSync(
    path.join(staging, BUNDLED_LAUNCHER),
    [
      "#!/bin/sh",
      "# Written by tabfarm: the bundled Chromium with its own NSS/NSPR/expat (lib/), which a minimal Linux",
      "# may lack. SwiftShader's libraries sit beside the binary, where Chromium looks for them.",
      'dir="$(cd "$(dirname "$0")" && pwd)"',
      'LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"',
      "export LD_LIBRARY_PATH",
      'exec "$dir/chromium" "$@"',
      "",
    ].join("\n"),
  );
  // Executable whatever the umask (isComplete checks it).
  for (const exe of ["chromium", BUNDLED_LAUNCHER]) fs.chmodSync(path.join(staging, exe), 0o755);
  const files: Record<string, number> = {};
  const visit = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(staging, rel), { withFileTypes: true })) {
      const name = path.join(rel, entry.name);
      if (entry.isDirectory()) visit(name);
      else files[name] = fs.lstatSync(path.join(staging, name)).size;
    }
  };
  visit("");
  fs.writeFileSync(path.join(staging, MARKER), JSON.stringify({ package: BUNDLED_PACKAGE, version, files }, null, 1));
}

/**
 * Streams a brotli file to disk in a child process: the binary is 190 MB, and brotliDecompressSync would hold
 * it (and a copy) in this process, ≈ 425 MB more RSS at its peak. A child keeps discovery synchronous.
 */
function decompressBrotli(from: string, to: string): void {
  const script =
    'const { pipeline } = require("node:stream"); const fs = require("node:fs"); const zlib = require("node:zlib");' +
    "pipeline(fs.createReadStream(process.argv[1]), zlib.createBrotliDecompress(), fs.createWriteStream(process.argv[2])," +
    " (err) => { if (err) { console.error(err.message); process.exit(1); } });";
  try {
    execFileSync(process.execPath, ["-e", script, from, to], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? "").trim();
    throw new Error(`decompressing ${from}: ${stderr || (err as Error).message}`);
  }
}

/** The marker is there, names this version, and every file it lists has its size; the launchers are executable. */
function isComplete(dir: string, version: string): boolean {
  try {
    const marker = JSON.parse(fs.readFileSync(path.join(dir, MARKER), "utf8")) as { version?: unknown; files?: Record<string, unknown> };
    if (marker.version !== version || !marker.files || !(BUNDLED_LAUNCHER in marker.files) || !("chromium" in marker.files)) return false;
    for (const [name, size] of Object.entries(marker.files)) if (fs.lstatSync(path.join(dir, name)).size !== size) return false;
    for (const exe of [BUNDLED_LAUNCHER, "chromium"]) fs.accessSync(path.join(dir, exe), fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Staging and stale folders left by processes that died mid-extraction (their pid is in the name). */
function removeAbandoned(root: string, base: string): void {
  for (const name of fs.readdirSync(root)) {
    const m = new RegExp(`^${base.replace(/[.]/g, "\\.")}\\.(?:partial|stale)-(\\d+)-[0-9a-f]+$`).exec(name);
    if (m && !processAlive(Number(m[1]))) fs.rmSync(path.join(root, name), { recursive: true, force: true });
  }
}


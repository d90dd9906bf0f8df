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
 * Beside it, while one process extracts, .chromium-<version>-linux-x64.lock (see underExtractionLock).
 * Only a copy owned by this user or root is run (refuseForeign).
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
import Database from "better-sqlite3";
import { processAlive } from "../server/processAlive.js";
import { takeExclusiveLock } from "../server/fileLock.js";

export const BUNDLED_PACKAGE = "@sparticuz/chromium";
/** The file the browser is launched through (see the header). */
export const BUNDLED_LAUNCHER = "tabfarm-chromium";
const MARKER = ".tabfarm-complete.json";
/** The package's files we extract (bin/fonts.tar.br is not: frames come from render targets, not text). */
const PACKAGE_FILES = ["chromium.br", "swiftshader.tar.br", "al2023.tar.br"];

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

/** Always an absolute path: a relative one would put 200 MB into whatever folder the farm was started from. */
export function bundledCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const own = env["TABFARM_CACHE_DIR"]?.trim();
  if (own) return path.resolve(own); // said explicitly: relative to the current folder, like any path argument
  const xdg = env["XDG_CACHE_HOME"]?.trim();
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, "tabfarm");
  return path.join(homeFolder(env), ".cache", "tabfarm");
}

/** $HOME when it is an absolute path, else this user's home in the user database (os.homedir() returns an empty $HOME as it is). */
function homeFolder(env: NodeJS.ProcessEnv): string {
  const home = env["HOME"]?.trim();
  if (home && path.isAbsolute(home)) return home;
  let recorded: string | undefined;
  try {
    recorded = os.userInfo().homedir;
  } catch {
    /* a uid without an entry in /etc/passwd (containers) */
  }
  if (recorded && path.isAbsolute(recorded)) return recorded;
  throw new Error(
    `no folder for the bundled Chromium's cache: HOME is ${home ? `"${home}", not an absolute path` : "not set"} and ` +
      `this user (uid ${process.getuid?.()}) has no home folder in the user database; set TABFARM_CACHE_DIR to a writable folder`,
  );
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
  const missing = PACKAGE_FILES.filter((f) => !fs.existsSync(path.join(pkg, "bin", f)));
  if (missing.length) return `${pkg} has no ${missing.map((f) => `bin/${f}`).join(", ")} (a damaged install? run npm ci)`;
  return undefined;
}

/** The bundled browser, extracted into the cache first if it is not there complete. Synchronous: discovery is. */
export function bundledBrowser(opts: BundledBrowserOptions = {}): BundledBrowser {
  const reason = whyBundledUnavailable(opts);
  if (reason) throw new BundledBrowserUnavailableError(reason);
  const pkg = (opts.packageDir ?? installedPackageDir())!;
  const version = String(JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8")).version);
  const root = bundledCacheRoot(opts.env); // throws when there is no home folder to put it in
  const dir = path.join(root, `chromium-${version}-linux-x64`);
  const found = { path: path.join(dir, BUNDLED_LAUNCHER), version, dir };
  refuseForeign(dir);
  if (isComplete(dir, version)) return found;

  opts.log?.(`extracting the bundled Chromium ${version} into ${dir} (once per version) …`);
  const started = performance.now();
  let extracted = true;
  try {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    underExtractionLock(path.join(root, `.${path.basename(dir)}.lock`), opts.log, () => {
      if (isComplete(dir, version)) extracted = false; // another process extracted it while we waited
      else extractOnce(pkg, version, root, dir);
    });
  } catch (err) {
    const message = (err as Error).message;
    // Where the cache cannot be written, another folder helps; otherwise the package's own files are at fault.
    const hint = /\b(ENOSPC|EDQUOT|EACCES|EPERM|EROFS|ENOTDIR|EEXIST|ELOOP|ENAMETOOLONG|EISDIR)\b/.test(message)
      ? "the cache folder is TABFARM_CACHE_DIR, else $XDG_CACHE_HOME/tabfarm, else ~/.cache/tabfarm: point it at a writable folder with ~250 MB free"
      : `${BUNDLED_PACKAGE}'s files look damaged: reinstall it (npm ci)`;
    throw new Error(`cannot extract the bundled Chromium into ${dir}: ${message} (${hint})`, { cause: err });
  }
  return extracted ? { ...found, extractedMs: performance.now() - started } : found;
}

/** Longest wait for another process's extraction (2–6 s measured) before extracting beside it. */
const EXTRACTION_WAIT_MS = 120_000;

/**
 * One extraction at a time per cache and version, so that N farms starting at once on a cold cache do not each
 * write 200 MB with N times the CPU: the first extracts, the others wait and use its result. The lock is an
 * exclusive SQLite (fcntl) lock, as the dataset's (server/fileLock.ts): the kernel drops it when its
 * holder dies, even by SIGKILL, so a dead extractor never blocks the next one. Without a lock (a file system
 * that cannot lock, a wait that ran out) extracting is still safe, only slower: extractOnce renames into place.
 */
function underExtractionLock(lockFile: string, log: ((line: string) => void) | undefined, fn: () => void): void {
  let db: Database.Database | undefined;
  try {
    const locked = new Database(lockFile, { timeout: 0 });
    db = locked;
    try {
      takeExclusiveLock(locked);
    } catch (err) {
      if ((err as { code?: string }).code !== "SQLITE_BUSY") throw err;
      log?.("another process is extracting it: waiting for that one …");
      locked.pragma(`busy_timeout = ${EXTRACTION_WAIT_MS}`);
      takeExclusiveLock(locked);
    }
  } catch {
    db?.close();
    db = undefined;
  }
  try {
    fn();
  } finally {
    if (db) {
      // Removed while still held: one who opened it meanwhile takes the lock, finds the copy complete and leaves.
      fs.rmSync(lockFile, { force: true });
      db.close();
    }
  }
}

function extractOnce(pkg: string, version: string, root: string, dir: string): void {
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
        // ENOTDIR: a file or a link where the folder should be.
        if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR") throw err;
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
  // node-tar reads brotli by the .br name. strict: an entry it cannot write (ENOSPC, EACCES…) or will not (an
  // absolute path or "..": a tampered package) is an error, not a warning after which the marker below would
  // record the short or missing file as complete.
  for (const archive of ["swiftshader.tar.br", "al2023.tar.br"]) {
    try {
      tar.x({ file: path.join(bin, archive), cwd: staging, sync: true, preserveOwner: false, strict: true });
    } catch (err) {
      throw new Error(`unpacking ${path.join(bin, archive)}: ${(err as Error).message}`, { cause: err });
    }
  }
  fs.writeFileSync(path.join(staging, BUNDLED_LAUNCHER), LAUNCHER_SCRIPT);
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

const LAUNCHER_SCRIPT = [
  "#!/bin/sh",
  "# Written by tabfarm: the bundled Chromium with its own NSS/NSPR/expat (lib/), which a minimal Linux",
  "# may lack. SwiftShader's libraries sit beside the binary, where Chromium looks for them.",
  'dir="$(cd "$(dirname "$0")" && pwd)"',
  'LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"',
  "export LD_LIBRARY_PATH",
  'exec "$dir/chromium" "$@"',
  "",
].join("\n");

function ownedByUsOrRoot(st: fs.Stats): boolean {
  const me = process.getuid?.();
  return me === undefined || st.uid === me || st.uid === 0;
}

/**
 * We run what is in the cache: a copy that another user could have written or can still change is
 * refused, never used (root running a binary that uid 65534 can swap). Our own and root's are trusted (a
 * cache prepared by root in an image, read by a non-root user, is fine). Missing: nothing to refuse yet.
 */
function refuseForeign(dir: string): void {
  const me = process.getuid?.();
  for (const p of [path.dirname(dir), dir]) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      continue;
    }
    const why =
      !ownedByUsOrRoot(st) ? `belongs to uid ${st.uid}, not to this user (uid ${me})`
      // Any user may write there, and the sticky bit (as on /tmp) does not keep them from our folder's name.
      : p === dir && (st.mode & 0o002) !== 0 ? `can be written by any user (mode ${(st.mode & 0o777).toString(8)})`
      : undefined;
    if (why) {
      throw new Error(
        `${p} ${why}: tabfarm runs only a browser extracted by this user or root. ` +
          `Set TABFARM_CACHE_DIR to a folder of your own (or remove ${p} if it is yours to remove)`,
      );
    }
  }
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

/** What a working copy cannot lack, whatever an edited marker lists: the browser, SwiftShader (with its ICD), NSS. */
const ESSENTIAL_FILES = [BUNDLED_LAUNCHER, "chromium", "libEGL.so", "libGLESv2.so", "libvk_swiftshader.so", "vk_swiftshader_icd.json", "lib/libnss3.so"];

/**
 * The marker is there, names this version and the essential files, and every file it lists has its size and
 * is ours (or root's); the launchers are executable and the launcher script is the one we write.
 */
function isComplete(dir: string, version: string): boolean {
  try {
    const marker = JSON.parse(fs.readFileSync(path.join(dir, MARKER), "utf8")) as { version?: unknown; files?: Record<string, unknown> };
    if (marker.version !== version || !marker.files || !ESSENTIAL_FILES.every((f) => f in marker.files!)) return false;
    for (const [name, size] of Object.entries(marker.files)) {
      const st = fs.lstatSync(path.join(dir, name));
      if (st.isDirectory() || st.size !== size || !ownedByUsOrRoot(st)) return false;
    }
    for (const exe of [BUNDLED_LAUNCHER, "chromium"]) fs.accessSync(path.join(dir, exe), fs.constants.X_OK);
    // The one file we wrote ourselves is checked whole: an edited launcher could run anything.
    if (fs.readFileSync(path.join(dir, BUNDLED_LAUNCHER), "utf8") !== LAUNCHER_SCRIPT) return false;
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


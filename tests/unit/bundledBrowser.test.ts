// The bundled browser's cache: extracted once, atomically, checked on every start, redone when damaged,
// safe with several processes at once. A small stand-in package (same file layout as @sparticuz/chromium,
// with a shell script for the binary) keeps these fast; tests/integration/bundledBrowser.test.ts renders
// frames with the real one.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as tar from "tar";
import {
  BUNDLED_LAUNCHER,
  bundledBrowser,
  BundledBrowserUnavailableError,
  bundledCacheRoot,
  whyBundledUnavailable,
  type BundledBrowserOptions,
} from "../../harness/bundledBrowser.js";
import { DIR_NAME, FAKE_BINARY, fakePackage, tempDir, VERSION } from "./fakeBundledPackage.js";

function setup(t: { after: (fn: () => void) => void }): { opts: BundledBrowserOptions; cache: string; dir: string; root: string } {
  const root = tempDir(t, "bundled");
  const cache = path.join(root, "cache");
  const opts: BundledBrowserOptions = { env: { TABFARM_CACHE_DIR: cache }, packageDir: fakePackage(root), platform: "linux", arch: "x64", libc: "glibc" };
  return { opts, cache, dir: path.join(cache, DIR_NAME), root };
}

describe("bundledBrowser: extraction into the cache", () => {
  test("extracts once: binary, SwiftShader beside it, lib/, a launcher that puts lib/ on LD_LIBRARY_PATH", (t) => {
    const { opts, dir } = setup(t);
    const first = bundledBrowser(opts);
    assert.equal(first.path, path.join(dir, BUNDLED_LAUNCHER));
    assert.equal(first.version, VERSION);
    assert.ok(first.extractedMs !== undefined, "the first call extracts");
    for (const f of ["chromium", "libEGL.so", "libGLESv2.so", "libvk_swiftshader.so", "vk_swiftshader_icd.json", "lib/libnss3.so", "lib/libexpat.so.1"])
      assert.ok(fs.existsSync(path.join(dir, f)), `${f} extracted`);
    assert.equal(fs.readFileSync(path.join(dir, "chromium"), "utf8"), FAKE_BINARY);

    // The launcher runs the binary with lib/ first on the library path and every argument intact.
    const out = execFileSync(first.path, ["--headless", "an arg with spaces"], { encoding: "utf8", env: { ...process.env, LD_LIBRARY_PATH: "/already/there" } });
    assert.deepEqual(out.trim().split("\n"), [`LD=${path.join(dir, "lib")}:/already/there`, "--headless", "an arg with spaces"]);

    const mtime = fs.statSync(path.join(dir, "chromium")).mtimeMs;
    const second = bundledBrowser(opts);
    assert.equal(second.path, first.path);
    assert.equal(second.extractedMs, undefined, "the second call uses the cache");
    assert.equal(fs.statSync(path.join(dir, "chromium")).mtimeMs, mtime, "nothing rewritten");
    assert.deepEqual(fs.readdirSync(path.dirname(dir)), [DIR_NAME], "no staging folders left");
  });

  const damages: [string, (dir: string) => void][] = [
    ["the completion marker is missing (a crash before it was written)", (dir) => fs.rmSync(path.join(dir, ".tabfarm-complete.json"))],
    ["the marker is not JSON", (dir) => fs.writeFileSync(path.join(dir, ".tabfarm-complete.json"), "{")],
    ["the marker names another version", (dir) => {
      const m = path.join(dir, ".tabfarm-complete.json");
      fs.writeFileSync(m, fs.readFileSync(m, "utf8").replace(VERSION, "0.0.0"));
    }],
    ["the binary is truncated", (dir) => fs.truncateSync(path.join(dir, "chromium"), 10)],
    ["a SwiftShader library was deleted", (dir) => fs.rmSync(path.join(dir, "libvk_swiftshader.so"))],
    ["a bundled system library was deleted", (dir) => fs.rmSync(path.join(dir, "lib/libnss3.so"))],
    ["the launcher lost its execute bit", (dir) => fs.chmodSync(path.join(dir, BUNDLED_LAUNCHER), 0o644)],
    ["the launcher was edited (same size, runs something else)", (dir) => {
      const launcher = path.join(dir, BUNDLED_LAUNCHER);
      const text = fs.readFileSync(launcher, "utf8");
      fs.writeFileSync(launcher, text.replace('exec "$dir/chromium"', 'exec "$dir/evil!!!!"'));
      assert.equal(fs.statSync(launcher).size, text.length, "same size");
    }],
    ["the launcher was replaced by a symlink to another program", (dir) => {
      fs.rmSync(path.join(dir, BUNDLED_LAUNCHER));
      fs.symlinkSync("/bin/true", path.join(dir, BUNDLED_LAUNCHER));
    }],
    ["a file was replaced by a directory of the same size", (dir) => {
      const icd = path.join(dir, "vk_swiftshader_icd.json");
      fs.rmSync(icd);
      fs.mkdirSync(icd);
      const m = path.join(dir, ".tabfarm-complete.json");
      const marker = JSON.parse(fs.readFileSync(m, "utf8"));
      marker.files["vk_swiftshader_icd.json"] = fs.lstatSync(icd).size; // and the marker edited to match
      fs.writeFileSync(m, JSON.stringify(marker));
    }],
    ["the SwiftShader ICD json is missing", (dir) => fs.rmSync(path.join(dir, "vk_swiftshader_icd.json"))],
    ["the lib/ folder was removed", (dir) => fs.rmSync(path.join(dir, "lib"), { recursive: true })],
    ["the marker was edited to no longer list a file that was then deleted", (dir) => {
      const m = path.join(dir, ".tabfarm-complete.json");
      const marker = JSON.parse(fs.readFileSync(m, "utf8"));
      for (const f of ["lib/libnss3.so", "vk_swiftshader_icd.json"]) {
        delete marker.files[f];
        fs.rmSync(path.join(dir, f));
      }
      fs.writeFileSync(m, JSON.stringify(marker));
    }],
    ["a file (not a folder) stands where the folder should be", (dir) => {
      fs.rmSync(dir, { recursive: true });
      fs.writeFileSync(dir, "not a folder");
    }],
  ];
  for (const [what, damage] of damages) {
    test(`re-extracted when ${what}`, (t) => {
      const { opts, dir } = setup(t);
      bundledBrowser(opts);
      damage(dir);
      const again = bundledBrowser(opts);
      assert.ok(again.extractedMs !== undefined, "extracted again");
      assert.equal(fs.readFileSync(path.join(dir, "chromium"), "utf8"), FAKE_BINARY);
      assert.ok(fs.existsSync(path.join(dir, "libvk_swiftshader.so")) && fs.existsSync(path.join(dir, "lib/libnss3.so")));
      assert.equal(execFileSync(again.path, ["ok"], { encoding: "utf8" }).trim().split("\n")[1], "ok");
      assert.equal(bundledBrowser(opts).extractedMs, undefined, "and then cached");
      assert.deepEqual(fs.readdirSync(path.dirname(dir)), [DIR_NAME], "the damaged copy is gone");
    });
  }

  test("a cache folder that cannot be written: the error names the folder and how to choose another", (t) => {
    const { opts, root } = setup(t);
    const notADir = path.join(root, "a-file");
    fs.writeFileSync(notADir, "");
    assert.throws(
      () => bundledBrowser({ ...opts, env: { TABFARM_CACHE_DIR: notADir } }),
      (e: unknown) => e instanceof Error && e.message.startsWith(`cannot extract the bundled Chromium into ${path.join(notADir, DIR_NAME)}: `) && /TABFARM_CACHE_DIR/.test(e.message),
    );
  });

  for (const archive of ["swiftshader.tar.br", "al2023.tar.br"]) {
    test(`a damaged package (${archive} cut short): the error names the archive, nothing half-extracted is kept`, (t) => {
      const { opts, cache } = setup(t);
      const file = path.join(opts.packageDir!, "bin", archive);
      fs.writeFileSync(file, fs.readFileSync(file).subarray(0, Math.floor(fs.statSync(file).size / 2)));
      assert.throws(() => bundledBrowser(opts), (e: unknown) => e instanceof Error && e.message.includes(`unpacking ${file}: `));
      assert.deepEqual(fs.readdirSync(cache), [], "no staging folder, no final folder");
    });
  }

  test("a damaged package (corrupt brotli): a clear error, and nothing half-extracted left in the cache", (t) => {
    const { opts, cache } = setup(t);
    const br = path.join(opts.packageDir!, "bin", "chromium.br");
    fs.writeFileSync(br, fs.readFileSync(br).subarray(0, 40));
    assert.throws(() => bundledBrowser(opts), (e: unknown) => e instanceof Error && e.message.includes(`decompressing ${br}: `) && e.message.startsWith("cannot extract the bundled Chromium into "));
    assert.deepEqual(fs.readdirSync(cache), [], "no staging folder, no final folder");
  });

  test("a staging folder left by a dead process is removed; a live process's one is left alone", (t) => {
    const { opts, cache } = setup(t);
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!; // exited: its pid is free
    fs.mkdirSync(path.join(cache, `${DIR_NAME}.partial-${dead}-0badc0de`), { recursive: true });
    fs.mkdirSync(path.join(cache, `${DIR_NAME}.stale-${dead}-0badc0de`), { recursive: true });
    fs.mkdirSync(path.join(cache, `${DIR_NAME}.partial-${process.pid}-1234abcd`), { recursive: true });
    bundledBrowser(opts);
    assert.deepEqual(fs.readdirSync(cache).sort(), [DIR_NAME, `${DIR_NAME}.partial-${process.pid}-1234abcd`]);
  });

  test("archive entries cannot land outside the cache folder", (t) => {
    const root = tempDir(t, "bundled-escape");
    const pkg = fakePackage(root);
    // An archive whose entry climbs out: from cwd a/b/src, "../../escaped.txt" is a/escaped.txt.
    const src = path.join(root, "a", "b", "src");
    fs.mkdirSync(path.join(src, "lib"), { recursive: true });
    fs.writeFileSync(path.join(src, "lib", "libnss3.so"), "nss");
    fs.writeFileSync(path.join(root, "a", "escaped.txt"), "x");
    tar.c({ file: path.join(pkg, "bin", "al2023.tar.br"), cwd: src, sync: true, brotli: true, preservePaths: true }, ["lib/libnss3.so", "../../escaped.txt"]);
    const entries: string[] = [];
    tar.t({ file: path.join(pkg, "bin", "al2023.tar.br"), sync: true, onReadEntry: (e) => void entries.push(e.path) });
    assert.ok(entries.includes("../../escaped.txt"), `the archive climbs out: ${entries.join(", ")}`);
    const cache = path.join(root, "cache");
    // Such a package is tampered with: refused, naming the archive and the entry.
    assert.throws(
      () => bundledBrowser({ env: { TABFARM_CACHE_DIR: cache }, packageDir: pkg, platform: "linux", arch: "x64", libc: "glibc" }),
      (e: unknown) => e instanceof Error && e.message.includes(`unpacking ${path.join(pkg, "bin", "al2023.tar.br")}: `) && /'\.\.'/.test(e.message) && /npm ci/.test(e.message),
    );
    // Extracting into cache/<folder>.partial-…, "../../escaped.txt" would be root/escaped.txt.
    assert.ok(!fs.existsSync(path.join(root, "escaped.txt")), "nothing written above the cache");
    assert.ok(!fs.existsSync(path.join(cache, "escaped.txt")));
    assert.deepEqual(fs.readdirSync(cache), [], "nothing kept");
  });

  test("four processes starting at once on an empty cache: all get the same complete browser, nothing left over", async (t) => {
    const { opts, cache, dir } = setup(t);
    const script = `
      import { bundledBrowser } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../harness/bundledBrowser.ts"))};
      const b = bundledBrowser(${JSON.stringify(opts)});
      console.log(JSON.stringify({ path: b.path, extracted: b.extractedMs !== undefined }));`;
    const run = () =>
      new Promise<{ path: string; extracted: boolean }>((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (err += d));
        child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code}: ${err}`))));
      });
    const results = await Promise.all([run(), run(), run(), run()]);
    // One extracts; whoever comes while it does waits for it (the extraction lock), later ones find it complete.
    assert.equal(results.filter((r) => r.extracted).length, 1, "extracted once");
    for (const r of results) assert.equal(r.path, path.join(dir, BUNDLED_LAUNCHER));
    assert.deepEqual(fs.readdirSync(cache), [DIR_NAME], "no staging or stale folders left");
    assert.equal(bundledBrowser(opts).extractedMs, undefined, "complete");
    assert.equal(execFileSync(results[0]!.path, ["ok"], { encoding: "utf8" }).trim().split("\n")[1], "ok");
  });
});

// We run what the cache holds: only a copy written by this user (or root) is trusted.
describe("bundledBrowser: a cache of another user", { skip: process.getuid?.() !== 0 && "needs root (chown, setuid)" }, () => {
  const NOBODY = 65534;
  test("root does not run a copy another user extracted or owns the cache folder of: a clear refusal, nothing run", (t) => {
    const { opts, cache, dir } = setup(t);
    bundledBrowser(opts);
    for (const [owned, what] of [[dir, "the browser's folder"], [cache, "the cache folder"]] as const) {
      fs.chownSync(owned, NOBODY, NOBODY);
      assert.throws(
        () => bundledBrowser(opts),
        (e: unknown) => e instanceof Error && e.message.includes(`${owned} belongs to uid ${NOBODY}, not to this user (uid 0)`) && /TABFARM_CACHE_DIR/.test(e.message),
        what,
      );
      fs.chownSync(owned, 0, 0);
    }
    fs.chownSync(path.join(dir, "chromium"), NOBODY, NOBODY); // one file swapped in by another user: extracted again
    assert.ok(bundledBrowser(opts).extractedMs !== undefined);
    assert.equal(fs.statSync(path.join(dir, "chromium")).uid, 0);
    fs.chmodSync(dir, 0o777);
    assert.throws(() => bundledBrowser(opts), /can be written by any user \(mode 777\)/);
  });

  test("a cache root prepared (readable) by root is used as it is by another user, who cannot change it", (t) => {
    const { opts, cache, dir, root } = setup(t);
    bundledBrowser(opts);
    for (const d of [root, cache]) fs.chmodSync(d, 0o755);
    const script = `
      import { bundledBrowser } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../harness/bundledBrowser.ts"))};
      const b = bundledBrowser(${JSON.stringify(opts)});
      console.log(JSON.stringify({ path: b.path, extracted: b.extractedMs !== undefined }));`;
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { uid: NOBODY, gid: NOBODY, encoding: "utf8", env: { ...process.env, HOME: root } });
    assert.deepEqual(JSON.parse(out), { path: path.join(dir, BUNDLED_LAUNCHER), extracted: false });
  });
});

describe("bundledBrowser: the extraction lock", () => {
  test("a holder killed by SIGKILL while another process waits for it: the waiter extracts, no lock left behind", async (t) => {
    const { opts, cache, dir } = setup(t);
    fs.mkdirSync(cache, { recursive: true });
    const lockFile = path.join(cache, `.${DIR_NAME}.lock`);
    // Holds the lock as an extracting process does, and never lets go.
    const holder = spawn(process.execPath, ["--input-type=module", "-e", `
      import Database from "better-sqlite3";
      const db = new Database(${JSON.stringify(lockFile)}, { timeout: 0 });
      db.pragma("locking_mode = EXCLUSIVE"); db.pragma("journal_mode = MEMORY"); db.exec("BEGIN EXCLUSIVE; COMMIT;");
      console.log("held"); setInterval(() => {}, 1000);`], { stdio: ["ignore", "pipe", "inherit"] });
    t.after(() => holder.kill("SIGKILL"));
    await new Promise((resolve) => holder.stdout.once("data", resolve));
    const waiter = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", `
      import { bundledBrowser } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../harness/bundledBrowser.ts"))};
      const b = bundledBrowser({ ...${JSON.stringify(opts)}, log: (line) => console.log(line) });
      console.log(JSON.stringify({ path: b.path, extracted: b.extractedMs !== undefined }));`], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    waiter.stdout.on("data", (d) => {
      out += d;
      if (/waiting for that one/.test(out)) holder.kill("SIGKILL"); // the kernel drops its lock
    });
    const code = await new Promise((resolve) => waiter.on("exit", resolve));
    assert.equal(code, 0, out);
    assert.deepEqual(JSON.parse(out.trim().split("\n").at(-1)!), { path: path.join(dir, BUNDLED_LAUNCHER), extracted: true }, out);
    assert.deepEqual(fs.readdirSync(cache), [DIR_NAME], "the lock file is removed with the extraction done");
  });
});

describe("bundledBrowser: where it cannot run", () => {
  const here = { packageDir: "/nonexistent", platform: "linux" as const, arch: "x64", libc: "glibc" as const };
  const cases: [string, BundledBrowserOptions, RegExp][] = [
    ["macOS", { ...here, platform: "darwin", arch: "arm64" }, /Linux build and this is darwin\/arm64/],
    ["Windows", { ...here, platform: "win32" }, /Linux build and this is win32\/x64/],
    ["arm64 Linux", { ...here, arch: "arm64" }, /x64 Linux build only and this is linux\/arm64/],
    ["musl (Alpine)", { ...here, libc: "musl" }, /built for glibc .*musl/],
    ["package not installed", { ...here, packageDir: null }, /@sparticuz\/chromium is not installed .*npm install/],
    ["package without its binary", { ...here, packageDir: os.tmpdir() }, /no bin\/chromium\.br/],
    ["package without an archive", { ...here, packageDir: withoutArchive() }, /no bin\/al2023\.tar\.br \(a damaged install\? run npm ci\)/],
  ];
  for (const [what, opts, reason] of cases) {
    test(what, () => {
      assert.match(whyBundledUnavailable(opts) ?? "", reason);
      assert.throws(() => bundledBrowser({ ...opts, env: { TABFARM_CACHE_DIR: "/nonexistent/never-written" } }), (e: unknown) => e instanceof BundledBrowserUnavailableError && reason.test(e.message));
    });
  }
  test("this machine: x64 glibc Linux with the package installed", { skip: process.platform !== "linux" || process.arch !== "x64" }, () => {
    assert.equal(whyBundledUnavailable(), undefined);
  });
});

function withoutArchive(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-bundled-noarchive-"));
  process.on("exit", () => fs.rmSync(root, { recursive: true, force: true }));
  const pkg = fakePackage(root);
  fs.rmSync(path.join(pkg, "bin", "al2023.tar.br"));
  return pkg;
}

describe("bundledCacheRoot", () => {
  test("TABFARM_CACHE_DIR, else an absolute XDG_CACHE_HOME, else ~/.cache; per user, never /tmp", () => {
    assert.equal(bundledCacheRoot({ TABFARM_CACHE_DIR: "/c/own", XDG_CACHE_HOME: "/x", HOME: "/h" }), "/c/own");
    assert.equal(bundledCacheRoot({ XDG_CACHE_HOME: "/x", HOME: "/h" }), "/x/tabfarm");
    assert.equal(bundledCacheRoot({ XDG_CACHE_HOME: "relative/dir", HOME: "/h" }), "/h/.cache/tabfarm", "a relative XDG_CACHE_HOME is ignored (XDG spec)");
    assert.equal(bundledCacheRoot({ XDG_CACHE_HOME: "  ", HOME: "/h" }), "/h/.cache/tabfarm");
    assert.equal(bundledCacheRoot({}), path.join(os.userInfo().homedir, ".cache", "tabfarm"), "HOME unset: the user's home in /etc/passwd");
    // An empty or relative HOME would put the cache under the current folder (os.homedir() returns an empty HOME as it is).
    for (const HOME of ["", "  ", "relative/home"]) assert.equal(bundledCacheRoot({ HOME }), path.join(os.userInfo().homedir, ".cache", "tabfarm"), `HOME=${JSON.stringify(HOME)}`);
    assert.equal(bundledCacheRoot({ TABFARM_CACHE_DIR: "rel/cache" }), path.resolve("rel/cache"), "an explicit relative TABFARM_CACHE_DIR: from the current folder");
    assert.equal(bundledCacheRoot({ TABFARM_CACHE_DIR: " /with spaces/и юникод " }), "/with spaces/и юникод");
  });

  test("no usable HOME and no home in the user database (a bare uid in a container): a clear error, nothing written", { skip: process.getuid?.() !== 0 && "needs root to run as a uid without a passwd entry" }, (t) => {
    const cwd = tempDir(t, "bundled-nohome");
    fs.chmodSync(cwd, 0o777);
    const script = `
      import { bundledCacheRoot } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../harness/bundledBrowser.ts"))};
      try { console.log(bundledCacheRoot({ HOME: "" })); } catch (e) { console.log("ERR " + e.message); }`;
    const tsx = import.meta.resolve("tsx"); // by URL: the child's current folder is the temp one
    const out = execFileSync(process.execPath, ["--import", tsx, "--input-type=module", "-e", script], { uid: 12345, gid: 12345, cwd, encoding: "utf8", env: { PATH: process.env.PATH } });
    assert.match(out, /^ERR no folder for the bundled Chromium's cache: HOME is not set and this user \(uid 12345\) has no home folder .*set TABFARM_CACHE_DIR/);
    assert.deepEqual(fs.readdirSync(cwd), []);
  });
});

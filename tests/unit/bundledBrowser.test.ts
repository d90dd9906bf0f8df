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
    const b = bundledBrowser({ env: { TABFARM_CACHE_DIR: cache }, packageDir: pkg, platform: "linux", arch: "x64", libc: "glibc" });
    // Extracting into cache/<folder>.partial-…, "../../escaped.txt" would be root/escaped.txt.
    assert.ok(!fs.existsSync(path.join(root, "escaped.txt")), "nothing written above the cache");
    assert.ok(!fs.existsSync(path.join(cache, "escaped.txt")));
    assert.ok(fs.existsSync(path.join(path.dirname(b.path), "lib", "libnss3.so")));
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
    t.diagnostic(`${results.filter((r) => r.extracted).length} of 4 extracted`);
    for (const r of results) assert.equal(r.path, path.join(dir, BUNDLED_LAUNCHER));
    assert.deepEqual(fs.readdirSync(cache), [DIR_NAME], "no staging or stale folders left");
    assert.equal(bundledBrowser(opts).extractedMs, undefined, "complete");
    assert.equal(execFileSync(results[0]!.path, ["ok"], { encoding: "utf8" }).trim().split("\n")[1], "ok");
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

describe("bundledCacheRoot", () => {
  test("TABFARM_CACHE_DIR, else an absolute XDG_CACHE_HOME, else ~/.cache; per user, never /tmp", () => {
    assert.equal(bundledCacheRoot({ TABFARM_CACHE_DIR: "/c/own", XDG_CACHE_HOME: "/x", HOME: "/h" }), "/c/own");
    assert.equal(bundledCacheRoot({ XDG_CACHE_HOME: "/x", HOME: "/h" }), "/x/tabfarm");
    assert.equal(bundledCacheRoot({ XDG_CACHE_HOME: "relative/dir", HOME: "/h" }), "/h/.cache/tabfarm", "a relative XDG_CACHE_HOME is ignored (XDG spec)");
    assert.equal(bundledCacheRoot({ XDG_CACHE_HOME: "  ", HOME: "/h" }), "/h/.cache/tabfarm");
    assert.equal(bundledCacheRoot({}), path.join(os.homedir(), ".cache", "tabfarm"));
  });
});

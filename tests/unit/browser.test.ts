import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fs, { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser, type LaunchOptions } from "playwright-core";

import { chromiumArgs, describeGl, GL_BACKENDS, type ConcreteGlBackend } from "../../harness/chromiumFlags.js";
import {
  BrowserLaunchError,
  BrowserNotFoundError,
  findBrowser,
  type FoundBrowser,
  InvalidChromiumPathError,
  parseBrowserChoice,
  playwrightChromiumCandidates,
  type FindBrowserOptions,
} from "../../harness/findBrowser.js";
import { BUNDLED_LAUNCHER, type BundledBrowserOptions } from "../../harness/bundledBrowser.js";
import { DIR_NAME, fakePackage, tempDir } from "./fakeBundledPackage.js";
import { isSoftwareRenderer, probeWebgl } from "../../harness/webglProbe.js";
import { farmLaunchOptions } from "../../harness/testing.js";

const ALWAYS = [
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
  "--disable-dev-shm-usage",
  "--mute-audio",
];

const CONCRETE = GL_BACKENDS.filter((gl): gl is ConcreteGlBackend => gl !== "auto");

describe("chromiumArgs", () => {
  for (const gl of CONCRETE) {
    test(`${gl}: always-on flags present, no duplicates`, () => {
      const args = chromiumArgs(gl);
      for (const f of ALWAYS) assert.ok(args.includes(f), `${gl} missing ${f}`);
      assert.equal(new Set(args).size, args.length, `duplicate flags in ${args.join(" ")}`);
      // at most one --enable-features: Chromium keeps only the last one
      assert.ok(args.filter((a) => a.startsWith("--enable-features=")).length <= 1);
    });
  }

  test("none of @sparticuz/chromium's Lambda defaults: one process per tab and a GPU process of its own, web security on", () => {
    for (const gl of CONCRETE)
      for (const lambda of ["--single-process", "--in-process-gpu", "--disable-web-security", "--no-zygote", "--disable-site-isolation-trials"])
        assert.ok(!chromiumArgs(gl).includes(lambda), `${gl}: ${lambda}`);
  });

  test("--no-sandbox only as root", () => {
    assert.ok(chromiumArgs("swiftshader", { root: true }).includes("--no-sandbox"));
    assert.ok(!chromiumArgs("swiftshader", { root: false }).includes("--no-sandbox"));
    const isRoot = process.getuid?.() === 0;
    assert.equal(chromiumArgs("swiftshader").includes("--no-sandbox"), isRoot);
  });

  test("swiftshader", () => {
    const a = chromiumArgs("swiftshader");
    for (const f of ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"])
      assert.ok(a.includes(f), f);
    assert.ok(!a.includes("--enable-gpu"));
    assert.ok(!a.some((x) => x.startsWith("--enable-features")));
  });

  test("egl", () => {
    const a = chromiumArgs("egl");
    for (const f of ["--use-gl=angle", "--use-angle=gl-egl", "--ignore-gpu-blocklist", "--enable-gpu"]) assert.ok(a.includes(f), f);
    assert.ok(!a.includes("--use-gl=egl"), "plain --use-gl=egl is rejected by modern Chromium");
    assert.ok(!a.includes("--enable-unsafe-swiftshader"));
    assert.ok(!a.includes("--use-angle=swiftshader"));
    // headed: --enable-gpu is a headless-only switch
    assert.ok(!chromiumArgs("egl", { headed: true }).includes("--enable-gpu"));
  });

  test("vulkan", () => {
    const a = chromiumArgs("vulkan");
    for (const f of ["--use-gl=angle", "--use-angle=vulkan", "--enable-features=Vulkan", "--ignore-gpu-blocklist", "--enable-gpu", "--disable-vulkan-surface"])
      assert.ok(a.includes(f), f);
    assert.ok(!a.includes("--enable-unsafe-swiftshader"));
    const headed = chromiumArgs("vulkan", { headed: true });
    assert.ok(headed.includes("--use-angle=vulkan"));
    assert.ok(!headed.includes("--disable-vulkan-surface"));
    assert.ok(!headed.includes("--enable-gpu"));
  });

  test("llvmpipe: the egl flags (ANGLE's GL-EGL lands on Mesa's CPU rasterizer without a GPU)", () => {
    assert.deepEqual(chromiumArgs("llvmpipe"), chromiumArgs("egl"));
    assert.deepEqual(chromiumArgs("llvmpipe", { headed: true }), chromiumArgs("egl", { headed: true }));
  });

  test("auto has no flags of its own: it is resolved first (chooseGl)", () => {
    assert.throws(() => chromiumArgs("auto" as ConcreteGlBackend), /--gl auto is resolved to a backend first/);
  });

  test("describeGl names the flags tried", () => {
    assert.match(describeGl("swiftshader"), /tried: .*--use-angle=swiftshader/);
    assert.match(describeGl("egl"), /--use-angle=gl-egl/);
    assert.match(describeGl("vulkan"), /--use-angle=vulkan/);
    assert.match(describeGl("llvmpipe"), /Mesa.*--use-angle=gl-egl/);
    assert.match(describeGl("auto"), /a GPU through egl .*else Mesa's llvmpipe, else SwiftShader/);
    for (const gl of GL_BACKENDS) assert.ok(!describeGl(gl).includes("\n"), "one line");
  });

  test("isSoftwareRenderer", () => {
    assert.ok(isSoftwareRenderer("ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)"));
    assert.ok(isSoftwareRenderer("ANGLE (Mesa/X.org, llvmpipe (LLVM 15.0.6 256 bits), OpenGL ES 3.2)"));
    assert.ok(!isSoftwareRenderer("ANGLE (NVIDIA Corporation, Tesla T4/PCIe/SSE2, OpenGL ES 3.2 NVIDIA 535.104.05)"));
  });
});

describe("findBrowser", () => {
  let dir: string;
  const mk = () => (dir = mkdtempSync(path.join(tmpdir(), "tabfarm-findbrowser-")));
  const cleanup = () => dir && rmSync(dir, { recursive: true, force: true });

  test("CHROMIUM_PATH: good path wins over everything", (t) => {
    t.after(cleanup);
    mk();
    const exe = path.join(dir, "my-chrome");
    writeFileSync(exe, "#!/bin/sh\nexit 0\n");
    chmodSync(exe, 0o755);
    const r = findBrowser({ CHROMIUM_PATH: exe, PATH: "/usr/bin:/bin" });
    assert.deepEqual(r, { path: exe, source: "CHROMIUM_PATH", reason: "CHROMIUM_PATH is set" });
  });

  test("CHROMIUM_PATH: missing file -> clear error naming the variable and path", () => {
    const bad = "/nonexistent/tabfarm/chrome";
    assert.throws(
      () => findBrowser({ CHROMIUM_PATH: bad, PATH: "/usr/bin:/bin" }),
      (e: unknown) => {
        assert.ok(e instanceof InvalidChromiumPathError);
        assert.match(e.message, /CHROMIUM_PATH/);
        assert.ok(e.message.includes(bad), e.message);
        assert.match(e.message, /does not exist/);
        return true;
      },
    );
  });

  test("CHROMIUM_PATH: non-executable file and directory are rejected", (t) => {
    t.after(cleanup);
    mk();
    const f = path.join(dir, "not-exec");
    writeFileSync(f, "x");
    chmodSync(f, 0o644);
    // root can execute nothing without an x bit either (X_OK needs at least one x bit)
    assert.throws(() => findBrowser({ CHROMIUM_PATH: f }), /CHROMIUM_PATH .*not executable/);
    assert.throws(() => findBrowser({ CHROMIUM_PATH: dir }), /CHROMIUM_PATH .*not a regular file/);
  });

  test("BrowserNotFoundError lists every place tried and how to fix it", () => {
    const pwPath = playwrightChromiumCandidates()[0];
    assert.ok(pwPath, "playwright-core reports a chromium path");
    const env = { PATH: "" }; // CHROMIUM_PATH unset, empty PATH
    assert.throws(
      // exists() => false stands in for "nothing installed" so the test doesn't depend on /usr/bin/chromium being absent
      () => findBrowser(env, { exists: () => false, platform: "linux", bundled: { packageDir: null } }),
      (e: unknown) => {
        assert.ok(e instanceof BrowserNotFoundError);
        const m = e.message;
        assert.match(m, /CHROMIUM_PATH \(not set\)/);
        assert.ok(m.includes(pwPath), `playwright path listed:\n${m}`);
        assert.match(m, /chromium_headless_shell-\d+/, "headless shell also tried");
        assert.match(m, /\$PATH is empty/);
        for (const p of ["/usr/bin/chromium", "/snap/bin/chromium", "/usr/bin/google-chrome", "/opt/google/chrome/chrome"])
          assert.ok(m.includes(p), `${p} listed`);
        assert.match(m, /apt-get install -y chromium/);
        assert.match(m, /npx playwright install chromium/);
        assert.match(m, /CHROMIUM_PATH=/);
        assert.match(m, /the bundled Chromium: @sparticuz\/chromium is not installed/, "the bundled step is tried last and says why not");
        assert.match(m, /on x64 Linux with glibc: npm install/);
        assert.ok(e.tried.length >= 9);
        return true;
      },
    );
  });

  test("macOS candidates are the .app bundles", () => {
    assert.throws(
      () => findBrowser({ PATH: "" }, { exists: () => false, platform: "darwin" }),
      (e: unknown) =>
        e instanceof BrowserNotFoundError &&
        e.message.includes("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome") &&
        e.message.includes("/Applications/Chromium.app/Contents/MacOS/Chromium") &&
        /the bundled Chromium: it is a Linux build and this is darwin/.test(e.message) &&
        /apt-get install -y chromium/.test(e.message),
    );
  });

  test("order: playwright before PATH before absolute paths", () => {
    const have = new Set(["/pw/chrome", "/bin-dir/chromium", "/usr/bin/google-chrome"]);
    const base = { exists: (p: string) => have.has(p), playwrightCandidates: () => ["/pw/chrome"], platform: "linux" as const };
    const found = (env: NodeJS.ProcessEnv) => {
      const { path, source } = findBrowser(env, base);
      return { path, source };
    };
    assert.deepEqual(found({ PATH: "/bin-dir" }), { path: "/pw/chrome", source: "playwright" });
    have.delete("/pw/chrome");
    assert.deepEqual(found({ PATH: "/bin-dir" }), { path: "/bin-dir/chromium", source: "system" });
    assert.deepEqual(found({ PATH: "" }), { path: "/usr/bin/google-chrome", source: "system" });
  });

  // The bundled step, with a stand-in package (tests/unit/fakeBundledPackage.ts) extracted into a temp cache.
  const withBundled = (t: { after: (fn: () => void) => void }, have: string[] = []) => {
    const root = tempDir(t, "findbrowser-bundled");
    const cache = path.join(root, "cache");
    const set = new Set(have);
    const opts: FindBrowserOptions = {
      exists: (p) => set.has(p), playwrightCandidates: () => ["/pw/chrome"], platform: "linux",
      bundled: { packageDir: fakePackage(root), arch: "x64", libc: "glibc" },
    };
    return { env: { PATH: "/bin-dir", TABFARM_CACHE_DIR: cache }, opts, launcher: path.join(cache, DIR_NAME, BUNDLED_LAUNCHER), cache };
  };

  test("auto: the bundled browser comes last, after CHROMIUM_PATH, Playwright's and the system's, and says why", (t) => {
    const { env, opts, launcher, cache } = withBundled(t, ["/pw/chrome", "/bin-dir/chromium", "/given/chrome"]);
    assert.equal(findBrowser({ ...env, CHROMIUM_PATH: "/given/chrome" }, opts).source, "CHROMIUM_PATH");
    assert.equal(findBrowser(env, opts).source, "playwright");
    assert.equal(findBrowser(env, { ...opts, playwrightCandidates: () => [] }).source, "system");
    assert.ok(!fs.existsSync(cache), "nothing extracted while another browser is found");
    const none = { ...opts, exists: () => false, systemPaths: [] };
    const b = findBrowser(env, none);
    assert.deepEqual([b.source, b.path], ["bundled", launcher]);
    assert.match(b.reason, /CHROMIUM_PATH not set; no Playwright browser; no system Chromium/);
    assert.match(b.reason, /extracted into .* in \d+\.\d s/);
    assert.match(findBrowser(env, none).reason, /cached in /, "the second start uses the cache");
  });

  test("--browser bundled uses the bundled browser even where a system one and CHROMIUM_PATH exist", (t) => {
    const { env, opts, launcher } = withBundled(t, ["/pw/chrome", "/bin-dir/chromium", "/given/chrome"]);
    const b = findBrowser({ ...env, CHROMIUM_PATH: "/given/chrome" }, { ...opts, choice: "bundled" });
    assert.deepEqual([b.source, b.path], ["bundled", launcher]);
    assert.match(b.reason, /^--browser bundled/);
    // The same through the environment.
    assert.equal(findBrowser({ ...env, TABFARM_BROWSER: "bundled" }, opts).path, launcher);
    assert.match(findBrowser({ ...env, TABFARM_BROWSER: "bundled" }, opts).reason, /^TABFARM_BROWSER bundled/);
  });

  test("--browser bundled where it cannot run: the error says why and lists the fixes", () => {
    const here: BundledBrowserOptions = { arch: "x64", libc: "glibc" };
    const cases: [BundledBrowserOptions, RegExp][] = [
      [{ ...here, arch: "arm64" }, /x64 Linux build only and this is linux\/arm64/],
      [{ ...here, libc: "musl" }, /musl/],
      [{ ...here, packageDir: null }, /not installed/],
    ];
    for (const [bundled, why] of cases) {
      assert.throws(
        () => findBrowser({ PATH: "" }, { choice: "bundled", platform: "linux", bundled }),
        (e: unknown) => e instanceof BrowserNotFoundError && /No bundled Chromium \(--browser bundled\)/.test(e.message) && why.test(e.message) && /apt-get install -y chromium/.test(e.message),
      );
    }
  });

  test("the bundled browser cannot be extracted (cache folder a file, damaged package): the error keeps the list of fixes", (t) => {
    const { env, opts, cache } = withBundled(t);
    const none = { ...opts, exists: () => false, systemPaths: [] };
    fs.writeFileSync(cache, "a file, not a folder");
    for (const [choice, what] of [["bundled", /^No bundled Chromium \(--browser bundled\)\. Tried:/], [undefined, /^No Chromium\/Chrome executable found\. Tried:/]] as const) {
      assert.throws(
        () => findBrowser(env, { ...none, choice }),
        (e: unknown) =>
          e instanceof BrowserNotFoundError && what.test(e.message) &&
          e.message.includes(`the bundled Chromium: cannot extract the bundled Chromium into ${path.join(cache, DIR_NAME)}: `) &&
          /point it at a writable folder/.test(e.message) && /Fix one of:/.test(e.message) && /apt-get install -y chromium/.test(e.message),
        String(choice),
      );
    }
    fs.rmSync(cache);
    const br = path.join(opts.bundled!.packageDir!, "bin", "chromium.br");
    fs.writeFileSync(br, "not brotli");
    assert.throws(
      () => findBrowser(env, none),
      (e: unknown) => e instanceof BrowserNotFoundError && e.message.includes(`decompressing ${br}: `) && /reinstall it \(npm ci\)/.test(e.message) && /Fix one of:/.test(e.message),
    );
  });

  test("--browser system: Playwright's or the system's only, never CHROMIUM_PATH or the bundled one", (t) => {
    const { env, opts, cache } = withBundled(t, ["/bin-dir/chromium", "/given/chrome"]);
    const b = findBrowser({ ...env, CHROMIUM_PATH: "/given/chrome" }, { ...opts, choice: "system" });
    assert.deepEqual([b.source, b.path], ["system", "/bin-dir/chromium"]);
    assert.equal(b.reason, "chromium on $PATH; no Playwright browser");
    assert.throws(
      () => findBrowser(env, { ...opts, choice: "system", exists: () => false, systemPaths: ["/usr/bin/chromium"] }),
      (e: unknown) => e instanceof BrowserNotFoundError && /No installed Chromium\/Chrome found \(--browser system\)/.test(e.message) && !/the bundled Chromium:/.test(e.message),
    );
    assert.ok(!fs.existsSync(cache), "the bundled browser was not extracted");
  });

  test("--browser PATH / TABFARM_BROWSER=PATH: that file, checked like CHROMIUM_PATH; the flag beats the environment", (t) => {
    const dir = tempDir(t, "findbrowser-path");
    const exe = path.join(dir, "my chrome");
    writeFileSync(exe, "#!/bin/sh\n");
    chmodSync(exe, 0o755);
    assert.deepEqual(findBrowser({ PATH: "" }, { choice: exe }), { path: exe, source: "path", reason: `--browser ${exe}` });
    assert.equal(findBrowser({ PATH: "", TABFARM_BROWSER: exe, CHROMIUM_PATH: "/nonexistent" }).path, exe, "beats CHROMIUM_PATH");
    assert.equal(findBrowser({ PATH: "", TABFARM_BROWSER: "/nonexistent" }, { choice: exe }).path, exe, "the flag beats the environment");
    assert.throws(() => findBrowser({ PATH: "" }, { choice: path.join(dir, "missing") }), /^InvalidChromiumPathError|--browser is set to ".*missing" but that file does not exist\. .*auto, system, bundled/);
    assert.throws(() => findBrowser({ PATH: "", TABFARM_BROWSER: dir }), /TABFARM_BROWSER is set to .* not a regular file/);
    chmodSync(exe, 0o644);
    assert.throws(() => findBrowser({ PATH: "" }, { choice: exe }), (e: unknown) => e instanceof InvalidChromiumPathError && /--browser .*not executable/.test(e.message));
  });

  test("parseBrowserChoice", () => {
    assert.equal(parseBrowserChoice(undefined), "auto");
    assert.equal(parseBrowserChoice("  "), "auto");
    assert.equal(parseBrowserChoice("auto"), "auto");
    assert.equal(parseBrowserChoice("system"), "system");
    assert.equal(parseBrowserChoice(" bundled "), "bundled");
    assert.equal(parseBrowserChoice("BUNDLED"), "bundled", "any case");
    assert.equal(parseBrowserChoice("System"), "system");
    assert.deepEqual(parseBrowserChoice("./BUNDLED"), { path: "./BUNDLED" });
    assert.deepEqual(parseBrowserChoice("./system"), { path: "./system" });
    assert.deepEqual(parseBrowserChoice("/opt/chrome/chrome"), { path: "/opt/chrome/chrome" });
  });

  test("real lookup with empty PATH still finds a browser: one at a usual path, else the bundled one", () => {
    // A dev machine may have Debian's chromium at /usr/bin/chromium; a fresh one (and CI) has only the bundled one.
    const r = findBrowser({ PATH: "", HOME: process.env.HOME, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME, TABFARM_CACHE_DIR: process.env.TABFARM_CACHE_DIR });
    assert.ok(["playwright", "system", "bundled"].includes(r.source), r.source);
    assert.ok(path.isAbsolute(r.path));
  });
});

describe("BrowserLaunchError: a program that is no browser, launched by Playwright", () => {
  // Real launches (Playwright spawns them and waits for its pipe): they end at once, no timeout involved.
  const attempt = async (exe: string) => {
    const browser: FoundBrowser = { path: exe, source: "path", reason: `--browser ${exe}` };
    const err = await chromium.launch({ executablePath: exe, args: chromiumArgs("swiftshader"), timeout: 60_000 }).then(
      (b) => b.close().then(() => assert.fail(`${exe} launched`)),
      (e: unknown) => e,
    );
    return new BrowserLaunchError(browser, err).message;
  };
  test("/bin/true: names the path and says it exited, in one line", async () => {
    const m = await attempt("/bin/true");
    assert.match(m, /^the browser \/bin\/true \(path: --browser \/bin\/true\) did not start: .*; it exited with code 0\. Is it a Chromium\/Chrome binary\? .*--browser auto\|system\|bundled\|PATH/);
    assert.ok(!m.includes("\n") && !m.includes("--disable-field-trial-config"), `no command line dump: ${m}`);
  });
  test("/bin/sleep: what it printed and its exit code", async () => {
    assert.match(await attempt("/bin/sleep"), /did not start: .*; it exited with code 1; it printed: \/bin\/sleep: unrecognized option '--[a-z-]+'/);
  });
  test("a program killed by a signal", async (t) => {
    const exe = path.join(tempDir(t, "launch-fail"), "dies");
    writeFileSync(exe, "#!/bin/sh\necho 'about to die' >&2\nkill -SEGV $$\n");
    chmodSync(exe, 0o755);
    assert.match(await attempt(exe), /; it was killed by SIGSEGV; it printed: about to die\./);
  });
});

describe("the screenshot fixture's launch options (harness/testing.ts)", () => {
  const bin = "/usr/bin/true";
  test("a config's executablePath is used as it is, args and all", () => {
    const configured = { executablePath: "/opt/mine/chrome", args: ["--mine"] };
    assert.equal(farmLaunchOptions(configured, { TABFARM_GL: "not-a-backend" }), configured);
  });
  test("a config's args without executablePath: the farm's browser and GL flags, then the config's args", () => {
    const o = farmLaunchOptions<LaunchOptions>({ args: ["--force-device-scale-factor=2"], headless: true }, { CHROMIUM_PATH: bin });
    assert.equal(o.executablePath, bin);
    assert.deepEqual(o.args, [...chromiumArgs("swiftshader"), "--force-device-scale-factor=2"]);
    assert.equal(o.headless, true);
    assert.deepEqual(farmLaunchOptions<LaunchOptions>({}, { CHROMIUM_PATH: bin, TABFARM_GL: " egl " }).args, chromiumArgs("egl"));
  });
  test("TABFARM_GL garbage: an error naming the value and the choices", () => {
    for (const gl of ["garbage", "SWIFTSHADER!", "swiftshader,egl"])
      assert.throws(() => farmLaunchOptions({}, { CHROMIUM_PATH: bin, TABFARM_GL: gl }), new RegExp(`TABFARM_GL is set to "${gl.replace(/[!,]/g, "\\$&")}": expected one of swiftshader, llvmpipe, egl, vulkan`));
  });
  test("TABFARM_GL=auto is refused: goldens need one named backend", () => {
    for (const gl of ["auto", " auto "]) assert.throws(() => farmLaunchOptions({}, { CHROMIUM_PATH: bin, TABFARM_GL: gl }), /TABFARM_GL is set to "auto": golden images need one named backend/);
  });
});

describe("real launch (headless Chromium)", { timeout: 120_000 }, () => {
  const launch = (gl: ConcreteGlBackend, extra: string[] = []) =>
    chromium.launch({ executablePath: findBrowser().path, args: [...chromiumArgs(gl), ...extra], headless: true, timeout: 60_000 });

  test("swiftshader gives WebGL on SwiftShader", async (t) => {
    let browser: Browser | undefined;
    try {
      browser = await launch("swiftshader");
      const page = await browser.newPage();
      await page.goto("about:blank");
      const p = await probeWebgl(page);
      t.diagnostic(`renderer=${p.renderer} vendor=${p.vendor} webgl2=${p.webgl2}`);
      assert.equal(p.webgl, true, describeGl("swiftshader"));
      assert.match(p.renderer, /SwiftShader/i);
      assert.ok(p.vendor.length > 0);
      assert.ok(isSoftwareRenderer(p.renderer));
    } finally {
      await browser?.close();
    }
  });

  test("--disable-gpu --disable-software-rasterizer: probe reports no WebGL", async () => {
    let browser: Browser | undefined;
    try {
      const noGlFlags = chromiumArgs("swiftshader").filter((a) => !/^--(use-gl|use-angle|enable-unsafe-swiftshader|ignore-gpu-blocklist)/.test(a));
      browser = await chromium.launch({ executablePath: findBrowser().path, args: [...noGlFlags, "--disable-gpu", "--disable-software-rasterizer"], headless: true, timeout: 60_000 });
      const page = await browser.newPage();
      await page.goto("about:blank");
      const p = await probeWebgl(page);
      assert.deepEqual(p, { webgl: false, webgl2: false, renderer: "", vendor: "" });
    } finally {
      await browser?.close();
    }
  });
});

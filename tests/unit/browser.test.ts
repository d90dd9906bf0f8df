import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";

import { chromiumArgs, describeGl, GL_BACKENDS, type GlBackend } from "../../harness/chromiumFlags.js";
import {
  BrowserNotFoundError,
  findBrowser,
  InvalidChromiumPathError,
  playwrightChromiumCandidates,
} from "../../harness/findBrowser.js";
import { isSoftwareRenderer, probeWebgl } from "../../harness/webglProbe.js";

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

describe("chromiumArgs", () => {
  for (const gl of GL_BACKENDS) {
    test(`${gl}: always-on flags present, no duplicates`, () => {
      const args = chromiumArgs(gl);
      for (const f of ALWAYS) assert.ok(args.includes(f), `${gl} missing ${f}`);
      assert.equal(new Set(args).size, args.length, `duplicate flags in ${args.join(" ")}`);
      // at most one --enable-features: Chromium keeps only the last one
      assert.ok(args.filter((a) => a.startsWith("--enable-features=")).length <= 1);
    });
  }

  test("--no-sandbox only as root", () => {
    assert.ok(chromiumArgs("auto", { root: true }).includes("--no-sandbox"));
    assert.ok(!chromiumArgs("auto", { root: false }).includes("--no-sandbox"));
    const isRoot = process.getuid?.() === 0;
    assert.equal(chromiumArgs("auto").includes("--no-sandbox"), isRoot);
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

  test("auto: no GL flags at all", () => {
    const a = chromiumArgs("auto");
    assert.ok(!a.some((x) => x.startsWith("--use-angle") || x.startsWith("--use-gl")), a.join(" "));
    assert.ok(!a.includes("--enable-unsafe-swiftshader"));
    assert.ok(!a.includes("--enable-gpu"));
    assert.deepEqual(
      a.filter((x) => x !== "--no-sandbox"),
      ALWAYS,
    );
  });

  test("describeGl names the flags tried", () => {
    assert.match(describeGl("swiftshader"), /tried: .*--use-angle=swiftshader/);
    assert.match(describeGl("egl"), /--use-angle=gl-egl/);
    assert.match(describeGl("vulkan"), /--use-angle=vulkan/);
    assert.match(describeGl("auto"), /no GL flags/);
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
    assert.deepEqual(r, { path: exe, source: "CHROMIUM_PATH" });
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
      () => findBrowser(env, { exists: () => false, platform: "linux" }),
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
        assert.ok(e.tried.length >= 8);
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
        e.message.includes("/Applications/Chromium.app/Contents/MacOS/Chromium"),
    );
  });

  test("order: playwright before PATH before absolute paths", () => {
    const have = new Set(["/pw/chrome", "/bin-dir/chromium", "/usr/bin/google-chrome"]);
    const base = { exists: (p: string) => have.has(p), playwrightCandidates: () => ["/pw/chrome"], platform: "linux" as const };
    assert.deepEqual(findBrowser({ PATH: "/bin-dir" }, base), { path: "/pw/chrome", source: "playwright" });
    have.delete("/pw/chrome");
    assert.deepEqual(findBrowser({ PATH: "/bin-dir" }, base), { path: "/bin-dir/chromium", source: "system" });
    assert.deepEqual(findBrowser({ PATH: "" }, base), { path: "/usr/bin/google-chrome", source: "system" });
  });

  test("real lookup with empty PATH still finds a system browser at a usual path", () => {
    // This machine has Debian's chromium at /usr/bin/chromium and no Playwright download.
    const r = findBrowser({ PATH: "" });
    assert.ok(r.source === "playwright" || r.source === "system");
    assert.ok(path.isAbsolute(r.path));
  });
});

describe("real launch (headless Chromium)", { timeout: 120_000 }, () => {
  const launch = (gl: GlBackend, extra: string[] = []) =>
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
      browser = await launch("auto", ["--disable-gpu", "--disable-software-rasterizer"]);
      const page = await browser.newPage();
      await page.goto("about:blank");
      const p = await probeWebgl(page);
      assert.deepEqual(p, { webgl: false, webgl2: false, renderer: "", vendor: "" });
    } finally {
      await browser?.close();
    }
  });
});

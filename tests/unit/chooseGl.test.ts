import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { chooseGl, glFromProbe, glOption, LLVMPIPE_APT, mesaInstalled } from "../../harness/chooseGl.js";
import { GL_BACKENDS } from "../../harness/chromiumFlags.js";
import { findBrowser } from "../../harness/findBrowser.js";

const SWIFTSHADER = "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)";
const LLVMPIPE = "ANGLE (Mesa/X.org, llvmpipe (LLVM 15.0.6 256 bits), OpenGL ES 3.2)";
const T4 = "ANGLE (NVIDIA Corporation, Tesla T4/PCIe/SSE2, OpenGL ES 3.2 NVIDIA 535.104.05)";
const webgl = (renderer: string) => ({ webgl: true, webgl2: true, renderer, vendor: "v" });

describe("glFromProbe: auto's verdict on the egl probe", () => {
  test("a hardware renderer: egl", () => {
    const c = glFromProbe(webgl(T4), () => true);
    assert.equal(c.gl, "egl");
    assert.match(c.why, /a GPU answers through egl \(.*Tesla T4/);
  });
  test("llvmpipe: llvmpipe", () => {
    assert.equal(glFromProbe(webgl(LLVMPIPE), () => true).gl, "llvmpipe");
  });
  test("SwiftShader under the egl flags: swiftshader, and the advice fits what is missing", () => {
    const withMesa = glFromProbe(webgl(SWIFTSHADER), () => true);
    assert.equal(withMesa.gl, "swiftshader");
    assert.match(withMesa.why, /egl gave .*SwiftShader.*this browser lacks ANGLE's GL-EGL backend.*apt-get install -y chromium/);
    const noMesa = glFromProbe(webgl(SWIFTSHADER), () => false);
    assert.equal(noMesa.gl, "swiftshader");
    assert.ok(noMesa.why.includes(LLVMPIPE_APT), noMesa.why);
  });
  test("no WebGL, an empty renderer, other software rasterizers, a failed probe: swiftshader", () => {
    for (const probe of [
      { webgl: false, webgl2: false, renderer: "", vendor: "" },
      webgl(""),
      webgl("softpipe"),
      webgl("Microsoft Basic Render Driver"),
      { failed: "browserType.launch: Target page, context or browser has been closed" },
    ]) {
      const c = glFromProbe(probe, () => true);
      assert.equal(c.gl, "swiftshader", JSON.stringify(probe));
      assert.ok(!c.why.includes("\n"), "one line");
    }
  });
});

describe("chooseGl", { timeout: 120_000 }, () => {
  test("a named backend is taken as given, with no probe (a path that is no browser is never launched)", async () => {
    for (const gl of GL_BACKENDS.filter((b) => b !== "auto")) {
      assert.deepEqual(await chooseGl("/nonexistent/chrome", gl), { gl, renderer: "", why: `--gl ${gl}` });
    }
  });

  test("auto on something that is not a browser: swiftshader, saying the probe failed", async () => {
    const c = await chooseGl("/bin/true", "auto", { timeoutMs: 20_000 });
    assert.equal(c.gl, "swiftshader");
    assert.match(c.why, /the egl probe failed/);
  });

  // Playwright leaves a launch that timed out to its graceful close (which this fake never answers) until our
  // process exits; the test ends the fake itself.
  test("auto on a browser that never answers: swiftshader once the bound has passed", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-choosegl-"));
    const pidFile = path.join(dir, "pid");
    const exe = path.join(dir, "hangs");
    fs.writeFileSync(exe, `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 60\n`, { mode: 0o755 });
    try {
      const c = await chooseGl(exe, "auto", { timeoutMs: 1500 });
      assert.equal(c.gl, "swiftshader");
      assert.match(c.why, /the egl probe failed/);
    } finally {
      const pid = Number(fs.readFileSync(pidFile, "utf8"));
      if (pid > 0 && alive(pid)) process.kill(pid, "SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("auto on this machine's browser: a backend whose renderer the probe saw, asked once per browser", async (t) => {
    const browser = findBrowser().path;
    const first = chooseGl(browser, "auto");
    assert.equal(chooseGl(browser, "auto"), first, "the same answer, not a second launch");
    const c = await first;
    t.diagnostic(`${browser}: ${c.gl} — ${c.why}`);
    if (c.gl === "llvmpipe") assert.match(c.renderer, /llvmpipe/);
    else if (c.gl === "egl") assert.ok(c.renderer.length > 0);
    else {
      assert.equal(c.gl, "swiftshader");
      assert.match(c.why, /egl gave|probe failed/);
    }
    // Where the browser is Debian's chromium and Mesa is installed (as CI installs them), auto is llvmpipe.
    if (/^\/usr\/bin\/chromium$/.test(browser) && mesaInstalled()) assert.notEqual(c.gl, "swiftshader", c.why);
  });

  test("the probe launches the browser the tabs will get (--chromium-arg), and leaves Ctrl-C to the farm", async () => {
    const browser = findBrowser().path;
    const signals = () => ["SIGINT", "SIGTERM", "SIGHUP"].map((s) => process.listenerCount(s));
    const before = signals();
    const probing = chooseGl(browser, "auto", { extraArgs: ["--disable-webgl"] });
    let during = before;
    const watch = setInterval(() => { if (signals().some((n, i) => n !== before[i])) during = signals(); }, 5);
    try {
      const c = await probing;
      assert.equal(c.gl, "swiftshader");
      assert.match(c.why, /egl gave no WebGL/, "the user's flag reached the probe's browser");
    } finally {
      clearInterval(watch);
    }
    assert.deepEqual(during, before, "no signal handler of Playwright's while the probe ran");
  });
});

describe("--gl", () => {
  const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    const saved = process.env["TABFARM_GL"];
    if (env["TABFARM_GL"] === undefined) delete process.env["TABFARM_GL"];
    else process.env["TABFARM_GL"] = env["TABFARM_GL"];
    try {
      const program = new Command().exitOverride().configureOutput({ writeErr: () => {} }).addOption(glOption());
      return program.parse(argv, { from: "user" }).opts()["gl"] as string;
    } finally {
      if (saved === undefined) delete process.env["TABFARM_GL"];
      else process.env["TABFARM_GL"] = saved;
    }
  };
  test("default auto; each backend by name; TABFARM_GL when the flag is absent", () => {
    assert.equal(parse([]), "auto");
    for (const gl of GL_BACKENDS) assert.equal(parse(["--gl", gl]), gl);
    assert.equal(parse([], { TABFARM_GL: "llvmpipe" }), "llvmpipe");
    assert.equal(parse(["--gl", "swiftshader"], { TABFARM_GL: "llvmpipe" }), "swiftshader");
  });
  test("anything else is refused, naming the choices", () => {
    for (const bad of ["", "AUTO", "gpu", "swiftshader,egl", "llvmpipe ", "../x"]) {
      assert.throws(() => parse(["--gl", bad]), /argument '.*' is invalid. Allowed choices are auto, swiftshader, llvmpipe, egl, vulkan/, bad);
    }
    assert.throws(() => parse([], { TABFARM_GL: "metal" }), /Allowed choices are auto, swiftshader, llvmpipe, egl, vulkan/);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// harness/TabPool + harness/BrowserTargets with real Chromium: tabs are opened through the browser's
// DevTools session, out of Playwright's sight (no per-page instrumentation), and can still be asked
// to evaluate, forward console errors with verbose, and report a crash to a pending evaluate.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Farm } from "../../server/session/Farm.js";
import { TabPool } from "../../harness/TabPool.js";
import { buildClient } from "../../harness/buildClient.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { ourBrowsers } from "./ourBrowsers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(50)) if (ok()) return;
  assert.fail(`timed out waiting for ${what}`);
}

describe("TabPool", { timeout: 180_000 }, () => {
  it("opens tabs Playwright does not instrument, evaluates in them, forwards console errors, and reports a crash", async () => {
    const logs: string[] = [];
    const farm = new Farm({ clientDir: await buildClient(), log: () => {} });
    await farm.listen();
    const pool = new TabPool({ executablePath: findBrowser().path, gl: "swiftshader", url: farm.url, proveLaunched: (worker) => farm.launchedTabProof(worker), tabs: 2, verbose: true, log: (l) => logs.push(l) });
    try {
      await pool.start();
      await waitFor("two sessions", () => farm.sessions.size === 2);
      assert.equal(pool.openTabs, 2);
      // Playwright knows the browser but none of its pages: they live in contexts it did not create.
      assert.deepEqual(pool.browser(0)!.contexts(), [], "no Playwright-managed context (so no Network instrumentation)");

      const search = await pool.evaluate(1, () => location.search);
      assert.match(search, /worker=tab-1/);
      assert.match(search, /preview=off/, "headless tabs skip the preview overlay");
      assert.equal(await pool.evaluate(0, (n: number) => Promise.resolve(n * 2), 21), 42, "arguments go in, awaited JSON comes out");
      await assert.rejects(pool.evaluate(0, () => { throw new Error("thrown in the tab"); }), /in the tab: Error: thrown in the tab/);
      await assert.rejects(pool.evaluate(5, () => 1), /tab 5 is not open/);

      await pool.evaluate(0, () => console.error("hello from tab zero"));
      await waitFor("the console line", () => logs.some((l) => l === "tab 0 console: hello from tab zero"), 5000);

      // An evaluate waiting on a tab that crashes is rejected, and the tab is replaced.
      const pending = pool.evaluate(1, () => new Promise(() => {}));
      pool.crash(1);
      await assert.rejects(pending, /crashed|closed|detached/);
      await waitFor("the replacement", () => logs.includes("tab 1 crashed; opening a replacement") && pool.openTabs === 2);
      assert.equal(pool.replacements, 1);
      await waitFor("the replacement's session", () => [...farm.sessions.values()].filter((s) => s.info.worker === "tab-1").length === 1);
      assert.match(await pool.evaluate(1, () => location.search), /worker=tab-1/, "the replacement answers too");
    } finally {
      await pool.close();
      await farm.close();
    }
  });

  it("a relaunched browser whose tabs cannot be set up is closed before the next try, and every tab comes back", async () => {
    const logs: string[] = [];
    const farm = new Farm({ clientDir: await buildClient(), log: () => {} });
    await farm.listen();
    let failNext = false;
    const proveLaunched = (worker: string) => {
      if (worker === "tab-1" && failNext) {
        failNext = false;
        throw new Error("no proof this time"); // a tab's setup failing after its browser launched
      }
      return farm.launchedTabProof(worker);
    };
    const executablePath = findBrowser().path;
    const pool = new TabPool({ executablePath, gl: "swiftshader", url: farm.url, proveLaunched, tabs: 2, browsers: 1, log: (l) => logs.push(l) });
    try {
      await pool.start();
      await waitFor("two sessions", () => farm.sessions.size === 2);
      failNext = true;
      const [first, ...others] = ourBrowsers();
      assert.ok(first && others.length === 0, "one browser");
      process.kill(first, "SIGKILL");
      await waitFor("the failed try", () => logs.some((l) => /could not open a replacement tab \(try 1\): no proof this time/.test(l)));
      await waitFor("both tabs back", () => [...farm.sessions.values()].filter((s) => !s.closed && s.info.webgl).length === 2 && pool.openTabs === 2, 60_000);
      assert.equal(ourBrowsers().length, 1, "the browser of the failed try was closed, not left running");
      assert.deepEqual([...farm.sessions.values()].filter((s) => !s.closed).map((s) => s.info.worker).sort(), ["tab-0", "tab-1"]);
    } finally {
      await pool.close();
      await farm.close();
    }
  });

  it("a browser that dies while its tabs are being set up is launched again once, not once by its crash and once by the failed setup", async () => {
    const logs: string[] = [];
    const farm = new Farm({ clientDir: await buildClient(), log: () => {} });
    await farm.listen();
    let killDuringSetup = false;
    const proveLaunched = (worker: string) => {
      if (worker === "tab-1" && killDuringSetup) {
        // The relaunched browser is up and its tabs are being opened: it dies now, a real SIGKILL.
        killDuringSetup = false;
        for (const pid of ourBrowsers()) process.kill(pid, "SIGKILL");
      }
      return farm.launchedTabProof(worker);
    };
    const pool = new TabPool({ executablePath: findBrowser().path, gl: "swiftshader", url: farm.url, proveLaunched, tabs: 2, browsers: 1, log: (l) => logs.push(l) });
    let left: number[] = [];
    try {
      await pool.start();
      await waitFor("two sessions", () => farm.sessions.size === 2);
      killDuringSetup = true;
      const [first, ...others] = ourBrowsers();
      assert.ok(first && others.length === 0, "one browser");
      process.kill(first, "SIGKILL");
      await waitFor("the kill during setup", () => !killDuringSetup);
      await waitFor("both tabs back", () => [...farm.sessions.values()].filter((s) => !s.closed && s.info.webgl).length === 2 && pool.openTabs === 2, 60_000);
      await sleep(3000); // a second launch chain, if any, would have its browser up by now
      assert.equal(ourBrowsers().length, 1, `one browser for the slot, not two:\n${logs.join("\n")}`);
      assert.deepEqual([...farm.sessions.values()].filter((s) => !s.closed).map((s) => s.info.worker).sort(), ["tab-0", "tab-1"]);
      assert.equal(pool.openTabs, 2);
    } finally {
      await pool.close();
      await farm.close();
      // A browser the pool lost track of would outlive it and hold this test process open: ended here, reported below.
      left = ourBrowsers();
      for (const pid of left) process.kill(pid, "SIGKILL");
    }
    assert.deepEqual(left, [], "closing the pool leaves no browser of ours running");
  });
});

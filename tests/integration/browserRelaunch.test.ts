// --relaunch-after with real Chromium: a browser whose tabs rendered N frames is drained through the
// server (its tabs retired between jobs), closed, and launched again, wired as runHeadlessFarm wires it
// (TabLifecycle + farmTabSignals). Every job is done exactly once on its first attempt (no lease or grab
// of a drained tab was cut), the browser process is another one afterwards and the old one is gone, and
// with two browsers the other browser's tab is at work whenever one is being relaunched.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startRun } from "../../server/runFarm.js";
import { demoJobs } from "../../server/jobs/demoJobs.js";
import { buildClient } from "../../harness/buildClient.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { farmTabSignals, TabLifecycle } from "../../harness/tabLifecycle.js";
import { checkDataset } from "./farmHarness.js";
import { jobAttempts, runFarmCli } from "./cli.js";
import { ourBrowsers } from "./ourBrowsers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function relaunchRun(o: { tabs: number; browsers: number; frames: number; framesPerJob: number; relaunchAfter: number }) {
  const logs: string[] = [];
  const onLog: ((line: string) => void)[] = [];
  const log = (line: string) => {
    logs.push(line);
    for (const l of onLog) l(line);
  };
  const jobs = [...demoJobs(o.frames, o.framesPerJob)];
  const expectedIds = jobs.flatMap((j) => (j.frames ?? [{}]).map((_, i) => `${j.id}/${i}`));
  const out = fs.mkdtempSync("/tmp/tabfarm-relaunch-");
  const run = await startRun({ out, clientDir: await buildClient(), jobs, width: 96, height: 72, format: "png", log });
  run.finished.catch(() => {});
  const browser = findBrowser();
  const lifecycle = new TabLifecycle({
    browser, executablePath: browser.path, gl: "swiftshader", url: run.url, proveLaunched: (worker) => run.farm.launchedTabProof(worker),
    tabs: o.tabs, browsers: o.browsers, log, relaunchAfterFrames: o.relaunchAfter,
  }, farmTabSignals(run.farm, run.events));
  return { logs, onLog, out, run, lifecycle, expectedIds };
}

describe("browser relaunch (--relaunch-after)", { timeout: 480_000 }, () => {
  it("relaunches the browser between jobs: every job done once on its first attempt, a new browser process, the old one gone", async () => {
    const { logs, out, run, lifecycle, expectedIds } = await relaunchRun({ tabs: 2, browsers: 1, frames: 48, framesPerJob: 4, relaunchAfter: 8 });
    const seen = new Set<number>();
    let framesAtFirstRelaunch: number | undefined;
    let frames = 0;
    run.events.subscribe((e) => {
      if (e.type === "job.done") frames += e.frames;
    });
    try {
      const stopped = new Promise<never>(() => {});
      await lifecycle.start(stopped);
      const finished = run.finished.then(() => true);
      let done = false;
      void finished.then(() => (done = true));
      // Sample the browser processes until the run is over (bounded: the run ends or the test times out).
      for (let i = 0; !done && i < 4000; i++) {
        for (const pid of ourBrowsers()) seen.add(pid);
        if (framesAtFirstRelaunch === undefined && lifecycle.pool.relaunches > 0) framesAtFirstRelaunch = frames;
        await sleep(50);
      }
      const summary = await run.finished;
      assert.equal(summary.counts.done, expectedIds.length / 4, "every job done");
      assert.equal(summary.counts.failed, 0);
      checkDataset(out, expectedIds, { width: 96, height: 72 });
      assert.deepEqual(jobAttempts(out).filter((a) => a !== 1), [], "every job done on its first attempt: no lease of a drained tab was cut short");
      assert.ok(lifecycle.pool.relaunches >= 2, `relaunched at least twice (48 frames, every 8): ${lifecycle.pool.relaunches}\n${logs.join("\n")}`);
      assert.equal(lifecycle.pool.replacements, 0, "a planned relaunch is no fault");
      assert.equal(lifecycle.pool.recycled, 0, "drained tabs are not counted as recycled ones");
      assert.ok(framesAtFirstRelaunch !== undefined && frames > framesAtFirstRelaunch, "the relaunched browser's tabs rendered the rest");
      assert.ok(seen.size >= 3, `a new browser process per relaunch (pids seen: ${[...seen].join(", ")})`);
      // The last job done may start one more relaunch as the run ends: wait (bounded) for it to settle. An old
      // browser left running would keep two processes here until the deadline.
      let now = new Set(ourBrowsers());
      for (let i = 0; now.size !== 1 && i < 600; i++) {
        await sleep(50);
        now = new Set(ourBrowsers());
      }
      assert.equal(now.size, 1, `every browser process but the current one is gone (seen ${[...seen]}, now ${[...now]})`);
      assert.equal(logs.filter((l) => / drained in /.test(l)).length, lifecycle.pool.relaunches, "each relaunch is reported");
    } finally {
      await run.close();
      await lifecycle.close();
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("with two browsers, relaunches one at a time: the other browser's tab is at work throughout", async () => {
    const { logs, onLog, out, run, lifecycle, expectedIds } = await relaunchRun({ tabs: 2, browsers: 2, frames: 600, framesPerJob: 3, relaunchAfter: 10 });
    const problems: string[] = [];
    let under = 0;
    let minOpenTabs = Infinity;
    const everJoined = new Set<string>();
    run.farm.on("session", (session) => everJoined.add(session.info.worker));
    onLog.push((line) => {
      const start = /^browser (\d+): its tabs rendered/.exec(line);
      if (start) {
        under++;
        if (under > 1) problems.push(`a relaunch started while another was under way: ${line}`);
        // Tab i lives in browser i % 2: the other browser's tab must have a live session now, once it has
        // joined at all (on a slow machine one browser's tab can render its first frames before the other's is up).
        const other = `tab-${1 - Number(start[1])}`;
        const live = [...run.farm.sessions.values()].some((s) => s.info.worker === other && !s.closed);
        if (!live && everJoined.has(other)) problems.push(`${other} had no live session when browser ${start[1]} began to drain`);
      }
      if (/ relaunched in /.test(line)) under--;
    });
    try {
      await lifecycle.start(new Promise<never>(() => {}));
      let done = false;
      void run.finished.then(() => (done = true), () => (done = true));
      for (let i = 0; !done && i < 4000; i++) {
        minOpenTabs = Math.min(minOpenTabs, lifecycle.pool.openTabs);
        await sleep(20);
      }
      const summary = await run.finished;
      assert.equal(summary.counts.failed, 0);
      checkDataset(out, expectedIds, { width: 96, height: 72 });
      assert.deepEqual(jobAttempts(out).filter((a) => a !== 1), [], "every job done on its first attempt");
      assert.deepEqual(problems, []);
      assert.ok(lifecycle.pool.relaunches >= 2, `both browsers relaunched at least once in all: ${lifecycle.pool.relaunches}\n${logs.join("\n")}`);
      const relaunched = new Set(logs.map((l) => / relaunched in /.test(l) && /^browser (\d+)/.exec(l)?.[1]).filter(Boolean));
      assert.equal(relaunched.size, 2, `each browser was relaunched: ${[...relaunched]}`);
      assert.ok(minOpenTabs >= 1, "a tab was always open");
    } finally {
      await run.close();
      await lifecycle.close();
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("npm run farm --relaunch-after: the run completes, its summary counts the relaunches, the dataset verifies", async () => {
    const out = fs.mkdtempSync("/tmp/tabfarm-relaunch-cli-");
    try {
      const { code, output } = await runFarmCli(["--sessions", "2", "--browsers", "1", "--demo", "40", "--frames-per-job", "5", "--width", "64", "--height", "48", "--relaunch-after", "10", "--gl", "swiftshader", "--out", out, "--no-progress"]);
      assert.equal(code, 0, output);
      assert.match(output, /40 frames in .*jobs: 8 done, 0 failed of 8/);
      const relaunches = Number(/browsers relaunched (\d+) time\(s\) \(--relaunch-after 10\)/.exec(output)?.[1] ?? 0);
      assert.ok(relaunches >= 1, `the summary counts relaunches:\n${output}`);
      assert.equal(output.match(/browser 0 relaunched in [\d.]+ s/g)?.length, relaunches, "each relaunch has its line");
      assert.deepEqual(jobAttempts(out).filter((a) => a !== 1), [], "every job done on its first attempt");
      const verify = await runFarmCli(["verify", "--out", out], 60_000);
      assert.equal(verify.code, 0, verify.output);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("bad --relaunch-after values are refused with an error naming the option", async () => {
    for (const bad of ["-1", "2.5", "100000001", "1e12", "1e3", "0x10", "ten", "10 frames", " ", ""]) {
      const { code, output } = await runFarmCli(["--relaunch-after", bad, "--demo", "4", "--out", "/tmp/tabfarm-relaunch-never-created"], 60_000);
      assert.equal(code, 2, `--relaunch-after ${JSON.stringify(bad)} exits 2:\n${output}`);
      assert.match(output, /--relaunch-after must be a whole number of frames from 0 to 100000000/, `--relaunch-after ${JSON.stringify(bad)}`);
      assert.ok(!fs.existsSync("/tmp/tabfarm-relaunch-never-created"), "nothing was started");
    }
  });
});

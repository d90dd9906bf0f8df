// What the farm CLI prints without a terminal (CI, a log file), read from the run's events: a plain
// progress line every few seconds, one line per failed attempt, the end summary with the exact retry
// command, and no control characters anywhere, even when an error text from a handler carries some.
// Then the printed retry command, run as printed, renders the failed job, and the dataset's
// run-events.jsonl keeps both runs: a dashboard of the second run gets the first run's frames/s too.
//
// Run: node --import tsx --test tests/integration/runEventsCli.test.ts
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { io, type Socket as ClientSocket } from "socket.io-client";
import { readFrames, runFarmCli, spawnFarmCli, withTempDir } from "./cli.js";
import { HANDLER, orbitJob, writeJobsFile } from "./fixtures/dashboard/jobs.js";
import { exitCode, killGroup, waitForOutput, within } from "./fixtures/dashboard/farmProcess.js";
import { buildClient } from "../../harness/buildClient.js";
import { DASHBOARD_NAMESPACE, type DashboardToServerEvents, type ServerToDashboardEvents } from "../../protocol/dashboard.js";
import type { RatePoint } from "../../protocol/runEvents.js";

/** Control characters but newline and tab: C0, DEL and C1 (what a terminal or a CI log would act on). */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

before(async () => {
  // The CLI builds the client when it is out of date: done here, so its output is the farm's own.
  await buildClient();
});

describe("the CLI without a terminal", { timeout: 200_000 }, () => {
  it("prints progress lines, one line per failed attempt and a summary with the retry command, all free of control characters; the command renders the job; the history survives", { timeout: 190_000 }, async () => {
    await withTempDir("tabfarm-events-", async (dir) => {
      const out = path.join(dir, "out");
      const progressSeen = path.join(dir, "progress-seen"); // the slow job waits for it: the run lasts until a progress line is out
      const fixed = path.join(dir, "flaky-fixed");
      const go = path.join(dir, "flaky-go"); // the fixed flaky job waits for it: the second run lasts until its dashboard is checked
      const size = { frames: 2, width: 64, height: 48 };
      const jobsFile = writeJobsFile(dir, [
        ...Array.from({ length: 4 }, (_, i) => orbitJob(`plain-${i}`, {}, size)),
        orbitJob("slow", { before: progressSeen }, size),
        orbitJob("flaky", { failUnless: fixed, after: go }, size),
      ]);
      const args = ["--sessions", "2", "--jobs", jobsFile, "--handler", HANDLER, "--max-attempts", "2", "--out", out];

      // --- The first run: stdout and stderr are pipes, not a terminal.
      const first = spawnFarmCli(args, { detached: true });
      let firstOutput = "";
      try {
        await waitForOutput(first.child, first.output, /^progress: /m, 90_000);
        fs.writeFileSync(progressSeen, "");
        assert.equal(await exitCode(first.child, first.output, 90_000), 1, first.output());
        firstOutput = first.output();
      } finally {
        await killGroup(first.child);
      }

      const bad = [...firstOutput].find((c) => CONTROL.test(c));
      assert.equal(bad, undefined, `a control character (U+${bad?.codePointAt(0)?.toString(16).padStart(4, "0")}) in the output:\n${JSON.stringify(firstOutput)}`);
      assert.ok(!firstOutput.includes("\u001b"), "no escape character");
      assert.match(
        firstOutput,
        /^progress: \d+\/6 jobs done, \d+ leased, \d+ failed, \d+ retries, \d+ sessions, \d+ frames, \d+\.\d frames\/s, ETA \S.*$/m,
        firstOutput,
      );
      // One line per failed attempt, naming the job, its session and why (control characters shown as "?").
      const attempts = firstOutput.match(/^job flaky attempt \d+ failed on session s\d+: .*$/gm) ?? [];
      assert.equal(attempts.length, 2, firstOutput);
      assert.match(attempts[0], /^job flaky attempt 1 failed on session s\d+: bad\?\[2J\?thing$/);
      assert.match(attempts[1], /^job flaky attempt 2 failed on session s\d+: bad\?\[2J\?thing$/);
      assert.equal((firstOutput.match(/^job flaky failed: no attempts left after 2$/gm) ?? []).length, 1, firstOutput);
      assert.doesNotMatch(firstOutput, /job (plain-\d|slow) /, "the other jobs never failed");
      // The summary: the failed job with its reason, and the exact commands that render it again.
      assert.match(firstOutput, /jobs: 5 done, 1 failed of 6/);
      assert.match(firstOutput, /^tabfarm: 1 job\(s\) failed:$/m);
      assert.match(firstOutput, /^ {2}flaky after 2 attempt\(s\): bad\?\[2J\?thing$/m);
      const retryLine = `tabfarm: to render them again: npm run farm -- retry-failed --out ${out} && npm run farm -- ${args.join(" ")}`;
      assert.ok(firstOutput.split("\n").includes(retryLine), `the retry command, exactly:\n${retryLine}\nin:\n${firstOutput}`);

      const firstRun = readRunEvents(out);
      const firstStarted = firstRun.find((e) => e.type === "run.started")!.at;
      const firstDone = firstRun.find((e) => e.type === "run.done")!.at;
      assert.ok(firstRun.some((e) => e.type === "job.retried" && e.job === "flaky"), "the first failed attempt is kept");
      assert.ok(firstRun.some((e) => e.type === "job.failed" && e.job === "flaky" && e.error === "bad\u001b[2J\rthing"), "the log keeps the error as it was (JSON-escaped)");

      // --- The printed commands, run as printed: retry-failed, then the same farm command (the job is fixed now).
      const [retryPart, farmPart] = retryLine.slice("tabfarm: to render them again: ".length).split(" && ");
      const argv = (command: string) => command.replace(/^npm run farm -- /, "").split(" ");
      const retried = await runFarmCli(argv(retryPart), 60_000);
      assert.equal(retried.code, 0, retried.output);
      assert.match(retried.output, /1 failed job\(s\) returned to the queue/);
      fs.writeFileSync(fixed, "");
      const second = spawnFarmCli(argv(farmPart), { detached: true });
      let dashboard: ClientSocket<ServerToDashboardEvents, DashboardToServerEvents> | undefined;
      try {
        const [, url] = await waitForOutput(second.child, second.output, /tabfarm: dashboard (http:\/\/\S+)/, 90_000);
        const { origin, searchParams } = new URL(url);
        dashboard = io(`${origin}${DASHBOARD_NAMESPACE}`, { auth: { token: searchParams.get("token") }, transports: ["websocket"], reconnection: false, forceNew: true });
        const socket = dashboard;
        const [points, reset] = await within(
          new Promise<[RatePoint[], boolean]>((resolve) => socket.once("rate", (p, r) => resolve([p, r]))),
          30_000,
          () => `no rate points for a dashboard of the second run:\n${second.output()}`,
        );
        assert.equal(reset, true, "a new dashboard's series starts with a reset");
        const fromFirstRun = points.filter((p) => p.t > firstStarted && p.t <= firstDone + 1);
        assert.ok(fromFirstRun.some((p) => p.fps > 0), `the first run's frames/s are in the second run's chart: ${JSON.stringify(points)} (first run ${firstStarted}..${firstDone})`);
        fs.writeFileSync(go, "");
        assert.equal(await exitCode(second.child, second.output, 90_000), 0, second.output());
      } finally {
        dashboard?.disconnect();
        await killGroup(second.child);
      }
      const secondOutput = second.output();
      assert.equal([...secondOutput].find((c) => CONTROL.test(c)), undefined, JSON.stringify(secondOutput));
      assert.match(secondOutput, /jobs: 6 done, 0 failed of 6/);
      assert.deepEqual(readFrames(out).map((f) => f.job).filter((j) => j === "flaky").length, 2, "the flaky job's frames are in");

      // run-events.jsonl: both runs, each started and ended.
      const events = readRunEvents(out);
      assert.equal(events.filter((e) => e.type === "run.started").length, 2, "two run.started");
      assert.equal(events.filter((e) => e.type === "run.done").length, 2, "two run.done");
      const status = await runFarmCli(["status", "--out", out], 60_000);
      assert.equal(status.code, 0, status.output);
      assert.match(status.output, /6 jobs — 6 done, 0 pending, 0 leased, 0 failed/);
      assert.match(status.output, /^frames written: 12$/m);
    });
  });
});

function readRunEvents(out: string): Array<{ type: string; at: number; [field: string]: unknown }> {
  return fs.readFileSync(path.join(out, "run-events.jsonl"), "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

// The live dashboard (GET /dashboard?token=…, socket.io namespace /dashboard) against real farms:
// the page in real Chromium during a CLI run (counts, sessions, thumbnails, retry, pause), and its
// access rules and commands against hostile HTTP requests and sockets on an in-process run.
//
// Run: node --import tsx --test tests/integration/dashboard.test.ts
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { io, type Socket as ClientSocket } from "socket.io-client";
import { REPO, readFrames, runFarmCli, spawnFarmCli, withTempDir } from "./cli.js";
import { fakeSession, type FakeSession } from "./fakeSession.js";
import { HANDLER, orbitJob, writeJobsFile } from "./fixtures/dashboard/jobs.js";
import { delay, exitCode, killGroup, waitForOutput, within } from "./fixtures/dashboard/farmProcess.js";
import { findBrowser } from "../../harness/findBrowser.js";
import { chromiumArgs } from "../../harness/chromiumFlags.js";
import { buildClient } from "../../harness/buildClient.js";
import { startRun, type Run } from "../../server/runFarm.js";
import type { JobRunner } from "../../server/dispatch/dispatchJobs.js";
import {
  DASHBOARD_NAMESPACE, MAX_DASHBOARDS, type CommandResult, type DashboardToServerEvents, type ServerToDashboardEvents,
} from "../../protocol/dashboard.js";
import type { RatePoint, RunView } from "../../protocol/runEvents.js";
import type { LayerName } from "../../protocol/layers.js";

type DashboardSocket = ClientSocket<ServerToDashboardEvents, DashboardToServerEvents>;

let clientDir = "";
before(async () => {
  // Built once here, so the farms below (and the CLI) serve the current page without building it again.
  clientDir = await buildClient();
});

describe("the dashboard during a real farm run", { timeout: 200_000 }, () => {
  it("counts, sessions, thumbnails of every layer, retry of a failed job and pause/resume work in Chromium; status shows the run", { timeout: 190_000 }, async () => {
    await withTempDir("tabfarm-dashboard-", async (dir) => {
      const out = path.join(dir, "out");
      // gate: every job waits for it, so the page sees the counts move; flakyFixed: the flaky job fails
      // until it exists; slowRelease: the slow job holds the run open until the test is done clicking.
      const gate = path.join(dir, "gate");
      const flakyFixed = path.join(dir, "flaky-fixed");
      const slowRelease = path.join(dir, "slow-release");
      const size = { frames: 16, width: 240, height: 180, layers: ["rgb", "depth", "mask"] satisfies LayerName[] };
      const jobs = [
        ...Array.from({ length: 6 }, (_, i) => orbitJob(`orbit-${i}`, { before: gate }, size)),
        orbitJob("flaky", { before: gate, failUnless: flakyFixed }, size),
        orbitJob("slow", { before: gate, after: slowRelease }, size),
      ];
      const jobsFile = writeJobsFile(dir, jobs);
      const args = ["--sessions", "2", "--jobs", jobsFile, "--handler", HANDLER, "--max-attempts", "1", "--no-progress", "--out", out];
      const { child, output } = spawnFarmCli(args, { detached: true });
      let browser: Browser | undefined;
      try {
        browser = await chromium.launch({ executablePath: findBrowser().path, args: chromiumArgs("swiftshader") });
        const [, url] = await waitForOutput(child, output, /tabfarm: dashboard (http:\/\/\S+)/, 90_000);
        assert.match(url, /\/dashboard\?token=/);
        // locale: the screenshot's dates in one format whatever LANG is here (the page under LANG=C is the last test's).
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, locale: "en-US" });
        await page.goto(url);
        const until = (condition: () => boolean, what: string, timeoutMs = 30_000) => waitInPage(page, condition, what, timeoutMs, () => `the farm printed:\n${output()}`);
        const text = (testid: string) => page.locator(`[data-testid="${testid}"]`).first().innerText();
        await until(() => document.querySelector('[data-testid="connection"]')?.textContent === "connected", "the page connects");
        await until(() => document.querySelector('[data-testid="total"]')?.textContent === "8", "the total of 8 jobs is shown");
        assert.equal(await text("done"), "0", "nothing is done while the jobs wait for the gate");

        // One row per launched tab, named tab-0 and tab-1.
        await until(() => document.querySelectorAll("[data-testid=sessions] tr[data-session]").length >= 2, "a row per session", 90_000);
        const rows = await page.$$eval("[data-testid=sessions] tr[data-session]", (trs) =>
          trs.map((tr) => ({ id: tr.getAttribute("data-session"), worker: tr.querySelectorAll("td")[1]?.textContent ?? "" })),
        );
        const workers = rows.map((r) => r.worker);
        assert.ok(workers.includes("tab-0") && workers.includes("tab-1"), JSON.stringify(rows));
        assert.ok(rows.every((r) => /^s\d+$/.test(r.id ?? "") && /^tab-\d+$/.test(r.worker)), `only launched tabs: ${JSON.stringify(rows)}`);

        // The counter moves from 0 to the six ordinary jobs; the flaky one fails (one attempt), the slow one waits.
        fs.writeFileSync(gate, "");
        await until(() => document.querySelector('[data-testid="done"]')?.textContent === "6", "6 jobs done", 120_000);
        await until(() => document.querySelector('[data-failed-job="flaky"]') !== null, "the flaky job in the failed list");
        assert.match(await page.locator('[data-failed-job="flaky"]').innerText(), /bad/);

        // Thumbnails: decoded images of several layers (rgb, depth, mask).
        await until(
          () => {
            const images = [...document.querySelectorAll<HTMLImageElement>("[data-testid=thumbnails] img")];
            const layers = new Set(images.map((img) => img.dataset.layer));
            return document.querySelectorAll("[data-testid=thumbnails] figure").length >= 2 && images.every((img) => img.complete && img.naturalWidth > 0) && ["rgb", "depth", "mask"].every((l) => layers.has(l));
          },
          "thumbnails of two frames, each of rgb, depth and mask, all decoded",
          60_000,
        );
        const thumbnails = await page.$$eval("[data-testid=thumbnails] img", (images) =>
          (images as HTMLImageElement[]).map((img) => ({ layer: img.dataset.layer, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight })),
        );
        assert.ok(thumbnails.every((t) => t.complete && t.width > 0 && t.height > 0), JSON.stringify(thumbnails));
        assert.ok(thumbnails.every((t) => t.width <= 240 && Math.abs(t.width / t.height - 240 / 180) < 0.05), `thumbnails keep the frame's aspect: ${JSON.stringify(thumbnails)}`);
        // What each layer's images show: a layer whose every thumbnail is one flat colour shows nothing
        // (the demo scene's objects are in every view: depth varies, the mask has ids). Asserted at the end.
        const shades = await page.$$eval("[data-testid=thumbnails] img", (images) =>
          (images as HTMLImageElement[]).map((img) => {
            const canvas = document.createElement("canvas");
            canvas.width = img.naturalWidth;
            canvas.height = img.naturalHeight;
            const context = canvas.getContext("2d")!;
            context.drawImage(img, 0, 0);
            const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
            const values = new Set<number>();
            for (let i = 0; i < data.length; i += 4) values.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
            return { layer: img.dataset.layer ?? "", values: values.size };
          }),
        );

        // The run is live (the slow job holds a session, the flaky one is failed): the screenshot for the README.
        // Into the test's own folder; TABFARM_UPDATE_DOCS=1 writes README's picture (docs/dashboard.png) instead.
        const shot = process.env.TABFARM_UPDATE_DOCS === "1" ? path.join(REPO, "docs/dashboard.png") : path.join(dir, "dashboard.png");
        await page.screenshot({ path: shot, fullPage: true });
        assert.ok(fs.statSync(shot).size > 10_000, "the screenshot holds a picture");

        // Pause: the page shows it paused (the server's view), then resume.
        await page.click('[data-testid="pause"]');
        await until(() => document.querySelector('[data-testid="pause"]')?.textContent === "Resume" && document.querySelector(".badge")?.textContent === "paused", "the view shows paused");
        await page.click('[data-testid="pause"]');
        await until(() => document.querySelector('[data-testid="pause"]')?.textContent === "Pause" && document.querySelector(".badge")?.textContent === "running", "the view shows running again");

        // Retry the flaky job (now fixed): it leaves the failed list and completes.
        fs.writeFileSync(flakyFixed, "");
        await page.locator('[data-failed-job="flaky"] button', { hasText: "Retry" }).click();
        await until(() => document.querySelector('[data-failed-job="flaky"]') === null, "the flaky job leaves the failed list");
        await until(() => document.querySelector('[data-testid="done"]')?.textContent === "7", "the retried job completes", 90_000);

        // Release the slow job: every job is done, and the page says the run finished.
        fs.writeFileSync(slowRelease, "");
        await until(() => document.querySelector('[data-testid="done"]')?.textContent === "8", "all 8 jobs done", 90_000);
        assert.equal(await text("total"), "8");
        await until(() => document.querySelector('[data-testid="finished"]') !== null, "the page says the run finished");

        assert.equal(await exitCode(child, output, 90_000), 0, output());
        const log = output();
        assert.match(log, /^job flaky attempt 1 failed on session s\d+: bad\?\[2J\?thing$/m);
        assert.match(log, /dashboard 127\.0\.0\.1: job flaky put back in the queue/);
        assert.match(log, /dispatch paused by dashboard/);
        assert.match(log, /dispatch resumed by dashboard/);
        assert.equal(readFrames(out).length, 8 * 16);

        const status = await runFarmCli(["status", "--out", out], 60_000);
        assert.equal(status.code, 0, status.output);
        assert.match(status.output, /8 jobs — 8 done, 0 pending, 0 leased, 0 failed/);
        assert.match(status.output, /^frames written: 128$/m);
        assert.match(status.output, /^last run: started .* ended .*: 128 frames, 8 jobs done/m);
        const sessionLines = status.output.match(/^ {2}session s\d+ \(tab-\d\): \d+ frames, [\d.]+ frames\/s, \d+ jobs, \d+ failures, .+$/gm) ?? [];
        assert.ok(sessionLines.length >= 2, `a line per session:\n${status.output}`);
        const framesBySession = sessionLines.map((l) => Number(/: (\d+) frames,/.exec(l)![1]));
        assert.equal(framesBySession.reduce((a, b) => a + b, 0), 128, `the sessions' frames add up:\n${status.output}`);

        for (const layer of ["rgb", "depth", "mask"]) {
          const most = Math.max(...shades.filter((t) => t.layer === layer).map((t) => t.values));
          assert.ok(most > 1, `the ${layer} thumbnails show the frame, not one flat colour: ${JSON.stringify(shades)}`);
        }
      } finally {
        await browser?.close();
        await killGroup(child);
      }
    });
  });
});

/** Waits (in the page) until `condition` holds; fails naming `what`, with the page's text and `context()` (the farm's output). */
async function waitInPage(page: Page, condition: () => boolean, what: string, timeoutMs = 30_000, context: () => string = () => ""): Promise<void> {
  try {
    await page.waitForFunction(condition, undefined, { timeout: timeoutMs, polling: 100 });
  } catch (err) {
    const shown = await page.locator("body").innerText().catch(() => "(no page text)");
    throw new Error(`${what}: not within ${timeoutMs} ms (${(err as Error).message.split("\n")[0]}); the page shows:\n${shown}\n${context()}`);
  }
}

// ---------- access and commands, against an in-process run ----------

const openSockets: DashboardSocket[] = [];

function dashboardSocket(origin: string, auth: Record<string, unknown> = {}): DashboardSocket {
  // forceNew: a connection (and a message limit, a flood) of its own
  const socket: DashboardSocket = io(`${origin}${DASHBOARD_NAMESPACE}`, { auth, transports: ["websocket"], reconnection: false, forceNew: true, timeout: 10_000 });
  openSockets.push(socket);
  return socket;
}

function outcome(socket: ClientSocket, ms = 10_000): Promise<string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("no outcome"), ms);
    socket.once("connect", () => (clearTimeout(timer), resolve("connected")));
    socket.once("connect_error", (err) => (clearTimeout(timer), resolve(err.message)));
  });
}

function disconnected(socket: ClientSocket, ms = 10_000): Promise<string> {
  if (!socket.connected) return Promise.resolve("not connected");
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("still connected"), ms);
    socket.once("disconnect", (reason) => (clearTimeout(timer), resolve(reason)));
  });
}

/**
 * The views a dashboard socket gets (sent only when the run changed): `until` resolves with the latest
 * one if it satisfies `check`, else with the next one that does.
 */
function watchViews(socket: DashboardSocket) {
  let latest: RunView | undefined;
  const waiting = new Set<(view: RunView) => void>();
  socket.on("view", (view, received) => {
    if (typeof received === "function") received();
    latest = view;
    for (const w of waiting) w(view);
  });
  return {
    latest: () => latest,
    until(check: (view: RunView) => boolean, what: string, ms = 30_000): Promise<RunView> {
      if (latest && check(latest)) return Promise.resolve(latest);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => (waiting.delete(listener), reject(new Error(`no view with ${what} within ${ms} ms; the latest: ${JSON.stringify(latest)}`))), ms);
        const listener = (view: RunView) => {
          if (!check(view)) return;
          clearTimeout(timer);
          waiting.delete(listener);
          resolve(view);
        };
        waiting.add(listener);
      });
    },
  };
}

const command = (socket: DashboardSocket, name: string, ...args: unknown[]): Promise<CommandResult> =>
  (socket.timeout(10_000) as unknown as { emitWithAck(event: string, ...a: unknown[]): Promise<CommandResult> }).emitWithAck(name, ...args);

async function fetchStatus(url: string, init?: RequestInit): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

describe("dashboard access and commands", { timeout: 150_000 }, () => {
  after(() => {
    for (const s of openSockets) s.disconnect();
  });

  it("the page and its socket need the token; hostile commands are answered or cut, never thrown; a flood and a 17th dashboard are refused; the run completes", { timeout: 140_000 }, async () => {
    await withTempDir("tabfarm-dashboard-access-", async (out) => {
      const logs: string[] = [];
      let releaseHold!: () => void;
      const hold = new Promise<void>((resolve) => (releaseHold = resolve));
      let badFailures = 0;
      // A handler per job: "hold" keeps the run open until released; "bad" fails its first take only.
      const handler: JobRunner = async (session, job) => {
        if (job.id === "hold") await Promise.race([hold, new Promise((_, reject) => job.signal.addEventListener("abort", () => reject(job.signal.reason), { once: true }))]);
        if (job.id === "bad" && badFailures++ === 0) throw new Error("bad on purpose");
        session.set({ tag: "Scene", key: "s", children: [{ tag: "CameraView", key: "c", width: 160, height: 120 }] });
        await job.saveFrame(await session.grabRender({ key: "c" }));
      };
      const run: Run = await startRun({
        out, clientDir, handler, maxAttempts: 1, maxSessions: 2, width: 160, height: 120, log: (line) => logs.push(line),
        jobs: [{ id: "hold" }, { id: "bad" }, { id: "good-0" }, { id: "good-1" }],
      });
      run.finished.catch(() => {});
      const fakes: FakeSession[] = [];
      try {
        const origin = new URL(run.url).origin;
        const token = run.farm.token;
        assert.equal(run.dashboardUrl, `${origin}/dashboard?token=${encodeURIComponent(token)}`);

        // --- HTTP: the page only with the token, never under its own name, never framed or cached.
        assert.ok(fs.existsSync(path.join(clientDir, "dashboard.html")), "the page is built");
        const page = `${origin}/dashboard`;
        assert.equal((await fetchStatus(page)).status, 401);
        assert.equal((await fetchStatus(`${page}?token=wrong`)).status, 403);
        assert.equal((await fetchStatus(page, { headers: { authorization: "Bearer wrong" } })).status, 403);
        for (const [how, got] of [
          ["query", await fetchStatus(`${page}?token=${encodeURIComponent(token)}`)],
          ["bearer", await fetchStatus(page, { headers: { authorization: `Bearer ${token}` } })],
        ] as const) {
          assert.equal(got.status, 200, how);
          assert.match(got.headers.get("content-type") ?? "", /^text\/html/, how);
          assert.equal(got.headers.get("x-frame-options"), "DENY", how);
          assert.match(got.headers.get("cache-control") ?? "", /no-store/, how);
          assert.match(got.body, /<html/i, how);
        }
        assert.equal((await fetchStatus(`${page}?token=${encodeURIComponent(token)}`, { method: "HEAD" })).status, 200);
        assert.equal((await fetchStatus(`${origin}/dashboard.html`)).status, 404, "the file is not served under its own name");
        assert.equal((await fetchStatus(`${origin}/dashboard.html?token=${encodeURIComponent(token)}`)).status, 404, "not even with the token");
        assert.equal((await fetchStatus(`${page}?token=${encodeURIComponent(token)}`, { method: "POST", body: "x" })).status, 405);
        assert.equal((await fetchStatus(`${origin}/index.html`)).status, 200, "the tab page stays public");

        // --- The socket: refused without the token or with a wrong one; with it, the view and the chart at once.
        assert.match(await outcome(dashboardSocket(origin)), /missing access token/);
        assert.match(await outcome(dashboardSocket(origin, { token: "wrong" })), /wrong access token/);
        const cmd = dashboardSocket(origin, { token });
        const views = watchViews(cmd);
        const firstView = new Promise<RunView>((resolve) => cmd.once("view", resolve));
        const firstRate = new Promise<[RatePoint[], boolean]>((resolve) => cmd.once("rate", (points, reset) => resolve([points, reset])));
        assert.equal(await outcome(cmd), "connected");
        const [view, [points, reset]] = await Promise.all([firstView, firstRate]);
        assert.equal(view.counts.total, 4);
        assert.equal(view.out, out);
        assert.ok(Array.isArray(points));
        assert.equal(reset, true, "a new dashboard's chart starts with a reset");

        // --- At most MAX_DASHBOARDS: the 17th is refused; tabs (namespace /) keep their own limit meanwhile.
        const extra: DashboardSocket[] = [];
        for (let i = 1; i < MAX_DASHBOARDS; i++) {
          const s = dashboardSocket(origin, { token });
          extra.push(s);
          assert.equal(await outcome(s), "connected", `dashboard ${i + 1}`);
        }
        assert.equal(await outcome(dashboardSocket(origin, { token })), `tabfarm: server full (${MAX_DASHBOARDS} pages)`);
        fakes.push(await fakeSession({ port: run.farm.port, token, worker: "fake-1", answer: "png" }));
        fakes.push(await fakeSession({ port: run.farm.port, token, worker: "fake-2", answer: "png" }));
        await assert.rejects(fakeSession({ port: run.farm.port, token, worker: "fake-3", answer: "png" }), /server full \(2 sessions\)/, "tabs have their own limit");
        for (const s of extra) s.disconnect();
        let readmitted = "";
        for (let i = 0; i < 50 && readmitted !== "connected"; i++) {
          const s = dashboardSocket(origin, { token });
          readmitted = await outcome(s);
          s.disconnect();
          if (readmitted !== "connected") await delay(100);
        }
        assert.equal(readmitted, "connected", "once dashboards leave, a new one gets in");

        // --- The bad job fails (one attempt) while "hold" keeps the run open.
        const failedView = await views.until((v) => v.failed.some((f) => f.id === "bad") && v.counts.done === 2, "bad failed and good-0/1 done");
        assert.equal(failedView.failed.find((f) => f.id === "bad")?.error, "bad on purpose");

        // --- Hostile commands: answered {ok:false}, or ignored when they bring no ack; the socket stays.
        const raw = cmd as unknown as ClientSocket;
        raw.emit("retry", "bad"); // no ack: nothing to answer, nothing done
        raw.emit("pause", "not a function");
        for (const id of [42, { id: "bad" }, ["bad"], null, "", true, "x".repeat(10_000)]) {
          const result = await command(cmd, "retry", id);
          assert.deepEqual(result, { ok: false, error: "retry needs a job id (a string)" }, JSON.stringify(id).slice(0, 40));
        }
        const unknown = await command(cmd, "retry", "no-such-job");
        assert.equal(unknown.ok, false);
        assert.match((unknown as { error: string }).error, /"no-such-job" is not failed/);
        assert.equal((await command(cmd, "retry", "good-0")).ok, false, "a done job is not retried");
        raw.emit("error", "an event named error");
        raw.emit("drop_everything", 1);
        assert.ok(cmd.connected, "the socket survives hostile commands");
        assert.equal((await command(cmd, "resume")).ok, false, "resume when not paused");
        assert.equal((await command(cmd, "pause")).ok, true);
        const second = await command(cmd, "pause");
        assert.equal(second.ok, false, "pause twice");
        assert.match((second as { error: string }).error, /already paused/);
        assert.ok((await views.until((v) => v.paused !== null, "paused")).paused!.by.startsWith("dashboard"));
        assert.equal((await command(cmd, "resume")).ok, true);
        assert.equal((await command(cmd, "resume")).ok, false, "resume twice");

        // --- A 1 MB job id is over the 16 KB message limit of a dashboard socket: that socket is cut, the farm answers others.
        const big = dashboardSocket(origin, { token });
        assert.equal(await outcome(big), "connected");
        const bigGone = disconnected(big);
        big.emit("retry", "x".repeat(1024 * 1024), () => {});
        assert.notEqual(await bigGone, "still connected", "the socket that sent 1 MB is cut");
        assert.ok(cmd.connected);
        assert.equal((await command(cmd, "resume")).ok, false, "the farm still answers the other dashboard");

        // --- A command with binary data (a job id as bytes): refused by the decoder, that socket is cut.
        const binary = dashboardSocket(origin, { token });
        assert.equal(await outcome(binary), "connected");
        const binaryGone = disconnected(binary);
        binary.emit("retry", Buffer.from("bad") as never, () => {});
        assert.notEqual(await binaryGone, "still connected", "the socket that sent binary data is cut");
        assert.ok(logs.some((l) => /an event with binary data/.test(l)), logs.join("\n"));

        // --- A flood of commands: cut at the message rate limit (50 a second); the farm and its sessions go on.
        const flood = dashboardSocket(origin, { token });
        assert.equal(await outcome(flood), "connected");
        const floodGone = disconnected(flood);
        for (let i = 0; i < 400; i++) {
          if (i % 2) flood.emit("resume", () => {});
          else flood.emit("retry", `nope-${i}`, () => {});
        }
        assert.equal(await floodGone, "io server disconnect", "the flooding socket is disconnected");
        assert.ok(logs.some((l) => /disconnected .*: more than 50 messages a second/.test(l)), logs.join("\n"));
        assert.equal((await command(cmd, "resume")).ok, false, "the farm still answers");
        assert.equal((await fetchStatus(`${page}?token=${encodeURIComponent(token)}`)).status, 200);

        // --- Retry the bad job for real (it succeeds this time), release "hold": the run completes.
        // (ok: so the retry sent without an ack above did nothing)
        const retried = await command(cmd, "retry", "bad");
        assert.deepEqual(retried, { ok: true, message: "job bad is back in the queue" });
        assert.equal((await command(cmd, "retry", "bad")).ok, false, "a job retried already is not failed");
        assert.equal((await views.until((v) => !v.failed.some((f) => f.id === "bad"), "bad out of the failed list")).counts.failed, 0);
        releaseHold();
        const summary = await within(run.finished, 60_000, () => `the run did not finish:\n${logs.join("\n")}`);
        assert.deepEqual([summary.counts.done, summary.counts.failed], [4, 0]);
        assert.equal(readFrames(out).length, 4);
        assert.ok((await views.until((v) => v.finished, "finished", 10_000)).finished, "the dashboard is told the run finished");
        assert.ok(logs.some((l) => /dashboard .*: job bad put back in the queue/.test(l)));
        assert.ok(!logs.join("\n").includes(token), "the token is never logged");
      } finally {
        releaseHold();
        for (const f of fakes) f.close();
        await run.close();
      }
    });
  });
});

describe("the last view", { timeout: 120_000 }, () => {
  it("reaches every open dashboard (all jobs done, finished) when the run is closed right after it finishes", { timeout: 110_000 }, async () => {
    // The CLI closes the run as soon as it finishes: the final view must not be lost with the sockets.
    for (let round = 0; round < 4; round++) {
      await withTempDir("tabfarm-dashboard-last-", async (out) => {
        const run = await startRun({ out, clientDir, jobs: Array.from({ length: 6 }, (_, i) => ({ id: `j${i}` })), maxSessions: 2, width: 160, height: 120, log: () => {} }); // the fake sessions answer 160×120
        run.finished.catch(() => {});
        const fakes: FakeSession[] = [];
        const origin = new URL(run.url).origin;
        try {
          const sockets = [dashboardSocket(origin, { token: run.farm.token }), dashboardSocket(origin, { token: run.farm.token })];
          const watched = sockets.map(watchViews);
          for (const s of sockets) assert.equal(await outcome(s), "connected");
          // Busy sockets: thumbnails and chart points are on the way while the last view is sent.
          for (const worker of ["fake-1", "fake-2"]) fakes.push(await fakeSession({ port: run.farm.port, token: run.farm.token, worker, answer: "png" }));
          await within(run.finished, 60_000, () => "the run did not finish");
          await run.close();
          for (const [i, w] of watched.entries()) {
            const last = w.latest();
            assert.ok(last?.finished, `round ${round}, dashboard ${i}: the last view says finished: ${JSON.stringify(last?.counts)}`);
            assert.equal(last.counts.done, 6, `round ${round}, dashboard ${i}: ${JSON.stringify(last.counts)} ${JSON.stringify(last.failed)}`);
          }
        } finally {
          for (const f of fakes) f.close();
          await run.close();
        }
      });
    }
  });
});

describe("the page in a browser whose language is not a valid BCP 47 tag", { timeout: 90_000 }, () => {
  // Servers, containers and CI often run with LANG=C: headless Chromium there reported "en-US@posix"
  // (Chromium 143), a person's browser may report worse. The tag is forced in the page so the test does
  // not depend on which Chromium build turns LANG into which navigator.language.
  const BAD_TAGS = ["en-US@posix", "C", "", "de_DE.UTF-8", "@@"];
  it(`renders when navigator.language is any of ${JSON.stringify(BAD_TAGS)}`, { timeout: 80_000 }, async () => {
    await withTempDir("tabfarm-dashboard-lang-", async (out) => {
      const run = await startRun({ out, clientDir, jobs: [{ id: "one" }], log: () => {} });
      run.finished.catch(() => {});
      const browser = await chromium.launch({ executablePath: findBrowser().path, args: chromiumArgs("swiftshader"), env: { ...process.env, LANG: "C.UTF-8", LC_ALL: "C.UTF-8" } });
      try {
        for (const tag of BAD_TAGS) {
          const context = await browser.newContext();
          // A string, not a function: tsx's transform adds helpers a function body cannot reach in the page.
          const forced = JSON.stringify(tag);
          await context.addInitScript({
            content: `for (const [name, value] of [["language", ${forced}], ["languages", [${forced}]]]) Object.defineProperty(Navigator.prototype, name, { get: () => value, configurable: true });`,
          });
          const page = await context.newPage();
          const errors: string[] = [];
          page.on("pageerror", (err) => errors.push(err.message));
          await page.goto(run.dashboardUrl);
          assert.deepEqual(await page.evaluate(() => navigator.languages), [tag], "the forced language reached the page");
          await waitInPage(page, () => document.querySelector('[data-testid="total"]')?.textContent === "1", `the page shows the run (language ${JSON.stringify(tag)})`, 20_000).catch((err: Error) => {
            throw new Error(`${err.message}\npage errors: ${errors.join("; ")}`);
          });
          assert.deepEqual(errors, [], `language ${JSON.stringify(tag)}`);
          await context.close();
        }
      } finally {
        await browser.close();
        await run.close();
      }
    });
  });
});

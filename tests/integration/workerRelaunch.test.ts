// `farm worker --relaunch-after`: a remote worker relaunches its browsers as the local farm does
// (browserRelaunch.test.ts), with the signals over its control socket (protocol/worker.ts): the server
// tells it the frames each of its tabs rendered (`rendered`), and it asks the server to retire a tab
// between jobs (`retire`, acknowledged). Real processes, real Chromium, real sockets on 127.0.0.1:
// a `--serve-only` server and a worker whose browser is relaunched mid-run (every job done once, on its
// first attempt); a fake server that answers `retire` with junk, then not at all (the worker closes the
// tab and relaunches anyway); bad --relaunch-after values.
//
// Run: node --import tsx --test tests/integration/workerRelaunch.test.ts
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { Server, type Socket as ServerSocket } from "socket.io";
import { jobAttempts, spawnFarmCli, withTempDir } from "./cli.js";
import { checkWorkerRun, freePort, spawnWorker } from "./fixtures/worker/workerProcess.js";
import { exitCode, killGroup, waitForOutput } from "./fixtures/dashboard/farmProcess.js";
import { orbitJob, writeJobsFile } from "./fixtures/dashboard/jobs.js";
import { RetireRequestSchema, WORKER_NAMESPACE } from "../../protocol/worker.js";

const TOKEN = "worker-relaunch-token";


describe("remote workers relaunch their browsers (farm worker --relaunch-after)", { timeout: 400_000 }, () => {
  it("a worker's browser is relaunched between jobs through the server: every job done once, on its first attempt; its tabs rejoin under their names", { timeout: 180_000 }, async () => {
    await withTempDir("tabfarm-worker-relaunch-", async (dir) => {
      const out = path.join(dir, "out");
      const workerCwd = path.join(dir, "worker-cwd");
      fs.mkdirSync(workerCwd);
      const jobs = Array.from({ length: 12 }, (_, i) => orbitJob(`j${i}`, {}, { frames: 2, width: 64, height: 48 }));
      const port = await freePort();
      const server = spawnFarmCli(
        ["--serve-only", "--host", "127.0.0.1", "--port", String(port), "--token", TOKEN, "--out", out, "--jobs", writeJobsFile(dir, jobs), "--no-progress"],
        { detached: true },
      );
      let worker: ReturnType<typeof spawnWorker> | undefined;
      try {
        await waitForOutput(server.child, server.output, /tabfarm: serving http:\/\/127\.0\.0\.1:\d+/, 60_000);
        // Two tabs in one browser, relaunched every 4 frames (two jobs): 24 frames need several relaunches.
        worker = spawnWorker(
          ["--connect", `http://127.0.0.1:${port}`, "--token", TOKEN, "--sessions", "2", "--browsers", "1", "--name", "rw1", "--gl", "swiftshader", "--relaunch-after", "4"],
          workerCwd,
        );
        assert.equal(await exitCode(server.child, server.output, 150_000), 0, `${server.output()}\n--- worker:\n${worker.output()}`);
        assert.match(server.output(), /jobs: 12 done, 0 failed of 12/);
        assert.equal(await exitCode(worker.child, worker.output, 30_000), 0, worker.output());
        const output = worker.output();

        const relaunches = Number(/browsers relaunched (\d+) time\(s\) \(--relaunch-after 4\)/.exec(output)?.[1] ?? 0);
        assert.ok(relaunches >= 1, `the worker relaunched its browser:\n${output}`);
        assert.equal(output.match(/browser 0 relaunched in [\d.]+ s/g)?.length, relaunches, "each relaunch has its line");
        assert.match(output, /browser 0: its tabs rendered \d+ frames since it was launched; relaunching it once they finish their jobs/);
        // Drained through the server: a tab with a session was retired and recycled, not cut.
        assert.match(output, /tab \d finished its jobs before browser 0's relaunch/, output);
        assert.doesNotMatch(output, /did not answer the retire request|ignored a malformed|opening a replacement|gave up/, output);

        // The fresh browser's tabs were admitted under their names again, with their proofs.
        for (const tab of ["rw1.tab-0", "rw1.tab-1"]) {
          const joins = server.output().match(new RegExp(`joined \\(${tab.replace(".", "\\.")}\\)`, "g"))?.length ?? 0;
          assert.ok(joins >= 1 + relaunches, `${tab} joined once per browser (${joins} for ${relaunches} relaunch(es)):\n${server.output()}`);
        }
        assert.doesNotMatch(server.output(), /unverified:rw1|refused worker rw1|"retire" from worker/);

        // Nothing lost, nothing twice, no lease of a drained tab cut short.
        assert.deepEqual(jobAttempts(out).filter((a) => a !== 1), [], "every job done on its first attempt");
        await checkWorkerRun(out, jobs.map((j) => j.id), 24, workerCwd);
      } finally {
        await killGroup(server.child);
        if (worker) await killGroup(worker.child);
      }
    });
  });

  it("a server that answers `retire` with junk, then not at all: the worker closes the tab and relaunches anyway, saying so; its requests follow the protocol", { timeout: 90_000 }, async () => {
    await withTempDir("tabfarm-worker-relaunch-", async (dir) => {
      // A fake server: welcomes worker rw2, says its tab joined whenever the tab loads (it serves it nothing),
      // and tells it the tab renders a frame every 200 ms until the third browser's tab loaded.
      let control: ServerSocket | undefined;
      let pageLoads = 0;
      const retires: unknown[] = [];
      let feed: NodeJS.Timeout | undefined;
      const http = createServer((req, res) => {
        if ((req.url ?? "").startsWith("/?token=t&worker=rw2.tab-0&workerProof=proof-0")) {
          pageLoads++;
          control?.emit("tabJoined", { tab: "rw2.tab-0", webgl: true, renderer: "fake renderer" });
          if (pageLoads === 3) {
            clearInterval(feed);
            void control?.timeout(5000).emitWithAck("runOver", { reason: "fake run over" }).catch(() => {});
          }
        }
        res.writeHead(404).end();
      });
      const io = new Server(http, { transports: ["websocket"] });
      io.of(WORKER_NAMESPACE).on("connection", (socket) => {
        socket.on("hello", () => {
          control = socket;
          socket.emit("welcome", { worker: "rw2", proofs: ["proof-0"] });
          let sent = 0;
          feed = setInterval(() => (++sent > 300 ? clearInterval(feed) : socket.emit("rendered", { tab: "rw2.tab-0", frames: 1 })), 200);
        });
        socket.on("retire", (request: unknown, ack: (answer: unknown) => void) => {
          retires.push(request);
          if (retires.length === 1) ack("yes"); // not `true`: no retirement
          // Later ones: never answered.
        });
      });
      const port = await freePort();
      await new Promise<void>((resolve) => http.listen(port, "127.0.0.1", resolve));
      const worker = spawnWorker(["--connect", `http://127.0.0.1:${port}`, "--token", "t", "--sessions", "1", "--name", "rw2", "--gl", "swiftshader", "--relaunch-after", "4"], dir);
      try {
        assert.equal(await exitCode(worker.child, worker.output, 80_000), 0, worker.output());
        const output = worker.output();
        assert.equal(pageLoads, 3, `the tab loaded in three browsers:\n${output}`);
        assert.equal(retires.length, 2, output);
        for (const request of retires) assert.deepEqual(RetireRequestSchema.parse(request), { tab: "rw2.tab-0" });
        assert.match(output, /the server did not answer the retire request for rw2\.tab-0 within 10 s; closing the tab \(the server puts its job back\)/);
        assert.equal(output.match(/browser 0 relaunched in [\d.]+ s/g)?.length, 2, output);
        assert.match(output, /browsers relaunched 2 time\(s\) \(--relaunch-after 4\)/);
        assert.match(output, /the run is over \(fake run over\)/);
      } finally {
        clearInterval(feed);
        await killGroup(worker.child);
        await new Promise<void>((resolve) => io.close(() => resolve()));
      }
    });
  });

  it("bad --relaunch-after values are refused with an error naming the option, before anything starts", { timeout: 120_000 }, async () => {
    await withTempDir("tabfarm-worker-relaunch-", async (dir) => {
      for (const bad of ["-1", "2.5", "100000001", "1e3", "0x10", "ten", " ", ""]) {
        const run = spawnWorker(["--connect", "http://127.0.0.1:1", "--token", "t", "--relaunch-after", bad], dir);
        assert.equal(await exitCode(run.child, run.output, 30_000), 2, `--relaunch-after ${JSON.stringify(bad)}:\n${run.output()}`);
        assert.match(run.output(), /--relaunch-after must be a whole number of frames from 0 to 100000000/, `--relaunch-after ${JSON.stringify(bad)}`);
        assert.doesNotMatch(run.output(), /cannot reach the server/, "nothing was started");
      }
    });
  });
});

// `npm run farm -- worker`: remote workers as real processes on 127.0.0.1. A `--serve-only` server and
// a worker that renders the run (through a server restart), a worker with a wrong token, hostile
// control sockets, a hung remote tab that gets replaced, and a hostile server whose messages the
// worker drops.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { Server } from "socket.io";
import { io as connect, type Socket } from "socket.io-client";
import { readFrames, spawnFarmCli, withTempDir } from "./cli.js";
import { checkWorkerRun, freePort, spawnWorker } from "./fixtures/worker/workerProcess.js";
import { exitCode, killGroup, waitForOutput } from "./fixtures/dashboard/farmProcess.js";
import { orbitJob, writeJobsFile } from "./fixtures/dashboard/jobs.js";
import { WORKER_NAMESPACE, WorkerHelloSchema } from "../../protocol/worker.js";

const HANDLER = path.join(import.meta.dirname, "fixtures/worker/workerHandler.ts");
const TOKEN = "worker-test-token";

function serverArgs(port: number, out: string, jobsFile: string): string[] {
  return ["--serve-only", "--host", "127.0.0.1", "--port", String(port), "--token", TOKEN, "--out", out, "--jobs", jobsFile, "--handler", HANDLER, "--no-progress"];
}

const SIZE = { frames: 2, width: 64, height: 48 };

/** Resolves with what happened to a control socket: connected, or the refusal's message. */
function outcome(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    socket.once("connect", () => resolve("connected"));
    socket.once("connect_error", (err) => resolve(`refused: ${err.message}`));
  });
}

/** Resolves with what the server did to a control socket after it sent something: `refused` (with its reason) and/or a disconnect. */
function ending(socket: Socket, timeoutMs = 15_000): Promise<{ refused?: string; disconnected: boolean }> {
  return new Promise((resolve) => {
    let refused: string | undefined;
    socket.on("refused", (r: { reason?: string }) => (refused = r?.reason));
    const timer = setTimeout(() => resolve({ refused, disconnected: false }), timeoutMs);
    socket.once("disconnect", () => {
      clearTimeout(timer);
      resolve({ refused, disconnected: true });
    });
  });
}

const validHello = (name: string) => ({ name, instance: "instance-0123456789", tabs: 2, browser: "test", gl: "swiftshader", version: "1" });

describe("remote workers (farm worker)", { timeout: 480_000 }, () => {
  it("a worker renders a --serve-only server's run, reconnects through a server restart, exits 0 after run over, and writes nothing", { timeout: 180_000 }, async () => {
    await withTempDir("tabfarm-worker-", async (dir) => {
      const out = path.join(dir, "out");
      const workerCwd = path.join(dir, "worker-cwd");
      fs.mkdirSync(workerCwd);
      const go = path.join(dir, "go");
      // Half the jobs wait for `go`, created only after the restart: the run cannot be over before it.
      const jobs = Array.from({ length: 8 }, (_, i) => orbitJob(`j${i}`, i < 4 ? {} : { before: go }, SIZE));
      const jobsFile = writeJobsFile(dir, jobs);
      const port = await freePort();
      let server = spawnFarmCli(serverArgs(port, out, jobsFile), { detached: true });
      let worker: ReturnType<typeof spawnWorker> | undefined;
      try {
        await waitForOutput(server.child, server.output, /tabfarm: serving http:\/\/127\.0\.0\.1:\d+/, 60_000);
        worker = spawnWorker(["--connect", `http://127.0.0.1:${port}`, "--token", TOKEN, "--sessions", "2", "--browsers", "1", "--name", "w1"], workerCwd);
        await waitForOutput(server.child, server.output, /^worker w1 from 127\.0\.0\.1: 2 tab\(s\)/m, 60_000);
        await waitForOutput(server.child, server.output, /^session s\d+ joined \(w1\.tab-1\)/m, 60_000);
        for (const until = Date.now() + 60_000; readFrames(out).length < 8 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 200));
        assert.ok(readFrames(out).length >= 8, `the worker rendered the first jobs:\n${server.output()}\n${worker.output()}`);

        server.child.kill("SIGTERM");
        assert.equal(await exitCode(server.child, server.output, 30_000), 143, server.output());
        await waitForOutput(worker.child, worker.output, /the server is stopping \(stopped by SIGTERM\)/, 10_000);
        await waitForOutput(worker.child, worker.output, /lost the server at .*; reconnecting/, 10_000);
        await waitForOutput(worker.child, worker.output, /cannot reach the server at .*; retrying \(try 1;/, 20_000);

        server = spawnFarmCli(serverArgs(port, out, jobsFile), { detached: true });
        await waitForOutput(server.child, server.output, /^worker w1 from 127\.0\.0\.1: 2 tab\(s\)/m, 60_000);
        await waitForOutput(worker.child, worker.output, /connected to the server at/, 30_000);
        // The restarted server has a new proof secret: the tabs reload with its proofs and are admitted by name again.
        await waitForOutput(worker.child, worker.output, /tab \d reloads with the restarted server's proof; replacing it/, 30_000);
        await waitForOutput(server.child, server.output, /^session s\d+ joined \(w1\.tab-\d\)/m, 60_000);
        fs.writeFileSync(go, "");

        assert.equal(await exitCode(server.child, server.output, 120_000), 0, server.output());
        assert.match(server.output(), /jobs: 8 done, 0 failed of 8/);
        // A tab may get back to the restarted server before its worker does, with the old server's proof: it is
        // admitted unverified and given no work until the worker reloads it, so no attempt is spent on the reload.
        assert.doesNotMatch(server.output(), /job \S+ attempt \d+ failed/, "no attempt was spent on the restart");
        for (const [, id] of server.output().matchAll(/^session (s\d+) joined \(unverified:w1\.tab-\d\)/gm)) {
          assert.match(server.output(), new RegExp(`session ${id} \\(unverified:w1\\.tab-\\d\\) gets no work`), server.output());
        }
        assert.equal(await exitCode(worker.child, worker.output, 30_000), 0, worker.output());
        assert.match(worker.output(), /the run is over \(run finished\); closing the browsers/);
        assert.doesNotMatch(worker.output(), /ignored a malformed/);

        await checkWorkerRun(out, jobs.map((j) => j.id), 16, workerCwd);
      } finally {
        await killGroup(server.child);
        if (worker) await killGroup(worker.child);
      }
    });
  });

  it("a wrong token exits 2; hostile control sockets are refused; a hung remote tab and retired ones (--recycle-after) are replaced; the run completes", { timeout: 180_000 }, async () => {
    await withTempDir("tabfarm-worker-", async (dir) => {
      const out = path.join(dir, "out");
      const workerCwd = path.join(dir, "worker-cwd");
      fs.mkdirSync(workerCwd);
      const jobs = Array.from({ length: 6 }, (_, i) => ({ ...orbitJob(`j${i}`, {}, SIZE), ...(i === 1 ? { params: { hang: true } } : {}) }));
      const port = await freePort();
      // --recycle-after 2: every tab is retired after each job (2 frames), and its worker must replace it.
      const server = spawnFarmCli([...serverArgs(port, out, writeJobsFile(dir, jobs)), "--recycle-after", "2"], { detached: true });
      const sockets: Socket[] = [];
      let worker: ReturnType<typeof spawnWorker> | undefined;
      const origin = `http://127.0.0.1:${port}`;
      const control = (auth: object) => {
        const socket = connect(`${origin}${WORKER_NAMESPACE}`, { auth, transports: ["websocket"], reconnection: false, forceNew: true });
        sockets.push(socket);
        return socket;
      };
      try {
        await waitForOutput(server.child, server.output, /tabfarm: serving http:\/\/127\.0\.0\.1:\d+/, 60_000);

        // A wrong token: a clear message, exit 2; the server logs the refusal and serves on.
        const wrong = spawnWorker(["--connect", origin, "--token", "not-the-token", "--sessions", "1"], workerCwd);
        assert.equal(await exitCode(wrong.child, wrong.output, 60_000), 2, wrong.output());
        assert.match(wrong.output(), new RegExp(`tabfarm: the server at ${origin.replace(/\./g, "\\.")} refused the token \\(wrong access token\\)`));
        await waitForOutput(server.child, server.output, /refused a connection from 127\.0\.0\.1: wrong access token/, 10_000);

        // Control sockets without the token are refused before they are connected.
        assert.match(await outcome(control({})), /^refused: tabfarm: missing access token/);
        assert.match(await outcome(control({ token: "nope" })), /^refused: tabfarm: wrong access token/);

        // Hellos of every bad shape: each refused (with the field that is wrong) and disconnected.
        const bad: [unknown, RegExp][] = [
          [undefined, /bad hello/], [42, /bad hello/], ["hello", /bad hello/], [[], /bad hello/], [{}, /bad hello \(name/], [null, /bad hello/],
          [{ ...validHello("bad name!") }, /bad hello \(name/], [{ ...validHello("x".repeat(41)) }, /bad hello \(name/],
          [{ ...validHello("ok"), tabs: 0 }, /bad hello \(tabs/], [{ ...validHello("ok"), tabs: 1e9 }, /bad hello \(tabs/], [{ ...validHello("ok"), tabs: "2" }, /bad hello \(tabs/],
          [{ ...validHello("ok"), tabs: 1.5 }, /bad hello \(tabs/], [{ ...validHello("ok"), instance: "short" }, /bad hello \(instance/],
          [{ ...validHello("ok"), browser: { toString: 1 } }, /bad hello \(browser/], [{ ...validHello("ok"), version: "99" }, /protocol 99, this server 1/],
        ];
        for (const [hello, reason] of bad) {
          const socket = control({ token: TOKEN });
          assert.equal(await outcome(socket), "connected");
          const ended = ending(socket);
          socket.emit("hello", hello);
          const result = await ended;
          assert.ok(result.disconnected, `a hello of ${JSON.stringify(hello)} gets the socket disconnected`);
          assert.match(result.refused ?? "", reason, `hello ${JSON.stringify(hello)}`);
        }
        // A hello over the unauthenticated message limit (16 KB) cuts the socket; so does a flood of events.
        {
          const socket = control({ token: TOKEN });
          assert.equal(await outcome(socket), "connected");
          const ended = ending(socket);
          socket.emit("hello", { ...validHello("big"), browser: "x".repeat(64 * 1024) });
          assert.ok((await ended).disconnected, "an oversized hello gets the socket cut");
        }
        {
          const socket = control({ token: TOKEN });
          assert.equal(await outcome(socket), "connected");
          const ended = ending(socket);
          for (let i = 0; i < 300; i++) socket.emit("junk", i);
          assert.ok((await ended).disconnected, "a flood gets the socket disconnected");
          await waitForOutput(server.child, server.output, /disconnected 127\.0\.0\.1: more than 50 messages a second/, 10_000);
        }
        // A control socket that never says hello is dropped.
        {
          const socket = control({ token: TOKEN });
          assert.equal(await outcome(socket), "connected");
          assert.ok((await ending(socket, 20_000)).disconnected, "no hello: dropped");
        }
        assert.equal(server.child.exitCode, null, `the server is still running:\n${server.output()}`);

        // The real worker; the hang job's first attempt times out, so one of its tabs is dropped as hung.
        worker = spawnWorker(["--connect", `${origin}/?token=${TOKEN}`, "--sessions", "2", "--browsers", "1", "--name", "w2"], workerCwd);
        await waitForOutput(server.child, server.output, /^worker w2 from 127\.0\.0\.1: 2 tab\(s\)/m, 60_000);
        // Another process that says it is w2 is refused; the real w2 stays connected.
        {
          const impostor = control({ token: TOKEN });
          assert.equal(await outcome(impostor), "connected");
          const ended = ending(impostor);
          impostor.emit("hello", validHello("w2"));
          const result = await ended;
          assert.ok(result.disconnected);
          assert.match(result.refused ?? "", /another worker is connected as w2/);
        }
        await waitForOutput(worker.child, worker.output, /tab (\d) is hung; replacing it/, 90_000);
        const hungTab = /tab (\d) is hung; replacing it/.exec(worker.output())![1];
        await waitForOutput(worker.child, worker.output, new RegExp(`tab ${hungTab} closed; opening a replacement`), 30_000);

        assert.equal(await exitCode(server.child, server.output, 120_000), 0, server.output());
        assert.match(server.output(), /jobs: 6 done, 0 failed of 6/);
        const joined = server.output().match(new RegExp(`joined \\(w2\\.tab-${hungTab}\\)`, "g")) ?? [];
        assert.ok(joined.length >= 2, `the hung tab's replacement joined under its name:\n${server.output()}`);
        assert.equal(await exitCode(worker.child, worker.output, 30_000), 0, worker.output());
        assert.match(worker.output(), /the run is over/);
        assert.match(worker.output(), /tab \d rendered [2-9] frames; replacing it/, "--recycle-after applies to a remote worker's tabs");
        assert.deepEqual(fs.readdirSync(workerCwd), [], "no worker wrote anything where it ran");
        assert.equal(new Set(readFrames(out).map((f) => f.job)).size, 6);
      } finally {
        for (const socket of sockets) socket.close();
        await killGroup(server.child);
        if (worker) await killGroup(worker.child);
      }
    });
  });

  it("a hostile server: malformed control messages are dropped and logged, texts stripped; bad --connect/--name exit 2", { timeout: 60_000 }, async () => {
    await withTempDir("tabfarm-worker-", async (dir) => {
      // Options checked before anything starts.
      for (const [args, message] of [
        [["--connect", "ftp://127.0.0.1:1", "--token", "t"], /starts with http:\/\/ or https:\/\//],
        [["--connect", "127.0.0.1:8080", "--token", "t"], /give the server's URL with its scheme, e\.g\. http:\/\/HOST:PORT/],
        [["--connect", "http://127.0.0.1:1/some/path", "--token", "t"], /no path/],
        [["--connect", "http://127.0.0.1:1"], /access token is missing/],
        [["--connect", "http://127.0.0.1:1", "--token", "t", "--name", "no.dots"], /--name "no\.dots": a worker name is/],
        [["--connect", "http://127.0.0.1:1", "--token", "t", "--sessions", "0"], /--sessions must be a whole number from 1 to 256/],
      ] as [string[], RegExp][]) {
        const run = spawnWorker(args, dir);
        assert.equal(await exitCode(run.child, run.output, 30_000), 2, `${args.join(" ")}:\n${run.output()}`);
        assert.match(run.output(), message);
      }

      // Nobody at the address: the worker retries, printing each try, and gives up after --wait seconds.
      {
        const port = await freePort();
        const run = spawnWorker(["--connect", `http://127.0.0.1:${port}`, "--token", "t", "--sessions", "1", "--wait", "3"], dir);
        assert.equal(await exitCode(run.child, run.output, 45_000), 2, run.output());
        assert.match(run.output(), /cannot reach the server at http:\/\/127\.0\.0\.1:\d+ \(.+\); retrying \(try 1; waiting up to 3 s\)/);
        assert.match(run.output(), /tabfarm: the server at http:\/\/127\.0\.0\.1:\d+ has been unreachable for 3 s \(--wait\); the last try: .+/);
        assert.doesNotMatch(run.output(), /WebGL renderer/, "no tab is launched before the server has welcomed the worker");
      }

      // A server that answers the hello with junk, then ends the run with control characters in its reason.
      const http = createServer();
      const io = new Server(http, { transports: ["websocket"] });
      const hellos: unknown[] = [];
      io.of(WORKER_NAMESPACE).on("connection", (socket) => {
        socket.on("hello", async (hello: unknown) => {
          hellos.push(hello);
          socket.emit("welcome", { worker: "someone-else", proofs: ["abc", "def"] });
          socket.emit("welcome", { worker: "w3", proofs: "not a list" });
          socket.emit("welcome", 42);
          socket.emit("tabJoined", { tab: "w3.tab-0", webgl: "yes", renderer: "x" });
          socket.emit("recycle", { tab: "../../etc", reason: "x", fault: true });
          socket.emit("recycle", null);
          // `rendered` of every bad shape (--relaunch-after counts): dropped, each named.
          for (const bad of [null, 42, "w3.tab-0", [], {}, { tab: "w3.tab-0" }, { tab: "w3.tab-0", frames: 0 }, { tab: "w3.tab-0", frames: -4 },
            { tab: "w3.tab-0", frames: 1.5 }, { tab: "w3.tab-0", frames: "2" }, { tab: "w3.tab-0", frames: 1e12 }, { tab: "w3.tab-0", frames: Infinity },
            { tab: "tab-0", frames: 2 }, { tab: "../../etc", frames: 2 }, { tab: "x".repeat(5000), frames: 2 }, { tab: 7, frames: 2 }]) socket.emit("rendered", bad);
          // A flood of them: the log stays a few lines a minute.
          for (let i = 0; i < 2000; i++) socket.emit("rendered", { tab: "w3.tab-0", frames: -i });
          socket.emit("refused", { reason: 7 });
          socket.emit("stopping", "junk");
          await socket.timeout(5000).emitWithAck("runOver", { reason: "done\u001b[2J\rnow" }).catch(() => {});
        });
      });
      const port = await freePort();
      await new Promise<void>((resolve) => http.listen(port, "127.0.0.1", resolve));
      try {
        const worker = spawnWorker(["--connect", `http://127.0.0.1:${port}`, "--token", "t", "--sessions", "2", "--name", "w3", "--wait", "30"], dir);
        assert.equal(await exitCode(worker.child, worker.output, 45_000), 0, worker.output());
        const output = worker.output();
        assert.match(output, /ignored a "welcome" for someone-else with 2 proof\(s\)/);
        assert.match(output, /ignored a malformed "welcome" from the server \(proofs: /);
        assert.match(output, /ignored a malformed "tabJoined" from the server \(webgl: /);
        assert.match(output, /ignored a malformed "recycle" from the server \(tab: /);
        assert.match(output, /ignored a malformed "refused" from the server \(reason: /);
        assert.equal(output.match(/ignored a malformed "rendered" from the server \(/g)?.length, 20, `the bad "rendered" are dropped and logged, 20 a minute at most:\n${output}`);
        assert.match(output, /further 'rendered' messages are not shown for up to a minute/, "the log says when it holds lines back");
        assert.match(output, /ignored a malformed "rendered" from the server \(frames: /);
        assert.match(output, /ignored a malformed "rendered" from the server \(tab: /);
        assert.match(output, /ignored a malformed "stopping"/);
        assert.match(output, /the run is over \(done\?\[2J\?now\)/);
        assert.doesNotMatch(output, /\u001b|\r/, "no control character from the server reaches the terminal");
        assert.doesNotMatch(output, /WebGL renderer/, "no valid welcome: no tab was launched");
        assert.equal(hellos.length, 1);
        assert.ok(WorkerHelloSchema.safeParse(hellos[0]).success, `the worker's hello follows the protocol: ${JSON.stringify(hellos[0])}`);
      } finally {
        await new Promise<void>((resolve) => io.close(() => resolve()));
      }
    });
  });

  it("SIGTERM stops a worker: its browsers are closed and it exits 143", { timeout: 60_000 }, async () => {
    await withTempDir("tabfarm-worker-", async (dir) => {
      // A server that welcomes the worker and records what its tabs load (it serves them nothing).
      const pageRequests: string[] = [];
      const http = createServer((req, res) => {
        pageRequests.push(req.url ?? "");
        res.writeHead(404).end();
      });
      const io = new Server(http, { transports: ["websocket"] });
      io.of(WORKER_NAMESPACE).on("connection", (socket) => socket.on("hello", () => socket.emit("welcome", { worker: "w4", proofs: ["proof-0", "proof-1"] })));
      const port = await freePort();
      await new Promise<void>((resolve) => http.listen(port, "127.0.0.1", resolve));
      const worker = spawnWorker(["--connect", `http://127.0.0.1:${port}`, "--token", "t", "--sessions", "2", "--name", "w4"], dir);
      try {
        // Both tabs' page requests (a tab's favicon request may come before the other tab's page).
        const tabPages = () => pageRequests.filter((url) => url.startsWith("/?token=t&worker=w4.tab-")).sort();
        for (const until = Date.now() + 40_000; tabPages().length < 2 && Date.now() < until && worker.child.exitCode === null; ) await new Promise((r) => setTimeout(r, 100));
        const tabs = tabPages();
        assert.deepEqual(tabs, ["/?token=t&worker=w4.tab-0&workerProof=proof-0&preview=off", "/?token=t&worker=w4.tab-1&workerProof=proof-1&preview=off"], worker.output());
        worker.child.kill("SIGTERM");
        assert.equal(await exitCode(worker.child, worker.output, 30_000), 143, worker.output());
        assert.match(worker.output(), /tabfarm worker: stopped by SIGTERM/);
        // The worker led its process group: its Chromium processes were in it, and none is left.
        let left = true;
        for (const until = Date.now() + 10_000; left && Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
          try {
            process.kill(-worker.child.pid!, 0);
          } catch {
            left = false;
          }
        }
        assert.equal(left, false, "no browser process of the worker is left");
      } finally {
        await killGroup(worker.child);
        await new Promise<void>((resolve) => io.close(() => resolve()));
      }
    });
  });
});

// Fault injection against a real in-process farm with real headless Chromium tabs: a crashed tab, a
// hung tab, a dead browser process, a dataset that refuses writes, a session that disconnects in the
// middle of an upload. Each test asserts the run ends with the dataset exactly right and that the
// specific recovery happened (from the run's log, the pool's counters and the queue's own table).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { WebSocket } from "ws";
import { startFarm, checkDataset, readFrames, tempFiles, type FarmUnderTest } from "./farmHarness.js";
import { DatasetWriteError } from "../../server/dataset/DatasetWriter.js";
import { canMountTmpfs, fillDisk, mountTmpfs, unmount } from "./fullDisk.js";
import { writeManifest } from "../../server/dataset/openDataset.js";

const SIZE = { width: 160, height: 120 };
/** How dispatch reports storage refusing writes: the dataset's files, or the queue's own SQLite file. */
const STORAGE_FAILED = /^(dataset write failed|queue write failed \(\w+\)): /;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The live session id of the tab whose page says ?worker=`worker`. */
function sessionOf(farm: FarmUnderTest, worker: string): string {
  const session = [...farm.run.farm.sessions.values()].find((s) => s.info.worker === worker && !s.closed);
  assert.ok(session, `a live session for ${worker}`);
  return session.id;
}

/** Runs `body` with a fresh farm and always closes it (browsers, server, temp folder). */
async function withFarm(options: Parameters<typeof startFarm>[0], body: (farm: FarmUnderTest) => Promise<void>): Promise<void> {
  const farm = await startFarm(options);
  try {
    await body(farm);
  } catch (err) {
    // The whole log is the best clue to what went wrong.
    if (err instanceof Error) err.message += `\n--- farm log ---\n${farm.logs.join("\n")}`;
    throw err;
  } finally {
    await farm.close();
  }
}

describe("faults", { timeout: 400_000 }, () => {
  it("a tab whose renderer crashes mid-run: its lease goes back at once, the pool opens a replacement, the run completes", { timeout: 45_000 }, async () => {
    // One tab: the run can only complete if the replacement works.
    await withFarm({ tabs: 1, frames: 40, framesPerJob: 4 }, async (farm) => {
      await farm.waitForFrames(8);
      const victim = sessionOf(farm, "tab-0");
      assert.equal(farm.pool.openTabs, 1, "tab 0 is open");
      const crashedAt = performance.now();
      farm.pool.crash(0);

      await farm.waitForLog(/^tab 0 crashed; opening a replacement$/, 15_000);
      const released = await farm.waitForLog(new RegExp(`^session ${victim} left holding \\d+ job\\(s\\); returned to the queue$`), 15_000);
      const releasedAfterMs = performance.now() - crashedAt;
      assert.ok(releasedAfterMs < 10_000, `leases returned at once (${releasedAfterMs.toFixed(0)} ms), not after the 30 s lease TTL: ${released}`);
      const crashLine = farm.logs.findIndex((l) => /^tab 0 crashed/.test(l));
      const replacement = await farm.waitForLog(/^session (s\d+) joined \(tab-0\)/, 20_000, crashLine);
      const replacementId = /^session (s\d+)/.exec(replacement)![1];

      const summary = await farm.finishedWithin(60_000);
      assert.ok(farm.pool.replacements >= 1, `pool.replacements = ${farm.pool.replacements}`);
      assert.equal(summary.counts.done, farm.jobs.length);
      assert.equal(summary.counts.failed, 0);
      assert.equal(summary.frames, 40);
      const records = checkDataset(farm.out, farm.expectedIds, SIZE);
      assert.ok(records.some((r) => r.session === replacementId), `the replacement tab (${replacementId}) rendered frames`);

      // The job the crashed tab held was taken again (its first attempt counted) and finished by the replacement.
      const rows = farm.jobRows();
      const interrupted = rows.filter((r) => r.error_message === `session ${victim} disconnected`);
      assert.ok(interrupted.length >= 1, `a job was released by the crashed session: ${JSON.stringify(rows)}`);
      for (const row of interrupted) {
        assert.equal(row.state, "done");
        assert.equal(row.attempts, 2, `${row.id} took two attempts`);
        const lines = records.filter((r) => r.job === row.id);
        assert.ok(lines.every((r) => r.attempt === 2 && r.session !== victim), `${row.id}'s lines are from its second attempt`);
      }
    });
  });

  it("a hung tab: the grab times out, the job is put back with its attempt counted, the tab is replaced, the run completes", { timeout: 60_000 }, async () => {
    // One tab: the run can only complete if the replacement works. The grab timeout is the whole run's, so it
    // leaves a slow machine room for a grab queued behind others; the page's endless loop is caught either way.
    await withFarm({ tabs: 1, frames: 40, framesPerJob: 4, grabTimeoutMs: 4000 }, async (farm) => {
      await farm.waitForFrames(8);
      const victim = sessionOf(farm, "tab-0");
      assert.equal(farm.pool.openTabs, 1, "tab 0 is open");
      const hungFrom = farm.logs.length; // what follows the hang, not an earlier drop
      // The evaluate returns at once; the loop starts on the page's next task and never ends.
      await farm.pool.evaluate(0, "setTimeout(() => { for (;;) {} }, 0)");

      const failed = await farm.waitForLog(new RegExp(`^job (\\S+) attempt 1 failed on session ${victim}: .*got no answer within 4000 ms$`), 20_000, hungFrom);
      const jobId = /^job (\S+) attempt/.exec(failed)![1];
      await farm.waitForLog(/^tab 0 is hung; replacing it$/, 5_000, hungFrom);
      const closedLine = hungFrom + farm.logs.slice(hungFrom).findIndex((l) => /^tab 0 is hung/.test(l));
      await farm.waitForLog(/^tab 0 closed; opening a replacement$/, 15_000, closedLine);
      const replacement = await farm.waitForLog(/^session (s\d+) joined \(tab-0\)/, 20_000, closedLine);
      const replacementId = /^session (s\d+)/.exec(replacement)![1];

      const summary = await farm.finishedWithin(60_000);
      assert.ok(farm.pool.replacements >= 1, `pool.replacements = ${farm.pool.replacements}`);
      assert.equal(summary.counts.done, farm.jobs.length);
      assert.equal(summary.counts.failed, 0);
      const records = checkDataset(farm.out, farm.expectedIds, SIZE);
      assert.ok(records.some((r) => r.session === replacementId), `the replacement tab (${replacementId}) rendered frames`);

      const row = farm.jobRows().find((r) => r.id === jobId)!;
      assert.equal(row.state, "done");
      assert.ok(row.attempts >= 2, `${jobId} was put back with its attempt counted (attempts ${row.attempts})`);
      const lines = records.filter((r) => r.job === jobId);
      assert.ok(lines.length > 0 && lines.every((r) => r.attempt >= 2 && r.session !== victim), `${jobId}'s lines come from a later attempt: ${JSON.stringify(lines.map((r) => [r.attempt, r.session]))}`);
    });
  });

  // What the browser-death test saw, for the accounting check after it.
  let browserDeath: { replacements: number; logs: string[] } | undefined;

  it("the browser process dies: the pool relaunches it with its tabs, leases go back, the run completes", { timeout: 50_000 }, async () => {
    let chromiumPids: { pid: number; start: string }[] = [];
    await withFarm({ frames: 120, framesPerJob: 4 }, async (farm) => {
      await farm.waitForFrames(8);
      const browser = farm.pool.browser(0);
      assert.ok(browser, "browser 0 is running");
      const cdp = await browser.newBrowserCDPSession();
      const info = (await cdp.send("SystemInfo.getProcessInfo")) as { processInfo: { type: string; id: number }[] };
      const main = info.processInfo.find((p) => p.type === "browser");
      assert.ok(main, `a browser process in ${JSON.stringify(info.processInfo)}`);
      chromiumPids = info.processInfo.flatMap((p) => {
        const stat = procStat(p.id);
        return stat ? [{ pid: p.id, start: stat.start }] : [];
      });
      const sessionsBefore = [...farm.run.farm.sessions.keys()];
      process.kill(main.id, "SIGKILL");

      await farm.waitForLog(/^browser process died; relaunching it with 2 tab\(s\)$/, 10_000);
      // Every session of the dead browser left; whichever held a job gave it back.
      for (const id of sessionsBefore) await farm.waitForLog(new RegExp(`^session ${id} left \\(`), 10_000);
      assert.ok(farm.logged(/left holding \d+ job\(s\); returned to the queue$/).length >= 1, "the dead browser's leases went back");

      const summary = await farm.finishedWithin(60_000);
      browserDeath = { replacements: farm.pool.replacements, logs: [...farm.logs] };
      assert.notEqual(farm.pool.browser(0), browser, "a new browser was launched");
      assert.ok(farm.pool.replacements >= 1);
      assert.equal(summary.counts.done, farm.jobs.length);
      assert.equal(summary.counts.failed, 0);
      checkDataset(farm.out, farm.expectedIds, SIZE);
      const joined = farm.logged(/^session s\d+ joined/).length;
      assert.ok(joined >= 4, `the relaunched browser's tabs joined (${joined} joins)`);
    });
    // The dead browser's own children (renderers, GPU, utility) must not outlive it.
    await sleep(500);
    const orphans = chromiumPids.filter((p) => stillRunning(p.pid, p.start));
    for (const { pid } of orphans) process.kill(pid, "SIGKILL"); // the very processes this test's pool started
    assert.deepEqual(orphans.map((p) => p.pid), [], "no Chromium process of the killed browser outlived it");
  });

  // Regression test (fixed bug in harness/TabPool.ts, openTab's lost()): when the browser process dies, Playwright delivers each
  // page's "close" before the browser's "disconnected", and browser.isConnected() is still true then,
  // so lost() tries to open a replacement tab in the dead browser for every tab: each fails with
  // "could not open a replacement: browser.newContext: Target page, context or browser has been
  // closed" and is counted in pool.replacements, on top of the one relaunch that really reopens them.
  it("a browser's death is one replacement: its tabs are not reopened in the dead browser", (t) => {
    if (!browserDeath) return t.skip("the browser-death test did not get that far");
    assert.deepEqual(browserDeath.logs.filter((l) => /could not open a replacement/.test(l)), [], "no failed attempt to reopen tabs in the dead browser");
    assert.equal(browserDeath.replacements, 1, "one browser death counts one replacement (the relaunch), not one more per tab");
  });

  it("a dataset write fails: logged once, dispatch pauses without burning attempts, resumes when writable, every frame exactly once", { timeout: 45_000 }, async () => {
    const blocker = (out: string) => path.join(out, "images");
    await withFarm({ frames: 24, framesPerJob: 4, prepareOut: (out) => (writeManifest(out), fs.writeFileSync(blocker(out), "not a folder")) }, async (farm) => {
      await farm.waitForLog(/^dataset write failed: /, 20_000);
      // The other tab's job goes back once its grab under way answers (on a slow machine its first grab, with
      // the shaders compiling, can take seconds): wait for that, bounded, then hold the pause for ~3 s.
      const unleased = () => farm.jobRows().every((r) => r.state === "pending" && r.attempts === 0);
      for (let i = 0; i < 80 && !unleased(); i++) {
        assert.equal(farm.frames(), 0, "no frames while paused");
        await sleep(250);
      }
      // Paused: nothing written, nothing leased, no attempt counted.
      for (let i = 0; i < 6; i++) {
        await sleep(500);
        assert.equal(farm.frames(), 0, "no frames while paused");
        const rows = farm.jobRows();
        assert.deepEqual(rows.filter((r) => r.state !== "pending").map((r) => `${r.id}:${r.state}`), [], "no job is taken while paused");
        assert.deepEqual(rows.filter((r) => r.attempts !== 0).map((r) => `${r.id}:${r.attempts}`), [], "released jobs' attempts are not counted");
      }
      assert.equal(readFrames(farm.out).length, 0);

      fs.rmSync(blocker(farm.out));
      await farm.waitForLog(/dispatch resumed$/, 10_000);
      const summary = await farm.finishedWithin(30_000);
      assert.equal(summary.counts.done, farm.jobs.length);
      assert.equal(summary.counts.failed, 0);
      assert.equal(farm.logged(/dataset write failed/).length, 1, "the write error is logged exactly once");
      const records = checkDataset(farm.out, farm.expectedIds, SIZE);
      assert.deepEqual(records.filter((r) => r.attempt !== 1).map((r) => `${r.job}/${r.frame}:${r.attempt}`), [], "every frame comes from attempt 1");
      assert.deepEqual(farm.jobRows().filter((r) => r.attempts !== 1).map((r) => `${r.id}:${r.attempts}`), [], "every job took exactly one counted attempt");
      assert.deepEqual(await farm.run.queue.failures(), []);
    });
  });

  it("a dataset that stays unwritable past maxWriteStallMs fails the run naming the dataset, with no job failed", { timeout: 30_000 }, async () => {
    await withFarm({ frames: 24, framesPerJob: 4, maxWriteStallMs: 3000, prepareOut: (out) => (writeManifest(out), fs.writeFileSync(path.join(out, "images"), "not a folder")) }, async (farm) => {
      const started = performance.now();
      await assert.rejects(farm.finishedWithin(20_000), (err: Error) => {
        assert.ok(err instanceof DatasetWriteError, `a DatasetWriteError, got ${err}`);
        assert.match(err.message, /dataset/);
        assert.ok(err.message.includes(path.basename(farm.out)), `the message names the dataset folder: ${err.message}`);
        return true;
      });
      const waited = performance.now() - started;
      assert.ok(waited >= 3000, `gave up only after maxWriteStallMs (${waited.toFixed(0)} ms)`);
      assert.equal(farm.logged(/dataset write failed/).length, 1);
      const counts = await farm.run.queue.counts();
      assert.equal(counts.failed, 0);
      assert.equal(counts.leased, 0);
      assert.equal(counts.pending, farm.jobs.length);
      assert.deepEqual(await farm.run.queue.failures(), []);
      assert.deepEqual(farm.jobRows().filter((r) => r.attempts !== 0).map((r) => `${r.id}:${r.attempts}`), [], "no attempt burned");
      assert.equal(readFrames(farm.out).length, 0);
    });
  });

  it("the disk fills mid-run (a real full tmpfs under --out): dispatch pauses, the queue's failing writes included; once space returns every session renders again and the run completes", { timeout: 90_000 }, async (t) => {
    if (!canMountTmpfs()) return t.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)");
    await withFarm({ frames: 64, framesPerJob: 4, prepareOut: (out) => mountTmpfs(out, "12m") }, async (farm) => {
      try {
        await farm.waitForFrames(8);
        const filler = path.join(farm.out, "filler");
        fillDisk(filler);
        const failed = await farm.waitForLog(STORAGE_FAILED, 20_000);
        // Paused: no job completes and none is taken while the disk is full.
        await sleep(1000);
        const framesAtPause = farm.frames();
        for (let i = 0; i < 6; i++) {
          await sleep(500);
          assert.equal(farm.frames(), framesAtPause, "no job completes while the disk is full");
        }
        assert.deepEqual(farm.jobRows().filter((r) => r.state === "failed").map((r) => r.id), [], "no job failed");

        const linesAtResume = readFrames(farm.out).length;
        const liveSessions = [...farm.run.farm.sessions.values()].filter((s) => !s.closed).map((s) => s.id);
        assert.equal(liveSessions.length, 2, "both tabs are still connected");
        fs.rmSync(filler);
        await farm.waitForLog(/dispatch resumed$/, 10_000);
        const summary = await farm.finishedWithin(60_000);
        assert.equal(summary.counts.done, farm.jobs.length);
        assert.equal(summary.counts.failed, 0);
        assert.equal(farm.logged(STORAGE_FAILED).length, 1, `the write error is logged once: ${failed}`);
        const records = checkDataset(farm.out, farm.expectedIds, SIZE);
        // Every session that was live during the pause took jobs again after it (their loops did not die).
        const renderedAfter = new Set(records.slice(linesAtResume).map((r) => r.session));
        for (const id of liveSessions) assert.ok(renderedAfter.has(id), `session ${id} rendered after the resume (${[...renderedAfter]})`);
        // The pause cost no job an attempt: the ones it interrupted went back uncounted.
        assert.deepEqual(farm.jobRows().filter((r) => r.attempts !== 1).map((r) => `${r.id}:${r.attempts}`), [], "every job took exactly one counted attempt");
      } finally {
        await farm.run.close();
        unmount(farm.out);
      }
    });
  });

  it("a session that disconnects mid-upload: nothing written for the frame, the job goes back, a real tab finishes the run", { timeout: 45_000 }, async () => {
    await withFarm({ frames: 24, framesPerJob: 4, tabs: 1, launchTabs: false }, async (farm) => {
      const fake = await fakeSessionAbortingUpload(farm.run.farm.port, farm.run.farm.token);
      const joined = await farm.waitForLog(/^session (s\d+) joined \(fake\)/, 5_000);
      const fakeId = /^session (s\d+)/.exec(joined)![1];
      const upload = await fake.aborted; // the first grab: header sent, socket closed before the image
      assert.equal(upload.request.format, "png");

      await farm.waitForLog(new RegExp(`^session ${fakeId} left holding 1 job\\(s\\); returned to the queue$`), 10_000);
      const rows = farm.jobRows();
      const taken = rows.filter((r) => r.owner === fakeId);
      assert.equal(taken.length, 1, `the fake session took one job: ${JSON.stringify(rows)}`);
      const jobId = taken[0].id;
      assert.equal(taken[0].state, "pending", "the job is back in the queue");
      assert.equal(taken[0].attempts, 1);
      assert.equal(fs.existsSync(path.join(farm.out, "images", jobId, "000000.png")), false, "no image for the aborted upload");
      assert.equal(readFrames(farm.out).filter((r) => r.job === jobId).length, 0, "no frames.jsonl line for it");
      assert.deepEqual(tempFiles(farm.out), [], "no temp files");

      await farm.startTabs();
      const summary = await farm.finishedWithin(40_000);
      assert.equal(summary.counts.done, farm.jobs.length);
      assert.equal(summary.counts.failed, 0);
      const records = checkDataset(farm.out, farm.expectedIds, SIZE);
      const lines = records.filter((r) => r.job === jobId);
      assert.ok(lines.every((r) => r.attempt === 2 && r.session !== fakeId), "the job was re-run by the real tab");
    });
  });

  // Regression test (fixed bug in server/session/Farm.ts, close()): io.close() waits for the HTTP server to close, which waits
  // for every upgraded (websocket) socket to end; ws gives a peer 30 s to answer the close handshake,
  // and closeAllConnections() (called only afterwards) does not cover upgraded sockets anyway. So one
  // frozen peer — a tab opened by hand on a machine that then froze — holds run.close() for 30 s.
  it("a peer that never answers the websocket close handshake does not hold run.close()", { timeout: 45_000 }, async () => {
    await withFarm({ frames: 8, framesPerJob: 4, tabs: 1, launchTabs: false }, async (farm) => {
      const peer = await frozenPeer(farm.run.farm.port, farm.run.farm.token);
      try {
        await farm.waitForLog(/^session s\d+ has no WebGL \(frozen\)/, 5_000);
        await farm.startTabs();
        const summary = await farm.finishedWithin(30_000);
        assert.equal(summary.counts.done, farm.jobs.length);
        checkDataset(farm.out, farm.expectedIds, SIZE);
        const started = performance.now();
        const closedInTime = await Promise.race([farm.run.close().then(() => true), sleep(5_000).then(() => false)]);
        assert.ok(closedInTime, `run.close() still waiting after ${((performance.now() - started) / 1000).toFixed(1)} s on a peer that never answers the close handshake`);
      } finally {
        peer.destroy(); // lets a held close() finish
      }
    });
  });
});

/** A process's identity: its start time (in clock ticks since boot) and state, from /proc; null when gone. */
function procStat(pid: number): { start: string; state: string } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields 3… of proc(5)
    return { state: fields[0], start: fields[19] };
  } catch {
    return null;
  }
}

/** Still running (not a zombie) and still the same process (pids get reused). */
function stillRunning(pid: number, start: string): boolean {
  const now = procStat(pid);
  return now !== null && now.start === start && now.state !== "Z";
}

interface AbortedUpload {
  ackId: number;
  seq: number;
  request: { key: string; format: string };
}

/**
 * A session spoken by hand over socket.io's wire protocol (engine.io v4 over a bare websocket): it
 * says hello, takes a job, answers the first grab with only the header of a binary ack (the image
 * is announced as attachment 0) and closes the socket before sending the attachment.
 */
async function fakeSessionAbortingUpload(port: number, token: string): Promise<{ aborted: Promise<AbortedUpload> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
  let settle!: { resolve: (u: AbortedUpload) => void; reject: (e: Error) => void };
  const aborted = new Promise<AbortedUpload>((resolve, reject) => (settle = { resolve, reject }));
  const timer = setTimeout(() => {
    settle.reject(new Error("the fake session got no grab within 15 s"));
    ws.terminate();
  }, 15_000);
  ws.on("error", (err) => settle.reject(err));
  ws.on("close", () => clearTimeout(timer));
  let answered = false;
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    const text = data.toString();
    if (text.startsWith("0")) {
      // engine.io open → socket.io CONNECT to "/" with the auth payload
      ws.send(`40${JSON.stringify({ token })}`);
    } else if (text.startsWith("40")) {
      ws.send(`42${JSON.stringify(["hello", { renderer: "fake", vendor: "", webgl: true, userAgent: "ws", devicePixelRatio: 1, worker: "fake" }])}`);
    } else if (text === "2") {
      ws.send("3"); // ping → pong
    } else if (text.startsWith("44")) {
      settle.reject(new Error(`connect refused: ${text}`));
      ws.close();
    } else {
      const grab = /^42(\d+)(\[.*)$/s.exec(text);
      if (!grab) return; // ops
      const [event, seq, request] = JSON.parse(grab[2]) as [string, number, AbortedUpload["request"]];
      if (event !== "grab" || answered) return;
      answered = true;
      const ackId = Number(grab[1]);
      const header = {
        ok: true, image: { _placeholder: true, num: 0 }, width: 160, height: 120, format: "png",
        camera: { K: [[100, 0, 80], [0, 100, 60], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], fov: 50, near: 0.1, far: 100 },
        renderMs: 1, encodeMs: 1,
      };
      // engine.io MESSAGE "4" + socket.io BINARY_ACK "6", 1 attachment, the ack id, the args.
      ws.send(`461-${ackId}${JSON.stringify([header])}`, () => {
        ws.close();
        settle.resolve({ ackId, seq, request });
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { aborted };
}

/**
 * A socket.io peer over a raw TCP websocket that connects, says hello (without WebGL, so it gets no
 * work) and then reads nothing and answers nothing: not even the close handshake.
 */
async function frozenPeer(port: number, token: string): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  let received = "";
  socket.on("data", (d) => (received += d.toString("latin1")));
  const waitFor = async (what: string) => {
    for (let i = 0; i < 100 && !received.includes(what); i++) await sleep(20);
    assert.ok(received.includes(what), `the frozen peer got ${JSON.stringify(what)}: ${JSON.stringify(received.slice(-200))}`);
  };
  // A client frame: FIN + text opcode, masked, 16-bit length when needed.
  const frame = (text: string) => {
    const payload = Buffer.from(text);
    const mask = randomBytes(4);
    const header = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    return Buffer.concat([header, mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]);
  };
  socket.write(
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await waitFor(`"pingInterval"`); // the engine.io open packet
  socket.write(frame(`40${JSON.stringify({ token })}`));
  await waitFor(`40{"sid"`);
  socket.write(frame(`42${JSON.stringify(["hello", { renderer: "", vendor: "", webgl: false, userAgent: "frozen", devicePixelRatio: 1, worker: "frozen" }])}`));
  return socket;
}

// Signals stop the farm gracefully: the real CLI in a child process gets SIGTERM, SIGINT or SIGHUP
// mid-run and must exit 128 + the signal's number within a bounded time, with no Chromium process of
// its left running, every interrupted job back in the queue with its attempt not counted, and a
// rerun with the same --out finishing the dataset. A second signal exits at once. Interrupting the
// same --out three times in a row with --max-attempts 1 fails no job (item 8 of issue 9).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import Database from "better-sqlite3";
import { REPO, runFarmCli, spawnFarmCli, readFrames, decodePng, withTempDir } from "./cli.js";
import { openDataset } from "../../server/dataset/openDataset.js";
import { startRun } from "../../server/runFarm.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const FRAMES = 80;
const argsFor = (out: string, extra: string[] = [], frames = FRAMES) =>
  ["--sessions", "2", "--demo", String(frames), "--frames-per-job", "4", "--width", "160", "--height", "120", "--out", out, "--no-progress", ...extra];

interface Row {
  id: string;
  state: string;
  attempts: number;
  error_message: string | null;
}

function jobRows(out: string): Row[] {
  const file = path.join(out, "queue.sqlite");
  if (!fs.existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT id, state, attempts, error_message FROM jobs ORDER BY seq`).all() as Row[];
  } catch {
    return []; // not created yet
  } finally {
    db.close();
  }
}

/** A process's start time and state from /proc (null when gone): pids get reused. */
function procStat(pid: number): { ppid: number; start: string; state: string; comm: string } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0], ppid: Number(fields[1]), start: fields[19], comm };
  } catch {
    return null;
  }
}

/** Every live process descended from `root` (Chromium runs in its own process group, so a walk of ppids). */
function descendants(root: number): Map<number, string> {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const stat = procStat(pid);
    if (stat) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), pid]);
  }
  const found = new Map<number, string>();
  const walk = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      const stat = procStat(child);
      if (stat && !found.has(child)) {
        found.set(child, stat.start);
        walk(child);
      }
    }
  };
  walk(root);
  return found;
}

const stillRunning = (pid: number, start: string) => {
  const now = procStat(pid);
  return now !== null && now.start === start && now.state !== "Z";
};

interface Interrupted {
  code: number | null;
  output: string;
  /** ms from the (first) signal to the exit. */
  exitMs: number;
  /** Processes the CLI had started (Chromium and its children) that were still running after it exited. */
  leftRunning: number[];
  /** Rows as they were just before the signal. */
  before: Row[];
}

/**
 * Starts the CLI, waits until it is mid-run (frames written and jobs leased), sends `signals` (the
 * second one `gapMs` after the first) and waits for the exit.
 */
function interrupt(args: string[], out: string, signals: NodeJS.Signals[], gapMs = 0): Promise<Interrupted> {
  return new Promise((resolve, reject) => {
    const { child, output } = spawnFarmCli(args, { detached: true });
    const seen = new Map<number, string>();
    let signalledAt = 0;
    let before: Row[] = [];
    const started = Date.now();
    const poll = setInterval(() => {
      for (const [pid, start] of descendants(child.pid!)) seen.set(pid, start);
      if (signalledAt) return;
      if (Date.now() - started > 120_000) {
        clearInterval(poll);
        process.kill(-child.pid!, "SIGKILL");
        return;
      }
      const rows = jobRows(out);
      const frames = readFrames(out).length;
      if (frames >= 8 && rows.some((r) => r.state === "leased") && rows.some((r) => r.state === "pending")) {
        before = rows;
        signalledAt = Date.now();
        child.kill(signals[0]);
        if (signals[1]) setTimeout(() => child.kill(signals[1]), gapMs);
      }
    }, 100);
    const killer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {}
    }, 180_000);
    child.on("exit", async (code) => {
      clearInterval(poll);
      clearTimeout(killer);
      const exitMs = Date.now() - signalledAt;
      if (!signalledAt) return reject(new Error(`the farm exited (code ${code}) before it was signalled:\n${output()}`));
      await sleep(1000); // a browser being killed by an exit hook needs a moment
      const leftRunning = [...seen].filter(([pid, start]) => stillRunning(pid, start)).map(([pid]) => pid);
      for (const pid of leftRunning) process.kill(pid, "SIGKILL"); // the very processes this test's farm started
      resolve({ code, output: output(), exitMs, leftRunning, before });
    });
  });
}

/** The rerun finishes the dataset: every (job, frame) exactly once, every file decodable. */
async function rerunCompletes(out: string, extra: string[] = []): Promise<void> {
  const { code, output } = await runFarmCli(argsFor(out, extra));
  assert.equal(code, 0, output);
  const frames = readFrames(out);
  const ids = frames.map((f) => `${f.job}/${f.frame}`);
  assert.equal(new Set(ids).size, ids.length, "no duplicated (job, frame)");
  assert.equal(ids.length, FRAMES);
  for (const f of frames) {
    const png = decodePng(path.join(out, f.file));
    assert.deepEqual([png.width, png.height], [160, 120], f.file);
  }
}

const withOut = (body: (out: string) => Promise<void>) => withTempDir("tabfarm-signal-", body);

describe("signals stop the farm gracefully", { timeout: 600_000 }, () => {
  for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129]] as const) {
    it(`${signal}: exits ${code} soon, no browser left, interrupted jobs back uncounted, a rerun completes`, { timeout: 240_000 }, (t) =>
      withOut(async (out) => {
        const r = await interrupt(argsFor(out), out, [signal]);
        t.diagnostic(`exited ${r.exitMs} ms after ${signal}`);
        assert.equal(r.code, code, r.output);
        assert.ok(r.exitMs < 20_000, `exited ${r.exitMs} ms after the signal`);
        assert.deepEqual(r.leftRunning, [], `no process of the farm's outlived it:\n${r.output}`);
        assert.match(r.output, new RegExp(`stopped by ${signal}; \\d+ running job\\(s\\) went back to the queue without counting an attempt\\. Run the same command with --out ${out.replace(/[/.]/g, "\\$&")} to resume\\.`));
        assert.doesNotMatch(r.output, /relaunching|opening a replacement/, "the pool did not take the stop for a crash");

        const after = jobRows(out);
        assert.deepEqual(after.filter((j) => j.state === "leased" || j.state === "failed").map((j) => `${j.id}:${j.state}`), [], "nothing left leased or failed");
        const interrupted = r.before.filter((j) => j.state === "leased").map((j) => j.id);
        for (const row of after.filter((j) => interrupted.includes(j.id) && j.state === "pending")) {
          assert.equal(row.attempts, 0, `${row.id}: the interrupted attempt was not counted`);
          assert.match(row.error_message ?? "", new RegExp(`stopped by ${signal}`));
        }
        assert.deepEqual(after.filter((j) => j.state === "done" && j.attempts !== 1).map((j) => `${j.id}:${j.attempts}`), []);

        await rerunCompletes(out);
        assert.deepEqual(jobRows(out).filter((j) => j.attempts !== 1).map((j) => `${j.id}:${j.attempts}`), [], "every job took exactly one counted attempt");
      }));
  }

  it("three SIGINT-and-rerun cycles with --max-attempts 1: no job failed, no attempt counted for an interruption", { timeout: 400_000 }, () =>
    withOut(async (out) => {
      const strict = ["--max-attempts", "1"];
      for (let cycle = 0; cycle < 3; cycle++) {
        const r = await interrupt(argsFor(out, strict), out, ["SIGINT"]);
        assert.equal(r.code, 130, r.output);
        assert.deepEqual(r.leftRunning, [], `cycle ${cycle}: no process of the farm's outlived it`);
        const rows = jobRows(out);
        assert.deepEqual(rows.filter((j) => j.state !== "done" && j.state !== "pending").map((j) => `${j.id}:${j.state}`), [], `cycle ${cycle}: none leased or failed`);
        assert.deepEqual(rows.filter((j) => j.state === "pending" && j.attempts !== 0).map((j) => `${j.id}:${j.attempts}`), [], `cycle ${cycle}: no attempt counted`);
        if (rows.every((j) => j.state === "done")) break;
      }
      await rerunCompletes(out, strict);
      const rows = jobRows(out);
      assert.deepEqual(rows.filter((j) => j.state !== "done").map((j) => j.id), []);
      assert.deepEqual(rows.filter((j) => j.attempts !== 1).map((j) => `${j.id}:${j.attempts}`), []);
    }));

  it("a second signal exits at once, and still leaves no browser running; a rerun completes", { timeout: 240_000 }, (t) =>
    withOut(async (out) => {
      const r = await interrupt(argsFor(out), out, ["SIGTERM", "SIGINT"], 50);
      t.diagnostic(`exited ${r.exitMs} ms after the first of two signals`);
      assert.equal(r.code, 130, r.output);
      assert.ok(r.exitMs < 5_000, `exited ${r.exitMs} ms after the first signal`);
      assert.match(r.output, /SIGINT again; exiting at once/);
      assert.deepEqual(r.leftRunning, [], `no process of the farm's outlived it:\n${r.output}`);
      await rerunCompletes(out);
    }));
});

describe("npm run farm", { timeout: 200_000 }, () => {
  // npm signals only the shell it runs the script in, which dies without passing the signal on; the
  // farm must notice that its parent is gone and stop as gracefully as on a signal of its own.
  it("a SIGTERM to npm's own pid (docker stop) stops the farm: no browser left, interrupted jobs back uncounted", { timeout: 180_000 }, () =>
    withOut(async (out) => {
      // More frames than the others: the farm notices its parent is gone on a 500 ms poll, and a quick
      // machine rendered all 80 before that (the stop then found no job running).
      const npm = spawn("npm", ["run", "farm", "--", ...argsFor(out, [], 8 * FRAMES)], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], detached: true });
      let output = "";
      npm.stdout.on("data", (d) => (output += d));
      npm.stderr.on("data", (d) => (output += d));
      const seen = new Map<number, string>();
      let before: Row[] = [];
      try {
        const started = Date.now();
        for (;;) {
          for (const [pid, start] of descendants(npm.pid!)) seen.set(pid, start);
          const rows = jobRows(out);
          if (readFrames(out).length >= 8 && rows.some((r) => r.state === "leased") && rows.some((r) => r.state === "pending")) {
            before = rows;
            break;
          }
          assert.ok(Date.now() - started < 120_000, `the farm never got mid-run:\n${output}`);
          await sleep(100);
        }
        process.kill(npm.pid!, "SIGTERM"); // npm alone, as `docker stop` or `kill <pid>` would
        const signalled = Date.now();
        while ([...seen].some(([pid, start]) => stillRunning(pid, start)) && Date.now() - signalled < 30_000) {
          for (const [pid, start] of descendants(npm.pid!)) seen.set(pid, start);
          await sleep(200);
        }
        assert.deepEqual([...seen].filter(([pid, start]) => stillRunning(pid, start)).map(([pid]) => pid), [], `every process of the farm ended:\n${output}`);
      } finally {
        for (const [pid, start] of seen) if (stillRunning(pid, start)) process.kill(pid, "SIGKILL"); // only what this test started
      }
      assert.match(output, /the process that started the farm \(pid \d+, npm's shell\) is gone/);
      assert.match(output, /stopped by SIGHUP; \d+ running job\(s\) went back to the queue without counting an attempt/);
      const after = jobRows(out);
      assert.deepEqual(after.filter((j) => j.state === "leased" || j.state === "failed").map((j) => `${j.id}:${j.state}`), [], "nothing left leased or failed");
      const interrupted = before.filter((j) => j.state === "leased").map((j) => j.id);
      for (const row of after.filter((j) => interrupted.includes(j.id) && j.state === "pending")) assert.equal(row.attempts, 0, `${row.id}: not counted`);
    }));
});

describe("a stop while the jobs are being queued", () => {
  // Queueing a million jobs takes a minute; a signal used to wait for all of them before the farm stopped.
  it("startRun stops between jobs: it rejects with the stop's reason, keeps what was committed, and frees the dataset", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-stopqueue-"));
    try {
      const controller = new AbortController();
      const reason = new Error("stopped by SIGTERM");
      let produced = 0;
      function* jobs() {
        for (let i = 0; ; i++) {
          if (i === 12_000) controller.abort(reason);
          produced++;
          yield { id: `q-${i}` };
        }
      }
      await assert.rejects(startRun({ out, clientDir: out, jobs: jobs(), stop: controller.signal, log: () => {} }), (err) => err === reason);
      assert.ok(produced <= 12_001, `the source was not read on after the stop (${produced} jobs)`);
      const reopened = await openDataset(out, { log: () => {} }); // the lock was released
      try {
        const { total } = await reopened.queue.counts();
        assert.ok(total > 0 && total <= 12_000, `the batches committed before the stop stay queued (${total})`);
      } finally {
        await reopened.close();
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

// run-events.jsonl (server/events/runEventLog.ts): RunEventLog appends the kept events, bounded and
// surviving a disk that refuses writes; readRunHistory rebuilds the frames/s history and the last run's
// figures from the file's end, skipping what it can't use and refusing what is not a regular file.
// Also the RunEvents emitter and recordRun, which wire them to RunStats (server/events/RunEvents.ts).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import type { RunEvent } from "../../protocol/runEvents.js";
import { KEPT_EVENTS } from "../../protocol/runEvents.js";
import { recordRun, RunEvents } from "../../server/events/RunEvents.js";
import { MAX_FAILURE_LINES_PER_RUN, MAX_HISTORY_BYTES, readRunHistory, RUN_EVENTS_FILE, RunEventLog } from "../../server/events/runEventLog.js";

const base = fs.mkdtempSync(path.join(tmpdir(), "tabfarm-run-events-test-"));
after(() => fs.rmSync(base, { recursive: true, force: true }));
let dirs = 0;
const freshRoot = () => {
  const dir = path.join(base, `root-${dirs++}`);
  fs.mkdirSync(dir);
  return dir;
};

const T0 = 1_700_000_000_000;
const counts = { pending: 0, leased: 0, done: 0, failed: 0, total: 0 };
const started = (at: number): RunEvent => ({ type: "run.started", at, out: "/o", counts, frames: 0 });
const progress = (at: number, frames: number, jobsDone = 0): RunEvent => ({ type: "run.progress", at, frames, jobs_done: jobsDone, failed: 0 });
const done = (at: number, frames: number, jobsDone: number): RunEvent => ({ type: "run.done", at, frames, jobs_done: jobsDone, counts, seconds: 1 });
const joined = (at: number, session: string): RunEvent => ({ type: "session.joined", at, session, worker: `w-${session}`, renderer: "SwiftShader", userAgent: "UA", webgl: true });
const left = (at: number, session: string, frames: number, jobs: number, failures: number, reason = "closed"): RunEvent => ({ type: "session.left", at, session, reason, frames, jobs, failures });
const retried = (at: number, job: string): RunEvent => ({ type: "job.retried", at, job, session: "s", attempt: 1, error: "boom" });
const failed = (at: number, job: string): RunEvent => ({ type: "job.failed", at, job, session: "s", attempt: 3, error: "boom" });

const fileOf = (root: string) => path.join(root, RUN_EVENTS_FILE);
const writeLines = (root: string, lines: readonly (object | string)[]) =>
  fs.writeFileSync(fileOf(root), lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
const readLines = (root: string) => fs.readFileSync(fileOf(root), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { type: string; note?: string; job?: string });

/** `promise`'s outcome, or "blocked" when it has not settled within `ms`. */
const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise.then(() => "settled" as const, () => "settled" as const), new Promise<"blocked">((r) => setTimeout(() => r("blocked"), ms))]);

describe("RunEventLog", () => {
  it("appends events as JSON lines, in order, on flush and on close; nothing before", async () => {
    const root = freshRoot();
    const log = new RunEventLog(root, () => assert.fail("nothing to log"));
    const first = [started(T0), joined(T0 + 1, "a"), retried(T0 + 2, "j1")];
    for (const e of first) log.append(e);
    assert.equal(fs.existsSync(fileOf(root)), false, "nothing written before a flush");
    // Two flushes at once: one write at a time, lines in order, none twice.
    const second = [left(T0 + 3, "a", 5, 2, 1), progress(T0 + 4, 5, 2)];
    const flushing = log.flush();
    for (const e of second) log.append(e);
    await Promise.all([flushing, log.flush()]);
    assert.deepEqual(readLines(root), [...first, ...second]);
    log.append(done(T0 + 5, 5, 2));
    await log.close();
    assert.deepEqual(readLines(root), [...first, ...second, done(T0 + 5, 5, 2)]);
    assert.ok(fs.readFileSync(fileOf(root), "utf8").endsWith("}\n"), "whole lines only");
    // Appending to a file that is there already (a later run on the dataset) keeps its lines.
    const again = new RunEventLog(root, () => {});
    again.append(started(T0 + 100));
    await again.close();
    assert.equal(readLines(root).length, 7);
  });

  it(`keeps at most MAX_FAILURE_LINES_PER_RUN (${MAX_FAILURE_LINES_PER_RUN}) failed attempts a run, then one note line; other events are still kept`, async () => {
    const root = freshRoot();
    const log = new RunEventLog(root, () => {});
    log.append(started(T0));
    const extra = 7;
    for (let i = 0; i < MAX_FAILURE_LINES_PER_RUN + extra; i++) {
      log.append(i % 2 ? retried(T0 + i, `job-${i}`) : failed(T0 + i, `job-${i}`));
      if (i % 1000 === 999) await log.flush(); // the log's own clock flushes each second
      if (i === MAX_FAILURE_LINES_PER_RUN + 2) log.append(joined(T0 + i, "late")); // after the cap
    }
    log.append(done(T0 + 99_999, 0, 0));
    await log.close();
    const lines = readLines(root);
    const failures = lines.filter((l) => l.type === "job.retried" || l.type === "job.failed");
    assert.equal(failures.length, MAX_FAILURE_LINES_PER_RUN);
    assert.deepEqual(failures.map((l) => l.job), Array.from({ length: MAX_FAILURE_LINES_PER_RUN }, (_, i) => `job-${i}`), "the first ones are kept");
    const notes = lines.filter((l) => l.type === "log.note");
    assert.equal(notes.length, 1);
    assert.match(notes[0].note!, new RegExp(`^${extra} failed attempts`));
    assert.ok(lines.some((l) => l.type === "session.joined"), "a session joining after the cap is kept");
    assert.deepEqual(lines.slice(-2).map((l) => l.type), ["log.note", "run.done"]);
    // The history still reads it: the note is no event, the run's figures are whole.
    const history = await readRunHistory(root);
    assert.equal(history.lastRun?.finished, true);
    assert.equal((history.lastRun?.retries ?? 0) + (history.lastRun?.failures ?? 0), MAX_FAILURE_LINES_PER_RUN);
  });

  it("a directory at the file's path: no throw, logged once per outage, lines kept and written when it is fixed", async () => {
    const root = freshRoot();
    const logged: string[] = [];
    const log = new RunEventLog(root, (line) => logged.push(line));
    fs.mkdirSync(fileOf(root));
    log.append(started(T0));
    await log.flush();
    log.append(joined(T0 + 1, "a"));
    await log.flush();
    await log.flush();
    assert.equal(logged.length, 1, "one line for the outage, not one per try");
    assert.ok(logged[0].includes(fileOf(root)), `names the file: ${logged[0]}`);
    fs.rmdirSync(fileOf(root));
    log.append(progress(T0 + 2, 3));
    await log.close();
    assert.deepEqual(readLines(root), [started(T0), joined(T0 + 1, "a"), progress(T0 + 2, 3)]);
    assert.equal(logged.length, 2);
    assert.match(logged[1], /written again/);
  });

  it("a symlink at the file's path is not followed: its target is untouched, the lines wait", async () => {
    const root = freshRoot();
    const target = path.join(base, `target-${dirs++}.txt`);
    fs.writeFileSync(target, "precious\n");
    fs.symlinkSync(target, fileOf(root));
    const logged: string[] = [];
    const log = new RunEventLog(root, (line) => logged.push(line));
    log.append(started(T0));
    await log.flush();
    assert.equal(fs.readFileSync(target, "utf8"), "precious\n");
    assert.equal(logged.length, 1);
    fs.unlinkSync(fileOf(root));
    await log.close();
    assert.deepEqual(readLines(root), [started(T0)]);
    assert.equal(fs.lstatSync(fileOf(root)).isFile(), true);
  });

  it("lines that pile up while the disk refuses are bounded; the dropped ones are counted in a note", async () => {
    const root = freshRoot();
    const log = new RunEventLog(root, () => {});
    fs.mkdirSync(fileOf(root));
    const n = 25_000;
    log.append(started(T0));
    for (let i = 1; i < n; i++) {
      log.append(joined(T0 + i, `s${i}`));
      if (i % 5000 === 4999) await log.flush();
    }
    fs.rmdirSync(fileOf(root));
    await log.close();
    const lines = readLines(root);
    assert.equal(lines[0].type, "run.started", "the oldest lines are kept (a reader needs the run's start), the newest dropped");
    const kept = lines.filter((l) => l.type === "session.joined" || l.type === "run.started").length;
    const notes = lines.filter((l) => l.type === "log.note");
    assert.ok(kept < n && kept > 0, `${kept} kept`);
    assert.ok(notes.length >= 1);
    const dropped = notes.reduce((sum, note) => sum + Number(/^(\d+) run events were dropped/.exec(note.note!)?.[1]), 0);
    assert.equal(kept + dropped, n, `every event is written or counted in a note (${kept} written, ${dropped} counted)`);
  });

  it("a FIFO at the file's path does not block the log (close settles, the failure is logged)", async () => {
    const root = freshRoot();
    execFileSync("mkfifo", [fileOf(root)]);
    const logged: string[] = [];
    const log = new RunEventLog(root, (line) => logged.push(line));
    log.append(started(T0));
    const closing = log.close();
    const outcome = await within(closing, 5000); // a blocked open never settles; a slow machine may take a while to say no
    if (outcome === "blocked") {
      // Unblock the writer's open (it waits for a reader), so this process can end.
      const reader = fs.openSync(fileOf(root), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      await closing;
      fs.closeSync(reader);
    }
    assert.equal(outcome, "settled", "a run's close must not wait for a reader of a FIFO");
    assert.equal(logged.length, 1, "the refusal is logged");
  });
});

describe("readRunHistory", () => {
  it("no file (or no folder): an empty history", async () => {
    assert.deepEqual(await readRunHistory(freshRoot()), { rate: [], skipped: 0 });
    assert.deepEqual(await readRunHistory(path.join(base, "no-such-folder")), { rate: [], skipped: 0 });
  });

  it("rebuilds frames/s from progress lines (Δframes/Δt), a zero point between runs, and the last run's figures", async () => {
    const root = freshRoot();
    const T1 = T0 + 100_000;
    writeLines(root, [
      started(T0),
      joined(T0 + 10, "old"),
      progress(T0 + 5000, 50, 5), // 10 frames/s
      progress(T0 + 10_000, 150, 15), // 20 frames/s
      progress(T0 + 10_000, 160, 16), // no time passed: no point, but the latest totals
      progress(T0 + 12_000, 140, 16), // fewer frames (edited): 0, never negative
      done(T0 + 13_000, 140, 16),
      started(T1),
      joined(T1 + 1, "s1"),
      joined(T1 + 2, "s2"),
      retried(T1 + 3, "j1"),
      retried(T1 + 4, "j1"),
      failed(T1 + 5, "j2"),
      progress(T1 + 4000, 8, 2), // 2 frames/s
      left(T1 + 4500, "s1", 30, 3, 1, "recycled"),
      joined(T1 + 4600, "s1"), // the same id again (a reconnect): its own row
      left(T1 + 4700, "s1", 2, 1, 0, "transport close"),
      left(T1 + 4800, "never-joined", 1, 1, 1),
      progress(T1 + 8000, 28, 5), // 5 frames/s
    ]);
    const history = await readRunHistory(root);
    assert.deepEqual(history.rate, [
      { t: T0 + 5000, fps: 10 },
      { t: T0 + 10_000, fps: 20 },
      { t: T0 + 12_000, fps: 0 },
      { t: T0 + 12_001, fps: 0 },
      { t: T1 + 4000, fps: 2 },
      { t: T1 + 8000, fps: 5 },
    ]);
    assert.equal(history.skipped, 0);
    assert.deepEqual(history.lastRun, {
      started: T1, ended: T1 + 8000, finished: false, frames: 28, jobsDone: 5, retries: 2, failures: 1,
      sessions: [
        { session: "s1", worker: "w-s1", renderer: "SwiftShader", frames: 30, jobs: 3, failures: 1, joined: T1 + 1, left: T1 + 4500, reason: "recycled" },
        { session: "s2", worker: "w-s2", renderer: "SwiftShader", frames: 0, jobs: 0, failures: 0, joined: T1 + 2 },
        { session: "s1", worker: "w-s1", renderer: "SwiftShader", frames: 2, jobs: 1, failures: 0, joined: T1 + 4600, left: T1 + 4700, reason: "transport close" },
      ],
    });
  });

  it("a run that ended says so, with run.done's totals and time", async () => {
    const root = freshRoot();
    writeLines(root, [started(T0), progress(T0 + 5000, 10, 1), done(T0 + 6000, 12, 2)]);
    const { lastRun } = await readRunHistory(root);
    assert.deepEqual(lastRun && [lastRun.finished, lastRun.ended, lastRun.frames, lastRun.jobsDone], [true, T0 + 6000, 12, 2]);
  });

  it("round trip: what RunEventLog writes, readRunHistory reads", async () => {
    const root = freshRoot();
    const log = new RunEventLog(root, () => {});
    for (const e of [started(T0), joined(T0 + 1, "a"), retried(T0 + 2, "x"), progress(T0 + 2000, 20, 4), left(T0 + 2500, "a", 20, 4, 1), done(T0 + 3000, 20, 4)]) log.append(e);
    await log.close();
    const history = await readRunHistory(root);
    assert.deepEqual(history.rate, [{ t: T0 + 2000, fps: 10 }]);
    assert.deepEqual(history.lastRun?.sessions, [{ session: "a", worker: "w-a", renderer: "SwiftShader", frames: 20, jobs: 4, failures: 1, joined: T0 + 1, left: T0 + 2500, reason: "closed" }]);
    assert.equal(history.lastRun?.retries, 1);
  });

  it("lines that are no usable event are skipped and counted; the good ones around them still count", async () => {
    const root = freshRoot();
    const bad: string[] = [
      "not json", "{", '{"type":"run.progress","at":5', "[]", "[1,2]", "null", "42", '"run.progress"', "true",
      JSON.stringify({ type: "made.up", at: T0 }),
      JSON.stringify({ type: 5, at: T0 }),
      JSON.stringify({ type: "job.leased", at: T0, job: "j", session: "s", attempt: 1 }), // not a kept event
      JSON.stringify({ type: "frame.written", at: T0 }),
      JSON.stringify({ type: "__proto__", at: T0 }),
      JSON.stringify({ type: "run.progress", at: String(T0 + 1), frames: 1, jobs_done: 1 }),
      JSON.stringify({ type: "run.progress", at: -1, frames: 1, jobs_done: 1 }),
      JSON.stringify({ type: "run.progress", at: T0 + 1, frames: -5, jobs_done: 1 }),
      JSON.stringify({ type: "run.progress", at: T0 + 1, frames: "5", jobs_done: 1 }),
      JSON.stringify({ type: "run.progress", at: T0 + 1, jobs_done: 1 }),
      JSON.stringify({ type: "run.progress", at: T0 + 1, frames: null, jobs_done: 1 }),
      JSON.stringify({ type: "run.progress", at: T0 + 1, frames: [1], jobs_done: 1 }),
      JSON.stringify({ type: "run.progress", at: T0 + 1, frames: { n: 1 }, jobs_done: 1 }),
      `{"type":"run.progress","at":1e400,"frames":1,"jobs_done":1}`, // Infinity
      `{"type":"run.progress","at":${T0 + 1},"frames":1e999,"jobs_done":1}`,
      JSON.stringify({ type: "run.done", at: T0 + 1, frames: 1 }),
      JSON.stringify({ type: "session.joined", at: T0 + 1, session: 5, worker: "w", renderer: "r" }),
      JSON.stringify({ type: "session.joined", at: T0 + 1, session: "s", renderer: "r" }),
      JSON.stringify({ type: "session.left", at: T0 + 1, session: "s", frames: 1, jobs: 1, failures: 1 }), // no reason
      JSON.stringify({ type: "session.left", at: T0 + 1, session: "s", frames: 1, jobs: 1, failures: -1, reason: "x" }),
      JSON.stringify({ type: "job.retried" }), // no time
    ];
    const lines: (object | string)[] = [started(T0), joined(T0 + 1, "s")];
    for (const b of bad) lines.push(b, retried(T0 + 2, "j"));
    lines.push(progress(T0 + 5000, 50, 5), left(T0 + 6000, "s", 50, 5, 0));
    writeLines(root, lines);
    const history = await readRunHistory(root);
    assert.equal(history.skipped, bad.length);
    assert.deepEqual(history.rate, [{ t: T0 + 5000, fps: 10 }]);
    assert.equal(history.lastRun?.retries, bad.length);
    assert.equal(history.lastRun?.ended, T0 + 6000, "no bad line moved the run's end");
    assert.deepEqual(history.lastRun?.sessions.map((s) => [s.session, s.frames, s.reason]), [["s", 50, "closed"]]);
    // Blank lines, and a file without a final newline, are no bad lines.
    fs.writeFileSync(fileOf(root), `\n\n${JSON.stringify(started(T0))}\n\n${JSON.stringify(progress(T0 + 1000, 3, 1))}`);
    const short = await readRunHistory(root);
    assert.deepEqual([short.skipped, short.rate], [0, [{ t: T0 + 1000, fps: 3 }]]);
  });

  it("numbers no run writes (beyond 2^53, 1e300) are skipped, not carried into the chart and figures", async () => {
    const root = freshRoot();
    const huge = [2 ** 53 * 4, 1e300, Number.MAX_VALUE];
    const lines: object[] = [started(T0)];
    for (const [i, n] of huge.entries()) {
      lines.push(progress(T0 + 1000 * (i + 1), n, 1));
      lines.push(left(T0 + 1000 * (i + 1), "s", n, 1, 1));
    }
    writeLines(root, lines);
    const history = await readRunHistory(root);
    assert.equal(history.skipped, huge.length * 2);
    assert.deepEqual(history.rate, []);
    assert.equal(history.lastRun?.frames, 0);
  });

  it(`a file over MAX_HISTORY_BYTES is read from its end, from a whole line (the cut line is no skipped line)`, async () => {
    const root = freshRoot();
    const T1 = T0 + 10_000_000;
    const newRun = [started(T1), retried(T1 + 1, "a"), retried(T1 + 2, "b"), progress(T1 + 1000, 7, 1), retried(T1 + 3, "c")].map((e) => JSON.stringify(e) + "\n").join("");
    // The old run: its start and its progress lines are before the window, some of its lines in it.
    const filler = (i: number) => JSON.stringify(i % 100 === 0 ? progress(T0 + i, i, i) : retried(T0 + i, `old-${i}`)) + "\n";
    const parts = [JSON.stringify(started(T0)) + "\n"];
    let size = parts[0].length;
    for (let i = 1; size < MAX_HISTORY_BYTES + 200_000; i++) {
      parts.push(filler(i));
      size += parts.at(-1)!.length;
    }
    let text = parts.join("") + newRun;
    // Make sure the window starts inside a line (not at a line's start).
    const cut = Buffer.byteLength(text) - MAX_HISTORY_BYTES;
    if (text[cut - 1] === "\n") text = "x" + text;
    assert.notEqual(text[Buffer.byteLength(text) - MAX_HISTORY_BYTES - 1], "\n");
    fs.writeFileSync(fileOf(root), text);
    const history = await readRunHistory(root);
    assert.equal(history.skipped, 0, "the partial first line is dropped, not parsed");
    assert.equal(history.lastRun?.started, T1);
    assert.equal(history.lastRun?.retries, 3);
    assert.deepEqual(history.rate, [{ t: T1 + 1000, fps: 7 }], "the old run's lines in the window have no start: not charted");
  });

  it("a file over MAX_HISTORY_BYTES whose window starts exactly at a line keeps that whole line", async () => {
    const root = freshRoot();
    const T1 = T0 + 10_000_000;
    // The new run's block is exactly MAX_HISTORY_BYTES long and starts with its run.started line.
    const head = JSON.stringify(started(T1)) + "\n" + JSON.stringify(progress(T1 + 2000, 10, 1)) + "\n";
    const line = JSON.stringify(retried(T1 + 1, "a")) + "\n";
    const last = (error: string) => JSON.stringify({ ...retried(T1 + 1, "a"), error }) + "\n";
    // Whole filler lines, then one line padded to fill the block exactly.
    const fillers = Math.floor((MAX_HISTORY_BYTES - head.length - last("").length) / line.length) - 1;
    const pad = MAX_HISTORY_BYTES - head.length - fillers * line.length - last("").length;
    const block = head + line.repeat(fillers) + last("e".repeat(pad));
    const retries = fillers + 1;
    assert.equal(Buffer.byteLength(block), MAX_HISTORY_BYTES);
    const old = [started(T0), progress(T0 + 1000, 5, 1)].map((e) => JSON.stringify(e) + "\n").join("");
    fs.writeFileSync(fileOf(root), old + block);
    const history = await readRunHistory(root);
    assert.equal(history.lastRun?.started, T1, "the run.started line at the window's start is whole: it must be read");
    assert.equal(history.lastRun?.retries, retries);
    assert.equal(history.skipped, 0);
  });

  it("a symlink at the path is refused, not followed: the promise rejects naming the file", async () => {
    const root = freshRoot();
    const elsewhere = freshRoot();
    writeLines(elsewhere, [started(T0), progress(T0 + 1000, 10, 1)]);
    fs.symlinkSync(fileOf(elsewhere), fileOf(root));
    await assert.rejects(readRunHistory(root), (err: Error) => err.message.includes(fileOf(root)));
    // A dangling link too (not "no history": something is there that is not ours).
    const dangling = freshRoot();
    fs.symlinkSync(path.join(base, "nowhere"), fileOf(dangling));
    await assert.rejects(readRunHistory(dangling), (err: Error) => err.message.includes(fileOf(dangling)));
  });

  it("a FIFO or a directory at the path is refused at once (no wait for a writer)", async () => {
    const fifoRoot = freshRoot();
    execFileSync("mkfifo", [fileOf(fifoRoot)]);
    const reading = readRunHistory(fifoRoot);
    assert.equal(await within(reading, 5000), "settled", "does not block on the FIFO");
    await assert.rejects(reading, /not a regular file/);
    const dirRoot = freshRoot();
    fs.mkdirSync(fileOf(dirRoot));
    await assert.rejects(readRunHistory(dirRoot), /not a regular file/);
  });
});

describe("RunEvents", () => {
  it("a listener that throws does not stop the others, and is logged with the event's type", () => {
    const logged: string[] = [];
    const events = new RunEvents((line) => logged.push(line));
    const calls: string[] = [];
    const thrown: unknown[] = [new Error("listener broke"), "a string", null, undefined, { no: "message" }, 42];
    events.subscribe((e) => calls.push(`first ${e.type}`));
    for (const [i, value] of thrown.entries()) {
      events.subscribe(() => {
        calls.push(`thrower ${i}`);
        throw value;
      });
    }
    events.subscribe((e) => calls.push(`last ${e.type}`));
    assert.doesNotThrow(() => events.emit(joined(T0, "s")));
    assert.deepEqual(calls, ["first session.joined", ...thrown.map((_, i) => `thrower ${i}`), "last session.joined"]);
    assert.equal(logged.length, thrown.length, "one log line per failing listener");
    assert.ok(logged.every((l) => l.includes("session.joined")));
    assert.ok(logged[0].includes("listener broke"));
    // The failing listeners stay subscribed (an observer's bad moment is not its end), and so do the others.
    events.emit(progress(T0, 1));
    assert.equal(calls.filter((c) => c === "last run.progress").length, 1);
    assert.equal(logged.length, thrown.length * 2);
  });

  it("unsubscribe stops a listener; without a log, a throwing listener is still contained", () => {
    const events = new RunEvents();
    let n = 0;
    const stop = events.subscribe(() => n++);
    events.subscribe(() => {
      throw new Error("x");
    });
    events.emit(progress(T0, 1));
    stop();
    assert.doesNotThrow(() => events.emit(progress(T0, 2)));
    assert.equal(n, 1);
  });
});

describe("recordRun", () => {
  it("keeps only KEPT_EVENTS in the file, ends with progress and run.done once, and the next run's chart starts from them", async () => {
    const root = freshRoot();
    const logged: string[] = [];
    const recorder = await recordRun({ root, counts: { pending: 2, leased: 0, done: 0, failed: 0, total: 2 }, framesAtStart: 5, log: (l) => logged.push(l) });
    const now = Date.now();
    const all: RunEvent[] = [
      joined(now, "s"),
      { type: "job.leased", at: now, job: "a", session: "s", attempt: 1 },
      { type: "frame.written", at: now, job: "a", frame: 0, session: "s", bytes: 1, render_ms: 1, encode_ms: 1, files: {} },
      { type: "job.done", at: now, job: "a", session: "s", frames: 1, attempt: 1 },
      { type: "job.leased", at: now, job: "b", session: "s", attempt: 1 },
      retried(now, "b"),
      { type: "job.leased", at: now, job: "b", session: "s", attempt: 2 },
      { type: "job.released", at: now, job: "b", session: "s", reason: "stop" },
      progress(now + 5000, 40, 1), // a progress line of our own, 5 s on: 8 frames/s from the start
    ];
    for (const e of all) recorder.events.emit(e);
    assert.equal(recorder.stats.view(now).framesTotal, 6);
    recorder.done({ frames: 1, jobs_done: 1, counts: recorder.stats.counts, seconds: 1 });
    recorder.done({ frames: 1, jobs_done: 1, counts: recorder.stats.counts, seconds: 1 });
    await recorder.close();
    const types = readLines(root).map((l) => l.type);
    assert.ok(types.every((t) => KEPT_EVENTS.has(t as RunEvent["type"])), types.join(" "));
    assert.equal(types[0], "run.started");
    assert.equal(types.at(-1), "run.done");
    assert.equal(types.filter((t) => t === "run.done").length, 1, "done() twice ends the run once");
    assert.equal(types.at(-2), "run.progress", "the run's last totals are kept before its end");
    assert.deepEqual(logged, []);

    const history = await readRunHistory(root);
    assert.ok(history.rate.length >= 1);
    const next = await recordRun({ root, counts, framesAtStart: 0, log: () => {} });
    assert.deepEqual(next.stats.rate.all(), history.rate, "the next run's chart starts with the file's history");
    await next.close();
  });

  it("a history that can't be read (a symlink) is logged and the run goes on with an empty chart", async () => {
    const root = freshRoot();
    const target = path.join(base, `target-${dirs++}.jsonl`);
    fs.writeFileSync(target, [started(T0), progress(T0 + 1000, 10, 1)].map((e) => JSON.stringify(e)).join("\n") + "\n");
    const before = fs.readFileSync(target, "utf8");
    fs.symlinkSync(target, fileOf(root));
    const logged: string[] = [];
    const recorder = await recordRun({ root, counts, framesAtStart: 0, log: (l) => logged.push(l) });
    assert.deepEqual(recorder.stats.rate.all(), []);
    assert.ok(logged.some((l) => /history .* could not be read/.test(l)), logged.join("\n"));
    recorder.events.emit(joined(Date.now(), "s"));
    assert.equal(recorder.stats.view().sessions.length, 1, "events still fold");
    recorder.done({ frames: 0, jobs_done: 0, counts, seconds: 0 });
    await recorder.close();
    assert.equal(fs.readFileSync(target, "utf8"), before, "the link's target is not written");
    assert.ok(logged.some((l) => /could not append/.test(l)));
  });
});

// RunStats (server/events/RunStats.ts): the run's events folded into the RunView the CLI, the dashboard
// and /api/status show. Counts, rows, rates and the frames/s chart are checked against a simple model
// of the queue over seeded random event sequences, and at the edges (caps, windows, merges, idle gaps).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_RATE_POINTS } from "../../protocol/dashboard.js";
import type { JobCounts, RatePoint, RunEvent, RunEventType } from "../../protocol/runEvents.js";
import { MAX_FAILED_ROWS, MAX_LEFT_SESSION_ROWS, RATE_WINDOW_S } from "../../protocol/runEvents.js";
import { browserName, RateSeries, RateWindow, RunStats } from "../../server/events/RunStats.js";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { rngFor } from "../../server/dispatch/randomizeFrame.js";

/** A whole second (epoch ms), so window arithmetic in the tests is exact. */
const T0 = 1_700_000_000_000;
const CHROME_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/143.0.7499.4 Safari/537.36";

/** A seeded generator (the randomizers' own, pure-rand's xoroshiro128+): the random sequences are the same on every run. */
function random(seed: number): () => number {
  const rng = rngFor(seed, "runStats.test");
  return () => uniformFloat64(rng);
}

const makeStats = (counts: Partial<JobCounts> = {}, extra: { framesAtStart?: number; history?: RatePoint[] } = {}) =>
  new RunStats({
    out: "/data/out",
    startedAt: T0,
    counts: { pending: 0, leased: 0, done: 0, failed: 0, total: 0, ...counts },
    framesAtStart: extra.framesAtStart ?? 0,
    history: extra.history,
  });

const ev = {
  joined: (session: string, at = T0, userAgent = CHROME_UA): RunEvent => ({ type: "session.joined", at, session, worker: `tab-${session}`, renderer: "SwiftShader", userAgent, webgl: true }),
  leased: (job: string, session: string, at = T0, attempt = 1): RunEvent => ({ type: "job.leased", at, job, session, attempt }),
  done: (job: string, session: string, frames: number, at = T0): RunEvent => ({ type: "job.done", at, job, session, frames, attempt: 1 }),
  retried: (job: string, session: string, error = "boom", at = T0): RunEvent => ({ type: "job.retried", at, job, session, attempt: 1, error }),
  failed: (job: string, session: string, error = "boom", at = T0, attempt = 3): RunEvent => ({ type: "job.failed", at, job, session, attempt, error }),
  released: (job: string, session: string, at = T0): RunEvent => ({ type: "job.released", at, job, session, reason: "stopped" }),
  requeued: (jobs: string[], at = T0): RunEvent => ({ type: "jobs.requeued", at, jobs, by: "dashboard" }),
  frame: (job: string, session: string, at: number, frame = 0): RunEvent => ({ type: "frame.written", at, job, frame, session, bytes: 100, render_ms: 1, encode_ms: 1, files: {} }),
  left: (session: string, at = T0): RunEvent => ({ type: "session.left", at, session, reason: "closed", frames: 0, jobs: 0, failures: 0 }),
  hung: (session: string, reason = "no answer in 30 s", at = T0): RunEvent => ({ type: "session.hung", at, session, reason }),
  quarantined: (session: string, reason = "fails far more than its peers", at = T0): RunEvent => ({ type: "session.quarantined", at, session, reason }),
  recycled: (session: string, at = T0): RunEvent => ({ type: "session.recycled", at, session, frames: 0 }),
};

const row = (stats: RunStats, id: string, now = T0) => {
  const r = stats.view(now).sessions.find((s) => s.id === id);
  assert.ok(r, `session ${id} has a row`);
  return r;
};

describe("RunStats counts", () => {
  const start: JobCounts = { pending: 5, leased: 3, done: 2, failed: 4, total: 14 };
  const zero = { pending: 0, leased: 0, done: 0, failed: 0 };
  // A Record over every event type: a new event type fails typecheck here until its effect is stated.
  const cases: Record<RunEventType, { event: RunEvent; delta: Partial<typeof zero> }> = {
    "job.leased": { event: ev.leased("j", "s"), delta: { pending: -1, leased: 1 } },
    "job.done": { event: ev.done("j", "s", 7), delta: { leased: -1, done: 1 } },
    "job.retried": { event: ev.retried("j", "s"), delta: { leased: -1, pending: 1 } },
    "job.failed": { event: ev.failed("j", "s"), delta: { leased: -1, failed: 1 } },
    "job.released": { event: ev.released("j", "s"), delta: { leased: -1, pending: 1 } },
    "jobs.requeued": { event: ev.requeued(["a", "b", "c"]), delta: { failed: -3, pending: 3 } },
    "frame.written": { event: ev.frame("j", "s", T0), delta: {} },
    "session.joined": { event: ev.joined("s"), delta: {} },
    "session.left": { event: ev.left("s"), delta: {} },
    "session.hung": { event: ev.hung("s"), delta: {} },
    "session.recycled": { event: ev.recycled("s"), delta: {} },
    "session.quarantined": { event: ev.quarantined("s"), delta: {} },
    "write.paused": { event: { type: "write.paused", at: T0, store: "dataset", error: "EIO" }, delta: {} },
    "write.resumed": { event: { type: "write.resumed", at: T0, seconds: 3 }, delta: {} },
    "dispatch.paused": { event: { type: "dispatch.paused", at: T0, by: "dashboard" }, delta: {} },
    "dispatch.resumed": { event: { type: "dispatch.resumed", at: T0, by: "dashboard" }, delta: {} },
    "run.started": { event: { type: "run.started", at: T0, out: "/o", counts: { pending: 99, leased: 0, done: 0, failed: 0, total: 99 }, frames: 0 }, delta: {} },
    "run.progress": { event: { type: "run.progress", at: T0, frames: 50, jobs_done: 9, failed: 9 }, delta: {} },
    "run.done": { event: { type: "run.done", at: T0, frames: 50, jobs_done: 9, counts: { pending: 0, leased: 0, done: 99, failed: 0, total: 99 }, seconds: 9 }, delta: {} },
  };

  for (const [type, { event, delta }] of Object.entries(cases)) {
    it(`${type} moves the counts by ${JSON.stringify(delta)} and keeps the total`, () => {
      // With the session known and unknown: a row is no condition for counting.
      for (const known of [true, false]) {
        const stats = makeStats(start);
        if (known) stats.apply(ev.joined("s"));
        stats.apply(event);
        const want = { ...start };
        for (const [k, d] of Object.entries(delta)) want[k as keyof typeof zero] += d;
        assert.deepEqual(stats.counts, want);
        assert.deepEqual(stats.view(T0).counts, want);
      }
    });
  }

  it("the view's counts are a copy: changing them changes nothing in the stats", () => {
    const stats = makeStats(start);
    const view = stats.view(T0);
    view.counts.pending = 1000;
    assert.equal(stats.view(T0).counts.pending, start.pending);
    // And the options' counts are copied too: the caller's object is not moved by events.
    const counts = { ...start };
    const s2 = new RunStats({ out: "o", startedAt: T0, counts, framesAtStart: 0 });
    s2.apply(ev.leased("j", "s"));
    assert.deepEqual(counts, start);
  });

  it("frames count completed jobs' frames only; frame.written moves the rate, not the total; framesTotal adds the frames at start", () => {
    const stats = makeStats({ pending: 3, total: 3 }, { framesAtStart: 1000 });
    stats.apply(ev.joined("s"));
    stats.apply(ev.leased("a", "s"));
    for (let f = 0; f < 4; f++) stats.apply(ev.frame("a", "s", T0 + 100 * f, f));
    let view = stats.view(T0 + 1000);
    assert.equal(view.frames, 0, "frames of a job not done yet are not counted");
    assert.equal(view.framesTotal, 1000);
    assert.ok(view.framesPerSecond > 0, "but they move the rate");
    stats.apply(ev.done("a", "s", 4));
    stats.apply(ev.leased("b", "s"));
    stats.apply(ev.retried("b", "s"));
    stats.apply(ev.leased("b", "s"));
    stats.apply(ev.done("b", "s", 6));
    view = stats.view(T0 + 1000);
    assert.equal(view.frames, 10);
    assert.equal(view.framesTotal, 1010);
    assert.equal(view.jobsDone, 2);
    assert.equal(view.retries, 1);
    assert.equal(view.failures, 0);
  });

  it("seeded random event sequences: counts, totals and session rows follow a model of the queue", () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const rnd = random(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
      const jobs = Array.from({ length: 40 }, (_, i) => `job-${i}`);
      const state = new Map<string, "pending" | "leased" | "done" | "failed">(jobs.map((j) => [j, "pending"]));
      const holder = new Map<string, string>();
      const sessions = ["s0", "s1", "s2", "s3"];
      const model = {
        frames: 0, jobsDone: 0, retries: 0, failures: 0,
        perSession: new Map(sessions.map((s) => [s, { jobs: 0, failures: 0, frames: 0, held: [] as string[], lastError: null as string | null }])),
        failedOrder: [] as string[],
      };
      const stats = makeStats({ pending: jobs.length, total: jobs.length });
      for (const s of sessions) stats.apply(ev.joined(s));
      let at = T0;
      for (let step = 0; step < 600; step++) {
        at += 37;
        const inState = (st: string) => jobs.filter((j) => state.get(j) === st);
        const pending = inState("pending");
        const leased = inState("leased");
        const failed = inState("failed");
        const action = pick(["lease", "lease", "done", "retry", "fail", "release", "requeue", "frame"] as const);
        const drop = (job: string) => {
          const m = model.perSession.get(holder.get(job)!)!;
          m.held.splice(m.held.indexOf(job), 1);
          holder.delete(job);
        };
        if (action === "lease" && pending.length) {
          const job = pick(pending);
          const s = pick(sessions);
          state.set(job, "leased");
          holder.set(job, s);
          model.perSession.get(s)!.held.push(job);
          stats.apply(ev.leased(job, s, at));
        } else if (action === "frame" && leased.length) {
          const job = pick(leased);
          model.perSession.get(holder.get(job)!)!.frames++;
          stats.apply(ev.frame(job, holder.get(job)!, at));
        } else if (action === "done" && leased.length) {
          const job = pick(leased);
          const s = holder.get(job)!;
          const frames = Math.floor(rnd() * 5);
          model.frames += frames;
          model.jobsDone++;
          model.perSession.get(s)!.jobs++;
          drop(job);
          state.set(job, "done");
          stats.apply(ev.done(job, s, frames, at));
        } else if ((action === "retry" || action === "fail") && leased.length) {
          const job = pick(leased);
          const s = holder.get(job)!;
          const error = `error ${step}`;
          const m = model.perSession.get(s)!;
          m.failures++;
          m.lastError = error;
          drop(job);
          if (action === "retry") {
            model.retries++;
            state.set(job, "pending");
            stats.apply(ev.retried(job, s, error, at));
          } else {
            model.failures++;
            state.set(job, "failed");
            model.failedOrder = [...model.failedOrder.filter((j) => j !== job), job];
            stats.apply(ev.failed(job, s, error, at));
          }
        } else if (action === "release" && leased.length) {
          const job = pick(leased);
          const s = holder.get(job)!;
          drop(job);
          state.set(job, "pending");
          stats.apply(ev.released(job, s, at));
        } else if (action === "requeue" && failed.length) {
          const some = failed.filter(() => rnd() < 0.5);
          for (const j of some) state.set(j, "pending");
          model.failedOrder = model.failedOrder.filter((j) => !some.includes(j));
          stats.apply(ev.requeued(some, at));
        } else continue;

        const count = (st: string) => jobs.filter((j) => state.get(j) === st).length;
        const want = { pending: count("pending"), leased: count("leased"), done: count("done"), failed: count("failed"), total: jobs.length };
        assert.deepEqual(stats.counts, want, `seed ${seed} step ${step} (${action})`);
      }
      const view = stats.view(at);
      assert.equal(view.frames, model.frames);
      assert.equal(view.jobsDone, model.jobsDone);
      assert.equal(view.retries, model.retries);
      assert.equal(view.failures, model.failures);
      assert.deepEqual(view.failed.map((f) => f.id), [...model.failedOrder].reverse(), `seed ${seed}: failed rows, newest first`);
      for (const s of sessions) {
        const m = model.perSession.get(s)!;
        const r = row(stats, s, at);
        assert.deepEqual(
          { jobs: r.jobs, failures: r.failures, frames: r.frames, job: r.job, state: r.state, lastError: r.lastError },
          { jobs: m.jobs, failures: m.failures, frames: m.frames, job: m.held.at(-1) ?? null, state: m.held.length ? "working" : "idle", lastError: m.lastError },
          `seed ${seed} session ${s}`,
        );
      }
    }
  });
});

describe("RunStats session rows", () => {
  it("joined → idle; holding a job → working (the latest leased shown); letting go of all → idle", () => {
    const stats = makeStats({ pending: 3, total: 3 });
    stats.apply(ev.joined("s", T0 + 5));
    assert.deepEqual(row(stats, "s"), {
      id: "s", worker: "tab-s", browser: "Chrome (headless) 143", renderer: "SwiftShader", state: "idle",
      frames: 0, framesPerSecond: 0, jobs: 0, failures: 0, job: null, lastError: null, since: T0 + 5,
    });
    stats.apply(ev.leased("a", "s"));
    assert.equal(row(stats, "s").state, "working");
    assert.equal(row(stats, "s").job, "a");
    stats.apply(ev.leased("b", "s")); // taken while a's last frames encode (markAllIssued)
    assert.equal(row(stats, "s").job, "b");
    stats.apply(ev.done("b", "s", 1));
    assert.deepEqual([row(stats, "s").state, row(stats, "s").job], ["working", "a"], "still holds a");
    stats.apply(ev.released("a", "s"));
    assert.deepEqual([row(stats, "s").state, row(stats, "s").job, row(stats, "s").jobs], ["idle", null, 1]);
    // A job id it never held (a late event) changes nothing in what it holds.
    stats.apply(ev.leased("c", "s"));
    stats.apply(ev.done("zzz", "s", 1));
    assert.equal(row(stats, "s").job, "c");
  });

  it("a retried or failed attempt counts a failure and sets lastError; a release does neither", () => {
    const stats = makeStats({ pending: 3, total: 3 });
    stats.apply(ev.joined("s"));
    stats.apply(ev.leased("a", "s"));
    stats.apply(ev.retried("a", "s", "WebGL context lost"));
    assert.deepEqual([row(stats, "s").failures, row(stats, "s").lastError, row(stats, "s").state], [1, "WebGL context lost", "idle"]);
    stats.apply(ev.leased("a", "s"));
    stats.apply(ev.failed("a", "s", "timeout"));
    assert.deepEqual([row(stats, "s").failures, row(stats, "s").lastError], [2, "timeout"]);
    stats.apply(ev.leased("b", "s"));
    stats.apply(ev.released("b", "s"));
    assert.deepEqual([row(stats, "s").failures, row(stats, "s").lastError, row(stats, "s").job], [2, "timeout", null]);
  });

  it("hung and quarantined show as such (not working) with their reason; recycling keeps lastError", () => {
    const stats = makeStats({ pending: 9, total: 9 });
    for (const s of ["h", "q", "r"]) {
      stats.apply(ev.joined(s));
      stats.apply(ev.leased(`job-${s}`, s));
      stats.apply(ev.retried(`job-${s}`, s, "old error"));
      stats.apply(ev.leased(`job2-${s}`, s));
    }
    stats.apply(ev.hung("h", "no grab answered in 30 s"));
    stats.apply(ev.quarantined("q", "10 failures, peers 0"));
    stats.apply(ev.recycled("r"));
    assert.deepEqual([row(stats, "h").state, row(stats, "h").lastError, row(stats, "h").job], ["hung", "no grab answered in 30 s", "job2-h"]);
    assert.deepEqual([row(stats, "q").state, row(stats, "q").lastError], ["quarantined", "10 failures, peers 0"]);
    assert.deepEqual([row(stats, "r").state, row(stats, "r").lastError], ["recycling", "old error"]);
  });

  it("left: a left row holds no job and has leftAt; hung and quarantined keep their state when they leave, others become left", () => {
    const stats = makeStats({ pending: 9, total: 9 });
    const ends = { idle: undefined, working: undefined, hung: ev.hung, quarantined: ev.quarantined, recycling: ev.recycled } as const;
    for (const [name, end] of Object.entries(ends)) {
      stats.apply(ev.joined(name));
      if (name !== "idle") stats.apply(ev.leased(`job-${name}`, name));
      if (end) stats.apply(end(name));
      stats.apply(ev.left(name, T0 + 777));
    }
    const want = { idle: "left", working: "left", hung: "hung", quarantined: "quarantined", recycling: "left" };
    for (const [name, state] of Object.entries(want)) {
      const r = row(stats, name);
      assert.equal(r.state, state, name);
      assert.equal(r.job, null, `${name} holds no job after it left`);
      assert.equal(r.leftAt, T0 + 777, name);
    }
    assert.equal(stats.view(T0).counts.leased, 4, "leaving moves no count: dispatch releases the leases (job.released)");
  });

  it("events of unknown sessions make no rows (a late event after the row was dropped)", () => {
    const stats = makeStats({ pending: 2, total: 2 });
    for (const e of [ev.leased("a", "ghost"), ev.frame("a", "ghost", T0), ev.done("a", "ghost", 1), ev.hung("ghost"), ev.quarantined("ghost"), ev.recycled("ghost"), ev.left("ghost")]) stats.apply(e);
    assert.deepEqual(stats.view(T0).sessions, []);
    assert.equal(stats.session("ghost"), undefined);
  });

  it("frames per session and its frames/s over RATE_WINDOW_S since it joined", () => {
    const stats = makeStats({ pending: 1, total: 1 });
    stats.apply(ev.joined("a", T0));
    stats.apply(ev.joined("b", T0));
    stats.apply(ev.leased("j", "a"));
    for (let i = 0; i < 20; i++) stats.apply(ev.frame("j", "a", T0 + i * 100, i)); // 10 frames/s for 2 s
    stats.apply(ev.frame("j", "b", T0 + 500));
    assert.equal(row(stats, "a", T0 + 2000).frames, 20);
    assert.equal(row(stats, "a", T0 + 2000).framesPerSecond, 10);
    assert.equal(row(stats, "b", T0 + 2000).frames, 1);
    assert.equal(row(stats, "b", T0 + 2000).framesPerSecond, 0.5);
    assert.equal(row(stats, "a", T0 + (RATE_WINDOW_S + 2) * 1000).framesPerSecond, 0, "frames older than the window are forgotten");
    assert.equal(stats.session("a")?.frames, 20, "session() gives the figures session.left reports");
  });

  it(`left rows are capped at MAX_LEFT_SESSION_ROWS (${MAX_LEFT_SESSION_ROWS}); live sessions are never dropped`, () => {
    const stats = makeStats();
    for (const s of ["live-1", "live-2", "live-3"]) stats.apply(ev.joined(s));
    stats.apply(ev.hung("live-3")); // hung but not left: still a live row
    for (let i = 0; i < MAX_LEFT_SESSION_ROWS * 3; i++) {
      stats.apply(ev.joined(`gone-${i}`, T0 + i));
      stats.apply(ev.left(`gone-${i}`, T0 + i + 1));
      const rows = stats.view(T0).sessions;
      assert.ok(rows.filter((r) => r.leftAt !== undefined).length <= MAX_LEFT_SESSION_ROWS);
    }
    const rows = stats.view(T0).sessions;
    assert.equal(rows.filter((r) => r.leftAt !== undefined).length, MAX_LEFT_SESSION_ROWS);
    assert.deepEqual(rows.filter((r) => r.leftAt === undefined).map((r) => r.id), ["live-1", "live-2", "live-3"]);
    const kept = rows.filter((r) => r.leftAt !== undefined).map((r) => r.id);
    assert.deepEqual(kept, Array.from({ length: MAX_LEFT_SESSION_ROWS }, (_, i) => `gone-${MAX_LEFT_SESSION_ROWS * 2 + i}`), "the latest to leave are kept");
  });

  it("the session that left last keeps its row, even when it joined first", () => {
    // A long-lived tab outlives MAX_LEFT_SESSION_ROWS recycled ones; when it leaves, its row (its figures
    // for the whole run) must be shown, and the oldest departure dropped instead.
    const stats = makeStats();
    stats.apply(ev.joined("long-lived", T0));
    for (let i = 0; i < MAX_LEFT_SESSION_ROWS; i++) {
      stats.apply(ev.joined(`short-${i}`, T0 + 10 + i));
      stats.apply(ev.left(`short-${i}`, T0 + 1000 + i));
    }
    stats.apply(ev.left("long-lived", T0 + 5000));
    const ids = stats.view(T0 + 5000).sessions.map((r) => r.id);
    assert.equal(ids.length, MAX_LEFT_SESSION_ROWS);
    assert.ok(ids.includes("long-lived"), "the session that just left is shown");
    assert.ok(!ids.includes("short-0"), "the earliest departure is the one dropped");
  });

  it(`failed rows: newest first, at most MAX_FAILED_ROWS (${MAX_FAILED_ROWS}), removed when requeued, a refailed job on top`, () => {
    const n = MAX_FAILED_ROWS + 37;
    const stats = makeStats({ pending: n, total: n });
    stats.noteFailed([{ id: "before-run", attempts: 5, error: "old", at: T0 - 1 }]);
    assert.deepEqual(stats.view(T0).failed, [{ id: "before-run", attempts: 5, error: "old", at: T0 - 1 }]);
    for (let i = 0; i < n; i++) {
      stats.apply(ev.leased(`j${i}`, "s"));
      stats.apply(ev.failed(`j${i}`, "s", `e${i}`, T0 + i, 3));
      assert.ok(stats.view(T0).failed.length <= MAX_FAILED_ROWS);
    }
    let failed = stats.view(T0).failed;
    assert.equal(failed.length, MAX_FAILED_ROWS);
    assert.deepEqual(failed.map((f) => f.id), Array.from({ length: MAX_FAILED_ROWS }, (_, i) => `j${n - 1 - i}`));
    assert.deepEqual(failed[0], { id: `j${n - 1}`, attempts: 3, error: `e${n - 1}`, at: T0 + n - 1 });
    stats.apply(ev.requeued([`j${n - 1}`, `j${n - 5}`, "not-a-row"]));
    failed = stats.view(T0).failed;
    assert.ok(!failed.some((f) => [`j${n - 1}`, `j${n - 5}`].includes(f.id)));
    assert.equal(failed[0].id, `j${n - 2}`);
    // Failing again after the requeue: back on top, with its new attempt and error, once.
    stats.apply(ev.leased(`j${n - 5}`, "s"));
    stats.apply(ev.failed(`j${n - 5}`, "s", "again", T0 + 10_000, 2));
    failed = stats.view(T0).failed;
    assert.deepEqual(failed[0], { id: `j${n - 5}`, attempts: 2, error: "again", at: T0 + 10_000 });
    assert.equal(failed.filter((f) => f.id === `j${n - 5}`).length, 1);
    assert.ok(failed.length <= MAX_FAILED_ROWS);
  });
});

describe("RunStats view", () => {
  it("framesPerSecond over RATE_WINDOW_S, over the time since the start when shorter", () => {
    const stats = makeStats();
    for (let i = 0; i < 30; i++) stats.apply(ev.frame("j", "s", T0 + i * 100)); // 30 frames in 3 s
    assert.equal(stats.view(T0 + 3000).framesPerSecond, 10, "30 frames over 3 s of run");
    assert.equal(stats.view(T0 + 6000).framesPerSecond, 5, "30 frames over 6 s of run");
    // Later than the window past the last frame: none counted.
    assert.equal(stats.view(T0 + (RATE_WINDOW_S + 3) * 1000).framesPerSecond, 0);
    // In between: frames still in the window, over the whole window.
    assert.equal(stats.view(T0 + RATE_WINDOW_S * 1000 + 500).framesPerSecond, Math.round((20 / RATE_WINDOW_S) * 10) / 10, "seconds 1..2 remain");
  });

  it("framesPerSecond follows a steady rate within the window's resolution (one second in RATE_WINDOW_S)", () => {
    for (const fps of [1, 3, 7, 25, 60]) {
      const stats = makeStats();
      const seconds = 3 * RATE_WINDOW_S;
      for (let i = 0; i < fps * seconds; i++) stats.apply(ev.frame("j", "s", T0 + Math.floor((i * 1000) / fps)));
      for (const now of [T0 + seconds * 1000, T0 + seconds * 1000 - 1, T0 + seconds * 1000 - 500]) {
        const got = stats.view(now).framesPerSecond;
        assert.ok(got <= fps + 0.05 && got >= fps * (1 - 1 / RATE_WINDOW_S) - 0.05, `${fps} frames/s read as ${got} at +${now - T0} ms`);
      }
    }
  });

  it("etaSeconds: null with no job rate, 0 when nothing remains, remaining / job rate otherwise", () => {
    const stats = makeStats({ pending: 100, total: 100 });
    assert.equal(stats.view(T0 + 5000).etaSeconds, null, "no job done yet: unknown, not infinite or 0");
    // 10 jobs done in the first 10 s: 1 job/s; 90 remain (pending and leased both count).
    for (let i = 0; i < 10; i++) {
      stats.apply(ev.leased(`j${i}`, "s"));
      stats.apply(ev.done(`j${i}`, "s", 1, T0 + 500 + i * 1000));
    }
    stats.apply(ev.leased("j10", "s"));
    assert.deepEqual([stats.counts.pending, stats.counts.leased], [89, 1]);
    assert.equal(stats.view(T0 + 10_000).etaSeconds, 90);
    assert.equal(stats.view(T0 + 20_000).etaSeconds, 180, "the same 10 jobs over 20 s: half the rate");
    // No job done for longer than the job window (60 s): the rate is unknown again.
    assert.equal(stats.view(T0 + 200_000).etaSeconds, null);

    const finishedStats = makeStats({ pending: 0, leased: 0, done: 5, failed: 2, total: 7 });
    assert.equal(finishedStats.view(T0 + 1000).etaSeconds, 0, "nothing pending or leased: 0 even with no rate");
  });

  it("pauses, write pauses and the run's end are shown and cleared", () => {
    const stats = makeStats();
    stats.apply({ type: "dispatch.paused", at: T0 + 1, by: "dashboard 127.0.0.1" });
    stats.apply({ type: "write.paused", at: T0 + 2, store: "queue", error: "SQLITE_FULL" });
    let view = stats.view(T0);
    assert.deepEqual(view.paused, { by: "dashboard 127.0.0.1", since: T0 + 1 });
    assert.deepEqual(view.writePaused, { store: "queue", error: "SQLITE_FULL", since: T0 + 2 });
    assert.equal(view.finished, false);
    stats.apply({ type: "dispatch.resumed", at: T0 + 3, by: "dashboard" });
    stats.apply({ type: "write.resumed", at: T0 + 4, seconds: 2 });
    stats.apply({ type: "run.done", at: T0 + 5, frames: 0, jobs_done: 0, counts: stats.counts, seconds: 0 });
    view = stats.view(T0);
    assert.deepEqual([view.paused, view.writePaused, view.finished, view.stopped], [null, null, true, null]);
    assert.deepEqual([view.out, view.startedAt, view.now], ["/data/out", T0, T0]);
    // A run that ended early says why (a page's text in it, cleaned).
    const stopped = makeStats();
    stopped.apply({ type: "run.done", at: T0 + 5, frames: 0, jobs_done: 0, counts: stopped.counts, seconds: 0, stopped: "stopped by SIGINT\u001b[2J" });
    assert.deepEqual([stopped.view(T0).finished, stopped.view(T0).stopped], [true, "stopped by SIGINT?[2J"]);
  });

  it("version: every event bumps it by one; view() and advance() do not", () => {
    const stats = makeStats({ pending: 10, total: 10 });
    const events = [ev.joined("s"), ev.leased("a", "s"), ev.frame("a", "s", T0), ev.done("a", "s", 1), ev.left("ghost"), { type: "run.progress", at: T0, frames: 1, jobs_done: 1, failed: 0 } as RunEvent];
    let last = stats.version;
    for (const e of events) {
      stats.apply(e);
      assert.equal(stats.version, last + 1, e.type);
      last = stats.version;
      stats.view(T0 + 5000);
      stats.advance(T0 + 5000);
      assert.equal(stats.version, last, "reading changes nothing");
    }
  });
});

describe("RateWindow", () => {
  it("drops buckets older than its window, including a reused slot's old count", () => {
    const w = new RateWindow(10);
    w.add(T0, 5);
    assert.equal(w.perSecond(T0 + 9_999, T0 - 100_000), 0.5, "still in the window");
    assert.equal(w.perSecond(T0 + 10_000, T0 - 100_000), 0, "out of it");
    w.add(T0 + 10_000, 1); // the same slot as T0's second
    assert.equal(w.perSecond(T0 + 10_500, T0 - 100_000), 0.1, "the old count of the slot is gone");
    assert.equal(w.perSecond(T0 - 1000, T0 - 100_000), 0, "a now before the counts sees none of them");
  });

  it("over a shorter span at the start (at least one second)", () => {
    const w = new RateWindow(10);
    for (let i = 0; i < 4; i++) w.add(T0 + i * 500, 1);
    assert.equal(w.perSecond(T0 + 2000, T0), 2);
    assert.equal(w.perSecond(T0 + 4000, T0), 1);
    const early = new RateWindow(10);
    early.add(T0 + 10, 3);
    assert.equal(early.perSecond(T0 + 100, T0), 3, "a tenth of a second in: over one second, not 30/s");
  });

  it("a steady rate reads within one second's worth of the truth, for any window size and phase", () => {
    const rnd = random(42);
    for (let k = 0; k < 200; k++) {
      const seconds = 1 + Math.floor(rnd() * 60);
      const rate = 1 + Math.floor(rnd() * 50);
      const w = new RateWindow(seconds);
      const start = T0 + Math.floor(rnd() * 1000);
      const end = start + (seconds * 2 + 1) * 1000 + Math.floor(rnd() * 1000);
      for (let t = start; t < end; t += 1000 / rate) w.add(Math.floor(t), 1);
      const got = w.perSecond(end, start);
      assert.ok(got <= rate + 1e-9 && got >= rate * (1 - 1 / seconds) - 1e-9, `window ${seconds} s, ${rate}/s: read ${got}`);
    }
  });
});

describe("RateSeries", () => {
  it("closes a bucket when advanced past its end, with its frames per second", () => {
    const s = new RateSeries(T0);
    for (let i = 0; i < 7; i++) s.add(T0 + i * 100, 1);
    s.advance(T0 + 999);
    assert.deepEqual(s.all(), []);
    s.advance(T0 + 1000);
    assert.deepEqual(s.all(), [{ t: T0 + 1000, fps: 7 }]);
    s.add(T0 + 1500, 3);
    s.advance(T0 + 2000);
    assert.deepEqual(s.all(), [{ t: T0 + 1000, fps: 7 }, { t: T0 + 2000, fps: 3 }]);
  });

  it("an idle stretch of any length becomes one zero point, not one per idle second", () => {
    for (const idleSeconds of [2, 3, 10, 3600, 86_400 * 30]) {
      const s = new RateSeries(T0);
      s.add(T0 + 100, 4);
      s.add(T0 + 100 + idleSeconds * 1000, 2); // the next frame after the stretch
      s.advance(T0 + 100 + idleSeconds * 1000 + 1000);
      const points = s.all();
      assert.ok(points.length <= 3, `${idleSeconds} s idle: ${points.length} points`);
      assert.deepEqual(points[0], { t: T0 + 1000, fps: 4 });
      assert.equal(points[1].fps, 0, "the stretch reads as zero");
      assert.equal(points.at(-1)!.fps, 2);
      assert.ok(points.every((p, i) => i === 0 || p.t > points[i - 1].t), "times increase");
    }
  });

  it("never holds more than MAX_RATE_POINTS points over a long run (100k seconds, advanced every second)", () => {
    const s = new RateSeries(T0);
    const rnd = random(7);
    let frames = 0;
    const seconds = 100_000;
    for (let sec = 0; sec < seconds; sec++) {
      // Busy and idle stretches of varying length.
      const busy = Math.floor(sec / 977) % 3 !== 0;
      if (busy) {
        const n = 1 + Math.floor(rnd() * 20);
        s.add(T0 + sec * 1000 + 500, n);
        frames += n;
      }
      s.advance(T0 + sec * 1000 + 999);
      if (sec % 499 === 0) assert.ok(s.all().length <= MAX_RATE_POINTS, `${s.all().length} points at ${sec} s`);
    }
    const end = T0 + seconds * 1000;
    s.advance(end);
    const points = s.all();
    assert.ok(points.length <= MAX_RATE_POINTS && points.length >= MAX_RATE_POINTS / 2, `${points.length} points`);
    assert.ok(points.every((p, i) => i === 0 || p.t > points[i - 1].t), "times increase");
    assert.ok(points.at(-1)!.t <= end && points.at(-1)!.t > end - (seconds * 1000) / (MAX_RATE_POINTS / 2), "the last point is recent");
    // The frames under the curve (each point's rate over the time since the previous one) are the frames added.
    let area = 0;
    let prev = T0;
    for (const p of points) {
      area += (p.fps * (p.t - prev)) / 1000;
      prev = p.t;
    }
    assert.ok(Math.abs(area - frames) / frames < 0.005, `${frames} frames added, ${area.toFixed(0)} under the curve`);
  });

  it("a steady rate stays that rate across merges (no bucket reads half)", () => {
    // 10 frames/s for long enough to merge twice: every point of the chart must read 10.
    const s = new RateSeries(T0);
    const seconds = MAX_RATE_POINTS * 3;
    for (let ms = 0; ms < seconds * 1000; ms += 100) s.add(T0 + ms, 1);
    s.advance(T0 + seconds * 1000);
    const wrong = s.all().filter((p) => Math.abs(p.fps - 10) > 0.01);
    assert.deepEqual(wrong, [], "points away from the steady 10 frames/s");
    const points = s.all();
    let prev = T0;
    for (const p of points) {
      assert.ok(p.t > prev, "times increase");
      prev = p.t;
    }
  });

  it("merging keeps the time-weighted mean: pairs of history points of unequal lengths", () => {
    const rnd = random(3);
    const history: RatePoint[] = [];
    let t = T0 - 10_000_000;
    for (let i = 0; i < MAX_RATE_POINTS * 3 + 1; i++) {
      t += 1000 * (1 + Math.floor(rnd() * 5));
      history.push({ t, fps: Math.round(rnd() * 3000) / 100 });
    }
    // The frames under the curve, each point's rate over the time since the previous point, from the
    // same start for both (the series counts a second before the first history point).
    const area = (points: readonly RatePoint[]) => {
      let sum = 0;
      let prev = history[0].t - 1000;
      for (const p of points) {
        sum += p.fps * (p.t - prev);
        prev = p.t;
      }
      return sum / 1000;
    };
    const all = new RateSeries(T0, history).all();
    // After the history, two zero points: nothing ran from its last point until this run's start.
    assert.deepEqual(all.slice(-2), [{ t: history.at(-1)!.t + 1, fps: 0 }, { t: T0, fps: 0 }]);
    const kept = all.slice(0, -2);
    assert.ok(kept.length <= MAX_RATE_POINTS / 2, `${kept.length} points kept of ${history.length}`);
    assert.ok(kept.length > MAX_RATE_POINTS / 8);
    assert.equal(kept.at(-1)!.t, history.at(-1)!.t, "the latest time is kept");
    assert.ok(kept.every((p) => history.some((h) => h.t === p.t)), "merged points end where a history point ended");
    const before = area(history);
    const after = area(kept);
    assert.ok(Math.abs(after - before) / before < 0.001, `frames before ${before.toFixed(1)}, after ${after.toFixed(1)}`);
    // And a merged pair's rate lies between its two rates.
    const twoPairs = new RateSeries(T0, Array.from({ length: MAX_RATE_POINTS / 2 + 2 }, (_, i) => ({ t: T0 - 1_000_000 + i * 1000, fps: i % 2 ? 10 : 0 }))).all().slice(0, -2);
    assert.ok(twoPairs.every((p) => p.fps === 5), "0 and 10 over equal times merge to 5");
  });

  it("history given to the constructor is kept as it was when short, and new points follow it", () => {
    const history = Array.from({ length: 10 }, (_, i) => ({ t: T0 - 100_000 + i * 5000, fps: i }));
    const s = new RateSeries(T0, history);
    const gap = [{ t: history.at(-1)!.t + 1, fps: 0 }, { t: T0, fps: 0 }]; // nothing ran in between
    assert.deepEqual(s.all(), [...history, ...gap]);
    s.add(T0 + 10, 2);
    s.advance(T0 + 1000);
    assert.deepEqual(s.all(), [...history, ...gap, { t: T0 + 1000, fps: 2 }]);
    // A history that ends right at the start needs no gap.
    assert.deepEqual(new RateSeries(T0, [{ t: T0 - 1, fps: 3 }]).all(), [{ t: T0 - 1, fps: 3 }]);
    assert.deepEqual(new RateSeries(T0, []).all(), []);
  });

  it("takeChanges: everything (reset) first and after a merge, only the new points otherwise", () => {
    const history = [{ t: T0 - 2000, fps: 1 }, { t: T0 - 1000, fps: 2 }];
    const s = new RateSeries(T0, history);
    assert.deepEqual(s.takeChanges(), { points: [...history, { t: T0 - 999, fps: 0 }, { t: T0, fps: 0 }], reset: true });
    assert.deepEqual(s.takeChanges(), { points: [], reset: false });
    s.add(T0 + 500, 3);
    s.advance(T0 + 3000); // one bucket with 3 frames, one zero point for the idle second
    assert.deepEqual(s.takeChanges(), { points: [{ t: T0 + 1000, fps: 3 }, { t: T0 + 3000, fps: 0 }], reset: false });
    assert.deepEqual(s.takeChanges(), { points: [], reset: false });
    // Fill up to a merge: the change is the whole (merged) series.
    let now = T0 + 3000;
    let sawReset = false;
    for (let i = 0; i < MAX_RATE_POINTS && !sawReset; i++) {
      s.add(now + 1, 1);
      now += 1000;
      s.advance(now);
      const changes = s.takeChanges();
      if (changes.reset) {
        sawReset = true;
        assert.deepEqual(changes.points, s.all());
        assert.ok(changes.points.length <= MAX_RATE_POINTS / 2 + 1);
      } else assert.deepEqual(changes.points, [{ t: now, fps: 1 }]);
    }
    assert.ok(sawReset, "a merge happened");
    assert.equal(s.takeChanges().reset, false, "a reset is told once");
  });
});

describe("browserName", () => {
  const cases: [string, string][] = [
    [CHROME_UA, "Chrome (headless) 143"],
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome 131"],
    ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Ubuntu Chromium/79.0.3945.79 Chrome/79.0.3945.79 Safari/537.36", "Chromium 79"],
    ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128"],
    ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15", "Safari 17"],
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "Safari 17"],
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", "Edge 131"],
    // An Android WebView's "Version/4.0" is no Safari version.
    ["Mozilla/5.0 (Linux; Android 14; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36", "Chrome 120"],
  ];
  for (const [ua, want] of cases) it(`${want} from ${ua.slice(0, 60)}…`, () => assert.equal(browserName(ua), want));

  it("garbage: the agent cut to 40 characters, never more, never a throw", () => {
    const rnd = random(9);
    const garbage = ["", "x", "Chrome/", "Chrome/abc", "Firefox", "Version/x Safari", "Safari/605", "a".repeat(10_000), "\u001b[31mred\u001b[0m", "🎉".repeat(30)];
    for (let i = 0; i < 200; i++) garbage.push(Array.from({ length: Math.floor(rnd() * 80) }, () => String.fromCharCode(32 + Math.floor(rnd() * 90))).join(""));
    for (const ua of garbage) {
      const name = browserName(ua);
      if (/(HeadlessChrome|Chromium|Edg|Firefox|Chrome)\/\d/.test(ua)) continue; // random text naming a browser
      assert.equal(name, ua.slice(0, 40), JSON.stringify(ua));
    }
  });
});

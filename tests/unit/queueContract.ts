// The shared behavioural suite for JobQueue backends: every backend (SQLite now, Redis later) calls
// queueContractSuite with a factory and must pass all of it. Time is a fake clock, never a sleep.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { JobSpec } from "../../protocol/job.js";
import { ChangedJobError } from "../../server/queue/changedJobs.js";
import type { AddResult, JobQueue, QueueOptions } from "../../server/queue/JobQueue.js";

export type MakeQueue = (opts: QueueOptions & { now: () => number }) => Promise<JobQueue>;

/** A clock the test moves by hand. */
export class FakeClock {
  constructor(public t = 1_700_000_000_000) {}
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A job with enough in it to show the spec survives the round trip intact. */
export function makeJob(id: string, n = 0): JobSpec {
  return {
    id,
    params: { n, tag: `t${n}` },
    frames: [{ camera: { position: [0, 1, 5], lookAt: [0, 0, 0], fov: 50 } }, {}],
    width: 64,
    height: 48,
    format: "png",
  };
}

const TTL = 1_000;

/** The counts of an add, without the report of changed jobs (tested on its own). */
const addCounts = ({ added, duplicates }: AddResult) => ({ added, duplicates });

export interface ContractOptions {
  /**
   * For a backend shared by several server processes (Redis): opens a second instance on the same queue
   * as `q`, as another server would. Given, recoverLeased is checked with those semantics (it ends only
   * leases that are over, not another server's live ones) instead of the single-process ones, and owners
   * are checked to be per instance.
   */
  openPeer?: (q: JobQueue, opts: QueueOptions & { now: () => number }) => Promise<JobQueue>;
}

export function queueContractSuite(name: string, makeQueue: MakeQueue, contractOptions: ContractOptions = {}): void {
  const { openPeer } = contractOptions;
  /** Runs `fn` against a fresh queue with a fake clock, closing the queue whatever happens. */
  async function withQueue(
    opts: QueueOptions,
    fn: (q: JobQueue, clock: FakeClock) => Promise<void>,
  ): Promise<void> {
    const clock = new FakeClock();
    const q = await makeQueue({ leaseTtlMs: TTL, maxAttempts: 3, ...opts, now: clock.now });
    try {
      await fn(q, clock);
    } finally {
      await q.close();
    }
  }

  async function takeOrFail(q: JobQueue, owner: string) {
    const lease = await q.take(owner);
    assert.ok(lease, `expected ${owner} to get a lease`);
    return lease;
  }

  describe(`JobQueue contract: ${name}`, () => {
    it("take returns null on an empty queue, and counts are all zero", () =>
      withQueue({}, async (q) => {
        assert.equal(await q.take("s1"), null);
        assert.deepEqual(await q.counts(), { pending: 0, leased: 0, done: 0, failed: 0, total: 0, staleRejections: 0 });
        assert.deepEqual(await q.failures(), []);
      }));

    it("take serves jobs first in, first out, and fills in the lease", () =>
      withQueue({}, async (q, clock) => {
        await q.add([makeJob("a", 1), makeJob("b", 2), makeJob("c", 3)]);
        const a = await takeOrFail(q, "s1");
        assert.deepEqual(a.job, makeJob("a", 1));
        assert.equal(a.owner, "s1");
        assert.equal(a.attempt, 1);
        assert.equal(a.expiresAt, clock.t + TTL);
        assert.equal(typeof a.token, "string");
        assert.ok(a.token.length > 0);
        assert.equal((await takeOrFail(q, "s2")).job.id, "b");
        assert.equal((await takeOrFail(q, "s1")).job.id, "c");
        assert.equal(await q.take("s1"), null);
        assert.equal(await q.state("a"), "leased");
      }));

    it("gives every take a fresh token, also for a retake of the same job", () =>
      withQueue({}, async (q) => {
        await q.add([makeJob("a"), makeJob("b")]);
        const first = await takeOrFail(q, "s1");
        const other = await takeOrFail(q, "s1");
        assert.notEqual(first.token, other.token);
        assert.equal(await q.putBack(first.token), true);
        const again = await takeOrFail(q, "s1");
        assert.equal(again.job.id, "a");
        assert.notEqual(again.token, first.token);
        assert.equal(again.attempt, 2);
      }));

    it("add is idempotent: existing ids are skipped and counted as duplicates", () =>
      withQueue({}, async (q) => {
        assert.deepEqual(addCounts(await q.add([makeJob("a"), makeJob("b")])), { added: 2, duplicates: 0 });
        assert.deepEqual(addCounts(await q.add([makeJob("b"), makeJob("c"), makeJob("a")])), { added: 1, duplicates: 2 });
        // Duplicates inside one call count too, and the first one wins.
        assert.deepEqual(addCounts(await q.add([makeJob("d", 1), makeJob("d", 2)])), { added: 1, duplicates: 1 });
        assert.deepEqual(addCounts(await q.add([])), { added: 0, duplicates: 0 });
        // Re-adding a finished job does not resurrect it.
        for (let i = 0; i < 3; i++) assert.equal(await q.complete((await takeOrFail(q, "s1")).token), true);
        const d = await takeOrFail(q, "s1");
        assert.deepEqual(d.job, makeJob("d", 1));
        assert.deepEqual(addCounts(await q.add([makeJob("a")])), { added: 0, duplicates: 1 });
        assert.equal(await q.state("a"), "done");
        assert.equal(await q.take("s1"), null);
        assert.equal((await q.counts()).total, 4);
      }));

    it("add accepts an async iterable, and a large add keeps its order", () =>
      withQueue({}, async (q) => {
        const n = 12_001; // spans several write batches in a batching backend
        async function* source() {
          for (let i = 0; i < n; i++) yield makeJob(`job-${String(i).padStart(6, "0")}`, i);
        }
        assert.deepEqual(addCounts(await q.add(source())), { added: n, duplicates: 0 });
        function* again() {
          for (let i = n - 10; i < n + 5; i++) yield makeJob(`job-${String(i).padStart(6, "0")}`, i);
        }
        assert.deepEqual(addCounts(await q.add(again())), { added: 5, duplicates: 10 });
        const counts = await q.counts();
        assert.equal(counts.pending, n + 5);
        assert.equal(counts.total, n + 5);
        for (let i = 0; i < 3; i++) assert.equal((await takeOrFail(q, "s1")).job.params?.n, i);
      }));

    it("add reports known ids whose spec differs, by the queued job's state, and keeps the queued spec", () =>
      withQueue({ maxAttempts: 1 }, async (q) => {
        await q.add(["p", "l", "d", "f", "same"].map((id) => makeJob(id, 1)));
        assert.equal(await q.putBack((await takeOrFail(q, "s1")).token), true); // p fails (maxAttempts 1)
        const l = await takeOrFail(q, "s1"); // l stays leased
        assert.equal(await q.complete((await takeOrFail(q, "s1")).token), true); // d done
        // Now p is failed, l leased, d done; f and same are still pending.
        const edited = (id: string) => makeJob(id, 2);
        // The same spec with its keys in another order is not a change.
        const reordered = Object.fromEntries(Object.entries(makeJob("same", 1)).reverse()) as JobSpec;
        const result = await q.add([edited("p"), edited("l"), edited("d"), edited("f"), reordered, makeJob("new")]);
        assert.deepEqual(addCounts(result), { added: 1, duplicates: 5 });
        assert.equal(result.changed?.count, 4);
        assert.equal(result.changed?.replaced, 0);
        assert.deepEqual(result.changed?.byState, {
          failed: { count: 1, ids: ["p"] },
          leased: { count: 1, ids: ["l"] },
          done: { count: 1, ids: ["d"] },
          pending: { count: 1, ids: ["f"] },
        });
        // Nothing was replaced: the pending job is served with its queued spec.
        assert.equal(await q.complete(l.token), true);
        assert.deepEqual((await takeOrFail(q, "s1")).job, makeJob("f", 1));
      }));

    it("add with replacePending replaces only pending jobs' specs, as new jobs (attempts reset)", () =>
      withQueue({ maxAttempts: 3 }, async (q) => {
        await q.add(["retried", "leased", "done"].map((id) => makeJob(id, 1)));
        assert.equal(await q.putBack((await takeOrFail(q, "s1")).token, { message: "boom" }), true); // retried: pending, 1 attempt
        // s1 failed "retried" last, so it is served the others first.
        const leased = await takeOrFail(q, "s1");
        const done = await takeOrFail(q, "s1");
        assert.deepEqual([leased.job.id, done.job.id], ["leased", "done"]);
        assert.equal(await q.complete(done.token), true);
        const result = await q.add(["retried", "leased", "done"].map((id) => makeJob(id, 2)), { replacePending: true });
        assert.equal(result.changed?.count, 3);
        assert.equal(result.changed?.replaced, 1);
        assert.deepEqual(result.changed?.byState.pending, { count: 1, ids: ["retried"] });
        const retaken = await takeOrFail(q, "s1");
        assert.deepEqual(retaken.job, makeJob("retried", 2));
        assert.equal(retaken.attempt, 1, "a replaced job starts over");
        // The leased job keeps the spec it is being rendered with, and its lease.
        assert.equal(await q.complete(leased.token), true);
        assert.equal(await q.state("done"), "done");
        // Adding the replaced spec again is no longer a change.
        assert.equal((await q.add([makeJob("retried", 2)], { replacePending: true })).changed, undefined);
      }));

    it("add with refuseChanged throws a ChangedJobError naming a known id whose spec differs, and nothing of that add stays queued", () =>
      withQueue({}, async (q) => {
        await q.add([makeJob("a", 1), makeJob("b", 1)]);
        assert.deepEqual(await q.add([makeJob("a", 1), makeJob("b", 1)], { refuseChanged: true }), { added: 0, duplicates: 2 }, "the same specs are no change");
        await assert.rejects(q.add([makeJob("new", 1), makeJob("b", 2)], { refuseChanged: true }), (err: unknown) => {
          assert.ok(err instanceof ChangedJobError);
          assert.deepEqual([err.id, err.state], ["b", "pending"]);
          return true;
        });
        assert.equal(await q.state("new"), null, "the batch with the changed job added nothing");
        // Also jobs of earlier batches of the same add (a source of any length): 6,000 new ones, then the change.
        const many = Array.from({ length: 6000 }, (_, i) => makeJob(`n${i}`, 1));
        await assert.rejects(q.add([...many, makeJob("b", 2)], { refuseChanged: true }), ChangedJobError);
        assert.equal(await q.state("n0"), null);
        assert.equal((await q.counts()).total, 2, "only what was queued before the refused add");
        assert.deepEqual((await takeOrFail(q, "s1")).job, makeJob("a", 1));
      }));

    // Ids are folder names: "Job-A" and "job-a" are one folder on macOS and Windows. The loaders refuse such a
    // pair within one input; the queue refuses it across runs (an id added now against one queued earlier).
    it("add refuses an id that differs only by case from a queued one, naming both; an exact repeat is still a no-op", () =>
      withQueue({}, async (q) => {
        await q.add([makeJob("job-a"), makeJob("Scene.B")]);
        for (const id of ["JOB-A", "Job-a", "scene.b"]) {
          await assert.rejects(q.add([makeJob(id)]), (err: Error) => err.message.includes(`"${id}"`) && /differs only by case/.test(err.message));
        }
        assert.deepEqual(addCounts(await q.add([makeJob("job-a"), makeJob("Scene.B")])), { added: 0, duplicates: 2 });
        const counts = await q.counts();
        assert.equal(counts.total, 2, "nothing was added");
        assert.equal(await q.state("JOB-A"), null);
      }));

    it("complete marks the job done; completing again with the same token is rejected and counted", () =>
      withQueue({}, async (q) => {
        await q.add([makeJob("a")]);
        const lease = await takeOrFail(q, "s1");
        assert.equal(await q.complete(lease.token), true);
        assert.equal(await q.state("a"), "done");
        assert.equal(await q.isCurrent(lease.token), false);
        assert.equal(await q.complete(lease.token), false);
        assert.equal(await q.putBack(lease.token), false);
        assert.equal(await q.extend(lease.token), false);
        assert.equal(await q.state("a"), "done");
        const counts = await q.counts();
        assert.equal(counts.done, 1);
        assert.equal(counts.staleRejections, 3);
      }));

    it("isCurrent holds only for the current unexpired lease, and never counts a rejection", () =>
      withQueue({}, async (q, clock) => {
        await q.add([makeJob("a")]);
        const lease = await takeOrFail(q, "s1");
        assert.equal(await q.isCurrent(lease.token), true);
        clock.advance(TTL - 1);
        assert.equal(await q.isCurrent(lease.token), true);
        clock.advance(1);
        assert.equal(await q.isCurrent(lease.token), false, "expired, even before housekeeping");
        assert.equal(await q.isCurrent("no-such-token"), false);
        assert.equal((await q.counts()).staleRejections, 0);
      }));

    it("a foreign token changes nothing and is counted", () =>
      withQueue({}, async (q) => {
        await q.add([makeJob("a")]);
        const lease = await takeOrFail(q, "s1");
        assert.equal(await q.complete("forged"), false);
        assert.equal(await q.putBack("forged", { message: "x" }), false);
        assert.equal(await q.extend("forged"), false);
        assert.equal((await q.counts()).staleRejections, 3);
        assert.equal(await q.state("a"), "leased");
        assert.equal(await q.isCurrent(lease.token), true);
      }));

    it("a stale token (lease expired, job retaken) cannot complete, put back or extend", () =>
      withQueue({}, async (q, clock) => {
        await q.add([makeJob("a")]);
        const stale = await takeOrFail(q, "s1");
        clock.advance(TTL);
        assert.equal(await q.housekeep(), 1);
        const fresh = await takeOrFail(q, "s2");
        assert.equal(fresh.job.id, "a");
        assert.equal(fresh.attempt, 2);
        assert.equal(await q.complete(stale.token), false);
        assert.equal(await q.putBack(stale.token, { message: "late crash" }), false);
        assert.equal(await q.extend(stale.token), false);
        assert.equal(await q.isCurrent(stale.token), false);
        // The current holder is untouched by all of that.
        assert.equal(await q.state("a"), "leased");
        assert.equal(await q.isCurrent(fresh.token), true);
        assert.equal((await q.counts()).staleRejections, 3);
        assert.equal(await q.complete(fresh.token), true);
        assert.equal(await q.state("a"), "done");
      }));

    it("a stale token stays rejected while the job waits in pending after housekeeping", () =>
      withQueue({}, async (q, clock) => {
        await q.add([makeJob("a")]);
        const stale = await takeOrFail(q, "s1");
        clock.advance(TTL + 5);
        assert.equal(await q.housekeep(), 1);
        assert.equal(await q.complete(stale.token), false);
        assert.equal(await q.extend(stale.token), false);
        assert.equal(await q.state("a"), "pending");
      }));

    it("an expired lease nobody reclaimed is still fenced by its token: it can be extended or completed", () =>
      withQueue({}, async (q, clock) => {
        // The token, not the clock, decides who may finish: until housekeeping hands the job to someone
        // else, the late holder is still the only holder.
        await q.add([makeJob("a"), makeJob("b")]);
        const a = await takeOrFail(q, "s1");
        const b = await takeOrFail(q, "s1");
        clock.advance(TTL * 2);
        assert.equal(await q.isCurrent(a.token), false);
        assert.equal(await q.extend(a.token), true);
        assert.equal(await q.isCurrent(a.token), true);
        assert.equal(await q.complete(b.token), true);
        assert.equal(await q.housekeep(), 0);
        assert.equal((await q.counts()).staleRejections, 0);
      }));

    it("extend keeps a lease alive past its original expiry", () =>
      withQueue({}, async (q, clock) => {
        await q.add([makeJob("a")]);
        const lease = await takeOrFail(q, "s1");
        for (let beat = 0; beat < 5; beat++) {
          clock.advance(TTL * 0.8);
          assert.equal(await q.extend(lease.token), true, `heartbeat ${beat}`);
          assert.equal(await q.housekeep(), 0);
          assert.equal(await q.isCurrent(lease.token), true);
        }
        assert.ok(clock.t > lease.expiresAt + TTL, "well past the original expiry");
        assert.equal(await q.take("s2"), null);
        assert.equal(await q.complete(lease.token), true);
      }));

    it("housekeep returns only expired leases to pending, and they keep their place in line", () =>
      withQueue({}, async (q, clock) => {
        await q.add([makeJob("a"), makeJob("b"), makeJob("c"), makeJob("d")]);
        const a = await takeOrFail(q, "s1");
        const b = await takeOrFail(q, "s2");
        clock.advance(TTL / 2);
        assert.equal(await q.extend(b.token), true);
        assert.equal(await q.housekeep(), 0);
        clock.advance(TTL / 2); // a's lease ends exactly now: expiry is inclusive
        assert.equal(await q.housekeep(), 1);
        assert.equal(await q.housekeep(), 0);
        assert.equal(await q.state("a"), "pending");
        assert.equal(await q.state("b"), "leased");
        assert.equal(await q.isCurrent(a.token), false);
        const counts = await q.counts();
        assert.deepEqual([counts.pending, counts.leased], [3, 1]);
        // a went back ahead of c and d.
        const retake = await takeOrFail(q, "s3");
        assert.equal(retake.job.id, "a");
        assert.equal(retake.attempt, 2);
      }));

    it("releaseOwner returns all of an owner's leases, and only theirs", () =>
      withQueue({}, async (q) => {
        await q.add(["a", "b", "c", "d"].map((id) => makeJob(id)));
        const a = await takeOrFail(q, "s1");
        const b = await takeOrFail(q, "s2");
        const c = await takeOrFail(q, "s1");
        assert.equal(await q.releaseOwner("s1"), 2);
        assert.equal(await q.releaseOwner("s1"), 0);
        assert.equal(await q.releaseOwner("nobody"), 0);
        assert.equal(await q.isCurrent(a.token), false);
        assert.equal(await q.isCurrent(c.token), false);
        assert.equal(await q.isCurrent(b.token), true);
        assert.equal(await q.complete(a.token), false);
        assert.deepEqual(
          [await q.state("a"), await q.state("b"), await q.state("c"), await q.state("d")],
          ["pending", "leased", "pending", "pending"],
        );
        assert.deepEqual(
          [(await takeOrFail(q, "s3")).job.id, (await takeOrFail(q, "s3")).job.id, (await takeOrFail(q, "s3")).job.id],
          ["a", "c", "d"],
        );
      }));

    it("counts attempts, and fails a job put back after maxAttempts, keeping message and stack", () =>
      withQueue({ maxAttempts: 2 }, async (q) => {
        await q.add([makeJob("a"), makeJob("b")]);
        const first = await takeOrFail(q, "s1");
        assert.equal(first.attempt, 1);
        assert.equal(await q.putBack(first.token, { message: "WebGL context lost" }), true);
        assert.equal(await q.state("a"), "pending");
        assert.deepEqual(await q.failures(), []);
        const second = await takeOrFail(q, "s2");
        assert.equal(second.job.id, "a");
        assert.equal(second.attempt, 2);
        const error = { message: "TypeError: boom", stack: "TypeError: boom\n    at render (scene.tsx:12:3)" };
        assert.equal(await q.putBack(second.token, error), true);
        assert.equal(await q.state("a"), "failed");
        assert.deepEqual(await q.failures(), [{ id: "a", attempts: 2, error }]);
        // A failed job is never served again; b is next.
        assert.equal((await takeOrFail(q, "s1")).job.id, "b");
        assert.equal(await q.take("s1"), null);
        const counts = await q.counts();
        assert.deepEqual([counts.pending, counts.leased, counts.failed, counts.total], [0, 1, 1, 2]);
      }));

    it("release returns a job without counting the attempt, never fails it, and is fenced by the token", () =>
      withQueue({ maxAttempts: 1 }, async (q) => {
        await q.add([makeJob("a")]);
        for (let i = 0; i < 3; i++) {
          const lease = await takeOrFail(q, "s1");
          assert.equal(lease.attempt, 1, "the attempt was refunded each time");
          assert.equal(await q.release(lease.token, { message: "ENOSPC: no space left on device" }), true);
          assert.equal(await q.state("a"), "pending");
          assert.equal(await q.release(lease.token), false, "a second release with the same token is stale");
        }
        assert.equal((await q.counts()).staleRejections, 3);
        const last = await takeOrFail(q, "s1");
        assert.equal(await q.complete(last.token), true);
      }));

    it("a retry prefers another owner: a job an owner failed last goes to it only when nothing else is pending", () =>
      withQueue({ maxAttempts: 5 }, async (q, clock) => {
        await q.add([makeJob("a"), makeJob("b"), makeJob("c")]);
        assert.equal(await q.putBack((await takeOrFail(q, "bad")).token, { message: "grab failed" }), true);
        // "a" is the oldest pending job, but "bad" failed it last: "bad" gets the next one instead.
        const b = await takeOrFail(q, "bad");
        assert.equal(b.job.id, "b");
        assert.equal(b.attempt, 1);
        const a = await takeOrFail(q, "good");
        assert.equal(a.job.id, "a", "another owner still gets the oldest job");
        assert.equal(a.attempt, 2);
        // The same for a lease lost by going away and for one that expired.
        assert.equal(await q.releaseOwner("bad", { message: "bad disconnected" }), 1);
        assert.equal((await takeOrFail(q, "bad")).job.id, "c");
        clock.advance(TTL + 1);
        assert.equal(await q.housekeep(), 2, "a (good) and c (bad) expired");
        assert.equal((await takeOrFail(q, "bad")).job.id, "a", "bad did not fail a: it is served in order");
        // Only jobs this owner failed are left: it still gets them rather than nothing.
        assert.equal((await takeOrFail(q, "bad")).job.id, "b");
        const c = await takeOrFail(q, "bad");
        assert.equal(c.job.id, "c");
        assert.equal(await q.take("bad"), null);
      }));

    it("a released job is not held against its owner: the same owner takes it again in order", () =>
      withQueue({}, async (q) => {
        await q.add([makeJob("a"), makeJob("b")]);
        const a = await takeOrFail(q, "s1");
        assert.equal(await q.putBack(a.token, { message: "failed once" }), true);
        const again = await takeOrFail(q, "s2");
        assert.equal(again.job.id, "a");
        // s2 is stopped by the farm (not the job's fault): a goes back uncounted, and s2 may take it first.
        assert.equal(await q.release(again.token, { message: "the farm was stopped" }), true);
        const retaken = await takeOrFail(q, "s2");
        assert.equal(retaken.job.id, "a");
        assert.equal(retaken.attempt, 2, "the released attempt was not counted");
      }));

    it("checkWritable resolves on a healthy queue and does not change what it holds", () =>
      withQueue({}, async (q) => {
        await q.add([makeJob("a")]);
        const before = await q.counts();
        await q.checkWritable();
        await q.checkWritable();
        assert.deepEqual(await q.counts(), before);
        assert.equal((await takeOrFail(q, "s1")).job.id, "a");
      }));

    it("a put back without an error still records a reason when it fails the job", () =>
      withQueue({ maxAttempts: 1 }, async (q) => {
        await q.add([makeJob("a")]);
        assert.equal(await q.putBack((await takeOrFail(q, "s1")).token), true);
        const [failure] = await q.failures();
        assert.equal(failure?.id, "a");
        assert.equal(failure?.attempts, 1);
        assert.ok(failure?.error && failure.error.message.length > 0);
      }));

    it("expiry and release fail a job that has used its attempts, with a reason", () =>
      withQueue({ maxAttempts: 1 }, async (q, clock) => {
        await q.add([makeJob("expires"), makeJob("released"), makeJob("released-quietly")]);
        await takeOrFail(q, "s1");
        await takeOrFail(q, "s2");
        await takeOrFail(q, "s3");
        clock.advance(TTL / 2);
        assert.equal(await q.releaseOwner("s2", { message: "socket closed", stack: "at disconnect" }), 1);
        assert.equal(await q.releaseOwner("s3"), 1);
        clock.advance(TTL / 2);
        assert.equal(await q.housekeep(), 1);
        const failures = await q.failures();
        assert.deepEqual(
          failures.map((f) => f.id),
          ["expires", "released", "released-quietly"],
        );
        assert.ok(failures.every((f) => f.attempts === 1 && f.error && f.error.message.length > 0));
        assert.deepEqual(failures[1]?.error, { message: "socket closed", stack: "at disconnect" });
        assert.equal((await q.counts()).failed, 3);
        assert.equal(await q.take("s4"), null);
      }));

    it("retryFailed puts failed jobs back with attempts reset and the error cleared", () =>
      withQueue({ maxAttempts: 1 }, async (q) => {
        await q.add([makeJob("a"), makeJob("b"), makeJob("c")]);
        assert.equal(await q.putBack((await takeOrFail(q, "s1")).token, { message: "x" }), true);
        assert.equal(await q.putBack((await takeOrFail(q, "s1")).token, { message: "y" }), true);
        const c = await takeOrFail(q, "s1");
        assert.equal(await q.complete(c.token), true);
        assert.equal(await q.retryFailed(), 2);
        assert.equal(await q.retryFailed(), 0);
        assert.deepEqual(await q.failures(), []);
        assert.equal(await q.state("a"), "pending");
        assert.equal(await q.state("c"), "done", "done jobs are not retried");
        const again = await takeOrFail(q, "s1");
        assert.equal(again.job.id, "a");
        assert.equal(again.attempt, 1, "attempts start over");
        // With its attempts reset the job gets its full budget again: this put back fails it afresh.
        assert.equal(await q.putBack(again.token, { message: "z" }), true);
        assert.deepEqual(await q.failures(), [{ id: "a", attempts: 1, error: { message: "z" } }]);
      }));

    it("retryFailed(ids) puts back only those failed jobs; ids that are not failed (or unknown) are skipped", () =>
      withQueue({ maxAttempts: 1 }, async (q) => {
        await q.add(["a", "b", "c", "d"].map((id) => makeJob(id)));
        for (let i = 0; i < 3; i++) assert.equal(await q.putBack((await takeOrFail(q, "s1")).token, { message: `boom ${i}` }), true);
        const d = await takeOrFail(q, "s1"); // d stays leased
        assert.deepEqual((await q.failures(2)).map((f) => f.id), ["a", "b"], "failures(limit) gives the first ones in queue order");
        assert.equal(await q.retryFailed(["b", "d", "nope", "b"]), 1);
        assert.equal(await q.state("b"), "pending");
        assert.equal(await q.state("d"), "leased", "a leased job is not touched");
        assert.deepEqual((await q.failures()).map((f) => f.id), ["a", "c"]);
        assert.equal(await q.retryFailed([]), 0);
        assert.equal(await q.complete(d.token), true);
        const again = await takeOrFail(q, "s2");
        assert.deepEqual([again.job.id, again.attempt], ["b", 1], "attempts start over");
      }));

    // One process per queue (SQLite): a restart voids every lease, since their holder is gone.
    if (!openPeer) {
      it("recoverLeased returns every lease to pending, with the attempt counted", () =>
        withQueue({}, async (q) => {
          await q.add(["a", "b", "c"].map((id) => makeJob(id)));
          const a = await takeOrFail(q, "s1");
          const b = await takeOrFail(q, "s2");
          assert.equal(await q.recoverLeased(), 2);
          assert.equal(await q.recoverLeased(), 0);
          assert.equal(await q.isCurrent(a.token), false);
          assert.equal(await q.complete(b.token), false);
          assert.deepEqual(
            [await q.state("a"), await q.state("b"), await q.state("c")],
            ["pending", "pending", "pending"],
          );
          const retake = await takeOrFail(q, "s3");
          assert.equal(retake.job.id, "a");
          assert.equal(retake.attempt, 2);
        }));

      it("recoverLeased fails a job that has used its attempts, saying the server restarted", () =>
        withQueue({ maxAttempts: 1 }, async (q) => {
          await q.add([makeJob("a")]);
          await takeOrFail(q, "s1");
          assert.equal(await q.recoverLeased(), 1);
          const [failure] = await q.failures();
          assert.equal(failure?.id, "a");
          assert.match(failure?.error?.message ?? "", /server restarted/);
        }));
    }

    // Several servers per queue (Redis): a server's start must not void the live leases of the others.
    if (openPeer) {
      /** Runs `fn` with a second instance on `q`'s queue, on the same clock; closes it whatever happens. */
      async function withPeer(q: JobQueue, clock: FakeClock, opts: QueueOptions, fn: (peer: JobQueue) => Promise<void>) {
        const peer = await openPeer!(q, { leaseTtlMs: TTL, maxAttempts: 3, ...opts, now: clock.now });
        try {
          await fn(peer);
        } finally {
          await peer.close();
        }
      }

      it("recoverLeased on another server keeps that server's live leases and returns the expired ones, attempt counted", () =>
        withQueue({}, async (q, clock) => {
          await q.add(["a", "b", "c"].map((id) => makeJob(id)));
          const a = await takeOrFail(q, "s1");
          clock.advance(TTL / 2);
          const b = await takeOrFail(q, "s2");
          clock.advance(TTL / 2); // a's lease is over, b's is live
          await withPeer(q, clock, {}, async (peer) => {
            assert.equal(await peer.recoverLeased(), 1);
            assert.equal(await peer.recoverLeased(), 0);
            assert.equal(await q.isCurrent(a.token), false);
            assert.equal(await q.complete(a.token), false);
            assert.equal(await q.isCurrent(b.token), true, "the other server's live lease is kept");
            assert.deepEqual([await q.state("a"), await q.state("b"), await q.state("c")], ["pending", "leased", "pending"]);
            const retake = await takeOrFail(peer, "s9");
            assert.deepEqual([retake.job.id, retake.attempt], ["a", 2]);
            assert.equal(await q.complete(b.token), true);
            assert.equal(await peer.complete(retake.token), true, "any server may finish a current lease");
          });
        }));

      it("recoverLeased fails an expired lease that has used its attempts, saying the server restarted", () =>
        withQueue({ maxAttempts: 1 }, async (q, clock) => {
          await q.add([makeJob("a")]);
          await takeOrFail(q, "s1");
          clock.advance(TTL);
          await withPeer(q, clock, { maxAttempts: 1 }, async (peer) => {
            assert.equal(await peer.recoverLeased(), 1);
            const [failure] = await peer.failures();
            assert.equal(failure?.id, "a");
            assert.match(failure?.error?.message ?? "", /server restarted/);
          });
        }));

      it("owners are per server: the same session id on another server is another owner", () =>
        withQueue({}, async (q, clock) => {
          await q.add([makeJob("a"), makeJob("b")]);
          const a = await takeOrFail(q, "s1");
          await withPeer(q, clock, {}, async (peer) => {
            assert.equal(await peer.releaseOwner("s1"), 0, "the peer's s1 holds nothing");
            assert.equal(await q.isCurrent(a.token), true);
            assert.equal(await q.putBack(a.token, { message: "failed on the first server" }), true);
            // q's s1 failed a last; the peer's s1 did not, so it is served a in order.
            const again = await takeOrFail(peer, "s1");
            assert.deepEqual([again.job.id, again.attempt], ["a", 2]);
            assert.equal(await peer.putBack(again.token), true);
            // A stale token from one server is refused by the other, and counted there too.
            assert.equal(await peer.complete(a.token), false);
            assert.equal(await q.complete(again.token), false);
            assert.equal((await q.counts()).staleRejections, 2);
          });
        }));
    }

    it("state reports each job's state, and null for an unknown id", () =>
      withQueue({ maxAttempts: 1 }, async (q) => {
        await q.add(["p", "l", "d", "f"].map((id) => makeJob(id)));
        const p = await takeOrFail(q, "s1");
        assert.equal(await q.putBack(p.token), true); // p fails (maxAttempts 1)...
        const l = await takeOrFail(q, "s1");
        const d = await takeOrFail(q, "s1");
        assert.equal(await q.complete(d.token), true);
        assert.equal(l.job.id, "l");
        assert.equal(await q.state("p"), "failed");
        assert.equal(await q.state("l"), "leased");
        assert.equal(await q.state("d"), "done");
        assert.equal(await q.state("f"), "pending");
        assert.equal(await q.state("nope"), null);
        assert.deepEqual(await q.counts(), { pending: 1, leased: 1, done: 1, failed: 1, total: 4, staleRejections: 0 });
      }));
  });
}

// The lease check before each frame write (LeaseWatch in server/dispatch/LeaseWatch.ts) and what
// JobContext.saveFrame does with its answer, against a real SqliteQueue on a fake clock.
import assert from "node:assert/strict";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { DatasetWriter } from "../../server/dataset/DatasetWriter.js";
import { LeaseWatch } from "../../server/dispatch/LeaseWatch.js";
import { JobContext, LeaseLostError } from "../../server/dispatch/JobContext.js";
import type { JobQueue } from "../../server/queue/JobQueue.js";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";
import type { GrabbedFrame } from "../../server/session/Session.js";
import { FakeClock, makeJob } from "./queueContract.js";

const TTL = 30_000;
const base = fs.mkdtempSync(path.join(tmpdir(), "tabfarm-lease-test-"));
after(() => fs.rmSync(base, { recursive: true, force: true }));

/** A queue on a fake clock whose isCurrent calls are counted. */
async function setup(ttl = TTL) {
  const clock = new FakeClock();
  const queue = new SqliteQueue(":memory:", { leaseTtlMs: ttl, maxAttempts: 5, now: clock.now });
  let queries = 0;
  const isCurrent = queue.isCurrent.bind(queue);
  queue.isCurrent = (token: string) => {
    queries++;
    return isCurrent(token);
  };
  await queue.add([makeJob("a"), makeJob("b")]);
  return { clock, queue, queries: () => queries };
}

async function takeWatched(queue: JobQueue, clock: FakeClock, leaseTtlMs = TTL) {
  const lease = (await queue.take("s1"))!;
  assert.ok(lease);
  return { lease, watch: new LeaseWatch(queue, lease, leaseTtlMs, clock.now(), clock.now) };
}

describe("LeaseWatch", () => {
  it("answers at once, without a query, while the lease is far from its expiry", async () => {
    const { clock, queue, queries } = await setup();
    const { watch } = await takeWatched(queue, clock);
    assert.equal(watch.isCurrent(), true);
    clock.advance(TTL / 2);
    assert.equal(watch.isCurrent(), true);
    assert.equal(queries(), 0);
    await queue.close();
  });

  it("asks the queue within a third of the TTL of the expiry, and says false once it expired and was taken", async () => {
    const { clock, queue, queries } = await setup();
    const { watch } = await takeWatched(queue, clock);
    clock.advance(TTL - TTL / 3 + 1);
    const near = watch.isCurrent();
    assert.ok(near instanceof Promise, "a query near the expiry");
    assert.equal(await near, true);
    clock.advance(TTL / 3); // expired
    assert.equal(await queue.housekeep(), 1);
    const other = await queue.take("s2");
    assert.equal(other?.job.id, "a", "another session took the job over");
    assert.equal(await watch.isCurrent(), false);
    assert.equal(queries(), 2);
    await queue.close();
  });

  it("a successful heartbeat moves the known expiry; a failed one does not", async () => {
    const { clock, queue, queries } = await setup();
    const { lease, watch } = await takeWatched(queue, clock);
    clock.advance(TTL / 3);
    assert.equal(await watch.extend(), true);
    clock.advance(TTL / 2); // 5/6 TTL after the take, but only 1/2 after the extend
    assert.equal(watch.isCurrent(), true);
    assert.equal(queries(), 0);
    // The lease is lost (expired and taken over); the heartbeat fails and the watch keeps asking.
    clock.advance(TTL);
    await queue.housekeep();
    await queue.take("s2");
    assert.equal(await watch.extend(), false);
    assert.equal(await watch.isCurrent(), false);
    assert.equal(await queue.isCurrent(lease.token), false);
    await queue.close();
  });

  it("trusts the TTL the queue actually gave, when it is shorter than the one the dispatcher was told", async () => {
    const { clock, queue, queries } = await setup(3_000);
    const { watch } = await takeWatched(queue, clock, TTL); // told 30 s, the queue leases for 3 s
    clock.advance(2_500);
    const answer = watch.isCurrent();
    assert.ok(answer instanceof Promise, "asks: the lease expires in 0.5 s");
    assert.equal(await answer, true);
    clock.advance(1_000);
    assert.equal(await watch.isCurrent(), false, "expired by the queue's clock");
    assert.equal(queries(), 2);
    await queue.close();
  });

  it("after end() every check asks the queue (the job is being completed or put back)", async () => {
    const { clock, queue, queries } = await setup();
    const { lease, watch } = await takeWatched(queue, clock);
    watch.end();
    assert.equal(await queue.complete(lease.token), true);
    assert.equal(await watch.isCurrent(), false);
    assert.equal(await watch.extend(), false);
    assert.equal(await watch.isCurrent(), false, "a late heartbeat does not revive the cached answer");
    assert.equal(queries(), 2);
    await queue.close();
  });
});

function frame(): GrabbedFrame {
  return {
    image: Buffer.from("png bytes"),
    layers: ["rgb"],
    files: {},
    width: 4,
    height: 3,
    format: "png",
    camera: { K: [[1, 0, 2], [0, 1, 1.5], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], fov: 50, near: 0.1, far: 100 },
    renderMs: 1,
    encodeMs: 1,
    roundTripMs: 2,
  };
}

describe("JobContext.saveFrame and the lease", () => {
  it("writes the file and keeps a record while the lease is current (answered at once or by a query)", async () => {
    const root = path.join(base, "current");
    const dataset = new DatasetWriter(root);
    const answers: (boolean | Promise<boolean>)[] = [true, Promise.resolve(true), true];
    const job = new JobContext(makeJob("j1"), 1, "s1", dataset, () => answers.shift()!, 1);
    await job.saveFrame(frame());
    await job.saveFrame(frame());
    await job.saveFrame(frame(), { index: 0 }); // saved again: one record per frame
    assert.deepEqual(job.records.map((r) => r.frame), [0, 1]);
    assert.ok(fs.existsSync(path.join(root, "images/j1/000000.png")));
    assert.ok(fs.existsSync(path.join(root, "images/j1/000001.png")));
  });

  for (const lost of [false, Promise.resolve(false)]) {
    it(`a lost lease (${lost instanceof Promise ? "from a query" : "answered at once"}) writes nothing and aborts the job`, async () => {
      const root = path.join(base, `lost-${lost instanceof Promise ? "query" : "sync"}`);
      const dataset = new DatasetWriter(root);
      const job = new JobContext(makeJob("j2"), 1, "s1", dataset, () => lost, 1);
      await assert.rejects(job.saveFrame(frame()), (err: Error) => err instanceof LeaseLostError && /lease is no longer held/.test(err.message));
      assert.ok(job.signal.aborted);
      assert.deepEqual(job.records, []);
      assert.equal(fs.existsSync(path.join(root, "images/j2")), false, "no file written");
    });
  }

  // The lease is still current between the handler's return and the job's completion: a saveFrame the handler
  // did not await used to pass its check, write its file and add a record after the lines were appended.
  it("a saveFrame after the runner returned (or still running when it returned) is refused and adds no record", async () => {
    const root = path.join(base, "ended");
    const dataset = new DatasetWriter(root);
    let answer!: (current: boolean) => void;
    const job = new JobContext(makeJob("j4"), 1, "s1", dataset, () => new Promise<boolean>((resolve) => (answer = resolve)), 1);
    const unawaited = job.saveFrame(frame()); // in flight when the handler returns
    job.end();
    answer(true);
    await assert.rejects(unawaited, /saveFrame after the handler returned; frame not written/);
    await assert.rejects(job.saveFrame(frame()), /saveFrame after the handler returned/);
    assert.deepEqual(job.records, []);
  });

  it("a job cancelled while its lease check was pending writes nothing", async () => {
    const root = path.join(base, "cancelled");
    const dataset = new DatasetWriter(root);
    let answer!: (current: boolean) => void;
    const job = new JobContext(makeJob("j3"), 1, "s1", dataset, () => new Promise<boolean>((resolve) => (answer = resolve)), 1);
    const saving = job.saveFrame(frame());
    job.cancel("session s1 disconnected");
    answer(true);
    await assert.rejects(saving, LeaseLostError);
    assert.equal(fs.existsSync(path.join(root, "images/j3")), false);
  });
});

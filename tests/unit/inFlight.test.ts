// The in-flight window (server/dispatch/InFlight.ts): at most `limit` promises running, drain() waits
// for all, the first failure is rethrown, and no failure is ever left unhandled.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { InFlight } from "../../server/dispatch/InFlight.js";

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise job and I/O callback run. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await tick();
}

/** Whether `p` has settled yet, without waiting for it. */
async function isSettled(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await settle();
  return settled;
}

// Every test runs with a listener recording unhandled rejections; each test asserts there were none.
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeEach(() => {
  unhandled = [];
  process.on("unhandledRejection", onUnhandled);
});
afterEach(() => {
  process.off("unhandledRejection", onUnhandled);
});

async function assertNoUnhandled(): Promise<void> {
  await settle(10);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(
    unhandled.map((e) => String(e)),
    [],
    "unhandled rejections",
  );
}

/** A producer like renderDeclarativeJob: starts a task, hands it to the window, repeats; then drains. */
function produce(window: InFlight, count: number, stats: { running: number; max: number; started: Deferred[] }) {
  return (async () => {
    for (let i = 0; i < count; i++) {
      const d = deferred();
      stats.started.push(d);
      stats.running++;
      stats.max = Math.max(stats.max, stats.running);
      await window.add(d.promise.finally(() => stats.running--));
    }
    await window.drain();
  })();
}

describe("InFlight concurrency", () => {
  for (const limit of [1, 3, 5]) {
    it(`never runs more than ${limit} at once, and does use ${limit}`, async () => {
      const window = new InFlight(limit);
      const stats = { running: 0, max: 0, started: [] as Deferred[] };
      const done = produce(window, 20, stats);
      let finished = false;
      done.then(() => (finished = true));

      await settle();
      assert.equal(stats.started.length, limit, "the producer is held back once the window is full");
      assert.equal(stats.running, limit);

      // finish tasks one by one, in a shuffled order of whatever is running
      let resolved = 0;
      while (resolved < 20) {
        const open = stats.started.slice(resolved);
        assert.ok(open.length <= limit, `${open.length} open tasks with limit ${limit}`);
        stats.started[resolved]!.resolve();
        resolved++;
        await settle();
        assert.ok(stats.running <= limit, `running ${stats.running} > ${limit}`);
      }
      await done;
      assert.ok(finished);
      assert.equal(stats.max, limit);
      assert.equal(stats.started.length, 20);
      assert.equal(stats.running, 0);
      await assertNoUnhandled();
    });
  }

  it("frees a slot for whichever task finishes first, not just the oldest", async () => {
    const window = new InFlight(2);
    const a = deferred();
    const b = deferred();
    await window.add(a.promise); // 1 running: returns at once
    const second = window.add(b.promise); // 2 running: waits
    assert.equal(await isSettled(second), false);
    b.resolve();
    assert.equal(await isSettled(second), true, "finishing the newer task frees a slot");
    a.resolve();
    await window.drain();
    await assertNoUnhandled();
  });
});

describe("InFlight.drain", () => {
  it("waits for every task, however they finish in time", async () => {
    const window = new InFlight(10);
    const tasks = [deferred(), deferred(), deferred()];
    for (const t of tasks) await window.add(t.promise);
    const drained = window.drain();
    assert.equal(await isSettled(drained), false);
    tasks[2]!.resolve();
    tasks[0]!.resolve();
    assert.equal(await isSettled(drained), false, "one task still running");
    tasks[1]!.resolve();
    await drained;
    await assertNoUnhandled();
  });

  it("resolves at once with nothing in flight, and can be called repeatedly", async () => {
    const window = new InFlight(2);
    await window.drain();
    await window.add(Promise.resolve());
    await window.drain();
    await window.drain();
    await assertNoUnhandled();
  });
});

describe("InFlight failures", () => {
  it("add() rethrows the first failure while waiting for a slot; later failures are handled", async () => {
    const window = new InFlight(2);
    const a = deferred();
    const b = deferred();
    await window.add(a.promise);
    const waiting = window.add(b.promise);
    const first = new Error("first");
    a.reject(first);
    await assert.rejects(waiting, (err) => err === first);
    b.reject(new Error("second"));
    await assert.rejects(window.drain(), (err) => err === first, "drain reports the first failure, not the later one");
    await assertNoUnhandled();
  });

  it("drain() rethrows the first failure after waiting for the rest", async () => {
    const window = new InFlight(5);
    const tasks = [deferred(), deferred(), deferred()];
    for (const t of tasks) await window.add(t.promise);
    const drained = window.drain();
    const first = new Error("first");
    tasks[1]!.reject(first);
    tasks[0]!.reject(new Error("second"));
    assert.equal(await isSettled(drained), false, "drain still waits for the running task");
    tasks[2]!.resolve();
    await assert.rejects(drained, (err) => err === first);
    await assertNoUnhandled();
  });

  it("a non-Error rejection value is rethrown as is", async () => {
    const window = new InFlight(1);
    const reason = { code: 42 };
    await assert.rejects(window.add(Promise.reject(reason)), (err) => err === reason);
    await assertNoUnhandled();
  });

  it("once failed, add() refuses new tasks with the first failure", async () => {
    const window = new InFlight(3);
    const first = new Error("first");
    await window.add(Promise.reject(first));
    await settle();
    await assert.rejects(window.add(Promise.resolve()), (err) => err === first);
    await assertNoUnhandled();
  });

  // Regression test (fixed bug in InFlight.add): after a failure, add() throws *before* attaching handlers to the task it was
  // given. That task is already running (renderDeclarativeJob passes grabRender(...).then(saveFrame));
  // if it rejects too, nobody handles it: an unhandled rejection, which crashes Node by default.
  it("a task refused after a failure does not become an unhandled rejection", async () => {
    const window = new InFlight(3);
    const first = new Error("first");
    await window.add(Promise.reject(first));
    await settle();
    const late = deferred();
    await assert.rejects(window.add(late.promise), (err) => err === first);
    late.reject(new Error("late task failed too"));
    await assertNoUnhandled();
  });

  it("many tasks failing together: only the first is reported, none is unhandled", async () => {
    const window = new InFlight(10);
    const tasks = Array.from({ length: 8 }, deferred);
    for (const t of tasks) await window.add(t.promise);
    tasks.forEach((t, i) => t.reject(new Error(`fail ${i}`)));
    await assert.rejects(window.drain(), /fail 0/);
    await assert.rejects(window.drain(), /fail 0/, "the failure is sticky");
    await assertNoUnhandled();
  });
});

// The worker-control protocol's pure parts: launched tab names of remote workers, the message
// schemas both ends parse with, and the worker's --connect/--token reading.
//
// Run: node --import tsx --test tests/unit/workerProtocol.test.ts
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { launchedTabOf, launchedWorkerName, parseLaunchedTab } from "../../protocol/events.js";
import { RecycleOrderSchema, ReasonSchema, RetireRequestSchema, TabJoinedSchema, TabRenderedSchema, WorkerHelloSchema, WorkerWelcomeSchema } from "../../protocol/worker.js";
import { LIMITS } from "../../protocol/grab.js";
import { defaultWorkerName, serverOf, WorkerError } from "../../harness/workerCommand.js";

describe("launched tab names", () => {
  it("a remote worker's tab names round-trip and belong to that worker only", () => {
    assert.equal(launchedWorkerName(3, "gpu-box_2"), "gpu-box_2.tab-3");
    assert.deepEqual(parseLaunchedTab("gpu-box_2.tab-3"), { worker: "gpu-box_2", tab: 3 });
    assert.deepEqual(parseLaunchedTab("tab-3"), { tab: 3 });
    assert.equal(launchedTabOf("gpu-box_2.tab-3", "gpu-box_2"), 3);
    assert.equal(launchedTabOf("gpu-box_2.tab-3"), undefined, "not the local farm's");
    assert.equal(launchedTabOf("gpu-box_2.tab-3", "other"), undefined, "not another worker's");
    assert.equal(launchedTabOf("tab-3", "gpu-box_2"), undefined, "the local farm's tab is no worker's");
  });
  it("nothing else is a launched name", () => {
    for (const name of [".tab-1", "a.b.tab-1", "w!.tab-1", `${"w".repeat(41)}.tab-1`, "w.tab-", "w.tab-1234567", "unverified:w.tab-0", "w.TAB-1", "w.tab-1 ", " w.tab-1", "w..tab-1"]) {
      assert.equal(parseLaunchedTab(name), undefined, name);
    }
  });
});

describe("worker-control messages", () => {
  const hello = { name: "w1", instance: "abcdefgh12", tabs: 8, browser: "system /usr/bin/chromium", gl: "egl", version: "1" };
  it("a hello's texts are cut and stripped of control characters; its numbers and names are checked", () => {
    const parsed = WorkerHelloSchema.parse({ ...hello, browser: `\u001b[2J${"x".repeat(1000)}`, gl: "a\rb" });
    assert.equal(parsed.browser.length, 300);
    assert.ok(parsed.browser.startsWith("?[2J"));
    assert.equal(parsed.gl, "a?b");
    for (const bad of [
      { ...hello, name: "" }, { ...hello, name: "a.b" }, { ...hello, name: "x".repeat(41) }, { ...hello, tabs: 0 }, { ...hello, tabs: 257 },
      { ...hello, tabs: 2.5 }, { ...hello, tabs: "8" }, { ...hello, instance: "x" }, { ...hello, browser: 5 }, { ...hello, version: null },
      null, "hello", [], 42,
    ]) {
      assert.equal(WorkerHelloSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });
  it("the server's messages are checked field by field", () => {
    assert.ok(WorkerWelcomeSchema.safeParse({ worker: "w1", proofs: ["a-b_c"] }).success);
    for (const bad of [{ worker: "w1", proofs: [] }, { worker: "w1", proofs: ["has space"] }, { worker: "w 1", proofs: ["a"] }, { worker: "w1", proofs: "a" }, { worker: "w1", proofs: Array(257).fill("a") }]) {
      assert.equal(WorkerWelcomeSchema.safeParse(bad).success, false, JSON.stringify(bad).slice(0, 80));
    }
    assert.ok(RecycleOrderSchema.safeParse({ tab: "w1.tab-0", reason: "is hung", fault: true }).success);
    for (const bad of [{ tab: "tab-0", reason: "x", fault: true }, { tab: "w1.tab-0", reason: "x", fault: "yes" }, { tab: "w1.tab-0", fault: true }]) {
      assert.equal(RecycleOrderSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.equal(TabJoinedSchema.safeParse({ tab: "w1.tab-0", webgl: 1, renderer: "" }).success, false);
    assert.equal(ReasonSchema.parse({ reason: "done\u0007\u202e" }).reason, "done??");
  });
  it("`rendered` carries a worker's tab and a job's frames (1 to a job's limit); `retire` a worker's tab and nothing else", () => {
    assert.deepEqual(TabRenderedSchema.parse({ tab: "w1.tab-0", frames: 1 }), { tab: "w1.tab-0", frames: 1 });
    assert.ok(TabRenderedSchema.safeParse({ tab: "w1.tab-255", frames: LIMITS.maxFramesPerJob }).success);
    for (const bad of [{ tab: "w1.tab-0", frames: 0 }, { tab: "w1.tab-0", frames: -1 }, { tab: "w1.tab-0", frames: 2.5 }, { tab: "w1.tab-0", frames: "3" },
      { tab: "w1.tab-0", frames: LIMITS.maxFramesPerJob + 1 }, { tab: "w1.tab-0", frames: NaN }, { tab: "w1.tab-0" }, { tab: "tab-0", frames: 1 }, { frames: 1 }, null, 7]) {
      assert.equal(TabRenderedSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.deepEqual(RetireRequestSchema.parse({ tab: "w1.tab-3" }), { tab: "w1.tab-3" });
    for (const bad of [{ tab: "w1.tab-3", extra: true }, { tab: "tab-3" }, { tab: "unverified:w1.tab-3" }, { tab: 3 }, {}, "w1.tab-3", null, [], { tab: "w".repeat(200) }]) {
      assert.equal(RetireRequestSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });
});

describe("the worker's server address", () => {
  it("takes --connect's origin and the token from --token, else from the URL", () => {
    assert.deepEqual(serverOf("http://10.0.0.5:8080", "T"), { origin: "http://10.0.0.5:8080", token: "T" });
    assert.deepEqual(serverOf("http://10.0.0.5:8080/?token=abc", undefined), { origin: "http://10.0.0.5:8080", token: "abc" });
    assert.deepEqual(serverOf("http://10.0.0.5:8080/?token=abc", "T"), { origin: "http://10.0.0.5:8080", token: "T" });
  });
  it("refuses what is not a server's address, and a missing token, naming the option", () => {
    for (const [connect, token, message] of [
      ["10.0.0.5:8080", "T", /with its scheme, e\.g\. http:\/\/HOST:PORT/], ["", "T", /with its scheme/], ["http://[", "T", /is not a URL/], ["ws://h:1", "T", /starts with http/],
      ["http://h:1/dashboard", "T", /no path/], ["http://h:1/#x", "T", /no path/], ["http://h:1", undefined, /token is missing/],
    ] as [string, string | undefined, RegExp][]) {
      assert.throws(() => serverOf(connect, token), (err: unknown) => err instanceof WorkerError && message.test(err.message), connect);
    }
  });
  it("the default worker name is a valid one", () => {
    assert.match(defaultWorkerName(), /^[A-Za-z0-9_-]{1,40}$/);
  });
});

// The farm server's end of the worker-control namespace (server/session/workerLink.ts), in process with
// real sockets: which pages it admits under a remote worker's tab names. A token holder (any page opened
// by hand has the token) may say hello under a worker's name before that worker does; the proofs it gets
// must not admit its pages as the real worker's tabs once the real worker has the name (else it could get
// them recycled, or spoil the worker's WebGL verdict with tabJoined messages). A worker hears of the
// frames its own tabs rendered (`rendered`) and may retire its own tabs' sessions (`retire`), nobody else's,
// whatever it sends.
//
// Run: node --import tsx --test tests/integration/workerLink.test.ts
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io, type Socket } from "socket.io-client";
import { Farm } from "../../server/session/Farm.js";
import type { Session } from "../../server/session/Session.js";
import { RunEvents } from "../../server/events/RunEvents.js";
import { WORKER_NAMESPACE, type TabJoined, type TabRendered, type WorkerWelcome } from "../../protocol/worker.js";

const sockets: Socket[] = [];
const farms: Farm[] = [];
const dirs: string[] = [];

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.allSettled(farms.map((f) => f.close()));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function startFarm(log: (line: string) => void = () => {}): Promise<{ farm: Farm; origin: string }> {
  // No page is loaded here: a client folder with an index.html is all the Farm needs.
  const clientDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-workerlink-"));
  dirs.push(clientDir);
  fs.writeFileSync(path.join(clientDir, "index.html"), "<!doctype html>");
  const farm = new Farm({ clientDir, log });
  farms.push(farm);
  await farm.listen();
  return { farm, origin: new URL(farm.url).origin };
}

function connect(url: string, auth: Record<string, unknown>): Socket {
  const socket = io(url, { auth, transports: ["websocket"], reconnection: false, forceNew: true, timeout: 10_000 });
  sockets.push(socket);
  return socket;
}

/** A control socket that says hello as `name` (worker process `instance`); resolves with the welcome and the socket. */
async function worker(farm: Farm, origin: string, name: string, instance: string, tabs = 2): Promise<{ socket: Socket; welcome: WorkerWelcome }> {
  const socket = connect(`${origin}${WORKER_NAMESPACE}`, { token: farm.token });
  const welcome = new Promise<WorkerWelcome>((resolve, reject) => {
    socket.once("welcome", resolve);
    socket.once("refused", (r: { reason: string }) => reject(new Error(`refused: ${r.reason}`)));
    socket.once("connect_error", reject);
  });
  socket.once("connect", () => socket.emit("hello", { name, instance, tabs, browser: "test", gl: "swiftshader", version: "1" }));
  return { socket, welcome: await welcome };
}

/** A page that says it is `name`, with `proof`: resolves with the name the farm admitted it under. */
async function page(farm: Farm, origin: string, name: string, proof: string | undefined): Promise<string> {
  const joined = new Promise<Session>((resolve) => farm.once("session", resolve));
  const socket = connect(origin, { token: farm.token, workerProof: proof });
  socket.once("connect", () => socket.emit("hello", { renderer: "", vendor: "", webgl: false, userAgent: "t", devicePixelRatio: 1, worker: name }));
  const session = await joined;
  socket.disconnect();
  return session.info.worker;
}

/** A page admitted as a session (under `name` if `proof` holds, else as unverified), left connected. */
async function livePage(farm: Farm, origin: string, name: string, proof: string | undefined, webgl = false): Promise<Session> {
  const joined = new Promise<Session>((resolve) => farm.once("session", resolve));
  const socket = connect(origin, { token: farm.token, workerProof: proof });
  socket.once("connect", () => socket.emit("hello", { renderer: webgl ? "test GL" : "", vendor: "", webgl, userAgent: "t", devicePixelRatio: 1, worker: name }));
  return joined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `retire` with an ack (socket.io's, so any arguments): what the server answered, or "no answer". */
const askRetire = (socket: Socket, ...args: unknown[]) => socket.timeout(5000).emitWithAck("retire", ...args).catch(() => "no answer");

const gone = (socket: Socket) => new Promise<void>((resolve) => (socket.disconnected ? resolve() : socket.once("disconnect", () => resolve())));

describe("remote workers' tab names on the farm server", { timeout: 30_000 }, () => {
  it("proofs a token holder got under a worker's name before that worker came admit nothing once it has; the worker's own do, through a reconnect", async () => {
    const { farm, origin } = await startFarm();
    // A token holder says hello as gpu-box first, keeps the proofs and leaves.
    const squatter = await worker(farm, origin, "gpu-box", "squatter-instance-1");
    squatter.socket.disconnect();
    await gone(squatter.socket);

    // The real worker gpu-box arrives; it hears which of its tabs joined.
    const real = await worker(farm, origin, "gpu-box", "real-instance-00001");
    const joined: TabJoined[] = [];
    real.socket.on("tabJoined", (tab: TabJoined) => joined.push(tab));
    assert.notDeepEqual(real.welcome.proofs, squatter.welcome.proofs, "another worker process under the same name gets other proofs");

    assert.equal(await page(farm, origin, "gpu-box.tab-0", squatter.welcome.proofs[0]), "unverified:gpu-box.tab-0", "the squatter's proof is stale");
    const heard = new Promise<TabJoined>((resolve) => real.socket.once("tabJoined", resolve));
    assert.equal(await page(farm, origin, "gpu-box.tab-0", real.welcome.proofs[0]), "gpu-box.tab-0");
    assert.equal((await heard).tab, "gpu-box.tab-0");
    assert.equal(await page(farm, origin, "gpu-box.tab-1", real.welcome.proofs[0]), "unverified:gpu-box.tab-1", "a proof is for one tab only");
    assert.equal(await page(farm, origin, "tab-0", real.welcome.proofs[0]), "unverified:tab-0", "a worker's proof is no local tab's");
    assert.equal(await page(farm, origin, "other.tab-0", real.welcome.proofs[0]), "unverified:other.tab-0", "nor another worker's");

    // The worker's control socket drops: its tabs are still admitted by name; it reconnects (same process) and gets the same proofs.
    real.socket.disconnect();
    await gone(real.socket);
    assert.equal(await page(farm, origin, "gpu-box.tab-1", real.welcome.proofs[1]), "gpu-box.tab-1");
    const again = await worker(farm, origin, "gpu-box", "real-instance-00001");
    assert.deepEqual(again.welcome.proofs, real.welcome.proofs, "a reconnect of the same process keeps its proofs (its tabs need no reload)");
    assert.deepEqual(joined.map((t) => t.tab), ["gpu-box.tab-0"], "the worker heard only of its verified tab (the rest came while it was away or unverified)");
  });

  it("a recycle order for a tab of a worker whose control socket is down reaches it after it reconnects, and never another process under its name", async () => {
    const { farm, origin } = await startFarm();
    const first = await worker(farm, origin, "blip-box", "blip-instance-0001");
    // Its tab's session stays connected while the control socket drops.
    const joined = new Promise<Session>((resolve) => farm.once("session", resolve));
    const tab = connect(origin, { token: farm.token, workerProof: first.welcome.proofs[1] });
    tab.once("connect", () => tab.emit("hello", { renderer: "", vendor: "", webgl: false, userAgent: "t", devicePixelRatio: 1, worker: "blip-box.tab-1" }));
    const session = await joined;
    assert.equal(session.info.worker, "blip-box.tab-1");
    first.socket.disconnect();
    await gone(first.socket);
    for (let i = 0; i < 100 && farm.workers.size > 0; i++) await new Promise((r) => setTimeout(r, 20)); // the server saw it go
    assert.equal(farm.workers.size, 0);
    session.dropHung("no answer"); // the server gives up on the tab while its worker is away

    const back = connect(`${origin}${WORKER_NAMESPACE}`, { token: farm.token });
    const order = new Promise<{ tab: string; fault: boolean }>((resolve) => back.once("recycle", resolve));
    const welcomed = new Promise((resolve) => back.once("welcome", resolve));
    back.once("connect", () => back.emit("hello", { name: "blip-box", instance: "blip-instance-0001", tabs: 2, browser: "test", gl: "swiftshader", version: "1" }));
    await welcomed;
    const got = await Promise.race([order, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000))]);
    assert.deepEqual(got && { tab: got.tab, fault: got.fault }, { tab: "blip-box.tab-1", fault: true });

    // Another process under that name later: the first one's tab orders are not its.
    back.disconnect();
    await gone(back);
    for (let i = 0; i < 100 && farm.workers.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const tab0 = new Promise<Session>((resolve) => farm.once("session", resolve));
    const page0 = connect(origin, { token: farm.token, workerProof: first.welcome.proofs[0] });
    page0.once("connect", () => page0.emit("hello", { renderer: "", vendor: "", webgl: false, userAgent: "t", devicePixelRatio: 1, worker: "blip-box.tab-0" }));
    (await tab0).dropHung("no answer");
    const stranger = connect(`${origin}${WORKER_NAMESPACE}`, { token: farm.token });
    const strayOrder = new Promise<unknown>((resolve) => stranger.once("recycle", resolve));
    const strangerWelcome = new Promise((resolve) => stranger.once("welcome", resolve));
    stranger.once("connect", () => stranger.emit("hello", { name: "blip-box", instance: "other-instance-0002", tabs: 2, browser: "test", gl: "swiftshader", version: "1" }));
    await strangerWelcome;
    assert.equal(await Promise.race([strayOrder, new Promise((r) => setTimeout(() => r("none"), 1000))]), "none");
  });

  it("a worker may retire only its own tabs' sessions: malformed, foreign, local and unverified tabs are refused (false) and logged, throttled; with or without an ack; the server serves on", async () => {
    const logs: string[] = [];
    const { farm, origin } = await startFarm((line) => logs.push(line));
    const own = await worker(farm, origin, "ret-box", "ret-instance-00001", 3);
    const other = await worker(farm, origin, "other-box", "other-instance-0001");
    const mine = await livePage(farm, origin, "ret-box.tab-0", own.welcome.proofs[0], true);
    // Its own tab, but without WebGL: it never gets a job, so no "retired" would follow (the worker closes it itself).
    const blind = await livePage(farm, origin, "ret-box.tab-2", own.welcome.proofs[2]);
    const foreign = await livePage(farm, origin, "other-box.tab-0", other.welcome.proofs[0]);
    const local = await livePage(farm, origin, "tab-0", farm.launchedTabProof("tab-0"));
    const unverified = await livePage(farm, origin, "ret-box.tab-1", "not-the-proof");
    assert.deepEqual([mine, foreign, local, unverified, blind].map((s) => s.info.worker), ["ret-box.tab-0", "other-box.tab-0", "tab-0", "unverified:ret-box.tab-1", "ret-box.tab-2"]);
    assert.deepEqual([mine, blind].map((s) => s.info.webgl), [true, false]);
    // Only the local launched tab's PNGs skip the inflate; a remote worker's proven tabs keep the full check.
    assert.deepEqual([mine, foreign, local, unverified, blind].map((s) => s.imageSource), ["any", "any", "launched", "any", "any"]);

    const refused: unknown[][] = [
      // Not its tab (another worker's, a local one, one that only calls itself so), no session of it, or one without WebGL.
      [{ tab: "other-box.tab-0" }], [{ tab: "tab-0" }], [{ tab: "unverified:ret-box.tab-1" }], [{ tab: "ret-box.tab-1" }], [{ tab: "ret-box.tab-2" }], [{ tab: "ret-box.tab-99" }],
      // Not a request at all.
      [], [null], [42], ["ret-box.tab-0"], [[]], [{}], [{ tab: 0 }], [{ tab: null }], [{ tab: ["ret-box.tab-0"] }], [{ tab: { toString: "ret-box.tab-0" } }],
      [{ tab: "ret-box.tab-0", extra: 1 }], [{ tab: "ret-box.tab-0", frames: 4 }], [{ tab: "ret-box.tab-0\u0000" }], [{ tab: " ret-box.tab-0" }], [{ tab: "ret-box.tab--1" }],
      [{ tab: "x".repeat(10_000) }], [{ tab: `ret-box.tab-${"9".repeat(5000)}` }], [{ tab: "ret-box.tab-0" }, "a second argument"], [{ tab: "ret-box.tab-0" }, { tab: "ret-box.tab-0" }],
    ];
    for (const args of refused) {
      assert.equal(await askRetire(own.socket, ...args), false, `retire ${JSON.stringify(args).slice(0, 80)} is refused`);
      await sleep(30); // under the namespace's 50 messages a second
    }
    // The same without an ack: nothing to answer, nothing thrown.
    for (const args of refused) {
      own.socket.emit("retire", ...args);
      await sleep(30);
    }
    // Another worker asking for ret-box's tab is refused too.
    assert.equal(await askRetire(other.socket, { tab: "ret-box.tab-0" }), false);
    assert.deepEqual([mine, foreign, local, unverified, blind].map((s) => s.retiring), [false, false, false, false, false], "no session was retired by any of these");
    assert.equal(own.socket.connected && other.socket.connected, true, "refused requests are no reason to cut the worker");

    // Each refusal was logged with what was wrong, at most 20 a minute (they came 2 × 25 + 1 times).
    const retireLines = logs.filter((l) => /"retire"/.test(l));
    assert.equal(retireLines.length, 20, `logged, throttled:\n${retireLines.join("\n")}`);
    assert.ok(retireLines.some((l) => /refused worker ret-box's "retire" of other-box\.tab-0: not one of its tabs/.test(l)), retireLines.join("\n"));
    assert.ok(retireLines.some((l) => /ignored a malformed "retire" from worker ret-box \(tab: /.test(l)), retireLines.join("\n"));
    assert.ok(retireLines.some((l) => /ignored a malformed "retire" from worker ret-box \(0 arguments, not 1\)/.test(l)), retireLines.join("\n"));
    assert.ok(retireLines.every((l) => l.length < 500 && !/\u0000/.test(l)), "no huge or raw text from the worker reaches the log");

    // Its own tab's live session: retired (it finishes its jobs, then its worker gets the recycle order).
    assert.equal(await askRetire(own.socket, { tab: "ret-box.tab-0" }), true);
    assert.equal(mine.retiring, true);
    assert.deepEqual([foreign, local, unverified].map((s) => s.retiring), [false, false, false]);

    // A request over the control socket's message limit cuts that socket; the server serves on.
    const cut = gone(other.socket);
    other.socket.emit("retire", { tab: "x".repeat(64 * 1024) });
    await cut;
    const again = await worker(farm, origin, "late-box", "late-instance-0001");
    assert.equal(again.welcome.proofs.length, 2);
  });

  it("a worker hears of the frames its own tabs rendered (one `rendered` per job done), never of other tabs'", async () => {
    const { farm, origin } = await startFarm();
    const events = new RunEvents();
    farm.workers.forwardRendered(events);
    const own = await worker(farm, origin, "frames-box", "frames-instance-01");
    const other = await worker(farm, origin, "frames-other", "frames-instance-02");
    const heard = { own: [] as TabRendered[], other: [] as TabRendered[] };
    own.socket.on("rendered", (r: TabRendered) => heard.own.push(r));
    other.socket.on("rendered", (r: TabRendered) => heard.other.push(r));
    const sessions = [
      await livePage(farm, origin, "frames-box.tab-1", own.welcome.proofs[1]),
      await livePage(farm, origin, "frames-other.tab-0", other.welcome.proofs[0]),
      await livePage(farm, origin, "tab-0", farm.launchedTabProof("tab-0")),
      await livePage(farm, origin, "frames-box.tab-0", "not-the-proof"),
      await livePage(farm, origin, "frames-box.tab-0", other.welcome.proofs[0]),
    ];
    sessions.forEach((session, i) => events.emit({ type: "job.done", at: Date.now(), job: `j${i}`, session: session.id, frames: 3 + i, attempt: 1 }));
    events.emit({ type: "job.done", at: Date.now(), job: "j9", session: "no-such-session", frames: 2, attempt: 1 });
    events.emit({ type: "job.done", at: Date.now(), job: "j0", session: sessions[0].id, frames: 250_000, attempt: 1 });
    // A round trip on each socket after the events: whatever the server sent before has arrived.
    await Promise.all([askRetire(own.socket, { tab: "frames-box.tab-7" }), askRetire(other.socket, { tab: "frames-other.tab-7" })]);
    assert.deepEqual(heard.own, [{ tab: "frames-box.tab-1", frames: 3 }, { tab: "frames-box.tab-1", frames: 100_000 }], "its tab's jobs (a count past a job's limit saturates)");
    assert.deepEqual(heard.other, [{ tab: "frames-other.tab-0", frames: 4 }]);
  });

  it("a tab's session admitted while another process owned the worker's name is not the new owner's: it hears nothing of it and cannot retire it", async () => {
    const { farm, origin } = await startFarm();
    const events = new RunEvents();
    farm.workers.forwardRendered(events);
    const before = await worker(farm, origin, "stale-box", "stale-instance-001");
    const stale = await livePage(farm, origin, "stale-box.tab-0", before.welcome.proofs[0], true);
    assert.equal(stale.info.worker, "stale-box.tab-0");
    before.socket.disconnect();
    await gone(before.socket);
    for (let i = 0; i < 100 && farm.workers.size > 0; i++) await sleep(20); // the server saw it go

    const now = await worker(farm, origin, "stale-box", "fresh-instance-001");
    const heard: TabRendered[] = [];
    now.socket.on("rendered", (r: TabRendered) => heard.push(r));
    const fresh = await livePage(farm, origin, "stale-box.tab-1", now.welcome.proofs[1], true);
    events.emit({ type: "job.done", at: Date.now(), job: "a", session: stale.id, frames: 2, attempt: 1 });
    events.emit({ type: "job.done", at: Date.now(), job: "b", session: fresh.id, frames: 5, attempt: 1 });
    assert.equal(await askRetire(now.socket, { tab: "stale-box.tab-0" }), false, "the old process's tab is not the new one's to retire");
    assert.equal(stale.retiring, false);
    assert.deepEqual(heard, [{ tab: "stale-box.tab-1", frames: 5 }]);
    assert.equal(await askRetire(now.socket, { tab: "stale-box.tab-1" }), true);
    assert.equal(fresh.retiring, true);
  });

  it("a worker's tab back before its worker (a server restart: its old proof) gets no work until the worker reloads it; a tab opened by hand under a local tab's name still does", async () => {
    const logs: string[] = [];
    const { farm, origin } = await startFarm((line) => logs.push(line));
    const ran: string[] = [];
    farm.spawn(async (session) => void ran.push(session.info.worker));
    // No worker "gone-box" has said hello to this server: its tab's proof cannot hold.
    const stale = await livePage(farm, origin, "gone-box.tab-0", "a-proof-from-the-last-server", true);
    const byHand = await livePage(farm, origin, "tab-3", "not-the-proof", true);
    const named = await livePage(farm, origin, "my-own-tab", undefined, true);
    assert.deepEqual([stale, byHand, named].map((s) => s.info.worker), ["unverified:gone-box.tab-0", "unverified:tab-3", "my-own-tab"]);
    assert.deepEqual([stale, byHand, named].map((s) => s.getsWork), [false, true, true]);
    for (let i = 0; i < 50 && ran.length < 2; i++) await sleep(20);
    assert.deepEqual(ran.sort(), ["my-own-tab", "unverified:tab-3"], "the job loop runs for every tab with WebGL but the unproven worker tab");
    assert.ok(logs.some((l) => /session s\d+ \(unverified:gone-box\.tab-0\) gets no work: it claims a tab of worker gone-box without that worker's current proof/.test(l)), logs.join("\n"));
    assert.equal(stale.retire(), false, "nothing to drain: it never had a job loop");
  });
});

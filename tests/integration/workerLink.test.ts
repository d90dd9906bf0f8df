// The farm server's end of the worker-control namespace (server/session/workerLink.ts), in process with
// real sockets: which pages it admits under a remote worker's tab names. A token holder (any page opened
// by hand has the token) may say hello under a worker's name before that worker does; the proofs it gets
// must not admit its pages as the real worker's tabs once the real worker has the name (else it could get
// them recycled, or spoil the worker's WebGL verdict with tabJoined messages).
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
import { WORKER_NAMESPACE, type TabJoined, type WorkerWelcome } from "../../protocol/worker.js";

const sockets: Socket[] = [];
const farms: Farm[] = [];
const dirs: string[] = [];

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.allSettled(farms.map((f) => f.close()));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function startFarm(): Promise<{ farm: Farm; origin: string }> {
  // No page is loaded here: a client folder with an index.html is all the Farm needs.
  const clientDir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-workerlink-"));
  dirs.push(clientDir);
  fs.writeFileSync(path.join(clientDir, "index.html"), "<!doctype html>");
  const farm = new Farm({ clientDir, log: () => {} });
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
});

// Only the tabs the farm launched say whether it can render: a tab opened by hand without WebGL (an
// old laptop) that connects first is left without work, and the launched tabs render the run. With
// --serve-only there are no launched tabs, and such a tab is only logged.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFrames, spawnFarmCli, withTempDir } from "./cli.js";
import { fakeSession, type FakeSession } from "./fakeSession.js";

/**
 * Runs the CLI; as soon as it prints its URL, `onUrl` connects sessions by hand. Resolves with the
 * exit code and output.
 */
function runWithHandOpenedTabs(args: string[], onUrl: (port: number, token: string) => Promise<FakeSession[]>, timeoutMs = 150_000) {
  return new Promise<{ code: number | null; output: string; sessions: FakeSession[] }>((resolve, reject) => {
    const { child, output } = spawnFarmCli(args);
    let sessions: Promise<FakeSession[]> | undefined;
    const onData = () => {
      const url = /serving (http:\/\/\S+)/.exec(output())?.[1];
      if (url && !sessions) {
        const parsed = new URL(url);
        sessions = onUrl(Number(parsed.port), parsed.searchParams.get("token")!);
        sessions.catch(reject);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`farm did not finish within ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    child.on("exit", async (code) => {
      clearTimeout(timer);
      const open = (await sessions?.catch(() => [])) ?? [];
      for (const s of open) s.close();
      resolve({ code, output: output(), sessions: open });
    });
  });
}

const withOut = (body: (out: string) => Promise<void>) => withTempDir("tabfarm-webgl-", body);

const common = (out: string) => ["--demo", "16", "--frames-per-job", "4", "--width", "160", "--height", "120", "--out", out, "--no-progress"];

describe("WebGL is judged from the launched tabs only", { timeout: 300_000 }, () => {
  it("a hand-opened tab without WebGL connects first: it gets no work, the headless tabs render the run", () =>
    withOut(async (out) => {
      const { code, output } = await runWithHandOpenedTabs(["--sessions", "2", ...common(out)], async (port, token) => [
        await fakeSession({ port, token, worker: "old-laptop", webgl: false, answer: "error" }),
      ]);
      assert.equal(code, 0, output);
      const handOpened = output.indexOf("joined (old-laptop)");
      const firstLaunched = output.indexOf("joined (tab-");
      assert.ok(handOpened >= 0 && firstLaunched > handOpened, `the hand-opened tab said hello before any launched tab:\n${output}`);
      assert.match(output, /session s\d+ has no WebGL \(tabfarm fake session\); it will not be given work/);
      assert.doesNotMatch(output, /WebGL is not available/);
      assert.match(output, /WebGL renderer of the first tab: /);
      assert.equal(readFrames(out).length, 16);
      assert.ok(readFrames(out).every((r) => r.session !== "s1"), "the tab without WebGL rendered nothing");
    }));

  it("--serve-only: a hand-opened tab without WebGL is only logged; a tab with WebGL renders the run", () =>
    withOut(async (out) => {
      const { code, output } = await runWithHandOpenedTabs(["--serve-only", ...common(out)], async (port, token) => [
        await fakeSession({ port, token, worker: "old-laptop", webgl: false, answer: "error" }),
        await fakeSession({ port, token, worker: "desk", answer: "png", width: 160, height: 120 }),
      ]);
      assert.equal(code, 0, output);
      assert.match(output, /has no WebGL/);
      assert.equal(readFrames(out).length, 16);
    }));
});

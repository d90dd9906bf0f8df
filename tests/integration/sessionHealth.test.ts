// One broken session must not dead-letter the run: a session that answers every grab with an error at
// once (a tab whose WebGL context is lost) beside one healthy headless tab. Failures are counted per
// session as well as per job; the broken session is quarantined (told why, given no more jobs) and a
// job it failed goes to another session, so every job is done and none is failed.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { startFarm, checkDataset } from "./farmHarness.js";
import { fakeSession } from "./fakeSession.js";

describe("session health", () => {
  it("a session failing every grab beside a healthy tab: quarantined, no job dead-lettered, all 60 jobs done", { timeout: 120_000 }, async () => {
    const farm = await startFarm({ tabs: 1, launchTabs: false, frames: 240, framesPerJob: 4, maxAttempts: 3 });
    const broken = await fakeSession({ port: farm.run.farm.port, token: farm.run.farm.token, worker: "broken", answer: "error" });
    try {
      const joined = await farm.waitForLog(/^session (s\d+) joined \(broken\)/, 5_000);
      const brokenId = /^session (s\d+)/.exec(joined)![1];
      await farm.startTabs();
      const summary = await farm.finishedWithin(100_000);
      assert.equal(summary.counts.done, 60);
      assert.equal(summary.counts.failed, 0, "no job dead-lettered");
      checkDataset(farm.out, farm.expectedIds, { width: 160, height: 120 });

      const quarantined = farm.logged(new RegExp(`^session ${brokenId} \\(broken\\) quarantined: `));
      assert.equal(quarantined.length, 1, "the broken session was quarantined once");
      assert.ok(broken.byes.some((b) => b.startsWith("quarantined: ")), `the page was told why: ${JSON.stringify(broken.byes)}`);
      // It failed few jobs before it was stopped, and none of them twice: a retry went to the healthy tab.
      const failedOnBroken = farm.logged(new RegExp(`^job \\S+ attempt \\d+ failed on session ${brokenId}:`));
      assert.ok(failedOnBroken.length <= 5, `the broken session failed ${failedOnBroken.length} jobs before quarantine`);
      const ids = failedOnBroken.map((l) => /^job (\S+)/.exec(l)![1]);
      assert.equal(new Set(ids).size, ids.length, `no job failed twice on the broken session: ${ids}`);
      const rows = farm.jobRows();
      assert.ok(rows.every((r) => r.attempts <= 2), `no job needed more than a retry: ${JSON.stringify(rows.filter((r) => r.attempts > 2))}`);
    } catch (err) {
      if (err instanceof Error) err.message += `\n--- farm log ---\n${farm.logs.join("\n")}`;
      throw err;
    } finally {
      broken.close();
      await farm.close();
    }
  });
});

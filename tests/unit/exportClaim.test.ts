// One export per target (server/export/exportClaim.ts): the lock file, its refusals, a dead export's lock
// taken over, and a claim held by another process (a real child, killed outright).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { claimTarget, shardFolderLock } from "../../server/export/exportClaim.js";
import { ExportRefused } from "../../server/export/exportSource.js";
import { REPO } from "../integration/cli.js";

let base: string;
let count = 0;
before(() => void (base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-export-claim-")))));
after(() => fs.rmSync(base, { recursive: true, force: true }));
const freshFolder = (name: string) => {
  const dir = path.join(base, `${name}-${++count}`);
  fs.mkdirSync(dir);
  return dir;
};
const claimFolder = (dest: string) => claimTarget(shardFolderLock(dest), "--webdataset", dest, "folder");
const refusedBy = (pattern: RegExp) => (err: unknown) => err instanceof ExportRefused && pattern.test((err as Error).message);
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
/** A pid whose process has ended (and was reaped). */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;
const writeLock = (dest: string, lock: unknown) => fs.writeFileSync(shardFolderLock(dest), typeof lock === "string" ? lock : JSON.stringify(lock));

describe("claiming an export's target", () => {
  it("the lock file names this export; a second claim is refused, naming the pid and the lock file; released, the target can be claimed again", () => {
    const dest = freshFolder("dest");
    const claim = claimFolder(dest);
    const lock = JSON.parse(fs.readFileSync(shardFolderLock(dest), "utf8"));
    assert.deepEqual([lock.pid, lock.host, typeof lock.started], [process.pid, os.hostname(), "string"]);
    assert.throws(
      () => claimFolder(dest),
      refusedBy(new RegExp(`^--webdataset ${escape(dest)}: another export \\(pid ${process.pid}\\) is writing into it; wait for it, or remove ${escape(shardFolderLock(dest))} if no export runs$`)),
    );
    claimTarget(`${dest}/c.json.lock`, "--coco", `${dest}/c.json`, "file").release(); // another target: a lock of its own
    claim.release();
    claim.release(); // idempotent
    assert.ok(!fs.existsSync(shardFolderLock(dest)));
    claimFolder(dest).release();
  });

  it("a lock whose process is gone (same host) is taken over; one of another host, or that names no export, is refused", () => {
    const dest = freshFolder("stale");
    writeLock(dest, { pid: deadPid(), host: os.hostname(), started: "2026-01-01T00:00:00Z" });
    const claim = claimFolder(dest);
    assert.equal(JSON.parse(fs.readFileSync(shardFolderLock(dest), "utf8")).pid, process.pid);
    claim.release();

    writeLock(dest, { pid: deadPid(), host: "elsewhere", started: "2026-01-01T00:00:00Z" });
    assert.throws(() => claimFolder(dest), refusedBy(/another export \(pid \d+ on host elsewhere\) is writing into it; wait for it, or remove .*\.tabfarm-export\.lock if no export runs/));
    for (const [lock, why] of [["", "it is empty"], ["{not json", "it is not {pid, host, started}"], [{ pid: -1, host: os.hostname(), started: "x" }, "it is not {pid, host, started}"]] as const) {
      writeLock(dest, lock);
      assert.throws(() => claimFolder(dest), refusedBy(new RegExp(`its lock file .* names no export \\(${escape(why)}\\); another export may be starting: wait for it, or remove`)), JSON.stringify(lock));
    }
    fs.rmSync(shardFolderLock(dest));
    const outside = path.join(freshFolder("outside"), "victim");
    fs.writeFileSync(outside, JSON.stringify({ pid: deadPid(), host: os.hostname(), started: "x" }));
    fs.symlinkSync(outside, shardFolderLock(dest)); // a link is not followed, neither read nor removed through
    assert.throws(() => claimFolder(dest), refusedBy(/names no export \(it is a link\)/));
    assert.ok(fs.lstatSync(shardFolderLock(dest)).isSymbolicLink() && fs.existsSync(outside));
  });

  it("a lock naming this very process is refused while that claim is live, and taken over once it is not (no claim id, another id, or its claim released but the file put back)", () => {
    const dest = freshFolder("own-pid");
    const live = claimFolder(dest);
    const text = fs.readFileSync(shardFolderLock(dest), "utf8");
    assert.throws(() => claimFolder(dest), refusedBy(new RegExp(`another export \\(pid ${process.pid}\\)`)));
    live.release();
    const mine = { pid: process.pid, host: os.hostname(), started: "2026-01-01T00:00:00Z" };
    for (const lock of [text, mine, { ...mine, claim: "0123456789abcdef" }]) {
      writeLock(dest, lock);
      const claim = claimFolder(dest);
      assert.notEqual(fs.readFileSync(shardFolderLock(dest), "utf8"), typeof lock === "string" ? lock : JSON.stringify(lock));
      claim.release();
      assert.ok(!fs.existsSync(shardFolderLock(dest)));
    }
  });

  it("release leaves a lock that is no longer this claim's (removed by hand, then another export claimed)", () => {
    const dest = freshFolder("taken");
    const first = claimFolder(dest);
    fs.rmSync(shardFolderLock(dest));
    const second = claimFolder(dest);
    first.release();
    assert.ok(fs.existsSync(shardFolderLock(dest)), "the second claim's lock is kept");
    second.release();
    assert.ok(!fs.existsSync(shardFolderLock(dest)));
  });

  it("a claim held by another process is refused naming its pid; once that process is killed (SIGKILL), its lock is taken over", async () => {
    const dest = freshFolder("child");
    const script = `import { claimTarget } from ${JSON.stringify(path.join(REPO, "server/export/exportClaim.ts"))};
claimTarget(${JSON.stringify(shardFolderLock(dest))}, "--webdataset", ${JSON.stringify(dest)}, "folder");
console.log("claimed");
setTimeout(() => {}, 120000);`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d) => String(d).includes("claimed") && resolve());
        child.on("exit", (code) => reject(new Error(`the child exited (${code}) before claiming`)));
      });
      assert.throws(() => claimFolder(dest), refusedBy(new RegExp(`another export \\(pid ${child.pid}\\) is writing into it`)));
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
    assert.equal(JSON.parse(fs.readFileSync(shardFolderLock(dest), "utf8")).pid, child.pid, "a killed export leaves its lock");
    claimFolder(dest).release();
  });
});

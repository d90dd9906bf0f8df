// One writer per dataset, through the real CLI: a second farm on a running farm's --out exits 2 naming
// the holder and changes nothing; a SIGKILLed farm's lock is taken over by the next start; --out
// values that name no usable dataset folder exit 2 with the path and the cause, touching nothing.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import Database from "better-sqlite3";
import { REPO, runFarmCli } from "./cli.js";

const temps: string[] = [];
const tempDir = (what: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tabfarm-lock-${what}-`));
  temps.push(dir);
  return dir;
};
after(() => temps.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** `--serve-only` farm in a child process; resolves once it serves (or rejects with its output if it exits first). */
function serveOnly(out: string): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "harness/cli.ts"), "--serve-only", "--out", out, "--demo", "8", "--frames-per-job", "2", "--no-progress"], {
    cwd: REPO, stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "serving" within 120 s:\n${output}`)), 120_000);
    const onData = (d: Buffer) => {
      output += d;
      if (/tabfarm: serving http/.test(output)) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve-only exited (${code}) before serving:\n${output}`));
    });
  });
}

const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once("exit", (code) => resolve(code))));

/** The dataset's files (hash of each, queue files aside) and its queue's rows: what a second farm must not change. */
function datasetState(out: string) {
  const files: Record<string, string> = {};
  for (const rel of fs.readdirSync(out, { recursive: true }).map(String).sort()) {
    const full = path.join(out, rel);
    if (rel.startsWith("queue.sqlite") || !fs.lstatSync(full).isFile()) continue;
    files[rel] = createHash("sha256").update(fs.readFileSync(full)).digest("hex");
  }
  const db = new Database(path.join(out, "queue.sqlite"), { readonly: true, fileMustExist: true });
  try {
    return { files, jobs: db.prepare("SELECT id, state, token, attempts FROM jobs ORDER BY id").all() };
  } finally {
    db.close();
  }
}

/** Every file under `dir` with its hash. */
function hashTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of fs.readdirSync(dir, { recursive: true }).map(String).sort()) {
    const full = path.join(dir, rel);
    out[rel] = fs.lstatSync(full).isFile() ? createHash("sha256").update(fs.readFileSync(full)).digest("hex") : "dir";
  }
  return out;
}

describe("one writer per dataset (CLI)", () => {
  it("a second farm on a running farm's --out exits 2 naming pid, host and since; a SIGKILLed farm's lock is taken over", { timeout: 240_000 }, async () => {
    const out = tempDir("two");
    const first = await serveOnly(out);
    try {
      const before = datasetState(out);
      assert.equal(before.jobs.length, 4);
      const second = await runFarmCli(["--serve-only", "--out", out, "--no-progress"], 120_000);
      assert.equal(second.code, 2, second.output);
      assert.match(
        second.output,
        new RegExp(`tabfarm: --out ${out}: the dataset is in use by another tabfarm \\(pid ${first.child.pid} on host ${os.hostname().replace(/\./g, "\\.")}, since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)`),
      );
      assert.match(second.output, new RegExp(`kill ${first.child.pid}\\b`));
      assert.ok(!/resume:/.test(second.output), "the refused farm ran no resume step");
      assert.equal(first.child.exitCode, null, "the first farm still runs");
      assert.deepEqual(datasetState(out), before, "the first farm's dataset is unchanged");
      // status reads it meanwhile (no lock).
      const status = await runFarmCli(["status", "--out", out], 60_000);
      assert.equal(status.code, 0, status.output);
      assert.match(status.output, /4 jobs — 0 done, 4 pending/);
    } finally {
      first.child.kill("SIGKILL");
    }
    await exited(first.child);

    const third = await serveOnly(out);
    try {
      assert.match(third.output(), new RegExp(`dataset: took over the lock left by pid ${first.child.pid} on host .*: that process is gone`));
    } finally {
      third.child.kill("SIGTERM");
    }
    await exited(third.child);
    assert.ok(!fs.existsSync(path.join(out, "tabfarm.lock.json")), "a farm that stopped cleanly leaves no holder behind");
  });

  it("--out that is empty, blank, a file, or someone else's folder: exit 2 naming the path and the cause, nothing touched", { timeout: 240_000 }, async () => {
    const user = tempDir("user");
    fs.mkdirSync(path.join(user, "images"));
    fs.writeFileSync(path.join(user, "frames.jsonl"), '{"job":"mine","frame":0}\n');
    fs.writeFileSync(path.join(user, "images", "x.tmp"), "my temp file");
    const file = path.join(tempDir("file"), "a-file");
    fs.writeFileSync(file, "x");
    const before = hashTree(user);
    for (const [out, message] of [
      ["", /tabfarm: --out "": an empty path names no folder/],
      ["  ", /tabfarm: --out " {2}": an empty path names no folder/],
      [file, new RegExp(`tabfarm: --out ${file}: ${file} is a file, not a folder`)],
      [user, new RegExp(`tabfarm: --out ${user}: the folder is not empty and is not a tabfarm dataset .*frames\\.jsonl, images`)],
    ] as const) {
      const { code, output } = await runFarmCli(["--serve-only", "--out", out, "--no-progress"], 120_000);
      assert.equal(code, 2, output);
      assert.match(output, message);
    }
    assert.deepEqual(hashTree(user), before, "the user's files are untouched");
    assert.equal(fs.readFileSync(file, "utf8"), "x");
  });
});

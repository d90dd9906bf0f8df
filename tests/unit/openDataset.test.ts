// Opening a dataset folder (server/dataset/openDataset.ts) and its lock (server/dataset/datasetLock.ts),
// on real folders, real SQLite locks, real processes (a SIGKILLed holder, a user without write
// permission) and a real read-only mount where the machine allows one.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import Database from "better-sqlite3";
import { after, before, describe, it } from "node:test";
import { DatasetOpenError, MANIFEST_FILE, openDataset, writeManifest, type OpenDataset } from "../../server/dataset/openDataset.js";
import { DatasetLockedError, LOCK_HOLDER_FILE, LOCK_STALE_MS } from "../../server/dataset/datasetLock.js";
import { FRAMES_INDEX } from "../../server/dataset/DatasetWriter.js";
import { SqliteQueue } from "../../server/queue/SqliteQueue.js";
import { printStatus, retryFailed } from "../../harness/queueCommands.js";
import type { FrameRecord } from "../../server/dataset/FrameRecord.js";

const REPO = path.resolve(import.meta.dirname, "../..");
let base: string;
let count = 0;
before(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-open-test-"));
  fs.chmodSync(base, 0o755); // the test run as another user must reach its folders
});
after(() => fs.rmSync(base, { recursive: true, force: true }));

const fresh = (name = "ds") => path.join(base, `${name}${++count}`);
const quiet = { log: () => {} };

/** Every file under `dir` (links as links, not followed) with a hash of its content or link target. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (rel: string) => {
    const full = path.join(dir, rel);
    const st = fs.lstatSync(full);
    if (st.isSymbolicLink()) out[rel] = `link → ${fs.readlinkSync(full)}`;
    else if (st.isDirectory()) {
      out[`${rel}/`] = "dir";
      for (const name of fs.readdirSync(full)) visit(path.join(rel, name));
    } else if (st.isFile()) out[rel] = createHash("sha256").update(fs.readFileSync(full)).digest("hex");
    else out[rel] = "special file";
  };
  for (const name of fs.readdirSync(dir)) visit(name);
  return out;
}

function record(job: string, frame: number): FrameRecord {
  return {
    job, frame, file: `images/${job}/${String(frame).padStart(6, "0")}.png`, width: 1, height: 1, format: "png",
    K: [[1, 0, 0], [0, 1, 0], [0, 0, 1]], cameraToWorld: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    params: {}, session: "s1", render_ms: 1, encode_ms: 1, attempt: 1,
  } as FrameRecord;
}

async function refused(out: string, pattern: RegExp, options = {}): Promise<Error> {
  let caught: Error | undefined;
  await openDataset(out, { ...quiet, ...options }).then(
    (d) => d.close(),
    (err: Error) => (caught = err),
  );
  assert.ok(caught, `opening ${JSON.stringify(out)} is refused`);
  assert.match(caught.message, pattern);
  return caught;
}

/** Runs a script (ESM, tsx) in a child process; `uid` runs it as another user. */
function runScript(code: string, options: { uid?: number } = {}) {
  return spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    cwd: REPO, encoding: "utf8", timeout: 60_000, ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
  });
}

describe("openDataset: a new or existing dataset", () => {
  it("creates a missing folder as a dataset marked by tabfarm.json, and reopens it as the same dataset", async () => {
    const out = fresh();
    const first = await openDataset(out, quiet);
    assert.equal(first.created, true);
    assert.equal(first.root, fs.realpathSync(out));
    const manifest = JSON.parse(fs.readFileSync(path.join(out, MANIFEST_FILE), "utf8"));
    assert.equal(manifest.format, "tabfarm-dataset");
    assert.equal(manifest.version, 1);
    assert.ok(Date.parse(manifest.created) > 0);
    await first.queue.add([{ id: "j1" }]);
    await first.close();
    const again = await openDataset(out, quiet);
    assert.equal(again.created, false);
    assert.equal(await again.queue.state("j1"), "pending");
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, MANIFEST_FILE), "utf8")), manifest, "the manifest is not rewritten");
    await again.close();
    assert.ok(!fs.existsSync(path.join(out, LOCK_HOLDER_FILE)), "a closed dataset records no holder");
  });

  it("an existing empty folder becomes a dataset; --out given as a symbolic link to a folder is resolved once", async () => {
    const real = fresh("real");
    fs.mkdirSync(real);
    const link = `${real}-link`;
    fs.symlinkSync(real, link);
    const d = await openDataset(link, quiet);
    assert.equal(d.root, fs.realpathSync(real));
    await d.writer.writeFile("images/j/000000.png", Buffer.from("x"));
    await d.close();
    assert.ok(fs.existsSync(path.join(real, "images/j/000000.png")));
    assert.ok(fs.existsSync(path.join(real, MANIFEST_FILE)));
  });

  it("a dataset made by an earlier tabfarm (queue.sqlite, no tabfarm.json) is recognised and marked", async () => {
    const out = fresh();
    fs.mkdirSync(out);
    const old = new SqliteQueue(path.join(out, "queue.sqlite"));
    await old.add([{ id: "a" }, { id: "b" }]);
    const lease = await old.take("s1");
    assert.equal(await old.complete(lease!.token), true);
    await old.close();
    fs.writeFileSync(path.join(out, FRAMES_INDEX), JSON.stringify(record("a", 0)) + "\n");
    fs.mkdirSync(path.join(out, "images/a"), { recursive: true });
    fs.writeFileSync(path.join(out, "images/a/000000.png"), "png");
    const lines: string[] = [];
    const d = await openDataset(out, { log: (l) => lines.push(l) });
    assert.equal(d.created, false);
    assert.equal(await d.queue.state("a"), "done");
    assert.ok(lines.some((l) => /made by an earlier tabfarm; marked it with tabfarm\.json/.test(l)), lines.join("\n"));
    assert.ok(fs.existsSync(path.join(out, MANIFEST_FILE)));
    await d.close();
  });

  it("a tabfarm.json that is not a manifest, is corrupt, or is from a newer format is refused by name", async () => {
    for (const [content, pattern] of [
      ["{not json", /tabfarm\.json can't be read/],
      [JSON.stringify({ hello: 1 }), /tabfarm\.json is not a tabfarm dataset manifest/],
      [JSON.stringify({ format: "tabfarm-dataset", version: 99, created: "x" }), /format version 99; this tabfarm reads up to 1/],
    ] as const) {
      const out = fresh();
      fs.mkdirSync(out);
      fs.writeFileSync(path.join(out, MANIFEST_FILE), content);
      const before = snapshot(out);
      const err = await refused(out, pattern);
      assert.ok(err instanceof DatasetOpenError);
      assert.ok(err.message.includes(out), err.message);
      assert.deepEqual(snapshot(out), before);
    }
  });
});

describe("openDataset: unusable targets are refused, naming the path and the cause", () => {
  it("an empty or blank --out", async () => {
    for (const out of ["", "  ", "\t", " \n "]) {
      const err = await refused(out, /an empty path names no folder/);
      assert.ok(err.message.includes(JSON.stringify(out)), err.message);
    }
  });

  it("a folder holding someone else's files (frames.jsonl, images/*.tmp) is refused and left untouched", async () => {
    const out = fresh("user");
    fs.mkdirSync(path.join(out, "images/shot"), { recursive: true });
    fs.writeFileSync(path.join(out, FRAMES_INDEX), '{"mine":1}\n{"job":"x","frame":0}\n');
    fs.writeFileSync(path.join(out, "images/x.tmp"), "user temp");
    fs.writeFileSync(path.join(out, "images/shot/.a.png.1.tmp"), "user hidden temp");
    fs.writeFileSync(path.join(out, "notes.txt"), "hello");
    const before = snapshot(out);
    const err = await refused(out, /not empty and is not a tabfarm dataset/);
    assert.ok(err.message.includes(out), err.message);
    assert.match(err.message, /frames\.jsonl, images, notes\.txt/);
    assert.deepEqual(snapshot(out), before, "no file changed, removed or added (not even a lock)");
  });

  it("a queue.sqlite that is not tabfarm's (another SQLite database, or not a database) does not make a dataset", async () => {
    for (const make of [
      (file: string) => fs.writeFileSync(file, "not a database at all"),
      (file: string) => new Database(file).exec("CREATE TABLE jobs (x); CREATE TABLE meta (y)").close(),
    ]) {
      const out = fresh();
      fs.mkdirSync(out);
      make(path.join(out, "queue.sqlite"));
      const before = snapshot(out);
      await refused(out, /not a tabfarm dataset/);
      assert.deepEqual(snapshot(out), before);
    }
  });

  it("a file, a path through a file, a dangling link", async () => {
    const file = path.join(base, `file${++count}`);
    fs.writeFileSync(file, "x");
    await refused(file, new RegExp(`${file}: ${file} is a file, not a folder`));
    await refused(path.join(file, "sub"), /: a part of the path is a file, not a folder \(ENOTDIR\)/);
    const dangling = fresh("dangling");
    fs.symlinkSync(path.join(base, "nowhere"), dangling);
    await refused(dangling, /a symbolic link to .*nowhere, which does not exist/);
    assert.equal(fs.readFileSync(file, "utf8"), "x");
  });

  it("a dataset whose frames.jsonl is a FIFO or whose queue.sqlite is a folder is refused by name", async () => {
    for (const [name, make] of [
      [FRAMES_INDEX, (file: string) => spawnSync("mkfifo", [file])],
      ["queue.sqlite", (file: string) => fs.mkdirSync(file)],
    ] as const) {
      const out = fresh();
      await (await openDataset(out, quiet)).close();
      fs.rmSync(path.join(out, name), { force: true });
      make(path.join(out, name));
      const before = snapshot(out);
      await refused(out, new RegExp(`${out}: ${name} is not a regular file`));
      assert.deepEqual(snapshot(out), before);
    }
  });

  it("retry-failed and status never create a folder or a dataset", async () => {
    const missing = fresh("missing");
    await assert.rejects(retryFailed({ out: missing }, () => {}), /no such folder/);
    await assert.rejects(printStatus({ out: missing }, () => {}), /no such folder/);
    assert.ok(!fs.existsSync(missing));
    const empty = fresh("empty");
    fs.mkdirSync(empty);
    await assert.rejects(retryFailed({ out: empty }, () => {}), /the folder is empty, not a tabfarm dataset/);
    await assert.rejects(printStatus({ out: empty }, () => {}), /the folder is empty, not a tabfarm dataset/);
    assert.deepEqual(fs.readdirSync(empty), []);
  });

  it("status on a dataset without a queue yet creates nothing", async () => {
    const out = fresh();
    fs.mkdirSync(out);
    writeManifest(out);
    const before = snapshot(out);
    await assert.rejects(printStatus({ out: out }, () => {}), /has no queue\.sqlite yet/);
    assert.deepEqual(snapshot(out), before);
  });

  it("a dataset whose queue.sqlite is another application's database, or not a database, is refused untouched (no tables added, no -wal/-shm left)", async () => {
    for (const [make, pattern] of [
      [(file: string) => new Database(file).exec("CREATE TABLE users (name)").close(), /queue\.sqlite is not tabfarm's queue: it is an SQLite database holding the tables users/],
      [(file: string) => new Database(file).exec("CREATE TABLE jobs (a, b)").close(), /not tabfarm's queue: it is an SQLite database holding the tables jobs/],
      [(file: string) => fs.writeFileSync(file, Buffer.alloc(8192, 7)), /cannot open queue\.sqlite: file is not a database/],
    ] as const) {
      const out = fresh();
      await (await openDataset(out, quiet)).close();
      fs.rmSync(path.join(out, "queue.sqlite"));
      make(path.join(out, "queue.sqlite"));
      const before = snapshot(out);
      await refused(out, pattern);
      await assert.rejects(printStatus({ out: out }, () => {}), pattern);
      const { "tabfarm.lock": _lock, ...after } = snapshot(out);
      const { "tabfarm.lock": _lockBefore, ...beforeButLock } = before;
      assert.deepEqual(after, beforeButLock);
    }
  });

  it("a huge tabfarm.json is refused by its size, not read; a huge tabfarm.lock.json is not read either", async () => {
    const out = fresh();
    await (await openDataset(out, quiet)).close();
    const manifest = path.join(out, MANIFEST_FILE);
    fs.truncateSync(manifest, 1 << 30); // a sparse GiB: reading it would take a GiB of memory
    await refused(out, /tabfarm\.json can't be read: it holds 1073741824 bytes; at most 65536 are expected/);
    fs.truncateSync(manifest, 0);
    writeManifest(out);
    fs.writeFileSync(path.join(out, LOCK_HOLDER_FILE), "");
    fs.truncateSync(path.join(out, LOCK_HOLDER_FILE), 1 << 30);
    const lines: string[] = [];
    const d = await openDataset(out, { log: (l) => lines.push(l) });
    await d.close();
    assert.deepEqual(lines, [], "an unreadable holder file names no previous holder");
  });

  // In a container the farm has the same pid every run: temp names made of the pid met the temp file a
  // killed run left, and every later start failed with EEXIST.
  // Node's recursive mkdir retries forever where mkdir answers ENOENT although the parent exists (/proc): the start hung.
  it("a --out under /proc is refused with the cause, not retried forever", async (t) => {
    if (!fs.existsSync("/proc/self")) return t.skip("no /proc here");
    await refused("/proc/tabfarm-test-no-such/ds", /cannot create the folder: the file system does not let a folder be created at \/proc\/tabfarm-test-no-such \(ENOENT/);
  });

  it("--out with .., a trailing slash, spaces, Unicode and a newline names the folder it resolves to", async () => {
    const parent = fresh("odd");
    fs.mkdirSync(parent);
    for (const [given, made] of [["x/../y", "y"], ["t/", "t"], ["sp ace/ü né\nline", "sp ace/ü né\nline"]]) {
      const d = await openDataset(path.join(parent, given), quiet);
      assert.equal(d.root, path.join(parent, made));
      await d.close();
    }
    assert.deepEqual(fs.readdirSync(parent).sort(), ["sp ace", "t", "y"]);
  });

  it("temp files a killed opener left under this process's pid do not block the start", async () => {
    const out = fresh();
    fs.mkdirSync(out);
    for (const name of [`${MANIFEST_FILE}.${process.pid}.tmp`, `.tabfarm-writable-${process.pid}.tmp`]) fs.writeFileSync(path.join(out, name), "");
    await (await openDataset(out, quiet)).close();
    assert.ok(fs.existsSync(path.join(out, MANIFEST_FILE)));
  });

  it("a folder the user may not write into: permission denied (EACCES), as a user that is not root", (t) => {
    if (process.getuid?.() !== 0) return t.skip("needs root to run the check as another user (nobody)");
    const out = fresh("root-owned");
    fs.mkdirSync(out, { mode: 0o755 });
    const code = `
      const { openDataset } = await import(${JSON.stringify(path.join(REPO, "server/dataset/openDataset.ts"))});
      for (const out of [${JSON.stringify(out)}, ${JSON.stringify(path.join(out, "sub"))}]) {
        try { const d = await openDataset(out, { log() {} }); await d.close(); console.log("OPENED " + out); }
        catch (err) { console.log(err.message); }
      }`;
    const result = runScript(code, { uid: 65534 });
    assert.equal(result.status, 0, result.stderr);
    const [existing, sub] = result.stdout.trim().split("\n");
    assert.equal(existing, `--out ${out}: cannot write into ${out}: permission denied (EACCES)`);
    assert.equal(sub, `--out ${path.join(out, "sub")}: cannot create the folder: permission denied (EACCES)`);
    assert.deepEqual(fs.readdirSync(out), []);
  });

  it("a read-only file system: a new folder on it and an existing dataset on it (EROFS)", async (t) => {
    const mount = fresh("ro");
    fs.mkdirSync(mount);
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mount]);
    if (mounted.status !== 0) return t.skip(`cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): ${mounted.stderr}`);
    try {
      const d = await openDataset(path.join(mount, "ds"), quiet);
      await d.queue.add([{ id: "a" }]);
      await d.close();
      const remount = spawnSync("mount", ["-o", "remount,ro", mount]);
      assert.equal(remount.status, 0, String(remount.stderr));
      const before = snapshot(mount);
      await refused(path.join(mount, "ds"), new RegExp(`cannot write into ${mount}/ds: the file system is read-only \\(EROFS\\)`));
      await refused(path.join(mount, "new"), /cannot create the folder: the file system is read-only \(EROFS\)/);
      assert.deepEqual(snapshot(mount), before);
    } finally {
      spawnSync("umount", [mount]);
    }
  });
});

describe("openDataset: symbolic links planted inside --out", () => {
  /** A dataset and a folder outside it with a file; returns both. */
  async function datasetAndOutside() {
    const out = fresh();
    const d = await openDataset(out, quiet);
    await d.queue.add([{ id: "j1" }]);
    await d.writer.writeFile("images/j1/000000.png", Buffer.from("png"));
    await d.close();
    const outside = fresh("outside");
    fs.mkdirSync(path.join(outside, "j2"), { recursive: true });
    fs.writeFileSync(path.join(outside, "victim.jsonl"), '{"job":"other","frame":0}\n');
    fs.writeFileSync(path.join(outside, "j2/.000000.png.x.tmp"), "not ours");
    return { out, outside };
  }

  for (const [where, plant] of [
    ["images", (out: string, outside: string) => (fs.renameSync(path.join(out, "images"), `${out}.images-moved`), fs.symlinkSync(outside, path.join(out, "images")))],
    ["images/<job>", (out: string, outside: string) => fs.symlinkSync(path.join(outside, "j2"), path.join(out, "images/j2"))],
    ["frames.jsonl", (out: string, outside: string) => fs.symlinkSync(path.join(outside, "victim.jsonl"), path.join(out, FRAMES_INDEX))],
    ["queue.sqlite", (out: string, outside: string) => (fs.rmSync(path.join(out, "queue.sqlite")), fs.symlinkSync(path.join(outside, "q.sqlite"), path.join(out, "queue.sqlite")))],
    ["tabfarm.json", (out: string, outside: string) => (fs.writeFileSync(path.join(outside, "m.json"), fs.readFileSync(path.join(out, MANIFEST_FILE))), fs.rmSync(path.join(out, MANIFEST_FILE)), fs.symlinkSync(path.join(outside, "m.json"), path.join(out, MANIFEST_FILE)))],
    ["tabfarm.lock", (out: string, outside: string) => (fs.rmSync(path.join(out, "tabfarm.lock")), fs.symlinkSync(path.join(outside, "lock"), path.join(out, "tabfarm.lock")))],
  ] as const) {
    it(`a link at ${where} pointing outside is refused at open; nothing outside changes`, async () => {
      const { out, outside } = await datasetAndOutside();
      plant(out, outside);
      const before = snapshot(outside);
      const err = await refused(out, /is a symbolic link \(to .*\); tabfarm never writes through links inside a dataset/);
      assert.ok(err.message.includes(where.replace("<job>", "j2")), err.message);
      assert.deepEqual(snapshot(outside), before);
    });
  }

  it("links planted after open: image writes, appends, compact and temp removal do not go through them", async () => {
    const { out, outside } = await datasetAndOutside();
    const d = await openDataset(out, quiet);
    try {
      const before = snapshot(outside);
      // images/<job> made a link after open: the first write of that folder refuses it.
      fs.symlinkSync(path.join(outside, "j2"), path.join(out, "images/j2"));
      await assert.rejects(d.writer.writeFile("images/j2/000000.png", Buffer.from("x")), /symbolic link inside the dataset/);
      // A folder under a linked folder: mkdir would follow images/j3 → outside; refused before mkdir.
      fs.symlinkSync(outside, path.join(out, "images/j3"));
      await assert.rejects(d.writer.writeFile("images/j3/deeper/000000.png", Buffer.from("x")));
      // A link at a final file name is replaced by the rename, not written through.
      fs.mkdirSync(path.join(out, "images/j4"));
      fs.symlinkSync(path.join(outside, "victim.jsonl"), path.join(out, "images/j4/000000.png"));
      await d.writer.writeFile("images/j4/000000.png", Buffer.from("frame"));
      assert.equal(fs.readFileSync(path.join(out, "images/j4/000000.png"), "utf8"), "frame");
      assert.ok(!fs.lstatSync(path.join(out, "images/j4/000000.png")).isSymbolicLink());
      // Temp removal neither follows images/j2 nor deletes the outside temp.
      await d.writer.removeStaleTemps();
      // frames.jsonl made a link: appends and compact refuse it.
      fs.symlinkSync(path.join(outside, "victim.jsonl"), path.join(out, FRAMES_INDEX));
      await assert.rejects(d.writer.appendRecords([record("j1", 0)]), /cannot write frames\.jsonl/);
      await assert.rejects(d.writer.compact(() => true), /not a regular file/);
      assert.deepEqual(snapshot(outside), before, "nothing outside --out changed");
    } finally {
      await d.close();
    }
  });
});

describe("the dataset lock", () => {
  it("a second opener in the same process is refused naming pid, host and since; the first's dataset is intact", async () => {
    const out = fresh();
    const first = await openDataset(out, quiet);
    await first.queue.add([{ id: "j1" }, { id: "j2" }]);
    const lease = await first.queue.take("s1");
    await first.writer.writeFile("images/j1/000000.png", Buffer.from("png"));
    await first.writer.appendRecords([record("j1", 0)]);
    const before = snapshot(out);
    const err = await refused(out, /the dataset is in use by an earlier opener in this process/);
    assert.ok(err instanceof DatasetLockedError);
    assert.equal(err.holder?.pid, process.pid);
    assert.ok(err.message.includes(`pid ${process.pid} on host ${os.hostname()}, since 20`), err.message);
    assert.match(err.message, /wait for that run to finish or stop it, or choose another --out/);
    assert.deepEqual(snapshot(out), before, "the refused opener changed nothing (no resume)");
    assert.equal(await first.queue.state(lease!.job.id), "leased", "the first opener's lease is still current");
    assert.equal(await first.queue.complete(lease!.token), true);
    await first.close();
    const second = await openDataset(out, quiet);
    await second.close();
  });

  it("status reads a locked dataset; retry-failed is refused while a farm holds it", async () => {
    const out = fresh();
    const farm = await openDataset(out, { ...quiet, maxAttempts: 1 });
    await farm.queue.add([{ id: "bad" }]);
    const lease = await farm.queue.take("s1");
    assert.equal(await farm.queue.putBack(lease!.token, { message: "boom" }), true);
    const lines: string[] = [];
    await printStatus({ out: out }, (l) => lines.push(l));
    assert.match(lines.join("\n"), /1 failed/);
    assert.match(lines.join("\n"), /failed bad after 1 attempt\(s\): boom/);
    await assert.rejects(retryFailed({ out: out }, () => {}), (e: Error) => e instanceof DatasetLockedError && /pid \d+ on host/.test(e.message));
    assert.equal(await farm.queue.state("bad"), "failed");
    await farm.close();
    assert.equal(await retryFailed({ out: out }, () => {}), 1);
  });

  it("a holder killed by SIGKILL leaves a lock the next opener takes over, with a log line naming it", async () => {
    const out = fresh();
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", `
      const { openDataset } = await import(${JSON.stringify(path.join(REPO, "server/dataset/openDataset.ts"))});
      await openDataset(${JSON.stringify(out)}, { log() {} });
      console.log("HELD");
      setInterval(() => {}, 1000);`], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d) => String(d).includes("HELD") && resolve());
        child.on("exit", (code) => reject(new Error(`holder exited early (${code})`)));
      });
      const err = await refused(out, /in use by another tabfarm/);
      assert.ok(err.message.includes(`pid ${child.pid} on host ${os.hostname()}`), err.message);
      assert.ok(err.message.includes(`kill ${child.pid}`), err.message);
    } finally {
      child.kill("SIGKILL");
    }
    await new Promise((resolve) => child.once("exit", resolve));
    const lines: string[] = [];
    const d = await openDataset(out, { log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => l.includes(`took over the lock left by pid ${child.pid} on host ${os.hostname()}`) && l.endsWith("that process is gone")), lines.join("\n"));
    await d.close();
  });

  it("a holder on another host keeps the dataset while it renews, and is taken over once stale", async () => {
    const out = fresh();
    await (await openDataset(out, quiet)).close();
    const holderFile = path.join(out, LOCK_HOLDER_FILE);
    const other = { pid: 4242, host: "other-host.example", started: "2026-01-01T00:00:00.000Z" };
    fs.writeFileSync(holderFile, JSON.stringify(other));
    const err = await refused(out, /in use by another tabfarm \(pid 4242 on host other-host\.example, since 2026-01-01T00:00:00\.000Z, last renewed \d+ s ago/);
    assert.ok(!err.message.includes("kill"), "no kill advice for a process on another host");
    const old = new Date(Date.now() - LOCK_STALE_MS - 5_000);
    fs.utimesSync(holderFile, old, old);
    const lines: string[] = [];
    const d = await openDataset(out, { log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => /took over the lock left by pid 4242 on host other-host\.example .*not renewed for \d+ s/.test(l)), lines.join("\n"));
    assert.equal(JSON.parse(fs.readFileSync(holderFile, "utf8")).pid, process.pid);
    await d.close();
  });

  it("only one of many concurrent openers of a new folder gets it", async () => {
    const out = fresh();
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => openDataset(out, quiet)));
    const opened = results.filter((r): r is PromiseFulfilledResult<OpenDataset> => r.status === "fulfilled");
    assert.equal(opened.length, 1);
    for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof DatasetLockedError, String(r.reason));
    await opened[0].value.close();
  });
});

// One writer per dataset. The lock is an OS lock: an exclusive SQLite lock (fcntl byte-range lock)
// on <out>/tabfarm.lock, held by an open connection for as long as the farm runs. The kernel drops it
// when the process dies, even by SIGKILL, so a killed farm's lock is free at once on the same host
// (and on a network file system whose locks work, when the server notices the client is gone).
// Who holds it ({pid, host, started}) is in <out>/tabfarm.lock.json, which a refused opener reads
// for its message (the locked database itself can't be read), and whose mtime the holder renews
// every LOCK_RENEW_MS: a holder on another host whose OS lock did not reach us (network file system
// without working locks) still keeps the dataset until it has not renewed for LOCK_STALE_MS.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { processAlive } from "../processAlive.js";
import { takeExclusiveLock } from "../fileLock.js";
import { readSmallFile, writeSmallFile } from "./smallFiles.js";

export const LOCK_FILE = "tabfarm.lock";
export const LOCK_HOLDER_FILE = "tabfarm.lock.json";
export const LOCK_RENEW_MS = 10_000;
export const LOCK_STALE_MS = 60_000;
/** The holder file is one short line; a bigger one is not ours and is not read. */
const MAX_HOLDER_BYTES = 4096;

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  started: string;
}

/** The dataset is locked by another process (or another opener in this one). */
export class DatasetLockedError extends Error {
  constructor(readonly root: string, readonly holder: LockHolder | undefined, detail = "") {
    super(
      `--out ${root}: the dataset is in use by ${holder?.pid === process.pid && holder.host === os.hostname() ? "an earlier opener in this process" : "another tabfarm"} ` +
        (holder ? `(pid ${holder.pid} on host ${holder.host}, since ${holder.started}${detail})` : `(its holder is not recorded in ${LOCK_HOLDER_FILE} yet)`) +
        `. A dataset has one writer: wait for that run to finish or stop it` +
        (holder && holder.host === os.hostname() && holder.pid !== process.pid ? ` (kill ${holder.pid})` : "") +
        `, or choose another --out.`,
    );
  }
}

export class DatasetLock {
  private renewTimer: NodeJS.Timeout;
  private readonly removeHolderOnExit = () => this.removeHolder();
  private released = false;

  private constructor(
    readonly root: string,
    private readonly db: Database.Database,
    readonly holder: LockHolder,
  ) {
    this.renewTimer = setInterval(() => this.renew(), LOCK_RENEW_MS).unref();
    process.on("exit", this.removeHolderOnExit);
  }

  /**
   * Takes the lock of the dataset folder `root` (a real path, checked for links by the caller), or
   * throws DatasetLockedError naming the holder. A lock left by a dead process is taken over with a log line.
   */
  static acquire(root: string, log: (line: string) => void): DatasetLock {
    const db = new Database(path.join(root, LOCK_FILE), { timeout: 0 });
    try {
      takeExclusiveLock(db);
    } catch (err) {
      db.close();
      const code = (err as { code?: string }).code;
      if (code === "SQLITE_BUSY") throw new DatasetLockedError(root, readHolderWaiting(root));
      throw new Error(`--out ${root}: cannot lock the dataset (${LOCK_FILE}): ${(err as Error).message}${code ? ` (${code})` : ""}`);
    }
    let holder: LockHolder;
    try {
      const previous = readHolder(root);
      if (previous) {
        const ageMs = Date.now() - previous.renewedMs;
        if (previous.host !== os.hostname() && ageMs < LOCK_STALE_MS) {
          throw new DatasetLockedError(
            root, previous,
            `, last renewed ${Math.round(ageMs / 1000)} s ago; if that process is gone, its lock is taken over ` +
              `${Math.round(LOCK_STALE_MS / 1000)} s after its last renewal`,
          );
        }
        const why = previous.host !== os.hostname()
          ? `not renewed for ${Math.round(ageMs / 1000)} s`
          : processAlive(previous.pid) && previous.pid !== process.pid ? "that process no longer holds it" : "that process is gone";
        log(`dataset: took over the lock left by pid ${previous.pid} on host ${previous.host} (since ${previous.started}): ${why}`);
      }
      holder = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
      writeHolder(root, holder);
    } catch (err) {
      db.close();
      throw err;
    }
    return new DatasetLock(root, db, holder);
  }

  /** Releases the lock (idempotent). */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.renewTimer);
    process.off("exit", this.removeHolderOnExit);
    this.removeHolder();
    this.db.close();
  }

  private renew(): void {
    const now = new Date();
    try {
      fs.utimesSync(path.join(this.root, LOCK_HOLDER_FILE), now, now);
    } catch {
      // A dataset that refuses writes is reported by the writes themselves.
    }
  }

  /** Removes the holder file if it is still ours, so the next opener has nothing to take over. */
  private removeHolder(): void {
    const current = readHolder(this.root);
    if (current && current.pid === this.holder.pid && current.started === this.holder.started) {
      fs.rmSync(path.join(this.root, LOCK_HOLDER_FILE), { force: true });
    }
  }
}

/** The recorded holder and when it last renewed; undefined when there is none or it can't be read. */
export function readHolder(root: string): (LockHolder & { renewedMs: number }) | undefined {
  const file = path.join(root, LOCK_HOLDER_FILE);
  try {
    const { text, mtimeMs } = readSmallFile(file, MAX_HOLDER_BYTES);
    const holder = JSON.parse(text) as LockHolder;
    if (!Number.isInteger(holder?.pid) || typeof holder.host !== "string" || typeof holder.started !== "string") return undefined;
    return { pid: holder.pid, host: holder.host, started: holder.started, renewedMs: mtimeMs };
  } catch {
    return undefined;
  }
}

/** A refused opener may look between the holder taking the lock and writing its name: look again briefly. */
function readHolderWaiting(root: string): LockHolder | undefined {
  for (let i = 0; i < 10; i++) {
    const holder = readHolder(root);
    if (holder) return { pid: holder.pid, host: holder.host, started: holder.started };
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
  return undefined;
}

function writeHolder(root: string, holder: LockHolder): void {
  try {
    writeSmallFile(path.join(root, LOCK_HOLDER_FILE), JSON.stringify(holder) + "\n");
  } catch (err) {
    throw new Error(`--out ${root}: cannot record the lock's holder in ${LOCK_HOLDER_FILE}: ${(err as Error).message}`, { cause: err });
  }
}

// One export per target at a time. An export claims its target before `verify` with a lock file created
// exclusively (O_CREAT|O_EXCL: of two exports, exactly one creates it), holding {pid, host, started, claim}, and
// removes it when it ends (in a finally: also when it fails or is stopped by a signal). A --webdataset DEST's
// lock is DEST/.tabfarm-export.lock, a --coco FILE's is FILE.lock. A lock left by an export killed outright
// (SIGKILL, a crash) names a process that is gone, or this very process but none of its live claims (a
// restarted container hands the new export the killed one's pid): the next export on the same host removes
// it and claims the target (once: if another export claimed it meanwhile, that one has it). Any other lock
// file is a live export's, or can't be told from one (another host's, unreadable): refused, naming the file
// to remove if no export runs. Whatever else a claimed target holds of an export's (a staging folder, a
// .partial file) is not a live export's: the claimer may remove it.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { readSmallFile } from "../dataset/smallFiles.js";
import { processAlive } from "../processAlive.js";
import { ExportRefused } from "./exportSource.js";

/** The lock file of a --webdataset folder. */
export const shardFolderLock = (dest: string) => path.join(dest, ".tabfarm-export.lock");
/** The lock file of a --coco file. */
export const cocoFileLock = (file: string) => `${file}.lock`;

interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the target was claimed. */
  started: string;
  /** Random: tells two claims of one process in the same millisecond apart (a release removes only its own lock). */
  claim?: string;
}

/** The claim ids of this process's claims not yet released: a lock naming this pid with another id is stale. */
const liveClaims = new Set<string>();

/** A lock file is one short line; a bigger one is not an export's, and is not read. */
const MAX_LOCK_BYTES = 4096;

export interface ExportClaim {
  readonly lockFile: string;
  /** Removes the lock file if it is still this claim's (idempotent). */
  release(): void;
}

/**
 * Claims a target for this export: creates `lockFile` exclusively, taking over a lock whose process is gone
 * (same host), else throws ExportRefused "<what> <target>: another export (pid N) is writing into it; …".
 * `kind` says how the message speaks of the target (a folder is written into, a file is written).
 */
export function claimTarget(lockFile: string, what: string, target: string, kind: "folder" | "file"): ExportClaim {
  const holder: LockHolder = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), claim: randomBytes(8).toString("hex") };
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = fs.openSync(lockFile, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
      try {
        fs.writeSync(fd, JSON.stringify(holder) + "\n");
      } catch (err) {
        fs.rmSync(lockFile, { force: true }); // ours, empty: a lock naming no export would refuse every later one
        throw err;
      } finally {
        fs.closeSync(fd);
      }
      liveClaims.add(holder.claim!);
      return claimOf(lockFile, holder);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new ExportRefused(`${what} ${target}: cannot create the lock file ${lockFile}: ${(err as Error).message}`);
      }
    }
    const previous = readLock(lockFile);
    if (previous === undefined && attempt === 0) continue; // released meanwhile
    const stale = typeof previous === "object" && previous.host === os.hostname() &&
      (previous.pid === process.pid ? !liveClaims.has(previous.claim ?? "") : !processAlive(previous.pid));
    if (!stale || attempt > 0) throw refusal(lockFile, what, target, kind, previous ?? "it was removed and created again meanwhile");
    // Removed only while it still names that dead process or claim (another export may have taken it over meanwhile).
    if (sameHolder(readLock(lockFile), previous)) fs.rmSync(lockFile, { force: true });
  }
}

function claimOf(lockFile: string, holder: LockHolder): ExportClaim {
  let released = false;
  return {
    lockFile,
    release() {
      if (released) return;
      released = true;
      liveClaims.delete(holder.claim!);
      if (sameHolder(readLock(lockFile), holder)) fs.rmSync(lockFile, { force: true });
    },
  };
}

function refusal(lockFile: string, what: string, target: string, kind: "folder" | "file", holder: LockHolder | string): ExportRefused {
  const remove = `wait for it, or remove ${lockFile} if no export runs`;
  if (typeof holder === "string") return new ExportRefused(`${what} ${target}: its lock file ${lockFile} names no export (${holder}); another export may be starting: ${remove}`);
  const who = holder.host === os.hostname() ? `pid ${holder.pid}` : `pid ${holder.pid} on host ${holder.host}`;
  return new ExportRefused(`${what} ${target}: another export (${who}) is writing ${kind === "folder" ? "into it" : "it"}; ${remove}`);
}

/** The holder a lock file names, why it names none ("it is empty", "it is a link"…), or undefined when there is none. Never follows a link. */
function readLock(lockFile: string): LockHolder | string | undefined {
  let text: string;
  try {
    text = readSmallFile(lockFile, MAX_LOCK_BYTES).text;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    return code === "ELOOP" ? "it is a link" : (err as Error).message;
  }
  try {
    const lock = JSON.parse(text) as Partial<LockHolder> | null;
    if (Number.isInteger(lock?.pid) && lock!.pid! > 0 && typeof lock!.host === "string" && typeof lock!.started === "string") {
      return { pid: lock!.pid!, host: lock!.host, started: lock!.started, claim: typeof lock!.claim === "string" ? lock!.claim : undefined };
    }
  } catch {
    // not JSON: said below
  }
  return text.trim() === "" ? "it is empty" : "it is not {pid, host, started}";
}

const sameHolder = (a: LockHolder | string | undefined, b: LockHolder) =>
  typeof a === "object" && a.pid === b.pid && a.host === b.host && a.started === b.started && a.claim === b.claim;

// A real full disk for fault tests: a small tmpfs mounted on a test's folder (needs root, as in CI's
// container; tests skip without it) and a filler file that takes every last byte of it.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";

let mountable: boolean | undefined;

/** Whether this process may mount a tmpfs: tried once on a temp folder. */
export function canMountTmpfs(): boolean {
  if (mountable !== undefined) return mountable;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-mount-"));
  try {
    mountTmpfs(dir, "64k");
    unmount(dir);
    mountable = true;
  } catch {
    mountable = false;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return mountable;
}

/** Mounts a tmpfs of `size` (e.g. "4m") on the existing folder `dir`. */
export function mountTmpfs(dir: string, size: string): void {
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
}

/** Detaches the mount at once, even while a file on it is still open (lazy unmount). */
export function unmount(dir: string): void {
  execFileSync("umount", ["-l", dir], { stdio: "pipe" });
}

/** Writes `file` until the file system has not one more byte (tmpfs allocates whole pages). */
export function fillDisk(file: string): void {
  const fd = fs.openSync(file, "w");
  try {
    for (const size of [1 << 20, 1 << 16, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size, 1);
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

// tabfarm's own small files at the top of a dataset (tabfarm.json, tabfarm.lock.json). Read: whole, but a file
// of the same name that is huge, a link or a FIFO is not ours, and must neither fill memory nor block the
// start. Written: to a temp name, then renamed, so a reader sees the old file or the new one.
import fs from "node:fs";
import { randomBytes } from "node:crypto";

/**
 * Reads the regular file `file` whole (with its mtime), refusing a link (ELOOP) unless `followLinks`
 * (a file the user names, not one of the dataset's), and one larger than `maxBytes` (a RangeError
 * saying so). O_NONBLOCK: opening a FIFO does not wait for a writer.
 */
export function readSmallFile(file: string, maxBytes: number, options: { followLinks?: boolean } = {}): { text: string; mtimeMs: number } {
  const noFollow = options.followLinks ? 0 : fs.constants.O_NOFOLLOW;
  const fd = fs.openSync(file, fs.constants.O_RDONLY | noFollow | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new RangeError("it is not a regular file");
    if (stat.size > maxBytes) throw new RangeError(`it holds ${stat.size} bytes; at most ${maxBytes} are expected`);
    return { text: fs.readFileSync(fd, "utf8"), mtimeMs: stat.mtimeMs };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replaces `file` with `text` atomically. The temp name is random (a pid is reused, e.g. in containers,
 * and a killed writer's temp file would then block every later write), and removed if the write fails.
 */
export function writeSmallFile(file: string, text: string): void {
  const temp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    fs.writeFileSync(temp, text, { flag: "wx" });
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
}

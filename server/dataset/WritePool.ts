// Image files are written by a writer thread (worker_threads), shared by every DatasetWriter of the
// process: the event loop copies the bytes into a reused shared buffer, posts one message per file and
// gets one back, and the thread does mkdir (first file of a folder) + open/write/close + rename
// synchronously. Per file that is 2 messages instead of 4 promise round trips through libuv's pool
// (open, write, close, rename), and one thread creating files avoids the directory-lock spinning of
// 4 pool threads creating files side by side (measured with bench/ingest.ts: more frames/s and less
// CPU than both fs/promises and one fs.writeFile callback + rename). The kernel's cost of creating
// the file itself is the same either way.
// Links: the folder of a first write is checked to resolve to itself (no link on the way), the temp file
// is created exclusively (a link there is not followed), and rename replaces a link at the final name
// rather than writing through it.
import { Worker } from "node:worker_threads";

/** What the writer thread runs (plain JavaScript, CommonJS: no TypeScript loader in the thread). */
const WRITER_THREAD = `
const { parentPort } = require("node:worker_threads");
const fs = require("node:fs");
const path = require("node:path");
function assertNoLink(dir) {
  const real = fs.realpathSync(dir);
  if (real !== dir) throw Object.assign(new Error(dir + " resolves to " + real + ": a symbolic link inside the dataset; tabfarm does not write through it"), { code: "ELINK" });
}
parentPort.on("message", (m) => {
  let fd = -1;
  let created = false;
  try {
    if (m.dir) {
      // The dataset folder itself is never (re)created here: one deleted or moved while the farm runs
      // would come back as a stray folder without its queue and lock.
      if (!fs.lstatSync(m.root, { throwIfNoEntry: false })) {
        throw Object.assign(new Error("the dataset folder " + m.root + " is gone (deleted or moved while the farm ran); tabfarm does not recreate it"), { code: "ENOENT" });
      }
      // m.dir is built on the dataset's real path: a part that resolves elsewhere is a link. Checked on
      // the part that exists before mkdir (which would follow it) and on the whole folder after.
      let existing = m.dir;
      while (!fs.lstatSync(existing, { throwIfNoEntry: false })) existing = path.dirname(existing);
      assertNoLink(existing);
      fs.mkdirSync(m.dir, { recursive: true });
      assertNoLink(m.dir);
    }
    // O_EXCL: never opens an existing file or follows a link planted at the temp name.
    fd = fs.openSync(m.temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o666);
    created = true;
    const bytes = new Uint8Array(m.shared, 0, m.length);
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    const closing = fd;
    fd = -1;
    fs.closeSync(closing);
    fs.renameSync(m.temp, m.full);
    parentPort.postMessage(m.id);
  } catch (err) {
    if (fd >= 0) try { fs.closeSync(fd); } catch {}
    if (created) try { fs.unlinkSync(m.temp); } catch {}
    parentPort.postMessage({ id: m.id, message: String((err && err.message) || err), code: err && err.code });
  }
});
`;

export interface WriteTask {
  /** Folder to create first (recursive), when not known to exist. */
  dir?: string;
  /** The dataset folder: `dir` is created only below it, never it. */
  root: string;
  temp: string;
  full: string;
}

interface Pending {
  resolve(): void;
  reject(err: Error): void;
  shared: SharedArrayBuffer;
}

/** Shared buffers by size class (powers of two from 64 KB), kept for reuse up to a total size. */
class SharedBuffers {
  private free = new Map<number, SharedArrayBuffer[]>();
  private freeBytes = 0;
  constructor(private readonly maxFreeBytes: number) {}

  take(length: number): SharedArrayBuffer {
    const size = Math.max(65536, 2 ** Math.ceil(Math.log2(Math.max(1, length))));
    const reused = this.free.get(size)?.pop();
    if (reused) {
      this.freeBytes -= size;
      return reused;
    }
    return new SharedArrayBuffer(size);
  }

  give(buffer: SharedArrayBuffer): void {
    if (this.freeBytes + buffer.byteLength > this.maxFreeBytes) return;
    let list = this.free.get(buffer.byteLength);
    if (!list) this.free.set(buffer.byteLength, (list = []));
    list.push(buffer);
    this.freeBytes += buffer.byteLength;
  }
}

interface WriterThread {
  worker: Worker;
  pending: Map<number, Pending>;
}

/**
 * A few writer threads; each write goes to the one with the fewest writes queued. A thread is
 * ref'd only while it has writes queued, so an idle pool never keeps the process alive.
 */
export class WritePool {
  private static pools = new Map<number, WritePool>();
  static shared(threads: number): WritePool {
    const n = Math.max(1, Math.floor(threads));
    let pool = WritePool.pools.get(n);
    if (!pool) WritePool.pools.set(n, (pool = new WritePool(n)));
    return pool;
  }

  private readonly threads: (WriterThread | undefined)[];
  private readonly buffers = new SharedBuffers(32 * 2 ** 20);
  private nextId = 1;

  private constructor(size: number) {
    this.threads = new Array<WriterThread | undefined>(size).fill(undefined);
  }

  write(task: WriteTask, bytes: Uint8Array): Promise<void> {
    // The thread reads a private copy in shared memory (a 60 KB copy is a few µs; the caller keeps
    // its buffer). Shared buffers are reused: memory transferred per file instead piles up in the
    // thread's heap, whose GC hardly ever runs (hundreds of MB of RSS in the ingest bench).
    const length = bytes.byteLength;
    const shared = this.buffers.take(length);
    new Uint8Array(shared, 0, length).set(bytes);
    let slot = 0;
    for (let i = 1; i < this.threads.length; i++) {
      if ((this.threads[i]?.pending.size ?? 0) < (this.threads[slot]?.pending.size ?? 0)) slot = i;
    }
    const thread = this.threads[slot] ?? this.start(slot);
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      if (thread.pending.size === 0) thread.worker.ref();
      thread.pending.set(id, { resolve, reject, shared });
      thread.worker.postMessage({ id, ...task, shared, length });
    });
  }

  private start(slot: number): WriterThread {
    const worker = new Worker(WRITER_THREAD, { eval: true, execArgv: [], name: "tabfarm-dataset-writer" });
    worker.unref();
    const thread: WriterThread = { worker, pending: new Map() };
    this.threads[slot] = thread;
    const settle = (id: number, err?: Error, answered = true) => {
      const p = thread.pending.get(id);
      if (!p) return;
      thread.pending.delete(id);
      if (thread.pending.size === 0) worker.unref();
      // Only once the thread has answered: it no longer reads the buffer (a thread that died may
      // still hold it, so its buffers are not reused).
      if (!err || answered) this.buffers.give(p.shared);
      if (err) p.reject(err);
      else p.resolve();
    };
    worker.on("message", (m: number | { id: number; message: string; code?: string }) => {
      if (typeof m === "number") return settle(m);
      settle(m.id, Object.assign(new Error(m.message), m.code ? { code: m.code } : {}));
    });
    // A thread that dies fails what it held (the files may or may not exist; their temps are
    // removed at the next start) and is replaced at the next write.
    const fail = (err: Error) => {
      if (this.threads[slot] === thread) this.threads[slot] = undefined;
      for (const id of [...thread.pending.keys()]) settle(id, err, false);
    };
    worker.on("error", (err) => fail(err));
    worker.on("exit", (code) => fail(new Error(`dataset writer thread exited (${code})`)));
    return thread;
  }
}

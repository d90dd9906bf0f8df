// An exclusive OS lock held by an open SQLite connection: SQLite's exclusive lock is an fcntl byte-range
// lock, which the kernel drops when its holder dies, even by SIGKILL. The one mechanism behind the
// dataset's lock (server/dataset/datasetLock.ts) and the bundled browser's extraction lock
// (harness/bundledBrowser.ts).
import type Database from "better-sqlite3";

/**
 * Takes the exclusive lock of `db`'s file and keeps it until `db` is closed. Waits for another holder as
 * long as `db`'s busy timeout, then throws an SqliteError with code SQLITE_BUSY.
 */
export function takeExclusiveLock(db: Database.Database): void {
  db.pragma("locking_mode = EXCLUSIVE"); // the lock is kept after COMMIT, until the connection closes
  db.pragma("journal_mode = MEMORY"); // no journal file beside the lock (reading the mode already waits for the lock)
  db.exec("BEGIN EXCLUSIVE; COMMIT;");
}

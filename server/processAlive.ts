// Whether a process id names a live process on this host (signal 0 checks without sending anything;
// EPERM means it lives but belongs to another user). Used to tell leftovers of dead processes from
// work in progress: a dataset lock's holder, a half-extracted browser.
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

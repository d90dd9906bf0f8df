// Which browser processes this test process launched, for tests that kill browsers or check none is left.
import fs from "node:fs";

/**
 * Browser processes of ours: Playwright launches them as this process's children, talking over a pipe
 * (a wrapper script such as Debian's /usr/bin/chromium execs the real binary in the same process).
 * Read from /proc, not `ps`: tests sample this every few tens of milliseconds while Chromium renders.
 */
export function ourBrowsers(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "latin1");
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(ppid) !== process.pid || state === "Z") continue;
      const args = fs.readFileSync(`/proc/${name}/cmdline`, "latin1").split("\0");
      if (args.includes("--remote-debugging-pipe") && !args.some((a) => a.startsWith("--type="))) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

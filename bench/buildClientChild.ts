// Builds the client in a child process (npm run bench), so Vite's memory never counts as the server's RSS.
// Prints the client folder on its last line.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildClient } from "../harness/buildClient.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));

export function buildClientInChild(): string {
  const out = execFileSync(process.execPath, ["--import", "tsx", path.join(HERE, "buildClientChild.ts")], {
    cwd: path.join(HERE, ".."),
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  const dir = out.trim().split("\n").pop();
  if (!dir) throw new Error("bench: the client build printed no folder");
  return dir;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  console.log(await buildClient({ log: (line) => console.error(line) }));
}

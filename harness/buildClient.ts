// Builds the browser client with Vite when its output is missing or older than its sources.
// A --plugins module (the user's registerComponent calls) gets its own output folder.
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { stripVTControlCharacters } from "node:util";

export const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

function newestMtime(paths: string[]): number {
  let newest = 0;
  const visit = (p: string) => {
    if (!fs.existsSync(p)) return;
    const st = fs.statSync(p);
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name));
    else newest = Math.max(newest, st.mtimeMs);
  };
  paths.forEach(visit);
  return newest;
}

export async function buildClient(options: { plugins?: string; force?: boolean; log?: (line: string) => void } = {}): Promise<string> {
  const plugins = options.plugins ? path.resolve(options.plugins) : undefined;
  if (plugins && !fs.existsSync(plugins)) throw new Error(`--plugins: no such file ${plugins}`);
  const outDir = plugins
    ? path.join(REPO_ROOT, "dist", `client-${createHash("sha1").update(plugins).digest("hex").slice(0, 10)}`)
    : path.join(REPO_ROOT, "dist", "client");
  const sources = [path.join(REPO_ROOT, "client"), path.join(REPO_ROOT, "protocol"), path.join(REPO_ROOT, "vite.config.ts")];
  if (plugins) sources.push(plugins);
  const index = path.join(outDir, "index.html");
  if (!options.force && fs.existsSync(index) && fs.statSync(index).mtimeMs >= newestMtime(sources)) return outDir;

  options.log?.(`building the client${plugins ? ` with plugins from ${plugins}` : ""} …`);
  const { build } = await import("vite");
  const saved = { plugins: process.env.TABFARM_PLUGINS, out: process.env.TABFARM_CLIENT_OUT };
  // Build beside the old output and swap it in, so a farm that is serving the old build never
  // hands a tab a half-written one.
  const staging = `${outDir}.build-${process.pid}-${Date.now()}`;
  process.env.TABFARM_PLUGINS = plugins ?? "";
  process.env.TABFARM_CLIENT_OUT = staging;
  try {
    try {
      await build({ configFile: path.join(REPO_ROOT, "vite.config.ts"), logLevel: "warn" });
    } catch (err) {
      throw new ClientBuildError(err, plugins);
    }
    const retired = `${outDir}.old-${process.pid}-${Date.now()}`;
    if (fs.existsSync(outDir)) fs.renameSync(outDir, retired);
    fs.renameSync(staging, outDir);
    fs.rmSync(retired, { recursive: true, force: true });
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
    restoreEnv("TABFARM_PLUGINS", saved.plugins);
    restoreEnv("TABFARM_CLIENT_OUT", saved.out);
  }
  return outDir;
}

function restoreEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

/** The client did not build: one line per error, each naming its file, line and column where the bundler said. */
export class ClientBuildError extends Error {
  constructor(cause: unknown, plugins?: string) {
    const errors = (cause as { errors?: unknown[] }).errors;
    const lines = (Array.isArray(errors) && errors.length ? errors : [cause]).map(describeBuildError);
    super(`building the client${plugins ? ` with --plugins ${plugins}` : ""} failed:\n${lines.map((l) => `  ${l}`).join("\n")}`, { cause });
    this.name = "ClientBuildError";
  }
}

/** Rolldown's errors carry the file in `loc.file` or `id`, or (transform errors) only in their message: "[ file:line:col ]". */
function describeBuildError(e: unknown): string {
  const err = (e ?? {}) as { message?: unknown; id?: unknown; loc?: { file?: unknown; line?: unknown; column?: unknown } };
  const text = stripVTControlCharacters(String(err.message ?? e));
  const message = text.split("\n").find((l) => l.trim())?.trim() ?? "unknown error";
  const file = typeof err.loc?.file === "string" ? err.loc.file : typeof err.id === "string" ? err.id : undefined;
  if (file) {
    const at = typeof err.loc?.line === "number" ? `:${err.loc.line}:${Number(err.loc.column ?? 0) + 1}` : "";
    return `${file}${at}: ${message}`;
  }
  const framed = /\[ (\S.*?):(\d+):(\d+) \]/.exec(text);
  return framed ? `${path.resolve(framed[1]!)}:${framed[2]}:${framed[3]}: ${message}` : message;
}

// The built client, read into memory when the server starts: a rebuild of dist/ (another process
// running `npm run farm` after editing the client) never changes or breaks what a running farm serves.
import fs from "node:fs";
import path from "node:path";
import type http from "node:http";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".glb": "model/gltf-binary",
  ".gltf": "model/gltf+json",
  ".wasm": "application/wasm",
};

export interface ClientFiles {
  /**
   * Answers GET/HEAD for a public file at `pathname` (the request target's, already parsed: Farm parses
   * every target once, safely) and returns true; false lets the caller answer.
   */
  serve(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): boolean;
  /** Answers GET/HEAD with `file` (a path in the build, e.g. "dashboard.html"), public or withheld; false when the build has no such file. */
  serveFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, headers?: Record<string, string>): boolean;
  /** `serve` no longer answers `file` (the caller serves it with serveFile, after its own checks). */
  withhold(file: string): void;
}

export function loadClientFiles(dir: string): ClientFiles {
  const files = new Map<string, { body: Buffer; type: string }>();
  const visit = (sub: string) => {
    for (const entry of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      const rel = path.posix.join(sub, entry.name);
      if (entry.isDirectory()) visit(rel);
      else files.set(`/${rel}`, { body: fs.readFileSync(path.join(dir, rel)), type: TYPES[path.extname(entry.name)] ?? "application/octet-stream" });
    }
  };
  if (!fs.existsSync(path.join(dir, "index.html"))) throw new Error(`no built client in ${dir} (index.html missing); run npm run build`);
  visit("");
  files.set("/", files.get("/index.html")!);
  const withheld = new Set<string>();
  const send = (req: http.IncomingMessage, res: http.ServerResponse, pathname: string, headers: Record<string, string> = {}) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const file = files.get(pathname);
    if (!file) return false;
    res.writeHead(200, { "content-type": file.type, "content-length": file.body.length, "cache-control": "no-cache", ...headers });
    res.end(req.method === "HEAD" ? undefined : file.body);
    return true;
  };
  return {
    serve: (req, res, pathname) => !withheld.has(pathname) && send(req, res, pathname),
    serveFile: (req, res, file, headers) => send(req, res, `/${file}`, headers),
    withhold: (file) => void withheld.add(`/${file}`),
  };
}

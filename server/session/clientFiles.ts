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

/** `pathname` is the request target's, already parsed (Farm parses every target once, safely). */
export type StaticHandler = (req: http.IncomingMessage, res: http.ServerResponse, pathname: string) => boolean;

export function loadClientFiles(dir: string): StaticHandler {
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
  /** Answers GET/HEAD for a known file and returns true; false lets the caller answer. */
  return (req, res, pathname) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const file = files.get(pathname);
    if (!file) return false;
    res.writeHead(200, { "content-type": file.type, "content-length": file.body.length, "cache-control": "no-cache" });
    res.end(req.method === "HEAD" ? undefined : file.body);
    return true;
  };
}

// Names that come from jobs or pages become path parts only after this check, so nothing is ever
// written outside --out.
import path from "node:path";

const SAFE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$/;

export function assertSafeName(name: string, what: string): string {
  if (typeof name !== "string" || !SAFE.test(name) || name.includes("..")) {
    throw new Error(`${what} ${JSON.stringify(name)} is not a safe file name (letters, digits, _ . -; no '..', not starting with . or -)`);
  }
  return name;
}

/** Resolves `relative` under `root` and refuses anything that would land outside it. */
export function insideRoot(root: string, relative: string): string {
  const full = path.resolve(root, relative);
  const rel = path.relative(root, full);
  if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) throw new Error(`path ${JSON.stringify(relative)} escapes the dataset folder`);
  return full;
}

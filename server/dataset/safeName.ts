// Names that come from jobs or pages become path parts only after this check, so nothing is ever
// written outside --out.
import path from "node:path";
import { fileNameProblem } from "../../protocol/names.js";

/** Throws unless `name` passes the dataset's file-name rule (protocol/names.ts); returns it. */
export function assertSafeName(name: string, what: string): string {
  const problem = fileNameProblem(name);
  if (problem) throw new Error(`${what} ${JSON.stringify(name)} is not a safe file name: it ${problem}`);
  return name;
}

/** Resolves `relative` under `root` and refuses anything that would land outside it. */
export function insideRoot(root: string, relative: string): string {
  const full = path.resolve(root, relative);
  const rel = path.relative(root, full);
  if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) throw new Error(`path ${JSON.stringify(relative)} escapes the dataset folder`);
  return full;
}

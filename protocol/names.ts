// The one rule for names that become file or folder names in a dataset (job ids, layer names).
// Client and server share it: job loaders refuse a bad id at load (naming file, line and field),
// and the dataset writer checks again as a last guard before a name touches a path.
//
// The dataset must be copyable anywhere (Linux, macOS, Windows, zip files, object stores), so the
// rule is the intersection of what those accept, not what this machine's file system allows:
// - ASCII letters, digits and `_ . -` only: no separators (`/`, `\`), no `:` (Windows drive and
//   stream syntax), no spaces, no control characters, no Unicode (look-alikes such as `／` or `․`,
//   and names that normalise differently on macOS);
// - not starting with `.` (hidden files, `.`/`..`) or `-` (read as an option by shell tools);
// - no `..` anywhere and no trailing `.` (Windows drops trailing dots, so `a.` and `a` collide);
// - not a Windows device name (CON, PRN, AUX, NUL, COM0–9, LPT0–9), in any case, with or without
//   an extension (`nul.txt` is the device too);
// - at most MAX_NAME_LENGTH characters (a folder name, with room for the rest of a Windows path).

export const MAX_NAME_LENGTH = 200;

const ALLOWED_CHARS = /^[A-Za-z0-9_.-]*$/;
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)/i;

/** Why `name` cannot be a file name in a dataset, or undefined if it can. */
export function fileNameProblem(name: unknown): string | undefined {
  if (typeof name !== "string") return "must be a string";
  if (name.length === 0) return "must not be empty";
  if (name.length > MAX_NAME_LENGTH) return `must be at most ${MAX_NAME_LENGTH} characters (has ${name.length})`;
  if (!ALLOWED_CHARS.test(name)) {
    const bad = [...name].find((ch) => !ALLOWED_CHARS.test(ch)) ?? "";
    return `may hold only ASCII letters, digits and _ . - (found ${describeChar(bad)})`;
  }
  if (name.startsWith(".") || name.startsWith("-")) return "must not start with . or -";
  if (name.includes("..")) return 'must not contain ".."';
  if (name.endsWith(".")) return "must not end with . (Windows drops it)";
  if (WINDOWS_DEVICE.test(name)) return "must not be a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, with or without extension)";
  return undefined;
}

/**
 * Why `id` cannot be a job id, or undefined if it can. A job id is a folder name (the rule above),
 * and also not made of digits only: a queue backend on Redis (BullMQ) refuses integer-like custom
 * ids, which it keeps for its own counter, and `:` (its key separator) is already excluded above.
 * Ids that differ only by case are refused by the loaders (they would be one folder on macOS and
 * Windows); that needs the whole set of ids, so it is not part of this per-id rule.
 */
export function jobIdProblem(id: unknown): string | undefined {
  const problem = fileNameProblem(id);
  if (problem) return problem;
  if (/^[0-9]+$/.test(id as string)) return "must not be digits only (add a prefix, e.g. job-0001)";
  return undefined;
}

/** The key under which two ids collide on a case-insensitive file system. */
export function caseFoldedName(name: string): string {
  return name.toLowerCase();
}

function describeChar(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  return code < 0x20 || code === 0x7f || ch === " " ? hex : `${JSON.stringify(ch)} ${hex}`;
}

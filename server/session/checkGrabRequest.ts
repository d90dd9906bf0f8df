import { GrabRequestSchema } from "../../protocol/grab.js";
import { describeIssues } from "../../protocol/describeIssues.js";

export type ParsedGrabRequest = ReturnType<typeof GrabRequestSchema.parse>;

// Checks a grab request against the protocol's schema, remembering the answer for inputs seen before.
// A declarative job asks for the same grab every frame: the checked request is reused (read-only)
// instead of running the schema per frame. Only inputs of the known fields with primitive values are
// memoised, keyed by exactly those values; anything else is parsed as it comes.
const GRAB_FIELDS = ["key", "format", "quality", "downsample", "maxBytes", "depth", "encoding"] as const;
const GRAB_MEMO_MAX = 256;
const grabMemo = new Map<string, Readonly<ParsedGrabRequest>>();

function grabMemoKey(input: Record<string, unknown>): string | undefined {
  let known = 0;
  for (const field of GRAB_FIELDS) {
    const value = input[field];
    if (value === undefined) continue;
    // Finite numbers only: JSON would write NaN and ±Infinity as null, i.e. as "absent".
    if (typeof value === "number" ? !Number.isFinite(value) : typeof value !== "string" && typeof value !== "boolean") return undefined;
    known++;
  }
  let present = 0;
  for (const key in input) if (input[key] !== undefined) present++;
  if (present !== known) return undefined; // a field the schema does not know (or an inherited one)
  return JSON.stringify(GRAB_FIELDS.map((field) => input[field] ?? null));
}

export type CheckedGrab = { ok: true; request: Readonly<ParsedGrabRequest> } | { ok: false; error: string };

export function checkGrabRequest(input: Record<string, unknown>): CheckedGrab {
  const memoKey = grabMemoKey(input);
  const known = memoKey === undefined ? undefined : grabMemo.get(memoKey);
  if (known) return { ok: true, request: known };
  const parsed = GrabRequestSchema.safeParse(input);
  if (!parsed.success) return { ok: false, error: describeIssues(parsed.error) };
  if (memoKey !== undefined) {
    if (grabMemo.size >= GRAB_MEMO_MAX) grabMemo.clear();
    grabMemo.set(memoKey, parsed.data);
  }
  return { ok: true, request: parsed.data };
}

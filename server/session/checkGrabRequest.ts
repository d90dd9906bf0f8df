import { GrabRequestSchema } from "../../protocol/grab.js";
import { describeIssues } from "../../protocol/describeIssues.js";

export type ParsedGrabRequest = ReturnType<typeof GrabRequestSchema.parse>;

// Checks a grab request against the protocol's schema, remembering the answer for inputs seen before.
// A declarative job asks for the same grab every frame: the checked request is reused (read-only)
// instead of running the schema per frame. Only inputs of the known fields with primitive values are
// memoised, keyed by exactly those values; anything else is parsed as it comes. `layers`, a list, is
// memoised when it is a plain array of strings: the key holds the list as given (order and repeats
// included, so the schema's verdict on them is the remembered one), and the schema parses a copy of
// the values the key was made from.
const GRAB_FIELDS = ["key", "format", "quality", "downsample", "maxBytes", "layers", "depth", "encoding"] as const;
const MAX_MEMO_LAYERS = 16;
const GRAB_MEMO_MAX = 256;
const grabMemo = new Map<string, Readonly<ParsedGrabRequest>>();

/** `layers` as a fresh array of its string values, or undefined when it is anything else (not memoised). */
function memoLayers(value: unknown): string[] | undefined {
  if (!Array.isArray(value) || Object.getPrototypeOf(value) !== Array.prototype || value.length > MAX_MEMO_LAYERS) return undefined;
  const names: string[] = [];
  for (let i = 0; i < value.length; i++) {
    if (!Object.hasOwn(value, i)) return undefined;
    const name: unknown = value[i];
    if (typeof name !== "string") return undefined;
    names.push(name);
  }
  return names;
}

function grabMemoKey(input: Record<string, unknown>): string | undefined {
  let known = 0;
  for (const field of GRAB_FIELDS) {
    const value = input[field];
    if (value === undefined) continue;
    if (field === "layers") {
      if (memoLayers(value) === undefined) return undefined;
      known++;
      continue;
    }
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

export function checkGrabRequest(given: Record<string, unknown>): CheckedGrab {
  // The key and the parse read the same values: a copy of the list, not the caller's array again.
  const layers = memoLayers(given.layers);
  // (With the caller's prototype, so an inherited field still stops the memo, as before.)
  const input = layers === undefined ? given : Object.assign(Object.create(Object.getPrototypeOf(given)) as Record<string, unknown>, given, { layers });
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

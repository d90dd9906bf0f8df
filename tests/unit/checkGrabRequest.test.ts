// server/session/checkGrabRequest: a grab request checked once is reused for identical inputs; the
// reused answer must be exactly what a fresh check gives, and bad input never slips through it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkGrabRequest } from "../../server/session/checkGrabRequest.js";
import { GrabRequestSchema } from "../../protocol/grab.js";

const defaults = { maxBytes: 1_000_000, encoding: "browser" };
const check = (input: Record<string, unknown>) => checkGrabRequest({ ...defaults, ...input });

describe("checkGrabRequest", () => {
  it("identical inputs give the same checked request, equal to the schema's own parse", () => {
    for (const input of [
      { key: "cam", format: "png" },
      { key: "cam", format: "jpeg", quality: 0.5, depth: true },
      { key: "cam" },
      { key: "cam", format: "png", encoding: "raw" },
    ]) {
      const first = check(input);
      const second = check(input);
      assert.ok(first.ok && second.ok);
      assert.equal(second.request, first.request, "the second answer is the remembered one");
      assert.deepEqual(first.request, GrabRequestSchema.parse({ ...defaults, ...input }));
    }
  });

  it("bad input is refused every time, also after the same grab with good values was checked", () => {
    assert.ok(check({ key: "cam", format: "jpeg", quality: 0.5 }).ok);
    for (const quality of [NaN, Infinity, -1, 2, null]) {
      for (let i = 0; i < 2; i++) {
        const r = check({ key: "cam", format: "jpeg", quality });
        assert.equal(r.ok, false, `quality ${quality}`);
        assert.match((r as { error: string }).error, /quality/);
      }
    }
    assert.equal(check({ key: "", format: "png" }).ok, false);
    assert.equal(check({ key: "cam", format: "gif" }).ok, false);
    assert.equal(check({ key: "cam", downsample: 1.5 }).ok, false);
  });

  it("fields the schema does not know are dropped, as the schema does", () => {
    const r = check({ key: "cam", format: "png", extra: { nested: 1 } });
    assert.ok(r.ok);
    assert.deepEqual(r.request, { key: "cam", format: "png", ...defaults });
  });
});

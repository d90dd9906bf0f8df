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

  it("layers: the same list gives the remembered request; another order is its own entry; repeats and unknown names are refused every time", () => {
    const first = check({ key: "cam", layers: ["depth", "mask"] });
    const again = check({ key: "cam", layers: ["depth", "mask"] });
    assert.ok(first.ok && again.ok);
    assert.equal(again.request, first.request, "remembered");
    assert.deepEqual(first.request.layers, ["depth", "mask"]);
    const swapped = check({ key: "cam", layers: ["mask", "depth"] });
    assert.ok(swapped.ok);
    assert.deepEqual(swapped.request.layers, ["mask", "depth"], "not the other order's answer");
    const none = check({ key: "cam", layers: [] });
    assert.ok(none.ok);
    assert.deepEqual(none.request.layers, []);
    assert.equal(check({ key: "cam" }).ok && (check({ key: "cam" }) as { request: { layers?: unknown } }).request.layers, undefined, "no layers is not an empty list");
    for (let i = 0; i < 2; i++) {
      assert.match((check({ key: "cam", layers: ["depth", "depth"] }) as { error: string }).error, /names a layer twice/);
      assert.match((check({ key: "cam", layers: ["depth", "gloss"] }) as { error: string }).error, /layers/);
      assert.equal(check({ key: "cam", layers: "depth" }).ok, false);
      assert.equal(check({ key: "cam", layers: [["depth"]] }).ok, false);
      assert.equal(check({ key: "cam", layers: ["depth", null] }).ok, false);
      // eslint-disable-next-line no-sparse-arrays
      assert.equal(check({ key: "cam", layers: [, "depth"] }).ok, false, "a hole is not a name");
      assert.equal(check({ key: "cam", layers: { 0: "depth", length: 1 } }).ok, false);
    }
  });

  it("layers: the caller's array is read once; changing it afterwards changes nothing remembered", () => {
    const layers = ["normal"];
    const first = check({ key: "cam2", layers });
    layers[0] = "nonsense";
    assert.ok(first.ok);
    assert.deepEqual(first.request.layers, ["normal"]);
    assert.equal(check({ key: "cam2", layers }).ok, false, "the changed list is checked as what it now is");
    // An array whose element changes between reads: the key and the check see the same value.
    let reads = 0;
    const shifty: string[] = [];
    Object.defineProperty(shifty, 0, { get: () => (reads++ === 0 ? "depth" : "bogus"), enumerable: true });
    const r = check({ key: "cam3", layers: shifty });
    assert.ok(r.ok, "checked as first read");
    assert.deepEqual(r.request.layers, ["depth"]);
    assert.equal(reads, 1);
    // An inherited field is seen by the schema, and stops the memo, with a list as without one.
    const inherited = Object.assign(Object.create({ quality: 5 }), { ...defaults, key: "cam4", format: "jpeg", layers: ["depth"] });
    for (let i = 0; i < 2; i++) assert.match((checkGrabRequest(inherited) as { error: string }).error, /quality/);
  });
});

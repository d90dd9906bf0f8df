// Scene ops on the immutable element tree (protocol/applyOp.ts) and their wire schema
// (protocol/elements.ts). Pure functions: no browser, no files.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applyOp, EMPTY_SCENE, findNode, SceneOpError } from "../../protocol/applyOp.js";
import { describeIssues } from "../../protocol/describeIssues.js";
import {
  findTooDeep,
  MAX_SCENE_DEPTH,
  SceneElementSchema,
  SceneOpSchema,
  walkElements,
  type SceneElement,
  type SceneOp,
} from "../../protocol/elements.js";

const KNOWN = new Set(["Scene", "Group", "Box", "Sphere", "Light"]);
const isKnownTag = (tag: string) => KNOWN.has(tag);

/** A fresh, deep-frozen tree so any in-place mutation by applyOp throws (ESM modules are strict). */
function sample(): SceneElement {
  return deepFreeze({
    tag: "Scene",
    key: "root",
    children: [
      {
        tag: "Group",
        key: "g1",
        position: [0, 0, 0],
        children: [
          { tag: "Box", key: "box", color: "red", size: 1 },
          { tag: "Sphere", key: "ball", radius: 2 },
        ],
      },
      {
        tag: "Group",
        key: "g2",
        children: [{ tag: "Light", key: "sun", intensity: 3 }],
      },
    ],
  });
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const apply = (tree: SceneElement, op: SceneOp) => applyOp(tree, op, isKnownTag);
const keysOf = (tree: SceneElement) => [...walkElements(tree)].map((n) => n.key);

function throwsOp(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SceneOpError, `expected a SceneOpError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("EMPTY_SCENE and findNode", () => {
  it("EMPTY_SCENE is a Scene root with no children", () => {
    assert.deepEqual(EMPTY_SCENE, { tag: "Scene", key: "scene", children: [] });
  });

  it("findNode finds the root, deep nodes, and returns undefined for absent keys", () => {
    const tree = sample();
    assert.equal(findNode(tree, "root"), tree);
    assert.equal(findNode(tree, "sun"), tree.children![1]!.children![0]);
    assert.equal(findNode(tree, "ball")?.radius, 2);
    assert.equal(findNode(tree, "nope"), undefined);
  });
});

describe("set", () => {
  it("returns the new tree when every tag is known and keys are unique", () => {
    const scene = sample();
    const next = apply(EMPTY_SCENE, { op: "set", scene });
    assert.equal(next, scene);
    assert.deepEqual(keysOf(next), ["root", "g1", "box", "ball", "g2", "sun"]);
  });

  it("rejects an unknown tag, naming the tag and the key", () => {
    const scene: SceneElement = { tag: "Scene", key: "root", children: [{ tag: "Teapot", key: "pot" }] };
    throwsOp(() => apply(EMPTY_SCENE, { op: "set", scene }), /unknown tag 'Teapot'.*'pot'/);
  });

  it("rejects an unknown root tag", () => {
    throwsOp(() => apply(EMPTY_SCENE, { op: "set", scene: { tag: "World", key: "w" } }), /unknown tag 'World'/);
  });

  it("rejects a node with a missing or empty key", () => {
    const missing = { tag: "Scene", key: "root", children: [{ tag: "Box" } as unknown as SceneElement] };
    throwsOp(() => apply(EMPTY_SCENE, { op: "set", scene: missing }), /'Box' has no key/);
    const empty: SceneElement = { tag: "Scene", key: "root", children: [{ tag: "Box", key: "" }] };
    throwsOp(() => apply(EMPTY_SCENE, { op: "set", scene: empty }), /'Box' has no key/);
    throwsOp(() => apply(EMPTY_SCENE, { op: "set", scene: { tag: "Scene", key: "" } }), /no key/);
  });

  it("rejects duplicate keys anywhere in the tree", () => {
    const dupSiblings: SceneElement = {
      tag: "Scene",
      key: "root",
      children: [
        { tag: "Box", key: "a" },
        { tag: "Box", key: "a" },
      ],
    };
    throwsOp(() => apply(EMPTY_SCENE, { op: "set", scene: dupSiblings }), /duplicate key 'a'/);
    const dupNested: SceneElement = {
      tag: "Scene",
      key: "root",
      children: [{ tag: "Group", key: "g", children: [{ tag: "Box", key: "root" }] }],
    };
    throwsOp(() => apply(EMPTY_SCENE, { op: "set", scene: dupNested }), /duplicate key 'root'/);
  });

  it("does not touch the previous tree when it fails", () => {
    const tree = sample();
    const before = JSON.stringify(tree);
    assert.throws(() => apply(tree, { op: "set", scene: { tag: "Nope", key: "x" } }), SceneOpError);
    assert.equal(JSON.stringify(tree), before);
  });
});

describe("update", () => {
  it("assigns props by key and keeps the node's other props", () => {
    const tree = sample();
    const next = apply(tree, { op: "update", nodes: [{ key: "box", color: "blue", position: [1, 2, 3] }] });
    assert.deepEqual(findNode(next, "box"), { tag: "Box", key: "box", color: "blue", size: 1, position: [1, 2, 3] });
    // the old tree still has the old value
    assert.equal(findNode(tree, "box")?.color, "red");
    assert.equal(findNode(tree, "box")?.position, undefined);
  });

  it("accepts the node's own tag but refuses to change it", () => {
    const tree = sample();
    const same = apply(tree, { op: "update", nodes: [{ key: "box", tag: "Box", size: 5 }] });
    assert.equal(findNode(same, "box")?.size, 5);
    assert.equal(findNode(same, "box")?.tag, "Box");
    throwsOp(() => apply(tree, { op: "update", nodes: [{ key: "box", tag: "Sphere" }] }), /'box' is a Box, cannot become a Sphere/);
  });

  it("errors on an unknown key", () => {
    throwsOp(() => apply(sample(), { op: "update", nodes: [{ key: "ghost", x: 1 }] }), /update: no node with key 'ghost'/);
  });

  it("shares structure: untouched subtrees keep identity, the path is rebuilt, the input is not mutated", () => {
    const tree = sample(); // deep-frozen: any mutation would throw
    const snapshot = JSON.stringify(tree);
    const next = apply(tree, { op: "update", nodes: [{ key: "box", color: "green" }] });
    assert.notEqual(next, tree, "root is rebuilt");
    assert.notEqual(next.children![0], tree.children![0], "parent g1 is rebuilt");
    assert.notEqual(findNode(next, "box"), findNode(tree, "box"), "the node itself is new");
    assert.equal(findNode(next, "ball"), findNode(tree, "ball"), "sibling leaf keeps identity");
    assert.equal(next.children![1], tree.children![1], "sibling subtree g2 keeps identity");
    assert.equal(findNode(next, "sun"), findNode(tree, "sun"));
    assert.equal(JSON.stringify(tree), snapshot, "original tree unchanged");
  });

  it("applies several patches in one op, in order", () => {
    const next = apply(sample(), {
      op: "update",
      nodes: [
        { key: "box", color: "blue" },
        { key: "sun", intensity: 7 },
        { key: "box", color: "white" },
      ],
    });
    assert.equal(findNode(next, "box")?.color, "white");
    assert.equal(findNode(next, "sun")?.intensity, 7);
  });

  it("is all-or-nothing for the caller: a bad patch in the middle throws and leaves the input untouched", () => {
    const tree = sample();
    const snapshot = JSON.stringify(tree);
    throwsOp(
      () =>
        apply(tree, {
          op: "update",
          nodes: [
            { key: "box", color: "blue" },
            { key: "ghost", x: 1 },
          ],
        }),
      /ghost/,
    );
    assert.equal(JSON.stringify(tree), snapshot);
  });

  it("replaces children when the patch carries them", () => {
    const tree = sample();
    const next = apply(tree, {
      op: "update",
      nodes: [{ key: "g1", children: [{ tag: "Sphere", key: "s2", radius: 9 }] }],
    });
    assert.deepEqual(keysOf(next), ["root", "g1", "s2", "g2", "sun"]);
    assert.equal(findNode(next, "box"), undefined);
    assert.deepEqual(findNode(next, "g1")?.position, [0, 0, 0], "other props of the parent kept");
    // new children may reuse keys of the children they replace
    const reuse = apply(tree, { op: "update", nodes: [{ key: "g1", children: [{ tag: "Box", key: "box", size: 4 }] }] });
    assert.deepEqual(keysOf(reuse), ["root", "g1", "box", "g2", "sun"]);
    assert.equal(findNode(reuse, "box")?.size, 4);
    assert.equal(findNode(reuse, "box")?.color, undefined, "replaced, not merged");
  });

  it("validates replacement children: unknown tags, clashes with keys elsewhere, duplicates among themselves", () => {
    const tree = sample();
    throwsOp(() => apply(tree, { op: "update", nodes: [{ key: "g1", children: [{ tag: "Teapot", key: "t" }] }] }), /unknown tag 'Teapot'/);
    throwsOp(() => apply(tree, { op: "update", nodes: [{ key: "g1", children: [{ tag: "Box", key: "sun" }] }] }), /duplicate key 'sun'/);
    throwsOp(() => apply(tree, { op: "update", nodes: [{ key: "g1", children: [{ tag: "Box", key: "root" }] }] }), /duplicate key 'root'/);
    throwsOp(
      () =>
        apply(tree, {
          op: "update",
          nodes: [
            {
              key: "g1",
              children: [
                { tag: "Box", key: "x" },
                { tag: "Box", key: "x" },
              ],
            },
          ],
        }),
      /duplicate key 'x'/,
    );
  });

  // Regression test (fixed bug in applyOp.ts updateNode): the keys of the target's subtree are removed from the "taken" set,
  // including the target's own key, so a replacement child may reuse the key of the node being updated.
  it("refuses replacement children that reuse the updated node's own key", () => {
    const tree = sample();
    throwsOp(() => apply(tree, { op: "update", nodes: [{ key: "g1", children: [{ tag: "Box", key: "g1" }] }] }), /duplicate key 'g1'/);
  });
  // Regression test (fixed bug in applyOp.ts updateNode): children that are not an array are spread onto the node unchecked;
  // the tree is then corrupt and every later op (findNode) dies with a TypeError, not a SceneOpError.
  it("refuses non-array children in a patch instead of corrupting the tree", () => {
    const tree = sample();
    let next: SceneElement | undefined;
    try {
      next = apply(tree, { op: "update", nodes: [{ key: "g1", children: { a: 1 } as never }] });
    } catch (err) {
      assert.ok(err instanceof SceneOpError, `expected a SceneOpError, got ${String(err)}`);
      return;
    }
    // if it was accepted, the tree must still be usable
    assert.doesNotThrow(() => apply(next!, { op: "add", nodes: [{ tag: "Box", key: "later" }] }));
  });
});

describe("upsert", () => {
  it("updates an existing node in place (props merged, position in the tree unchanged)", () => {
    const tree = sample();
    const next = apply(tree, { op: "upsert", nodes: [{ tag: "Box", key: "box", color: "blue" }] });
    assert.deepEqual(findNode(next, "box"), { tag: "Box", key: "box", color: "blue", size: 1 });
    assert.deepEqual(keysOf(next), keysOf(tree));
    assert.equal(next.children![1], tree.children![1]);
  });

  it("refuses to change the tag of an existing node", () => {
    throwsOp(() => apply(sample(), { op: "upsert", nodes: [{ tag: "Sphere", key: "box" }] }), /cannot become a Sphere/);
  });

  it("inserts a new node under parentKey", () => {
    const tree = sample();
    const next = apply(tree, { op: "upsert", parentKey: "g2", nodes: [{ tag: "Box", key: "new", size: 2 }] });
    assert.deepEqual(
      findNode(next, "g2")?.children?.map((c) => c.key),
      ["sun", "new"],
    );
    assert.equal(next.children![0], tree.children![0], "g1 untouched");
    assert.equal(findNode(tree, "new"), undefined);
  });

  it("inserts under the root when parentKey is absent", () => {
    const next = apply(sample(), { op: "upsert", nodes: [{ tag: "Light", key: "lamp" }] });
    assert.deepEqual(
      next.children!.map((c) => c.key),
      ["g1", "g2", "lamp"],
    );
  });

  it("mixes updates and inserts in one op", () => {
    const next = apply(sample(), {
      op: "upsert",
      parentKey: "g1",
      nodes: [
        { tag: "Box", key: "box", color: "black" },
        { tag: "Sphere", key: "moon", radius: 0.5 },
        { tag: "Sphere", key: "moon", radius: 0.7 }, // second time it exists: update
      ],
    });
    assert.equal(findNode(next, "box")?.color, "black");
    assert.deepEqual(
      findNode(next, "g1")?.children?.map((c) => c.key),
      ["box", "ball", "moon"],
    );
    assert.equal(findNode(next, "moon")?.radius, 0.7);
  });

  it("errors when the parent of a new node is missing, or its tag is unknown", () => {
    throwsOp(() => apply(sample(), { op: "upsert", parentKey: "nope", nodes: [{ tag: "Box", key: "b2" }] }), /no parent node with key 'nope'/);
    throwsOp(() => apply(sample(), { op: "upsert", nodes: [{ tag: "Teapot", key: "t" }] }), /unknown tag 'Teapot'/);
  });

  it("errors when a new node's subtree reuses a key already in the tree", () => {
    throwsOp(
      () => apply(sample(), { op: "upsert", nodes: [{ tag: "Group", key: "g3", children: [{ tag: "Box", key: "box" }] }] }),
      /duplicate key 'box'/,
    );
  });
});

describe("add", () => {
  it("appends nodes under parentKey, keeping sibling subtrees", () => {
    const tree = sample();
    const next = apply(tree, {
      op: "add",
      parentKey: "g1",
      nodes: [
        { tag: "Box", key: "b2" },
        { tag: "Group", key: "g3", children: [{ tag: "Box", key: "b3" }] },
      ],
    });
    assert.deepEqual(keysOf(next), ["root", "g1", "box", "ball", "b2", "g3", "b3", "g2", "sun"]);
    assert.equal(next.children![1], tree.children![1]);
    assert.equal(findNode(next, "box"), findNode(tree, "box"));
    assert.equal(tree.children![0]!.children!.length, 2, "input not mutated");
  });

  it("appends under the root without parentKey, and to a leaf that had no children", () => {
    const atRoot = apply(sample(), { op: "add", nodes: [{ tag: "Box", key: "b2" }] });
    assert.equal(atRoot.children!.at(-1)?.key, "b2");
    const underLeaf = apply(sample(), { op: "add", parentKey: "box", nodes: [{ tag: "Sphere", key: "dot" }] });
    assert.deepEqual(
      findNode(underLeaf, "box")?.children?.map((c) => c.key),
      ["dot"],
    );
  });

  it("errors on a duplicate key (existing, or twice in the same op)", () => {
    throwsOp(() => apply(sample(), { op: "add", nodes: [{ tag: "Box", key: "ball" }] }), /duplicate key 'ball'/);
    throwsOp(
      () =>
        apply(sample(), {
          op: "add",
          nodes: [
            { tag: "Box", key: "twin" },
            { tag: "Box", key: "twin" },
          ],
        }),
      /duplicate key 'twin'/,
    );
  });

  it("errors on a missing parent", () => {
    throwsOp(() => apply(sample(), { op: "add", parentKey: "ghost", nodes: [{ tag: "Box", key: "b2" }] }), /no parent node with key 'ghost'/);
  });

  it("works on EMPTY_SCENE without mutating it", () => {
    const next = apply(EMPTY_SCENE, { op: "add", nodes: [{ tag: "Box", key: "b" }] });
    assert.deepEqual(keysOf(next), ["scene", "b"]);
    assert.deepEqual(EMPTY_SCENE.children, []);
  });
});

describe("remove", () => {
  it("removes nodes (with their subtrees) by key, sharing untouched subtrees", () => {
    const tree = sample();
    const next = apply(tree, { op: "remove", keys: ["ball", "g2"] });
    assert.deepEqual(keysOf(next), ["root", "g1", "box"]);
    assert.equal(findNode(next, "box"), findNode(tree, "box"));
    assert.deepEqual(keysOf(tree), ["root", "g1", "box", "ball", "g2", "sun"], "input not mutated");
  });

  it("errors on a missing key", () => {
    throwsOp(() => apply(sample(), { op: "remove", keys: ["ghost"] }), /remove: no node with key 'ghost'/);
    // removing a subtree then a node inside it: the second key is gone
    throwsOp(() => apply(sample(), { op: "remove", keys: ["g2", "sun"] }), /no node with key 'sun'/);
  });

  it("cannot remove the root", () => {
    throwsOp(() => apply(sample(), { op: "remove", keys: ["root"] }), /cannot remove the root 'root'/);
  });

  it("a removed key can be added again", () => {
    const removed = apply(sample(), { op: "remove", keys: ["box"] });
    const readded = apply(removed, { op: "add", parentKey: "g2", nodes: [{ tag: "Box", key: "box" }] });
    assert.deepEqual(keysOf(readded), ["root", "g1", "ball", "g2", "sun", "box"]);
  });
});

describe("SceneOpSchema / SceneElementSchema", () => {
  it("accepts each op shape and keeps extra props of elements", () => {
    const ops: unknown[] = [
      { op: "set", scene: { tag: "Scene", key: "root", children: [{ tag: "Box", key: "b.1:x-y_z", color: "red" }] } },
      { op: "update", nodes: [{ key: "b", color: "red", position: [1, 2, 3] }] },
      { op: "upsert", parentKey: "root", nodes: [{ tag: "Box", key: "b" }] },
      { op: "add", nodes: [{ tag: "Box", key: "b" }] },
      { op: "remove", keys: ["a", "b"] },
    ];
    for (const op of ops) {
      const r = SceneOpSchema.safeParse(op);
      assert.ok(r.success, `${JSON.stringify(op)}: ${r.error?.message}`);
    }
    const el = SceneElementSchema.parse({ tag: "Box", key: "b", color: "red" });
    assert.equal(el.color, "red");
  });

  it("rejects bad keys everywhere a key appears", () => {
    const bad: unknown[] = [
      { op: "remove", keys: ["a/b"] },
      { op: "remove", keys: [""] },
      { op: "remove", keys: ["../x"] },
      { op: "remove", keys: ["x".repeat(129)] },
      { op: "update", nodes: [{ key: "a/b", color: "red" }] },
      { op: "update", nodes: [{ key: "" }] },
      { op: "add", nodes: [{ tag: "Box", key: "a b" }] },
      { op: "add", parentKey: "a/b", nodes: [{ tag: "Box", key: "ok" }] },
      { op: "upsert", nodes: [{ tag: "Box", key: "ok", children: [{ tag: "Box", key: "bad/child" }] }] },
      { op: "set", scene: { tag: "Scene", key: "root", children: [{ tag: "Box", key: "" }] } },
      { op: "set", scene: { tag: "Scene" } },
    ];
    for (const op of bad) assert.equal(SceneOpSchema.safeParse(op).success, false, JSON.stringify(op));
  });

  // Regression test (fixed bug in elements.ts NodePatchSchema): a patch's `children` are not validated, so an update can bring in
  // keys the schema rejects everywhere else (e.g. "../x"; keys end up in file names) or non-array children.
  it("validates the children carried by an update patch", () => {
    const badKey = { op: "update", nodes: [{ key: "g", children: [{ tag: "Box", key: "../x" }] }] };
    assert.equal(SceneOpSchema.safeParse(badKey).success, false, "child key '../x' accepted in an update");
    const notArray = { op: "update", nodes: [{ key: "g", children: { a: 1 } }] };
    assert.equal(SceneOpSchema.safeParse(notArray).success, false, "non-array children accepted in an update");
  });

  it("names the key problem in the error", () => {
    const r = SceneOpSchema.safeParse({ op: "remove", keys: ["a/b"] });
    assert.equal(r.success, false);
    assert.match(r.error!.message, /key may hold only letters, digits/);
    const e = SceneOpSchema.safeParse({ op: "remove", keys: [""] });
    assert.match(e.error!.message, /key must not be empty/);
  });

  it("rejects unknown op names and missing fields", () => {
    for (const op of [{ op: "delete", keys: ["a"] }, { op: "SET", scene: { tag: "Scene", key: "r" } }, { keys: ["a"] }, { op: "add" }, { op: "update", nodes: "a" }]) {
      assert.equal(SceneOpSchema.safeParse(op).success, false, JSON.stringify(op));
    }
  });

  it("rejects elements with an empty tag or non-array children", () => {
    assert.equal(SceneElementSchema.safeParse({ tag: "", key: "a" }).success, false);
    assert.equal(SceneElementSchema.safeParse({ tag: "Box", key: "a", children: {} }).success, false);
    assert.equal(SceneElementSchema.safeParse({ tag: "Box", key: "a", children: [{ tag: "Box" }] }).success, false);
  });
});

describe("scene depth: one limit for every op, checked without recursion", () => {
  /** `levels` elements, each the only child of the one above, built as JSON text (no recursion). */
  function chain(levels: number): SceneElement {
    let open = "";
    for (let i = 1; i < levels; i++) open += `{"tag":"Group","key":"g${i}","children":[`;
    return JSON.parse(`${open}{"tag":"Box","key":"leaf"}${"]}".repeat(levels - 1)}`) as SceneElement;
  }

  it(`a set, add or upsert of a tree nested 10,000 deep is refused with the limit (${MAX_SCENE_DEPTH}), not a stack overflow`, () => {
    const deep = chain(10_000);
    const ops: unknown[] = [
      { op: "set", scene: deep },
      { op: "add", nodes: [deep] },
      { op: "upsert", parentKey: "root", nodes: [{ tag: "Box", key: "ok" }, deep] },
      { op: "update", nodes: [{ key: "g", children: [deep] }] },
    ];
    for (const op of ops) {
      const r = SceneOpSchema.safeParse(op);
      assert.equal(r.success, false);
      // The words a --handler author sees (Session.send) and the page reports (sceneError).
      assert.match(describeIssues(r.error!), new RegExp(`elements nest deeper than the limit of ${MAX_SCENE_DEPTH} levels \\(element "g${MAX_SCENE_DEPTH + 1}" is level ${MAX_SCENE_DEPTH + 1}\\)`));
    }
  });

  it(`exactly ${MAX_SCENE_DEPTH} levels pass; one more does not, at any position in the tree`, () => {
    assert.ok(SceneOpSchema.safeParse({ op: "set", scene: chain(MAX_SCENE_DEPTH) }).success);
    assert.equal(SceneOpSchema.safeParse({ op: "set", scene: chain(MAX_SCENE_DEPTH + 1) }).success, false);
    const wide = { tag: "Scene", key: "root", children: [{ tag: "Box", key: "a" }, { tag: "Group", key: "b", children: [chain(MAX_SCENE_DEPTH - 1)] }] };
    assert.equal(SceneElementSchema.safeParse(wide).success, false);
    assert.deepEqual(findTooDeep(wide, MAX_SCENE_DEPTH + 1), undefined);
  });

  it("findTooDeep ignores what is not a tree and handles any input", () => {
    for (const v of [null, 1, "x", [], { children: "no" }, { children: [1, null, "a"] }]) assert.equal(findTooDeep(v, 1), undefined);
  });
});

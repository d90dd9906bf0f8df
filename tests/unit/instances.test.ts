// protocol/instances: the instance ids of the mask layer, computed alike by the page (sceneStore) and
// the server (SentScene) from the same ops. Each rule of README "Layers" is one case here.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InstanceTable, MAX_LABEL_CHARS, type InstanceResolution } from "../../protocol/instances.js";
import { applyOp, EMPTY_SCENE } from "../../protocol/applyOp.js";
import type { SceneElement, SceneOp } from "../../protocol/elements.js";
import { MAX_ID } from "../../protocol/layers.js";

/** A scene driven by ops, with its InstanceTable observing each one that applies (as both sides do). */
function scene() {
  const table = new InstanceTable();
  let tree: SceneElement = EMPTY_SCENE;
  const apply = (op: SceneOp): InstanceResolution => {
    tree = applyOp(tree, JSON.parse(JSON.stringify(op)), () => true);
    table.observe(op, tree);
    return table.resolve(tree);
  };
  return { apply, resolve: () => table.resolve(tree) };
}
const idsOf = (r: InstanceResolution) => Object.fromEntries([...r.elements].map(([key, e]) => [key, e.id]));
const box = (key: string, props: Record<string, unknown> = {}, children?: SceneElement[]): SceneElement => ({ tag: "Box", key, ...props, ...(children ? { children } : {}) });
const root = (...children: SceneElement[]): SceneElement => ({ tag: "Scene", key: "root", children });

describe("InstanceTable", () => {
  it("automatic ids on set: pre-order from 1; the root and CameraViews get none", () => {
    const s = scene();
    const r = s.apply({ op: "set", scene: root(box("a", {}, [box("a1"), box("a2")]), { tag: "CameraView", key: "cam" }, box("b")) });
    assert.deepEqual(idsOf(r), { a: 1, a1: 2, a2: 3, b: 4 });
    assert.ok(!r.elements.has("root") && !r.elements.has("cam"), "root and CameraView have no id");
    assert.deepEqual([...r.ids.keys()], [1, 2, 3, 4]);
    assert.deepEqual(r.ids.get(2), { id: 2, key: "a1" });
    assert.deepEqual(r.errors, []);
  });

  it("built-ins that draw no mesh (a nested scene root, groups, lights) take no automatic id: the first box is 1; a group's explicit id still passes down", () => {
    const s = scene();
    const light = (tag: string, key: string): SceneElement => ({ tag, key });
    const r = s.apply({ op: "set", scene: root({ tag: "DefaultScene", key: "ds", children: [
      light("AmbientLight", "amb"), light("DirectionalLight", "sun"), light("HemisphereLight", "sky"),
      { tag: "Group", key: "g", children: [box("a")] }, { tag: "Group", key: "robot", instance: 9, children: [box("arm")] },
    ] }) });
    assert.deepEqual(idsOf(r), { robot: 9, a: 1, arm: 9 });
    assert.deepEqual(r.errors, []);
  });

  it("an explicit id is the element's and its descendants'; they take no automatic id, and automatic ids skip explicit ones", () => {
    const s = scene();
    const r = s.apply({ op: "set", scene: root(box("a"), box("g", { instance: 2, label: "crate" }, [box("c")]), box("d"), box("e")) });
    assert.deepEqual(idsOf(r), { a: 1, g: 2, c: 2, d: 3, e: 4 });
    assert.deepEqual(r.elements.get("c"), { id: 2, owner: "g", label: "crate" }, "the child shares the owner's id and label");
    assert.deepEqual(r.ids.get(2), { id: 2, key: "g", label: "crate" });
    assert.deepEqual(r.errors, []);
  });

  it("instance 0 hides an element and its descendants from the mask", () => {
    const r = scene().apply({ op: "set", scene: root(box("h", { instance: 0 }, [box("h1")]), box("v")) });
    assert.deepEqual(idsOf(r), { h: 0, h1: 0, v: 1 });
    assert.deepEqual([...r.ids.keys()], [1]);
  });

  it("labels are inherited; an automatic instance takes its own element's label", () => {
    const r = scene().apply({ op: "set", scene: root(box("p", { label: "table" }, [box("leg"), box("cup", { label: "cup" })]), box("free")) });
    assert.equal(r.elements.get("leg")!.label, "table");
    assert.equal(r.elements.get("cup")!.label, "cup");
    assert.equal(r.elements.get("free")!.label, undefined);
    assert.deepEqual(r.ids.get(r.elements.get("leg")!.id), { id: 2, key: "leg", label: "table" });
  });

  it("add after set gets the next unused id; remove and add again keeps the id; set starts again from 1", () => {
    const s = scene();
    s.apply({ op: "set", scene: root(box("a"), box("b")) });
    let r = s.apply({ op: "add", nodes: [box("c")], parentKey: "root" });
    assert.deepEqual(idsOf(r), { a: 1, b: 2, c: 3 });
    s.apply({ op: "remove", keys: ["a"] });
    r = s.apply({ op: "add", nodes: [box("d"), box("a")], parentKey: "root" });
    assert.deepEqual(idsOf(r), { b: 2, c: 3, d: 4, a: 1 }, "a keeps 1 until the next set");
    r = s.apply({ op: "set", scene: root(box("d"), box("a")) });
    assert.deepEqual(idsOf(r), { d: 1, a: 2 }, "set resets");
  });

  it("ops that fail are not observed (the page refuses them too): ids do not move", () => {
    const s = scene();
    s.apply({ op: "set", scene: root(box("a")) });
    assert.throws(() => s.apply({ op: "add", nodes: [box("a")], parentKey: "root" }));
    const r = s.apply({ op: "add", nodes: [box("b")], parentKey: "root" });
    assert.deepEqual(idsOf(r), { a: 1, b: 2 });
  });

  it("an explicit id that is another element's automatic id is an error naming both", () => {
    const s = scene();
    s.apply({ op: "set", scene: root(box("a"), box("b")) });
    const r = s.apply({ op: "add", nodes: [box("x", { instance: 2 })], parentKey: "root" });
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]!, /element 'x': instance 2 is already the automatic id of 'b'/);
  });

  it("a bad instance value is an error naming the element; null unsets it (the element then gets an automatic id)", () => {
    for (const bad of [1.5, -1, MAX_ID + 1, "3", true, [1]]) {
      const r = scene().apply({ op: "set", scene: root(box("a", { instance: bad })) });
      assert.match(r.errors.join("\n"), /element 'a': instance must be a whole number from 0 to 65535/, JSON.stringify(bad));
    }
    const s = scene();
    s.apply({ op: "set", scene: root(box("g", { instance: 7 }, [box("c")]), box("d")) });
    const r = s.apply({ op: "update", nodes: [{ key: "g", instance: null }] });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(idsOf(r), { g: 2, c: 3, d: 1 }, "g and c get the next unused ids");
  });

  it("updates that bring new elements (children) give them ids; updates of other props and removes leave every id as it was", () => {
    const s = scene();
    s.apply({ op: "set", scene: root(box("a"), box("b", { instance: 5 }), box("c")) });
    assert.deepEqual(idsOf(s.apply({ op: "update", nodes: [{ key: "a", position: [1, 2, 3] }, { key: "c", color: "#fff" }] })), { a: 1, b: 5, c: 2 });
    assert.deepEqual(idsOf(s.apply({ op: "update", nodes: [{ key: "a", children: [box("a1"), box("a2")] }] })), { a: 1, a1: 3, a2: 4, b: 5, c: 2 });
    assert.deepEqual(idsOf(s.apply({ op: "remove", keys: ["a1"] })), { a: 1, a2: 4, b: 5, c: 2 });
    assert.deepEqual(idsOf(s.apply({ op: "upsert", nodes: [box("d")], parentKey: "root" })), { a: 1, a2: 4, b: 5, c: 2, d: 6 }, "5 is explicit: skipped");
    assert.deepEqual(idsOf(s.apply({ op: "update", nodes: [{ key: "b", instance: null }] })), { a: 1, a2: 4, b: 7, c: 2, d: 6 });
  });

  it("elements may share an explicit id with one label; different labels are an error", () => {
    let r = scene().apply({ op: "set", scene: root(box("p1", { instance: 5, label: "car" }), box("p2", { instance: 5, label: "car" })) });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.ids.get(5), { id: 5, key: "p1", label: "car" });
    assert.equal(r.elements.get("p2")!.owner, "p1");
    r = scene().apply({ op: "set", scene: root(box("p1", { instance: 5, label: "car" }), box("p2", { instance: 5, label: "bus" })) });
    assert.match(r.errors.join("\n"), /element 'p2': instance 5 is also 'p1', with label 'car', but this one has label 'bus'/);
  });

  it(`past ${MAX_ID} automatic ids since the last set, an element gets none and resolve says so`, () => {
    const s = scene();
    const many = Array.from({ length: MAX_ID + 1 }, (_, i) => box(`b${i}`));
    const r = s.apply({ op: "set", scene: root(...many) });
    assert.equal(r.elements.get(`b${MAX_ID - 1}`)!.id, MAX_ID);
    assert.equal(r.elements.get(`b${MAX_ID}`)!.id, 0);
    assert.deepEqual(r.errors, [`element 'b${MAX_ID}': more than ${MAX_ID} instances since the last set`]);
  });

  it(`a session that adds and removes new keys for ever keeps at most ${MAX_ID} automatic ids, not one per key ever added`, () => {
    const table = new InstanceTable();
    const first: SceneOp = { op: "set", scene: root(box("floor")) };
    let tree = applyOp(EMPTY_SCENE, first, () => true);
    table.observe(first, tree);
    for (let i = 0; i < MAX_ID + 5000; i++) {
      for (const op of [{ op: "add", nodes: [box(`shot${i}`)] }, { op: "remove", keys: [`shot${i}`] }] as SceneOp[]) {
        tree = applyOp(tree, op, () => true);
        table.observe(op, tree);
      }
    }
    const kept = (table as unknown as { auto: Map<string, number> }).auto.size;
    assert.ok(kept <= MAX_ID, `${kept} automatic ids kept`);
    // What the ids are is unchanged: the floor keeps 1, and an element added now gets none and is reported.
    const late: SceneOp = { op: "add", nodes: [box("late")] };
    tree = applyOp(tree, late, () => true);
    table.observe(late, tree);
    const r = table.resolve(tree);
    assert.equal(r.elements.get("floor")!.id, 1);
    assert.equal(r.elements.get("late")!.id, 0);
    assert.deepEqual(r.errors, [`element 'late': more than ${MAX_ID} instances since the last set`]);
    const reset: SceneOp = { op: "set", scene: root(box("late")) };
    table.observe(reset, (tree = applyOp(tree, reset, () => true)));
    assert.deepEqual(table.resolve(tree).errors, [], "a set gives every id back");
    assert.equal(table.resolve(tree).elements.get("late")!.id, 1);
  });

  it(`a label that cannot name a class (not a string, blank, over ${MAX_LABEL_CHARS} characters) is an error naming the element; null inherits`, () => {
    const bad: unknown[] = ["", "   ", 7, -1, 1.5, true, ["crate"], { name: "crate" }, "x".repeat(MAX_LABEL_CHARS + 1)];
    for (const label of bad) {
      const r = scene().apply({ op: "set", scene: root(box("g", { label: "ok" }, [box("a", { label })])) });
      assert.equal(r.errors.length, 1, JSON.stringify(label));
      assert.match(r.errors[0]!, /^element 'a': label must be (a non-empty string|at most 256 characters \(it has 257\)), got /);
      assert.equal(r.elements.get("a")!.label, "ok", "the element keeps the inherited label (the error fails any grab that needs ids)");
    }
    const r = scene().apply({ op: "set", scene: root(box("g", { label: "ok" }, [box("a", { label: null }), box("b", { label: "x".repeat(MAX_LABEL_CHARS) })])) });
    assert.deepEqual(r.errors, []);
    assert.equal(r.elements.get("a")!.label, "ok");
  });

  it("resolve is cached per tree; a later op gives a new resolution and leaves the old one as it was", () => {
    const s = scene();
    const first = s.apply({ op: "set", scene: root(box("a")) });
    assert.equal(s.resolve(), first);
    const second = s.apply({ op: "add", nodes: [box("b")], parentKey: "root" });
    assert.notEqual(second, first);
    assert.deepEqual([...first.ids.keys()], [1]);
    assert.deepEqual([...second.ids.keys()], [1, 2]);
  });
});

// server/session/SentScene: the server's copy of the scene it sent to a page, from which it knows the
// exact size of every grab (protocol/grab.ts: cameraViewSize, grabImageSize), through every op.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SentScene } from "../../server/session/SentScene.js";
import { cameraViewSize, grabImageSize } from "../../protocol/grab.js";
import type { SceneElement } from "../../protocol/elements.js";

const camera = (key: string, props: Record<string, unknown> = {}): SceneElement => ({ tag: "CameraView", key, ...props });
const root = (...children: SceneElement[]): SceneElement => ({ tag: "Scene", key: "root", children });

function sent(scene: SceneElement): SentScene {
  const s = new SentScene();
  s.apply({ op: "set", scene });
  return s;
}

describe("the size rule (page and server)", () => {
  it("defaults to 640×480, rounds to whole pixels, downsample is a whole number ≥ 1", () => {
    assert.deepEqual(cameraViewSize({}), { width: 640, height: 480, downsample: 1 });
    assert.deepEqual(cameraViewSize({ width: 320.4, height: 240.5, downsample: 2.6 }), { width: 320, height: 241, downsample: 3 });
    for (const junk of [null, "320", NaN, Infinity, -Infinity, [320], { toString: () => "320" }, true]) {
      assert.deepEqual(cameraViewSize({ width: junk, height: junk, downsample: junk }), { width: 640, height: 480, downsample: 1 }, String(junk));
    }
    assert.equal(cameraViewSize({ downsample: 0 }).downsample, 1);
    assert.equal(cameraViewSize({ downsample: -3 }).downsample, 1);
  });

  it("a grab is width/downsample × height/downsample rounded down, at least 1×1; the grab's downsample wins", () => {
    const view = cameraViewSize({ width: 321, height: 241, downsample: 2 });
    assert.deepEqual(grabImageSize(view), { width: 160, height: 120 });
    assert.deepEqual(grabImageSize(view, 1), { width: 321, height: 241 });
    assert.deepEqual(grabImageSize(view, 16), { width: 20, height: 15 });
    assert.deepEqual(grabImageSize(cameraViewSize({ width: 3, height: 2 }), 4), { width: 1, height: 1 });
    assert.deepEqual(grabImageSize(cameraViewSize({ width: 0, height: -5 })), { width: 1, height: 1 });
  });
});

describe("SentScene", () => {
  it("knows nothing before a set, and only CameraViews afterwards", () => {
    assert.equal(new SentScene().grabSize("cam"), undefined);
    const s = sent(root(camera("cam", { width: 160, height: 120 }), { tag: "Box", key: "box" }));
    assert.deepEqual(s.grabSize("cam"), { width: 160, height: 120 });
    assert.deepEqual(s.grabSize("cam", 4), { width: 40, height: 30 });
    assert.equal(s.grabSize("box"), undefined, "a Box is not a camera");
    assert.equal(s.grabSize("nope"), undefined);
    assert.deepEqual(sent(camera("solo")).grabSize("solo"), { width: 640, height: 480 }, "the root itself may be the camera; defaults apply");
  });

  it("follows update: new props, props set to null fall back to the default, undefined props are left as they were", () => {
    const s = sent(root(camera("cam", { width: 160, height: 120, downsample: 2 })));
    s.apply({ op: "update", nodes: [{ key: "cam", width: 200 }] });
    assert.deepEqual(s.grabSize("cam"), { width: 100, height: 60 });
    s.apply({ op: "update", nodes: [{ key: "cam", height: null, downsample: null }] });
    assert.deepEqual(s.grabSize("cam"), { width: 200, height: 480 });
    // JSON (the wire) drops undefined: the page keeps the old width, and so does the server.
    s.apply({ op: "update", nodes: [{ key: "cam", width: undefined, height: 100 }] });
    assert.deepEqual(s.grabSize("cam"), { width: 200, height: 100 });
    // NaN travels as null: the default.
    s.apply({ op: "update", nodes: [{ key: "cam", width: NaN }] });
    assert.deepEqual(s.grabSize("cam"), { width: 640, height: 100 });
  });

  it("follows update of an ancestor's children, add, upsert and remove (also of an ancestor)", () => {
    const s = sent(root({ tag: "Group", key: "rig", children: [camera("a", { width: 10, height: 10 })] }));
    s.apply({ op: "add", nodes: [camera("b", { width: 20, height: 20 })], parentKey: "rig" });
    assert.deepEqual(s.grabSize("b"), { width: 20, height: 20 });
    s.apply({ op: "upsert", nodes: [camera("b", { width: 30 })] });
    assert.deepEqual(s.grabSize("b"), { width: 30, height: 20 }, "upsert of an existing node updates it");
    s.apply({ op: "upsert", nodes: [camera("c", { width: 40, height: 40 })], parentKey: "root" });
    assert.deepEqual(s.grabSize("c"), { width: 40, height: 40 }, "upsert of a new node inserts it");
    s.apply({ op: "update", nodes: [{ key: "rig", children: [camera("d", { width: 50, height: 50 })] }] });
    assert.equal(s.grabSize("a"), undefined, "replaced children are gone");
    assert.equal(s.grabSize("b"), undefined);
    assert.deepEqual(s.grabSize("d"), { width: 50, height: 50 });
    s.apply({ op: "remove", keys: ["rig"] });
    assert.equal(s.grabSize("d"), undefined, "removing an ancestor removes its cameras");
    assert.deepEqual(s.grabSize("c"), { width: 40, height: 40 });
    s.apply({ op: "set", scene: root() });
    assert.equal(s.grabSize("c"), undefined, "set replaces everything");
  });

  it("an op the page refuses (missing key, duplicate key, tag change, removing the root) changes nothing, like on the page", () => {
    const s = sent(root(camera("cam", { width: 160, height: 120 })));
    s.apply({ op: "update", nodes: [{ key: "cam", width: 10 }, { key: "ghost", width: 1 }] });
    assert.deepEqual(s.grabSize("cam"), { width: 160, height: 120 }, "the whole op is refused, not its first half");
    s.apply({ op: "add", nodes: [camera("cam", { width: 1, height: 1 })] });
    assert.deepEqual(s.grabSize("cam"), { width: 160, height: 120 });
    s.apply({ op: "update", nodes: [{ key: "cam", tag: "Box", width: 1 }] });
    assert.deepEqual(s.grabSize("cam"), { width: 160, height: 120 });
    s.apply({ op: "remove", keys: ["root"] });
    assert.deepEqual(s.grabSize("cam"), { width: 160, height: 120 });
  });

  it("keeps what was sent, not the caller's objects changed afterwards", () => {
    const cam = camera("cam", { width: 160, height: 120 });
    const s = sent(root(cam));
    cam.width = 1;
    const patch = { key: "cam", height: 60 };
    s.apply({ op: "update", nodes: [patch] });
    patch.height = 2;
    assert.deepEqual(s.grabSize("cam"), { width: 160, height: 60 });
  });

  it("keeps the instance ids the page draws: the same InstanceTable over the ops that applied, the refused ones left out", () => {
    const s = sent(root(camera("cam"), { tag: "Box", key: "a", label: "crate" }, { tag: "Box", key: "b" }));
    const before = s.instances();
    assert.deepEqual([...before.ids.values()], [{ id: 1, key: "a", label: "crate" }, { id: 2, key: "b" }]);
    s.apply({ op: "add", nodes: [{ tag: "Box", key: "a" }] }); // refused: duplicate key, so not observed
    s.apply({ op: "add", nodes: [{ tag: "Box", key: "c" }], parentKey: "root" });
    const after = s.instances();
    assert.deepEqual([...after.ids.keys()], [1, 2, 3], "c gets the next id, the refused op took none");
    assert.deepEqual([...before.ids.keys()], [1, 2], "an earlier resolution (a grab's snapshot) is not changed by later ops");
    assert.equal(s.instances(), after, "the same scene state gives the same resolution");
    s.apply({ op: "set", scene: root({ tag: "Box", key: "c" }) });
    assert.deepEqual([...s.instances().ids.values()], [{ id: 1, key: "c" }], "set starts again from 1");
  });
});

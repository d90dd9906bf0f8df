// server/capture/ClassTable: the run's label → class id table (class layer, frames' instances).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClassTable } from "../../server/capture/ClassTable.js";

describe("ClassTable", () => {
  it("assigns 1, 2, … in order of first sight, the same id every time after, and reports each new entry once", () => {
    const table = new ClassTable();
    const added: unknown[] = [];
    table.onAdd = (entry) => added.push(entry);
    assert.equal(table.classOf("crate"), 1);
    assert.equal(table.classOf("chair"), 2);
    assert.equal(table.classOf("crate"), 1);
    assert.deepEqual(added, [{ id: 1, label: "crate" }, { id: 2, label: "chair" }]);
    assert.deepEqual(table.entries(), [{ id: 1, label: "crate" }, { id: 2, label: "chair" }]);
  });

  it("keeps a given table, and new labels take the lowest free ids around it", () => {
    const table = new ClassTable([["car", 2], ["bus", 5]]);
    assert.equal(table.classOf("bus"), 5);
    assert.equal(table.classOf("bike"), 1);
    assert.equal(table.classOf("tram"), 3);
    assert.equal(table.classOf("van"), 4);
    assert.equal(table.classOf("truck"), 6);
    assert.deepEqual(table.entries().map((e) => e.id), [1, 2, 3, 4, 5, 6]);
  });

  it("refuses a bad given table, naming the label or id", () => {
    assert.throws(() => new ClassTable([["a", 1], ["a", 2]]), /label 'a' is given twice/);
    assert.throws(() => new ClassTable([["a", 1], ["b", 1]]), /id 1 is given to both 'a' and 'b'/);
    for (const id of [0, -1, 1.5, 65536, NaN]) assert.throws(() => new ClassTable([["a", id]]), /'a' has id .*whole numbers from 1 to 65535/, String(id));
    assert.throws(() => new ClassTable([[7 as unknown as string, 1]]), /label 7 is not a string/);
  });

  it("throws, naming the label, when all 65535 ids are taken", () => {
    const table = new ClassTable(Array.from({ length: 65535 }, (_, i): [string, number] => [`c${i}`, i + 1]));
    assert.equal(table.classOf("c65534"), 65535);
    assert.throws(() => table.classOf("one more"), /no class id left for label 'one more'/);
  });
});

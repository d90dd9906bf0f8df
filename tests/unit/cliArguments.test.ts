import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidArgumentError } from "commander";
import { argument, int } from "../../harness/cliArguments.js";

test("int: whole numbers in digits within the bounds; anything Number() would stretch to one is refused, naming the option", () => {
  const wait = int("--wait", 0, 604_800);
  assert.equal(wait("0"), 0);
  assert.equal(wait("604800"), 604_800);
  assert.equal(wait("0120"), 120);
  for (const bad of ["", " ", "\t", "1e3", "0x10", "+5", "-1", "2.0", "2.5", "Infinity", "NaN", "1_000", "12 ", " 12", "604801", "9".repeat(40), "١٢"]) {
    assert.throws(() => wait(bad), (err: Error) => err instanceof InvalidArgumentError && /^--wait must be a whole number from 0 to 604800$/.test(err.message), JSON.stringify(bad));
  }
  assert.throws(() => int("--sessions", 1, 256)("0"), /--sessions must be a whole number from 1 to 256/);
});

test("argument: a parser's error becomes commander's, with its message", () => {
  const parse = argument((v: string) => {
    if (v !== "ok") throw new Error(`--thing: not ${JSON.stringify(v)}`);
    return 1;
  });
  assert.equal(parse("ok"), 1);
  assert.throws(() => parse("no"), (err: Error) => err instanceof InvalidArgumentError && err.message === '--thing: not "no"');
});

// The one rule for names that become dataset paths (protocol/names.ts): the job loaders refuse a bad
// job id with it, and the dataset writer's last guard (assertSafeName) is the same rule.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { caseFoldedName, fileNameProblem, jobIdProblem, MAX_NAME_LENGTH } from "../../protocol/names.js";
import { assertSafeName } from "../../server/dataset/safeName.js";

// Every class of name that is unsafe somewhere a dataset may be copied to.
const UNSAFE: [string, RegExp][] = [
  ["", /must not be empty/],
  ["..", /must not start with \./],
  [".", /must not start with \./],
  ["a..b", /must not contain "\.\."/],
  [".hidden", /must not start with \./],
  ["-rf", /must not start with \. or -/],
  ["a.", /must not end with \./],
  ["a ", /ASCII .*U\+0020/],
  ["a/b", /ASCII .*"\/"/],
  ["a\\b", /ASCII .*"\\\\"/],
  ["a\u0000b", /U\+0000/],
  ["a\u007fb", /U\+007F/],
  ["a:b", /":"/],
  ["ａ", /U\+FF41/], // fullwidth a
  ["a\u2024b", /U\+2024/], // one dot leader, looks like "."
  ["a\u2215b", /U\+2215/], // division slash, looks like "/"
  ["caf\u0065\u0301", /U\+0301/], // combining accent: macOS would store it normalised
  ["CON", /Windows device name/],
  ["con.txt", /Windows device name/],
  ["Nul.tar.gz", /Windows device name/],
  ["aux", /Windows device name/],
  ["PRN", /Windows device name/],
  ["com1", /Windows device name/],
  ["COM9.png", /Windows device name/],
  ["lpt0", /Windows device name/],
  ["x".repeat(MAX_NAME_LENGTH + 1), /at most 200 characters/],
];

describe("names that become dataset paths", () => {
  it("refuses every unsafe name, saying why, in the shared rule and in the dataset's guard", () => {
    for (const [name, why] of UNSAFE) {
      assert.match(fileNameProblem(name) ?? "(accepted)", why, JSON.stringify(name));
      assert.match(jobIdProblem(name) ?? "(accepted)", why, JSON.stringify(name));
      assert.throws(() => assertSafeName(name, "job id"), /^Error: job id .* is not a safe file name: it /, JSON.stringify(name));
    }
    assert.equal(fileNameProblem(undefined), "must be a string");
    assert.throws(() => assertSafeName(42 as unknown as string, "layer name"), /layer name 42 is not a safe file name/);
  });

  it("accepts ordinary names, including ones that merely start like a device name", () => {
    for (const name of ["job1", "orbit-0001", "a.b_c-d", "_x", "0", "con-1", "console", "nul_", "com10", "lpt", "A".repeat(MAX_NAME_LENGTH)]) {
      assert.equal(fileNameProblem(name), undefined, name);
      assert.equal(assertSafeName(name, "job id"), name);
    }
  });

  it("job ids also may not be digits only (a Redis/BullMQ backend keeps those for its own ids)", () => {
    for (const id of ["0", "42", "0007"]) {
      assert.equal(fileNameProblem(id), undefined);
      assert.match(jobIdProblem(id) ?? "", /digits only/);
    }
    for (const id of ["job-42", "42a", "4.2"]) assert.equal(jobIdProblem(id), undefined, id);
  });

  it("ids that differ only by case fold to the same name", () => {
    assert.equal(caseFoldedName("Job-A"), caseFoldedName("job-a"));
    assert.notEqual(caseFoldedName("job-a"), caseFoldedName("job-b"));
  });
});

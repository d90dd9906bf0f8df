// The first `npm run farm` builds the client (Vite); a build that fails names the file, line and column
// and stops the farm (exit 2) before anything starts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildClient, ClientBuildError } from "../../harness/buildClient.js";
import { runFarmCli } from "./cli.js";

const broken: [string, string, RegExp][] = [
  ["a syntax error", 'import { registerComponent } from "tabfarm";\nexport const x = (;\n', /broken\.tsx:2:19: .*Unexpected token/],
  ["an import that does not resolve", 'import "./no-such-module";\n', /broken\.tsx:1:8: .*Could not resolve '\.\/no-such-module'/],
];

describe("client build failures", () => {
  for (const [what, source, where] of broken) {
    it(`${what}: the error names the file, line and column`, async (t) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-build-"));
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
      const file = path.join(dir, "broken.tsx");
      fs.writeFileSync(file, source);
      await assert.rejects(buildClient({ plugins: file }), (e: unknown) => {
        assert.ok(e instanceof ClientBuildError);
        assert.ok(e.message.startsWith(`building the client with --plugins ${file} failed:\n`), e.message);
        assert.ok(e.message.includes(file), `names ${file}: ${e.message}`);
        assert.match(e.message, where);
        assert.doesNotMatch(e.message, /\x1b\[/, "no terminal colour codes");
        return true;
      });
    });
  }

  it("the farm stops with exit 2 and the file's name, and starts nothing", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabfarm-build-cli-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "broken.tsx");
    fs.writeFileSync(file, broken[0]![1]);
    const out = path.join(dir, "out");
    const { code, output } = await runFarmCli(["--plugins", file, "--out", out, "--demo", "4", "--no-progress"]);
    assert.equal(code, 2, output);
    assert.match(output, new RegExp(`tabfarm: building the client with --plugins .*broken\\.tsx failed:\\n  .*broken\\.tsx:2:19: `));
    assert.doesNotMatch(output, /serving http/, "no server started");
    assert.ok(!fs.existsSync(out), "no dataset folder created");
  });
});

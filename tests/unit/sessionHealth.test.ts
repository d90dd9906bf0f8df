// SessionHealth's rules: a broken session is singled out against its peers; a bad job (failing on
// every session alike) or a last session standing is never quarantined.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionHealth } from "../../server/dispatch/SessionHealth.js";

describe("SessionHealth", () => {
  it("a session failing everything while a peer has failed nothing: quarantined after 3", () => {
    const h = new SessionHealth();
    h.failed("bad");
    h.failed("bad");
    assert.equal(h.isSuspect("bad"), false);
    assert.equal(h.verdict("bad", ["good"]), null);
    h.failed("bad");
    assert.equal(h.isSuspect("bad"), true);
    assert.match(h.verdict("bad", ["good"]) ?? "", /failed all 3 jobs it took while another session failed 0/);
  });

  it("never with no peer: the last session standing keeps working", () => {
    const h = new SessionHealth();
    for (let i = 0; i < 20; i++) h.failed("alone");
    assert.equal(h.isSuspect("alone"), true);
    assert.equal(h.verdict("alone", []), null);
  });

  it("jobs that fail on every session alike quarantine none", () => {
    const h = new SessionHealth();
    for (let i = 0; i < 10; i++) {
      h.failed("a");
      h.failed("b");
      if (i % 3 === 0) h.failed("a"); // a is a bit faster at failing
    }
    assert.equal(h.verdict("a", ["b"]), null);
    assert.equal(h.verdict("b", ["a"]), null);
  });

  it("a run of failures while peers complete jobs: quarantined after 5 in a row; a success resets the run", () => {
    const h = new SessionHealth();
    h.succeeded("flaky");
    for (let i = 0; i < 4; i++) h.failed("flaky");
    h.succeeded("peer");
    assert.equal(h.verdict("flaky", ["peer"]), null, "4 in a row is not enough");
    h.succeeded("flaky");
    for (let i = 0; i < 5; i++) h.failed("flaky");
    assert.equal(h.verdict("flaky", ["peer"]), null, "5 in a row, but no peer completed a job meanwhile");
    h.succeeded("peer");
    assert.match(h.verdict("flaky", ["peer"]) ?? "", /failed 5 jobs in a row while other sessions completed 1/);
  });

  it("forget drops a session that left", () => {
    const h = new SessionHealth();
    for (let i = 0; i < 5; i++) h.failed("gone");
    h.forget("gone");
    assert.equal(h.isSuspect("gone"), false);
    assert.equal(h.verdict("gone", ["x"]), null);
  });
});

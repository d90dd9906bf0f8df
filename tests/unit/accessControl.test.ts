// The pieces of access control that take raw network input: request targets, tokens from headers,
// worker proofs, the failed-authentication limiter and the socket.io packet decoder.
//
// Run: node --import tsx --test tests/unit/accessControl.test.ts
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { AccessControl, MAX_REPLY_ATTACHMENTS, pageParser, parseRequestTarget, requestToken, TEXT_MESSAGE_CHARS, tokenMatches, workerProof } from "../../server/session/accessControl.js";
import { launchedTabOf, launchedWorkerName } from "../../protocol/events.js";

describe("parseRequestTarget", () => {
  it("reads origin-form targets as paths, even ones a URL parser would take for a host", () => {
    assert.equal(parseRequestTarget("/index.html?x=1")?.pathname, "/index.html");
    assert.equal(parseRequestTarget("//[")?.pathname, "//[");
    assert.equal(parseRequestTarget("//evil.example/index.html")?.pathname, "//evil.example/index.html");
    assert.equal(parseRequestTarget("/api/status?token=a%20b")?.searchParams.get("token"), "a b");
    assert.equal(parseRequestTarget("/%zz%E0%A4%A")?.pathname, "/%zz%E0%A4%A");
  });

  it("accepts http(s) absolute-form and refuses everything else without throwing", () => {
    assert.equal(parseRequestTarget("http://127.0.0.1:1/api/status")?.pathname, "/api/status");
    for (const bad of ["http://[", "https://[::1", "*", "%", "", "127.0.0.1:80", "ftp://x/", "javascript:alert(1)", "/".repeat(9000), undefined]) {
      assert.equal(parseRequestTarget(bad), undefined, `refused: ${JSON.stringify(bad)?.slice(0, 40)}`);
    }
    for (let i = 0; i < 2000; i++) parseRequestTarget(randomBytes(1 + (i % 40)).toString("latin1")); // never throws
  });
});

describe("requestToken", () => {
  const target = parseRequestTarget("/api/status?token=from-query");
  it("takes a Bearer token in any case of the scheme, else the query", () => {
    assert.equal(requestToken({ authorization: "Bearer abc" }, target), "abc");
    assert.equal(requestToken({ authorization: "bearer   abc  " }, target), "abc");
    assert.equal(requestToken({ authorization: "BEARER abc" }, undefined), "abc");
    assert.equal(requestToken({}, target), "from-query");
    assert.equal(requestToken({ authorization: "Basic Zm9vOmJhcg==" }, target), "from-query");
    assert.equal(requestToken({ authorization: "Bearer" }, target), "from-query", "a scheme without a token is not a Bearer token");
    assert.equal(requestToken({ authorization: "Bearer a b" }, target), "from-query", "two words are not a token");
    assert.equal(requestToken({}, undefined), undefined);
    assert.equal(requestToken({ authorization: "Bearer " }, parseRequestTarget("/")), "");
  });
  it("tokenMatches refuses anything but the same string", () => {
    assert.equal(tokenMatches("abc", "abc"), true);
    for (const other of ["abd", "ab", "abcd", "", undefined, null, 42, { toString: () => "abc" }, ["abc"]]) assert.equal(tokenMatches("abc", other), false);
  });
});

describe("worker proofs", () => {
  it("are per secret and per name", () => {
    const secret = randomBytes(32);
    const proof = workerProof(secret, "tab-0");
    assert.equal(proof, workerProof(secret, "tab-0"));
    assert.notEqual(proof, workerProof(secret, "tab-1"));
    assert.notEqual(proof, workerProof(randomBytes(32), "tab-0"));
  });
  it("launched names round-trip; nothing else is one", () => {
    assert.equal(launchedTabOf(launchedWorkerName(7)), 7);
    for (const name of ["tab-", "tab-x", "tab-1 ", "unverified:tab-0", "TAB-1", "tab-1234567", "my-laptop", ""]) assert.equal(launchedTabOf(name), undefined, name);
  });
});

describe("AccessControl", () => {
  it("blocks an address after its failed authentications only; other addresses are unaffected", async () => {
    const access = new AccessControl({ failedAuthPer10s: 3, messagesPerSecond: 2 });
    assert.deepEqual([await access.recordFailure("a"), await access.recordFailure("a"), await access.recordFailure("a")], [false, false, false]);
    assert.equal(await access.recordFailure("a"), true, "the 4th failure in 10 s is over the limit");
    assert.equal(await access.recordFailure("b"), false);
    assert.deepEqual([await access.allowMessage("s"), await access.allowMessage("s"), await access.allowMessage("s")], [true, true, false]);
  });
});

describe("pageParser: the socket.io packets a page may send", () => {
  const decode = (...messages: Array<string | Buffer>) => {
    const decoder = new (pageParser(1024 * 1024).Decoder)();
    const decoded: unknown[] = [];
    decoder.on("decoded", (packet: unknown) => decoded.push(packet));
    for (const message of messages) decoder.add(message);
    return decoded;
  };
  const placeholders = (count: number) => Array.from({ length: count }, (_, num) => JSON.stringify({ _placeholder: true, num })).join(",");

  it("takes a grab reply with every attachment a reply has (image, 3D boxes, each page layer) up to the byte limit, events without binary data and text up to the limit", () => {
    const all = decode(`6${MAX_REPLY_ATTACHMENTS}-8[${placeholders(MAX_REPLY_ATTACHMENTS)}]`, ...Array.from({ length: MAX_REPLY_ATTACHMENTS }, () => Buffer.alloc(1024 * 1024 / MAX_REPLY_ATTACHMENTS)));
    assert.equal(all.length, 1);
    const [reply] = decode(`62-7[{"ok":true,"image":{"_placeholder":true,"num":0},"depth":{"_placeholder":true,"num":1}}]`, Buffer.from("img"), Buffer.from("dp")) as [{ id: number; data: [{ image: Buffer; depth: Buffer }] }];
    assert.equal(reply.id, 7);
    assert.equal(reply.data[0].image.toString(), "img");
    assert.equal(reply.data[0].depth.toString(), "dp");
    assert.equal(decode(`2["sceneError",{"seq":1,"message":"m"}]`).length, 1);
    const longest = `2["sceneError",{"message":"${"a".repeat(TEXT_MESSAGE_CHARS - 30)}"}]`;
    assert.ok(longest.length <= TEXT_MESSAGE_CHARS);
    assert.equal(decode(longest).length, 1);
  });

  it("refuses more attachments than a reply has, binary data in an event, and longer text, naming each", () => {
    assert.throws(() => decode(`6${MAX_REPLY_ATTACHMENTS + 1}-7[${placeholders(MAX_REPLY_ATTACHMENTS + 1)}]`), /too many attachments/);
    // Attachments of one packet count together: two that each fit one message may not pass the reply's limit.
    assert.throws(() => decode(`62-7[${placeholders(2)}]`, Buffer.alloc(600 * 1024), Buffer.alloc(600 * 1024)), /a reply whose attachments hold more than 1048576 bytes/);
    assert.equal(decode(`62-7[${placeholders(2)}]`, Buffer.alloc(512 * 1024), Buffer.alloc(512 * 1024)).length, 1, "exactly the limit passes");
    assert.throws(() => decode(`610-7[${placeholders(10)}]`), /too many attachments/);
    assert.throws(() => decode(`51-["sceneError",${placeholders(1)}]`), /an event with binary data/);
    assert.throws(() => decode(`2["sceneError","${"a".repeat(TEXT_MESSAGE_CHARS)}"]`), /a text message of \d+ characters \(at most 65536\)/);
    assert.throws(() => decode(Buffer.from("x")), /got binary data when not reconstructing a packet/);
  });
});

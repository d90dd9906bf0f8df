// What the command line prints while a run goes (harness/progressView.ts): lines without control
// characters whatever the run's texts hold, durations, and the retry command, checked by a real shell.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it, mock } from "node:test";
import type { RunView } from "../../protocol/runEvents.js";
import { formatDuration, PLAIN_EVERY_MS, progressView, retryCommand, shellQuote, statusLine, withoutControlCharacters } from "../../harness/progressView.js";
import { RunStats } from "../../server/events/RunStats.js";

/** C0 but tab and newline, DEL, C1: what a line may not carry. */
const isControl = (cp: number) => (cp <= 0x1f && cp !== 0x09 && cp !== 0x0a) || (cp >= 0x7f && cp <= 0x9f);
const controlIn = (text: string) => [...text].map((c) => c.codePointAt(0)!).filter(isControl);

/** Escape sequences a page's text could carry: colours, clear screen, OSC title and hyperlink, C1 CSI, a bare CR. */
const HOSTILE = ["\u001b[2J\u001b[H", "\u001b]0;pwned\u0007", "\u001b]8;;http://x\u001b\\link\u001b]8;;\u001b\\", "\u009b31m", "\r\u0008\u007f", "\u0000"];

function hostileView(text: string): RunView {
  return {
    out: `/data/${text}`, startedAt: 0, now: 1000,
    counts: { pending: 1, leased: 2, done: 3, failed: 4, total: 10 },
    frames: 5, framesTotal: 5, jobsDone: 3, retries: 1, failures: 4, framesPerSecond: 2.25, etaSeconds: 61,
    paused: { by: `dashboard ${text}`, since: 0 },
    writePaused: { store: text, error: text, since: 0 },
    sessions: [
      { id: text, worker: text, browser: text, renderer: text, state: "working", frames: 1, framesPerSecond: 1, jobs: 1, failures: 1, job: text, lastError: text, since: 0 },
      { id: "gone", worker: "w", browser: "b", renderer: "r", state: "left", frames: 0, framesPerSecond: 0, jobs: 0, failures: 0, job: null, lastError: null, since: 0, leftAt: 1 },
    ],
    failed: [{ id: text, attempts: 3, error: text, at: 0 }],
    finished: false,
    stopped: null,
  };
}

describe("statusLine's sessions", () => {
  it("counts sessions connected now: not those that left (whatever their state: hung and quarantined rows keep theirs), not a hung one", () => {
    const base = hostileView("x");
    const row = base.sessions[0];
    const view: RunView = {
      ...base,
      sessions: [
        { ...row, id: "a", state: "working" },
        { ...row, id: "b", state: "idle" },
        { ...row, id: "c", state: "quarantined" }, // quarantined, still connected until it leaves
        { ...row, id: "d", state: "quarantined", leftAt: 5 },
        { ...row, id: "e", state: "hung" },
        { ...row, id: "f", state: "hung", leftAt: 6 },
        { ...row, id: "g", state: "left", leftAt: 7 },
      ],
    };
    assert.match(statusLine(view), /, 3 sessions,/);
  });
});

describe("withoutControlCharacters", () => {
  it("replaces every C0 (but tab and newline), DEL and C1 code point with ?, and keeps every other one of 0..0x9f", () => {
    for (let cp = 0; cp <= 0x9f; cp++) {
      const c = String.fromCodePoint(cp);
      const got = withoutControlCharacters(`a${c}b`);
      assert.equal(got, isControl(cp) ? "a?b" : `a${c}b`, `U+${cp.toString(16).padStart(4, "0")}`);
    }
  });

  it("keeps text past C1 (Latin-1, CJK, emoji, combining marks) as it is, and the length of any line", () => {
    const text = "é ß \u00a0 \u00ad 漢字 🎉 e\u0301 \u2028 ✓";
    assert.equal(withoutControlCharacters(text), text);
    for (const h of HOSTILE) {
      const line = `error: ${h} at\n\tframe 3`;
      const clean = withoutControlCharacters(line);
      assert.deepEqual(controlIn(clean), []);
      assert.equal(clean.length, line.length, "one ? per character: nothing else moves");
      assert.ok(clean.includes("\n\tframe 3"), "a stack trace keeps its lines");
    }
  });
});

describe("statusLine", () => {
  it("carries no control character whatever the view's texts hold", () => {
    for (const h of HOSTILE) {
      const line = statusLine(hostileView(h));
      assert.deepEqual(controlIn(line), [], `${JSON.stringify(h)} → ${JSON.stringify(line)}`);
      assert.ok(!line.includes("\n"), "one line");
    }
  });

  it("says the figures, live sessions only, and both pauses", () => {
    const line = statusLine(hostileView("x"));
    assert.match(line, /^progress: 3\/10 jobs done, 2 leased, 4 failed, 1 retries, 1 sessions, 5 frames, 2\.3 frames\/s, ETA 1 m 01 s/);
    assert.ok(line.includes("(paused by dashboard x)"));
    assert.ok(line.includes("(paused: x refuses writes)"));
    const calm = statusLine({ ...hostileView("x"), paused: null, writePaused: null, etaSeconds: null });
    assert.ok(!calm.includes("paused") && calm.endsWith("ETA —"), calm);
  });

  it("progressView without a terminal: a status line every PLAIN_EVERY_MS through log, clean; say() cleans too", () => {
    mock.timers.enable({ apis: ["setInterval"] });
    try {
      const lines: string[] = [];
      const stats = new RunStats({ out: "/o", startedAt: Date.now(), counts: { pending: 2, leased: 0, done: 0, failed: 0, total: 2 }, framesAtStart: 0 });
      stats.apply({ type: "dispatch.paused", at: Date.now(), by: "\u001b]0;evil\u0007\u009b2J" });
      const view = progressView({ stats: () => stats, enabled: true, tty: false, log: (l) => lines.push(l) });
      // A text's own lines are indented under its first: a page's error cannot pose as a line of ours.
      view.say("page said \u001b[31mred\u001b[0m\n\tat line 2");
      assert.deepEqual(lines, ["page said ?[31mred?[0m\n    \tat line 2"]);
      view.say("boom\ntabfarm: 40 frames in 1.0 s; jobs: 4 done, 0 failed of 4\n");
      assert.equal(lines[1], "boom\n    tabfarm: 40 frames in 1.0 s; jobs: 4 done, 0 failed of 4\n");
      // Bidi overrides would reorder what the terminal shows.
      view.say("evil \u202etxt.exe\u2066x\u2069");
      assert.equal(lines[2], "evil ?txt.exe?x?");
      lines.splice(0, 2);
      view.start();
      mock.timers.tick(PLAIN_EVERY_MS - 1);
      assert.equal(lines.length, 1, "nothing before PLAIN_EVERY_MS");
      mock.timers.tick(1);
      assert.equal(lines.length, 2);
      assert.match(lines[1], /^progress: 0\/2 jobs done/);
      assert.ok(lines[1].includes("(paused by ?]0;evil??2J)"), lines[1]);
      assert.deepEqual(controlIn(lines[1]), []);
      mock.timers.tick(PLAIN_EVERY_MS * 3);
      assert.equal(lines.length, 5);
      view.stop();
      mock.timers.tick(PLAIN_EVERY_MS * 3);
      assert.equal(lines.length, 5, "stopped");
      // --no-progress: log lines only, never a status line.
      const quiet: string[] = [];
      const off = progressView({ stats: () => stats, enabled: false, tty: false, log: (l) => quiet.push(l) });
      off.start();
      mock.timers.tick(PLAIN_EVERY_MS * 3);
      off.say("only this");
      off.stop();
      assert.deepEqual(quiet, ["only this"]);
    } finally {
      mock.timers.reset();
    }
  });
});

describe("formatDuration", () => {
  const cases: [number | null, string][] = [
    [null, "—"], [NaN, "—"], [Infinity, "—"], [-Infinity, "—"],
    [-5, "0 s"], [-0.4, "0 s"], [0, "0 s"], [0.49, "0 s"], [0.5, "1 s"],
    [59.4, "59 s"], [59.6, "1 m 00 s"], [60, "1 m 00 s"], [61, "1 m 01 s"], [200, "3 m 20 s"],
    [3599.4, "59 m 59 s"], [3599.6, "1 h 00 m"], [3600, "1 h 00 m"], [3719, "1 h 01 m"], [3720, "1 h 02 m"],
    [86_400, "24 h 00 m"], [86_400 * 3 + 3600 * 5 + 60 * 7 + 9, "77 h 07 m"], [1e9, "277777 h 46 m"],
  ];
  for (const [seconds, want] of cases) it(`${seconds} → ${want}`, () => assert.equal(formatDuration(seconds), want));

  it("over a range of values: reads back to the rounded seconds, truncated to the minute past an hour, never more", () => {
    const parse = (text: string) => {
      const m = /^(?:(\d+) h (\d\d) m|(\d+) m (\d\d) s|(\d+) s)$/.exec(text);
      assert.ok(m, `format of ${text}`);
      if (m[1] !== undefined) return Number(m[1]) * 3600 + Number(m[2]) * 60;
      if (m[3] !== undefined) return Number(m[3]) * 60 + Number(m[4]);
      return Number(m[5]);
    };
    let previous = -1;
    for (let s = 0; s < 200_000; s += 0.7) {
      const back = parse(formatDuration(s));
      const rounded = Math.round(s);
      if (rounded < 3600) assert.equal(back, rounded, `${s}`);
      else assert.ok(back <= rounded && rounded - back < 60, `${s} → ${formatDuration(s)}`);
      assert.ok(back >= previous, "never goes down as the seconds go up");
      previous = back;
    }
  });
});

describe("shellQuote", () => {
  /** The words a shell makes of `line` after printf: each ends with a NUL. */
  const wordsOf = (shell: string, line: string) => execFileSync(shell, ["-c", `printf '%s\\0' ${line}`], { encoding: "utf8" }).split("\0").slice(0, -1);

  const hostile = [
    "", " ", "plain", "with space", "'", "''", "a'b", "'a'", '"', 'a"b', "\\", "a\\'b", "$HOME", "${HOME}", "$(touch /tmp/tabfarm-pwned)",
    "`touch /tmp/tabfarm-pwned`", "a;b", "a|b", "a&b", "a&&b", "<in", ">out", "*", "?", "[ab]", "{a,b}", "~", "~root", "!", "!!", "#comment",
    "a\nb", "\n", "tab\there", "\r", "-n", "-e", "--out=/x y", "=", "%s", "é漢字🎉", "e\u0301", "\u001b[31m", "a b'c\"d$e`f\\g",
  ];

  for (const shell of ["bash", "dash"]) {
    it(`round-trips hostile arguments through ${shell}`, () => {
      assert.deepEqual(wordsOf(shell, hostile.map(shellQuote).join(" ")), hostile);
    });
  }

  it("round-trips seeded random arguments through bash (one shell for all)", () => {
    const alphabet = [..." \t\n'\"\\$`!#&|;<>()[]{}*?~=%,.:/@+-_aZ9é漢🎉\u0001\u007f"];
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const args = Array.from({ length: 300 }, () => Array.from({ length: Math.floor(rnd() * 12) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join(""));
    assert.deepEqual(wordsOf("bash", args.map(shellQuote).join(" ")), args);
  });

  it("leaves plain words bare and quotes the rest", () => {
    for (const plain of ["farm", "--out", "/data/out-1", "a=b", "x,y", "@v", "50%", "+1", "a:b"]) assert.equal(shellQuote(plain), plain);
    for (const quoted of ["", "a b", "$x", "~", "*"]) assert.ok(shellQuote(quoted).startsWith("'"), quoted);
  });
});

describe("retryCommand", () => {
  /** The words of each npm call in the command, as a shell reads them (npm replaced by a function that prints them). */
  const npmCalls = (command: string) =>
    execFileSync("bash", ["-c", `npm() { printf '%s\\0' "$@"; printf '\\1'; }; ${command}`], { encoding: "utf8" })
      .split("\u0001")
      .slice(0, -1)
      .map((call) => call.split("\0").slice(0, -1));
  const out = "/data/it's a \"run\" $(x)";

  it("adds --out when the farm command gave none; both commands read back word for word", () => {
    const args = ["--jobs", "jobs file.jsonl", "--tabs", "2", "--name", "a'b`c`"];
    const [retry, again] = npmCalls(retryCommand(args, out));
    assert.deepEqual(retry, ["run", "farm", "--", "retry-failed", "--out", out]);
    assert.deepEqual(again, ["run", "farm", "--", ...args, "--out", out]);
  });

  for (const given of [["--out", "/given dir"], ["--out=/given dir"]]) {
    it(`does not add --out when given as ${JSON.stringify(given)}`, () => {
      const args = ["--jobs", "j.jsonl", ...given, "--tabs", "2"];
      const [retry, again] = npmCalls(retryCommand(args, out));
      assert.deepEqual(retry, ["run", "farm", "--", "retry-failed", "--out", out]);
      assert.deepEqual(again, ["run", "farm", "--", ...args], "the arguments as given, nothing added");
      assert.equal(again.filter((a) => a === "--out" || a.startsWith("--out=")).length, 1);
    });
  }

  it("a run on a shared queue retries on that queue (not its shard), and no word holds the queue's password", () => {
    const password = "s3cr:et@x";
    for (const [args, queue] of [
      [["--jobs", "j.jsonl", "--queue", `redis://:${password}@10.0.0.5:6379/2?queue=run7`], `redis://:${password}@10.0.0.5:6379/2?queue=run7`],
      [["--jobs", "j.jsonl", `--queue=rediss://bob:${password}@h:1`], `rediss://bob:${password}@h:1`],
      [["--jobs", "j.jsonl"], `redis://:${password}@h:1`], // from TABFARM_QUEUE: not among the arguments
    ] as const) {
      const command = retryCommand(args, out, queue);
      assert.ok(!command.includes(password) && !command.includes("s3cr"), command);
      const [retry, again] = npmCalls(command);
      assert.deepEqual(retry.slice(0, 4), ["run", "farm", "--", "retry-failed"]);
      assert.equal(retry[4], "--queue", command);
      assert.match(retry[5]!, /^rediss?:\/\/(bob:|:)\*\*\*@/);
      assert.equal(again.length, args.length + 5, "the arguments as given, and --out");
    }
  });

  it("an option that only starts like --out is no --out", () => {
    const args = ["--output-format", "x", "--outdir=y"];
    const [, again] = npmCalls(retryCommand(args, out));
    assert.deepEqual(again, ["run", "farm", "--", ...args, "--out", out]);
  });
});

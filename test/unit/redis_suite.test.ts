/** The runner of Redis's Tcl suite (bench/redis_suite.ts): its reading of the suite's output, and its harness patch. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { parseSuiteOutput, patchHarness, SUITE_FLAGS, suiteFlags } from "../../bench/redis_suite.js";
import { explainDoorFailure, UNEXPLAINED } from "../../bench/redis_suite_known.js";
import { route } from "../../src/frontdoor/router.js";
import { commandReply } from "../../src/frontdoor/reply_shapes.js";
import { encodeResp, type Protocol } from "../../src/frontdoor/resp_encoder.js";
import { CommandTable } from "../../src/redis/command_table.js";
import { ErrorCode } from "../../src/protocol/errors.js";

const OUTPUT = `Cleanup: may take some time... OK
Starting test server at port 21079
[ready]: 17773
Testing unit/type/incr
[\x1b[0;32;49mok\x1b[0m]: INCR against non existing key (1 ms)
[ok]: INCR against key created by incr itself (0 ms)
[ignore]: big test: Tag: needs:debug denied
[skip]: SELECT test
[err]: INCR uses shared objects in the 0-9999 range in tests/unit/type/incr.tcl
MMAND_REFUSED 'object' is refused: container commands are not supported
ERR qjm COMMAND_REFUSED 'object' is refused: container commands are not supported
    while executing
[err]: INCRBYFLOAT decrement in tests/unit/type/incr.tcl
Expected '1' to equal or match '2' (context: type eval line 3 cmd {assert_equal 1 2} proc ::test)
[1/1 done]: unit/type/incr (0 seconds)
`;

test("counts passed, failed and ignored tests, each failure with its whole error line", (t) => {
  const r = parseSuiteOutput("unit/type/incr", OUTPUT, 1.5, 1);
  t.is(r.passed, 2);
  t.is(r.failed, 2);
  t.is(r.ignored, 2);
  t.is(r.aborted, undefined);
  t.deepEqual(r.failures, [
    { name: "INCR uses shared objects in the 0-9999 range", error: "ERR qjm COMMAND_REFUSED 'object' is refused: container commands are not supported" },
    { name: "INCRBYFLOAT decrement", error: "Expected '1' to equal or match '2' (context: type eval line 3 cmd {assert_equal 1 2} proc ::test)" },
  ]);
});

test("a file that stops early is aborted, saying why", (t) => {
  const exception = parseSuiteOutput("unit/type/list", "Testing unit/type/list\n[exception]: Executing test client: ERR nope.\nERR nope\n", 0.2, 1);
  t.is(exception.aborted, "exception: Executing test client: ERR nope.");
  const timeout = parseSuiteOutput("unit/type/string", "[ok]: a (1 ms)\n[TIMEOUT]: clients state report follows.\nsock1 => (IN PROGRESS) SETNX against expired volatile key\n", 180, 1);
  t.is(timeout.passed, 1);
  t.regex(timeout.aborted ?? "", /^timeout: .*SETNX against expired volatile key/);
  t.regex(parseSuiteOutput("f", "[ok]: a (1 ms)\n", 900, null).aborted ?? "", /^killed after/);
  const outside = parseSuiteOutput("f", "[err]: MMAND_REFUSED 'memory' is refused\nERR qjm COMMAND_REFUSED 'memory' is refused\n[1/1 done]: f (0 seconds)\n", 1, 1);
  t.regex(outside.aborted ?? "", /^error outside a test, .*: ERR qjm COMMAND_REFUSED 'memory' is refused$/);
});

test("the harness patch replaces the reset, wraps `r`, gives a fresh connection after a failed test, and refuses a harness it does not know", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-suite-patch-"));
  try {
    fs.mkdirSync(path.join(dir, "support"));
    const server = path.join(dir, "support", "server.tcl");
    const helper = path.join(dir, "test_helper.tcl");
    fs.writeFileSync(server, "proc x {} {\n    r flushall\n    r function flush\n}\n");
    fs.writeFileSync(helper, 'proc r {args} {\n    set level 0\n    if {1} {\n        set args [lrange $args 1 end]\n    }\n    [srv $level "client"] {*}$args\n}\n');
    const testTcl = path.join(dir, "support", "test.tcl");
    // test.tcl's two failure branches: a test that threw, a value that did not match.
    const threw = '            incr ::num_failed\n            send_data_packet $::test_server_fd err [join $details "\\n"]\n\n            if {$::stop_on_failure} {\n            }\n';
    const mismatch = '            incr ::num_failed\n            send_data_packet $::test_server_fd err [join $details "\\n"]\n        }\n    }\n';
    fs.writeFileSync(testTcl, `        if {1} {\n${threw}        } else {\n${mismatch}`);
    patchHarness(dir);
    const tcl = fs.readFileSync(testTcl, "utf8");
    t.is(tcl.split("\n            qjm_fresh_connection\n").length, 3, "a fresh connection after either kind of failure");
    const proc = tcl.slice(tcl.indexOf("proc qjm_fresh_connection {} {"));
    t.true(proc.includes("reconnect") && proc.includes("r hello 2") && proc.includes("r select 0"), proc);
    const s = fs.readFileSync(server, "utf8");
    t.true(s.includes("if {[catch {r flushall}]} { qjm_reset_keyspace }"));
    t.true(s.includes("proc qjm_reset_keyspace"));
    t.true(fs.readFileSync(helper, "utf8").includes("CONFIG SET is not supported by the front door"));
    fs.writeFileSync(server, "proc x {} {}\n");
    t.throws(() => patchHarness(dir), { message: /harness changed/ });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("REDIS_SUITE_SKIP: a --skiptest for each test named, after the flags every target gets", (t) => {
  t.deepEqual(suiteFlags({}), SUITE_FLAGS);
  t.deepEqual(suiteFlags({ REDIS_SUITE_SKIP: "/^ZDIFF fuzzing, SET and GET " }), [...SUITE_FLAGS, "--skiptest", "/^ZDIFF fuzzing", "--skiptest", "SET and GET"]);
});

test("a door's failure is explained by its error, else it is UNEXPLAINED", (t) => {
  t.regex(explainDoorFailure("unit/multi", "FLUSHALL is able to touch the watched keys", "ERR qjm COMMAND_REFUSED 'flushall' is refused: empties the keyspace without keyspace events (delete keys with DEL or UNLINK)"), /^refused by design: FLUSHALL/);
  t.regex(explainDoorFailure("unit/multi", "MULTI with config error", "ERR qjm: 'config' is not supported inside MULTI"), /^refused by design: CONFIG SET/);
  t.regex(explainDoorFailure("unit/multi", "just EXEC and script timeout", "Expected '2' to match 'EXECABORT*BUSY*'"), /^semantics/);
  t.is(explainDoorFailure("unit/type/incr", "INCR fails against a key holding a list", "Expected 'x' to equal or match 'y'"), UNEXPLAINED);
});

test("TIME, which Redis's expire tests use, is a read on the front door (it is flagged neither write nor readonly)", (t) => {
  t.deepEqual(route([Buffer.from("TIME")], { commands: undefined, authenticated: true }), { kind: "read" });
});

test("a container's read-only subcommands (OBJECT ENCODING, MEMORY USAGE) are reads on the front door; its others stay refused", (t) => {
  // COMMAND's shape in Redis 7: [name, arity, flags, first, last, step, acl, tips, key specs, subcommands].
  const table = CommandTable.fromCommandReply([
    ["object", -2, [], 0, 0, 0, ["@slow"], [], [], [
      ["object|encoding", 3, ["readonly"], 2, 2, 1, ["@keyspace", "@read", "@slow"], [], [], []],
      ["object|help", 2, ["loading", "stale"], 0, 0, 0, ["@slow"], [], [], []],
    ]],
    ["config", -2, [], 0, 0, 0, ["@slow"], [], [], [["config|get", -3, ["admin", "noscript", "loading", "stale"], 0, 0, 0, ["@admin", "@slow", "@dangerous"], [], [], []]]],
    ["get", 2, ["readonly", "fast"], 1, 1, 1, ["@read", "@string", "@fast"], [], [], []],
  ]);
  const ctx = { commands: table, authenticated: true };
  const b = (...a: string[]): Buffer[] => a.map((x) => Buffer.from(x));
  t.deepEqual(route(b("OBJECT", "ENCODING", "k"), ctx), { kind: "read" });
  t.is(route(b("OBJECT", "ENCODING"), ctx).kind, "refuse"); // arity: as Redis, an error, never a read of nothing
  t.is(route(b("OBJECT", "HELP"), ctx).kind, "refuse");
  t.is(route(b("CONFIG", "GET", "x"), ctx).kind, "local"); // the door's own CONFIG GET, unchanged
  t.false(table.isReadOnlySubcommand(b("CONFIG", "GET", "x"))); // admin
  t.false(table.isReadOnlySubcommand(b("GET", "k")));
  t.false(table.classify(b("OBJECT", "ENCODING", "k")).ok); // never a write
});

test("a write's nil is RESP2's null array for LPOP/RPOP with a count, LMPOP and ZMPOP, a null bulk string otherwise", (t) => {
  const b = (...a: string[]): Buffer[] => a.map((x) => Buffer.from(x));
  const nil = (p: Protocol, ...args: string[]): string => encodeResp(commandReply(b(...args), null, p), p).toString();
  t.is(nil(2, "LPOP", "k", "2"), "*-1\r\n");
  t.is(nil(2, "rpop", "k", "2"), "*-1\r\n");
  t.is(nil(2, "LMPOP", "1", "k", "LEFT"), "*-1\r\n");
  t.is(nil(2, "ZMPOP", "1", "k", "MIN"), "*-1\r\n");
  t.is(nil(2, "LPOP", "k"), "$-1\r\n");
  t.is(nil(2, "GETDEL", "k"), "$-1\r\n");
  t.is(nil(3, "LPOP", "k", "2"), "_\r\n");
});

test("COPY … DB n is refused for another database only: DB 0 is a write, a DB Redis cannot read goes to Redis for its error", (t) => {
  // keyspace.tcl's `COPY for string does not copy data to no-integer DB` expects Redis's "value is not an integer".
  const table = CommandTable.fromCommandReply([["copy", -3, ["write", "denyoom"], 1, 2, 1, ["@keyspace", "@write", "@slow"], [], [], []]]);
  const b = (...a: string[]): Buffer[] => a.map((x) => Buffer.from(x));
  t.like(table.classify(b("COPY", "a", "b", "DB", "1")), { ok: false, code: ErrorCode.COMMAND_REFUSED });
  t.like(table.classify(b("COPY", "a", "b", "REPLACE", "db", "-2")), { ok: false, code: ErrorCode.COMMAND_REFUSED });
  t.like(table.classify(b("COPY", "a", "b", "DB", "0", "DB", "9")), { ok: false, code: ErrorCode.COMMAND_REFUSED });
  for (const ok of [b("COPY", "a", "b"), b("COPY", "a", "b", "DB", "0"), b("COPY", "a", "b", "DB", "notanumber"), b("COPY", "a", "b", "DB", "01"), b("COPY", "a", "b", "DB")]) {
    t.like(table.classify(ok), { ok: true }, ok.map(String).join(" "));
  }
});

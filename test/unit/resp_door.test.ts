import test from "ava";
import { CommandTable, type CommandInfo } from "../../src/redis/command_table.js";
import { encodeCommand, RespParser, type RespValue } from "../../src/redis/resp_parser.js";
import { replyValueOf } from "../../src/redis/reply_value.js";
import { ConnectionState } from "../../src/frontdoor/connection_state.js";
import { answerLocal, infoWithQjm, type LocalContext } from "../../src/frontdoor/local_commands.js";
import { CLIENT_HELP, type DoorClient } from "../../src/frontdoor/client_command.js";
import { DoorProtocolError, RequestReader, splitInlineArgs } from "../../src/frontdoor/request_framing.js";
import { encodeReplyValue, encodeResp } from "../../src/frontdoor/resp_encoder.js";
import { route, unknownCommand, writeError } from "../../src/frontdoor/router.js";
import { parseWriteReply } from "../../src/client/client.js";
import { recordedReplyOf } from "../../src/dedupe/dedupe_answer.js";
import { decode, encode } from "../../src/protocol/codec.js";
import { decodeRecordPayload, encodeWriteRecord } from "../../src/segment/record.js";

const b = (s: string): Buffer => Buffer.from(s);
const args = (...a: string[]): Buffer[] => a.map(b);

function parse(input: string | Buffer, resp3 = true, chunk = 1): RespValue[] {
  const p = new RespParser({ resp3 });
  const bytes = Buffer.from(input);
  const out: RespValue[] = [];
  for (let i = 0; i < bytes.length; i += chunk) {
    p.push(bytes.subarray(i, i + chunk));
    for (let f = p.next(); f !== undefined; f = p.next()) out.push(f.value);
  }
  return out;
}

test("RESP3 framing: every type, byte by byte, and encoded back to the same bytes", (t) => {
  const input =
    "%2\r\n$1\r\na\r\n:1\r\n+b\r\n_\r\n" + // map
    "~2\r\n,1.5\r\n#t\r\n" + // set, double, boolean
    "(12345678901234567890123\r\n" + // big number
    ":9223372036854775807\r\n" + // integer past 2^53: kept as text
    "=15\r\ntxt:Some string\r\n" + // verbatim
    "!10\r\nERR broken\r\n" + // blob error
    "|1\r\n+key\r\n:7\r\n*1\r\n$1\r\nx\r\n" + // attribute, then the value it belongs to
    ">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n"; // push
  const values = parse(input);
  t.is(values.length, 8);
  t.deepEqual(values[0], { type: "map", items: [{ type: "bulk", value: b("a") }, { type: "integer", value: 1 }, { type: "simple", value: "b" }, { type: "null" }] });
  t.deepEqual(values[3], { type: "bigint", value: "9223372036854775807" });
  t.is(values[6].type, "attributed");
  t.is(Buffer.concat(values.map((v) => encodeResp(v, 3))).toString("latin1"), input);
});

test("RESP3 types are malformed to a RESP2 parser (the replication stream stays strict)", (t) => {
  t.throws(() => parse("%0\r\n", false), { message: /unexpected type byte/ });
  t.throws(() => parse(":9223372036854775807\r\n", false), { message: /not a safe JS integer/ });
});

test("encoder: RESP3 values take Redis's RESP2 shapes for a protocol-2 client", (t) => {
  const two = (v: RespValue): string => encodeResp(v, 2).toString("latin1");
  t.is(two({ type: "null" }), "$-1\r\n");
  t.is(two({ type: "boolean", value: true }), ":1\r\n");
  t.is(two({ type: "double", value: "1.5" }), "$3\r\n1.5\r\n");
  t.is(two({ type: "verbatim", value: b("txt:hello") }), "$5\r\nhello\r\n");
  t.is(two({ type: "map", items: [{ type: "bulk", value: b("k") }, { type: "integer", value: 1 }] }), "*2\r\n$1\r\nk\r\n:1\r\n");
  t.is(two({ type: "array", items: null }), "*-1\r\n");
  t.is(encodeResp({ type: "array", items: null }, 3).toString(), "_\r\n");
  // A status or error text cannot break the stream with a line end.
  t.is(two({ type: "error", value: "ERR a\r\nb" }), "-ERR a\r\n");
});

test("typed write replies: status vs bulk bytes, integer, nil, arrays, in both protocols", (t) => {
  t.is(encodeReplyValue("OK", 2).toString(), "+OK\r\n");
  t.is(encodeReplyValue(b("OK"), 2).toString(), "$2\r\nOK\r\n");
  t.is(encodeReplyValue(7, 3).toString(), ":7\r\n");
  t.is(encodeReplyValue(null, 2).toString(), "$-1\r\n");
  t.is(encodeReplyValue(null, 3).toString(), "_\r\n");
  t.is(encodeReplyValue([b("a"), null, 1], 2).toString(), "*3\r\n$1\r\na\r\n$-1\r\n:1\r\n");
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  t.true(encodeReplyValue(all, 2).equals(Buffer.concat([b("$256\r\n"), all, b("\r\n")])));
  // From the master's parsed RESP2 reply to the tagged form.
  t.deepEqual(replyValueOf({ type: "array", items: [{ type: "simple", value: "OK" }, { type: "bulk", value: b("v") }, { type: "bulk", value: null }] }), ["OK", b("v"), null]);
});

test("an integer write reply past 2^53 comes back exact: master's parse → NATS reply → the door, and through the record a retry is answered from", (t) => {
  for (const text of ["9007199254740993", "9007199254740994", "9007199254740995", "-9223372036854775808", "9223372036854775807"]) {
    // The master reads its Redis with big integers on (src/redis/resp_connection.ts).
    const parser = new RespParser({ resp3: false, bigIntegers: true });
    parser.push(b(`:${text}\r\n`));
    const parsed = parser.next()!.value;
    const typed = replyValueOf(parsed);
    // The reply travels to the door as msgpack (the client library's parseWriteReply gives the door its typed form).
    const atDoor = parseWriteReply(decode(encode({ ok: true, txid: 7, reply: typed })));
    t.false("code" in atDoor, text);
    if ("code" in atDoor) continue;
    t.is(encodeReplyValue(atDoor.typed, 2).toString(), `:${text}\r\n`, text);
    t.is(encodeReplyValue(atDoor.typed, 3).toString(), `:${text}\r\n`, text);
    // Inside an array too (EXEC's reply).
    t.is(encodeReplyValue(replyValueOf({ type: "array", items: [parsed] }), 2).toString(), `*1\r\n:${text}\r\n`, text);
    // The record keeps it for a retry (the dedupe window answers from what a reader of the record sees).
    const { payload } = encodeWriteRecord([], { id: { client: "c", seq: 1 }, reply: recordedReplyOf({ ok: true, value: typed }) }, 1024);
    const kept = decodeRecordPayload(payload).write?.reply;
    t.true(kept !== undefined && kept.ok, text);
    if (kept !== undefined && kept.ok) t.is(encodeReplyValue(kept.value, 2).toString(), `:${text}\r\n`, text);
  }
  // At and below 2^53 the reply is a plain number, as before.
  t.is(replyValueOf({ type: "integer", value: 2 ** 53 - 1 }), 2 ** 53 - 1);
  t.is(encodeReplyValue(2 ** 53, 2).toString(), ":9007199254740992\r\n");
});

test("inline commands split as Redis's sdssplitargs does", (t) => {
  t.deepEqual(splitInlineArgs(b("  SET  k   v ")), args("SET", "k", "v"));
  t.deepEqual(splitInlineArgs(b('SET k "a b\\n\\x41\\""')), [b("SET"), b("k"), b('a b\nA"')]);
  t.deepEqual(splitInlineArgs(b("SET k 'it\\'s'")), args("SET", "k", "it's"));
  t.deepEqual(splitInlineArgs(b('a"b c"')), args("ab c"), "a quote mid-argument opens a quoted part");
  t.deepEqual(splitInlineArgs(b("")), []);
  t.is(splitInlineArgs(b('GET "open')), null);
  t.is(splitInlineArgs(b('GET "a"b')), null, "a closing quote must end the argument");
});

test("request framing: multibulk and inline requests interleaved, split anywhere; bounds refused", (t) => {
  const reader = new RequestReader({ requestBytesMax: 1024 });
  const stream = b("*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n\r\nSET a 'b c'\n*1\r\n$4\r\nPING\r\n");
  const got: Buffer[][] = [];
  for (const byte of stream) {
    reader.push(Buffer.from([byte]));
    for (let r = reader.next(); r !== undefined; r = reader.next()) got.push(r);
  }
  t.deepEqual(got, [args("GET", "k"), args("PING"), [], args("SET", "a", "b c"), args("PING")]);
  const big = new RequestReader({ requestBytesMax: 1024 });
  t.throws(() => big.push(b("*2\r\n$3\r\nGET\r\n$536870912\r\n")) ?? big.next(), { instanceOf: DoorProtocolError, message: /invalid bulk length/ });
  const notBulk = new RequestReader({ requestBytesMax: 1024 });
  notBulk.push(b("*1\r\n:1\r\n"));
  t.throws(() => notBulk.next(), { instanceOf: DoorProtocolError, message: /expected '\$'/ });
  const many = new RequestReader({ requestBytesMax: 8192 });
  many.push(b(`*100\r\n${"$1000\r\n".concat("x".repeat(1000), "\r\n").repeat(80)}`));
  t.throws(() => many.next(), { instanceOf: DoorProtocolError, message: /request larger than 8192 bytes/ });
});

function entry(name: string, arity: number, flags: string[], acl: string[] = [], subcommands: string[] = []): CommandInfo {
  return { name, arity, flags: new Set(flags), aclCategories: new Set(acl), subcommands };
}
const table = new CommandTable([
  entry("get", 2, ["readonly", "fast"]),
  entry("set", -3, ["write", "denyoom"]),
  entry("dbsize", 1, ["readonly", "fast"]),
  entry("blpop", -3, ["write", "blocking"]),
  entry("xread", -4, ["readonly", "blocking", "movablekeys"]),
  entry("flushall", -1, ["write"]),
  entry("object", -2, [], [], ["object|encoding"]),
  entry("monitor", 1, ["admin", "noscript"]),
  entry("lastsave", 1, ["fast"]),
]);

test("router: local, read, write or refuse, with Redis's texts", (t) => {
  const ctx = { commands: table, authenticated: true };
  t.deepEqual(route(args("GET", "k"), ctx), { kind: "read" });
  t.deepEqual(route(args("dbsize"), ctx), { kind: "read" });
  t.deepEqual(route(args("SET", "k", "v"), ctx), { kind: "write" });
  t.deepEqual(route(args("PING"), ctx), { kind: "local", command: "ping" });
  t.deepEqual(route(args("hello", "3"), ctx), { kind: "local", command: "hello" });
  t.deepEqual(route(args("COMMAND", "DOCS"), ctx), { kind: "read" });
  t.deepEqual(route(args("xread", "COUNT", "1", "STREAMS", "s", "0"), ctx), { kind: "read" });
  // A stream named "block" is a key, not the option (it comes after STREAMS).
  t.deepEqual(route(args("xread", "STREAMS", "block", "0"), ctx), { kind: "read" });
  const refused = (a: Buffer[]): string => {
    const r = route(a, ctx);
    return r.kind === "refuse" ? r.error : `not refused: ${r.kind}`;
  };
  t.regex(refused(args("xread", "BLOCK", "0", "STREAMS", "s", "$")), /not supported yet by the front door: blocking commands/);
  t.regex(refused(args("BLPOP", "l", "0")), /not supported yet by the front door: blocking commands/);
  t.deepEqual(route(args("MULTI"), ctx), { kind: "tx", command: "multi" }, "transactions: the connection's (session.ts)");
  t.deepEqual(route(args("SUBSCRIBE", "c"), ctx), { kind: "pubsub", command: "subscribe" }, "pub/sub: the door's (pubsub.ts)");
  t.is(refused(args("PUBLISH", "c")), "ERR wrong number of arguments for 'publish' command");
  t.is(refused(args("nope", "a", "b")), "ERR unknown command 'nope', with args beginning with: 'a' 'b' ");
  t.is(refused(args("GET")), "ERR wrong number of arguments for 'get' command");
  t.regex(refused(args("FLUSHALL")), /^ERR qjm COMMAND_REFUSED 'flushall' is refused/);
  t.regex(refused(args("LASTSAVE")), /neither a write nor a read/);
  // A read-only script may run unbounded on the node's Redis (BUSY for everyone): refused.
  for (const c of ["EVAL_RO", "EVALSHA_RO", "FCALL_RO"]) t.regex(refused(args(c, "return 1", "0")), /not served by the front door: a read-only script/);
  // Before AUTH only AUTH, HELLO, QUIT and RESET; while the node starts, no table.
  t.deepEqual(route(args("GET", "k"), { commands: table, authenticated: false }), { kind: "refuse", error: "NOAUTH Authentication required." });
  t.deepEqual(route(args("AUTH", "pw"), { commands: table, authenticated: false }), { kind: "local", command: "auth" });
  t.regex((route(args("GET", "k"), { commands: undefined, authenticated: true }) as { error: string }).error, /^LOADING /);
  t.true(unknownCommand([b("x"), b("y".repeat(300))]).length < 200, "arguments shown are cut at 128 bytes");
});

test("write errors: Redis's own text; TRYAGAIN only when certainly not applied; whether it may have been applied, and its txid when known", (t) => {
  t.is(writeError("REDIS_ERROR", "WRONGTYPE Operation against a key holding the wrong kind of value"), "WRONGTYPE Operation against a key holding the wrong kind of value");
  t.is(writeError("OVERLOADED", "8192 writes already wait (retried for 5000 ms)"), "TRYAGAIN qjm OVERLOADED not applied, send it again: 8192 writes already wait (retried for 5000 ms)");
  t.is(writeError("NOT_WRITER", "master is stopping"), "TRYAGAIN qjm NOT_WRITER not applied, send it again: master is stopping");
  // The master's NO_QUORUM names the txid it had journaled the write at; "outcome unknown" is said once.
  t.is(
    writeError("NO_QUORUM", "outcome unknown: txid 42 journaled, not confirmed by a majority of journal nodes: fenced by jn1: epoch 3 < promised epoch 4"),
    "ERR qjm NO_QUORUM outcome unknown, the write may have been applied: txid 42 journaled, not confirmed by a majority of journal nodes: fenced by jn1: epoch 3 < promised epoch 4",
  );
  t.is(writeError("TIMEOUT", "no reply in 10000 ms"), "ERR qjm TIMEOUT outcome unknown, the write may have been applied: no reply in 10000 ms");
  // The last attempt was NOT_WRITER, an earlier one's outcome unknown: not TRYAGAIN (sending it again could apply it twice).
  t.is(
    writeError("NOT_WRITER", "master is stopping; an earlier attempt: NO_QUORUM outcome unknown: txid 42 journaled", true),
    "ERR qjm NOT_WRITER outcome unknown, the write may have been applied: master is stopping; an earlier attempt: NO_QUORUM outcome unknown: txid 42 journaled",
  );
  t.is(writeError("REPLY_UNDELIVERABLE", "the write was committed at txid 9; its reply was too large to keep for retries"), "ERR qjm REPLY_UNDELIVERABLE applied, do not send it again: the write was committed at txid 9; its reply was too large to keep for retries");
  t.is(writeError("PAYLOAD_TOO_LARGE", "m"), "ERR qjm PAYLOAD_TOO_LARGE m");
  t.is(writeError("CLOSED", "the client was closed"), "ERR qjm CLOSED outcome unknown, the write may have been applied: the client was closed");
});

/** A door's context for `self`, with one other connection (id 1) besides. */
function ctxOf(password = "", self = new ConnectionState(7, "127.0.0.1:1", "127.0.0.1:2", 0, true), killed: number[] = []): LocalContext {
  const client = (state: ConnectionState): DoorClient => ({ state, inFlight: 1, kill: () => killed.push(state.id) });
  const me = client(self);
  const other = client(new ConnectionState(1, "127.0.0.1:9", "127.0.0.1:2", 0, password !== ""));
  return { password, redisVersion: "7.0.15", role: () => "replica", self: me, clients: () => [other, me], nowMs: 0 };
}

test("local commands: HELLO switches protocol and authenticates, AUTH, SELECT, CLIENT, RESET", (t) => {
  const s = new ConnectionState(7, "127.0.0.1:1", "127.0.0.1:2", 0, true);
  const ctx = ctxOf("secret", s);
  const reply = (a: Buffer[]): RespValue => {
    const r = answerLocal(a[0].toString().toLowerCase() as "hello", a, s, ctx);
    return "reply" in r ? r.reply : { type: "simple", value: "upstream" };
  };
  t.deepEqual(reply(args("HELLO", "3")), { type: "error", value: "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time" });
  t.deepEqual(reply(args("AUTH", "wrong")), { type: "error", value: "WRONGPASS invalid username-password pair or user is disabled." });
  const hello = reply(args("HELLO", "3", "AUTH", "default", "secret", "SETNAME", "app"));
  t.is(hello.type, "map");
  t.is(s.protocol, 3);
  t.true(s.authenticated);
  t.is(s.name, "app");
  t.regex(encodeResp(hello, 3).toString(), /\$4\r\nrole\r\n\$7\r\nreplica\r\n/);
  t.deepEqual(reply(args("HELLO", "4")), { type: "error", value: "NOPROTO unsupported protocol version" });
  t.deepEqual(reply(args("SELECT", "0")), { type: "simple", value: "OK" });
  t.regex((reply(args("SELECT", "1")) as { value: string }).value, /SELECT 1 is not supported/);
  t.deepEqual(reply(args("CLIENT", "ID")), { type: "integer", value: 7 });
  // CLIENT LIST: every connection for an authenticated connection of a door with a password; without one, only itself.
  t.regex((reply(args("CLIENT", "LIST")) as { value: Buffer }).value.toString(), /^id=1 [^\n]*\nid=7 [^\n]*\n$/);
  const anonymous = answerLocal("client", args("CLIENT", "LIST"), s, ctxOf("", s));
  t.regex(("reply" in anonymous ? (anonymous.reply as { value: Buffer }).value : Buffer.alloc(0)).toString(), /^id=7 /);
  t.deepEqual(reply(args("CLIENT", "SETNAME", "a b")), { type: "error", value: "ERR Client names cannot contain spaces, newlines or special characters." });
  t.deepEqual(reply(args("RESET")), { type: "simple", value: "RESET" });
  t.is(s.protocol, 2);
  t.false(s.authenticated, "RESET forgets the authentication");
  t.deepEqual(answerLocal("quit", args("QUIT"), s, ctx), { reply: { type: "simple", value: "OK" }, close: true });
  t.deepEqual(answerLocal("config", args("CONFIG", "GET", "requirepass"), s, ctx), { reply: { type: "map", items: [] } }, "never a password");
});

// Review s22: CLIENT LIST ID ignored its filter; KILL, HELP, NO-EVICT… were refused. Texts are Redis 7.0.15's.
test("CLIENT: LIST ID / TYPE filter, KILL by its filters and the old ip:port form, HELP, NO-EVICT; PAUSE and TRACKING refused plainly", (t) => {
  const killed: number[] = [];
  const self = new ConnectionState(7, "127.0.0.1:1", "127.0.0.1:2", 0, false);
  const admin = ctxOf("secret", self, killed);
  const run = (ctx: LocalContext, ...a: string[]): { reply: RespValue; close?: true } => {
    const r = answerLocal("client", args(...a), self, ctx);
    if (!("reply" in r)) throw new Error("no reply");
    return r;
  };
  const text = (r: { reply: RespValue }): string => encodeResp(r.reply, 2).toString();
  t.regex(text(run(admin, "CLIENT", "LIST", "ID", "1")), /^\$\d+\r\nid=1 [^\n]*\n\r\n$/);
  t.is(text(run(admin, "CLIENT", "LIST", "ID", "2")), "$0\r\n\r\n");
  t.is(text(run(admin, "CLIENT", "LIST", "ID", "1", "x")), "-ERR Invalid client ID\r\n");
  t.is(text(run(admin, "CLIENT", "LIST", "ID")), "-ERR syntax error\r\n");
  t.is(text(run(admin, "CLIENT", "LIST", "TYPE", "pubsub")), "$0\r\n\r\n");
  t.is(text(run(admin, "CLIENT", "LIST", "TYPE", "foo")), "-ERR Unknown client type 'foo'\r\n");
  t.is(text(run(admin, "CLIENT", "KILL", "ID", "999")), ":0\r\n");
  t.is(text(run(admin, "CLIENT", "KILL", "ID", "x")), "-ERR client-id should be greater than 0\r\n");
  t.is(text(run(admin, "CLIENT", "KILL", "USER", "nobody")), "-ERR No such user 'nobody'\r\n");
  t.is(text(run(admin, "CLIENT", "KILL", "1.2.3.4:5")), "-ERR No such client\r\n");
  t.is(text(run(admin, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "maybe")), "-ERR syntax error\r\n");
  t.is(text(run(admin, "CLIENT", "KILL")), "-ERR wrong number of arguments for 'client|kill' command\r\n");
  t.deepEqual(killed, []);
  t.is(text(run(admin, "CLIENT", "KILL", "USER", "default")), ":1\r\n", "SKIPME yes by default");
  t.deepEqual(killed, [1]);
  t.is(text(run(admin, "CLIENT", "KILL", "127.0.0.1:9")), "+OK\r\n");
  const me = run(admin, "CLIENT", "KILL", "ID", "7", "SKIPME", "no");
  t.is(text(me), ":1\r\n");
  t.true(me.close, "killing itself: the reply, then closed");
  // Without a door password each connection is anonymous: it sees (and kills) only itself.
  const anonymous = ctxOf("", self, killed);
  t.is(text(run(anonymous, "CLIENT", "KILL", "ID", "1")), ":0\r\n");
  t.deepEqual(killed, [1, 1]);
  t.is((run(admin, "CLIENT", "HELP").reply as { items: RespValue[] }).items.length, CLIENT_HELP.length);
  t.is(text(run(admin, "CLIENT", "NO-EVICT", "on")), "+OK\r\n");
  t.is(text(run(admin, "CLIENT", "NO-EVICT", "maybe")), "-ERR syntax error\r\n");
  t.is(text(run(admin, "CLIENT", "UNPAUSE")), "+OK\r\n");
  t.regex(text(run(admin, "CLIENT", "PAUSE", "100")), /^-ERR qjm: CLIENT PAUSE is not supported/);
  t.regex(text(run(admin, "CLIENT", "TRACKING", "on")), /^-ERR qjm: CLIENT TRACKING is not supported/);
  t.is(text(run(admin, "CLIENT", "TRACKINGINFO")), "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n");
  t.is(text(run(admin, "CLIENT", "FOO")), "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n");
  t.is(text(run(admin, "CLIENT")), "-ERR wrong number of arguments for 'client' command\r\n");
});

test("INFO's qjm section: added when the sections asked for include it", (t) => {
  const q = { node: "d2", role: "replica", health: "ok", epoch: 3, committedTxid: 10, appliedTxid: 7, connections: 2, closedForOutput: 1, pubsub: { channels: 4, patterns: 1, published: 9, received: 8, dropped: 2, closedForOutput: 1 } };
  const all = infoWithQjm("# Server\r\nredis_version:7.0.15\r\n", [], q);
  t.regex(all, /^# Server\r\nredis_version:7\.0\.15\r\n\r\n# qjm\r\nqjm_node:d2\r\nqjm_role:replica\r\n.*qjm_lag:3\r\n.*qjm_door_closed_output_bound:1\r\nqjm_pubsub_channels:4\r\n.*qjm_pubsub_dropped_bad:2\r\nqjm_pubsub_closed_output_bound:1\r\n/s);
  t.is(infoWithQjm("# Keyspace\r\n", [b("keyspace")], q), "# Keyspace\r\n");
  t.regex(infoWithQjm("", [b("qjm")], q), /^# qjm\r\n/);
});

test("INFO keyspace: only database 0, whatever the sections (a replica's applied marker lives in database 1)", (t) => {
  const q = { node: "d2", role: "replica", health: "ok", epoch: 3, committedTxid: 10, appliedTxid: 7, connections: 2, closedForOutput: 1, pubsub: { channels: 0, patterns: 0, published: 0, received: 0, dropped: 0, closedForOutput: 0 } };
  const redis = "# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\ndb1:keys=1,expires=0,avg_ttl=0\r\ndb10:keys=2,expires=0,avg_ttl=0\r\n";
  t.is(infoWithQjm(redis, [b("keyspace")], q), "# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n");
  t.is(infoWithQjm("# Keyspace\r\ndb1:keys=1,expires=0,avg_ttl=0\r\n", [b("keyspace")], q), "# Keyspace\r\n", "an empty keyspace as the master's");
  t.regex(infoWithQjm(`# Server\r\nredis_version:7.0.15\r\n\r\n${redis}`, [], q), /# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n\r\n# qjm\r\n/);
});

// Review s22: SADD of 20,000 small members was refused by an argument-count bound (bound / 64) though its bytes fit.
test("request framing: the count follows the bytes — 20,000 small arguments taken; a request past the byte bound refused as its bytes come, not at its header", (t) => {
  const members = Array.from({ length: 20_000 }, (_, i) => `m${i}`);
  const ok = new RequestReader({ requestBytesMax: 1024 * 1024 });
  ok.push(encodeCommand(["SADD", "s", ...members]));
  t.is(ok.next()?.length, 20_002);
  const empties = new RequestReader({ requestBytesMax: 1024 * 1024 });
  empties.push(b(`*174000\r\n${"$0\r\n\r\n".repeat(174_000)}`));
  t.is(empties.next()?.length, 174_000, "as many empty arguments as 1 MiB holds");
  // Redis takes any count up to INT_MAX and waits for the arguments; so does the door, until their bytes pass the bound.
  const huge = new RequestReader({ requestBytesMax: 1024 * 1024 });
  huge.push(b("*1048576\r\n"));
  t.is(huge.next(), undefined);
  t.throws(() => {
    for (let i = 0; i < 200; i++) {
      huge.push(b("$0\r\n\r\n".repeat(1000)));
      huge.next();
    }
  }, { instanceOf: DoorProtocolError, message: /request larger than 1048576 bytes/ });
  const intMax = new RequestReader({ requestBytesMax: 1024 * 1024 });
  intMax.push(b("*2147483648\r\n"));
  t.throws(() => intMax.next(), { instanceOf: DoorProtocolError, message: "invalid multibulk length" });
});

test("request framing: Redis 7.0's reading of odd bytes (networking.c), each case as redis-server answers it", (t) => {
  const cases: [string, (Buffer[] | string)[]][] = [
    ["*01\r\n$4\r\nPING\r\n", ["invalid multibulk length"]],
    ["*1\r\n$04\r\nPING\r\n", ["invalid bulk length"]],
    ["*+1\r\n", ["invalid multibulk length"]],
    ["*  1\r\n", ["invalid multibulk length"]],
    ["*x\r\n", ["invalid multibulk length"]],
    ["*-1\r\n*0\r\nPING\r\n", [[], [], args("PING")]],
    ["*1\r\n$4\r\nPINGXX\r\n", [args("PING"), []]], // the two bytes after a bulk string are skipped unread; "\r\n" is then an empty line
    ["*1\r\n$4\r\nPINGPING\r\n", [args("PING"), args("NG")]],
    ["*1\r\n$-1\r\n", ["invalid bulk length"]],
    ["*1\r\n$x\r\n", ["invalid bulk length"]],
    ["*1\r\n:1\r\n", ["expected '$', got ':'"]],
    ["*1\r\n*1\r\n", ["expected '$', got '*'"]],
    ["$4\r\nPING\r\n", [args("$4"), args("PING")]], // not `*`: inline lines
    ["*1\rX$4\rXPING\r\n", [args("PING")]], // the byte after a header's \r is not looked at
    ["GET \"open\r\n", ["unbalanced quotes in request"]],
    ["PING\n", [args("PING")]],
  ];
  for (const [input, expected] of cases) {
    const reader = new RequestReader({ requestBytesMax: 1024 * 1024 });
    reader.push(b(input));
    const got: (Buffer[] | string)[] = [];
    try {
      for (let r = reader.next(); r !== undefined; r = reader.next()) got.push(r);
    } catch (err) {
      got.push((err as Error).message);
    }
    t.deepEqual(got, expected, JSON.stringify(input));
  }
  // A header line or an inline request without its line end: waited for up to 64 KiB, then refused.
  for (const [start, text] of [["*1", "too big mbulk count string"], ["*1\r\n$1", "too big bulk count string"], ["GET", "too big inline request"]]) {
    const reader = new RequestReader({ requestBytesMax: 1024 * 1024 });
    reader.push(b(start + "1".repeat(60_000)));
    t.is(reader.next(), undefined, start);
    reader.push(b("1".repeat(10_000)));
    t.throws(() => reader.next(), { instanceOf: DoorProtocolError, message: text }, start);
  }
  // A NUL before the line end hides it, as strchr does on Redis's query buffer: nothing is answered.
  const nul = new RequestReader({ requestBytesMax: 1024 * 1024 });
  nul.push(b("PI\u0000NG\r\n"));
  t.is(nul.next(), undefined);
});

test("request framing before AUTH: Redis's small bounds (10 arguments, 16 KiB each); the full ones after authenticated(), pipelined bytes kept", (t) => {
  const items = new RequestReader({ requestBytesMax: 1024 * 1024, unauthenticated: true });
  items.push(b("*11\r\n"));
  t.throws(() => items.next(), { instanceOf: DoorProtocolError, message: /unauthenticated multibulk length/ });
  const bulk = new RequestReader({ requestBytesMax: 1024 * 1024, unauthenticated: true });
  bulk.push(b("*2\r\n$4\r\nAUTH\r\n$16385\r\n"));
  t.throws(() => bulk.next(), { instanceOf: DoorProtocolError, message: /unauthenticated bulk length/ });
  const r = new RequestReader({ requestBytesMax: 1024 * 1024, unauthenticated: true });
  const big = "x".repeat(100_000);
  const stream = b(`*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${big.length}\r\n${big}\r\n`);
  // Split anywhere: the bytes after AUTH pushed before it was taken go to the full-size parser.
  r.push(stream.subarray(0, 30));
  t.deepEqual(r.next(), args("AUTH", "pw"));
  r.authenticated();
  r.push(stream.subarray(30));
  t.deepEqual(r.next(), args("SET", "k", big));
  t.is(r.next(), undefined);
});

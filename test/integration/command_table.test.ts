/** The write-command table, built from a real redis-server 7.0's COMMAND reply. */
import test from "ava";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import { freePort } from "../../src/process/ports.js";
import { CommandTable } from "../../src/redis/command_table.js";

let server: RedisServer | undefined;
let redis: Redis | undefined;
let table: CommandTable;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-command-table-"));

test.before(async () => {
  server = await startRedisServer({ port: await freePort(), dir, persistent: false, startTimeoutMs: 15000 });
  redis = new Redis({ port: server.port, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on("error", () => {});
  table = await CommandTable.load(redis);
});

test.after.always(async () => {
  redis?.disconnect();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const code = (...args: string[]): string => {
  const c = table.classify(args);
  return c.ok ? `ok:${c.name}` : c.code;
};

test("the table holds the server's commands", (t) => {
  t.true(table.size > 200);
  t.deepEqual(table.lookup("SET")?.flags.has("write"), true);
});

test("writes and scripts are allowed", (t) => {
  t.is(code("SET", "k", "v"), "ok:set");
  t.is(code("set", "k", "v", "PX", "100"), "ok:set");
  t.is(code("HSET", "h", "f", "v"), "ok:hset");
  t.is(code("EVAL", "return 1", "0"), "ok:eval");
  t.is(code("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"), "ok:evalsha");
  t.is(code("FCALL", "f", "0"), "ok:fcall");
  t.is(code("SPOP", "s"), "ok:spop");
  t.is(code("COPY", "a", "b", "REPLACE"), "ok:copy");
  t.true(table.classify(["EVAL", "return 1", "0"]).ok && (table.classify(["EVAL", "return 1", "0"]) as { script: boolean }).script, "scripts are marked: the master checks their writes");
  t.false((table.classify(["SET", "k", "v"]) as { script: boolean }).script);
});

// Issue #10 class 4: FLUSHALL and FLUSHDB fire no keyspace event, so the master could not check a script's; the rest
// would break the replication link, the marker or the master's Redis.
test("admin, link-breaking and keyspace-wide commands are refused with a clear COMMAND_REFUSED", (t) => {
  for (const args of [
    ["FLUSHALL"], ["FLUSHALL", "ASYNC"], ["FLUSHDB"], ["FLUSHDB", "SYNC"], ["CONFIG", "SET", "notify-keyspace-events", ""], ["DEBUG", "SLEEP", "0"],
    ["SHUTDOWN"], ["SHUTDOWN", "NOSAVE"], ["REPLICAOF", "NO", "ONE"], ["SLAVEOF", "NO", "ONE"], ["FAILOVER"], ["SYNC"], ["PSYNC", "?", "-1"],
    ["MONITOR"], ["CLIENT", "KILL", "TYPE", "replica"], ["SCRIPT", "FLUSH"], ["FUNCTION", "FLUSH"], ["SAVE"], ["BGSAVE"], ["BGREWRITEAOF"],
    ["ACL", "SETUSER", "x"], ["MODULE", "LOAD", "x"], ["PUBLISH", "__qjm:marker", "1"], ["SUBSCRIBE", "c"], ["SWAPDB", "0", "1"],
    ["MOVE", "k", "1"], ["SELECT", "1"], ["MIGRATE", "h", "1", "k", "0", "10"], ["RESTORE-ASKING", "k", "0", "x"], ["PFDEBUG", "GETREG", "k"],
    ["PFSELFTEST"], ["LASTSAVE"], ["WAIT", "0", "0"], ["RESET"], ["QUIT"], ["READONLY"],
  ]) {
    const c = table.classify(args);
    t.false(c.ok, args.join(" "));
    if (!c.ok) {
      t.true(c.code === "COMMAND_REFUSED" || c.code === "NOT_A_WRITE", `${args.join(" ")}: ${c.code}`);
      t.true(c.message.length > 10, `${args.join(" ")}: a message says why`);
    }
  }
  t.regex((table.classify(["FLUSHALL"]) as { message: string }).message, /keyspace events/);
});

test("Buffer arguments are classified like strings", (t) => {
  t.deepEqual(table.classify([Buffer.from("sEt"), Buffer.from("k"), Buffer.from([0xff, 0x00])]), { ok: true, name: "set", script: false });
  t.is(table.classify([Buffer.from("COPY"), Buffer.from("a"), Buffer.from("b"), Buffer.from("db"), Buffer.from("1")]).ok, false);
});

test("reads are NOT_A_WRITE", (t) => {
  t.is(code("GET", "k"), "NOT_A_WRITE");
  t.is(code("HGETALL", "h"), "NOT_A_WRITE");
  t.is(code("EVAL_RO", "return 1", "0"), "NOT_A_WRITE");
  t.is(code("FCALL_RO", "f", "0"), "NOT_A_WRITE");
  t.is(code("PING"), "NOT_A_WRITE");
  t.is(code("PFCOUNT", "hll"), "NOT_A_WRITE");
});

test("blocking, pub/sub, admin, containers, transactions and other databases are COMMAND_REFUSED", (t) => {
  t.is(code("BLPOP", "l", "0"), "COMMAND_REFUSED");
  t.is(code("BLMOVE", "a", "b", "LEFT", "RIGHT", "0"), "COMMAND_REFUSED");
  t.is(code("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"), "COMMAND_REFUSED");
  t.is(code("SUBSCRIBE", "ch"), "COMMAND_REFUSED");
  t.is(code("PUBLISH", "ch", "m"), "COMMAND_REFUSED");
  t.is(code("SPUBLISH", "ch", "m"), "COMMAND_REFUSED");
  t.is(code("SHUTDOWN"), "COMMAND_REFUSED");
  t.is(code("CONFIG", "SET", "maxmemory", "0"), "COMMAND_REFUSED");
  t.is(code("CONFIG", "GET", "maxmemory"), "COMMAND_REFUSED");
  t.is(code("OBJECT", "ENCODING", "k"), "COMMAND_REFUSED");
  t.is(code("FUNCTION", "FLUSH"), "COMMAND_REFUSED");
  t.is(code("SCRIPT", "FLUSH"), "COMMAND_REFUSED");
  t.is(code("CLIENT", "KILL", "ID", "1"), "COMMAND_REFUSED");
  t.is(code("MULTI"), "COMMAND_REFUSED");
  t.is(code("EXEC"), "COMMAND_REFUSED");
  t.is(code("DISCARD"), "COMMAND_REFUSED");
  t.is(code("WATCH", "k"), "COMMAND_REFUSED");
  t.is(code("UNWATCH"), "COMMAND_REFUSED");
  t.is(code("MOVE", "k", "1"), "COMMAND_REFUSED");
  t.is(code("SWAPDB", "0", "1"), "COMMAND_REFUSED");
  t.is(code("SELECT", "0"), "COMMAND_REFUSED");
  t.is(code("COPY", "a", "b", "DB", "1"), "COMMAND_REFUSED");
  t.is(code("MIGRATE", "127.0.0.1", "1", "k", "0", "1000"), "COMMAND_REFUSED");
});

test("arity and unknown names", (t) => {
  t.is(code("SET", "k"), "WRONG_ARITY");
  t.is(code("GET", "k", "extra"), "WRONG_ARITY");
  t.is(code("MOVE", "k"), "WRONG_ARITY");
  t.is(code("NOPE"), "UNKNOWN_COMMAND");
  t.is(code("config|get", "x"), "UNKNOWN_COMMAND");
  t.is(table.classify([]).ok, false);
  const c = table.classify(["SET", "k"]);
  t.true(!c.ok && c.message.includes("set"));
});

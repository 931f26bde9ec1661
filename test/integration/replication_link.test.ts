/**
 * The replication link against a real redis-server 7.0: what Redis propagates for each kind of client write,
 * and that our ACK offsets are the ones Redis itself counts.
 */
import test from "ava";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import { freePort } from "../../src/process/ports.js";
import { encodeCommand } from "../../src/redis/resp_parser.js";
import {
  ReplicationLink,
  ReplicationLinkError,
  isCommand,
  isReplicationNoise,
  type ReplicatedCommand,
  type ReplicationLinkOptions,
} from "../../src/master/replication_link.js";
import { EffectAssembler, newMarkerChannel } from "../../src/master/effect_assembler.js";

const servers: RedisServer[] = [];
const links: ReplicationLink[] = [];
const clients: Redis[] = [];
const dirs: string[] = [];

async function startServer(extraArgs: string[] = []): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-repl-link-"));
  dirs.push(dir);
  const server = await startRedisServer({ port: await freePort(), dir, persistent: false, startTimeoutMs: 15000, extraArgs });
  servers.push(server);
  return server;
}

function client(server: RedisServer): Redis {
  const redis = new Redis({ port: server.port, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on("error", () => {});
  clients.push(redis);
  return redis;
}

function openLink(options: ReplicationLinkOptions): ReplicationLink {
  const link = new ReplicationLink(options);
  links.push(link);
  return link;
}

test.after.always(async () => {
  await Promise.all(links.map((l) => l.close()));
  for (const c of clients) c.disconnect();
  for (const s of servers) await s.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Records a link's commands and lets a test await one (bounded). */
class Recorder {
  readonly commands: ReplicatedCommand[] = [];
  private waiters: { pred: (c: ReplicatedCommand) => boolean; resolve: (c: ReplicatedCommand) => void }[] = [];

  constructor(link: ReplicationLink) {
    link.on("command", (c) => {
      this.commands.push(c);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(c)) return true;
        w.resolve(c);
        return false;
      });
    });
  }

  async waitFor(pred: (c: ReplicatedCommand) => boolean, what: string, timeoutMs = 10_000): Promise<ReplicatedCommand> {
    const seen = this.commands.find(pred);
    if (seen) return seen;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<ReplicatedCommand>((resolve, reject) => {
        this.waiters.push({ pred, resolve });
        timer = setTimeout(() => reject(new Error(`no ${what} on the stream within ${timeoutMs} ms; saw ${JSON.stringify(this.strings())}`)), timeoutMs);
      });
    } finally {
      clearTimeout(timer);
    }
  }

  strings(): string[][] {
    return this.commands.map((c) => c.args.map((a) => a.toString()));
  }
}

/** Polls `probe` until it returns a value (bounded): for state Redis only exposes through INFO. */
async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function infoField(info: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:(.*)$`, "m").exec(info);
  return m?.[1].trim();
}

/** Fills Redis so the RDB spans many socket chunks (the skip must stream it); random bytes defeat RDB compression. */
async function preload(redis: Redis, keys: number): Promise<void> {
  const pipe = redis.pipeline();
  for (let i = 0; i < keys; i++) pipe.set(`preload:${i}`, crypto.randomBytes(1024));
  await pipe.exec();
}

test("the stream carries Redis's own effects, in order, and the ACKed offset catches up", async (t) => {
  const server = await startServer(); // diskless sync (the master's configuration): $EOF:<mark> form
  const redis = client(server);
  await preload(redis, 3000);
  const link = openLink({ port: server.port, replAckIntervalMs: 50 });
  const errors: ReplicationLinkError[] = [];
  link.on("error", (e) => errors.push(e));
  const rec = new Recorder(link);
  const info = await link.ready;
  t.regex(info.replid, /^[0-9a-f]{40}$/);
  t.true(link.live);

  const beforeSet = Date.now();
  t.is(await redis.set("a", "1", "EX", 100), "OK");
  const afterSet = Date.now();
  t.is(await redis.sadd("s", "m1", "m2", "m3"), 3);
  const popped = await redis.spop("s");
  t.is(await redis.set("f", "1.5"), "OK");
  t.is(await redis.incrbyfloat("f", "0.25"), "1.75");
  // One write in a script: Redis 7.0 propagates it bare; two or more: wrapped in MULTI/EXEC.
  const rnd1 = String(await redis.eval("local v = tostring(math.random()) redis.call('set', 'r', v) return v", 0));
  const rnd2 = String(await redis.eval("local v = tostring(math.random()) redis.call('set', 'r2', v) redis.call('incr', 'n') return v", 0));
  t.is(await redis.set("x", "y"), "OK");
  t.is(await redis.set("x", "z", "NX"), null);
  t.is(await redis.publish("__qjm:marker", "7"), 0);
  t.is(await redis.set("k", "v"), "OK");
  const beforeExpire = Date.now();
  t.is(await redis.pexpire("k", 1), 1);
  const afterExpire = Date.now();
  // Redis's active expiry deletes k within a cycle or two and propagates a DEL.
  await rec.waitFor((c) => isCommand(c.args, "del") && c.args[1]?.toString() === "k", "DEL k");

  const raw = rec.strings();
  // Redis's keep-alive PING (every repl-ping-replica-period) may come first; then SELECT 0 precedes the first command.
  t.deepEqual(raw.find((a) => a[0].toLowerCase() !== "ping"), ["SELECT", "0"], "Redis selects db 0 before the first command");
  const seen = rec.commands.filter((c) => !isReplicationNoise(c.args)).map((c) => c.args.map((a) => a.toString()));
  const at = (i: number, j: number): number => Number(seen[i]?.[j]);
  t.deepEqual(seen, [
    ["SET", "a", "1", "PXAT", seen[0][4]],
    ["sadd", "s", "m1", "m2", "m3"],
    ["SREM", "s", String(popped)],
    ["set", "f", "1.5"],
    ["SET", "f", "1.75", "KEEPTTL"],
    ["set", "r", rnd1],
    ["MULTI"],
    ["set", "r2", rnd2],
    ["incr", "n"],
    ["EXEC"],
    ["set", "x", "y"],
    // nothing for the failed SET x z NX
    ["publish", "__qjm:marker", "7"],
    ["set", "k", "v"],
    ["PEXPIREAT", "k", seen[13][2]],
    ["DEL", "k"],
  ]);
  t.true(at(0, 4) >= beforeSet + 100_000 && at(0, 4) <= afterSet + 100_000, "EX 100 becomes an absolute PXAT");
  t.true(at(13, 2) >= beforeExpire + 1 && at(13, 2) <= afterExpire + 1, "PEXPIRE 1 becomes an absolute PEXPIREAT");

  // Offsets: each command's offset is the previous one plus its exact RESP size, starting at FULLRESYNC's offset.
  let expected = info.initialOffset;
  for (const c of rec.commands) {
    expected += encodeCommand(c.args).length;
    t.is(c.offset, expected);
  }
  t.is(link.offset, expected);

  // Redis's view: our replica is online and its ACKed offset reaches master_repl_offset.
  const acked = await until(async () => {
    const repl = await redis.info("replication");
    const master = Number(infoField(repl, "master_repl_offset"));
    const slave = /state=online,offset=(\d+)/.exec(infoField(repl, "slave0") ?? "");
    return slave && Number(slave[1]) === master && master === link.offset ? master : undefined;
  }, "the replica's ACK to reach master_repl_offset");
  t.true(acked > info.initialOffset);
  t.deepEqual(errors, []);

  await link.close();
  t.is(await link.done, null);
  t.false(link.live);
});

test("diskless sync: a write made as soon as the link is ready streams at once, not after the next regular ACK", async (t) => {
  // Redis starts the stream of a diskless sync on an ACK that reaches it once its cron put the replica online; a
  // new master's first write waited a whole replAckIntervalMs (1 s) for the second ACK. Long here, to tell them apart.
  const server = await startServer();
  const redis = client(server);
  const link = openLink({ port: server.port, replAckIntervalMs: 10_000 });
  const rec = new Recorder(link);
  await link.ready;
  const started = Date.now();
  t.is(await redis.set("first", "1"), "OK");
  await rec.waitFor((c) => isCommand(c.args, "set"), "SET first", 15_000);
  const ms = Date.now() - started;
  t.log(`the first write reached the link ${ms} ms after it was made`);
  t.true(ms < 3000, `${ms} ms`);
});

test("disk-based sync: the sized $<len> RDB is skipped and the stream follows", async (t) => {
  const server = await startServer(["--repl-diskless-sync", "no"]);
  const redis = client(server);
  await preload(redis, 3000);
  const link = openLink({ port: server.port, replAckIntervalMs: 50 });
  const rec = new Recorder(link);
  await link.ready;
  t.is(await redis.hset("h", "f", "1"), 1);
  const hset = await rec.waitFor((c) => isCommand(c.args, "hset"), "HSET");
  t.deepEqual(hset.args.map(String), ["hset", "h", "f", "1"]);
  t.deepEqual(rec.strings().filter((a) => !isReplicationNoise(a.map((s) => Buffer.from(s)))), [["hset", "h", "f", "1"]]);
  await until(async () => {
    const repl = await redis.info("replication");
    const slave = /state=online,offset=(\d+)/.exec(infoField(repl, "slave0") ?? "");
    return slave && Number(slave[1]) === Number(infoField(repl, "master_repl_offset")) ? true : undefined;
  }, "the ACK to catch up");

  // Redis going away is one typed error, reported once, and `done` carries it.
  const errors: ReplicationLinkError[] = [];
  link.on("error", (e) => errors.push(e));
  await server.stop();
  const err = await link.done;
  t.true(err instanceof ReplicationLinkError);
  t.is(err?.code, "INTERNAL");
  t.deepEqual(errors, [err]);
  t.false(link.live);
});

test("a script's COPY … DB 1 passes the master's ACL and streams as is in database 0: the assembler does not journal it", async (t) => {
  // The master's Redis has two databases (infra/redis/master.conf: a replica's snapshot holds its applied marker in
  // database 1) and the ACL of master_redis.ts guard; the door refuses COPY … DB n, a script's is only seen here.
  const server = await startServer(["--databases", "2"]);
  const redis = client(server);
  await redis.call("ACL", "SETUSER", "default", "-flushall", "-flushdb", "-select", "+select|0", "-move", "-swapdb");
  const link = openLink({ port: server.port, replAckIntervalMs: 50 });
  const rec = new Recorder(link);
  await link.ready;
  await t.throwsAsync(redis.eval("return redis.call('SELECT', '1')", 0), { message: /can't run this command/ });
  t.is(await redis.set("k", "12345"), "OK");
  t.is(await redis.eval("return redis.call('COPY', 'k', '__qjm:applied', 'DB', '1', 'REPLACE')", 0), 1);
  const copy = await rec.waitFor((c) => isCommand(c.args, "copy"), "COPY");
  t.deepEqual(copy.args.map(String), ["COPY", "k", "__qjm:applied", "DB", "1", "REPLACE"]);
  const assembler = new EffectAssembler(newMarkerChannel(), 1);
  for (const c of rec.commands) assembler.push(c.args);
  const orphans = assembler.takeOrphans().map((e) => e.map((a) => Buffer.from(a).toString()));
  t.deepEqual(orphans, [["set", "k", "12345"]]);
  t.regex(assembler.takeSurprises().join("\n"), /COPY into database "1"/);
});

test("more than replStreamBytesMax of an incomplete command fails the link with 'overflow'", async (t) => {
  const server = await startServer();
  const redis = client(server);
  const link = openLink({ port: server.port, replStreamBytesMax: 16 * 1024 });
  const errors: ReplicationLinkError[] = [];
  link.on("error", (e) => errors.push(e));
  await link.ready;
  // 1 MiB cannot arrive in one socket read (Node reads at most 64 KiB), so more than 16 KiB is buffered first.
  await redis.set("big", Buffer.alloc(1024 * 1024, 0x61));
  const err = await link.done;
  t.is(err?.reason, "overflow");
  t.deepEqual(errors, [err]);
});

test("nothing listening: ready rejects with a socket ReplicationLinkError", async (t) => {
  const link = openLink({ port: await freePort() });
  const err = await t.throwsAsync(link.ready, { instanceOf: ReplicationLinkError });
  t.is(err?.reason, "socket");
  t.is(await link.done, err);
});

test("close() before the handshake ends rejects ready and resolves done with null", async (t) => {
  const server = await startServer();
  const link = openLink({ port: server.port });
  const errors: ReplicationLinkError[] = [];
  link.on("error", (e) => errors.push(e));
  await link.close();
  await t.throwsAsync(link.ready, { instanceOf: ReplicationLinkError });
  t.is(await link.done, null);
  t.deepEqual(errors, []);
});

test("isReplicationNoise and isCommand", (t) => {
  const args = (...a: string[]): Buffer[] => a.map((s) => Buffer.from(s));
  t.true(isReplicationNoise(args("PING")));
  t.true(isReplicationNoise(args("select", "0")));
  t.true(isReplicationNoise(args("REPLCONF", "GETACK", "*")));
  t.false(isReplicationNoise(args("SELECT", "1")));
  t.false(isReplicationNoise(args("SET", "a", "1")));
  t.false(isReplicationNoise(args("MULTI")));
  t.true(isCommand(args("pExPiReAt", "k", "1"), "PEXPIREAT"));
  t.false(isCommand(args("PEXPIRE"), "pexpireat"));
  t.false(isCommand([], "set"));
});

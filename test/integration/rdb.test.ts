/**
 * RDB snapshots and RDB loading against real redis-server 7.0 processes: a snapshot taken with BGSAVE at a marker
 * position, loaded into another running Redis by playing the master of a full resync.
 */
import test from "ava";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../../src/process/ports.js";
import { crc64 } from "../../src/redis/rdb_checksum.js";
import { RdbLoadError, loadRdb, type RdbLoadOptions, type RdbLoadProgress } from "../../src/redis/rdb_loader.js";
import { startSnapshot, takeSnapshot, type SnapshotOptions } from "../../src/redis/rdb_snapshot.js";
import { readInfo } from "../../src/redis/redis_info.js";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import { diffKeyspaces, dumpKeyspace } from "../helpers/harness.js";

const MARKER = "test:marker";
const dirs: string[] = [];
const servers: RedisServer[] = [];
const clients: Redis[] = [];

function tempDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `qjm-rdb-${name}-`));
  dirs.push(dir);
  return dir;
}

async function startServer(dir: string, persistent: boolean, port?: number): Promise<RedisServer> {
  const server = await startRedisServer({ port: port ?? (await freePort()), dir, persistent, startTimeoutMs: 15000 });
  servers.push(server);
  return server;
}

function client(server: RedisServer): Redis {
  const redis = new Redis({ port: server.port, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on("error", () => {});
  clients.push(redis);
  return redis;
}

test.after.always(async () => {
  for (const c of clients) c.disconnect();
  for (const s of servers) await s.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function snapshotOptions(redis: Redis, server: { dir: string }, file: string): SnapshotOptions {
  return { dir: server.dir, path: file, marker: () => redis.get(MARKER), pollMs: 10, forkTimeoutMs: 20_000, saveTimeoutMs: 60_000 };
}

function loadOptions(bytes: number, onProgress?: (p: RdbLoadProgress) => void): RdbLoadOptions {
  return { bytes, handshakeTimeoutMs: 10_000, stallTimeoutMs: 10_000, loadTimeoutMs: 60_000, pollMs: 10, progressIntervalMs: 0, onProgress };
}

/** Every type a replica's Redis holds: strings (raw, int, binary), hashes, sets, zsets, lists, streams, and TTLs. */
async function fillVaried(r: Redis, prefix: string, count: number): Promise<void> {
  const p = r.pipeline();
  for (let i = 0; i < count; i++) {
    p.set(`${prefix}:s:${i}`, `value-${i}-${"x".repeat(i % 50)}`);
    p.set(`${prefix}:n:${i}`, String(i * 7));
    p.set(Buffer.from(`${prefix}:b:${i}`), Buffer.from([0, 255, i % 256, 13, 10]));
    p.hset(`${prefix}:h:${i}`, { f1: `a${i}`, f2: String(i), big: "y".repeat(100 + (i % 200)) });
    p.sadd(`${prefix}:set:${i}`, "a", "b", String(i), `m${i % 13}`);
    p.zadd(`${prefix}:z:${i}`, 1.5, "one", i, `m${i}`, -3, "neg");
    p.rpush(`${prefix}:l:${i}`, "first", String(i), "last");
    p.xadd(`${prefix}:x:${i}`, "*", "field", `v${i}`, "other", "w");
    p.set(`${prefix}:ttl:${i}`, `expiring-${i}`, "PX", 3_600_000 + i);
    p.hset(`${prefix}:httl:${i}`, "f", "v");
    p.pexpire(`${prefix}:httl:${i}`, 7_200_000);
  }
  await p.exec();
}

/** A source that reads the file in small chunks, so the transfer takes many writes. */
function fileSource(file: string): AsyncIterable<Uint8Array> {
  return fs.createReadStream(file, { highWaterMark: 16 * 1024 });
}

async function role(r: Redis): Promise<string | undefined> {
  return (await readInfo(r, "replication")).get("role");
}

test("rdb - snapshot of every type with TTLs, loaded into a non-empty running Redis, key by key equal", async (t) => {
  const sourceDir = tempDir("source");
  const source = await startServer(sourceDir, false);
  const src = client(source);
  await fillVaried(src, "k", 200);
  await src.set(MARKER, "42");

  const target = await startServer(tempDir("target"), false);
  const dst = client(target);
  await fillVaried(dst, "old", 50);
  await dst.set("k:s:0", "the target's own value");

  const file = path.join(tempDir("store"), "snap.rdb");
  const snap = await takeSnapshot(src, snapshotOptions(src, { dir: sourceDir }, file));
  t.is(snap.markerValue, "42");
  t.is(snap.path, file);
  t.is(snap.bytes, fs.statSync(file).size);
  t.is(fs.readFileSync(file).subarray(0, 5).toString(), "REDIS");
  t.false(fs.existsSync(path.join(sourceDir, "dump.rdb")), "the file left Redis's dir");

  const progress: RdbLoadProgress[] = [];
  const result = await loadRdb(dst, fileSource(file), loadOptions(snap.bytes, (p) => progress.push(p)));
  t.is(result.bytes, snap.bytes);
  t.is(result.aofRewriteMs, 0);

  t.deepEqual(diffKeyspaces(await dumpKeyspace(source.port), await dumpKeyspace(target.port)), []);
  t.is(await dst.get(MARKER), "42");
  t.is(await dst.exists("old:s:0"), 0, "the target's previous contents are replaced");
  t.is(await role(dst), "master");
  t.is(await dst.set("after", "1"), "OK", "the target takes writes again");

  const transfer = progress.filter((p) => p.phase === "transfer");
  t.true(transfer.length > 1);
  t.true(transfer.every((p, i) => i === 0 || p.bytes >= transfer[i - 1].bytes));
  t.deepEqual(progress.map((p) => p.phase).slice(-2), ["loading", "loaded"]);
  t.is(progress[progress.length - 1].bytes, snap.bytes);
});

test("rdb - the marker is the RDB's when writes resume right after the fork, also when BGSAVE waits for an AOF rewrite", async (t) => {
  const sourceDir = tempDir("marker");
  const source = await startServer(sourceDir, true);
  const src = client(source);
  await fillVaried(src, "k", 100);
  await src.set(MARKER, "100");
  // 1 ms per key in the child (RDB save and the AOF rewrite's RDB preamble): both last long enough to race with.
  await src.call("CONFIG", "SET", "rdb-key-save-delay", "1000");
  // The rewrite forks at once; the BGSAVE that follows finds its child running and is scheduled.
  await src.call("BGREWRITEAOF");

  const file = path.join(tempDir("store"), "snap.rdb");
  const started = await startSnapshot(src, snapshotOptions(src, { dir: sourceDir }, file));
  t.true(started.scheduled, "BGSAVE was scheduled behind the AOF rewrite");
  t.is(started.markerValue, "100");
  // Writes resume at once, while the child still saves.
  await src.set(MARKER, "101");
  await src.set("k:s:0", "written after the fork");
  t.is((await readInfo(src, "persistence")).get("rdb_bgsave_in_progress"), "1", "the save still runs");
  const snap = await started.done;
  t.is(snap.markerValue, "100");

  const target = await startServer(tempDir("marker-target"), false);
  const dst = client(target);
  await loadRdb(dst, fileSource(file), loadOptions(snap.bytes));
  t.is(await dst.get(MARKER), "100", "the RDB holds the marker as it was at the fork");
  t.is(await dst.get("k:s:0"), "value-0-");
});

test("rdb - a short, failing or corrupt source is a typed error; the target keeps its data and serves as a master", async (t) => {
  const sourceDir = tempDir("bad-source");
  const source = await startServer(sourceDir, false);
  const src = client(source);
  await fillVaried(src, "k", 200);
  const file = path.join(tempDir("store"), "snap.rdb");
  const snap = await takeSnapshot(src, snapshotOptions(src, { dir: sourceDir }, file));
  const rdb = fs.readFileSync(file);

  const target = await startServer(tempDir("bad-target"), false);
  const dst = client(target);
  await fillVaried(dst, "old", 20);
  const before = await dumpKeyspace(target.port);

  async function* chunks(bytes: Buffer, failAt?: number): AsyncIterable<Uint8Array> {
    for (let at = 0; at < bytes.length; at += 8192) {
      if (failAt !== undefined && at >= failAt) throw new Error("disk read failed");
      yield bytes.subarray(at, at + 8192);
    }
  }
  const flipped = Buffer.from(rdb);
  flipped[Math.floor(flipped.length / 2)] ^= 0x01;
  const cases: { what: string; source: AsyncIterable<Uint8Array>; reason: RdbLoadError["reason"] }[] = [
    { what: "truncated", source: chunks(rdb.subarray(0, Math.floor(rdb.length / 2))), reason: "source_size" },
    { what: "source throws", source: chunks(rdb, Math.floor(rdb.length / 2)), reason: "source" },
    { what: "flipped byte", source: chunks(flipped), reason: "corrupt" },
    { what: "longer than announced", source: chunks(Buffer.concat([rdb, Buffer.from("extra")])), reason: "source_size" },
  ];
  for (const c of cases) {
    const err = await t.throwsAsync(loadRdb(dst, c.source, loadOptions(snap.bytes)), { instanceOf: RdbLoadError }, c.what);
    t.is(err?.reason, c.reason, c.what);
    t.is(await role(dst), "master", c.what);
    t.deepEqual(diffKeyspaces(before, await dumpKeyspace(target.port)), [], `${c.what}: the target keeps its data`);
  }
  // A source that stops yielding: the stall bound ends the load.
  async function* stalls(): AsyncIterable<Uint8Array> {
    yield rdb.subarray(0, 8192);
    await new Promise(() => {});
  }
  const stalled = await t.throwsAsync(loadRdb(dst, stalls(), { ...loadOptions(snap.bytes), stallTimeoutMs: 300 }), { instanceOf: RdbLoadError });
  t.is(stalled?.reason, "timeout");
  t.is(await role(dst), "master");
  t.deepEqual(diffKeyspaces(before, await dumpKeyspace(target.port)), [], "stalled source: the target keeps its data");
  t.is(await dst.set("after", "1"), "OK", "the target takes writes");
  // The same target still loads a good copy afterwards.
  await loadRdb(dst, fileSource(file), loadOptions(snap.bytes));
  t.deepEqual(diffKeyspaces(await dumpKeyspace(source.port), await dumpKeyspace(target.port)), []);
});

test("rdb - an RDB the target refuses (a newer format, valid checksum) is a typed error; the target is a master", async (t) => {
  const sourceDir = tempDir("refused-source");
  const source = await startServer(sourceDir, false);
  await fillVaried(client(source), "k", 20);
  const file = path.join(tempDir("store"), "snap.rdb");
  const sourceClient = client(source);
  const snap = await takeSnapshot(sourceClient, snapshotOptions(sourceClient, { dir: sourceDir }, file));
  const rdb = fs.readFileSync(file);
  t.is(rdb.subarray(0, 9).toString(), "REDIS0010");
  rdb.write("0099", 5, "latin1");
  rdb.writeBigUInt64LE(crc64(rdb.subarray(0, rdb.length - 8)), rdb.length - 8);

  const target = await startServer(tempDir("refused-target"), false);
  const dst = client(target);
  await dst.set("old", "1");
  const err = await t.throwsAsync(loadRdb(dst, (async function* () { yield rdb; })(), loadOptions(snap.bytes)), { instanceOf: RdbLoadError });
  t.is(err?.reason, "link_closed");
  t.is(await role(dst), "master");
  t.is(await dst.set("after", "1"), "OK");
  // Redis flushes its data set once the whole payload is in, before it parses it: a refused RDB leaves it empty.
  t.is(await dst.exists("old"), 0);
});

test("rdb - an appendonly target keeps the loaded data across a kill -9 and restart", async (t) => {
  const sourceDir = tempDir("aof-source");
  const source = await startServer(sourceDir, false);
  const src = client(source);
  await fillVaried(src, "k", 200);
  const file = path.join(tempDir("store"), "snap.rdb");
  const snap = await takeSnapshot(src, snapshotOptions(src, { dir: sourceDir }, file));

  const targetDir = tempDir("aof-target");
  const target = await startServer(targetDir, true);
  const dst = client(target);
  await fillVaried(dst, "old", 50);
  // 0.5 ms per key in the AOF rewrite Redis starts after the sync (its RDB preamble): a kill -9 that does not wait
  // for the rewrite lands in it, and the restart would load the old AOF.
  await dst.call("CONFIG", "SET", "rdb-key-save-delay", "500");
  const result = await loadRdb(dst, fileSource(file), loadOptions(snap.bytes));
  // No shutdown save or AOF flush: only what the load made durable survives.
  await target.child.stop("SIGKILL");
  t.true(result.aofRewriteMs > 0);

  const restarted = await startServer(targetDir, true, target.port);
  const again = client(restarted);
  t.is(await role(again), "master");
  t.deepEqual(diffKeyspaces(await dumpKeyspace(source.port), await dumpKeyspace(restarted.port)), []);
  t.is(await again.exists("old:s:0"), 0);
});

/**
 * Bootstrap baseline: how long a brand-new replica's redis-server takes to get a data set of N keys,
 *   (a) by Redis's own full resync: REPLICAOF the source until the link is up and the data loaded;
 *   (b) by our path: takeSnapshot on the source (BGSAVE, file moved out), then loadRdb of that file into a fresh
 *       redis-server (we play the master of a full resync).
 * Both targets are replica-style (appendonly yes), so each also rewrites its AOF after the sync; that time is
 * reported on its own (a restart before it ends would load the old AOF). The source is master-style (no persistence,
 * diskless replication), as the qjm master's Redis is.
 *
 * Exported for bench/run.ts:
 *   const result = await runBootstrapBaseline(dir, { keys: 1_000_000 });
 *   console.log(bootstrapBaselineReport(result));
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { loadRdb } from "../src/redis/rdb_loader.js";
import { takeSnapshot } from "../src/redis/rdb_snapshot.js";
import { infoNumber, pollInfo, readInfo } from "../src/redis/redis_info.js";
import { Cleanup } from "./cleanup.js";
import { startBenchRedis } from "./servers.js";
import { CONNECT_TIMEOUT_MS } from "./settings.js";

export interface BootstrapBaselineOptions {
  /** Keys in the source's data set. */
  keys?: number;
  /** Bytes of every string value, hash field value and list/set/zset member. */
  valueBytes?: number;
  onLog?: (line: string) => void;
}

export interface BootstrapBaselineResult {
  keys: number;
  valueBytes: number;
  /** Size of the snapshot file (the RDB both paths transfer). */
  rdbBytes: number;
  fillMs: number;
  /** (a) REPLICAOF until master_link_status:up and loading:0. */
  redisFullResyncMs: number;
  /** (a) then until the replica's AOF rewrite ended. */
  redisFullResyncAofMs: number;
  /** (b) BGSAVE until the file is moved out of the source's dir. */
  snapshotMs: number;
  /** (b) first byte to last byte sent. */
  loadTransferMs: number;
  /** (b) last byte until the target reported the data set loaded (and REPLICAOF NO ONE). */
  loadLoadMs: number;
  /** (b) snapshot + load until loaded. */
  snapshotAndLoadMs: number;
  /** (b) then until the target's AOF rewrite ended. */
  snapshotAndLoadAofMs: number;
}

export const BOOTSTRAP_KEYS_DEFAULT = 1_000_000;
export const BOOTSTRAP_VALUE_BYTES_DEFAULT = 100;
/** Commands per pipeline while filling; two pipelines in flight keep Redis busy without queueing the whole fill. */
const FILL_BATCH = 5000;
const FILL_PIPELINES_IN_FLIGHT = 2;
/** Bounds of one bootstrap on a busy 2-core machine: generous, they only turn a hang into an error. */
const SYNC_TIMEOUT_MS = 600_000;
const POLL_MS = 20;
const HANDSHAKE_TIMEOUT_MS = 30_000;
const STALL_TIMEOUT_MS = 60_000;

export async function runBootstrapBaseline(dir: string, options: BootstrapBaselineOptions = {}): Promise<BootstrapBaselineResult> {
  const keys = options.keys ?? BOOTSTRAP_KEYS_DEFAULT;
  const valueBytes = options.valueBytes ?? BOOTSTRAP_VALUE_BYTES_DEFAULT;
  const log = options.onLog ?? (() => {});
  const cleanup = new Cleanup();
  try {
    const sourceDir = path.join(dir, "source");
    const source = await startBenchRedis(cleanup, { dir: sourceDir, persistent: false });
    const src = connect(cleanup, source.port);
    let t0 = Date.now();
    await fill(src, keys, valueBytes);
    const fillMs = Date.now() - t0;
    const sourceKeys = await src.dbsize();
    log(`filled ${sourceKeys} keys in ${fillMs} ms`);

    // (a) Redis's own full resync into a fresh replica-style redis-server.
    const resync = await timeRedisFullResync(cleanup, path.join(dir, "replica"), source.port, sourceKeys);
    const redisFullResyncMs = resync.loadedMs;
    const redisFullResyncAofMs = resync.aofRewrittenMs;
    log(`(a) Redis full resync: loaded in ${redisFullResyncMs} ms, AOF rewritten at ${redisFullResyncAofMs} ms`);

    // (b) takeSnapshot + loadRdb into another fresh replica-style redis-server.
    const file = path.join(dir, "store", "snapshot.rdb");
    t0 = Date.now();
    const snap = await takeSnapshot(src, { dir: sourceDir, path: file, marker: () => src.get("bench:marker"), pollMs: POLL_MS, forkTimeoutMs: SYNC_TIMEOUT_MS, saveTimeoutMs: SYNC_TIMEOUT_MS });
    const snapshotMs = Date.now() - t0;
    log(`(b) snapshot: ${snap.bytes} bytes in ${snapshotMs} ms`);
    const target = await startBenchRedis(cleanup, { dir: path.join(dir, "target"), persistent: true });
    const dst = connect(cleanup, target.port);
    const loaded = await loadRdb(dst, fs.createReadStream(file, { highWaterMark: 256 * 1024 }), {
      bytes: snap.bytes,
      handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
      stallTimeoutMs: STALL_TIMEOUT_MS,
      loadTimeoutMs: SYNC_TIMEOUT_MS,
      pollMs: POLL_MS,
      onProgress: (p) => log(`(b) load ${p.phase}: ${p.bytes}/${p.totalBytes} bytes, ${(p.bytesPerSecond / 1e6).toFixed(1)} MB/s, eta ${p.etaMs === null ? "?" : Math.round(p.etaMs)} ms`),
    });
    await expectKeys(dst, sourceKeys, "snapshot + load");
    const snapshotAndLoadMs = snapshotMs + loaded.transferMs + loaded.loadMs;
    log(`(b) load: transfer ${loaded.transferMs} ms, load ${loaded.loadMs} ms, AOF rewrite ${loaded.aofRewriteMs} ms`);
    fs.rmSync(file, { force: true });

    return {
      keys: sourceKeys,
      valueBytes,
      rdbBytes: snap.bytes,
      fillMs,
      redisFullResyncMs,
      redisFullResyncAofMs,
      snapshotMs,
      loadTransferMs: loaded.transferMs,
      loadLoadMs: loaded.loadMs,
      snapshotAndLoadMs,
      snapshotAndLoadAofMs: snapshotAndLoadMs + loaded.aofRewriteMs,
    };
  } finally {
    await cleanup.run();
  }
}

export function bootstrapBaselineReport(r: BootstrapBaselineResult): string {
  const mb = (r.rdbBytes / 1e6).toFixed(1);
  return [
    `bootstrap of ${r.keys} keys (${r.valueBytes}-byte values, mixed types), RDB ${mb} MB:`,
    `  (a) Redis full resync (REPLICAOF)     loaded ${r.redisFullResyncMs} ms, AOF rewritten ${r.redisFullResyncAofMs} ms`,
    `  (b) takeSnapshot + loadRdb            loaded ${r.snapshotAndLoadMs} ms, AOF rewritten ${r.snapshotAndLoadAofMs} ms` +
      ` (snapshot ${r.snapshotMs}, transfer ${r.loadTransferMs}, load ${r.loadLoadMs})`,
  ].join("\n");
}

/**
 * Redis's own full resync, timed: a fresh replica-style redis-server (appendonly yes, as a replica's) under `dir` does
 * REPLICAOF the source until master_link_status:up and loading:0, then until its AOF rewrite ended; it must then hold
 * `expectedKeys` keys. It is detached (REPLICAOF NO ONE) before returning and stopped by `cleanup`.
 */
export async function timeRedisFullResync(cleanup: Cleanup, dir: string, sourcePort: number, expectedKeys: number, sourcePassword?: string): Promise<{ loadedMs: number; aofRewrittenMs: number }> {
  const replica = await startBenchRedis(cleanup, { dir, persistent: true });
  const rep = connect(cleanup, replica.port);
  // A redis-qjm master's Redis has a password (requirepass): the replica authenticates with it.
  if (sourcePassword !== undefined) await rep.call("CONFIG", "SET", "masterauth", sourcePassword);
  const rewritesBefore = infoNumber(await readInfo(rep, "persistence"), "aof_rewrites");
  const t0 = Date.now();
  await rep.call("REPLICAOF", "127.0.0.1", String(sourcePort));
  await waitFor(rep, ["replication", "persistence"], "the replica to be in sync", (i) => i.get("master_link_status") === "up" && i.get("loading") === "0");
  const loadedMs = Date.now() - t0;
  await waitFor(rep, ["persistence"], "the replica's AOF rewrite", (i) => infoNumber(i, "aof_rewrites") > rewritesBefore && i.get("aof_rewrite_in_progress") === "0" && i.get("aof_rewrite_scheduled") === "0");
  const aofRewrittenMs = Date.now() - t0;
  await expectKeys(rep, expectedKeys, "Redis's full resync");
  await rep.call("REPLICAOF", "NO", "ONE");
  return { loadedMs, aofRewrittenMs };
}

function connect(cleanup: Cleanup, port: number): Redis {
  const r = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1, retryStrategy: () => null, connectTimeout: CONNECT_TIMEOUT_MS });
  r.on("error", () => {});
  cleanup.add(`redis connection :${port}`, async () => r.disconnect());
  return r;
}

/** Random text the values are cut from, so that they do not shrink under the RDB's LZF compression. */
const VALUE_POOL = randomBytes(64 * 1024).toString("base64");

/** Value `j` of key `i`: `valueBytes` cut from random text at a place that depends on both. */
export function fillValue(i: number, j: number, valueBytes: number): string {
  const at = (i * 7919 + j * 104_729) % (VALUE_POOL.length - valueBytes);
  return VALUE_POOL.slice(at, at + valueBytes);
}

/**
 * Keys `key:<i>`: 70% strings (MSET, one per batch), 10% hashes (3 fields), 10% lists (3 items), 5% sets (3),
 * 5% zsets (3); pipelined.
 */
async function fill(r: Redis, keys: number, valueBytes: number): Promise<void> {
  const value = (i: number, j: number) => fillValue(i, j, valueBytes);
  const inFlight: Promise<unknown>[] = [];
  for (let start = 0; start < keys; start += FILL_BATCH) {
    const p = r.pipeline();
    const strings: string[] = [];
    for (let i = start; i < Math.min(keys, start + FILL_BATCH); i++) {
      const key = `key:${i}`;
      const kind = i % 20;
      if (kind < 14) strings.push(key, value(i, 0));
      else if (kind < 16) p.hset(key, "a", value(i, 1), "b", value(i, 2), "c", value(i, 3));
      else if (kind < 18) p.rpush(key, value(i, 1), value(i, 2), value(i, 3));
      else if (kind < 19) p.sadd(key, value(i, 1), value(i, 2), value(i, 3));
      else p.zadd(key, 1, value(i, 1), 2, value(i, 2), 3, value(i, 3));
    }
    if (strings.length > 0) p.mset(...strings);
    inFlight.push(p.exec());
    if (inFlight.length >= FILL_PIPELINES_IN_FLIGHT) await inFlight.shift();
  }
  await Promise.all(inFlight);
}

async function waitFor(r: Redis, sections: string[], what: string, ok: (info: Map<string, string>) => boolean): Promise<void> {
  const done = await pollInfo(r, sections, { pollMs: POLL_MS, timeoutMs: SYNC_TIMEOUT_MS }, (info) => (ok(info) ? true : undefined));
  if (done === undefined) throw new Error(`bootstrap baseline: timed out after ${SYNC_TIMEOUT_MS} ms waiting for ${what}`);
}

async function expectKeys(r: Redis, expected: number, what: string): Promise<void> {
  const got = await r.dbsize();
  if (got !== expected) throw new Error(`bootstrap baseline: ${what} left ${got} keys, the source has ${expected}`);
}

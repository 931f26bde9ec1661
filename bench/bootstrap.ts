/**
 * Bootstrap bench (issue 5, "must show"): a brand-new replica joins a redis-qjm cluster holding N keys, next to
 * Redis's own full resync of the same data, in the same run.
 *
 *   1. a real local cluster (its own nats-server, 3 journal nodes, the master, replica r1) on free ports; segments
 *      roll every 1/8 of the fill, r1 snapshots once it applied 99% of it, and each journal node purges the
 *      segments that snapshot covers as soon as it is durable (size threshold 1 byte; no margin);
 *   2. fill: N keys `key:<i>` with 100-byte values through the write path, `MSET` of 100 keys per write, many
 *      writes in flight on one NATS connection;
 *   3. wait until a durable snapshot covers ≥ 99% of the keys and every journal node purged txid 1 (so the journal
 *      alone can no longer rebuild a replica);
 *   (a) start a new replica actor (own id, port, data dir) and time it from spawn until its heartbeat says
 *       appliedTxid ≥ the committed txid: process start, snapshot download (SHA-256 checked), load into its Redis,
 *       AOF rewrite, then the journal's tail after the snapshot;
 *   (b) a fresh replica-style redis-server does REPLICAOF the master's redis-server: until loaded, and until its AOF
 *       rewrite ended (the replica's bootstrap waits for that rewrite too: before it, a restart loads the old AOF).
 *
 *   BENCH_BOOTSTRAP_KEYS=<n>     keys (default 1,000,000)
 *   BENCH_BOOTSTRAP_CLIENTS=<n>  writes in flight while filling (default 32)
 */
import path from "node:path";
import fs from "node:fs";
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { startLocalCluster } from "../src/cluster/local_cluster.js";
import { redisPassword } from "../src/redis/redis_server.js";
import type { Config } from "../src/config/config.js";
import { decode, encode } from "../src/protocol/codec.js";
import type { ActorStatus, Heartbeat, WriteReply } from "../src/protocol/messages.js";
import { subjects } from "../src/protocol/subjects.js";
import { requestAll } from "../src/nats/bus.js";
import { freePort } from "../src/process/ports.js";
import { RdbScan, countKeys } from "../src/snapshot/inspect_snapshot.js";
import type { TransferProgress } from "../src/util/progress.js";
import { snapshotFileName } from "../src/snapshot/snapshot_store.js";
import { BOOTSTRAP_KEYS_DEFAULT, BOOTSTRAP_VALUE_BYTES_DEFAULT, fillValue, timeRedisFullResync } from "./bootstrap_baseline.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { errorMessage, retryUntil, sleep } from "./harness.js";
import { connectNats, freePortRange, startBenchNats } from "./servers.js";
import { bundleDir } from "../src/util/package_root.js";

export const BOOTSTRAP_TARGET = "bootstrap";
/** Keys per MSET write. */
const KEYS_PER_WRITE = 100;
const CLIENTS_DEFAULT = 32;
/** The durable snapshot must hold at least this share of the fill. */
const SNAPSHOT_COVERAGE = 0.99;
/** The fill spans this many segments, so most of it is in finalized segments the snapshot lets the nodes purge. */
const FILL_SEGMENTS = 8;
/** A write refused for a passing reason (OVERLOADED, NOT_WRITER, NO_QUORUM, a timeout) is retried this often; MSET is idempotent. */
const WRITE_ATTEMPTS_MAX = 20;
const WRITE_RETRY_MS = 100;
const WRITE_TIMEOUT_MS = 30_000;
/** Bounds on a busy 2-core machine: generous, they only turn a hang into an error. */
const READY_TIMEOUT_MS = 60_000;
const SNAPSHOT_TIMEOUT_MS = 15 * 60_000;
const PURGE_TIMEOUT_MS = 120_000;
const JOIN_TIMEOUT_MS = 20 * 60_000;
/** Without a durable snapshot for this long after the fill, one more write lets the replica try again (it checks after applying). */
const SNAPSHOT_NUDGE_MS = 5000;
const STATUS_WAIT_MS = 300;
const STATUS_POLL_MS = 1000;
const FILL_LOG_MS = 5000;
const JOINER = "joiner";

export interface BootstrapBenchResult {
  keys: number;
  valueBytes: number;
  writes: number;
  fillMs: number;
  /** Txid the new replica had to reach (the committed txid once the snapshot was durable). */
  committedTxid: number;
  snapshotTxid: number;
  /** Keys in the snapshot, from its RDB header (src/snapshot/inspect_snapshot.ts); null if not counted. */
  snapshotKeys: number | null;
  rdbBytes: number;
  /** (a) spawn → heartbeat with appliedTxid ≥ committedTxid. */
  replicaJoinMs: number;
  /** (a) the replica's own figure for download + load + AOF rewrite (its `bootstrapped` event). */
  replicaBootstrapMs: number;
  /** (a) of the bootstrap, the snapshot's download from a journal node (SHA-256 checked). */
  replicaDownloadMs: number;
  /** (b) REPLICAOF → loaded, and → AOF rewritten. */
  redisFullResyncMs: number;
  redisFullResyncAofMs: number;
}

export function bootstrapKeys(env: NodeJS.ProcessEnv = process.env): number {
  return positiveInt(env.BENCH_BOOTSTRAP_KEYS, BOOTSTRAP_KEYS_DEFAULT, "BENCH_BOOTSTRAP_KEYS");
}

function positiveInt(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, got ${JSON.stringify(raw)}`);
  return n;
}

export async function runBootstrapBench(dir: string, log: (line: string) => void = (l) => console.error(`bench: ${l}`)): Promise<BootstrapBenchResult> {
  const keys = bootstrapKeys();
  const clients = positiveInt(process.env.BENCH_BOOTSTRAP_CLIENTS, CLIENTS_DEFAULT, "BENCH_BOOTSTRAP_CLIENTS");
  const valueBytes = BOOTSTRAP_VALUE_BYTES_DEFAULT;
  const writes = Math.ceil(keys / KEYS_PER_WRITE);
  // Txid 1 is the readiness write; the fill is 2..writes+1.
  const snapshotEveryRecords = Math.ceil(writes * SNAPSHOT_COVERAGE) + 1;
  const cleanup = new Cleanup();
  try {
    const nats = await startBenchNats(cleanup, path.join(dir, "nats"));
    const redisPorts = await freePortRange(2);
    const config: Partial<Config> = {
      masterRedisPort: redisPorts,
      replicaRedisPortBase: redisPorts + 1,
      replicas: ["r1"],
      // The single-master layout: this bench times a new replica's join and the master's rebuild.
      dataNodes: [],
      // Heartbeats time the join: finer than the default 500 ms.
      heartbeatIntervalMs: 100,
      segmentMaxRecords: Math.max(1, Math.ceil(writes / FILL_SEGMENTS)),
      snapshotEveryRecords,
      // Purge whatever the durable snapshot covers, at once: the new replica must need the snapshot.
      editlogMaxBytes: 1,
      purgeMarginRecords: 0,
    };
    const cluster = await startLocalCluster({ natsUrl: nats.url, dataDir: path.join(dir, "data"), config, output: "files" });
    cleanup.add("redis-qjm local cluster", () => cluster.stop());
    for (const child of cluster.actors.values()) trackServer(child, bundleDir());
    const nc = await connectNats(cleanup, cluster.natsUrl, "bench-bootstrap");
    const s = subjects(cluster.cluster);
    const events = watchEvents(nc, s.events);

    await retryUntil("redis-qjm first write", READY_TIMEOUT_MS, 200, async () => void (await write(nc, s.write, ["SET", "bench:ready", "1"], 1)));
    log(`bootstrap: filling ${keys} keys (${writes} MSET writes of ${KEYS_PER_WRITE}, ${clients} in flight)`);
    let t0 = Date.now();
    let lastTxid = await fill(nc, s.write, keys, valueBytes, clients, log);
    const fillMs = Date.now() - t0;
    log(`bootstrap: filled in ${fillMs} ms (${Math.round((writes * 1000) / fillMs)} writes/s), last txid ${lastTxid}`);

    // A durable snapshot of ≥ 99% of the fill, then every journal node purged txid 1.
    t0 = Date.now();
    let snapshot = events.durable(snapshotEveryRecords);
    while (snapshot === undefined) {
      if (Date.now() - t0 > SNAPSHOT_TIMEOUT_MS) throw new Error(`bootstrap: no durable snapshot of txid ≥ ${snapshotEveryRecords} within ${SNAPSHOT_TIMEOUT_MS} ms`);
      await events.next(SNAPSHOT_NUDGE_MS);
      snapshot = events.durable(snapshotEveryRecords);
      if (snapshot === undefined && events.idleMs() >= SNAPSHOT_NUDGE_MS) lastTxid = Math.max(lastTxid, await write(nc, s.write, ["SET", "bench:nudge", String(Date.now())], WRITE_ATTEMPTS_MAX));
    }
    log(`bootstrap: snapshot ${snapshot.txid} durable on ${snapshot.nodes.join(",")} (${snapshot.bytes} bytes), ${Date.now() - t0} ms after the fill`);
    const snapshotKeys = await countSnapshotKeys(path.join(cluster.dataDir, snapshot.nodes[0], "snapshots", snapshotFileName(snapshot.txid)));
    await retryUntil("every journal node to purge txid 1", PURGE_TIMEOUT_MS, 200, async () => {
      const firsts = (await statuses(nc, s.status)).filter((st) => st.role === "journal").map((st) => Number(st.details.firstTxid));
      if (firsts.length !== cluster.config.journalNodes.length || firsts.some((f) => !(f > 1))) throw new Error(`first txids ${firsts.join(",")}`);
    });
    const master = (await statuses(nc, s.status)).find((st) => st.role === "master");
    if (master === undefined || master.redisUrl === null) throw new Error("bootstrap: the master did not answer status");
    const committedTxid = Math.max(master.committedTxid, lastTxid);
    const masterPort = Number(new URL(master.redisUrl).port);
    const masterKeys = await dbsize(masterPort, redisPassword(cluster.dataDir));
    log(`bootstrap: journal purged below the snapshot; committed txid ${committedTxid}, master holds ${masterKeys} keys`);

    // (a) A brand-new replica.
    const joinerPort = await freePort();
    const joined = waitApplied(nc, s.heartbeat("replica", JOINER), committedTxid, JOIN_TIMEOUT_MS);
    const progress = watchProgress(nc, s.status, log);
    t0 = Date.now();
    trackServer(cluster.addActor({ name: JOINER, script: "replica", args: ["--id", JOINER, "--redis-port", String(joinerPort)] }), bundleDir());
    let replicaJoinMs: number;
    try {
      await joined;
      replicaJoinMs = Date.now() - t0;
    } finally {
      await progress.stop();
    }
    const bootstrapped = events.bootstrapped(`replica.${JOINER}`);
    if (bootstrapped === undefined) throw new Error("bootstrap: the new replica caught up without bootstrapping from the snapshot");
    const joinerKeys = await dbsize(joinerPort, redisPassword(cluster.dataDir));
    // The replica also holds its applied-txid key.
    if (joinerKeys !== masterKeys + 1) throw new Error(`bootstrap: the new replica holds ${joinerKeys} keys, the master ${masterKeys} (+1 expected)`);
    log(`bootstrap: (a) new replica caught up in ${replicaJoinMs} ms (bootstrap ${bootstrapped.ms} ms from ${bootstrapped.fromNode})`);

    // (b) Redis's own full resync of the same data.
    const resync = await timeRedisFullResync(cleanup, path.join(dir, "resync"), masterPort, masterKeys, redisPassword(cluster.dataDir));
    log(`bootstrap: (b) Redis full resync loaded in ${resync.loadedMs} ms, AOF rewritten at ${resync.aofRewrittenMs} ms`);

    return {
      keys,
      valueBytes,
      writes,
      fillMs,
      committedTxid,
      snapshotTxid: snapshot.txid,
      snapshotKeys,
      rdbBytes: snapshot.bytes,
      replicaJoinMs,
      replicaBootstrapMs: bootstrapped.ms,
      replicaDownloadMs: bootstrapped.downloadMs,
      redisFullResyncMs: resync.loadedMs,
      redisFullResyncAofMs: resync.aofRewrittenMs,
    };
  } finally {
    await cleanup.run();
  }
}

/** One write; retried on a passing refusal. Returns its txid. */
async function write(nc: NatsConnection, subject: string, command: string[], attempts: number): Promise<number> {
  const body = encode(command);
  let last = "";
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const reply = decode((await nc.request(subject, body, { timeout: WRITE_TIMEOUT_MS })).data) as WriteReply;
      if (reply.ok) return reply.txid;
      last = `${reply.code}: ${reply.message}`;
      if (!["OVERLOADED", "NOT_WRITER", "NO_QUORUM", "TIMEOUT"].includes(reply.code)) break;
    } catch (err) {
      last = errorMessage(err);
    }
    if (attempt < attempts) await sleep(WRITE_RETRY_MS * attempt);
  }
  throw new Error(`write ${command[0]} failed: ${last}`);
}

/** MSET writes of KEYS_PER_WRITE keys, `clients` in flight; returns the highest txid acked. */
async function fill(nc: NatsConnection, subject: string, keys: number, valueBytes: number, clients: number, log: (line: string) => void): Promise<number> {
  let next = 0;
  let done = 0;
  let maxTxid = 0;
  let lastLog = Date.now();
  const writes = Math.ceil(keys / KEYS_PER_WRITE);
  const client = async (): Promise<void> => {
    for (let w = next++; w < writes; w = next++) {
      const command = ["MSET"];
      for (let i = w * KEYS_PER_WRITE; i < Math.min(keys, (w + 1) * KEYS_PER_WRITE); i++) command.push(`key:${i}`, fillValue(i, 0, valueBytes));
      maxTxid = Math.max(maxTxid, await write(nc, subject, command, WRITE_ATTEMPTS_MAX));
      done++;
      if (Date.now() - lastLog >= FILL_LOG_MS) {
        lastLog = Date.now();
        log(`bootstrap: fill ${done}/${writes} writes`);
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return maxTxid;
}

interface SnapshotDurable {
  txid: number;
  bytes: number;
  nodes: string[];
}

/** The cluster's events, kept as they arrive: durable snapshots and bootstraps. */
function watchEvents(nc: NatsConnection, subject: string) {
  const durable: SnapshotDurable[] = [];
  const bootstrapped = new Map<string, { ms: number; downloadMs: number; fromNode: string }>();
  let lastEventMs = Date.now();
  let wake: (() => void) | null = null;
  nc.subscribe(subject, {
    callback: (err: Error | null, msg: Msg) => {
      if (err !== null) return;
      const e = decode(msg.data) as Record<string, unknown>;
      lastEventMs = Date.now();
      if (e.type === "snapshotDurable") durable.push({ txid: Number(e.txid), bytes: Number(e.bytes), nodes: e.nodes as string[] });
      if (e.type === "bootstrapped") bootstrapped.set(String(e.actor), { ms: Number(e.ms), downloadMs: Number(e.downloadMs), fromNode: String(e.fromNode) });
      wake?.();
    },
  });
  return {
    durable: (minTxid: number) => durable.filter((d) => d.txid >= minTxid).sort((a, b) => b.txid - a.txid)[0],
    bootstrapped: (actor: string) => bootstrapped.get(actor),
    idleMs: () => Date.now() - lastEventMs,
    /** Resolves on the next event, or after `ms`. */
    next: (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          wake = null;
          resolve();
        };
      }),
  };
}

/** Resolves once the heartbeat on `subject` shows appliedTxid ≥ txid. */
function waitApplied(nc: NatsConnection, subject: string, txid: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`bootstrap: the new replica did not apply txid ${txid} within ${timeoutMs} ms`));
    }, timeoutMs);
    const sub = nc.subscribe(subject, {
      callback: (err: Error | null, msg: Msg) => {
        if (err !== null || (decode(msg.data) as Heartbeat).appliedTxid < txid) return;
        clearTimeout(timer);
        sub.unsubscribe();
        resolve();
      },
    });
  });
}

/** Logs the new replica's `details.progress` from `redis-qjm status` every second. */
function watchProgress(nc: NatsConnection, subject: string, log: (line: string) => void) {
  let running = true;
  const loop = (async () => {
    while (running) {
      const joiner = (await statuses(nc, subject).catch(() => [])).find((st) => st.id === JOINER);
      const p = joiner?.details.progress as (Partial<TransferProgress> & { phase?: string }) | null | undefined;
      if (p !== null && p !== undefined && running) {
        log(`bootstrap: (a) ${p.phase} ${p.bytes ?? "?"}/${p.totalBytes ?? "?"} bytes, ${((p.bytesPerSecond ?? 0) / 1e6).toFixed(1)} MB/s, eta ${p.etaMs ?? "?"} ms; applied ${joiner?.appliedTxid}`);
      }
      await sleep(STATUS_POLL_MS);
    }
  })();
  return {
    /** Stops polling; resolves when the last poll ended. */
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

async function statuses(nc: NatsConnection, subject: string): Promise<ActorStatus[]> {
  return (await requestAll(nc, subject, {}, STATUS_WAIT_MS)) as ActorStatus[];
}

/** Keys in the Redis at `port` (the cluster's Redis servers all have the data directory's password). */
async function dbsize(port: number, password: string): Promise<number> {
  const r = new Redis({ port, host: "127.0.0.1", password, maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true });
  r.on("error", () => {});
  try {
    await r.connect();
    return await r.dbsize();
  } finally {
    r.disconnect();
  }
}

/** The snapshot's key count from its RDB header, read on the node that holds it (no full parse). */
async function countSnapshotKeys(file: string): Promise<number | null> {
  const scan = new RdbScan();
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 256 * 1024, end: 64 * 1024 - 1 })) scan.update(chunk as Buffer);
  return countKeys(scan.finish().prefix)?.keys ?? null;
}

export function bootstrapReport(r: BootstrapBenchResult): string {
  const mb = (r.rdbBytes / 1e6).toFixed(1);
  return [
    `bootstrap of ${r.keys} keys (${r.valueBytes}-byte values, ${r.writes} MSET writes filled in ${(r.fillMs / 1000).toFixed(1)} s), snapshot at txid ${r.snapshotTxid} of ${r.committedTxid} (${r.snapshotKeys ?? "?"} keys), RDB ${mb} MB:`,
    `  (a) redis-qjm new replica: caught up in ${r.replicaJoinMs} ms; its bootstrap ${r.replicaBootstrapMs} ms (download ${r.replicaDownloadMs}, load + AOF rewrite ${r.replicaBootstrapMs - r.replicaDownloadMs}),` +
      ` the rest process start and the tail of ${r.committedTxid - r.snapshotTxid} records`,
    `  (b) Redis full resync (REPLICAOF the master's Redis): loaded ${r.redisFullResyncMs} ms, AOF rewritten ${r.redisFullResyncAofMs} ms`,
    `  ratio (a)/(b): ${ratio(r.replicaJoinMs, r.redisFullResyncAofMs)} against the AOF-rewritten time, ${ratio(r.replicaJoinMs, r.redisFullResyncMs)} against loaded`,
  ].join("\n");
}

export function bootstrapMarkdown(r: BootstrapBenchResult): string {
  return [
    "| keys | RDB MB | snapshot txid / committed | (a) qjm new replica ms | its bootstrap ms (download + load) | (b) Redis full resync ms, loaded | (b) + AOF rewrite ms | (a) / (b)+AOF | (a) / (b) loaded |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    `| ${r.keys} | ${(r.rdbBytes / 1e6).toFixed(1)} | ${r.snapshotTxid} / ${r.committedTxid} | ${r.replicaJoinMs} | ${r.replicaBootstrapMs} (${r.replicaDownloadMs} + ${r.replicaBootstrapMs - r.replicaDownloadMs}) | ${r.redisFullResyncMs} | ${r.redisFullResyncAofMs} | ${ratio(r.replicaJoinMs, r.redisFullResyncAofMs)} | ${ratio(r.replicaJoinMs, r.redisFullResyncMs)} |`,
  ].join("\n");
}

function ratio(a: number, b: number): string {
  return b > 0 ? `${(a / b).toFixed(2)}×` : "n/a";
}

/** Integration-test harness: a real cluster on free ports in a temp dir, clients, status, keyspace dumps. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { startLocalCluster, type LocalCluster } from "../../src/cluster/local_cluster.js";
import { defaults, envName, localActorCount, type Config } from "../../src/config/config.js";
import { connectBus, request, type NatsConnection } from "../../src/nats/bus.js";
import { decode, encode } from "../../src/protocol/codec.js";
import type { ActorStatus, WriteReply } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { freePorts } from "../../src/process/ports.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import { clientTls } from "../../src/nats/tls.js";
import { redisPassword } from "../../src/redis/redis_server.js";

/**
 * What the shared loads and checks (incr_load.ts) need of a running cluster, wherever its actors run: on this
 * machine (TestCluster), or as hosts in network namespaces (netns.test.ts).
 */
export interface ClusterView {
  /** Its NATS URL(s), data directory (credentials/<user>.creds), name and configuration. */
  cluster: Pick<LocalCluster, "natsUrl" | "dataDir" | "cluster" | "config">;
  /** Connected as the `client` user: writes, status and events only (what every client may do). */
  nc: NatsConnection;
  /** The password of every Redis server of the cluster (requirepass). */
  redisPassword: string;
  write(args: (string | Buffer | number)[], timeoutMs?: number): Promise<WriteReply>;
  status(): Promise<ActorStatus[]>;
  /** A data node's keyspace; without it, its Redis on 127.0.0.1 at dataRedisPortBase + the node's index. */
  keyspaceOf?(id: string): Promise<Map<string, KeyDump>>;
}

export interface TestCluster extends ClusterView {
  cluster: LocalCluster;
  /** A connection as another NATS user of the cluster (m1 to send journal nodes requests, `faults`…); closed by stop(). */
  connectAs(user: string): Promise<NatsConnection>;
  stop(): Promise<void>;
}

export interface TestClusterOptions {
  /** nats-server's port (default: a free one), for a test that sets up proxies to it before the actors start. */
  natsPort?: number;
  /** Each actor's own NATS URL (e.g. its TCP proxy's); test clients still connect to nats-server directly. */
  actorNatsUrl?: (name: string) => string;
  /** Each nats-server serves monitoring (/routez…) on a free port (config natsMonitorPortBase). */
  natsMonitor?: boolean;
  /** The bus over TLS only (config tls): certificates under <dataDir>/tls; the test's connections present the client's. */
  tls?: boolean;
}

/**
 * Every port given to a cluster this process started. A free port is not reserved until its server binds it, seconds
 * later: two clusters started side by side (tests of one file run concurrently) could otherwise pick the same one.
 */
const portsTaken = new Set<number>();

/** Fast timeouts so fault tests finish quickly; every port free, every file in a fresh temp dir. */
export async function startTestCluster(name: string, overrides: Partial<Config> = {}, options: TestClusterOptions = {}): Promise<TestCluster> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `qjm-${name}-`));
  // With natsServers > 1, a routed cluster: consecutive client ports, and as many route (and monitoring) ports.
  const natsServers = overrides.natsServers ?? 1;
  // Every pick joins `taken`, so no two of this cluster's ports coincide, nor two clusters' of this process.
  const taken = portsTaken;
  if (options.natsPort !== undefined) taken.add(options.natsPort);
  const natsPort = options.natsPort ?? (await freePorts(natsServers, taken));
  const natsRoutePortBase = natsServers > 1 ? await freePorts(natsServers, taken) : defaults.natsRoutePortBase;
  const natsMonitorPortBase = options.natsMonitor === true ? await freePorts(natsServers, taken) : 0;
  const masterRedisPort = await freePorts(1, taken);
  // Consecutive ports for the replicas (r1 = base, r2 = base + 1, …): a busy base + 1 made r2's redis-server abort.
  const replicaRedisPortBase = await freePorts((overrides.replicas ?? defaults.replicas).length, taken);
  // The single-master layout unless the test asks for data nodes (issue #11), on consecutive free ports too.
  const dataNodes = overrides.dataNodes ?? [];
  const dataRedisPortBase = await freePorts(Math.max(1, dataNodes.length), taken);
  // The data nodes' RESP front doors (issue #12), on consecutive free ports as well.
  const respPort = await freePorts(Math.max(1, dataNodes.length), taken);
  // Every actor's metrics endpoint (issue #14 item 4), one port each in start order, and two for actors a test adds.
  const layout = { journalNodes: overrides.journalNodes ?? defaults.journalNodes, dataNodes, replicas: overrides.replicas ?? defaults.replicas };
  const metricsPort = overrides.metricsPort === 0 ? 0 : await freePorts(localActorCount(layout) + 2, taken);
  const cluster = await startLocalCluster({
    dataDir,
    natsUrl: `nats://127.0.0.1:${natsPort}`,
    actorNatsUrl: options.actorNatsUrl,
    output: "files",
    // Extra node flags for every actor (e.g. QJM_TEST_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile a test).
    nodeArgs: process.env.QJM_TEST_NODE_ARGS?.split(" ").filter((a) => a !== ""),
    config: {
      cluster: name.replace(/[^A-Za-z0-9_-]/g, "_"),
      natsRoutePortBase,
      natsMonitorPortBase,
      masterRedisPort,
      replicaRedisPortBase,
      dataNodes,
      dataRedisPortBase,
      respPort,
      metricsPort,
      // Generous: two test files share two cores, and a node slowed past it drops out of the epoch's quorum.
      quorumTimeoutMs: 5000,
      heartbeatIntervalMs: 200,
      writerRetryMs: 200,
      epochRequestTimeoutMs: 1000,
      journalRequestTimeoutMs: 5000,
      tls: options.tls === true ? 1 : 0,
      ...overrides,
    },
  });
  // Every integration test runs with NATS users and Redis passwords on, as `npm start` does.
  if (!cluster.natsAuth) {
    await cluster.stop();
    throw new Error(`a nats-server already answers on port ${natsPort}: the test cluster must start its own, with users`);
  }
  const tls = clientTls(cluster.config);
  const nc = await connectBus(cluster.natsUrl, `test-${name}`, credsFile(dataDir, CLIENT_USER), { tls });
  const others = new Map<string, Promise<NatsConnection>>();
  const s = subjects(cluster.cluster);
  const tc: TestCluster = {
    cluster,
    nc,
    redisPassword: redisPassword(dataDir),
    connectAs(user) {
      let c = others.get(user);
      if (c === undefined) others.set(user, (c = connectBus(cluster.natsUrl, `test-${name}-${user}`, credsFile(dataDir, user), { tls })));
      return c;
    },
    async write(args, timeoutMs = 10000) {
      return (await request(nc, s.write, args, timeoutMs)) as WriteReply;
    },
    async status() {
      return await statusOf(nc, s.status, [...cluster.actors.keys()]);
    },
    async stop() {
      await nc.close().catch(() => {});
      for (const c of others.values()) await c.then((o) => o.close()).catch(() => {});
      await cluster.stop();
      if (process.env.QJM_KEEP_TEST_DATA === undefined) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return tc;
}

/**
 * Every actor's status: the replies until each of `actors` answered (by id), else those within STATUS_WAIT_MS (one is
 * down, or slow). A round that always waited out its 300 ms made each poll of a wait (writer elected, replicas caught
 * up, a node restored) cost 300 ms, several seconds of many files.
 */
async function statusOf(nc: NatsConnection, subject: string, actors: readonly string[]): Promise<ActorStatus[]> {
  const replies: ActorStatus[] = [];
  try {
    const iter = await nc.requestMany(subject, encode({}), { maxWait: STATUS_WAIT_MS, strategy: "timer" });
    for await (const msg of iter) {
      try {
        replies.push(decode(msg.data) as ActorStatus);
      } catch {
        continue; // a malformed reply from someone else on the subject
      }
      if (actors.every((id) => replies.some((r) => r.id === id))) break;
    }
  } catch {
    return [];
  }
  return replies;
}

/** How long a status round waits for the actors that have not answered. */
const STATUS_WAIT_MS = 300;

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; each failed check waits `everyMs`. */
export async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function waitForWriter(tc: ClusterView, timeoutMs = 30000): Promise<ActorStatus> {
  return await until("the master to serve writes", timeoutMs, async () => settledWriter(await tc.status()), 100);
}

/** The master serving writes in the highest epoch among `all` (a deposed one may still say it serves). */
export function servingMaster(all: readonly ActorStatus[]): ActorStatus | undefined {
  return all.filter((s) => s.role === "master" && s.health === "writing").sort((a, b) => b.epoch - a.epoch)[0];
}

/**
 * The master serving writes, once every other data node that answers heard it (a standby that heard a master's epoch
 * does not campaign while it beats). Before, a test sometimes took the first master of a startup where a second node
 * campaigned before hearing it (loops ~300 ms late in CI) and fenced it within a second (write_order: LOADING).
 */
function settledWriter(all: ActorStatus[]): ActorStatus | undefined {
  const writing = servingMaster(all);
  if (writing === undefined) return undefined;
  const others = all.filter((s) => s.details.dataNode === true && s.id !== writing.id);
  const heard = (s: ActorStatus): boolean => s.details.dataRole === "replica" && Number(s.details.masterEpochHeard ?? 0) >= writing.epoch;
  return others.every(heard) ? writing : undefined;
}

/** Waits until every replica (the configured ones and `added`) applied at least `txid`. */
export async function waitForReplicas(tc: ClusterView, txid: number, timeoutMs = 60000, added: readonly string[] = []): Promise<ActorStatus[]> {
  let last: ActorStatus[] = [];
  const { dataNodes, replicas } = tc.cluster.config;
  // With data nodes, every node but the master is a replica.
  const expected = (dataNodes.length > 0 ? dataNodes.length - 1 : replicas.length) + added.length;
  try {
    return await until(`replicas to apply txid ${txid}`, timeoutMs, async () => {
      last = await tc.status();
      const replicas = last.filter((s) => s.role === "replica");
      return replicas.length === expected && replicas.every((r) => r.appliedTxid >= txid) ? replicas : undefined;
    }, 100);
  } catch (err) {
    // What every actor said last: which replica lags, and what each journal node would serve.
    const seen = last.map((s) => `${s.role} ${s.id} ${s.health} last ${s.lastTxid} committed ${s.committedTxid} applied ${s.appliedTxid} ${JSON.stringify(s.details).slice(0, 200)}`);
    throw new Error(`${(err as Error).message}; last status: ${seen.join(" | ") || "none"}`);
  }
}

export interface KeyDump {
  type: string;
  value: unknown;
  /** Absolute expiry in ms (PEXPIRETIME), -1 when the key has none. */
  expireAtMs: number;
}

/** Every key (database 0) of a Redis, or of a data node's RESP front door (`host`): type, value in a canonical form, and expiry; pipelined per SCAN page. */
export async function dumpKeyspace(port: number, password?: string, host = "127.0.0.1"): Promise<Map<string, KeyDump>> {
  // No reconnecting forever (a wrong password, a Redis gone): a failed dump fails the test, and ends.
  const r = new Redis({ port, host, password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await r.connect();
    const out = new Map<string, KeyDump>();
    let cursor = "0";
    do {
      // Keys as bytes: a key that is not UTF-8 must be asked for by its own bytes (its lossy text names another key).
      const [next, page] = await r.scanBuffer(cursor, "COUNT", 1000);
      cursor = next.toString();
      const keys = page;
      const typing = r.pipeline();
      for (const key of keys) typing.type(key);
      const types = ((await typing.exec()) ?? []).map(([, v]) => String(v));
      const reading = r.pipeline();
      keys.forEach((key, i) => {
        const type = types[i];
        if (type === "string") reading.get(key);
        else if (type === "hash") reading.hgetall(key);
        else if (type === "list") reading.lrange(key, 0, -1);
        else if (type === "set") reading.smembers(key);
        else if (type === "zset") reading.zrange(key, 0, -1, "WITHSCORES");
        else if (type === "stream") reading.xrange(key, "-", "+");
        else reading.echo(`<${type}>`);
        reading.call("PEXPIRETIME", key);
      });
      const values = (await reading.exec()) ?? [];
      keys.forEach((key, i) => {
        const type = types[i];
        const raw = values[2 * i]?.[1];
        const value =
          type === "hash" ? Object.entries(raw as Record<string, string>).sort() : type === "set" ? [...(raw as string[])].sort() : raw;
        out.set(key.toString(), { type, value, expireAtMs: Number(values[2 * i + 1]?.[1]) });
      });
    } while (cursor !== "0");
    return out;
  } finally {
    r.disconnect();
  }
}

/** Differences between two dumps (absolute expiry times may differ by `ttlSlackMs`); empty when equal. */
export function diffKeyspaces(a: Map<string, KeyDump>, b: Map<string, KeyDump>, ttlSlackMs = 5): string[] {
  const diffs: string[] = [];
  for (const [key, da] of a) {
    const db = b.get(key);
    if (db === undefined) diffs.push(`${key}: missing`);
    else if (da.type !== db.type) diffs.push(`${key}: type ${da.type} vs ${db.type}`);
    else if (JSON.stringify(da.value) !== JSON.stringify(db.value)) diffs.push(`${key}: ${JSON.stringify(da.value).slice(0, 80)} vs ${JSON.stringify(db.value).slice(0, 80)}`);
    else if ((da.expireAtMs < 0) !== (db.expireAtMs < 0) || Math.abs(da.expireAtMs - db.expireAtMs) > ttlSlackMs) diffs.push(`${key}: expires at ${da.expireAtMs} vs ${db.expireAtMs}`);
  }
  for (const key of b.keys()) if (!a.has(key)) diffs.push(`${key}: extra`);
  return diffs;
}

/** Runs `clients` closed-loop clients, each calling `op(client, i)` `perClient` times. */
export async function runClients<T>(clients: number, perClient: number, op: (client: number, i: number) => Promise<T>): Promise<T[][]> {
  return await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const results: T[] = [];
      for (let i = 0; i < perClient; i++) results.push(await op(c, i));
      return results;
    }),
  );
}

/**
 * The environment of a process (the CLI, a user's program) that reaches `tc` as a user would: its NATS URL, cluster and
 * data directory, and the default credentials file under it (no QJM_NATS_CREDS_FILE of the caller's).
 */
export function userEnv(tc: TestCluster): NodeJS.ProcessEnv {
  return {
    ...process.env,
    [envName("natsUrl")]: tc.cluster.natsUrl,
    [envName("dataDir")]: tc.cluster.dataDir,
    [envName("cluster")]: tc.cluster.cluster,
    [envName("natsCredsFile")]: "",
  };
}

/** Waits until `count` data nodes' RESP front doors listen (their status says so). */
export async function waitForDoors(tc: TestCluster, count: number): Promise<void> {
  let seen = "no status";
  try {
    await until("every front door to listen", 30000, async () => {
      const all = await tc.status();
      // What each node said of its door (a port it could not bind says so), for the message if it never comes.
      seen = all.filter((s) => s.details.respDoor !== undefined).map((s) => `${s.id} ${s.role} ${JSON.stringify(s.details.respDoor)}`).join("; ");
      const doors = all.filter((s) => (s.details.respDoor as { listening?: boolean } | undefined)?.listening === true);
      return doors.length === count ? true : undefined;
    });
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${seen}`);
  }
}

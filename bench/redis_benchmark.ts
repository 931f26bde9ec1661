/**
 * redis-benchmark, unchanged, through the RESP front doors (issue #12, second must-show), in `npm run bench`
 * (BENCH_TARGETS=redis-benchmark selects it; it is in the default set): `redis-benchmark -t set,get,incr,lpush,hset,mset
 * -c 50 -P 1` and `-P 16`, `--csv -e`, against
 *   - plain Redis (a redis-server with nothing on disk),
 *   - Redis appendfsync always (AOF, fsync before every reply),
 *   - the master's door and a replica's door of a local cluster started as `npm start` starts it (startLocalCluster:
 *     its own nats-server with a user per actor, 3 journal nodes, 3 data nodes; the default configuration, free ports).
 * redis-benchmark checks no reply, so each run is checked afterwards: it printed no server error and exited 0; the
 * INCR counter and mylist's length moved by exactly the INCRs and LPUSHes sent (each write applied once, none lost);
 * on the cluster, every replica applied the master's committed txid and holds the master's keyspace, key by key; and
 * the GETs of a door were served by that node's own Redis (its GET calls grew by at least the GETs sent).
 * A mismatch fails the part (the bench exits non-zero).
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { Redis } from "ioredis";
import { startLocalCluster, type LocalCluster } from "../src/cluster/local_cluster.js";
import { defaults, localActorCount } from "../src/config/config.js";
import { freePorts } from "../src/process/ports.js";
import { redisPassword } from "../src/redis/redis_server.js";
import { diffKeyspaces, dumpKeyspace } from "../test/helpers/harness.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { errorMessage, retryUntil } from "./harness.js";
import { commandCalls, counterProblems, parseBenchmarkCsv, requestsFor, requestsSent, serverErrors, type BenchmarkRow, type CounterState } from "./redis_benchmark_report.js";
import { startBenchRedis } from "./servers.js";
import {
  CONNECT_TIMEOUT_MS,
  REDIS_BENCHMARK_CATCH_UP_MS,
  REDIS_BENCHMARK_CLIENTS,
  REDIS_BENCHMARK_PIPELINES,
  REDIS_BENCHMARK_REQUESTS_PER_SECOND,
  REDIS_BENCHMARK_SLACK_MS,
  REDIS_BENCHMARK_TESTS,
  REDIS_BENCHMARK_TIMEOUT_FACTOR,
  SETUP_TIMEOUT_MS,
} from "./settings.js";
import { bundleDir } from "../src/util/package_root.js";

/** BENCH_TARGETS name of this part. */
export const REDIS_BENCHMARK_TARGET = "redis-benchmark";
/** Its targets, in the order they are run and printed; the first is what the ratios divide by. */
export const TARGETS = ["Redis", "Redis appendfsync always", "master door", "replica door"] as const;
const DOOR_READY_RETRY_MS = 200;
const CATCH_UP_POLL_MS = 100;

export interface RedisBenchmarkResult {
  /** `-n`: requests per test. */
  requests: number;
  rows: BenchmarkRow[];
  /** What was checked and held, one line each (the GETs a door's Redis served, the keyspaces compared…). */
  checks: string[];
  /** What did not hold: empty on success. */
  problems: string[];
}

/** Where one run goes, found just before it: a door follows the master, which may change between runs (a failover). */
interface Placement {
  /** redis-benchmark's port (the server, or the door). */
  port: number;
  /** The door's node. */
  node?: string;
  /** The Redis that serves the run's GETs (a door's node's own Redis). */
  getsPort: number;
  /** A Redis that holds the target's state now (the master's, for a door). */
  statePort: number;
  /** The master's epoch (a door target): a run that saw it change met a failover. */
  epoch?: number;
}

interface Settled {
  problems: string[];
  checked?: string;
  /** A Redis that holds the state the run left (the master's, once every replica matches it). */
  statePort: number;
  epoch?: number;
}

interface Endpoint {
  target: string;
  /** The Redis password (a cluster's). */
  password?: string;
  place(): Promise<Placement>;
  /** After a run: a cluster's replicas caught up and hold the master's keyspace (problems, or what was checked). */
  settle(): Promise<Settled>;
  /** What the GETs' connections were given (a door's consistency level). */
  reads?: string;
}

/** `targets`: a subset of TARGETS (the smoke test runs plain Redis alone); `requests`: `-n` instead of BENCH_SECONDS's. */
export async function runRedisBenchmarkBench(root: string, seconds: number, only: { targets?: readonly string[]; requests?: number } = {}): Promise<RedisBenchmarkResult> {
  const requests = only.requests ?? requestsFor(seconds, REDIS_BENCHMARK_REQUESTS_PER_SECOND, REDIS_BENCHMARK_PIPELINES);
  const result: RedisBenchmarkResult = { requests, rows: [], checks: [], problems: [] };
  const timeoutMs = 6 * seconds * 1000 * REDIS_BENCHMARK_TIMEOUT_FACTOR + REDIS_BENCHMARK_SLACK_MS;
  const wanted = (target: string) => only.targets === undefined || only.targets.includes(target);
  for (const [name, persistent, extraArgs] of [["Redis", false, []], ["Redis appendfsync always", true, ["--appendfsync", "always"]]] as const) {
    if (!wanted(name)) continue;
    const cleanup = new Cleanup();
    try {
      // startRedisServer's persistent Redis is AOF everysec; a later argument on the command line wins.
      const { port } = await startBenchRedis(cleanup, { dir: path.join(root, name.replace(/\W+/g, "-")), persistent, extraArgs: [...extraArgs] });
      await measure({ target: name, place: async () => ({ port, getsPort: port, statePort: port }), settle: async () => ({ problems: [], statePort: port }) }, requests, timeoutMs, result);
    } catch (err) {
      result.problems.push(`${name}: ${errorMessage(err)}`);
    } finally {
      await cleanup.run();
    }
  }
  if (!wanted("master door") && !wanted("replica door")) return result;
  const cleanup = new Cleanup();
  try {
    const cluster = await startCluster(cleanup, path.join(root, "cluster"));
    for (const endpoint of await doorEndpoints(cluster)) if (wanted(endpoint.target)) await measure(endpoint, requests, timeoutMs, result);
  } catch (err) {
    result.problems.push(`cluster: ${errorMessage(err)}`);
  } finally {
    await cleanup.run();
  }
  return result;
}

/** Both pipeline depths on one target: each run measured, then checked against the state it left. */
async function measure(e: Endpoint, requests: number, timeoutMs: number, result: RedisBenchmarkResult): Promise<void> {
  for (const pipeline of REDIS_BENCHMARK_PIPELINES) {
    const what = `${e.target} -P ${pipeline}`;
    try {
      const at = await e.place();
      const before = await withRedis(at.statePort, e.password, counterState);
      const getsBefore = await withRedis(at.getsPort, e.password, getCalls);
      const run = await runRedisBenchmark(at.port, pipeline, requests, timeoutMs);
      const errors = serverErrors(run.output);
      if (run.exit !== 0 || errors.length > 0) {
        result.problems.push(`${what}: redis-benchmark exit ${run.exit}${errors.length > 0 ? `: ${errors.slice(0, 3).join(" | ")}` : ""}`);
        continue;
      }
      result.rows.push(...parseBenchmarkCsv(run.output).map((line) => ({ ...line, target: e.target, pipeline })));
      // Counted before settle(): comparing keyspaces GETs keys too.
      const getsAfter = await withRedis(at.getsPort, e.password, getCalls);
      const gets = getsAfter.calls - getsBefore.calls;
      const settled = await e.settle();
      const sent = requestsSent(requests, pipeline);
      const problems = [...settled.problems, ...counterProblems(before, await withRedis(settled.statePort, e.password, counterState), sent)];
      const failover = at.epoch === settled.epoch ? "" : `; a failover during the run (epoch ${at.epoch} → ${settled.epoch})`;
      const whose = at.node === undefined ? "its" : `${at.node}'s`;
      // A node that changes role wipes and restarts its Redis: its counters start again, and the GETs cannot be counted.
      const restarted = getsAfter.runId !== getsBefore.runId;
      if (!restarted && gets < sent) problems.push(`GET: ${whose} Redis counted ${gets} GET calls, ${sent} GETs were sent: not all served there${failover}`);
      result.problems.push(...problems.map((p) => `${what}: ${p}`));
      if (problems.length > 0) continue;
      const served = restarted
        ? `GETs not counted: ${whose} Redis restarted during the run`
        : `${gets} GET calls on ${whose} own Redis for ${sent} GETs sent${e.reads === undefined ? "" : ` (${e.reads})`}`;
      result.checks.push(`${what}: exit 0, no error reply; INCR counter and LLEN mylist each +${sent} (= INCRs, LPUSHes sent); ${served}${settled.checked === undefined ? "" : `; ${settled.checked}`}${failover}`);
    } catch (err) {
      result.problems.push(`${what}: ${errorMessage(err)}`);
    }
  }
}

/** A connection of its own for one look (a data node's Redis restarts when its node changes role). */
async function withRedis<T>(port: number, password: string | undefined, look: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ host: "127.0.0.1", port, password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: CONNECT_TIMEOUT_MS });
  r.on("error", () => {
    /* surfaces as a rejected command */
  });
  try {
    await r.connect();
    return await look(r);
  } finally {
    r.disconnect();
  }
}

async function counterState(r: Redis): Promise<CounterState> {
  const [counter, listLength] = await Promise.all([r.get("counter:__rand_int__"), r.llen("mylist")]);
  return { counter: counter === null ? 0 : Number(counter), listLength };
}

/** GET calls so far, and the server's run id (another after a restart, whose counters start at 0). */
async function getCalls(r: Redis): Promise<{ calls: number; runId: string }> {
  const [stats, server] = await Promise.all([r.info("commandstats"), r.info("server")]);
  return { calls: commandCalls(stats, "get"), runId: /^run_id:(\w+)/m.exec(server)?.[1] ?? "" };
}

/** One redis-benchmark run; killed (by its pid) past `timeoutMs`. */
function runRedisBenchmark(port: number, pipeline: number, requests: number, timeoutMs: number): Promise<{ exit: number | null; output: string }> {
  const args = ["-h", "127.0.0.1", "-p", String(port), "-t", REDIS_BENCHMARK_TESTS, "-c", String(REDIS_BENCHMARK_CLIENTS), "-P", String(pipeline), "-n", String(requests), "--csv", "-e"];
  return new Promise((resolve, reject) => {
    const child = spawn("redis-benchmark", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => reject(new Error(`cannot run redis-benchmark (Debian package redis-tools): ${err.message}`)));
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ exit: code, output });
    });
  });
}

/** A local cluster as `npm start` runs it (its own nats-server with users, the default configuration), on free ports. */
async function startCluster(cleanup: Cleanup, dataDir: string): Promise<LocalCluster> {
  const taken = new Set<number>();
  const nodes = defaults.dataNodes.length;
  const config = {
    dataRedisPortBase: await freePorts(nodes, taken),
    respPort: await freePorts(nodes, taken),
    metricsPort: await freePorts(localActorCount(defaults), taken),
    masterRedisPort: await freePorts(1, taken),
    replicaRedisPortBase: await freePorts(defaults.replicas.length, taken),
  };
  const cluster = await startLocalCluster({ natsUrl: `nats://127.0.0.1:${await freePorts(1, taken)}`, dataDir, config, output: "files" });
  cleanup.add("redis-qjm local cluster", () => cluster.stop());
  for (const child of cluster.actors.values()) trackServer(child, bundleDir());
  return cluster;
}

/** `INFO qjm` of a door, as a map of its fields (qjm_role, qjm_committed_txid…). */
async function qjmInfo(port: number): Promise<Map<string, string>> {
  const text = await withRedis(port, undefined, (door) => door.info("qjm"));
  return new Map(text.split(/\r?\n/).filter((l) => l.startsWith("qjm_")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
}

/** The index of the data node that is master now (its door says so), and its epoch. */
async function masterNow(cluster: LocalCluster): Promise<{ index: number; epoch: number }> {
  const { config } = cluster;
  return await retryUntil("a master door", SETUP_TIMEOUT_MS, DOOR_READY_RETRY_MS, async () => {
    const infos = await Promise.all(config.dataNodes.map((_, i) => qjmInfo(config.respPort + i)));
    const index = infos.findIndex((info) => info.get("qjm_role") === "master");
    if (index < 0) throw new Error(`no master yet (roles ${infos.map((info) => info.get("qjm_role")).join(", ")})`);
    return { index, epoch: Number(infos[index].get("qjm_epoch")) };
  });
}

/** The master's door and the first replica's, once the master took a write through its door. */
async function doorEndpoints(cluster: LocalCluster): Promise<Endpoint[]> {
  const { config } = cluster;
  const password = redisPassword(cluster.dataDir);
  await retryUntil("a master door that takes a write", SETUP_TIMEOUT_MS, DOOR_READY_RETRY_MS, async () => {
    const { index } = await masterNow(cluster);
    await withRedis(config.respPort + index, undefined, (door) => door.set("bench:ready", "1"));
  });
  const place = (replica: boolean) => async (): Promise<Placement> => {
    const master = await masterNow(cluster);
    const i = replica ? config.dataNodes.findIndex((_, j) => j !== master.index) : master.index;
    return { port: config.respPort + i, node: config.dataNodes[i], getsPort: config.dataRedisPortBase + i, statePort: config.dataRedisPortBase + master.index, epoch: master.epoch };
  };
  const settle = () => replicasMatch(cluster, password);
  // redis-benchmark sends no QJM.CONSISTENCY: its connections read at the default, and each test opens new ones.
  const reads = "session consistency, the default; the GET test's connections wrote nothing, so no read waited for a txid";
  return [
    { target: "master door", password, place: place(false), settle, reads },
    { target: "replica door", password, place: place(true), settle, reads },
  ];
}

/**
 * Every replica applied the master's committed txid (INFO qjm of the doors), then holds the master's keyspace key by
 * key (type, value, expiry): the problems, empty when all match.
 */
async function replicasMatch(cluster: LocalCluster, password: string): Promise<Settled> {
  const { dataNodes: ids, respPort, dataRedisPortBase } = cluster.config;
  const master = await masterNow(cluster);
  const statePort = dataRedisPortBase + master.index;
  const committed = Number((await qjmInfo(respPort + master.index)).get("qjm_committed_txid"));
  const deadline = Date.now() + REDIS_BENCHMARK_CATCH_UP_MS;
  for (let i = 0; i < ids.length; i++) {
    if (i === master.index) continue;
    for (;;) {
      const applied = Number((await qjmInfo(respPort + i)).get("qjm_applied_txid"));
      if (applied >= committed) break;
      if (Date.now() > deadline) return { problems: [`${ids[i]} applied txid ${applied}, the master committed ${committed}, after ${REDIS_BENCHMARK_CATCH_UP_MS} ms`], statePort, epoch: master.epoch };
      await new Promise((r) => setTimeout(r, CATCH_UP_POLL_MS));
    }
  }
  const reference = await dumpKeyspace(statePort, password);
  const problems: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (i === master.index) continue;
    const diffs = diffKeyspaces(reference, await dumpKeyspace(dataRedisPortBase + i, password));
    if (diffs.length > 0) problems.push(`${ids[i]}'s keyspace differs from the master ${ids[master.index]}'s at txid ${committed}: ${diffs.slice(0, 5).join("; ")}`);
  }
  return { problems, checked: `${ids.join(", ")} hold the same ${reference.size} keys, value for value, at txid ${committed} (master ${ids[master.index]})`, statePort, epoch: master.epoch };
}

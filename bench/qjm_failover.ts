/**
 * redis-qjm as a failover system: the local cluster as `npm start` runs it (three data nodes: a standby takes over
 * from a killed master, the supervisor restarts the killed one as a replica), its own nats-server, and clients that
 * write through the package's client library (`connect`, src/client): one connection per bench client, `SET` with a
 * write id kept across the library's own resends (timeout, no responders, NOT_WRITER, NO_QUORUM, and at once when a
 * new master's writerElected event arrives), so a resent write that had committed is answered from the master's
 * dedupe window instead of being applied again. The master is found by status — the actor whose role is `master`
 * and whose health is `writing` — so the bench does not depend on which actor holds the role.
 *
 * Partitions: every actor but the journal nodes connects to NATS through its own TCP proxy (`actorNatsUrl`); cutting
 * the master's proxy cuts it off from the journal nodes, replicas and clients, all of which reach it only over NATS.
 */
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import { startLocalCluster, type LocalCluster } from "../src/cluster/local_cluster.js";
import { connect, ErrorCode, QjmClientError, type ActorStatus, type QjmClient } from "../src/client/index.js";
import { defaults, type Config } from "../src/config/config.js";
import { startTcpProxy, type TcpProxy } from "../src/process/tcp_proxy.js";
import { redisPassword } from "../src/redis/redis_server.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { ATTEMPT_DEADLINE_MS, type FailoverSystem } from "./failover.js";
import type { Attempt, WriteCall } from "./failover_ledger.js";
import { errorMessage, retryUntil } from "./harness.js";
import { freePortRange, startBenchNats } from "./servers.js";
import { CONNECT_TIMEOUT_MS } from "./settings.js";
import { bundleDir } from "../src/util/package_root.js";

/** One attempt's timeout in the client library (the same bound as the Redis clients' command timeout). */
export const QJM_WRITE_TIMEOUT_MS = 1500;
/**
 * How long the client library resends a write (same id) before it gives up (then the bench writes it again, as a new
 * write): past a takeover on a loaded machine (up to 5 s in failover_kills), and, with one attempt more, well inside
 * the bench's deadline for a call.
 */
export const QJM_RETRY_FOR_MS = ATTEMPT_DEADLINE_MS / 2;
/** The supervisor's restartStableMs in the bench: every kill is an isolated failure (see setup). */
export const QJM_RESTART_STABLE_MS = 0;
/** A fresh cluster wins its first epoch and its replicas catch up before the load starts. */
const QJM_READY_TIMEOUT_MS = 60_000;
/** Proxies made ahead for the actors that are not journal nodes (the data nodes). */
const PROXIES_MAX = 8;
const POLL_MS = 100;
/** Client connections opened at once. */
const CONNECT_BATCH = 16;

/**
 * What a write the client library threw means: committed with its reply lost (REPLY_UNDELIVERABLE: the master says
 * so) is acked; a write it gave up on that may have run is unknown; a definite refusal is failed.
 */
export function qjmOutcome(err: unknown): Attempt {
  if (!(err instanceof QjmClientError)) return "unknown";
  if (err.code === ErrorCode.REPLY_UNDELIVERABLE) return "acked";
  return err.outcomeUnknown ? "unknown" : "failed";
}

/** The redis-server that `parentPid` started and that listens on `port` (its process title says `:<port>`). */
function childRedisPid(parentPid: number, port: number): number | null {
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== parentPid) continue;
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes("redis-server") && cmdline.includes(`:${port}`)) return Number(entry);
    } catch {
      /* the process ended while we looked */
    }
  }
  return null;
}

interface MasterSeen {
  name: string;
  pid: number;
  redisPort: number;
  status: ActorStatus;
}

/** One redis-qjm local cluster under `dir`; see the file comment. */
class QjmFailover implements FailoverSystem {
  readonly name = "redis-qjm";
  private readonly cleanup = new Cleanup();
  private cluster: LocalCluster | null = null;
  /** One client-library connection per bench client; `admin` asks for statuses. */
  private clients: QjmClient[] = [];
  private admin: QjmClient | null = null;
  /** Actor name → its NATS proxy, kept across the actor's restarts; proxies not yet given to an actor. */
  private readonly proxies = new Map<string, TcpProxy>();
  private readonly spare: TcpProxy[] = [];
  private readConn: { port: number; conn: Redis } | null = null;

  constructor(private readonly dir: string) {}

  async setup(clientCount: number): Promise<void> {
    const nats = await startBenchNats(this.cleanup, path.join(this.dir, "nats"));
    for (let i = 0; i < PROXIES_MAX; i++) {
      const proxy = await startTcpProxy(nats.port);
      this.cleanup.add(`proxy ${proxy.port}`, () => proxy.close());
      this.spare.push(proxy);
    }
    // The data nodes' Redis ports (npm start's layout: three data nodes, any of which takes over), all free.
    const redisPorts = await freePortRange(defaults.dataNodes.length);
    const c = await startLocalCluster({
      natsUrl: nats.url,
      dataDir: path.join(this.dir, "data"),
      config: { dataRedisPortBase: redisPorts } satisfies Partial<Config>,
      output: "files",
      actorNatsUrl: (name) => this.actorNatsUrl(name, nats.url),
      // As `npm start`: an actor that dies is started again after restartBackoffMinMs. npm start doubles the delay
      // for an actor that dies again within restartStableMs (30 s: a crash loop); here every kill meets a healed,
      // serving cluster, so each is an isolated failure and is restarted after the shortest delay (stableMs 0).
      supervise: {
        backoffMinMs: defaults.restartBackoffMinMs,
        backoffMaxMs: defaults.restartBackoffMaxMs,
        stableMs: QJM_RESTART_STABLE_MS,
        onRestart: (name, exit, delayMs) => process.stderr.write(`bench: redis-qjm: supervisor restarts ${name} (exit ${exit}) in ${delayMs} ms\n`),
      },
    });
    this.cluster = c;
    this.cleanup.add("redis-qjm local cluster", () => c.stop());
    for (const child of c.actors.values()) trackServer(child, bundleDir());
    await this.connectClients(c, clientCount);
    this.cleanup.add("read connection", async () => this.readConn?.conn.disconnect());
    await this.awaitWhole(QJM_READY_TIMEOUT_MS);
  }

  /** Journal nodes connect directly; every other actor through a proxy of its own. */
  private actorNatsUrl(name: string, natsUrl: string): string {
    if (defaults.journalNodes.includes(name)) return natsUrl;
    let proxy = this.proxies.get(name);
    if (proxy === undefined) {
      proxy = this.spare.pop();
      if (proxy === undefined) throw new Error(`more than ${PROXIES_MAX} actors need a NATS proxy`);
      this.proxies.set(name, proxy);
    }
    return proxy.url;
  }

  /** The clients reach nats-server directly, past the actors' proxies: a partition cuts the master, not them. */
  private async connectClients(c: LocalCluster, count: number): Promise<void> {
    const open = (name: string): Promise<QjmClient> =>
      connect({ servers: c.natsUrl, credsFile: null, cluster: c.cluster, timeoutMs: QJM_WRITE_TIMEOUT_MS, retryForMs: QJM_RETRY_FOR_MS, name });
    this.cleanup.add("client connections", async () => {
      await Promise.all([...this.clients, ...(this.admin === null ? [] : [this.admin])].map((q) => q.close().catch(() => {})));
    });
    this.admin = await open("bench-failover-admin");
    for (let i = 0; i < count; i += CONNECT_BATCH) {
      const batch = Array.from({ length: Math.min(CONNECT_BATCH, count - i) }, (_, j) => open(`bench-failover-client-${i + j}`));
      // Every connection that opened is kept (and closed at teardown), even when another of its batch failed.
      const opened = await Promise.allSettled(batch);
      for (const o of opened) if (o.status === "fulfilled") this.clients.push(o.value);
      const failed = opened.find((o) => o.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    }
  }

  private async statuses(): Promise<ActorStatus[]> {
    return (await this.admin?.status().catch(() => [])) ?? [];
  }

  /** The writing master, mapped to an actor this bench started (never a process it did not). */
  private async findMaster(): Promise<MasterSeen> {
    const all = await this.statuses();
    const writing = all.filter((s) => s.role === "master" && s.health === "writing").sort((a, b) => b.epoch - a.epoch);
    const m = writing[0];
    if (m === undefined || this.cluster === null) throw new Error(`no writing master among ${all.length} actors`);
    const name = [...this.cluster.actors].find(([, child]) => child.pid === m.pid)?.[0];
    if (name === undefined) throw new Error(`the master (pid ${m.pid}) is not an actor this bench started`);
    const redisPort = Number(new URL(m.redisUrl ?? "redis://127.0.0.1:0").port);
    return { name, pid: m.pid, redisPort, status: m };
  }

  /** One call of the client library: its own resends (same id) happen inside it. */
  async write(c: number, key: string, value: string): Promise<WriteCall> {
    const client = this.clients[c];
    if (client === undefined) return { outcome: "failed", attempts: 0, duplicate: false };
    try {
      const r = await client.write("SET", key, value);
      return { outcome: "acked", attempts: r.attempts, duplicate: r.duplicate };
    } catch (err) {
      return { outcome: qjmOutcome(err), attempts: err instanceof QjmClientError ? err.attempts : 1, duplicate: false };
    }
  }

  async killMaster(): Promise<{ what: string; atMs: number }> {
    const m = await this.findMaster();
    const redisPid = childRedisPid(m.pid, m.redisPort);
    process.kill(m.pid, "SIGKILL");
    if (redisPid !== null) process.kill(redisPid, "SIGKILL");
    const atMs = performance.now();
    return { what: `kill -9 ${m.name} (pid ${m.pid}, epoch ${m.status.epoch}) and its redis-server (pid ${redisPid ?? "not found"}, port ${m.redisPort})`, atMs };
  }

  async partitionMaster(): Promise<{ what: string; atMs: number; heal: () => Promise<void> }> {
    const m = await this.findMaster();
    const proxy = this.proxies.get(m.name);
    if (proxy === undefined) throw new Error(`${m.name} has no NATS proxy`);
    proxy.setMode({ kind: "cut" });
    const atMs = performance.now();
    return { what: `cut ${m.name} (pid ${m.pid}, epoch ${m.status.epoch}) off from NATS`, atMs, heal: async () => proxy.setMode({ kind: "pass" }) };
  }

  async awaitWhole(timeoutMs: number): Promise<void> {
    // The replicas must reach what was committed when the wait began (under load, the committed txid moves on).
    let target: number | null = null;
    await retryUntil("redis-qjm whole again", timeoutMs, POLL_MS, async () => {
      const c = this.cluster;
      if (c === null) throw new Error("no cluster");
      // Actors the supervisor restarted are killed by pid too, should the bench die.
      for (const child of c.actors.values()) trackServer(child, bundleDir());
      const m = await this.findMaster();
      const all = await this.statuses();
      if (all.length < c.specs.length) throw new Error(`${all.length} of ${c.specs.length} actors answer`);
      target ??= m.status.committedTxid;
      const behind = all.filter((s) => s.role === "replica" && s.appliedTxid < (target as number));
      if (behind.length > 0) throw new Error(`replicas behind the master: ${behind.map((s) => s.id).join(", ")}`);
    });
  }

  async read(keys: readonly string[]): Promise<(string | null)[]> {
    const m = await this.findMaster();
    if (this.readConn === null || this.readConn.port !== m.redisPort) {
      this.readConn?.conn.disconnect();
      const conn = new Redis({ host: "127.0.0.1", port: m.redisPort, password: redisPassword((this.cluster as LocalCluster).dataDir), maxRetriesPerRequest: 0, connectTimeout: CONNECT_TIMEOUT_MS });
      conn.on("error", () => {});
      this.readConn = { port: m.redisPort, conn };
    }
    try {
      return await this.readConn.conn.mget(...keys);
    } catch (err) {
      throw new Error(`reading the master's Redis :${m.redisPort}: ${errorMessage(err)}`);
    }
  }

  teardown(): Promise<void> {
    return this.cleanup.run();
  }
}

export function qjmFailover(dir: string): FailoverSystem {
  return new QjmFailover(dir);
}

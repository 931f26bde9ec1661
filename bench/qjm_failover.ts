/**
 * redis-qjm as a failover system: the local cluster as `npm start` runs it (its supervisor restarts an actor that
 * dies; once the master is a role of several data nodes, a standby takes over instead), its own nats-server, writes
 * as NATS requests `["SET", key, value]`. The master is found by status — the actor whose role is `master` and whose
 * health is `writing` — so the bench does not depend on which actor holds the role.
 *
 * Partitions: every actor but the journal nodes connects to NATS through its own TCP proxy (`actorNatsUrl`); cutting
 * the master's proxy cuts it off from the journal nodes, replicas and clients, all of which reach it only over NATS.
 */
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { startLocalCluster, type LocalCluster } from "../src/cluster/local_cluster.js";
import { defaults, type Config } from "../src/config/config.js";
import { requestAll } from "../src/nats/bus.js";
import { startTcpProxy, type TcpProxy } from "../src/process/tcp_proxy.js";
import { decode, encode } from "../src/protocol/codec.js";
import type { ActorStatus } from "../src/protocol/messages.js";
import { subjects } from "../src/protocol/subjects.js";
import { redisPassword } from "../src/redis/redis_server.js";
import { Cleanup, trackServer } from "./cleanup.js";
import type { FailoverSystem } from "./failover.js";
import type { Attempt } from "./failover_ledger.js";
import { errorMessage, retryUntil } from "./harness.js";
import { connectNats, freePortRange, startBenchNats } from "./servers.js";
import { CONNECT_TIMEOUT_MS } from "./settings.js";

/** A write request with no reply within this is unknown (the same bound as the Redis clients' command timeout). */
export const QJM_WRITE_TIMEOUT_MS = 1500;
/** The supervisor's restartStableMs in the bench: every kill is an isolated failure (see setup). */
export const QJM_RESTART_STABLE_MS = 0;
/** A fresh cluster wins its first epoch and its replicas catch up before the load starts. */
const QJM_READY_TIMEOUT_MS = 60_000;
/** Proxies made ahead for the actors that are not journal nodes (the master and replicas today, data nodes later). */
const PROXIES_MAX = 8;
const POLL_MS = 100;

/** Reply codes that say the write did not run: the client may send it again as a new write. */
const REFUSED = new Set(["NOT_WRITER", "OVERLOADED"]);
/** Committed, only its reply was lost: as good as an ack (the master says do not retry it). */
const COMMITTED = new Set(["REPLY_UNDELIVERABLE"]);

/** What a write reply (or the request's error) means for the client. */
export function classifyQjmReply(data: Uint8Array): Attempt {
  const reply = decode(data) as { ok?: unknown; code?: unknown } | null;
  if (reply !== null && typeof reply === "object" && reply.ok === true) return "acked";
  const code = reply !== null && typeof reply === "object" ? String(reply.code) : "";
  if (COMMITTED.has(code)) return "acked";
  return REFUSED.has(code) ? "failed" : "unknown";
}

function classifyRequestError(err: unknown): Attempt {
  // No responders: no master was subscribed, the request went nowhere. A timeout may have run.
  const e = err as { isNoResponders?: () => boolean };
  return typeof e.isNoResponders === "function" && e.isNoResponders() ? "failed" : "unknown";
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
  private nc: NatsConnection | undefined;
  private writeSubject = "";
  /** Attempts waiting at the master; a new master's writerElected event gives them up at once (see write). */
  private readonly waitingForMaster = new Set<() => void>();
  /** Actor name → its NATS proxy, kept across the actor's restarts; proxies not yet given to an actor. */
  private readonly proxies = new Map<string, TcpProxy>();
  private readonly spare: TcpProxy[] = [];
  private readConn: { port: number; conn: Redis } | null = null;

  constructor(private readonly dir: string) {}

  async setup(): Promise<void> {
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
    for (const child of c.actors.values()) trackServer(child, "actors");
    this.nc = await connectNats(this.cleanup, c.natsUrl, "bench-failover-clients");
    this.writeSubject = subjects(c.cluster).write;
    this.watchElections(this.nc, c.cluster);
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

  private async statuses(): Promise<ActorStatus[]> {
    if (this.nc === undefined || this.cluster === null) return [];
    return (await requestAll(this.nc, subjects(this.cluster.cluster).status, {}, this.cluster.config.statusTimeoutMs).catch(() => [])) as ActorStatus[];
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

  /**
   * One attempt. A write waiting at a master that was just replaced is given up (unknown, and retried by the bench) as
   * soon as the new master's writerElected event arrives, as the client library does and as ioredis's failover detector
   * (+switch-master) does for the Sentinel clients; without it every closed-loop client waits out its timeout first.
   */
  async write(_c: number, key: string, value: string): Promise<Attempt> {
    if (this.nc === undefined) return "failed";
    let giveUp = (): void => {};
    const elected = new Promise<"elected">((resolve) => (giveUp = () => resolve("elected")));
    this.waitingForMaster.add(giveUp);
    try {
      const msg = await Promise.race([this.nc.request(this.writeSubject, encode(["SET", key, value]), { timeout: QJM_WRITE_TIMEOUT_MS }), elected]);
      return msg === "elected" ? "unknown" : classifyQjmReply(msg.data);
    } catch (err) {
      return classifyRequestError(err);
    } finally {
      this.waitingForMaster.delete(giveUp);
    }
  }

  private watchElections(nc: NatsConnection, cluster: string): void {
    nc.subscribe(subjects(cluster).events, {
      callback: (err, msg) => {
        if (err !== null) return;
        const event = decode(msg.data) as { type?: unknown } | null;
        if (event?.type === "writerElected") for (const giveUp of [...this.waitingForMaster]) giveUp();
      },
    });
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
      for (const child of c.actors.values()) trackServer(child, "actors");
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

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

export function qjmFailover(dir: string): FailoverSystem {
  const cleanup = new Cleanup();
  let cluster: LocalCluster | null = null;
  let nc: NatsConnection | undefined;
  let writeSubject = "";
  const proxies = new Map<string, TcpProxy>();
  const spare: TcpProxy[] = [];
  let readConn: { port: number; conn: Redis } | null = null;

  const statuses = async (): Promise<ActorStatus[]> => {
    if (nc === undefined || cluster === null) return [];
    return (await requestAll(nc, subjects(cluster.cluster).status, {}, cluster.config.statusTimeoutMs).catch(() => [])) as ActorStatus[];
  };

  /** The writing master, mapped to an actor this bench started (never a process it did not). */
  const findMaster = async (): Promise<MasterSeen> => {
    const all = await statuses();
    const writing = all.filter((s) => s.role === "master" && s.health === "writing").sort((a, b) => b.epoch - a.epoch);
    const m = writing[0];
    if (m === undefined || cluster === null) throw new Error(`no writing master among ${all.length} actors`);
    const name = [...cluster.actors].find(([, child]) => child.pid === m.pid)?.[0];
    if (name === undefined) throw new Error(`the master (pid ${m.pid}) is not an actor this bench started`);
    const redisPort = Number(new URL(m.redisUrl ?? "redis://127.0.0.1:0").port);
    return { name, pid: m.pid, redisPort, status: m };
  };

  const system: FailoverSystem = {
    name: "redis-qjm",
    async setup() {
      const nats = await startBenchNats(cleanup, path.join(dir, "nats"));
      for (let i = 0; i < PROXIES_MAX; i++) {
        const proxy = await startTcpProxy(nats.port);
        cleanup.add(`proxy ${proxy.port}`, () => proxy.close());
        spare.push(proxy);
      }
      const redisPorts = await freePortRange(1 + defaults.replicas.length);
      const config: Partial<Config> = { masterRedisPort: redisPorts, replicaRedisPortBase: redisPorts + 1 };
      const journalNodes = new Set(defaults.journalNodes);
      // Journal nodes connect directly; every other actor through a proxy of its own, kept across its restarts.
      const actorNatsUrl = (name: string): string => {
        if (journalNodes.has(name)) return nats.url;
        let proxy = proxies.get(name);
        if (proxy === undefined) {
          proxy = spare.pop();
          if (proxy === undefined) throw new Error(`more than ${PROXIES_MAX} actors need a NATS proxy`);
          proxies.set(name, proxy);
        }
        return proxy.url;
      };
      const c = await startLocalCluster({
        natsUrl: nats.url,
        dataDir: path.join(dir, "data"),
        config,
        output: "files",
        actorNatsUrl,
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
      cluster = c;
      cleanup.add("redis-qjm local cluster", () => c.stop());
      for (const child of c.actors.values()) trackServer(child, "actors");
      nc = await connectNats(cleanup, c.natsUrl, "bench-failover-clients");
      writeSubject = subjects(c.cluster).write;
      cleanup.add("read connection", async () => readConn?.conn.disconnect());
      await system.awaitWhole(60_000);
    },

    async write(_c, key, value) {
      if (nc === undefined) return "failed";
      try {
        const msg = await nc.request(writeSubject, encode(["SET", key, value]), { timeout: QJM_WRITE_TIMEOUT_MS });
        return classifyQjmReply(msg.data);
      } catch (err) {
        return classifyRequestError(err);
      }
    },

    async killMaster() {
      const m = await findMaster();
      const redisPid = childRedisPid(m.pid, m.redisPort);
      process.kill(m.pid, "SIGKILL");
      if (redisPid !== null) process.kill(redisPid, "SIGKILL");
      const atMs = performance.now();
      return { what: `kill -9 ${m.name} (pid ${m.pid}, epoch ${m.status.epoch}) and its redis-server (pid ${redisPid ?? "not found"}, port ${m.redisPort})`, atMs };
    },

    async partitionMaster() {
      const m = await findMaster();
      const proxy = proxies.get(m.name);
      if (proxy === undefined) throw new Error(`${m.name} has no NATS proxy`);
      proxy.setMode({ kind: "cut" });
      const atMs = performance.now();
      return { what: `cut ${m.name} (pid ${m.pid}, epoch ${m.status.epoch}) off from NATS`, atMs, heal: async () => proxy.setMode({ kind: "pass" }) };
    },

    async awaitWhole(timeoutMs) {
      // The replicas must reach what was committed when the wait began (under load, the committed txid moves on).
      let target: number | null = null;
      await retryUntil("redis-qjm whole again", timeoutMs, POLL_MS, async () => {
        const c = cluster;
        if (c === null) throw new Error("no cluster");
        // Actors the supervisor restarted are killed by pid too, should the bench die.
        for (const child of c.actors.values()) trackServer(child, "actors");
        const m = await findMaster();
        const all = await statuses();
        if (all.length < c.specs.length) throw new Error(`${all.length} of ${c.specs.length} actors answer`);
        target ??= m.status.committedTxid;
        const behind = all.filter((s) => s.role === "replica" && s.appliedTxid < (target as number));
        if (behind.length > 0) throw new Error(`replicas behind the master: ${behind.map((s) => s.id).join(", ")}`);
      });
    },

    async read(keys) {
      const m = await findMaster();
      if (readConn === null || readConn.port !== m.redisPort) {
        readConn?.conn.disconnect();
        const conn = new Redis({ host: "127.0.0.1", port: m.redisPort, password: redisPassword((cluster as LocalCluster).dataDir), maxRetriesPerRequest: 0, connectTimeout: CONNECT_TIMEOUT_MS });
        conn.on("error", () => {});
        readConn = { port: m.redisPort, conn };
      }
      try {
        return await readConn.conn.mget(...keys);
      } catch (err) {
        throw new Error(`reading the master's Redis :${m.redisPort}: ${errorMessage(err)}`);
      }
    },

    teardown: () => cleanup.run(),
  };
  return system;
}

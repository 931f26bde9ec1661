/**
 * Redis + Sentinel as a failover system, set up as a competent operator would for the least loss and the fastest
 * failover: one master and two replicas (AOF, fsync every second), three sentinels (quorum 2) with
 * down-after-milliseconds 1000, failover-timeout 3000, parallel-syncs 2; clients through ioredis's sentinel support
 * (its failover detector subscribed to +switch-master, READONLY → reconnect) sending `SET` + `WAIT 1 <ms>`: a write
 * is acked only when `WAIT` counted ≥ 1 replica.
 *
 * Partitions: every Redis node has a TCP proxy in front of it that its peers — the replicas' links to it, the
 * sentinels — go through (it announces the proxy's port: `replica-announce-port`, and the sentinels monitor the
 * master there); clients are mapped past the proxies (ioredis `natMap`), so cutting a node's proxy cuts it off from
 * the other servers while clients still reach it, as clients on the master's side of a partition would.
 *
 * A killed node is started again (as a replica of the new master, as an operator's supervisor would once Sentinel
 * promoted another) so that every kill meets one master and two replicas.
 */
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Redis, type RedisOptions } from "ioredis";
import { startChild, type Child } from "../src/process/child.js";
import { waitForPort } from "../src/process/ports.js";
import { startTcpProxy, type TcpProxy } from "../src/process/tcp_proxy.js";
import { Cleanup, trackServer } from "./cleanup.js";
import type { FailoverSystem } from "./failover.js";
import type { Attempt, WriteCall } from "./failover_ledger.js";
import { errorMessage, retryUntil } from "./harness.js";
import { freePorts } from "./servers.js";
import { CONNECT_TIMEOUT_MS } from "./settings.js";

const MASTER_NAME = "mymaster";
const NODES = 3;
const SENTINELS = 3;
/** Sentinel's fastest sane settings on this machine (ms): below a second, a loaded 2-core VM fails over for nothing. */
export const SENTINEL_DOWN_AFTER_MS = 1000;
export const SENTINEL_FAILOVER_TIMEOUT_MS = 3000;
/** `WAIT 1 <ms>`: a write whose replica did not confirm within this counts as unknown (it ran on the master). */
export const WAIT_TIMEOUT_MS = 1000;
/** ioredis's per-command timeout: a write with no answer within this is unknown. */
export const FAILOVER_COMMAND_TIMEOUT_MS = 1500;
/** How often a client reconnects (asks the sentinels again) after its master went away. */
const RECONNECT_MS = 50;
const SERVER_START_TIMEOUT_MS = 15_000;
const POLL_MS = 100;
/** Client connections opened at once. */
const CONNECT_BATCH = 16;

interface Node {
  index: number;
  /** The port redis-server listens on (clients) and the port of its proxy (peers; what it announces). */
  port: number;
  proxy: TcpProxy;
  dir: string;
  conf: string;
  child: Child | null;
}

/** redis-sentinel when Debian's package is installed, else redis-server in sentinel mode (the same binary). */
function sentinelCommand(conf: string): { command: string; args: string[] } {
  return fs.existsSync("/usr/bin/redis-sentinel") ? { command: "redis-sentinel", args: [conf] } : { command: "redis-server", args: [conf, "--sentinel"] };
}

function nodeConf(node: Node, masterProxyPort: number | null): string {
  return [
    "bind 127.0.0.1",
    "protected-mode no",
    `port ${node.port}`,
    `dir ${node.dir}`,
    `logfile ${path.join(node.dir, "redis.log")}`,
    'save ""',
    "appendonly yes",
    "appendfsync everysec",
    // Peers reach this node through its proxy; what it announces is what the sentinels and clients are told.
    "replica-announce-ip 127.0.0.1",
    `replica-announce-port ${node.proxy.port}`,
    "repl-diskless-sync yes",
    "repl-diskless-sync-delay 0",
    ...(masterProxyPort === null ? [] : [`replicaof 127.0.0.1 ${masterProxyPort}`]),
    "",
  ].join("\n");
}

function sentinelConf(dir: string, port: number, masterProxyPort: number): string {
  return [
    "bind 127.0.0.1",
    "protected-mode no",
    `port ${port}`,
    `dir ${dir}`,
    `logfile ${path.join(dir, "sentinel.log")}`,
    `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterProxyPort} 2`,
    `sentinel down-after-milliseconds ${MASTER_NAME} ${SENTINEL_DOWN_AFTER_MS}`,
    `sentinel failover-timeout ${MASTER_NAME} ${SENTINEL_FAILOVER_TIMEOUT_MS}`,
    `sentinel parallel-syncs ${MASTER_NAME} 2`,
    "",
  ].join("\n");
}

/** `INFO`/`SENTINEL` flat [k, v, k, v…] replies and `k:v` lines, as maps. */
function pairs(flat: unknown): Map<string, string> {
  const m = new Map<string, string>();
  if (Array.isArray(flat)) for (let i = 0; i + 1 < flat.length; i += 2) m.set(String(flat[i]), String(flat[i + 1]));
  return m;
}

function infoFields(info: string): Map<string, string> {
  return new Map(info.split("\r\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
}

/** What an attempt's error means: never sent or refused (failed), or maybe ran (unknown). */
function classifyRedisError(err: unknown): Attempt {
  const m = errorMessage(err);
  if (m.includes("enableOfflineQueue") || m.includes("READONLY") || m.includes("NOREPLICAS") || m.includes("LOADING") || m.includes("MASTERDOWN")) return "failed";
  return "unknown";
}

/** One Redis + Sentinel deployment under `dir`; see the file comment. */
class SentinelFailover implements FailoverSystem {
  readonly name = "Redis + Sentinel, WAIT 1";
  private readonly cleanup = new Cleanup();
  private readonly nodes: Node[] = [];
  private readonly sentinelPorts: number[] = [];
  /** Connections of the bench itself: one per node (index = node index), then one per sentinel. */
  private readonly admin: Redis[] = [];
  private sentinelConns: Redis[] = [];
  private clients: Redis[] = [];
  /** Client connections ioredis had ended and the bench connected again. */
  private revived = 0;

  constructor(private readonly dir: string) {}

  async setup(clientCount: number): Promise<void> {
    const ports = await freePorts(NODES + SENTINELS);
    await this.startNodes(ports.slice(0, NODES));
    await this.startSentinels(ports.slice(NODES));
    // Sentinels find each other and the replicas through hello messages and INFO: a few seconds.
    await this.awaitWhole(SERVER_START_TIMEOUT_MS * 2);
    await this.connectClients(clientCount);
  }

  private async startNodes(ports: number[]): Promise<void> {
    for (const [i, port] of ports.entries()) {
      const nodeDir = path.join(this.dir, `redis${i}`);
      fs.mkdirSync(nodeDir, { recursive: true });
      const proxy = await startTcpProxy(port);
      this.cleanup.add(`proxy of redis${i}`, () => proxy.close());
      this.nodes.push({ index: i, port, proxy, dir: nodeDir, conf: path.join(nodeDir, "redis.conf"), child: null });
    }
    this.cleanup.add("redis nodes", async () => {
      await Promise.all(this.nodes.map((n) => n.child?.stop("SIGTERM", 3000)));
    });
    this.cleanup.add("admin connections", async () => {
      for (const r of this.admin) r.disconnect();
    });
    for (const node of this.nodes) {
      fs.writeFileSync(node.conf, nodeConf(node, node.index === 0 ? null : this.nodes[0].proxy.port));
      await this.startNode(node, null);
      this.adminConn(node.port);
    }
  }

  private async startSentinels(ports: number[]): Promise<void> {
    for (const [i, port] of ports.entries()) {
      const sDir = path.join(this.dir, `sentinel${i}`);
      fs.mkdirSync(sDir, { recursive: true });
      const conf = path.join(sDir, "sentinel.conf");
      fs.writeFileSync(conf, sentinelConf(sDir, port, this.nodes[0].proxy.port));
      const { command, args } = sentinelCommand(conf);
      const child = startChild(command, args);
      trackServer(child, "redis-s");
      this.cleanup.add(`sentinel ${i}`, () => child.stop("SIGTERM", 3000));
      this.sentinelPorts.push(port);
      await waitForPort(port, SERVER_START_TIMEOUT_MS);
    }
    this.sentinelConns = this.sentinelPorts.map((p) => this.adminConn(p));
  }

  private async connectClients(count: number): Promise<void> {
    this.clients = Array.from({ length: count }, () => {
      const r = new Redis(this.clientOptions());
      r.on("error", () => {});
      return r;
    });
    this.cleanup.add("client connections", async () => {
      for (const r of this.clients) r.disconnect();
      if (this.revived > 0) process.stderr.write(`bench: Redis + Sentinel: ${this.revived} ended ioredis connections connected again\n`);
    });
    for (let i = 0; i < this.clients.length; i += CONNECT_BATCH) await Promise.all(this.clients.slice(i, i + CONNECT_BATCH).map((c) => c.connect()));
  }

  private async startNode(node: Node, replicaOfProxyPort: number | null): Promise<void> {
    const extra = replicaOfProxyPort === null ? [] : ["--replicaof", "127.0.0.1", String(replicaOfProxyPort)];
    const child = startChild("redis-server", [node.conf, ...extra]);
    node.child = child;
    trackServer(child, "redis-server");
    await waitForPort(node.port, SERVER_START_TIMEOUT_MS);
  }

  private adminConn(port: number): Redis {
    const r = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 0, retryStrategy: () => POLL_MS, commandTimeout: 1000, connectTimeout: CONNECT_TIMEOUT_MS, enableOfflineQueue: false });
    r.on("error", () => {});
    this.admin.push(r);
    return r;
  }

  private clientOptions(): RedisOptions {
    return {
      sentinels: this.sentinelPorts.map((port) => ({ host: "127.0.0.1", port })),
      name: MASTER_NAME,
      // Clients reach every node directly, past the proxy its peers go through.
      natMap: Object.fromEntries(this.nodes.map((n) => [`127.0.0.1:${n.proxy.port}`, { host: "127.0.0.1", port: n.port }])),
      failoverDetector: true,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      enableAutoPipelining: false,
      commandTimeout: FAILOVER_COMMAND_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: () => RECONNECT_MS,
      sentinelRetryStrategy: () => RECONNECT_MS,
      // A master turned replica answers READONLY: ask the sentinels again.
      reconnectOnError: (err) => (err.message.startsWith("READONLY") ? 2 : false),
    };
  }

  /** The master every sentinel that answers agrees on (its node), or null while they disagree or none answers. */
  private async agreedMaster(): Promise<Node | null> {
    const ports = new Set<number>();
    for (const s of this.sentinelConns) {
      const addr = (await s.call("SENTINEL", "get-master-addr-by-name", MASTER_NAME).catch(() => null)) as string[] | null;
      if (addr !== null) ports.add(Number(addr[1]));
    }
    if (ports.size !== 1) return null;
    const [port] = ports;
    return this.nodes.find((n) => n.proxy.port === port) ?? null;
  }

  private async currentMaster(): Promise<Node> {
    const m = await this.agreedMaster();
    if (m === null) throw new Error("the sentinels do not agree on a master");
    return m;
  }

  /** True when `master` serves with both replicas online and every sentinel sees the same, nothing down. */
  private async whole(master: Node): Promise<boolean> {
    const info = infoFields(await this.admin[master.index].info("replication"));
    if (info.get("role") !== "master" || info.get("connected_slaves") !== String(NODES - 1)) return false;
    for (let i = 0; i < NODES - 1; i++) if (!info.get(`slave${i}`)?.includes("state=online")) return false;
    for (const s of this.sentinelConns) {
      const m = pairs(await s.call("SENTINEL", "master", MASTER_NAME));
      if (m.get("flags") !== "master" || m.get("num-slaves") !== String(NODES - 1) || m.get("num-other-sentinels") !== String(SENTINELS - 1)) return false;
      // Flags only: a replica's master-link-status is refreshed by INFO every 10 s, which would add seconds per fault.
      const replicas = (await s.call("SENTINEL", "replicas", MASTER_NAME)) as unknown[];
      if (!replicas.every((r) => pairs(r).get("flags") === "slave")) return false;
    }
    return true;
  }

  /** One attempt (ioredis sends each command once: maxRetriesPerRequest 0); the bench retries it as a new call. */
  async write(c: number, key: string, value: string): Promise<WriteCall> {
    return { outcome: await this.attempt(c, key, value), attempts: 1, duplicate: false };
  }

  private async attempt(c: number, key: string, value: string): Promise<Attempt> {
    const client = this.clients[c];
    // ioredis ends a sentinel connection for good when its failover detector closes it during a reconnect
    // ("Connection is closed." from the connector, status "end"); an application would connect it again.
    if (client.status === "end") {
      this.revived++;
      client.connect().catch(() => {});
      return "failed";
    }
    try {
      const replies = await client.pipeline().set(key, value).call("WAIT", "1", String(WAIT_TIMEOUT_MS)).exec();
      if (replies === null) return "unknown";
      const [[setErr], [waitErr, replicas]] = replies as [[Error | null, unknown], [Error | null, unknown]];
      if (setErr !== null) return classifyRedisError(setErr);
      if (waitErr !== null) return "unknown";
      return Number(replicas) >= 1 ? "acked" : "unknown";
    } catch (err) {
      return classifyRedisError(err);
    }
  }

  async killMaster(): Promise<{ what: string; atMs: number }> {
    const master = await this.currentMaster();
    const child = master.child;
    if (child === null) throw new Error(`redis${master.index} is not running`);
    process.kill(child.pid, "SIGKILL");
    const atMs = performance.now();
    master.child = null;
    await child.exited;
    return { what: `kill -9 redis${master.index} (pid ${child.pid}, port ${master.port})`, atMs };
  }

  async partitionMaster(): Promise<{ what: string; atMs: number; heal: () => Promise<void> }> {
    const master = await this.currentMaster();
    master.proxy.setMode({ kind: "cut" });
    const atMs = performance.now();
    return { what: `cut redis${master.index} (port ${master.port}) off from the replicas and sentinels`, atMs, heal: async () => master.proxy.setMode({ kind: "pass" }) };
  }

  async awaitWhole(timeoutMs: number): Promise<void> {
    await retryUntil("Redis + Sentinel whole again", timeoutMs, POLL_MS, async () => {
      const master = await this.currentMaster();
      // A killed node comes back once Sentinel promoted another: as a replica of the new master.
      for (const n of this.nodes) if (n.child === null && n !== master) await this.startNode(n, master.proxy.port);
      if (!(await this.whole(master))) throw new Error(`redis${master.index} is master, replicas or sentinels not in step yet`);
    });
  }

  async read(keys: readonly string[]): Promise<(string | null)[]> {
    const master = await this.currentMaster();
    return await this.admin[master.index].mget(...keys);
  }

  teardown(): Promise<void> {
    return this.cleanup.run();
  }
}

export function sentinelFailover(dir: string): FailoverSystem {
  return new SentinelFailover(dir);
}

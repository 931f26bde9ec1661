/**
 * ===== redis-qjm itself as a bench target =====
 *
 * The cluster is built elsewhere (src/cluster/local_cluster.ts). This file is written against the shape it is
 * expected to have, and plugs in by itself once that module exists and exports `startLocalCluster`:
 *
 *   startLocalCluster(options: { natsUrl: string; dataDir: string; config?: Partial<Config> }):
 *     Promise<{ natsUrl: string; cluster: string; stop(): Promise<void> }>
 *
 * It starts a master, 3 journal nodes and the replicas against the nats-server at `natsUrl`, with all their
 * files under `dataDir`; `cluster` is the subject token (writes go to `qjm.<cluster>.write`); `stop()` stops
 * every process it started. `config` (optional) overrides the actors' configuration: the bench uses it only to
 * move the Redis ports off their fixed defaults, so that it cannot collide with a cluster someone else runs.
 * If the result also has `actors: Map<string, Child>`, those pids are killed should the bench die early. A write is a NATS request with msgpack body ["SET", key, value]; the reply is
 * msgpack {ok: true, txid, …} or {ok: false, code, message}.
 */
import path from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { defaults, type Config } from "../src/config/config.js";
import type { Child } from "../src/process/child.js";
import { subjects } from "../src/protocol/subjects.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { errorMessage, retryUntil, type Target } from "./harness.js";
import { connectNats, freePortRange, startBenchNats } from "./servers.js";
import { REQUEST_TIMEOUT_MS } from "./settings.js";
import { checkWriteReply, writeBody } from "./workload.js";

/** The module that will provide the cluster, relative to this file once compiled (dist/bench → dist/src/cluster). */
const LOCAL_CLUSTER_MODULE = "../src/cluster/local_cluster.js";
/** A fresh cluster elects its writer (epoch promise from a majority) before it accepts writes: bounded wait. */
const QJM_READY_TIMEOUT_MS = 30_000;
const QJM_READY_RETRY_MS = 200;

/** What `startLocalCluster` is assumed to return. */
export interface LocalCluster {
  natsUrl: string;
  cluster: string;
  stop(): Promise<void>;
}

/** The assumed signature of `startLocalCluster` in src/cluster/local_cluster.ts. */
export type StartLocalCluster = (options: { natsUrl: string; dataDir: string; config?: Partial<Config> }) => Promise<LocalCluster>;

export type ClusterModule = { available: true; startLocalCluster: StartLocalCluster } | { available: false; reason: string };

/**
 * Imports the cluster module if this build has one. The specifier is computed, so that tsc compiles this file
 * before the module exists; a module that exists but fails to load is reported, not mistaken for "absent".
 */
export async function loadLocalCluster(): Promise<ClusterModule> {
  const url = new URL(LOCAL_CLUSTER_MODULE, import.meta.url);
  let mod: unknown;
  try {
    mod = await import(url.href);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "ERR_MODULE_NOT_FOUND" && errorMessage(err).includes(url.pathname)) return { available: false, reason: "cluster not available in this build" };
    return { available: false, reason: `cluster module failed to load: ${errorMessage(err)}` };
  }
  const start = (mod as { startLocalCluster?: unknown }).startLocalCluster;
  if (typeof start !== "function") return { available: false, reason: "cluster not available in this build (no startLocalCluster export)" };
  return { available: true, startLocalCluster: start as StartLocalCluster };
}

function checkCluster(value: unknown): LocalCluster {
  const c = value as Partial<LocalCluster> | null;
  if (c === null || typeof c !== "object" || typeof c.natsUrl !== "string" || typeof c.cluster !== "string" || typeof c.stop !== "function") {
    throw new Error("startLocalCluster did not return { natsUrl: string, cluster: string, stop() }");
  }
  return c as LocalCluster;
}

/** If the cluster exposes its actor processes, an early exit of the bench kills them by pid like its own servers. */
function trackActors(started: object): void {
  const actors = (started as { actors?: unknown }).actors;
  if (!(actors instanceof Map)) return;
  for (const child of actors.values() as Iterable<Partial<Child>>) {
    if (typeof child.pid === "number" && child.exited instanceof Promise) trackServer(child as Child, "actors");
  }
}

/** redis-qjm as a Target: a fresh cluster per measurement, its own nats-server, one multiplexed client connection. */
export function qjmTarget(startLocalCluster: StartLocalCluster, dir: string): Target {
  const cleanup = new Cleanup();
  let nc: NatsConnection | undefined;
  let writeSubject = "";
  const write = async (c: number, i: number): Promise<void> => {
    if (nc === undefined) throw new Error("redis-qjm: setup did not complete");
    const msg = await nc.request(writeSubject, writeBody(c, i), { timeout: REQUEST_TIMEOUT_MS });
    checkWriteReply(msg.data);
  };
  return {
    name: "redis-qjm",
    async setup() {
      const nats = await startBenchNats(cleanup, path.join(dir, "nats"));
      // The master's Redis port, then one per replica, all free, instead of the fixed defaults.
      const redisPorts = await freePortRange(1 + defaults.replicas.length);
      const config: Partial<Config> = { masterRedisPort: redisPorts, replicaRedisPortBase: redisPorts + 1 };
      const started: unknown = await startLocalCluster({ natsUrl: nats.url, dataDir: path.join(dir, "data"), config });
      // Registered before its shape is checked: whatever it started must be stopped even if the check fails.
      if (started !== null && typeof started === "object" && typeof (started as Partial<LocalCluster>).stop === "function") {
        const stop = (started as LocalCluster).stop.bind(started);
        cleanup.add("redis-qjm local cluster", () => stop());
        trackActors(started);
      }
      const cluster = checkCluster(started);
      nc = await connectNats(cleanup, cluster.natsUrl, "bench-clients");
      writeSubject = subjects(cluster.cluster).write;
      // The first writes of a fresh cluster may meet NOT_WRITER while the master wins its epoch.
      await retryUntil("redis-qjm first write", QJM_READY_TIMEOUT_MS, QJM_READY_RETRY_MS, () => write(0, 0));
    },
    write,
    teardown: () => cleanup.run(),
  };
}

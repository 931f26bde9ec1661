/**
 * redis-qjm itself as a bench target: a whole local cluster (src/cluster/local_cluster.ts) per measurement —
 * its own nats-server, 3 journal nodes, the master and the replicas — on free ports. A write is a NATS request to
 * `qjm.<cluster>.write` with the msgpack body ["SET", key, value]; the reply must be {ok: true, txid, …}.
 */
import path from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { startLocalCluster } from "../src/cluster/local_cluster.js";
import { defaults, type Config } from "../src/config/config.js";
import { subjects } from "../src/protocol/subjects.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { retryUntil, type Target } from "./harness.js";
import { connectNats, freePortRange, startBenchNats } from "./servers.js";
import { REQUEST_TIMEOUT_MS } from "./settings.js";
import { checkWriteReply, writeBody } from "./workload.js";

/** A fresh cluster elects its writer (epoch promise from a majority) before it accepts writes: bounded wait. */
const QJM_READY_TIMEOUT_MS = 30_000;
const QJM_READY_RETRY_MS = 200;

/** redis-qjm as a Target: a fresh cluster per measurement, its own nats-server, one multiplexed client connection. */
export function qjmTarget(dir: string): Target {
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
      // One Redis port per data node, all free, instead of the fixed defaults.
      const redisPorts = await freePortRange(defaults.dataNodes.length);
      const config: Partial<Config> = { dataRedisPortBase: redisPorts };
      const cluster = await startLocalCluster({ natsUrl: nats.url, dataDir: path.join(dir, "data"), config, output: "files" });
      cleanup.add("redis-qjm local cluster", () => cluster.stop());
      // Should the bench die early, its actors are killed by pid like its own servers.
      for (const child of cluster.actors.values()) trackServer(child, "actors");
      nc = await connectNats(cleanup, cluster.natsUrl, "bench-clients");
      writeSubject = subjects(cluster.cluster).write;
      // The first writes of a fresh cluster may meet NOT_WRITER while the master wins its epoch.
      await retryUntil("redis-qjm first write", QJM_READY_TIMEOUT_MS, QJM_READY_RETRY_MS, () => write(0, 0));
    },
    write,
    teardown: () => cleanup.run(),
  };
}

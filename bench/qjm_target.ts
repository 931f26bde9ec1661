/**
 * redis-qjm itself as a bench target: a whole local cluster (src/cluster/local_cluster.ts) per measurement —
 * its own nats-server, 3 journal nodes, the data nodes (master and replicas) — on free ports. A write is a NATS request
 * to `qjm.<cluster>.write` with the msgpack body ["SET", key, value]; the reply must be {ok: true, txid, …}. With
 * tracing (BENCH_TRACE_SAMPLE, the cluster's traceSample), 1 write in N comes back with its per-hop stamps, and the
 * replicas publish when they applied each run of records: the window reports the breakdown and the replica lag.
 */
import path from "node:path";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { startLocalCluster } from "../src/cluster/local_cluster.js";
import { defaults, type Config } from "../src/config/config.js";
import { decode } from "../src/protocol/codec.js";
import { parseTraceApplied, parseWriteTrace, type TraceApplied } from "../src/protocol/messages.js";
import { subjects } from "../src/protocol/subjects.js";
import { traceNow } from "../src/util/trace_clock.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { retryUntil, type NamedProcess, type Target } from "./harness.js";
import { connectNats, freePortRange, startBenchNats } from "./servers.js";
import { REQUEST_TIMEOUT_MS, benchTraceSample } from "./settings.js";
import { commitStamp, replicaLag, summarizeHops, type ClientTrace } from "./trace.js";
import { checkWriteReply, writeBody } from "./workload.js";
import { bundleDir } from "../src/util/package_root.js";

/** A fresh cluster elects its writer (epoch promise from a majority) before it accepts writes: bounded wait. */
const QJM_READY_TIMEOUT_MS = 30_000;
const QJM_READY_RETRY_MS = 200;

export const QJM_TARGET = "redis-qjm";

/** redis-qjm as a Target: a fresh cluster per measurement, its own nats-server, one multiplexed client connection. */
export function qjmTarget(dir: string): Target {
  const cleanup = new Cleanup();
  const traceSample = benchTraceSample();
  let nc: NatsConnection | undefined;
  let writeSubject = "";
  let processes: NamedProcess[] = [];
  // Collected only while the window is open.
  let collecting = false;
  const traces: ClientTrace[] = [];
  const applied: TraceApplied[] = [];
  const write = async (c: number, i: number): Promise<void> => {
    if (nc === undefined) throw new Error("redis-qjm: setup did not complete");
    if (!collecting) {
      checkWriteReply((await nc.request(writeSubject, writeBody(c, i), { timeout: REQUEST_TIMEOUT_MS })).data);
      return;
    }
    const sent = traceNow();
    const msg = await nc.request(writeSubject, writeBody(c, i), { timeout: REQUEST_TIMEOUT_MS });
    const received = traceNow();
    const reply = checkWriteReply(msg.data);
    if (reply.trace !== undefined) traces.push({ sent, received, txid: Number(reply.txid), trace: parseWriteTrace(reply.trace) });
  };
  return {
    name: QJM_TARGET,
    async setup() {
      const nats = await startBenchNats(cleanup, path.join(dir, "nats"));
      // One Redis port per data node, all free, instead of the fixed defaults.
      const redisPorts = await freePortRange(defaults.dataNodes.length);
      const config: Partial<Config> = { dataRedisPortBase: redisPorts, traceSample };
      const cluster = await startLocalCluster({ natsUrl: nats.url, dataDir: path.join(dir, "data"), config, output: "files" });
      cleanup.add("redis-qjm local cluster", () => cluster.stop());
      // Should the bench die early, its actors are killed by pid like its own servers.
      for (const child of cluster.actors.values()) trackServer(child, bundleDir());
      // Every process of the cluster: its nats-server, and the actors with the redis-servers they started.
      processes = [{ name: "nats-server", pid: nats.child.pid }, ...[...cluster.actors].map(([name, child]) => ({ name, pid: child.pid }))];
      nc = await connectNats(cleanup, cluster.natsUrl, "bench-clients");
      const s = subjects(cluster.cluster);
      writeSubject = s.write;
      if (traceSample > 0) subscribeApplied(nc, s.trace, () => collecting, applied);
      // The first writes of a fresh cluster may meet NOT_WRITER while the master wins its epoch.
      await retryUntil("redis-qjm first write", QJM_READY_TIMEOUT_MS, QJM_READY_RETRY_MS, () => write(0, 0));
    },
    write,
    teardown: () => cleanup.run(),
    processes: () => processes,
    window: {
      open() {
        collecting = traceSample > 0;
      },
      close() {
        // Applied runs may trail the window's last commits by a poll: the lag is read over what arrived.
        collecting = false;
        if (traceSample === 0) return {};
        return { hops: summarizeHops(traces), lag: replicaLag(traces.map(commitStamp), applied) };
      },
    },
  };
}

/** The replicas' applied runs (TraceApplied) while `collecting()`; a malformed one is skipped. */
export function subscribeApplied(nc: NatsConnection, subject: string, collecting: () => boolean, into: TraceApplied[]): Subscription {
  return nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err !== null || !collecting()) return;
      try {
        into.push(parseTraceApplied(decode(msg.data)));
      } catch {
        // not a trace: ignored (the bench measures; the cluster's own tests check the protocol)
      }
    },
  });
}

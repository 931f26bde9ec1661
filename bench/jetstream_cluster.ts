/**
 * A 3-node nats-server cluster with JetStream and one R3 stream: the "replicated log, majority ack" baseline.
 * nats-server 2.9 acks a publish once a majority of the stream's replicas stored it; its file store does not
 * fsync each message (it syncs periodically), which is a weaker promise than the journal's fsync-before-ack.
 */
import path from "node:path";
import { jetstreamManager, StorageType, DiscardPolicy, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsServer } from "../src/nats/nats_server.js";
import { Cleanup } from "./cleanup.js";
import { errorMessage, sleep } from "./harness.js";
import { freePorts, startBenchNats } from "./servers.js";

const CLUSTER_NAME = "bench";
/** Meta-leader election, then the stream's own leader election and catch-up of its replicas. */
const READY_TIMEOUT_MS = 45_000;
/** Pause between readiness probes. */
const READY_RETRY_MS = 250;
/** Timeout of one JetStream API request while the cluster forms. */
const API_TIMEOUT_MS = 2000;
/** The stream drops its oldest messages past this, so a long run cannot fill the disk. */
const STREAM_MAX_BYTES = 512 * 1024 * 1024;

export const STREAM_NAME = "BENCH";
export const STREAM_SUBJECT = "bench.writes";

/** Starts `nodes` clustered JetStream servers under `dir`; every one that started is registered for cleanup. */
export async function startJetStreamCluster(cleanup: Cleanup, dir: string, nodes: number): Promise<NatsServer[]> {
  const ports = await freePorts(nodes * 2);
  const clientPorts = ports.slice(0, nodes);
  const routePorts = ports.slice(nodes);
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(",");
  // Started together: each waits for its routes, and a node alone cannot elect a meta leader anyway.
  const started = await Promise.allSettled(
    clientPorts.map((port, k) =>
      startBenchNats(
        cleanup,
        dir,
        ["-js", "-sd", path.join(dir, `n${k + 1}`), "--cluster", `nats://127.0.0.1:${routePorts[k]}`, "--routes", routes, "--cluster_name", CLUSTER_NAME, "-n", `n${k + 1}`],
        port,
      ),
    ),
  );
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  return started.map((s) => (s as PromiseFulfilledResult<NatsServer>).value);
}

/**
 * Creates the stream with `replicas` replicas and waits, bounded, until it has a leader and every follower
 * is current: a publish measured before that would time the election, not the replication.
 */
export async function createReplicatedStream(nc: NatsConnection, replicas: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastProblem = "not tried";
  while (Date.now() < deadline) {
    try {
      const jsm: JetStreamManager = await jetstreamManager(nc, { timeout: API_TIMEOUT_MS });
      const info = await jsm.streams.info(STREAM_NAME).catch(() =>
        jsm.streams.add({
          name: STREAM_NAME,
          subjects: [STREAM_SUBJECT],
          num_replicas: replicas,
          storage: StorageType.File,
          max_bytes: STREAM_MAX_BYTES,
          discard: DiscardPolicy.Old,
        }),
      );
      const followers = info.cluster?.replicas ?? [];
      if (info.cluster?.leader !== undefined && followers.length === replicas - 1 && followers.every((p) => p.current && !p.offline)) return;
      lastProblem = `stream leader ${info.cluster?.leader ?? "none"}, ${followers.filter((p) => p.current).length}/${replicas - 1} followers current`;
    } catch (err) {
      lastProblem = errorMessage(err);
    }
    await sleep(READY_RETRY_MS);
  }
  throw new Error(`JetStream R${replicas} stream not ready within ${READY_TIMEOUT_MS} ms: ${lastProblem}`);
}

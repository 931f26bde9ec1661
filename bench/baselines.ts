/**
 * The four reference points redis-qjm is judged against, each a Target:
 *   1. NATS request/reply  – one hop through one nats-server to a responder that answers at once (the floor);
 *   2. Redis appendfsync always – durable on one box (fsync before the reply);
 *   3. Redis SET + WAIT 1 – in memory on two boxes (the replica has the write before the reply);
 *   4. JetStream R3 publish – replicated log, acked by a majority of 3 (not fsynced per message in 2.9).
 * NATS targets multiplex every client on one connection (that is how a NATS client works, and how a redis-qjm
 * client writes); Redis targets give each client its own connection (WAIT needs it; SET gets the same for parity).
 */
import path from "node:path";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Redis } from "ioredis";
import { encode } from "../src/protocol/codec.js";
import { Cleanup } from "./cleanup.js";
import type { NamedProcess, Target } from "./harness.js";
import { retryUntil } from "./harness.js";
import { STREAM_SUBJECT, createReplicatedStream, startJetStreamCluster } from "./jetstream_cluster.js";
import { connectNats, connectRedisClients, startBenchNats, startBenchRedis } from "./servers.js";
import { REQUEST_TIMEOUT_MS } from "./settings.js";
import { VALUE, checkWriteReply, keyFor, writeBody } from "./workload.js";

/** WAIT's own timeout: a replica that does not ack within it makes the write count as failed. */
const WAIT_TIMEOUT_MS = 1000;
/** Replicas WAIT waits for. */
const WAIT_REPLICAS = 1;
/** Master and replica must be linked (full sync done) within this. */
const REPLICATION_READY_TIMEOUT_MS = 20_000;
/** First publish after the stream is ready, and the master-replica link probe: retry pause. */
const PROBE_RETRY_MS = 100;
/** A JetStream cluster's publish path must accept a first message within this once the stream reports ready. */
const JETSTREAM_PROBE_TIMEOUT_MS = 15_000;
/** Journal-sized cluster: a majority of 3. */
const JETSTREAM_REPLICAS = 3;

const ECHO_SUBJECT = "bench.echo";
/** What the floor's responder answers: a reply of the same shape as a redis-qjm write reply. */
const ECHO_REPLY = encode({ ok: true, txid: 1, reply: "OK" });

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what}: setup did not complete`);
  return value;
}

export function natsRequestReplyTarget(dir: string): Target {
  const cleanup = new Cleanup();
  let nc: NatsConnection | undefined;
  return {
    name: "NATS request/reply",
    async setup() {
      const server = await startBenchNats(cleanup, dir);
      // The responder has its own connection, as a server process would.
      const responder = await connectNats(cleanup, server.url, "bench-responder");
      responder.subscribe(ECHO_SUBJECT, { callback: (_err, msg) => void msg.respond(ECHO_REPLY) });
      await responder.flush();
      nc = await connectNats(cleanup, server.url, "bench-clients");
    },
    async write(c, i) {
      const msg = await required(nc, "NATS request/reply").request(ECHO_SUBJECT, writeBody(c, i), { timeout: REQUEST_TIMEOUT_MS });
      checkWriteReply(msg.data);
    },
    teardown: () => cleanup.run(),
  };
}

/** CONFIG GET `name` on `conn`; checks that the server runs with the setting the baseline is about. */
async function expectConfig(conn: Redis, name: string, expected: string): Promise<void> {
  const reply = await conn.call("CONFIG", "GET", name);
  const value = Array.isArray(reply) ? reply[1] : undefined;
  if (value !== expected) throw new Error(`redis-server runs with ${name}=${String(value)}, expected ${expected}`);
}

export function redisAppendfsyncAlwaysTarget(dir: string): Target {
  const cleanup = new Cleanup();
  let conns: Redis[] = [];
  return {
    name: "Redis appendfsync always",
    async setup(clients) {
      // startRedisServer sets --appendfsync everysec; a later argument on the command line wins.
      const server = await startBenchRedis(cleanup, { dir: path.join(dir, "redis"), persistent: true, extraArgs: ["--appendfsync", "always"] });
      conns = await connectRedisClients(cleanup, server.port, clients);
      await expectConfig(conns[0], "appendonly", "yes");
      await expectConfig(conns[0], "appendfsync", "always");
    },
    async write(c, i) {
      const reply = await conns[c].set(keyFor(c, i), VALUE);
      if (reply !== "OK") throw new Error(`SET answered ${String(reply)}`);
    },
    teardown: () => cleanup.run(),
  };
}

export function redisSetWaitTarget(dir: string): Target {
  const cleanup = new Cleanup();
  let conns: Redis[] = [];
  return {
    name: "Redis SET + WAIT 1",
    async setup(clients) {
      // Nothing on disk on either side: this baseline is "acked once in the memory of two processes".
      const master = await startBenchRedis(cleanup, { dir: path.join(dir, "master"), persistent: false });
      const replica = await startBenchRedis(cleanup, {
        dir: path.join(dir, "replica"),
        persistent: false,
        extraArgs: ["--replicaof", "127.0.0.1", String(master.port)],
      });
      const [replicaConn] = await connectRedisClients(cleanup, replica.port, 1);
      conns = await connectRedisClients(cleanup, master.port, clients);
      await retryUntil("master-replica link", REPLICATION_READY_TIMEOUT_MS, PROBE_RETRY_MS, async () => {
        const info = await replicaConn.info("replication");
        if (!info.includes("master_link_status:up")) throw new Error("replica link is not up");
        const n = await conns[0].wait(WAIT_REPLICAS, WAIT_TIMEOUT_MS);
        if (n < WAIT_REPLICAS) throw new Error(`WAIT saw ${n} replicas`);
      });
    },
    async write(c, i) {
      // Pipelined on the client's own connection: WAIT then waits for exactly this client's SET, in one round trip.
      const results = await conns[c].pipeline().set(keyFor(c, i), VALUE).wait(WAIT_REPLICAS, WAIT_TIMEOUT_MS).exec();
      if (results === null || results.length !== 2) throw new Error("SET+WAIT pipeline was not executed");
      const [[setErr, setReply], [waitErr, acked]] = results;
      if (setErr !== null || setReply !== "OK") throw setErr ?? new Error(`SET answered ${String(setReply)}`);
      if (waitErr !== null) throw waitErr;
      if (typeof acked !== "number" || acked < WAIT_REPLICAS) throw new Error(`WAIT: ${String(acked)} replicas acknowledged within ${WAIT_TIMEOUT_MS} ms`);
    },
    teardown: () => cleanup.run(),
  };
}

export function jetStreamR3Target(dir: string): Target {
  const cleanup = new Cleanup();
  let js: JetStreamClient | undefined;
  let processes: NamedProcess[] = [];
  return {
    name: "JetStream R3 publish",
    processes: () => processes,
    async setup() {
      const servers = await startJetStreamCluster(cleanup, dir, JETSTREAM_REPLICAS);
      processes = servers.map((s, i) => ({ name: `nats-server ${i + 1}`, pid: s.child.pid }));
      // Clients connect to n1, wherever the stream leader was elected: as a client of a cluster would.
      const nc = await connectNats(cleanup, servers[0].url, "bench-clients");
      await createReplicatedStream(nc, JETSTREAM_REPLICAS);
      const client = jetstream(nc, { timeout: REQUEST_TIMEOUT_MS });
      await retryUntil("JetStream first publish", JETSTREAM_PROBE_TIMEOUT_MS, PROBE_RETRY_MS, () => client.publish(STREAM_SUBJECT, writeBody(0, 0)));
      js = client;
    },
    async write(c, i) {
      await required(js, "JetStream R3 publish").publish(STREAM_SUBJECT, writeBody(c, i), { timeout: REQUEST_TIMEOUT_MS });
    },
    teardown: () => cleanup.run(),
  };
}

/** In the order they are run and printed; the first is the floor the others are compared to. */
export const BASELINES = [natsRequestReplyTarget, redisAppendfsyncAlwaysTarget, redisSetWaitTarget, jetStreamR3Target] as const;

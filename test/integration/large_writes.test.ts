/**
 * Issue #10 class 5 on real processes: writes whose batches or records exceed nats-server's max_payload (1 MiB by
 * default) are journaled, acked and replayed — with no writer failure — and the admission queue is bounded in bytes.
 */
import crypto from "node:crypto";
import test from "ava";
import { Redis } from "ioredis";
import type { Subscription } from "@nats-io/transport-node";
import { decode } from "../../src/protocol/codec.js";
import { subjects } from "../../src/protocol/subjects.js";
import { diffKeyspaces, dumpKeyspace, runClients, startTestCluster, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";

let tc: TestCluster | undefined;
/** Every cluster a test started and did not stop: a failed test's cluster is stopped here. */
const running = new Set<TestCluster>();
test.after.always(async () => {
  for (const c of running) await c.stop().catch(() => {});
});

async function start(...args: Parameters<typeof startTestCluster>): Promise<TestCluster> {
  const c = await startTestCluster(...args);
  running.add(c);
  return c;
}

async function stop(c: TestCluster): Promise<void> {
  running.delete(c);
  await c.stop();
}

/** Shared test machines stall processes for seconds: a writer failure here must come from sizes, not from a late heartbeat. */
const generous = { quorumTimeoutMs: 15000, journalHeartbeatTimeoutMs: 15000, journalRequestTimeoutMs: 15000 };

/** Every writerFailed event from now on. */
function watchWriterFailures(cluster: TestCluster): { failures: string[]; sub: Subscription } {
  const failures: string[] = [];
  const sub = cluster.nc.subscribe(subjects(cluster.cluster.cluster).events, {
    callback: (err, msg) => {
      if (err) return;
      const e = decode(msg.data) as { type?: string; reason?: string };
      if (e.type === "writerFailed") failures.push(String(e.reason));
    },
  });
  return { failures, sub };
}

async function valueAt(port: number, password: string, key: string): Promise<Buffer | null> {
  const r = new Redis({ port, host: "127.0.0.1", password, lazyConnect: true });
  await r.connect();
  try {
    return await r.getBuffer(key);
  } finally {
    r.disconnect();
  }
}

/** The keyspaces of every replica equal the master's. */
async function assertReplicasEqualMaster(t: import("ava").ExecutionContext, cluster: TestCluster, txid: number): Promise<void> {
  await waitForReplicas(cluster, txid);
  const master = await dumpKeyspace(cluster.cluster.config.masterRedisPort, cluster.redisPassword);
  for (let i = 0; i < cluster.cluster.config.replicas.length; i++) {
    const replica = await dumpKeyspace(cluster.cluster.config.replicaRedisPortBase + i, cluster.redisPassword);
    t.deepEqual(diffKeyspaces(master, replica), [], `replica ${cluster.cluster.config.replicas[i]}`);
  }
}

test.serial("large writes - 8 clients × ten 250 KiB SETs: every write acked, no writer failure, replicas hold them", async (t) => {
  // The 3 MiB record is over journalInflightBytesMax too: it must still go, alone, to every node. Generous timeouts:
  // the test machine's cores are shared, and moving megabytes through 1 MiB fragments takes CPU.
  tc = await start("large-writes", { journalInflightBytesMax: 1024 * 1024, ...generous });
  const writer = await waitForWriter(tc);
  const watch = watchWriterFailures(tc);
  const value = (c: number, i: number): Buffer => Buffer.alloc(250 * 1024, `${c}.${i}|`);
  const replies = await runClients(8, 10, async (c, i) => await tc!.write(["SET", `big:${c}:${i}`, value(c, i)], 20000));
  const refused = replies.flat().filter((r) => !r.ok);
  t.deepEqual(refused, [], "every write acked (before: NO_QUORUM, a batch over max_payload failed every node)");
  const txids = replies.flat().map((r) => (r.ok ? r.txid : 0));
  t.is(new Set(txids).size, 80);

  // A 900 KiB value at the default max_payload: its batch (record, headers, request fields) exceeds 1 MiB on the bus.
  const huge = crypto.randomBytes(900 * 1024);
  const r900 = await tc.write(["SET", "huge", huge], 20000);
  t.true(r900.ok, JSON.stringify(r900).slice(0, 200));

  // A record over max_payload: a script whose effects are 3 MiB, journaled as one record and replayed.
  const script = await tc.write(["EVAL", "for i = 1, 3 do redis.call('SET', KEYS[1] .. i, string.rep(ARGV[1], 1024 * 1024)) end return 1", 1, "mb:", "x"], 20000);
  t.true(script.ok, JSON.stringify(script).slice(0, 200));

  const status = await waitForWriter(tc);
  t.is(status.epoch, writer.epoch, "the epoch did not change: no writer failed");
  t.deepEqual(watch.failures, []);
  watch.sub.unsubscribe();

  const last = script.ok ? script.txid : 0;
  await assertReplicasEqualMaster(t, tc, last);
  for (let i = 0; i < tc.cluster.config.replicas.length; i++) {
    const port = tc.cluster.config.replicaRedisPortBase + i;
    t.deepEqual(await valueAt(port, tc.redisPassword, "huge"), huge, "the 900 KiB value reached the replica");
    t.is((await valueAt(port, tc.redisPassword, "mb:3"))?.length, 1024 * 1024);
    t.deepEqual(await valueAt(port, tc.redisPassword, "big:7:9"), value(7, 9));
  }
  await stop(tc);
});

test.serial("large writes - the admission queue is bounded in bytes: past writesQueuedBytesMax, OVERLOADED", async (t) => {
  // One 250 KiB write in flight at a time, and 1 MiB of writes waiting behind it.
  tc = await start("queue-bytes", { writesInflightBytesMax: 300 * 1024, writesQueuedBytesMax: 1024 * 1024, ...generous });
  await waitForWriter(tc);
  const value = Buffer.alloc(250 * 1024, "q");
  const replies = await Promise.all(Array.from({ length: 16 }, async (_, i) => await tc!.write(["SET", `q:${i}`, value], 20000)));
  const overloaded = replies.filter((r) => !r.ok && r.code === "OVERLOADED");
  const acked = replies.filter((r) => r.ok);
  t.true(overloaded.length > 0, "some writes are refused at once");
  t.true(overloaded.every((r) => !r.ok && /writesQueuedBytesMax/.test(r.message)), JSON.stringify(overloaded.slice(0, 1)));
  t.true(acked.length >= 2 && acked.length <= 10, `${acked.length} acked: one in flight and at most 1 MiB (4 writes) queued behind it`);
  t.is(acked.length + overloaded.length, 16, "nothing else (no NO_QUORUM)");
  // The bound is on what waits: the next write goes through.
  const after = await tc.write(["SET", "after", value], 20000);
  t.true(after.ok);
  await stop(tc);
});

test.serial("large writes - a write whose effects pass writeEffectsBytesMax is refused, Redis reset to the journal, same epoch", async (t) => {
  tc = await start("effects-bound", { writeEffectsBytesMax: 1024 * 1024, ...generous });
  const writer = await waitForWriter(tc);
  const watch = watchWriterFailures(tc);
  const resets: number[] = [];
  const sub = tc.nc.subscribe(subjects(tc.cluster.cluster).events, {
    callback: (err, msg) => {
      const e = err ? {} : (decode(msg.data) as { type?: string; txid?: number });
      if (e.type === "redisReset") resets.push(e.txid ?? -1);
    },
  });
  const before = await tc.write(["SET", "before", "1"]);
  t.true(before.ok);
  // 2 MiB of effects from one script (2,048 SETs of 1 KiB), with small writes pipelined right behind it.
  const script = "for i = 1, 2048 do redis.call('SET', KEYS[1] .. i, string.rep('x', 1024)) end return 1";
  const [oversized, ...behind] = await Promise.all([
    tc.write(["EVAL", script, 1, "s:"], 20000),
    ...Array.from({ length: 5 }, async (_, i) => await tc!.write(["SET", `behind:${i}`, "v"], 20000)),
  ]);
  t.like(oversized, { ok: false, code: "PAYLOAD_TOO_LARGE" });
  t.true(!oversized.ok && /writeEffectsBytesMax/.test(oversized.message));
  // Run after it on Redis: refused definitely (OVERLOADED, retry); run before it: acked. Never an unknown outcome.
  t.log(`behind the oversized write: ${behind.map((r) => (r.ok ? "acked" : r.code)).join(", ")}`);
  for (const r of behind) t.true(r.ok || r.code === "OVERLOADED", JSON.stringify(r));
  const after = await tc.write(["SET", "after", "2"], 20000);
  t.true(after.ok, JSON.stringify(after));
  t.true(resets.length >= 1, "the master reset its Redis to the journal");
  sub.unsubscribe();

  const master = await dumpKeyspace(tc.cluster.config.masterRedisPort, tc.redisPassword);
  t.false([...master.keys()].some((k) => k.startsWith("s:")), "none of the refused write's effects stayed in the master's Redis");
  const ackedBehind = behind.flatMap((r, i) => (r.ok ? [`behind:${i}`] : []));
  t.deepEqual([...master.keys()].sort(), ["after", "before", ...ackedBehind].sort(), "the master holds exactly the acked writes");
  const status = await waitForWriter(tc);
  t.is(status.epoch, writer.epoch, "same epoch: the writer did not fail");
  t.deepEqual(watch.failures, []);
  watch.sub.unsubscribe();
  await assertReplicasEqualMaster(t, tc, after.ok ? after.txid : 0);
  await stop(tc);
});

for (const maxPayload of [64 * 1024, 4 * 1024 * 1024]) {
  test.serial(`large writes - with nats-server's max_payload at ${maxPayload / 1024} KiB, the largest writes it accepts are journaled and replayed`, async (t) => {
    // The cluster's own nats-server (with its users), started with this max_payload.
    tc = await start(`max-payload-${maxPayload}`, { ...generous, natsPayloadBytesMax: maxPayload });
    const writer = await waitForWriter(tc);
    const watch = watchWriterFailures(tc);
    // The largest value that fits one client message, and ones around it: batches and read replies span fragments.
    const largest = maxPayload - 1024;
    const sizes = [largest, Math.floor(largest / 2), Math.floor(largest / 3), 1000];
    const replies = await runClients(2, 4, async (c, i) => await tc!.write(["SET", `v:${c}:${i}`, Buffer.alloc(sizes[(c + i) % sizes.length], c * 16 + i)], 60000));
    t.deepEqual(replies.flat().filter((r) => !r.ok), []);
    const tooLarge = await tc.write(["SET", "too-large", Buffer.alloc(maxPayload + 1)], 20000).catch((err: Error) => ({ ok: false as const, code: "CLIENT", message: err.message }));
    t.false(tooLarge.ok, "nats-server (or its client) refuses a message over max_payload");
    const last = await tc.write(["SET", "last", "1"]);
    t.true(last.ok);
    t.is((await waitForWriter(tc)).epoch, writer.epoch);
    t.deepEqual(watch.failures, []);
    watch.sub.unsubscribe();
    await assertReplicasEqualMaster(t, tc, last.ok ? last.txid : 0);
    t.is((await valueAt(tc.cluster.config.replicaRedisPortBase, tc.redisPassword, "v:0:0"))?.length, largest);
    await stop(tc);
  });
}

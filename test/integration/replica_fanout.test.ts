/**
 * Replicas fed by the master's batch fan-out (issue #13 P4): after writes, each replica applied records from the
 * fan-out (its status counts them) and holds the master's keyspace — also across a new epoch (the master killed and
 * recovered: the buffer of the old epoch is dropped, nothing of it applied on the new epoch's commit index). With the
 * fan-out off (replicaFanoutBytesMax 0) every record comes from journal node reads.
 */
import test, { type ExecutionContext } from "ava";
import { diffKeyspaces, dumpKeyspace, runClients, startTestCluster, until, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";

interface AppliedFrom {
  fanout: number;
  read: number;
  badFanouts: number;
}

/** A cluster for one test, stopped when it ends (passed or not). The two tests, each with its own, run side by side. */
async function clusterFor(t: ExecutionContext, ...args: Parameters<typeof startTestCluster>): Promise<TestCluster> {
  const tc = await startTestCluster(...args);
  t.teardown(() => tc.stop());
  return tc;
}

/** Sequential writes from a few clients; returns the last txid acked. */
async function writes(t: ExecutionContext, tc: TestCluster, tag: string): Promise<number> {
  const replies = (await runClients(4, 50, async (c, i) => await tc.write(["SET", `${tag}:${c}:${i % 5}`, String(i)]))).flat();
  t.true(replies.every((r) => r.ok));
  return Math.max(...replies.map((r) => (r.ok ? r.txid : 0)));
}

/** Waits for every replica to apply `txid`, compares each keyspace with the master's; each replica's sources. */
async function converged(t: ExecutionContext, tc: TestCluster, txid: number): Promise<AppliedFrom[]> {
  await waitForReplicas(tc, txid);
  const master = await waitForWriter(tc);
  const masterKeys = await dumpKeyspace(Number(new URL(master.redisUrl!).port), tc.redisPassword);
  const replicas = (await tc.status()).filter((s) => s.role === "replica");
  for (const r of replicas) {
    t.deepEqual(diffKeyspaces(masterKeys, await dumpKeyspace(Number(new URL(r.redisUrl!).port), tc.redisPassword)).slice(0, 10), [], `${r.id} equals the master`);
  }
  return replicas.map((r) => (r.details as { appliedFrom: AppliedFrom }).appliedFrom);
}

test("replica fan-out - replicas apply committed records from the fan-out, and converge across a new epoch", async (t) => {
  const tc = await clusterFor(t, "fanout");
  await waitForWriter(tc);
  const first = await converged(t, tc, await writes(t, tc, "a"));
  for (const s of first) {
    t.is(s.badFanouts, 0);
    // Most records come from the fan-out; a few may be read (a replica that started mid-batch, a hint ahead of it).
    t.true(s.fanout > s.read, `fan-out ${s.fanout}, read ${s.read}`);
  }
  const epoch = (await waitForWriter(tc)).epoch;
  await tc.cluster.signal("m1", "SIGKILL");
  tc.cluster.startActor("m1");
  await until("a master of a newer epoch", 30000, async () => (await tc.status()).find((s) => s.role === "master" && s.health === "writing" && s.epoch > epoch), 100);
  const second = await converged(t, tc, await writes(t, tc, "b"));
  for (let i = 0; i < second.length; i++) t.true(second[i].fanout > first[i].fanout, "the new epoch's records come from the fan-out too");
  t.log(`applied from the fan-out / read: ${second.map((s) => `${s.fanout} / ${s.read}`).join(", ")}`);
});

test("replica fan-out - off (replicaFanoutBytesMax 0): every record is read from a journal node", async (t) => {
  const tc = await clusterFor(t, "fanout-off", { replicaFanoutBytesMax: 0 });
  await waitForWriter(tc);
  for (const s of await converged(t, tc, await writes(t, tc, "c"))) {
    t.is(s.fanout, 0);
    t.true(s.read > 0);
  }
});

/** The end-of-test check every fault test makes: the history against the committed journal and every replica. */
import type { ExecutionContext } from "ava";
import { checkAll, readJournal, type History } from "./history.js";
import { freePort } from "../../src/process/ports.js";
import { diffKeyspaces, dumpKeyspace, waitForReplicas, waitForWriter, type TestCluster } from "./harness.js";

/**
 * Waits for a writer and for every replica to apply the committed journal, then checks: every acked write is in the
 * journal at its txid, none is applied twice, txids are gap-free, and each replica equals a replay of the journal.
 * The load must be stopped first; `journalNodes` are the nodes the journal is read from (a node damaged on purpose is
 * left out: the reader refuses bad records loudly). Returns the committed txid checked.
 */
export async function verifyHistory(t: ExecutionContext, tc: TestCluster, history: History, journalNodes = tc.cluster.config.journalNodes): Promise<number> {
  const master = await waitForWriter(tc, 60000);
  // A commit notice goes out when the writer is idle: the replicas then see the whole committed log.
  const replicas = await waitForReplicas(tc, master.committedTxid, 60000);
  const journal = await readJournal(await tc.connectAs("m1"), tc.cluster.cluster, journalNodes, master.committedTxid);
  const dumps = Object.fromEntries(await Promise.all(replicas.map(async (r) => [r.id, await dumpKeyspace(Number(new URL(r.redisUrl!).port), tc.redisPassword)] as const)));
  const violations = checkAll({ history, journal, replicas: dumps, nowMs: Date.now() });
  t.deepEqual(violations, [], `history of ${history.all().length} writes against ${journal.length} committed records`);
  t.log(`${history.oks().length} acked, ${history.unknowns().length} unknown, ${history.fails().length} failed; ${journal.length} committed records checked`);
  return master.committedTxid;
}

/**
 * Every copy of the keyspace is the same, key by key, TTLs included: the master's Redis (rebuilt after each of its
 * restarts), each replica, and a replica bootstrapped now from nothing. The loads must be stopped, and no key may be
 * about to expire (see ttl_load.ts's SETTLE_MS). Returns the number of keys compared.
 */
export async function verifyCopiesEqual(t: ExecutionContext, tc: TestCluster, freshReplica: string): Promise<number> {
  const master = await waitForWriter(tc, 60000);
  const port = await freePort();
  tc.cluster.addActor({ name: freshReplica, script: "replica", args: ["--id", freshReplica, "--redis-port", String(port)] });
  const replicas = await waitForReplicas(tc, master.committedTxid, 120000, [freshReplica]);
  const reference = await dumpKeyspace(tc.cluster.config.masterRedisPort, tc.redisPassword);
  for (const r of replicas) {
    const diffs = diffKeyspaces(reference, await dumpKeyspace(Number(new URL(r.redisUrl!).port), tc.redisPassword));
    t.deepEqual(diffs, [], `replica ${r.id} against the master's Redis`);
  }
  t.log(`${reference.size} keys equal on the master and ${replicas.length} replicas (one bootstrapped at the end), TTLs included`);
  return reference.size;
}

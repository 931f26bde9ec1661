/**
 * The write-path check (test/integration/write_path.test.ts, and the TLS test on its own cluster): concurrent clients
 * write a mix of every data type; each write is acked with a unique, gap-free txid, and every replica converges to
 * the master's keyspace.
 */
import type { ExecutionContext } from "ava";
import { diffKeyspaces, dumpKeyspace, runClients, waitForReplicas, waitForWriter, type TestCluster } from "./harness.js";

/** The i-th write of client c: a mix of types, expiries and non-deterministic commands. */
export function writeFor(c: number, i: number): (string | number)[] {
  const k = `${c}:${i % 7}`;
  switch (i % 12) {
    case 0: return ["SET", `s:${k}`, `v${i}`, "EX", 1000];
    case 1: return ["HSET", `h:${k}`, `f${i}`, `v${i}`];
    case 2: return ["RPUSH", `l:${k}`, `v${i}`];
    case 3: return ["SADD", `st:${c}`, `a${i}`, `b${i}`, `c${i}`];
    case 4: return ["SPOP", `st:${c}`];
    case 5: return ["ZADD", `z:${k}`, i, `m${i}`];
    case 6: return ["INCR", `c:${c}`];
    case 7: return ["INCRBYFLOAT", `f:${c}`, "1.5"];
    case 8: return ["PEXPIRE", `h:${k}`, 500000];
    case 9: return ["EVAL", "redis.call('SET', KEYS[1], tostring(math.random())) return 1", 1, `r:${c}`];
    case 10: return ["SET", `nx:${c}`, `v${i}`, "NX"];
    default: return ["HINCRBY", `h:${k}`, "n", 1];
  }
}

/**
 * `clients` × `perClient` writes on a fresh cluster (txids from 1): all acked, each client's txids increasing, all of
 * them unique and gap-free; then every replica holds the master's keyspace. Returns the number of writes.
 */
export async function checkWritePath(t: ExecutionContext, tc: TestCluster, clients: number, perClient: number): Promise<number> {
  const master = await waitForWriter(tc);
  const replies = await runClients(clients, perClient, async (c, i) => await tc.write(writeFor(c, i)));

  const txids: number[] = [];
  for (const [c, perClientReplies] of replies.entries()) {
    let last = 0;
    for (const r of perClientReplies) {
      if (!r.ok) t.fail(`client ${c}: ${r.code} ${r.message}`);
      else {
        t.true(r.txid > last, "a client's txids increase");
        last = r.txid;
        txids.push(r.txid);
      }
    }
  }
  txids.sort((a, b) => a - b);
  t.is(txids.length, clients * perClient);
  t.deepEqual(txids, Array.from({ length: txids.length }, (_, i) => i + 1), "txids are unique and gap-free from 1");

  await waitForReplicas(tc, txids.length);
  const masterKeys = await dumpKeyspace(Number(new URL(master.redisUrl!).port), tc.redisPassword);
  t.true(masterKeys.size > clients * 10, `the master holds ${masterKeys.size} keys`);
  for (const replica of (await tc.status()).filter((s) => s.role === "replica")) {
    const diffs = diffKeyspaces(masterKeys, await dumpKeyspace(Number(new URL(replica.redisUrl!).port), tc.redisPassword));
    t.deepEqual(diffs.slice(0, 10), [], `${replica.id} equals the master`);
  }
  return txids.length;
}

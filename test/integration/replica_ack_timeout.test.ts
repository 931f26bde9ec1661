/**
 * End to end (found in review, session 25): a replica's Redis stalls (a slow command, a disk, a pause) past
 * feederSyncTimeoutMs while a run is on its way to it. The run's ACK times out; the replica must not resume from a
 * marker read while the run can still run after the read, or it applies that run twice (before the fix, r1 held
 * 15,000 elements of 9,000).
 */
import test from "ava";
import fs from "node:fs";
import path from "node:path";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { runClients, startTestCluster, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { BUSY_SCRIPT, openRedis } from "../helpers/actor_redis.js";

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

const redisPort = (s: ActorStatus): number => Number(new URL(s.redisUrl!).port);

test("replica - a run whose ACK timed out behind a stalled Redis is applied once", async (t) => {
  tc = await startTestCluster("acktimeout", { feederSyncTimeoutMs: 1500 });
  await waitForWriter(tc);
  t.true((await tc.write(["SET", "ctr", "0"])).ok);
  await waitForReplicas(tc, (await waitForWriter(tc)).committedTxid);
  const r1 = (await tc.status()).find((s) => s.role === "replica" && s.id === "r1")!;
  const busy = await openRedis(redisPort(r1), tc.redisPassword);
  const ROUNDS = 3;
  const WRITERS = 20;
  const ELEMENTS = 3000;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Records above 16 KB: Redis reads a master's stream 16 KB per event-loop turn, so a run's EXEC comes turns
      // after its start, and a marker read can be answered in between.
      const script = busy.eval(BUSY_SCRIPT, 0, 4000).catch(() => null);
      // The first record r1 reads in the stall is its timed-out run: one RPUSH of many small elements (~250 KB).
      t.true((await tc!.write(["RPUSH", "list", ...Array.from({ length: ELEMENTS }, (_, i) => `${round}:${i}:${"e".repeat(60)}`)])).ok);
      await runClients(WRITERS, 1, async () => t.true((await tc!.write(["INCR", "ctr"])).ok));
      await script;
    }
  } finally {
    busy.disconnect();
  }
  await waitForReplicas(tc, (await waitForWriter(tc)).committedTxid);
  const status = (await tc.status()).find((s) => s.id === "r1")!;
  t.log(`r1: ${JSON.stringify({ health: status.health, lastError: (status.details as { lastError?: string }).lastError })}`);
  const log = fs.readFileSync(path.join(tc.cluster.dataDir, "logs", "r1.log"), "utf8").split("\n");
  for (const line of log.filter((l) => /could not apply|tailing failed|marker/.test(l)).slice(0, 8)) t.log(line.slice(0, 300));
  const r = await openRedis(redisPort(r1), tc.redisPassword);
  try {
    t.is(await r.llen("list"), ROUNDS * ELEMENTS, "r1 applied each RPUSH once");
    t.is(await r.get("ctr"), String(ROUNDS * WRITERS), "r1 applied each INCR once");
  } finally {
    r.disconnect();
  }
});

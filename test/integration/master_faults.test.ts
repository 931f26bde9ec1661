/**
 * kill -9 of the master at seeded random moments under load, restarting it each time: the new master takes a new
 * epoch, recovers the unfinished segment and rebuilds its Redis from the journal. After each restart every acked
 * write is in the master's Redis; at the end every acked write is in the journal and on both replicas, and no
 * replica applied a record that recovery dropped (each equals a replay of the committed journal).
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History } from "../helpers/history.js";
import { ackedMissingFrom, startLoad } from "../helpers/load.js";
import { prng, testSeed } from "../helpers/prng.js";
import { verifyHistory } from "../helpers/verify.js";

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

/**
 * The single-master layout (QJM_DATA_NODES empty), where the killed master restarts in place and rebuilds: 8 kills.
 * npm start's layout, where a standby takes over, is killed 20 times under 100 clients in failover_kills.test.ts.
 */
const KILLS = 8;

test(`master faults - kill -9 of the master at ${KILLS} seeded random moments under load loses no acked write`, async (t) => {
  const seed = testSeed(20261128);
  t.log(`seed ${seed} (QJM_TEST_SEED=${seed} replays this schedule)`);
  const random = prng(seed);
  tc = await startTestCluster("masterfaults");
  await waitForWriter(tc);
  const history = new History();
  // A short client timeout: a write in flight when the master dies gets no answer (its outcome is unknown).
  const load = startLoad(tc, history, 20, "m", 3000);
  try {
    for (let kill = 1; kill <= KILLS; kill++) {
      // Let some writes through, then kill at a random moment of the load.
      const at = load.done();
      await until("writes between kills", 30000, () => (load.done() >= at + 20 ? true : undefined), 10);
      await new Promise((r) => setTimeout(r, Math.floor(random() * 400)));
      await tc.cluster.signal("m1", "SIGKILL");
      tc.cluster.startActor("m1");
      const master = await waitForWriter(tc, 60000);
      const missing = await ackedMissingFrom(Number(new URL(master.redisUrl!).port), history, tc.redisPassword);
      t.deepEqual(missing.slice(0, 5), [], `after kill ${kill} (epoch ${master.epoch}) every acked write is in the master's Redis`);
    }
  } finally {
    await load.stop();
  }
  await verifyHistory(t, tc, history);
  t.true(history.oks().length > KILLS * 20);
});

test("master faults - the master's own redis-server killed under load: the master rebuilds it and serves again, nothing lost", async (t) => {
  const local = await startTestCluster("masterredis");
  t.teardown(() => local.stop());
  await waitForWriter(local);
  const history = new History();
  const load = startLoad(local, history, 10, "r", 3000);
  await until("200 writes", 30000, () => (load.done() >= 200 ? true : undefined), 10);
  const before = await waitForWriter(local);
  const redisPid = Number(fs.readFileSync(path.join(local.cluster.dataDir, "m1", "redis", "redis.pid"), "utf8"));
  process.kill(redisPid, "SIGKILL");
  const after = await until("a new writer with a new Redis", 60000, async () => {
    const m = (await local.status()).find((s) => s.role === "master" && s.health === "writing" && s.epoch > before.epoch);
    return m;
  }, 100);
  t.is(after.pid, before.pid, "the master process survived its Redis");
  const at = load.done();
  await until("200 more writes", 30000, () => (load.done() >= at + 200 ? true : undefined), 10);
  await load.stop();
  t.deepEqual((await ackedMissingFrom(Number(new URL(after.redisUrl!).port), history, local.redisPassword)).slice(0, 5), [], "the rebuilt Redis holds every acked write");
  await verifyHistory(t, local, history);
});

/**
 * A replica's RESP door shows the keyspace the master's door shows (issue #12): its applied-txid marker lives in
 * another database (src/redis/apply_records.ts APPLIED_DB), so DBSIZE, KEYS *, SCAN, RANDOMKEY, EXISTS and TYPE of
 * the marker's name and INFO keyspace answer alike, on an empty keyspace and after writes, after a replica restarts
 * (its Redis reloads its AOF) and after a wiped replica bootstraps from a snapshot. The master's Redis holds no marker.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { Redis } from "ioredis";
import { decode } from "../../src/protocol/codec.js";
import { APPLIED_DB, APPLIED_KEY } from "../../src/redis/apply_records.js";
import { startTestCluster, until, waitForDoors, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";

const DATA_NODES = ["d1", "d2", "d3"];
let tc: TestCluster | null = null;
const clients: Redis[] = [];

test.after.always(async () => {
  for (const c of clients) c.disconnect();
  await tc?.stop();
});

function connect(port: number, extra: Record<string, unknown> = {}): Redis {
  const r = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, ...extra });
  r.on("error", () => {});
  clients.push(r);
  return r;
}

const doorOf = (id: string): number => tc!.cluster.config.respPort + DATA_NODES.indexOf(id);

/**
 * Every key a full SCAN names, once each. (One page is not comparable: which keys a page holds follows the layout of
 * Redis's hash table, and a replica that loaded its keys from a snapshot laid them out differently from the master.)
 */
async function scanAll(r: Redis): Promise<string[]> {
  const seen = new Set<string>();
  let cursor = "0";
  do {
    const [next, keys] = await r.scan(cursor, "COUNT", 1000);
    for (const k of keys) seen.add(k);
    cursor = next;
  } while (cursor !== "0");
  return [...seen].sort();
}

/** What a door says of the whole keyspace (RANDOMKEY: whether it names a key KEYS * lists, or nil). */
async function keyspaceView(port: number): Promise<Record<string, unknown>> {
  const r = connect(port);
  try {
    await r.connect();
    const keys = (await r.keys("*")).sort();
    const random = await r.randomkey();
    return {
      dbsize: await r.dbsize(),
      keys,
      scan: await scanAll(r),
      randomkey: random === null ? null : keys.includes(random) ? "a listed key" : `unlisted ${random}`,
      exists: await r.exists(APPLIED_KEY),
      type: await r.type(APPLIED_KEY),
      infoKeyspace: await r.info("keyspace"),
    };
  } finally {
    r.disconnect();
  }
}

/** Every replica applied what the master committed; then each replica's door answers as the master's does. */
async function assertDoorsAlike(t: import("ava").ExecutionContext, when: string): Promise<void> {
  const master = await waitForWriter(tc!);
  await waitForReplicas(tc!, master.committedTxid, 120_000);
  const expected = await keyspaceView(doorOf(master.id));
  for (const id of DATA_NODES.filter((d) => d !== master.id)) {
    // A restarted door answers LOADING until it caught up with the commit index it first heard.
    const seen = await until(`${id}'s door to answer (${when})`, 60_000, () => keyspaceView(doorOf(id)).catch(() => undefined), 200);
    t.deepEqual(seen, expected, `${id}'s door shows the master's keyspace ${when}`);
  }
}

async function redisOf(id: string, db: number): Promise<Redis> {
  const s = (await tc!.status()).find((x) => x.id === id)!;
  const r = connect(Number(new URL(s.redisUrl!).port), { password: tc!.redisPassword, db });
  await r.connect();
  return r;
}

async function journalFirstTxids(): Promise<number[]> {
  return (await tc!.status()).filter((s) => s.role === "journal").map((s) => Number(s.details.firstTxid));
}

test("a replica's door: DBSIZE, KEYS, SCAN, RANDOMKEY, EXISTS, TYPE, INFO keyspace as the master's door; after a restart and a bootstrap too", async (t) => {
  const limits = { segmentMaxRecords: 50, maxSegments: 2, snapshotEveryRecords: 100, purgeMarginRecords: 20, dedupeWindowRecords: 20, compactionCheckMs: 200 };
  tc = await startTestCluster("door-keyspace", { dataNodes: DATA_NODES, ...limits });
  const bootstrapped: string[] = [];
  tc.nc.subscribe(`qjm.${tc.cluster.cluster}.events`, {
    callback: (_err, msg) => {
      const e = decode(msg.data) as { type: string; actor?: string };
      if (e.type === "bootstrapped" && e.actor !== undefined) bootstrapped.push(e.actor);
    },
  });
  const master = await waitForWriter(tc);
  await waitForDoors(tc, DATA_NODES.length);
  const door = connect(doorOf(master.id));
  await door.connect();

  // Something applied (so every replica holds a marker), nothing left: an empty keyspace.
  t.is(await door.set("k", "v"), "OK");
  t.is(await door.del("k"), 1);
  await assertDoorsAlike(t, "on an empty keyspace");

  await door.set("s", "1");
  await door.rpush("l", "a", "b");
  await door.hset("h", "f", "v");
  await door.sadd("set", "m");
  await door.zadd("z", 1, "m");
  await assertDoorsAlike(t, "after a few writes");

  // The marker is in its own database on a replica, and nowhere on the master's Redis.
  const replicas = DATA_NODES.filter((d) => d !== master.id);
  const markerDb = await redisOf(replicas[0], APPLIED_DB);
  t.regex((await markerDb.get(APPLIED_KEY)) ?? "", /^\d+$/);
  // (Its ACL refuses SELECT 1: INFO names every database that holds a key.)
  t.notRegex(await (await redisOf(master.id, 0)).info("keyspace"), /^db1:/m, "the master's Redis holds no marker");

  // A replica restarted: its Redis reloads its AOF.
  await tc.cluster.signal(replicas[0], "SIGKILL");
  tc.cluster.startActor(replicas[0]);
  await door.set("after-restart", "1");
  await assertDoorsAlike(t, "after a replica restarted");

  // Enough writes for a durable snapshot and a purged journal; then a wiped replica bootstraps from the snapshot.
  // (Nodes compact only past maxSegments: the writes go on until each purged.)
  let written = 0;
  await until("every journal node to purge txid 1", 180_000, async () => {
    const writes = door.pipeline();
    for (const end = written + 50; written < end; written++) writes.set(`key:${written}`, String(written));
    t.true(((await writes.exec()) ?? []).every(([err]) => err === null), "50 more writes acked");
    return (await journalFirstTxids()).every((f) => f > 1) ? true : undefined;
  }, 200);
  t.log(`${written} writes until every journal node purged txid 1`);
  await tc.cluster.signal(replicas[1], "SIGKILL");
  fs.rmSync(path.join(tc.cluster.dataDir, replicas[1]), { recursive: true, force: true });
  tc.cluster.startActor(replicas[1]);
  await until(`${replicas[1]} to bootstrap from the snapshot`, 120_000, () => (bootstrapped.includes(`replica.${replicas[1]}`) ? true : undefined), 200);
  await assertDoorsAlike(t, "after a wiped replica bootstrapped");

  // Every key deleted: empty again everywhere, the bootstrapped replica's marker (from the snapshot) still unseen.
  const all = await door.keys("*");
  for (let i = 0; i < all.length; i += 100) await door.del(...all.slice(i, i + 100));
  await assertDoorsAlike(t, "on an empty keyspace after the bootstrap");
});

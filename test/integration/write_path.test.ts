/**
 * The quorum write path, end to end, on real processes: 10,000 writes from 100 concurrent clients over every
 * data type, each acked with a unique, gap-free txid, and both replicas converge to the master's keyspace.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { pidRuns } from "../../src/process/child.js";
import { request } from "../../src/nats/bus.js";
import { subjects } from "../../src/protocol/subjects.js";
import { decodeEffects, scanRecords } from "../../src/segment/record.js";
import { diffKeyspaces, dumpKeyspace, runClients, startTestCluster, until, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { checkWritePath } from "../helpers/write_path_check.js";

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

const CLIENTS = 100;
const PER_CLIENT = 100;

test.serial("write path - 10,000 writes from 100 clients: all acked, txids unique and gap-free, replicas converge", async (t) => {
  tc = await startTestCluster("writepath");
  await checkWritePath(t, tc, CLIENTS, PER_CLIENT);
});

test.serial("write path - a replica killed with -9 takes its redis-server with it, restarts and resumes exactly", async (t) => {
  const pidFile = path.join(tc!.cluster.dataDir, "r1", "redis", "redis.pid");
  const redisPid = Number(fs.readFileSync(pidFile, "utf8"));
  t.true(pidRuns(redisPid, "redis-server"));
  await tc!.cluster.signal("r1", "SIGKILL");
  await until("r1's redis-server to die with it", 5000, () => (pidRuns(redisPid, "redis-server") ? undefined : true));
  // Writes go on while r1 is down.
  const replies = await runClients(10, 50, async (c, i) => await tc!.write(["SET", `after-kill:${c}:${i}`, String(i)]));
  const last = Math.max(...replies.flat().map((r) => (r.ok ? r.txid : 0)));
  t.true(replies.flat().every((r) => r.ok));
  tc!.cluster.startActor("r1");
  await waitForReplicas(tc!, last);
  const master = await waitForWriter(tc!);
  const masterKeys = await dumpKeyspace(Number(new URL(master.redisUrl!).port), tc!.redisPassword);
  for (const replica of (await tc!.status()).filter((s) => s.role === "replica")) {
    t.deepEqual(diffKeyspaces(masterKeys, await dumpKeyspace(Number(new URL(replica.redisUrl!).port), tc!.redisPassword)).slice(0, 10), [], `${replica.id} equals the master`);
  }
});

test.serial("write path - an expired key's DEL, which belongs to no client write, is journaled and replayed", async (t) => {
  const set = await tc!.write(["SET", "short-lived", "x", "PX", 50]);
  t.true(set.ok);
  if (!set.ok) return;
  // No client write follows: the DEL Redis propagates on expiry must reach the journal as a record of its own.
  const master = await until("an orphan record after the expiry", 10000, async () => {
    const m = (await tc!.status()).find((s) => s.role === "master");
    return m !== undefined && m.committedTxid > set.txid ? m : undefined;
  }, 50);
  const read = (await request(await tc!.connectAs("m1"), subjects(tc!.cluster.cluster).journalRead("jn1"), { type: "read", fromTxid: set.txid + 1, bytesMax: 65536, recordsMax: 1, uncommitted: false }, 5000)) as { read: { records: Uint8Array } };
  const [record] = scanRecords(read.read.records).records;
  t.deepEqual(decodeEffects(record.payload).map((e) => e.map((a) => Buffer.from(a).toString())), [["DEL", "short-lived"]]);
  await waitForReplicas(tc!, master.committedTxid);


  for (const replica of (await tc!.status()).filter((s) => s.role === "replica")) {
    t.is((await dumpKeyspace(Number(new URL(replica.redisUrl!).port), tc!.redisPassword)).has("short-lived"), false, replica.id);
  }
});

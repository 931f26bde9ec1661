/**
 * Compaction under faults: a journal node killed (-9) at seeded moments while it rolls, merges and purges always
 * restarts on a valid, contiguous log and is restored; a snapshot copy with a flipped byte is refused and another
 * node's good copy is used.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { segmentFilesIn } from "../../src/journal/segment_store.js";
import { snapshotFileName } from "../../src/snapshot/snapshot_store.js";
import { decode } from "../../src/protocol/codec.js";
import { diffKeyspaces, dumpKeyspace, startTestCluster, until, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History } from "../helpers/history.js";
import { ackedMissingFrom, startLoad } from "../helpers/load.js";
import { prng, testSeed } from "../helpers/prng.js";

const clusters: TestCluster[] = [];
test.after.always(async () => {
  for (const tc of clusters) await tc.stop();
});

const LIMITS = { segmentMaxRecords: 200, maxSegments: 3, snapshotEveryRecords: 800, purgeMarginRecords: 50, compactionCheckMs: 100 };

function followEvents(tc: TestCluster): { type: string; [k: string]: unknown }[] {
  const seen: { type: string; [k: string]: unknown }[] = [];
  tc.nc.subscribe(`qjm.${tc.cluster.cluster}.events`, { callback: (_e, msg) => void seen.push(decode(msg.data) as { type: string }) });
  return seen;
}

/**
 * Overlaps among a node's segment files. A merge in progress (the node compacts again right after its restart) has
 * its output beside inputs it covers wholly, until it deletes them: those are not overlaps.
 */
function contiguousLog(tc: TestCluster, node: string): string[] {
  const all = segmentFilesIn(path.join(tc.cluster.dataDir, node))
    .map((f) => path.basename(f))
    .map((n) => /^edits_(\d+)-(\d+)$/.exec(n) ?? /^edits_inprogress_(\d+)$/.exec(n)!)
    .map((m) => ({ start: Number(m[1]), end: m[2] === undefined ? Infinity : Number(m[2]) }));
  const segs = all.filter((s) => !all.some((c) => c !== s && c.end !== Infinity && c.start <= s.start && s.end <= c.end)).sort((a, b) => a.start - b.start);
  const problems: string[] = [];
  for (let i = 1; i < segs.length; i++) if (segs[i].start <= segs[i - 1].end) problems.push(`${node}: ${segs[i - 1].start}-${segs[i - 1].end} overlaps ${segs[i].start}`);
  return problems;
}

async function masterSees(tc: TestCluster, node: string, health: string): Promise<void> {
  await until(`the master to see ${node} ${health}`, 60000, async () => {
    const m = (await tc.status()).find((s) => s.role === "master" && s.health === "writing");
    return m !== undefined && (m.details.journalNodes as Record<string, string>)[node] === health ? true : undefined;
  }, 50);
}

async function convergedReplicas(t: import("ava").ExecutionContext, tc: TestCluster, history: History): Promise<void> {
  const master = await waitForWriter(tc, 60000);
  const replicas = await waitForReplicas(tc, master.committedTxid, 120000);
  const ports = replicas.map((r) => Number(new URL(r.redisUrl!).port));
  for (const port of ports) t.deepEqual((await ackedMissingFrom(port, history, tc.redisPassword)).slice(0, 5), [], `every acked write is on the replica at ${port}`);
  t.deepEqual(diffKeyspaces(await dumpKeyspace(ports[0], tc!.redisPassword), await dumpKeyspace(ports[1], tc!.redisPassword)).slice(0, 5), [], "the replicas are equal");
}

test("compaction faults - kill -9 of a journal node at 20 seeded moments while it compacts: valid log on restart, restored", async (t) => {
  const seed = testSeed(5005);
  t.log(`seed ${seed} (QJM_TEST_SEED=${seed} replays it)`);
  const random = prng(seed);
  // A pause between compaction steps (fault injection) so that kills land inside merges and purges, not only between.
  // Snapshots rarer than rolls: purges alone cannot keep the count down, so the node merges too.
  const tc = await startTestCluster("compactkill", { ...LIMITS, snapshotEveryRecords: 2000, faultInjection: 1, compactionStepPauseMs: 100 });
  clusters.push(tc);
  const seen = followEvents(tc);
  await waitForWriter(tc);
  const history = new History();
  // Four writers: enough records for a roll every second or so; sixteen cost as much CPU and slowed each restore
  // (and the suite) without more kills landing inside compactions.
  const l = startLoad(tc, history, 4, "k");
  let leftovers = 0;
  const restoreMs: number[] = [];
  try {
    await until("a first compaction", 60000, () => (seen.some((e) => e.type === "compacted") ? true : undefined));
    for (let i = 0; i < 20; i++) {
      const node = tc.cluster.config.journalNodes[Math.floor(random() * 3)];
      // A moment while it compacts: right after it announced a compaction, or a seeded time into one.
      const compactions = seen.filter((e) => e.type === "compacted").length;
      await until("another compaction", 30000, () => (seen.filter((e) => e.type === "compacted").length > compactions ? true : undefined), 10);
      await new Promise((r) => setTimeout(r, Math.floor(random() * 300)));
      await tc.cluster.signal(node, "SIGKILL");
      const logFile = path.join(tc.cluster.dataDir, "logs", `${node}.log`);
      const before = fs.statSync(logFile).size;
      tc.cluster.startActor(node);
      const st = await until(`${node} up again`, 30000, async () => (await tc.status()).find((s) => s.id === node));
      t.true(st.health === "ok" || st.health === "restoring", `${node} restarts on a valid log (health ${st.health}, fault ${String(st.details.fault)})`);
      t.deepEqual(contiguousLog(tc, node), [], `${node}'s segments do not overlap after restart ${i + 1}`);
      const restarted = Date.now();
      await masterSees(tc, node, "healthy");
      restoreMs.push(Date.now() - restarted);
      if (/of an interrupted merge/.test(fs.readFileSync(logFile).subarray(before).toString("utf8"))) leftovers++;
    }
  } finally {
    await l.stop();
  }
  await convergedReplicas(t, tc, history);
  const compactions = seen.filter((e) => e.type === "compacted").length;
  // A segment rolls every 200 records (~0.1–0.5 s under this load): a roll used to discard the catch-up, and a node
  // went over 60 s unrestored (CI); a roll due now waits for the catch-up (rollHoldForCatchUpMs).
  t.log(`healthy again after a restart in at most ${Math.max(...restoreMs)} ms (each: ${restoreMs.join(", ")})`);
  t.log(`20 kills; ${leftovers} restarts cleaned up an interrupted merge (its file or its inputs); ${compactions} compactions; ${history.oks().length} acked, ${history.unknowns().length} unknown`);
});

test("compaction faults - a snapshot copy with a flipped byte is refused and another node's copy is used", async (t) => {
  const tc = await startTestCluster("snapflip", LIMITS);
  clusters.push(tc);
  const seen = followEvents(tc);
  await waitForWriter(tc);
  const history = new History();
  const l = startLoad(tc, history, 16, "f");
  try {
    await until("a purge below a durable snapshot", 60000, async () => ((await tc.status()).filter((s) => s.role === "journal").every((s) => Number(s.details.firstTxid) > 1) ? true : undefined), 100);
  } finally {
    await l.stop();
  }
  const master = await waitForWriter(tc);
  await waitForReplicas(tc, master.committedTxid);
  // Load stopped and replicas caught up: at most one more snapshot comes; wait until the newest is stable.
  const newest = (node: string): number => {
    const dir = path.join(tc.cluster.dataDir, node, "snapshots");
    return Math.max(0, ...fs.readdirSync(dir).filter((n) => n.endsWith(".json")).map((n) => Number(/\d+/.exec(n)![0])));
  };
  // Settled: every node's newest the same, unchanged between polls, and no replica saving or uploading one. On a
  // loaded machine an upload can outlast a poll, and a snapshot durable on two nodes may reach jn1 later: either way
  // the bootstrap then took a newer snapshot, not the flipped one (CI, session 26: jn1 held 800, the others 912).
  let last = -1;
  await until("snapshots to settle", 60000, async () => {
    const each = ["jn1", "jn2", "jn3"].map(newest);
    const now = each.every((n) => n === each[0]) ? each[0] : -1;
    const replicas = (await tc.status()).filter((s) => s.role === "replica");
    const quiet = replicas.length === 2 && replicas.every((s) => s.details.snapshotting === false);
    const settled = now === last && now > 0 && quiet;
    last = now;
    return settled ? true : undefined;
  }, 2000);
  const file = path.join(tc.cluster.dataDir, "jn1", "snapshots", snapshotFileName(last));
  const bytes = fs.readFileSync(file);
  bytes[Math.floor(bytes.length / 2)] ^= 0x01;
  fs.writeFileSync(file, bytes);

  await tc.cluster.signal("r1", "SIGKILL");
  fs.rmSync(path.join(tc.cluster.dataDir, "r1"), { recursive: true, force: true });
  tc.cluster.startActor("r1");
  const boot = await until("r1 to bootstrap", 60000, () => seen.find((e) => e.type === "bootstrapped" && e.actor === "replica.r1"));
  t.not(boot.fromNode, "jn1", "the flipped copy on jn1 was not used");
  t.is(boot.txid, last);
  const r1Log = fs.readFileSync(path.join(tc.cluster.dataDir, "logs", "r1.log"), "utf8");
  t.true(r1Log.includes("snapshot copy refused") && r1Log.includes("SHA-256"), "r1 says why it refused jn1's copy");
  await convergedReplicas(t, tc, history);
});

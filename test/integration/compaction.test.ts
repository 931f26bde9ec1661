/**
 * Claim 6 end to end, with low thresholds: segments roll, replicas snapshot their Redis onto a majority of journal
 * nodes, nodes purge what the durable snapshot covers and merge small segments, so each node's editlog stays under a
 * bound; a replica whose data is wiped, and one stopped while its next txids were purged, bootstrap from the
 * snapshot and converge; no acked write is lost.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { segmentFilesIn } from "../../src/journal/segment_store.js";
import { diffKeyspaces, dumpKeyspace, startTestCluster, until, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History } from "../helpers/history.js";
import { ackedMissingFrom, startLoad } from "../helpers/load.js";

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

function editlogOf(node: string): { files: number; bytes: number } {
  const files = segmentFilesIn(path.join(tc!.cluster.dataDir, node));
  return { files: files.length, bytes: files.reduce((n, f) => n + (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0) };
}

async function journalFirstTxids(): Promise<number[]> {
  return (await tc!.status()).filter((s) => s.role === "journal").map((s) => Number(s.details.firstTxid));
}

async function events(types: string[]): Promise<{ type: string; [k: string]: unknown }[]> {
  const seen: { type: string; [k: string]: unknown }[] = [];
  const { decode } = await import("../../src/protocol/codec.js");
  const sub = tc!.nc.subscribe(`qjm.${tc!.cluster.cluster}.events`, {
    callback: (_err, msg) => {
      const e = decode(msg.data) as { type: string };
      if (types.includes(e.type)) seen.push(e);
    },
  });
  void sub;
  return seen;
}

test("compaction - bounded editlog under load; wiped and lagging replicas bootstrap from the snapshot; nothing acked is lost", async (t) => {
  const limits = { segmentMaxRecords: 300, maxSegments: 4, snapshotEveryRecords: 1500, purgeMarginRecords: 100, compactionCheckMs: 200 };
  tc = await startTestCluster("compaction", limits);
  const seen = await events(["bootstrapped", "snapshotDurable", "compacted"]);
  await waitForWriter(tc);
  const history = new History();
  const l = startLoad(tc, history, 20, "c");
  const maxSeen = new Map<string, { files: number; bytes: number }>();
  const sample = setInterval(() => {
    for (const node of tc!.cluster.config.journalNodes) {
      const now = editlogOf(node);
      const max = maxSeen.get(node) ?? { files: 0, bytes: 0 };
      maxSeen.set(node, { files: Math.max(max.files, now.files), bytes: Math.max(max.bytes, now.bytes) });
    }
  }, 50);
  try {
    await until("4000 writes", 120000, () => (l.done() >= 4000 ? true : undefined));
    // r2 stops; the log it needs next is purged while it is down.
    await tc.cluster.signal("r2", "SIGKILL");
    const stoppedAt = (await tc.status()).find((s) => s.id === "r1")!.appliedTxid;
    await until("every journal node purged past r2's position", 120000, async () => ((await journalFirstTxids()).every((f) => f > stoppedAt + 1) ? true : undefined), 200);
    tc.cluster.startActor("r2");
    // r1 loses its data: a brand-new replica.
    await tc.cluster.signal("r1", "SIGKILL");
    fs.rmSync(path.join(tc.cluster.dataDir, "r1"), { recursive: true, force: true });
    tc.cluster.startActor("r1");
    const at = l.done();
    await until("2000 more writes", 120000, () => (l.done() >= at + 2000 ? true : undefined));
    // The master restarts on a purged journal: it rebuilds its Redis from the snapshot, then the journal.
    await tc.cluster.signal("m1", "SIGKILL");
    tc.cluster.startActor("m1");
    await until("the master to bootstrap from the snapshot", 60000, () => seen.find((e) => e.type === "bootstrapped" && e.actor === "master.m1"));
    const after = l.done();
    await until("1000 writes after the master's restart", 120000, () => (l.done() >= after + 1000 ? true : undefined));
  } finally {
    await l.stop();
    clearInterval(sample);
  }
  const master = await waitForWriter(tc);
  const replicas = await waitForReplicas(tc, master.committedTxid, 120000);
  const boots = seen.filter((e) => e.type === "bootstrapped").map((e) => e.actor);
  t.true(boots.includes("replica.r1") && boots.includes("replica.r2"), `both replicas bootstrapped: ${boots.join(", ")}`);
  t.true(seen.some((e) => e.type === "snapshotDurable"), "a snapshot became durable");
  const ports = replicas.map((r) => Number(new URL(r.redisUrl!).port));
  for (const port of ports) t.deepEqual((await ackedMissingFrom(port, history, tc!.redisPassword)).slice(0, 5), [], `every acked write is on the replica at ${port}`);
  t.deepEqual(diffKeyspaces(await dumpKeyspace(ports[0], tc!.redisPassword), await dumpKeyspace(ports[1], tc!.redisPassword)).slice(0, 5), [], "the replicas are equal");
  // The bound: maxSegments after compaction; while a merge runs its output sits beside its inputs; and a few segments
  // roll between two compaction checks.
  const bound = limits.maxSegments * 2 + 4;
  for (const [node, max] of maxSeen) {
    t.log(`${node}: at most ${max.files} segment files (bound ${bound}), ${max.bytes} bytes (committed ${master.committedTxid} records)`);
    t.true(max.files <= bound, `${node} held at most ${max.files} segment files`);
  }
  // A wiped journal node gets the durable snapshot back with its log: the purged log depends on it.
  await tc.cluster.signal("jn3", "SIGKILL");
  fs.rmSync(path.join(tc.cluster.dataDir, "jn3"), { recursive: true, force: true });
  tc.cluster.startActor("jn3");
  // The next batches find it empty: it is masked, formatted, caught up and restored.
  const more = startLoad(tc, history, 4, "d");
  const jn3 = await until("jn3 restored with the durable snapshot", 60000, async () => {
    const s = (await tc!.status()).find((x) => x.id === "jn3");
    const durable = Number(s?.details.durableSnapshotTxid ?? 0);
    return s?.health === "ok" && durable > 0 && (s.details.snapshots as number[]).includes(durable) ? s : undefined;
  }, 200);
  await more.stop();
  t.log(`jn3 restored holding snapshot ${String(jn3.details.durableSnapshotTxid)}, first txid ${String(jn3.details.firstTxid)}`);
  t.log(`${history.oks().length} acked, ${history.unknowns().length} unknown; events: ${seen.map((e) => e.type).join(" ")}`.slice(0, 400));
});

/**
 * Segment roll: the writer finalizes its segment on a majority and opens the next once it passes a record count, a
 * size or an age; every journal node holds contiguous finalized segments, and no acked write is lost across rolls.
 */
import test from "ava";
import { segmentFilesIn } from "../../src/journal/segment_store.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History } from "../helpers/history.js";
import { startLoad } from "../helpers/load.js";
import { verifyHistory } from "../helpers/verify.js";
import path from "node:path";

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

/** [start, end] of every segment file of a node, in order; end null for the in-progress one. */
function segmentsOf(node: string): { start: number; end: number | null }[] {
  return segmentFilesIn(path.join(tc!.cluster.dataDir, node))
    .map((f) => path.basename(f))
    .map((n) => {
      const fin = /^edits_(\d+)-(\d+)$/.exec(n);
      const ip = /^edits_inprogress_(\d+)$/.exec(n);
      return fin ? { start: Number(fin[1]), end: Number(fin[2]) } : { start: Number(ip![1]), end: null };
    })
    .sort((a, b) => a.start - b.start);
}

test("segment roll - segments roll by record count under load, each node's log stays contiguous, nothing acked is lost", async (t) => {
  // The bound checked below is the roll's own: a roll here never waits for a journal node's catch-up (a node slowed
  // out of step on a loaded machine would otherwise grow the segment past it; compaction_faults covers the wait).
  tc = await startTestCluster("roll", { segmentMaxRecords: 200, maxSegments: 1000, rollHoldForCatchUpMs: 0 });
  await waitForWriter(tc);
  const history = new History();
  const l = startLoad(tc, history, 20, "r");
  await until("2000 writes", 60000, () => (l.done() >= 2000 ? true : undefined));
  // A master killed between rolls: the new writer settles the open segment and goes on rolling.
  await tc.cluster.signal("m1", "SIGKILL");
  tc.cluster.startActor("m1");
  await waitForWriter(tc);
  const at = l.done();
  await until("1000 more writes", 60000, () => (l.done() >= at + 1000 ? true : undefined));
  await l.stop();
  const committed = await verifyHistory(t, tc, history);
  for (const node of tc.cluster.config.journalNodes) {
    const segs = segmentsOf(node);
    const finalized = segs.filter((s) => s.end !== null);
    t.true(finalized.length >= 10, `${node} holds ${finalized.length} finalized segments`);
    // Writes already executed when the threshold passed still join the segment: at most one per client.
    for (const s of finalized) t.true(s.end! - s.start + 1 <= 200 + 20, `${node}: segment ${s.start}-${s.end} holds at most 200 + 20 records`);
    for (let i = 1; i < segs.length; i++) {
      t.true(segs[i].start > (segs[i - 1].end ?? Infinity), `${node}: segments ${i - 1} and ${i} do not overlap`);
    }
    const covered = finalized.reduce((n, s) => n + (s.end! - s.start + 1), 0);
    t.true(covered >= committed - 400, `${node}: finalized segments cover ${covered} of ${committed} committed records`);
  }
});

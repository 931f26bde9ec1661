/**
 * Choosing the copy of the unfinished segment a new writer keeps, as HDFS's SegmentRecoveryComparator and
 * QuorumJournalManager.recoverUnclosedSegment do (cases from TestQuorumJournalManager / TestSegmentRecoveryComparator).
 */
import test from "ava";
import { compareCopies, decideRecovery, type PrepareResponse } from "../../src/master/segment_recovery.js";
import { AssertionError } from "../../src/util/assert.js";

interface Copy {
  /** [startTxid, endTxid]; null when the node holds no record of the segment. */
  seg: [number, number] | null;
  finalized?: boolean;
  writerEpoch?: number;
  acceptedInEpoch?: number;
  committedTxid?: number;
}

function copy(node: string, c: Copy): PrepareResponse {
  const segment = c.seg === null ? null : { startTxid: c.seg[0], endTxid: c.seg[1], inProgress: !(c.finalized ?? false) };
  return {
    node,
    segment,
    acceptedInEpoch: c.acceptedInEpoch ?? 0,
    lastRecord: null,
    state: {
      nodeId: node,
      promisedEpoch: 9,
      writerEpoch: c.writerEpoch ?? 1,
      firstTxid: 1,
      lastTxid: c.seg === null ? 0 : c.seg[1],
      committedTxid: c.committedTxid ?? 0,
      clusterId: null,
      restoring: false,
      lastSegment: segment,
      fault: null,
    },
  };
}

/** Every order of the responses must give the same decision. */
function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

function decideAll(t: import("ava").ExecutionContext, segmentTxid: number, responses: PrepareResponse[], quorum: number) {
  const decisions = permutations(responses).map((p) => decideRecovery(segmentTxid, p, quorum));
  for (const d of decisions) t.deepEqual(d, decisions[0], "the decision does not depend on the order of the replies");
  return decisions[0];
}

test("segment recovery - the longer copy wins among copies of the same epoch", (t) => {
  const d = decideAll(t, 1, [copy("jn1", { seg: [1, 3], writerEpoch: 1 }), copy("jn2", { seg: [1, 5], writerEpoch: 1 }), copy("jn3", { seg: [1, 4], writerEpoch: 1 })], 2);
  t.deepEqual(d, { kind: "keep", segment: { startTxid: 1, endTxid: 5, inProgress: true }, source: "jn2" });
});

test("segment recovery - a longer copy from an older epoch loses to a shorter one accepted in a newer recovery (acceptedInEpoch)", (t) => {
  // HDFS testRecoverAfterIncompleteRecovery: epoch 3 accepted 1..4 on jn2; jn1 still holds the old writer's 1..6.
  const older = copy("jn1", { seg: [1, 6], writerEpoch: 2 });
  const accepted = copy("jn2", { seg: [1, 4], writerEpoch: 2, acceptedInEpoch: 3 });
  t.true(compareCopies(accepted, older) > 0);
  t.true(compareCopies(older, accepted) < 0);
  const d = decideAll(t, 1, [older, accepted], 2);
  t.deepEqual(d, { kind: "keep", segment: { startTxid: 1, endTxid: 4, inProgress: true }, source: "jn2" });
});

test("segment recovery - a longer copy from an older epoch loses to a shorter one written by a newer writer (writerEpoch)", (t) => {
  const older = copy("jn1", { seg: [11, 30], writerEpoch: 2 });
  const newer = copy("jn2", { seg: [11, 15], writerEpoch: 3 });
  const newerToo = copy("jn3", { seg: [11, 14], writerEpoch: 3 });
  t.true(compareCopies(newer, older) > 0);
  const d = decideAll(t, 11, [older, newer, newerToo], 2);
  t.deepEqual(d, { kind: "keep", segment: { startTxid: 11, endTxid: 15, inProgress: true }, source: "jn2" });
});

test("segment recovery - a finalized copy beats an in-progress one, however long or new", (t) => {
  const finalized = copy("jn1", { seg: [1, 5], finalized: true, writerEpoch: 1 });
  const longerNewer = copy("jn2", { seg: [1, 9], writerEpoch: 4, acceptedInEpoch: 5 });
  t.true(compareCopies(finalized, longerNewer) > 0);
  t.true(compareCopies(longerNewer, finalized) < 0);
  const d = decideAll(t, 1, [finalized, longerNewer, copy("jn3", { seg: null })], 2);
  if (d.kind !== "keep") return t.fail(`decided ${d.kind}`);
  t.is(d.source, "jn1");
  t.is(d.segment.startTxid, 1);
  t.is(d.segment.endTxid, 5);
});

test("segment recovery - two finalized copies that agree are equal; that disagree are a bug: AssertionError", (t) => {
  const a = copy("jn1", { seg: [1, 5], finalized: true });
  const same = copy("jn2", { seg: [1, 5], finalized: true, writerEpoch: 3 });
  t.is(compareCopies(a, same), 0);
  const d = decideRecovery(1, [a, same], 2);
  if (d.kind !== "keep") return t.fail(`decided ${d.kind}`);
  t.is(d.segment.endTxid, 5);

  const other = copy("jn2", { seg: [1, 6], finalized: true });
  t.throws(() => compareCopies(a, other), { instanceOf: AssertionError });
  for (const p of permutations([a, other, copy("jn3", { seg: [1, 7] })])) {
    t.throws(() => decideRecovery(1, p, 2), { instanceOf: AssertionError });
  }
});

test("segment recovery - a node that answered prepare but holds no segment counts for the quorum and loses to any copy", (t) => {
  const holder = copy("jn2", { seg: [7, 7], writerEpoch: 1 });
  const none = copy("jn1", { seg: null, writerEpoch: 5, acceptedInEpoch: 5 });
  t.true(compareCopies(holder, none) > 0);
  t.true(compareCopies(none, holder) < 0);
  t.is(compareCopies(none, copy("jn3", { seg: null })), 0);
  const d = decideAll(t, 7, [none, holder], 2);
  t.deepEqual(d, { kind: "keep", segment: { startTxid: 7, endTxid: 7, inProgress: true }, source: "jn2" });
});

test("segment recovery - when no responder holds the segment it is empty: the log ends just before it", (t) => {
  const d = decideAll(t, 21, [copy("jn1", { seg: null }), copy("jn2", { seg: null }), copy("jn3", { seg: null })], 2);
  t.deepEqual(d, { kind: "empty", endTxid: 20 });
  t.deepEqual(decideRecovery(1, [copy("jn1", { seg: null }), copy("jn2", { seg: null })], 2), { kind: "empty", endTxid: 0 });
});

test("segment recovery - only a minority answering decides nothing (noQuorum)", (t) => {
  t.deepEqual(decideRecovery(1, [copy("jn1", { seg: [1, 9] })], 2), { kind: "noQuorum" });
  t.deepEqual(decideRecovery(1, [], 2), { kind: "noQuorum" });
  t.deepEqual(decideRecovery(1, [copy("jn1", { seg: [1, 9] }), copy("jn2", { seg: null })], 3), { kind: "noQuorum" });
});

test("segment recovery - a responder whose committedTxid exceeds the chosen end is a bug: AssertionError (HDFS-3863)", (t) => {
  const responses = [copy("jn1", { seg: [1, 5], writerEpoch: 2 }), copy("jn2", { seg: [1, 3], writerEpoch: 2, committedTxid: 3 }), copy("jn3", { seg: [1, 8], writerEpoch: 1, committedTxid: 7 })];
  for (const p of permutations(responses)) t.throws(() => decideRecovery(1, p, 2), { instanceOf: AssertionError });
  t.throws(() => decideRecovery(1, [copy("jn1", { seg: null, committedTxid: 4 }), copy("jn2", { seg: [1, 3] })], 2), { instanceOf: AssertionError });
});

test("segment recovery - a committedTxid up to the chosen end is fine", (t) => {
  const d = decideAll(t, 1, [copy("jn1", { seg: [1, 5], committedTxid: 5 }), copy("jn2", { seg: [1, 4], committedTxid: 4 })], 2);
  if (d.kind !== "keep") return t.fail(`decided ${d.kind}`);
  t.is(d.segment.endTxid, 5);
});

test("segment recovery - a node that answered prepare but died before accept: the retry keeps what a node accepted meanwhile", (t) => {
  // Round 1 (epoch 3): jn1 holds the longest copy of the writer of epoch 2 and is chosen; jn2 accepts it (its copy
  // becomes 1..10, accepted in 3); jn1 dies before accepting; jn3, which was ahead on another path, never hears of it.
  const round1 = decideAll(t, 1, [copy("jn1", { seg: [1, 10], writerEpoch: 2 }), copy("jn2", { seg: [1, 8], writerEpoch: 2 })], 2);
  t.like(round1, { kind: "keep", source: "jn1", segment: { endTxid: 10 } });
  // Round 2 (epoch 4), jn1 gone: jn3's longer copy from epoch 2 loses to jn2's copy accepted in epoch 3.
  const round2 = decideAll(t, 1, [copy("jn2", { seg: [1, 10], writerEpoch: 2, acceptedInEpoch: 3 }), copy("jn3", { seg: [1, 12], writerEpoch: 2 })], 2);
  t.like(round2, { kind: "keep", source: "jn2", segment: { startTxid: 1, endTxid: 10 } });
});

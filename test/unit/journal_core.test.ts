/**
 * The journal node's state machine, case by case, against the behaviour of HDFS's Journal
 * (hadoop-hdfs/src/main/java/org/apache/hadoop/hdfs/qjournal/server/Journal.java): newEpoch, checkRequest,
 * checkWriteRequest, startLogSegment, journal, prepareRecovery, acceptRecovery, finalizeLogSegment.
 */
import test from "ava";
import { JournalCore, type DiskOp, type JournalMeta, type StepResult, type CoreReply } from "../../src/journal/journal_core.js";
import type { JournalRequest, JournalState, RecordPrint, SegmentState } from "../../src/protocol/messages.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";

// ---- helpers ----

function records(epoch: number, firstTxid: number, count: number): Buffer {
  const parts: Buffer[] = [];
  for (let txid = firstTxid; txid < firstTxid + count; txid++) {
    parts.push(encodeRecord(txid, epoch, encodeEffects([[Buffer.from("SET"), Buffer.from(`k${txid}`), Buffer.from(`v${txid}`)]])));
  }
  return Buffer.concat(parts);
}

function recordsWithTxids(epoch: number, txids: number[]): Buffer {
  return Buffer.concat(txids.map((txid) => encodeRecord(txid, epoch, encodeEffects([[Buffer.from("INCR"), Buffer.from("n")]]))));
}

const noMeta: JournalMeta = { promisedEpoch: 0, writerEpoch: 0, accepted: null };

function node(meta: JournalMeta = noMeta, segments: SegmentState[] = [], fault: string | null = null): JournalCore {
  return new JournalCore("jn1", { meta, segments, fault });
}

function ok(r: StepResult): CoreReply {
  if ("error" in r.reply) throw new Error(`expected success, got ${r.reply.error.code}: ${r.reply.error.message}`);
  return r.reply;
}

function stateOf(r: StepResult): JournalState {
  const reply = ok(r);
  if (!("state" in reply)) throw new Error(`expected a state reply, got ${JSON.stringify(reply)}`);
  return reply.state;
}

function refusal(r: StepResult): string {
  if (!("error" in r.reply)) throw new Error(`expected a refusal, got ${JSON.stringify(r.reply)}`);
  return r.reply.error.code;
}

function journal(epoch: number, segmentTxid: number, firstTxid: number, count: number, committedTxid = 0, recs = records(epoch, firstTxid, count)): JournalRequest {
  return { type: "journal", epoch, segmentTxid, firstTxid, count, records: recs, committedTxid };
}

/** The print of the first record of `recs` (what an acceptRecovery names the chosen copy's last record by). */
function printOf(recs: Buffer): RecordPrint {
  return { epoch: recs.readUInt32BE(16), crc: recs.readUInt32BE(20) };
}

/** acceptRecovery of segment start..end whose last record is `records(recordEpoch, end, 1)` (default: a print no copy has). */
function accept(epoch: number, startTxid: number, endTxid: number, recordEpoch?: number): JournalRequest {
  const lastRecord = recordEpoch === undefined ? { epoch: 99, crc: 0 } : printOf(records(recordEpoch, endTxid, 1));
  return { type: "acceptRecovery", epoch, segment: { startTxid, endTxid, inProgress: true }, lastRecord };
}

function recoveryAppend(epoch: number, segmentTxid: number, firstTxid: number, count: number, recs: Buffer): JournalRequest {
  return { type: "recoveryAppend", epoch, segmentTxid, firstTxid, count, records: recs };
}

/** A node written by the writer of `epoch`: segment 1 in progress holding 1..count, committed up to `committed`. */
function written(epoch: number, count: number, committed = 0): JournalCore {
  const n = node();
  ok(n.step({ type: "newEpoch", epoch }));
  ok(n.step({ type: "startSegment", epoch, txid: 1 }));
  if (count > 0) ok(n.step(journal(epoch, 1, 1, count, committed)));
  return n;
}

const persist = (meta: JournalMeta): DiskOp => ({ op: "persistMeta", meta });

// ---- epochs (HDFS Journal.newEpoch / checkRequest) ----

test("journal core - newEpoch must be strictly higher than the promise, and is persisted (HDFS newEpoch)", (t) => {
  const n = node({ promisedEpoch: 3, writerEpoch: 2, accepted: null });
  t.is(refusal(n.step({ type: "newEpoch", epoch: 0 })), "BAD_REQUEST", "epoch 0 is no writer's");
  for (const epoch of [1, 2, 3]) {
    const r = n.step({ type: "newEpoch", epoch });
    t.is(refusal(r), "EPOCH_FENCED", `epoch ${epoch}`);
    t.deepEqual(r.ops, [], `epoch ${epoch}`);
    t.is(n.state().promisedEpoch, 3);
  }
  const r = n.step({ type: "newEpoch", epoch: 4 });
  t.is(stateOf(r).promisedEpoch, 4);
  t.deepEqual(r.ops, [persist({ promisedEpoch: 4, writerEpoch: 2, accepted: null })]);
  t.is(refusal(n.step({ type: "newEpoch", epoch: 4 })), "EPOCH_FENCED");
});

test("journal core - a lower epoch is refused on every writer request, changing nothing (HDFS checkRequest)", (t) => {
  const lower: JournalRequest[] = [
    { type: "newEpoch", epoch: 4 },
    { type: "startSegment", epoch: 4, txid: 6 },
    journal(4, 1, 6, 1, 5),
    { type: "prepareRecovery", epoch: 4, segmentTxid: 1 },
    recoveryAppend(4, 1, 6, 1, records(4, 6, 1)),
    accept(4, 1, 5),
    { type: "finalize", epoch: 4, startTxid: 1, endTxid: 5 },
  ];
  for (const req of lower) {
    const n = written(5, 5, 3);
    const before = n.state();
    const r = n.step(req);
    t.is(refusal(r), "EPOCH_FENCED", req.type);
    t.deepEqual(r.ops, [], req.type);
    t.deepEqual(n.state(), before, req.type);
  }
});

test("journal core - a journal request from an epoch promised but not yet started is OUT_OF_SYNC (HDFS checkWriteRequest)", (t) => {
  const n = written(2, 3);
  ok(n.step({ type: "newEpoch", epoch: 3 }));
  const before = n.state();
  t.is(refusal(n.step(journal(2, 1, 4, 1))), "EPOCH_FENCED");
  const r = n.step(journal(3, 1, 4, 1));
  t.is(refusal(r), "OUT_OF_SYNC");
  t.deepEqual(r.ops, []);
  t.deepEqual(n.state(), before);
});

test("journal core - a higher epoch on any request is an implicit promise, persisted even when the request fails (HDFS checkRequest)", (t) => {
  const failing: { req: JournalRequest; code: string }[] = [
    { req: journal(7, 1, 6, 1), code: "OUT_OF_SYNC" }, // epoch 7 never started a segment here
    { req: { type: "startSegment", epoch: 7, txid: 3 }, code: "ILLEGAL_STATE" }, // would drop committed 3
    { req: recoveryAppend(7, 1, 9, 1, records(2, 9, 1)), code: "OUT_OF_SYNC" }, // gap after 5
    { req: accept(7, 1, 9), code: "OUT_OF_SYNC" }, // lacks 6..9
    { req: { type: "finalize", epoch: 7, startTxid: 40, endTxid: 41 }, code: "OUT_OF_SYNC" }, // no such segment
  ];
  for (const { req, code } of failing) {
    const n = written(2, 5, 3);
    const before = n.state();
    const r = n.step(req);
    t.is(refusal(r), code, req.type);
    const meta = { promisedEpoch: 7, writerEpoch: 2, accepted: null };
    t.deepEqual(r.ops, [persist(meta)], req.type);
    t.deepEqual(n.state(), { ...before, promisedEpoch: 7 }, req.type);
    // The promise holds from now on: epoch 6 is fenced.
    t.is(refusal(n.step({ type: "newEpoch", epoch: 7 })), "EPOCH_FENCED", req.type);
    t.is(refusal(n.step({ type: "prepareRecovery", epoch: 6, segmentTxid: 1 })), "EPOCH_FENCED", req.type);
  }
});

test("journal core - a higher epoch on a request that succeeds is persisted first", (t) => {
  const n = written(2, 5);
  const r = n.step({ type: "prepareRecovery", epoch: 4, segmentTxid: 1 });
  ok(r);
  t.deepEqual(r.ops, [persist({ promisedEpoch: 4, writerEpoch: 2, accepted: null })]);
  t.is(n.state().promisedEpoch, 4);
});

// ---- startSegment (HDFS startLogSegment) ----

test("journal core - startSegment at txid 1 on an empty node opens an empty in-progress segment", (t) => {
  const n = node();
  ok(n.step({ type: "newEpoch", epoch: 1 }));
  const r = n.step({ type: "startSegment", epoch: 1, txid: 1 });
  const s = stateOf(r);
  t.deepEqual(r.ops, [{ op: "startSegment", startTxid: 1 }, persist({ promisedEpoch: 1, writerEpoch: 1, accepted: null })]);
  t.deepEqual(s.lastSegment, { startTxid: 1, endTxid: 0, inProgress: true });
  t.is(s.writerEpoch, 1);
  t.is(s.lastTxid, 0);
  t.is(s.firstTxid, 0);
});

test("journal core - a catch-up startSegment above txid 1 on an empty node opens it there, with a hole before it", (t) => {
  const n = node();
  ok(n.step({ type: "newEpoch", epoch: 1 }));
  t.is(refusal(n.step({ type: "startSegment", epoch: 1, txid: 5 })), "OUT_OF_SYNC", "a plain start leaves no hole");
  const r = n.step({ type: "startSegment", epoch: 1, txid: 5, catchUp: true });
  t.deepEqual(r.ops, [{ op: "startSegment", startTxid: 5 }, persist({ promisedEpoch: 1, writerEpoch: 1, accepted: null })]);
  t.deepEqual(stateOf(r).lastSegment, { startTxid: 5, endTxid: 4, inProgress: true });
  t.is(refusal(n.step({ type: "read", fromTxid: 2, bytesMax: 1000, recordsMax: 10, uncommitted: true })), "NOT_FOUND");
});

test("journal core - startSegment retried on its own empty segment is accepted without a new segment", (t) => {
  const n = written(1, 0);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  const r = n.step({ type: "startSegment", epoch: 2, txid: 1 });
  t.deepEqual(r.ops, [persist({ promisedEpoch: 2, writerEpoch: 2, accepted: null })]);
  t.deepEqual(stateOf(r).lastSegment, { startTxid: 1, endTxid: 0, inProgress: true });
});

test("journal core - startSegment on a segment that already holds records is ILLEGAL_STATE", (t) => {
  const n = written(1, 3);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  const before = n.state();
  const r = n.step({ type: "startSegment", epoch: 2, txid: 1 });
  t.is(refusal(r), "ILLEGAL_STATE");
  t.deepEqual(r.ops, []);
  t.deepEqual(n.state(), before);
});

test("journal core - startSegment sets aside an older in-progress segment that no recovery decided here", (t) => {
  // Its records may be ones no majority acked, or another epoch's: never kept, never served (HDFS aborts it).
  const n = written(1, 5, 2);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  const r = n.step({ type: "startSegment", epoch: 2, txid: 4 });
  t.deepEqual(r.ops, [{ op: "setAside", startTxid: 1 }, { op: "startSegment", startTxid: 4 }, persist({ promisedEpoch: 2, writerEpoch: 2, accepted: null })]);
  const s = stateOf(r);
  t.deepEqual(s.lastSegment, { startTxid: 4, endTxid: 3, inProgress: true });
  t.is(s.firstTxid, 0, "nothing before the new segment is held any more");
  t.is(s.committedTxid, 0);
  t.is(refusal(n.step(journal(2, 1, 4, 1))), "OUT_OF_SYNC", "the old segment is closed");
  ok(n.step(journal(2, 4, 4, 2)));
  t.is(n.state().lastTxid, 5);
});

test("journal core - a catch-up startSegment after a gap sets the old segment aside and leaves a hole", (t) => {
  const n = written(1, 5);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  const r = n.step({ type: "startSegment", epoch: 2, txid: 8, catchUp: true });
  t.deepEqual(r.ops.map((o) => o.op), ["setAside", "startSegment", "persistMeta"]);
  t.deepEqual(n.state().lastSegment, { startTxid: 8, endTxid: 7, inProgress: true });
});

test("journal core - a forged startSegment far past the node's end is OUT_OF_SYNC: no promise, no segment set aside (issue #10)", (t) => {
  // The in-progress segment holds records 1..5, 1..3 of them known committed; a next-epoch request at a far txid.
  const n = written(1, 5, 3);
  const before = n.state();
  for (const epoch of [1, 2]) {
    const r = n.step({ type: "startSegment", epoch, txid: 1_000_000, clusterId: undefined });
    t.is(refusal(r), "OUT_OF_SYNC");
    t.deepEqual(r.ops, [], "nothing set aside, nothing promised");
    t.deepEqual(n.state(), before);
  }
  // Right after the end is a roll or a new writer's start, as before.
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  t.is(refusal(n.step({ type: "startSegment", epoch: 2, txid: 7 })), "OUT_OF_SYNC", "one past the end + 1 is a hole too");
  const r = n.step({ type: "startSegment", epoch: 2, txid: 6 });
  t.deepEqual(r.ops.map((o) => o.op), ["setAside", "startSegment", "persistMeta"]);
});

test("journal core - startSegment right after a copy this node accepted in recovery finalizes that copy", (t) => {
  const n = written(1, 5);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  ok(n.step(accept(2, 1, 5, 1)));
  const r = n.step({ type: "startSegment", epoch: 2, txid: 6 });
  t.deepEqual(r.ops, [
    { op: "finalize", startTxid: 1, endTxid: 5 },
    { op: "startSegment", startTxid: 6 },
    persist({ promisedEpoch: 2, writerEpoch: 2, accepted: null }),
  ]);
  t.is(n.state().firstTxid, 1);
});

test("journal core - a copy accepted in an older recovery is set aside, not finalized, by a later writer's startSegment (sim seed 1091)", (t) => {
  // Epoch 2's recovery chose this node's copy 1..5 and reached only it; epoch 4 committed other records under
  // 1..5 without it, and epoch 5's recovery chose those. Epoch 5's start at 6 must not finalize the stale copy.
  const n = written(1, 5);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  ok(n.step(accept(2, 1, 5, 1)));
  ok(n.step({ type: "newEpoch", epoch: 5 }));
  const r = n.step({ type: "startSegment", epoch: 5, txid: 6 });
  t.deepEqual(r.ops.map((o) => o.op), ["setAside", "startSegment", "persistMeta"]);
  t.is(n.state().firstTxid, 0, "the stale copy is not served");
  // The same holds when a recovery's copy opens the next segment on it.
  const m = written(1, 5);
  ok(m.step({ type: "newEpoch", epoch: 2 }));
  ok(m.step(accept(2, 1, 5, 1)));
  ok(m.step({ type: "newEpoch", epoch: 5 }));
  const copy = m.step(recoveryAppend(5, 6, 6, 2, records(4, 6, 2)));
  t.deepEqual(copy.ops.map((o) => o.op).slice(0, 2), ["setAside", "startSegment"]);
});

test("journal core - startSegment inside finalized records is ILLEGAL_STATE", (t) => {
  const n = node({ promisedEpoch: 2, writerEpoch: 2, accepted: null }, [{ startTxid: 1, endTxid: 5, inProgress: false }]);
  const before = n.state();
  const r = n.step({ type: "startSegment", epoch: 3, txid: 3 });
  t.is(refusal(r), "ILLEGAL_STATE");
  t.deepEqual(r.ops, [persist({ promisedEpoch: 3, writerEpoch: 2, accepted: null })]);
  t.deepEqual(n.state(), { ...before, promisedEpoch: 3 });
});

// ---- journal (HDFS journal / checkWriteRequest) ----

test("journal core - a valid batch is appended with its txids", (t) => {
  const n = written(2, 0);
  const recs = records(2, 1, 3);
  const r = n.step(journal(2, 1, 1, 3, 0, recs));
  t.deepEqual(r.ops, [{ op: "append", segmentTxid: 1, records: recs, txids: [1, 2, 3] }]);
  const s = stateOf(r);
  t.is(s.lastTxid, 3);
  t.is(s.firstTxid, 1);
  t.deepEqual(s.lastSegment, { startTxid: 1, endTxid: 3, inProgress: true });
  const r2 = n.step(journal(2, 1, 4, 2));
  t.deepEqual(
    r2.ops.map((op) => (op.op === "append" ? op.txids : op.op)),
    [[4, 5]],
  );
  t.is(n.state().lastTxid, 5);
});

test("journal core - a batch sent again that this node holds (its reply was lost) is acked without a write", (t) => {
  const n = written(2, 5, 1);
  const r = n.step(journal(2, 1, 2, 3, 4));
  t.deepEqual(r.ops, [], "nothing written again");
  const s = stateOf(r);
  t.is(s.lastTxid, 5);
  t.is(s.committedTxid, 4, "its commit index is learnt as from any batch");
  t.deepEqual(stateOf(n.step(journal(2, 1, 6, 1))).lastSegment, { startTxid: 1, endTxid: 6, inProgress: true }, "the next batch appends as before");
});

test("journal core - a batch at held txids whose records differ from those held is refused, changing nothing", (t) => {
  const n = written(2, 5, 1);
  const before = n.state();
  const other = recordsWithTxids(2, [2, 3]);
  const r = n.step(journal(2, 1, 2, 2, 0, other));
  t.is(refusal(r), "OUT_OF_SYNC");
  t.deepEqual(r.ops, []);
  t.deepEqual(n.state(), before);
});

test("journal core - a batch that breaks a rule is refused with its code and changes nothing", (t) => {
  const cases: { name: string; req: JournalRequest; code: string; setup?: (n: JournalCore) => void }[] = [
    { name: "wrong segment", req: journal(2, 2, 4, 1), code: "OUT_OF_SYNC" },
    { name: "gap after the log's end", req: journal(2, 1, 5, 1), code: "OUT_OF_SYNC" },
    { name: "overlaps the log's end", req: journal(2, 1, 3, 2), code: "OUT_OF_SYNC" },
    {
      name: "segment finalized",
      req: journal(2, 1, 4, 1),
      code: "OUT_OF_SYNC",
      setup: (n) => ok(n.step({ type: "finalize", epoch: 2, startTxid: 1, endTxid: 3 })),
    },
    {
      name: "bad checksum",
      req: (() => {
        const recs = records(2, 4, 2);
        recs[recs.length - 3] ^= 0x01;
        return journal(2, 1, 4, 2, 0, recs);
      })(),
      code: "BAD_RECORD",
    },
    {
      name: "corrupt first of two records",
      req: (() => {
        const recs = records(2, 4, 2);
        recs[30] ^= 0x40;
        return journal(2, 1, 4, 2, 0, recs);
      })(),
      code: "BAD_RECORD",
    },
    { name: "torn batch", req: journal(2, 1, 4, 2, 0, records(2, 4, 2).subarray(0, -1)), code: "BAD_RECORD" },
    { name: "count says more than it holds", req: journal(2, 1, 4, 3, 0, records(2, 4, 2)), code: "BAD_RECORD" },
    { name: "count says fewer than it holds", req: journal(2, 1, 4, 1, 0, records(2, 4, 2)), code: "BAD_RECORD" },
    { name: "txids not contiguous", req: journal(2, 1, 4, 2, 0, recordsWithTxids(2, [4, 6])), code: "BAD_RECORD" },
    { name: "txids out of order", req: journal(2, 1, 4, 2, 0, recordsWithTxids(2, [5, 4])), code: "BAD_RECORD" },
    { name: "first record is not firstTxid", req: journal(2, 1, 4, 2, 0, recordsWithTxids(2, [5, 6])), code: "BAD_RECORD" },
    { name: "record of an older epoch", req: journal(2, 1, 4, 2, 0, records(1, 4, 2)), code: "BAD_RECORD" },
    {
      name: "record of another epoch in the middle",
      req: journal(2, 1, 4, 2, 0, Buffer.concat([records(2, 4, 1), records(3, 5, 1)])),
      code: "BAD_RECORD",
    },
  ];
  for (const c of cases) {
    const n = written(2, 3, 1);
    c.setup?.(n);
    const before = n.state();
    const r = n.step(c.req);
    t.is(refusal(r), c.code, c.name);
    t.deepEqual(r.ops, [], c.name);
    t.deepEqual(n.state(), before, c.name);
  }
});

test("journal core - committedTxid is min(request's, lastTxid) and never goes down", (t) => {
  const n = written(2, 0);
  t.is(stateOf(n.step(journal(2, 1, 1, 3, 0))).committedTxid, 0);
  t.is(stateOf(n.step(journal(2, 1, 4, 2, 100))).committedTxid, 5, "capped at what the node holds");
  t.is(stateOf(n.step(journal(2, 1, 6, 1, 2))).committedTxid, 5, "a lower commit index is ignored");
  t.is(stateOf(n.step(journal(2, 1, 7, 1, 7))).committedTxid, 7);
});

test("journal core - a count-0 journal request only moves the commit index", (t) => {
  const n = written(2, 5, 1);
  const before = n.state();
  const r = n.step(journal(2, 1, 6, 0, 4, Buffer.alloc(0)));
  t.deepEqual(r.ops, []);
  t.deepEqual(stateOf(r), { ...before, committedTxid: 4 });
  // Still capped by what the node holds, and still fenced by segment and epoch.
  t.is(stateOf(n.step(journal(2, 1, 6, 0, 9, Buffer.alloc(0)))).committedTxid, 5);
  t.is(refusal(n.step(journal(2, 7, 6, 0, 9, Buffer.alloc(0)))), "OUT_OF_SYNC");
  t.is(refusal(n.step(journal(1, 1, 6, 0, 9, Buffer.alloc(0)))), "EPOCH_FENCED");
});

// ---- recovery (HDFS prepareRecovery / acceptRecovery) ----

test("journal core - prepareRecovery reports the segment held and the epoch a recovery was accepted in", (t) => {
  const n = written(1, 5);
  const p1 = ok(n.step({ type: "prepareRecovery", epoch: 2, segmentTxid: 1 }));
  t.true("prepare" in p1);
  if (!("prepare" in p1)) return;
  t.deepEqual(p1.prepare.segment, { startTxid: 1, endTxid: 5, inProgress: true });
  t.is(p1.prepare.acceptedInEpoch, 0);
  t.is(p1.prepare.state.writerEpoch, 1);
  t.is(p1.prepare.state.promisedEpoch, 2);

  ok(n.step(accept(2, 1, 4, 1)));
  const p2 = ok(n.step({ type: "prepareRecovery", epoch: 3, segmentTxid: 1 }));
  if (!("prepare" in p2)) return t.fail("no prepare reply");
  t.deepEqual(p2.prepare.segment, { startTxid: 1, endTxid: 4, inProgress: true });
  t.is(p2.prepare.acceptedInEpoch, 2);

  const other = ok(n.step({ type: "prepareRecovery", epoch: 3, segmentTxid: 6 }));
  if (!("prepare" in other)) return t.fail("no prepare reply");
  t.is(other.prepare.segment, null, "a segment the node does not hold");
  t.is(other.prepare.acceptedInEpoch, 0, "an acceptance of another segment does not count");
});

test("journal core - prepareRecovery reports no segment for an empty one", (t) => {
  const n = written(1, 0);
  const p = ok(n.step({ type: "prepareRecovery", epoch: 2, segmentTxid: 1 }));
  if (!("prepare" in p)) return t.fail("no prepare reply");
  t.is(p.prepare.segment, null);
});

test("journal core - recoveryAppend adds the records the node lacks, of any epoch up to the request's", (t) => {
  const n = written(1, 3);
  ok(n.step({ type: "newEpoch", epoch: 3 }));
  const recs = Buffer.concat([records(1, 4, 1), records(2, 5, 1)]);
  const r = n.step(recoveryAppend(3, 1, 4, 2, recs));
  t.deepEqual(r.ops, [{ op: "append", segmentTxid: 1, records: recs, txids: [4, 5] }]);
  t.deepEqual(stateOf(r).lastSegment, { startTxid: 1, endTxid: 5, inProgress: true });

  const before = n.state();
  const newer = n.step(recoveryAppend(3, 1, 6, 1, records(4, 6, 1)));
  t.is(refusal(newer), "BAD_RECORD", "a record from an epoch above the recovering writer's");
  const gap = n.step(recoveryAppend(3, 1, 7, 1, records(1, 7, 1)));
  t.is(refusal(gap), "OUT_OF_SYNC");
  t.deepEqual(n.state(), before);
});

test("journal core - recoveryAppend on a node without the segment opens it after the log's end", (t) => {
  const n = node({ promisedEpoch: 2, writerEpoch: 1, accepted: null }, [{ startTxid: 1, endTxid: 3, inProgress: false }]);
  const recs = records(2, 4, 2);
  const r = n.step(recoveryAppend(3, 4, 4, 2, recs));
  t.deepEqual(r.ops, [
    persist({ promisedEpoch: 3, writerEpoch: 1, accepted: null }),
    { op: "startSegment", startTxid: 4 },
    { op: "append", segmentTxid: 4, records: recs, txids: [4, 5] },
  ]);
  t.deepEqual(stateOf(r).lastSegment, { startTxid: 4, endTxid: 5, inProgress: true });
});

test("journal core - recoveryAppend refuses a finalized segment", (t) => {
  const n = node({ promisedEpoch: 2, writerEpoch: 1, accepted: null }, [{ startTxid: 1, endTxid: 3, inProgress: false }]);
  const before = n.state();
  const r = n.step(recoveryAppend(2, 1, 4, 1, records(1, 4, 1)));
  t.is(refusal(r), "ILLEGAL_STATE");
  t.deepEqual(r.ops, []);
  t.deepEqual(n.state(), before);
});

test("journal core - acceptRecovery truncates a longer in-progress copy and persists the decision", (t) => {
  const n = written(1, 5);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  const r = n.step(accept(2, 1, 3, 1));
  t.deepEqual(r.ops, [
    { op: "truncate", segmentTxid: 1, toTxid: 3 },
    persist({ promisedEpoch: 2, writerEpoch: 1, accepted: { segmentTxid: 1, epoch: 2 } }),
  ]);
  t.is(stateOf(r).lastTxid, 3);
});

test("journal core - acceptRecovery of exactly the copy held only persists the decision", (t) => {
  const n = written(1, 5);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  const r = n.step(accept(2, 1, 5, 1));
  t.deepEqual(r.ops, [persist({ promisedEpoch: 2, writerEpoch: 1, accepted: { segmentTxid: 1, epoch: 2 } })]);
  t.is(stateOf(r).lastTxid, 5);
});

test("journal core - acceptRecovery is refused when the node holds less, a finalized segment would shrink, or committed txids would go", (t) => {
  const cases: { name: string; make: () => JournalCore; segment: SegmentState; code: string }[] = [
    { name: "shorter copy", make: () => written(1, 3), segment: { startTxid: 1, endTxid: 5, inProgress: true }, code: "OUT_OF_SYNC" },
    { name: "no such segment", make: () => written(1, 3), segment: { startTxid: 4, endTxid: 5, inProgress: true }, code: "OUT_OF_SYNC" },
    {
      name: "finalized and longer",
      make: () => node({ promisedEpoch: 1, writerEpoch: 1, accepted: null }, [{ startTxid: 1, endTxid: 5, inProgress: false }]),
      segment: { startTxid: 1, endTxid: 3, inProgress: true },
      code: "ILLEGAL_STATE",
    },
    { name: "below the commit index", make: () => written(1, 5, 4), segment: { startTxid: 1, endTxid: 3, inProgress: true }, code: "ILLEGAL_STATE" },
  ];
  for (const c of cases) {
    const n = c.make();
    ok(n.step({ type: "newEpoch", epoch: 2 }));
    const before = n.state();
    const r = n.step({ type: "acceptRecovery", epoch: 2, segment: c.segment, lastRecord: printOf(records(1, c.segment.endTxid, 1)) });
    t.is(refusal(r), c.code, c.name);
    t.deepEqual(r.ops, [], c.name);
    t.deepEqual(n.state(), before, c.name);
  }
});

// ---- finalize (HDFS finalizeLogSegment) ----

test("journal core - finalize closes an in-progress segment and is idempotent with the same end", (t) => {
  const n = written(1, 5);
  const r = n.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid: 5 });
  t.deepEqual(r.ops, [{ op: "finalize", startTxid: 1, endTxid: 5 }]);
  t.deepEqual(stateOf(r).lastSegment, { startTxid: 1, endTxid: 5, inProgress: false });
  const again = n.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid: 5 });
  t.deepEqual(again.ops, []);
  t.deepEqual(stateOf(again).lastSegment, { startTxid: 1, endTxid: 5, inProgress: false });
});

test("journal core - finalize with another end: ILLEGAL_STATE on a finalized segment, OUT_OF_SYNC on an in-progress one", (t) => {
  const fin = written(1, 5);
  ok(fin.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid: 5 }));
  for (const endTxid of [4, 6]) {
    const before = fin.state();
    const r = fin.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid });
    t.is(refusal(r), "ILLEGAL_STATE", `end ${endTxid}`);
    t.deepEqual(r.ops, []);
    t.deepEqual(fin.state(), before);
  }
  const open = written(1, 5);
  for (const endTxid of [4, 6]) {
    const before = open.state();
    t.is(refusal(open.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid })), "OUT_OF_SYNC", `end ${endTxid}`);
    t.deepEqual(open.state(), before);
  }
  t.is(refusal(open.step({ type: "finalize", epoch: 1, startTxid: 2, endTxid: 5 })), "OUT_OF_SYNC", "no segment starts at 2");
});

test("journal core - finalize refuses an empty segment", (t) => {
  const n = written(1, 0);
  const before = n.state();
  t.is(refusal(n.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid: 0 })), "ILLEGAL_STATE");
  t.deepEqual(n.state(), before);
});

test("journal core - finalize clears the recovery decision accepted for that segment", (t) => {
  const n = written(1, 5);
  ok(n.step({ type: "newEpoch", epoch: 2 }));
  ok(n.step(accept(2, 1, 5, 1)));
  const r = n.step({ type: "finalize", epoch: 2, startTxid: 1, endTxid: 5 });
  t.deepEqual(r.ops, [{ op: "finalize", startTxid: 1, endTxid: 5 }, persist({ promisedEpoch: 2, writerEpoch: 1, accepted: null })]);
  const p = ok(n.step({ type: "prepareRecovery", epoch: 3, segmentTxid: 1 }));
  if (!("prepare" in p)) return t.fail("no prepare reply");
  t.is(p.prepare.acceptedInEpoch, 0);
  t.deepEqual(p.prepare.segment, { startTxid: 1, endTxid: 5, inProgress: false });
});

// ---- read ----

function readReply(r: StepResult): { fromTxid: number; toTxid: number } {
  const reply = ok(r);
  if (!("read" in reply)) throw new Error(`expected a read reply, got ${JSON.stringify(reply)}`);
  return reply.read;
}

const read = (fromTxid: number, uncommitted: boolean): JournalRequest => ({ type: "read", fromTxid, bytesMax: 1 << 20, recordsMax: 1000, uncommitted });

test("journal core - reads serve committed txids only, unless uncommitted; NOT_FOUND past end + 1", (t) => {
  const n = written(1, 5, 3);
  t.deepEqual(readReply(n.step(read(1, false))), { fromTxid: 1, toTxid: 3 });
  t.deepEqual(readReply(n.step(read(3, false))), { fromTxid: 3, toTxid: 3 });
  t.deepEqual(readReply(n.step(read(4, false))), { fromTxid: 4, toTxid: 3 }, "end + 1: nothing yet, not an error");
  t.is(refusal(n.step(read(5, false))), "NOT_FOUND");
  t.deepEqual(readReply(n.step(read(5, true))), { fromTxid: 5, toTxid: 5 });
  t.deepEqual(readReply(n.step(read(6, true))), { fromTxid: 6, toTxid: 5 });
  t.is(refusal(n.step(read(7, true))), "NOT_FOUND");
  t.is(refusal(n.step(read(0, true))), "NOT_FOUND");
  t.is(n.step(read(1, true)).ops.length, 0);
});

test("journal core - reads below the node's first txid are NOT_FOUND", (t) => {
  const n = node({ promisedEpoch: 2, writerEpoch: 2, accepted: null }, [
    { startTxid: 11, endTxid: 20, inProgress: false },
    { startTxid: 21, endTxid: 22, inProgress: true },
  ]);
  ok(n.step(journal(2, 21, 23, 1, 23)));
  t.is(n.state().firstTxid, 11);
  t.is(refusal(n.step(read(10, false))), "NOT_FOUND");
  t.is(refusal(n.step(read(1, true))), "NOT_FOUND");
  t.deepEqual(readReply(n.step(read(11, false))), { fromTxid: 11, toTxid: 23 });
  t.deepEqual(readReply(n.step(read(24, false))), { fromTxid: 24, toTxid: 23 });
});

test("journal core - an empty node has nothing to read, but txid 1 is not an error", (t) => {
  const n = node();
  t.deepEqual(readReply(n.step(read(1, false))), { fromTxid: 1, toTxid: 0 });
  t.is(refusal(n.step(read(2, true))), "NOT_FOUND");
});

// ---- faults ----

test("journal core - a node loaded with a fault refuses everything but getState with SEGMENT_CORRUPT", (t) => {
  const n = node({ promisedEpoch: 2, writerEpoch: 2, accepted: null }, [{ startTxid: 1, endTxid: 5, inProgress: true }], "bad checksum in segment 1 at 120");
  const before = n.state();
  const requests: JournalRequest[] = [
    { type: "newEpoch", epoch: 3 },
    { type: "startSegment", epoch: 3, txid: 6 },
    journal(2, 1, 6, 1, 6),
    { type: "prepareRecovery", epoch: 3, segmentTxid: 1 },
    recoveryAppend(3, 1, 6, 1, records(2, 6, 1)),
    accept(3, 1, 5),
    { type: "finalize", epoch: 3, startTxid: 1, endTxid: 5 },
    read(1, true),
  ];
  for (const req of requests) {
    const r = n.step(req);
    t.is(refusal(r), "SEGMENT_CORRUPT", req.type);
    t.deepEqual(r.ops, [], req.type);
  }
  const s = stateOf(n.step({ type: "getState" }));
  t.is(s.fault, "bad checksum in segment 1 at 120");
  t.deepEqual(s, before);
});

test("journal core - getState reports the node without touching the disk", (t) => {
  const n = written(3, 4, 2);
  const r = n.step({ type: "getState" });
  t.deepEqual(r.ops, []);
  t.deepEqual(stateOf(r), {
    nodeId: "jn1",
    promisedEpoch: 3,
    writerEpoch: 3,
    firstTxid: 1,
    lastTxid: 4,
    committedTxid: 2,
    lastSegment: { startTxid: 1, endTxid: 4, inProgress: true },
    fault: null,
    clusterId: null,
    restoring: false,
  });
});

test("journal core - startSegment that would truncate committed txids is refused, and its higher epoch is still persisted", (t) => {
  // Node holds 1..5 of epoch 1 with 4 committed; a request of epoch 5 asks for a segment at 3, which would drop 3..5.
  // Like acceptRecovery below the commit index, this must be a refusal: step() must not throw, and the implicit
  // promise of epoch 5 must come with its persistMeta (never an in-memory promise the disk does not hold).
  const n = written(1, 5, 4);
  const before = n.state();
  let r: StepResult | undefined;
  t.notThrows(() => {
    r = n.step({ type: "startSegment", epoch: 5, txid: 3 });
  });
  if (r === undefined) return;
  t.is(refusal(r), "ILLEGAL_STATE");
  t.deepEqual(r.ops, [persist({ promisedEpoch: 5, writerEpoch: 1, accepted: null })]);
  t.deepEqual(n.state(), { ...before, promisedEpoch: 5 });
});

test("journal core - recoveryAppend from inside the segment replaces the node's copy from there (another epoch's records)", (t) => {
  // Epoch 2 wrote 1..5 here only; a later writer's chosen copy of segment 1 differs from txid 1 on.
  const n = written(2, 5);
  ok(n.step({ type: "newEpoch", epoch: 4 }));
  const chosen = records(3, 1, 7);
  const r = n.step(recoveryAppend(4, 1, 1, 7, chosen));
  // Staged, not truncated: until accept, the node's own copy is what it answered prepare with.
  t.deepEqual(r.ops.map((o) => o.op), ["stageRecovery"]);
  t.like(r.ops[0], { op: "stageRecovery", segmentTxid: 1, fromTxid: 1, fresh: true });
  t.is(stateOf(r).lastTxid, 5);
  const a = n.step(accept(4, 1, 7, 3));
  t.deepEqual(a.ops.map((o) => o.op), ["installRecovery", "persistMeta"]);
  t.like(a.ops[0], { op: "installRecovery", segmentTxid: 1, fromTxid: 1, toTxid: 7 });
  t.is(stateOf(a).lastTxid, 7);
});

test("journal core - an interrupted recovery copy never shortens the node's log (simulator seed 5663)", (t) => {
  // Epoch 1 wrote 1..5 here; a recovery of epoch 4 starts replacing from txid 1 and stops after 1..2.
  const n = written(1, 5);
  ok(n.step({ type: "newEpoch", epoch: 4 }));
  ok(n.step(recoveryAppend(4, 1, 1, 2, records(1, 1, 2))));
  t.is(n.state().lastTxid, 5, "still 1..5 after a partial copy");
  // A newer recovery finds the whole copy, and drops the staged part.
  const r = n.step({ type: "newEpoch", epoch: 5 });
  t.deepEqual(r.ops.map((o) => o.op), ["persistMeta", "discardRecovery"]);
  const p = ok(n.step({ type: "prepareRecovery", epoch: 5, segmentTxid: 1 }));
  if (!("prepare" in p)) return t.fail("no prepare reply");
  t.deepEqual(p.prepare.segment, { startTxid: 1, endTxid: 5, inProgress: true });
  // A staged copy that does not reach the decided end is refused at accept, and the node's copy stays.
  ok(n.step(recoveryAppend(5, 1, 3, 2, records(1, 3, 2))));
  t.is(refusal(n.step(accept(5, 1, 6))), "OUT_OF_SYNC");
  t.is(n.state().lastTxid, 5);
});

test("journal core - recoveryAppend never replaces committed records", (t) => {
  const n = written(2, 5, 3);
  ok(n.step({ type: "newEpoch", epoch: 4 }));
  const r = n.step(recoveryAppend(4, 1, 2, 2, records(3, 2, 2)));
  t.is(refusal(r), "ILLEGAL_STATE");
  t.is(n.state().lastTxid, 5);
});

// ---- cluster identity, wiped nodes, copies of finalized segments (HDFS format / JournalNodeSyncer) ----

function fresh(identity: { clusterId: string | null; restoring: boolean }): JournalCore {
  return new JournalCore("jn1", { meta: noMeta, segments: [], fault: null, identity });
}

test("journal core - an unformatted node votes in no epoch until formatted; format only on an empty node", (t) => {
  const n = fresh({ clusterId: null, restoring: true });
  t.is(refusal(n.step({ type: "newEpoch", epoch: 1, clusterId: "c1" })), "NOT_RESTORED");
  const r = n.step({ type: "format", clusterId: "c1", restoring: false });
  t.deepEqual(r.ops, [{ op: "persistIdentity", identity: { clusterId: "c1", restoring: false } }]);
  t.like(stateOf(r), { clusterId: "c1", restoring: false });
  ok(n.step({ type: "format", clusterId: "c1", restoring: false }));
  // Never promised, never held a record: an unfinished first format may be redone (with the id every writer picks).
  t.like(stateOf(n.step({ type: "format", clusterId: "c0", restoring: false })), { clusterId: "c0" });
  ok(n.step({ type: "format", clusterId: "c1", restoring: false }));
  ok(n.step({ type: "newEpoch", epoch: 1, clusterId: "c1" }));
  t.is(refusal(n.step({ type: "newEpoch", epoch: 2, clusterId: "c2" })), "CLUSTER_MISMATCH", "a writer of another cluster is refused");
  // Promised but holding no record (two masters raced to format): formatted again only with a higher epoch, promised.
  t.is(refusal(n.step({ type: "format", clusterId: "c0", restoring: false })), "EPOCH_FENCED", "a stale format is fenced");
  t.is(refusal(n.step({ type: "format", clusterId: "c0", restoring: false, epoch: 1 })), "EPOCH_FENCED");
  t.like(stateOf(n.step({ type: "format", clusterId: "c0", restoring: false, epoch: 2 })), { clusterId: "c0", promisedEpoch: 2 });
  t.is(refusal(n.step({ type: "newEpoch", epoch: 2, clusterId: "c0" })), "EPOCH_FENCED", "the promise survives the format");
  ok(n.step({ type: "startSegment", epoch: 3, txid: 1, clusterId: "c0" }));
  ok(n.step(journal(3, 1, 1, 2)));
  t.is(refusal(n.step({ type: "format", clusterId: "c1", restoring: false })), "CLUSTER_MISMATCH", "once it holds records, its cluster is fixed");
});

test("journal core - a refused request leaves an unformatted node no promise: it can still be formatted (sim seed 36, a forger)", (t) => {
  const n = fresh({ clusterId: null, restoring: true });
  for (const req of [
    { type: "prepareRecovery", epoch: 7, segmentTxid: 3 },
    { type: "finalize", epoch: 9, startTxid: 1, endTxid: 5 },
    { type: "snapshotDurable", txid: 1, clusterId: "c9" },
  ] as JournalRequest[]) {
    const r = n.step(req);
    t.true("error" in r.reply);
    t.deepEqual(r.ops, [], `${req.type}: nothing persisted`);
  }
  t.is(stateOf(n.step({ type: "getState" })).promisedEpoch, 0);
  t.like(stateOf(n.step({ type: "format", clusterId: "c1", restoring: false })), { clusterId: "c1" });
  ok(n.step({ type: "newEpoch", epoch: 1, clusterId: "c1" }));
});

test("journal core - a wiped node (restoring) takes part in no epoch or recovery, but takes the writer's records until restored", (t) => {
  const n = fresh({ clusterId: null, restoring: true });
  ok(n.step({ type: "format", clusterId: "c1", restoring: true }));
  t.is(refusal(n.step({ type: "newEpoch", epoch: 5, clusterId: "c1" })), "NOT_RESTORED");
  t.is(refusal(n.step({ type: "prepareRecovery", epoch: 5, segmentTxid: 1 })), "NOT_RESTORED");
  t.is(refusal(n.step(accept(5, 1, 3))), "NOT_RESTORED");
  // The writer of epoch 5 catches it up: opens its segment at 11 and sends its records, a hole before them.
  t.is(refusal(n.step({ type: "startSegment", epoch: 5, txid: 11, clusterId: "c1" })), "OUT_OF_SYNC", "only a catch-up leaves a hole");
  ok(n.step({ type: "startSegment", epoch: 5, txid: 11, clusterId: "c1", catchUp: true }));
  ok(n.step(journal(5, 11, 11, 2)));
  // Segment 1..10, finalized elsewhere, copied in two chunks.
  const first = n.step({ type: "syncSegment", epoch: 5, clusterId: "c1", segment: { startTxid: 1, endTxid: 10, inProgress: false }, firstTxid: 1, count: 4, records: records(2, 1, 4) });
  t.deepEqual(first.ops.map((o) => o.op), ["syncAppend"]);
  t.is(refusal(n.step({ type: "syncSegment", epoch: 5, clusterId: "c1", segment: { startTxid: 1, endTxid: 10, inProgress: false }, firstTxid: 6, count: 5, records: records(2, 6, 5) })), "OUT_OF_SYNC", "chunks continue where the last ended");
  const last = n.step({ type: "syncSegment", epoch: 5, clusterId: "c1", segment: { startTxid: 1, endTxid: 10, inProgress: false }, firstTxid: 5, count: 6, records: records(2, 5, 6) });
  t.deepEqual(last.ops.map((o) => o.op), ["syncAppend", "syncFinish"]);
  t.like(stateOf(last), { firstTxid: 1, lastTxid: 12, restoring: true });
  const restored = n.step({ type: "markRestored", epoch: 5, clusterId: "c1" });
  t.deepEqual(restored.ops, [{ op: "persistIdentity", identity: { clusterId: "c1", restoring: false } }]);
  ok(n.step({ type: "newEpoch", epoch: 6, clusterId: "c1" }));
});

test("journal core - a copied segment must fill a hole before the newest segment", (t) => {
  const n = fresh({ clusterId: "c1", restoring: false });
  ok(n.step({ type: "newEpoch", epoch: 2, clusterId: "c1" }));
  ok(n.step({ type: "startSegment", epoch: 2, txid: 1, clusterId: "c1" }));
  ok(n.step(journal(2, 1, 1, 5)));
  const overlap = n.step({ type: "syncSegment", epoch: 2, clusterId: "c1", segment: { startTxid: 1, endTxid: 3, inProgress: false }, firstTxid: 1, count: 3, records: records(2, 1, 3) });
  t.is(refusal(overlap), "ILLEGAL_STATE");
  const inProgress = n.step({ type: "syncSegment", epoch: 2, clusterId: "c1", segment: { startTxid: 1, endTxid: 3, inProgress: true }, firstTxid: 1, count: 3, records: records(2, 1, 3) });
  t.is(refusal(inProgress), "BAD_REQUEST");
});

// ---- segment roll, durable snapshots, purged reads ----

test("journal core - the same writer's startSegment at end + 1 finalizes its in-progress segment (a roll)", (t) => {
  const n = written(2, 5, 5);
  const r = n.step({ type: "startSegment", epoch: 2, txid: 6 });
  t.deepEqual(r.ops, [
    { op: "finalize", startTxid: 1, endTxid: 5 },
    { op: "startSegment", startTxid: 6 },
    persist({ promisedEpoch: 2, writerEpoch: 2, accepted: null }),
  ]);
  const manifest = ok(n.step({ type: "getManifest" }));
  if (!("manifest" in manifest)) return t.fail("no manifest reply");
  t.deepEqual(manifest.manifest, [
    { startTxid: 1, endTxid: 5, inProgress: false },
    { startTxid: 6, endTxid: 5, inProgress: true },
  ]);
  t.is(n.state().committedTxid, 5, "the finalized records stay vouched for");
  ok(n.step(journal(2, 6, 6, 2, 7)));
  t.deepEqual(readReply(n.step(read(3, false))), { fromTxid: 3, toTxid: 7 });
});

test("journal core - a startSegment that is no roll sets the in-progress segment aside: another epoch, or not at end + 1", (t) => {
  const otherEpoch = written(2, 5);
  ok(otherEpoch.step({ type: "newEpoch", epoch: 3 }));
  t.deepEqual(otherEpoch.step({ type: "startSegment", epoch: 3, txid: 6 }).ops.map((o) => o.op), ["setAside", "startSegment", "persistMeta"]);
  t.is(otherEpoch.state().firstTxid, 0, "the set-aside records are not served");
  const gap = written(2, 5);
  t.deepEqual(gap.step({ type: "startSegment", epoch: 2, txid: 8, catchUp: true }).ops.map((o) => o.op), ["setAside", "startSegment", "persistMeta"]);
  // The node missed 4..5 of its writer's segment: what it holds ends before the writer's end (its catch-up).
  const behind = written(2, 3);
  t.is(refusal(behind.step({ type: "startSegment", epoch: 2, txid: 6 })), "OUT_OF_SYNC");
  t.deepEqual(behind.step({ type: "startSegment", epoch: 2, txid: 6, catchUp: true }).ops.map((o) => o.op), ["setAside", "startSegment", "persistMeta"]);
});

const snapshotDurable = (txid: number): JournalRequest => ({ type: "snapshotDurable", txid, clusterId: "c1" });

test("journal core - snapshotDurable persists the durable snapshot txid in the meta and never lowers it", (t) => {
  const n = written(2, 30, 30);
  const r = n.step(snapshotDurable(20), { snapshots: [20, 25] });
  t.deepEqual(r.ops, [persist({ promisedEpoch: 2, writerEpoch: 2, accepted: null, durableSnapshotTxid: 20 })]);
  t.is(n.durableSnapshotTxid, 20);
  for (const lower of [20, 10, 0]) {
    const again = n.step(snapshotDurable(lower));
    ok(again);
    t.deepEqual(again.ops, [], `snapshot ${lower}`);
    t.is(n.durableSnapshotTxid, 20, `snapshot ${lower}`);
  }
  t.deepEqual(n.step(snapshotDurable(25), { snapshots: [20, 25] }).ops, [persist({ promisedEpoch: 2, writerEpoch: 2, accepted: null, durableSnapshotTxid: 25 })]);
  // Later meta writes carry it along, so a restart never forgets it.
  const promise = n.step({ type: "newEpoch", epoch: 3 });
  t.deepEqual(promise.ops, [persist({ promisedEpoch: 3, writerEpoch: 2, accepted: null, durableSnapshotTxid: 25 })]);
  const reloaded = node({ promisedEpoch: 3, writerEpoch: 2, accepted: null, durableSnapshotTxid: 25 });
  t.is(reloaded.durableSnapshotTxid, 25);
});

test("journal core - snapshotDurable must name a snapshot held here, at or below what the node knows committed (issue #10, class 3)", (t) => {
  const n = written(2, 30, 20);
  const refused = (txid: number, snapshots: number[], code: string, why: string): void => {
    const r = n.step(snapshotDurable(txid), { snapshots });
    t.is(refusal(r), code, why);
    t.deepEqual(r.ops, [], why);
    t.is(n.durableSnapshotTxid, 0, why);
  };
  refused(2 ** 53 - 1, [], "NOT_FOUND", "a forged txid: no such snapshot");
  refused(15, [10], "NOT_FOUND", "a snapshot not held here");
  refused(2 ** 53 - 1, [2 ** 53 - 1], "OUT_OF_SYNC", "held, but far beyond the commit index");
  refused(25, [25], "OUT_OF_SYNC", "held, but beyond the commit index (20)");
  ok(n.step(snapshotDurable(20), { snapshots: [20] }));
  t.is(n.durableSnapshotTxid, 20);
  // The end of a finalized segment is committed too (a node that just restarted knows no commit index).
  const f = node({ promisedEpoch: 2, writerEpoch: 2, accepted: null }, [{ startTxid: 1, endTxid: 40, inProgress: false }]);
  ok(f.step(snapshotDurable(40), { snapshots: [40] }));
  t.is(f.durableSnapshotTxid, 40);
});

test("journal core - an epoch that does not fit in a record's 32 bits is BAD_REQUEST, and never promised (issue #10, class 3)", (t) => {
  const n = written(2, 5, 3);
  const before = n.state();
  const far = 2 ** 32;
  const requests: JournalRequest[] = [
    { type: "newEpoch", epoch: far },
    { type: "startSegment", epoch: far, txid: 6 },
    journal(far, 1, 6, 1, 5, records(2, 6, 1)),
    { type: "prepareRecovery", epoch: far, segmentTxid: 1 },
    recoveryAppend(far, 1, 6, 1, records(2, 6, 1)),
    accept(far, 1, 5, 2),
    { type: "finalize", epoch: far, startTxid: 1, endTxid: 5 },
    { type: "markRestored", epoch: far, clusterId: "c1" },
  ];
  for (const req of requests) {
    const r = n.step(req);
    t.is(refusal(r), "BAD_REQUEST", req.type);
    t.deepEqual(r.ops, [], req.type);
  }
  t.deepEqual(n.state(), before);
  ok(n.step({ type: "newEpoch", epoch: 3 }));
});

test("journal core - snapshotDurable of another cluster is refused", (t) => {
  const n = fresh({ clusterId: "c2", restoring: false });
  const r = n.step(snapshotDurable(10));
  t.is(refusal(r), "CLUSTER_MISMATCH");
  t.deepEqual(r.ops, []);
  t.is(n.durableSnapshotTxid, 0);
});

/** A node holding finalized segments 21..30 and 31..40 and an in-progress 41..42, everything committed. */
function purgedBelow21(durableSnapshotTxid?: number): JournalCore {
  const meta: JournalMeta = { promisedEpoch: 2, writerEpoch: 2, accepted: null };
  if (durableSnapshotTxid !== undefined) meta.durableSnapshotTxid = durableSnapshotTxid;
  const n = node(meta, [
    { startTxid: 21, endTxid: 30, inProgress: false },
    { startTxid: 31, endTxid: 40, inProgress: false },
    { startTxid: 41, endTxid: 42, inProgress: true },
  ]);
  ok(n.step(journal(2, 41, 43, 0, 42, Buffer.alloc(0))));
  return n;
}

test("journal core - a read below the first txid is PURGED when the durable snapshot holds it, NOT_FOUND otherwise", (t) => {
  const covered = purgedBelow21(25);
  for (const from of [1, 10, 20]) {
    t.is(refusal(covered.step(read(from, false))), "PURGED", `txid ${from}`);
    t.is(refusal(covered.step(read(from, true))), "PURGED", `txid ${from}, uncommitted`);
  }
  t.is(refusal(covered.step(read(0, false))), "NOT_FOUND", "txid 0 is no txid");
  t.deepEqual(readReply(covered.step(read(21, false))), { fromTxid: 21, toTxid: 42 });
  t.is(covered.step(read(5, false)).ops.length, 0);
  // A snapshot below the hole: 16..20 are in no snapshot, and not here either.
  const short = purgedBelow21(15);
  t.is(refusal(short.step(read(15, false))), "PURGED");
  t.is(refusal(short.step(read(16, false))), "NOT_FOUND");
  t.is(refusal(short.step(read(20, false))), "NOT_FOUND");
  // No durable snapshot: the node merely joined late (a hole), some other node serves those txids.
  const none = purgedBelow21();
  for (const from of [1, 20]) t.is(refusal(none.step(read(from, false))), "NOT_FOUND", `txid ${from}`);
});

// ---- compaction: plan, purge, merge (claim 6) ----

const limits = { maxSegments: 3, editlogMaxBytes: 1 << 30, mergedSegmentMaxBytes: 1000, purgeMarginRecords: 0, snapshotsRetained: 2 };

/** A node whose log is `ranges` (finalized), then an in-progress segment right after the last, with its meta. */
function log(ranges: [number, number][], durableSnapshotTxid = 0, inProgressRecords = 2): JournalCore {
  const segments: SegmentState[] = ranges.map(([startTxid, endTxid]) => ({ startTxid, endTxid, inProgress: false }));
  const next = (ranges.at(-1)?.[1] ?? 0) + 1;
  segments.push({ startTxid: next, endTxid: next + inProgressRecords - 1, inProgress: true });
  return node({ promisedEpoch: 2, writerEpoch: 2, accepted: null, durableSnapshotTxid }, segments);
}

/** Every segment of `n` `bytes` large, or as given per first txid. */
function sizesOf(n: JournalCore, bytes: number, overrides: Record<number, number> = {}): Map<number, number> {
  const manifest = ok(n.step({ type: "getManifest" }));
  if (!("manifest" in manifest)) throw new Error("no manifest reply");
  return new Map(manifest.manifest.map((s) => [s.startTxid, overrides[s.startTxid] ?? bytes]));
}

function manifestOf(n: JournalCore): [number, number, boolean][] {
  const reply = ok(n.step({ type: "getManifest" }));
  if (!("manifest" in reply)) throw new Error("no manifest reply");
  return reply.manifest.map((s) => [s.startTxid, s.endTxid, s.inProgress]);
}

const fin = (startTxid: number, endTxid: number): SegmentState => ({ startTxid, endTxid, inProgress: false });

test("journal core - compaction plans nothing while the editlog is under both thresholds, and changes nothing", (t) => {
  // Three segments of 100 bytes, all below the durable snapshot: within maxSegments 3 and editlogMaxBytes.
  const n = log([[1, 10], [11, 20]], 100);
  const before = manifestOf(n);
  t.deepEqual(n.compactionPlan(sizesOf(n, 100), [100], limits), { purge: [], merges: [], deleteSnapshots: [] });
  t.deepEqual(n.compactionPlan(sizesOf(n, 100), [100], { ...limits, editlogMaxBytes: 300 }), { purge: [], merges: [], deleteSnapshots: [] }, "300 bytes is not past 300");
  t.deepEqual(manifestOf(n), before);
  // Past the size threshold with few segments: the purge starts.
  const big = n.compactionPlan(sizesOf(n, 100), [100], { ...limits, editlogMaxBytes: 299 });
  t.deepEqual(big.purge, [fin(1, 10), fin(11, 20)]);
  t.deepEqual(manifestOf(n), before, "planning is pure");
});

test("journal core - compaction purges only finalized segments wholly at or below durable snapshot - margin", (t) => {
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50]], 35);
  const sizes = sizesOf(n, 600); // none small: no merges in the way
  t.deepEqual(n.compactionPlan(sizes, [35], { ...limits, purgeMarginRecords: 5 }).purge, [fin(1, 10), fin(11, 20), fin(21, 30)], "up to 30 = 35 - 5");
  t.deepEqual(n.compactionPlan(sizes, [35], { ...limits, purgeMarginRecords: 6 }).purge, [fin(1, 10), fin(11, 20)], "21..30 is not wholly at or below 29");
  t.deepEqual(n.compactionPlan(sizes, [35], { ...limits, purgeMarginRecords: 35 }).purge, [], "a margin above the snapshot purges nothing");
  t.deepEqual(log([[1, 10], [11, 20], [21, 30], [31, 40]]).compactionPlan(sizes, [], limits).purge, [], "no durable snapshot, no purge");
  // A snapshot past the whole log: the in-progress segment still stays.
  const all = log([[1, 10], [11, 20], [21, 30]], 1000);
  const plan = all.compactionPlan(sizesOf(all, 600), [1000], limits);
  t.deepEqual(plan.purge, [fin(1, 10), fin(11, 20), fin(21, 30)]);
  t.false(plan.purge.some((s) => s.inProgress));
});

test("journal core - compaction merges runs of small consecutive finalized segments, never the in-progress one, never across a hole", (t) => {
  // Small means under half of mergedSegmentMaxBytes (500): 31..40 is not, and the log has a hole 61..70.
  const n = node({ promisedEpoch: 2, writerEpoch: 2, accepted: null }, [
    fin(1, 10),
    fin(11, 20),
    fin(21, 30),
    fin(31, 40),
    fin(41, 50),
    fin(51, 60),
    fin(71, 80),
    fin(81, 90),
    { startTxid: 91, endTxid: 95, inProgress: true },
  ]);
  const plan = n.compactionPlan(sizesOf(n, 100, { 31: 500 }), [], limits);
  t.deepEqual(plan.purge, []);
  t.deepEqual(plan.merges, [
    { startTxid: 1, endTxid: 30, parts: [fin(1, 10), fin(11, 20), fin(21, 30)] },
    { startTxid: 41, endTxid: 60, parts: [fin(41, 50), fin(51, 60)] },
    { startTxid: 71, endTxid: 90, parts: [fin(71, 80), fin(81, 90)] },
  ]);
  // A lone small segment between big ones is no run.
  const lone = log([[1, 10], [11, 20], [21, 30], [31, 40]]);
  t.deepEqual(lone.compactionPlan(sizesOf(lone, 600, { 11: 100, 31: 100 }), [], limits).merges, []);
});

test("journal core - compaction never merges the newest finalized segment a recovery may still address (issue #10, class 6)", (t) => {
  // The writer died between a roll's finalize and the next segment's start: 21..30 is the newest segment.
  const rolled = log([[1, 10], [11, 20], [21, 30], [31, 40]], 0, 0);
  const none = node({ promisedEpoch: 2, writerEpoch: 2, accepted: null }, [fin(1, 10), fin(11, 20), fin(21, 30), fin(31, 40)]);
  for (const [name, n] of [["no segment after it", none], ["an empty in-progress segment after it", rolled]] as const) {
    const plan = n.compactionPlan(sizesOf(n, 100), [], limits);
    t.deepEqual(plan.merges.map((m) => [m.startTxid, m.endTxid]), [[1, 30]], name);
    t.is(n.merge([fin(21, 30), fin(31, 40)]), null, `${name}: merge refuses it too`);
  }
});

test("journal core - a merged segment is capped by mergedSegmentMaxBytes", (t) => {
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50]]);
  const plan = n.compactionPlan(sizesOf(n, 400), [], limits);
  t.deepEqual(
    plan.merges.map((m) => [m.startTxid, m.endTxid, m.parts.length]),
    [
      [1, 20, 2],
      [21, 40, 2],
    ],
    "three of 400 bytes would pass 1000: runs of two, the last segment alone",
  );
  const exact = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50]]);
  t.deepEqual(
    exact.compactionPlan(sizesOf(exact, 250, { 1: 499 }), [], limits).merges.map((m) => [m.startTxid, m.endTxid]),
    [
      [1, 30],
      [31, 50],
    ],
    "499 + 250 + 250 = 999 fits, one more does not",
  );
});

test("journal core - purged segments are not merged; merges happen only while the rest is still too many", (t) => {
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50]], 20);
  const plan = n.compactionPlan(sizesOf(n, 100), [], limits);
  t.deepEqual(plan.purge, [fin(1, 10), fin(11, 20)]);
  t.deepEqual(plan.merges, [{ startTxid: 21, endTxid: 50, parts: [fin(21, 30), fin(31, 40), fin(41, 50)] }]);
  const enough = log([[1, 10], [11, 20], [21, 30], [31, 40]], 20);
  t.deepEqual(enough.compactionPlan(sizesOf(enough, 100), [], limits), { purge: [fin(1, 10), fin(11, 20)], merges: [], deleteSnapshots: [] }, "3 segments left after the purge");
});

test("journal core - compaction deletes snapshots beyond snapshotsRetained among those at or below the durable one", (t) => {
  const n = log([[1, 10]], 50);
  const plan = n.compactionPlan(sizesOf(n, 100), [30, 10, 60, 50, 20, 40], limits);
  t.deepEqual([...plan.deleteSnapshots].sort((a, b) => a - b), [10, 20, 30], "50 and 40 kept; 60 is not durable yet and stays");
  t.deepEqual(plan.purge, [], "snapshots go even while the editlog is under its thresholds");
  t.deepEqual(n.compactionPlan(sizesOf(n, 100), [40, 50], limits).deleteSnapshots, []);
  t.deepEqual(log([[1, 10]]).compactionPlan(sizesOf(n, 100), [10, 20, 30], limits).deleteSnapshots, [], "no durable snapshot: none is old");
  t.deepEqual(n.compactionPlan(sizesOf(n, 100), [10, 20, 30, 40, 50], { ...limits, snapshotsRetained: 1 }).deleteSnapshots.sort((a, b) => a - b), [10, 20, 30, 40]);
});

test("journal core - a node with a fault plans no compaction", (t) => {
  const n = node({ promisedEpoch: 2, writerEpoch: 2, accepted: null, durableSnapshotTxid: 100 }, [fin(1, 10), fin(11, 20), fin(21, 30), fin(31, 40)], "bad checksum");
  t.deepEqual(n.compactionPlan(new Map(), [10, 20, 30, 100], limits), { purge: [], merges: [], deleteSnapshots: [] });
});

test("journal core - purge applies a plan: its segments leave the log, the first txid moves up", (t) => {
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40]], 25);
  const plan = n.compactionPlan(sizesOf(n, 600), [25], limits);
  const ops = n.purge(plan.purge, limits);
  t.deepEqual(ops, [
    { op: "purgeSegment", startTxid: 1, endTxid: 10 },
    { op: "purgeSegment", startTxid: 11, endTxid: 20 },
  ]);
  t.deepEqual(manifestOf(n), [
    [21, 30, false],
    [31, 40, false],
    [41, 42, true],
  ]);
  t.is(n.state().firstTxid, 21);
  t.deepEqual(n.purge(plan.purge, limits), [], "purged once only");
});

test("journal core - purge skips a segment that changed since the plan or is no longer below the snapshot", (t) => {
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40]], 30);
  const plan = n.compactionPlan(sizesOf(n, 600), [30], limits);
  t.deepEqual(plan.purge, [fin(1, 10), fin(11, 20), fin(21, 30)]);
  // Meanwhile 1..10 and 11..20 were merged: the plan's segments are not in the log as planned.
  t.not(n.merge([fin(1, 10), fin(11, 20)]), null);
  t.deepEqual(n.purge(plan.purge, limits), [{ op: "purgeSegment", startTxid: 21, endTxid: 30 }]);
  t.deepEqual(manifestOf(n)[0], [1, 20, false]);
  // A margin that grew since the plan: nothing above durable - margin goes.
  const m = log([[1, 10], [11, 20], [21, 30], [31, 40]], 30);
  const stale = m.compactionPlan(sizesOf(m, 600), [30], limits);
  t.deepEqual(m.purge(stale.purge, { purgeMarginRecords: 15 }), [{ op: "purgeSegment", startTxid: 1, endTxid: 10 }]);
  // A plan naming the in-progress segment (forged) is refused too.
  t.deepEqual(m.purge([{ startTxid: 41, endTxid: 42, inProgress: false }], { purgeMarginRecords: 0 }), []);
});

test("journal core - merge replaces its parts by one finalized segment, and refuses a stale or broken run", (t) => {
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50]]);
  const plan = n.compactionPlan(sizesOf(n, 100), [], limits);
  t.is(plan.merges.length, 1);
  const ops = n.merge(plan.merges[0].parts);
  t.deepEqual(ops, [{ op: "mergeSegments", startTxid: 1, endTxid: 50, parts: [1, 11, 21, 31, 41] }]);
  t.deepEqual(manifestOf(n), [
    [1, 50, false],
    [51, 52, true],
  ]);
  t.is(n.merge(plan.merges[0].parts), null, "the parts are gone: the same merge again is dropped");
  t.deepEqual(readReply(n.step(read(1, true))), { fromTxid: 1, toTxid: 52 });

  const m = log([[1, 10], [11, 20], [21, 30], [41, 50]], 10);
  t.is(m.merge([fin(1, 10)]), null, "one part is no merge");
  t.is(m.merge([fin(21, 30), fin(41, 50)]), null, "never across a hole");
  t.is(m.merge([fin(41, 50), { startTxid: 51, endTxid: 52, inProgress: false }]), null, "never the in-progress segment");
  t.is(m.merge([fin(1, 10), fin(11, 25)]), null, "a part that ends elsewhere than planned");
  t.deepEqual(m.purge([fin(1, 10)], limits), [{ op: "purgeSegment", startTxid: 1, endTxid: 10 }]);
  t.is(m.merge([fin(1, 10), fin(11, 20)]), null, "a part purged meanwhile");
  t.deepEqual(manifestOf(m), [
    [11, 20, false],
    [21, 30, false],
    [41, 50, false],
    [51, 52, true],
  ]);
});

// ---- the master's commit hint (issue #13 P4): a commit index off the bus, no reply, no promise ----

test("journal core - a commit hint of the writer's epoch and open segment moves the commit index, never past the log", (t) => {
  const n = written(3, 5, 2);
  t.is(n.state().committedTxid, 2);
  t.true(n.learnCommit({ epoch: 3, segmentTxid: 1, committedTxid: 4 }));
  t.is(n.state().committedTxid, 4);
  t.is(n.readableTxid(false), 4, "readers are served up to it");
  t.false(n.learnCommit({ epoch: 3, segmentTxid: 1, committedTxid: 3 }), "never backwards");
  t.true(n.learnCommit({ epoch: 3, segmentTxid: 1, committedTxid: 99 }));
  t.is(n.state().committedTxid, 5, "only what this node holds of the writer's segment");
});

test("journal core - a commit hint of another epoch or segment, or to a faulty node, changes nothing and promises nothing", (t) => {
  const n = written(3, 5, 2);
  const before = n.state();
  for (const hint of [
    { epoch: 2, segmentTxid: 1, committedTxid: 5 }, // a deposed writer
    { epoch: 4, segmentTxid: 1, committedTxid: 5 }, // an epoch not promised here: no implicit promise either
    { epoch: 3, segmentTxid: 6, committedTxid: 5 }, // another segment
  ]) {
    t.false(n.learnCommit(hint), JSON.stringify(hint));
  }
  t.deepEqual(n.state(), before);
  ok(n.step({ type: "newEpoch", epoch: 4 }));
  t.false(n.learnCommit({ epoch: 4, segmentTxid: 1, committedTxid: 5 }), "promised 4, but epoch 4 started no segment here");
  t.false(n.learnCommit({ epoch: 3, segmentTxid: 1, committedTxid: 5 }), "fenced");
  t.is(n.state().committedTxid, 2);
  const corrupt = new JournalCore("jn1", { meta: { promisedEpoch: 3, writerEpoch: 3, accepted: null }, segments: [{ startTxid: 1, endTxid: 5, inProgress: true }], fault: "segment 1 is corrupt" });
  t.false(corrupt.learnCommit({ epoch: 3, segmentTxid: 1, committedTxid: 5 }));
});

test("journal core - compaction never merges segments at or below the durable snapshot: the margin keeps them, a later purge drops them (issue #13 P6)", (t) => {
  // Snapshot at 30, margin 25: nothing is purged yet (up to 5), and 1..30 waits for the next snapshot's purge.
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50], [51, 60]], 30);
  const plan = n.compactionPlan(sizesOf(n, 100), [30], { ...limits, purgeMarginRecords: 25 });
  t.deepEqual(plan.purge, []);
  t.deepEqual(plan.merges, [{ startTxid: 31, endTxid: 60, parts: [fin(31, 40), fin(41, 50), fin(51, 60)] }], "only what the snapshot does not cover yet");
  // A segment that straddles the snapshot is not covered: it may be merged with what follows.
  const straddle = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50]], 25);
  t.deepEqual(
    straddle.compactionPlan(sizesOf(straddle, 100), [25], { ...limits, purgeMarginRecords: 25 }).merges.map((m) => [m.startTxid, m.endTxid]),
    [[21, 50]],
  );
});

test("journal core - a merged segment is at most a quarter of editlogMaxBytes (issue #13 P6: a merge doubled the editlog)", (t) => {
  // mergedSegmentMaxBytes 1000 would take 4 × 100 bytes; editlogMaxBytes 800 caps a merge at 200: runs of two.
  const n = log([[1, 10], [11, 20], [21, 30], [31, 40], [41, 50]]);
  t.deepEqual(
    n.compactionPlan(sizesOf(n, 99), [], { ...limits, editlogMaxBytes: 800 }).merges.map((m) => [m.startTxid, m.endTxid]),
    [
      [1, 20],
      [21, 40],
    ],
  );
  // Segments of half that cap or more are not small: none is merged.
  t.deepEqual(n.compactionPlan(sizesOf(n, 100), [], { ...limits, editlogMaxBytes: 800 }).merges, []);
});

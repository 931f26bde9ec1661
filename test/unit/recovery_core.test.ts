/**
 * Becoming the writer as a pure state machine (HDFS QuorumJournalManager.recoverUnfinalizedSegments, driven by
 * replies): each phase goes out to every node at once and moves on once all answered; late and duplicate replies
 * change nothing; a minority is NO_QUORUM. Driven here against real JournalCores, synchronously.
 */
import test from "ava";
import { JournalCore, type StepResult } from "../../src/journal/journal_core.js";
import { RecoveryCore, type RecoveryOutput, type RecoveryRequest } from "../../src/master/recovery_core.js";
import { toErrorReply, type ErrorReply } from "../../src/protocol/errors.js";
import type { JournalReply } from "../../src/protocol/messages.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";
import { epochOneRecord, epochOneRecords, unformattedNode } from "../helpers/journal_fixtures.js";

const limits = { epochRequestTimeoutMs: 100, journalRequestTimeoutMs: 200, readBytesMax: 1 << 20, readRecordsMax: 100, catchUpRoundsMax: 10, recoveryCatchUpRequestsMax: 100 };
const names = ["jn1", "jn2", "jn3"];

function fresh(): Map<string, JournalCore> {
  return new Map(names.map((n) => [n, unformattedNode(n)]));
}

/** A node's answer; a read is served with the epoch-1 records every copy here holds. */
function asReply(r: StepResult, node?: JournalCore): JournalReply {
  if ("error" in r.reply) return toErrorReply(r.reply.error);
  if ("read" in r.reply) {
    const { fromTxid, toTxid } = r.reply.read;
    const s = node!.state();
    return { ok: true, read: { records: epochOneRecords(fromTxid, toTxid), count: Math.max(0, toTxid - fromTxid + 1), lastTxid: s.lastTxid, committedTxid: s.committedTxid } };
  }
  return { ok: true, ...r.reply } as JournalReply;
}

/** Answers every request the core sends with `answer`, in order, until the core is done or throws. */
function driveWith(core: RecoveryCore, answer: (r: RecoveryRequest) => JournalReply): RecoveryOutput {
  let queue: RecoveryRequest[] = [];
  let out = core.start();
  for (;;) {
    if (out.done !== null) return out;
    queue = queue.concat(out.send);
    const r = queue.shift();
    if (r === undefined) throw new Error("recovery waits for nothing");
    out = core.onReply(r.id, answer(r));
  }
}

/** Delivers every request to its node (or an error for the nodes `down`), until the core is done or throws. */
function drive(core: RecoveryCore, nodes: Map<string, JournalCore>, down: string[] = []): RecoveryOutput {
  return driveWith(core, (r) => (down.includes(r.node) ? ({ ok: false, code: "TIMEOUT", message: "down" } as ErrorReply) : asReply(nodes.get(r.node)!.step(r.req), nodes.get(r.node))));
}

test("recovery core - a new cluster is formatted, promises epoch 1 and starts segment 1 on every node", (t) => {
  const nodes = fresh();
  const out = drive(new RecoveryCore(names, limits, "c-new"), nodes);
  t.deepEqual(out.done, { clusterId: "c-new", epoch: 1, endTxid: 0, inSync: names, decision: "empty journal" });
  for (const n of nodes.values()) t.like(n.state(), { clusterId: "c-new", promisedEpoch: 1, writerEpoch: 1, lastSegment: { startTxid: 1, endTxid: 0, inProgress: true } });
});

test("recovery core - each phase goes out to every node at once, and waits for all of them", (t) => {
  const core = new RecoveryCore(names, limits, "c");
  const first = core.start();
  t.deepEqual(first.send.map((r) => [r.node, r.req.type, r.timeoutMs]), names.map((n) => [n, "getState", 100]));
  t.is(core.onReply(first.send[0].id, { ok: false, code: "TIMEOUT", message: "" }).send.length, 0);
  t.is(core.onReply(first.send[1].id, { ok: false, code: "TIMEOUT", message: "" }).send.length, 0);
  t.is(core.currentPhase, "state");
});

test("recovery core - a late or duplicate reply changes nothing", (t) => {
  const nodes = fresh();
  const core = new RecoveryCore(names, limits, "c");
  const first = core.start();
  const replies = first.send.map((r) => asReply(nodes.get(r.node)!.step(r.req)));
  t.is(core.onReply(first.send[0].id, replies[0]).send.length, 0);
  t.is(core.onReply(first.send[0].id, replies[0]).send.length, 0, "a duplicate does not complete the phase");
  t.is(core.onReply(first.send[1].id, replies[1]).send.length, 0);
  const next = core.onReply(first.send[2].id, replies[2]);
  t.deepEqual(next.send.map((r) => r.req.type), ["format", "format", "format"]);
  t.is(core.onReply(first.send[2].id, replies[2]).send.length, 0, "a reply of a finished phase is ignored");
});

test("recovery core - a majority that does not answer is NO_QUORUM, and the epoch is one above every promise seen", (t) => {
  const nodes = fresh();
  drive(new RecoveryCore(names, limits, "c"), nodes);
  const err = t.throws(() => drive(new RecoveryCore(names, limits, "c"), nodes, ["jn1", "jn2"]));
  t.is((err as { code?: string }).code, "NO_QUORUM");
  const out = drive(new RecoveryCore(names, limits, "c"), nodes, ["jn3"]);
  t.like(out.done, { epoch: 2, inSync: ["jn1", "jn2"] });
});

test("recovery core - an unfinished segment is settled: accepted and finalized on a majority, the next one started after it", (t) => {
  const nodes = fresh();
  drive(new RecoveryCore(names, limits, "c"), nodes);
  // Every node holds the same three records of epoch 1: no copy needs a sync.
  for (const n of nodes.values()) t.false("error" in n.step({ type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: 3, records: epochOneRecords(1, 3), committedTxid: 0 }).reply);
  const out = drive(new RecoveryCore(names, limits, "c"), nodes);
  t.like(out.done, { epoch: 2, endTxid: 3, decision: "segment 1 kept as held by jn1: ends at 3" });
  for (const n of nodes.values()) t.like(n.state(), { writerEpoch: 2, lastSegment: { startTxid: 4, endTxid: 3, inProgress: true } });
});

test("recovery core - after an accept that reached only a minority, the others get the chosen copy past their committed txid (sim seed 74)", (t) => {
  const nodes = fresh();
  drive(new RecoveryCore(names, limits, "c"), nodes);
  // Epoch 1 journals 1..5 everywhere and 6 on jn1 only; jn2 and jn3 learned that 1..4 are committed.
  for (const [name, n] of nodes) {
    const last = name === "jn1" ? 6 : 5;
    t.false("error" in n.step({ type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: last, records: epochOneRecords(1, last), committedTxid: 4 }).reply);
  }
  // A recovery in epoch 2 accepted jn1's copy on jn1 alone, then died: jn1's copy is now of epoch 2, the others' of epoch 1.
  const jn1 = nodes.get("jn1")!;
  t.false("error" in jn1.step({ type: "newEpoch", epoch: 2, clusterId: "c" }).reply);
  t.false("error" in jn1.step({ type: "acceptRecovery", epoch: 2, segment: { startTxid: 1, endTxid: 6, inProgress: true }, lastRecord: { epoch: 1, crc: epochOneRecord(6).readUInt32BE(20) } }).reply);
  // The next recovery keeps jn1's copy; jn2 and jn3 refuse to replace their committed 1..4, so they get 5..6 only.
  const core = new RecoveryCore(names, limits, "c");
  const out = drive(core, nodes);
  t.like(out.done, { epoch: 3, endTxid: 6, inSync: names });
  for (const n of nodes.values()) t.like(n.state(), { writerEpoch: 3, lastTxid: 6, lastSegment: { startTxid: 7, endTxid: 6, inProgress: true } });
});

// ---- a failed recovery copy (issue #10, class 1) ----

/** The epoch-`epoch` record of these tests at txid (epochs write different values under the same txids). */
function recordOf(epoch: number, txid: number): Buffer {
  return encodeRecord(txid, epoch, encodeEffects([[Buffer.from("SET"), Buffer.from("k"), Buffer.from(`e${epoch}-${txid}`)]]));
}

/**
 * Like drive, but reads are served with the records each node really holds (`held`: node → txid → record), and
 * requests for which `fails` says so get a TIMEOUT. Returns the output, or the error the core threw.
 */
function driveHeld(core: RecoveryCore, nodes: Map<string, JournalCore>, held: Map<string, Map<number, Buffer>>, fails: (r: RecoveryRequest) => boolean): RecoveryOutput | Error {
  const answer = (r: RecoveryRequest): JournalReply => {
    if (fails(r)) return { ok: false, code: "TIMEOUT", message: "injected" };
    const step = nodes.get(r.node)!.step(r.req);
    if (!("read" in step.reply)) return asReply(step);
    const { fromTxid, toTxid } = step.reply.read;
    const recs: Buffer[] = [];
    for (let txid = fromTxid; txid <= toTxid; txid++) recs.push(held.get(r.node)!.get(txid)!);
    const s = nodes.get(r.node)!.state();
    return { ok: true, read: { records: Buffer.concat(recs), count: recs.length, lastTxid: s.lastTxid, committedTxid: s.committedTxid } };
  };
  try {
    return driveWith(core, answer);
  } catch (err) {
    return err as Error;
  }
}

test("recovery core - a node whose copy of the chosen segment failed never accepts, and never finalizes its own uncommitted records", (t) => {
  const nodes = fresh();
  const [x, y, z] = names.map((n) => nodes.get(n)!);
  drive(new RecoveryCore(names, limits, "c"), nodes); // epoch 1: segment 1 open, empty, everywhere
  const held = new Map(names.map((n) => [n, new Map<number, Buffer>()]));
  // Writer e1 fsyncs 1..3 on X only (never committed), and dies.
  const e1 = Buffer.concat([1, 2, 3].map((txid) => recordOf(1, txid)));
  t.false("error" in x.step({ type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: 3, records: e1, committedTxid: 0 }).reply);
  for (const txid of [1, 2, 3]) held.get("jn1")!.set(txid, recordOf(1, txid));
  // Writer e2 recovers on Y, Z (decision "empty"), restarts segment 1 and commits 1..2 there (acked).
  const e2 = drive(new RecoveryCore(names, limits, "c"), nodes, ["jn1"]);
  t.like(e2.done, { epoch: 2, endTxid: 0 });
  const e2Records = Buffer.concat([1, 2].map((txid) => recordOf(2, txid)));
  for (const n of [y, z]) t.false("error" in n.step({ type: "journal", epoch: 2, segmentTxid: 1, firstTxid: 1, count: 2, records: e2Records, committedTxid: 2 }).reply);
  for (const n of ["jn2", "jn3"]) for (const txid of [1, 2]) held.get(n)!.set(txid, recordOf(2, txid));
  // Z dies. Writer e3 recovers on X, Y and keeps Y's copy; copying it to X fails (the read times out).
  const z3 = new Set(["jn3"]);
  const failedCopy = driveHeld(new RecoveryCore(names, limits, "c"), nodes, held, (r) => z3.has(r.node) || (r.req.type === "read" && r.req.uncommitted));
  t.true(failedCopy instanceof Error && failedCopy.message.includes("acceptRecovery by 1"), String(failedCopy));
  t.like(x.state(), { lastTxid: 3, lastSegment: { startTxid: 1, endTxid: 3, inProgress: true } });
  // Asked anyway, X refuses: its record 2 is e1's, not the chosen copy's.
  const forced = x.step({ type: "acceptRecovery", epoch: x.state().promisedEpoch, segment: { startTxid: 1, endTxid: 2, inProgress: true }, lastRecord: { epoch: 2, crc: recordOf(2, 2).readUInt32BE(20) } });
  t.true("error" in forced.reply && forced.reply.error.code === "OUT_OF_SYNC");
  t.like(x.state(), { lastTxid: 3, lastSegment: { startTxid: 1, endTxid: 3, inProgress: true } });
  // Once the copy goes through, X holds e2's records 1..2, finalized, and the log goes on after them.
  const healed = driveHeld(new RecoveryCore(names, limits, "c"), nodes, held, (r) => z3.has(r.node));
  t.false(healed instanceof Error, String(healed));
  t.like((healed as RecoveryOutput).done, { endTxid: 2 });
  t.deepEqual(x.printAt(2), null, "segment 1 is no longer the newest");
  const p = x.step({ type: "prepareRecovery", epoch: x.state().promisedEpoch, segmentTxid: 1 });
  t.true("prepare" in p.reply && p.reply.prepare.segment?.endTxid === 2 && !p.reply.prepare.segment.inProgress);
});

// ---- compaction and recovery (issue #10, class 6) ----

test("recovery core - nodes that compacted differently still elect a writer after a roll's finalize with no next segment", (t) => {
  const nodes = fresh();
  drive(new RecoveryCore(names, limits, "c"), nodes);
  // Epoch 1 writes three segments, 1..5, 6..10, 11..15, and dies right after finalizing the last one.
  for (const n of nodes.values()) {
    for (const [start, end] of [[1, 5], [6, 10], [11, 15]]) {
      if (start > 1) t.false("error" in n.step({ type: "startSegment", epoch: 1, txid: start, clusterId: "c" }).reply);
      t.false("error" in n.step({ type: "journal", epoch: 1, segmentTxid: start, firstTxid: start, count: end - start + 1, records: epochOneRecords(start, end), committedTxid: start - 1 }).reply);
      t.false("error" in n.step({ type: "finalize", epoch: 1, startTxid: start, endTxid: end }).reply);
    }
  }
  // jn1 and jn2 compact (more segments than maxSegments); jn3 does not.
  const compactionLimits = { maxSegments: 2, editlogMaxBytes: 1 << 30, mergedSegmentMaxBytes: 1 << 20, purgeMarginRecords: 0, snapshotsRetained: 2 };
  for (const name of ["jn1", "jn2"]) {
    const n = nodes.get(name)!;
    const sizes = new Map(n.state().lastSegment === null ? [] : [1, 6, 11].map((s) => [s, 100]));
    const plan = n.compactionPlan(sizes, [], compactionLimits);
    t.true(plan.merges.length > 0, "something is merged");
    t.false(plan.merges.some((m) => m.parts.some((p) => p.startTxid === 11)), "never the newest finalized segment");
    for (const m of plan.merges) t.not(n.merge(m.parts), null);
    t.like(n.state(), { lastSegment: { startTxid: 11, endTxid: 15, inProgress: false } });
  }
  const out = drive(new RecoveryCore(names, limits, "c"), nodes);
  t.like(out.done, { epoch: 2, endTxid: 15, inSync: names });
});

/** Epoch 1 wrote 1..3 and rolled to segment 4 on jn1 and jn2; jn3 was behind (it holds 1 only), and jn2 now fails. */
function oneAheadOneBehind(t: import("ava").ExecutionContext): Map<string, JournalCore> {
  const nodes = fresh();
  drive(new RecoveryCore(names, limits, "c"), nodes);
  for (const [name, end] of [["jn1", 3], ["jn2", 3], ["jn3", 1]] as const) {
    const n = nodes.get(name)!;
    t.false("error" in n.step({ type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: end, records: epochOneRecords(1, end), committedTxid: 0 }).reply);
    if (name === "jn3") continue;
    t.false("error" in n.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid: 3 }).reply);
    t.false("error" in n.step({ type: "startSegment", epoch: 1, txid: 4, clusterId: "c" }).reply);
  }
  return nodes;
}

test("recovery core - a node left behind a finalized segment is caught up before the new segment counts on it (sim seed 9998)", (t) => {
  const nodes = oneAheadOneBehind(t);
  const out = drive(new RecoveryCore(names, limits, "c"), nodes, ["jn2"]);
  t.like(out.done, { epoch: 2, endTxid: 3, inSync: ["jn1", "jn3"] });
  t.true(out.notes.some((n) => n.message === "caught up a journal node left behind" && n.fields.node === "jn3"));
  // jn3 now holds the finalized 1..3 copied from jn1, and the new segment open at 4 in epoch 2.
  t.like(nodes.get("jn3")!.state(), { lastTxid: 3, writerEpoch: 2, lastSegment: { startTxid: 4, endTxid: 3, inProgress: true } });
  t.deepEqual(nodes.get("jn3")!.step({ type: "read", fromTxid: 1, bytesMax: 1 << 20, recordsMax: 10, uncommitted: true }).reply, nodes.get("jn1")!.step({ type: "read", fromTxid: 1, bytesMax: 1 << 20, recordsMax: 10, uncommitted: true }).reply);
});

test("recovery core - a node left behind that cannot be caught up leaves recovery NO_QUORUM", (t) => {
  const nodes = oneAheadOneBehind(t);
  // jn1 serves no read: jn3's copy of 1..3 cannot be made.
  const core = new RecoveryCore(names, limits, "c");
  const answer = (r: RecoveryRequest): JournalReply => {
    if (r.node === "jn2") return { ok: false, code: "TIMEOUT", message: "down" } as ErrorReply;
    if (r.node === "jn1" && r.req.type === "read") return { ok: false, code: "TIMEOUT", message: "slow" } as ErrorReply;
    return asReply(nodes.get(r.node)!.step(r.req), nodes.get(r.node));
  };
  const err = t.throws(() => driveWith(core, answer));
  t.regex(err!.message, /started on 1 after catching up, 2 needed/);
});

test("recovery core - a node that did not answer getState is not asked to open the new segment (a silent node would hold the election for its timeout)", (t) => {
  const nodes = fresh();
  drive(new RecoveryCore(names, limits, "c"), nodes);
  const asked: string[] = [];
  const out = driveWith(new RecoveryCore(names, limits, "c"), (r) => {
    asked.push(`${r.node} ${r.req.type}`);
    return r.node === "jn3" ? ({ ok: false, code: "TIMEOUT", message: "silent" } as ErrorReply) : asReply(nodes.get(r.node)!.step(r.req), nodes.get(r.node));
  });
  t.like(out.done, { epoch: 2, inSync: ["jn1", "jn2"] });
  t.deepEqual(asked.filter((a) => a.startsWith("jn3")), ["jn3 getState"]);
});

// ---- review of the catch-up in recovery (s19-review-recovery): schedules that break it ----

const readAt = (n: JournalCore, fromTxid: number, uncommitted = false): StepResult["reply"] =>
  n.step({ type: "read", fromTxid, bytesMax: 1 << 20, recordsMax: 10, uncommitted }).reply;

test("recovery core - a catch-up cut short after it opened the new segment does not let the next recovery count a node holding a hole", (t) => {
  const nodes = oneAheadOneBehind(t);
  const jn3 = nodes.get("jn3")!;
  // Recovery of epoch 2: jn2 down, jn1 serves no read: jn3's segment 4 opens past its hole, then the copy of 1..3 fails.
  const first = new RecoveryCore(names, limits, "c");
  t.throws(() =>
    driveWith(first, (r) => {
      if (r.node === "jn2" || (r.node === "jn1" && r.req.type === "read")) return { ok: false, code: "TIMEOUT", message: "down" } as ErrorReply;
      return asReply(nodes.get(r.node)!.step(r.req), nodes.get(r.node));
    }),
  );
  // jn3 set its own 1..1 aside and holds nothing of the committed 1..3, yet its log now looks level (lastTxid 3).
  t.like(jn3.state(), { lastTxid: 3, lastSegment: { startTxid: 4, endTxid: 3, inProgress: true } });
  t.true("error" in readAt(jn3, 1, true));
  // Recovery of epoch 3, jn2 still down, jn1 well: jn3 opens segment 4 (empty, already there) and is counted.
  const out = drive(new RecoveryCore(names, limits, "c"), nodes, ["jn2"]);
  // jn3 must not count while it holds none of the committed 1..3 (only jn1 and the absent jn2 do): it answers the
  // plain start OUT_OF_SYNC, and this recovery's catch-up copies 1..3 to it.
  t.like(out.done, { epoch: 3, endTxid: 3, inSync: ["jn1", "jn3"] });
  t.deepEqual(readAt(jn3, 1, true), readAt(nodes.get("jn1")!, 1, true));
});

test("recovery core - a wiped node is marked restored by a recovery's catch-up without the durable snapshot its peers purged below", (t) => {
  // Segments 1..3 and 4..6 finalized on jn1 and jn2, segment 7 open; snapshot 3 durable there and 1..3 purged on jn1.
  const logged = fresh();
  drive(new RecoveryCore(names, limits, "c"), logged);
  for (const name of ["jn1", "jn2"]) {
    const n = logged.get(name)!;
    t.false("error" in n.step({ type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: 3, records: epochOneRecords(1, 3), committedTxid: 0 }).reply);
    t.false("error" in n.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid: 3 }).reply);
    t.false("error" in n.step({ type: "startSegment", epoch: 1, txid: 4, clusterId: "c" }).reply);
    t.false("error" in n.step({ type: "journal", epoch: 1, segmentTxid: 4, firstTxid: 4, count: 3, records: epochOneRecords(4, 6), committedTxid: 3 }).reply);
    t.false("error" in n.step({ type: "finalize", epoch: 1, startTxid: 4, endTxid: 6 }).reply);
    t.false("error" in n.step({ type: "startSegment", epoch: 1, txid: 7, clusterId: "c" }).reply);
    t.false("error" in n.step({ type: "snapshotDurable", txid: 3, clusterId: "c" }, { snapshots: [3] }).reply);
  }
  t.is(logged.get("jn1")!.purge([{ startTxid: 1, endTxid: 3, inProgress: false }], { purgeMarginRecords: 0 }).length, 1);
  logged.set("jn3", unformattedNode("jn3")); // wiped: disk replaced
  // jn2 promises and prepares, then times out on startSegment: only jn1 opens segment 7; jn3 (restoring) is OUT_OF_SYNC.
  const core = new RecoveryCore(names, limits, "c");
  const err = t.throws(() =>
    driveWith(core, (r) => {
      if (r.node === "jn2" && r.req.type === "startSegment") return { ok: false, code: "TIMEOUT", message: "slow" } as ErrorReply;
      return asReply(logged.get(r.node)!.step(r.req), logged.get(r.node));
    }),
  );
  t.regex(err!.message, /started on 1 after catching up, 2 needed/, "no writer until a node that kept its log opens the segment");
  // Marking jn3 restored would make it a voter holding 4..6 without snapshot 3 (its peers purged 1..3 below it);
  // the serving writer's catch-up copies the durable snapshot first, this one cannot.
  const jn3 = logged.get("jn3")!;
  t.like(jn3.state(), { restoring: true, lastTxid: 0 });
});

/** Epoch 1 wrote 1..3 and rolled to segment 4 on jn1 only; jn2 and jn3 hold txid 1 (both behind). */
function oneAheadTwoBehind(t: import("ava").ExecutionContext): Map<string, JournalCore> {
  const nodes = fresh();
  drive(new RecoveryCore(names, limits, "c"), nodes);
  for (const [name, end] of [["jn1", 3], ["jn2", 1], ["jn3", 1]] as const) {
    const n = nodes.get(name)!;
    t.false("error" in n.step({ type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: end, records: epochOneRecords(1, end), committedTxid: 0 }).reply);
  }
  const jn1 = nodes.get("jn1")!;
  t.false("error" in jn1.step({ type: "finalize", epoch: 1, startTxid: 1, endTxid: 3 }).reply);
  t.false("error" in jn1.step({ type: "startSegment", epoch: 1, txid: 4, clusterId: "c" }).reply);
  return nodes;
}

test("recovery core - the catch-up ends as soon as a quorum opened the segment; the other node is left to the serving writer", (t) => {
  const nodes = oneAheadTwoBehind(t);
  // jn2 and jn3 answer prepare as holding 1 of segment 1 while jn1 holds 1..3 finalized and 4 open: the log ends at 3.
  const out = drive(new RecoveryCore(names, limits, "c"), nodes);
  t.is(out.done?.inSync.length, 2);
  t.true(out.done!.inSync.includes("jn1"));
  t.is(out.notes.filter((n) => n.message === "caught up a journal node left behind").length, 1);
});

test("recovery core - a catch-up past recoveryCatchUpRequestsMax gives the attempt up (an election never waits on a long copy)", (t) => {
  const nodes = oneAheadOneBehind(t);
  const err = t.throws(() => drive(new RecoveryCore(names, { ...limits, recoveryCatchUpRequestsMax: 3 }, "c"), nodes, ["jn2"]));
  t.regex(err!.message, /recoveryCatchUpRequestsMax 3/);
});

test("recovery core - a data node's campaign defers once to a promise above every master it heard; the same promise again, it goes on", (t) => {
  const nodes = fresh();
  t.is(drive(new RecoveryCore(names, limits, "c"), nodes).done?.epoch, 1, "epoch 1 serves, and every node heard it");
  // A rival campaign promised epoch 2 on a majority; no master of epoch 2 was heard yet.
  t.is(drive(new RecoveryCore(names, limits, "c"), nodes).done?.epoch, 2);
  const campaign = (guard: { masterEpochHeard: number; knownPromise: number }): RecoveryCore => {
    const core = new RecoveryCore(names, limits, "c");
    core.guardCampaign(guard);
    return core;
  };
  const deferred = t.throws(() => drive(campaign({ masterEpochHeard: 1, knownPromise: 0 }), nodes), { code: "CAMPAIGN_DEFERRED" });
  t.is((deferred as unknown as { promisedEpoch: number }).promisedEpoch, 2);
  for (const n of nodes.values()) t.is(n.state().promisedEpoch, 2, "nothing promised by the deferred campaign");
  t.is(drive(campaign({ masterEpochHeard: 2, knownPromise: 0 }), nodes).done?.epoch, 3, "epoch 2's master heard: no rival");
  t.throws(() => drive(campaign({ masterEpochHeard: 1, knownPromise: 2 }), nodes), { code: "CAMPAIGN_DEFERRED" }, "a newer promise (3): deferred again");
  t.is(drive(campaign({ masterEpochHeard: 1, knownPromise: 3 }), nodes).done?.epoch, 4, "the promise deferred to, found again: nobody took it further");
  t.is(drive(new RecoveryCore(names, limits, "c"), nodes).done?.epoch, 5, "a master's own recovery never defers");
  t.is(drive(campaign({ masterEpochHeard: 1, knownPromise: 6 }), nodes).done?.epoch, 6, "its own last campaign asked for 6 and got no promise: 5 is older, no rival's (review)");
});

test("recovery core - a campaign does not defer to the promise its own format phase gave a node of another cluster id that held nothing (review)", (t) => {
  const nodes = fresh();
  t.is(drive(new RecoveryCore(names, limits, "c"), nodes).done?.epoch, 1);
  nodes.set("jn3", new JournalCore("jn3", { meta: { promisedEpoch: 1, writerEpoch: 0, accepted: null }, segments: [], fault: null, identity: { clusterId: "other", restoring: false } }));
  const core = new RecoveryCore(names, limits, "c");
  core.guardCampaign({ masterEpochHeard: 1, knownPromise: 0 });
  t.is(drive(core, nodes).done?.epoch, 3, "jn3 formatted into c with epoch 2 (its promise, ours): epoch 3 follows");
});

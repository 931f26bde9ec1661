import test from "ava";
import { ReplicaCore, SLOW_SKIP_READS, SnapshotSchedule } from "../../src/replica/replica_core.js";
import { encodeEffects, encodeRecord, scanRecords } from "../../src/segment/record.js";
import { AssertionError } from "../../src/util/assert.js";

const NODES = ["jn1", "jn2", "jn3"];
/** The snapshot schedule's timing limits (config: snapshotRankDelayMs, journalRequestTimeoutMs). */
const SNAPSHOT_TIMING = { snapshotRankDelayMs: 1000, journalRequestTimeoutMs: 5000 };

function recs(txids: number[], epoch = 1): Buffer {
  return Buffer.concat(txids.map((txid) => encodeRecord(txid, epoch, encodeEffects([[Buffer.from("SET"), Buffer.from(`k${txid}`), Buffer.from("v")]]))));
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test("replica core - applies records contiguous from applied + 1 and reads on from there", (t) => {
  const r = new ReplicaCore(NODES, 10);
  t.deepEqual(r.nextRead(), { node: "jn1", fromTxid: 11 });
  const out = r.onRead({ ok: true, records: recs(range(11, 13)), count: 3 });
  if (out.kind !== "apply") return t.fail(`got ${out.kind}`);
  t.deepEqual(
    out.records.map((rec) => rec.txid),
    [11, 12, 13],
  );
  t.is(r.appliedTxid, 10, "nothing is applied until the adapter says so");
  for (const rec of out.records) r.onApplied(rec.txid);
  t.is(r.appliedTxid, 13);
  t.deepEqual(r.nextRead(), { node: "jn1", fromTxid: 14 }, "a node that serves well is kept");
});

test("replica core - starts at txid 1 on an empty replica", (t) => {
  const r = new ReplicaCore(NODES, 0);
  t.deepEqual(r.nextRead(), { node: "jn1", fromTxid: 1 });
  const out = r.onRead({ ok: true, records: recs([1]), count: 1 });
  t.is(out.kind, "apply");
});

function rejectedAndRotated(t: import("ava").ExecutionContext, reply: Parameters<ReplicaCore["onRead"]>[0], name: string): string {
  const r = new ReplicaCore(NODES, 10);
  const out = r.onRead(reply);
  t.is(out.kind, "reject", name);
  t.deepEqual(r.nextRead(), { node: "jn2", fromTxid: 11 }, `${name}: asks the next node for the same txid`);
  t.is(r.appliedTxid, 10, name);
  return out.kind === "reject" ? out.reason : "";
}

test("replica core - a reply with a corrupt record is rejected and the next node is asked", (t) => {
  const corrupt = recs(range(11, 13));
  corrupt[corrupt.length >> 1] ^= 0xff;
  rejectedAndRotated(t, { ok: true, records: corrupt, count: 3 }, "corrupt middle");
  const torn = recs(range(11, 13)).subarray(0, -2);
  rejectedAndRotated(t, { ok: true, records: torn, count: 3 }, "torn tail");
  rejectedAndRotated(t, { ok: true, records: Buffer.from("not records at all, just text"), count: 1 }, "garbage");
});

test("replica core - a reply that does not continue from applied + 1 is rejected", (t) => {
  rejectedAndRotated(t, { ok: true, records: recs([12, 13]), count: 2 }, "gap before the first record");
  rejectedAndRotated(t, { ok: true, records: recs([10, 11]), count: 2 }, "already applied");
  rejectedAndRotated(t, { ok: true, records: recs([11, 13]), count: 2 }, "gap inside the reply");
  rejectedAndRotated(t, { ok: true, records: recs([11, 11]), count: 2 }, "repeated txid");
});

test("replica core - a reply whose count does not match its records is rejected", (t) => {
  rejectedAndRotated(t, { ok: true, records: recs([11, 12]), count: 3 }, "count too high");
  rejectedAndRotated(t, { ok: true, records: recs([11, 12]), count: 1 }, "count too low");
});

test("replica core - an error reply is rejected with its code and the next node is asked", (t) => {
  const reason = rejectedAndRotated(t, { ok: false, code: "NOT_FOUND", message: "txid 11 is beyond this node's readable end 9" }, "error");
  t.regex(reason, /NOT_FOUND/);
});

test("replica core - an empty reply is idle and rotates through the nodes", (t) => {
  const r = new ReplicaCore(NODES, 4);
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) {
    seen.push(r.nextRead().node);
    t.deepEqual(r.onRead({ ok: true, records: Buffer.alloc(0), count: 0 }), { kind: "idle" });
  }
  t.deepEqual(seen, ["jn1", "jn2", "jn3", "jn1"]);
  t.is(r.nextRead().fromTxid, 5);
});

test("replica core - onApplied out of order is a bug: AssertionError", (t) => {
  const r = new ReplicaCore(NODES, 10);
  t.throws(() => r.onApplied(12), { instanceOf: AssertionError }, "skips 11");
  t.throws(() => r.onApplied(10), { instanceOf: AssertionError }, "already applied");
  r.onApplied(11);
  t.throws(() => r.onApplied(11), { instanceOf: AssertionError }, "twice");
  t.is(r.appliedTxid, 11);
});

test("replica core - a replica needs at least one journal node", (t) => {
  t.throws(() => new ReplicaCore([], 0), { instanceOf: AssertionError });
});

// ---- bootstrap: the next txid is purged everywhere it could be read ----

const miss = { ok: true as const, records: Buffer.alloc(0), count: 0 };
const purged = { ok: false as const, code: "PURGED", message: "txid 11 was purged here: snapshot 500 holds it" };
const notFound = { ok: false as const, code: "NOT_FOUND", message: "txid 11 is below this node's first txid 21" };

test("replica core - bootstrap only after a whole round of nodes missed the next txid, one of them with PURGED", (t) => {
  const r = new ReplicaCore(NODES, 10);
  t.is(r.onRead(purged).kind, "reject", "jn1 purged it: the others may still hold it");
  t.is(r.onRead(miss).kind, "idle", "jn2 has nothing yet");
  t.deepEqual(r.onRead(notFound), { kind: "bootstrap" }, "jn3 lacks it too: the round is over");
  t.is(r.appliedTxid, 10);
  // The count starts over: another whole round is needed before the next bootstrap outcome.
  t.is(r.onRead(purged).kind, "reject");
  t.is(r.onRead(purged).kind, "reject");
  t.deepEqual(r.onRead(purged), { kind: "bootstrap" });
});

test("replica core - the PURGED may come at any point of the round", (t) => {
  for (let at = 0; at < NODES.length; at++) {
    const r = new ReplicaCore(NODES, 10);
    const kinds = NODES.map((_, i) => r.onRead(i === at ? purged : notFound).kind);
    t.deepEqual(kinds.slice(0, -1), ["reject", "reject"], `PURGED from node ${at}`);
    t.is(kinds.at(-1), "bootstrap", `PURGED from node ${at}`);
  }
});

test("replica core - rounds of misses without a PURGED never bootstrap", (t) => {
  const r = new ReplicaCore(NODES, 10);
  for (let i = 0; i < 4 * NODES.length; i++) {
    t.not(r.onRead(i % 2 === 0 ? miss : notFound).kind, "bootstrap", `read ${i}`);
  }
  t.deepEqual(r.nextRead(), { node: "jn1", fromTxid: 11 }, "four whole rounds, still asking for the same txid");
});

test("replica core - a round that ended without PURGED does not lend its misses to the next one", (t) => {
  const r = new ReplicaCore(NODES, 10);
  for (let i = 0; i < NODES.length; i++) t.is(r.onRead(miss).kind, "idle");
  t.is(r.onRead(purged).kind, "reject");
  t.is(r.onRead(miss).kind, "idle", "two misses of this round so far");
  t.deepEqual(r.onRead(miss), { kind: "bootstrap" });
});

test("replica core - records from any node reset the count of misses and the PURGED seen", (t) => {
  const r = new ReplicaCore(NODES, 10);
  t.is(r.onRead(purged).kind, "reject"); // jn1
  t.is(r.onRead(miss).kind, "idle"); // jn2
  const out = r.onRead({ ok: true, records: recs([11, 12]), count: 2 }); // jn3 still holds it
  if (out.kind !== "apply") return t.fail(`got ${out.kind}`);
  for (const rec of out.records) r.onApplied(rec.txid);
  // Three misses follow, none of them PURGED: the earlier PURGED no longer counts.
  for (let i = 0; i < NODES.length; i++) t.not(r.onRead(miss).kind, "bootstrap", `miss ${i}`);
  t.is(r.onRead(notFound).kind, "reject");
  t.is(r.onRead(purged).kind, "reject");
  t.deepEqual(r.onRead(miss), { kind: "bootstrap" });
  t.is(r.nextRead().fromTxid, 13);
});

test("replica core - with one journal node, a PURGED is the whole round", (t) => {
  const r = new ReplicaCore(["jn1"], 10);
  t.is(r.onRead(miss).kind, "idle");
  t.deepEqual(r.onRead(purged), { kind: "bootstrap" });
});

// ---- pacing (issue #13 P4): the master's commit hint ends the pause; the backstop is the only polling ----

const PACE = { pollMs: 20, backstopMs: 500 };
const read = (txids: number[], committedTxid: number) => ({ ok: true as const, records: recs(txids), count: txids.length, committedTxid });
function applyAll(t: import("ava").ExecutionContext, r: ReplicaCore, reply: ReturnType<typeof read>): void {
  const out = r.onRead(reply);
  if (out.kind !== "apply") return void t.fail(`got ${out.kind}`);
  for (const rec of out.records) r.onApplied(rec.txid);
}

test("replica core pace - a replica that applied what its node knows committed waits the backstop, not the poll", (t) => {
  const r = new ReplicaCore(NODES, 10, PACE);
  applyAll(t, r, read([11, 12], 12));
  t.deepEqual(r.next(), { kind: "pause", ms: 500 }, "no second read to learn there is nothing more");
  t.is(r.onRead(miss).kind, "idle");
  t.deepEqual(r.next(), { kind: "pause", ms: 500 }, "an idle node with nothing heard of beyond: the backstop again");
});

test("replica core pace - records short of the node's commit index, or past it (finalized segments), are read on at once", (t) => {
  const r = new ReplicaCore(NODES, 10, PACE);
  applyAll(t, r, read([11, 12], 20));
  t.deepEqual(r.next(), { kind: "read" }, "a read cut by bytesMax/recordsMax");
  applyAll(t, r, read(range(13, 20), 0));
  t.deepEqual(r.next(), { kind: "read" }, "the node's commit index is unknown after its restart: its finalized segments still serve");
  t.is(r.onRead(miss).kind, "idle");
  t.deepEqual(r.next(), { kind: "pause", ms: 500 });
});

test("replica core pace - a hint above the applied txid asks for a read; one at or below it does not", (t) => {
  const r = new ReplicaCore(NODES, 10, PACE);
  t.false(r.onHint(10), "already applied");
  t.false(r.onHint(3), "old");
  t.true(r.onHint(12), "a commit not applied yet: the pause ends");
  t.false(r.onHint(12), "heard already");
  t.true(r.onHint(13));
  applyAll(t, r, read([11, 12, 13], 13));
  t.deepEqual(r.next(), { kind: "pause", ms: 500 });
});

test("replica core pace - a hint heard during a read makes the replica read on after it", (t) => {
  const r = new ReplicaCore(NODES, 10, PACE);
  r.onHint(15);
  applyAll(t, r, read([11, 12], 12));
  t.deepEqual(r.next(), { kind: "read" }, "13..15 were heard of");
  t.is(r.onRead(miss).kind, "idle", "this node has not learnt 15 yet");
  t.deepEqual(r.next(), { kind: "read" }, "the next node may have");
  t.deepEqual(r.nextRead(), { node: "jn2", fromTxid: 13 });
});

test("replica core pace - a hint no node confirms is asked again once after pollMs, then forgotten (a forged hint costs two rounds)", (t) => {
  const r = new ReplicaCore(NODES, 10, PACE);
  t.true(r.onHint(1_000_000));
  const steps: string[] = [];
  for (let i = 0; i < 2 * NODES.length; i++) {
    t.is(r.onRead(miss).kind, "idle");
    const next = r.next();
    steps.push(next.kind === "read" ? "read" : `pause ${next.ms}`);
  }
  t.deepEqual(steps, ["read", "read", "pause 20", "read", "read", "pause 500"]);
  t.is(r.onRead(miss).kind, "idle");
  t.deepEqual(r.next(), { kind: "pause", ms: 500 }, "forgotten: back to the backstop's pace");
  t.is(r.appliedTxid, 10, "a hint never applies anything");
  t.true(r.onHint(1_000_001), "a newer hint is heard again");
});

test("replica core pace - a refused read tries the next node at once until the round ends, hint or not", (t) => {
  const r = new ReplicaCore(NODES, 10, PACE);
  t.is(r.onRead(notFound).kind, "reject");
  t.deepEqual(r.next(), { kind: "read" });
  t.is(r.onRead(notFound).kind, "reject");
  t.deepEqual(r.next(), { kind: "read" });
  t.is(r.onRead(notFound).kind, "reject");
  t.deepEqual(r.next(), { kind: "pause", ms: 500 }, "a whole round refused, nothing heard of: the backstop");
});

test("replica core - one node refusing a read is routine; only faulty records or every node refusing in a row is alarming", (t) => {
  const r = new ReplicaCore(NODES, 10);
  t.true(r.onHint(1e12), "a forged hint: the replica reads on");
  const notFound = { ok: false as const, code: "NOT_FOUND", message: "txid 11 is beyond this node's readable end 9" };
  const first = r.onRead(notFound);
  t.like(first, { kind: "reject", alarming: false }, "a node whose commit index lags refuses: not a fault");
  t.is(r.onRead({ ok: true, records: Buffer.alloc(0), count: 0 }).kind, "idle");
  t.like(r.onRead(notFound), { kind: "reject", alarming: false }, "an answer in between restarts the count");
  t.like(r.onRead(notFound), { kind: "reject", alarming: false });
  t.like(r.onRead(notFound), { kind: "reject", alarming: true }, "every node refused in a row");
  t.like(r.onRead({ ok: true, records: Buffer.from("garbage"), count: 1 }), { kind: "reject", faulty: true, alarming: true });
});

test("replica core - an alarm lasts until a node answers well: records, or that it holds none past them (CI: an idle replica stayed degraded)", (t) => {
  const r = new ReplicaCore(NODES, 10);
  const notFound = { ok: false as const, code: "NOT_FOUND", message: "txid 11 is beyond this node's readable end 9" };
  t.is(r.alarm, null);
  for (let i = 0; i < NODES.length; i++) r.onRead(notFound);
  t.regex(r.alarm ?? "", /NOT_FOUND: txid 11 is beyond/, "every node refused in a row: the replica says so");
  r.onRead(notFound);
  t.not(r.alarm, null, "still refused");
  t.is(r.onRead({ ok: true, records: Buffer.alloc(0), count: 0 }).kind, "idle");
  t.is(r.alarm, null, "a node holds nothing past what was applied: nothing is wrong any more");
  for (let i = 0; i < NODES.length; i++) r.onRead(notFound);
  r.onBuffered([{ txid: 11, epoch: 1, offset: 0, length: 0, payload: Buffer.alloc(0) }], 11);
  t.is(r.alarm, null, "records from the fan-out clear it too");
});

test("replica snapshot schedule - every snapshotEveryRecords, or once margin + records past the snapshot reach half the editlog bound (issue #13 P6)", (t) => {
  const limits = { ...SNAPSHOT_TIMING, snapshotEveryRecords: 20_000, editlogMaxBytes: 1024 * 1024, purgeMarginRecords: 1024 };
  const s = new SnapshotSchedule(limits);
  t.false(s.thresholdPassed(19_999, 0), "no record seen yet: the count alone");
  t.true(s.thresholdPassed(20_000, 0));
  for (let i = 0; i < 10; i++) s.observe(256);
  // 256-byte records: half the bound (512 KiB) less the margin (256 KiB) is 1,024 records past the snapshot.
  t.false(s.thresholdPassed(1023, 0));
  t.true(s.thresholdPassed(1024, 0));
  t.false(s.thresholdPassed(5000 + 1023, 5000), "counted from the newest durable snapshot");
  t.true(s.thresholdPassed(5000 + 1024, 5000));
  t.false(s.thresholdPassed(5000, 5000));
  t.false(new SnapshotSchedule({ ...limits, snapshotEveryRecords: 0 }).thresholdPassed(1_000_000, 0), "0: never");
});

test("replica snapshot schedule - a margin past half the bound snapshots every eighth of the bound, not without pause", (t) => {
  const s = new SnapshotSchedule({ ...SNAPSHOT_TIMING, snapshotEveryRecords: 20_000, editlogMaxBytes: 1024 * 1024, purgeMarginRecords: 10_000 });
  s.observe(256);
  t.false(s.thresholdPassed(511, 0));
  t.true(s.thresholdPassed(512, 0), "128 KiB of 256-byte records");
});

test("replica snapshot schedule - replicas' thresholds are staggered by rank, so two do not upload at once and refuse each other", (t) => {
  const limits = { ...SNAPSHOT_TIMING, snapshotEveryRecords: 20_000, editlogMaxBytes: 1024 * 1024, purgeMarginRecords: 1024 };
  const first = new SnapshotSchedule(limits, 0);
  const second = new SnapshotSchedule(limits, 2);
  for (const s of [first, second]) s.observe(256);
  t.true(first.thresholdPassed(1024, 0));
  t.false(second.thresholdPassed(1024, 0), "1.25 × the first's threshold");
  t.false(second.thresholdPassed(1279, 0));
  t.true(second.thresholdPassed(1280, 0));
  t.false(second.thresholdPassed(24_999, 24_000), "counted from the first's durable snapshot");
  const idle = new SnapshotSchedule(limits, 2);
  t.false(idle.thresholdPassed(24_999, 0), "the record count is staggered too");
  t.true(idle.thresholdPassed(25_000, 0));
});

test("replica snapshot schedule - replicas that cross both thresholds in one burst do not start together: the later rank waits its turn, then finds the first's snapshot durable (issue #13 P6, jn3 stopped)", (t) => {
  // Replicas fed by the master's batch fan-out apply the same batches at the same moment, in bursts after a pause:
  // both passed both thresholds at once and started within milliseconds; their uploads refused each other.
  const limits = { ...SNAPSHOT_TIMING, snapshotEveryRecords: 20_000, editlogMaxBytes: 1024 * 1024, purgeMarginRecords: 1024 };
  const first = new SnapshotSchedule(limits, 0);
  const second = new SnapshotSchedule(limits, 1);
  for (const s of [first, second]) s.observe(256);
  t.false(first.due(1000, 0, 0) || second.due(1000, 0, 0), "below both thresholds");
  t.true(first.due(2000, 0, 100), "the first starts at once");
  t.false(second.due(2000, 0, 100), "the second, past its threshold in the same burst, waits its turn");
  t.false(second.due(2500, 0, 100 + SNAPSHOT_TIMING.snapshotRankDelayMs - 1));
  t.true(second.due(2500, 0, 100 + SNAPSHOT_TIMING.snapshotRankDelayMs), "its turn: the first's snapshot should be durable by now, else it goes");
  t.false(second.due(2600, 2000, 100 + SNAPSHOT_TIMING.snapshotRankDelayMs), "it is: none needed");
  t.true(new SnapshotSchedule(limits, 2).due(3000, 0, 0) === false, "rank 2 waits twice as long");
});

test("replica snapshot schedule - after a try that failed, ranks try again their turn apart, not at the same moment and txid (issue #13 P6)", (t) => {
  const limits = { ...SNAPSHOT_TIMING, snapshotEveryRecords: 20_000, editlogMaxBytes: 1024 * 1024, purgeMarginRecords: 1024 };
  const first = new SnapshotSchedule(limits, 0);
  const second = new SnapshotSchedule(limits, 1);
  for (const s of [first, second]) s.observe(256);
  // Both due long ago (the first's turn came, then the second's), both tried at once and failed.
  t.true(first.due(2000, 0, 0));
  t.false(second.due(2000, 0, 0));
  t.true(second.due(2000, 0, 5000));
  first.tried(10_000);
  second.tried(10_000);
  const pause = SNAPSHOT_TIMING.journalRequestTimeoutMs;
  t.false(first.due(9000, 0, 10_000 + pause - 1), "the pause after a failed try");
  t.true(first.due(9000, 0, 10_000 + pause));
  t.false(second.due(9000, 0, 10_000 + pause), "the second's turn comes after the pause too");
  t.true(second.due(9000, 0, 10_000 + pause + SNAPSHOT_TIMING.snapshotRankDelayMs));
});

test("replica snapshot schedule - a success ends the pause; a turn lasts the replica's own last snapshot when that took longer", (t) => {
  const limits = { ...SNAPSHOT_TIMING, snapshotEveryRecords: 20_000, editlogMaxBytes: 1024 * 1024, purgeMarginRecords: 1024 };
  const s = new SnapshotSchedule(limits, 1);
  s.observe(256);
  s.tried(0);
  s.succeeded(3000);
  t.false(s.due(1000, 1000, 3000), "just snapshotted");
  t.false(s.due(3000, 1000, 3001), "due, its turn not come");
  t.false(s.due(3000, 1000, 6000), "a turn of its last snapshot's 3 s");
  t.true(s.due(3000, 1000, 6001));
  const first = new SnapshotSchedule(limits, 0);
  first.observe(256);
  first.tried(0);
  first.succeeded(3000);
  t.true(first.due(3000, 1000, 3001), "rank 0 has no turn to wait");
});

test("replica core - a node whose read timed out is passed over for a while, not asked each round (issue #13 P6: a SIGSTOPped node)", (t) => {
  const r = new ReplicaCore(NODES, 10);
  const timeout = { ok: false as const, code: "TIMEOUT", message: "request to qjm.default.jn.jn1.read timed out" };
  const idle = { ok: true as const, records: Buffer.alloc(0), count: 0 };
  t.is(r.onRead(timeout).kind, "reject");
  t.is(r.nextRead().node, "jn2");
  r.onRead(idle);
  t.is(r.nextRead().node, "jn3");
  r.onRead(idle);
  t.is(r.nextRead().node, "jn2", "jn1 is passed over");
  // After SLOW_SKIP_READS reads it is asked again; another timeout passes it over twice as long.
  let reads = 4;
  while (reads < SLOW_SKIP_READS + 1) {
    t.not(r.nextRead().node, "jn1", `read ${reads}`);
    r.onRead(idle);
    reads++;
  }
  for (let i = 0; i < 2 && r.nextRead().node !== "jn1"; i++) r.onRead(idle);
  t.is(r.nextRead().node, "jn1", "asked again");
  r.onRead(timeout);
  for (let i = 0; i < 2 * SLOW_SKIP_READS - 2; i++) {
    t.not(r.nextRead().node, "jn1");
    r.onRead(idle);
  }
  // An answer clears it at once; with every node timing out, none is passed over.
  const all = new ReplicaCore(NODES, 10);
  for (const node of NODES) {
    t.is(all.nextRead().node, node);
    all.onRead(timeout);
  }
  t.is(all.nextRead().node, "jn1", "every node slow: the rotation goes on");
});

test("replica core - records from the fan-out are applied from applied + 1; then it waits for a hint, or reads on while behind", (t) => {
  const r = new ReplicaCore(NODES, 10, { pollMs: 20, backstopMs: 500 });
  const records = scanRecords(recs(range(11, 12))).records;
  const out = r.onBuffered(records, 12);
  t.is(out.kind, "apply");
  r.onApplied(11);
  r.onApplied(12);
  t.deepEqual(r.next(), { kind: "pause", ms: 500 }, "everything committed is applied: the backstop's pause, which a hint ends");
  t.true(r.onHint(14));
  t.is(r.onBuffered(scanRecords(recs([13])).records, 14).kind, "apply");
  r.onApplied(13);
  t.deepEqual(r.next(), { kind: "read" }, "14 is committed and not applied: read it (the fan-out missed it)");
  t.deepEqual(r.nextRead().fromTxid, 14);
  t.throws(() => r.onBuffered(scanRecords(recs([15])).records, 15), { instanceOf: AssertionError }, "never past a gap");
});

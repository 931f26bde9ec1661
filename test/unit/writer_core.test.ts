import test from "ava";
import { WriterCore, type Batch, type WriterLimits, type WriterOutput } from "../../src/master/writer_core.js";
import { decodeEffects, encodeEffects, scanRecords } from "../../src/segment/record.js";
import { AssertionError } from "../../src/util/assert.js";

const N3 = ["jn1", "jn2", "jn3"];
const N5 = ["jn1", "jn2", "jn3", "jn4", "jn5"];
const roomy: WriterLimits = { batchBytesMax: 1 << 20, batchRecordsMax: 1000, quorumTimeoutMs: 1000 };
const OK = { ok: true } as const;
const refuse = (code: string, message = "refused") => ({ ok: false as const, code, message });

const payload = (key: string): Uint8Array => encodeEffects([[Buffer.from("SET"), Buffer.from(key), Buffer.from("value")]]);

function writer(nodes = N3, limits = roomy, epoch = 2, segmentTxid = 11, inSync = nodes): WriterCore {
  return new WriterCore(epoch, segmentTxid, nodes, inSync, limits);
}

function onlyBatch(out: WriterOutput): { batch: Batch; nodes: string[] } {
  if (out.send.length !== 1) throw new Error(`expected one send, got ${out.send.length}`);
  return out.send[0];
}

test("writer core - txids are assigned contiguously from segmentTxid", (t) => {
  const w = writer();
  t.is(w.committedTxid, 10, "everything before the segment is committed");
  t.is(w.lastTxid, 10);
  t.deepEqual(
    ["a", "b", "c"].map((k) => w.append(payload(k))),
    [11, 12, 13],
  );
  t.is(w.lastTxid, 13);
  t.is(w.committedTxid, 10);
});

test("writer core - tick flushes one batch of the buffered records to every in-sync node", (t) => {
  const w = writer();
  t.deepEqual(w.tick(0).send, [], "nothing buffered, nothing sent");
  for (const k of ["a", "b", "c"]) w.append(payload(k));
  const { batch, nodes } = onlyBatch(w.tick(5));
  t.deepEqual([...nodes].sort(), N3);
  t.like(batch, { segmentTxid: 11, firstTxid: 11, count: 3, committedTxid: 10 });
  const scan = scanRecords(batch.records);
  t.is(scan.stop, undefined);
  t.deepEqual(
    scan.records.map((r) => [r.txid, r.epoch]),
    [
      [11, 2],
      [12, 2],
      [13, 2],
    ],
  );
  t.is(Buffer.from(decodeEffects(scan.records[1].payload)[0][1]).toString(), "b");
  t.deepEqual(w.tick(6).send, [], "no second batch while one is in flight");
});

test("writer core - records accumulate while a batch is in flight and go out together on the majority ack (group commit)", (t) => {
  const w = writer();
  w.append(payload("a"));
  const first = onlyBatch(w.tick(0)).batch;
  for (const k of ["b", "c", "d"]) w.append(payload(k));
  t.deepEqual(w.tick(1).send, []);
  const one = w.onReply("jn1", first.id, OK, 2);
  t.deepEqual(one.send, [], "one ack of three is no majority");
  t.is(one.committedTxid, null);
  const two = w.onReply("jn2", first.id, OK, 3);
  t.is(two.committedTxid, 11);
  const next = onlyBatch(two);
  t.like(next.batch, { firstTxid: 12, count: 3, committedTxid: 11 });
  t.not(next.batch.id, first.id);
  t.deepEqual(
    scanRecords(next.batch.records).records.map((r) => r.txid),
    [12, 13, 14],
  );
});

test("writer core - committed advances at the majority-th ack (2 of 3), not at the first", (t) => {
  const w = writer();
  w.append(payload("a"));
  w.append(payload("b"));
  const b = onlyBatch(w.tick(0)).batch;
  t.is(w.onReply("jn3", b.id, OK, 1).committedTxid, null);
  t.is(w.committedTxid, 10);
  t.is(w.onReply("jn1", b.id, OK, 2).committedTxid, 12);
  t.is(w.committedTxid, 12);
  const late = w.onReply("jn2", b.id, OK, 3);
  t.deepEqual(late, { send: [], committedTxid: null, failure: null }, "the third ack of a committed batch changes nothing");
  t.is(w.committedTxid, 12);
});

test("writer core - with 5 nodes the quorum is 3", (t) => {
  const w = writer(N5);
  t.is(w.quorum, 3);
  w.append(payload("a"));
  const { batch, nodes } = onlyBatch(w.tick(0));
  t.deepEqual([...nodes].sort(), N5);
  t.is(w.onReply("jn1", batch.id, OK, 1).committedTxid, null);
  t.is(w.onReply("jn2", batch.id, OK, 1).committedTxid, null);
  t.is(w.onReply("jn5", batch.id, OK, 1).committedTxid, 11);
});

test("writer core - with 5 nodes two refusals are survived, a third fails the writer", (t) => {
  const w = writer(N5);
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  t.is(w.onReply("jn1", b.id, refuse("DISK_ERROR"), 1).failure, null);
  t.is(w.onReply("jn2", b.id, refuse("OUT_OF_SYNC"), 1).failure, null);
  t.false(w.failed);
  const third = w.onReply("jn3", b.id, refuse("TIMEOUT"), 1);
  t.truthy(third.failure);
  t.true(w.failed);
});

test("writer core - the batch in flight goes again after batchResendMs to the nodes in step that have not answered it", (t) => {
  const w = writer(N3, { ...roomy, batchResendMs: 100 });
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.onReply("jn1", b.id, OK, 10);
  t.deepEqual(w.tick(50).send, [], "not before batchResendMs");
  const again = onlyBatch(w.tick(100));
  t.deepEqual(again, { batch: b, nodes: ["jn2", "jn3"], resend: true });
  t.deepEqual(w.tick(150).send, [], "then once per batchResendMs");
  t.is(onlyBatch(w.tick(200)).nodes.length, 2);
  // Both copies reached jn2: its two acks count once.
  t.is(w.onReply("jn2", b.id, OK, 210).committedTxid, 11);
  t.is(w.onReply("jn2", b.id, OK, 211).committedTxid, null);
  t.false(w.failed);
});

test("writer core - a lost copy's timeout after the node acked that batch (or a later one) does not mask it", (t) => {
  const w = writer(N3, { ...roomy, batchResendMs: 100 });
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.onReply("jn1", b.id, OK, 10);
  w.onReply("jn2", b.id, OK, 110);
  w.append(payload("b"));
  const next = onlyBatch(w.tick(120)).batch;
  w.onReply("jn1", next.id, OK, 130);
  w.onReply("jn2", next.id, OK, 130);
  t.is(w.onReply("jn2", b.id, refuse("TIMEOUT"), 1000).failure, null);
  t.true(w.isInSync("jn2"), "jn2 holds the batch whose first copy timed out");
  w.onReply("jn3", next.id, refuse("TIMEOUT"), 1000);
  t.false(w.isInSync("jn3"), "a node that never acked it drops out as before");
});

test("writer core - a large batch is sent again only after batchResendMs plus its size's share of the quorum timeout", (t) => {
  const w = writer(N3, { ...roomy, batchBytesMax: 64 << 20, batchResendMs: 100, quorumTimeoutMsPerMib: 500 });
  w.append(encodeEffects([[Buffer.from("SET"), Buffer.from("big"), Buffer.alloc(4 << 20)]]));
  const b = onlyBatch(w.tick(0)).batch;
  const share = Math.floor((500 * b.records.length) / (1024 * 1024));
  t.true(share >= 2000, "4 MiB: two seconds more");
  t.deepEqual(w.tick(100 + share - 1).send, [], "still crossing the bus, or being fsynced");
  t.is(onlyBatch(w.tick(100 + share)).nodes.length, 3);
});

test("writer core - a resend due in the millisecond of the flush (a reconnect): both copies acked count once, no assertion", (t) => {
  const w = writer(N3, { ...roomy, batchResendMs: 100 });
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.resendDue();
  t.is(onlyBatch(w.tick(0)).nodes.length, 3);
  w.onReply("jn1", b.id, OK, 0);
  t.notThrows(() => w.onReply("jn1", b.id, OK, 0));
  t.is(w.onReply("jn2", b.id, OK, 1).committedTxid, 11);
});

test("writer core - after its own link failed over, copies go every batchResendAfterReconnectMs for batchResendMs, then as before", (t) => {
  const w = writer(N3, { ...roomy, quorumTimeoutMs: 5000, batchResendMs: 500, batchResendAfterReconnectMs: 100 });
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.resendDue(1000);
  t.is(onlyBatch(w.tick(1000)).nodes.length, 3, "at once");
  t.deepEqual(w.tick(1099).send, []);
  t.is(onlyBatch(w.tick(1100)).nodes.length, 3, "the nodes were not back yet: again 100 ms later");
  w.onReply("jn1", b.id, OK, 1150);
  t.deepEqual(onlyBatch(w.tick(1200)).nodes, ["jn2", "jn3"]);
  t.is(onlyBatch(w.tick(1400)).nodes.length, 2);
  // batchResendMs after the reconnect: back to batchResendMs.
  t.deepEqual(w.tick(1500).send, [], "1,500: 100 ms after the last copy, but the fast window has ended");
  t.deepEqual(w.tick(1899).send, []);
  t.is(onlyBatch(w.tick(1900)).nodes.length, 2);
  t.false(w.failed);
});

test("writer core - right after its own link failed over, a node's transport failure (no responders) does not mask it", (t) => {
  const w = writer(N3, { ...roomy, quorumTimeoutMs: 5000, batchResendMs: 500, batchResendAfterReconnectMs: 100 });
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.resendDue(1000);
  onlyBatch(w.tick(1000));
  t.is(w.onReply("jn2", b.id, refuse("TIMEOUT"), 1005).failure, null);
  t.is(w.onReply("jn3", b.id, refuse("TIMEOUT"), 1005).failure, null, "two of three unreachable for a moment: the writer stands");
  t.true(w.isInSync("jn2") && w.isInSync("jn3"));
  t.deepEqual(onlyBatch(w.tick(1100)).nodes, ["jn1", "jn2", "jn3"]);
  t.is(w.onReply("jn2", b.id, OK, 1110).committedTxid, null);
  t.is(w.onReply("jn3", b.id, OK, 1111).committedTxid, 11);
  // Past the window, a transport failure masks as before.
  w.append(payload("b"));
  const next = onlyBatch(w.tick(1600)).batch;
  w.onReply("jn3", next.id, refuse("TIMEOUT"), 1610);
  t.false(w.isInSync("jn3"));
  t.false(w.failed);
});

test("writer core - without batchResendMs nothing is sent again", (t) => {
  const w = writer();
  w.append(payload("a"));
  onlyBatch(w.tick(0));
  t.deepEqual(w.tick(900).send, []);
});

test("writer core - a duplicate ack from the same node is a bug: AssertionError", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.onReply("jn1", b.id, OK, 1);
  t.throws(() => w.onReply("jn1", b.id, OK, 2), { instanceOf: AssertionError });
});

test("writer core - an ack of an old or unknown batch id is ignored", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b1 = onlyBatch(w.tick(0)).batch;
  w.append(payload("b"));
  w.onReply("jn1", b1.id, OK, 1);
  const b2 = onlyBatch(w.onReply("jn2", b1.id, OK, 1)).batch;
  const none = { send: [], committedTxid: null, failure: null };
  t.deepEqual(w.onReply("jn3", b1.id, OK, 2), none, "old batch");
  t.deepEqual(w.onReply("jn3", 999, OK, 2), none, "never sent");
  t.is(w.committedTxid, 11);
  // jn3's late ack of b1 did not count for b2.
  t.is(w.onReply("jn1", b2.id, OK, 3).committedTxid, null);
  t.is(w.onReply("jn3", b2.id, OK, 3).committedTxid, 12);
});

test("writer core - a node that refuses (OUT_OF_SYNC) drops out; the writer keeps writing with the others", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b1 = onlyBatch(w.tick(0)).batch;
  const r = w.onReply("jn3", b1.id, refuse("OUT_OF_SYNC", "batch starts at 11, log ends at 7"), 1);
  t.is(r.failure, null);
  t.false(w.failed);
  t.deepEqual(w.inSyncNodes.sort(), ["jn1", "jn2"]);
  w.append(payload("b"));
  w.onReply("jn1", b1.id, OK, 2);
  const after = w.onReply("jn2", b1.id, OK, 2);
  t.is(after.committedTxid, 11);
  const { batch: b2, nodes } = onlyBatch(after);
  t.deepEqual([...nodes].sort(), ["jn1", "jn2"], "the next batch skips the node that fell out");
  w.onReply("jn1", b2.id, OK, 3);
  t.is(w.onReply("jn2", b2.id, OK, 3).committedTxid, 12);
});

test("writer core - two nodes of three refusing fail the writer, with their reasons", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  t.is(w.onReply("jn1", b.id, refuse("DISK_ERROR", "fsync failed"), 1).failure, null);
  const r = w.onReply("jn2", b.id, refuse("OUT_OF_SYNC", "segment 11 is not open here"), 1);
  t.truthy(r.failure);
  t.regex(r.failure ?? "", /jn1 DISK_ERROR: fsync failed/);
  t.regex(r.failure ?? "", /jn2 OUT_OF_SYNC: segment 11 is not open here/);
  t.true(w.failed);
  t.is(r.committedTxid, null);
  t.is(w.committedTxid, 10);
  // A failed writer sends nothing more, ignores acks and takes no record.
  t.deepEqual(w.tick(2), { send: [], committedTxid: null, failure: null });
  t.deepEqual(w.onReply("jn3", b.id, OK, 3), { send: [], committedTxid: null, failure: null });
  t.is(w.committedTxid, 10);
  t.throws(() => w.append(payload("b")), { instanceOf: AssertionError });
});

test("writer core - EPOCH_FENCED from any single node fails the writer at once", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.onReply("jn1", b.id, OK, 1);
  const r = w.onReply("jn3", b.id, refuse("EPOCH_FENCED", "epoch 2 < promised epoch 3"), 1);
  t.regex(r.failure ?? "", /jn3/);
  t.regex(r.failure ?? "", /epoch 2 < promised epoch 3/);
  t.true(w.failed);
  t.is(w.onReply("jn2", b.id, OK, 2).committedTxid, null, "a majority after the fence no longer commits");
  t.is(w.committedTxid, 10);
});

test("writer core - EPOCH_FENCED on a commit notice fails the writer too", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.onReply("jn1", b.id, OK, 1);
  const out = w.onReply("jn2", b.id, OK, 1);
  const notice = [...out.send, ...w.tick(2, true).send].find((s) => s.batch.count === 0);
  if (notice === undefined) return t.fail("no commit notice");
  t.truthy(w.onReply("jn3", notice.batch.id, refuse("EPOCH_FENCED", "fenced"), 3).failure);
  t.true(w.failed);
});

test("writer core - a batch without a majority within quorumTimeoutMs fails the writer; the reason counts the acks", (t) => {
  const w = writer(N3, { ...roomy, quorumTimeoutMs: 1000 });
  w.append(payload("a"));
  const b = onlyBatch(w.tick(100)).batch;
  w.onReply("jn2", b.id, OK, 200);
  t.is(w.tick(600).failure, null, "within the timeout");
  t.false(w.failed);
  const r = w.tick(1101 + 100);
  t.truthy(r.failure);
  t.regex(r.failure ?? "", /1 of 2 acks/);
  t.regex(r.failure ?? "", /1000 ms/);
  t.true(w.failed);
  t.is(w.committedTxid, 10);
});

test("writer core - no timeout while idle: only an in-flight batch has a deadline", (t) => {
  const w = writer(N3, { ...roomy, quorumTimeoutMs: 10 });
  t.is(w.tick(0).failure, null);
  t.is(w.tick(1_000_000).failure, null);
  w.append(payload("a"));
  const b = onlyBatch(w.tick(2_000_000)).batch;
  w.onReply("jn1", b.id, OK, 2_000_001);
  w.onReply("jn2", b.id, OK, 2_000_002);
  for (const s of w.tick(2_000_003, true).send) t.is(s.batch.count, 0);
  t.is(w.tick(9_000_000).failure, null, "a committed batch has no deadline any more");
  t.false(w.failed);
});

test("writer core - full only once a batch is in flight and the filling buffer reached batchBytesMax", (t) => {
  const recordBytes = 24 + payload("k0").length;
  const w = writer(N3, { ...roomy, batchBytesMax: recordBytes * 3 });
  for (let i = 0; i < 2; i++) w.append(payload(`k${i}`));
  const b = onlyBatch(w.tick(0)).batch;
  t.false(w.full);
  w.append(payload("k2"));
  w.append(payload("k3"));
  t.false(w.full, "2 of 3 records' worth of bytes");
  w.append(payload("k4"));
  t.true(w.full);
  t.is(w.bufferedBytes, recordBytes * 5);
  w.onReply("jn1", b.id, OK, 1);
  const next = w.onReply("jn2", b.id, OK, 1);
  t.is(onlyBatch(next).batch.count, 3);
  t.false(w.full, "the filling buffer went out; a fresh one is empty");
});

test("writer core - a batch holds at most batchBytesMax bytes: records that came meanwhile go out in several batches (issue #10 class 5)", (t) => {
  const recordBytes = 24 + payload("k0").length;
  const w = writer(N3, { ...roomy, batchBytesMax: recordBytes * 3 });
  // Eight 250 KiB writes while one batch is in flight made one 2 MB batch, over nats-server's max_payload.
  for (let i = 0; i < 8; i++) w.append(payload(`k${i}`));
  const batches: Batch[] = [];
  let out = w.tick(0);
  while (out.send.length > 0) {
    const b = onlyBatch(out).batch;
    batches.push(b);
    t.true(b.records.length <= recordBytes * 3, `batch ${b.id} holds ${b.records.length} bytes`);
    w.onReply("jn1", b.id, OK, 1);
    out = w.onReply("jn2", b.id, OK, 1);
  }
  t.deepEqual(
    batches.map((b) => [b.firstTxid, b.count]),
    [
      [11, 3],
      [14, 3],
      [17, 2],
    ],
  );
  t.is(w.committedTxid, 18);
  t.true(w.drained);
});

test("writer core - a record larger than batchBytesMax travels alone, between batches of the records around it", (t) => {
  const w = writer(N3, { ...roomy, batchBytesMax: 1000 });
  const big = encodeEffects([[Buffer.from("SET"), Buffer.from("big"), Buffer.alloc(5000, 1)]]);
  w.append(payload("a"));
  w.append(big);
  w.append(payload("b"));
  const counts: number[] = [];
  let out = w.tick(0);
  while (out.send.length > 0) {
    const b = onlyBatch(out).batch;
    counts.push(b.count);
    w.onReply("jn1", b.id, OK, 1);
    out = w.onReply("jn3", b.id, OK, 1);
  }
  t.deepEqual(counts, [1, 1, 1]);
  t.is(w.committedTxid, 13);
});

test("writer core - a batch holds at most batchRecordsMax records", (t) => {
  const w = writer(N3, { ...roomy, batchRecordsMax: 2 });
  for (const k of ["a", "b", "c", "d", "e"]) w.append(payload(k));
  t.like(onlyBatch(w.tick(0)).batch, { firstTxid: 11, count: 2 });
  t.is(w.rejoinTxid, 10, "a node rejoins before the batch in flight");
});

test("writer core - full once a batch is in flight and the filling buffer reached batchRecordsMax", (t) => {
  const w = writer(N3, { ...roomy, batchRecordsMax: 2 });
  w.append(payload("a"));
  w.tick(0);
  w.append(payload("b"));
  t.false(w.full);
  w.append(payload("c"));
  t.true(w.full);
});

test("writer core - after a commit with nothing to flush, one count-0 commit notice carries committedTxid", (t) => {
  const w = writer();
  w.append(payload("a"));
  w.append(payload("b"));
  const b = onlyBatch(w.tick(0)).batch;
  w.onReply("jn1", b.id, OK, 1);
  const committed = w.onReply("jn2", b.id, OK, 1);
  t.is(committed.committedTxid, 12);
  // Not with the ack nor with a flush tick (under load the next batch carries it), but on the idle tick, once.
  t.deepEqual([...committed.send, ...w.tick(2).send], []);
  const sends = [...w.tick(3, true).send, ...w.tick(4, true).send];
  t.is(sends.length, 1);
  const { batch, nodes } = sends[0];
  t.like(batch, { count: 0, committedTxid: 12, segmentTxid: 11, firstTxid: 13 });
  t.is(batch.records.length, 0);
  t.deepEqual([...nodes].sort(), N3);
  // Acks of the notice are harmless; the next record goes out as a normal batch carrying the commit index.
  t.deepEqual(w.onReply("jn1", batch.id, OK, 4), { send: [], committedTxid: null, failure: null });
  w.append(payload("c"));
  t.like(onlyBatch(w.tick(5)).batch, { firstTxid: 13, count: 1, committedTxid: 12 });
});

test("writer core - no commit notice when records are waiting: the next batch carries the commit index", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b = onlyBatch(w.tick(0)).batch;
  w.append(payload("b"));
  w.onReply("jn1", b.id, OK, 1);
  const out = w.onReply("jn2", b.id, OK, 1);
  t.like(onlyBatch(out).batch, { firstTxid: 12, count: 1, committedTxid: 11 });
  t.deepEqual(w.tick(2).send, []);
});

test("writer core - a writer cannot start without a majority in step", (t) => {
  t.throws(() => writer(N3, roomy, 2, 11, ["jn1"]), { instanceOf: AssertionError });
  t.notThrows(() => writer(N3, roomy, 2, 11, ["jn1", "jn3"]));
});

test("writer core - a node caught up to rejoinTxid counts again, starting with the batch in flight", (t) => {
  const w = writer();
  w.append(payload("a"));
  const b1 = onlyBatch(w.tick(0)).batch;
  w.onReply("jn3", b1.id, refuse("OUT_OF_SYNC", "behind"), 1);
  t.deepEqual(w.inSyncNodes.sort(), ["jn1", "jn2"]);
  t.is(w.rejoinTxid, b1.firstTxid - 1, "the in-flight batch is what the node must take next");
  t.throws(() => w.rejoin("jn3", b1.firstTxid), { instanceOf: AssertionError });
  const out = w.rejoin("jn3", b1.firstTxid - 1);
  t.deepEqual(out.send.map((s) => [s.batch.id, s.nodes]), [[b1.id, ["jn3"]]]);
  w.onReply("jn1", b1.id, OK, 2);
  t.is(w.onReply("jn3", b1.id, OK, 3).committedTxid, b1.firstTxid, "its ack makes the majority");
  t.throws(() => w.rejoin("jn3", w.rejoinTxid), { instanceOf: AssertionError }, "a node in step cannot rejoin");
});

test("writer core - a new writer tells the nodes what recovery committed on its first idle tick", (t) => {
  const w = writer();
  t.deepEqual(w.tick(0).send, [], "not on a flush tick");
  const sends = w.tick(1, true).send;
  t.is(sends.length, 1);
  t.like(sends[0].batch, { count: 0, committedTxid: 10, firstTxid: 11 });
  t.deepEqual(w.tick(2, true).send, [], "once");
});

// ---- what the segment roll asks of the writer ----

test("writer core - segmentRecords and segmentBytes count every record journaled in this segment", (t) => {
  const w = writer();
  t.is(w.segmentRecords, 0);
  t.is(w.segmentBytes, 0);
  let bytes = 0;
  for (const k of ["a", "bb", "ccc"]) w.append(payload(k));
  const first = onlyBatch(w.tick(0)).batch;
  bytes += first.records.length;
  t.is(w.segmentRecords, 3, "buffered and in flight count too");
  t.is(w.segmentBytes, bytes, "the bytes of the records as encoded for the journal");
  w.append(payload("dddd"));
  w.onReply("jn1", first.id, OK, 1);
  const second = onlyBatch(w.onReply("jn2", first.id, OK, 2)).batch;
  bytes += second.records.length;
  t.is(w.segmentRecords, 4);
  t.is(w.segmentBytes, bytes);
  // A writer of the next segment (after a roll) starts from zero.
  const next = writer(N3, roomy, 2, w.lastTxid + 1);
  t.is(next.segmentRecords, 0);
  t.is(next.segmentBytes, 0);
});

test("writer core - drained only when nothing is buffered or in flight and everything journaled is committed", (t) => {
  const w = writer();
  t.true(w.drained, "a new segment: everything before it is committed");
  w.append(payload("a"));
  t.false(w.drained, "buffered");
  const b = onlyBatch(w.tick(0)).batch;
  t.false(w.drained, "in flight");
  w.onReply("jn1", b.id, OK, 1);
  t.false(w.drained, "one ack of three");
  w.append(payload("b"));
  const next = onlyBatch(w.onReply("jn2", b.id, OK, 2)).batch;
  t.is(w.committedTxid, 11);
  t.false(w.drained, "the next batch went out on the commit");
  w.onReply("jn1", next.id, OK, 3);
  w.onReply("jn3", next.id, OK, 3);
  t.is(w.committedTxid, 12);
  t.true(w.drained);
  t.deepEqual(w.tick(4).send, [], "drained: no batch to send");
});

test("writer core - a failed batch leaves the writer not drained", (t) => {
  const w = writer(N3, { ...roomy, quorumTimeoutMs: 10 });
  w.append(payload("a"));
  onlyBatch(w.tick(0));
  t.not(w.tick(100).failure, null);
  t.false(w.drained, "its record was never committed");
});

test("writer core - a large batch gets quorumTimeoutMs plus quorumTimeoutMsPerMib for its size before it fails (issue #10 class 5)", (t) => {
  const w = writer(N3, { ...roomy, batchBytesMax: 64 << 20, quorumTimeoutMsPerMib: 500 });
  w.append(encodeEffects([[Buffer.from("SET"), Buffer.from("k"), Buffer.alloc(8 << 20)]]));
  const b = onlyBatch(w.tick(0)).batch;
  t.is(w.batchTimeoutMs(8 << 20), 1000 + 4000);
  t.is(w.tick(4000).failure, null, "an 8 MiB batch is not late after quorumTimeoutMs");
  w.onReply("jn1", b.id, OK, 4500);
  t.regex(w.tick(5100).failure ?? "", /1 of 2 acks after 5001 ms/);
});

test("writer core - each node's acked txid: the last txid of its newest acked batch, a late ack of the committed batch too", (t) => {
  const w = writer();
  t.is(w.ackedTxidOf("jn1"), undefined, "nothing acked yet");
  for (const k of ["a", "b"]) w.append(payload(k));
  const first = onlyBatch(w.tick(0)).batch;
  w.onReply("jn1", first.id, OK, 1);
  t.is(w.ackedTxidOf("jn1"), 12);
  w.append(payload("c"));
  const second = onlyBatch(w.onReply("jn2", first.id, OK, 2)).batch;
  t.is(w.committedTxid, 12);
  w.onReply("jn1", second.id, OK, 3);
  t.is(w.ackedTxidOf("jn1"), 13);
  t.is(w.ackedTxidOf("jn3"), undefined);
  w.onReply("jn3", first.id, OK, 4);
  t.is(w.ackedTxidOf("jn3"), 12, "a late ack of the batch that committed");
});

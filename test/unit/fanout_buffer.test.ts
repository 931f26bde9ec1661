import test from "ava";
import { FANOUT_RECORD_OVERHEAD_BYTES, FanoutBuffer, type FannedBatch } from "../../src/replica/fanout_buffer.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function batch(epoch: number, txids: number[], committedTxid: number, recordEpoch = epoch): FannedBatch {
  const records = Buffer.concat(txids.map((txid) => encodeRecord(txid, recordEpoch, encodeEffects([[Buffer.from("SET"), Buffer.from(`k${String(txid).padStart(6, "0")}`), Buffer.from("v")]]))));
  return { epoch, firstTxid: txids[0] ?? 0, count: txids.length, records, committedTxid };
}

const txids = (b: FanoutBuffer, from: number, max = 1000): number[] => b.take(from, max).map((r) => r.txid);

test("fan-out buffer - hands out only what the same epoch's commit index covers, contiguous from the txid asked", (t) => {
  const b = new FanoutBuffer(1 << 20);
  t.is(b.onBatch(batch(3, range(10, 12), 9)), "kept");
  t.deepEqual(txids(b, 10), [], "nothing of it committed yet");
  b.onCommit(3, 11);
  t.deepEqual(txids(b, 10), [10, 11]);
  t.deepEqual(txids(b, 10, 1), [10], "at most recordsMax");
  // The next batch carries the commit index of the one before.
  t.is(b.onBatch(batch(3, range(13, 14), 12)), "kept");
  t.deepEqual(txids(b, 12), [12], "records below 12 dropped, 13 not committed");
  t.is(b.stats.records, 3);
  t.deepEqual(txids(b, 11), [], "a txid already dropped is not held any more: the replica reads it");
});

test("fan-out buffer - a gap (a lost message) is never bridged: the txids before it come from a journal node", (t) => {
  const b = new FanoutBuffer(1 << 20);
  b.onBatch(batch(1, range(1, 2), 0));
  b.onBatch(batch(1, range(5, 6), 6)); // 3..4 lost
  t.deepEqual(txids(b, 3), [], "3 was never heard");
  t.deepEqual(txids(b, 1), [], "the buffer started again at the gap");
  t.deepEqual(txids(b, 5), [5, 6]);
  // A replica that applied 1..2 and asks for 3 gets nothing: it reads 3..4, then takes 5.. from here.
  t.deepEqual(txids(b, 3), []);
});

test("fan-out buffer - a commit index counts only for its own epoch's records; records of another epoch replace those held", (t) => {
  const b = new FanoutBuffer(1 << 20);
  b.onBatch(batch(1, range(1, 3), 0));
  // Epoch 2's master recovered: its commit index covers 3, but epoch 1's record 3 may not be what it recovered.
  b.onCommit(2, 3);
  t.deepEqual(txids(b, 1), []);
  // Epoch 1's own commit index: committed for good (a majority acked them; every recovery keeps them).
  b.onCommit(1, 2);
  t.deepEqual(txids(b, 1), [1, 2]);
  b.onBatch(batch(2, range(4, 5), 3));
  t.is(b.stats.epoch, 2);
  t.deepEqual(txids(b, 3), [], "epoch 1's record 3 went with its epoch");
  t.deepEqual(txids(b, 4), [], "epoch 2 committed only up to 3");
  b.onCommit(1, 5);
  t.deepEqual(txids(b, 4), [], "the old master's commit index is not epoch 2's");
  b.onCommit(2, 5);
  t.deepEqual(txids(b, 4), [4, 5]);
  // A newer epoch heard first by its batch: the same.
  b.onBatch(batch(3, range(6, 6), 5));
  t.deepEqual(txids(b, 4), []);
  t.is(b.stats.epoch, 3);
  // The old master's late batch: followed (its records are its own epoch's, committed only by its own index).
  t.is(b.onBatch(batch(2, range(6, 7), 5)), "kept");
  t.is(b.stats.epoch, 2);
  t.deepEqual(txids(b, 6), [], "epoch 2 committed up to 5 only");
});

test("fan-out buffer - records failing the checks are not kept: checksum, count, txids, each record's epoch", (t) => {
  const b = new FanoutBuffer(1 << 20);
  const damaged = batch(1, range(1, 3), 3);
  damaged.records[damaged.records.length - 2] ^= 0xff;
  t.is(b.onBatch(damaged), "bad");
  t.is(b.onBatch({ ...batch(1, range(1, 3), 3), count: 2 }), "bad", "count");
  t.is(b.onBatch({ ...batch(1, [1, 2, 4], 3) }), "bad", "txids not contiguous");
  t.is(b.onBatch({ ...batch(1, range(1, 3), 3), firstTxid: 2 }), "bad", "not from firstTxid");
  t.is(b.onBatch(batch(2, range(1, 3), 3, 1)), "bad", "a record of another epoch in epoch 2's batch");
  t.is(b.stats.records, 0);
  t.deepEqual(txids(b, 1), []);
});

test("fan-out buffer - a resent batch is kept once; a commit notice alone (no records) moves the commit index", (t) => {
  const b = new FanoutBuffer(1 << 20);
  b.onBatch(batch(1, range(1, 3), 0));
  b.onBatch(batch(1, range(1, 3), 0));
  t.is(b.stats.records, 3);
  t.is(b.onBatch(batch(1, [], 3)), "kept");
  t.deepEqual(txids(b, 1), [1, 2, 3]);
});

test("fan-out buffer - bounded in bytes: the oldest records go first, and their txids are read from a journal node", (t) => {
  const one = batch(1, [1], 0).records.length + FANOUT_RECORD_OVERHEAD_BYTES;
  const b = new FanoutBuffer(one * 10);
  for (let i = 0; i < 10; i++) b.onBatch(batch(1, range(1 + i * 5, 5 + i * 5), 0));
  t.true(b.stats.bytes <= one * 10);
  t.is(b.stats.records, 10);
  b.onCommit(1, 50);
  t.deepEqual(txids(b, 1), [], "dropped by the bound");
  t.deepEqual(txids(b, 41), range(41, 50));
  // Many records through a small bound: memory stays bounded (the dropped slots are compacted away).
  const small = new FanoutBuffer(one * 4);
  for (let i = 1; i <= 5000; i++) small.onBatch(batch(1, [i], i - 1));
  t.is(small.stats.records, 4);
  small.onCommit(1, 5000);
  t.deepEqual(txids(small, 4997), [4997, 4998, 4999, 5000]);
});

// Review s24 (failed before the buffer followed the last batch's epoch): one stray or forged message on qjm.<cluster>.batch or .committed with a huge epoch
// (without auth anyone may publish there; with auth any data node, not only the writer) makes every later batch of
// the real writer "stale" — silently, and until the replica restarts: the fan-out path is off for good. A commit index
// of epoch E covers only E's records whatever newer epoch exists (a commit is permanent), so the buffer follows the
// epoch of the last batch that carries records instead of the highest epoch ever named.
test("fan-out buffer - review s24: a stray epoch far ahead does not turn the fan-out off for good", (t) => {
  const b = new FanoutBuffer(1 << 20);
  t.is(b.onBatch(batch(3, range(1, 2), 0)), "kept");
  b.onCommit(0xffffffff, 1); // a forged or stray commit hint (u32 max epoch), never followed by a writer of that epoch
  t.is(b.onBatch(batch(3, range(3, 4), 4)), "kept", "the serving writer's next batch");
  t.deepEqual(txids(b, 3), [3, 4]);
});

/** ReplicaFeed: what both replica drivers (replica.ts, the simulator's) do with commit hints and batch fan-outs. */
import test from "ava";
import { encode } from "../../src/protocol/codec.js";
import { ErrorCode } from "../../src/protocol/errors.js";
import type { BatchFanout } from "../../src/protocol/messages.js";
import { FanoutBuffer } from "../../src/replica/fanout_buffer.js";
import { ReplicaCore } from "../../src/replica/replica_core.js";
import { ReplicaFeed } from "../../src/replica/replica_feed.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";

function fanout(epoch: number, firstTxid: number, count: number, committedTxid: number, recordEpoch = epoch): Uint8Array {
  const records = Buffer.concat(Array.from({ length: count }, (_, i) => encodeRecord(firstTxid + i, recordEpoch, encodeEffects([[Buffer.from("SET"), Buffer.from("k"), Buffer.from(String(i))]]))));
  const b: BatchFanout = { type: "journal", epoch, segmentTxid: 1, firstTxid, count, records, committedTxid, to: ["jn1", "jn2"], re: "t.1" };
  return encode(b);
}

const hint = (epoch: number, committedTxid: number): Uint8Array => encode({ epoch, segmentTxid: 1, committedTxid });

test("replica feed - a fan-out's records are applied once a commit index of their epoch covers them, and counted", (t) => {
  const feed = new ReplicaFeed(new FanoutBuffer(1 << 20));
  const core = new ReplicaCore(["jn1", "jn2", "jn3"], 0);
  t.deepEqual(feed.fanout(core, fanout(2, 1, 3, 0)), { wake: false, ignored: null });
  t.is(feed.take(core, 10), null, "nothing committed yet: read");
  t.deepEqual(feed.hint(core, hint(1, 3)), { wake: true, ignored: null }, "another epoch's index wakes a read…");
  t.is(feed.take(core, 10), null, "…but commits none of epoch 2's records");
  t.deepEqual(feed.hint(core, hint(2, 2)), { wake: false, ignored: null }, "3 was heard of already");
  const taken = feed.take(core, 10)!;
  t.is(taken.committedTxid, 2);
  t.is(taken.outcome.kind, "apply");
  t.deepEqual(taken.outcome.kind === "apply" ? taken.outcome.records.map((r) => r.txid) : [], [1, 2]);
  core.onApplied(1);
  core.onApplied(2);
  // The next batch carries the commit index of the one before: it wakes the replica for 3.
  t.deepEqual(feed.fanout(core, fanout(2, 4, 1, 3)), { wake: false, ignored: null }, "3 was heard of (epoch 1's hint) and not forgotten");
  t.deepEqual(feed.take(core, 10)?.committedTxid, 3);
  t.deepEqual(feed.sources, { fanout: 3, read: 0, badFanouts: 0 });
});

test("replica feed - bad input is ignored with its reason, counted, and never applied", (t) => {
  const feed = new ReplicaFeed(new FanoutBuffer(1 << 20));
  const core = new ReplicaCore(["jn1"], 0);
  const garbage = Uint8Array.from([0xc1, 0x00]);
  t.is(feed.hint(core, garbage).ignored?.code, ErrorCode.NOT_MSGPACK);
  t.is(feed.hint(core, encode({ epoch: 0, segmentTxid: 1, committedTxid: 5 })).ignored?.code, ErrorCode.BAD_REQUEST);
  t.truthy(feed.fanout(core, garbage).ignored);
  t.regex(feed.fanout(core, fanout(3, 1, 2, 2, 4)).ignored!.message, /fail the checks/, "records of another epoch than the batch's");
  t.is(feed.sources.badFanouts, 2);
  t.is(feed.take(core, 10), null);
});

test("replica feed - with the fan-out off, hints still wake reads and reads are counted", (t) => {
  const feed = new ReplicaFeed(null);
  const core = new ReplicaCore(["jn1"], 0);
  t.truthy(feed.fanout(core, fanout(1, 1, 1, 1)).ignored);
  t.is(feed.sources.badFanouts, 0, "not a bad fan-out: none is listened to");
  t.deepEqual(feed.hint(core, hint(1, 1)), { wake: true, ignored: null });
  t.is(feed.take(core, 10), null);
  const outcome = feed.read(core.onRead({ ok: true, records: encodeRecord(1, 1, encodeEffects([[Buffer.from("DEL"), Buffer.from("k")]])), count: 1, committedTxid: 1 }));
  t.is(outcome.kind, "apply");
  t.deepEqual(feed.sources, { fanout: 0, read: 1, badFanouts: 0 });
});

/** When the writer rolls its segment (HDFS rollEdits): past a size, a record count or an age, never while empty. */
import test from "ava";
import { RollCore, rollDue, type RollLimits } from "../../src/master/segment_roll.js";
import { QjmError } from "../../src/protocol/errors.js";
import type { JournalReply, JournalState } from "../../src/protocol/messages.js";

const limits: RollLimits = { segmentMaxBytes: 1000, segmentMaxRecords: 100, segmentMaxAgeMs: 60_000 };

test("segment roll - a segment under every limit is not rolled", (t) => {
  t.is(rollDue({ bytes: 999, records: 99, ageMs: 59_999 }, limits), null);
  t.is(rollDue({ bytes: 1, records: 1, ageMs: 0 }, limits), null);
});

test("segment roll - a segment at or past its size is rolled, and the reason says so", (t) => {
  t.is(rollDue({ bytes: 1000, records: 5, ageMs: 0 }, limits), "1000 bytes");
  t.is(rollDue({ bytes: 5000, records: 5, ageMs: 0 }, limits), "5000 bytes");
});

test("segment roll - a segment at or past its record count is rolled", (t) => {
  t.is(rollDue({ bytes: 10, records: 100, ageMs: 0 }, limits), "100 records");
  t.is(rollDue({ bytes: 10, records: 250, ageMs: 0 }, limits), "250 records");
});

test("segment roll - a segment open at least its age is rolled", (t) => {
  t.is(rollDue({ bytes: 10, records: 1, ageMs: 60_000 }, limits), "open 60000 ms");
  t.is(rollDue({ bytes: 10, records: 1, ageMs: 3_600_000 }, limits), "open 3600000 ms");
});

test("segment roll - an empty segment is never rolled, whatever its age", (t) => {
  t.is(rollDue({ bytes: 0, records: 0, ageMs: 3_600_000 }, limits), null);
  // Even with limits at their smallest: rolling an empty segment would only make empty files.
  t.is(rollDue({ bytes: 0, records: 0, ageMs: 1 }, { segmentMaxBytes: 0, segmentMaxRecords: 0, segmentMaxAgeMs: 0 }), null);
});

test("segment roll - with several limits passed, one reason is given", (t) => {
  const reason = rollDue({ bytes: 2000, records: 200, ageMs: 120_000 }, limits);
  t.true(reason === "2000 bytes" || reason === "200 records" || reason === "open 120000 ms", `${reason}`);
});

/** A node's state after startSegment: its log ends at `lastTxid`. */
function started(nodeId: string, lastTxid: number): JournalReply {
  const state: JournalState = { nodeId, promisedEpoch: 4, writerEpoch: 4, firstTxid: 1, lastTxid, committedTxid: lastTxid, lastSegment: null, fault: null, clusterId: "c", restoring: false };
  return { ok: true, state };
}
const writer = { epoch: 4, segmentTxid: 101, lastTxid: 200, inSyncNodes: ["jn1", "jn2", "jn3"] };
const failed = (message: string): JournalReply => ({ ok: false, code: "DISK_ERROR", message });

test("segment roll - the roll core finalizes on the nodes in step, then opens the next segment on those that finalized", (t) => {
  const roll = new RollCore(writer, 3, "c", 500);
  const first = roll.start();
  t.deepEqual(
    first.send.map((r) => [r.node, r.req]),
    writer.inSyncNodes.map((n) => [n, { type: "finalize", epoch: 4, startTxid: 101, endTxid: 200 }]),
  );
  t.deepEqual(roll.onReply("jn1", started("jn1", 200)), { send: [], open: null });
  t.deepEqual(roll.onReply("jn1", failed("duplicate")), { send: [], open: null }, "a duplicate answer is ignored");
  t.deepEqual(roll.onReply("jn2", failed("disk full")).send, []);
  const next = roll.onReply("jn3", started("jn3", 200));
  t.deepEqual(
    next.send.map((r) => [r.node, r.req]),
    ["jn1", "jn3"].map((n) => [n, { type: "startSegment", epoch: 4, txid: 201, clusterId: "c" }]),
    "only the nodes that finalized start the next segment",
  );
  t.deepEqual(roll.onReply("jn3", started("jn3", 200)), { send: [], open: null });
  t.deepEqual(roll.onReply("jn1", started("jn1", 200)), { send: [], open: ["jn3", "jn1"] });
});

test("segment roll - the roll core throws NO_QUORUM when fewer than a majority finalize, or open the next segment", (t) => {
  const a = new RollCore(writer, 3, "c", 500);
  a.start();
  a.onReply("jn1", started("jn1", 200));
  a.onReply("jn2", failed("x"));
  t.throws(() => a.onReply("jn3", failed("y")), { instanceOf: QjmError, message: /finalize of segment 101-200 on 1 of 2 nodes/ });
  const b = new RollCore(writer, 3, "c", 500);
  b.start();
  for (const n of writer.inSyncNodes) b.onReply(n, started(n, 200));
  b.onReply("jn1", started("jn1", 200));
  // A node whose log does not end where the segment did is not in step for the next one.
  b.onReply("jn2", started("jn2", 150));
  t.throws(() => b.onReply("jn3", failed("z")), { instanceOf: QjmError, message: /segment 201 opened on 1 of 2 nodes/ });
});

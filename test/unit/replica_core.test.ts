import test from "ava";
import { ReplicaCore } from "../../src/replica/replica_core.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";
import { AssertionError } from "../../src/util/assert.js";

const NODES = ["jn1", "jn2", "jn3"];

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

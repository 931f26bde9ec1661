/**
 * The failover bench's pure bookkeeping (bench/failover_ledger.ts): per-write outcome counts, the loss check, fault →
 * first acked write, and the seeded fault schedule.
 */
import test from "ava";
import { DEFAULT_FAILOVER_CLIENTS, failoverSettings } from "../../bench/failover.js";
import { FaultClock, Ledger, faultDelays, lostWrites, writeKey, writeValue } from "../../bench/failover_ledger.js";
import { qjmOutcome } from "../../bench/qjm_failover.js";
import { ErrorCode, QjmClientError } from "../../src/client/index.js";

test("a write retried many times counts once per outcome it met, and once as acked", (t) => {
  const l = new Ledger();
  const k = writeKey(3, 0);
  l.record(3, k, "failed");
  l.record(3, k, "failed");
  l.record(3, k, "unknown");
  l.record(3, k, "unknown");
  l.record(3, k, "acked");
  l.record(3, writeKey(3, 1), "acked");
  l.record(4, writeKey(4, 0), "unknown");
  t.deepEqual(l.counts(), { acked: 2, failed: 1, unknown: 2, attempts: 7, resent: 0, duplicates: 0 });
  t.deepEqual(l.acked(), [k, writeKey(3, 1)]);
});

test("writes the system's client resent within one call: their attempts, and the dedupe window's answers, are counted", (t) => {
  const l = new Ledger();
  l.record(0, writeKey(0, 0), "acked", 3, true);
  l.record(0, writeKey(0, 1), "acked", 2, false);
  l.record(0, writeKey(0, 2), "unknown", 4);
  l.record(0, writeKey(0, 2), "acked");
  t.deepEqual(l.counts(), { acked: 3, failed: 0, unknown: 1, attempts: 10, resent: 2, duplicates: 1 });
});

test("two clients' failures on interleaved writes are kept apart", (t) => {
  const l = new Ledger();
  l.record(0, writeKey(0, 0), "failed");
  l.record(1, writeKey(1, 0), "failed");
  l.record(0, writeKey(0, 0), "failed");
  l.record(1, writeKey(1, 0), "acked");
  l.record(0, writeKey(0, 0), "acked");
  t.is(l.counts().failed, 2);
});

test("the loss check reports missing keys and keys holding another value, not present ones", (t) => {
  const keys = [writeKey(0, 0), writeKey(0, 1), writeKey(1, 0), writeKey(1, 1)];
  const values = [writeValue(keys[0]), null, writeValue(keys[2]), "v:fo:9:9"];
  t.deepEqual(lostWrites(keys, values), [keys[1], keys[3]]);
  t.deepEqual(lostWrites(keys, keys.map(writeValue)), []);
  t.throws(() => lostWrites(keys, values.slice(1)));
});

test("fault → first ack counts only writes sent at or after the fault", (t) => {
  const c = new FaultClock();
  const f = c.fault(1000);
  c.ack(990, 1005); // sent before the kill, its reply arrived after: not a sign of recovery
  t.is(c.recoveredAfterMs(f), null);
  c.ack(1200, 1800);
  c.ack(1300, 1700); // a later ack does not move the first one
  t.is(c.recoveredAfterMs(f), 800);
  const g = c.fault(5000);
  c.ack(5100, 5400);
  t.is(c.recoveredAfterMs(g), 400);
  t.is(c.recoveredAfterMs(f), 800);
  c.fault(9000);
  t.deepEqual(c.summary(), { p50Ms: 400, maxMs: 800, unrecovered: 1, newCallP50Ms: 400, newCallMaxMs: 800 });
  t.is(c.count(), 3);
});

test("a call in flight at the fault counts only when its client resent it (its first attempt's reply says nothing)", (t) => {
  const c = new FaultClock();
  const f = c.fault(1000);
  c.ack(900, 1002); // one attempt, sent before the kill: already committed
  t.is(c.recoveredAfterMs(f), null);
  c.ack(900, 1700, true); // sent before, resent by the client library (same id) and acked by the new master
  t.is(c.recoveredAfterMs(f), 700);
  c.ack(1600, 1750); // the first call sent after the fault: the stricter reading
  t.deepEqual(c.summary(), { p50Ms: 700, maxMs: 700, unrecovered: 0, newCallP50Ms: 750, newCallMaxMs: 750 });
  const g = c.fault(3000);
  c.ack(2900, 2950, true); // settled before the fault
  t.is(c.recoveredAfterMs(g), null);
});

test("two faults before any ack: one ack after both ends both", (t) => {
  const c = new FaultClock();
  const a = c.fault(100);
  const b = c.fault(200);
  c.ack(150, 160); // after a, before b
  c.ack(250, 300);
  t.is(c.recoveredAfterMs(a), 60);
  t.is(c.recoveredAfterMs(b), 100);
});

test("fault moments are seeded: same seed same schedule, within bounds; bad bounds are refused", (t) => {
  const a = faultDelays(7, 50, 1000, 3000);
  t.deepEqual(a, faultDelays(7, 50, 1000, 3000));
  t.notDeepEqual(a, faultDelays(8, 50, 1000, 3000));
  t.true(a.every((d) => Number.isInteger(d) && d >= 1000 && d <= 3000));
  t.throws(() => faultDelays(1, 3, 500, 100));
  t.throws(() => faultDelays(1, -1, 0, 100));
});

test("a write the client library threw: committed with its reply lost is acked, gave up unknown, refused failed", (t) => {
  const id = { client: "c", seq: 1 };
  t.is(qjmOutcome(new QjmClientError(ErrorCode.REPLY_UNDELIVERABLE, "", false, 1, id)), "acked");
  t.is(qjmOutcome(new QjmClientError(ErrorCode.TIMEOUT, "retried for 5000 ms", true, 9, id)), "unknown");
  t.is(qjmOutcome(new QjmClientError(ErrorCode.NOT_WRITER, "retried for 5000 ms", false, 9, id)), "failed");
  t.is(qjmOutcome(new QjmClientError(ErrorCode.REDIS_ERROR, "WRONGTYPE", false, 1, id)), "failed");
  t.is(qjmOutcome(new QjmClientError("CLOSED", "the client was closed", true, 2, id)), "unknown");
  t.is(qjmOutcome(new Error("not the client's")), "unknown");
});

test("BENCH_FAILOVER_* are validated, with defaults", (t) => {
  t.deepEqual(failoverSettings({}), { clients: DEFAULT_FAILOVER_CLIENTS, kills: 10, partitions: 2, seed: 1 });
  t.deepEqual(failoverSettings({ BENCH_FAILOVER_CLIENTS: "4", BENCH_FAILOVER_KILLS: "0", BENCH_FAILOVER_PARTITIONS: "1", BENCH_FAILOVER_SEED: "9" }), { clients: 4, kills: 0, partitions: 1, seed: 9 });
  t.throws(() => failoverSettings({ BENCH_FAILOVER_CLIENTS: "0" }));
  t.throws(() => failoverSettings({ BENCH_FAILOVER_KILLS: "2.5" }));
  t.throws(() => failoverSettings({ BENCH_FAILOVER_SEED: "x" }));
});

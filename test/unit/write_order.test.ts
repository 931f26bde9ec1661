import test from "ava";
import { WriteOrder, writeKey } from "../../src/master/write_order.js";

const limits = { writeOrderRefusalsMax: 3, writeOrderRefusalMs: 1000 };

test("write order - a write is held behind its refused predecessor until that one runs", (t) => {
  const o = new WriteOrder(limits);
  t.is(o.behind({ client: "a", seq: 2, after: 1 }, null), null, "nothing refused");
  o.refused(writeKey("a", 1), 0);
  t.is(o.behind({ client: "a", seq: 2, after: 1 }, null), 1);
  t.is(o.behind({ client: "b", seq: 2, after: 1 }, null), null, "another client's seq 1");
  t.is(o.behind({ client: "a", seq: 2 }, null), null, "a write that names no predecessor");
  o.accepted({ client: "a", seq: 1 });
  t.is(o.behind({ client: "a", seq: 2, after: 1 }, null), null);
});

test("write order - bounded in count (the oldest refusal goes first) and in age", (t) => {
  const o = new WriteOrder(limits);
  for (let seq = 1; seq <= 4; seq++) o.refused(writeKey("a", seq), seq * 100);
  t.is(o.size, 3);
  t.is(o.behind({ client: "a", seq: 9, after: 1 }, null), null, "the oldest was forgotten");
  t.is(o.behind({ client: "a", seq: 9, after: 2 }, null), 2);
  // Refused again: it is young again.
  o.refused(writeKey("a", 2), 900);
  o.prune(1350);
  t.deepEqual([2, 3, 4].map((s) => o.behind({ client: "a", seq: 9, after: s }, null)), [2, null, 4]);
  o.prune(1850);
  t.is(o.size, 1);
  o.prune(2000);
  t.is(o.size, 0);
});

test("write order - once the refused write's resend is queued, later arrivals pass; what was queued before it is still held", (t) => {
  const o = new WriteOrder(limits);
  o.refused(writeKey("a", 1), 0);
  o.requeued({ client: "a", seq: 1 }, 7);
  t.is(o.behind({ client: "a", seq: 2, after: 1 }, null), null, "arriving now: it queues behind the resend");
  t.is(o.behind({ client: "a", seq: 2, after: 1 }, 8), null, "queued after the resend");
  t.is(o.behind({ client: "a", seq: 2, after: 1 }, 5), 1, "queued before the resend: held");
  o.accepted({ client: "a", seq: 1 });
  t.is(o.behind({ client: "a", seq: 2, after: 1 }, 5), null, "the resend ran");
});

test("write order - answers are remembered lately, bounded in count and age", (t) => {
  const o = new WriteOrder(limits);
  for (let seq = 1; seq <= 4; seq++) o.answered(writeKey("a", seq), seq * 100);
  t.deepEqual([1, 2, 3, 4].map((s) => o.answeredLately(writeKey("a", s))), [false, true, true, true]);
  o.prune(1350);
  t.deepEqual([2, 3, 4].map((s) => o.answeredLately(writeKey("a", s))), [false, false, true]);
});

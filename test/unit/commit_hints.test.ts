import test from "ava";
import { CommitHints } from "../../src/master/commit_hints.js";

const c = (epoch: number, txid: number) => ({ epoch, segmentTxid: 1, txid });

test("commit hints - a commit that a fan-out of its epoch carried needs no hint", (t) => {
  const h = new CommitHints(2, true);
  h.committed(c(3, 10), 100);
  h.fannedOut(3, 10);
  t.deepEqual(h.decide(100), { publish: null, againInMs: null });
  t.deepEqual(h.decide(200), { publish: null, againInMs: null }, "nor later");
});

test("commit hints - a commit no fan-out carried goes out once it has waited the delay", (t) => {
  const h = new CommitHints(2, true);
  h.committed(c(3, 10), 100);
  t.deepEqual(h.decide(100), { publish: null, againInMs: 2 });
  t.deepEqual(h.decide(101.5), { publish: null, againInMs: 0.5 });
  t.deepEqual(h.decide(102), { publish: c(3, 10), againInMs: null });
  t.deepEqual(h.decide(103), { publish: null, againInMs: null }, "published once");
});

test("commit hints - with no delay a hint goes at the end of the commit's own step", (t) => {
  const h = new CommitHints(0, true);
  h.committed(c(3, 10), 100);
  t.deepEqual(h.decide(100), { publish: c(3, 10), againInMs: null });
});

test("commit hints - a fan-out carrying less than the commit, or of another epoch, leaves it owed", (t) => {
  const h = new CommitHints(2, true);
  h.committed(c(3, 10), 100);
  h.fannedOut(3, 9);
  h.fannedOut(4, 50);
  t.deepEqual(h.decide(102), { publish: c(3, 10), againInMs: null });
});

test("commit hints - newer commits do not put the hint off: it is due from the first one still owed, and names the newest", (t) => {
  const h = new CommitHints(2, true);
  h.committed(c(3, 10), 100);
  h.committed(c(3, 11), 101);
  h.committed(c(3, 12), 101.9);
  t.deepEqual(h.decide(102), { publish: c(3, 12), againInMs: null });
  h.committed(c(3, 13), 103);
  t.deepEqual(h.decide(103), { publish: null, againInMs: 2 }, "owed anew, from its own commit");
});

test("commit hints - an older commit heard after a newer one changes nothing; a new epoch's commit replaces the old one", (t) => {
  const h = new CommitHints(2, true);
  h.committed(c(3, 12), 100);
  h.committed(c(3, 11), 100);
  t.deepEqual(h.decide(102), { publish: c(3, 12), againInMs: null });
  h.committed(c(3, 13), 103);
  h.committed(c(4, 5), 104);
  t.deepEqual(h.decide(105), { publish: c(4, 5), againInMs: null }, "the new writer's commit index, due from the first owed");
});

test("commit hints - with the replicas' fan-out off every commit gets its hint: a fan-out carries it to the journal nodes only", (t) => {
  const h = new CommitHints(2, false);
  h.committed(c(3, 10), 100);
  h.fannedOut(3, 10);
  t.deepEqual(h.decide(102), { publish: c(3, 10), againInMs: null });
});

test("commit hints - when the role ends, what is owed is taken at once, whatever it waited", (t) => {
  const h = new CommitHints(2, true);
  h.committed(c(3, 10), 100);
  t.deepEqual(h.takeOwed(), c(3, 10));
  t.is(h.takeOwed(), null);
  t.deepEqual(h.decide(200), { publish: null, againInMs: null });
});

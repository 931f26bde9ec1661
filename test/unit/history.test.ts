/**
 * The fault-test history checker, on hand-built histories and journals (no servers): a clean run passes, and each
 * broken guarantee — txid acked twice, acked write lost or misplaced, write applied twice, failed write journaled,
 * journal gap, replica keyspace off, real-time order broken — is reported by name.
 */
import test from "ava";
import type { WriteReply } from "../../src/protocol/messages.js";
import { encodeEffects, encodeRecord, scanRecords, type RecordView } from "../../src/segment/record.js";
import type { KeyDump } from "../helpers/harness.js";
import {
  History,
  ModelError,
  checkAckedWritesPresent,
  checkAll,
  checkJournal,
  checkRealTimeOrder,
  checkTxids,
  compareKeyspace,
  expectedKeyspace,
  journalEffects,
  uniqueSet,
  type ExpectedKey,
} from "../helpers/history.js";

/** A journal from each record's effects (txids given or 1..n), encoded and scanned back like a real read. */
function journal(records: (string | number)[][][], txids?: number[]): RecordView[] {
  const buf = Buffer.concat(
    records.map((effects, i) => encodeRecord(txids?.[i] ?? i + 1, 1, encodeEffects(effects.map((e) => e.map((a) => Buffer.from(String(a))))))),
  );
  const scan = scanRecords(buf);
  if (scan.stop !== undefined) throw new Error(`test journal does not scan: ${scan.stop.reason}`);
  return scan.records;
}

/** Spins until performance.now() moves on: the next invoke is then strictly after the last completion. */
function tick(): void {
  const at = performance.now();
  while (performance.now() === at) {
    /* spin */
  }
}

/** A replica's dump as dumpKeyspace builds it, from the model's expected keys. */
function dumpOf(expected: Map<string, ExpectedKey>): Map<string, KeyDump> {
  return new Map([...expected].map(([k, v]) => [k, { type: v.type, value: v.value, expireAtMs: v.expireAtMs }]));
}

/** Three clients: two acked SETs, one definite failure, one unknown that made it in, one unknown that did not. */
function cleanRun(): { h: History; records: RecordView[] } {
  const h = new History();
  const a = h.invoke(0, uniqueSet(0, 0));
  h.ok(a, 1, "OK");
  const b = h.invoke(1, uniqueSet(1, 0));
  h.ok(b, 2, "OK");
  h.fail(h.invoke(2, ["GET", "x"]), "NOT_A_WRITE", "reads go to a replica");
  h.unknown(h.invoke(2, uniqueSet(2, 1)), "NO_QUORUM: no majority");
  h.unknown(h.invoke(0, uniqueSet(0, 1)), "TIMEOUT: no reply");
  const records = journal([
    [["SET", "u:0:0", "v0.0"]],
    [["SET", "u:1:0", "v1.0", "PXAT", "99999999999999"]],
    [["set", "u:2:1", "v2.1"]],
  ]);
  return { h, records };
}

test("history - a clean run passes every check", (t) => {
  const { h, records } = cleanRun();
  const dump = dumpOf(expectedKeyspace(records));
  t.deepEqual(checkAll({ history: h, journal: records, replicas: { r1: dump, r2: dump } }), []);
  t.is(h.oks().length, 2);
  t.is(h.fails().length, 1);
  t.is(h.unknowns().length, 2);
});

test("history - unknown outcomes may be present or absent, but not twice", (t) => {
  const { h, records } = cleanRun();
  const effects = journalEffects(records);
  t.deepEqual(checkAckedWritesPresent(h, effects), [], "u:2:1 present, u:0:1 absent: both fine");
  const twice = journal([[["SET", "u:0:0", "v0.0"]], [["SET", "u:1:0", "v1.0"]], [["SET", "u:2:1", "v2.1"]], [["SET", "u:2:1", "v2.1"]]]);
  const v = checkAckedWritesPresent(h, journalEffects(twice));
  t.is(v.length, 1, v.join("\n"));
  t.regex(v[0], /applied more than once.*u:2:1.*txid 3, 4/);
});

test("history - a txid acked to two writes is a violation naming it", (t) => {
  const h = new History();
  h.ok(h.invoke(0, uniqueSet(0, 0)), 7, "OK");
  h.ok(h.invoke(1, uniqueSet(1, 0)), 7, "OK");
  const v = checkTxids(h);
  t.is(v.length, 1);
  t.regex(v[0], /acked to more than one write.*txid 7.*u:0:0.*u:1:0/);
});

test("history - acked txids beyond the committed end or absent from the journal are violations", (t) => {
  const h = new History();
  h.ok(h.invoke(0, uniqueSet(0, 0)), 2, "OK");
  h.ok(h.invoke(0, uniqueSet(0, 1)), 9, "OK");
  const v = checkTxids(h, [{ txid: 1 }, { txid: 3 }]);
  t.is(v.length, 2, v.join("\n"));
  t.regex(v[0], /beyond the journal's committed end.*txid 9.*committed end 3/);
  t.regex(v[1], /missing from the journal.*txid 2/);
});

test("history - an acked write missing from the journal is a violation naming it", (t) => {
  const h = new History();
  h.ok(h.invoke(0, uniqueSet(0, 0)), 1, "OK");
  h.ok(h.invoke(0, uniqueSet(0, 1)), 2, "OK");
  const records = journal([[["SET", "u:0:0", "v0.0"]], [["SET", "other", "x"]]]);
  const v = checkAckedWritesPresent(h, journalEffects(records));
  t.is(v.length, 1, v.join("\n"));
  t.regex(v[0], /missing from the journal.*u:0:1.*txid 2.*in no record/);
  t.true(checkAll({ history: h, journal: records, replicas: {} }).some((s) => s.includes("u:0:1")));
});

test("history - an acked write found at another txid, or with another value, is a violation", (t) => {
  const h = new History();
  h.ok(h.invoke(0, uniqueSet(0, 0)), 1, "OK");
  h.ok(h.invoke(1, uniqueSet(1, 0)), 2, "OK");
  const moved = checkAckedWritesPresent(h, journalEffects(journal([[["SET", "u:1:0", "v1.0"]], [["SET", "u:0:0", "v0.0"]]])));
  t.is(moved.length, 1, moved.join("\n"));
  t.regex(moved[0], /u:0:0 v0\.0 → txid 1: the key is at txid 2/);
  t.regex(moved[0], /u:1:0 v1\.0 → txid 2: the key is at txid 1/);
  const changed = checkAckedWritesPresent(h, journalEffects(journal([[["SET", "u:0:0", "nope"]], [["SET", "u:1:0", "v1.0"]]])));
  t.is(changed.length, 1);
  t.regex(changed[0], /u:0:0.*with another value/);
});

test("history - a write present at two txids is a violation naming the key", (t) => {
  const h = new History();
  h.ok(h.invoke(0, uniqueSet(0, 0)), 1, "OK");
  const v = checkAckedWritesPresent(h, journalEffects(journal([[["SET", "u:0:0", "v0.0"]], [["SET", "u:0:0", "v0.0"]]])));
  t.is(v.length, 1);
  t.regex(v[0], /applied more than once.*key u:0:0.*txid 1, 2.*1 acked, 0 unknown/);
});

test("history - a definitely failed write found in the journal is a violation", (t) => {
  const h = new History();
  h.fail(h.invoke(0, uniqueSet(0, 0)), "OVERLOADED", "queue full");
  const v = checkAckedWritesPresent(h, journalEffects(journal([[["SET", "u:0:0", "v0.0"]]])));
  t.is(v.length, 1);
  t.regex(v[0], /definitely failed writes present.*OVERLOADED.*u:0:0 is at txid 1/);
});

test("history - a conditional SET acked with nil need not be in its record", (t) => {
  const h = new History();
  h.ok(h.invoke(0, ["SET", "nx", "1", "NX"]), 1, "OK");
  h.ok(h.invoke(1, ["SET", "nx", "2", "NX"]), 2, null);
  const records = journal([[["SET", "nx", "1"]], []]);
  t.deepEqual(checkAckedWritesPresent(h, journalEffects(records)), []);
  t.deepEqual(checkTxids(h, records), []);
});

test("history - a journal gap, duplicate or reordering is a violation naming the txids", (t) => {
  t.deepEqual(checkJournal([{ txid: 4 }, { txid: 5 }, { txid: 6 }]), [], "contiguous from the first, not necessarily 1");
  const gap = checkJournal(journal([[], [], []], [1, 2, 5]));
  t.is(gap.length, 1);
  t.regex(gap[0], /not contiguous.*txid 2 is followed by 5 \(missing 3\.\.4\)/);
  t.regex(checkJournal([{ txid: 1 }, { txid: 1 }]).join(), /txid 1 twice/);
  t.regex(checkJournal([{ txid: 3 }, { txid: 2 }]).join(), /out of order/);
  t.true(checkAll({ history: new History(), journal: journal([[], []], [1, 3]), replicas: {} }).some((s) => s.includes("missing 2..2")));
});

test("history - a replica keyspace that differs: missing, extra, wrong value and wrong type are each named", (t) => {
  const expected = expectedKeyspace(journal([[["SET", "a", "1"], ["SET", "b", "2"], ["RPUSH", "l", "x"], ["SET", "s", "3"]]]));
  const replica = dumpOf(expected);
  replica.delete("a");
  replica.set("zz", { type: "string", value: "ghost", expireAtMs: -1 });
  replica.set("b", { type: "string", value: "22", expireAtMs: -1 });
  replica.set("l", { type: "set", value: ["x"], expireAtMs: -1 });
  const v = compareKeyspace(expected, replica, "r2");
  t.is(v.length, 4, v.join("\n"));
  t.regex(v[0], /^r2: keys missing.*\ba\b/);
  t.regex(v[1], /^r2: extra keys.*zz.*ghost/);
  t.regex(v[2], /^r2: keys of the wrong type.*l: set, expected list/);
  t.regex(v[3], /^r2: keys with the wrong value.*b: "22", expected "2"/);
  t.deepEqual(compareKeyspace(expected, dumpOf(expected)), []);
});

test("history - the model replays SET, DEL, INCR, INCRBY, HSET, RPUSH, SADD and SREM", (t) => {
  const records = journal([
    [["SET", "s", "one"], ["SET", "gone", "x"], ["INCR", "n"], ["INCRBY", "n", "41"], ["incrby", "neg", "-5"]],
    [["HSET", "h", "f2", "b", "f1", "a"], ["HSET", "h", "f2", "B"], ["RPUSH", "l", "x", "y"], ["RPUSH", "l", "z"]],
    [["SADD", "set", "c", "a", "b"], ["SREM", "set", "b"], ["SADD", "empty", "m"], ["SREM", "empty", "m"], ["DEL", "gone", "never"]],
    [["SET", "s", "two", "PXAT", "1000", "KEEPTTL"], ["SET", "n2", "5"], ["INCR", "n2"], ["SET", "s2", "v", "NX"], ["SET", "s2", "w", "NX"], ["SET", "nope", "v", "XX"]],
    [["SET", "h2", "string now"], ["SET", "h2", "again", "GET"], ["PEXPIREAT", "h2", "99999999999999"], ["SREM", "absent", "m"]],
  ]);
  const got = Object.fromEntries([...expectedKeyspace(records)].map(([k, v]) => [k, [v.type, v.value]]));
  t.deepEqual(got, {
    s: ["string", "two"],
    n: ["string", "42"],
    neg: ["string", "-5"],
    h: ["hash", [["f1", "a"], ["f2", "B"]]],
    l: ["list", ["x", "y", "z"]],
    set: ["set", ["a", "c"]],
    n2: ["string", "6"],
    s2: ["string", "v"],
    h2: ["string", "again"],
  });
});

test("history - expiry counts only for absolute times before nowMs", (t) => {
  const records = journal([[["SET", "past", "x", "PXAT", "1000"], ["SET", "future", "y", "PXAT", "5000"], ["SET", "rel", "z", "PX", "1"]], [["SET", "kept", "k", "PXAT", "1000"], ["SET", "kept", "k2", "KEEPTTL"], ["SET", "cleared", "c", "EXAT", "1"], ["SET", "cleared", "c2"]]]);
  t.deepEqual([...expectedKeyspace(records).keys()].sort(), ["cleared", "future", "kept", "past", "rel"], "no nowMs: expiry ignored");
  const at = expectedKeyspace(records, 2000);
  t.deepEqual([...at.keys()].sort(), ["cleared", "future", "rel"]);
  t.is(at.get("future")?.expireAtMs, 5000);
  t.is(at.get("cleared")?.expireAtMs, -1, "a SET without KEEPTTL clears the expiry");
});

test("history - an unknown command in the journal throws naming it; checkAll reports it", (t) => {
  const records = journal([[["SET", "a", "1"]], [["ZADD", "z", "1", "m"]]]);
  const err = t.throws(() => expectedKeyspace(records), { instanceOf: ModelError });
  t.regex(err?.message ?? "", /record 2, ZADD: the keyspace model does not know/);
  t.throws(() => expectedKeyspace(journal([[["SET", "a", "1", "WHATEVER"]]])), { message: /unknown SET option "WHATEVER"/ });
  t.throws(() => expectedKeyspace(journal([[["SET", "a", "1"], ["RPUSH", "a", "x"]]])), { message: /holds a string, not a list/ });
  t.throws(() => expectedKeyspace(journal([[["SET", "a", "x"], ["INCR", "a"]]])), { message: /is not an integer/ });
  const v = checkAll({ history: new History(), journal: records, replicas: { r1: new Map() } });
  t.is(v.length, 1);
  t.regex(v[0], /cannot replay the journal.*ZADD/);
});

test("history - a write invoked after another was acked must get a higher txid", (t) => {
  const h = new History();
  h.ok(h.invoke(0, uniqueSet(0, 0)), 5, "OK");
  tick();
  h.ok(h.invoke(1, uniqueSet(1, 0)), 3, "OK");
  const v = checkRealTimeOrder(h);
  t.is(v.length, 1);
  t.regex(v[0], /real-time order.*u:1:0 v1\.0 → txid 3 was invoked after .*u:0:0 v0\.0 → txid 5 was acked/);
  const concurrent = new History();
  const a = concurrent.invoke(0, uniqueSet(0, 0));
  const b = concurrent.invoke(1, uniqueSet(1, 0));
  concurrent.ok(a, 5, "OK");
  concurrent.ok(b, 3, "OK");
  t.deepEqual(checkRealTimeOrder(concurrent), [], "overlapping writes may be ordered either way");
});

test("history - run classifies replies: ok, definite failure, unknown codes and thrown errors", async (t) => {
  const h = new History();
  const replies: (WriteReply | Error)[] = [
    { ok: true, txid: 1, reply: "OK" },
    { ok: false, code: "WRONG_ARITY", message: "arity" },
    { ok: false, code: "NO_QUORUM", message: "no majority" },
    { ok: false, code: "NOT_WRITER", message: "recovering" },
    new Error("TIMEOUT"),
  ];
  const ops = [];
  for (const [i, r] of replies.entries()) {
    ops.push(await h.run(0, uniqueSet(0, i), async () => {
      if (r instanceof Error) throw r;
      return r;
    }));
  }
  t.deepEqual(ops.map((o) => o.status), ["ok", "fail", "unknown", "unknown", "unknown"]);
  t.regex(h.unknowns()[0].reason, /NO_QUORUM/);
  t.regex(h.unknowns()[2].reason, /no reply: TIMEOUT/);
  for (const op of h.all()) t.true(op.status !== "pending" && op.completedAtMs >= op.invokedAtMs);
});

test("history - misuse throws: completing twice, an unknown id, a non-definite failure code; pending ops are reported", (t) => {
  const h = new History();
  const id = h.invoke(0, uniqueSet(0, 0));
  t.throws(() => h.fail(id, "NO_QUORUM", "x"), { message: /does not prove.*unknown\(\)/ });
  h.ok(id, 1, "OK");
  t.throws(() => h.unknown(id, "again"), { message: /already completed/ });
  t.throws(() => h.ok(99, 2, "OK"), { message: /no op #99/ });
  t.throws(() => h.ok(h.invoke(0, uniqueSet(0, 1)), 0, "OK"), { message: /invalid txid/ });
  const v = checkAll({ history: h, journal: journal([[["SET", "u:0:0", "v0.0"]]]), replicas: {} });
  t.is(v.length, 1, v.join("\n"));
  t.regex(v[0], /never completed.*u:0:1/);
});

test("history - a violation names at most the first few examples", (t) => {
  const h = new History();
  for (let i = 0; i < 20; i++) h.ok(h.invoke(0, uniqueSet(0, i)), i + 1, "OK");
  const v = checkTxids(h, []);
  t.is(v.length, 1);
  t.regex(v[0], /\(20\):.*… and 15 more$/);
});

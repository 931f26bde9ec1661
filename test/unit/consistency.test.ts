/**
 * Reads you can trust on the RESP door (issue #12 items 2 and 3), the pure parts: reads waiting for an applied txid
 * (TxidWaiters), no dirty reads on the master (DirtyReadCore and its ReadGuard), the master's read index and its
 * batched confirmation rounds (ReadIndexCore), COMMAND's key positions, and the QJM.* commands' parsing.
 */
import test from "ava";
import { DirtyReadCore } from "../../src/master/dirty_reads.js";
import { ReadGuard } from "../../src/master/read_guard.js";
import { ReadIndexCore } from "../../src/master/read_index_core.js";
import { TxidWaiters } from "../../src/frontdoor/txid_waiters.js";
import { CommandTable, type CommandInfo } from "../../src/redis/command_table.js";
import { ConnectionState } from "../../src/frontdoor/connection_state.js";
import { answerLocal, parseLastTxid, parseQjmWait, type LocalContext } from "../../src/frontdoor/local_commands.js";
import { route } from "../../src/frontdoor/router.js";
import { loadConfig } from "../../src/config/config.js";
import { parseReadIndexReply, parseReadIndexRequest } from "../../src/protocol/messages.js";

const b = (...a: string[]): Buffer[] => a.map((s) => Buffer.from(s));

test("TxidWaiters: released by the applied txid in txid order, timed out at their deadline, each once", (t) => {
  const w = new TxidWaiters();
  w.advance(5);
  t.false(w.wait(1, 5, 1000), "applied already: nothing to wait for");
  t.true(w.wait(2, 9, 1000));
  t.true(w.wait(3, 7, 500));
  t.true(w.wait(4, 7, 2000));
  t.is(w.nextDeadlineMs(), 500);
  t.deepEqual(w.advance(6), []);
  t.deepEqual(w.advance(7), [3, 4], "both waiters of txid 7, in arrival order");
  t.deepEqual(w.expire(999), []);
  t.deepEqual(w.expire(1000), [2]);
  t.is(w.size, 0);
  t.deepEqual(w.advance(100), [], "gone waiters are not released again");
  t.is(w.nextDeadlineMs(), null);
});

test("TxidWaiters: a lower applied txid (a rebuilt Redis) is taken as it is; cancel removes a waiter", (t) => {
  const w = new TxidWaiters();
  w.advance(50);
  w.advance(10);
  t.is(w.appliedTxid, 10);
  t.true(w.wait(1, 20, 100), "20 is not applied on the rebuilt copy");
  t.true(w.wait(2, 30, 100));
  w.cancel(1);
  t.deepEqual(w.advance(40), [2]);
});

test("TxidWaiters: deadlines in any order expire in order; released ones never fire the timer", (t) => {
  const w = new TxidWaiters();
  const deadlines = Array.from({ length: 200 }, (_, i) => ((i * 7919) % 200) + 1000);
  deadlines.forEach((d, i) => w.wait(i, 10 + i, d));
  t.deepEqual(w.advance(10 + 99), Array.from({ length: 100 }, (_, i) => i), "the first 100 by txid");
  const live = deadlines.map((d, i) => ({ d, i })).filter(({ i }) => i >= 100).sort((a, b) => a.d - b.d || a.i - b.i);
  t.is(w.nextDeadlineMs(), live[0].d, "the earliest deadline of a waiter still waiting");
  const expired: number[] = [];
  for (let now = 1000; now < 1200; now += 13) expired.push(...w.expire(now));
  expired.push(...w.expire(1200));
  t.deepEqual(new Set(expired), new Set(live.map((x) => x.i)));
  t.is(w.size, 0);
  t.is(w.nextDeadlineMs(), null);
});

test("DirtyReadCore: a read of a key with an uncommitted write waits for its answer; other keys go at once", (t) => {
  const c = new DirtyReadCore(false);
  c.executed(1, ["a"]);
  c.executed(2, ["b", "c"]);
  const g = c.begin(100);
  t.deepEqual(g, { kind: "go", token: 0 });
  t.is(c.replied(100, ["z"], 0), "release", "no write of z in flight");
  t.is(c.replied(101, ["a", "c"], 0), "wait");
  t.deepEqual(c.answered(1), [], "still waits for write 2 (key c)");
  t.deepEqual(c.answered(2), [{ read: 101, verdict: "release" }]);
  t.is(c.replied(102, ["a"], 0), "release", "answered writes block nothing");
});

test("DirtyReadCore: keys unknown on either side (a script, DBSIZE) meet everything", (t) => {
  const c = new DirtyReadCore(false);
  c.executed(1, null);
  t.is(c.replied(1, ["x"], 0), "wait", "a script may have written x");
  c.executed(2, ["y"]);
  t.is(c.replied(2, null, 0), "wait", "a keyless read (DBSIZE) sees every key");
  t.deepEqual(c.answered(1), [{ read: 1, verdict: "release" }]);
  t.deepEqual(c.answered(2), [{ read: 2, verdict: "release" }]);
});

test("DirtyReadCore: a reset or a failed term sends waiting reads back, holds new ones until it ends; a read begun before it reads again", (t) => {
  const c = new DirtyReadCore(false);
  c.executed(1, ["k"]);
  t.is(c.replied(10, ["k"], 0), "wait");
  const stale = c.begin(11);
  t.deepEqual(c.undoStarted(), [{ read: 10, verdict: "retry" }]);
  t.deepEqual(c.begin(12), { kind: "held" }, "no read while Redis is rebuilt");
  t.is(c.replied(11, ["other"], (stale as { token: number }).token), "retry", "its reply may show what the reset undoes");
  t.deepEqual(c.answered(1), [], "the write's answer releases nothing any more");
  t.deepEqual(c.undoEnded(), [{ read: 12, verdict: "retry" }]);
  t.deepEqual(c.begin(13), { kind: "go", token: 1 });
  t.deepEqual(c.close().length, 0);
  t.deepEqual(c.begin(14), { kind: "closed" });
});

test("DirtyReadCore: starts undoing (not serving yet): reads wait for the master to serve; close releases them to retry", (t) => {
  const c = new DirtyReadCore();
  t.deepEqual(c.begin(1), { kind: "held" });
  t.deepEqual(c.close(), [{ read: 1, verdict: "retry" }]);
  const d = new DirtyReadCore(false);
  d.executed(1, ["k"]);
  d.replied(2, ["k"], 0);
  d.cancel(2);
  t.deepEqual(d.answered(1), [], "a cancelled read is not released");
  t.is(d.waitingReads, 0);
});

test("ReadGuard: a reply is held until the write it may reflect is answered; read again after a reset", async (t) => {
  const g = new ReadGuard();
  g.undo(false);
  g.executed(1, null);
  let reads = 0;
  const p = g.guard(b("k"), async () => ++reads, Date.now() + 5000);
  await new Promise((r) => setImmediate(r));
  let settled = false;
  void p.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  t.false(settled, "held: write 1 is not answered");
  g.undo(true);
  g.undo(false);
  await new Promise((r) => setImmediate(r));
  // Read again after the reset: write 1 (keys unknown without a table) is still unanswered, so it waits again.
  g.answered(1);
  t.deepEqual(await p, { ok: true, value: 2 });
  const timedOut = await (async () => {
    g.executed(2, null);
    return await g.guard(b("k"), async () => 0, Date.now() + 20);
  })();
  t.deepEqual(timedOut, { ok: false, why: "timeout" });
  g.close();
  t.deepEqual(await g.guard(null, async () => 0, Date.now() + 20), { ok: false, why: "closed" });
});

const NODES = ["jn1", "jn2", "jn3"];

test("ReadIndexCore: requests arriving during a round share the next one; a majority confirming the epoch answers them", (t) => {
  const c = new ReadIndexCore(4, NODES, 100);
  c.request(1);
  let r = c.ready();
  t.deepEqual(r.round, { id: 1, nodes: NODES });
  t.deepEqual(r.answers, []);
  c.request(2);
  c.request(3);
  t.is(c.ready().round, null, "one round at a time: a round begun before a request arrived proves nothing for it");
  c.stateReply(1, "jn1", { ok: true, promisedEpoch: 4 });
  t.deepEqual(c.ready().answers, []);
  c.stateReply(1, "jn2", { ok: true, promisedEpoch: 4 });
  r = c.ready();
  t.deepEqual(r.answers, [{ ids: [1], outcome: { ok: true } }]);
  t.deepEqual(r.round, { id: 2, nodes: NODES }, "requests 2 and 3 share the next round");
  c.stateReply(1, "jn3", { ok: true, promisedEpoch: 4 });
  t.deepEqual(c.ready().answers, [], "a late answer of an old round counts for nothing");
  c.stateReply(2, "jn3", { ok: true, promisedEpoch: 4 });
  c.stateReply(2, "jn3", { ok: true, promisedEpoch: 4 });
  t.deepEqual(c.ready().answers, [], "one node counts once");
  c.stateReply(2, "jn1", { ok: true, promisedEpoch: 4 });
  t.deepEqual(c.ready().answers, [{ ids: [2, 3], outcome: { ok: true } }], "one round for both");
});

test("ReadIndexCore: a deposed master refuses — a higher promised epoch fences it for good; no majority fails the round", (t) => {
  const c = new ReadIndexCore(4, NODES, 100);
  c.request(1);
  c.ready();
  c.stateReply(1, "jn1", { ok: true, promisedEpoch: 4 });
  c.stateReply(1, "jn2", { ok: true, promisedEpoch: 5 });
  const r = c.ready();
  t.is(r.answers.length, 1);
  t.like(r.answers[0], { ids: [1], outcome: { ok: false, code: "EPOCH_FENCED" } });
  c.request(2);
  t.like(c.ready().answers[0], { ids: [2], outcome: { ok: false, code: "EPOCH_FENCED" } }, "refused at once from then on");

  const d = new ReadIndexCore(4, NODES, 100);
  d.request(1);
  d.ready();
  d.stateReply(1, "jn1", { ok: false, message: "TIMEOUT" });
  t.deepEqual(d.ready().answers, []);
  d.stateReply(1, "jn2", { ok: true, promisedEpoch: 3 });
  t.like(d.ready().answers[0], { ids: [1], outcome: { ok: false, code: "NO_QUORUM" } });
  d.request(2);
  t.deepEqual(d.ready().round, { id: 2, nodes: NODES }, "a failed round is no fence: the next request tries again");
});

test("ReadIndexCore: bounded queue (OVERLOADED), and close refuses everything waiting NOT_WRITER", (t) => {
  const c = new ReadIndexCore(1, NODES, 2);
  c.request(1); // starts round 1 (the queue empties into it)
  c.request(2);
  c.request(3);
  c.request(4);
  const r = c.ready();
  t.like(r.answers[0], { ids: [4], outcome: { ok: false, code: "OVERLOADED" } });
  c.close("stepped down");
  t.like(c.ready().answers[0], { ids: [1, 2, 3], outcome: { ok: false, code: "NOT_WRITER" } });
  c.stateReply(1, "jn1", { ok: true, promisedEpoch: 1 });
  t.deepEqual(c.ready().answers, []);
});

function entry(name: string, arity: number, flags: string[], keys?: [number, number, number]): CommandInfo {
  return { name, arity, flags: new Set(flags), aclCategories: new Set(), subcommands: [], ...(keys ? { keys: { first: keys[0], last: keys[1], step: keys[2] } } : {}) };
}

test("CommandTable.keysOf: COMMAND's key positions; null (every key) for movable keys, keyless and unknown commands", (t) => {
  const table = new CommandTable([
    entry("get", 2, ["readonly"], [1, 1, 1]),
    entry("mset", -3, ["write"], [1, -1, 2]),
    entry("mget", -2, ["readonly"], [1, -1, 1]),
    entry("eval", -3, ["movablekeys"], [0, 0, 0]),
    entry("dbsize", 1, ["readonly"], [0, 0, 0]),
    entry("lmove", 5, ["write"], [1, 2, 1]),
    entry("old", 2, ["readonly"]),
  ]);
  const str = (k: Buffer[] | null): string[] | null => k?.map(String) ?? null;
  t.deepEqual(str(table.keysOf(b("GET", "k"))), ["k"]);
  t.deepEqual(str(table.keysOf(b("MSET", "a", "1", "b", "2"))), ["a", "b"]);
  t.deepEqual(str(table.keysOf(b("mget", "a", "b", "c"))), ["a", "b", "c"]);
  t.deepEqual(str(table.keysOf(b("LMOVE", "s", "d", "LEFT", "RIGHT"))), ["s", "d"]);
  t.is(table.keysOf(b("EVAL", "return 1", "1", "k")), null);
  t.is(table.keysOf(b("DBSIZE")), null);
  t.is(table.keysOf(b("OLD", "k")), null, "no key positions known");
  t.is(table.keysOf(b("NOPE", "k")), null);
  const parsed = CommandTable.fromCommandReply([["get", 2, ["readonly"], 1, 1, 1, ["@read"]]]);
  t.deepEqual(str(parsed.keysOf(b("get", "x"))), ["x"], "read from COMMAND's reply");
});

const ctx: LocalContext = { password: "", redisVersion: "7.0.0", role: () => "replica", self: { state: new ConnectionState(1, "a", "b", 0, false), inFlight: 0, kill: () => {} }, clients: () => [], nowMs: 0 };

test("QJM.CONSISTENCY: sets the level (+OK), names it without an argument, refuses others naming the choices; RESET restores the default", (t) => {
  const s = new ConnectionState(1, "a", "b", 0, false, "session");
  t.deepEqual(route(b("QJM.CONSISTENCY", "eventual"), { commands: undefined, authenticated: true }), { kind: "local", command: "qjm.consistency" });
  t.deepEqual(answerLocal("qjm.consistency", b("qjm.consistency"), s, ctx), { reply: { type: "bulk", value: Buffer.from("session") } });
  t.deepEqual(answerLocal("qjm.consistency", b("QJM.CONSISTENCY", "LINEARIZABLE"), s, ctx), { reply: { type: "simple", value: "OK" } });
  t.is(s.consistency, "linearizable");
  const bad = answerLocal("qjm.consistency", b("QJM.CONSISTENCY", "strong"), s, ctx) as { reply: { type: string; value: string } };
  t.is(bad.reply.type, "error");
  t.regex(bad.reply.value, /unknown consistency 'strong': one of eventual, session, linearizable/);
  s.wrote(7);
  s.observed(5);
  t.is(s.lastWriteTxid, 7);
  t.is(s.observedTxid, 7, "observed never goes back");
  s.reset();
  t.is(s.consistency, "session");
  t.is(s.lastWriteTxid, 0);
});

test("QJM.WAIT and QJM.LASTTXID: routed to wait after earlier writes; arguments checked; timeout 0 is the bound", (t) => {
  const ctx2 = { commands: undefined, authenticated: true };
  t.deepEqual(route(b("qjm.wait", "1", "10"), ctx2), { kind: "qjm", command: "wait" });
  t.deepEqual(route(b("QJM.LASTTXID"), ctx2), { kind: "qjm", command: "lasttxid" });
  t.deepEqual(parseQjmWait(b("QJM.WAIT", "12", "500"), 60000), { txid: 12, timeoutMs: 500 });
  t.deepEqual(parseQjmWait(b("QJM.WAIT", "12", "0"), 60000), { txid: 12, timeoutMs: 60000 });
  t.regex((parseQjmWait(b("QJM.WAIT", "12", "60001"), 60000) as { error: string }).error, /above respWaitMaxMs/);
  t.regex((parseQjmWait(b("QJM.WAIT", "-1", "5"), 60000) as { error: string }).error, /txid is not a non-negative integer/);
  t.regex((parseQjmWait(b("QJM.WAIT", "1", "x"), 60000) as { error: string }).error, /timeout is not an integer/);
  t.regex((parseQjmWait(b("QJM.WAIT", "1"), 60000) as { error: string }).error, /wrong number of arguments/);
  t.is(parseLastTxid(b("QJM.LASTTXID")), "write");
  t.is(parseLastTxid(b("QJM.LASTTXID", "seen")), "seen");
  t.is(parseLastTxid(b("QJM.LASTTXID", "WRITE")), "write");
  t.like(parseLastTxid(b("QJM.LASTTXID", "other")), { error: { type: "error", value: "ERR qjm: QJM.LASTTXID takes WRITE (the default) or SEEN" } });
});

test("config: respConsistency is one of the levels; read-index messages are checked", (t) => {
  t.throws(() => loadConfig({ QJM_RESP_CONSISTENCY: "strong" }), { message: /respConsistency must be one of eventual, session, linearizable/ });
  t.is(loadConfig({ QJM_RESP_CONSISTENCY: "linearizable" }).respConsistency, "linearizable");
  t.deepEqual(parseReadIndexRequest({ type: "readIndex" }), { type: "readIndex" });
  t.throws(() => parseReadIndexRequest({ type: "write" }), { message: /read-index request/ });
  t.deepEqual(parseReadIndexReply({ ok: true, txid: 5, epoch: 2 }), { ok: true, txid: 5, epoch: 2 });
  t.like(parseReadIndexReply({ ok: false, code: "EPOCH_FENCED", message: "m" }), { ok: false, code: "EPOCH_FENCED" });
  t.throws(() => parseReadIndexReply({ ok: true, txid: -1, epoch: 2 }));
});

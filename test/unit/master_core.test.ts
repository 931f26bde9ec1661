/**
 * The serving master's pure core (src/master/master_core.ts): admission bounds, answers exactly once and only after
 * the commit, masking on in-flight limits and on heartbeat silence, roll and reset drains, and a failed term
 * answering every unanswered write NO_QUORUM. Driven as the drivers drive it: events in, `ready()` out.
 */
import test from "ava";
import { defaults } from "../../src/config/config.js";
import { MasterCore, ROLL_HOLD_GROWTH_MAX, isEmptyReady, type MasterLimits, type MasterReady, type SendOrder } from "../../src/master/master_core.js";
import { encodeEffects } from "../../src/segment/record.js";
import { DedupeWindow } from "../../src/dedupe/dedupe_window.js";

const N3 = ["jn1", "jn2", "jn3"];
const limits: MasterLimits = {
  ...defaults,
  journalNodes: N3,
  quorumTimeoutMs: 1000,
  batchBytesMax: 1 << 20,
  batchRecordsMax: 1000,
  writesQueuedMax: 4,
  writesQueuedBytesMax: 1000,
  writesInflightMax: 3,
  writesInflightBytesMax: 1000,
  journalBatchesInflightMax: 2,
  journalInflightBytesMax: 1 << 20,
  journalHeartbeatTimeoutMs: 400,
  catchUpIntervalMs: 200,
  orphanEffectsFlushMs: 50,
  writeEffectsBytesMax: 1000,
  segmentMaxRecords: 1_000_000,
};
const OK = { ok: true } as const;
const payload = (key: string): Uint8Array => encodeEffects([[Buffer.from("SET"), Buffer.from(key), Buffer.from("v")]]);

function serving(l: MasterLimits = limits): MasterCore {
  const core = new MasterCore(l);
  core.start(3, 11, N3, 0);
  core.ready();
  return core;
}

/** Executes and journals every admitted write as the drivers do (Redis's outcome, then its record), then flushes. */
function runAdmitted(core: MasterCore, r: MasterReady, nowMs = 1): MasterReady {
  for (const id of r.execute) {
    core.outcome(id, { ok: true, value: `v${id}` });
    core.record(id, payload(`k${id}`));
  }
  core.flush(nowMs);
  return core.ready();
}

/** Acks every batch of `sends` from `nodes`. */
function ack(core: MasterCore, sends: SendOrder[], nodes: string[], nowMs = 2): MasterReady {
  for (const s of sends) if (nodes.includes(s.node)) core.journalReply(s.ref, OK, nowMs);
  return core.ready();
}

test("master core - writes are admitted within writesInflightMax; the rest wait queued, then go in order", (t) => {
  const core = serving();
  for (let id = 1; id <= 5; id++) core.write(id, 10, false, 0);
  let r = core.ready();
  t.deepEqual(r.execute, [1, 2, 3]);
  t.is(core.queued, 2);
  r = runAdmitted(core, r);
  t.deepEqual(r.answers, [], "nothing is answered before its commit");
  r = ack(core, r.send, ["jn1", "jn2"]);
  t.deepEqual(
    r.answers.map((a) => a.id),
    [1, 2, 3],
  );
  t.deepEqual(r.execute, [4, 5], "room made by the answers admits the queued writes");
});

test("master core - the queue is bounded in count and in bytes, but one oversized write always gets in", (t) => {
  const core = new MasterCore(limits); // not serving: everything queues
  core.write(1, 5000, false, 0);
  t.deepEqual(core.ready().answers, [], "one write over writesQueuedBytesMax is queued alone");
  core.write(2, 10, false, 0);
  const r = core.ready();
  t.deepEqual(
    r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]),
    [[2, "OVERLOADED"]],
  );
  const small = new MasterCore(limits);
  for (let id = 1; id <= 6; id++) small.write(id, 0, false, 0);
  t.deepEqual(
    small.ready().answers.map((a) => a.id),
    [5, 6],
    "writesQueuedMax 4",
  );
});

test("master core - in-flight bytes bound admission, but one oversized write is admitted alone", (t) => {
  const core = serving();
  core.write(1, 5000, false, 0);
  core.write(2, 10, false, 0);
  let r = core.ready();
  t.deepEqual(r.execute, [1], "the big write runs alone; the next waits for its bytes to leave");
  r = runAdmitted(core, r);
  r = ack(core, r.send, N3);
  t.deepEqual(
    r.answers.map((a) => a.id),
    [1],
  );
  t.deepEqual(r.execute, [2]);
});

test("master core - a write is answered exactly once, only after its commit, whichever of outcome and commit comes first", (t) => {
  const core = serving();
  core.write(1, 10, false, 0);
  core.write(2, 10, false, 0);
  let r = core.ready();
  core.record(1, payload("a"));
  core.record(2, payload("b"));
  core.outcome(1, { ok: true, value: "OK" });
  core.flush(1);
  r = core.ready();
  const sends = r.send;
  t.deepEqual(r.answers, [], "an outcome alone answers nothing");
  r = ack(core, sends, ["jn1"]);
  t.deepEqual(r.answers, [], "one ack is no majority");
  r = ack(core, sends, ["jn2"], 3);
  t.deepEqual(r.answers, [{ id: 1, reply: { ok: true, txid: 11, reply: "OK" } }], "write 2's outcome is still on its way");
  t.deepEqual(r.committed, { epoch: 3, segmentTxid: 11, txid: 12 });
  core.outcome(2, { ok: false, message: "ERR wrong type" });
  r = core.ready();
  t.deepEqual(
    r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]),
    [[2, "REDIS_ERROR"]],
  );
  core.outcome(2, { ok: true, value: 1 });
  t.deepEqual(core.ready().answers, [], "never answered twice");
});

test("master core - a refused write (stream surprises) is answered EFFECTS_REFUSED, after its commit", (t) => {
  const core = serving();
  core.write(1, 10, false, 0);
  core.ready();
  core.refuse(1, "effects in db 3");
  let r = runAdmitted(core, { ...core.ready(), execute: [1] });
  t.deepEqual(r.answers, []);
  r = ack(core, r.send, N3);
  t.is(r.answers[0].reply.ok ? "ok" : r.answers[0].reply.code, "EFFECTS_REFUSED");
});

test("master core - a node over journalBatchesInflightMax is refused at send and masked; the others carry on", (t) => {
  const core = serving({ ...limits, batchRecordsMax: 1 });
  const masked: string[] = [];
  let acks: SendOrder[] = [];
  for (let id = 1; id <= 3; id++) {
    core.write(id, 1, false, 0);
    let r = core.ready();
    r = runAdmitted(core, r, id);
    for (const e of r.events) if (e.type === "masked") masked.push(e.node);
    // jn3 never answers; jn1 and jn2 do.
    acks = r.send.filter((s) => s.node !== "jn3");
    t.true(r.send.some((s) => s.node === "jn3") || id === 3);
    r = ack(core, acks, ["jn1", "jn2"], id);
    for (const e of r.events) if (e.type === "masked") masked.push(e.node);
    t.is(r.answers.length, 1);
  }
  t.deepEqual(masked, ["jn3"], "the third batch to a node with two unanswered is refused");
  t.deepEqual(core.writer!.inSyncNodes.sort(), ["jn1", "jn2"]);
});

test("master core - a node over journalInflightBytesMax is masked; its first batch always goes", (t) => {
  const core = serving({ ...limits, journalInflightBytesMax: 10, batchRecordsMax: 1 });
  core.write(1, 1, false, 0);
  let r = runAdmitted(core, core.ready());
  t.is(r.send.length, 3, "one batch over the byte bound still goes to every node");
  r = ack(core, r.send.filter((s) => s.node !== "jn2"), ["jn1", "jn3"]);
  t.deepEqual(r.events, []);
  core.write(2, 1, false, 0);
  r = runAdmitted(core, core.ready());
  t.deepEqual(r.events.map((e) => e.type === "masked" && e.node), ["jn2"]);
  t.deepEqual(r.send.map((s) => s.node).sort(), ["jn1", "jn3"]);
});

test("master core - a node silent past journalHeartbeatTimeoutMs is masked at the tick, and caught up later", (t) => {
  const core = serving();
  core.heartbeat("jn1", 300);
  core.heartbeat("jn2", 300);
  core.tick(450);
  let r = core.ready();
  t.deepEqual(r.events.map((e) => e.type === "masked" && e.node), ["jn3"]);
  t.deepEqual(r.startCatchUp, [], "a silent node is not caught up");
  core.heartbeat("jn3", 700);
  core.heartbeat("jn1", 700);
  core.heartbeat("jn2", 700);
  core.tick(700);
  r = core.ready();
  t.deepEqual(r.startCatchUp.map((c) => c.node), ["jn3"]);
  core.tick(1000);
  t.deepEqual(core.ready().startCatchUp, [], "one catch-up per node at a time");
  core.caughtUp("jn3", core.writer!.rejoinTxid, r.startCatchUp[0].writer);
  r = core.ready();
  t.deepEqual(r.events, [{ type: "restored", node: "jn3", lastTxid: 10 }]);
  t.true(core.writer!.isInSync("jn3"));
});

test("master core - a node masked for not answering is caught up only once heard after its mask, not on its last heartbeat", (t) => {
  // A frozen node (SIGSTOP): its last heartbeat is recent when it is masked for batches it leaves unanswered; a
  // catch-up started on it waited out a whole request timeout (integration/journal_health saw it "catching-up" 5–7 s).
  const core = serving();
  for (const node of ["jn1", "jn2", "jn3"]) core.heartbeat(node, 1);
  core.write(1, 1, false, 0);
  const r = runAdmitted(core, core.ready());
  const toJn3 = r.send.find((s) => s.node === "jn3")!;
  core.journalReply(toJn3.ref, { ok: false, code: "TIMEOUT", message: "no answer" }, 2);
  t.deepEqual(core.ready().events.map((e) => e.type === "masked" && e.node), ["jn3"]);
  core.tick(250);
  t.deepEqual(core.ready().startCatchUp, [], "its heartbeat (at 1) is within journalHeartbeatTimeoutMs, but older than its mask");
  for (const node of ["jn1", "jn2", "jn3"]) core.heartbeat(node, 260);
  core.tick(500);
  t.deepEqual(core.ready().startCatchUp.map((c) => c.node), ["jn3"], "heard again: caught up");
});

test("master core - a late reply of a node's dead predecessor is ignored by generation", (t) => {
  const core = serving();
  core.write(1, 1, false, 0);
  let r = runAdmitted(core, core.ready());
  const toJn3 = r.send.find((s) => s.node === "jn3")!;
  core.journalReply(toJn3.ref, { ok: false, code: "TIMEOUT", message: "slow" }, 2);
  r = core.ready();
  t.false(core.writer!.isInSync("jn3"));
  // Heard after its mask (at 2): only then is it caught up (NodeWatch.restorable).
  core.heartbeat("jn3", 3);
  core.tick(300);
  const c = core.ready().startCatchUp[0];
  core.caughtUp("jn3", core.writer!.rejoinTxid, c.writer);
  r = core.ready();
  const resent = r.send.find((s) => s.node === "jn3")!;
  t.truthy(resent, "the batch in flight goes to the rejoined node");
  // The predecessor's ok for the same batch must not count as the new incarnation's ack.
  core.journalReply(toJn3.ref, { ok: false, code: "DISK_ERROR", message: "x" }, 301);
  core.ready();
  t.true(core.writer!.isInSync("jn3"), "the predecessor's refusal does not mask the new incarnation");
  core.journalReply(resent.ref, { ok: false, code: "DISK_ERROR", message: "x" }, 301);
  core.ready();
  t.false(core.writer!.isInSync("jn3"), "the new incarnation's own refusal counts");
});

test("master core - roll: admission stops, journaled writes drain, then the driver rolls; a new writer continues", (t) => {
  const core = serving({ ...limits, segmentMaxRecords: 2 });
  core.write(1, 1, false, 0);
  core.write(2, 1, false, 0);
  let r = runAdmitted(core, core.ready());
  core.write(3, 1, false, 1);
  r = { ...core.ready(), send: r.send };
  t.deepEqual(r.execute, [], "segmentMaxRecords reached: admission stops");
  t.is(r.roll, null, "not drained yet: two writes unanswered");
  r = ack(core, r.send, N3);
  t.is(r.answers.length, 2);
  t.not(r.roll, null);
  const old = r.roll!.writer;
  t.is(old.lastTxid, 12);
  core.tick(5);
  t.deepEqual(core.ready().send, [], "nothing goes out while the segment rolls");
  core.rolled(old, ["jn1", "jn2"], 10);
  r = core.ready();
  t.deepEqual(r.execute, [3]);
  t.is(core.writer!.segmentTxid, 13);
  t.deepEqual(
    r.events.map((e) => e.type),
    ["segmentRolled", "masked"],
  );
});

/** A core whose jn3 went silent and is heard again at 700: the catch-up it starts. */
function catchingUpJn3(l: MasterLimits): { core: MasterCore; catchUp: MasterReady["startCatchUp"][number] } {
  const core = serving(l);
  core.heartbeat("jn1", 300);
  core.heartbeat("jn2", 300);
  core.tick(450);
  core.ready();
  for (const node of N3) core.heartbeat(node, 700);
  core.tick(700);
  return { core, catchUp: core.ready().startCatchUp[0] };
}

/** Two writes fill a 2-record segment, acked by jn1 and jn2 at 702. */
function fillSegment(core: MasterCore): MasterReady {
  core.write(1, 1, false, 700);
  core.write(2, 1, false, 700);
  const r = runAdmitted(core, core.ready(), 701);
  return ack(core, r.send, ["jn1", "jn2"], 702);
}

test("master core - a roll due while a node is caught up waits for the catch-up, writes going on; the node then finalizes with the others", (t) => {
  const { core, catchUp } = catchingUpJn3({ ...limits, segmentMaxRecords: 2, rollHoldForCatchUpMs: 1000 });
  t.is(catchUp.node, "jn3");
  let r = fillSegment(core);
  t.is(r.answers.length, 2);
  // Before: the roll ran at once; the catch-up's next answer found another writer, or its rejoin came while the roll
  // ran and the node was masked again ("did not open the next segment"): with rolls faster than a catch-up, never restored.
  t.is(r.roll, null, "segmentMaxRecords reached while jn3 is caught up for this segment: the roll waits");
  core.write(3, 1, false, 703);
  r = runAdmitted(core, core.ready(), 704);
  t.is(core.inflight, 1, "writes are admitted meanwhile");
  r = ack(core, r.send, ["jn1", "jn2"], 705);
  t.deepEqual(r.answers.map((a) => a.id), [3]);
  t.is(r.roll, null);
  core.caughtUp("jn3", core.writer!.rejoinTxid, catchUp.writer);
  r = core.ready();
  t.deepEqual(r.events, [{ type: "restored", node: "jn3", lastTxid: 13 }]);
  t.not(r.roll, null, "the catch-up ended: the roll starts");
  t.deepEqual([...r.roll!.writer.inSyncNodes].sort(), N3, "jn3 finalizes the segment with the others");
  core.rolled(r.roll!.writer, N3, 710);
  r = core.ready();
  t.deepEqual(r.events.map((e) => e.type), ["segmentRolled"], "jn3 is not masked again");
  t.true(core.writer!.isInSync("jn3"));
});

test("master core - orphan effects asked for in a Ready are journaled and committed before a roll starts", (t) => {
  // Simulator seed 93309: the catch-up holding a due roll ended; the next tick asked for orphan expiries and found the
  // writer drained in the same Ready, and the driver journaled txid 114 just before rolling the segment at it.
  const { core, catchUp } = catchingUpJn3({ ...limits, segmentMaxRecords: 2, rollHoldForCatchUpMs: 1000 });
  t.is(fillSegment(core).roll, null, "held for jn3's catch-up");
  core.catchUpEnded("jn3", catchUp.writer);
  core.tick(710, 0);
  let r = core.ready();
  t.true(r.takeOrphans);
  t.is(r.roll, null, "not in the Ready that takes the orphans");
  const txid = core.orphans(payload("expired"))!;
  ack(core, r.send, ["jn1", "jn2"], 710); // the idle commit notice
  r = runAdmitted(core, core.ready(), 711);
  t.is(r.roll, null, "the orphan record is not committed yet");
  r = ack(core, r.send, ["jn1", "jn2"], 712);
  t.not(r.roll, null, "drained: the roll starts");
  t.is(r.roll!.writer.lastTxid, txid);
  t.is(r.roll!.writer.committedTxid, txid);
});

test("master core - a roll waits for a catch-up at most rollHoldForCatchUpMs after it came due", (t) => {
  const { core } = catchingUpJn3({ ...limits, segmentMaxRecords: 2, rollHoldForCatchUpMs: 1000 });
  t.is(fillSegment(core).roll, null, "due at 702, held");
  for (const node of N3) core.heartbeat(node, 1600);
  core.tick(1600);
  t.is(core.ready().roll, null, "still held at 1600");
  for (const node of N3) core.heartbeat(node, 1702);
  core.tick(1702);
  const r = core.ready();
  t.not(r.roll, null, "the catch-up never ended: the roll starts once the hold is over");
  t.true(core.isCatchingUp("jn3"), "the catch-up itself goes on until its next answer");
});

test("master core - a roll held for a catch-up runs once its segment holds twice its bounds (ROLL_HOLD_GROWTH_MAX)", (t) => {
  const { core } = catchingUpJn3({ ...limits, segmentMaxRecords: 2, rollHoldForCatchUpMs: 1000 });
  t.is(fillSegment(core).roll, null, "2 records: held");
  core.write(3, 1, false, 703);
  let r = runAdmitted(core, core.ready(), 704);
  t.is(ack(core, r.send, ["jn1", "jn2"], 705).roll, null, "3 records: held");
  core.write(4, 1, false, 706);
  r = runAdmitted(core, core.ready(), 707);
  r = ack(core, r.send, ["jn1", "jn2"], 708);
  t.is(ROLL_HOLD_GROWTH_MAX, 2);
  t.not(r.roll, null, "4 records = twice segmentMaxRecords: the roll runs, the catch-up still under way");
  t.true(core.isCatchingUp("jn3"));
});

test("master core - with rollHoldForCatchUpMs 0 a roll never waits for a catch-up", (t) => {
  const { core } = catchingUpJn3({ ...limits, segmentMaxRecords: 2, rollHoldForCatchUpMs: 0 });
  t.not(fillSegment(core).roll, null);
});

test("master core - a failed roll fails the term", (t) => {
  const core = serving({ ...limits, segmentMaxRecords: 1 });
  core.write(1, 1, false, 0);
  let r = runAdmitted(core, core.ready());
  r = ack(core, r.send, N3);
  core.rollFailed(r.roll!.writer, "finalize on 1 of 2 nodes");
  r = core.ready();
  t.is(r.failed, "segment roll: finalize on 1 of 2 nodes");
  t.false(core.serving);
});

test("master core - reset: writes not journaled are refused, journaled ones drain, then the driver resets", (t) => {
  const core = serving();
  for (let id = 1; id <= 3; id++) core.write(id, 1, false, 0);
  let r = core.ready();
  core.outcome(1, { ok: true, value: "OK" });
  core.record(1, payload("a"));
  core.oversized(2, 5000);
  core.write(4, 1, false, 1);
  core.flush(1);
  r = core.ready();
  t.deepEqual(
    r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]),
    [
      [2, "PAYLOAD_TOO_LARGE"],
      [3, "OVERLOADED"],
    ],
  );
  t.deepEqual(r.execute, [], "admission stops during the reset");
  t.is(r.reset, null, "write 1 is journaled and unanswered");
  core.outcome(3, { ok: true, value: "late" });
  r = ack(core, r.send, N3);
  t.deepEqual(
    r.answers.map((a) => a.id),
    [1],
  );
  t.is(r.reset?.reason, "the write's effects take more than 5000 bytes, over writeEffectsBytesMax 1000");
  core.resetDone(r.reset!.writer);
  r = core.ready();
  t.deepEqual(r.execute, [4]);
  t.deepEqual(
    r.events.map((e) => e.type),
    ["redisReset"],
  );
});

test("master core - failure answers every unanswered write NO_QUORUM once; queued writes wait for the next term", (t) => {
  const core = serving();
  for (let id = 1; id <= 4; id++) core.write(id, 1, false, 0);
  let r = core.ready();
  core.record(1, payload("a"));
  core.outcome(1, { ok: true, value: "OK" });
  core.flush(1);
  r = core.ready();
  const sends = r.send;
  core.journalReply(sends[0].ref, { ok: false, code: "EPOCH_FENCED", message: "epoch 4" }, 2);
  r = core.ready();
  t.regex(r.failed ?? "", /fenced by jn1/);
  t.deepEqual(
    r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]),
    [
      [1, "NO_QUORUM"],
      [2, "NO_QUORUM"],
      [3, "NO_QUORUM"],
    ],
  );
  // A journaled write's answer names its txid (11, the first after the 10 of serving(); 2 and 3 were never recorded): none is invented.
  t.deepEqual(
    r.answers.map((a) => (a.reply.ok ? "" : a.reply.message)),
    [`outcome unknown: txid 11 journaled, not confirmed by a majority of journal nodes: ${r.failed}`, `outcome unknown: ${r.failed}`, `outcome unknown: ${r.failed}`],
  );
  core.outcome(2, { ok: true, value: "late" });
  core.journalReply(sends[1].ref, OK, 3);
  t.deepEqual(core.ready().answers, [], "late outcomes and replies of the failed term answer nothing");
  core.start(4, 12, N3, 5);
  t.deepEqual(core.ready().execute, [4]);
});

test("master core - a script is a barrier: nothing more is admitted until the driver releases it", (t) => {
  const core = serving();
  core.write(1, 1, true, 0);
  core.write(2, 1, false, 0);
  t.deepEqual(core.ready().execute, [1]);
  t.deepEqual(core.ready().execute, []);
  core.barrierReleased(1);
  t.deepEqual(core.ready().execute, [2]);
});

test("master core - orphans are taken once the stream is idle for orphanEffectsFlushMs, and journaled", (t) => {
  const core = serving();
  core.write(1, 1, false, 0);
  core.ready();
  core.tick(100, 0);
  t.false(core.ready().takeOrphans, "a write waits for its record: the orphans may be its effects");
  core.outcome(1, { ok: true, value: "OK" });
  core.record(1, payload("a"));
  core.tick(101, 80);
  t.false(core.ready().takeOrphans, "not idle long enough");
  core.tick(130, 80);
  t.true(core.ready().takeOrphans);
  t.is(core.orphans(payload("expired")), 12);
});

test("master core - queued writes past their deadline are refused, never run: OVERLOADED while serving, NOT_WRITER without a writer", (t) => {
  // CI (session 23): a planned switchover's new master recovered past a queued write's deadline, and the write was
  // answered NO_QUORUM ("outcome unknown") although it never reached Redis.
  const core = new MasterCore(limits);
  core.write(1, 1, false, 0);
  core.tick(1001);
  const r = core.ready();
  t.deepEqual(r.execute, []);
  t.is(r.answers[0].reply.ok ? "ok" : r.answers[0].reply.code, "NOT_WRITER");
  t.regex(r.answers[0].reply.ok ? "" : r.answers[0].reply.message, /not run/);
});

test("master core - a late reply from an earlier term does not free a slot of the node's in-flight bound in this term", (t) => {
  // master.ts before the core cleared its counts at a new writer, and late replies of the old writer then decremented
  // the new writer's: a slow node could hold more than journalBatchesInflightMax batches.
  const core = serving({ ...limits, batchRecordsMax: 1 });
  core.write(1, 1, false, 0);
  const old = runAdmitted(core, core.ready()).send.find((s) => s.node === "jn3")!;
  core.fail("fenced");
  core.ready();
  core.start(4, 12, N3, 10);
  core.ready();
  const toJn3: SendOrder[] = [];
  for (let id = 2; id <= 3; id++) {
    core.write(id, 1, false, 10);
    const r = runAdmitted(core, core.ready(), 10);
    toJn3.push(...r.send.filter((s) => s.node === "jn3"));
    ack(core, r.send, ["jn1", "jn2"], 10);
  }
  t.is(toJn3.length, 2, "two batches unanswered on jn3: at journalBatchesInflightMax");
  core.journalReply(old.ref, OK, 11); // the earlier term's late answer
  core.write(4, 1, false, 11);
  const r = runAdmitted(core, core.ready(), 11);
  t.false(
    r.send.some((s) => s.node === "jn3"),
    "a third batch is not sent to jn3",
  );
  t.false(core.writer!.isInSync("jn3"), "jn3 is masked instead");
});

test("master core - writes admitted in the step that fails the term are answered, not executed", (t) => {
  const core = serving();
  core.write(1, 1, false, 0);
  core.fail("fenced");
  const r = core.ready();
  t.deepEqual(r.execute, []);
  t.deepEqual(
    r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]),
    [[1, "NO_QUORUM"]],
  );
});

// ---- issue #11: dedupe of retried writes, and the planned switchover's drain ----

const cid = (seq: number) => ({ client: "c1", seq });
const recordOf = (seq: number, value: string) => ({ client: "c1", seq, reply: { ok: true as const, value }, replyDropped: false });

test("master core - a retry of a committed write is answered from the dedupe window, never executed again", (t) => {
  const window = new DedupeWindow(defaults);
  const core = new MasterCore(limits, undefined, window);
  core.start(3, 11, N3, 0);
  core.ready();
  core.write(1, 10, false, 0, cid(7));
  let r = core.ready();
  t.deepEqual(r.execute, [1]);
  core.outcome(1, { ok: true, value: 5 });
  core.record(1, payload("c"), { client: "c1", seq: 7, reply: { ok: true, value: 5 }, replyDropped: false });
  core.flush(1);
  r = ack(core, core.ready().send, ["jn1", "jn2"]);
  t.deepEqual(r.answers, [{ id: 1, reply: { ok: true, txid: 11, reply: 5 } }]);
  // The retry (same client id and seq): the original reply, marked duplicate; nothing to execute.
  core.write(2, 10, false, 3, cid(7));
  r = core.ready();
  t.deepEqual(r.execute, []);
  t.deepEqual(r.answers, [{ id: 2, reply: { ok: true, txid: 11, reply: 5, duplicate: true } }]);
  // Another seq of the same client is a new write.
  core.write(3, 10, false, 3, cid(8));
  t.deepEqual(core.ready().execute, [3]);
});

test("master core - retries of a write still in flight wait for the original's answer; a failed term answers all", (t) => {
  const core = new MasterCore(limits, undefined, new DedupeWindow(defaults));
  core.start(3, 11, N3, 0);
  core.ready();
  core.write(1, 10, false, 0, cid(1));
  core.write(2, 10, false, 0, cid(1));
  core.write(3, 10, false, 0, cid(1));
  let r = core.ready();
  t.deepEqual(r.execute, [1], "the retries are not executed");
  core.outcome(1, { ok: true, value: "OK" });
  core.record(1, payload("k"), recordOf(1, "OK"));
  core.flush(1);
  r = ack(core, core.ready().send, ["jn1", "jn3"]);
  t.deepEqual(r.answers.map((a) => a.id), [1, 2, 3], "one answer, to the original and to both retries");
  t.true(r.answers.every((a) => a.reply.ok && a.reply.txid === 11));
  // In flight when the term fails: the original and its retry both get NO_QUORUM (outcome unknown).
  core.write(4, 10, false, 2, cid(2));
  core.write(5, 10, false, 2, cid(2));
  core.ready();
  core.fail("fenced");
  r = core.ready();
  t.deepEqual(r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]), [[4, "NO_QUORUM"], [5, "NO_QUORUM"]]);
});

test("master core - a retry past the dedupe window of a tracked client is RETRY_EXPIRED, not applied", (t) => {
  const window = new DedupeWindow({ ...defaults, dedupeWindowRecords: 1 });
  window.observe(1, recordOf(1, "OK"));
  window.observe(2, recordOf(2, "OK"));
  const core = new MasterCore(limits, undefined, window);
  core.start(3, 3, N3, 0);
  core.ready();
  core.write(1, 10, false, 0, cid(1));
  const r = core.ready();
  t.deepEqual(r.execute, []);
  t.deepEqual(r.answers.map((a) => (a.reply.ok ? "ok" : a.reply.code)), ["RETRY_EXPIRED"]);
});

/**
 * Simulator seed 1 (issue #11): a write committed at txid 30 whose writer failed before it learnt the commit was
 * answered NO_QUORUM; its retry reached the same master while it recovered, before its rebuild had shown the window
 * txid 30, was looked up then ("new"), queued, and executed again once the master served: one id, two records.
 */
test("master core - a retry queued while not serving is looked up in the window when admitted, after the rebuild", (t) => {
  const window = new DedupeWindow(defaults);
  const core = new MasterCore(limits, undefined, window);
  core.write(1, 10, false, 0, cid(25));
  t.deepEqual(core.ready().answers, [], "queued: no writer yet");
  // The rebuild reads the recovered log, which holds the original's record.
  window.observe(30, recordOf(25, "OK"));
  core.start(3, 31, N3, 0);
  const r = core.ready();
  t.deepEqual(r.execute, [], "never executed again");
  t.deepEqual(r.answers, [{ id: 1, reply: { ok: true, txid: 30, reply: "OK", duplicate: true } }]);
  t.is(core.queued, 0);
});

test("master core - a planned switchover drains: admission stops, and it is drained once everything admitted is answered", (t) => {
  const core = serving();
  core.write(1, 10, false, 0);
  const admitted = core.ready();
  t.deepEqual(admitted.execute, [1]);
  core.startHandover();
  core.write(2, 10, false, 0);
  t.deepEqual(core.ready().execute, [], "nothing more is admitted");
  let r = runAdmitted(core, admitted);
  t.false(r.handoverDrained, "write 1 is not committed yet");
  r = ack(core, r.send, ["jn1", "jn2"]);
  t.deepEqual(r.answers.map((a) => a.id), [1]);
  t.true(r.handoverDrained);
  t.deepEqual(r.execute, [], "write 2 stays queued");
  core.tick(100, 0);
  t.false(core.ready().takeOrphans, "drained: orphan effects wait (the new master's Redis expires its keys itself)");
  core.stop("handed over");
  r = core.ready();
  t.deepEqual(r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]), [[2, "NOT_WRITER"]], "never executed: retried at the new master");
});

test("master core - a cancelled switchover admits again", (t) => {
  const core = serving();
  core.startHandover();
  core.write(1, 10, false, 0);
  t.deepEqual(core.ready().execute, []);
  core.cancelHandover();
  core.tick(1);
  t.deepEqual(core.ready().execute, [1]);
});

test("master core - a retry queued before the window learnt its original (a takeover's catch-up) is answered at admission, not executed", (t) => {
  const window = new DedupeWindow(defaults);
  const core = new MasterCore(limits, undefined, window);
  core.write(1, 10, false, 0, cid(7)); // arrives while the new master still feeds its Redis the committed tail
  t.deepEqual(core.ready().answers, []);
  window.observe(10, recordOf(7, "OK")); // the catch-up reaches the original's record
  core.start(3, 11, N3, 1, window);
  const r = core.ready();
  t.deepEqual(r.execute, []);
  t.deepEqual(r.answers, [{ id: 1, reply: { ok: true, txid: 10, reply: "OK", duplicate: true } }]);
});

test("master core - isEmptyReady: an idle core asks nothing; a drained switchover alone is work", (t) => {
  const core = serving();
  t.true(isEmptyReady(core.ready()), "an idle serving core asks nothing");
  core.startHandover();
  const drained = core.ready();
  t.true(drained.handoverDrained, "nothing admitted: drained at once");
  t.false(isEmptyReady(drained), "both drivers (master.ts, sim_master.ts) must act on it");
  t.true(isEmptyReady(core.ready()), "said once");
  core.cancelHandover();
  core.write(1, 10, false, 0);
  t.false(isEmptyReady(core.ready()), "a write to execute");
});

test("master core - a resent copy that finds no responder changes nothing; its ack commits the batch (issue #14)", (t) => {
  const core = serving({ ...limits, batchResendMs: 100 });
  core.write(1, 1, false, 0);
  let r = runAdmitted(core, core.ready());
  ack(core, r.send, ["jn1"]);
  // The copies to jn2 and jn3 were lost with a nats-server: no answer. batchResendMs later they go again.
  core.tick(101);
  r = core.ready();
  const again = r.send.filter((s) => s.ref.resend);
  t.deepEqual(again.map((s) => s.node).sort(), ["jn2", "jn3"]);
  // jn3's link is still failing over: no responders (TIMEOUT). It stays in step.
  core.journalReply(again.find((s) => s.node === "jn3")!.ref, { ok: false, code: "TIMEOUT", message: "503" }, 102);
  t.true(core.writer!.isInSync("jn3"));
  core.journalReply(again.find((s) => s.node === "jn2")!.ref, OK, 103);
  r = core.ready();
  t.deepEqual(r.answers.map((a) => a.id), [1], "jn1's ack and jn2's ack of the resent copy commit it");
});

test("master core - after the master's own link to NATS failed over, the batch in flight goes again at once", (t) => {
  const core = serving({ ...limits, batchResendMs: 100 });
  core.write(1, 1, false, 0);
  runAdmitted(core, core.ready());
  core.busReconnected(5);
  const r = core.ready();
  t.deepEqual(r.send.map((s) => s.node).sort(), N3, "not waiting for batchResendMs");
  t.true(r.send.every((s) => s.ref.resend));
});

test("master core - a resent copy that would pass journalInflightBytesMax is not sent, and masks nobody: the first copy's answer decides", (t) => {
  // The batch is larger than half the bound: its first copy goes (one batch always does), a second would not fit.
  const core = serving({ ...limits, batchResendMs: 100, journalInflightBytesMax: 16 });
  core.write(1, 1, false, 0);
  const first = runAdmitted(core, core.ready());
  t.true(first.send.length === 3 && first.send.every((s) => s.batch.records.length > 8));
  core.tick(300);
  const r = core.ready();
  t.deepEqual(r.send.filter((s) => s.ref.resend), [], "no resent copy past the bound");
  t.deepEqual(r.events.filter((e) => e.type === "masked"), [], "nobody masked for it");
  for (const node of N3) t.true(core.writer!.isInSync(node));
  t.deepEqual(ack(core, first.send, ["jn1", "jn2"], 350).answers.map((a) => a.id), [1], "the first copies' acks commit it");
});

// ---- a connection's writes run in its order (src/master/write_order.ts) ----

const after = (seq: number, prev: number) => ({ client: "c1", seq, after: prev });
const codes = (r: MasterReady): [number, string][] => r.answers.map((a) => [a.id, a.reply.ok ? "ok" : a.reply.code]);

test("master core - a write whose connection's earlier write was refused OVERLOADED does not overtake it; the resend runs both in order", (t) => {
  const core = new MasterCore({ ...limits, writesQueuedMax: 1 }, undefined, new DedupeWindow(defaults));
  core.write(1, 10, false, 0, cid(1)); // another connection's write fills the queue (no writer yet)
  core.write(2, 10, false, 0, cid(5)); // seq 5: refused, the queue is full
  t.deepEqual(codes(core.ready()), [[2, "OVERLOADED"]]);
  core.start(3, 11, N3, 0); // room again: write 1 runs
  t.deepEqual(core.ready().execute, [1]);
  core.write(3, 10, false, 1, after(6, 5)); // seq 6, pipelined right behind 5, arrives once there is room
  let r = core.ready();
  t.deepEqual(r.execute, [], "seq 6 does not run before seq 5's resend");
  t.deepEqual(codes(r), [[3, "OVERLOADED"]]);
  // The connection resends 5 then 6, in order: both run, 5 first.
  core.write(4, 10, false, 2, cid(5));
  core.write(5, 10, false, 2, after(6, 5));
  r = core.ready();
  t.deepEqual(r.execute, [4, 5]);
  t.deepEqual(codes(r), []);
});

test("master core - a write behind one that expired in the queue, or whose term failed, is refused until that one comes again", (t) => {
  const core = new MasterCore(limits, undefined, new DedupeWindow(defaults));
  core.write(1, 10, false, 0, cid(5));
  core.write(2, 10, false, 500, after(6, 5));
  core.tick(1001); // seq 5 waited past its deadline with no writer: NOT_WRITER; seq 6 still within its own
  t.deepEqual(codes(core.ready()), [[1, "NOT_WRITER"]]);
  core.start(3, 11, N3, 1001);
  let r = core.ready();
  t.deepEqual(r.execute, [], "seq 6 is not run at admission");
  t.deepEqual(codes(r), [[2, "OVERLOADED"]]);
  // A term that fails with seq 7 executed: seq 8, arriving for the next term, waits for 7's resend.
  core.write(3, 10, false, 1002, after(7, 6));
  t.deepEqual(core.ready().execute, [], "behind 6 (refused)");
  core.write(4, 10, false, 1003, cid(6));
  core.write(5, 10, false, 1003, after(7, 6));
  t.deepEqual(core.ready().execute, [4, 5]);
  core.fail("fenced");
  t.deepEqual(codes(core.ready()), [[4, "NO_QUORUM"], [5, "NO_QUORUM"]]);
  core.start(4, 11, N3, 1004);
  core.ready();
  core.write(6, 10, false, 1005, after(8, 7));
  t.deepEqual(codes(core.ready()), [[6, "OVERLOADED"]], "seq 8 is refused: 7's outcome is unknown, its resend comes first");
});

test("master core - a resend answered from the dedupe window (it had committed) frees the writes behind it", (t) => {
  const window = new DedupeWindow(defaults);
  window.observe(11, recordOf(5, "OK"));
  const core = new MasterCore(limits, undefined, window);
  core.start(3, 12, N3, 0);
  core.ready();
  core.fail("fenced"); // no writer: writes are refused after their deadline
  core.ready();
  core.write(1, 10, false, 0, after(6, 5));
  core.tick(1001);
  t.deepEqual(codes(core.ready()), [[1, "NOT_WRITER"]]);
  core.start(4, 12, N3, 1001);
  core.ready();
  core.write(2, 10, false, 1001, cid(5)); // seq 5's resend: committed already
  t.deepEqual(core.ready().answers.map((a) => a.reply.ok && a.reply.duplicate), [true]);
  core.write(3, 10, false, 1001, after(7, 6));
  t.deepEqual(codes(core.ready()), [[3, "OVERLOADED"]], "6 was refused itself");
  core.write(4, 10, false, 1001, cid(6));
  core.write(5, 10, false, 1001, after(7, 6));
  t.deepEqual(core.ready().execute, [4, 5]);
});

test("master core - a resend queued behind its connection's later write, still queued from before, does not let that write overtake it", (t) => {
  // Review s21: the refusal was forgotten as soon as the resend was queued, but the later write's first copy (queued
  // before the resend) still stood ahead of it. The client resends at once when its link or the master's fails over
  // (masterReconnected) while that first copy still waits in the master's queue.
  const core = new MasterCore(limits, undefined, new DedupeWindow(defaults));
  core.write(1, 10, false, 0, cid(5));
  core.write(2, 10, false, 500, after(6, 5));
  core.tick(1001); // seq 5 waited past its deadline: refused; seq 6's first copy still waits
  t.deepEqual(codes(core.ready()), [[1, "NOT_WRITER"]]);
  core.write(3, 10, false, 1002, cid(5)); // the group's resend: 5 (nothing unanswered before it), then 6 after 5
  core.write(4, 10, false, 1002, after(6, 5)); // waits for 6's first copy (same id)
  core.ready();
  core.start(3, 11, N3, 1003);
  const r = core.ready();
  const ran = [...r.execute];
  t.true(ran.includes(3), "seq 5's resend runs");
  t.false(ran.indexOf(2) !== -1 && ran.indexOf(2) < ran.indexOf(3), `seq 6 ran before seq 5's resend: executed ${JSON.stringify(ran)}`);
});

test("master core - a write naming an earlier write this master has not seen (on its way in fragments, or lost) is refused; seen, answered or committed ones do not hold it", (t) => {
  const c = new MasterCore(limits, undefined, new DedupeWindow(defaults));
  c.start(3, 11, N3, 0);
  c.ready();
  c.write(1, 10, false, 1, after(6, 5)); // seq 5 has not arrived (its last fragment is still on its way)
  let r = c.ready();
  t.deepEqual(r.execute, []);
  t.deepEqual(codes(r), [[1, "OVERLOADED"]]);
  c.write(2, 10, false, 2, cid(5)); // 5 arrives and runs; Redis refuses it (a Redis error: no record, in no window)
  t.deepEqual(c.ready().execute, [2]);
  c.rejected(2, { ok: false, code: "REDIS_ERROR" as never, message: "WRONGTYPE" });
  t.deepEqual(codes(c.ready()), [[2, "REDIS_ERROR"]]);
  c.write(3, 10, false, 3, after(7, 5)); // behind 5, answered lately: runs
  c.write(4, 10, false, 3, after(8, 7)); // behind 7, running here: runs
  t.deepEqual(c.ready().execute, [3, 4]);
});

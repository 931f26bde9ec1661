/**
 * The data node's role changes (src/datanode/data_node_core.ts): the order of a takeover, a step-down at any point of
 * it, the takeover deadline, and elections after a node won a lower epoch than it had heard before.
 */
import test from "ava";
import { DataNodeCore } from "../../src/datanode/data_node_core.js";
import type { PeerBeat } from "../../src/datanode/election_core.js";
import type { WriterStart } from "../../src/master/recovery_core.js";

const LIMITS = { masterTimeoutMs: 600, masterProbeAfterMs: 200, electionRankDelayMs: 150, takeoverTimeoutMs: 5000 };
const beat = (id: string, over: Partial<PeerBeat> = {}): PeerBeat => ({ id, role: "replica", epoch: 0, appliedTxid: 0, priority: 1, eligible: true, ...over });
const self = { appliedTxid: 10, eligible: true };
const start = (epoch: number): WriterStart => ({ clusterId: "c", epoch, endTxid: 12, inSync: ["jn1", "jn2"], decision: "kept" });

/** A core that campaigned at 600 and won `epoch`. */
function winner(epoch = 4): DataNodeCore {
  const core = new DataNodeCore("d1", 1, LIMITS, 0);
  core.tick(self, 600);
  core.ready();
  core.won(start(epoch), 650);
  return core;
}

test("a won campaign releases the replica, then takes over, then serves; a step-down then wipes and rejoins", (t) => {
  const core = new DataNodeCore("d1", 1, LIMITS, 0);
  core.tick(self, 599);
  t.deepEqual(core.ready(), []);
  core.tick(self, 600);
  t.deepEqual(core.ready(), [{ kind: "campaign", rank: 0 }]);
  t.true(core.campaigning);
  core.won(start(4), 650);
  t.deepEqual(core.ready(), [{ kind: "releaseReplica", start: start(4) }]);
  core.released(700, 0, 12);
  t.deepEqual(core.ready(), [{ kind: "takeOver", start: start(4) }]);
  t.is(core.epoch, 4);
  core.serving();
  t.is(core.phase, "serving");
  core.heard(beat("d2", { role: "master", epoch: 5 }), 800);
  t.deepEqual(core.ready(), [{ kind: "stopMaster", reason: "d2 is master in epoch 5, above ours (4)" }]);
  core.ended("fenced", 820, 100);
  t.deepEqual(core.ready(), [{ kind: "rejoin", wipe: true, reason: "fenced" }]);
  core.rejoined();
  t.is(core.phase, "replica");
  t.is(core.role, "replica");
});

test("a lost campaign is a replica again, quiet for its backoff", (t) => {
  const core = new DataNodeCore("d1", 1, LIMITS, 0);
  core.tick(self, 600);
  core.ready();
  core.lost(700, 300);
  t.is(core.phase, "replica");
  core.tick(self, 999);
  t.deepEqual(core.ready(), []);
  core.tick(self, 1000);
  t.deepEqual(core.ready(), [{ kind: "campaign", rank: 0 }]);
});

/** Review finding (b): a step-down heard while the replica was being released was dropped (no master to tell yet). */
test("a step-down heard while the replica is released is kept: the master role never starts, the replica restarts", (t) => {
  const core = winner(4);
  t.is(core.ready()[0].kind, "releaseReplica");
  core.heard(beat("d2", { role: "master", epoch: 6 }), 700);
  t.deepEqual(core.ready(), [], "nothing to stop yet");
  core.released(750, 0, 12);
  const orders = core.ready();
  t.deepEqual(orders, [{ kind: "rejoin", wipe: false, reason: "d2 is master in epoch 6, above ours (4) (before the takeover started)" }]);
  t.is(core.phase, "rejoining");
});

/** Review finding (a): a takeover that hangs beat as master for ever, and held every other node back. */
test("a takeover that has not served by its deadline gives the role up", (t) => {
  const core = winner(4);
  core.ready();
  core.released(700, 0, 12);
  core.ready();
  core.tick(self, 650 + LIMITS.takeoverTimeoutMs - 1);
  t.deepEqual(core.ready(), []);
  core.tick(self, 650 + LIMITS.takeoverTimeoutMs);
  t.deepEqual(core.ready(), [{ kind: "stopMaster", reason: "the takeover of epoch 4 did not serve within 5000 ms" }]);
  core.ended("gave up", 5700, 0);
  t.deepEqual(core.ready(), [{ kind: "rejoin", wipe: true, reason: "gave up" }]);
});

test("a release that hangs past the deadline is abandoned (the driver restarts the node)", (t) => {
  const core = winner(4);
  core.ready();
  core.tick(self, 650 + LIMITS.takeoverTimeoutMs);
  t.deepEqual(core.ready(), [{ kind: "abandon", reason: "the takeover of epoch 4 did not serve within 5000 ms" }]);
  core.released(6000, 0, 12);
  t.deepEqual(core.ready(), [], "a late release changes nothing");
});

test("a master that serves has no deadline", (t) => {
  const core = winner(4);
  core.released(700, 0, 12);
  core.serving();
  core.ready();
  core.tick(self, 100_000);
  t.deepEqual(core.ready(), []);
});

/**
 * Review finding (c): the highest epoch heard never fell back. Winning epoch e on a majority proves no master above e
 * exists (after the journal was formatted anew, say): the winner must hear masters of epochs above e again.
 */
test("a node that wins a lower epoch than it heard before listens to masters above it again", (t) => {
  const core = new DataNodeCore("d1", 1, LIMITS, 0);
  core.heard(beat("d2", { role: "master", epoch: 9 }), 100);
  core.tick(self, 800);
  core.ready();
  core.won(start(2), 850);
  core.released(900, 0, 12);
  core.serving();
  core.ready();
  // A master of epoch 3 (above ours, below the 9 heard before the format) must make us step down...
  core.heard(beat("d3", { role: "master", epoch: 3 }), 1000);
  t.deepEqual(core.ready(), [{ kind: "stopMaster", reason: "d3 is master in epoch 3, above ours (2)" }]);
  core.ended("fenced", 1000, 0);
  core.ready();
  core.rejoined();
  // ...and, as a replica, keep us quiet while it beats.
  for (let now = 1100; now <= 3000; now += 100) {
    core.heard(beat("d3", { role: "master", epoch: 3 }), now);
    core.tick(self, now);
  }
  t.deepEqual(core.ready(), []);
});

test("a planned switchover picks a live eligible standby, or says why not", (t) => {
  const core = winner(4);
  core.released(700, 0, 12);
  core.serving();
  core.heard(beat("d2", { appliedTxid: 5 }), 800);
  core.heard(beat("d3", { appliedTxid: 9 }), 800);
  t.deepEqual(core.handoverTarget(null, 900), { ok: true, target: "d3" });
  t.deepEqual(core.handoverTarget("d2", 900), { ok: true, target: "d2" });
  t.false(core.handoverTarget("d9", 900).ok);
  t.false(new DataNodeCore("d4", 1, LIMITS, 0).handoverTarget(null, 0).ok, "not serving");
});

/** A serving core (epoch 4) that heard standbys d2 (applied 5) and d3 (applied 9) at 800. */
function servingWithStandbys(): DataNodeCore {
  const core = winner(4);
  core.released(700, 0, 12);
  core.serving();
  core.heard(beat("d2", { appliedTxid: 5 }), 800);
  core.heard(beat("d3", { appliedTxid: 9 }), 800);
  core.ready();
  return core;
}

test("a planned switchover drains, asks the target to campaign, then hands off; the asker learns it", (t) => {
  const core = servingWithStandbys();
  t.deepEqual(core.startSwitchover(null, 900, 500), { ok: true, target: "d3" });
  t.deepEqual(core.ready(), [{ kind: "drain" }]);
  t.deepEqual(core.startSwitchover("d2", 910, 500), { ok: false, code: "ILLEGAL_STATE", reason: "a switchover is under way already" });
  core.tick(self, 1399);
  t.deepEqual(core.ready(), [], "the drain has until 1400");
  core.drainEnded(true);
  t.deepEqual(core.ready(), [{ kind: "askCampaign", target: "d3" }]);
  core.tick(self, 5000);
  t.deepEqual(core.ready(), [], "no drain deadline once drained");
  core.targetAnswered(true, "");
  t.deepEqual(core.ready(), [
    { kind: "handOff", target: "d3", reason: "planned switchover to d3" },
    { kind: "switchoverDone", outcome: { ok: true, target: "d3" } },
  ]);
  // The hand-off ends the master role as any end does: wipe and rejoin, and nothing more of the switchover.
  core.ended("handed over", 5100, 0);
  t.deepEqual(core.ready(), [{ kind: "rejoin", wipe: true, reason: "handed over" }]);
});

test("a switchover whose drain times out, or whose target refuses, resumes admission; one whose writer fails ends", (t) => {
  const timedOut = servingWithStandbys();
  timedOut.startSwitchover("d2", 900, 200);
  timedOut.ready();
  timedOut.tick(self, 1100);
  t.deepEqual(timedOut.ready(), [
    { kind: "resumeAdmission", reason: "the drain timed out" },
    { kind: "switchoverDone", outcome: { ok: false, code: "TIMEOUT", reason: "the master could not drain its writes in time; it serves on" } },
  ]);
  timedOut.drainEnded(true);
  t.deepEqual(timedOut.ready(), [], "a late drain changes nothing");
  t.true(timedOut.startSwitchover("d2", 1200, 200).ok, "another may start");

  const refused = servingWithStandbys();
  refused.startSwitchover("d2", 900, 500);
  refused.drainEnded(true);
  refused.ready();
  refused.targetAnswered(false, "d2 cannot campaign now");
  t.deepEqual(refused.ready(), [
    { kind: "resumeAdmission", reason: "d2 refused" },
    { kind: "switchoverDone", outcome: { ok: false, code: "ILLEGAL_STATE", reason: "d2 did not take the handover: d2 cannot campaign now" } },
  ]);

  const failed = servingWithStandbys();
  failed.startSwitchover(null, 900, 500);
  failed.ready();
  failed.ended("writer failed: no quorum", 950, 0);
  t.deepEqual(failed.ready(), [
    { kind: "switchoverDone", outcome: { ok: false, code: "NOT_WRITER", reason: "the master role ended: writer failed: no quorum" } },
    { kind: "rejoin", wipe: true, reason: "writer failed: no quorum" },
  ]);
  failed.drainEnded(false);
  t.deepEqual(failed.ready(), []);
});

test("a switchover is refused at once when not serving or with no standby to take it", (t) => {
  t.deepEqual(new DataNodeCore("d4", 1, LIMITS, 0).startSwitchover(null, 0, 500), { ok: false, code: "NOT_WRITER", reason: "d4 is not serving writes" });
  const core = servingWithStandbys();
  const r = core.startSwitchover("d9", 900, 500);
  t.is(r.ok ? "" : r.code, "ILLEGAL_STATE");
  t.deepEqual(core.ready(), []);
});

test("a win whose recovery ends before the txids this node applied is stale: the role ends before any takeover", (t) => {
  const core = winner(4);
  t.deepEqual(core.ready(), [{ kind: "releaseReplica", start: start(4) }]);
  core.released(700, 0, 13);
  const orders = core.ready();
  t.false(orders.some((o) => o.kind === "takeOver"), JSON.stringify(orders));
  t.true(orders.some((o) => o.kind === "rejoin" && !o.wipe), JSON.stringify(orders));
});

test("a standby orders a probe of its silent master; a 'gone' answer makes it campaign at once, a master never probes", (t) => {
  const core = new DataNodeCore("d2", 1, LIMITS, 0);
  core.heard(beat("d1", { role: "master", epoch: 3 }), 1000);
  core.tick(self, 1100);
  t.deepEqual(core.ready(), []);
  core.tick(self, 1200);
  const probe = { id: "d1", epoch: 3, sentAtMs: 1200 };
  t.deepEqual(core.ready(), [{ kind: "probeMaster", probe }]);
  t.true(core.probed(probe, { kind: "noResponders" }, self, 1205));
  t.deepEqual(core.ready(), [{ kind: "campaign", rank: 0 }]);
  // A reconnected link: no probe for a timeout, the master's silence is waited out as before.
  const relinked = new DataNodeCore("d2", 1, LIMITS, 0);
  relinked.heard(beat("d1", { role: "master", epoch: 3 }), 1000);
  relinked.linkReconnected(1000);
  relinked.tick(self, 1200);
  t.deepEqual(relinked.ready(), []);
  const master = winner();
  master.released(700, 0, 12);
  master.ready();
  master.tick(self, 1500);
  t.deepEqual(master.ready(), []);
});

import test from "ava";
import { ElectionCore, type PeerBeat } from "../../src/datanode/election_core.js";

const LIMITS = { masterTimeoutMs: 600, masterProbeAfterMs: 200, electionRankDelayMs: 150 };
const beat = (id: string, over: Partial<PeerBeat> = {}): PeerBeat => ({ id, role: "replica", epoch: 0, appliedTxid: 0, priority: 1, eligible: true, ...over });
const self = (appliedTxid: number, eligible = true) => ({ appliedTxid, eligible });

test("nobody campaigns while a master beats; after its silence the most caught-up standby campaigns first", (t) => {
  const d2 = new ElectionCore("d2", 1, LIMITS, 0);
  const d3 = new ElectionCore("d3", 1, LIMITS, 0);
  for (let now = 0; now <= 1000; now += 100) {
    for (const core of [d2, d3]) core.heard(beat("d1", { role: "master", epoch: 3 }), now);
    d2.heard(beat("d3", { appliedTxid: 40 }), now);
    d3.heard(beat("d2", { appliedTxid: 50 }), now);
    t.deepEqual(d2.tick(self(50), now), { kind: "none" });
    t.deepEqual(d3.tick(self(40), now), { kind: "none" });
  }
  // The master is silent from 1000 on: at 1600 d2 (applied 50) campaigns, d3 (applied 40) only 150 ms later.
  t.deepEqual(d2.tick(self(50), 1599), { kind: "none" });
  t.deepEqual(d2.tick(self(50), 1600), { kind: "campaign", rank: 0 });
  t.deepEqual(d3.tick(self(40), 1600), { kind: "none" });
  // d2 beats on as a standby (say its campaign failed): d3, second in line, campaigns 150 ms after the silence.
  d3.heard(beat("d2", { appliedTxid: 50 }), 1700);
  t.deepEqual(d3.tick(self(40), 1749), { kind: "none" });
  t.deepEqual(d3.tick(self(40), 1750), { kind: "campaign", rank: 1 });
});

test("at start the full timeout of listening counts from the first beat, not from the constructor: a slow start still ranks", (t) => {
  // Built at 0; their Redis took 2 s to serve, so each node beats from ~2000 (d3 a little later).
  const d1 = new ElectionCore("d1", 1, LIMITS, 0);
  const d2 = new ElectionCore("d2", 1, LIMITS, 0);
  d1.beating(2000);
  d2.beating(2050);
  // Before: at its first tick each had been silent 2 s, heard no peer and ranked itself first: both campaigned.
  t.deepEqual(d1.tick(self(0), 2000), { kind: "none" });
  t.deepEqual(d2.tick(self(0), 2050), { kind: "none" });
  // Half a timeout (300 ms, three heartbeats) of listening from the first beat: each hears the other.
  for (let now = 2100; now < 2300; now += 100) {
    d1.heard(beat("d2"), now);
    d2.heard(beat("d1"), now);
    t.deepEqual(d1.tick(self(0), now), { kind: "none" });
    t.deepEqual(d2.tick(self(0), now), { kind: "none" });
  }
  t.deepEqual(d1.tick(self(0), 2300), { kind: "campaign", rank: 0 });
  t.deepEqual(d2.tick(self(0), 2350), { kind: "none" }, "d2 ranks second: it waits its rank delay");
  d2.heard(beat("d1", { role: "candidate" }), 2400);
  t.deepEqual(d2.tick(self(0), 2500), { kind: "none" }, "and hears d1's candidacy meanwhile");
  // A master heard before the first beat still counts (the subscription is open from the start).
  const d3 = new ElectionCore("d3", 1, LIMITS, 0);
  d3.heard(beat("d1", { role: "master", epoch: 1 }), 2500);
  d3.beating(1000);
  t.deepEqual(d3.tick(self(0), 3000), { kind: "none" });
  t.deepEqual(d3.tick(self(0), 3100), { kind: "campaign", rank: 0 });
});

test("ties are broken by priority, then by id; priority 0 and ineligible nodes never campaign", (t) => {
  const d2 = new ElectionCore("d2", 1, LIMITS, 0);
  d2.heard(beat("d3", { priority: 5 }), 500);
  d2.heard(beat("d1", { priority: 1 }), 500);
  t.deepEqual(d2.ranking(self(0), 600), ["d3", "d1", "d2"]);
  const never = new ElectionCore("d4", 0, LIMITS, 0);
  t.deepEqual(never.tick(self(100), 10_000), { kind: "none" });
  const faulty = new ElectionCore("d5", 1, LIMITS, 0);
  t.deepEqual(faulty.tick(self(100, false), 10_000), { kind: "none" });
  // A peer not heard within the timeout does not hold anyone back.
  t.deepEqual(d2.ranking(self(0), 1200), ["d2"]);
});

test("a candidate's heartbeat holds the others back; a lost campaign backs off", (t) => {
  const d3 = new ElectionCore("d3", 1, LIMITS, 0);
  d3.heard(beat("d2", { role: "candidate" }), 700);
  t.deepEqual(d3.tick(self(0), 1000), { kind: "none" });
  t.deepEqual(d3.tick(self(0), 1200), { kind: "none" });
  t.is(d3.tick(self(0), 1300).kind, "campaign");
  d3.lost(1300, 500);
  t.deepEqual(d3.tick(self(0), 1700), { kind: "none" });
  t.is(d3.tick(self(0), 1800).kind, "campaign");
});

test("a master steps down when it hears a master of a higher epoch, not a lower one", (t) => {
  const d1 = new ElectionCore("d1", 1, LIMITS, 0);
  t.is(d1.tick(self(0), 600).kind, "campaign");
  d1.won(4, 650);
  t.deepEqual(d1.heard(beat("d2", { role: "master", epoch: 3 }), 700), { kind: "none" });
  t.deepEqual(d1.heard(beat("d2", { role: "master", epoch: 5 }), 800), { kind: "stepDown", reason: "d2 is master in epoch 5, above ours (4)" });
  d1.steppedDown(800, 0);
  t.is(d1.currentRole, "replica");
  // Stepped down: it waits for that master's silence like any standby.
  t.deepEqual(d1.tick(self(0), 1300), { kind: "none" });
});

test("a stale master's heartbeat does not hold back an election once a newer epoch was seen", (t) => {
  const d3 = new ElectionCore("d3", 1, LIMITS, 0);
  d3.heard(beat("d2", { role: "master", epoch: 7 }), 100);
  // d2 dies; d1, a zombie of epoch 6, keeps beating.
  for (let now = 200; now <= 800; now += 100) d3.heard(beat("d1", { role: "master", epoch: 6 }), now);
  t.is(d3.tick(self(0), 800).kind, "campaign");
});

/** d2, a standby that heard master d1 of epoch 3 at 1000 (its own link up since 0). */
const standby = (): ElectionCore => {
  const d2 = new ElectionCore("d2", 1, LIMITS, 0);
  d2.heard(beat("d1", { role: "master", epoch: 3 }), 1000);
  return d2;
};

test("a silent master is probed from masterProbeAfterMs until the timeout; no responders lets the first in line campaign at once", (t) => {
  const d2 = standby();
  t.is(d2.probeDue(self(0), 1199), null);
  const probe = d2.probeDue(self(0), 1200);
  t.deepEqual(probe, { id: "d1", epoch: 3, sentAtMs: 1200 });
  // One probe at a time: another only once this one is answered, or lost (two periods).
  t.is(d2.probeDue(self(0), 1500), null);
  t.deepEqual(d2.tick(self(10), 1210), { kind: "none" });
  t.true(d2.probed(probe!, { kind: "noResponders" }, 1210));
  t.deepEqual(d2.tick(self(10), 1210), { kind: "campaign", rank: 0 });
  // A probe whose answer was lost frees the slot after two periods; past the timeout nobody probes: it decides.
  const lost = standby();
  t.truthy(lost.probeDue(self(0), 1200));
  t.is(lost.probeDue(self(0), 1599), null);
  t.is(lost.probeDue(self(0), 1600), null, "past the timeout");
  const paced = standby();
  t.truthy(paced.probeDue(self(0), 1200));
  t.false(paced.probed({ id: "d1", epoch: 3, sentAtMs: 1200 }, { kind: "noAnswer" }, 1300));
  t.truthy(paced.probeDue(self(0), 1300), "an answered probe frees the slot at once");
});

test("a probe's answer ends the wait only if the master says it is gone and nothing was heard since it left", (t) => {
  const gone = (answer: Parameters<ElectionCore["probed"]>[1], heardAgainMs: number | null, id = "d1"): boolean => {
    const d2 = standby();
    const probe = d2.probeDue(self(0), 1250)!;
    if (heardAgainMs !== null) d2.heard(beat("d1", { role: "master", epoch: 3 }), heardAgainMs);
    const ended = d2.probed({ ...probe, id }, answer, 1260);
    t.is(ended, d2.tick(self(0), 1260).kind === "campaign");
    return ended;
  };
  t.true(gone({ kind: "noResponders" }, null));
  // The process restarted (a replica now), it campaigns, or it serves an older epoch than the one heard: gone.
  t.true(gone({ kind: "answered", role: "replica", epoch: 0 }, null));
  t.true(gone({ kind: "answered", role: "candidate", epoch: 0 }, null));
  t.true(gone({ kind: "answered", role: "master", epoch: 2 }, null));
  // Still master (of our epoch or a newer one), or no answer (frozen, cut off): the timeout decides.
  t.false(gone({ kind: "answered", role: "master", epoch: 3 }, null));
  t.false(gone({ kind: "answered", role: "master", epoch: 4 }, null));
  t.false(gone({ kind: "noAnswer" }, null));
  // Its heartbeat came after the probe left, or in the same millisecond: the answer is stale.
  t.false(gone({ kind: "noResponders" }, 1255));
  t.false(gone({ kind: "noResponders" }, 1250));
  // An answer about another node than the master that holds us back.
  t.false(gone({ kind: "noResponders" }, null, "d9"));
});

test("after a probe's verdict the others keep their rank delay, and a backing-off or ineligible node neither probes nor campaigns", (t) => {
  const d3 = new ElectionCore("d3", 1, LIMITS, 0);
  d3.heard(beat("d1", { role: "master", epoch: 3 }), 1000);
  d3.heard(beat("d2", { appliedTxid: 50 }), 1100);
  const probe = d3.probeDue(self(40), 1200)!;
  t.true(d3.probed(probe, { kind: "noResponders" }, 1210));
  // d2 is ahead (applied 50): d3, rank 1, waits 150 ms from the verdict.
  t.deepEqual(d3.tick(self(40), 1359), { kind: "none" });
  t.deepEqual(d3.tick(self(40), 1360), { kind: "campaign", rank: 1 });
  t.is(standby().probeDue(self(0, false), 1200), null, "ineligible");
  t.is(new ElectionCore("d4", 0, LIMITS, 0).probeDue(self(0), 1200), null, "priority 0");
  const backingOff = new ElectionCore("d2", 1, LIMITS, 0);
  t.is(backingOff.tick(self(0), 600).kind, "campaign");
  backingOff.lost(600, 700);
  backingOff.heard(beat("d1", { role: "master", epoch: 3 }), 1000);
  t.is(backingOff.probeDue(self(0), 1200), null, "backing off until 1300");
  t.deepEqual(backingOff.probeDue(self(0), 1300), { id: "d1", epoch: 3, sentAtMs: 1300 });
});

test("a master never probes; nor does a standby whose own link came back within a timeout (the master may still be redialling)", (t) => {
  const d1 = new ElectionCore("d1", 1, LIMITS, 0);
  t.is(d1.tick(self(0), 600).kind, "campaign");
  d1.won(4, 650);
  d1.heard(beat("d2", { role: "master", epoch: 3 }), 700);
  t.is(d1.probeDue(self(0), 950), null);
  const d2 = standby();
  d2.linkReconnected(900);
  t.is(d2.probeDue(self(0), 1300), null);
  d2.heard(beat("d1", { role: "master", epoch: 3 }), 1500);
  t.deepEqual(d2.probeDue(self(0), 1700), { id: "d1", epoch: 3, sentAtMs: 1700 });
});

test("a candidate's takeover is not cut short by a probe of the master before it, even after a stale heartbeat of that master", (t) => {
  const d3 = new ElectionCore("d3", 1, LIMITS, 0);
  d3.heard(beat("d1", { role: "master", epoch: 3 }), 1000);
  d3.heard(beat("d2", { role: "candidate" }), 1050);
  // d1 beats once more (it hands over, or resumes from a freeze), then steps down; d2's beats stall.
  d3.heard(beat("d1", { role: "master", epoch: 3 }), 1100);
  t.is(d3.probeDue(self(0), 1300), null);
  t.is(d3.probeDue(self(0), 1600), null);
  t.deepEqual(d3.tick(self(0), 1699), { kind: "none" });
  t.is(d3.tick(self(0), 1700).kind, "campaign");
});

test("time this node could not hear is not silence: a late tick (frozen, stalled) does not campaign, the heartbeats read after it keep it quiet; never two late ticks skipped in a row", (t) => {
  const d2 = standby();
  for (let now = 1000; now <= 1200; now += 100) t.deepEqual(d2.tick(self(0), now), { kind: "none" });
  // Frozen from 1200 to 2700 (SIGSTOP): the first tick after it comes before the master's buffered heartbeats are read.
  t.deepEqual(d2.tick(self(0), 2700), { kind: "none" }, "the late tick does not campaign");
  d2.heard(beat("d1", { role: "master", epoch: 3 }), 2701);
  t.deepEqual(d2.tick(self(0), 2800), { kind: "none" }, "the master was alive all along");
  // A master really dead while we were stalled: the next tick campaigns, however late it is too.
  const d3 = standby();
  t.deepEqual(d3.tick(self(0), 1200), { kind: "none" });
  t.deepEqual(d3.tick(self(0), 2700), { kind: "none" });
  t.is(d3.tick(self(0), 3100).kind, "campaign", "a second late tick in a row is not skipped");
});

test("after its own link came back a standby listens a probe's wait before it campaigns (the master's heartbeats resume within it)", (t) => {
  const quiet = (): ElectionCore => {
    const d2 = standby();
    // The master beats until 1500; then our link is down until 2050 (nothing heard, ticks go on).
    for (let now = 1000; now <= 2000; now += 100) {
      if (now <= 1500) d2.heard(beat("d1", { role: "master", epoch: 3 }), now);
      t.deepEqual(d2.tick(self(0), now), { kind: "none" }, `at ${now}`);
    }
    d2.linkReconnected(2050);
    t.deepEqual(d2.tick(self(0), 2100), { kind: "none" }, "silent 600 ms, but our link is back for only 50 ms");
    t.deepEqual(d2.tick(self(0), 2200), { kind: "none" });
    return d2;
  };
  const alive = quiet();
  alive.heard(beat("d1", { role: "master", epoch: 3 }), 2220);
  t.deepEqual(alive.tick(self(0), 2250), { kind: "none" }, "its heartbeat came: no election");
  const dead = quiet();
  t.is(dead.tick(self(0), 2250).kind, "campaign", "a link back for masterProbeAfterMs, and still silence: campaign");
});

test("with masterProbeAfterMs 0 (no probe) a tick on time is not late: a dead master is replaced on the first tick past masterTimeoutMs", (t) => {
  // Review s21: 'late' was measured against masterProbeAfterMs, so with 0 every tick was late and every other one skipped.
  const d2 = new ElectionCore("d2", 1, { ...LIMITS, masterProbeAfterMs: 0 }, 0);
  for (let now = 900; now <= 1500; now += 100) {
    if (now <= 1000) d2.heard(beat("d1", { role: "master", epoch: 3 }), now);
    t.deepEqual(d2.tick(self(0), now), { kind: "none" }, `at ${now}`);
  }
  t.is(d2.tick(self(0), 1600).kind, "campaign", "silent masterTimeoutMs, ticks every 100 ms");
});

test("a campaign knows the highest master epoch heard and the last promise it accounted for (its own, or a rival it deferred to)", (t) => {
  const d2 = new ElectionCore("d2", 1, LIMITS, 0);
  t.deepEqual(d2.campaignGuard, { masterEpochHeard: 0, knownPromise: 0 });
  d2.heard(beat("d1", { role: "master", epoch: 3 }), 100);
  t.deepEqual(d2.campaignGuard, { masterEpochHeard: 3, knownPromise: 0 });
  t.is(d2.tick(self(10), 800).kind, "campaign", "d1 silent past its timeout");
  d2.lost(800, 300, 4);
  t.deepEqual(d2.campaignGuard, { masterEpochHeard: 3, knownPromise: 4 }, "deferred to a rival's epoch 4");
  t.is(d2.tick(self(10), 1000).kind, "none", "backing off");
  t.is(d2.tick(self(10), 1200).kind, "campaign");
  d2.lost(1200, 300);
  t.deepEqual(d2.campaignGuard, { masterEpochHeard: 3, knownPromise: 4 }, "a campaign lost before it asked for an epoch keeps what it knew");
  t.is(d2.tick(self(10), 1400).kind, "none", "backing off");
  t.is(d2.tick(self(10), 1600).kind, "campaign");
  d2.lost(1600, 300, 5);
  t.deepEqual(d2.campaignGuard, { masterEpochHeard: 3, knownPromise: 5 }, "its own epoch 5, promised then lost: no rival's");
});

test("a switchover's campaign has no guard: the draining master asked for it, and a target that had not heard its epoch deferred to it (review)", (t) => {
  const d2 = new ElectionCore("d2", 1, LIMITS, 0);
  t.true(d2.campaignNow(self(10)));
  t.is(d2.campaignGuard, null);
  d2.lost(0, 300);
  d2.heard(beat("d1", { role: "master", epoch: 3 }), 400);
  t.is(d2.tick(self(10), 1100).kind, "campaign", "d1 silent past its timeout");
  t.deepEqual(d2.campaignGuard, { masterEpochHeard: 3, knownPromise: 0 }, "a campaign of its own is guarded again");
});

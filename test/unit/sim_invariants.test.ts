/**
 * The simulator's invariants (src/sim/invariants.ts) on their own: exactly once for retried writes and one master per
 * epoch (issue #11), and a committed record kept apart from the simulated disk it was read from.
});

 * The simulator's invariants (src/sim/invariants.ts) on their own: exactly once for retried writes (issue #11), a
 * connection's order, a committed record kept apart from the simulated disk it was read from, and every copy's
 * keyspace the fold of the records it took (issue #10 class 2), with a deliberately wrong replay caught by a small
 * seed sweep.
 */
import test from "ava";
import { Invariants, SimViolation } from "../../src/sim/invariants.js";
import { encodeEffects, encodeWriteRecord } from "../../src/segment/record.js";
import { realCores } from "../../src/sim/cores.js";
import { applyRecord, ModelRedis } from "../../src/sim/model_redis.js";
import { runSimulation } from "../../src/sim/simulator.js";

const effects = [[Buffer.from("INCR"), Buffer.from("k")]];
const withId = (seq: number): Uint8Array => encodeWriteRecord(effects, { id: { client: "c1", seq }, reply: { ok: true, value: seq } }, 256).payload;

test("sim invariants - one write id committed under two txids is a retry applied twice", (t) => {
  const inv = new Invariants();
  inv.learnCommitted(1, 1, withId(5), "a commit");
  inv.learnCommitted(1, 1, withId(5), "a rebuild"); // the same txid learnt again is no duplicate
  inv.learnCommitted(2, 1, encodeEffects(effects), "a commit"); // a record without an id
  const err = t.throws(() => inv.learnCommitted(3, 2, withId(5), "m2's commit"), { instanceOf: SimViolation });
  t.regex(err!.message, /write c1#5 applied twice: committed at txid 1 and at txid 3/);
});

test("sim invariants - an ack, a duplicate's included, must name the committed record holding the write's id", (t) => {
  const inv = new Invariants();
  inv.learnCommitted(1, 1, withId(5), "a commit");
  inv.learnCommitted(2, 1, withId(6), "a commit");
  inv.learnCommitted(3, 1, encodeEffects(effects), "a commit");
  t.notThrows(() => inv.ackedWrite({ client: "c1", seq: 5 }, 1, false));
  t.notThrows(() => inv.ackedWrite({ client: "c1", seq: 5 }, 1, true));
  t.throws(() => inv.ackedWrite({ client: "c1", seq: 5 }, 2, true), { instanceOf: SimViolation, message: /acked as a duplicate at txid 2, whose committed record holds write c1#6/ });
  t.throws(() => inv.ackedWrite({ client: "c1", seq: 5 }, 3, true), { instanceOf: SimViolation, message: /holds no write id/ });
  t.throws(() => inv.ackedWrite({ client: "c1", seq: 7 }, 4, false), { instanceOf: SimViolation, message: /not committed/ });
});

test("sim invariants - a connection's writes commit in the order it sent them; other connections' are not ordered with them", (t) => {
  const inv = new Invariants();
  for (const seq of [1, 2, 3]) inv.connectionWrite({ client: "c1", seq }, "c1/0");
  inv.connectionWrite({ client: "c1", seq: 4 }, "c1/1");
  inv.learnCommitted(1, 1, withId(2), "a commit");
  t.notThrows(() => inv.learnCommitted(2, 1, withId(4), "a commit"), "another connection's write");
  // Learnt out of txid order (a rebuild after a commit): judged by txid, not by when it was learnt.
  t.notThrows(() => inv.learnCommitted(3, 1, withId(3), "a commit"));
  const err = t.throws(() => inv.learnCommitted(4, 1, withId(1), "a rebuild"), { instanceOf: SimViolation });
  t.regex(err!.message, /connection c1\/0: write c1#1 committed at txid 4, after its later write c1#2 \(txid 1\), and the client had not given it up/);
});

test("sim invariants - a write given up with its outcome unknown may commit late; one given up as not applied never commits, unless sent twice", (t) => {
  const inv = new Invariants();
  for (const seq of [1, 2, 3, 4]) inv.connectionWrite({ client: "c1", seq }, "c1/0");
  inv.connectionGaveUp({ client: "c1", seq: 1 }, "unknown");
  inv.learnCommitted(1, 1, withId(2), "a commit");
  t.notThrows(() => inv.learnCommitted(2, 1, withId(1), "a commit"), "its copy was still on its way");
  t.is(inv.connections.counts.lateUnknown, 1);
  inv.connectionGaveUp({ client: "c1", seq: 3 }, "notApplied");
  t.throws(() => inv.learnCommitted(3, 1, withId(3), "a commit"), { instanceOf: SimViolation, message: /write c1#3 committed at txid 3, but the client gave it up as not applied/ });
  const twice = new Invariants();
  twice.connectionWrite({ client: "c1", seq: 4 }, "c1/0");
  twice.connectionDuplicated({ client: "c1", seq: 4 });
  twice.learnCommitted(1, 1, withId(4), "a commit");
  t.notThrows(() => twice.connectionGaveUp({ client: "c1", seq: 4 }, "notApplied"), "a refused copy's twin ran");
  t.is(twice.connections.counts.twinRan, 1);
});

/**
 * Seed 22 with faults aimed at recovery copies (sim.test.ts): txid 1 was first learnt from jn1's finalized segment, a
 * view of jn1's simulated file; a bit later flipped there changed the "committed" record too, and the disk check then
 * found no node holding it intact (jn2 held it intact all along).
 */
test("sim invariants - a committed record learnt from a disk's bytes does not change when those bytes do", (t) => {
  const inv = new Invariants();
  const file = Buffer.from(withId(5));
  inv.learnCommitted(1, 2, file.subarray(0), "jn1's finalized segment");
  file[3] ^= 1 << 3; // the bit flip on jn1
  t.notThrows(() => inv.learnCommitted(1, 2, withId(5), "jn2's finalized segment"));
});

/** One master per epoch (issue #11): a node serves, and acks, only in the epoch its own recovery established. */
test("sim invariants - a writer serves and acks only in an epoch it won", (t) => {
  const inv = new Invariants();
  inv.writerEstablished(2, "d1#1", 0);
  t.notThrows(() => inv.writerServes(2, "d1#1"));
  t.throws(() => inv.writerServes(3, "d2#1"), { instanceOf: SimViolation, message: "d2#1 serves epoch 3, which nobody won" });
  t.throws(() => inv.writerServes(2, "d2#4"), { instanceOf: SimViolation, message: "d2#4 serves epoch 2, which d1#1 won" });
  inv.learnCommitted(1, 2, withId(5), "a commit");
  t.notThrows(() => inv.acked(1, 2, withId(5), "d1#1"));
  t.throws(() => inv.acked(1, 2, withId(5), "d2#4"), { instanceOf: SimViolation, message: /d2#4 acked txid 1 in epoch 2, which d1#1 won/ });
});

/**
 * Issue #10, class 2: a replica or a rebuild that replays effects as a standalone Redis (by its own clock: a key
 * dropped at a `SET … PXAT <past>`, a `PEXPIREAT` of a key it dropped doing nothing) diverges from the fold of the
 * committed records once its replay lags past a TTL; the simulator's TTL workload and held replays make that happen.
 */
test("sim invariants - a replay that expires keys by its own clock is caught within a few seeds", (t) => {
  const cores = { ...realCores, replayExpiresByOwnClock: true };
  for (let seed = 1; seed <= 10; seed++) {
    const r = runSimulation({ seed, cores, ttl: true });
    if (r.ok) continue;
    t.log(`caught at seed ${seed}: ${r.failure}`);
    t.regex(r.failure!, /^invariant: \S+'s keyspace after txid \d+ \((replica apply|rebuild)\) is \{.*\}, the fold of its records \{.*\}$/);
    return;
  }
  t.fail("no seed of 10 caught a replay by the applier's clock");
});

test("sim invariants - the same seeds with the feeder's replay keep every copy's keyspace the fold, late TTLs included", (t) => {
  let lateTtls = 0;
  let checks = 0;
  for (let seed = 1; seed <= 10; seed++) {
    const r = runSimulation({ seed, ttl: true });
    t.true(r.ok, r.failure ?? "");
    lateTtls += r.stats.lateTtls;
    checks += r.stats.keyspaceChecks;
  }
  t.log(`${checks} keyspaces checked, ${lateTtls} TTLs applied after they passed`);
  t.true(lateTtls > 50, "copies replay TTLs that already passed");
});

test("sim invariants - a copy whose keyspace is not the fold of the records it took fails loudly", (t) => {
  const inv = new Invariants();
  const copy = new ModelRedis();
  const set = encodeEffects([["SET", "k", "v", "PXAT", "5"].map((a) => Buffer.from(a))]);
  applyRecord(copy, set, null);
  t.notThrows(() => inv.keyspace.took("r1", 1, set, copy, "replica apply", 100));
  t.is(inv.keyspace.counts.lateTtls, 1);
  const dropped = new ModelRedis();
  t.throws(() => inv.keyspace.took("r2", 1, set, dropped, "replica apply", 100), { instanceOf: SimViolation, message: /r2's keyspace after txid 1 \(replica apply\) is \{\}, the fold of its records \{k=v@5\}/ });
  t.throws(() => inv.keyspace.took("r1", 3, set, copy, "replica apply", 100), { instanceOf: SimViolation, message: /r1 took txid 3 \(replica apply\) after 1/ });
});

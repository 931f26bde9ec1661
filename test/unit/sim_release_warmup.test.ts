/**
 * The simulator's replica role finishes its dedupe window's warm-up at a release (src/sim/sim_replica.ts, as
 * replica.ts's release does, through the same WindowWarmup): it gives up when no journal node serves the records, and
 * a crash of the node stops it (found in review: a crash during the release let the warm-up run on, and its late end
 * clobbered the restarted node's replica role).
 */
import test from "ava";
import { DedupeWindow } from "../../src/dedupe/dedupe_window.js";
import { SimClock } from "../../src/sim/clock.js";
import { realCores } from "../../src/sim/cores.js";
import type { Invariants } from "../../src/sim/invariants.js";
import { ModelRedis } from "../../src/sim/model_redis.js";
import { Prng } from "../../src/sim/prng.js";
import { SimBus } from "../../src/sim/sim_bus.js";
import { SimReplica } from "../../src/sim/sim_replica.js";
import { simConfig } from "../../src/sim/simulator.js";
import { Trace } from "../../src/sim/trace.js";

/** A replica role whose Redis holds txids 1..30 and whose window saw none of them; no journal node ever answers. */
function releasedReplica(): { clock: SimClock; replica: SimReplica; ended: { reason: string }[] } {
  const clock = new SimClock();
  const trace = new Trace(clock);
  const config = simConfig(["jn1", "jn2", "jn3"], [], 8);
  const bus = new SimBus(clock, new Prng(1), { delayMsMin: 0, delayMsMax: 1, slowChance: 0, slowDelayMsMax: 1, lossChance: 0, duplicateChance: 0 }, trace);
  let seq = 0;
  const role = { redis: new ModelRedis(), appliedTxid: 30, window: new DedupeWindow(config) };
  // Nothing is applied here: the invariants only hear that the replica resumes on the Redis it was given.
  const invariants = { replicaResumes: () => {}, keyspace: { adopt: () => {} } } as unknown as Invariants;
  const replica = new SimReplica("d1", config, clock, bus, trace, realCores, invariants, { next: () => ++seq }, role);
  replica.start();
  const ended: { reason: string }[] = [];
  replica.release((handed, reason) => ended.push({ reason: handed === null ? reason : "handed" }));
  return { clock, replica, ended };
}

test("sim release - a warm-up no journal node serves gives up after three rounds of misses", (t) => {
  const { clock, ended } = releasedReplica();
  while (clock.step());
  t.deepEqual(ended, [{ reason: "the dedupe window could not learn txid 1: no journal node served it" }]);
});

test("sim release - a crash stops the release's warm-up: its end never comes", (t) => {
  const { clock, replica, ended } = releasedReplica();
  clock.after(100, () => replica.crash());
  while (clock.step());
  t.deepEqual(ended, []);
});

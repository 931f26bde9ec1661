/**
 * Each deliberately wrong protocol core is caught by the simulation (src/sim) within a bounded number of seeds: the
 * proof that the invariants and the fault schedules can see the bugs they are for. Apart from sim.test.ts (the real
 * cores' seeds) so that ava's two workers share the simulator's CPU time.
 */
import test from "ava";
import { runSimulation, type SimOptions } from "../../src/sim/simulator.js";
import { AIMED_AT_FAILED_COPIES, CONNECTION_ORDER_BROKEN, FAILED_COPY_ACCEPTED, FANOUT_EPOCH_BLIND, FANOUT_UNCOMMITTED, fanoutWrongCores, IGNORES_AFTER, REPLICA_APPLIES_UNCOMMITTED, wrongCores } from "../helpers/wrong_cores.js";

/** A wrong core must be caught within this many seeds. */
const MUTANT_SEEDS_MAX = 200;

/**
 * A fan-out buffer blind to the epoch of a commit index is caught through the forger (sim_forger.ts): records that scan
 * clean in an epoch no writer holds, at the replica's next txids, which the writer's own commit index then covers
 * (caught at 10 of seeds 1..40 with the forger on: 1, 3, 13, …). Without it, not in 150 seeds: in an honest run the
 * buffer must hold an uncommitted tail of epoch E that E+1's recovery dropped, and hear E+1's commit index before any
 * batch of E+1 (which replaces that tail), and the bus seldom orders them so.
 */
const OPTIONS_OF: Record<string, Partial<SimOptions>> = { [FAILED_COPY_ACCEPTED]: AIMED_AT_FAILED_COPIES, [FANOUT_EPOCH_BLIND]: { forger: true } };

/**
 * Recovery that accepts on nodes whose copy failed is caught in about 1 seed in 45 even aimed at it
 * (AIMED_AT_FAILED_COPIES): 25 of seeds 1..1000 before commit hints gave way to fan-outs (session 29; first at seed 4),
 * 21 since (51, 120, 146, …). A bound of 40 held only by the luck of seed 4; at that rate 200 seeds miss it once in 100.
 */
const FAILED_COPY_SEEDS_MAX = 200;

/**
 * Recovery that keeps the longest copy breaks safety only in a rarer schedule (two writers' copies of one segment,
 * the older one longer) and is otherwise stopped by the journal nodes' guards (a finalized copy is never extended),
 * so the run stalls: it takes more seeds to catch — more still since the master catches masked nodes up, which
 * leaves fewer copies of a segment that differ (caught at seed 1330 once, at seed 267 since the fan-out reached the simulator in session 25; seed 1270 stalls with the real cores too: two
 * masters racing the first format, see docs/reliability.md).
 */
const SEEDS_MAX_OF: Record<string, number> = { [FANOUT_UNCOMMITTED]: 10, [FANOUT_EPOCH_BLIND]: 20, "recovery keeps the longest copy": 1500, [FAILED_COPY_ACCEPTED]: FAILED_COPY_SEEDS_MAX, "a dedupe window that forgets": 20, "a dedupe window that answers duplicates with the next txid": 20, [IGNORES_AFTER]: 20 };

/** The invariant that must catch a wrong core, where it is a specific one (issue #11: exactly once for retried writes). */
const CAUGHT_BY: Record<string, RegExp> = {
  "a dedupe window that forgets": /write c1#\d+ applied twice: committed at txid \d+ and at txid \d+/,
  "a dedupe window that answers duplicates with the next txid": /write c1#\d+ acked as a duplicate at txid \d+/,
  [IGNORES_AFTER]: CONNECTION_ORDER_BROKEN,
  [FANOUT_UNCOMMITTED]: REPLICA_APPLIES_UNCOMMITTED,
  [FANOUT_EPOCH_BLIND]: REPLICA_APPLIES_UNCOMMITTED,
};

for (const [name, cores] of Object.entries({ ...wrongCores, ...fanoutWrongCores })) {
  const seedsMax = SEEDS_MAX_OF[name] ?? MUTANT_SEEDS_MAX;
  test(`sim - a wrong core is caught within ${seedsMax} seeds: ${name}`, (t) => {
    for (let seed = 1; seed <= seedsMax; seed++) {
      const r = runSimulation({ seed, cores, ...OPTIONS_OF[name] });
      if (!r.ok) {
        t.log(`caught at seed ${seed}: ${r.failure}`);
        const by = CAUGHT_BY[name];
        if (by !== undefined) t.regex(r.failure!, by, "caught by its invariant");
        else t.pass();
        return;
      }
    }
    t.fail(`${name}: no seed of ${seedsMax} failed`);
  });
}

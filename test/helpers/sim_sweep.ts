/** The simulator's fixed CI sweep, shared by the two files that run its halves (sim.test.ts, sim_sweep.test.ts). */
import type { TestFn } from "ava";
import { describeFailure, runSimulation, SIM_STEPS_DEFAULT } from "../../src/sim/simulator.js";

/** The fixed seeds CI runs (more on demand: npm run sim -- --seeds 10000). */
export const CI_SEEDS = 400;

/**
 * Seeds per test. The tests are serial and yield to the event loop when done, so each result reaches ava before the next test runs:
 * sync tests of one file report only when the whole file is done, and ava's timeout (no result for 5 min) fired on a
 * loaded machine.
 */
const SEEDS_PER_TEST = 100;

/** Seeds from..to, in tests of SEEDS_PER_TEST seeds. */
export function sweepTest(test: TestFn, from: number, to: number): void {
  for (let first = from; first <= to; first += SEEDS_PER_TEST) sweepBlock(test, first, Math.min(to, first + SEEDS_PER_TEST - 1));
}

/** Seeds from..to of the real cores keep every invariant, converge after the faults heal, and carry load. */
function sweepBlock(test: TestFn, from: number, to: number): void {
  const n = to - from + 1;
  test.serial(`sim - seeds ${from}..${to} of the real cores keep every invariant and converge after the faults heal`, async (t) => {
    await new Promise((resolve) => setImmediate(resolve)); // the previous test's result goes out first
    const started = process.hrtime.bigint();
    const failures: string[] = [];
    let acked = 0;
    let writers = 0;
    let rolls = 0;
    let retries = 0;
    let duplicates = 0;
    const fed = { fanout: 0, reads: 0, seeds: 0, refused: 0 };
    for (let seed = from; seed <= to; seed++) {
      const r = runSimulation({ seed });
      fed.fanout += r.stats.appliedFromFanout;
      fed.reads += r.stats.appliedFromReads;
      fed.refused += r.stats.fanoutsRefused;
      if (r.stats.appliedFromFanout > 0) fed.seeds++;
      acked += r.stats.acked;
      writers += r.stats.writers;
      rolls += r.stats.rolls;
      retries += r.stats.retries;
      duplicates += r.stats.duplicates;
      if (!r.ok) failures.push(describeFailure(r, SIM_STEPS_DEFAULT));
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    t.log(`${n} seeds in ${seconds.toFixed(1)} s (${(n / seconds).toFixed(1)} schedules/s); ${acked} writes acked, ${writers} writers elected, ${rolls} segments rolled, ${retries} retries, ${duplicates} answered from a dedupe window; replicas applied ${fed.fanout} records from the fan-out and ${fed.reads} from reads (fed by the fan-out in ${fed.seeds} seeds), ${fed.refused} fan-outs refused`);
    for (const f of failures) t.log(f);
    t.deepEqual(failures, []);
    t.true(acked > n * 50, "the runs carry load");
    t.true(rolls > n, "the master core rolls segments in the runs");
    t.true(retries > n * 10, "the client retries writes with their ids");
    t.true(duplicates > n / 2, "retries of committed writes are answered from the masters' dedupe windows");
    // A fifth of the seeds run without the buffer (fanoutBytesMaxOf): replicas only read there.
    t.true(fed.seeds > n / 2, "replicas apply records from the fan-out in most seeds");
  });
}

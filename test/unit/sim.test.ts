/**
 * The deterministic simulation of the protocol cores (src/sim): one seed is one run, byte for byte; a fixed set of
 * seeds of the real cores keeps every invariant; and each deliberately wrong core is caught within a bounded number
 * of seeds — the proof that the invariants and the fault schedules can see the bugs they are for.
 */
import test from "ava";
import { describeFailure, runSimulation, SIM_STEPS_DEFAULT } from "../../src/sim/simulator.js";
import { wrongCores } from "../helpers/wrong_cores.js";

/** The fixed seeds CI runs (more on demand: npm run sim -- --seeds 10000). */
const CI_SEEDS = 400;
/** A wrong core must be caught within this many seeds. */
const MUTANT_SEEDS_MAX = 200;

test("sim - the same seed gives the same run, byte for byte; another seed another run", (t) => {
  const a = runSimulation({ seed: 4242 });
  const b = runSimulation({ seed: 4242 });
  t.true(a.ok, a.failure ?? "");
  t.is(a.hash, b.hash);
  t.deepEqual(a.trace, b.trace);
  t.deepEqual(a.stats, b.stats);
  t.not(runSimulation({ seed: 4243 }).hash, a.hash);
});

test(`sim - ${CI_SEEDS} seeds of the real cores keep every invariant and converge after the faults heal`, (t) => {
  const started = process.hrtime.bigint();
  const failures: string[] = [];
  let acked = 0;
  let writers = 0;
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    const r = runSimulation({ seed });
    acked += r.stats.acked;
    writers += r.stats.writers;
    if (!r.ok) failures.push(describeFailure(r, SIM_STEPS_DEFAULT));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.log(`${CI_SEEDS} seeds in ${seconds.toFixed(1)} s (${(CI_SEEDS / seconds).toFixed(1)} schedules/s); ${acked} writes acked, ${writers} writers elected`);
  for (const f of failures) t.log(f);
  t.deepEqual(failures, []);
  t.true(acked > CI_SEEDS * 50, "the runs carry load");
});

/**
 * Seeds that once failed with the real cores: 6816, a node formatted as restoring was never restored (the simulated
 * master had no restorer); 6451, a node refused at send failed the writer and the next send threw on the dropped core.
 * Since a batch is bounded by batchRecordsMax (issue #10 class 5), 6816's schedule no longer brings a node back;
 * 6828 formats a node as restoring and brings it back.
 */
for (const seed of [6451, 6816, 6828]) {
  test(`sim - regression: seed ${seed} keeps every invariant and converges`, (t) => {
    const r = runSimulation({ seed });
    t.true(r.ok, r.ok ? "" : describeFailure(r, SIM_STEPS_DEFAULT));
    if (seed === 6828) t.true(r.stats.rejoins > 0, "a journal node was brought back");
  });
}

/**
 * Recovery that keeps the longest copy breaks safety only in a rarer schedule (two writers' copies of one segment,
 * the older one longer) and is otherwise stopped by the journal nodes' guards (a finalized copy is never extended),
 * so the run stalls: it takes more seeds to catch — more still since the master catches masked nodes up, which
 * leaves fewer copies of a segment that differ (caught at seed 1330; seed 1270 stalls with the real cores too: two
 * masters racing the first format, see the README's open issues).
 */
const SEEDS_MAX_OF: Record<string, number> = { "recovery keeps the longest copy": 1500 };

for (const [name, cores] of Object.entries(wrongCores)) {
  const seedsMax = SEEDS_MAX_OF[name] ?? MUTANT_SEEDS_MAX;
  test(`sim - a wrong core is caught within ${seedsMax} seeds: ${name}`, (t) => {
    for (let seed = 1; seed <= seedsMax; seed++) {
      const r = runSimulation({ seed, cores });
      if (!r.ok) {
        t.log(`caught at seed ${seed}: ${r.failure}`);
        t.pass();
        return;
      }
    }
    t.fail(`${name}: no seed of ${seedsMax} failed`);
  });
}

/**
 * `npm run sim -- --seeds N [--from S] [--steps M] [--layout data-nodes]`: runs seeds S..S+N-1 (S = 1 by default) and
 * reports the schedules per second; a failing seed prints its trace and how to replay it. `--seed S` runs one seed and
 * prints every line of its trace. `--layout data-nodes [--safety-ms T]`: the data-node layout (elections, takeovers,
 * step-downs; simulator_data_nodes.ts; its safety phase lasts T simulated ms, not M steps) instead of the legacy one. Exit code 1 when any seed fails.
 */
import { describeFailure, runSimulation, SIM_STEPS_DEFAULT, type SimResult } from "./simulator.js";
import { DATA_NODE_SAFETY_MS, runDataNodeSimulation } from "./simulator_data_nodes.js";

function flag(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = Number(args[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${name} needs a whole number`);
  return v;
}

const USAGE = `usage: npm run sim -- [--seeds N] [--from S] [--steps M] [--calm-bootstrap]
       npm run sim -- --seed S [--steps M] [--calm-bootstrap]
  --seeds N         run seeds S..S+N-1 (default 100), one after the other; failing seeds print their trace
  --from S          the first seed (default 1)
  --seed S          run one seed and print every line of its trace
  --steps M         steps of the safety phase (default ${SIM_STEPS_DEFAULT})
  --calm-bootstrap  no fault before the first writer formatted the cluster
Exit code 1 when any seed fails.`;

function main(args: string[]): number {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const steps = flag(args, "--steps") ?? SIM_STEPS_DEFAULT;
  // Faults from the first step, the cluster's first format included; --calm-bootstrap holds them until a writer exists.
  const bootstrapFaults = !args.includes("--calm-bootstrap");
  const layoutAt = args.indexOf("--layout");
  const layout = layoutAt < 0 ? "legacy" : args[layoutAt + 1];
  if (layout !== "legacy" && layout !== "data-nodes") throw new Error("--layout is legacy or data-nodes");
  const replayFlag = layout === "data-nodes" ? " --layout data-nodes" : "";
  const run = (seed: number, echo: boolean): SimResult =>
    layout === "data-nodes" ? runDataNodeSimulation({ seed, echo, safetyMs: flag(args, "--safety-ms") }) : runSimulation({ seed, steps, echo, bootstrapFaults });
  const one = flag(args, "--seed");
  if (one !== undefined) {
    const r = run(one, true);
    console.log(JSON.stringify({ seed: r.seed, ok: r.ok, hash: r.hash, steps: r.steps, simMs: r.simMs, ...r.stats }));
    if (!r.ok) console.log(describeFailure(r, steps, bootstrapFaults, replayFlag));
    return r.ok ? 0 : 1;
  }
  const count = flag(args, "--seeds") ?? 100;
  const from = flag(args, "--from") ?? 1;
  const started = process.hrtime.bigint();
  let failed = 0;
  const totals = { acked: 0, committed: 0, applied: 0, appliedFromFanout: 0, appliedFromReads: 0, fanouts: 0, fanoutsRefused: 0, seedsFedByFanout: 0, writers: 0, faults: 0, corruptReadsRefused: 0, rejoins: 0, rolls: 0, livenessNotPromised: 0, retries: 0, duplicates: 0, takeovers: 0, switchovers: 0, handedOver: 0, keyspaceChecks: 0, lateTtls: 0, orderPairs: 0, lateUnknown: 0, twinRan: 0, steps: 0 };
  for (let seed = from; seed < from + count; seed++) {
    const r = run(seed, false);
    totals.acked += r.stats.acked;
    totals.committed += r.stats.committed;
    totals.applied += r.stats.applied;
    totals.appliedFromFanout += r.stats.appliedFromFanout;
    totals.appliedFromReads += r.stats.appliedFromReads;
    totals.fanouts += r.stats.fanouts;
    totals.fanoutsRefused += r.stats.fanoutsRefused;
    if (r.stats.appliedFromFanout > 0) totals.seedsFedByFanout++;
    totals.writers += r.stats.writers;
    totals.faults += r.stats.faults;
    totals.corruptReadsRefused += r.stats.corruptReadsRefused;
    totals.rejoins += r.stats.rejoins;
    totals.rolls += r.stats.rolls;
    totals.livenessNotPromised += r.stats.livenessNotPromised;
    totals.retries += r.stats.retries;
    totals.duplicates += r.stats.duplicates;
    totals.takeovers += r.stats.takeovers ?? 0;
    totals.switchovers += r.stats.switchovers ?? 0;
    totals.handedOver += r.stats.handedOver ?? 0;
    totals.keyspaceChecks += r.stats.keyspaceChecks;
    totals.lateTtls += r.stats.lateTtls;
    totals.orderPairs += r.stats.orderPairs;
    totals.lateUnknown += r.stats.lateUnknown;
    totals.twinRan += r.stats.twinRan;
    totals.steps += r.steps;
    if (!r.ok) {
      failed++;
      console.log(describeFailure(r, steps, bootstrapFaults, replayFlag));
    }
    if ((seed - from + 1) % 500 === 0) console.log(`… ${seed - from + 1} seeds, ${failed} failed`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const each = layout === "data-nodes" ? `a ${flag(args, "--safety-ms") ?? DATA_NODE_SAFETY_MS} ms safety phase` : `${steps} steps`;
  console.log(`${layout}: ${count} seeds (${from}..${from + count - 1}), ${each} each: ${count - failed} passed, ${failed} failed in ${seconds.toFixed(1)} s = ${(count / seconds).toFixed(1)} schedules/s`);
  console.log(`totals: ${JSON.stringify(totals)}`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));

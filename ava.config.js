/**
 * ava's settings (in a file, not package.json, for the one thing JSON cannot say: the order of the test files).
 * Two files run at once. The longest files go first, so the run ends on short ones rather than on one long file alone
 * with the other slot idle: durations from a CI log (2026-12-03), longest first (the simulator's files before the rest);
 * the rest alphabetically.
 */
const LONGEST_FIRST = [
  // CPU-bound and timing-free: side by side with each other, not beside the timing bounds of the cluster tests.
  "unit/sim.test",
  "unit/sim_data_nodes",
  "unit/sim_sweep",
  "integration/compaction_faults",
  "integration/nemesis",
  "integration/failover_kills",
  "integration/docs_commands",
  "integration/master_faults",
  "integration/journal_health",
  "integration/fuzz",
  "integration/door_load",
  "integration/failover.test",
  "integration/large_writes",
  "integration/compaction.test",
];

function rank(file) {
  const i = LONGEST_FIRST.findIndex((name) => file.includes(`/test/${name}`));
  return i === -1 ? LONGEST_FIRST.length : i;
}

export default {
  files: ["dist/test/**/*.test.js"],
  timeout: "5m",
  concurrency: 2,
  workerThreads: false,
  verbose: true,
  sortTestFiles: (a, b) => rank(a) - rank(b) || a.localeCompare(b),
};

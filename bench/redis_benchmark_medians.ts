/**
 * The medians of several `npm run bench` runs of the redis-benchmark part, from their BENCH_OUT files:
 *   node dist/bench/redis_benchmark_medians.js run1.json run2.json run3.json
 * prints, per (target, -P, test), the median requests/s (with its ratio to plain Redis's median) and the median p50.
 */
import fs from "node:fs";
import { TARGETS } from "./redis_benchmark.js";
import { benchmarkTable, medianRows, type BenchmarkRow } from "./redis_benchmark_report.js";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: redis_benchmark_medians.js <BENCH_OUT json>…");
  process.exit(2);
}
const runs = files.map((f) => {
  const rows = (JSON.parse(fs.readFileSync(f, "utf8")) as { redisBenchmark?: { rows: BenchmarkRow[] } | null }).redisBenchmark?.rows;
  if (rows === undefined) throw new Error(`${f}: no redis-benchmark results (was BENCH_TARGETS=redis-benchmark?)`);
  return rows;
});
console.log(`Medians of ${runs.length} runs:`);
console.log(benchmarkTable(medianRows(runs), TARGETS));

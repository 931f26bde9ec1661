/** Percentiles over every latency sample of a measurement (no histogram buckets, no sampling). */

/** Nearest-rank percentile of `sorted` (ascending); NaN when there is no sample. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(p * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Sorts a copy of the first `count` samples (typed-array sort is numeric) and returns p50 and p99. */
export function latencySummary(samples: Float64Array, count: number): { p50Ms: number; p99Ms: number } {
  const sorted = samples.slice(0, count).sort();
  return { p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99) };
}

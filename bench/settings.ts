/**
 * The bench's workload and its bounds, in one place. Only the duration is meant to change between runs
 * (BENCH_SECONDS); the rest defines what the figures mean, so changing it makes runs incomparable.
 */

/** Seconds measured per target per concurrency, unless BENCH_SECONDS says otherwise. */
export const DEFAULT_SECONDS = 5;
/** Concurrent closed-loop clients: one (pure latency) and many (group commit / batching under load). */
export const CONCURRENCIES = [1, 256] as const;
/** Writes before the measured window, discarded: connection set-up, JIT, first allocations, fsync warm-up. */
export const WARMUP_MS = 1000;
/**
 * Before that warm-up, every target first takes this many writes from WARM_CLIENTS concurrent clients, unmeasured
 * (BENCH_WARM_WRITES; 0: none): a server runs warm. redis-qjm's actors are Node processes whose hot paths V8
 * compiles only after thousands of calls — a journal node's per batch, so few clients (small batches, many of them)
 * warm it where 64 do not. Without this, the ×1 window measured their interpreter and compiler: ×1 CPU per write fell
 * from ~14 to ~6.5 ms over a fresh cluster's first 30 s (bench/RESULTS.md "A warm cluster").
 */
export const DEFAULT_WARM_WRITES = 20_000;
export const WARM_CLIENTS = 8;
/** The warm writes must be done within this, or the target is declared stalled. */
export const WARM_TIMEOUT_MS = 120_000;
/** Bytes of every written value. */
export const VALUE_BYTES = 100;
/** Keys the writes are spread over. */
export const KEY_SPACE = 10_000;

/** A write not answered within this is counted as an error and its client moves on. */
export const REQUEST_TIMEOUT_MS = 5000;
/** How often the harness looks for writes past REQUEST_TIMEOUT_MS (a watchdog, not one timer per write). */
export const WATCHDOG_INTERVAL_MS = 100;
/** A client that got an error waits this long before its next write, so a dead target is not hammered in a tight loop. */
export const ERROR_BACKOFF_MS = 20;
/** Errors after which a measurement is abandoned: the target is broken, not slow. */
export const ERRORS_MAX = 1000;
/** Latency samples kept per measurement (8 bytes each); reaching it ends the window early. */
export const SAMPLES_MAX = 4_000_000;
/** Starting servers, waiting for them to be ready and opening the connections of one target. */
export const SETUP_TIMEOUT_MS = 60_000;
/** Closing connections and stopping the servers of one target. */
export const TEARDOWN_TIMEOUT_MS = 20_000;
/** Extra time past warm-up + window + one request timeout before a measurement is declared stalled. */
export const DRAIN_SLACK_MS = 2000;
/** Opening one NATS or Redis connection. */
export const CONNECT_TIMEOUT_MS = 5000;

/** redis-qjm's traceSample in the bench: 1 write in this many carries per-hop stamps (BENCH_TRACE_SAMPLE; 0: off). */
export const DEFAULT_TRACE_SAMPLE = 8;

export function benchTraceSample(env: NodeJS.ProcessEnv = process.env): number {
  return wholeNumberEnv(env, "BENCH_TRACE_SAMPLE", DEFAULT_TRACE_SAMPLE);
}

/**
 * BENCH_LAG_RATE, validated: the writes/s every target's P4 run is paced at (0, the default: half of each target's own
 * peak). One rate for all compares the replica lags of redis-qjm and the quorum skeleton under the same load.
 */
export function benchLagRate(env: NodeJS.ProcessEnv = process.env): number {
  return wholeNumberEnv(env, "BENCH_LAG_RATE", 0);
}

/** BENCH_WARM_WRITES, validated: a whole number ≥ 0. */
export function benchWarmWrites(env: NodeJS.ProcessEnv = process.env): number {
  return wholeNumberEnv(env, "BENCH_WARM_WRITES", DEFAULT_WARM_WRITES);
}

/** The variable `name` as a whole number ≥ 0; `fallback` when unset or empty; anything else throws. */
function wholeNumberEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${raw}: not a whole number ≥ 0`);
  return n;
}

/** BENCH_SECONDS, validated: a positive number of seconds. */
export function benchSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.BENCH_SECONDS;
  if (raw === undefined || raw === "") return DEFAULT_SECONDS;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`BENCH_SECONDS=${raw}: not a positive number of seconds`);
  return n;
}

// ---- redis-benchmark through the front doors (bench/redis_benchmark.ts; issue #12's second must-show) ----

/** The tests it runs (`-t`), its clients (`-c`) and the pipeline depths (`-P`) each target is measured at. */
export const REDIS_BENCHMARK_TESTS = "set,get,incr,lpush,hset,mset";
export const REDIS_BENCHMARK_CLIENTS = 50;
export const REDIS_BENCHMARK_PIPELINES = [1, 16] as const;
/**
 * `-n` (requests per test) is BENCH_SECONDS × this: about a door's rate at -P 1 on 2 cores, so a door's test lasts
 * about BENCH_SECONDS (plain Redis does the same count in a fraction of it). The same -n on every target, so that
 * the state checks and the ratios compare equal work.
 */
export const REDIS_BENCHMARK_REQUESTS_PER_SECOND = 2000;
/** One redis-benchmark run (six tests) is killed past 6 × BENCH_SECONDS × this factor + REDIS_BENCHMARK_SLACK_MS. */
export const REDIS_BENCHMARK_TIMEOUT_FACTOR = 10;
export const REDIS_BENCHMARK_SLACK_MS = 60_000;
/** After a run, every replica must have applied the master's committed txid within this, before keyspaces are compared. */
export const REDIS_BENCHMARK_CATCH_UP_MS = 60_000;

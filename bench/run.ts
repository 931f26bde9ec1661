/**
 * `npm run bench`: the baselines and redis-qjm, each at every concurrency, in one run, so
 * that every ratio compares figures taken on the same machine in the same minutes.
 *
 *   BENCH_SECONDS=<s>   measured seconds per target per concurrency (default 5)
 *   BENCH_OUT=<file>    also write the results as JSON there
 *   BENCH_KEEP=1        keep the servers' logs and data directories (printed at the end) whatever the outcome
 *   BENCH_TRACE_SAMPLE=<n>  redis-qjm traces 1 write in n (default 8; 0: off; the quorum skeleton every write): the
 *                       per-hop breakdown, and a third run of each at 256 clients paced at half its peak for the
 *                       replica lag (P4)
 *   BENCH_LAG_RATE=<n>  pace every P4 run at n writes/s instead (0, default: half of each target's peak)
 *   BENCH_TARGETS=a,b   only the targets whose name contains one of these (the floor is measured with any other
 *                       throughput target); `skeleton` selects the quorum skeleton (bench/skeleton.ts: the write
 *                       path's required steps alone, in Node); `bootstrap` selects the bootstrap bench (bench/bootstrap.ts)
 *   BENCH_BOOTSTRAP_KEYS=<n>  keys the bootstrap bench fills the cluster with (default 1,000,000; it takes minutes)
 *   `failover` selects the failover bench (bench/failover.ts: kills and partitions of the master, redis-qjm beside
 *   Redis + Sentinel); BENCH_FAILOVER_CLIENTS / _KILLS / _PARTITIONS / _SEED shape it (defaults 32 / 10 / 2 / 1)
 *   `redis-benchmark` selects redis-benchmark through the front doors (bench/redis_benchmark.ts: -P 1 and -P 16, 50
 *   clients, plain Redis, Redis appendfsync always, the master's and a replica's door; replies and state checked)
 *   `bounds` selects the bounds bench (bench/bounds.ts, issue #13 P6: the master's RSS and the journal nodes' disk
 *   under 150,000 SETs from 200 clients, with all journal nodes up and with one SIGSTOPped; about 3 minutes;
 *   BENCH_BOUNDS_HEAP_MB=<n> the data nodes' V8 old-space limit, default 96, 0: node's own; BENCH_BOUNDS_PHASES=up
 *   or stopped: only that scenario)
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BASELINES } from "./baselines.js";
import { BOOTSTRAP_TARGET, bootstrapKeys, bootstrapMarkdown, bootstrapReport, runBootstrapBench, type BootstrapBenchResult } from "./bootstrap.js";
import { BOUNDS_TARGET, boundsFailed, boundsReport, runBoundsBench, type BoundsPhase } from "./bounds.js";
import { killServersOnExit } from "./cleanup.js";
import { failoverMarkdown, failoverNotes, failoverSettings, failoverTextTable, runFailoverBench, type FailoverResult } from "./failover.js";
import { runTarget, type Measurement, type TargetFactory } from "./harness.js";
import { qjmFailover } from "./qjm_failover.js";
import { QJM_TARGET, qjmTarget } from "./qjm_target.js";
import { REDIS_BENCHMARK_TARGET, TARGETS as REDIS_BENCHMARK_TARGETS, runRedisBenchmarkBench, type RedisBenchmarkResult } from "./redis_benchmark.js";
import { benchmarkTable } from "./redis_benchmark_report.js";
import { breakdownTable, cpuNotes, lagNotes, markdownTable, notes, textTable, withFloorRatios, writeJson } from "./report.js";
import { sentinelFailover } from "./sentinel_failover.js";
import { SKELETON_TARGET, skeletonTarget } from "./skeleton.js";
import { CONCURRENCIES, KEY_SPACE, VALUE_BYTES, WARMUP_MS, benchLagRate, benchSeconds, benchTraceSample, benchWarmWrites } from "./settings.js";

/** BENCH_TARGETS name of the failover bench. */
const FAILOVER_TARGET = "failover";

/** The floor every other target is divided by. */
const FLOOR = "NATS request/reply";
/** The peer whose CPU per acked write redis-qjm's is compared with. */
const CPU_REFERENCE = "JetStream R3 publish";
/** P4 (replica lag) is measured at this share of a target's peak (its writes/s at the largest concurrency). */
const LAG_LOAD_SHARE = 0.5;
/** The targets whose replicas report when they applied a write (P4). */
const LAG_TARGETS: readonly string[] = [QJM_TARGET, SKELETON_TARGET];

function version(command: string): string {
  try {
    return execFileSync(command, ["--version"], { encoding: "utf8", timeout: 5000 }).trim();
  } catch {
    return "unknown";
  }
}

async function main(): Promise<number> {
  killServersOnExit();
  const seconds = benchSeconds();
  // Read before any measurement, so a bad value fails at once.
  benchWarmWrites();
  benchLagRate();
  // The machine is shared: the load around the run says how much the figures can be trusted.
  const loadBefore = os.loadavg()[0];
  const wanted = (process.env.BENCH_TARGETS ?? "").split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "");
  const named = (factory: TargetFactory): string => factory(os.tmpdir()).name;
  const selects = (name: string): boolean => wanted.length === 0 || wanted.some((w) => name.toLowerCase().includes(w));
  let factories: TargetFactory[] = [...BASELINES, skeletonTarget, (dir: string) => qjmTarget(dir)].filter((factory) => named(factory) === FLOOR || selects(named(factory)));
  // The floor alone divides nothing (e.g. BENCH_TARGETS=bootstrap), unless it was asked for.
  if (factories.every((factory) => named(factory) === FLOOR) && !(wanted.length > 0 && selects(FLOOR))) factories = [];
  const bootstrapWanted = selects(BOOTSTRAP_TARGET);
  // Read before any measurement, so a bad value fails at once rather than after minutes of throughput runs.
  if (bootstrapWanted) bootstrapKeys();
  const failoverWanted = selects(FAILOVER_TARGET);
  const failover = failoverWanted ? failoverSettings() : null;
  const redisBenchmarkWanted = selects(REDIS_BENCHMARK_TARGET);
  const boundsWanted = selects(BOUNDS_TARGET);

  const root = fs.mkdtempSync(path.join(os.tmpdir(), "redis-qjm-bench-"));
  // Removed on every exit (including Ctrl-C), except when a failed target's logs are worth reading.
  let keepRoot = false;
  process.on("exit", () => {
    if (!keepRoot) fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  });
  const results: Measurement[] = [];
  /** Runs at an offered rate (P4), apart from the closed-loop table. */
  const paced: Measurement[] = [];
  let bootstrap: BootstrapBenchResult | null = null;
  let bootstrapFailed = false;
  let failoverResults: FailoverResult[] = [];
  let redisBenchmark: RedisBenchmarkResult | null = null;
  let bounds: BoundsPhase[] | null = null;
  try {
    for (const factory of factories) {
      for (const clients of CONCURRENCIES) {
        // A fresh directory and fresh servers per measurement: no state carried from one to the next.
        const dir = fs.mkdtempSync(path.join(root, `c${clients}-`));
        results.push(await runTarget(factory(dir), clients, seconds));
      }
      const name = named(factory);
      const peak = results.find((r) => r.target === name && r.clients === Math.max(...CONCURRENCIES) && r.writes > 0);
      if (LAG_TARGETS.includes(name) && peak !== undefined && benchTraceSample() > 0) {
        const rate = benchLagRate() || peak.writesPerSec * LAG_LOAD_SHARE;
        paced.push(await runTarget(factory(fs.mkdtempSync(path.join(root, "paced-"))), peak.clients, seconds, rate));
      }
    }
    if (bootstrapWanted) {
      try {
        bootstrap = await runBootstrapBench(fs.mkdtempSync(path.join(root, "bootstrap-")));
      } catch (err) {
        bootstrapFailed = true;
        console.error(`bench: bootstrap failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failover !== null) failoverResults = await runFailoverBench(root, [sentinelFailover, qjmFailover], failover);
    if (redisBenchmarkWanted) redisBenchmark = await runRedisBenchmarkBench(fs.mkdtempSync(path.join(root, "redis-benchmark-")), seconds);
    if (boundsWanted) bounds = await runBoundsBench(root);
  } finally {
    keepRoot = (bounds !== null && boundsFailed(bounds)) || results.some((r) => r.writes === 0) || bootstrapFailed || failoverFailed(failoverResults) || (redisBenchmark?.problems.length ?? 0) > 0;
    // BENCH_KEEP=1: the servers' logs and data stay for reading, whatever the outcome.
    keepRoot ||= process.env.BENCH_KEEP === "1";
    if (keepRoot) console.error(`bench: server logs kept in ${root}`);
  }

  const rows = withFloorRatios(results, FLOOR);
  const load1mBeforeAfter = [loadBefore, os.loadavg()[0]].map((l) => Number(l.toFixed(2)));
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "unknown", kernel: os.release(), node: process.version, load1mBeforeAfter };
  const stamp = `${new Date().toISOString()}, ${machine.cpus} cores, node ${machine.node}, load (1 min) ${load1mBeforeAfter.join(" → ")}`;
  if (rows.length > 0) {
    console.log("");
    console.log(textTable(rows));
    for (const n of notes(rows)) console.log(`note: ${n}`);
    console.log("");
    console.log(`<!-- ${stamp}, BENCH_SECONDS=${seconds}, BENCH_WARM_WRITES=${benchWarmWrites()} -->`);
    console.log(markdownTable(rows));
    const breakdown = breakdownTable([...rows, ...paced]);
    if (breakdown !== null) {
      console.log("");
      console.log("Per-hop breakdown of redis-qjm's traced writes (ms):");
      console.log(breakdown);
    }
    for (const n of [...cpuNotes(rows, CPU_REFERENCE), ...lagNotes(paced)]) console.log(`note: ${n}`);
  }
  if (bootstrap !== null) {
    console.log("");
    console.log(bootstrapReport(bootstrap));
    console.log("");
    console.log(`<!-- ${stamp}, BENCH_BOOTSTRAP_KEYS=${bootstrap.keys} -->`);
    console.log(bootstrapMarkdown(bootstrap));
  }

  if (failover !== null) {
    console.log("");
    console.log(failoverTextTable(failoverResults));
    for (const n of failoverNotes(failoverResults)) console.log(`note: ${n}`);
    console.log("");
    console.log(`<!-- ${stamp}, clients ${failover.clients}, kills ${failover.kills}, partitions ${failover.partitions}, seed ${failover.seed} -->`);
    console.log(failoverMarkdown(failoverResults));
  }

  if (redisBenchmark !== null) printRedisBenchmark(redisBenchmark, stamp, seconds);
  if (bounds !== null) {
    console.log("");
    console.log(`<!-- ${stamp} -->`);
    console.log(boundsReport(bounds));
  }

  const out = process.env.BENCH_OUT;
  if (out !== undefined && out !== "") {
    writeJson(out, {
      date: new Date().toISOString(),
      machine,
      servers: { nats: version("nats-server"), redis: version("redis-server") },
      workload: { seconds, warmWrites: benchWarmWrites(), warmupMs: WARMUP_MS, valueBytes: VALUE_BYTES, keys: KEY_SPACE, concurrencies: CONCURRENCIES },
      floor: FLOOR,
      results: rows,
      paced,
      bootstrap,
      failover: failover === null ? null : { settings: failover, results: failoverResults },
      redisBenchmark,
      bounds,
    });
    console.error(`bench: results written to ${out}`);
  }
  return rows.some((r) => r.writes === 0) || (bounds !== null && boundsFailed(bounds)) || bootstrapFailed || failoverFailed(failoverResults) || (redisBenchmark?.problems.length ?? 0) > 0 ? 1 : 0;
}

function printRedisBenchmark(r: RedisBenchmarkResult, stamp: string, seconds: number): void {
  console.log("");
  console.log(`<!-- ${stamp}, BENCH_SECONDS=${seconds}, redis-benchmark -n ${r.requests} -->`);
  console.log(benchmarkTable(r.rows, REDIS_BENCHMARK_TARGETS));
  for (const c of r.checks) console.log(`checked: ${c}`);
  for (const p of r.problems) console.log(`FAILED: ${p}`);
}

/** A failover scenario that could not run to its end (a lost write is a finding, not a failure of the bench). */
function failoverFailed(results: FailoverResult[]): boolean {
  return results.some((r) => r.note !== undefined);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

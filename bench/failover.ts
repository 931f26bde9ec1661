/**
 * The failover bench: for each system, in the same run, N clients write unique keys (retrying a write until it is
 * acked) while the bench kills -9 the current master (its process and its Redis) at seeded moments, or cuts it off
 * from the others for a few seconds; it measures fault → first acked write, then, with everything healed, reads the
 * final state back and counts the acked writes it misses.
 *
 *   BENCH_FAILOVER_CLIENTS=<n>     concurrent clients (default 32)
 *   BENCH_FAILOVER_KILLS=<n>       kills per system (default 10)
 *   BENCH_FAILOVER_PARTITIONS=<n>  partitions of the master per system (default 2)
 *   BENCH_FAILOVER_SEED=<n>        seed of the fault moments (default 1)
 */
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { FaultClock, Ledger, faultDelays, lostWrites, writeKey, writeValue, type LedgerCounts, type WriteCall } from "./failover_ledger.js";
import { errorMessage, sleep, withDeadline } from "./harness.js";
import { SETUP_TIMEOUT_MS, TEARDOWN_TIMEOUT_MS } from "./settings.js";

/** A system under failover: a master, its standbys, and a way to find, kill and isolate the master. */
export interface FailoverSystem {
  readonly name: string;
  /** Starts the servers, waits until the cluster is whole and opens one connection per client. */
  setup(clients: number): Promise<void>;
  /** One call writing `value` to `key` for client `client` (its client's own resends inside); never rejects for a system failure. */
  write(client: number, key: string, value: string): Promise<WriteCall>;
  /** kill -9 of the current master's process and its Redis; `atMs` (performance.now()) is the moment of the kill. */
  killMaster(): Promise<{ what: string; atMs: number }>;
  /** Cuts the current master off from the other servers (clients that reach it directly still do). */
  partitionMaster(): Promise<{ what: string; atMs: number; heal: () => Promise<void> }>;
  /** Waits until the cluster is whole again (the killed node back, replicas in sync), so each fault meets the same cluster. */
  awaitWhole(timeoutMs: number): Promise<void>;
  /** The values of `keys` in the final state, read from the current master (null: missing). */
  read(keys: readonly string[]): Promise<(string | null)[]>;
  teardown(): Promise<void>;
}

export type FailoverFactory = (dir: string) => FailoverSystem;
export type Scenario = "kill" | "partition";

export interface FailoverSettings {
  clients: number;
  kills: number;
  partitions: number;
  seed: number;
}

export interface FailoverResult extends LedgerCounts {
  system: string;
  scenario: Scenario;
  faults: number;
  /** Fault → first acked write sent after it, p50 and max over the faults (ms). */
  p50Ms: number;
  maxMs: number;
  /** The same, counting only calls sent after the fault (not those in flight at it that the client resent). */
  newCallP50Ms: number;
  newCallMaxMs: number;
  /** Faults after which no write was acked within FAULT_RECOVERY_TIMEOUT_MS. */
  unrecovered: number;
  lost: number;
  /** A few of the lost keys, for the log. */
  lostSample: string[];
  /** Wall-clock seconds of the scenario, set-up and loss check included. */
  seconds: number;
  /** Why figures are missing: setup failed, the cluster did not heal… */
  note?: string;
}

// ---- the bench's bounds (they define what the figures mean) ----

export const DEFAULT_FAILOVER_CLIENTS = 32;
export const DEFAULT_FAILOVER_KILLS = 10;
export const DEFAULT_FAILOVER_PARTITIONS = 2;
/** Load before the first fault: connections warm, the master writing at full pace. */
const FAILOVER_WARMUP_MS = 1000;
/** Seeded pause between the cluster being whole again and the next fault. */
const FAULT_GAP_MIN_MS = 300;
const FAULT_GAP_MAX_MS = 1500;
/** How long the master stays cut off ("a few seconds": longer than either system's detection). */
export const PARTITION_MS = 4000;
/** A fault with no acked write within this is reported as unrecovered and the scenario ends. */
const FAULT_RECOVERY_TIMEOUT_MS = 30_000;
/** The killed node back and in sync, or the partition's leftovers resolved. */
const WHOLE_TIMEOUT_MS = 30_000;
/** A client whose attempt failed waits this long before it retries the same write. */
const RETRY_BACKOFF_MS = 20;
/**
 * A write call the system did not settle within this is unknown. A guard, not a figure: each system's client bounds
 * its calls well inside it (ioredis's command timeout; redis-qjm's client's retry window plus one attempt).
 */
export const ATTEMPT_DEADLINE_MS = 10_000;
/** Clients finishing their last call once the load stops. */
const LOAD_STOP_TIMEOUT_MS = ATTEMPT_DEADLINE_MS + 5000;
/** Keys read back per request during the loss check. */
export const READ_CHUNK_KEYS = 1000;

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`${name}=${raw}: not an integer ≥ ${min}`);
  return n;
}

/** The BENCH_FAILOVER_* variables, validated. */
export function failoverSettings(env: NodeJS.ProcessEnv = process.env): FailoverSettings {
  return {
    clients: positiveInt(env, "BENCH_FAILOVER_CLIENTS", DEFAULT_FAILOVER_CLIENTS, 1),
    kills: positiveInt(env, "BENCH_FAILOVER_KILLS", DEFAULT_FAILOVER_KILLS, 0),
    partitions: positiveInt(env, "BENCH_FAILOVER_PARTITIONS", DEFAULT_FAILOVER_PARTITIONS, 0),
    seed: positiveInt(env, "BENCH_FAILOVER_SEED", 1, 0),
  };
}

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

// ---- the load ----

interface Load {
  /** Resolves at the first acked write sent at or after fault `i`. */
  recovered(i: number, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

/** `clients` closed-loop clients, each writing its own keys in order and retrying a write until it is acked. */
function startLoad(system: FailoverSystem, clients: number, ledger: Ledger, clock: FaultClock): Load {
  let stopped = false;
  const waiters = new Set<() => void>();
  const client = async (c: number): Promise<void> => {
    for (let seq = 0; !stopped; ) {
      const key = writeKey(c, seq);
      const sentMs = performance.now();
      let call: WriteCall;
      try {
        call = await withDeadline(system.write(c, key, writeValue(key)), ATTEMPT_DEADLINE_MS, "write");
      } catch {
        call = { outcome: "unknown", attempts: 1, duplicate: false };
      }
      ledger.record(c, key, call.outcome, call.attempts, call.duplicate);
      if (call.outcome === "acked") {
        clock.ack(sentMs, performance.now(), call.attempts > 1);
        for (const w of waiters) w();
        seq++;
      } else {
        await sleep(RETRY_BACKOFF_MS);
      }
    }
  };
  const loops = Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  return {
    async recovered(i, timeoutMs) {
      if (clock.recoveredAfterMs(i) !== null) return;
      let check = (): void => {};
      const done = new Promise<void>((resolve) => {
        check = () => {
          if (clock.recoveredAfterMs(i) !== null) resolve();
        };
        waiters.add(check);
      });
      try {
        await withDeadline(done, timeoutMs, `first acked write after fault ${i + 1}`);
      } finally {
        waiters.delete(check);
      }
    },
    async stop() {
      stopped = true;
      await withDeadline(loops, LOAD_STOP_TIMEOUT_MS, "clients' last writes");
    },
  };
}

// ---- one scenario on one system ----

/** The faults of one scenario, each followed by its first ack and by the cluster healing. */
async function injectFaults(system: FailoverSystem, scenario: Scenario, delays: number[], load: Load, clock: FaultClock): Promise<void> {
  for (const [n, delay] of delays.entries()) {
    await sleep(delay);
    const fault: { what: string; atMs: number; heal?: () => Promise<void> } = scenario === "kill" ? await system.killMaster() : await system.partitionMaster();
    const i = clock.fault(fault.atMs);
    log(`${system.name}: ${scenario} ${n + 1}/${delays.length}: ${fault.what}`);
    if (fault.heal !== undefined) {
      await sleep(PARTITION_MS - (performance.now() - fault.atMs));
      await fault.heal();
      log(`${system.name}: healed`);
    }
    await load.recovered(i, FAULT_RECOVERY_TIMEOUT_MS);
    log(`${system.name}: ${scenario} ${n + 1}: first acked write ${Math.round(clock.recoveredAfterMs(i) ?? Number.NaN)} ms after the fault`);
    await system.awaitWhole(WHOLE_TIMEOUT_MS);
  }
}

/** Reads every acked key back from the healed cluster, in chunks; returns the lost ones. */
async function checkLoss(system: FailoverSystem, acked: readonly string[]): Promise<string[]> {
  const lost: string[] = [];
  for (let i = 0; i < acked.length; i += READ_CHUNK_KEYS) {
    const keys = acked.slice(i, i + READ_CHUNK_KEYS);
    lost.push(...lostWrites(keys, await system.read(keys)));
  }
  return lost;
}

/** Sets up `system`, loads it through the faults of `scenario`, checks the final state, and always tears it down. */
export async function runScenario(system: FailoverSystem, scenario: Scenario, settings: FailoverSettings, faults: number): Promise<FailoverResult> {
  const ledger = new Ledger();
  const clock = new FaultClock();
  const label = `${system.name} ${scenario}`;
  const startMs = performance.now();
  let note: string | undefined;
  let lost: string[] = [];
  try {
    log(`${label}: setting up`);
    await withDeadline(system.setup(settings.clients), SETUP_TIMEOUT_MS, `${label} setup`);
    log(`${label}: set up in ${((performance.now() - startMs) / 1000).toFixed(1)} s`);
    const load = startLoad(system, settings.clients, ledger, clock);
    try {
      await sleep(FAILOVER_WARMUP_MS);
      // The same seed for both systems: each meets its faults at the same pauses.
      await injectFaults(system, scenario, faultDelays(settings.seed + (scenario === "kill" ? 0 : 1), faults, FAULT_GAP_MIN_MS, FAULT_GAP_MAX_MS), load, clock);
    } catch (err) {
      note = errorMessage(err);
    } finally {
      await load.stop().catch((err: unknown) => (note ??= errorMessage(err)));
    }
    await system.awaitWhole(WHOLE_TIMEOUT_MS);
    lost = await checkLoss(system, ledger.acked());
  } catch (err) {
    note = note === undefined ? errorMessage(err) : `${note}; ${errorMessage(err)}`;
  } finally {
    await withDeadline(system.teardown(), TEARDOWN_TIMEOUT_MS, `${label} teardown`).catch((err: unknown) => log(`${label}: teardown: ${errorMessage(err)}`));
  }
  const result: FailoverResult = { system: system.name, scenario, faults: clock.count(), ...clock.summary(), ...ledger.counts(), lost: lost.length, lostSample: lost.slice(0, 5), seconds: Math.round((performance.now() - startMs) / 100) / 10, note };
  log(`${label}: ${describe(result)}`);
  return result;
}

function describe(r: FailoverResult): string {
  const ms = (n: number) => (Number.isFinite(n) ? `${Math.round(n)} ms` : "–");
  return `${r.faults} faults, first ack p50 ${ms(r.p50Ms)} max ${ms(r.maxMs)} (of a call sent after the fault: p50 ${ms(r.newCallP50Ms)} max ${ms(r.newCallMaxMs)}), ${r.acked} acked, ${r.lost} lost, ${r.failed} failed, ${r.unknown} unknown, ${r.resent} resent by the client (${r.duplicates} from the dedupe window), ${r.seconds} s${r.note ? ` (${r.note})` : ""}`;
}

/** Every system through both scenarios, each scenario on fresh servers under `root`. */
export async function runFailoverBench(root: string, systems: FailoverFactory[], settings: FailoverSettings): Promise<FailoverResult[]> {
  const results: FailoverResult[] = [];
  for (const scenario of ["kill", "partition"] as const) {
    const faults = scenario === "kill" ? settings.kills : settings.partitions;
    if (faults === 0) continue;
    for (const factory of systems) {
      const dir = fs.mkdtempSync(path.join(root, `failover-${scenario}-`));
      results.push(await runScenario(factory(dir), scenario, settings, faults));
    }
  }
  return results;
}

// ---- report ----

const HEADERS = ["system", "scenario", "faults", "fault → first ack p50 ms", "max ms", "acked", "lost", "failed", "unknown (retried)", "resent by client (dedupe hits)"];

function cells(r: FailoverResult): string[] {
  const ms = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "–");
  const faults = r.unrecovered > 0 ? `${r.faults} (${r.unrecovered} unrecovered)` : String(r.faults);
  return [r.system, r.scenario, faults, ms(r.p50Ms), ms(r.maxMs), String(r.acked), String(r.lost), String(r.failed), String(r.unknown), `${r.resent} (${r.duplicates})`];
}

export function failoverTextTable(results: FailoverResult[]): string {
  const table = [HEADERS, ...results.map(cells)];
  const widths = HEADERS.map((_, col) => Math.max(...table.map((line) => line[col].length)));
  const format = (line: string[]) => line.map((cell, col) => (col < 2 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join("  ");
  return [format(HEADERS), widths.map((w) => "-".repeat(w)).join("  "), ...results.map((r) => format(cells(r)))].join("\n");
}

export function failoverMarkdown(results: FailoverResult[]): string {
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  return [line(HEADERS), line(HEADERS.map((_, col) => (col < 2 ? ":---" : "---:"))), ...results.map((r) => line(cells(r)))].join("\n");
}

export function failoverNotes(results: FailoverResult[]): string[] {
  return results.flatMap((r) => [
    ...(r.note !== undefined ? [`${r.system} ${r.scenario}: ${r.note}`] : []),
    ...(r.lost > 0 ? [`${r.system} ${r.scenario}: lost acked writes, e.g. ${r.lostSample.join(", ")}`] : []),
  ]);
}

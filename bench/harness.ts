/**
 * The closed-loop harness: N clients, each sending its next write as soon as the previous one is answered,
 * against a pluggable Target. It owns the clock, the per-request timeout and the per-target deadlines, so a
 * target only has to know how to write once.
 */
import {
  DRAIN_SLACK_MS,
  ERROR_BACKOFF_MS,
  ERRORS_MAX,
  REQUEST_TIMEOUT_MS,
  SAMPLES_MAX,
  SETUP_TIMEOUT_MS,
  TEARDOWN_TIMEOUT_MS,
  WARM_CLIENTS,
  WARM_TIMEOUT_MS,
  WARMUP_MS,
  WATCHDOG_INTERVAL_MS,
  benchWarmWrites,
} from "./settings.js";
import { latencySummary } from "./stats.js";
import { cpuMsByRoot, type HopSummary, type LagSummary } from "./trace.js";

/** Something that acknowledges writes. A fresh instance is made for every (target, concurrency) pair. */
export interface Target {
  readonly name: string;
  /** Starts the servers and opens the connections that `clients` concurrent clients need. */
  setup(clients: number): Promise<void>;
  /** Write number `i` of client `clientIndex`: resolves once acknowledged, rejects otherwise. */
  write(clientIndex: number, i: number): Promise<void>;
  /** Closes connections and stops every server it started; also called after a failed or timed-out setup. */
  teardown(): Promise<void>;
  /** Its server processes, each named (its descendants count with it): their CPU time per acknowledged write. */
  processes?(): NamedProcess[];
  /** Told when the measured window opens and closes; returns what the target saw of itself in it (write traces). */
  window?: { open(): void; close(): TargetReport };
}

/** A server process of a target, e.g. a journal node: it and the processes it started (its redis-server). */
export interface NamedProcess {
  name: string;
  pid: number;
}

/** What a traced target reports of its window. */
export interface TargetReport {
  hops?: HopSummary;
  lag?: LagSummary;
}

/** Makes a target whose servers and files live under `dir` (a fresh directory). */
export type TargetFactory = (dir: string) => Target;

export interface Measurement {
  target: string;
  clients: number;
  /** Length of the measured window, in seconds. */
  seconds: number;
  /** Writes acknowledged within the window. */
  writes: number;
  writesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Failed or timed-out writes, warm-up included. */
  errors: number;
  /** Why figures are missing or partial: setup failed, stalled, too many errors, sample cap reached. */
  note?: string;
  /** CPU ms (user + system) of the target's processes over the window ÷ writes acknowledged in it. */
  cpuMsPerWrite?: number;
  /** The same, process by process (NamedProcess, with its descendants). */
  cpuByProcess?: { name: string; msPerWrite: number }[];
  /** The offered load when it was paced (writes/s for all clients together); absent: closed loop. */
  ratePerSec?: number;
  hops?: HopSummary;
  lag?: LagSummary;
}

// ---- deadlines ----

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects after `ms` if `promise` has not settled; the timer never keeps the process alive past it. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Calls `attempt` until it resolves, pausing `retryMs` between tries; rejects with the last failure after `timeoutMs`. */
export async function retryUntil<T>(what: string, timeoutMs: number, retryMs: number, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() + retryMs > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms: ${errorMessage(err)}`);
    }
    await sleep(retryMs);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- one measurement ----

/** Sets up `target`, measures it with `clients` clients for `seconds`, and always tears it down. */
export async function runTarget(target: Target, clients: number, seconds: number, ratePerSec?: number): Promise<Measurement> {
  const label = `${target.name} ×${clients}`;
  try {
    process.stderr.write(`bench: ${label}: setting up\n`);
    await withDeadline(target.setup(clients), SETUP_TIMEOUT_MS, `${label} setup`);
    const warmWrites = benchWarmWrites();
    if (warmWrites > 0) {
      process.stderr.write(`bench: ${label}: ${warmWrites} warm writes from ${WARM_CLIENTS} clients\n`);
      await withDeadline(warm(target, clients, warmWrites), WARM_TIMEOUT_MS, `${label} warm writes`);
    }
    process.stderr.write(`bench: ${label}: ${WARMUP_MS} ms warm-up, ${seconds} s measured\n`);
    const m = await measure(target, clients, seconds, ratePerSec);
    process.stderr.write(`bench: ${label}: ${Math.round(m.writesPerSec)} writes/s, p50 ${m.p50Ms.toFixed(3)} ms, p99 ${m.p99Ms.toFixed(3)} ms${m.note ? ` (${m.note})` : ""}\n`);
    return m;
  } catch (err) {
    process.stderr.write(`bench: ${label}: FAILED: ${errorMessage(err)}\n`);
    return { target: target.name, clients, seconds: 0, writes: 0, writesPerSec: 0, p50Ms: Number.NaN, p99Ms: Number.NaN, errors: 0, note: `failed: ${errorMessage(err)}` };
  } finally {
    try {
      await withDeadline(target.teardown(), TEARDOWN_TIMEOUT_MS, `${label} teardown`);
    } catch (err) {
      process.stderr.write(`bench: ${label}: teardown: ${errorMessage(err)}\n`);
    }
  }
}

/**
 * `writes` writes from WARM_CLIENTS concurrent loops, unmeasured. A target set up for fewer clients gets the loops
 * spread over its clients (several writes in flight on one connection). Errors are counted; past ERRORS_MAX it is
 * broken, and the warm-up says so.
 */
export async function warm(target: Target, clients: number, writes: number): Promise<void> {
  let sent = 0;
  let errors = 0;
  const loop = async (k: number): Promise<void> => {
    for (let i = 0; sent < writes; i++) {
      sent++;
      await target.write(k % clients, i).catch(() => {
        errors++;
        if (errors >= ERRORS_MAX) sent = writes;
      });
    }
  };
  await Promise.all(Array.from({ length: WARM_CLIENTS }, (_, k) => loop(k)));
  if (errors >= ERRORS_MAX) throw new Error(`${errors} errors in the warm writes`);
}

/** Samples array starts this big and doubles up to SAMPLES_MAX. */
const SAMPLES_INITIAL = 65_536;

/** One write in flight per client; the watchdog rejects it once it is older than REQUEST_TIMEOUT_MS. */
interface InFlight {
  startNs: bigint;
  reject: (err: Error) => void;
}

/**
 * What the window observes beside latencies: the target's CPU time (from /proc) and its own report, read when the
 * window opens (after the warm-up) and when it closes.
 */
function windowProbe(target: Target, seconds: number): { close(): { cpu: { name: string; ms: number }[] | null; report: TargetReport } } {
  let processes: NamedProcess[] = [];
  let cpuStartMs: number[] | null = null;
  let opened = false;
  let closed: { cpu: { name: string; ms: number }[] | null; report: TargetReport } | null = null;
  const close = () => {
    if (closed !== null) return closed;
    clearTimeout(openTimer);
    clearTimeout(closeTimer);
    const end = opened && cpuStartMs !== null ? cpuMsByRoot(processes.map((p) => p.pid)) : null;
    const cpu = end === null ? null : processes.map((p, i) => ({ name: p.name, ms: end[i] - cpuStartMs![i] }));
    closed = { cpu, report: opened ? (target.window?.close() ?? {}) : {} };
    return closed;
  };
  const openTimer = setTimeout(() => {
    opened = true;
    processes = target.processes?.() ?? [];
    if (processes.length > 0) cpuStartMs = cpuMsByRoot(processes.map((p) => p.pid));
    target.window?.open();
  }, WARMUP_MS);
  const closeTimer = setTimeout(close, WARMUP_MS + seconds * 1000);
  return { close };
}

async function measure(target: Target, clients: number, seconds: number, ratePerSec?: number): Promise<Measurement> {
  let samples = new Float64Array(SAMPLES_INITIAL);
  let count = 0;
  let errors = 0;
  let lastError = "";
  let stopped = false;
  let note: string | undefined;

  const startNs = process.hrtime.bigint();
  const windowStartNs = startNs + BigInt(WARMUP_MS) * 1_000_000n;
  let windowEndNs = windowStartNs + BigInt(Math.round(seconds * 1e9));
  const timeoutNs = BigInt(REQUEST_TIMEOUT_MS) * 1_000_000n;

  const inFlight: (InFlight | null)[] = new Array<InFlight | null>(clients).fill(null);
  // One interval for all clients instead of a timer per write: timers per write would cost more than the
  // NATS floor we compare everything to.
  const watchdog = setInterval(() => {
    const now = process.hrtime.bigint();
    for (let c = 0; c < clients; c++) {
      const f = inFlight[c];
      if (f !== null && now - f.startNs > timeoutNs) {
        inFlight[c] = null;
        f.reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`));
      }
    }
  }, WATCHDOG_INTERVAL_MS);

  const stop = (why?: string) => {
    if (!stopped && why !== undefined) note = why;
    stopped = true;
  };

  // A paced run (ratePerSec) hands out send times one interval apart, to whichever client is free; never faster.
  const intervalMs = ratePerSec !== undefined && ratePerSec > 0 ? 1000 / ratePerSec : 0;
  let nextDueMs = performance.now();
  const probe = windowProbe(target, seconds);

  const client = async (c: number) => {
    for (let i = 0; !stopped; i++) {
      if (intervalMs > 0) {
        const due = (nextDueMs = Math.max(nextDueMs + intervalMs, performance.now()));
        if (due - performance.now() >= 1) await sleep(due - performance.now());
      }
      const t0 = process.hrtime.bigint();
      if (t0 >= windowEndNs) return;
      try {
        await new Promise<void>((resolve, reject) => {
          inFlight[c] = { startNs: t0, reject };
          target.write(c, i).then(resolve, reject);
        });
      } catch (err) {
        inFlight[c] = null;
        errors++;
        lastError = errorMessage(err);
        if (errors >= ERRORS_MAX) stop(`abandoned after ${errors} errors, last: ${lastError}`);
        await sleep(ERROR_BACKOFF_MS);
        continue;
      }
      inFlight[c] = null;
      const t1 = process.hrtime.bigint();
      // Counted if answered inside the window: throughput is then exactly answers per second of window.
      if (t1 >= windowStartNs && t1 < windowEndNs) {
        if (count === samples.length) {
          if (samples.length >= SAMPLES_MAX) {
            windowEndNs = t1;
            stop(`sample cap ${SAMPLES_MAX} reached`);
            return;
          }
          const grown = new Float64Array(Math.min(SAMPLES_MAX, samples.length * 2));
          grown.set(samples);
          samples = grown;
        }
        samples[count++] = Number(t1 - t0) / 1e6;
      }
    }
  };

  const loops = Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  const measureDeadlineMs = WARMUP_MS + seconds * 1000 + REQUEST_TIMEOUT_MS + DRAIN_SLACK_MS;
  try {
    await withDeadline(loops, measureDeadlineMs, "measurement");
  } catch {
    stop(`stalled: clients still waiting ${measureDeadlineMs} ms after start`);
  } finally {
    clearInterval(watchdog);
  }
  const { cpu, report } = probe.close();

  const windowSeconds = Number(windowEndNs - windowStartNs) / 1e9;
  const { p50Ms, p99Ms } = latencySummary(samples, count);
  if (note === undefined && errors > 0) note = `${errors} errors, last: ${lastError}`;
  const perWrite = cpu !== null && count > 0;
  const cpuMsPerWrite = perWrite ? cpu.reduce((sum, p) => sum + p.ms, 0) / count : undefined;
  const cpuByProcess = perWrite ? cpu.map((p) => ({ name: p.name, msPerWrite: p.ms / count })) : undefined;
  return { target: target.name, clients, seconds: windowSeconds, writes: count, writesPerSec: count / windowSeconds, p50Ms, p99Ms, errors, note, cpuMsPerWrite, cpuByProcess, ratePerSec, ...report };
}

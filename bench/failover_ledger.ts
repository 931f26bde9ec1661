/**
 * The failover bench's bookkeeping, pure (no clock, no I/O; the driver passes times in): what each client was told
 * about each of its writes, how long after each fault the first write was acked, which acked writes the final state
 * misses, and the seeded moments of the faults. Unit-tested in test/unit/failover_ledger.test.ts.
 */
import { Prng } from "../src/sim/prng.js";
import { percentile } from "./stats.js";

/** What one attempt at a write told its client. */
export type Attempt =
  /** Acknowledged as durable by the system's own rule (redis-qjm: `{ok: true}`; Redis: `WAIT` counted ≥ 1 replica). */
  | "acked"
  /** Refused or never sent (no responders, connection down, READONLY, NOT_WRITER): it did not run. */
  | "failed"
  /** May or may not have run (timeout, NO_QUORUM, connection lost with the write in flight, `WAIT` counted 0). */
  | "unknown";

/** One call of a system's write as the bench saw it. */
export interface WriteCall {
  outcome: Attempt;
  /**
   * Attempts the system's client made within the call, all with the same write id (redis-qjm's client library
   * resends on a timeout, no responders, NOT_WRITER, NO_QUORUM or a new master); 1 for a client that sends each call
   * once (the Sentinel side's ioredis: the bench retries it, as a new call).
   */
  attempts: number;
  /** Acked from the master's dedupe window: an earlier attempt of the call had committed; it was not applied again. */
  duplicate: boolean;
}

/** Every write is a unique key with a value made from it: a missing key or another value is a lost write. */
export function writeKey(client: number, seq: number): string {
  return `fo:${client}:${seq}`;
}

export function writeValue(key: string): string {
  return `v:${key}`;
}

/** Per write (not per attempt): a write retried 30 times while the master was down counts once in each column it met. */
export interface LedgerCounts {
  acked: number;
  /** Writes that met at least one definite failure before they were acked (or the run ended). */
  failed: number;
  /** Writes whose outcome was unknown at least once; the client retried them (the same key and value). */
  unknown: number;
  /** Attempts, all outcomes, those the system's client made within a call included. */
  attempts: number;
  /** Acked writes the system's client sent more than once within the call that acked them (same write id). */
  resent: number;
  /** Of those, acked from the master's dedupe window: committed by an earlier attempt, not applied again. */
  duplicates: number;
}

/**
 * The writes of a run. Bounded by the run: one entry per acked write (the bench's writes/s × its minutes; a few
 * MB), which the loss check must read back anyway.
 */
export class Ledger {
  private readonly ackedKeys: string[] = [];
  /** Keys of the write each client is attempting now, and whether it already failed / was unknown. */
  private readonly current = new Map<number, { key: string; failed: boolean; unknown: boolean }>();
  private failedWrites = 0;
  private unknownWrites = 0;
  private attempts = 0;
  private resentWrites = 0;
  private duplicateWrites = 0;

  /** Records one call of client `client` at `key`; a new key for that client closes its previous write. */
  record(client: number, key: string, outcome: Attempt, attempts = 1, duplicate = false): void {
    this.attempts += attempts;
    let w = this.current.get(client);
    if (w === undefined || w.key !== key) {
      w = { key, failed: false, unknown: false };
      this.current.set(client, w);
    }
    if (outcome === "acked") {
      this.ackedKeys.push(key);
      if (attempts > 1) this.resentWrites++;
      if (duplicate) this.duplicateWrites++;
      this.current.delete(client);
    } else if (outcome === "failed" && !w.failed) {
      w.failed = true;
      this.failedWrites++;
    } else if (outcome === "unknown" && !w.unknown) {
      w.unknown = true;
      this.unknownWrites++;
    }
  }

  acked(): readonly string[] {
    return this.ackedKeys;
  }

  counts(): LedgerCounts {
    return { acked: this.ackedKeys.length, failed: this.failedWrites, unknown: this.unknownWrites, attempts: this.attempts, resent: this.resentWrites, duplicates: this.duplicateWrites };
  }
}

/**
 * Acked writes that the final state does not hold: `values[i]` is what the system returned for `keys[i]` (null:
 * missing). A value other than the one written counts too: silently wrong data is lost data.
 */
export function lostWrites(keys: readonly string[], values: readonly (string | null)[]): string[] {
  if (values.length !== keys.length) throw new Error(`read ${values.length} values for ${keys.length} keys`);
  const lost: string[] = [];
  for (let i = 0; i < keys.length; i++) if (values[i] !== writeValue(keys[i])) lost.push(keys[i]);
  return lost;
}

/**
 * Fault → first acked write. Only an ack of an attempt *sent* at or after the fault counts: an ack of a write sent
 * before it (already committed, its reply still on the wire) says nothing about the system after the fault. A call in
 * flight at the fault counts when its client acked it only after sending it again itself (`resent`: redis-qjm's
 * client resends a write waiting at a killed master at once, same id, when the new master is elected); the Sentinel
 * side's equivalent is the bench's own retry, a call sent after the fault.
 */
export class FaultClock {
  /** Per fault: its first ack, and the first ack of a call *sent* after it (the stricter reading, for comparison). */
  private readonly faults: { atMs: number; firstAckMs: number | null; firstNewCallAckMs: number | null }[] = [];

  /** A fault (kill, partition) at `atMs`; returns its index. */
  fault(atMs: number): number {
    this.faults.push({ atMs, firstAckMs: null, firstNewCallAckMs: null });
    return this.faults.length - 1;
  }

  /** A call sent at `sentMs` was acked at `ackedMs`; `resent`: by a later attempt than its first (same write id). */
  ack(sentMs: number, ackedMs: number, resent = false): void {
    // Newest first: the open faults are the last few (the driver waits for each fault's first ack).
    for (let i = this.faults.length - 1; i >= 0; i--) {
      const f = this.faults[i];
      if (f.firstAckMs !== null && f.firstNewCallAckMs !== null) break;
      if (f.firstAckMs === null && (sentMs >= f.atMs || (resent && ackedMs >= f.atMs))) f.firstAckMs = ackedMs;
      if (f.firstNewCallAckMs === null && sentMs >= f.atMs) f.firstNewCallAckMs = ackedMs;
    }
  }

  /** ms from fault `i` to its first ack; null while none came. */
  recoveredAfterMs(i: number): number | null {
    const f = this.faults[i];
    return f === undefined || f.firstAckMs === null ? null : f.firstAckMs - f.atMs;
  }

  count(): number {
    return this.faults.length;
  }

  /**
   * p50 and max over the faults that were followed by an ack, and how many were not (within the run); the same
   * for the first ack of a call sent after the fault (`newCall…`: equal to the first for a client that never resends).
   */
  summary(): { p50Ms: number; maxMs: number; unrecovered: number; newCallP50Ms: number; newCallMaxMs: number } {
    const after = (at: (f: (typeof this.faults)[number]) => number | null) => {
      const sorted = Float64Array.from(this.faults.filter((f) => at(f) !== null).map((f) => (at(f) as number) - f.atMs)).sort();
      return { p50: percentile(sorted, 0.5), max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1], n: sorted.length };
    };
    const first = after((f) => f.firstAckMs);
    const newCall = after((f) => f.firstNewCallAckMs);
    return { p50Ms: first.p50, maxMs: first.max, unrecovered: this.faults.length - first.n, newCallP50Ms: newCall.p50, newCallMaxMs: newCall.max };
  }
}

/** The seeded pauses before each fault, in ms, uniform in [minMs, maxMs]: the same seed gives the same moments. */
export function faultDelays(seed: number, count: number, minMs: number, maxMs: number): number[] {
  if (!(Number.isSafeInteger(count) && count >= 0 && minMs >= 0 && maxMs >= minMs)) throw new Error(`bad fault schedule: ${count} faults in [${minMs}, ${maxMs}] ms`);
  const prng = new Prng(seed);
  return Array.from({ length: count }, () => prng.int(minMs, maxMs));
}

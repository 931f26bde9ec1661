/**
 * The simulator's Redis: string keys with TTLs, in the two roles a Redis plays in redis-qjm (issue #10, class 2).
 *  - Live, the master's Redis: runs client writes at the sim clock, expires a key lazily when a write touches it and
 *    actively on the master's timer (Redis's serverCron), and returns the effects Redis 7 propagates: relative TTLs
 *    made absolute (`SET … PXAT`, `PEXPIREAT`), an expired key as `DEL`.
 *  - Replay, a replica's Redis and the master's during its rebuild: applies journaled effects as a Redis that is a
 *    replica of the feeder (src/redis/feeder.ts) does. It never expires a key by its own clock, keeps a key that
 *    `SET … PXAT <past>` writes and moves it on `RENAME`, and waits for the journal's `DEL`.
 * `ownClockMs` replays as a standalone Redis would instead (MULTI/EXEC from a client, the code before the feeder):
 * the deliberately wrong replay the simulator must catch (SimCores.replayExpiresByOwnClock).
 */
import { decodeRecordPayload } from "../segment/record.js";
import { AssertionError, assert } from "../util/assert.js";
import type { Prng } from "./prng.js";
import type { ClientOp } from "./sim_bus.js";

export interface ModelEntry {
  value: string;
  /** Absolute, on the sim clock; null: no TTL. */
  expireAtMs: number | null;
}

/** An effect as the model writes it: the command and its arguments, as text. */
export type ModelEffect = string[];

export interface Execution {
  ok: boolean;
  reply: unknown;
  /** What Redis propagates for the write, the DELs of the keys it found expired first. */
  effects: ModelEffect[];
}

const INTEGER = /^-?\d{1,15}$/;

export class ModelRedis {
  private readonly keys = new Map<string, ModelEntry>();

  get(key: string): ModelEntry | undefined {
    return this.keys.get(key);
  }

  get size(): number {
    return this.keys.size;
  }

  /** An independent copy. */
  clone(): ModelRedis {
    const copy = new ModelRedis();
    for (const [key, entry] of this.keys) copy.keys.set(key, { ...entry });
    return copy;
  }

  /** The keyspace as comparable text: keys in order, each with its value and absolute expiry. */
  dump(): string {
    const keys = [...this.keys.keys()].sort();
    return `{${keys.map((k) => `${k}=${this.keys.get(k)!.value}@${this.keys.get(k)!.expireAtMs ?? "-"}`).join(" ")}}`;
  }

  /** Whether `other` holds the same keys, values and expiries: dump() equal, without building either text. */
  sameAs(other: ModelRedis): boolean {
    if (this.keys.size !== other.keys.size) return false;
    for (const [key, e] of this.keys) {
      const o = other.keys.get(key);
      if (o === undefined || o.value !== e.value || o.expireAtMs !== e.expireAtMs) return false;
    }
    return true;
  }

  // ---- live: the master's Redis ----

  /** Active expiry (serverCron): every key whose TTL passed is deleted, each propagated as a DEL. */
  expireDue(nowMs: number): ModelEffect[] {
    const dels: ModelEffect[] = [];
    for (const [key, e] of this.keys) if (isExpired(e, nowMs)) dels.push(["DEL", key]);
    for (const [, key] of dels) this.keys.delete(key);
    return dels;
  }

  /** A client write at `nowMs`: its reply and its effects, as Redis 7.0 replies and propagates them. */
  execute(op: ClientOp, nowMs: number): Execution {
    const effects: ModelEffect[] = [];
    // Lazy expiry (lookupKeyWrite): a key the write touches whose TTL passed is deleted first, and that DEL propagated.
    for (const key of op.op === "RENAME" ? [op.key, op.dst] : [op.key]) {
      const e = this.keys.get(key);
      if (e !== undefined && isExpired(e, nowMs)) {
        this.keys.delete(key);
        effects.push(["DEL", key]);
      }
    }
    const done = (ok: boolean, reply: unknown, ...own: ModelEffect[]): Execution => ({
      ok,
      reply,
      effects: [...effects, ...own],
    });
    const e = this.keys.get(op.key);
    switch (op.op) {
      case "SET": {
        const expireAtMs = op.pxMs === undefined ? null : nowMs + op.pxMs;
        this.keys.set(op.key, { value: op.value, expireAtMs });
        const ttl = expireAtMs === null ? [] : ["PXAT", String(expireAtMs)];
        return done(true, "OK", ["SET", op.key, op.value, ...ttl]);
      }
      case "INCR": {
        const current = e?.value ?? "0";
        if (!INTEGER.test(current)) return done(false, "ERR value is not an integer or out of range");
        const next = String(Number(current) + 1);
        // INCR keeps the key's TTL.
        this.keys.set(op.key, { value: next, expireAtMs: e?.expireAtMs ?? null });
        return done(true, Number(next), ["INCR", op.key]);
      }
      case "DEL":
        if (e === undefined) return done(true, 0);
        this.keys.delete(op.key);
        return done(true, 1, ["DEL", op.key]);
      case "PEXPIRE":
      case "GETEX": {
        if (e === undefined) return done(true, op.op === "PEXPIRE" ? 0 : null);
        e.expireAtMs = nowMs + op.pxMs;
        return done(true, op.op === "PEXPIRE" ? 1 : e.value, ["PEXPIREAT", op.key, String(e.expireAtMs)]);
      }
      case "PERSIST":
        if (e === undefined || e.expireAtMs === null) return done(true, 0);
        e.expireAtMs = null;
        return done(true, 1, ["PERSIST", op.key]);
      case "RENAME":
        if (e === undefined) return done(false, "ERR no such key");
        // The destination takes the source's value and TTL (renameGenericCommand).
        this.keys.delete(op.key);
        this.keys.set(op.dst, { ...e });
        return done(true, "OK", ["RENAME", op.key, op.dst]);
    }
  }

  // ---- replay: a replica's Redis, the master's rebuild ----

  /**
   * One journaled effect. `ownClockMs` null: as a replica of the feeder (nothing expires here, whatever the clock).
   * A number: as a standalone Redis at that time, which drops a key whose TTL passed before touching it, drops a key
   * `SET … PXAT <past>` writes, and finds nothing for `PEXPIREAT`, `PERSIST` or `RENAME` of a key it dropped.
   */
  apply(effect: ModelEffect, ownClockMs: number | null): void {
    const [name, key] = effect;
    if (ownClockMs !== null) this.dropExpired(name === "RENAME" ? [key, effect[2]] : [key], ownClockMs);
    const pastForStandalone = (atMs: number): boolean => ownClockMs !== null && atMs <= ownClockMs;
    const e = this.keys.get(key);
    switch (name) {
      case "SET": {
        const expireAtMs = effect[3] === "PXAT" ? Number(effect[4]) : null;
        if (expireAtMs !== null && pastForStandalone(expireAtMs)) this.keys.delete(key);
        else this.keys.set(key, { value: effect[2], expireAtMs });
        return;
      }
      case "INCR":
        this.keys.set(key, { value: String(Number(e?.value ?? "0") + 1), expireAtMs: e?.expireAtMs ?? null });
        return;
      case "DEL":
        this.keys.delete(key);
        return;
      case "PEXPIREAT": {
        const atMs = Number(effect[2]);
        if (e === undefined) return this.missing("PEXPIREAT", key, ownClockMs);
        if (pastForStandalone(atMs)) this.keys.delete(key);
        else e.expireAtMs = atMs;
        return;
      }
      case "PERSIST":
        if (e === undefined) return this.missing("PERSIST", key, ownClockMs);
        e.expireAtMs = null;
        return;
      case "RENAME":
        if (e === undefined) return this.missing("RENAME", key, ownClockMs);
        this.keys.delete(key);
        this.keys.set(effect[2], { ...e });
        return;
      default:
        throw new AssertionError(`unknown effect ${name}`);
    }
  }

  /**
   * An effect on a key the copy lacks: a standalone Redis finds nothing to do; on a replica of the feeder the key is
   * always there (the master had it when it propagated the effect), so this copy diverged: it fails loudly.
   */
  private missing(name: string, key: string, ownClockMs: number | null): void {
    assert(ownClockMs !== null, `${name} ${key}: no such key on a replica of the feeder`);
  }

  private dropExpired(keys: string[], nowMs: number): void {
    for (const key of keys) {
      const e = this.keys.get(key);
      if (e !== undefined && isExpired(e, nowMs)) this.keys.delete(key);
    }
  }
}

/** Redis's keyIsExpired: past its time, strictly. */
function isExpired(e: ModelEntry, nowMs: number): boolean {
  return e.expireAtMs !== null && nowMs > e.expireAtMs;
}

/** Replays one record's effects (a replica's apply, one step of the master's rebuild); see ModelRedis.apply. */
export function applyRecord(redis: ModelRedis, payload: Uint8Array, ownClockMs: number | null): void {
  applyEffects(redis, recordEffects(payload), ownClockMs);
}

/** Replays effects already decoded by recordEffects (a record applied to two copies is decoded once). */
export function applyEffects(redis: ModelRedis, effects: readonly ModelEffect[], ownClockMs: number | null): void {
  for (const effect of effects) redis.apply(effect, ownClockMs);
}

/** A record's effects as the model reads them: each argument as text. */
export function recordEffects(payload: Uint8Array): ModelEffect[] {
  return decodeRecordPayload(payload).effects.map((effect) => effect.map(text));
}

/** A byte string as text, read in place (Buffer.from(a) would copy it first). */
function text(a: Uint8Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString();
}

/** TTLs the client sets: some expire within a step or two, some outlive most of a run's safety phase. */
function ttlMs(prng: Prng): number {
  return prng.chance(0.5) ? prng.int(5, 150) : prng.int(150, 3000);
}

/**
 * A write of the TTL workload on `key`: a SET with a TTL, a sliding extension (PEXPIRE, GETEX … PX), a PERSIST, or
 * a move out of a possibly expiring key (RENAME; the destination inherits the TTL).
 */
export function ttlClientOp(prng: Prng, key: string, keys: readonly string[]): ClientOp {
  const r = prng.next();
  if (r < 0.3) return { op: "SET", key, value: String(prng.int(0, 999)), pxMs: ttlMs(prng) };
  if (r < 0.55) return { op: "PEXPIRE", key, pxMs: ttlMs(prng) };
  if (r < 0.7) return { op: "GETEX", key, pxMs: ttlMs(prng) };
  if (r < 0.8) return { op: "PERSIST", key };
  return { op: "RENAME", key, dst: prng.pick(keys.filter((k) => k !== key)) };
}

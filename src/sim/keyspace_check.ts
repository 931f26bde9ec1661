/**
 * Every copy's keyspace, values and TTLs, is the fold of the records it applied, replayed as a replica of the feeder
 * does, whatever the delay (issue #10, class 2). Checked after every record a copy takes:
 *  - a replica's apply: its Redis equals the fold of the committed records up to its applied txid (the records are
 *    the committed ones: Invariants.replicaApplies checks that);
 *  - a master's rebuild, from txid 1: its Redis equals the fold of the recovered, hence committed, prefix;
 *  - the master's own writes and orphan records after it: its live Redis, which expires keys by the clock, equals the
 *    fold continued by the records it journals. This ties live execution to replay: an effect that does not carry
 *    what the write did (a relative TTL, an expiry never journaled) makes the fold and the live keyspace differ.
 * The client's reads are not modelled; keyspace equality is.
 */
import { applyEffects, ModelRedis, recordEffects, type ModelEffect } from "./model_redis.js";
import { SimViolation } from "./invariants.js";

interface Fold {
  txid: number;
  redis: ModelRedis;
}

export class KeyspaceCheck {
  /** Per copy (a replica, a master's writer): the records it took so far, folded as the feeder replays them. */
  private readonly folds = new Map<string, Fold>();
  counts = { checked: 0, lateTtls: 0 };

  /** `copy` starts again from an empty keyspace (a master's rebuild). */
  reset(copy: string): void {
    this.folds.set(copy, { txid: 0, redis: new ModelRedis() });
  }

  /** `copy` goes on from `redis`, which holds the records up to `txid` (a data node's takeover of its replica's Redis). */
  adopt(copy: string, txid: number, redis: ModelRedis): void {
    this.folds.set(copy, { txid, redis: redis.clone() });
  }

  /** `copy` took the record at `txid` at `nowMs` (`how`: replica apply, rebuild, live); its keyspace is now `actual`. */
  took(copy: string, txid: number, payload: Uint8Array, actual: ModelRedis, how: string, nowMs: number): void {
    let fold = this.folds.get(copy);
    if (fold === undefined) {
      fold = { txid: 0, redis: new ModelRedis() };
      this.folds.set(copy, fold);
    }
    if (txid !== fold.txid + 1) throw new SimViolation(`${copy} took txid ${txid} (${how}) after ${fold.txid}`);
    const effects = recordEffects(payload);
    applyEffects(fold.redis, effects, null);
    fold.txid = txid;
    this.counts.checked++;
    this.counts.lateTtls += lateTtls(effects, nowMs);
    // Equal keyspaces have equal dumps; only keyspaces that differ are compared as text (what the message shows).
    if (actual.sameAs(fold.redis)) return;
    const held = actual.dump();
    const folded = fold.redis.dump();
    if (held !== folded) {
      throw new SimViolation(`${copy}'s keyspace after txid ${txid} (${how}) is ${held}, the fold of its records ${folded}`);
    }
  }
}

/** Effects setting a TTL that passed before they were applied: where a replay by the applier's own clock goes wrong. */
function lateTtls(effects: readonly ModelEffect[], nowMs: number): number {
  let late = 0;
  for (const args of effects) {
    const setAt = args[0] === "SET" && args[3] === "PXAT";
    const atMs = setAt ? Number(args[4]) : args[0] === "PEXPIREAT" ? Number(args[2]) : null;
    if (atMs !== null && atMs <= nowMs) late++;
  }
  return late;
}

/**
 * Scripts cannot write to the master's Redis without the journal knowing (issue #10 class 4).
 *
 * A script can call `redis.set_repl(redis.REPL_NONE)`: its writes then change the master's Redis but never reach
 * the replication stream, so they would be acked, lost at the next rebuild, and missing on every replica. Checked
 * on redis-server 7.0.15, none of the ways to forbid it works: the `redis` table is read-only to scripts (so no
 * trusted prelude can replace `set_repl`), there is no config to disable it, ACLs do not see it, and scanning the
 * script's text misses `pairs(redis)` or `redis['set_' .. 'repl']`. So the master detects and repairs instead:
 *
 * - Keyspace events fire for every write a script makes, propagated or not. The master turns them on (CONFIG SET
 *   notify-keyspace-events EA) just before the script and off just after, on the same pipelined connection, and a
 *   subscriber connection (this class) collects the keys they name: the keys the script touched.
 * - Nothing else is admitted while a script runs (the master's script barrier), so once the subscriber has every
 *   event (a PING on it answers after them), DUMP and PEXPIRETIME read each touched key exactly as the script left
 *   it. The script's record is its propagated effects followed by `RESTORE key ttl payload REPLACE [ABSTTL]` (or
 *   `DEL key` if it is gone) for every touched key: whatever the script suppressed, wholly or in part, each copy that
 *   applies the record ends with the master's keys. Keys the script did not touch did not change.
 * - The two writes without keyspace events, FLUSHALL and FLUSHDB, are denied to the master's connection by ACL
 *   (scripts run with their caller's ACL) and refused as client writes by the command table.
 *
 * Cost: only scripts pay; other writes are pipelined as before, with no keyspace events. A script is serialized
 * (admission waits for its repair, about two extra round trips to the local Redis) and its record carries a
 * DUMP of every key it touched, so a script that changes one field of a large hash journals the whole hash. A
 * script that touches more than `scriptTouchedKeysMax` keys or whose keys weigh more than `scriptRepairBytesMax`
 * cannot be verified: it is refused after the fact (EFFECTS_REFUSED) and undone by the writer's rebuild from the
 * journal, where it never went.
 */
import { Redis } from "ioredis";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import type { Effect } from "../segment/record.js";
import type { Logger } from "../util/log.js";

/** Keyspace events of every class but key-miss and new-key (A = g$lshzxetd), as keyevent messages (channel = event, message = key). */
export const SCRIPT_KEYSPACE_EVENTS = "EA";
const KEYEVENT_PATTERN = "__keyevent@0__:*";

export interface ScriptWatchLimits {
  /** Keys one script may touch and still be verified. */
  scriptTouchedKeysMax: number;
  /** Bytes of touched key names, and (separately) of the touched keys' values (MEMORY USAGE), one script may reach. */
  scriptRepairBytesMax: number;
}

/** The keys one script touched, as its keyspace events named them; bounded in count and bytes. */
export class TouchedKeys {
  private readonly keys = new Map<string, Buffer>();
  private nameBytes = 0;
  /** Why the set is incomplete, once a bound is passed (keys are no longer collected). */
  overflow: string | null = null;

  constructor(private readonly limits: ScriptWatchLimits) {}

  add(key: Uint8Array): void {
    if (this.overflow !== null) return;
    const id = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
    if (this.keys.has(id)) return;
    if (this.keys.size >= this.limits.scriptTouchedKeysMax) {
      this.overflow = `the script touched more than scriptTouchedKeysMax ${this.limits.scriptTouchedKeysMax} keys`;
      return;
    }
    this.nameBytes += key.length;
    if (this.nameBytes > this.limits.scriptRepairBytesMax) {
      this.overflow = `the script touched keys whose names pass scriptRepairBytesMax ${this.limits.scriptRepairBytesMax} bytes`;
      return;
    }
    this.keys.set(id, Buffer.from(key));
  }

  get list(): Buffer[] {
    return [...this.keys.values()];
  }
}

/** A key as the script left it: its DUMP payload (null: gone) and its absolute expiry (PEXPIRETIME: -1 none, -2 gone). */
export interface KeyState {
  key: Buffer;
  payload: Buffer | null;
  expireAtMs: number;
}

/** Effects that set every key to its state: RESTORE … REPLACE (ABSTTL when it expires), or DEL when it is gone. */
export function repairEffects(states: readonly KeyState[]): Effect[] {
  return states.map(({ key, payload, expireAtMs }): Effect => {
    if (payload === null || expireAtMs === -2) return [Buffer.from("DEL"), key];
    if (expireAtMs > 0) return [Buffer.from("RESTORE"), key, Buffer.from(String(expireAtMs)), payload, Buffer.from("REPLACE"), Buffer.from("ABSTTL")];
    return [Buffer.from("RESTORE"), key, Buffer.from("0"), payload, Buffer.from("REPLACE")];
  });
}

/** Touched keys that no effect names: writes the script kept off the replication stream (for the warning only). */
export function unpropagatedKeys(touched: readonly Buffer[], effects: readonly Effect[]): Buffer[] {
  const named = new Set<string>();
  for (const effect of effects) for (const arg of effect.slice(1)) named.add(Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength).toString("latin1"));
  return touched.filter((k) => !named.has(k.toString("latin1")));
}

export interface ScriptRun {
  /** The script's own reply (or Redis's error). */
  reply: Promise<unknown>;
  /** The repair effects, once the touched keys are read; rejects with EFFECTS_REFUSED past a bound. */
  repair: Promise<{ effects: Effect[]; keys: Buffer[] }>;
}

/** The subscriber connection that hears the keyspace events of the master's scripts. One per Redis incarnation. */
export class ScriptWatch {
  private touched: TouchedKeys | null = null;
  private broken: string | null = null;

  private constructor(
    private readonly sub: Redis,
    private readonly limits: ScriptWatchLimits,
  ) {
    sub.on("pmessageBuffer", (_pattern: Buffer, _channel: Buffer, key: Buffer) => this.touched?.add(key));
    sub.on("error", (err: Error) => (this.broken ??= err.message));
    // Redis drops a subscriber past its pubsub output limit: the events are then incomplete, so no script is trusted.
    sub.on("end", () => (this.broken ??= "the keyspace event connection closed"));
  }

  static async open(port: number, limits: ScriptWatchLimits, log: Logger): Promise<ScriptWatch> {
    const sub = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    sub.on("error", (err) => log.debug({ err }, "keyspace event connection error"));
    await sub.connect();
    await sub.psubscribe(KEYEVENT_PATTERN);
    return new ScriptWatch(sub, limits);
  }

  /**
   * Sends the script between keyspace events on and off, on `client`'s pipeline; the caller writes the script's
   * marker right after, in the same tick, and admits nothing else until `repair` settles.
   */
  run(client: Redis, name: string, args: Buffer[]): ScriptRun {
    this.touched = new TouchedKeys(this.limits);
    const on = client.call("CONFIG", "SET", "notify-keyspace-events", SCRIPT_KEYSPACE_EVENTS);
    const reply = client.call(name, ...args);
    const off = client.call("CONFIG", "SET", "notify-keyspace-events", "");
    const repair = Promise.all([on, off]).then(() => this.collect(client));
    return { reply, repair };
  }

  close(): void {
    this.touched = null;
    this.sub.disconnect();
  }

  private async collect(client: Redis): Promise<{ effects: Effect[]; keys: Buffer[] }> {
    // The script's events were queued on the subscriber before the OFF reply came: PING's answer follows them.
    await this.sub.ping();
    const touched = this.touched;
    this.touched = null;
    if (this.broken !== null) throw new QjmError(ErrorCode.INTERNAL, `keyspace events lost: ${this.broken}`);
    if (touched === null) throw new QjmError(ErrorCode.INTERNAL, "no script was being watched");
    if (touched.overflow !== null) throw new QjmError(ErrorCode.EFFECTS_REFUSED, `${touched.overflow}: its effects cannot be verified`);
    const keys = touched.list;
    if (keys.length === 0) return { effects: [], keys };
    // Weighed before dumping, so a script over the bound never makes the master hold its values.
    const sizes = await Promise.all(keys.map((k) => client.call("MEMORY", "USAGE", k) as Promise<number | null>));
    const bytes = sizes.reduce<number>((sum, s) => sum + (s ?? 0), 0);
    if (bytes > this.limits.scriptRepairBytesMax) {
      throw new QjmError(ErrorCode.EFFECTS_REFUSED, `the script's ${keys.length} keys hold ${bytes} bytes, more than scriptRepairBytesMax ${this.limits.scriptRepairBytesMax}: its effects cannot be verified`);
    }
    const states = await Promise.all(
      keys.map(async (key): Promise<KeyState> => {
        const [payload, expireAtMs] = await Promise.all([client.dumpBuffer(key), client.call("PEXPIRETIME", key) as Promise<number>]);
        return { key, payload, expireAtMs };
      }),
    );
    return { effects: repairEffects(states), keys };
  }
}

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
 *   notify-keyspace-events EAm) just before the script and off just after, on the same pipelined connection, and a
 *   subscriber connection (this class) collects the keys they name: the keys the script touched.
 * - Nothing else is admitted while a script runs (the master's script barrier) until, once the subscriber has
 *   every event (the key miss of a GET of a secret key, sent after the script, comes after them), a trusted
 *   read-only script (KEY_STATE_SCRIPT) is sent on the same pipeline: it reads each touched key (DUMP,
 *   PEXPIRETIME) exactly as the script left it, before any later write runs. The script's record is its propagated effects followed by `RESTORE key ttl payload REPLACE [ABSTTL]`
 *   (or `DEL key` if it is gone) for every touched key; later records wait behind it. Whatever the script
 *   suppressed, wholly or in part, each copy that applies the record ends with the master's keys. Keys the script
 *   did not touch did not change.
 * - The two writes without keyspace events, FLUSHALL and FLUSHDB, are denied to the master's connection by ACL
 *   (scripts run with their caller's ACL) and refused as client writes by the command table.
 *
 * Cost: only scripts pay; other writes are pipelined as before, with no keyspace events. Admission stops for about
 * one round trip to the local Redis per script (until its events are in), so scripts run one after the other, and
 * a script's record carries a DUMP of every key it touched, so a script that changes one field of a large hash
 * journals the whole hash. Measured (test/integration/stream_guard.test.ts's cluster, 32 clients × 150 writes, on
 * a 2-core machine at load average ~20, so only the order of magnitude means anything): 1-key EVALs fell from
 * 400–930 to 250–330 writes/s in alternating runs; SETs do not take this path (340–650 writes/s in both). A
 * script that touches more than `scriptTouchedKeysMax` keys or whose keys weigh more than `scriptRepairBytesMax`
 * cannot be verified: it is refused after the fact (EFFECTS_REFUSED) and undone by the writer's rebuild from the
 * journal, where it never went.
 *
 * A script that runs past `scriptRunMaxMs` (`while true do end`) would keep the master's Redis busy for ever: it is
 * ended by SCRIPT KILL from a side connection (Redis accepts it once its busy-reply-threshold, 5 s, has passed), or,
 * if it already wrote (UNKILLABLE), by SHUTDOWN NOSAVE: the master then rebuilds from the journal, where it never went.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import type { Effect } from "../segment/record.js";
import type { RespConnection } from "../redis/resp_connection.js";
import type { RespValue } from "../redis/resp_parser.js";
import { replyValueOf, valueOrThrow } from "../redis/reply_value.js";
import type { Logger } from "../util/log.js";

/**
 * Keyevent messages (channel = event, message = key) of every write class (A = g$lshzxetd) and key misses (m): a
 * miss is no write, but the master's GET of its secret sync key after the script fires one, after all the script's.
 */
export const SCRIPT_KEYSPACE_EVENTS = "EAm";
const KEYEVENT_PATTERN = "__keyevent@0__:*";
const KEYMISS_CHANNEL = Buffer.from("__keyevent@0__:keymiss");

export interface ScriptWatchLimits {
  /** A script still running after this is killed (SCRIPT KILL, or SHUTDOWN NOSAVE of the master's Redis). */
  scriptRunMaxMs: number;
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

/**
 * Reads the touched keys (KEYS) in one atomic step: their weight first (MEMORY USAGE), refused past ARGV[1] bytes so
 * the master never holds them, then DUMP and PEXPIRETIME of each. Read-only: Redis propagates nothing for it.
 */
export const KEY_STATE_SCRIPT = `
local total = 0
for _, key in ipairs(KEYS) do total = total + (redis.call('memory', 'usage', key) or 0) end
if total > tonumber(ARGV[1]) then return redis.error_reply('QJM_TOO_LARGE ' .. total) end
local out = {}
for _, key in ipairs(KEYS) do
  out[#out + 1] = redis.call('dump', key) or false
  out[#out + 1] = redis.call('pexpiretime', key)
end
return out`;

export interface ScriptRun {
  /** The script's own reply, with its type (Redis's error reply is a value too). */
  reply: Promise<RespValue>;
  /** Resolves once the touched keys' read is on the pipeline (or nothing needs reading): later writes may run. */
  readSent: Promise<void>;
  /** The repair effects, once the touched keys are read; rejects with EFFECTS_REFUSED past a bound. */
  repair: Promise<{ effects: Effect[]; keys: Buffer[] }>;
}

/** The subscriber connection that hears the keyspace events of the master's scripts. One per Redis incarnation. */
export class ScriptWatch {
  private touched: TouchedKeys | null = null;
  private broken: string | null = null;
  /** Resolved by the sync key's miss: every event of the script in flight is in. */
  private sync: { resolve: () => void; reject: (err: Error) => void } | null = null;
  /** GET of it after a script is the sync point; secret, so no script can end the watch early. */
  private readonly syncKey = Buffer.from(`__qjm:sync:${randomBytes(16).toString("hex")}`);

  private constructor(
    private readonly sub: Redis,
    private readonly limits: ScriptWatchLimits,
    private readonly port: number,
    private readonly password: string,
    private readonly log: Logger,
  ) {
    sub.on("pmessageBuffer", (_pattern: Buffer, channel: Buffer, key: Buffer) => this.onEvent(channel, key));
    sub.on("error", (err: Error) => (this.broken ??= err.message));
    // Redis drops a subscriber past its pubsub output limit: the events are then incomplete, so no script is trusted.
    sub.on("end", () => {
      this.broken ??= "the keyspace event connection closed";
      this.sync?.reject(new QjmError(ErrorCode.INTERNAL, `keyspace events lost: ${this.broken}`));
      this.sync = null;
    });
  }

  private onEvent(channel: Buffer, key: Buffer): void {
    if (!KEYMISS_CHANNEL.equals(channel)) this.touched?.add(key);
    else if (this.syncKey.equals(key)) {
      this.sync?.resolve();
      this.sync = null;
    }
    // Other misses are the script's reads: nothing changed.
  }

  static async open(port: number, password: string, limits: ScriptWatchLimits, log: Logger): Promise<ScriptWatch> {
    const sub = new Redis({ port, host: "127.0.0.1", password, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    sub.on("error", (err) => log.debug({ err }, "keyspace event connection error"));
    await sub.connect();
    await sub.psubscribe(KEYEVENT_PATTERN);
    return new ScriptWatch(sub, limits, port, password, log);
  }

  /**
   * Sends the script between keyspace events on and off, on `client`'s pipeline (the connection that executes
   * writes: one socket, commands in call order); the caller writes the script's marker right after, in the same
   * tick, and admits nothing else until `repair` settles.
   */
  run(client: RespConnection, name: string, args: Buffer[]): ScriptRun {
    this.touched = new TouchedKeys(this.limits);
    const synced = new Promise<void>((resolve, reject) => (this.sync = { resolve, reject }));
    if (this.broken !== null) this.sync?.reject(new QjmError(ErrorCode.INTERNAL, `keyspace events lost: ${this.broken}`));
    const checked = (p: Promise<RespValue>): Promise<RespValue> => p.then(valueOrThrow);
    const on = checked(client.call(["CONFIG", "SET", "notify-keyspace-events", SCRIPT_KEYSPACE_EVENTS]));
    const reply = client.call([name, ...args]);
    // Again every scriptRunMaxMs until the script's reply comes: a kill that failed (its connection refused or timed out
    // on a loaded machine) must not leave a script running for ever, and the master's Redis with it.
    const watchdog = setInterval(() => void this.killScript(), this.limits.scriptRunMaxMs);
    reply.then(() => clearInterval(watchdog), () => clearInterval(watchdog));
    const miss = checked(client.call(["GET", this.syncKey]));
    const off = checked(client.call(["CONFIG", "SET", "notify-keyspace-events", ""]));
    let sent!: () => void;
    const readSent = new Promise<void>((resolve) => (sent = resolve));
    // The replies only prove the commands ran; `synced`, that the subscriber heard everything before the miss.
    const repair = Promise.all([on, miss, off, synced]).then(() => this.collect(client, sent));
    return { reply, readSent, repair };
  }

  close(): void {
    this.touched = null;
    this.sub.disconnect();
  }

  /** The script in flight ran too long: kill it, or, if it wrote already, end this Redis (the master rebuilds). */
  private async killScript(): Promise<void> {
    // No ready check: its INFO would get BUSY from the Redis the script holds.
    const side = new Redis({ port: this.port, host: "127.0.0.1", password: this.password, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    side.on("error", () => {});
    try {
      await side.connect();
      await side.call("SCRIPT", "KILL");
      this.log.warn({ scriptRunMaxMs: this.limits.scriptRunMaxMs }, "killed a script that ran too long");
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes("UNKILLABLE")) {
        this.log.warn({ err }, "could not kill a script that ran too long (tried again in scriptRunMaxMs)");
        return;
      }
      this.log.warn({ scriptRunMaxMs: this.limits.scriptRunMaxMs }, "a script that wrote ran too long: ending the master's Redis (it is rebuilt from the journal)");
      // NOW: Redis 7 otherwise waits for lagging replicas (shutdown-timeout) — and our replication link is one. That
      // wait runs from the server's cron, which a script holding the main thread never lets run: no shutdown at all.
      await side.call("SHUTDOWN", "NOSAVE", "NOW").catch(() => {}); // its connection closes as Redis exits
    } finally {
      side.disconnect();
    }
  }

  private async collect(client: RespConnection, sent: () => void): Promise<{ effects: Effect[]; keys: Buffer[] }> {
    const touched = this.touched;
    this.touched = null;
    if (this.broken !== null) throw new QjmError(ErrorCode.INTERNAL, `keyspace events lost: ${this.broken}`);
    if (touched === null) throw new QjmError(ErrorCode.INTERNAL, "no script was being watched");
    if (touched.overflow !== null) throw new QjmError(ErrorCode.EFFECTS_REFUSED, `${touched.overflow}: its effects cannot be verified`);
    const keys = touched.list;
    if (keys.length === 0) {
      sent();
      return { effects: [], keys };
    }
    // On the writes' connection, so it runs before any write admitted after sent().
    const read = client.call(["EVAL", KEY_STATE_SCRIPT, String(keys.length), ...keys, String(this.limits.scriptRepairBytesMax)]);
    sent();
    const reply = await read.then((v) => replyValueOf(valueOrThrow(v))).catch((err: Error) => {
      if (!err.message.includes("QJM_TOO_LARGE")) throw err;
      const bytes = /QJM_TOO_LARGE (\d+)/.exec(err.message)?.[1] ?? "?";
      throw new QjmError(ErrorCode.EFFECTS_REFUSED, `the script's ${keys.length} keys hold ${bytes} bytes, more than scriptRepairBytesMax ${this.limits.scriptRepairBytesMax}: its effects cannot be verified`);
    });
    return { effects: repairEffects(keyStates(keys, reply)), keys };
  }
}

/** KEY_STATE_SCRIPT's reply: payload (or nil) and PEXPIRETIME for each key, in order. */
function keyStates(keys: readonly Buffer[], reply: unknown): KeyState[] {
  if (!Array.isArray(reply) || reply.length !== keys.length * 2) throw new QjmError(ErrorCode.INTERNAL, "the key state script answered an unexpected shape");
  return keys.map((key, i) => {
    const payload: unknown = reply[2 * i];
    const expireAtMs: unknown = reply[2 * i + 1];
    if ((payload !== null && !Buffer.isBuffer(payload)) || typeof expireAtMs !== "number") throw new QjmError(ErrorCode.INTERNAL, "the key state script answered an unexpected shape");
    return { key, payload, expireAtMs };
  });
}

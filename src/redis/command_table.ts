/**
 * Which client commands the master accepts as writes, decided from the server's own COMMAND reply (flags and ACL
 * categories), so a Redis upgrade that adds or re-flags commands needs no code change here.
 *
 * Order of checks in `classify`:
 *   1. unknown name                                                          → UNKNOWN_COMMAND
 *   2. arity (n > 0: exactly n args incl. the name; n < 0: at least |n|)     → WRONG_ARITY
 *   3. multi-database (deny list below), @transaction category, container
 *      commands with subcommands, flags blocking / pubsub / admin            → COMMAND_REFUSED
 *   4. flag write, or a script (category @scripting, not readonly, no subcommands: EVAL, EVALSHA, FCALL)
 *                                                                             → ok
 *   5. anything else (GET, EVAL_RO, PING, …)                                  → NOT_A_WRITE
 *
 * What Redis 7.0.15 reports (checked with `COMMAND INFO`):
 *   EVAL, EVALSHA, FCALL  flags [noscript, stale, skip_monitor, no_mandatory_keys, movablekeys], ACL [@slow, @scripting]:
 *                         no `write` and no `may_replicate` (7.0 lists neither for any command), so scripts are
 *                         recognised by @scripting; EVAL_RO / EVALSHA_RO / FCALL_RO carry `readonly` and are reads.
 *   PUBLISH               flags [pubsub, loading, stale, fast] → refused (the master's own marker PUBLISH does not
 *                         go through this table).
 *   FLUSHALL, FLUSHDB     flags [write], ACL [@keyspace, @write, @slow, @dangerous] → refused: they are the only
 *                         writes that fire no keyspace event, which the master relies on to check scripts
 *                         (src/master/script_watch.ts); its Redis denies them to scripts by ACL too.
 *   Admin and link-breaking commands (CONFIG, DEBUG, SHUTDOWN, REPLICAOF, SLAVEOF, FAILOVER, SYNC, PSYNC, MONITOR,
 *                         CLIENT KILL, SCRIPT FLUSH, SAVE, ACL, MODULE …) are refused by their admin flag or as
 *                         containers; scripts cannot reach them either (Redis flags them noscript).
 *   Every other accepted command is a `write` of database 0 that Redis propagates as effects.
 *   MULTI/EXEC/DISCARD/WATCH/UNWATCH  flags noscript/loading/stale/fast only, ACL @transaction.
 *   Containers (have subcommands): acl config xinfo client function module script memory object command cluster
 *                         pubsub slowlog latency xgroup — all refused as writes, including the writing ones
 *                         (XGROUP CREATE, FUNCTION LOAD); their read-only subcommands (OBJECT ENCODING, MEMORY
 *                         USAGE, XINFO STREAM) are reads on the front door (isReadOnlySubcommand).
 */
import type { Redis } from "ioredis";
import { ErrorCode } from "../protocol/errors.js";

export interface CommandInfo {
  /** Lower-case, as COMMAND reports it. */
  name: string;
  arity: number;
  flags: ReadonlySet<string>;
  aclCategories: ReadonlySet<string>;
  /** Subcommand names ("config|get", …); empty for plain commands. */
  subcommands: readonly string[];
  /** The subcommands' own entries by their name after the bar ("get"), when COMMAND gave them whole. */
  subcommandInfo?: ReadonlyMap<string, CommandInfo>;
  /**
   * COMMAND's legacy key positions (first, last, step; last < 0 counts from the end). Absent: unknown. Redis 7 flags
   * `movablekeys` every command whose keys these positions do not cover (key specs it cannot express this way).
   */
  keys?: { first: number; last: number; step: number };
}

/** `script`: EVAL, EVALSHA, FCALL — the master checks what they wrote (src/master/script_watch.ts). */
export type Classification = { ok: true; name: string; script: boolean } | { ok: false; code: ErrorCode; message: string };

/**
 * Names refused regardless of flags, because their flags do not say what is wrong with them:
 * they reach databases other than 0 (or another server), and only database 0 is journaled and replicated.
 * MULTI/EXEC/DISCARD/WATCH/UNWATCH are refused through their @transaction category; they are listed too in case
 * a server's categories differ (a client transaction would span several journal writes).
 */
const DENIED: ReadonlyMap<string, string> = new Map([
  ["select", "switches the database; only database 0 is journaled"],
  ["move", "moves a key to another database"],
  ["swapdb", "swaps databases"],
  ["migrate", "moves keys to another server"],
  ["flushall", "empties the keyspace without keyspace events (delete keys with DEL or UNLINK)"],
  ["flushdb", "empties the keyspace without keyspace events (delete keys with DEL or UNLINK)"],
  ["restore-asking", "is a cluster-internal command"],
  ["multi", "transactions are not supported"],
  ["exec", "transactions are not supported"],
  ["discard", "transactions are not supported"],
  ["watch", "transactions are not supported"],
  ["unwatch", "transactions are not supported"],
]);

const REFUSING_FLAGS = ["blocking", "pubsub", "admin"] as const;

export class CommandTable {
  private readonly byName: ReadonlyMap<string, CommandInfo>;

  constructor(commands: Iterable<CommandInfo>) {
    const map = new Map<string, CommandInfo>();
    for (const c of commands) map.set(c.name, c);
    this.byName = map;
  }

  /** Reads the table from a running server. */
  static async load(redis: Redis): Promise<CommandTable> {
    return CommandTable.fromCommandReply(await redis.call("COMMAND"));
  }

  /** Builds the table from the raw reply of COMMAND (as ioredis returns it: nested arrays of strings and numbers). */
  static fromCommandReply(reply: unknown): CommandTable {
    if (!Array.isArray(reply)) throw new Error("COMMAND reply is not an array");
    return new CommandTable(reply.map((entry: unknown) => parseEntry(entry)));
  }

  get size(): number {
    return this.byName.size;
  }

  lookup(name: string): CommandInfo | undefined {
    return this.byName.get(name.toLowerCase());
  }

  /**
   * The keys a command names, by COMMAND's key positions; null when they cannot be told: an unknown command, movable
   * keys (scripts, ZUNIONSTORE, SORT … STORE), or none named at all — a command with no key argument (KEYS, SCAN,
   * DBSIZE, RANDOMKEY) reads or writes the keyspace as a whole. Null is the conservative answer: every key.
   */
  keysOf(args: readonly Buffer[]): Buffer[] | null {
    const info = args.length === 0 ? undefined : this.byName.get(args[0].toString("latin1").toLowerCase());
    if (info === undefined || info.keys === undefined || info.flags.has("movablekeys")) return null;
    const { first, last, step } = info.keys;
    if (first <= 0 || step <= 0) return null;
    const end = last < 0 ? args.length + last : Math.min(last, args.length - 1);
    const keys: Buffer[] = [];
    for (let i = first; i <= end; i += step) keys.push(args[i]);
    return keys;
  }

  /**
   * A read-only subcommand of a container (OBJECT ENCODING, MEMORY USAGE, XINFO STREAM): flagged `readonly` and not
   * `admin` in COMMAND's entry of the subcommand. The containers stay refused as writes (classify); these are reads.
   */
  isReadOnlySubcommand(args: readonly Buffer[]): boolean {
    if (args.length < 2) return false;
    const info = this.byName.get(args[0].toString("latin1").toLowerCase());
    const sub = info?.subcommandInfo?.get(args[1].toString("latin1").toLowerCase());
    if (sub === undefined || !sub.flags.has("readonly") || sub.flags.has("admin")) return false;
    return sub.arity > 0 ? args.length === sub.arity : args.length >= -sub.arity;
  }

  classify(args: readonly (Buffer | string)[]): Classification {
    if (args.length === 0) return refuse(ErrorCode.UNKNOWN_COMMAND, "empty command");
    const first = args[0];
    // latin1 maps bytes 1:1, so a non-ASCII name cannot alias an ASCII one.
    const name = (typeof first === "string" ? first : first.toString("latin1")).toLowerCase();
    const info = this.byName.get(name);
    if (info === undefined) return refuse(ErrorCode.UNKNOWN_COMMAND, `unknown command '${printable(name)}'`);
    const n = args.length;
    if (info.arity > 0 ? n !== info.arity : n < -info.arity) {
      return refuse(ErrorCode.WRONG_ARITY, `wrong number of arguments for '${name}': ${n - 1} given`);
    }
    const denied = DENIED.get(name);
    if (denied !== undefined) return refuse(ErrorCode.COMMAND_REFUSED, `'${name}' is refused: ${denied}`);
    if (name === "copy" && hasDbOption(args)) return refuse(ErrorCode.COMMAND_REFUSED, "'copy' with DB is refused: it writes to another database");
    if (info.aclCategories.has("@transaction")) return refuse(ErrorCode.COMMAND_REFUSED, `'${name}' is refused: transactions are not supported`);
    if (info.subcommands.length > 0) return refuse(ErrorCode.COMMAND_REFUSED, `'${name}' is refused: container commands are not supported`);
    for (const flag of REFUSING_FLAGS) {
      if (info.flags.has(flag)) return refuse(ErrorCode.COMMAND_REFUSED, `'${name}' is refused: it is flagged ${flag}`);
    }
    if (isScript(info)) return { ok: true, name, script: true };
    if (info.flags.has("write")) return { ok: true, name, script: false };
    return refuse(ErrorCode.NOT_A_WRITE, `'${name}' is not a write: send reads to a replica`);
  }
}

function refuse(code: ErrorCode, message: string): Classification {
  return { ok: false, code, message };
}

/** EVAL, EVALSHA, FCALL: they write through the commands they run, so COMMAND cannot flag them `write`. */
function isScript(info: CommandInfo): boolean {
  return info.aclCategories.has("@scripting") && !info.flags.has("readonly") && info.subcommands.length === 0;
}

/** COPY source destination [DB destination-db] [REPLACE]: options start after the two keys. */
/**
 * COPY's DB option naming another database than 0. `DB 0` is database 0's own COPY; a value Redis does not read as an
 * integer (`DB notanumber`, `DB 01`) goes to Redis, which answers its own error ("value is not an integer or out of
 * range", keyspace.tcl expects it) and writes nothing.
 */
function hasDbOption(args: readonly (Buffer | string)[]): boolean {
  const text = (a: Buffer | string): string => (typeof a === "string" ? a : a.toString("latin1"));
  for (let i = 3; i < args.length - 1; i++) {
    if (args[i].length !== 2 || text(args[i]).toLowerCase() !== "db") continue;
    const value = text(args[i + 1]);
    // Redis's string2ll: an optional minus, then no leading zero (out-of-range integers are refused here, harmlessly).
    if (value !== "0" && /^-?[1-9][0-9]*$/.test(value)) return true;
  }
  return false;
}

function printable(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}

/** One COMMAND entry: [name, arity, flags[], firstKey, lastKey, step, aclCategories[], tips[], keySpecs[], subcommands[]]. */
function parseEntry(entry: unknown): CommandInfo {
  if (!Array.isArray(entry) || entry.length < 3) throw new Error("COMMAND entry is not an array of at least 3 fields");
  const [name, arity, flags] = entry as unknown[];
  if (typeof name !== "string" && !Buffer.isBuffer(name)) throw new Error("COMMAND entry without a name");
  if (typeof arity !== "number" || !Number.isInteger(arity)) throw new Error(`COMMAND entry ${String(name)} without an integer arity`);
  const subs: unknown = entry[9];
  const subInfo = new Map<string, CommandInfo>();
  if (Array.isArray(subs)) {
    for (const sub of subs) if (Array.isArray(sub) && sub.length >= 3) {
      const info = parseEntry(sub);
      subInfo.set(info.name.slice(info.name.indexOf("|") + 1), info);
    }
  }
  return {
    name: String(name).toLowerCase(),
    arity,
    flags: new Set(stringList(flags)),
    aclCategories: new Set(stringList(entry[6])),
    subcommands: Array.isArray(subs) ? subs.map((s: unknown) => (Array.isArray(s) ? String(s[0]) : String(s))) : [],
    ...(subInfo.size > 0 ? { subcommandInfo: subInfo } : {}),
    ...keyPositions(entry[3], entry[4], entry[5]),
  };
}

function keyPositions(first: unknown, last: unknown, step: unknown): Pick<CommandInfo, "keys"> {
  const int = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);
  return int(first) && int(last) && int(step) ? { keys: { first, last, step } } : {};
}

function stringList(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value.map((v: unknown) => String(v).toLowerCase());
}

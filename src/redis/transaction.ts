/**
 * A transaction's commands checked as the master runs them (pure): between MULTI and EXEC on its Redis, then its
 * marker, so Redis propagates the writes as one MULTI … EXEC block that becomes one record (effect_assembler.ts drops
 * the MULTI and EXEC: a replica applies every record inside a MULTI of its own, so no MULTI is ever nested).
 *
 * Each command passes the single write's classification (command_table.ts), except that a read is allowed, as Redis
 * allows it inside MULTI (its reply is in EXEC's array, and it reads a state that commits with the transaction: the
 * record comes after every write Redis ran before it). Refused: scripts (the master checks a script's writes with a
 * watch of its own, which cannot run inside MULTI), read-only scripts (unbounded), blocking, pub/sub, admin and
 * container commands, other databases, and MULTI/EXEC/DISCARD/WATCH themselves. UNWATCH, PING and ECHO are allowed
 * (Redis queues them; they change nothing).
 */
import { ErrorCode } from "../protocol/errors.js";
import type { CommandTable } from "./command_table.js";

export type TxVerdict = { ok: true } | { ok: false; code: ErrorCode; message: string };

/** Commands Redis queues in a transaction that are neither writes nor reads, and change nothing (TIME reads no key). */
const HARMLESS = new Set(["unwatch", "ping", "echo", "time"]);
/** Redis's text for EXEC after a queued command was refused. */
export const EXECABORT = "EXECABORT Transaction discarded because of previous errors.";

/** Whether the master runs `tx`: each command as a write or a read (none refused). */
export function classifyTransaction(commands: CommandTable, tx: readonly (readonly Buffer[])[]): TxVerdict {
  for (let i = 0; i < tx.length; i++) {
    const why = refusalInTransaction(commands, tx[i]);
    if (why === null) continue;
    // Unknown commands and wrong arity are refused by Redis when queued: EXEC then answers EXECABORT.
    if (why.code === ErrorCode.UNKNOWN_COMMAND || why.code === ErrorCode.WRONG_ARITY) {
      return { ok: false, code: ErrorCode.REDIS_ERROR, message: `${EXECABORT.slice(0, -1)}: command ${i + 1}: ${why.message}` };
    }
    return { ok: false, code: why.code, message: `command ${i + 1} of the transaction: ${why.message}` };
  }
  return { ok: true };
}

/** Null when `args` may run inside a transaction; else why not. */
export function refusalInTransaction(commands: CommandTable, args: readonly Buffer[]): { code: ErrorCode; message: string } | null {
  const verdict = commands.classify(args);
  if (verdict.ok) return verdict.script ? { code: ErrorCode.COMMAND_REFUSED, message: `'${verdict.name}': scripts inside a transaction are not supported` } : null;
  const name = args[0].toString("latin1").toLowerCase();
  if (verdict.code === ErrorCode.UNKNOWN_COMMAND || verdict.code === ErrorCode.WRONG_ARITY) return verdict;
  if (HARMLESS.has(name)) return null;
  // OBJECT ENCODING, MEMORY USAGE, XINFO STREAM…: reads (the front door serves them), inside a transaction too.
  if (commands.isReadOnlySubcommand(args)) return null;
  const info = commands.lookup(name);
  if (info === undefined || !info.flags.has("readonly")) return verdict.code === ErrorCode.NOT_A_WRITE ? { code: ErrorCode.COMMAND_REFUSED, message: `'${name}' is neither a write nor a read` } : verdict;
  if (info.aclCategories.has("@scripting")) return { code: ErrorCode.COMMAND_REFUSED, message: `'${name}': read-only scripts may run unbounded and are not served` };
  if (info.subcommands.length > 0 || info.flags.has("pubsub") || info.flags.has("admin")) return verdict.code === ErrorCode.NOT_A_WRITE ? { code: ErrorCode.COMMAND_REFUSED, message: `'${name}' is refused in a transaction` } : verdict;
  // A read flagged blocking (XREAD) is a plain read without BLOCK; with it, refused as every blocking command.
  if (info.flags.has("blocking") && hasBlock(args)) return { code: ErrorCode.COMMAND_REFUSED, message: `'${name}' with BLOCK is refused: it is a blocking command` };
  if (verdict.code !== ErrorCode.NOT_A_WRITE && !info.flags.has("blocking")) return verdict;
  return null;
}

/** XREAD's BLOCK option comes before STREAMS. */
function hasBlock(args: readonly Buffer[]): boolean {
  for (let i = 1; i < args.length; i++) {
    const word = args[i].length <= 7 ? args[i].toString("latin1").toLowerCase() : "";
    if (word === "streams") return false;
    if (word === "block") return true;
  }
  return false;
}

/**
 * Every key the transaction names (its writes' and its reads'), by COMMAND's key positions; null when one command's
 * keys cannot be told (movable keys, keyless commands such as DBSIZE): the conservative answer, every key.
 */
export function transactionKeys(commands: CommandTable, tx: readonly (readonly Buffer[])[]): Buffer[] | null {
  const keys: Buffer[] = [];
  for (const args of tx) {
    const name = args[0].toString("latin1").toLowerCase();
    if (HARMLESS.has(name)) continue;
    const k = commands.keysOf(args);
    if (k === null) return null;
    keys.push(...k);
  }
  return keys;
}

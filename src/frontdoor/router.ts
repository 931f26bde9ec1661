/**
 * Where a front-door request goes (pure): answered by the door itself, read on the node's own Redis, written through
 * the journal, a QJM.* command answered in order after the connection's writes (LASTTXID, WAIT), or refused with the
 * error text the client gets (without the `-`).
 *
 * Order: authentication first (NOAUTH), then the door's own commands (QJM.CONSISTENCY among them), QJM.LASTTXID and
 * QJM.WAIT, transaction control (MULTI, EXEC, DISCARD, WATCH, UNWATCH: session.ts with transaction_state.ts), pub/sub
 * ((P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH, PUBSUB: pubsub.ts, carried between nodes over NATS), then what
 * is not served (blocking commands, WAIT: a clear "not supported"), then the node's command table (the redis-server's
 * COMMAND reply, src/redis/command_table.ts): its writes go through the journal, its `readonly` commands are reads,
 * and the rest is refused with Redis's own text for an unknown command or a wrong arity. Last, a RESP2 connection
 * with a subscription (Redis's subscribed mode) is refused anything but (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT
 * and RESET, after the unknown-command and arity errors, as Redis orders them.
 */
import { ErrorCode } from "../protocol/errors.js";
import type { CommandTable } from "../redis/command_table.js";
import { verdictOf } from "../client/retry.js";
import { PUBSUB_ARITY, subscribedModeRefusal, type PubSubCommand } from "./pubsub.js";

/** Commands the door answers itself (COMMAND and DBSIZE are reads: the node's Redis answers them). */
export const LOCAL_COMMANDS = ["ping", "echo", "hello", "auth", "client", "select", "quit", "reset", "info", "config", "qjm.consistency"] as const;
export type LocalCommand = (typeof LOCAL_COMMANDS)[number];

/** The door's QJM.* commands that answer after the connection's earlier writes (as a read is ordered). */
export type QjmCommand = "lasttxid" | "wait";

/** Transaction control, answered by the connection's TransactionState (transaction_state.ts). */
export type TxCommand = "multi" | "exec" | "discard" | "watch" | "unwatch";
const TX_COMMANDS: ReadonlyMap<string, { command: TxCommand; arity: number }> = new Map([
  ["multi", { command: "multi", arity: 1 }],
  ["exec", { command: "exec", arity: 1 }],
  ["discard", { command: "discard", arity: 1 }],
  ["watch", { command: "watch", arity: -2 }],
  ["unwatch", { command: "unwatch", arity: 1 }],
] as const);

export type Route =
  | { kind: "local"; command: LocalCommand }
  | { kind: "read" }
  | { kind: "write" }
  | { kind: "qjm"; command: QjmCommand }
  | { kind: "tx"; command: TxCommand }
  | { kind: "pubsub"; command: PubSubCommand }
  | { kind: "refuse"; error: string };

export interface RouteContext {
  /** The node's command table; undefined while the node starts. */
  commands: CommandTable | undefined;
  authenticated: boolean;
  /** The connection's protocol and subscriptions: RESP2 with any is Redis's subscribed mode. */
  protocol?: 2 | 3;
  subscriptions?: number;
}

const LOCAL = new Set<string>(LOCAL_COMMANDS);
/** What a connection may send before it authenticated. */
const BEFORE_AUTH = new Set(["auth", "hello", "quit", "reset"]);

/** Not served by the door: refused with what is missing, not as unknown. */
const NOT_YET: ReadonlyMap<string, string> = new Map([["wait", "WAIT (every acknowledged write is on a majority of journal nodes already)"]]);

/** Containers whose subcommand Redis names in the subscribed-mode refusal (`client|id`). */
const CONTAINERS = new Set(["client", "config", "pubsub", "command", "object", "memory", "xinfo", "function", "script"]);

/**
 * Read-only scripts run on the node's Redis for as long as they like (lua-time-limit only makes Redis answer BUSY to
 * everyone else): on the master that stalls every write until its term fails, on a replica its replay. Refused.
 */
const UNBOUNDED_READS = new Set(["eval_ro", "evalsha_ro", "fcall_ro"]);

export function notSupportedYet(what: string): string {
  return `ERR qjm: not supported yet by the front door: ${what}`;
}

export function route(args: readonly Buffer[], ctx: RouteContext): Route {
  const name = args[0].toString("latin1").toLowerCase();
  const r = routed(name, args, ctx);
  // Redis's rejectCommand answers a refused EXEC as execCommandAbort does (and discards the transaction: session.ts).
  if (r.kind === "refuse" && name === "exec" && r.error.startsWith("ERR ")) return { kind: "refuse", error: `${EXEC_ABORT_PREFIX}${r.error.slice(4)}` };
  return r;
}

/** A refused EXEC's text before the reason (Redis's execCommandAbort). */
export const EXEC_ABORT_PREFIX = "EXECABORT Transaction discarded because of: ";

function routed(name: string, args: readonly Buffer[], ctx: RouteContext): Route {
  const r = routeOf(name, args, ctx);
  if (r.kind === "refuse" || ctx.protocol !== 2 || !ctx.subscriptions) return r;
  const full = CONTAINERS.has(name) && args.length > 1 ? `${name}|${args[1].toString("latin1", 0, 64).toLowerCase()}` : name;
  const refusal = subscribedModeRefusal(name, full, ctx.protocol, ctx.subscriptions);
  return refusal === null ? r : { kind: "refuse", error: refusal };
}

function routeOf(name: string, args: readonly Buffer[], ctx: RouteContext): Route {
  if (!ctx.authenticated && !BEFORE_AUTH.has(name)) return { kind: "refuse", error: "NOAUTH Authentication required." };
  if (LOCAL.has(name)) return { kind: "local", command: name as LocalCommand };
  if (name === "qjm.lasttxid") return { kind: "qjm", command: "lasttxid" };
  if (name === "qjm.wait") return { kind: "qjm", command: "wait" };
  // TIME is flagged neither write nor readonly (it reads no key): the node's Redis answers it, as it does COMMAND.
  if (name === "command" || name === "time") return { kind: "read" };
  const tx = TX_COMMANDS.get(name);
  if (tx !== undefined) {
    if (!arityOk(args.length, tx.arity)) return { kind: "refuse", error: `ERR wrong number of arguments for '${name}' command` };
    return { kind: "tx", command: tx.command };
  }
  const pubsubArity = PUBSUB_ARITY.get(name);
  if (pubsubArity !== undefined) {
    if (!arityOk(args.length, pubsubArity)) return { kind: "refuse", error: `ERR wrong number of arguments for '${name}' command` };
    return { kind: "pubsub", command: name as PubSubCommand };
  }
  const later = NOT_YET.get(name);
  if (later !== undefined) return { kind: "refuse", error: notSupportedYet(later) };
  if (UNBOUNDED_READS.has(name)) return { kind: "refuse", error: `ERR qjm: '${name}' is not served by the front door: a read-only script may run unbounded on the node's Redis and stall it` };
  if (ctx.commands === undefined) return { kind: "refuse", error: "LOADING qjm: the node is starting, its command table is not read yet" };
  return byTable(name, args, ctx.commands);
}

/** Redis's arity: exactly n arguments (the name included), or at least -n when negative. */
function arityOk(n: number, arity: number): boolean {
  return arity > 0 ? n === arity : n >= -arity;
}

function byTable(name: string, args: readonly Buffer[], commands: CommandTable): Route {
  if (commands.isReadOnlySubcommand(args)) return { kind: "read" };
  const verdict = commands.classify(args);
  if (verdict.ok) return { kind: "write" };
  const info = commands.lookup(name);
  switch (verdict.code) {
    case ErrorCode.UNKNOWN_COMMAND:
      return { kind: "refuse", error: unknownCommand(args) };
    case ErrorCode.WRONG_ARITY:
      return { kind: "refuse", error: `ERR wrong number of arguments for '${name}' command` };
    case ErrorCode.NOT_A_WRITE:
      if (info === undefined || !info.flags.has("readonly")) return { kind: "refuse", error: `ERR qjm: '${name}' is neither a write nor a read: the front door does not serve it` };
      if (info.flags.has("blocking") && hasBlockOption(args)) return { kind: "refuse", error: notSupportedYet("blocking commands") };
      return { kind: "read" };
    default:
      // XREAD is flagged blocking (so the table refuses it as a write) but is a plain read without BLOCK.
      if (info?.flags.has("blocking") && info.flags.has("readonly") && !hasBlockOption(args)) return { kind: "read" };
      if (info?.flags.has("blocking")) return { kind: "refuse", error: notSupportedYet("blocking commands") };
      return { kind: "refuse", error: `ERR qjm ${verdict.code} ${verdict.message}` };
  }
}

/** XREAD is flagged blocking but blocks only with its BLOCK option, which comes before STREAMS (keys and ids follow). */
export function hasBlockOption(args: readonly Buffer[]): boolean {
  for (let i = 1; i < args.length; i++) {
    const word = args[i].length <= 7 ? args[i].toString("latin1").toLowerCase() : "";
    if (word === "streams") return false;
    if (word === "block") return true;
  }
  return false;
}

/** Redis 7's text: `ERR unknown command 'foo', with args beginning with: 'a' 'b' ` (the arguments shown cut at 128 bytes). */
export function unknownCommand(args: readonly Buffer[]): string {
  let shown = "";
  for (let i = 1; i < args.length && shown.length < 128; i++) shown += `'${printable(args[i].toString("utf8", 0, 128 - shown.length))}' `;
  return `ERR unknown command '${printable(args[0].toString("utf8", 0, 128))}', with args beginning with: ${shown}`;
}

function printable(s: string): string {
  return s.replace(/[\r\n]/g, " ");
}

/**
 * The error a client gets for a write the journal did not take (without the `-`), saying first what became of the
 * write, then why (the message, which names the txid when the write had one: the master's NO_QUORUM, a committed
 * write's REPLY_UNDELIVERABLE). Redis's own error (WRONGTYPE…) keeps Redis's text. `outcomeUnknown`: some attempt of
 * the client library (retries included) may have applied it, whatever the last attempt's code says.
 *   - `TRYAGAIN qjm <CODE> not applied, send it again: …` only when no attempt can have applied it (OVERLOADED,
 *     NOT_WRITER after retries);
 *   - `ERR qjm <CODE> outcome unknown, the write may have been applied: …` (NO_QUORUM, TIMEOUT, an earlier unknown);
 *   - `ERR qjm <CODE> applied, do not send it again: …` (committed, its reply lost);
 *   - `ERR qjm <CODE> …` otherwise: a definite answer about the write itself (too large, refused…).
 */
export function writeError(code: string, message: string, outcomeUnknown = false): string {
  if (code === ErrorCode.REDIS_ERROR) return message;
  const verdict = verdictOf(code);
  // The master's NO_QUORUM text starts by saying it; said once, up front.
  const why = oneLine(message.replace(/^outcome unknown: /, ""));
  if (outcomeUnknown || verdict.outcome === "unknown" || code === "CLOSED") return `ERR qjm ${code} outcome unknown, the write may have been applied: ${why}`;
  if (verdict.outcome === "applied") return `ERR qjm ${code} applied, do not send it again: ${why}`;
  if (verdict.retry) return `TRYAGAIN qjm ${code} not applied, send it again: ${why}`;
  return `ERR qjm ${code} ${why}`;
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, " ");
}

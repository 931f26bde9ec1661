/**
 * MULTI / EXEC / DISCARD / WATCH / UNWATCH on one front-door connection (pure; issue #12 item 4), with Redis's replies:
 * MULTI starts queueing (`+OK`); each command after it is checked as a single command would be and answers `+QUEUED`,
 * or its error — which marks the transaction to abort, as Redis's flagTransaction does, so EXEC answers EXECABORT;
 * EXEC hands the queued commands (and what was watched) to the door, to go through the journal as one transaction
 * write; DISCARD drops them. WATCH outside MULTI remembers keys and the txid the node had applied then (the master
 * aborts the EXEC, nil, when a key may have been modified after it: src/master/watch_core.ts); EXEC, DISCARD, UNWATCH
 * and RESET forget them. Bounded: at most `commandsMax` commands and `bytesMax` bytes queued, `watchKeysMax` keys
 * watched (past them the transaction is aborted, or the WATCH refused).
 */
import type { CommandTable } from "../redis/command_table.js";
import { EXECABORT } from "../redis/transaction.js";
import type { PubSubCommand } from "./pubsub.js";
import type { LocalCommand } from "./router.js";

/**
 * A command queued after MULTI that the door runs itself at EXEC, in its place among the transaction's replies (CLIENT,
 * HELLO, SELECT, INFO, SUBSCRIBE, PUBLISH…; `upstream`: COMMAND, answered by the node's Redis): null for the commands
 * that go with the transaction's journal write.
 */
export type DoorQueued = { kind: "local"; command: LocalCommand } | { kind: "pubsub"; command: PubSubCommand } | { kind: "upstream" };

/** One queued command. */
export interface Queued {
  args: Buffer[];
  door: DoorQueued | null;
}

/**
 * A command COMMAND flags `no_multi` (SAVE, SHUTDOWN, SYNC, PSYNC) after MULTI: Redis's own error, which its
 * processCommand answers before queueing — so a client (Redis's multi.tcl) sees that text, not the door's reason for
 * refusing the command outside a transaction (admin). The transaction is marked to abort either way.
 */
export const NO_MULTI_ERROR = "ERR Command not allowed inside a transaction";
export function noMultiRefusal(commands: CommandTable | undefined, args: readonly Buffer[]): string | null {
  const info = commands?.lookup(args[0].toString("latin1").toLowerCase());
  return info?.flags.has("no_multi") === true ? NO_MULTI_ERROR : null;
}

/**
 * Redis's checks when it queues a command the door runs itself (processCommand: arity, then a container's unknown
 * subcommand and its arity), by the node's command table: its error (the transaction aborts), or null. The router
 * has made these checks already for the commands that go through the journal.
 */
export function queueingRefusal(commands: CommandTable | undefined, args: readonly Buffer[]): string | null {
  const name = args[0].toString("latin1").toLowerCase();
  const info = commands?.lookup(name);
  if (info === undefined) return null;
  if (!arityOk(args.length, info.arity)) return `ERR wrong number of arguments for '${name}' command`;
  if (info.subcommandInfo === undefined || info.subcommandInfo.size === 0) return null;
  const subName = args[1].toString("latin1").toLowerCase();
  const sub = info.subcommandInfo.get(subName);
  if (sub === undefined) return `ERR unknown subcommand '${args[1].toString("utf8", 0, 128).replace(/[\r\n]/g, " ")}'. Try ${name.toUpperCase()} HELP.`;
  return arityOk(args.length, sub.arity) ? null : `ERR wrong number of arguments for '${name}|${subName}' command`;
}

function arityOk(n: number, arity: number): boolean {
  return arity > 0 ? n === arity : n >= -arity;
}

export interface TxLimitsOfDoor {
  commandsMax: number;
  /** Bytes of the queued commands (the write bound: they travel as one write). */
  bytesMax: number;
  watchKeysMax: number;
}

/** Counted per queued argument besides its bytes (msgpack's framing, the Buffer). */
const ARG_OVERHEAD_BYTES = 8;

/** `tx`: the commands for the journal write; `queued`: every queued command in order, the door's own among them. */
export type ExecResult = { kind: "error"; error: string } | { kind: "send"; tx: Buffer[][]; queued: Queued[]; watch: { txid: number; keys: Buffer[] } | null };

export class TransactionState {
  /** The commands queued since MULTI; null outside MULTI. */
  private queue: Queued[] | null = null;
  private bytes = 0;
  /** Why EXEC will answer EXECABORT (a queued command was refused); null if none. */
  private abortedBy: string | null = null;
  /** Watched keys (latin1 text → bytes) and the lowest txid the node had applied when one was watched. */
  private watched: { txid: number; keys: Map<string, Buffer> } | null = null;

  constructor(private readonly limits: TxLimitsOfDoor) {}

  get queueing(): boolean {
    return this.queue !== null;
  }
  get queued(): number {
    return this.queue?.length ?? 0;
  }
  get watchedKeys(): number {
    return this.watched?.keys.size ?? 0;
  }

  multi(): { ok: true } | { error: string } {
    if (this.queue !== null) return { error: "ERR MULTI calls can not be nested" };
    this.queue = [];
    this.bytes = 0;
    this.abortedBy = null;
    return { ok: true };
  }

  /** A command after MULTI that passed the door's checks: `+QUEUED`, or the bound's error (the transaction aborts). */
  add(args: Buffer[], door: DoorQueued | null = null): { ok: true } | { error: string } {
    if (this.queue === null) throw new Error("add outside MULTI");
    let bytes = 0;
    for (const a of args) bytes += a.length + ARG_OVERHEAD_BYTES;
    if (this.queue.length >= this.limits.commandsMax) return this.refused(`ERR qjm: a transaction holds at most ${this.limits.commandsMax} commands (txCommandsMax)`);
    if (this.bytes + bytes > this.limits.bytesMax) return this.refused(`ERR qjm: a transaction holds at most ${this.limits.bytesMax} bytes (the write bound)`);
    this.queue.push({ args, door });
    this.bytes += bytes;
    return { ok: true };
  }

  /** A command after MULTI that the door refused: its error goes back, and EXEC will answer EXECABORT. */
  refused(error: string): { error: string } {
    this.abortedBy ??= error;
    return { error };
  }

  exec(): ExecResult {
    if (this.queue === null) return { kind: "error", error: "ERR EXEC without MULTI" };
    const queued = this.queue;
    const aborted = this.abortedBy !== null;
    const watch = this.watched === null ? null : { txid: this.watched.txid, keys: [...this.watched.keys.values()] };
    this.clear();
    if (aborted) return { kind: "error", error: EXECABORT };
    return { kind: "send", tx: queued.filter((q) => q.door === null).map((q) => q.args), queued, watch };
  }

  discard(): { ok: true } | { error: string } {
    if (this.queue === null) return { error: "ERR DISCARD without MULTI" };
    this.clear();
    return { ok: true };
  }

  /** WATCH outside MULTI (the door refuses it inside): `txid` is what the node had applied now. */
  watch(keys: readonly Buffer[], txid: number): { ok: true } | { error: string } {
    if (this.queue !== null) return { error: "ERR WATCH inside MULTI is not allowed" };
    const w = (this.watched ??= { txid, keys: new Map() });
    w.txid = Math.min(w.txid, txid);
    for (const k of keys) {
      const name = k.toString("latin1");
      if (!w.keys.has(name) && w.keys.size >= this.limits.watchKeysMax) return { error: `ERR qjm: a connection watches at most ${this.limits.watchKeysMax} keys (txWatchKeysMax)` };
      w.keys.set(name, k);
    }
    return { ok: true };
  }

  unwatch(): void {
    this.watched = null;
  }

  /** EXEC, DISCARD, RESET: out of MULTI, nothing watched. */
  clear(): void {
    this.queue = null;
    this.bytes = 0;
    this.abortedBy = null;
    this.watched = null;
  }
}

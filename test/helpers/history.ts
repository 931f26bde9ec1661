/**
 * A history checker for fault tests: record every client write (invoked, then ok / definitely failed / outcome
 * unknown), read the committed journal back from the journal nodes, and check the guarantees docs/reliability.md promises —
 * no acked write lost, none applied twice, txids unique and gap-free, replicas equal to a replay of the journal.
 *
 * Every check is pure and returns human-readable violations (empty = pass), one per kind of violation, each naming
 * its first few examples, so `t.deepEqual(checkAll(...), [])` prints what went wrong.
 */
import { plainReply } from "../../src/redis/reply_value.js";
import type { ReplyValue } from "../../src/segment/record.js";
import type { NatsConnection } from "../../src/nats/bus.js";
import { request } from "../../src/nats/bus.js";
import { parseJournalReply, type JournalReply, type WriteReply } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { decodeEffects, scanRecords, type Effect, type RecordView } from "../../src/segment/record.js";
import type { KeyDump } from "./harness.js";

// ---------------------------------------------------------------------------------------------------------------
// The history

export type OpId = number;
export type WriteArg = string | number | Buffer;

interface OpBase {
  readonly id: OpId;
  readonly client: number;
  readonly args: readonly WriteArg[];
  /** performance.now() when the client sent the write. */
  readonly invokedAtMs: number;
}
/** Invoked, no outcome recorded yet. */
export interface PendingOp extends OpBase {
  readonly status: "pending";
}
/** Acked: committed on a majority of journal nodes under `txid`. */
export interface OkOp extends OpBase {
  readonly status: "ok";
  readonly txid: number;
  readonly reply: unknown;
  readonly completedAtMs: number;
}
/** A definite failure: the write was not executed, so it must not be in the journal. */
export interface FailOp extends OpBase {
  readonly status: "fail";
  readonly code: string;
  readonly message: string;
  readonly completedAtMs: number;
}
/** Outcome unknown (NO_QUORUM, timeout, transport error…): the write may be in the journal, at most once. */
export interface UnknownOp extends OpBase {
  readonly status: "unknown";
  readonly reason: string;
  readonly completedAtMs: number;
}
export type Op = PendingOp | OkOp | FailOp | UnknownOp;

/**
 * Error codes that mean the write was refused before Redis changed anything (nothing journaled). Every other code —
 * NO_QUORUM, NOT_WRITER, TIMEOUT, INTERNAL… — leaves the outcome unknown.
 */
export const DEFINITE_FAILURE_CODES: ReadonlySet<string> = new Set([
  "NOT_A_WRITE",
  "WRONG_ARITY",
  "COMMAND_REFUSED",
  "OVERLOADED",
  "REDIS_ERROR",
  "PAYLOAD_TOO_LARGE",
  "BAD_REQUEST",
  "UNKNOWN_COMMAND",
  "NOT_MSGPACK",
]);

/** True when a write that failed with `code` was certainly not executed. */
export function isDefiniteFailure(code: string): boolean {
  return DEFINITE_FAILURE_CODES.has(code);
}

/**
 * The operations of concurrent clients: each is invoked once and completed once (ok, fail or unknown), with its
 * invoke and completion times (performance.now()) for real-time order checks.
 */
export class History {
  private readonly ops: Op[] = [];

  /** Records that `client` is about to send `args`; complete it with exactly one of ok / fail / unknown. */
  invoke(client: number, args: readonly WriteArg[]): OpId {
    const id = this.ops.length;
    this.ops.push({ id, client, args: [...args], invokedAtMs: performance.now(), status: "pending" });
    return id;
  }

  /** The write was acked under `txid`. */
  ok(id: OpId, txid: number, reply: unknown): void {
    if (!Number.isSafeInteger(txid) || txid < 1) throw new Error(`history: op #${id} acked with an invalid txid ${String(txid)}`);
    const op = this.pending(id);
    this.ops[id] = { ...op, status: "ok", txid, reply, completedAtMs: performance.now() };
  }

  /** The write definitely failed (`code` must be one of DEFINITE_FAILURE_CODES; anything else is unknown()). */
  fail(id: OpId, code: string, message: string): void {
    if (!isDefiniteFailure(code)) throw new Error(`history: ${code} does not prove op #${id} was not executed; record it with unknown()`);
    const op = this.pending(id);
    this.ops[id] = { ...op, status: "fail", code, message, completedAtMs: performance.now() };
  }

  /** The write's outcome is unknown: it may or may not be in the journal. */
  unknown(id: OpId, reason: string): void {
    const op = this.pending(id);
    this.ops[id] = { ...op, status: "unknown", reason, completedAtMs: performance.now() };
  }

  /** invoke + send + classify the reply; a thrown error (timeout, no responder, closed connection) is unknown. */
  async run(client: number, args: readonly WriteArg[], send: (args: WriteArg[]) => Promise<WriteReply>): Promise<Op> {
    const id = this.invoke(client, args);
    let reply: WriteReply;
    try {
      reply = await send([...args]);
    } catch (err) {
      this.unknown(id, `no reply: ${err instanceof Error ? err.message : String(err)}`);
      return this.ops[id];
    }
    if (reply.ok) this.ok(id, reply.txid, plainReply(reply.reply as ReplyValue));
    else if (isDefiniteFailure(reply.code)) this.fail(id, reply.code, reply.message);
    else this.unknown(id, `${reply.code}: ${reply.message}`);
    return this.ops[id];
  }

  all(): readonly Op[] {
    return this.ops;
  }
  oks(): OkOp[] {
    return this.ops.filter((op): op is OkOp => op.status === "ok");
  }
  fails(): FailOp[] {
    return this.ops.filter((op): op is FailOp => op.status === "fail");
  }
  unknowns(): UnknownOp[] {
    return this.ops.filter((op): op is UnknownOp => op.status === "unknown");
  }
  /** Invoked but never completed: a test that checks these has not awaited its clients. */
  pendingOps(): PendingOp[] {
    return this.ops.filter((op): op is PendingOp => op.status === "pending");
  }

  private pending(id: OpId): PendingOp {
    const op = this.ops[id];
    if (op === undefined) throw new Error(`history: no op #${id}`);
    if (op.status !== "pending") throw new Error(`history: op #${id} already completed (${op.status})`);
    return op;
  }
}

/** `SET <uniqueKey> <value>`: the write fault tests use, whose key no other write touches. */
export function uniqueSet(client: number, i: number, tag = "u"): [string, string, string] {
  return ["SET", `${tag}:${client}:${i}`, `v${client}.${i}`];
}

// ---------------------------------------------------------------------------------------------------------------
// Formatting

/** How many examples a violation names. */
export const EXAMPLES_MAX = 5;

function violation(what: string, examples: readonly string[]): string[] {
  if (examples.length === 0) return [];
  const more = examples.length > EXAMPLES_MAX ? `; … and ${examples.length - EXAMPLES_MAX} more` : "";
  return [`${what} (${examples.length}): ${examples.slice(0, EXAMPLES_MAX).join("; ")}${more}`];
}

export function argText(a: WriteArg | Uint8Array): string {
  if (typeof a === "string") return a;
  if (typeof a === "number") return String(a);
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("utf8");
}

function argBytes(a: WriteArg): Buffer {
  if (typeof a === "string" || typeof a === "number") return Buffer.from(String(a));
  return a;
}

function clip(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** `#12 c3 SET u:3:4 v3.4 → txid 57` */
export function describeOp(op: Op): string {
  const head = `#${op.id} c${op.client} ${clip(op.args.map(argText).join(" "))}`;
  switch (op.status) {
    case "ok":
      return `${head} → txid ${op.txid}`;
    case "fail":
      return `${head} → ${op.code}`;
    case "unknown":
      return `${head} → unknown (${clip(op.reason, 40)})`;
    case "pending":
      return `${head} → pending`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Txids and the journal

/**
 * Txids of acked writes: each unique (no two writes acked under one txid), and — given the journal's committed
 * records — none beyond the committed end and each present in the journal (an ack is a promise of durability).
 */
export function checkTxids(history: History, committed?: readonly { txid: number }[]): string[] {
  const oks = history.oks();
  const byTxid = new Map<number, OkOp[]>();
  for (const op of oks) {
    const list = byTxid.get(op.txid);
    if (list === undefined) byTxid.set(op.txid, [op]);
    else list.push(op);
  }
  const duplicates: string[] = [];
  for (const [txid, ops] of byTxid) if (ops.length > 1) duplicates.push(`txid ${txid} acked to ${ops.map(describeOp).join(" and ")}`);
  const out = violation("txids acked to more than one write", duplicates);
  if (committed === undefined) return out;

  const present = new Set(committed.map((r) => r.txid));
  const end = committed.reduce((m, r) => Math.max(m, r.txid), 0);
  const beyond: string[] = [];
  const absent: string[] = [];
  for (const op of oks) {
    if (op.txid > end) beyond.push(`${describeOp(op)} (committed end ${end})`);
    else if (!present.has(op.txid)) absent.push(describeOp(op));
  }
  out.push(...violation("acked txids beyond the journal's committed end", beyond));
  out.push(...violation("acked txids missing from the journal", absent));
  return out;
}

/** The journal's records: txids strictly increasing by one from the first (no gap, no duplicate, no reordering). */
export function checkJournal(records: readonly { txid: number }[]): string[] {
  const problems: string[] = [];
  for (let i = 1; i < records.length; i++) {
    const prev = records[i - 1].txid;
    const txid = records[i].txid;
    if (txid === prev + 1) continue;
    if (txid === prev) problems.push(`txid ${txid} twice (records ${i - 1} and ${i})`);
    else if (txid > prev + 1) problems.push(`gap: txid ${prev} is followed by ${txid} (missing ${prev + 1}..${txid - 1})`);
    else problems.push(`txid ${txid} after ${prev} (out of order, record ${i})`);
  }
  return violation("journal txids not contiguous", problems);
}

/**
 * Real-time order: a write invoked after another was acked must get a higher txid (the acked one is committed;
 * every later write is journaled after it, even across a writer change). Only acked writes are compared.
 */
export function checkRealTimeOrder(history: History): string[] {
  const oks = history.oks();
  const byCompletion = [...oks].sort((a, b) => a.completedAtMs - b.completedAtMs);
  const byInvoke = [...oks].sort((a, b) => a.invokedAtMs - b.invokedAtMs);
  const problems: string[] = [];
  let highest: OkOp | undefined;
  let j = 0;
  for (const op of byInvoke) {
    while (j < byCompletion.length && byCompletion[j].completedAtMs < op.invokedAtMs) {
      if (highest === undefined || byCompletion[j].txid > highest.txid) highest = byCompletion[j];
      j++;
    }
    if (highest !== undefined && highest.txid >= op.txid) problems.push(`${describeOp(op)} was invoked after ${describeOp(highest)} was acked`);
  }
  return violation("acked writes out of real-time order", problems);
}

/** Decoded effects of each record, by txid: the input of checkAckedWritesPresent. */
export function journalEffects(records: readonly { txid: number; payload: Uint8Array }[]): Map<number, Effect[]> {
  const out = new Map<number, Effect[]>();
  for (const r of records) out.set(r.txid, decodeEffects(r.payload));
  return out;
}

function isName(arg: Uint8Array, upper: string): boolean {
  return argText(arg).toUpperCase() === upper;
}

interface SetWrite {
  key: string;
  value: Buffer;
  /** NX / XX: an ack does not prove the value was set. */
  conditional: boolean;
}

function setWrite(args: readonly WriteArg[]): SetWrite | undefined {
  if (args.length < 3 || argText(args[0]).toUpperCase() !== "SET") return undefined;
  const options = args.slice(3).map((a) => argText(a).toUpperCase());
  return { key: argText(args[1]), value: argBytes(args[2]), conditional: options.includes("NX") || options.includes("XX") };
}

function holdsSet(effects: Effect[] | undefined, key: string, value?: Buffer): boolean {
  if (effects === undefined) return false;
  return effects.some(
    (e) => e.length >= 3 && isName(e[0], "SET") && argText(e[1]) === key && (value === undefined || Buffer.from(e[2]).equals(value)),
  );
}

/**
 * Acked `SET key value` writes (see uniqueSet) against the journal: the record at each ok txid holds `SET key value…`
 * (options Redis appends are ignored); no key is in more records than writes of it were acked or left unknown
 * (no write applied twice); a definitely failed write is in no record. Unknown writes may be present or absent.
 * Writes that are not SET are only checked by checkTxids; conditional SETs (NX/XX) need not be in their record.
 */
export function checkAckedWritesPresent(history: History, journal: ReadonlyMap<number, Effect[]>): string[] {
  const opsByKey = new Map<string, { ok: OkOp[]; fail: FailOp[]; unknown: number }>();
  for (const op of history.all()) {
    if (op.status === "pending") continue;
    const set = setWrite(op.args);
    if (set === undefined) continue;
    let entry = opsByKey.get(set.key);
    if (entry === undefined) opsByKey.set(set.key, (entry = { ok: [], fail: [], unknown: 0 }));
    if (op.status === "ok") entry.ok.push(op);
    else if (op.status === "fail") entry.fail.push(op);
    else entry.unknown++;
  }
  // Every record that SETs a key the history wrote.
  const recordsByKey = new Map<string, number[]>();
  for (const [txid, effects] of journal) {
    const keys = new Set<string>();
    for (const e of effects) if (e.length >= 3 && isName(e[0], "SET")) keys.add(argText(e[1]));
    for (const key of keys) {
      if (!opsByKey.has(key)) continue;
      const list = recordsByKey.get(key);
      if (list === undefined) recordsByKey.set(key, [txid]);
      else list.push(txid);
    }
  }

  const missing: string[] = [];
  const twice: string[] = [];
  const failedPresent: string[] = [];
  for (const [key, ops] of opsByKey) {
    const txids = (recordsByKey.get(key) ?? []).sort((a, b) => a - b);
    for (const op of ops.ok) {
      const set = setWrite(op.args)!;
      if (set.conditional || holdsSet(journal.get(op.txid), key, set.value)) continue;
      const where = !journal.has(op.txid)
        ? "no record at that txid"
        : txids.length === 0
          ? "the key is in no record"
          : `the key is at txid ${txids.join(", ")}${holdsSet(journal.get(op.txid), key) ? " (with another value)" : ""}`;
      missing.push(`${describeOp(op)}: ${where}`);
    }
    const allowed = ops.ok.length + ops.unknown;
    if (txids.length <= allowed) continue;
    if (ops.fail.length > 0) failedPresent.push(`${ops.fail.map(describeOp).join(", ")}: key ${key} is at txid ${txids.join(", ")}`);
    else twice.push(`key ${key} is in the records at txid ${txids.join(", ")} but was written ${allowed}× (${ops.ok.length} acked, ${ops.unknown} unknown)`);
  }
  return [
    ...violation("acked writes missing from the journal at their txid", missing),
    ...violation("writes applied more than once", twice),
    ...violation("definitely failed writes present in the journal", failedPresent),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// The keyspace model

/** A key as dumpKeyspace shows it: strings as a string, hashes as sorted [field, value] pairs, lists as arrays, sets sorted. */
export interface ExpectedKey {
  type: "string" | "hash" | "list" | "set";
  value: string | [string, string][] | string[];
  /** Absolute expiry (PXAT / EXAT / PEXPIREAT) in ms, -1 when none is known. Not compared. */
  expireAtMs: number;
}

/** The journal holds something the model cannot replay: an unknown command, a malformed effect, a type clash. */
export class ModelError extends Error {
  override name = "ModelError";
  constructor(
    readonly txid: number,
    readonly command: string,
    message: string,
  ) {
    super(`journal record ${txid}, ${command}: ${message}`);
  }
}

type ModelValue =
  | { type: "string"; value: string }
  | { type: "hash"; value: Map<string, string> }
  | { type: "list"; value: string[] }
  | { type: "set"; value: Set<string> };
interface ModelKey {
  v: ModelValue;
  expireAtMs: number;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Replays the committed journal (in txid order) in a pure in-memory model of the commands fault tests use —
 * SET (EX/PX/EXAT/PXAT/KEEPTTL/NX/XX/GET), DEL, INCR, INCRBY, HSET, RPUSH, SADD, SREM, PEXPIREAT, PERSIST, APPEND,
 * LMOVE — and returns what
 * every replica's keyspace must be. Expiry is ignored unless `nowMs` is given: then a key whose absolute expiry
 * (PXAT, EXAT, PEXPIREAT) is at or before `nowMs` is absent. Anything else throws a ModelError naming the command and
 * txid: the checker never skips an effect it does not understand.
 */
export function expectedKeyspace(records: readonly { txid: number; payload: Uint8Array }[], nowMs?: number): Map<string, ExpectedKey> {
  const keys = new Map<string, ModelKey>();
  for (const rec of records) {
    let effects: Effect[];
    try {
      effects = decodeEffects(rec.payload);
    } catch (err) {
      throw new ModelError(rec.txid, "(payload)", `cannot decode effects: ${(err as Error).message}`);
    }
    for (const effect of effects) applyEffect(keys, rec.txid, effect.map((a) => argText(a)));
  }
  const out = new Map<string, ExpectedKey>();
  for (const [key, { v, expireAtMs }] of keys) {
    if (nowMs !== undefined && expireAtMs >= 0 && expireAtMs <= nowMs) continue;
    out.set(key, { type: v.type, value: canonical(v), expireAtMs });
  }
  return out;
}

function canonical(v: ModelValue): ExpectedKey["value"] {
  switch (v.type) {
    case "string":
      return v.value;
    case "hash":
      // The same default sort dumpKeyspace applies to Object.entries(hgetall).
      return [...v.value.entries()].sort();
    case "list":
      return [...v.value];
    case "set":
      return [...v.value].sort();
  }
}

function applyEffect(keys: Map<string, ModelKey>, txid: number, args: string[]): void {
  const command = args[0].toUpperCase();
  const fail = (message: string): never => {
    throw new ModelError(txid, command, message);
  };
  const arity = (min: number): void => {
    if (args.length < min) fail(`${args.length - 1} arguments, at least ${min - 1} expected`);
  };
  const integer = (text: string, what: string): bigint => {
    if (!/^-?(0|[1-9][0-9]*)$/.test(text)) fail(`${what} ${JSON.stringify(clip(text))} is not an integer`);
    const n = BigInt(text);
    if (n < INT64_MIN || n > INT64_MAX) fail(`${what} ${text} is out of range`);
    return n;
  };
  const typed = <T extends ModelValue["type"]>(key: string, type: T): Extract<ModelValue, { type: T }> | undefined => {
    const k = keys.get(key);
    if (k === undefined) return undefined;
    if (k.v.type !== type) fail(`key ${JSON.stringify(key)} holds a ${k.v.type}, not a ${type}`);
    return k.v as Extract<ModelValue, { type: T }>;
  };
  const create = (key: string, v: ModelValue): void => {
    keys.set(key, { v, expireAtMs: -1 });
  };

  switch (command) {
    case "SET": {
      arity(3);
      const [, key, value] = args;
      let nx = false;
      let xx = false;
      let keepTtl = false;
      let expireAtMs = -1;
      for (let i = 3; i < args.length; i++) {
        const option = args[i].toUpperCase();
        if (option === "NX") nx = true;
        else if (option === "XX") xx = true;
        else if (option === "KEEPTTL") keepTtl = true;
        else if (option === "GET") continue;
        else if (option === "EX" || option === "PX" || option === "EXAT" || option === "PXAT") {
          if (i + 1 >= args.length) fail(`${option} without a value`);
          const n = Number(integer(args[++i], option));
          // EX / PX are relative to a time the journal does not hold (Redis propagates them as PXAT anyway).
          if (option === "PXAT") expireAtMs = n;
          else if (option === "EXAT") expireAtMs = n * 1000;
        } else fail(`unknown SET option ${JSON.stringify(clip(args[i]))}`);
      }
      const existing = keys.get(key);
      if ((nx && existing !== undefined) || (xx && existing === undefined)) return;
      keys.set(key, { v: { type: "string", value }, expireAtMs: keepTtl && existing !== undefined ? existing.expireAtMs : expireAtMs });
      return;
    }
    case "DEL":
      arity(2);
      for (const key of args.slice(1)) keys.delete(key);
      return;
    case "INCR":
    case "INCRBY": {
      const n = command === "INCR" ? 2 : 3;
      if (args.length !== n) fail(`${args.length - 1} arguments, ${n - 1} expected`);
      const key = args[1];
      const by = command === "INCR" ? 1n : integer(args[2], "increment");
      const current = typed(key, "string");
      const next = (current === undefined ? 0n : integer(current.value, `value of ${JSON.stringify(key)}`)) + by;
      if (next < INT64_MIN || next > INT64_MAX) fail(`increment of ${JSON.stringify(key)} overflows`);
      if (current === undefined) create(key, { type: "string", value: next.toString() });
      else current.value = next.toString();
      return;
    }
    case "HSET": {
      arity(4);
      if ((args.length - 2) % 2 !== 0) fail("field without a value");
      const key = args[1];
      let hash = typed(key, "hash");
      if (hash === undefined) create(key, (hash = { type: "hash", value: new Map() }));
      for (let i = 2; i < args.length; i += 2) hash.value.set(args[i], args[i + 1]);
      return;
    }
    case "RPUSH": {
      arity(3);
      const key = args[1];
      let list = typed(key, "list");
      if (list === undefined) create(key, (list = { type: "list", value: [] }));
      list.value.push(...args.slice(2));
      return;
    }
    case "SADD": {
      arity(3);
      const key = args[1];
      let set = typed(key, "set");
      if (set === undefined) create(key, (set = { type: "set", value: new Set() }));
      for (const m of args.slice(2)) set.value.add(m);
      return;
    }
    case "SREM": {
      arity(3);
      const key = args[1];
      const set = typed(key, "set");
      if (set === undefined) return;
      for (const m of args.slice(2)) set.value.delete(m);
      if (set.value.size === 0) keys.delete(key);
      return;
    }
    case "PERSIST": {
      arity(2);
      const k = keys.get(args[1]);
      if (k !== undefined) k.expireAtMs = -1;
      return;
    }
    case "APPEND": {
      arity(3);
      const current = typed(args[1], "string");
      if (current === undefined) create(args[1], { type: "string", value: args[2] });
      else current.value += args[2];
      return;
    }
    case "LMOVE": {
      // Redis propagates RPOPLPUSH, LMOVE and BLMOVE as LMOVE; the source is deleted once empty, the TTLs stay.
      if (args.length !== 5) fail(`${args.length - 1} arguments, 4 expected`);
      const [, from, to, whereFrom, whereTo] = args;
      const source = typed(from, "list");
      if (source === undefined || source.value.length === 0) return;
      let target = typed(to, "list");
      const item = whereFrom.toUpperCase() === "LEFT" ? source.value.shift()! : source.value.pop()!;
      if (source.value.length === 0) keys.delete(from);
      if (target === undefined) create(to, (target = { type: "list", value: [] }));
      if (whereTo.toUpperCase() === "LEFT") target.value.unshift(item);
      else target.value.push(item);
      return;
    }
    case "PEXPIREAT": {
      // What Redis propagates for EXPIRE, PEXPIRE and EXPIREAT.
      arity(3);
      const k = keys.get(args[1]);
      const at = Number(integer(args[2], "time"));
      if (k !== undefined) k.expireAtMs = at;
      return;
    }
    default:
      fail("the keyspace model does not know this command; add it to expectedKeyspace before using it in a fault test");
  }
}

/** A replica's keyspace (dumpKeyspace) against the expected one: missing keys, extra keys, wrong type, wrong value. */
export function compareKeyspace(expected: ReadonlyMap<string, Pick<ExpectedKey, "type" | "value">>, actual: ReadonlyMap<string, KeyDump>, replica = "replica"): string[] {
  const missing: string[] = [];
  const extra: string[] = [];
  const wrongType: string[] = [];
  const wrongValue: string[] = [];
  for (const [key, want] of expected) {
    const got = actual.get(key);
    if (got === undefined) missing.push(`${key} (${want.type} ${clip(JSON.stringify(want.value))})`);
    else if (got.type !== want.type) wrongType.push(`${key}: ${got.type}, expected ${want.type}`);
    else if (JSON.stringify(got.value) !== JSON.stringify(want.value)) {
      wrongValue.push(`${key}: ${clip(JSON.stringify(got.value))}, expected ${clip(JSON.stringify(want.value))}`);
    }
  }
  for (const [key, got] of actual) if (!expected.has(key)) extra.push(`${key} (${got.type} ${clip(JSON.stringify(got.value))})`);
  return [
    ...violation(`${replica}: keys missing (in the journal, not on the replica)`, missing),
    ...violation(`${replica}: extra keys (on the replica, not in the journal)`, extra),
    ...violation(`${replica}: keys of the wrong type`, wrongType),
    ...violation(`${replica}: keys with the wrong value`, wrongValue),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the journal

export interface ReadJournalOptions {
  /** Timeout of one read request. Default 5000 ms. */
  requestTimeoutMs?: number;
  /** Times every node is asked for the same txid before giving up. Default 3. */
  roundsMax?: number;
  /** Pause after every node refused once (a node's committed txid may lag the master's by a heartbeat). Default 100 ms. */
  pauseMs?: number;
}

/**
 * The committed records 1..toTxid, read from the journal nodes over NATS like a replica does: a node that cannot
 * serve a txid (NOT_FOUND — a hole —, nothing committed yet, timeout) is skipped for the next; after every node
 * was asked `roundsMax` times for the same txid this throws. A node that serves records failing validation
 * (checksum, framing, txids not contiguous from the one asked, beyond its own committed txid) throws at once:
 * that is a bug to report, not to route around.
 */
export async function readJournal(
  nc: NatsConnection,
  cluster: string,
  nodes: readonly string[],
  toTxid: number,
  options: ReadJournalOptions = {},
): Promise<RecordView[]> {
  const { requestTimeoutMs = 5000, roundsMax = 3, pauseMs = 100 } = options;
  if (nodes.length === 0) throw new Error("readJournal: no journal nodes");
  const s = subjects(cluster);
  const out: RecordView[] = [];
  let next = 1;
  let node = 0;
  let attempts = 0;
  const refusals: string[] = [];
  while (next <= toTxid) {
    const id = nodes[node % nodes.length];
    const got = await readFrom(nc, s.journalRead(id), id, next, requestTimeoutMs);
    if (typeof got === "string") {
      refusals.push(`${id}: ${got}`);
      attempts++;
      node++;
      if (attempts >= nodes.length * roundsMax) {
        throw new Error(
          `readJournal: txid ${next} (of 1..${toTxid}) could not be read after asking each of ${nodes.join(", ")} ${roundsMax} times; last answers: ${refusals.slice(-nodes.length).join("; ")}`,
        );
      }
      if (attempts % nodes.length === 0) await new Promise((r) => setTimeout(r, pauseMs));
      continue;
    }
    for (const r of got) {
      if (r.txid > toTxid) break;
      out.push(r);
    }
    next = out[out.length - 1].txid + 1;
    attempts = 0;
    refusals.length = 0;
  }
  return out;
}

/** One read: the records from `fromTxid` (at least one), or why this node could not serve them. */
async function readFrom(nc: NatsConnection, subject: string, node: string, fromTxid: number, timeoutMs: number): Promise<RecordView[] | string> {
  let reply: JournalReply;
  try {
    reply = parseJournalReply(await request(nc, subject, { type: "read", fromTxid, bytesMax: 512 * 1024, recordsMax: 8192, uncommitted: false }, timeoutMs));
  } catch (err) {
    return (err as Error).message;
  }
  if (!reply.ok) return `${reply.code}: ${reply.message}`;
  if (!("read" in reply)) return "the reply is not a read reply";
  const { records, count, committedTxid } = reply.read;
  if (count === 0) return `nothing committed from txid ${fromTxid} yet (its committed txid is ${committedTxid})`;
  const bad = (why: string): never => {
    throw new Error(`readJournal: journal node ${node} served invalid records from txid ${fromTxid}: ${why}`);
  };
  const scan = scanRecords(records);
  if (scan.stop !== undefined) bad(`${scan.stop.kind} record at byte ${scan.stop.offset} of the reply: ${scan.stop.reason}`);
  if (scan.records.length !== count) bad(`the reply says ${count} records and holds ${scan.records.length}`);
  scan.records.forEach((r, i) => {
    if (r.txid !== fromTxid + i) bad(`record ${i} has txid ${r.txid}, expected ${fromTxid + i}`);
  });
  const last = scan.records[scan.records.length - 1].txid;
  if (last > committedTxid) bad(`served txid ${last} beyond its committed txid ${committedTxid}`);
  return scan.records;
}

// ---------------------------------------------------------------------------------------------------------------
// Everything at once

export interface CheckAllInput {
  history: History;
  /** The committed journal, in order (readJournal up to the last committed txid, after the load stopped). */
  journal: readonly RecordView[];
  /** Each replica's (or the master's) dumpKeyspace, by name, taken once it applied the whole journal. */
  replicas: Readonly<Record<string, ReadonlyMap<string, KeyDump>>>;
  /** Drop keys whose absolute expiry is at or before this (Date.now() at the dump); expiry ignored when absent. */
  nowMs?: number;
}

/**
 * Every check above in one call: all operations completed, the journal contiguous, acked txids unique, committed
 * and in real-time order, acked writes present once at their txid, failed ones absent, and every replica equal to
 * the replay of the journal. A journal the model cannot replay is reported as a violation, not thrown.
 */
export function checkAll(input: CheckAllInput): string[] {
  const { history, journal, replicas, nowMs } = input;
  const out: string[] = [];
  out.push(...violation("operations never completed (await every client before checking)", history.pendingOps().map(describeOp)));
  out.push(...checkJournal(journal));
  out.push(...checkTxids(history, journal));
  out.push(...checkRealTimeOrder(history));
  let effects: Map<number, Effect[]> | undefined;
  try {
    effects = journalEffects(journal);
  } catch (err) {
    out.push(`journal payload cannot be decoded: ${(err as Error).message}`);
  }
  if (effects !== undefined) out.push(...checkAckedWritesPresent(history, effects));
  let expected: Map<string, ExpectedKey> | undefined;
  try {
    expected = expectedKeyspace(journal, nowMs);
  } catch (err) {
    out.push(`the keyspace model cannot replay the journal: ${(err as Error).message}`);
  }
  if (expected !== undefined) for (const [name, dump] of Object.entries(replicas)) out.push(...compareKeyspace(expected, dump, name));
  return out;
}

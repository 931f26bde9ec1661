/**
 * Conflicting client load for the linearizability check: closed-loop clients doing SET / INCR / DEL and
 * linearizable GETs on a small key set, every operation recorded in a History (invoke and completion times,
 * ok / definitely failed / unknown), which also feeds the journal and replica checks (verifyHistory).
 *
 * The master refuses GET (reads go to replicas, which lag); a linearizable read goes through the write path as
 * `EVAL "return redis.call('GET', KEYS[1])" 1 <key>`: journaled like a write (with no effect) and answered once a
 * majority committed it, so it is ordered with the writes.
 */
import type { KvInput, KvOutput, Operation } from "../../src/check/kv_model.js";
import type { Effect } from "../../src/segment/record.js";
import type { TestCluster } from "./harness.js";
import { History, type Op, type WriteArg } from "./history.js";
import { prng } from "./prng.js";

/** A client whose operation came back unknown waits this long before its next one (a master that is not the writer
 * answers at once: without a pause, clients would spin and fill the history with indeterminate operations). */
export const UNKNOWN_BACKOFF_MS = 100;

/** The script of a linearizable GET. */
export const GET_SCRIPT = "return redis.call('GET', KEYS[1])";

export interface KvLoadOptions {
  clients: number;
  keys: number;
  /** Seeds each client's choice of operations. */
  seed: number;
  /** A write with no reply by then is recorded as unknown. */
  timeoutMs: number;
}

export interface KvLoad {
  /** Operations answered so far (any outcome). */
  done(): number;
  stop(): Promise<void>;
}

/** The arguments of one operation on `key`. SET values are integers, so an INCR never meets a non-integer. */
export function kvArgs(input: KvInput): WriteArg[] {
  switch (input.kind) {
    case "get":
      return ["EVAL", GET_SCRIPT, "1", input.key];
    case "set":
      return ["SET", input.key, input.value];
    case "incr":
      return ["INCR", input.key];
    case "del":
      return ["DEL", input.key];
    case "getincr":
      throw new Error("kv_load sends single commands; getincr is the door's MULTI (integration/door_history)");
  }
}

/** `clients` closed-loop clients on keys `k0…k<keys-1>` until stop(); each operation recorded in `history`. */
export function startKvLoad(tc: TestCluster, history: History, options: KvLoadOptions): KvLoad {
  let running = true;
  let done = 0;
  const finished = Promise.all(
    Array.from({ length: options.clients }, async (_, c) => {
      const random = prng(options.seed * 1000 + c);
      for (let i = 0; running; i++) {
        const key = `k${Math.floor(random() * options.keys)}`;
        const r = random();
        // Unique values (client, index) so a read says which write it saw.
        const input: KvInput =
          r < 0.35 ? { kind: "set", key, value: String(c * 1_000_000 + i) } : r < 0.6 ? { kind: "incr", key } : r < 0.7 ? { kind: "del", key } : { kind: "get", key };
        const op = await history.run(c, kvArgs(input), (args) => tc.write(args, options.timeoutMs));
        done++;
        if (op.status === "unknown" && running) await new Promise((r) => setTimeout(r, UNKNOWN_BACKOFF_MS));
      }
    }),
  );
  return {
    done: () => done,
    async stop() {
      running = false;
      await finished;
    },
  };
}

function text(a: WriteArg | Uint8Array): string {
  return typeof a === "string" ? a : typeof a === "number" ? String(a) : Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("utf8");
}

/** The KV operation a recorded write performed, or undefined for a write that is not one of the load's. */
export function kvInput(args: readonly WriteArg[]): KvInput | undefined {
  const name = text(args[0] ?? "").toUpperCase();
  if (name === "EVAL" && args.length === 4 && text(args[1]) === GET_SCRIPT) return { kind: "get", key: text(args[3]) };
  if (name === "SET" && args.length === 3) return { kind: "set", key: text(args[1]), value: text(args[2]) };
  if (name === "INCR" && args.length === 2) return { kind: "incr", key: text(args[1]) };
  if (name === "DEL" && args.length === 2) return { kind: "del", key: text(args[1]) };
  return undefined;
}

/** A Redis reply as the model states it: bulk strings as text, integers as numbers, nil as null. */
export function kvOutput(reply: unknown): KvOutput {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "string" || typeof reply === "number") return reply;
  if (typeof reply === "bigint") return Number(reply);
  if (reply instanceof Uint8Array) return text(reply);
  throw new Error(`kvOutput: a reply the KV model does not know: ${JSON.stringify(reply)}`);
}

export interface KvHistory {
  operations: Operation<KvInput, KvOutput>[];
  ok: number;
  failed: number;
  /** Outcome unknown to the client (passed on with no output and no return). */
  indeterminate: number;
  /** Outcome unknown to the client, but the committed journal shows it never took effect: dropped. */
  unexecuted: number;
  /** Why outcomes were unknown: count by error code (or "no reply"). */
  reasons: Map<string, number>;
}

function effectText(e: Effect): string[] {
  return e.map((a) => text(a));
}

/**
 * Which unknown writes the committed journal shows may have taken effect. Every write has a record of its own; the
 * records no acked write claims hold the effects of the unknown ones that ran. A SET is identified by its (unique)
 * value; INCR and DEL of a key only by count, so they may have run if any unclaimed record INCRs (DELs) the key —
 * a DEL that removed nothing changed nothing, so leaving it out is the same. Dropping writes that never ran only
 * narrows what the checker may choose: it cannot hide a violation, and a read of a dropped write's value fails it.
 */
export function mayHaveRun(ops: readonly Op[], journal: ReadonlyMap<number, Effect[]>): (input: KvInput) => boolean {
  const claimed = new Set<number>();
  for (const op of ops) if (op.status === "ok") claimed.add(op.txid);
  const sets = new Set<string>();
  const incrs = new Set<string>();
  const dels = new Set<string>();
  for (const [txid, effects] of journal) {
    if (claimed.has(txid)) continue;
    for (const e of effects.map(effectText)) {
      const name = e[0]?.toUpperCase();
      if (name === "SET" && e.length >= 3) sets.add(`${e[1]}\0${e[2]}`);
      else if (name === "INCR" && e.length === 2) incrs.add(e[1]);
      else if ((name === "DEL" || name === "UNLINK") && e.length >= 2) for (const key of e.slice(1)) dels.add(key);
    }
  }
  return (input) => {
    switch (input.kind) {
      case "set":
        return sets.has(`${input.key}\0${input.value}`);
      case "incr":
      case "getincr":
        return incrs.has(input.key);
      case "del":
        return dels.has(input.key);
      case "get":
        return true;
    }
  };
}

/**
 * The history's KV operations for the checker: acked ones with their output and [call, return] times, definitely
 * failed ones dropped (not executed), unknown ones with no output and no return (they may take effect at any time
 * after their call, or never) — or dropped when `journal` (the committed records, by txid) shows they never ran.
 * A client whose operation is unknown goes on as a new checker client: its next operation may overlap the unknown one.
 */
export function toKvHistory(ops: readonly Op[], journal?: ReadonlyMap<number, Effect[]>): KvHistory {
  const ran = journal === undefined ? () => true : mayHaveRun(ops, journal);
  const generation = new Map<number, number>();
  const out: KvHistory = { operations: [], ok: 0, failed: 0, indeterminate: 0, unexecuted: 0, reasons: new Map() };
  for (const op of ops) {
    const input = kvInput(op.args);
    if (input === undefined) continue;
    const gen = generation.get(op.client) ?? 0;
    const client = op.client * 100_000 + gen;
    switch (op.status) {
      case "ok":
        out.ok++;
        out.operations.push({ client, input, call: op.invokedAtMs, output: kvOutput(op.reply), return: op.completedAtMs });
        break;
      case "fail":
        out.failed++;
        break;
      case "unknown":
      case "pending": {
        const reason = op.status === "pending" ? "pending" : op.reason.startsWith("no reply") ? "no reply" : op.reason.split(":")[0];
        out.reasons.set(reason, (out.reasons.get(reason) ?? 0) + 1);
        generation.set(op.client, gen + 1);
        if (!ran(input)) {
          out.unexecuted++;
          break;
        }
        out.indeterminate++;
        out.operations.push({ client, input, call: op.invokedAtMs });
        break;
      }
    }
  }
  return out;
}

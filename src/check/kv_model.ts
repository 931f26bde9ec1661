/**
 * The sequential model of one Redis key holding a string (or an integer kept as its decimal string), for the
 * linearizability checker: GET, SET, INCR, DEL and a transaction `MULTI; GET k; INCR k; EXEC` (getincr: both run
 * at one point in time, or the transaction is not atomic), partitioned by key. Pure.
 */
import { checkOperations, type CheckResult, type Model, type Operation } from "./linearizability.js";

export type { CheckResult, Operation } from "./linearizability.js";

export type KvInput =
  | { kind: "get"; key: string }
  | { kind: "set"; key: string; value: string }
  | { kind: "incr"; key: string }
  | { kind: "del"; key: string }
  | { kind: "getincr"; key: string };
/** GET: the value or null; SET: "OK"; INCR: the new integer; DEL: keys removed (0|1); `{error}`: Redis replied an error. */
export type KvScalar = string | number | null | { error: string };
/** Every command's reply is a scalar but getincr's: EXEC's array, [GET's reply, INCR's reply]. */
export type KvOutput = KvScalar | readonly [string | null, number | { error: string }];
/** The key's value; null when it does not exist. */
export type KvState = string | null;

/** Redis's integer range for INCR: a signed 64-bit integer. */
const int64Min = -(2n ** 63n);
const int64Max = 2n ** 63n - 1n;

/**
 * The value as Redis's INCR reads it (string2ll): optional minus, no leading zeros, no sign on zero, no spaces,
 * within int64; undefined when INCR would reply an error.
 */
function parseRedisInteger(value: string): bigint | undefined {
  if (!/^(0|-?[1-9][0-9]{0,19})$/.test(value)) return undefined;
  const n = BigInt(value);
  return n >= int64Min && n <= int64Max ? n : undefined;
}

function isError(output: KvOutput | undefined): output is { error: string } {
  return typeof output === "object" && output !== null && !Array.isArray(output);
}

/** Whether INCR's reply is `next`. */
function incrReplied(output: number, next: bigint): boolean {
  if (!Number.isInteger(output)) return false;
  // Past 2^53 a JS number cannot hold every integer: compare as the reply decoder would have rounded it.
  return Number.isSafeInteger(output) ? BigInt(output) === next : output === Number(next);
}

/** INCR on `state`: the new state, or an error (not an integer, or overflow) that leaves it unchanged. */
function incr(state: KvState): { next: bigint } | { error: true } {
  const current = state === null ? 0n : parseRedisInteger(state);
  if (current === undefined || current === int64Max) return { error: true };
  return { next: current + 1n };
}

/**
 * One step. An error output matches only if the model errs too, and changes nothing; only INCR can err here.
 * An undefined output (indeterminate) matches whatever the command would have replied.
 */
function step(state: KvState, input: KvInput, output: KvOutput | undefined): { ok: boolean; state: KvState } {
  switch (input.kind) {
    case "get":
      return { ok: output === undefined || output === state, state };
    case "set":
      return { ok: output === undefined || output === "OK", state: input.value };
    case "del":
      return { ok: output === undefined || output === (state === null ? 0 : 1), state: null };
    case "incr": {
      const result = incr(state);
      if ("error" in result) return { ok: output === undefined || isError(output), state };
      const ok = output === undefined || (typeof output === "number" && incrReplied(output, result.next));
      return { ok, state: result.next.toString() };
    }
    case "getincr": {
      const result = incr(state);
      if (output !== undefined && (!Array.isArray(output) || output[0] !== state)) return { ok: false, state };
      const inner = output?.[1];
      if ("error" in result) return { ok: inner === undefined || isError(inner), state };
      const ok = inner === undefined || (typeof inner === "number" && incrReplied(inner, result.next));
      return { ok, state: result.next.toString() };
    }
  }
}

/** Ops that change nothing wherever they are legal: GET, a DEL that removed nothing, an INCR that erred. */
function preserves(input: KvInput, output: KvOutput | undefined): boolean {
  if (input.kind === "get") return true;
  if (input.kind === "del") return output === 0;
  if (input.kind === "getincr") return Array.isArray(output) && isError(output[1]);
  return input.kind === "incr" && isError(output);
}

/** FNV-1a over the UTF-16 code units; null gets a value no short string is likely to share. */
function hashState(state: KvState): number {
  if (state === null) return 0x9e3779b9;
  let h = 0x811c9dc5;
  for (let i = 0; i < state.length; i++) h = Math.imul(h ^ state.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function describeOutput(output: KvOutput | undefined): string {
  if (output === undefined) return "?";
  if (output === null) return "nil";
  if (isError(output)) return `(error) ${output.error}`;
  if (Array.isArray(output)) return `[${output.map((o) => describeOutput(o)).join(", ")}]`;
  return JSON.stringify(output);
}

function describeOperation(input: KvInput, output: KvOutput | undefined): string {
  const command =
    input.kind === "set" ? `SET ${input.key} ${JSON.stringify(input.value)}` : input.kind === "getincr" ? `MULTI GET ${input.key} INCR ${input.key} EXEC` : `${input.kind.toUpperCase()} ${input.key}`;
  return `${command} -> ${describeOutput(output)}`;
}

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  partition: (input) => input.key,
  init: () => null,
  step,
  preserves,
  equal: (a, b) => a === b,
  hash: hashState,
  describeOperation,
  describeState: (state) => (state === null ? "nil" : JSON.stringify(state)),
};

/**
 * Checks a history of single-key string commands against Redis semantics. Pass only operations that may have run:
 * a definite failure (refused before executing) is not an operation. A GET whose reply is unknown constrains
 * nothing and is dropped before the search. Without `now`, the budget is measured on performance.now().
 */
export function checkKv(
  history: Operation<KvInput, KvOutput>[],
  options?: { timeoutMs?: number; now?: () => number },
): CheckResult {
  const constraining = history.filter((op) => op.input.kind !== "get" || op.output !== undefined);
  const now = options?.now ?? (() => performance.now());
  return checkOperations(kvModel, constraining, { timeoutMs: options?.timeoutMs, now });
}

/**
 * A linearizability checker for client histories: Wing & Gong's search with Lowe's improvements (just-in-time
 * linearization over a linked list of call/return entries, an undo stack, and a cache of (linearized set, model
 * state) pairs already explored), split into independent partitions (one per key) as Porcupine does
 * (anishathalye/porcupine, checker.go). Linearizability is compositional (Herlihy & Wing), so a history is
 * linearizable iff each key's sub-history is.
 *
 * Indeterminate operations (timeout, NO_QUORUM, transport error: the call is known, the outcome is not) may take
 * effect at any point after their call, or never. As in Knossos and Porcupine they return at +Infinity with an
 * output that matches anything: the search may linearize them anywhere, and stops once every operation that did
 * return is linearized, so "never" is the same as "after everything else". Definite failures (refused before
 * executing) are not operations: the caller drops them.
 *
 * Pure: no I/O and no clock. The time budget reads an injected `now`.
 */
import { assert } from "../util/assert.js";

/** One client operation. [call, return] is a closed interval: ops that touch at an instant are concurrent. */
export interface Operation<I, O> {
  /** Client id (ops of one client never overlap); used only to describe a failure. */
  client: number;
  input: I;
  /** Invocation time (any monotonic ms clock). */
  call: number;
  /** Absent: indeterminate, matches any output. */
  output?: O;
  /** Absent: never returned, so it may take effect at any point after `call`, or never. */
  return?: number;
}

export interface CheckResult {
  /** Linearizable. */
  ok: boolean;
  /** The search budget ran out: result unknown (then ok=false and timedOut=true). */
  timedOut: boolean;
  /** Partitions (keys) checked: all of them unless one failed or the budget ran out first. */
  partitions: number;
  /** The first non-linearizable partition. */
  failingKey?: string;
  /** Short, human-readable: the ops of the failing partition around the dead end. */
  explanation?: string;
  /** Ops linearized before the deepest dead end in the failing partition. */
  longestPrefix?: number;
}

/** A sequential specification, after Porcupine's `Model`. Every method is pure. */
export interface Model<S, I, O> {
  /** The partition (e.g. the key) an operation belongs to; absent: one partition, "". */
  partition?(input: I): string;
  init(): S;
  /**
   * Whether `input` answering `output` is legal in `state`, and the state after it. `output` undefined means
   * indeterminate: it should match whatever the input would answer; refusing means it never took effect.
   */
  step(state: S, input: I, output: O | undefined): { ok: boolean; state: S };
  equal(a: S, b: S): boolean;
  /** Consistent with `equal`: equal states hash equally. */
  hash(state: S): number;
  describeOperation?(input: I, output: O | undefined): string;
  describeState?(state: S): string;
}

export interface CheckOptions {
  /** A budget of work: past it the result is "unknown" (timedOut). Absent: no limit. */
  timeoutMs?: number;
  /** The clock the budget is measured on (ms); required with timeoutMs, since this module reads no clock. */
  now?: () => number;
}

/** Search iterations between two reads of the injected clock: reading it is far dearer than one step. */
const budgetCheckIntervalSteps = 1024;
/** Ops of the failing partition an explanation shows: the last ones linearized and the pending ones. */
const explanationOpsMax = 4;

/** Checks a whole history: each partition in order of first appearance, stopping at the first that fails. */
export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult {
  assert(options.timeoutMs === undefined || options.now !== undefined, "a timeout needs an injected clock (now)");
  const budget = new Budget(options);
  const partitions = partitionHistory(model, history);
  let checked = 0;
  for (const [key, ops] of partitions) {
    checked++;
    const result = checkPartition(model, ops, budget);
    if (result.kind === "timeout") return { ok: false, timedOut: true, partitions: checked };
    if (result.kind === "illegal") {
      return {
        ok: false,
        timedOut: false,
        partitions: checked,
        failingKey: key,
        explanation: explain(model, key, ops, result.deadEnd),
        longestPrefix: result.deadEnd.linearized.length,
      };
    }
  }
  return { ok: true, timedOut: false, partitions: checked };
}

function partitionHistory<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[]): Map<string, Operation<I, O>[]> {
  const partitions = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    assert(Number.isFinite(op.call), `operation call time must be finite: ${op.call}`);
    assert(op.return === undefined || op.return >= op.call, `operation returns before its call: [${op.call}, ${op.return}]`);
    const key = model.partition?.(op.input) ?? "";
    const ops = partitions.get(key);
    if (ops === undefined) partitions.set(key, [op]);
    else ops.push(op);
  }
  return partitions;
}

/** The work budget shared by all partitions: the clock is read every budgetCheckIntervalSteps steps. */
class Budget {
  private readonly deadline: number;
  private steps = 0;
  constructor(private readonly options: CheckOptions) {
    this.deadline = options.timeoutMs === undefined ? Infinity : options.now!() + options.timeoutMs;
  }
  /** Counts one step; true once the budget is spent. */
  spent(): boolean {
    this.steps++;
    if (this.deadline === Infinity || this.steps % budgetCheckIntervalSteps !== 0) return false;
    return this.options.now!() >= this.deadline;
  }
}

/** The deepest point the search reached in a partition that is not linearizable. */
interface DeadEnd {
  /** Op indices linearized, in order. */
  linearized: Int32Array;
  /** The op whose return was reached before it could be linearized. */
  blocking: number;
  /** Other ops called but not linearized at that point (they could not go next either). */
  pending: number[];
}

type PartitionResult = { kind: "ok" } | { kind: "illegal"; deadEnd: DeadEnd } | { kind: "timeout" };

interface CacheEntry<S> {
  linearized: Uint32Array;
  state: S;
}

/**
 * The search over one partition. Entries (a call per op, a return per op that returned) sorted by time form a
 * doubly linked list in typed arrays; linearizing an op lifts its call and return out of the list, and
 * backtracking relinks them in reverse order (dancing links), so no list is ever copied.
 */
function checkPartition<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], budget: Budget): PartitionResult {
  const list = new EntryList(ops);
  let returnsLeft = list.returnCount;
  if (returnsLeft === 0) return { kind: "ok" };

  const words = (ops.length + 31) >>> 5;
  const linearized = new Uint32Array(words);
  let linearizedHash = 0;
  const cache = new Map<number, CacheEntry<S>[]>();
  const stackEntry = new Int32Array(ops.length);
  const stackState: S[] = new Array<S>(ops.length);
  let depth = 0;
  let deadEnd: DeadEnd | undefined;

  let state = model.init();
  let entry = list.first();
  for (;;) {
    if (budget.spent()) return { kind: "timeout" };
    assert(entry !== END, "the entry list ran out before every returned op was linearized");
    const op = list.op[entry];
    if (list.isCall(entry)) {
      const stepped = model.step(state, ops[op].input, ops[op].output);
      if (!stepped.ok) {
        entry = list.next[entry];
        continue;
      }
      linearized[op >>> 5] |= 1 << (op & 31);
      const hash = (linearizedHash ^ opHash(op) ^ Math.imul(model.hash(stepped.state), 0x9e3779b1)) >>> 0;
      if (cacheHas(model, cache, hash, linearized, stepped.state)) {
        linearized[op >>> 5] &= ~(1 << (op & 31));
        entry = list.next[entry];
        continue;
      }
      const bucket = cache.get(hash);
      const cached = { linearized: linearized.slice(), state: stepped.state };
      if (bucket === undefined) cache.set(hash, [cached]);
      else bucket.push(cached);
      linearizedHash ^= opHash(op);
      stackEntry[depth] = entry;
      stackState[depth] = state;
      depth++;
      state = stepped.state;
      list.lift(entry);
      if (list.match[entry] !== END) returnsLeft--;
      if (returnsLeft === 0) return { kind: "ok" };
      entry = list.first();
    } else {
      // A return before its op was linearized: nothing left to try at this depth, so undo the last choice.
      if (deadEnd === undefined || depth > deadEnd.linearized.length) deadEnd = deadEndAt(list, stackEntry, depth, op);
      if (depth === 0) return { kind: "illegal", deadEnd };
      depth--;
      entry = stackEntry[depth];
      state = stackState[depth];
      const undone = list.op[entry];
      linearized[undone >>> 5] &= ~(1 << (undone & 31));
      linearizedHash ^= opHash(undone);
      list.unlift(entry);
      if (list.match[entry] !== END) returnsLeft++;
      entry = list.next[entry];
    }
  }
}

function cacheHas<S, I, O>(
  model: Model<S, I, O>,
  cache: Map<number, CacheEntry<S>[]>,
  hash: number,
  linearized: Uint32Array,
  state: S,
): boolean {
  const bucket = cache.get(hash);
  if (bucket === undefined) return false;
  for (const cached of bucket) {
    if (sameBits(cached.linearized, linearized) && model.equal(cached.state, state)) return true;
  }
  return false;
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A fixed pseudo-random word per op (the murmur3 finalizer of its index): the linearized set's hash is the XOR of
 * its ops' words (Zobrist hashing), updated in O(1) on every lift and undo.
 */
function opHash(op: number): number {
  let x = op + 1;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

function deadEndAt(list: EntryList, stackEntry: Int32Array, depth: number, blocking: number): DeadEnd {
  const linearized = new Int32Array(depth);
  for (let i = 0; i < depth; i++) linearized[i] = list.op[stackEntry[i]];
  const pending: number[] = [];
  for (let e = list.first(); e !== END && pending.length < explanationOpsMax; e = list.next[e]) {
    if (list.isCall(e) && list.op[e] !== blocking) pending.push(list.op[e]);
  }
  return { linearized, blocking, pending };
}

/** The end of the entry list (and "no return entry" in `match`). */
const END = -1;

/** Call and return entries sorted by time, as a doubly linked list with a head sentinel, in typed arrays. */
class EntryList {
  /** The op of each entry. */
  readonly op: Int32Array;
  /** For a call entry: its return entry, or END for an op that never returned. -2 marks a return entry. */
  readonly match: Int32Array;
  readonly next: Int32Array;
  readonly prev: Int32Array;
  readonly returnCount: number;
  private readonly head: number;

  constructor(ops: readonly Operation<unknown, unknown>[]) {
    const entries: { time: number; isReturn: boolean; op: number }[] = [];
    ops.forEach((o, i) => {
      entries.push({ time: o.call, isReturn: false, op: i });
      if (o.return !== undefined) entries.push({ time: o.return, isReturn: true, op: i });
    });
    // Calls before returns at the same instant: [call, return] is closed, so touching ops are concurrent.
    entries.sort((a, b) => a.time - b.time || Number(a.isReturn) - Number(b.isReturn) || a.op - b.op);
    const count = entries.length;
    this.head = count;
    this.op = new Int32Array(count);
    this.match = new Int32Array(count).fill(END);
    this.next = new Int32Array(count + 1);
    this.prev = new Int32Array(count + 1);
    const callOf = new Int32Array(ops.length);
    let returns = 0;
    entries.forEach((e, k) => {
      this.op[k] = e.op;
      this.next[k] = k + 1 < count ? k + 1 : END;
      this.prev[k] = k > 0 ? k - 1 : this.head;
      if (e.isReturn) {
        this.match[callOf[e.op]] = k;
        this.match[k] = -2;
        returns++;
      } else {
        callOf[e.op] = k;
      }
    });
    this.next[this.head] = count > 0 ? 0 : END;
    this.prev[this.head] = END;
    this.returnCount = returns;
  }

  first(): number {
    return this.next[this.head];
  }

  isCall(entry: number): boolean {
    return this.match[entry] !== -2;
  }

  /** Takes a call entry and its return entry out of the list. */
  lift(call: number): void {
    this.unlink(call);
    const ret = this.match[call];
    if (ret !== END) this.unlink(ret);
  }

  /** Undoes `lift(call)`; undos must come in reverse order of the lifts. */
  unlift(call: number): void {
    const ret = this.match[call];
    if (ret !== END) this.relink(ret);
    this.relink(call);
  }

  private unlink(e: number): void {
    const after = this.next[e];
    this.next[this.prev[e]] = after;
    if (after !== END) this.prev[after] = this.prev[e];
  }

  private relink(e: number): void {
    const after = this.next[e];
    this.next[this.prev[e]] = e;
    if (after !== END) this.prev[after] = e;
  }
}

/** "key k: linearized n of m ops (state s), then op X returned before it could take effect; …" */
function explain<S, I, O>(model: Model<S, I, O>, key: string, ops: readonly Operation<I, O>[], deadEnd: DeadEnd): string {
  const describe = (i: number): string => {
    const o = ops[i];
    const what = model.describeOperation?.(o.input, o.output) ?? JSON.stringify({ input: o.input, output: o.output });
    return `#${i} client ${o.client} ${what} [${o.call}, ${o.return ?? "never returned"}]`;
  };
  let state = model.init();
  for (const i of deadEnd.linearized) state = model.step(state, ops[i].input, ops[i].output).state;
  const shownState = model.describeState?.(state) ?? JSON.stringify(state);
  const last = Array.from(deadEnd.linearized.slice(-explanationOpsMax), describe);
  const lines = [
    `key ${JSON.stringify(key)}: linearized ${deadEnd.linearized.length} of ${ops.length} ops (state then: ${shownState}), ` +
      `then this op returned before any order let it take effect:`,
    `  ${describe(deadEnd.blocking)}`,
    `last linearized: ${last.length === 0 ? "none" : ""}`,
    ...last.map((d) => `  ${d}`),
    `also pending then: ${deadEnd.pending.length === 0 ? "none" : ""}`,
    ...deadEnd.pending.map((i) => `  ${describe(i)}`),
  ];
  return lines.join("\n");
}

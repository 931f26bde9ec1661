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
  /**
   * Optional: true when the op leaves the state unchanged in every state where it is legal (a read, a delete that
   * removed nothing, a command that erred). The search then takes such an op as soon as it is legal, with no
   * other branch; a wrong `true` makes the checker reject linearizable histories.
   */
  preserves?(input: I, output: O | undefined): boolean;
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
  /** The linearized set, as nodeKey() encodes it. */
  key: Int32Array;
  state: S;
}

/** No entry: the end of a list, a call without a return, no limit. */
const END = -1;

/**
 * The search over one partition, after Porcupine's checkSingle. Ops that returned are a list of call and return
 * entries sorted by time; ops that never returned are a second list of calls only, sorted by call time. At each
 * node the candidates are the calls before the first return entry R, tried in time order, and then the
 * never-returned calls made by R's time: trying those last keeps the search from planting unseen writes
 * everywhere before the ops that did return. Linearizing an op lifts its entries out of the lists and undoing
 * relinks them in reverse order (dancing links), so no list is ever copied.
 */
class PartitionSearch<S, I, O> {
  private readonly list: EntryList;
  private readonly linearized: Uint32Array;
  /** The never-returned ops linearized, by their rank among those ops: part of every cache key. */
  private readonly unreturnedLinearized: Int32Array;
  private linearizedHash = 0;
  private readonly cache = new Map<number, CacheEntry<S>[]>();
  private readonly stackEntry: Int32Array;
  /** The return entry whose never-returned candidates were being tried when the entry was linearized, or END. */
  private readonly stackLimit: Int32Array;
  /** 1 where the entry was the only branch worth taking (see preservingCandidate). */
  private readonly stackForced: Uint8Array;
  private readonly stackState: S[];
  private depth = 0;
  /** Ops that returned and are not linearized yet: the search succeeds when none is left. */
  private returnsLeft: number;
  private state: S;
  private deadEnd: DeadEnd | undefined;

  constructor(
    private readonly model: Model<S, I, O>,
    private readonly ops: readonly Operation<I, O>[],
  ) {
    this.list = new EntryList(ops);
    this.linearized = new Uint32Array((ops.length + 31) >>> 5);
    this.unreturnedLinearized = new Int32Array((this.list.unreturnedCount + 31) >>> 5);
    this.stackEntry = new Int32Array(ops.length);
    this.stackLimit = new Int32Array(ops.length);
    this.stackForced = new Uint8Array(ops.length);
    this.returnsLeft = this.list.returnCount;
    this.stackState = new Array<S>(ops.length);
    this.state = model.init();
  }

  run(budget: Budget): PartitionResult {
    const list = this.list;
    if (this.returnsLeft === 0) return { kind: "ok" };
    let entry = list.firstReturned();
    let limit = END;
    /** True on reaching a node, before its candidates are scanned. */
    let arrived = true;
    for (;;) {
      if (budget.spent()) return { kind: "timeout" };
      if (arrived) {
        arrived = false;
        const forced = this.preservingCandidate();
        if (forced === undefined) {
          entry = list.firstReturned();
          limit = END;
          continue;
        }
        if (this.push(forced.entry, forced.limit, forced.state, true)) {
          if (this.returnsLeft === 0) return { kind: "ok" };
          arrived = true;
          continue;
        }
        // Taking the forced op here leads to a node already known to fail, so this node fails as well.
        const resume = this.backtrack();
        if (resume === undefined) return this.illegal();
        ({ entry, limit } = resume);
        continue;
      }
      assert(entry !== END || limit !== END, "the returned ops ran out before each was linearized");
      if (limit === END && list.isReturn(entry)) {
        // The first return: every candidate that returned has been tried here; now the never-returned ones.
        limit = entry;
        entry = list.firstUnreturned();
      } else if (limit !== END && (entry === END || list.time[entry] > list.time[limit])) {
        // Nothing can take effect before `limit` returns: undo the last choice.
        if (this.deadEnd === undefined || this.depth > this.deadEnd.linearized.length) this.deadEnd = this.deadEndAt(limit);
        const resume = this.backtrack();
        if (resume === undefined) return this.illegal();
        ({ entry, limit } = resume);
      } else {
        const legal = this.legalStep(entry);
        if (legal !== undefined && this.push(entry, limit, legal.state, false)) {
          if (this.returnsLeft === 0) return { kind: "ok" };
          arrived = true;
        } else {
          entry = list.next[entry];
        }
      }
    }
  }

  private illegal(): PartitionResult {
    assert(this.deadEnd !== undefined, "a partition failed without reaching a dead end");
    return { kind: "illegal", deadEnd: this.deadEnd };
  }

  /**
   * A candidate that is legal here and is one of the model's state-preserving ops (`preserves`), with the limit it
   * is a candidate under. Taking it first loses nothing: in any completion from here it can move to the front,
   * since no pending op must precede it (it was called before every pending op returned) and, as it changes no
   * state wherever it is legal, the states after it stay the same. Such a node needs no other branch, which
   * prunes the reads of a busy key.
   */
  private preservingCandidate(): { entry: number; limit: number; state: S } | undefined {
    const list = this.list;
    let entry = list.firstReturned();
    for (; !list.isReturn(entry); entry = list.next[entry]) {
      const legal = this.preservingStep(entry);
      if (legal !== undefined) return { entry, limit: END, state: legal.state };
    }
    const limit = entry;
    for (let e = list.firstUnreturned(); e !== END && list.time[e] <= list.time[limit]; e = list.next[e]) {
      const legal = this.preservingStep(e);
      if (legal !== undefined) return { entry: e, limit, state: legal.state };
    }
    return undefined;
  }

  private preservingStep(entry: number): { state: S } | undefined {
    const op = this.ops[this.list.op[entry]];
    if (this.model.preserves?.(op.input, op.output) !== true) return undefined;
    const legal = this.legalStep(entry);
    assert(legal === undefined || this.model.equal(legal.state, this.state), "model.preserves holds for an op that changed the state");
    return legal;
  }

  /** The state after the op of call `entry` if it may go next: the model allows it and its earlier twin went. */
  private legalStep(entry: number): { state: S } | undefined {
    const op = this.list.op[entry];
    const twin = this.list.earlierTwin[op];
    if (twin !== END && !this.isLinearized(twin)) return undefined;
    const stepped = this.model.step(this.state, this.ops[op].input, this.ops[op].output);
    return stepped.ok ? stepped : undefined;
  }

  /** Linearizes the op of call `entry` next, unless the node it leads to is known to fail. */
  private push(entry: number, limit: number, next: S, forced: boolean): boolean {
    const list = this.list;
    const op = list.op[entry];
    this.flip(op);
    list.lift(entry);
    const returned = list.match[entry] !== END;
    if (returned) this.returnsLeft--;
    if (this.returnsLeft > 0) {
      const hash = (this.linearizedHash ^ Math.imul(this.model.hash(next), 0x9e3779b1)) >>> 0;
      const key = this.nodeKey();
      const bucket = this.cache.get(hash);
      if (bucket?.some((c) => sameKey(c.key, key) && this.model.equal(c.state, next))) {
        if (returned) this.returnsLeft++;
        list.unlift(entry);
        this.flip(op);
        return false;
      }
      const cached = { key, state: next };
      if (bucket === undefined) this.cache.set(hash, [cached]);
      else bucket.push(cached);
    }
    this.stackEntry[this.depth] = entry;
    this.stackLimit[this.depth] = limit;
    this.stackForced[this.depth] = forced ? 1 : 0;
    this.stackState[this.depth] = this.state;
    this.depth++;
    this.state = next;
    return true;
  }

  /**
   * The linearized set, compactly and exactly (Porcupine keeps a bitset of every op, which for a long partition
   * costs more to copy than the step). Let R be the first return entry left: every op that returned before R is
   * linearized, and no op called after R is (candidates come before R). So the set is R, the calls still in the
   * list before R, and which never-returned ops went: a few dozen words however long the partition.
   */
  private nodeKey(): Int32Array {
    const list = this.list;
    let calls = 0;
    let entry = list.firstReturned();
    for (; !list.isReturn(entry); entry = list.next[entry]) calls++;
    const unreturnedWords = this.unreturnedLinearized.length;
    const key = new Int32Array(1 + calls + unreturnedWords);
    key[0] = entry;
    let k = 1;
    for (let e = list.firstReturned(); e !== entry; e = list.next[e]) key[k++] = e;
    key.set(this.unreturnedLinearized, k);
    return key;
  }

  /**
   * Undoes choices until one that has alternatives left (a forced op has none) and says where to go on scanning
   * from; undefined once the root has none either.
   */
  private backtrack(): { entry: number; limit: number } | undefined {
    while (this.depth > 0) {
      this.depth--;
      const entry = this.stackEntry[this.depth];
      this.state = this.stackState[this.depth];
      this.flip(this.list.op[entry]);
      this.list.unlift(entry);
      if (this.list.match[entry] !== END) this.returnsLeft++;
      if (this.stackForced[this.depth] === 0) return { entry: this.list.next[entry], limit: this.stackLimit[this.depth] };
    }
    return undefined;
  }

  private isLinearized(op: number): boolean {
    return (this.linearized[op >>> 5] & (1 << (op & 31))) !== 0;
  }

  /** Adds or removes an op from the linearized set and its hash. */
  private flip(op: number): void {
    this.linearized[op >>> 5] ^= 1 << (op & 31);
    this.linearizedHash ^= opHash(op);
    const rank = this.list.unreturnedRank[op];
    if (rank !== END) this.unreturnedLinearized[rank >>> 5] ^= 1 << (rank & 31);
  }

  /** The dead end at return entry `limit`: what was linearized, and the candidates that could not go next. */
  private deadEndAt(limit: number): DeadEnd {
    const list = this.list;
    const blocking = list.op[limit];
    const linearized = new Int32Array(this.depth);
    for (let i = 0; i < this.depth; i++) linearized[i] = list.op[this.stackEntry[i]];
    const pending: number[] = [];
    for (let e = list.firstReturned(); e !== limit && pending.length < explanationOpsMax; e = list.next[e]) {
      if (list.op[e] !== blocking) pending.push(list.op[e]);
    }
    for (let e = list.firstUnreturned(); e !== END && list.time[e] <= list.time[limit]; e = list.next[e]) {
      if (pending.length === explanationOpsMax) break;
      pending.push(list.op[e]);
    }
    return { linearized, blocking, pending };
  }
}

function checkPartition<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], budget: Budget): PartitionResult {
  return new PartitionSearch(model, ops).run(budget);
}

function sameKey(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
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

/** Marks a return entry in `match`. */
const RETURN = -2;

/**
 * Two doubly linked lists with head sentinels, in typed arrays: the calls and returns of the ops that returned,
 * sorted by time, then the calls of the ops that never returned, sorted by call time.
 */
class EntryList {
  /** The op of each entry. */
  readonly op: Int32Array;
  readonly time: Float64Array;
  /** For a call entry: its return entry, or END for an op that never returned; RETURN marks a return entry. */
  readonly match: Int32Array;
  readonly next: Int32Array;
  readonly prev: Int32Array;
  /**
   * Per op: the latest earlier-called op that never returned and has the same input and no output, or END. Such
   * twins are interchangeable (any order of theirs can swap one for the other), so they go in call order only.
   */
  readonly earlierTwin: Int32Array;
  readonly returnCount: number;
  /** Per op: its rank among the never-returned ops, or END for an op that returned. */
  readonly unreturnedRank: Int32Array;
  readonly unreturnedCount: number;
  private readonly returnedHead: number;
  private readonly unreturnedHead: number;

  constructor(ops: readonly Operation<unknown, unknown>[]) {
    const returned: { time: number; isReturn: boolean; op: number }[] = [];
    const unreturned: { time: number; isReturn: boolean; op: number }[] = [];
    ops.forEach((o, i) => {
      if (o.return === undefined) {
        unreturned.push({ time: o.call, isReturn: false, op: i });
        return;
      }
      returned.push({ time: o.call, isReturn: false, op: i });
      returned.push({ time: o.return, isReturn: true, op: i });
    });
    // Calls before returns at the same instant: [call, return] is closed, so touching ops are concurrent.
    const byTime = (a: (typeof returned)[0], b: (typeof returned)[0]): number =>
      a.time - b.time || Number(a.isReturn) - Number(b.isReturn) || a.op - b.op;
    returned.sort(byTime);
    unreturned.sort(byTime);
    const entries = [...returned, ...unreturned];
    const count = entries.length;
    this.returnedHead = count;
    this.unreturnedHead = count + 1;
    this.op = new Int32Array(count);
    this.time = new Float64Array(count);
    this.match = new Int32Array(count).fill(END);
    this.next = new Int32Array(count + 2);
    this.prev = new Int32Array(count + 2);
    const callOf = new Int32Array(ops.length);
    entries.forEach((e, k) => {
      this.op[k] = e.op;
      this.time[k] = e.time;
      if (e.isReturn) {
        this.match[callOf[e.op]] = k;
        this.match[k] = RETURN;
      } else {
        callOf[e.op] = k;
      }
    });
    this.chain(this.returnedHead, 0, returned.length);
    this.chain(this.unreturnedHead, returned.length, count);
    this.returnCount = returned.length / 2;
    this.unreturnedRank = new Int32Array(ops.length).fill(END);
    unreturned.forEach((e, rank) => (this.unreturnedRank[e.op] = rank));
    this.unreturnedCount = unreturned.length;
    this.earlierTwin = new Int32Array(ops.length).fill(END);
    const latestTwin = new Map<string, number>();
    for (const e of unreturned) {
      if (ops[e.op].output !== undefined) continue;
      const input = JSON.stringify(ops[e.op].input);
      this.earlierTwin[e.op] = latestTwin.get(input) ?? END;
      latestTwin.set(input, e.op);
    }
  }

  firstReturned(): number {
    return this.next[this.returnedHead];
  }

  firstUnreturned(): number {
    return this.next[this.unreturnedHead];
  }

  isReturn(entry: number): boolean {
    return this.match[entry] === RETURN;
  }

  /** Takes a call entry and its return entry out of the lists. */
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

  /** Links entries [from, to) in order after `head`. */
  private chain(head: number, from: number, to: number): void {
    this.next[head] = from < to ? from : END;
    this.prev[head] = END;
    for (let k = from; k < to; k++) {
      this.next[k] = k + 1 < to ? k + 1 : END;
      this.prev[k] = k > from ? k - 1 : head;
    }
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
    return `op ${i} client ${o.client} ${what} [${o.call}, ${o.return ?? "never returned"}]`;
  };
  let state = model.init();
  for (const i of deadEnd.linearized) state = model.step(state, ops[i].input, ops[i].output).state;
  const shownState = model.describeState?.(state) ?? JSON.stringify(state);
  const last = Array.from(deadEnd.linearized.slice(-explanationOpsMax), describe);
  const lines = [
    `key ${JSON.stringify(key)} (ops numbered within the key): linearized ${deadEnd.linearized.length} of ${ops.length} ops ` +
      `(state then: ${shownState}), ` +
      `then this op returned before any order let it take effect:`,
    `  ${describe(deadEnd.blocking)}`,
    `last linearized:${last.length === 0 ? " none" : ""}`,
    ...last.map((d) => `  ${d}`),
    `also pending then:${deadEnd.pending.length === 0 ? " none" : ""}`,
    ...deadEnd.pending.map((i) => `  ${describe(i)}`),
  ];
  return lines.join("\n");
}

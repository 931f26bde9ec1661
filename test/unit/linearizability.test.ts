/**
 * The linearizability checker with the Redis string model: hand-made histories that are and are not linearizable
 * (stale reads, lost and skipped INCRs, DEL replies, indeterminate writes seen, unseen, or seen then unseen), then a
 * generated 10,000-op history from a simulated linearizable store, clean and with one injected anomaly.
 */
import test from "ava";
import { checkKv, type KvInput, type KvOutput, type Operation } from "../../src/check/kv_model.js";
import { prng, testSeed } from "../helpers/prng.js";

type KvOp = Operation<KvInput, KvOutput>;

const get = (key = "x"): KvInput => ({ kind: "get", key });
const set = (value: string, key = "x"): KvInput => ({ kind: "set", key, value });
const incr = (key = "x"): KvInput => ({ kind: "incr", key });
const del = (key = "x"): KvInput => ({ kind: "del", key });
const notAnInteger = { error: "ERR value is not an integer or out of range" };

/** An op that returned `output` at `ret`. */
function done(client: number, input: KvInput, call: number, ret: number, output: KvOutput): KvOp {
  return { client, input, call, return: ret, output };
}
/** An op whose outcome is unknown: called, never returned. */
function unknown(client: number, input: KvInput, call: number): KvOp {
  return { client, input, call };
}

function assertLinearizable(t: import("ava").ExecutionContext, history: KvOp[]): void {
  const result = checkKv(history);
  t.true(result.ok, result.explanation);
  t.false(result.timedOut);
}

function assertNotLinearizable(t: import("ava").ExecutionContext, history: KvOp[], key = "x"): void {
  const result = checkKv(history);
  t.false(result.ok);
  t.false(result.timedOut);
  t.is(result.failingKey, key);
  t.is(typeof result.explanation, "string");
}

test("linearizability - an empty history and sequential SET, GET, INCR, DEL pass", (t) => {
  assertLinearizable(t, []);
  assertLinearizable(t, [
    done(0, get(), 0, 1, null),
    done(0, set("5"), 2, 3, "OK"),
    done(1, get(), 4, 5, "5"),
    done(1, incr(), 6, 7, 6),
    done(0, get(), 8, 9, "6"),
    done(0, del(), 10, 11, 1),
    done(1, get(), 12, 13, null),
    done(1, incr(), 14, 15, 1),
  ]);
});

test("linearizability - a stale read after a completed SET is rejected", (t) => {
  const writes = [done(0, set("1"), 0, 1, "OK"), done(0, set("2"), 2, 3, "OK")];
  assertNotLinearizable(t, [...writes, done(1, get(), 4, 5, "1")]);
  assertLinearizable(t, [...writes, done(1, get(), 4, 5, "2")]);
  // The same read overlapping the second SET may see either value.
  assertLinearizable(t, [...writes, done(1, get(), 2.5, 5, "1")]);
});

test("linearizability - concurrent SETs: a read may see either, but two later reads cannot flip back", (t) => {
  const writes = [done(0, set("1"), 0, 10, "OK"), done(1, set("2"), 0, 10, "OK")];
  assertLinearizable(t, [...writes, done(2, get(), 11, 12, "1")]);
  assertLinearizable(t, [...writes, done(2, get(), 11, 12, "2")]);
  assertNotLinearizable(t, [...writes, done(2, get(), 11, 12, "1"), done(2, get(), 13, 14, "2")]);
  // Reads during the writes may see 1 then 2 (and nil before both).
  assertLinearizable(t, [...writes, done(2, get(), 1, 2, null), done(2, get(), 3, 4, "1"), done(2, get(), 5, 6, "2")]);
});

test("linearizability - touching intervals are concurrent ([call, return] is closed)", (t) => {
  assertLinearizable(t, [done(0, set("1"), 0, 5, "OK"), done(1, get(), 5, 6, null)]);
  assertNotLinearizable(t, [done(0, set("1"), 0, 5, "OK"), done(1, get(), 5.001, 6, null)]);
});

test("linearizability - a lost INCR (two increments, one observed) is rejected", (t) => {
  assertNotLinearizable(t, [done(0, incr(), 0, 1, 1), done(1, incr(), 2, 3, 1)]);
  assertNotLinearizable(t, [done(0, incr(), 0, 5, 1), done(1, incr(), 0, 5, 1)]);
  assertLinearizable(t, [done(0, incr(), 0, 5, 2), done(1, incr(), 0, 5, 1)]);
  assertNotLinearizable(t, [done(0, incr(), 0, 1, 1), done(1, incr(), 2, 3, 2), done(2, get(), 4, 5, "1")]);
});

test("linearizability - INCR replies that skip a value are rejected, unless an unknown INCR explains the gap", (t) => {
  const skipped = [done(0, incr(), 0, 1, 1), done(0, incr(), 2, 3, 3)];
  assertNotLinearizable(t, skipped);
  assertLinearizable(t, [...skipped, unknown(1, incr(), 0.5)]);
  // ...but an unknown INCR called after the skip cannot explain it.
  assertNotLinearizable(t, [...skipped, unknown(1, incr(), 3.5)]);
});

test("linearizability - a read of a value never written is rejected", (t) => {
  assertNotLinearizable(t, [done(0, get(), 0, 1, "ghost")]);
  assertNotLinearizable(t, [done(0, set("1"), 0, 1, "OK"), done(1, get(), 0, 2, "ghost")]);
  assertNotLinearizable(t, [done(0, get(), 0, 1, 0 as unknown as KvOutput)], "x");
});

test("linearizability - an indeterminate SET seen later, or never seen, passes", (t) => {
  assertLinearizable(t, [unknown(0, set("1"), 0), done(1, get(), 5, 6, "1")]);
  assertLinearizable(t, [unknown(0, set("1"), 0), done(1, get(), 5, 6, null), done(1, get(), 7, 8, null)]);
  // It may take effect long after its client gave up and moved on.
  assertLinearizable(t, [unknown(0, set("1"), 0), done(0, set("2"), 10, 11, "OK"), done(1, get(), 12, 13, "1")]);
  // It cannot take effect before it was called.
  assertNotLinearizable(t, [done(1, get(), 0, 1, "1"), unknown(0, set("1"), 2)]);
});

test("linearizability - an indeterminate SET seen, then unseen with no other writer, is rejected", (t) => {
  const seen = [unknown(0, set("1"), 0), done(1, get(), 5, 6, "1")];
  assertNotLinearizable(t, [...seen, done(2, get(), 7, 8, null)]);
  // With another writer in between the value may change again.
  assertLinearizable(t, [...seen, done(0, set("2"), 6.5, 6.8, "OK"), done(2, get(), 7, 8, "2")]);
  assertLinearizable(t, [...seen, done(0, del(), 6.5, 6.8, 1), done(2, get(), 7, 8, null)]);
  // A second unknown write of the same value may explain a flicker: 1, nil (DEL), 1 again.
  assertLinearizable(t, [...seen, done(0, del(), 6.5, 6.8, 1), done(2, get(), 7, 8, null), unknown(3, set("1"), 7.5), done(2, get(), 9, 10, "1")]);
});

test("linearizability - DEL replies the number of keys removed", (t) => {
  assertLinearizable(t, [done(0, del(), 0, 1, 0), done(0, set("a"), 2, 3, "OK"), done(1, del(), 4, 5, 1), done(1, del(), 6, 7, 0)]);
  assertNotLinearizable(t, [done(0, del(), 0, 1, 1)]);
  assertNotLinearizable(t, [done(0, set("a"), 0, 1, "OK"), done(1, del(), 2, 3, 1), done(1, del(), 4, 5, 1)]);
  assertNotLinearizable(t, [done(0, set("a"), 0, 1, "OK"), done(1, del(), 2, 3, 1), done(1, get(), 4, 5, "a")]);
  // Two concurrent DELs of an existing key: exactly one removes it.
  assertLinearizable(t, [done(0, set("a"), 0, 1, "OK"), done(1, del(), 2, 5, 0), done(2, del(), 2, 5, 1)]);
  assertNotLinearizable(t, [done(0, set("a"), 0, 1, "OK"), done(1, del(), 2, 5, 1), done(2, del(), 2, 5, 1)]);
});

test("linearizability - INCR of a non-integer errs and changes nothing; an error matches only if the model errs", (t) => {
  assertLinearizable(t, [done(0, set("abc"), 0, 1, "OK"), done(0, incr(), 2, 3, notAnInteger), done(0, get(), 4, 5, "abc")]);
  assertNotLinearizable(t, [done(0, set("abc"), 0, 1, "OK"), done(0, incr(), 2, 3, 1)]);
  assertNotLinearizable(t, [done(0, set("7"), 0, 1, "OK"), done(0, incr(), 2, 3, notAnInteger)]);
  // Redis's integer syntax: no leading zeros, no plus sign, no spaces; int64 overflow is an error too.
  for (const value of ["07", "+1", " 1", "1.0", "-0", "9223372036854775807"]) {
    assertLinearizable(t, [done(0, set(value), 0, 1, "OK"), done(0, incr(), 2, 3, notAnInteger)]);
  }
  assertLinearizable(t, [done(0, set("-1"), 0, 1, "OK"), done(0, incr(), 2, 3, 0), done(0, get(), 4, 5, "0")]);
  assertLinearizable(t, [done(0, set("9223372036854775806"), 0, 1, "OK"), done(0, incr(), 2, 3, 9223372036854775807)]);
  // INCR replies an integer, not its decimal string.
  assertNotLinearizable(t, [done(0, incr(), 0, 1, "1")]);
  // SET, GET and DEL never err on a string key: an error reply there is not linearizable.
  assertNotLinearizable(t, [done(0, set("a"), 0, 1, notAnInteger)]);
});

test("linearizability - MULTI GET+INCR (getincr) is one step: its GET sees the state its INCR increments", (t) => {
  const gi = (key = "x"): KvInput => ({ kind: "getincr", key });
  assertLinearizable(t, [done(0, set("5"), 0, 1, "OK"), done(0, gi(), 2, 3, ["5", 6]), done(0, get(), 4, 5, "6")]);
  assertLinearizable(t, [done(0, gi(), 0, 1, [null, 1]), done(1, gi(), 2, 3, ["1", 2])]);
  // Concurrent with an INCR: either order, but the pair must be adjacent values.
  assertLinearizable(t, [done(0, set("1"), 0, 1, "OK"), done(0, gi(), 2, 6, ["2", 3]), done(1, incr(), 3, 4, 2)]);
  // Not atomic: the GET saw 1, the INCR replied 3 (another INCR ran between them).
  assertNotLinearizable(t, [done(0, set("1"), 0, 1, "OK"), done(0, gi(), 2, 6, ["1", 3]), done(1, incr(), 3, 4, 2)]);
  // Of a non-integer: the INCR errs inside EXEC, the GET still answered, nothing changes.
  assertLinearizable(t, [done(0, set("a"), 0, 1, "OK"), done(0, gi(), 2, 3, ["a", notAnInteger]), done(0, get(), 4, 5, "a")]);
  assertNotLinearizable(t, [done(0, set("a"), 0, 1, "OK"), done(0, gi(), 2, 3, ["b", notAnInteger])]);
  // Unknown outcome: may or may not have run.
  assertLinearizable(t, [done(0, set("1"), 0, 1, "OK"), unknown(1, gi(), 2), done(0, get(), 4, 5, "2")]);
});

test("linearizability - keys are checked apart; the failing key is named and explained", (t) => {
  const history = [
    done(0, set("1", "a"), 0, 1, "OK"),
    done(1, set("1", "b"), 0, 1, "OK"),
    done(0, get("a"), 2, 3, "1"),
    done(1, get("b"), 2, 3, null),
    done(2, incr("c"), 0, 1, 1),
  ];
  const result = checkKv(history);
  t.false(result.ok);
  t.is(result.failingKey, "b");
  t.is(result.longestPrefix, 1);
  t.regex(result.explanation ?? "", /GET b -> nil/);
  t.regex(result.explanation ?? "", /SET b "1" -> "OK"/);
  t.true(checkKv(history.filter((op) => op.input.key !== "b")).ok);
  t.is(checkKv(history.filter((op) => op.input.key !== "b")).partitions, 2);
});

test("linearizability - an indeterminate GET constrains nothing; an error from a GET does", (t) => {
  assertLinearizable(t, [unknown(0, get(), 0), done(0, set("1"), 1, 2, "OK")]);
  assertNotLinearizable(t, [done(0, get(), 0, 1, notAnInteger)]);
});

test("linearizability - a spent budget gives an unknown result, not a verdict", (t) => {
  // Twelve concurrent SETs, then a read of a value none wrote: rejecting it means trying every subset and order.
  const history = [...Array.from({ length: 12 }, (_, i) => done(i, set(String(i)), 0, 100, "OK")), done(12, get(), 101, 102, "ghost")];
  let fakeNow = 0;
  const result = checkKv(history, { timeoutMs: 1, now: () => fakeNow++ });
  t.false(result.ok);
  t.true(result.timedOut);
  t.is(result.failingKey, undefined);
  const unbounded = checkKv(history);
  t.false(unbounded.ok);
  t.false(unbounded.timedOut);
  t.is(unbounded.longestPrefix, 12);
});

// ---------------------------------------------------------------------------------------------------------------
// Generated histories

interface Generated {
  history: KvOp[];
  /** Ops whose outcome the clients never learned. */
  indeterminate: number;
}

/**
 * Simulates a linearizable store: each op takes effect at one instant inside its [call, return] and the outputs
 * come from applying the ops in that order. Each client runs one op at a time; an op with an unknown outcome
 * (a timeout) may take effect long after its client moved on, or never.
 */
interface GenerateOptions {
  opsCount: number;
  clients: number;
  keys: number;
  /** The share of ops whose outcome the client never learns. */
  unknownRate: number;
}

function generate(seed: number, { opsCount, clients, keys, unknownRate }: GenerateOptions): Generated {
  const random = prng(seed);
  const freeAt = new Array<number>(clients).fill(0);
  const planned: { op: KvOp; effectAt: number; applies: boolean; known: boolean }[] = [];
  for (let i = 0; i < opsCount; i++) {
    const client = i % clients;
    const call = freeAt[client] + random() * 2;
    const duration = 0.2 + random() * 4;
    const known = random() >= unknownRate;
    const effectAt = known ? call + random() * duration : call + random() * 40;
    freeAt[client] = known ? call + duration : call + 10;
    const key = `k${Math.floor(keys * random() ** 2)}`;
    const kindDraw = random();
    const input: KvInput =
      kindDraw < 0.4
        ? { kind: "get", key }
        : kindDraw < 0.7
          ? { kind: "set", key, value: random() < 0.5 ? String(Math.floor(random() * 5)) : `v${i}` }
          : kindDraw < 0.9
            ? { kind: "incr", key }
            : { kind: "del", key };
    const op: KvOp = known ? { client, input, call, return: call + duration } : { client, input, call };
    planned.push({ op, effectAt, applies: known || random() < 0.5, known });
  }
  const store = new Map<string, string>();
  for (const p of [...planned].sort((a, b) => a.effectAt - b.effectAt)) {
    if (!p.applies) continue;
    const output = apply(store, p.op.input);
    if (p.known) p.op.output = output;
  }
  return { history: planned.map((p) => p.op), indeterminate: planned.filter((p) => !p.known).length };
}

/** Redis semantics, written apart from the model under test. */
function apply(store: Map<string, string>, input: KvInput): KvOutput {
  const current = store.get(input.key);
  switch (input.kind) {
    case "get":
      return current ?? null;
    case "set":
      store.set(input.key, input.value);
      return "OK";
    case "del":
      store.delete(input.key);
      return current === undefined ? 0 : 1;
    case "incr": {
      if (current !== undefined && !/^(0|-?[1-9][0-9]*)$/.test(current)) return notAnInteger;
      const next = Number(current ?? "0") + 1;
      store.set(input.key, String(next));
      return next;
    }
    case "getincr": {
      const inner = apply(store, { kind: "incr", key: input.key });
      return [current ?? null, inner as number | { error: string }];
    }
  }
}

const generatedSeed = testSeed(6);
const large: GenerateOptions = { opsCount: 10_000, clients: 8, keys: 50, unknownRate: 0.02 };

test("linearizability - a generated 10,000-op history of a linearizable store passes in seconds", (t) => {
  const { history, indeterminate } = generate(generatedSeed, large);
  const started = performance.now();
  const result = checkKv(history, { timeoutMs: 120_000 });
  const elapsedMs = performance.now() - started;
  t.log(`seed ${generatedSeed}: ${history.length} ops (${indeterminate} indeterminate), ${result.partitions} keys, checked in ${elapsedMs.toFixed(0)} ms`);
  t.true(result.ok, result.explanation);
  t.false(result.timedOut);
  t.true(result.partitions >= 40);
  t.true(indeterminate > 0);
});

test("linearizability - a generated history with a read of a never-written value is rejected", (t) => {
  const { history } = generate(generatedSeed, large);
  const read = history.find((op, i) => i > 5_000 && op.input.kind === "get" && op.return !== undefined);
  if (read === undefined) return t.fail("no completed GET to corrupt");
  read.output = "never-written";
  const result = checkKv(history, { timeoutMs: 120_000 });
  t.false(result.ok);
  t.false(result.timedOut);
  t.is(result.failingKey, read.input.key);
  t.regex(result.explanation ?? "", /never-written/);
  t.log(result.explanation);
});

test("linearizability - a generated history with one stale read is rejected", (t) => {
  const { history } = generate(generatedSeed, large);
  const stale = findStaleRead(history);
  if (stale === undefined) return t.fail("no read to make stale");
  stale.read.output = stale.value;
  const result = checkKv(history, { timeoutMs: 120_000 });
  t.false(result.ok);
  t.false(result.timedOut);
  t.is(result.failingKey, stale.read.input.key);
  t.log(`stale read of ${JSON.stringify(stale.value)} on ${stale.read.input.key}: longest prefix ${result.longestPrefix}`);
});

/**
 * A completed GET after the history's midpoint, and a value it can no longer see: a unique (non-integer) value
 * written by a completed SET that a later completed SET or DEL of the key overwrote before the GET was called.
 */
function findStaleRead(history: KvOp[]): { read: KvOp; value: string } | undefined {
  const completed = (op: KvOp): op is KvOp & { return: number } => op.return !== undefined;
  for (const read of history.slice(history.length / 2)) {
    if (read.input.kind !== "get" || !completed(read)) continue;
    const key = read.input.key;
    const writes = history.filter((op) => op.input.key === key && completed(op) && (op.input.kind === "set" || op.input.kind === "del"));
    for (const first of writes) {
      if (first.input.kind !== "set" || !first.input.value.startsWith("v") || first.input.value === read.output) continue;
      const overwritten = writes.some((later) => later.call > first.return! && later.return! < read.call);
      if (overwritten) return { read, value: first.input.value };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// The search against brute force

/** Whether `output` is what Redis replied, by the independent semantics of `apply`. */
function replied(actual: KvOutput, output: KvOutput | undefined): boolean {
  if (output === undefined) return true;
  const isError = (o: KvOutput): boolean => typeof o === "object" && o !== null;
  return isError(actual) || isError(output) ? isError(actual) && isError(output) : actual === output;
}

/**
 * Every order by brute force: the next op is any pending one that no pending op returned before; a never-returned
 * op may also never go. Feasible only for a handful of ops.
 */
function bruteForce(history: KvOp[]): boolean {
  const pending = new Set(history.map((_, i) => i));
  const search = (store: Map<string, string>): boolean => {
    if ([...pending].every((i) => history[i].return === undefined)) return true;
    for (const i of [...pending]) {
      const op = history[i];
      if ([...pending].some((j) => (history[j].return ?? Infinity) < op.call)) continue;
      const next = new Map(store);
      if (!replied(apply(next, op.input), op.output)) continue;
      pending.delete(i);
      const found = search(next);
      pending.add(i);
      if (found) return true;
    }
    return false;
  };
  return search(new Map());
}

/** A small history of a linearizable store, one output then changed half the time. */
function smallHistory(random: () => number): KvOp[] {
  const options = { opsCount: 3 + Math.floor(random() * 5), clients: 3, keys: random() < 0.8 ? 1 : 2, unknownRate: 0.25 };
  const { history } = generate(Math.floor(random() * 2 ** 32), options);
  if (random() < 0.5) {
    const op = history[Math.floor(random() * history.length)];
    const choices: KvOutput[] = [null, "0", "1", "2", "v1", 0, 1, 2, 3, notAnInteger];
    if (op.return !== undefined) op.output = choices[Math.floor(random() * choices.length)];
  }
  return history;
}

test("linearizability - the search agrees with brute force on 3,000 small histories", (t) => {
  const random = prng(generatedSeed + 1);
  const verdicts = { linearizable: 0, not: 0 };
  for (let i = 0; i < 3_000; i++) {
    const history = smallHistory(random);
    const result = checkKv(history, { timeoutMs: 1000 });
    if (result.timedOut) return t.fail(`case ${i}: timed out: ${JSON.stringify(history)}`);
    const expected = bruteForce(history);
    if (result.ok !== expected) return t.fail(`case ${i}: checker says ${result.ok}, brute force ${expected}: ${JSON.stringify(history)}`);
    verdicts[expected ? "linearizable" : "not"]++;
  }
  t.log(`${verdicts.linearizable} linearizable, ${verdicts.not} not`);
  t.true(verdicts.linearizable > 500 && verdicts.not > 500);
});

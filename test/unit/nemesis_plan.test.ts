/** The nemesis's schedules (pure, seeded) and the conversion of a recorded history into checker operations. */
import test from "ava";
import { History } from "../helpers/history.js";
import { GET_SCRIPT, kvArgs, kvInput, toKvHistory } from "../helpers/kv_load.js";
import { describeSchedule, MAJORITY_FAULT_MS_MAX, planSchedule, FAULT_MS_MIN, type Topology } from "../helpers/nemesis.js";

const topology: Topology = { master: "m1", journalNodes: ["jn1", "jn2", "jn3"], replicas: ["r1", "r2"] };

test("nemesis plan - the same seed plans the same schedule; another seed another", (t) => {
  const a = planSchedule(7, topology, { faults: 8, durationMs: 24000 });
  t.deepEqual(planSchedule(7, topology, { faults: 8, durationMs: 24000 }), a);
  t.notDeepEqual(planSchedule(8, topology, { faults: 8, durationMs: 24000 }), a);
  t.is(describeSchedule(a).split("\n").length, 8);
});

test("nemesis plan - faults are sequential, within the run, and a majority of journal nodes is faulted only briefly", (t) => {
  const kinds = new Set<string>();
  const targets = new Set<string>();
  for (let seed = 1; seed <= 300; seed++) {
    const schedule = planSchedule(seed, topology, { faults: 8, durationMs: 24000 });
    t.is(schedule.length, 8);
    let freeAt = 0;
    for (const f of schedule) {
      kinds.add(f.kind);
      for (const a of f.actors) targets.add(a);
      t.true(f.atMs >= freeAt, `seed ${seed}: a fault starts only once the one before is healed`);
      t.true(f.durationMs >= FAULT_MS_MIN);
      freeAt = f.atMs + f.durationMs;
      t.true(freeAt <= 24000, `seed ${seed}: healed within the run`);
      t.is(new Set(f.actors).size, f.actors.length, "no actor twice in one fault");
      const nodes = f.actors.filter((a) => topology.journalNodes.includes(a)).length;
      if (nodes >= 2) t.true(f.durationMs <= MAJORITY_FAULT_MS_MAX, `seed ${seed}: a majority of journal nodes faulted for ${f.durationMs} ms`);
      if (f.kind === "delay") t.true(f.delayMs >= 20 && f.delayMs <= 500);
    }
  }
  t.deepEqual([...kinds].sort(), ["cut", "delay", "drop", "kill", "stop"]);
  t.deepEqual([...targets].sort(), ["jn1", "jn2", "jn3", "m1", "r1", "r2"]);
});

test("kv history - each load operation maps back to its KV input; other writes are ignored", (t) => {
  for (const input of [
    { kind: "get", key: "k1" },
    { kind: "set", key: "k2", value: "17" },
    { kind: "incr", key: "k3" },
    { kind: "del", key: "k4" },
  ] as const) {
    t.deepEqual(kvInput(kvArgs(input)), input);
  }
  t.deepEqual(kvArgs({ kind: "get", key: "x" }), ["EVAL", GET_SCRIPT, "1", "x"]);
  t.is(kvInput(["SET", "x", "1", "NX"]), undefined);
  t.is(kvInput(["HSET", "h", "f", "v"]), undefined);
});

test("kv history - ok ops carry output and times, failed ones are dropped, unknown ones have neither and start a new client", (t) => {
  const h = new History();
  const set = h.invoke(1, ["SET", "k", "5"]);
  h.ok(set, 10, "OK");
  const get = h.invoke(1, kvArgs({ kind: "get", key: "k" }));
  h.ok(get, 11, Buffer.from("5"));
  const failed = h.invoke(2, ["INCR", "k"]);
  h.fail(failed, "OVERLOADED", "busy");
  const unknown = h.invoke(2, ["INCR", "k"]);
  h.unknown(unknown, "NO_QUORUM: no majority");
  const after = h.invoke(2, ["DEL", "k"]);
  h.ok(after, 12, 1);
  const kv = toKvHistory(h.all());
  t.deepEqual({ ok: kv.ok, failed: kv.failed, indeterminate: kv.indeterminate }, { ok: 3, failed: 1, indeterminate: 1 });
  t.deepEqual(
    kv.operations.map((o) => [o.input.kind, o.output, o.return === undefined]),
    [
      ["set", "OK", false],
      ["get", "5", false],
      ["incr", undefined, true],
      ["del", 1, false],
    ],
  );
  const [s, g, i, d] = kv.operations;
  t.is(s.client, g.client);
  t.true(s.call <= s.return! && s.return! <= g.call);
  t.not(i.client, d.client, "the op after an unknown one is a new client");
});

test("kv history - unknown writes the committed journal shows never ran are dropped; those that may have run are kept", (t) => {
  const h = new History();
  const acked = h.invoke(1, ["SET", "k", "1"]);
  h.ok(acked, 1, "OK");
  const ranSet = h.invoke(2, ["SET", "k", "2"]);
  h.unknown(ranSet, "no reply: TIMEOUT");
  const lostSet = h.invoke(3, ["SET", "k", "3"]);
  h.unknown(lostSet, "NOT_WRITER: not the writer");
  const lostIncr = h.invoke(4, ["INCR", "k"]);
  h.unknown(lostIncr, "NO_QUORUM: no majority");
  const ranDel = h.invoke(5, ["DEL", "j"]);
  h.unknown(ranDel, "no reply: TIMEOUT");
  const ackedIncr = h.invoke(6, ["INCR", "k"]);
  h.ok(ackedIncr, 3, 3);
  const bytes = (...args: string[]) => args.map((a) => Buffer.from(a));
  const journal = new Map([
    [1, [bytes("set", "k", "1")]],
    [2, [bytes("set", "k", "2")]],
    [3, [bytes("incr", "k")]],
    [4, [bytes("del", "j")]],
  ]);
  const kv = toKvHistory(h.all(), journal);
  t.is(kv.unexecuted, 2);
  t.is(kv.indeterminate, 2);
  t.deepEqual(
    kv.operations.filter((o) => o.return === undefined).map((o) => o.input),
    [
      { kind: "set", key: "k", value: "2" },
      { kind: "del", key: "j" },
    ],
  );
  t.deepEqual(Object.fromEntries(kv.reasons), { "no reply": 2, NOT_WRITER: 1, NO_QUORUM: 1 });
});

/** The bench's trace arithmetic (bench/trace.ts): per-hop durations, their summary, replica lag, /proc parsing. */
import test from "ava";
import { HOPS, commitStamp, hopDurations, parseProcStat, replicaLag, summarizeHops, treeTicks, type ClientTrace } from "../../bench/trace.js";
import { parseWriteTrace } from "../../src/protocol/messages.js";
import { WriteTracer } from "../../src/master/write_trace.js";

/** A write whose every hop takes a known time; node b's ack (the second) makes the majority. */
function traced(base: number, txid = 10): ClientTrace {
  return {
    sent: base,
    received: base + 55,
    txid,
    trace: {
      recv: base + 1,
      executed: base + 3,
      cut: base + 6,
      batchSent: base + 10,
      acks: [
        { node: "a", recv: base + 12, started: base + 12, durable: base + 14, replied: base + 14, acked: base + 16 },
        { node: "b", recv: base + 15, started: base + 15.5, durable: base + 21, replied: base + 21, acked: base + 28 },
        { node: "c", recv: base + 30, started: base + 30, durable: base + 40, replied: base + 40, acked: base + 45 },
      ],
      committed: base + 36,
      replied: base + 45,
    },
  };
}

test("trace - hops are the deciding node's and add up to the round trip", (t) => {
  const d = hopDurations(traced(1000))!;
  t.is(d.length, HOPS.length);
  t.deepEqual(d, [1, 2, 3, 4, 5, 0.5, 5.5, 7, 8, 9, 10]);
  t.is(d.reduce((a, b) => a + b, 0), 55);
});

test("trace - an incomplete trace is left out, and the summary takes median and p99 per hop", (t) => {
  const missing = traced(0);
  missing.trace.cut = 0;
  t.is(hopDurations(missing), null);
  const s = summarizeHops([traced(0), traced(100), missing]);
  t.is(s.samples, 2);
  t.deepEqual(s.hops.map((h) => h.p50Ms), [1, 2, 3, 4, 5, 0.5, 5.5, 7, 8, 9, 10]);
  t.deepEqual(s.total, { p50Ms: 55, p99Ms: 55 });
});

test("trace - replica lag: commit → the applied run holding the txid, per replica", (t) => {
  const w = traced(1000, 10); // committed at 1036
  const lag = replicaLag([commitStamp(w)], [
    { replica: "r1", fromTxid: 1, toTxid: 9, at: 1030 },
    { replica: "r1", fromTxid: 10, toTxid: 12, at: 1040 },
    { replica: "r2", fromTxid: 5, toTxid: 20, at: 1050 },
    { replica: "r3", fromTxid: 11, toTxid: 20, at: 1050 },
  ]);
  t.deepEqual(lag, { samples: 2, p50Ms: 4, p99Ms: 14 });
});

test("trace - /proc/<pid>/stat: a name with spaces and parentheses, and a process tree's ticks", (t) => {
  const line = "4242 (node (x) y) S 4000 4242 4000 0 -1 4194304 100 0 0 0 150 25 0 0 20 0 11 0 1234 0 0";
  t.deepEqual(parseProcStat(line), { pid: 4242, ppid: 4000, ticks: 175 });
  t.is(parseProcStat("garbage"), null);
  const stats = [
    { pid: 1, ppid: 0, ticks: 1000 },
    { pid: 10, ppid: 1, ticks: 5 },
    { pid: 11, ppid: 10, ticks: 7 },
    { pid: 12, ppid: 11, ticks: 11 },
    { pid: 20, ppid: 1, ticks: 100 },
  ];
  t.is(treeTicks(stats, [10]), 23);
  t.is(treeTicks(stats, [10, 11, 20]), 123);
});

test("trace - the master samples 1 write in N and stamps each hop; a reply's trace is validated", (t) => {
  const off = new WriteTracer(0);
  t.false(off.on);
  const tracer = new WriteTracer(2);
  t.is(tracer.sample(), null);
  const trace = tracer.sample()!;
  tracer.admitted(7, trace);
  tracer.executed(7);
  tracer.cut(7);
  tracer.journaled(7, 100);
  t.false(tracer.batchSent(101, 5));
  t.true(tracer.batchSent(99, 2));
  tracer.acked("a", 99, 2, { recv: 1, started: 1, durable: 2, replied: 3 });
  tracer.acked("a", 99, 2, { recv: 9, started: 9, durable: 9, replied: 9 });
  tracer.committed(99);
  t.is(trace.committed, 0);
  tracer.committed(100);
  const done = tracer.answered(7)!;
  t.is(done.acks.length, 1);
  t.true(done.recv > 0 && done.executed >= done.recv && done.replied >= done.committed && done.committed > 0);
  t.is(tracer.answered(7), undefined);
  t.deepEqual(parseWriteTrace(JSON.parse(JSON.stringify(done))), done);
  t.throws(() => parseWriteTrace({ ...done, cut: "soon" }));
});

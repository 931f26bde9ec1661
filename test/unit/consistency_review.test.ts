/**
 * Adversarial review of the master's read guard (s20): its memory and work per waiting read must not grow with the
 * writes in flight. A hot key under a write storm (writesInflightMax 4096 in flight) read by pipelined clients on the
 * master's door: each waiting read used to join the reader set of every write of its key (reads × writes entries,
 * and as many steps when they are answered).
 */
import test from "ava";
import { DirtyReadCore } from "../../src/master/dirty_reads.js";

const WRITES = 2048;
const READS = 4096;

test("DirtyReadCore: reads of a hot key under a write storm hold O(reads) memory, not reads × writes", (t) => {
  const c = new DirtyReadCore(false);
  for (let w = 1; w <= WRITES; w++) c.executed(w, ["hot"]);
  const before = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  for (let r = 1; r <= READS; r++) {
    const keys = r % 2 === 0 ? ["hot"] : null; // GETs, and keyless reads (DBSIZE, SCAN)
    t.is(c.replied(r, keys, 0), "wait");
  }
  const grownMb = (process.memoryUsage().heapUsed - before) / 2 ** 20;
  let released = 0;
  for (let w = 1; w <= WRITES; w++) released += c.answered(w).length;
  const ms = performance.now() - t0;
  t.log(`${READS} reads waiting on ${WRITES} writes: heap +${grownMb.toFixed(1)} MiB, ${ms.toFixed(0)} ms to register and release`);
  t.is(released, READS, "every read released once its writes are answered");
  t.is(c.waitingReads, 0);
  t.true(grownMb < 64, `heap grew ${grownMb.toFixed(1)} MiB`);
});

test("DirtyReadCore: a read waits only for writes executed before its reply, in any answer order", (t) => {
  const c = new DirtyReadCore(false);
  c.executed(1, ["k"]);
  c.executed(2, ["k"]);
  t.is(c.replied(10, ["k"], 0), "wait");
  t.is(c.replied(11, null, 0), "wait");
  c.executed(3, ["k"]);
  c.executed(4, ["other"]);
  t.deepEqual(c.answered(2), [], "write 1 still unanswered");
  t.deepEqual(c.answered(1).map((v) => v.read).sort(), [10, 11], "write 3 came after their replies");
  t.is(c.replied(12, ["k"], 0), "wait", "write 3 is before this one");
  t.deepEqual(c.answered(4), []);
  t.deepEqual(c.answered(3), [{ read: 12, verdict: "release" }]);
  t.is(c.waitingReads, 0);
});

/**
 * Adversarial review of the master's read guard (s20): its memory and work per waiting read must not grow with the
 * writes in flight. A hot key under a write storm (writesInflightMax 4096 in flight) read by pipelined clients on the
 * master's door: each waiting read used to join the reader set of every write of its key (reads × writes entries,
 * and as many steps when they are answered).
 */
import test from "ava";
import pino from "pino";
import { loadConfig } from "../../src/config/config.js";
import { ConnectionState } from "../../src/frontdoor/connection_state.js";
import { ReadPath } from "../../src/frontdoor/read_path.js";
import { DirtyReadCore } from "../../src/master/dirty_reads.js";
import { ReadGuard } from "../../src/master/read_guard.js";

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

/** The rule, by brute force: a read's reply waits for every unanswered write executed before it whose keys meet its. */
class Reference {
  writes = new Map<number, string[] | null>();
  waiting = new Map<number, Set<number>>();
  replied(read: number, keys: string[] | null): "release" | "wait" {
    const meets = (w: string[] | null): boolean => keys === null || w === null || w.some((k) => keys.includes(k));
    const blockers = new Set([...this.writes].filter(([, w]) => meets(w)).map(([id]) => id));
    if (blockers.size === 0) return "release";
    this.waiting.set(read, blockers);
    return "wait";
  }
  answered(id: number): number[] {
    this.writes.delete(id);
    const out: number[] = [];
    for (const [read, b] of this.waiting) if (b.delete(id) && b.size === 0) out.push(read);
    for (const read of out) this.waiting.delete(read);
    return out;
  }
}

test("DirtyReadCore: random schedules release exactly the reads the brute-force rule releases", (t) => {
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const keysOf = (): string[] | null => (rand(8) === 0 ? null : Array.from({ length: 1 + rand(3) }, () => `k${rand(5)}`));
  for (let run = 0; run < 200; run++) {
    const c = new DirtyReadCore(false);
    const ref = new Reference();
    let nextWrite = 1;
    let nextRead = 1;
    for (let step = 0; step < 200; step++) {
      const op = rand(10);
      if (op < 4) {
        const keys = keysOf();
        c.executed(nextWrite, keys);
        ref.writes.set(nextWrite++, keys);
      } else if (op < 7) {
        const keys = keysOf();
        t.is(c.replied(nextRead, keys, 0), ref.replied(nextRead, keys), `run ${run} step ${step}: read ${nextRead}`);
        nextRead++;
      } else if (op < 9 && ref.writes.size > 0) {
        const ids = [...ref.writes.keys()];
        const id = ids[rand(ids.length)];
        const got = c.answered(id).map((v) => v.read).sort((a, b) => a - b);
        t.deepEqual(got, ref.answered(id).sort((a, b) => a - b), `run ${run} step ${step}: write ${id} answered`);
      } else if (ref.waiting.size > 0) {
        const reads = [...ref.waiting.keys()];
        const read = reads[rand(reads.length)];
        c.cancel(read);
        ref.waiting.delete(read);
      }
    }
    t.is(c.waitingReads, ref.waiting.size);
  }
});

test("ReadPath: a read sent while the node was a replica, answered after it became master with a write in flight, is not given unguarded", async (t) => {
  let guard: ReadGuard | null = null;
  let release: (v: { type: "bulk"; value: Buffer }) => void = () => {};
  let reads = 0;
  const path = new ReadPath({
    config: loadConfig({}, { respReadTimeoutMs: 300 }),
    nc: null as never, // session reads never ask the master for a read index
    log: pino({ level: "silent" }),
    commands: () => undefined,
    refusal: () => null,
    visibleTxid: () => 10,
    guard: () => guard,
    read: () => {
      reads++;
      return new Promise((resolve) => (release = resolve));
    },
  });
  const state = new ConnectionState(1, "a", "b", Date.now(), false);
  const reply = path.read(2, [Buffer.from("GET"), Buffer.from("k")], state);
  await new Promise((r) => setImmediate(r));
  // Meanwhile the node took over as master and executed a write of k, not yet committed (it may be lost).
  guard = new ReadGuard();
  guard.undo(false);
  guard.executed(1, ["k"]);
  release({ type: "bulk", value: Buffer.from("dirty") });
  let answeredAt = null as "before the commit" | "after the commit" | null;
  let committed = false;
  void reply.then(() => (answeredAt = committed ? "after the commit" : "before the commit"));
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  t.is(answeredAt, null, "the reply that may show the uncommitted write is not given");
  t.is(reads, 2, "read again, through the master's guard");
  release({ type: "bulk", value: Buffer.from("dirty") });
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  t.is(answeredAt, null, "held: the write of k is not answered");
  committed = true;
  guard.answered(1);
  const got = await reply;
  t.is(answeredAt, "after the commit");
  t.is(got.type === "bulk" ? String(got.value) : got.type, "dirty", "its value, once committed");
});

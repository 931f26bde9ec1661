/**
 * The dedupe window's warm-up decision (src/dedupe/window_warmup.ts), which production's replica and the simulator's
 * both drive: where it starts, which node each read goes to, when it is done, when it pauses, gives up, or ends
 * incomplete.
 */
import test from "ava";
import { warmFrom, WindowWarmup, type WarmupStep } from "../../src/dedupe/window_warmup.js";

const NODES = ["jn1", "jn2", "jn3"];
const limits = { dedupeWindowRecords: 100 };

test("window warm-up - starts at the last window's worth up to the applied txid, after what the window saw", (t) => {
  t.is(warmFrom(0, 0, limits), null, "nothing applied: nothing to learn");
  t.is(warmFrom(50, 0, limits), 1);
  t.is(warmFrom(500, 0, limits), 401);
  t.is(warmFrom(500, 450, limits), 451, "the window saw up to 450 already");
  t.is(warmFrom(500, 500, limits), null, "it holds everything up to the applied txid");
  t.is(warmFrom(500, 600, limits), null);
});

test("window warm-up - reads rotate over the nodes from the first missing txid, and each read's records move it on", (t) => {
  const warm = new WindowWarmup(NODES, 401, 500, false);
  t.deepEqual(warm.next(), { kind: "read", node: "jn1", fromTxid: 401 });
  warm.read(440);
  t.deepEqual(warm.next(), { kind: "read", node: "jn2", fromTxid: 441 });
  warm.read(480);
  t.deepEqual(warm.next(), { kind: "read", node: "jn3", fromTxid: 481 });
  warm.read(500);
  t.deepEqual(warm.next(), { kind: "done", incomplete: false });
  t.is(warm.fromTxid, null);
});

test("window warm-up - nothing to learn is done at once", (t) => {
  t.deepEqual(new WindowWarmup(NODES, null, 500, true).next(), { kind: "done", incomplete: false });
  t.deepEqual(new WindowWarmup(NODES, 501, 500, true).next(), { kind: "done", incomplete: false });
});

test("window warm-up - a round of misses pauses; a standby never gives up, a release after three rounds in a row", (t) => {
  const standby = new WindowWarmup(NODES, 1, 10, false);
  const actions: string[] = [];
  for (let i = 0; i < 30; i++) {
    t.is(standby.next().kind, "read");
    actions.push(standby.missed(false));
  }
  t.deepEqual(actions.slice(0, 6), ["next", "next", "pause", "next", "next", "pause"]);
  t.is(standby.next().kind, "read", "a standby keeps trying");

  const release = new WindowWarmup(NODES, 1, 10, true);
  let step: WarmupStep = release.next();
  let reads = 0;
  for (; step.kind === "read"; step = release.next()) {
    reads++;
    release.missed(false);
  }
  t.is(reads, 9);
  t.deepEqual(step, { kind: "gaveUp", reason: "the dedupe window could not learn txid 1: no journal node served it" });
});

test("window warm-up - only misses in a row count: a cold window's many reads are each progress", (t) => {
  const warm = new WindowWarmup(NODES, 1, 1000, true);
  for (let from = 1; from <= 1000; from += 40) {
    // Eight misses, then a read: never nine in a row.
    for (let i = 0; i < 8; i++) {
      t.is(warm.next().kind, "read");
      warm.missed(false);
    }
    const step = warm.next();
    t.deepEqual(step.kind === "read" ? step.fromTxid : step, from);
    warm.read(Math.min(1000, from + 39));
  }
  t.deepEqual(warm.next(), { kind: "done", incomplete: false });
});

test("window warm-up - PURGED from every node in a row: done, the window incomplete", (t) => {
  const warm = new WindowWarmup(NODES, 5, 10, true);
  t.is(warm.missed(true), "next");
  t.is(warm.missed(false), "next", "another miss breaks the purged run");
  t.is(warm.missed(true), "pause", "a round of misses");
  t.is(warm.missed(true), "next");
  t.is(warm.missed(true), "incomplete");
  t.is(warm.fromTxid, null);
  t.deepEqual(warm.next(), { kind: "done", incomplete: true });
});

import test from "ava";
import { defaults } from "../../src/config/config.js";
import { DEDUPE_ENTRY_OVERHEAD_BYTES, DedupeWindow, type DedupeLimits } from "../../src/dedupe/dedupe_window.js";
import type { RecordedReply, RecordWrite, ReplyValue } from "../../src/segment/record.js";
import { AssertionError } from "../../src/util/assert.js";
import { prng } from "../helpers/prng.js";

const limits = (over: Partial<DedupeLimits> = {}): DedupeLimits => ({
  dedupeWindowRecords: defaults.dedupeWindowRecords,
  dedupeWindowBytesMax: defaults.dedupeWindowBytesMax,
  dedupeClientsMax: defaults.dedupeClientsMax,
  ...over,
});

const ok = (value: ReplyValue): RecordedReply => ({ ok: true, value });
const w = (client: string, seq: number, reply: RecordedReply = ok(seq)): RecordWrite => ({ client, seq, reply, replyDropped: false });

function observeAll(win: DedupeWindow, records: [number, RecordWrite | null][]): void {
  for (const [txid, write] of records) {
    win.observe(txid, write);
    win.invariants();
  }
}

test("dedupe window - a committed write is found with its txid and reply; others are new", (t) => {
  const win = new DedupeWindow(limits());
  observeAll(win, [
    [1, w("a", 1, ok(1))],
    [2, null],
    [3, w("a", 2, { ok: false, message: "WRONGTYPE" })],
    [4, w("b", 1, ok(["x", null, Buffer.from([0])]))],
  ]);
  t.deepEqual(win.lookup("a", 1), { kind: "committed", txid: 1, reply: ok(1), replyDropped: false });
  t.deepEqual(win.lookup("a", 2), { kind: "committed", txid: 3, reply: { ok: false, message: "WRONGTYPE" }, replyDropped: false });
  t.deepEqual(win.lookup("b", 1), { kind: "committed", txid: 4, reply: ok(["x", null, Buffer.from([0])]), replyDropped: false });
  t.deepEqual(win.lookup("a", 3), { kind: "new" });
  t.deepEqual(win.lookup("c", 1), { kind: "new" });
  t.like(win.stats, { lastTxid: 4, writes: 3, clients: 2 });
});

test("dedupe window - a write whose reply was dropped is committed without a reply", (t) => {
  const win = new DedupeWindow(limits());
  win.observe(5, { client: "a", seq: 9, replyDropped: true });
  t.deepEqual(win.lookup("a", 9), { kind: "committed", txid: 5, replyDropped: true });
});

test("dedupe window - eviction by records: a seq at or below an evicted one is expired, a higher one new", (t) => {
  const win = new DedupeWindow(limits({ dedupeWindowRecords: 3 }));
  observeAll(win, [
    [1, w("a", 1)],
    [2, w("a", 3)],
    [3, null],
    [4, null],
  ]);
  // Txid 1 left the window (4 - 3 = 1); txid 2 is still in.
  t.deepEqual(win.lookup("a", 1), { kind: "expired" });
  t.is(win.lookup("a", 3).kind, "committed");
  // Seq 2 never committed, but it is below no evicted seq yet: new (its write may still be on its way).
  t.deepEqual(win.lookup("a", 2), { kind: "new" });
  observeAll(win, [[5, null]]);
  t.deepEqual(win.lookup("a", 3), { kind: "expired" });
  // Now seq 2 is at or below the highest evicted seq: refused rather than risk applying a write twice.
  t.deepEqual(win.lookup("a", 2), { kind: "expired" });
  t.deepEqual(win.lookup("a", 4), { kind: "new" });
  t.like(win.stats, { writes: 0, clients: 1, bytes: 0 });
});

test("dedupe window - eviction by bytes: the oldest writes leave first, and become expired", (t) => {
  const reply = ok("x".repeat(1000));
  const perWrite = DEDUPE_ENTRY_OVERHEAD_BYTES + 1 + 5 + 1000;
  const win = new DedupeWindow(limits({ dedupeWindowBytesMax: perWrite * 2 + 10 }));
  observeAll(win, [
    [1, w("a", 1, reply)],
    [2, w("b", 1, reply)],
  ]);
  t.is(win.stats.bytes, perWrite * 2);
  observeAll(win, [[3, w("c", 1, reply)]]);
  t.deepEqual(win.lookup("a", 1), { kind: "expired" });
  t.is(win.lookup("b", 1).kind, "committed");
  t.is(win.lookup("c", 1).kind, "committed");
  t.is(win.stats.bytes, perWrite * 2);
});

test("dedupe window - one client committing steadily among 50,000 known costs no more per record than many", (t) => {
  // Recency was the Map's order (delete, set again): V8 walks a deleted key's dead entries on each lookup until a
  // rehash, so one busy client among many known ones cost ~20× a record of a client that commits now and then.
  const win = new DedupeWindow(limits());
  let txid = 1;
  const timed = (n: number, client: (i: number) => string): number => {
    const start = performance.now();
    for (let i = 0; i < n; i++) win.observe(txid, w(client(i), txid++));
    return performance.now() - start;
  };
  timed(50_000, (i) => `known:${i}`);
  // The best of three alternating rounds each: a busy machine (the suite's other files) slows some rounds, not all.
  let [busy, spread] = [Infinity, Infinity];
  for (let round = 0; round < 3; round++) {
    busy = Math.min(busy, timed(20_000, () => "busy"));
    spread = Math.min(spread, timed(20_000, (i) => `known:${(i * 7) % 50_000}`));
  }
  t.true(busy < 4 * spread + 20, `one busy client ${busy.toFixed(1)} ms, spread clients ${spread.toFixed(1)} ms for 20,000 records`);
  win.invariants();
});

test("dedupe window - eviction by clients: the least recently committing client is forgotten", (t) => {
  const win = new DedupeWindow(limits({ dedupeClientsMax: 2 }));
  observeAll(win, [
    [1, w("a", 1)],
    [2, w("b", 1)],
    [3, w("a", 2)],
    [4, w("c", 1)],
  ]);
  // b committed least recently (a wrote again at 3): b is forgotten; a and c are kept.
  t.is(win.lookup("a", 1).kind, "committed");
  t.is(win.lookup("a", 2).kind, "committed");
  t.is(win.lookup("c", 1).kind, "committed");
  // The documented limit of the guarantee: a forgotten client's retry is new.
  t.deepEqual(win.lookup("b", 1), { kind: "new" });
  t.like(win.stats, { clients: 2, writes: 3, clientsForgotten: 1 });
});

test("dedupe window - a client's seq stays expired while its state is kept, however many records pass", (t) => {
  const win = new DedupeWindow(limits({ dedupeWindowRecords: 10 }));
  win.observe(1, w("silent", 7));
  for (let txid = 2; txid <= 1000; txid++) win.observe(txid, w(`other${txid % 5}`, txid));
  win.invariants();
  for (const seq of [1, 6, 7]) t.deepEqual(win.lookup("silent", seq), { kind: "expired" }, `seq ${seq}`);
  t.deepEqual(win.lookup("silent", 8), { kind: "new" });
});

test("dedupe window - the same id committed twice keeps the first commit (and counts the duplicate)", (t) => {
  const win = new DedupeWindow(limits());
  observeAll(win, [
    [1, w("a", 1, ok(1))],
    [2, w("a", 1, ok(2))],
  ]);
  t.deepEqual(win.lookup("a", 1), { kind: "committed", txid: 1, reply: ok(1), replyDropped: false });
  t.like(win.stats, { writes: 1, duplicatesObserved: 1 });
});

test("dedupe window - observe asserts increasing txids (the caller's invariant)", (t) => {
  const win = new DedupeWindow(limits());
  win.observe(5, null);
  t.throws(() => win.observe(5, null), { instanceOf: AssertionError });
  t.throws(() => win.observe(4, w("a", 1)), { instanceOf: AssertionError });
  // Gaps are fine: a node may start observing after a snapshot.
  t.notThrows(() => win.observe(100, null));
});

test("dedupe window - rebuilt from the same records, a window answers the same (seeded, every bound tight)", (t) => {
  const next01 = prng(11);
  const rng = { next: next01 };
  const records: [number, RecordWrite | null][] = [];
  const seqs = new Map<string, number>();
  for (let txid = 1; txid <= 5000; txid++) {
    if (rng.next() < 0.1) {
      records.push([txid, null]);
      continue;
    }
    const client = `c${Math.floor(rng.next() * 40)}`;
    const seq = (seqs.get(client) ?? 0) + 1 + Math.floor(rng.next() * 2);
    seqs.set(client, seq);
    const reply = rng.next() < 0.05 ? undefined : ok("v".repeat(Math.floor(rng.next() * 300)));
    records.push([txid, reply === undefined ? { client, seq, replyDropped: true } : w(client, seq, reply)]);
  }
  const bounds = limits({ dedupeWindowRecords: 700, dedupeWindowBytesMax: 60_000, dedupeClientsMax: 38 });
  const first = new DedupeWindow(bounds);
  const second = new DedupeWindow(bounds);
  observeAll(first, records);
  observeAll(second, records);
  t.deepEqual(first.stats, second.stats);
  t.true(first.stats.clientsForgotten > 0 && first.stats.writes < 700, JSON.stringify(first.stats));
  const kinds = new Map<string, number>();
  for (const [client, high] of seqs) {
    for (let seq = 1; seq <= high + 1; seq++) {
      const a = first.lookup(client, seq);
      t.deepEqual(a, second.lookup(client, seq));
      kinds.set(a.kind, (kinds.get(a.kind) ?? 0) + 1);
    }
  }
  // The run exercised every answer.
  t.true((kinds.get("committed") ?? 0) > 0 && (kinds.get("expired") ?? 0) > 0 && (kinds.get("new") ?? 0) > 0, JSON.stringify([...kinds]));
});

test("dedupe window - never answers new for a committed write of a tracked client (seeded)", (t) => {
  const next01 = prng(5);
  const rng = { next: next01 };
  const win = new DedupeWindow(limits({ dedupeWindowRecords: 50, dedupeWindowBytesMax: 20_000, dedupeClientsMax: 1000 }));
  const committed: [string, number][] = [];
  const nextSeq = new Map<string, number>();
  for (let txid = 1; txid <= 3000; txid++) {
    const client = `c${Math.floor(rng.next() * 8)}`;
    // Seqs committed out of order within a client (concurrent writes of one connection).
    const seq = (nextSeq.get(client) ?? 1) + Math.floor(rng.next() * 3);
    nextSeq.set(client, Math.max(nextSeq.get(client) ?? 1, seq + 1));
    if (committed.some(([c, s]) => c === client && s === seq)) continue;
    win.observe(txid, w(client, seq, ok("x".repeat(Math.floor(rng.next() * 200)))));
    committed.push([client, seq]);
    if (txid % 100 === 0) {
      win.invariants();
      for (const [c, s] of committed) t.not(win.lookup(c, s).kind, "new", `${c}#${s} at txid ${txid}`);
    }
  }
});

/**
 * The segment store's logic (SegmentLog), shared by production and the simulator: the primitive calls each DiskOp
 * becomes, and a crash at every point between two of them (HDFS TestQJMWithFaults' sweep, on the simulated disk):
 * whatever the crash keeps or loses, the reopened log is the one before the op or the one after it, and reopening is
 * itself crash-safe.
 */
import test from "ava";
import type { DiskCall, DiskProgram } from "../../src/journal/disk.js";
import type { DiskOp, JournalMeta } from "../../src/journal/journal_core.js";
import type { SegmentLog } from "../../src/journal/segment_store.js";
import type { SegmentState } from "../../src/protocol/messages.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";
import { Prng } from "../../src/sim/prng.js";
import { SimDisk, SimSegmentStore } from "../../src/sim/sim_disk.js";

const DIR = "/test/current";
/** Crash fates drawn per crash point (which unsynced bytes and directory changes survive). */
const CRASH_DRAWS = 4;

function records(epoch: number, firstTxid: number, count: number): Buffer {
  const parts: Buffer[] = [];
  for (let txid = firstTxid; txid < firstTxid + count; txid++) parts.push(encodeRecord(txid, epoch, encodeEffects([[Buffer.from("SET"), Buffer.from(`k${txid}`), Buffer.from(`v${txid}e${epoch}`)]])));
  return Buffer.concat(parts);
}

function append(segmentTxid: number, firstTxid: number, count: number, epoch = 1): DiskOp {
  const txids = Array.from({ length: count }, (_, i) => firstTxid + i);
  return { op: "append", segmentTxid, records: records(epoch, firstTxid, count), txids };
}

const meta = (promisedEpoch: number): JournalMeta => ({ promisedEpoch, writerEpoch: promisedEpoch, accepted: null });

/** Segments 1..10, 11..20, 21..30 finalized, 31..35 in progress. */
const FOUR_SEGMENTS: DiskOp[] = [
  { op: "persistMeta", meta: meta(1) },
  ...[1, 11, 21].flatMap((s): DiskOp[] => [{ op: "startSegment", startTxid: s }, append(s, s, 5), append(s, s + 5, 5), { op: "finalize", startTxid: s, endTxid: s + 9 }]),
  { op: "startSegment", startTxid: 31 },
  append(31, 31, 5),
];

/** 1..10 finalized, a hole, 21..25 in progress. */
const WITH_HOLE: DiskOp[] = [
  { op: "persistMeta", meta: meta(1) },
  { op: "startSegment", startTxid: 1 },
  append(1, 1, 10),
  { op: "finalize", startTxid: 1, endTxid: 10 },
  { op: "startSegment", startTxid: 21 },
  append(21, 21, 5),
];

type Step = (log: SegmentLog) => DiskProgram<unknown>;
const op = (o: DiskOp): Step => (log) => log.apply(o);

function built(ops: readonly DiskOp[]): SimDisk {
  const disk = new SimDisk();
  const store = new SimSegmentStore(DIR, disk);
  store.open();
  for (const o of ops) store.apply(o);
  return disk;
}

interface Summary {
  fault: string | null;
  meta: JournalMeta;
  segments: SegmentState[];
  records: (string | null)[];
}

function summary(disk: SimDisk): Summary {
  const store = new SimSegmentStore(DIR, disk);
  const loaded = store.open();
  const recs: (string | null)[] = [];
  for (let txid = 1; txid <= 40; txid++) {
    const r = store.recordAt(txid);
    recs.push(r === null ? null : Buffer.from(r).toString("hex"));
  }
  return { fault: loaded.fault, meta: loaded.meta, segments: loaded.segments, records: recs };
}

/** Runs the steps' first `limit` calls (all: Infinity); returns how many ran. */
function runCalls(store: SimSegmentStore, steps: readonly Step[], limit: number): number {
  let calls = 0;
  for (const step of steps) {
    const program = step(store.segmentLog);
    let next = program.next();
    while (next.done !== true) {
      if (calls === limit) return calls;
      calls++;
      next = program.next(store.disk.run(next.value));
    }
  }
  return calls;
}

/** A crash after `k` calls of the steps, from `base`; the disk as the crash left it. */
function crashedAt(base: SimDisk, steps: readonly Step[], k: number, draw: number): SimDisk {
  const disk = base.clone();
  const store = new SimSegmentStore(DIR, disk);
  store.open();
  runCalls(store, steps, k);
  disk.crash(new Prng(k * 7919 + draw));
  return disk;
}

/**
 * Every crash point of `steps` over `base`, several fates each: the reopened log is `accept`ed (the one before or the
 * one after, by default), a second open finds it unchanged, and a crash at any point of that reopen changes nothing.
 */
function sweep(t: import("ava").ExecutionContext, base: SimDisk, steps: readonly Step[], accept?: (s: Summary, before: Summary, after: Summary) => boolean): number {
  const before = summary(base.clone());
  const done = base.clone();
  const store = new SimSegmentStore(DIR, done);
  store.open();
  const total = runCalls(store, steps, Infinity);
  const after = summary(done);
  t.not(JSON.stringify(before), JSON.stringify(after), "the op changes the log");
  const ok = accept ?? ((s, b, a) => same(s, b) || same(s, a));
  let checked = 0;
  for (let k = 0; k <= total; k++) {
    for (let draw = 0; draw < CRASH_DRAWS; draw++) {
      const disk = crashedAt(base, steps, k, draw);
      const reopened = summary(disk.clone());
      t.is(reopened.fault, null, `crash after ${k} of ${total} calls (draw ${draw})`);
      t.true(ok(reopened, before, after), `crash after ${k} of ${total} calls (draw ${draw}): ${JSON.stringify(reopened.segments)}`);
      if (k === total) t.deepEqual(reopened, after, "durable once its last call completed");
      t.deepEqual(reopenedTwice(disk.clone()), reopened, `reopen after ${k} calls is stable`);
      checked += crashInsideOpen(t, disk, reopened, `crash after ${k} of ${total} calls (draw ${draw})`);
    }
  }
  return checked;
}

function same(a: Summary, b: Summary): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function reopenedTwice(disk: SimDisk): Summary {
  new SimSegmentStore(DIR, disk).open();
  return summary(disk);
}

/** A crash at each call of the repairing open: the next open finds what an uninterrupted one did. */
function crashInsideOpen(t: import("ava").ExecutionContext, crashed: SimDisk, expected: Summary, what: string): number {
  const count = new SimSegmentStore(DIR, crashed.clone());
  const total = runCalls(count, [(log) => log.open()], Infinity);
  for (let k = 0; k < total; k++) {
    const disk = crashed.clone();
    runCalls(new SimSegmentStore(DIR, disk), [(log) => log.open()], k);
    disk.crash(new Prng(k + 17));
    t.deepEqual(summary(disk), expected, `${what}, then a crash after ${k} of ${total} calls of the reopen`);
  }
  return total;
}

test("segment log - each op's primitive calls, in order, durable before the op counts", (t) => {
  const calls: string[] = [];
  const disk = built(FOUR_SEGMENTS);
  const store = new SimSegmentStore(DIR, disk);
  store.open();
  const recording = { run: (c: DiskCall): unknown => (calls.push(c.call), disk.run(c)) };
  const kinds = (o: DiskOp | Step): string[] => {
    calls.length = 0;
    const program = typeof o === "function" ? o(store.segmentLog) : store.segmentLog.apply(o);
    let next = program.next();
    while (next.done !== true) next = program.next(recording.run(next.value));
    return [...calls];
  };
  t.deepEqual(kinds(append(31, 36, 2)), ["write", "fsync"]);
  t.deepEqual(kinds({ op: "persistMeta", meta: meta(2) }), ["create", "write", "fsync", "rename", "fsyncDir"]);
  t.deepEqual(kinds({ op: "truncate", segmentTxid: 31, toTxid: 36 }), ["truncate", "fsync"]);
  t.deepEqual(kinds({ op: "stageRecovery", segmentTxid: 31, fromTxid: 35, fresh: true, records: records(2, 35, 3) }), ["create", "append"]);
  t.deepEqual(kinds({ op: "installRecovery", segmentTxid: 31, fromTxid: 35, toTxid: 37 }), ["readFile", "read", "create", "write", "fsync", "rename", "fsyncDir", "remove"]);
  t.deepEqual(kinds({ op: "finalize", startTxid: 31, endTxid: 37 }), ["fsync", "rename", "fsyncDir"]);
  t.deepEqual(kinds({ op: "startSegment", startTxid: 38 }), ["create", "fsync", "fsyncDir"]);
  t.deepEqual(kinds((log) => log.prepareMerge([{ startTxid: 11, endTxid: 20 }, { startTxid: 21, endTxid: 30 }], 1 << 20)), ["create", "read", "append", "pause", "read", "append", "pause", "fsync"]);
  t.deepEqual(kinds({ op: "mergeSegments", startTxid: 11, endTxid: 30, parts: [11, 21] }), ["rename", "fsyncDir", "pause", "remove", "pause", "remove", "pause", "fsyncDir"]);
  t.deepEqual(kinds({ op: "purgeSegment", startTxid: 1, endTxid: 10 }), ["remove", "fsyncDir", "pause"]);
  t.deepEqual(kinds({ op: "deleteSegment", startTxid: 38 }), ["remove", "fsyncDir"]);
  t.deepEqual(
    store.segmentLog.manifest(),
    [
      { startTxid: 11, endTxid: 30, inProgress: false },
      { startTxid: 31, endTxid: 37, inProgress: false },
    ],
  );
});

test("segment log - the index changes only once the op's last call completed; a failed append is cut off", (t) => {
  const disk = built(FOUR_SEGMENTS);
  const store = new SimSegmentStore(DIR, disk);
  store.open();
  const sizes = store.sizes();
  const program = store.segmentLog.apply(append(31, 36, 3));
  const write = program.next();
  t.is(write.done, false);
  disk.run(write.value as DiskCall);
  t.deepEqual(store.sizes(), sizes, "written, not yet fsynced: the index has not moved");
  program.next();
  t.false(program.next().done === false, "the op ends after its fsync");
  t.is(store.segmentLog.manifest().at(-1)!.endTxid, 38);
  const length = disk.files.get(store.segmentLog.segments.at(-1)!.name)!.length;
  t.throws(() => store.apply(append(31, 39, 2), { errno: "EIO", on: "fsync" }), { message: /EIO/ });
  t.is(disk.files.get(store.segmentLog.segments.at(-1)!.name)!.length, length, "the failed append's bytes are cut off");
  t.is(store.segmentLog.manifest().at(-1)!.endTxid, 38);
});

test("segment log - a merge given up (a part gone, a corrupt record) leaves no file behind", (t) => {
  const disk = built(FOUR_SEGMENTS);
  const store = new SimSegmentStore(DIR, disk);
  store.open();
  const merges = (): string[] => [...disk.files.keys()].filter((n) => n.startsWith("edits_merge_"));
  t.false(store.run(store.segmentLog.prepareMerge([{ startTxid: 11, endTxid: 20 }, { startTxid: 21, endTxid: 29 }], 300)));
  t.deepEqual(merges(), []);
  const part = store.segmentLog.segments[2];
  disk.files.get(part.name)!.flipBit(part.offsets[3] + 30, 2);
  t.throws(() => store.run(store.segmentLog.prepareMerge([{ startTxid: 11, endTxid: 20 }, { startTxid: 21, endTxid: 30 }], 300)), { name: "SegmentCorruptError" });
  t.deepEqual(merges(), []);
  t.true(store.run(store.segmentLog.prepareMerge([{ startTxid: 1, endTxid: 10 }, { startTxid: 11, endTxid: 20 }], 300)));
  t.deepEqual(merges(), ["edits_merge_1-20.tmp"]);
});

const SWEEPS: { name: string; base: readonly DiskOp[]; steps: Step[]; prefix?: boolean }[] = [
  { name: "append", base: FOUR_SEGMENTS, steps: [op(append(31, 36, 3))], prefix: true },
  { name: "persistMeta", base: FOUR_SEGMENTS, steps: [op({ op: "persistMeta", meta: meta(2) })] },
  { name: "finalize", base: FOUR_SEGMENTS, steps: [op({ op: "finalize", startTxid: 31, endTxid: 35 })] },
  { name: "setAside", base: FOUR_SEGMENTS, steps: [op({ op: "setAside", startTxid: 31 })] },
  { name: "truncate", base: FOUR_SEGMENTS, steps: [op({ op: "truncate", segmentTxid: 31, toTxid: 33 })] },
  {
    name: "stageRecovery + installRecovery",
    base: FOUR_SEGMENTS,
    steps: [op({ op: "stageRecovery", segmentTxid: 31, fromTxid: 34, fresh: true, records: records(2, 34, 2) }), op({ op: "stageRecovery", segmentTxid: 31, fromTxid: 36, fresh: false, records: records(2, 36, 2) }), op({ op: "installRecovery", segmentTxid: 31, fromTxid: 34, toTxid: 37 })],
  },
  { name: "purgeSegment", base: FOUR_SEGMENTS, steps: [op({ op: "purgeSegment", startTxid: 1, endTxid: 10 })] },
  {
    name: "prepareMerge + mergeSegments",
    base: FOUR_SEGMENTS,
    steps: [(log) => log.prepareMerge([{ startTxid: 1, endTxid: 10 }, { startTxid: 11, endTxid: 20 }, { startTxid: 21, endTxid: 30 }], 300), op({ op: "mergeSegments", startTxid: 1, endTxid: 30, parts: [1, 11, 21] })],
  },
  {
    name: "syncAppend + syncFinish",
    base: WITH_HOLE,
    steps: [op({ op: "syncAppend", startTxid: 11, fresh: true, records: records(1, 11, 6) }), op({ op: "syncAppend", startTxid: 11, fresh: false, records: records(1, 17, 4) }), op({ op: "syncFinish", startTxid: 11, endTxid: 20 })],
  },
  { name: "startSegment", base: [...FOUR_SEGMENTS, { op: "finalize", startTxid: 31, endTxid: 35 }], steps: [op({ op: "startSegment", startTxid: 36 })] },
  { name: "deleteSegment", base: [...FOUR_SEGMENTS, { op: "finalize", startTxid: 31, endTxid: 35 }, { op: "startSegment", startTxid: 36 }], steps: [op({ op: "deleteSegment", startTxid: 36 })] },
];

for (const s of SWEEPS) {
  test(`segment log - a crash at every call of ${s.name} reopens to the log before or after it`, (t) => {
    const accept = s.prefix === true ? appendedPrefix : undefined;
    const checked = sweep(t, built(s.base), s.steps, accept);
    t.true(checked > 0);
  });
}

/** An append interrupted: the log before, with a prefix of the appended records (the torn rest cut on open). */
function appendedPrefix(s: Summary, before: Summary, after: Summary): boolean {
  const end = s.segments.at(-1)!.endTxid;
  const shape = JSON.stringify(s.segments.slice(0, -1)) === JSON.stringify(before.segments.slice(0, -1)) && s.segments.at(-1)!.startTxid === before.segments.at(-1)!.startTxid;
  const within = end >= before.segments.at(-1)!.endTxid && end <= after.segments.at(-1)!.endTxid;
  const recordsOk = s.records.every((r, i) => (i + 1 <= end ? r === after.records[i] : r === null));
  return shape && within && recordsOk && JSON.stringify(s.meta) === JSON.stringify(before.meta);
}

test("segment log - what a killed process left in the page cache of the open segment is fsynced when the log is opened (a held batch is acked without a new write)", (t) => {
  const disk = new SimDisk();
  const store = new SimSegmentStore(DIR, disk);
  store.open();
  store.apply({ op: "startSegment", startTxid: 1 });
  store.apply(append(1, 1, 1));
  // Batch 2..3: the write reaches the page cache, then the process dies before its fdatasync.
  const program = store.segmentLog.apply(append(1, 2, 2));
  const write = program.next();
  t.false(write.done);
  disk.run((write as IteratorYieldResult<DiskCall>).value);
  t.true([...disk.files.values()].some((f) => f.dirtyFrom !== Infinity), "the batch is in the page cache only");
  // The restarted node opens the log: it holds 1..3, and all of it is durable before it can ack 2..3 as held.
  const reopened = new SimSegmentStore(DIR, disk).open();
  t.is(reopened.segments.at(-1)?.endTxid, 3);
  t.true([...disk.files.values()].every((f) => f.dirtyFrom === Infinity), "nothing of the open segment is left unsynced");
});

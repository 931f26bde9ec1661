/** The journal node's disk adapter on a real filesystem: what it finds on open, and what it refuses. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { JournalCore, type CompactionLimits, type DiskOp } from "../../src/journal/journal_core.js";
import { finalizedName, inProgressName, SegmentStore } from "../../src/journal/segment_store.js";
import type { JournalRequest, SegmentState } from "../../src/protocol/messages.js";
import { encodeEffects, encodeRecord, scanRecords } from "../../src/segment/record.js";

function records(from: number, count: number): Buffer {
  const parts: Buffer[] = [];
  for (let txid = from; txid < from + count; txid++) parts.push(encodeRecord(txid, 1, encodeEffects([[Buffer.from("SET"), Buffer.from(`k${txid}`), Buffer.from("v")]])));
  return Buffer.concat(parts);
}

function dir(t: import("ava").ExecutionContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-store-"));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  fs.mkdirSync(path.join(d, "current"));
  return d;
}

/** Small: a merge copies the segments in several chunks. */
const MERGE_CHUNK_BYTES = 100;

test("segment store - finalized and in-progress segments load; a torn tail is cut", async (t) => {
  const d = dir(t);
  fs.writeFileSync(path.join(d, "current", finalizedName(1, 5)), records(1, 5));
  const tail = records(6, 3);
  fs.writeFileSync(path.join(d, "current", inProgressName(6)), Buffer.concat([tail, records(9, 1).subarray(0, 10)]));
  const store = new SegmentStore(d);
  const loaded = await store.open();
  t.is(loaded.fault, null);
  t.deepEqual(loaded.segments, [
    { startTxid: 1, endTxid: 5, inProgress: false },
    { startTxid: 6, endTxid: 8, inProgress: true },
  ]);
  t.is(loaded.truncated?.bytes, 10);
  t.is(fs.statSync(path.join(d, "current", inProgressName(6))).size, tail.length);
  const read = await store.read(4, 8, 1 << 20, 100);
  t.is(read.count, 2, "a read stays within one segment");
  await store.close();
});

test("segment store - a whole record with a bad checksum at the tail is rot: cut, and the node comes up restoring (issue #10, class 8)", async (t) => {
  const d = dir(t);
  fs.writeFileSync(path.join(d, "current", "identity.json"), JSON.stringify({ clusterId: "c1", restoring: false }));
  const kept = records(1, 3);
  const rotten = records(4, 1);
  rotten[rotten.length - 1] ^= 0x01; // one bit of the payload: the record is whole, its CRC fails
  fs.writeFileSync(path.join(d, "current", inProgressName(1)), Buffer.concat([kept, rotten]));
  const store = new SegmentStore(d);
  const loaded = await store.open();
  t.is(loaded.fault, null);
  t.deepEqual(loaded.segments, [{ startTxid: 1, endTxid: 3, inProgress: true }]);
  t.like(loaded.truncated, { bytes: rotten.length, rot: true });
  t.deepEqual(loaded.identity, { clusterId: "c1", restoring: true }, "it votes again only once the writer restored it");
  await store.close();
  // Durably: a restart after the cut (the evidence gone) still comes up restoring.
  const again = new SegmentStore(d);
  const reloaded = await again.open();
  t.deepEqual(reloaded.identity, { clusterId: "c1", restoring: true });
  t.is(reloaded.truncated, null);
  await again.close();
  const core = new JournalCore("jn1", reloaded);
  t.like(core.step({ type: "newEpoch", epoch: 5, clusterId: "c1" }).reply, { error: { code: "NOT_RESTORED" } });
});

test("segment store - a torn write at the tail (fewer bytes than its record) is cut and the node keeps voting", async (t) => {
  const d = dir(t);
  fs.writeFileSync(path.join(d, "current", "identity.json"), JSON.stringify({ clusterId: "c1", restoring: false }));
  const torn = records(4, 1);
  fs.writeFileSync(path.join(d, "current", inProgressName(1)), Buffer.concat([records(1, 3), torn.subarray(0, torn.length - 1)]));
  const store = new SegmentStore(d);
  const loaded = await store.open();
  t.like(loaded.truncated, { bytes: torn.length - 1, rot: false });
  t.deepEqual(loaded.identity, { clusterId: "c1", restoring: false });
  await store.close();
});

test("segment store - an unreadable meta.json is a fault naming the file, never a crash", async (t) => {
  const d = dir(t);
  fs.writeFileSync(path.join(d, "current", "meta.json"), "{not json");
  const loaded = await new SegmentStore(d).open();
  t.regex(loaded.fault ?? "", /meta\.json is unreadable/);
});

test("segment store - a finalized segment whose name disagrees with its records is a fault", async (t) => {
  const d = dir(t);
  fs.writeFileSync(path.join(d, "current", finalizedName(1, 9)), records(1, 5));
  const loaded = await new SegmentStore(d).open();
  t.regex(loaded.fault ?? "", /finalized as ending at 9, holds records up to 5/);
});

test("segment store - an interrupted copy of a peer's segment is dropped on open", async (t) => {
  const d = dir(t);
  fs.writeFileSync(path.join(d, "current", "edits_sync_1.tmp"), records(1, 2));
  const loaded = await new SegmentStore(d).open();
  t.is(loaded.fault, null);
  t.false(fs.existsSync(path.join(d, "current", "edits_sync_1.tmp")));
});

// ---- compaction on disk: purge and merge through the core's ops, crash-safe merges ----

/** A store opened on `d` and the core loaded from it, as a journal node does. */
async function openNode(d: string): Promise<{ store: SegmentStore; core: JournalCore }> {
  const store = new SegmentStore(d);
  const loaded = await store.open();
  if (loaded.fault !== null) throw new Error(`store fault: ${loaded.fault}`);
  return { store, core: new JournalCore("jn1", { meta: loaded.meta, segments: loaded.segments, fault: loaded.fault }) };
}

async function applyAll(store: SegmentStore, ops: readonly DiskOp[]): Promise<void> {
  for (const op of ops) await store.apply(op);
}

async function step(n: { store: SegmentStore; core: JournalCore }, req: JournalRequest): Promise<void> {
  // These tests stand in for a node that holds the snapshot it is told is durable.
  const r = n.core.step(req, req.type === "snapshotDurable" ? { snapshots: [req.txid] } : {});
  if ("error" in r.reply) throw new Error(`${req.type} refused: ${r.reply.error.code} ${r.reply.error.message}`);
  await applyAll(n.store, r.ops);
}

/** Writes `segments` segments of `perSegment` records through the core (epoch 1, rolled), the last left in progress. */
async function writeLog(n: { store: SegmentStore; core: JournalCore }, segments: number, perSegment: number): Promise<void> {
  await step(n, { type: "newEpoch", epoch: 1 });
  for (let i = 0; i < segments; i++) {
    const start = i * perSegment + 1;
    await step(n, { type: "startSegment", epoch: 1, txid: start });
    await step(n, { type: "journal", epoch: 1, segmentTxid: start, firstTxid: start, count: perSegment, records: records(start, perSegment), committedTxid: start + perSegment - 1 });
  }
}

function manifest(core: JournalCore): SegmentState[] {
  const r = core.step({ type: "getManifest" });
  if (!("manifest" in r.reply)) throw new Error("no manifest");
  return r.reply.manifest;
}

/** Every record from `from` to `to` read through the store in small bounded reads; throws on a hole. */
async function readAll(store: SegmentStore, from: number, to: number, bytesMax = 1 << 20, recordsMax = 7): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let next = from; next <= to; ) {
    const { records: got, count } = await store.read(next, to, bytesMax, recordsMax);
    if (count === 0) throw new Error(`nothing read at ${next}`);
    parts.push(got);
    next += count;
  }
  return Buffer.concat(parts);
}

function txidsOf(data: Buffer): number[] {
  const scan = scanRecords(data);
  if (scan.stop !== undefined) throw new Error(`bad record at ${scan.stop.offset}: ${scan.stop.reason}`);
  return scan.records.map((r) => r.txid);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

const compaction: CompactionLimits = { maxSegments: 2, editlogMaxBytes: 1 << 30, mergedSegmentMaxBytes: 1 << 20, purgeMarginRecords: 0, snapshotsRetained: 2 };

function segmentFiles(d: string): string[] {
  return fs.readdirSync(path.join(d, "current")).filter((n) => n.startsWith("edits_")).sort();
}

test("segment store - purge and merge through apply; reads span the merged segment; reopen finds the same log", async (t) => {
  const d = dir(t);
  const n = await openNode(d);
  await writeLog(n, 6, 10); // 1..10 … 41..50 finalized, 51..60 in progress
  t.deepEqual(await readAll(n.store, 1, 60), records(1, 60));
  await step(n, { type: "snapshotDurable", txid: 20, clusterId: "c1" });
  const plan = n.core.compactionPlan(n.store.sizes(), [], compaction);
  t.deepEqual(plan.purge.map((s) => s.startTxid), [1, 11]);
  t.deepEqual(plan.merges.map((m) => [m.startTxid, m.endTxid]), [[21, 50]]);

  await applyAll(n.store, n.core.purge(plan.purge, compaction));
  t.true(await n.store.prepareMerge(plan.merges[0].parts, MERGE_CHUNK_BYTES));
  t.true(fs.existsSync(path.join(d, "current", "edits_merge_21-50.tmp")), "the merged file is written aside first");
  const ops = n.core.merge(plan.merges[0].parts);
  if (ops === null) return t.fail("merge refused");
  await applyAll(n.store, ops);
  t.deepEqual(segmentFiles(d), [finalizedName(21, 50), inProgressName(51)]);
  t.deepEqual(manifest(n.core), [
    { startTxid: 21, endTxid: 50, inProgress: false },
    { startTxid: 51, endTxid: 60, inProgress: true },
  ]);
  t.deepEqual(await readAll(n.store, 21, 60), records(21, 40), "the same bytes, in bounded reads across the merged file");
  t.deepEqual(txidsOf(await readAll(n.store, 33, 47, 1 << 20, 3)), range(33, 47), "from inside the merged segment");
  const whole = await n.store.read(21, 60, 1 << 20, 1000);
  t.is(whole.count, 30, "one read stays within the merged segment");
  // The writer goes on appending after the compaction.
  await step(n, { type: "journal", epoch: 1, segmentTxid: 51, firstTxid: 61, count: 3, records: records(61, 3), committedTxid: 63 });
  await n.store.close();

  const again = await openNode(d);
  t.deepEqual(manifest(again.core), [
    { startTxid: 21, endTxid: 50, inProgress: false },
    { startTxid: 51, endTxid: 63, inProgress: true },
  ]);
  t.is(again.core.durableSnapshotTxid, 20, "the durable snapshot survives in the meta");
  t.is(again.store.mergeLeftovers, 0);
  t.deepEqual(txidsOf(await readAll(again.store, 21, 63)), range(21, 63));
  t.deepEqual(await readAll(again.store, 21, 63), records(21, 43));
  await again.store.close();
});

test("segment store - sizes() gives each segment's bytes on disk, through appends, purge and merge", async (t) => {
  const d = dir(t);
  const n = await openNode(d);
  await writeLog(n, 4, 5);
  const onDisk = (): Map<number, number> =>
    new Map(segmentFiles(d).map((f) => [Number(/^edits_(?:inprogress_)?0*(\d+)/.exec(f)![1]), fs.statSync(path.join(d, "current", f)).size]));
  t.deepEqual(n.store.sizes(), onDisk());
  t.is(n.store.sizes().get(1), records(1, 5).length);
  await step(n, { type: "journal", epoch: 1, segmentTxid: 16, firstTxid: 21, count: 2, records: records(21, 2), committedTxid: 22 });
  t.is(n.store.sizes().get(16), records(16, 7).length, "the in-progress segment grows with its appends");
  const mergeOps = n.core.merge([
    { startTxid: 6, endTxid: 10, inProgress: false },
    { startTxid: 11, endTxid: 15, inProgress: false },
  ]);
  if (mergeOps === null) return t.fail("merge refused");
  t.true(await n.store.prepareMerge([{ startTxid: 6, endTxid: 10 }, { startTxid: 11, endTxid: 15 }], MERGE_CHUNK_BYTES));
  await applyAll(n.store, mergeOps);
  t.is(n.store.sizes().get(6), records(6, 10).length);
  t.false(n.store.sizes().has(11));
  await step(n, { type: "snapshotDurable", txid: 5, clusterId: "c1" });
  await applyAll(n.store, n.core.purge([{ startTxid: 1, endTxid: 5, inProgress: false }], compaction));
  t.deepEqual([...n.store.sizes().keys()], [6, 16]);
  t.deepEqual(n.store.sizes(), onDisk());
  await n.store.close();
});

/** A log of six 10-record segments on disk (the last in progress) and its bytes. */
async function sixSegments(d: string): Promise<Buffer> {
  const n = await openNode(d);
  await writeLog(n, 6, 10);
  const all = await readAll(n.store, 1, 60);
  await n.store.close();
  return all;
}

const parts = [
  { startTxid: 11, endTxid: 20 },
  { startTxid: 21, endTxid: 30 },
  { startTxid: 31, endTxid: 40 },
];

test("segment store - a merge interrupted after writing its file aside reopens to the log as it was", async (t) => {
  const d = dir(t);
  const all = await sixSegments(d);
  const n = await openNode(d);
  t.true(await n.store.prepareMerge(parts, MERGE_CHUNK_BYTES));
  await n.store.close(); // the crash: the core never switched to the merged segment
  // And one that died while still writing its file aside.
  fs.writeFileSync(path.join(d, "current", "edits_merge_41-60.tmp"), records(41, 3).subarray(0, 50));
  const again = await openNode(d);
  t.deepEqual(segmentFiles(d), [finalizedName(1, 10), finalizedName(11, 20), finalizedName(21, 30), finalizedName(31, 40), finalizedName(41, 50), inProgressName(51)]);
  t.is(again.store.mergeLeftovers, 0);
  t.deepEqual(await readAll(again.store, 1, 60), all);
  await again.store.close();
});

test("segment store - a merge interrupted after its rename, inputs partly deleted, reopens to a valid contiguous log", async (t) => {
  for (const inputsLeft of [3, 2, 1]) {
    const d = dir(t);
    const all = await sixSegments(d);
    const n = await openNode(d);
    t.true(await n.store.prepareMerge(parts, MERGE_CHUNK_BYTES));
    await n.store.close();
    // mergeSegments renamed the merged file into the log, then died after deleting some of its inputs.
    const cur = path.join(d, "current");
    fs.renameSync(path.join(cur, "edits_merge_11-40.tmp"), path.join(cur, finalizedName(11, 40)));
    for (const p of parts.slice(0, parts.length - inputsLeft)) fs.rmSync(path.join(cur, finalizedName(p.startTxid, p.endTxid)));

    const again = await openNode(d);
    t.is(again.store.mergeLeftovers, inputsLeft, `${inputsLeft} inputs left`);
    t.deepEqual(segmentFiles(d), [finalizedName(1, 10), finalizedName(11, 40), finalizedName(41, 50), inProgressName(51)], `${inputsLeft} inputs left`);
    t.deepEqual(
      manifest(again.core).map((s) => [s.startTxid, s.endTxid, s.inProgress]),
      [
        [1, 10, false],
        [11, 40, false],
        [41, 50, false],
        [51, 60, true],
      ],
    );
    t.deepEqual(await readAll(again.store, 1, 60), all, `${inputsLeft} inputs left`);
    await again.store.close();
  }
});

test("segment store - prepareMerge of a part that went away is false, and its file can be discarded", async (t) => {
  const d = dir(t);
  await sixSegments(d);
  const n = await openNode(d);
  t.false(await n.store.prepareMerge([{ startTxid: 11, endTxid: 20 }, { startTxid: 21, endTxid: 29 }], MERGE_CHUNK_BYTES), "21..29 is not a segment here");
  await n.store.discardMerge(11, 29);
  t.false(fs.readdirSync(path.join(d, "current")).some((f) => f.endsWith(".tmp")));
  await n.store.close();
});

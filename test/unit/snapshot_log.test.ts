/**
 * A journal node's snapshot files (SnapshotLog, the logic SnapshotStore runs over node:fs) on the simulated disk: a
 * crash at every call of an upload or a delete, several fates each, reopens to the snapshots before or after it —
 * never a descriptor naming a partial file — and a crash inside that reopen changes nothing.
 */
import { createHash } from "node:crypto";
import test, { type ExecutionContext } from "ava";
import { runSync, type DiskProgram } from "../../src/journal/disk.js";
import type { SnapshotInfo } from "../../src/protocol/messages.js";
import { Prng } from "../../src/sim/prng.js";
import { SimDisk } from "../../src/sim/sim_disk.js";
import { SnapshotLog, type SnapshotLimits } from "../../src/snapshot/snapshot_store.js";

const limits: SnapshotLimits = { snapshotUploadsMax: 2, snapshotUploadIdleMs: 1000, snapshotChunkBytes: 64, snapshotBytesMax: 4096 };
const CRASH_DRAWS = 4;

function rdb(bytes: number, seed: number): Buffer {
  const prng = new Prng(seed);
  return Buffer.from(Array.from({ length: bytes }, () => prng.int(0, 255)));
}

function infoOf(txid: number, data: Buffer): SnapshotInfo {
  return { txid, bytes: data.length, sha256: createHash("sha256").update(data).digest("hex") };
}

type Step = (log: SnapshotLog) => DiskProgram<unknown>;

function uploadSteps(txid: number, data: Buffer): Step[] {
  const steps: Step[] = [(log) => log.begin(infoOf(txid, data), 0)];
  for (let at = 0; at < data.length; at += limits.snapshotChunkBytes) steps.push((log) => log.chunk(txid, at, data.subarray(at, at + limits.snapshotChunkBytes), 0));
  steps.push((log) => log.end(txid));
  return steps;
}

/** Runs the steps' first `limit` calls over a freshly opened log; returns how many ran. */
function runCalls(disk: SimDisk, steps: readonly Step[], limit: number): number {
  const log = new SnapshotLog(limits);
  runSync(log.open(), disk);
  let calls = 0;
  for (const step of steps) {
    const program = step(log);
    let next = program.next();
    while (next.done !== true) {
      if (calls === limit) return calls;
      calls++;
      next = program.next(disk.run(next.value));
    }
  }
  return calls;
}

/** What a reopened store holds: its snapshots with their bytes, and every file name left. */
function summary(disk: SimDisk): string {
  const log = new SnapshotLog(limits);
  runSync(log.open(), disk);
  const held = log.list();
  const readBack = held.map((h) => {
    const parts: Buffer[] = [];
    for (let at = 0; at < h.bytes; ) {
      const got = runSync(log.read(h.txid, at, limits.snapshotChunkBytes), disk);
      parts.push(Buffer.from(got));
      at += got.length;
    }
    return createHash("sha256").update(Buffer.concat(parts)).digest("hex") === h.sha256;
  });
  return JSON.stringify({ held: held.map(({ txid, bytes }) => ({ txid, bytes })), intact: readBack, files: [...disk.files.keys()].sort() });
}

function sweep(t: ExecutionContext, base: SimDisk, steps: readonly Step[]): void {
  const before = summary(base.clone());
  const done = base.clone();
  const total = runCalls(done, steps, Infinity);
  const after = summary(done);
  t.not(before, after);
  for (let k = 0; k <= total; k++) {
    for (let draw = 0; draw < CRASH_DRAWS; draw++) {
      const disk = base.clone();
      runCalls(disk, steps, k);
      disk.crash(new Prng(k * 31 + draw));
      const reopened = summary(disk.clone());
      t.true(reopened === before || reopened === after, `crash after ${k} of ${total} calls (draw ${draw}): ${reopened}`);
      if (k === total) t.is(reopened, after, "durable once its last call completed");
      crashInsideOpen(t, disk, reopened, `crash after ${k} of ${total} calls (draw ${draw})`);
    }
  }
}

function crashInsideOpen(t: ExecutionContext, crashed: SimDisk, expected: string, what: string): void {
  const total = countOpen(crashed.clone());
  for (let k = 0; k < total; k++) {
    const disk = crashed.clone();
    const program = new SnapshotLog(limits).open();
    let next = program.next();
    for (let i = 0; i < k && next.done !== true; i++) next = program.next(disk.run(next.value));
    disk.crash(new Prng(k + 5));
    t.is(summary(disk), expected, `${what}, then a crash after ${k} calls of the reopen`);
  }
}

function countOpen(disk: SimDisk): number {
  const before = disk.calls;
  runSync(new SnapshotLog(limits).open(), disk);
  return disk.calls - before;
}

function withSnapshot(): SimDisk {
  const disk = new SimDisk();
  runCalls(disk, uploadSteps(10, rdb(300, 1)), Infinity);
  return disk;
}

test("snapshot log - a crash at every call of an upload reopens to the snapshots before or after it", (t) => {
  sweep(t, withSnapshot(), uploadSteps(20, rdb(200, 2)));
});

test("snapshot log - a crash at every call of a delete reopens to the snapshots before or after it", (t) => {
  sweep(t, withSnapshot(), [(log) => log.delete(10)]);
});

test("snapshot log - an upload given up (idle, corrupt) leaves no file; a stored one reads back whole", (t) => {
  const disk = withSnapshot();
  const log = new SnapshotLog(limits);
  runSync(log.open(), disk);
  const data = rdb(100, 3);
  runSync(log.begin({ ...infoOf(30, data), sha256: "0".repeat(64) }, 0), disk);
  runSync(log.chunk(30, 0, data.subarray(0, 64), 0), disk);
  runSync(log.chunk(30, 64, data.subarray(64), 0), disk);
  t.throws(() => runSync(log.end(30), disk), { message: /SHA-256/ });
  runSync(log.begin(infoOf(40, data), 0), disk);
  runSync(log.expireIdle(5000), disk);
  t.deepEqual([...disk.files.keys()].filter((n) => n.endsWith(".tmp")), []);
  t.deepEqual(log.list().map((s) => s.txid), [10]);
});

test("snapshot log - a newer snapshot's upload supersedes the oldest chunk-less one when the slots are full (issue #13 P6)", (t) => {
  const disk = withSnapshot();
  const log = new SnapshotLog(limits);
  runSync(log.open(), disk);
  const data = rdb(100, 4);
  runSync(log.begin(infoOf(30, data), 0), disk);
  runSync(log.chunk(30, 0, data.subarray(0, 64), 0), disk);
  runSync(log.begin(infoOf(40, data), 0), disk);
  t.throws(() => runSync(log.begin(infoOf(20, data), 0), disk), { message: /uploads already run/ }, "an older one waits");
  runSync(log.begin(infoOf(50, data), 0), disk);
  t.throws(() => runSync(log.chunk(40, 0, data.subarray(0, 64), 0), disk), { message: /no upload of snapshot 40/ }, "40, begun and silent, gave way");
  runSync(log.chunk(50, 0, data.subarray(0, 64), 0), disk);
  t.throws(() => runSync(log.begin(infoOf(60, data), 0), disk), { message: /uploads already run/ }, "30 and 50 under way: neither gives way");
  runSync(log.chunk(30, 64, data.subarray(64), 0), disk);
  runSync(log.end(30), disk);
  runSync(log.chunk(50, 64, data.subarray(64), 0), disk);
  runSync(log.end(50), disk);
  t.deepEqual([...disk.files.keys()].filter((n) => n.endsWith(".tmp")), [], "40's file went with it");
  t.deepEqual(log.list().map((s) => s.txid), [10, 30, 50]);
});

test("snapshot log - another replica's copy of the same snapshot under way keeps its upload; the second waits and then finds it held (issue #13 P6)", (t) => {
  // Replicas fed the same batch fan-out snapshot at the same txid at the same moment. The second begin restarted the
  // upload for itself, and the first's chunks (txid and offset alone) went into its file: both failed, on every node.
  const disk = withSnapshot();
  const log = new SnapshotLog(limits);
  runSync(log.open(), disk);
  const mine = rdb(100, 7);
  const theirs = rdb(100, 8);
  runSync(log.begin(infoOf(40, mine), 0), disk);
  t.throws(() => runSync(log.begin(infoOf(40, theirs), 0), disk), { message: /another copy of snapshot 40 is being uploaded here/ }, "chunk-less, it is still on its way");
  runSync(log.chunk(40, 0, mine.subarray(0, 64), 0), disk);
  t.throws(() => runSync(log.begin(infoOf(40, theirs), 0), disk), { message: /another copy of snapshot 40/ }, "under way");
  runSync(log.chunk(40, 64, mine.subarray(64), 0), disk);
  runSync(log.end(40), disk);
  t.deepEqual(runSync(log.begin(infoOf(40, theirs), 0), disk), { stored: true }, "held: the other copy is the same data set");
  t.deepEqual(log.list().map((s) => s.txid), [10, 40]);
  t.is(log.list()[1].sha256, infoOf(40, mine).sha256);
  // The same copy begun again (its uploader's retry) restarts it; a silent one is dropped and another copy may begin.
  runSync(log.begin(infoOf(50, mine), 0), disk);
  runSync(log.chunk(50, 0, mine.subarray(0, 64), 0), disk);
  t.deepEqual(runSync(log.begin(infoOf(50, mine), 0), disk), { stored: false });
  t.throws(() => runSync(log.chunk(50, 64, mine.subarray(64), 0), disk), { message: /expected 0/ });
  t.deepEqual(runSync(log.begin(infoOf(50, theirs), limits.snapshotUploadIdleMs + 1), disk), { stored: false }, "the silent copy expired");
  runSync(log.chunk(50, 0, theirs.subarray(0, 64), limits.snapshotUploadIdleMs + 1), disk);
  runSync(log.chunk(50, 64, theirs.subarray(64), limits.snapshotUploadIdleMs + 1), disk);
  runSync(log.end(50), disk);
  t.deepEqual(log.list().map((s) => s.txid), [10, 40, 50]);
});

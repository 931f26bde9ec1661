/** The journal node's disk adapter on a real filesystem: what it finds on open, and what it refuses. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { finalizedName, inProgressName, SegmentStore } from "../../src/journal/segment_store.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";

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

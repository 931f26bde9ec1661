/** A journal node's snapshot files on a real filesystem: chunked uploads checked by size and SHA-256, reads, cleanup. */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { QjmError } from "../../src/protocol/errors.js";
import type { SnapshotInfo } from "../../src/protocol/messages.js";
import { snapshotFileName, SnapshotStore, type SnapshotLimits } from "../../src/snapshot/snapshot_store.js";
import { prng } from "../helpers/prng.js";

const limits: SnapshotLimits = { snapshotUploadsMax: 1, snapshotUploadIdleMs: 1000, snapshotChunkBytes: 64, snapshotBytesMax: 4096 };

function root(t: ExecutionContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-snapshots-"));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

async function opened(t: ExecutionContext, d: string, l: SnapshotLimits = limits): Promise<SnapshotStore> {
  const store = new SnapshotStore(d, l);
  await store.open();
  t.teardown(() => store.close());
  return store;
}

/** Seeded bytes standing in for an RDB. */
function rdb(bytes: number, seed: number): Buffer {
  const next = prng(seed);
  return Buffer.from(Array.from({ length: bytes }, () => Math.floor(next() * 256)));
}

function infoOf(txid: number, data: Buffer): SnapshotInfo {
  return { txid, bytes: data.length, sha256: createHash("sha256").update(data).digest("hex") };
}

/** Sends `data` in chunks of the store's chunk size from `from` on. */
async function sendChunks(store: SnapshotStore, txid: number, data: Buffer, nowMs = 0, from = 0): Promise<void> {
  for (let at = from; at < data.length; at += limits.snapshotChunkBytes) {
    const r = await store.chunk(txid, at, data.subarray(at, at + limits.snapshotChunkBytes), nowMs);
    if (r.stored) throw new Error("a chunk never completes a snapshot: only end does");
  }
}

async function upload(store: SnapshotStore, txid: number, data: Buffer, nowMs = 0): Promise<void> {
  await store.begin(infoOf(txid, data), nowMs);
  await sendChunks(store, txid, data, nowMs);
  const r = await store.end(txid);
  if (!r.stored) throw new Error(`snapshot ${txid} not stored`);
}

async function readBack(store: SnapshotStore, txid: number, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; ; ) {
    const got = await store.read(txid, at, length);
    if (got.length === 0) return Buffer.concat(parts);
    parts.push(Buffer.from(got));
    at += got.length;
  }
}

async function refusedWith(t: ExecutionContext, p: Promise<unknown>, code: string, what: string): Promise<void> {
  const err = await t.throwsAsync(p, { instanceOf: QjmError }, what);
  t.is(String(err?.code), code, what);
}

function files(d: string): string[] {
  return fs.readdirSync(path.join(d, "snapshots")).sort();
}

test("snapshot store - an upload in chunks is stored, listed and read back byte for byte", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const data = rdb(1000, 1); // 16 chunks, the last a short one
  t.deepEqual(await store.begin(infoOf(500, data), 0), { stored: false });
  await sendChunks(store, 500, data);
  t.deepEqual(store.list(), [], "listed only once complete");
  t.deepEqual(await store.end(500), { stored: true });
  t.deepEqual(store.list(), [infoOf(500, data)]);
  t.deepEqual(await readBack(store, 500, 100), data, "reads are capped at the chunk size and cover the whole file");
  t.is((await store.read(500, 10, 1 << 20)).length, limits.snapshotChunkBytes);
  t.deepEqual(Buffer.from(await store.read(500, 990, 1 << 20)), data.subarray(990));
  t.is((await store.read(500, 1000, 10)).length, 0, "reading at the end gives nothing");
  await refusedWith(t, store.read(500, 1001, 10), "BAD_REQUEST", "past the end");
  await refusedWith(t, store.read(400, 0, 10), "NOT_FOUND", "a snapshot not held");
  t.deepEqual(await store.begin(infoOf(500, data), 0), { stored: true }, "an upload of a held snapshot is done already");
  t.deepEqual(files(d), [snapshotFileName(500).replace(".rdb", ".json"), snapshotFileName(500)]);
  // Two snapshots listed oldest first.
  await upload(store, 300, rdb(70, 2));
  t.deepEqual(
    store.list().map((s) => s.txid),
    [300, 500],
  );
});

test("snapshot store - an upload announcing more than snapshotBytesMax is refused before anything is written (issue #10, class 3)", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const data = rdb(200, 3);
  await refusedWith(t, store.begin({ ...infoOf(7, data), bytes: limits.snapshotBytesMax + 1 }, 0), "BAD_REQUEST", "over the bound");
  await refusedWith(t, store.begin({ ...infoOf(8, data), bytes: 2 ** 53 - 1 }, 0), "BAD_REQUEST", "a forged size");
  t.deepEqual(await store.begin(infoOf(7, data), 0), { stored: false });
});

test("snapshot store - a chunk at another offset than expected is OUT_OF_SYNC; the upload goes on from the right one", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const data = rdb(200, 3);
  await store.begin(infoOf(7, data), 0);
  await store.chunk(7, 0, data.subarray(0, 64), 0);
  await refusedWith(t, store.chunk(7, 0, data.subarray(0, 64), 0), "OUT_OF_SYNC", "a repeated chunk");
  await refusedWith(t, store.chunk(7, 128, data.subarray(128, 192), 0), "OUT_OF_SYNC", "a skipped chunk");
  await refusedWith(t, store.chunk(7, 64, data.subarray(64, 64 + 65), 0), "BAD_REQUEST", "a chunk over snapshotChunkBytes");
  await refusedWith(t, store.chunk(8, 0, data.subarray(0, 64), 0), "OUT_OF_SYNC", "no upload of that snapshot");
  await sendChunks(store, 7, data, 0, 64);
  t.deepEqual(await store.end(7), { stored: true });
  t.deepEqual(await readBack(store, 7, 64), data);
});

test("snapshot store - a bad SHA-256, a short upload or a chunk past the size is SNAPSHOT_CORRUPT and leaves no file", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const data = rdb(300, 4);

  const wrongHash = { ...infoOf(10, data), sha256: createHash("sha256").update("something else").digest("hex") };
  await store.begin(wrongHash, 0);
  await sendChunks(store, 10, data);
  await refusedWith(t, store.end(10), "SNAPSHOT_CORRUPT", "bad SHA-256");

  const flipped = Buffer.from(data);
  flipped[100] ^= 0x01;
  await store.begin(infoOf(11, data), 0);
  await sendChunks(store, 11, flipped);
  await refusedWith(t, store.end(11), "SNAPSHOT_CORRUPT", "a flipped byte on the way");

  await store.begin(infoOf(12, data), 0);
  await sendChunks(store, 12, data.subarray(0, 256));
  await refusedWith(t, store.end(12), "SNAPSHOT_CORRUPT", "short upload");

  await store.begin(infoOf(13, data.subarray(0, 100)), 0);
  await store.chunk(13, 0, data.subarray(0, 64), 0);
  await refusedWith(t, store.chunk(13, 64, data.subarray(64, 128), 0), "SNAPSHOT_CORRUPT", "past the announced size");

  t.deepEqual(store.list(), []);
  t.deepEqual(files(d), [], "no temporary, data or descriptor file left");
  await refusedWith(t, store.end(10), "OUT_OF_SYNC", "a refused upload is over");
  await refusedWith(t, store.read(10, 0, 10), "NOT_FOUND", "and never readable");
  // The slot is free again.
  await upload(store, 14, data);
  t.deepEqual(store.list(), [infoOf(14, data)]);
});

test("snapshot store - a second concurrent upload over snapshotUploadsMax is OVERLOADED (while the first is under way)", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const a = rdb(100, 5);
  const b = rdb(100, 6);
  await store.begin(infoOf(20, a), 0);
  await store.chunk(20, 0, a.subarray(0, 64), 0);
  await refusedWith(t, store.begin(infoOf(30, b), 10), "OVERLOADED", "one upload at a time");
  t.false(files(d).includes(snapshotFileName(30) + ".tmp"), "the refused upload opened no file");
  // The same snapshot begun again restarts its own upload: no second slot taken.
  await store.begin(infoOf(20, a), 20);
  await refusedWith(t, store.chunk(20, 64, a.subarray(64), 20), "OUT_OF_SYNC", "the restarted upload expects offset 0");
  await sendChunks(store, 20, a, 20);
  await store.end(20);
  await store.begin(infoOf(30, b), 30);
  await sendChunks(store, 30, b, 30);
  await store.end(30);
  t.deepEqual(
    store.list().map((s) => s.txid),
    [20, 30],
  );
  // With room for two, two run side by side.
  const wide = await opened(t, root(t), { ...limits, snapshotUploadsMax: 2 });
  await wide.begin(infoOf(40, a), 0);
  await wide.begin(infoOf(50, b), 0);
  await wide.chunk(40, 0, a.subarray(0, 64), 0);
  await wide.chunk(50, 0, b.subarray(0, 64), 0);
  await refusedWith(t, wide.begin(infoOf(60, a), 0), "OVERLOADED", "a third of two, both under way");
  await wide.chunk(50, 64, b.subarray(64), 0);
  await wide.chunk(40, 64, a.subarray(64), 0);
  await wide.end(40);
  await wide.end(50);
  t.is(wide.list().length, 2);
});

test("snapshot store - a newer snapshot's begin supersedes an older one begun and silent (a node back from SIGSTOP, issue #13 P6)", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const a = rdb(100, 9);
  const b = rdb(100, 10);
  await store.begin(infoOf(20, a), 0);
  await refusedWith(t, store.begin(infoOf(10, b), 0), "OVERLOADED", "an older one waits");
  await store.begin(infoOf(30, b), 0);
  t.false(files(d).includes(snapshotFileName(20) + ".tmp"), "20's file went");
  await refusedWith(t, store.chunk(20, 0, a.subarray(0, 64), 0), "OUT_OF_SYNC", "20 gave way");
  await sendChunks(store, 30, b);
  await store.end(30);
  t.deepEqual(store.list(), [infoOf(30, b)]);
});

test("snapshot store - an idle upload expires: its slot frees and its file goes", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const a = rdb(100, 7);
  const b = rdb(100, 8);
  await store.begin(infoOf(20, a), 0);
  await store.chunk(20, 0, a.subarray(0, 64), 500);
  await store.expireIdle(1500);
  t.true(files(d).includes(snapshotFileName(20) + ".tmp"), "idle exactly the limit since its last chunk: still running");
  await refusedWith(t, store.begin(infoOf(30, b), 1500), "OVERLOADED", "still running");
  // Silent past the idle limit: the next begin finds the slot free.
  await store.begin(infoOf(30, b), 1501);
  t.false(files(d).includes(snapshotFileName(20) + ".tmp"));
  await refusedWith(t, store.chunk(20, 64, a.subarray(64), 1501), "OUT_OF_SYNC", "the expired upload is gone");
  await store.expireIdle(3000);
  t.deepEqual(files(d), [], "expireIdle alone drops it too");
  await refusedWith(t, store.end(30), "OUT_OF_SYNC", "expired");
});

test("snapshot store - reopening keeps complete snapshots and drops temporary and descriptor-less files", async (t) => {
  const d = root(t);
  const first = new SnapshotStore(d, limits);
  await first.open();
  const kept = rdb(150, 9);
  await upload(first, 100, kept);
  await first.close();
  const dir = path.join(d, "snapshots");
  const leftovers = [
    [snapshotFileName(200) + ".tmp", rdb(50, 10)], // an upload cut off
    [snapshotFileName(300), rdb(50, 11)], // renamed in, died before its descriptor
    [snapshotFileName(300).replace(".rdb", ".json.tmp"), "{"], // and its descriptor half written
    [snapshotFileName(400).replace(".rdb", ".json"), JSON.stringify(infoOf(400, rdb(60, 12)))], // a descriptor without its file
    [snapshotFileName(500), rdb(40, 13)], // a file shorter than its descriptor says
    [snapshotFileName(500).replace(".rdb", ".json"), JSON.stringify(infoOf(500, rdb(60, 13)))],
    [snapshotFileName(600), rdb(40, 14)], // an unreadable descriptor
    [snapshotFileName(600).replace(".rdb", ".json"), "{not json"],
  ] as const;
  for (const [name, content] of leftovers) fs.writeFileSync(path.join(dir, name), content);

  const store = await opened(t, d);
  t.deepEqual(store.list(), [infoOf(100, kept)]);
  t.deepEqual(files(d), [snapshotFileName(100).replace(".rdb", ".json"), snapshotFileName(100)]);
  t.deepEqual(await readBack(store, 100, 64), kept);
});

test("snapshot store - delete removes a held snapshot's files; deleting one not held is a no-op", async (t) => {
  const d = root(t);
  const store = await opened(t, d);
  const a = rdb(80, 15);
  const b = rdb(90, 16);
  await upload(store, 10, a);
  await upload(store, 20, b);
  await store.delete(10);
  t.deepEqual(store.list(), [infoOf(20, b)]);
  t.deepEqual(files(d), [snapshotFileName(20).replace(".rdb", ".json"), snapshotFileName(20)]);
  await refusedWith(t, store.read(10, 0, 10), "NOT_FOUND", "deleted");
  await store.delete(10);
  await store.delete(999);
  t.deepEqual(store.list(), [infoOf(20, b)]);
  // Gone for good: a reopen does not bring it back.
  await store.close();
  const again = await opened(t, d);
  t.deepEqual(again.list(), [infoOf(20, b)]);
});

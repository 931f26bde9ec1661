/**
 * The snapshot viewer's pure core on hand-built RDB bytes (the opcodes of Redis 7.0's rdb.c): header, CRC-64
 * trailer, the key count from RESIZEDB, and chunk boundaries. Real RDBs from redis-server: the integration test.
 */
import test from "ava";
import { createHash } from "node:crypto";
import { crc64 } from "../../src/redis/rdb_checksum.js";
import { KEY_COUNT_PREFIX_BYTES, RdbScan, countKeys, formatSnapshotReport, inspectSnapshot, type DescriptorInput } from "../../src/snapshot/inspect_snapshot.js";
import { descriptorName, snapshotFileName } from "../../src/snapshot/snapshot_store.js";

/** A string as rdbSaveRawString writes a short one: 6-bit length, bytes. */
function str(s: string): Buffer {
  const b = Buffer.from(s);
  if (b.length < 64) return Buffer.concat([Buffer.from([b.length]), b]);
  return Buffer.concat([Buffer.from([0x40 | (b.length >> 8), b.length & 0xff]), b]);
}

const AUX = 0xfa;
/** The body an RDB holds before EOF: aux fields, SELECTDB 0, RESIZEDB keys/expires, then one string key. */
function body(keys: number, expires: number, extra: Buffer[] = []): Buffer {
  return Buffer.concat([
    Buffer.from("REDIS0010"),
    Buffer.from([AUX]), str("redis-ver"), str("7.0.15"),
    // An integer-encoded aux value (0xC0: int8), as Redis writes redis-bits and ctime.
    Buffer.from([AUX]), str("redis-bits"), Buffer.from([0xc0, 64]),
    ...extra,
    Buffer.from([0xfe, 0x00, 0xfb]), lengthBytes(keys), lengthBytes(expires),
    Buffer.from([0x00]), str("key"), str("value"),
  ]);
}

function lengthBytes(n: number): Buffer {
  if (n < 64) return Buffer.from([n]);
  if (n < 16384) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = 0x80;
  b.writeUInt32BE(n, 1);
  return b;
}

/** A whole RDB: body, EOF, CRC-64 trailer (0 for `rdbchecksum no`). */
function rdb(content: Buffer, checksum = true): Buffer {
  const withEof = Buffer.concat([content, Buffer.from([0xff])]);
  const trailer = Buffer.alloc(8);
  if (checksum) trailer.writeBigUInt64LE(crc64(withEof));
  return Buffer.concat([withEof, trailer]);
}

function scan(data: Buffer, chunk = data.length) {
  const s = new RdbScan();
  for (let at = 0; at < data.length; at += chunk) s.update(data.subarray(at, at + chunk));
  return s.finish();
}

function descriptorOf(data: Buffer, txid: number): DescriptorInput {
  return { kind: "present", file: `/jn1/snapshots/${descriptorName(txid)}`, info: { txid, bytes: data.length, sha256: createHash("sha256").update(data).digest("hex") } };
}

const FILE = `/jn1/snapshots/${snapshotFileName(42)}`;

test("inspect snapshot - a sound RDB with its descriptor: txid, version, checksum and SHA-256 ok, keys counted", (t) => {
  const data = rdb(body(300, 7));
  const report = inspectSnapshot(scan(data), FILE, descriptorOf(data, 42));
  t.deepEqual(report.problems, []);
  t.is(report.txid, 42);
  t.is(report.bytes, data.length);
  t.is(report.rdbVersion, 10);
  t.is(report.checksum, "ok");
  t.is(report.sha256Check, "ok");
  t.deepEqual(report.keys, { db: 0, keys: 300, expires: 7 });
  const text = formatSnapshotReport(report);
  t.true(text.startsWith(`${FILE}  kind=snapshot  txid=42  bytes=${data.length}  rdb-version=10\nchecksum: ok\nsha256: ok (`), text);
  t.true(text.endsWith("keys: 300 in db 0 (7 with a TTL)\nproblems: none"), text);
});

test("inspect snapshot - every chunking gives the same scan, the trailer held back across chunk boundaries", (t) => {
  const data = rdb(body(70_000, 3));
  const whole = scan(data);
  for (const chunk of [1, 2, 7, 8, 9, 13, data.length - 1]) t.deepEqual(scan(data, chunk), whole, `chunks of ${chunk}`);
  t.is(whole.crc, crc64(data.subarray(0, data.length - 8)));
  t.is(whole.beforeTrailer, 0xff);
});

test("inspect snapshot - a flipped byte anywhere is a CRC-64 and a SHA-256 mismatch, exit-worthy problems", (t) => {
  const good = rdb(body(5, 0));
  for (const at of [3, 12, good.length - 10, good.length - 9, good.length - 1]) {
    const bad = Buffer.from(good);
    bad[at] ^= 0x01;
    const report = inspectSnapshot(scan(bad), FILE, descriptorOf(good, 42));
    t.is(report.sha256Check, "bad", `byte ${at}`);
    t.true(report.problems.some((p) => p.startsWith("SHA-256 mismatch")), `byte ${at}`);
    t.is(report.checksum, "bad", `byte ${at}`);
    t.true(report.problems.some((p) => p.startsWith(`CRC-64 mismatch: the trailer at offset ${good.length - 8}`)), `byte ${at}`);
  }
  // In the magic: not an RDB at all; on EOF: the opcode is missing.
  const magic = Buffer.from(good);
  magic[1] ^= 0x20;
  t.true(inspectSnapshot(scan(magic), FILE, { kind: "absent" }).problems[0].startsWith('not an RDB: starts with "ReDIS0010"'));
  const eof = Buffer.from(good);
  eof[good.length - 9] = 0xfe;
  t.true(inspectSnapshot(scan(eof), FILE, { kind: "absent" }).problems.some((p) => p.startsWith("no EOF opcode before the checksum")));
});

test("inspect snapshot - without a descriptor the SHA-256 is unchecked; with a wrong one each mismatch is named", (t) => {
  const data = rdb(body(1, 0));
  const alone = inspectSnapshot(scan(data), "/tmp/dump.rdb", { kind: "absent" });
  t.deepEqual(alone.problems, []);
  t.is(alone.txid, null);
  t.is(alone.sha256Check, "unchecked");
  t.true(formatSnapshotReport(alone).includes("(unchecked: no descriptor beside the file)"));

  const wrong: DescriptorInput = { kind: "present", file: "d.json", info: { txid: 41, bytes: data.length + 1, sha256: "0".repeat(64) } };
  const report = inspectSnapshot(scan(data), FILE, wrong);
  t.is(report.txid, 42);
  t.deepEqual(report.problems, [
    "descriptor says txid 41, the file name 42",
    `descriptor says ${data.length + 1} bytes, the file has ${data.length}`,
    `SHA-256 mismatch: the descriptor says ${"0".repeat(64)}, the file gives ${report.sha256}`,
  ]);
  const invalid = inspectSnapshot(scan(data), FILE, { kind: "invalid", file: "d.json", reason: "Unexpected end of JSON input" });
  t.deepEqual(invalid.problems, ["descriptor d.json is not valid: Unexpected end of JSON input"]);
});

test("inspect snapshot - truncated files and a zero trailer (rdbchecksum no)", (t) => {
  const data = rdb(body(2, 0));
  const cut = data.subarray(0, data.length - 3);
  const report = inspectSnapshot(scan(cut), FILE, { kind: "absent" });
  t.is(report.checksum, "bad");
  t.true(report.problems.length >= 1);
  const tiny = inspectSnapshot(scan(Buffer.from("REDIS00")), FILE, { kind: "absent" });
  t.true(tiny.problems.some((p) => p.includes("too short")));
  t.is(tiny.rdbVersion, null);
  const empty = inspectSnapshot(scan(Buffer.alloc(0)), FILE, { kind: "absent" });
  t.true(empty.problems.some((p) => p.includes("0 bytes: too short")));

  const unchecked = inspectSnapshot(scan(rdb(body(2, 0), false)), FILE, { kind: "absent" });
  t.is(unchecked.checksum, "absent");
  t.deepEqual(unchecked.problems, []);
});

test("inspect snapshot - keys: empty data set, 14- and 32-bit lengths, LZF aux and functions skipped, unknown opcodes not counted", (t) => {
  // EOF right after the aux fields: an empty data set.
  t.deepEqual(countKeys(rdb(Buffer.from("REDIS0010"))), { db: 0, keys: 0, expires: 0 });
  t.deepEqual(countKeys(rdb(body(1000, 64))), { db: 0, keys: 1000, expires: 64 });
  t.deepEqual(countKeys(rdb(body(3_000_000, 0))), { db: 0, keys: 3_000_000, expires: 0 });
  const lzf = Buffer.concat([Buffer.from([AUX]), str("lzf"), Buffer.from([0xc3, 3, 10, 1, 2, 3])]);
  const fn = Buffer.concat([Buffer.from([0xf5]), str("#!lua name=lib\nredis.register_function('f', function() return 1 end)")]);
  t.deepEqual(countKeys(rdb(body(9, 1, [lzf, fn]))), { db: 0, keys: 9, expires: 1 });
  // A module's aux data cannot be skipped without the module: not counted rather than guessed.
  t.is(countKeys(rdb(body(9, 1, [Buffer.from([0xf7, 1, 2, 3])]))), null);
  // The RESIZEDB header past the prefix: not counted.
  const huge = Buffer.concat([Buffer.from([AUX]), str("big"), lengthBytes(KEY_COUNT_PREFIX_BYTES), Buffer.alloc(KEY_COUNT_PREFIX_BYTES)]);
  const data = rdb(body(9, 1, [huge]));
  t.is(scan(data, 4096).prefix.length, KEY_COUNT_PREFIX_BYTES);
  t.is(inspectSnapshot(scan(data, 4096), FILE, { kind: "absent" }).keys, null);
  t.is(countKeys(Buffer.from("REDIS0010")), null);
});

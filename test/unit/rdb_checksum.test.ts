import test from "ava";
import crypto from "node:crypto";
import { Crc64, crc64, trailerChecksum } from "../../src/redis/rdb_checksum.js";
import { transferProgress } from "../../src/util/progress.js";
import { infoNumber, parseInfo } from "../../src/redis/redis_info.js";

/** Bit-by-bit CRC-64/Jones with BigInt: the definition the table-driven one must match. */
function crc64Reference(bytes: Uint8Array): bigint {
  const poly = 0x95ac9329ac4bc9b5n;
  let crc = 0n;
  for (const b of bytes) {
    crc ^= BigInt(b);
    for (let bit = 0; bit < 8; bit++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
  }
  return crc;
}

test("rdb checksum - Redis's own check value (crc64.c: \"123456789\" → e9c6d914c4b8d9ca)", (t) => {
  t.is(crc64(Buffer.from("123456789")), 0xe9c6d914c4b8d9can);
  t.is(crc64(new Uint8Array(0)), 0n);
});

test("rdb checksum - slice-by-8 equals the bit-by-bit definition, whatever the chunking", (t) => {
  const data = crypto.randomBytes(4099);
  const expected = crc64Reference(data);
  t.is(crc64(data), expected);
  for (const step of [1, 3, 7, 8, 9, 64, 1000]) {
    const crc = new Crc64();
    for (let at = 0; at < data.length; at += step) crc.update(data.subarray(at, at + step));
    t.is(crc.value, expected, `chunks of ${step}`);
  }
});

test("rdb checksum - the trailer is little-endian and 8 bytes", (t) => {
  const trailer = Buffer.alloc(8);
  trailer.writeBigUInt64LE(0xe9c6d914c4b8d9can);
  t.is(trailerChecksum(trailer), 0xe9c6d914c4b8d9can);
  t.throws(() => trailerChecksum(new Uint8Array(7)), { instanceOf: RangeError });
});

test("rdb load progress - rate and eta from bytes and elapsed time", (t) => {
  t.deepEqual(transferProgress(0, 1000, 0), { bytes: 0, totalBytes: 1000, bytesPerSecond: 0, etaMs: null });
  t.deepEqual(transferProgress(250, 1000, 500), { bytes: 250, totalBytes: 1000, bytesPerSecond: 500, etaMs: 1500 });
  t.is(transferProgress(1000, 1000, 2000).etaMs, 0);
});

test("redis info - fields by name, headers and blanks dropped, a missing number is NaN", (t) => {
  const info = parseInfo("# Persistence\r\nloading:0\r\nrdb_saves:12\r\n\r\n# Replication\r\nrole:master\r\nmaster_host:127.0.0.1\r\n");
  t.is(info.get("role"), "master");
  t.is(info.get("master_host"), "127.0.0.1");
  t.is(infoNumber(info, "rdb_saves"), 12);
  t.true(Number.isNaN(infoNumber(info, "aof_rewrites")));
  t.false(info.has("# Persistence"));
});

import test from "ava";
import {
  RECORD_BYTES_MAX,
  RECORD_HEADER_BYTES,
  decodeEffects,
  encodeEffects,
  encodeRecord,
  scanRecords,
  type Effect,
} from "../../src/segment/record.js";
import { encode } from "../../src/protocol/codec.js";
import { AssertionError } from "../../src/util/assert.js";

const b = (s: string): Buffer => Buffer.from(s);

function effectsFor(txid: number): Effect[] {
  return [[b("SET"), b(`key:${txid}`), b(`value-${txid}`)]];
}

/** Three records (txids 1..3, epoch 7) concatenated, with each record's start offset and length. */
function threeRecords(): { buf: Buffer; starts: number[]; lengths: number[] } {
  const parts = [1, 2, 3].map((t) => encodeRecord(t, 7, encodeEffects(effectsFor(t))));
  const starts: number[] = [];
  let at = 0;
  for (const p of parts) {
    starts.push(at);
    at += p.length;
  }
  return { buf: Buffer.concat(parts), starts, lengths: parts.map((p) => p.length) };
}

function sameEffects(actual: Effect[], expected: Effect[]): boolean {
  return (
    actual.length === expected.length &&
    actual.every((e, i) => e.length === expected[i].length && e.every((arg, j) => Buffer.from(arg).equals(Buffer.from(expected[i][j]))))
  );
}

test("record - encode then scan round-trips txid, epoch, offsets and payload", (t) => {
  const { buf, starts, lengths } = threeRecords();
  const scan = scanRecords(buf);
  t.is(scan.stop, undefined);
  t.is(scan.validBytes, buf.length);
  t.deepEqual(
    scan.records.map((r) => [r.txid, r.epoch, r.offset, r.length]),
    [0, 1, 2].map((i) => [i + 1, 7, starts[i], lengths[i]]),
  );
  for (const r of scan.records) t.true(sameEffects(decodeEffects(r.payload), effectsFor(r.txid)));
});

test("record - the header layout is magic, length, txid, epoch, checksum", (t) => {
  const payload = encodeEffects(effectsFor(9));
  const rec = encodeRecord(2 ** 40 + 5, 0xffffffff, payload);
  t.is(rec.length, RECORD_HEADER_BYTES + payload.length);
  t.is(rec.subarray(0, 4).toString("latin1"), "QJM1");
  t.is(rec.readUInt32BE(4), payload.length);
  t.is(Number(rec.readBigUInt64BE(8)), 2 ** 40 + 5);
  t.is(rec.readUInt32BE(16), 0xffffffff);
  const [view] = scanRecords(rec).records;
  t.is(view.txid, 2 ** 40 + 5);
  t.is(view.epoch, 0xffffffff);
});

test("record - scan offsets are shifted by baseOffset", (t) => {
  const { buf, starts } = threeRecords();
  const scan = scanRecords(buf, 1000);
  t.deepEqual(
    scan.records.map((r) => r.offset),
    starts.map((s) => s + 1000),
  );
  t.is(scan.validBytes, buf.length);
  const damaged = Buffer.from(buf);
  damaged[starts[1] + RECORD_HEADER_BYTES] ^= 0xff;
  const stop = scanRecords(damaged, 1000).stop;
  t.is(stop?.kind, "corrupt");
  t.is(stop?.offset, 1000 + starts[1]);
});

test("record - scan of a record that sits inside a larger buffer (non-zero byteOffset)", (t) => {
  const { buf } = threeRecords();
  const outer = Buffer.concat([Buffer.alloc(13, 0xaa), buf, Buffer.alloc(5, 0xbb)]);
  const inner = outer.subarray(13, 13 + buf.length);
  const scan = scanRecords(inner);
  t.is(scan.stop, undefined);
  t.deepEqual(
    scan.records.map((r) => r.txid),
    [1, 2, 3],
  );
});

test("record - any flipped byte in a middle record is corruption at that record's offset", (t) => {
  const { buf, starts, lengths } = threeRecords();
  for (let i = 0; i < lengths[1]; i++) {
    const damaged = Buffer.from(buf);
    damaged[starts[1] + i] ^= 0xff;
    const scan = scanRecords(damaged);
    t.is(scan.stop?.kind, "corrupt", `byte ${i}`);
    t.is(scan.stop?.offset, starts[1], `byte ${i}`);
    t.is(scan.validBytes, starts[1], `byte ${i}`);
    t.deepEqual(
      scan.records.map((r) => r.txid),
      [1],
      `byte ${i}`,
    );
  }
});

test("record - a last record cut at every length is a torn tail ending at that record's start", (t) => {
  const { buf, starts, lengths } = threeRecords();
  for (let cut = 1; cut < lengths[2]; cut++) {
    const scan = scanRecords(buf.subarray(0, starts[2] + cut));
    t.is(scan.stop?.kind, "torn", `cut at ${cut}`);
    t.is(scan.stop?.offset, starts[2], `cut at ${cut}`);
    t.is(scan.validBytes, starts[2], `cut at ${cut}`);
    t.deepEqual(
      scan.records.map((r) => r.txid),
      [1, 2],
      `cut at ${cut}`,
    );
  }
});

test("record - any flipped byte in the last record is a torn tail (nothing valid follows)", (t) => {
  const { buf, starts, lengths } = threeRecords();
  for (let i = 0; i < lengths[2]; i++) {
    const damaged = Buffer.from(buf);
    damaged[starts[2] + i] ^= 0xff;
    const scan = scanRecords(damaged);
    t.is(scan.stop?.kind, "torn", `byte ${i}`);
    t.is(scan.stop?.offset, starts[2], `byte ${i}`);
    t.is(scan.validBytes, starts[2], `byte ${i}`);
  }
});

test("record - a corrupted length field in a middle record is corruption (a valid record follows)", (t) => {
  const { buf, starts, lengths } = threeRecords();
  const payloadLength = lengths[1] - RECORD_HEADER_BYTES;
  for (const length of [0, payloadLength - 1, payloadLength + 1, payloadLength + lengths[2], RECORD_BYTES_MAX + 1, 0xffffffff]) {
    const damaged = Buffer.from(buf);
    damaged.writeUInt32BE(length >>> 0, starts[1] + 4);
    const scan = scanRecords(damaged);
    t.is(scan.stop?.kind, "corrupt", `length ${length}`);
    t.is(scan.stop?.offset, starts[1], `length ${length}`);
    t.is(scan.validBytes, starts[1], `length ${length}`);
  }
});

test("record - bad magic stops the scan at that record", (t) => {
  const { buf, starts } = threeRecords();
  const first = Buffer.from(buf);
  first.write("XJM1", 0, "latin1");
  const atStart = scanRecords(first);
  t.deepEqual(atStart.records, []);
  t.is(atStart.validBytes, 0);
  t.is(atStart.stop?.reason, "bad magic");
  t.is(atStart.stop?.kind, "corrupt"); // records 2 and 3 are intact after it

  const middle = Buffer.from(buf);
  middle.writeUInt32BE(0xdeadbeef, starts[1]);
  const m = scanRecords(middle);
  t.is(m.stop?.reason, "bad magic");
  t.is(m.stop?.offset, starts[1]);
  t.is(m.stop?.kind, "corrupt");

  const garbage = scanRecords(Buffer.from("this is certainly not a QJM record at all"));
  t.deepEqual(garbage.records, []);
  t.is(garbage.validBytes, 0);
  t.is(garbage.stop?.reason, "bad magic");
  t.is(garbage.stop?.offset, 0);
});

test("record - an empty buffer scans to nothing, without a stop", (t) => {
  const scan = scanRecords(Buffer.alloc(0));
  t.deepEqual(scan.records, []);
  t.is(scan.validBytes, 0);
  t.is(scan.stop, undefined);
});

test("record - encodeRecord refuses a txid below 1 or unsafe, and an epoch out of range", (t) => {
  const payload = encodeEffects(effectsFor(1));
  t.throws(() => encodeRecord(0, 1, payload), { instanceOf: AssertionError });
  t.throws(() => encodeRecord(2 ** 53, 1, payload), { instanceOf: AssertionError });
  t.throws(() => encodeRecord(1.5, 1, payload), { instanceOf: AssertionError });
  t.throws(() => encodeRecord(1, 0, payload), { instanceOf: AssertionError });
  t.throws(() => encodeRecord(1, 2 ** 32, payload), { instanceOf: AssertionError });
});

test("record - encodeEffects/decodeEffects round-trip binary-safe arguments", (t) => {
  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  const effects: Effect[] = [
    [b("SET"), Buffer.from([0, 0xff, 0x0d, 0x0a, 0x80]), all],
    [b("DEL"), Buffer.alloc(0)],
    [b("HSET"), b("h"), b("f"), Buffer.from("ünïcødé ✓")],
    [b("SET"), b("big"), Buffer.alloc(70_000, 0x5a)],
    [new Uint8Array([0x50, 0x49, 0x4e, 0x47])],
  ];
  const decoded = decodeEffects(encodeEffects(effects));
  t.true(sameEffects(decoded, effects));
  for (const e of decoded) for (const arg of e) t.true(arg instanceof Uint8Array);
  t.deepEqual(decodeEffects(encodeEffects([])), []);
});

test("record - decodeEffects takes msgpack strings as byte strings", (t) => {
  const decoded = decodeEffects(encode([["SET", "k", "v"]]));
  t.true(sameEffects(decoded, [[b("SET"), b("k"), b("v")]]));
});

test("record - decodeEffects refuses anything but an array of non-empty byte-string arrays", (t) => {
  for (const bad of [{ a: 1 }, "SET k v", 42, null, true]) {
    t.throws(() => decodeEffects(encode(bad)), undefined, JSON.stringify(bad));
  }
  t.throws(() => decodeEffects(encode([[]])), undefined, "empty effect");
  t.throws(() => decodeEffects(encode(["SET"])), undefined, "effect not an array");
  t.throws(() => decodeEffects(encode([["SET", 5]])), undefined, "number argument");
  t.throws(() => decodeEffects(encode([["SET", null]])), undefined, "nil argument");
});

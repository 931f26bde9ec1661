import test from "ava";
import {
  RECORD_BYTES_MAX,
  RECORD_HEADER_BYTES,
  PAYLOAD_V2,
  REPLY_DEPTH_MAX,
  decodeEffects,
  decodeRecordPayload,
  encodeEffects,
  encodeRecordPayload,
  encodeRecord,
  encodeWriteRecord,
  scanRecords,
  type Effect,
  type RecordedReply,
} from "../../src/segment/record.js";
import { encode } from "../../src/protocol/codec.js";
import { ErrorCode, QjmError } from "../../src/protocol/errors.js";
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

// ---- payload v2 (issue #11 item 3): the write's id and reply ride in its record ----

const id = { client: "Zm9vYmFyYmF6cXV4cXV1eA", seq: 42 };

test("record - payload v2 round-trips effects, write id and reply (value, nil, nested, bytes, error)", (t) => {
  const effects = effectsFor(1);
  const replies = [
    { ok: true as const, value: 7 },
    { ok: true as const, value: null },
    { ok: true as const, value: "OK" },
    { ok: true as const, value: Buffer.from([0, 0xff]) },
    { ok: true as const, value: ["a", 1, null, [Buffer.from("b"), []]] },
    { ok: false as const, message: "WRONGTYPE Operation against a key holding the wrong kind of value" },
    { ok: false as const, message: "the replication stream held effects the master cannot journal faithfully", code: ErrorCode.EFFECTS_REFUSED },
  ];
  for (const reply of replies) {
    const decoded = decodeRecordPayload(encodeRecordPayload(effects, { id, reply }, 64 * 1024));
    t.true(sameEffects(decoded.effects, effects));
    t.deepEqual(decoded.write, { ...id, reply, replyDropped: false }, JSON.stringify(reply));
  }
});

test("record - a reply past the bound is dropped, the id kept and flagged", (t) => {
  const big = { ok: true as const, value: "x".repeat(1000) };
  const payload = encodeRecordPayload(effectsFor(1), { id, reply: big }, 100);
  t.deepEqual(decodeRecordPayload(payload).write, { ...id, replyDropped: true });
  t.true(payload.length < 200);
  // At the bound exactly it is kept.
  const exact = encode("x".repeat(1000)).length;
  t.deepEqual(decodeRecordPayload(encodeRecordPayload(effectsFor(1), { id, reply: big }, exact)).write, { ...id, reply: big, replyDropped: false });
});

test("record - a write without an id is written as v1, and v1 payloads (old segments) still decode", (t) => {
  const effects = effectsFor(3);
  const v1 = encodeRecordPayload(effects, null, 64 * 1024);
  t.deepEqual(Buffer.from(v1), Buffer.from(encodeEffects(effects)));
  const decoded = decodeRecordPayload(v1);
  t.is(decoded.write, null);
  t.true(sameEffects(decoded.effects, effects));
  // decodeEffects reads both forms.
  t.true(sameEffects(decodeEffects(encodeRecordPayload(effects, { id, reply: { ok: true, value: 1 } }, 1024)), effects));
  // A v2 map with no write (an orphan record a future writer might tag) decodes with write null.
  t.is(decodeRecordPayload(encode({ v: PAYLOAD_V2, e: [] })).write, null);
});

test("record - decodeRecordPayload refuses malformed v2 payloads with BAD_RECORD", (t) => {
  const e = [["SET", "k", "v"]];
  const w = { c: "client", s: 1, r: "OK" };
  const cases: [string, unknown][] = [
    ["no version", { e, w }],
    ["version 3", { v: 3, e, w }],
    ["effects not an array", { v: 2, e: "SET k v", w }],
    ["bad effect", { v: 2, e: [[]], w }],
    ["write not a map", { v: 2, e, w: ["client", 1] }],
    ["client bad", { v: 2, e, w: { ...w, c: "a.b" } }],
    ["client too long", { v: 2, e, w: { ...w, c: "a".repeat(65) } }],
    ["seq zero", { v: 2, e, w: { ...w, s: 0 } }],
    ["seq fraction", { v: 2, e, w: { ...w, s: 1.5 } }],
    ["reply missing, not flagged", { v: 2, e, w: { c: "client", s: 1 } }],
    ["reply and dropped flag", { v: 2, e, w: { ...w, d: true } }],
    ["dropped flag not true", { v: 2, e, w: { c: "client", s: 1, d: 1 } }],
    ["reply map not an error", { v: 2, e, w: { ...w, r: { value: 1 } } }],
    ["reply error not a string", { v: 2, e, w: { ...w, r: { err: 5 } } }],
    ["reply error code unknown", { v: 2, e, w: { ...w, r: { err: "x", code: "NOPE" } } }],
    ["reply error with another key", { v: 2, e, w: { ...w, r: { err: "x", why: "y" } } }],
    ["reply boolean", { v: 2, e, w: { ...w, r: true } }],
    ["reply nested map", { v: 2, e, w: { ...w, r: [1, { a: 1 }] } }],
    ["a string", "SET k v"],
    ["a number", 42],
  ];
  for (const [name, v] of cases) {
    const err = t.throws(() => decodeRecordPayload(encode(v)), { instanceOf: QjmError }, name);
    t.is((err as QjmError | undefined)?.code, ErrorCode.BAD_RECORD, name);
  }
  let deep: unknown = 1;
  for (let i = 0; i <= REPLY_DEPTH_MAX; i++) deep = [deep];
  t.throws(() => decodeRecordPayload(encode({ v: 2, e, w: { ...w, r: deep } })), { instanceOf: QjmError }, "too deep");
  t.throws(() => decodeRecordPayload(Buffer.from([0xc1])), { instanceOf: QjmError }, "not msgpack");
});

test("record - whether a reply is kept is decided by its exact packed size, whatever its shape", (t) => {
  const replies: RecordedReply[] = [
    { ok: true, value: null },
    { ok: true, value: 7 },
    { ok: true, value: -(2 ** 40) },
    { ok: true, value: "é".repeat(40) },
    { ok: true, value: "😀".repeat(30) },
    { ok: true, value: Buffer.alloc(90, 1) },
    { ok: true, value: [1, "ab", [Buffer.from("c"), null, ["d".repeat(50)]]] },
    { ok: true, value: Array.from({ length: 40 }, (_, i) => i) },
    { ok: false, message: "ERR " + "x".repeat(60) },
    { ok: false, message: "over", code: ErrorCode.EFFECTS_REFUSED },
  ];
  for (const reply of replies) {
    const r = reply.ok ? reply.value : reply.code === undefined ? { err: reply.message } : { err: reply.message, code: reply.code };
    const exact = encode(r).length;
    for (const bound of [exact - 1, exact, exact + 1, 1, 100, 1000]) {
      const seen = encodeWriteRecord(effectsFor(1), { id, reply }, bound).write!;
      t.is(seen.replyDropped, exact > bound, `${JSON.stringify(r).slice(0, 40)} (${exact} bytes) at bound ${bound}`);
    }
  }
});

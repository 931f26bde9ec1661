import test from "ava";
import { formatReport, inspectSegment, renderArg } from "../../src/segment/inspect.js";
import { RECORD_HEADER_BYTES, encodeEffects, encodeRecord, encodeRecordPayload, type Effect } from "../../src/segment/record.js";
import { finalizedName, inProgressName } from "../../src/journal/segment_store.js";

const b = (s: string): Buffer => Buffer.from(s);

function record(txid: number, epoch = 3, effects: Effect[] = [[b("SET"), b(`k${txid}`), b(`v${txid}`)]]): Buffer {
  return encodeRecord(txid, epoch, encodeEffects(effects));
}

/** Records for `txids` concatenated, with each record's start offset. */
function segment(txids: number[]): { data: Buffer; starts: number[] } {
  const parts = txids.map((t) => record(t));
  const starts: number[] = [];
  let at = 0;
  for (const p of parts) {
    starts.push(at);
    at += p.length;
  }
  return { data: Buffer.concat(parts), starts };
}

test("inspect - a clean in-progress segment: every record, its effects, no problems", (t) => {
  const { data, starts } = segment([5, 6, 7]);
  const report = inspectSegment(data, `/data/jn1/current/${inProgressName(5)}`, {});
  t.is(report.kind, "in-progress");
  t.is(report.nameStartTxid, 5);
  t.is(report.nameEndTxid, null);
  t.is(report.count, 3);
  t.is(report.firstTxid, 5);
  t.is(report.lastTxid, 7);
  t.is(report.validBytes, data.length);
  t.is(report.totalBytes, data.length);
  t.deepEqual(report.problems, []);
  t.deepEqual(
    report.records.map((r) => [r.txid, r.epoch, r.offset, r.bytes, r.effects]),
    [5, 6, 7].map((txid, i) => [txid, 3, starts[i], record(txid).length, [["SET", `k${txid}`, `v${txid}`]]]),
  );
  const text = formatReport(report);
  const lines = text.split("\n");
  t.is(lines[0], `/data/jn1/current/${inProgressName(5)}  kind=in-progress  records=3  txids=5..7  bytes=${data.length}/${data.length}`);
  t.regex(lines[1], new RegExp(`^5  3 +${starts[0]}  SET k5 v5$`));
  t.regex(lines[3], new RegExp(`^7  3 +${starts[2]}  SET k7 v7$`));
  t.is(lines[lines.length - 1], "problems: none");
});

test("inspect - an empty in-progress segment is sound; an empty finalized one is not", (t) => {
  const open = inspectSegment(Buffer.alloc(0), inProgressName(1), {});
  t.deepEqual(open.problems, []);
  t.is(open.firstTxid, null);
  t.true(formatReport(open).startsWith(`${inProgressName(1)}  kind=in-progress  records=0  txids=none  bytes=0/0`));
  const done = inspectSegment(Buffer.alloc(0), finalizedName(1, 4), {});
  t.deepEqual(done.problems, ["finalized segment holds no valid record, its name says 1..4"]);
});

test("inspect - a finalized segment whose name ends elsewhere than its last record", (t) => {
  const { data } = segment([1, 2, 3]);
  const report = inspectSegment(data, finalizedName(1, 4), {});
  t.is(report.kind, "finalized");
  t.is(report.nameStartTxid, 1);
  t.is(report.nameEndTxid, 4);
  t.deepEqual(report.problems, ["last txid 3 does not match the name's end 4"]);
  t.deepEqual(inspectSegment(data, finalizedName(1, 3), {}).problems, []);
});

test("inspect - a first txid other than the name's start, and a gap between txids", (t) => {
  const { data, starts } = segment([2, 3, 5]);
  const report = inspectSegment(data, inProgressName(1), {});
  t.deepEqual(report.problems, [`txids not contiguous: txid 5 at offset ${starts[2]} follows 3`, "first txid 2 does not match the name's start 1"]);
});

test("inspect - a torn tail: the whole records, then the offset and size of the torn bytes", (t) => {
  const { data, starts } = segment([1, 2, 3]);
  // Half of the third record, as a crash in the middle of its write leaves it.
  const torn = data.subarray(0, starts[2] + RECORD_HEADER_BYTES + 2);
  const report = inspectSegment(torn, inProgressName(1), {});
  t.is(report.count, 2);
  t.is(report.validBytes, starts[2]);
  t.is(report.totalBytes, torn.length);
  t.is(report.problems.length, 1);
  t.regex(report.problems[0], new RegExp(`^torn tail at offset ${starts[2]}: payload of \\d+ bytes runs past the end \\(${RECORD_HEADER_BYTES + 2} bytes\\)$`));
  const text = formatReport(report);
  t.true(text.includes(`bytes=${starts[2]}/${torn.length}`));
  t.true(text.endsWith(`problems:\n  ${report.problems[0]}`));
});

test("inspect - a flipped byte in a middle record is corruption at that record's exact offset", (t) => {
  const { data, starts } = segment([1, 2, 3]);
  const damaged = Buffer.from(data);
  damaged[starts[1] + RECORD_HEADER_BYTES + 1] ^= 0xff;
  const report = inspectSegment(damaged, finalizedName(1, 3), {});
  t.is(report.count, 1);
  t.is(report.validBytes, starts[1]);
  // The scan stops at the damage, so the finalized name's end is not reached either: both are true and both are said.
  t.deepEqual(report.problems, [`corrupt record at offset ${starts[1]}: checksum mismatch`, "last txid 1 does not match the name's end 3"]);
});

test("inspect - binary arguments as hex, long ones cut, ambiguous text quoted", (t) => {
  const long = Buffer.alloc(100, 0x61);
  const effects: Effect[] = [
    [b("SET"), Buffer.from([0x00, 0xff, 0x10]), b("hello world")],
    [b("HSET"), long, Buffer.alloc(70, 0xfe), b("")],
  ];
  const report = inspectSegment(record(1, 9, effects), inProgressName(1), {});
  t.deepEqual(report.problems, []);
  t.deepEqual(report.records[0].effects, [
    ["SET", "0x00ff10", '"hello world"'],
    ["HSET", `${"a".repeat(64)}…(100 bytes)`, `0x${"fe".repeat(64)}…(70 bytes)`, '""'],
  ]);
  t.true(formatReport(report).includes(`SET 0x00ff10 "hello world" ; HSET ${"a".repeat(64)}…(100 bytes)`));
});

test("inspect - renderArg: control and invisible characters are hex, a cut never splits a character", (t) => {
  t.is(renderArg(b("line\n")), "0x6c696e650a");
  t.is(renderArg(b("0x41")), '"0x41"');
  t.is(renderArg(b("\ufeffk")), "0xefbbbf6b");
  t.is(renderArg(b("a\u200bb")), "0x61e2808b62");
  t.is(renderArg(b("héllo")), "héllo");
  // 63 ASCII bytes then a 2-byte "é": byte 64 is inside it, so the cut falls before it.
  t.is(renderArg(b(`${"x".repeat(63)}é${"y".repeat(10)}`)), `${"x".repeat(63)}…(75 bytes)`);
});

test("inspect - a payload that is not effects is a problem named by txid and offset", (t) => {
  const { data } = segment([1]);
  // A sound record (checksum and all) whose payload is the msgpack integer 42, not an array of effects.
  const bad = encodeRecord(2, 3, Buffer.from([0x2a]));
  const report = inspectSegment(Buffer.concat([data, bad]), inProgressName(1), {});
  t.is(report.count, 2);
  t.deepEqual(report.records[1].effects, []);
  t.deepEqual(report.problems, [`payload of txid 2 at offset ${data.length} does not decode: record payload: neither an array of effects nor a v2 map`]);
});

test("inspect - limit bounds the records shown, not the count nor the problems", (t) => {
  const { data, starts } = segment([1, 2, 3, 4, 5]);
  const gapped = Buffer.concat([data, record(7)]);
  const report = inspectSegment(gapped, inProgressName(1), { limit: 2 });
  t.deepEqual(report.records.map((r) => r.txid), [1, 2]);
  t.is(report.count, 6);
  t.is(report.lastTxid, 7);
  t.deepEqual(report.problems, [`txids not contiguous: txid 7 at offset ${data.length} follows 5`]);
  t.true(formatReport(report).includes("\n… 4 more records\n"));
  t.deepEqual(inspectSegment(gapped, inProgressName(1), { limit: 0 }).records, []);
  t.is(inspectSegment(data, inProgressName(1), {}).records[4].offset, starts[4]);
  t.throws(() => inspectSegment(data, inProgressName(1), { limit: -1 }));
});

test("inspect - a name that is not a segment's: kind unknown, no name checks", (t) => {
  const { data } = segment([8, 9]);
  const report = inspectSegment(data, `${inProgressName(8)}.stale-1700000000000`, {});
  t.is(report.kind, "unknown");
  t.is(report.nameStartTxid, null);
  t.deepEqual(report.problems, []);
});

test("inspect - a v2 record shows its write id, and whether its reply was kept", (t) => {
  const effects: Effect[] = [[b("INCR"), b("c")]];
  const kept = encodeRecord(1, 3, encodeRecordPayload(effects, { id: { client: "cli_1", seq: 5 }, reply: { ok: true, value: 1 } }, 1024));
  const dropped = encodeRecord(2, 3, encodeRecordPayload(effects, { id: { client: "cli_1", seq: 6 }, reply: { ok: true, value: "x".repeat(100) } }, 10));
  const report = inspectSegment(Buffer.concat([kept, dropped, record(3)]), inProgressName(1), {});
  t.deepEqual(report.problems, []);
  t.deepEqual(
    report.records.map((r) => r.write),
    [{ client: "cli_1", seq: 5, replyKept: true }, { client: "cli_1", seq: 6, replyKept: false }, null],
  );
  const lines = formatReport(report).split("\n");
  t.regex(lines[1], /^1  3 +0  id=cli_1#5  INCR c$/);
  t.regex(lines[2], /  id=cli_1#6\(reply dropped\)  INCR c$/);
  t.regex(lines[3], /  SET k3 v3$/);
});

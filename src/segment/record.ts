/**
 * The editlog record: the unit the master journals, journal nodes validate and store, and replicas apply.
 *
 *   offset  size  field
 *   0       4     magic "QJM1"
 *   4       4     payload length (u32 BE)
 *   8       8     txid (u64 BE, < 2^53)
 *   16      4     epoch of the writer (u32 BE)
 *   20      4     CRC32 of bytes [4, 20) and of the payload
 *   24      n     payload (below)
 *
 * The payload has two forms, told apart by their first msgpack value:
 *   v1  an array of effects, each an array of byte strings ([command, ...args]): a write without an id, orphan
 *       effects (expired keys), and every record written before write ids existed;
 *   v2  a map { v: 2, e: effects, w: { c: client, s: seq, r?: reply, d?: true } }: a write that carried an id
 *       (issue #11 item 3), with the reply it got (`r`: the value, or { err: message, code? }) so that a retry of
 *       the write can be answered from the journal by whoever is master then. A reply whose encoding passes
 *       `dedupeReplyBytesMax` is left out, and `d` says so (the id is kept: the retry is still never applied twice).
 * Readers accept both forms (old segments stay readable); writers emit v1 for records without an id.
 *
 * A batch, a segment file and a read reply are all plain concatenations of records.
 */
import { crc32 } from "node:zlib";
import { Packr } from "msgpackr";
import { INT64_AUTO } from "../protocol/codec.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { isClientId, type WriteId } from "../protocol/messages.js";
import { assert } from "../util/assert.js";

export const RECORD_MAGIC = 0x514a4d31;
export const RECORD_HEADER_BYTES = 24;
/**
 * No record may be larger than this (header included): it bounds what a reader allocates for a length it has not yet
 * verified. It admits the largest write's record: config's writeEffectsBytesMax (80 MiB) is validated against it, and
 * nats-server's max_payload is at most 64 MiB.
 */
export const RECORD_BYTES_MAX = 96 * 1024 * 1024;

/** One Redis command as propagated on the replication stream: name and arguments, binary-safe. */
export type Effect = Uint8Array[];

export interface RecordHeader {
  txid: number;
  epoch: number;
  /** Offset of the record's first byte in the buffer it was read from. */
  offset: number;
  /** Header plus payload. */
  length: number;
}

export interface RecordView extends RecordHeader {
  payload: Uint8Array;
}

// int64AsType "auto": an integer reply past 2^53 is kept as a bigint (int64 on the wire); smaller ones are numbers.
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true, int64AsType: INT64_AUTO });

export function encodeEffects(effects: readonly Effect[]): Uint8Array {
  return packEffects(effects, NOTHING, NOTHING) ?? packr.pack(effects);
}

const NOTHING = Buffer.alloc(0);

/**
 * msgpack of effects (an array of arrays of byte strings) exactly as msgpackr packs them, byte for byte
 * (unit/large_writes), written at once into one buffer: msgpackr's walk over a 10k-argument effect was the master's
 * largest cost per record (~7 ms, s24), between `head` and `tail` (a record payload's map around them: one buffer,
 * not effects packed then concatenated). Null when an argument is not a byte string (msgpackr packs those).
 */
function packEffects(effects: readonly Effect[], head: Uint8Array, tail: Uint8Array): Buffer | null {
  let size = head.length + arrayHeaderBytes(effects.length) + tail.length;
  for (const e of effects) {
    size += arrayHeaderBytes(e.length);
    for (const a of e) {
      if (!(a instanceof Uint8Array)) return null;
      size += (a.length < 0x100 ? 2 : a.length < 0x10000 ? 3 : 5) + a.length;
    }
  }
  const out = Buffer.allocUnsafe(size);
  out.set(head, 0);
  let at = putArrayHeader(out, head.length, effects.length);
  for (const e of effects) {
    at = putArrayHeader(out, at, e.length);
    for (const a of e) at = putBin(out, at, a);
  }
  out.set(tail, at);
  assert(at + tail.length === size, "packEffects: length mismatch");
  return out;
}

function arrayHeaderBytes(n: number): number {
  return n < 0x10 ? 1 : n < 0x10000 ? 3 : 5;
}

function putArrayHeader(out: Buffer, at: number, n: number): number {
  if (n < 0x10) {
    out[at] = 0x90 | n;
    return at + 1;
  }
  if (n < 0x10000) {
    out[at] = 0xdc;
    out.writeUInt16BE(n, at + 1);
    return at + 3;
  }
  out[at] = 0xdd;
  out.writeUInt32BE(n, at + 1);
  return at + 5;
}

function putBin(out: Buffer, at: number, a: Uint8Array): number {
  const n = a.length;
  if (n < 0x100) {
    out[at++] = 0xc4;
    out[at++] = n;
  } else if (n < 0x10000) {
    out[at] = 0xc5;
    out.writeUInt16BE(n, at + 1);
    at += 3;
  } else {
    out[at] = 0xc6;
    out.writeUInt32BE(n, at + 1);
    at += 5;
  }
  // A short argument byte by byte: a native call per copy costs more than the copy.
  if (n < 32) for (let i = 0; i < n; i++) out[at + i] = a[i];
  else out.set(a, at);
  return at + n;
}

/**
 * A Redis reply as the master got it from ioredis (RESP2: nil, integer, simple or bulk string, array). Byte strings
 * and text both travel; they are what the client is given back on a retry. An integer is a number, or a bigint when
 * it is past ±2^53 (Redis's integers are 64-bit: INCR of 9007199254740993 is 9007199254740994, exactly).
 */
export type ReplyValue = null | number | bigint | string | Uint8Array | ReplyError | ReplyValue[];
/** An error inside an array reply (EXEC's per-command errors): `{ err: text }`, as a top-level error is kept. */
export interface ReplyError {
  err: string;
}

export function isReplyError(v: unknown): v is ReplyError {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && typeof (v as { err?: unknown }).err === "string";
}

/**
 * What a write was answered: Redis's value, or an error — Redis's (REDIS_ERROR to the client, `code` absent) or the
 * master's refusal of a write whose record was journaled all the same (`code`, e.g. EFFECTS_REFUSED).
 */
export type RecordedReply = { ok: true; value: ReplyValue } | { ok: false; message: string; code?: ErrorCode };

/** The write a v2 record holds: its id, and its reply unless that was too large to keep (`replyDropped`). */
export interface RecordWrite extends WriteId {
  reply?: RecordedReply;
  replyDropped: boolean;
}

export interface RecordPayload {
  effects: Effect[];
  /** Null for a v1 payload (no write id). */
  write: RecordWrite | null;
}

export const PAYLOAD_V2 = 2;
/** `{v: 2, e: ` as msgpackr packs a v2 payload's map (fixmap of 3, fixstr keys, v first), then `w:`'s key. */
const V2_HEAD = Buffer.from([0x83, 0xa1, 0x76, PAYLOAD_V2, 0xa1, 0x65]);
const V2_W_KEY = Buffer.from([0xa1, 0x77]);
/** Nesting of arrays a recorded reply may have (Redis's own replies to writes nest two or three deep). */
export const REPLY_DEPTH_MAX = 32;

function badPayload(message: string): never {
  throw new QjmError(ErrorCode.BAD_RECORD, `record payload: ${message}`);
}

/**
 * The payload of a write's record. `write` null: the v1 form (no id). A reply whose msgpack encoding is larger than
 * `replyBytesMax` is dropped (the id is kept, flagged): the record must not grow by a large reply it only keeps for
 * retries.
 */
export function encodeRecordPayload(effects: readonly Effect[], write: { id: WriteId; reply: RecordedReply } | null, replyBytesMax: number): Uint8Array {
  return encodeWriteRecord(effects, write, replyBytesMax).payload;
}

/** The same, with the write as a reader of the record will see it (what the master's dedupe window observes at commit). */
export function encodeWriteRecord(effects: readonly Effect[], write: { id: WriteId; reply: RecordedReply } | null, replyBytesMax: number): { payload: Uint8Array; write: RecordWrite | null } {
  if (write === null) return { payload: encodeEffects(effects), write: null };
  const r = write.reply.ok ? write.reply.value : write.reply.code === undefined ? { err: write.reply.message } : { err: write.reply.message, code: write.reply.code };
  // Most replies are small: a bound without packing decides; only a reply near the limit is packed to be measured.
  const kept = packedBytesAtMost(r, replyBytesMax) <= replyBytesMax || packr.pack(r).length <= replyBytesMax;
  const w = kept ? { c: write.id.client, s: write.id.seq, r } : { c: write.id.client, s: write.id.seq, d: true };
  const seen: RecordWrite = kept ? { client: write.id.client, seq: write.id.seq, reply: write.reply, replyDropped: false } : { client: write.id.client, seq: write.id.seq, replyDropped: true };
  const payload = packEffects(effects, V2_HEAD, Buffer.concat([V2_W_KEY, packr.pack(w)])) ?? packr.pack({ v: PAYLOAD_V2, e: effects, w });
  return { payload, write: seen };
}

/**
 * An upper bound of `value`'s msgpack size (each header counted at its largest, 5 bytes; a number at 9), counted no
 * further than past `limit`: a reply is packed once, inside its record, not a second time to be measured.
 */
function packedBytesAtMost(value: unknown, limit: number): number {
  if (value === null || typeof value === "boolean") return 1;
  if (typeof value === "number" || typeof value === "bigint") return 9;
  if (typeof value === "string") return 5 + (value.length * 3 <= limit ? value.length * 3 : Buffer.byteLength(value));
  if (value instanceof Uint8Array) return 5 + value.length;
  // Anything else (not a reply Redis gives): past the limit, so that the caller measures it exactly.
  if (typeof value !== "object") return limit + 1;
  let bytes = 5;
  const parts = Array.isArray(value) ? value : Object.entries(value).flat();
  for (const part of parts) {
    bytes += packedBytesAtMost(part, limit);
    if (bytes > limit) return bytes;
  }
  return bytes;
}

/** The effects of either payload form; for callers that do not need the write id. */
export function decodeEffects(payload: Uint8Array): Effect[] {
  return decodeRecordPayload(payload).effects;
}

/** Either payload form, checked: a BAD_RECORD QjmError says what is wrong. */
export function decodeRecordPayload(payload: Uint8Array): RecordPayload {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (err) {
    badPayload(`not msgpack: ${(err as Error).message}`);
  }
  if (Array.isArray(value)) return { effects: checkEffects(value), write: null };
  if (typeof value !== "object" || value === null || value instanceof Uint8Array) badPayload("neither an array of effects nor a v2 map");
  const map = value as Record<string, unknown>;
  if (map.v !== PAYLOAD_V2) badPayload(`unknown payload version ${JSON.stringify(map.v)}`);
  if (!Array.isArray(map.e)) badPayload("v2 effects (e) are not an array");
  return { effects: checkEffects(map.e), write: map.w === undefined || map.w === null ? null : checkWrite(map.w) };
}

function checkEffects(value: unknown[]): Effect[] {
  return value.map((effect: unknown) => {
    if (!Array.isArray(effect) || effect.length === 0) badPayload("effect is not a non-empty array");
    return effect.map((arg: unknown) => {
      if (arg instanceof Uint8Array) return arg;
      if (typeof arg === "string") return Buffer.from(arg);
      return badPayload("effect argument is not a byte string");
    });
  });
}

function checkWrite(w: unknown): RecordWrite {
  if (typeof w !== "object" || w === null || Array.isArray(w) || w instanceof Uint8Array) badPayload("write (w) is not a map");
  const { c, s, r, d } = w as Record<string, unknown>;
  if (!isClientId(c)) badPayload("write client (w.c) is not 1..64 characters of [A-Za-z0-9_-]");
  if (typeof s !== "number" || !Number.isSafeInteger(s) || s < 1) badPayload("write seq (w.s) is not a positive safe integer");
  if (d !== undefined && d !== true) badPayload("write reply-dropped flag (w.d) is not true");
  if (d === true) {
    if (r !== undefined) badPayload("write has both a reply (w.r) and the reply-dropped flag (w.d)");
    return { client: c, seq: s, replyDropped: true };
  }
  return { client: c, seq: s, reply: checkReply(r), replyDropped: false };
}

function checkReply(r: unknown): RecordedReply {
  if (typeof r === "object" && r !== null && !Array.isArray(r) && !(r instanceof Uint8Array)) {
    const { err, code, ...rest } = r as Record<string, unknown>;
    if (Object.keys(rest).length > 0 || typeof err !== "string") badPayload("write reply (w.r) is a map but not { err: message, code? }");
    if (code === undefined) return { ok: false, message: err };
    if (typeof code !== "string" || !(code in ErrorCode)) badPayload("write reply error code (w.r.code) is not an error code");
    return { ok: false, message: err, code: code as ErrorCode };
  }
  return { ok: true, value: checkReplyValue(r, 0) };
}

function checkReplyValue(v: unknown, depth: number): ReplyValue {
  if (v === null || typeof v === "string" || v instanceof Uint8Array) return v;
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "bigint") return v;
  if (Array.isArray(v)) {
    if (depth >= REPLY_DEPTH_MAX) badPayload(`write reply nests deeper than ${REPLY_DEPTH_MAX}`);
    return v.map((item: unknown) => checkReplyValue(item, depth + 1));
  }
  if (depth > 0 && isReplyError(v) && Object.keys(v).length === 1) return { err: v.err };
  return badPayload(`write reply holds a ${typeof v}, not a Redis reply value`);
}

function checksum(buf: Uint8Array, headerOffset: number, payload: Uint8Array): number {
  const head = crc32(buf.subarray(headerOffset + 4, headerOffset + 20));
  return crc32(payload, head) >>> 0;
}

export function encodeRecord(txid: number, epoch: number, payload: Uint8Array): Buffer {
  assert(Number.isSafeInteger(txid) && txid >= 1, `txid must be a positive safe integer, got ${txid}`);
  assert(Number.isInteger(epoch) && epoch >= 1 && epoch <= 0xffffffff, `epoch out of range: ${epoch}`);
  assert(RECORD_HEADER_BYTES + payload.length <= RECORD_BYTES_MAX, `record of ${payload.length} bytes exceeds RECORD_BYTES_MAX`);
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  buf.writeUInt32BE(RECORD_MAGIC, 0);
  buf.writeUInt32BE(payload.length, 4);
  buf.writeBigUInt64BE(BigInt(txid), 8);
  buf.writeUInt32BE(epoch, 16);
  buf.set(payload, RECORD_HEADER_BYTES);
  buf.writeUInt32BE(checksum(buf, 0, payload), 20);
  return buf;
}

/** Why a scan stopped before the end of its buffer. */
export type ScanStop =
  /** The bytes left cannot hold the record they start (a torn write at the end of a file). */
  | { kind: "torn"; offset: number; reason: string }
  /** A record fails validation and is not at the very end: the data is damaged. */
  | { kind: "corrupt"; offset: number; reason: string };

export interface ScanResult {
  records: RecordView[];
  /** Bytes covered by the valid records from the start. */
  validBytes: number;
  stop?: ScanStop;
}

/** True when a complete, valid record starts at `offset`. */
function validRecordAt(buf: Uint8Array, view: DataView, offset: number): boolean {
  if (buf.length - offset < RECORD_HEADER_BYTES) return false;
  if (view.getUint32(offset) !== RECORD_MAGIC) return false;
  const length = view.getUint32(offset + 4);
  const end = offset + RECORD_HEADER_BYTES + length;
  if (length > RECORD_BYTES_MAX || end > buf.length) return false;
  const payload = buf.subarray(offset + RECORD_HEADER_BYTES, end);
  return checksum(buf, offset, payload) === view.getUint32(offset + 20);
}

/** True when some complete, valid record starts anywhere after `from`: damage before it is then in the middle, not a torn tail. */
function validRecordAfter(buf: Uint8Array, view: DataView, from: number): boolean {
  for (let i = from; i + RECORD_HEADER_BYTES <= buf.length; i++) {
    if (buf[i] === 0x51 && validRecordAt(buf, view, i)) return true;
  }
  return false;
}

/**
 * A run of `count` records that must start at `firstTxid` (a journal batch, a read's reply, a fan-out): framing,
 * checksums, the count, contiguous txids and, with `epochOk`, each record's epoch — one check for the journal node,
 * the replica's read and its fan-out buffer. The records, or why the run is refused.
 */
export function checkRun(buf: Uint8Array, count: number, firstTxid: number, epochOk?: (epoch: number) => boolean): { records: RecordView[] } | { reason: string } {
  const scan = scanRecords(buf);
  if (scan.stop !== undefined) return { reason: `record at offset ${scan.stop.offset}: ${scan.stop.reason}` };
  if (scan.records.length !== count) return { reason: `${scan.records.length} records where ${count} were announced` };
  for (let i = 0; i < scan.records.length; i++) {
    const r = scan.records[i];
    if (r.txid !== firstTxid + i) return { reason: `txid ${r.txid} where ${firstTxid + i} was expected` };
    if (epochOk !== undefined && !epochOk(r.epoch)) return { reason: `record ${r.txid} has epoch ${r.epoch}` };
  }
  return { records: scan.records };
}

/**
 * Reads consecutive records from the start of `buf`, checking framing and checksums.
 * A damaged record at the very end (nothing valid follows it) is a torn tail; anywhere else it is corruption.
 * `baseOffset` is added to reported offsets (the buffer's position in its file).
 */
export function scanRecords(buf: Uint8Array, baseOffset = 0): ScanResult {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const records: RecordView[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const problem = recordProblem(buf, view, offset);
    if (problem !== undefined) {
      const kind = validRecordAfter(buf, view, offset + 1) ? "corrupt" : "torn";
      return { records, validBytes: offset, stop: { kind, offset: baseOffset + offset, reason: problem } };
    }
    const length = RECORD_HEADER_BYTES + view.getUint32(offset + 4);
    records.push({
      txid: Number(view.getBigUint64(offset + 8)),
      epoch: view.getUint32(offset + 16),
      offset: baseOffset + offset,
      length,
      payload: buf.subarray(offset + RECORD_HEADER_BYTES, offset + length),
    });
    offset += length;
  }
  return { records, validBytes: offset };
}

function recordProblem(buf: Uint8Array, view: DataView, offset: number): string | undefined {
  if (buf.length - offset < RECORD_HEADER_BYTES) return `${buf.length - offset} bytes left, a header needs ${RECORD_HEADER_BYTES}`;
  if (view.getUint32(offset) !== RECORD_MAGIC) return "bad magic";
  const length = view.getUint32(offset + 4);
  if (length > RECORD_BYTES_MAX) return `payload length ${length} exceeds RECORD_BYTES_MAX`;
  if (offset + RECORD_HEADER_BYTES + length > buf.length) return `payload of ${length} bytes runs past the end`;
  const payload = buf.subarray(offset + RECORD_HEADER_BYTES, offset + RECORD_HEADER_BYTES + length);
  if (checksum(buf, offset, payload) !== view.getUint32(offset + 20)) return "checksum mismatch";
  return undefined;
}

/**
 * The records of a read reply from `fromTxid` to at most `toTxid`, checked: checksums, contiguous txids starting at
 * fromTxid. Null when the bytes hold none of them or are damaged: the reader asks another node.
 */
export function recordRange(bytes: Uint8Array, fromTxid: number, toTxid: number): { bytes: Uint8Array; records: RecordView[] } | null {
  const scan = scanRecords(bytes);
  if (scan.stop !== undefined) return null;
  const records = scan.records.filter((rec) => rec.txid <= toTxid);
  if (records.length === 0 || records.some((rec, i) => rec.txid !== fromTxid + i)) return null;
  const end = records[records.length - 1];
  return { bytes: bytes.subarray(0, end.offset + end.length), records };
}

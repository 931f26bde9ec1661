/**
 * The editlog record: the unit the master journals, journal nodes validate and store, and replicas apply.
 *
 *   offset  size  field
 *   0       4     magic "QJM1"
 *   4       4     payload length (u32 BE)
 *   8       8     txid (u64 BE, < 2^53)
 *   16      4     epoch of the writer (u32 BE)
 *   20      4     CRC32 of bytes [4, 20) and of the payload
 *   24      n     payload: msgpack array of effects, each an array of byte strings ([command, ...args])
 *
 * A batch, a segment file and a read reply are all plain concatenations of records.
 */
import { crc32 } from "node:zlib";
import { Packr } from "msgpackr";
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

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });

export function encodeEffects(effects: readonly Effect[]): Uint8Array {
  return packr.pack(effects);
}

export function decodeEffects(payload: Uint8Array): Effect[] {
  const value: unknown = packr.unpack(payload);
  if (!Array.isArray(value)) throw new Error("record payload is not an array");
  return value.map((effect: unknown) => {
    if (!Array.isArray(effect) || effect.length === 0) throw new Error("effect is not a non-empty array");
    return effect.map((arg: unknown) => {
      if (arg instanceof Uint8Array) return arg;
      if (typeof arg === "string") return Buffer.from(arg);
      throw new Error("effect argument is not a byte string");
    });
  });
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

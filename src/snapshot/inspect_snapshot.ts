/**
 * Offline snapshot viewer: what a journal node's `snapshot_<txid>.rdb` holds and whether it is sound, without a
 * journal node, NATS or Redis (HDFS's `oiv` does this for an fsimage; here only a summary, no RDB parser):
 * the RDB's magic and version, its CRC-64 trailer, and — when the descriptor `snapshot_<txid>.json` is beside it —
 * its size and SHA-256. `RdbScan`, `inspectSnapshot` and `formatSnapshotReport` are pure; `runInspectSnapshot`
 * streams the file through them (memory bounded whatever the snapshot's size) and prints the report.
 */
import { createHash, type Hash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { parseSnapshotInfo, type SnapshotInfo } from "../protocol/messages.js";
import { Crc64, RDB_CHECKSUM_BYTES, trailerChecksum } from "../redis/rdb_checksum.js";
import { RDB_MAGIC } from "../redis/rdb_loader.js";
import { assert } from "../util/assert.js";
import { descriptorName, parseSnapshotName, snapshotFileName } from "./snapshot_store.js";

/** "REDIS" and the version as 4 ASCII digits. */
const RDB_HEADER_BYTES = RDB_MAGIC.length + 4;
/** The opcode before the checksum trailer (RDB_OPCODE_EOF). */
const RDB_OPCODE_EOF = 0xff;
/** Keys are counted from the first database's RESIZEDB header only if it lies within this many leading bytes. */
export const KEY_COUNT_PREFIX_BYTES = 64 * 1024;
/** Bytes read from the file at a time. */
const READ_CHUNK_BYTES = 256 * 1024;

export interface RdbScanResult {
  bytes: number;
  /** The first bytes (at most KEY_COUNT_PREFIX_BYTES): the header and the opcodes before the first key. */
  prefix: Uint8Array;
  /** CRC-64 of every byte but the last 8, and those last 8 (shorter when the file is). */
  crc: bigint;
  trailer: Uint8Array;
  /** The last byte before the trailer, null when there is none. */
  beforeTrailer: number | null;
  sha256: string;
}

/**
 * One pass over an RDB, chunk by chunk: SHA-256 of the whole, CRC-64 of all but the trailer (the last 8 bytes
 * are held back until the end proves they are the trailer), and the leading bytes. Holds at most the prefix and 8
 * bytes, whatever the size.
 */
export class RdbScan {
  private bytes = 0;
  private readonly crc = new Crc64();
  private readonly hash: Hash = createHash("sha256");
  private readonly prefixParts: Buffer[] = [];
  private prefixBytes = 0;
  private held: Buffer = Buffer.alloc(0);
  private lastFed: number | null = null;
  private finished = false;

  update(chunk: Uint8Array): void {
    assert(!this.finished, "RdbScan updated after finish");
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.bytes += buf.length;
    this.hash.update(buf);
    if (this.prefixBytes < KEY_COUNT_PREFIX_BYTES) {
      const part = Buffer.from(buf.subarray(0, KEY_COUNT_PREFIX_BYTES - this.prefixBytes));
      this.prefixParts.push(part);
      this.prefixBytes += part.length;
    }
    // Of held + chunk, all but the last 8 bytes are body: feed them to the CRC and keep the 8 back.
    const total = this.held.length + buf.length;
    if (total <= RDB_CHECKSUM_BYTES) {
      this.held = Buffer.concat([this.held, buf]);
      return;
    }
    const fromHeld = Math.min(this.held.length, total - RDB_CHECKSUM_BYTES);
    const fromChunk = total - RDB_CHECKSUM_BYTES - fromHeld;
    this.feed(this.held.subarray(0, fromHeld));
    this.feed(buf.subarray(0, fromChunk));
    this.held = Buffer.concat([this.held.subarray(fromHeld), buf.subarray(fromChunk)]);
    assert(this.held.length === RDB_CHECKSUM_BYTES, `held ${this.held.length} bytes back, not the trailer's ${RDB_CHECKSUM_BYTES}`);
  }

  finish(): RdbScanResult {
    assert(!this.finished, "RdbScan finished twice");
    this.finished = true;
    return {
      bytes: this.bytes,
      prefix: Buffer.concat(this.prefixParts),
      crc: this.crc.value,
      trailer: this.held,
      beforeTrailer: this.lastFed,
      sha256: this.hash.digest("hex"),
    };
  }

  private feed(body: Buffer): void {
    if (body.length === 0) return;
    this.crc.update(body);
    this.lastFed = body[body.length - 1];
  }
}

/** The descriptor beside the RDB: absent, unreadable as a descriptor (the reason), or its content. */
export type DescriptorInput = { kind: "absent" } | { kind: "invalid"; file: string; reason: string } | { kind: "present"; file: string; info: SnapshotInfo };

export interface SnapshotReport {
  file: string;
  kind: "snapshot";
  /** The descriptor read beside the file; null when there is none (or it is not valid JSON of a descriptor). */
  descriptorFile: string | null;
  /** From the file name, else from the descriptor; null for an RDB that is not named `snapshot_<txid>.rdb`. */
  txid: number | null;
  bytes: number;
  /** The RDB format version (Redis 7.0 writes 10); null when the header is not an RDB's. */
  rdbVersion: number | null;
  /** The CRC-64 trailer: "absent" when Redis saved with `rdbchecksum no` (a trailer of 0). */
  checksum: "ok" | "bad" | "absent";
  sha256: string;
  /** The SHA-256 against the descriptor's: "unchecked" without a descriptor. */
  sha256Check: "ok" | "bad" | "unchecked";
  /**
   * Keys of the first database saved (db 0; db 1 with 1 key for a replica's snapshot of an empty keyspace: its
   * `__qjm:applied` key, apply_records.ts APPLIED_DB), as the
   * RDB's RESIZEDB header gives them; null when that header is not in the first KEY_COUNT_PREFIX_BYTES or not there.
   */
  keys: { db: number; keys: number; expires: number } | null;
  /** Empty when the snapshot is sound. */
  problems: string[];
}

export function inspectSnapshot(scan: RdbScanResult, fileName: string, descriptor: DescriptorInput): SnapshotReport {
  const problems: string[] = [];
  const named = parseSnapshotName(path.basename(fileName));
  const nameTxid = named?.part === "data" ? named.txid : null;

  const header = Buffer.from(scan.prefix.subarray(0, RDB_HEADER_BYTES));
  let rdbVersion: number | null = null;
  if (header.length < RDB_HEADER_BYTES || !header.subarray(0, RDB_MAGIC.length).equals(RDB_MAGIC)) {
    problems.push(`not an RDB: starts with ${JSON.stringify(header.toString("latin1"))}, not "REDIS" and a version`);
  } else if (!/^\d{4}$/.test(header.subarray(RDB_MAGIC.length).toString("latin1"))) {
    problems.push(`RDB version ${JSON.stringify(header.subarray(RDB_MAGIC.length).toString("latin1"))} is not 4 digits`);
  } else {
    rdbVersion = Number(header.subarray(RDB_MAGIC.length).toString("latin1"));
  }

  let checksum: SnapshotReport["checksum"] = "bad";
  if (scan.bytes < RDB_HEADER_BYTES + 1 + RDB_CHECKSUM_BYTES) {
    problems.push(`${scan.bytes} bytes: too short for an RDB's header, EOF opcode and checksum`);
  } else {
    if (scan.beforeTrailer !== RDB_OPCODE_EOF) {
      problems.push(`no EOF opcode before the checksum at offset ${scan.bytes - RDB_CHECKSUM_BYTES - 1} (a truncated or padded file)`);
    }
    const stored = trailerChecksum(scan.trailer);
    if (stored === 0n) checksum = "absent";
    else if (stored === scan.crc) checksum = "ok";
    else problems.push(`CRC-64 mismatch: the trailer at offset ${scan.bytes - RDB_CHECKSUM_BYTES} says ${hex64(stored)}, the bytes give ${hex64(scan.crc)}`);
  }

  let sha256Check: SnapshotReport["sha256Check"] = "unchecked";
  let txid = nameTxid;
  if (descriptor.kind === "invalid") problems.push(`descriptor ${descriptor.file} is not valid: ${descriptor.reason}`);
  if (descriptor.kind === "present") {
    const info = descriptor.info;
    txid ??= info.txid;
    if (nameTxid !== null && info.txid !== nameTxid) problems.push(`descriptor says txid ${info.txid}, the file name ${nameTxid}`);
    if (info.bytes !== scan.bytes) problems.push(`descriptor says ${info.bytes} bytes, the file has ${scan.bytes}`);
    sha256Check = info.sha256 === scan.sha256 ? "ok" : "bad";
    if (sha256Check === "bad") problems.push(`SHA-256 mismatch: the descriptor says ${info.sha256}, the file gives ${scan.sha256}`);
  }

  return {
    file: fileName,
    kind: "snapshot",
    descriptorFile: descriptor.kind === "present" ? descriptor.file : null,
    txid,
    bytes: scan.bytes,
    rdbVersion,
    checksum,
    sha256: scan.sha256,
    sha256Check,
    keys: rdbVersion === null ? null : countKeys(scan.prefix),
    problems,
  };
}

function hex64(v: bigint): string {
  return `0x${v.toString(16).padStart(16, "0")}`;
}

// ---- key count: the opcodes before the first key (rdb.h), never a value ----

const OPCODE_FUNCTION2 = 0xf5;
const OPCODE_AUX = 0xfa;
const OPCODE_RESIZEDB = 0xfb;
const OPCODE_SELECTDB = 0xfe;

/** A cursor over the prefix; every read returns null past its end, so a short or odd prefix only means "not counted". */
class PrefixReader {
  constructor(
    private readonly bytes: Uint8Array,
    public pos: number,
  ) {}

  byte(): number | null {
    return this.pos < this.bytes.length ? this.bytes[this.pos++] : null;
  }

  skip(n: number): boolean {
    this.pos += n;
    return this.pos <= this.bytes.length;
  }

  /** rdbLoadLen: 6-, 14-, 32- or 64-bit lengths; an encoded-string marker (0b11……) gives {special}. */
  length(): { value: number } | { special: number } | null {
    const first = this.byte();
    if (first === null) return null;
    const type = first >> 6;
    if (type === 0) return { value: first & 0x3f };
    if (type === 1) {
      const next = this.byte();
      return next === null ? null : { value: ((first & 0x3f) << 8) | next };
    }
    if (type === 3) return { special: first & 0x3f };
    const width = first === 0x80 ? 4 : first === 0x81 ? 8 : 0;
    if (width === 0 || this.pos + width > this.bytes.length) return null;
    let value = 0;
    for (let i = 0; i < width; i++) value = value * 256 + this.bytes[this.pos++];
    return Number.isSafeInteger(value) ? { value } : null;
  }

  plainLength(): number | null {
    const len = this.length();
    return len !== null && "value" in len ? len.value : null;
  }

  /** rdbGenericLoadStringObject, skipped: raw, integer-encoded (1, 2, 4 bytes) or LZF-compressed. */
  skipString(): boolean {
    const len = this.length();
    if (len === null) return false;
    if ("value" in len) return this.skip(len.value);
    if (len.special <= 2) return this.skip(1 << len.special);
    if (len.special !== 3) return false;
    const compressed = this.plainLength();
    const uncompressed = this.plainLength();
    return compressed !== null && uncompressed !== null && this.skip(compressed);
  }
}

/**
 * The first database's key count from its RESIZEDB opcode (Redis writes it after SELECTDB with the exact dictionary
 * sizes), reading only aux fields and functions before it; 0 keys when EOF comes first. Null on anything else
 * (a module's aux data, an older format, a prefix too short).
 */
export function countKeys(prefix: Uint8Array): SnapshotReport["keys"] {
  const r = new PrefixReader(prefix, RDB_HEADER_BYTES);
  let db = 0;
  for (;;) {
    const op = r.byte();
    if (op === null) return null;
    if (op === RDB_OPCODE_EOF) return { db, keys: 0, expires: 0 };
    if (op === OPCODE_AUX) {
      if (!r.skipString() || !r.skipString()) return null;
    } else if (op === OPCODE_FUNCTION2) {
      if (!r.skipString()) return null;
    } else if (op === OPCODE_SELECTDB) {
      const n = r.plainLength();
      if (n === null) return null;
      db = n;
    } else if (op === OPCODE_RESIZEDB) {
      const keys = r.plainLength();
      const expires = r.plainLength();
      return keys === null || expires === null ? null : { db, keys, expires };
    } else {
      return null;
    }
  }
}

export function formatSnapshotReport(report: SnapshotReport): string {
  const keys = report.keys === null ? "not counted" : `${report.keys.keys} in db ${report.keys.db} (${report.keys.expires} with a TTL)`;
  const sha =
    report.sha256Check === "unchecked" ? `${report.sha256} (unchecked: no descriptor beside the file)` : `${report.sha256Check} (${report.sha256}, descriptor ${report.descriptorFile})`;
  const lines = [
    `${report.file}  kind=snapshot  txid=${report.txid ?? "unknown"}  bytes=${report.bytes}  rdb-version=${report.rdbVersion ?? "none"}`,
    `checksum: ${report.checksum === "absent" ? "absent (saved with rdbchecksum no)" : report.checksum}`,
    `sha256: ${sha}`,
    `keys: ${keys}`,
  ];
  if (report.problems.length === 0) lines.push("problems: none");
  else lines.push("problems:", ...report.problems.map((p) => `  ${p}`));
  return lines.join("\n");
}

/** Whether `inspect` should treat the file as a snapshot, by name: an RDB (an upload's `.rdb.tmp` too) or a snapshot's descriptor. */
export function isSnapshotFileName(file: string): boolean {
  const base = path.basename(file);
  return /\.rdb(\.tmp)?$/.test(base) || parseSnapshotName(base)?.part === "descriptor";
}

async function readDescriptor(file: string): Promise<DescriptorInput> {
  let raw: string;
  try {
    raw = await fsp.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
    throw err;
  }
  try {
    return { kind: "present", file, info: parseSnapshotInfo(JSON.parse(raw)) };
  } catch (err) {
    return { kind: "invalid", file, reason: (err as Error).message };
  }
}

/** `redis-qjm inspect <snapshot .rdb or .json>`: 0 when sound, 1 when it has a problem, 2 when a file cannot be read. */
export async function runInspectSnapshot(file: string, json: boolean): Promise<number> {
  // Given the descriptor, inspect the RDB it describes; given the RDB, use the descriptor beside it if any.
  const named = parseSnapshotName(path.basename(file));
  const dir = path.dirname(file);
  const rdbFile = named?.part === "descriptor" ? path.join(dir, snapshotFileName(named.txid)) : file;
  const descriptorFile = named !== null ? path.join(dir, descriptorName(named.txid)) : null;
  const scan = new RdbScan();
  let descriptor: DescriptorInput = { kind: "absent" };
  try {
    if (descriptorFile !== null) descriptor = await readDescriptor(descriptorFile);
    for await (const chunk of fs.createReadStream(rdbFile, { highWaterMark: READ_CHUNK_BYTES })) scan.update(chunk as Buffer);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    console.error(`cannot read ${e.path ?? rdbFile}: ${e.code ?? e.message}`);
    return 2;
  }
  const report = inspectSnapshot(scan.finish(), rdbFile, descriptor);
  console.log(json ? JSON.stringify(report, null, 2) : formatSnapshotReport(report));
  return report.problems.length === 0 ? 0 : 1;
}

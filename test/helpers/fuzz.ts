/**
 * Hostile messages for every subject, from a seed: raw bytes, msgpack with lying length headers, well-formed requests
 * of every type with boundary and out-of-range fields, and mutations (flipped, cut, extended) of those. The same seed
 * gives the same messages, so a failure names a seed that replays it.
 */
import { encode } from "../../src/protocol/codec.js";
import { subjects } from "../../src/protocol/subjects.js";
import { Prng } from "../../src/sim/prng.js";

/** Integers at and past every bound the protocol has: u32 epochs, safe integers, negatives, fractions. */
export const BOUNDARY_NUMBERS: readonly number[] = [
  0, 1, 2, -1, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1.5, -0.5,
  Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e300,
];

/** Every request type any subject knows (journal, snapshot), plus names that are almost right. */
export const REQUEST_TYPES: readonly string[] = [
  "getState", "newEpoch", "startSegment", "journal", "prepareRecovery", "recoveryAppend", "acceptRecovery", "finalize", "format",
  "getManifest", "snapshotDurable", "syncSegment", "markRestored", "read", "snapshotBegin", "snapshotChunk", "snapshotEnd",
  "snapshotList", "snapshotRead", "GETSTATE", "", "__proto__", "constructor",
];

/** Field names the requests use, so structured messages reach deep into validation. */
const FIELDS: readonly string[] = [
  "epoch", "txid", "segmentTxid", "firstTxid", "count", "records", "committedTxid", "startTxid", "endTxid", "clusterId", "restoring",
  "segment", "fromTxid", "bytesMax", "recordsMax", "uncommitted", "bytes", "sha256", "offset", "data", "length", "inProgress", "ok",
];

/** msgpack headers that announce far more than follows (bin32, str32, array32, map32, ext32). */
const LYING_HEADERS: readonly number[][] = [
  [0xc6, 0xff, 0xff, 0xff, 0xff],
  [0xdb, 0x7f, 0xff, 0xff, 0xff],
  [0xdd, 0xff, 0xff, 0xff, 0xff],
  [0xdf, 0xff, 0xff, 0xff, 0xff],
  [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
  [0xdc, 0xff, 0xff],
];

export interface FuzzerOptions {
  /**
   * Epoch fields at or above this are replaced by small ones. A user allowed to send writer requests (the master's)
   * that promises epoch 2^32−1 fences every writer for good: that is the authority its credentials carry, not bad
   * input, so fuzzing as such a user keeps epochs below the top of the range to let the cluster go on.
   */
  epochCeiling?: number;
}

export class Fuzzer {
  private readonly rng: Prng;

  constructor(
    seed: number,
    private readonly options: FuzzerOptions = {},
  ) {
    this.rng = new Prng(seed);
  }

  /** One hostile body. */
  message(): Uint8Array {
    const kind = this.rng.int(0, 9);
    if (kind === 0) return this.rawBytes();
    if (kind === 1) return this.lyingHeader();
    if (kind === 2) return encode(this.value(3));
    if (kind <= 5) return encode(this.request());
    if (kind <= 7) return this.mutate(encode(this.request()));
    return encode(this.writeLike());
  }

  private rawBytes(): Uint8Array {
    const n = this.rng.chance(0.05) ? this.rng.int(4096, 65536) : this.rng.int(0, 256);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.rng.int(0, 255);
    return out;
  }

  private lyingHeader(): Uint8Array {
    const head = this.rng.pick(LYING_HEADERS);
    const tail = Array.from({ length: this.rng.int(0, 16) }, () => this.rng.int(0, 255));
    return Uint8Array.from([...head, ...tail]);
  }

  number(): number {
    return this.rng.chance(0.7) ? this.rng.pick(BOUNDARY_NUMBERS) : this.rng.int(0, 1_000_000);
  }

  /** A random msgpack-able value, nested at most `depth` deep. */
  value(depth: number): unknown {
    const kind = this.rng.int(depth > 0 ? 0 : 3, 8);
    if (kind === 0) return Array.from({ length: this.rng.int(0, 4) }, () => this.value(depth - 1));
    if (kind === 1 || kind === 2) return Object.fromEntries(Array.from({ length: this.rng.int(0, 4) }, () => [this.rng.pick(FIELDS), this.value(depth - 1)]));
    if (kind === 3) return this.number();
    if (kind === 4) return this.rng.chance(0.5);
    if (kind === 5) return null;
    if (kind === 6) return this.rng.chance(0.1) ? "x".repeat(this.rng.int(200, 5000)) : this.rng.pick(["", "default", "jn1", "SET", "\u0000", "ünïcödé"]);
    return this.rawBytes();
  }

  /** A request of a known type whose fields are boundary numbers, wrong types, or missing. */
  request(): Record<string, unknown> {
    const req: Record<string, unknown> = { type: this.rng.pick(REQUEST_TYPES) };
    for (const field of FIELDS) {
      if (!this.rng.chance(0.6)) continue;
      req[field] = this.rng.chance(0.75) ? this.number() : this.value(1);
    }
    if (this.rng.chance(0.5)) req.segment = { startTxid: this.number(), endTxid: this.number(), inProgress: this.rng.chance(0.5) };
    const ceiling = this.options.epochCeiling;
    if (ceiling !== undefined && typeof req.epoch === "number" && !(req.epoch < ceiling)) req.epoch = this.rng.int(0, 1000);
    return req;
  }

  /** A client write's shape: a command array with odd arguments. */
  private writeLike(): unknown[] {
    const commands = ["SET", "INCR", "DEL", "EVAL", "PUBLISH", "SELECT", "FLUSHALL", "CONFIG", "SHUTDOWN", "MULTI", "REPLICAOF", "DEBUG"];
    return [this.rng.pick(commands), ...Array.from({ length: this.rng.int(0, 5) }, () => (this.rng.chance(0.7) ? this.rng.pick(["k", "0", "1", "-1"]) : this.value(0)))];
  }

  /** Flips, cuts or extends an encoded message. */
  private mutate(body: Uint8Array): Uint8Array {
    const out = Uint8Array.from(body);
    const flips = this.rng.int(1, 4);
    for (let i = 0; i < flips && out.length > 0; i++) out[this.rng.int(0, out.length - 1)] ^= 1 << this.rng.int(0, 7);
    if (this.rng.chance(0.3)) return out.subarray(0, this.rng.int(0, out.length));
    if (this.rng.chance(0.2)) return Uint8Array.from([...out, ...this.rawBytes().subarray(0, 32)]);
    return out;
  }
}

/** Every subject the cluster uses, with every actor id and role filled in. */
export function everySubject(cluster: string, ids: readonly string[]): string[] {
  const s = subjects(cluster);
  const out = new Set<string>();
  const roles = ["master", "journal", "replica"] as const;
  for (const value of Object.values(s)) {
    if (typeof value === "string") out.add(value.replace(/>$/, "x"));
    else if (value.length === 2) for (const role of roles) for (const id of ids) out.add((value as (r: string, i: string) => string)(role, id));
    else for (const id of ids) out.add(value === s.inbox ? `${s.inbox(id)}.x` : (value as (i: string) => string)(id));
  }
  return [...out];
}

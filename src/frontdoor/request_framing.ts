/**
 * Requests off a front-door connection (pure), read as Redis 7.0 reads them (RequestReader below): RESP multibulk
 * requests (`*<n>` then n bulk strings: what redis-cli, ioredis and redis-benchmark send) and inline commands (a plain
 * line, what a telnet user types) split as Redis splits them (sdssplitargs: spaces, "double quotes" with \n \r \t \b
 * \a \xHH escapes, 'single quotes' with \' only). Bounded: one bulk string at most `requestBytesMax`, a request's bytes
 * that and RESP_REQUEST_FRAMING_SLACK_BYTES; Redis's own bounds besides (config.ts RESP_MULTIBULK_ITEMS_MAX…).
 *
 * A request that breaks the protocol throws DoorProtocolError: the door answers `-ERR Protocol error: …` and closes
 * the connection, as Redis does (the byte stream cannot be trusted after it).
 */
import { RESP_INLINE_BYTES_MAX, RESP_MULTIBULK_ITEMS_MAX, RESP_REQUEST_FRAMING_SLACK_BYTES, RESP_UNAUTHENTICATED_BULK_BYTES_MAX, RESP_UNAUTHENTICATED_ITEMS_MAX } from "../config/config.js";

export class DoorProtocolError extends Error {
  override name = "DoorProtocolError";
}

/** Splits an inline request line as Redis does; null when its quotes are unbalanced. */
export function splitInlineArgs(line: Buffer): Buffer[] | null {
  const args: Buffer[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    while (i < n && isSpace(line[i])) i++;
    if (i >= n) return args;
    const arg: number[] = [];
    let quote: 0 | 0x22 | 0x27 = 0;
    for (;;) {
      if (i >= n) {
        if (quote !== 0) return null;
        break;
      }
      const c = line[i];
      if (quote === 0x22 && c === 0x5c /* \ */ && i + 1 < n) {
        i = escapeIn(line, i, arg);
        continue;
      }
      if (quote === 0x27 && c === 0x5c && i + 1 < n && line[i + 1] === 0x27) {
        arg.push(0x27);
        i += 2;
        continue;
      }
      if (quote !== 0 && c === quote) {
        // A closing quote must end the argument.
        if (i + 1 < n && !isSpace(line[i + 1])) return null;
        i++;
        break;
      }
      if (quote === 0 && isSpace(c)) break;
      if (quote === 0 && (c === 0x22 || c === 0x27)) quote = c;
      else arg.push(c);
      i++;
    }
    args.push(Buffer.from(arg));
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** One escape inside double quotes at `i` (the backslash); returns the index after it. */
function escapeIn(line: Buffer, i: number, arg: number[]): number {
  const next = line[i + 1];
  if (next === 0x78 /* x */ && i + 3 < line.length && isHex(line[i + 2]) && isHex(line[i + 3])) {
    arg.push(parseInt(line.toString("latin1", i + 2, i + 4), 16));
    return i + 4;
  }
  const escapes: Record<number, number> = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07 };
  arg.push(escapes[next] ?? next);
  return i + 2;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

export interface RequestLimits {
  /** Largest bulk string; a request's bytes may pass it by RESP_REQUEST_FRAMING_SLACK_BYTES (its headers). */
  requestBytesMax: number;
  /** The connection has not authenticated yet: Redis's small bounds until `authenticated()`. */
  unauthenticated?: boolean;
}

const CR = 0x0d;
const LF = 0x0a;
/** Bytes of arguments' offsets kept at first for a request not yet whole (grows by doubling). */
const OFFSETS_INITIAL = 16;
/** A buffer this large is let go once nothing is left in it (most connections send small requests). */
const BUFFER_KEEP_BYTES = 64 * 1024;

/**
 * Reads requests as Redis 7.0's processInputBuffer does (networking.c), so that every byte sequence gets Redis's
 * answer: a request starting with `*` is multibulk, anything else an inline line. Header lines end at the first `\r`
 * (the byte after it is skipped unread, as Redis does), numbers are Redis's string2ll (no sign but `-`, no leading
 * zero, at most 20 characters), a bulk string is taken with the two bytes after it whatever they are, and a line end
 * searched past a NUL byte is not found (Redis's strchr). The arguments of a request not yet whole are kept as offsets
 * into the buffer, not as objects: a `*<n>` of tiny arguments costs 8 bytes each until it is all here.
 */
export class RequestReader {
  private buf: Buffer = Buffer.alloc(0);
  /** Unread bytes are buf[pos, end); the request being read started at reqStart. */
  private pos = 0;
  private end = 0;
  private reqStart = 0;
  /** Arguments still to come of the multibulk request being read (0: none being read). */
  private multibulk = 0;
  /** The announced length of the bulk string being read; -1 while its header is not read. */
  private bulkLen = -1;
  /** (start, length) of each argument read so far, relative to reqStart. */
  private offsets = new Int32Array(0);
  private argc = 0;
  private unauthenticated: boolean;

  constructor(private readonly limits: RequestLimits) {
    this.unauthenticated = limits.unauthenticated === true;
  }

  /** Bytes buffered and not yet taken as a request. */
  get pendingBytes(): number {
    return this.end - this.reqStart;
  }

  push(chunk: Uint8Array): void {
    if (this.end + chunk.length > this.buf.length) this.makeRoom(chunk.length);
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next request's arguments (an empty list for an empty request, which gets no reply), or undefined. */
  next(): Buffer[] | undefined {
    if (this.multibulk === 0) {
      if (this.pos >= this.end) return this.idle();
      this.reqStart = this.pos;
      if (this.buf[this.pos] !== 0x2a /* * */) return this.inline();
      const count = this.multibulkHeader();
      if (count === undefined) return undefined;
      if (count <= 0) return this.taken([]);
      this.multibulk = count;
      this.argc = 0;
    }
    while (this.multibulk > 0) {
      if (this.bulkLen === -1 && !this.bulkHeader()) return undefined;
      if (this.end - this.pos < this.bulkLen + 2) return undefined;
      this.addArg(this.pos - this.reqStart, this.bulkLen);
      this.pos += this.bulkLen + 2;
      this.bulkLen = -1;
      this.multibulk--;
    }
    return this.taken(this.args());
  }

  /** The connection authenticated: the full bounds from the next header on, as Redis checks them per header. */
  authenticated(): void {
    this.unauthenticated = false;
  }

  /** Redis's processInlineBuffer: a line up to `\n` (a `\r` before it dropped), split as sdssplitargs does. */
  private inline(): Buffer[] | undefined {
    const lf = this.find(LF);
    if (lf === -1) {
      if (this.end - this.pos > RESP_INLINE_BYTES_MAX) throw new DoorProtocolError("too big inline request");
      return undefined;
    }
    const lineEnd = lf > this.pos && this.buf[lf - 1] === CR ? lf - 1 : lf;
    const args = splitInlineArgs(this.buf.subarray(this.pos, lineEnd));
    if (args === null) throw new DoorProtocolError("unbalanced quotes in request");
    this.pos = lf + 1;
    return this.taken(args);
  }

  /** `*<n>\r?`: the count, or undefined until the line is here. */
  private multibulkHeader(): number | undefined {
    const cr = this.headerLine("too big mbulk count string");
    if (cr === -1) return undefined;
    const n = headerNumber(this.buf, this.pos + 1, cr);
    if (n === null || n > RESP_MULTIBULK_ITEMS_MAX) throw new DoorProtocolError("invalid multibulk length");
    if (n > RESP_UNAUTHENTICATED_ITEMS_MAX && this.unauthenticated) throw new DoorProtocolError("unauthenticated multibulk length");
    this.pos = cr + 2;
    return Number(n);
  }

  /** `$<len>\r?`: true once read (bulkLen set). */
  private bulkHeader(): boolean {
    const cr = this.headerLine("too big bulk count string");
    if (cr === -1) return false;
    const first = this.buf[this.pos];
    if (first !== 0x24 /* $ */) throw new DoorProtocolError(`expected '$', got '${String.fromCharCode(first).replace(/[\r\n]/, " ")}'`);
    const n = headerNumber(this.buf, this.pos + 1, cr);
    if (n === null || n < 0 || n > this.limits.requestBytesMax) throw new DoorProtocolError("invalid bulk length");
    if (n > RESP_UNAUTHENTICATED_BULK_BYTES_MAX && this.unauthenticated) throw new DoorProtocolError("unauthenticated bulk length");
    this.pos = cr + 2;
    this.bulkLen = Number(n);
    // Refused as soon as it is known not to fit, before its bytes are buffered.
    if (this.pos + this.bulkLen + 2 - this.reqStart > this.limits.requestBytesMax + RESP_REQUEST_FRAMING_SLACK_BYTES) {
      throw new DoorProtocolError(`request larger than ${this.limits.requestBytesMax} bytes`);
    }
    return true;
  }

  /** The `\r` ending the header line at pos, once the byte after it is here too; -1 meanwhile (or `tooBig`). */
  private headerLine(tooBig: string): number {
    const cr = this.find(CR);
    if (cr === -1) {
      if (this.end - this.pos > RESP_INLINE_BYTES_MAX) throw new DoorProtocolError(tooBig);
      return -1;
    }
    return cr > this.end - 2 ? -1 : cr;
  }

  /** The first `byte` from pos, or -1 when a NUL or the end comes first (Redis's strchr on its query buffer). */
  private find(byte: number): number {
    // A loop, not two subarrays and indexOf per header: a header is a few bytes, and a 10k-argument request has 10k.
    const buf = this.buf;
    for (let i = this.pos; i < this.end; i++) {
      const c = buf[i];
      if (c === byte) return i;
      if (c === 0) return -1;
    }
    return -1;
  }

  private addArg(start: number, length: number): void {
    if (this.offsets.length < 2 * (this.argc + 1)) {
      const grown = new Int32Array(Math.max(OFFSETS_INITIAL, this.offsets.length * 2));
      grown.set(this.offsets.subarray(0, 2 * this.argc));
      this.offsets = grown;
    }
    this.offsets[2 * this.argc] = start;
    this.offsets[2 * this.argc + 1] = length;
    this.argc++;
  }

  /** The whole request's arguments: one copy of its bytes, a view per argument. */
  private args(): Buffer[] {
    const copy = Buffer.from(this.buf.subarray(this.reqStart, this.pos));
    const out = new Array<Buffer>(this.argc);
    for (let i = 0; i < this.argc; i++) out[i] = copy.subarray(this.offsets[2 * i], this.offsets[2 * i] + this.offsets[2 * i + 1]);
    this.argc = 0;
    if (this.offsets.length > 1024) this.offsets = new Int32Array(0);
    return out;
  }

  private taken(args: Buffer[]): Buffer[] {
    this.reqStart = this.pos;
    return args;
  }

  /** Nothing unread: a large buffer is let go. */
  private idle(): undefined {
    this.pos = this.end = this.reqStart = 0;
    if (this.buf.length > BUFFER_KEEP_BYTES) this.buf = Buffer.alloc(0);
    return undefined;
  }

  /** Moves the request being read to the front, growing the buffer when it still would not hold `more` bytes. */
  private makeRoom(more: number): void {
    const kept = this.end - this.reqStart;
    const size = kept + more <= this.buf.length / 2 ? this.buf.length : Math.max(256, 2 * (kept + more));
    const next = size === this.buf.length ? this.buf : Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, this.reqStart, this.end);
    this.buf = next;
    this.pos -= this.reqStart;
    this.end = kept;
    this.reqStart = 0;
  }
}

/**
 * string2ll of a header's number as a number (null: refused). Short ones are read digit by digit (a 10k-argument
 * request has 10k headers: a string, a regular expression and a BigInt each cost the door's loop); a value past
 * ±2^53 comes out rounded, which every bound it is checked against refuses as it did exactly.
 */
export function headerNumber(buf: Buffer, from: number, to: number): number | null {
  if (to - from === 0 || to - from > 15) return toNumber(string2ll(buf, from, to));
  const negative = buf[from] === 0x2d;
  let i = negative ? from + 1 : from;
  if (i === to || (buf[i] === 0x30 && (to - i > 1 || negative))) return null;
  let n = 0;
  for (; i < to; i++) {
    const d = buf[i] - 0x30;
    if (d < 0 || d > 9) return null;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

function toNumber(n: bigint | null): number | null {
  return n === null ? null : Number(n);
}

/** Redis's string2ll: `0`, or an optional `-` then digits not starting with 0, under 21 characters, within 64 bits. */
export function string2ll(buf: Buffer, from: number, to: number): bigint | null {
  const s = buf.toString("latin1", from, to);
  if (s.length === 0 || s.length >= 21 || !/^(0|-?[1-9][0-9]*)$/.test(s)) return null;
  const n = BigInt(s);
  return n > 9223372036854775807n || n < -9223372036854775808n ? null : n;
}

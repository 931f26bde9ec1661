/**
 * A pure, incremental RESP2 parser (no I/O), with RESP3's types on request (`resp3`: what a Redis answers a client
 * that said HELLO 3) and Redis's inline commands on request (`inline`: what a telnet user types to a server). Feed bytes with `push`, take complete top-level values with `next`.
 *
 * Each value returned by `next` carries `bytes`: how many bytes of the stream it consumed, which is what a
 * replica adds to its replication offset. Values may be split across any chunk boundary.
 *
 * Cost: incoming bytes are copied once into one growing buffer read through a cursor; the unread tail is moved
 * to the front only when at most half the buffer is unread, so every byte is copied O(1) times amortized. Array
 * parsing is resumable (a stack of partially filled arrays), so a value arriving in many chunks is never
 * re-parsed from its start. Bulk strings are copied out into their own Buffer (they outlive the parse buffer).
 *
 * Limits: bulk length, array length, line length and nesting depth are bounded; a breach throws
 * `RespProtocolError` with reason "limit", malformed input throws it with reason "malformed". After a throw
 * the parser is poisoned: every later call throws the same error (a byte stream cannot be resynchronized).
 */
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { assert } from "../util/assert.js";

export type RespValue =
  | { type: "simple"; value: string }
  | { type: "error"; value: string }
  | { type: "integer"; value: number }
  | { type: "bulk"; value: Buffer | null }
  | { type: "array"; items: RespValue[] | null }
  // RESP3 (only with the `resp3` option). Doubles and big numbers keep Redis's text, so they are relayed unchanged.
  | { type: "null" }
  | { type: "boolean"; value: boolean }
  | { type: "double"; value: string }
  | { type: "bignum"; value: string }
  /** `:` with more digits than a JS number holds exactly (only with `resp3`): Redis's text. */
  | { type: "bigint"; value: string }
  /** Blob error `!` and verbatim string `=` (its 3-letter format, a colon, then the text). */
  | { type: "bloberror"; value: Buffer }
  | { type: "verbatim"; value: Buffer }
  /** `%`: keys and values alternate in `items`. */
  | { type: "map"; items: RespValue[] }
  | { type: "set"; items: RespValue[] }
  | { type: "push"; items: RespValue[] }
  /** A value preceded by an attribute `|` (key/value items), which RESP3 attaches to the value after it. */
  | { type: "attributed"; attribute: RespValue[]; value: RespValue };

/** RESP3's aggregate types: a header with a count, then that many values (twice that for maps and attributes). */
type AggregateType = "array" | "map" | "set" | "push" | "attribute";
/** Length-prefixed string types: `$` bulk, `!` blob error, `=` verbatim. */
type BlobType = "bulk" | "bloberror" | "verbatim";

/** One complete top-level value and the number of stream bytes it took. */
export interface RespFrame {
  value: RespValue;
  bytes: number;
}

/** Redis's own proto-max-bulk-len default. */
export const RESP_BULK_BYTES_MAX = 512 * 1024 * 1024;
export const RESP_ARRAY_ITEMS_MAX = 1024 * 1024;
/** Longest header / simple-string / error line; Redis's own inline limit (PROTO_INLINE_MAX_SIZE) is 64 KiB. */
export const RESP_LINE_BYTES_MAX = 64 * 1024;
/** Deepest array nesting; Redis replies (COMMAND included) stay well below this. */
export const RESP_DEPTH_MAX = 64;
/**
 * Bounds for replies from our own redis-server (a trusted peer), above what Redis itself can build: a script's reply
 * nests until Redis answers "reached lua stack limit" (measured on 7.0: 5,000 levels pass, 8,000 do not) and holds as
 * many items as its memory. A client's write must never make its reply unreadable: that would end the master's term,
 * and the client's retry would end the next one's. (The parser keeps its own stack: depth costs no recursion.)
 */
export const REDIS_REPLY_DEPTH_MAX = 10_000;
export const REDIS_REPLY_ITEMS_MAX = 2 ** 31 - 1;

export interface RespParserOptions {
  bulkBytesMax?: number;
  arrayItemsMax?: number;
  lineBytesMax?: number;
  depthMax?: number;
  /** Bytes the parser's buffer starts with (and shrinks back to): small for many mostly idle connections. */
  initialCapacity?: number;
  /** Accept RESP3's types (replies from a Redis spoken to in protocol 3). */
  resp3?: boolean;
  /** Accept integers past 2^53 (Redis's are 64-bit: INCRBY, BITFIELD i64, a script's number) as `bigint` text. */
  bigIntegers?: boolean;
  /**
   * Accept inline commands (a request line not starting with `*`, ended by LF or CRLF, as Redis accepts them): the
   * callback turns the line (without its end) into the value returned, and throws RespProtocolError on a bad one.
   */
  inline?: (line: Buffer, streamOffset: number) => RespValue;
}

export type RespProtocolErrorReason = "malformed" | "limit";

/** The stream is not RESP2, or declares a value larger than the parser's bounds. */
export class RespProtocolError extends QjmError {
  override name = "RespProtocolError";
  constructor(
    readonly reason: RespProtocolErrorReason,
    message: string,
    /** Stream offset (bytes since the parser's creation) at which the bad value started. */
    readonly streamOffset: number,
  ) {
    super(ErrorCode.INTERNAL, `RESP ${reason === "limit" ? "limit exceeded" : "protocol error"} at stream offset ${streamOffset}: ${message}`);
  }
}

const CR = 13;
const LF = 10;
const INITIAL_CAPACITY = 64 * 1024;
/** An empty buffer larger than four times the initial capacity (and this) is replaced by a fresh one of the initial
 * capacity, so one huge value does not pin memory. */
const SHRINK_FLOOR = 16 * 1024;
/** Strings from this size get their own buffer as their bytes arrive (RespParser.largeBody). */
const LARGE_BULK_BYTES = 1024 * 1024;

interface ArrayFrame {
  type: AggregateType;
  items: RespValue[];
  remaining: number;
  /** An attribute completed at this level: it attaches to the next value completed here. */
  attribute?: RespValue[];
}

export class RespParser {
  private buf: Buffer;
  private readonly initialCapacity: number;
  /** Unread bytes are buf[start, end). */
  private start = 0;
  private end = 0;
  /** Bytes after `start` already searched for CR without success (avoids rescanning a long partial line). */
  private scanned = 0;
  /** Declared length of the bulk string whose header was read and whose body is awaited; -1 if none. */
  private bulkLen = -1;
  private bulkType: BlobType = "bulk";
  /**
   * A large string's own buffer, filled as its bytes arrive (LARGE_BULK_BYTES and more), and how much of it is. The
   * parse buffer then never grows to hold it: a 512 MiB value cost a chain of doubling copies up to 1 GiB and one
   * 512 MiB copy out, each a long synchronous task on the reader's event loop (issue #12 review).
   */
  private bulkTarget: Buffer | null = null;
  private bulkFilled = 0;
  /** An attribute completed at the top level, waiting for the value it attaches to. */
  private topAttribute: RespValue[] | undefined;
  private readonly stack: ArrayFrame[] = [];
  private pushedTotal = 0;
  private consumedTotal = 0;
  /** consumedTotal when the current top-level value started. */
  private valueStart = 0;
  private failure: RespProtocolError | undefined;

  private readonly bulkBytesMax: number;
  private readonly arrayItemsMax: number;
  private readonly lineBytesMax: number;
  private readonly depthMax: number;
  private readonly resp3: boolean;
  private readonly bigIntegers: boolean;
  private readonly inline: RespParserOptions["inline"];

  constructor(options: RespParserOptions = {}) {
    this.bulkBytesMax = options.bulkBytesMax ?? RESP_BULK_BYTES_MAX;
    this.arrayItemsMax = options.arrayItemsMax ?? RESP_ARRAY_ITEMS_MAX;
    this.lineBytesMax = options.lineBytesMax ?? RESP_LINE_BYTES_MAX;
    this.depthMax = options.depthMax ?? RESP_DEPTH_MAX;
    this.resp3 = options.resp3 ?? false;
    this.bigIntegers = options.bigIntegers ?? this.resp3;
    this.initialCapacity = options.initialCapacity ?? INITIAL_CAPACITY;
    this.buf = Buffer.allocUnsafe(this.initialCapacity);
    this.inline = options.inline;
  }

  /** Bytes pushed but not yet returned as part of a complete top-level value (what this parser holds for it). */
  get pendingBytes(): number {
    return this.pushedTotal - this.valueStart;
  }

  /** Bytes returned by `next` so far, summed. */
  get consumedBytes(): number {
    return this.valueStart;
  }

  push(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    const n = chunk.length;
    if (n === 0) return;
    if (this.end + n > this.buf.length) this.makeRoom(n);
    this.buf.set(chunk, this.end);
    this.end += n;
    this.pushedTotal += n;
  }

  /** The next complete top-level value, or undefined until more bytes are pushed. */
  next(): RespFrame | undefined {
    if (this.failure) throw this.failure;
    try {
      return this.step();
    } catch (err) {
      if (err instanceof RespProtocolError) this.failure = err;
      throw err;
    }
  }

  private makeRoom(n: number): void {
    const unread = this.end - this.start;
    const capacity = this.buf.length;
    // Move in place only when at most half is unread: the move then frees at least half the buffer, so moves
    // cost O(1) per pushed byte amortized. Otherwise grow (doubling) and copy the unread bytes over once.
    if (unread + n <= capacity && unread <= capacity / 2) {
      this.buf.copyWithin(0, this.start, this.end);
    } else {
      const grown = Buffer.allocUnsafe(Math.max(capacity * 2, unread + n));
      this.buf.copy(grown, 0, this.start, this.end);
      this.buf = grown;
    }
    this.start = 0;
    this.end = unread;
  }

  private advance(n: number): void {
    this.start += n;
    this.consumedTotal += n;
    this.scanned = 0;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      if (this.buf.length > Math.max(4 * this.initialCapacity, SHRINK_FLOOR)) this.buf = Buffer.allocUnsafe(this.initialCapacity);
    }
  }

  private fail(reason: RespProtocolErrorReason, message: string): never {
    throw new RespProtocolError(reason, message, this.valueStart);
  }

  /** Index of the CR of the first CRLF after `start`, or -1 if the line is not complete yet. */
  private findLineEnd(): number {
    const buf = this.buf;
    const end = this.end;
    for (let i = this.start + this.scanned; i < end; i++) {
      if (buf[i] !== CR) continue;
      if (i + 1 === end) {
        // CR is the last byte: its LF has not arrived; resume the search at this CR.
        this.scanned = i - this.start;
        this.checkLineLength(i - this.start);
        return -1;
      }
      if (buf[i + 1] !== LF) this.fail("malformed", "CR not followed by LF");
      this.checkLineLength(i - this.start);
      return i;
    }
    this.scanned = end - this.start;
    this.checkLineLength(this.scanned);
    return -1;
  }

  private checkLineLength(length: number): void {
    if (length > this.lineBytesMax) this.fail("limit", `line longer than ${this.lineBytesMax} bytes`);
  }

  /** A length field: "-1" (null) or a non-negative decimal not above `max`. */
  private parseLength(from: number, to: number, max: number, what: string): number {
    const buf = this.buf;
    if (to - from === 2 && buf[from] === 0x2d && buf[from + 1] === 0x31) return -1;
    if (from === to) this.fail("malformed", `empty ${what} length`);
    let n = 0;
    for (let i = from; i < to; i++) {
      const d = buf[i] - 0x30;
      if (d < 0 || d > 9) this.fail("malformed", `bad ${what} length "${buf.toString("latin1", from, to)}"`);
      n = n * 10 + d;
      if (n > max) this.fail("limit", `${what} length ${buf.toString("latin1", from, to)} exceeds ${max}`);
    }
    return n;
  }

  /**
   * A signed decimal. RESP integers are 64-bit but this parser returns numbers: an unsafe one is refused, or with
   * `resp3` (a reply relayed to a client) kept as Redis's text.
   */
  private parseInteger(from: number, to: number): RespValue {
    const buf = this.buf;
    let i = from;
    let negative = false;
    if (i < to && (buf[i] === 0x2d || buf[i] === 0x2b)) {
      negative = buf[i] === 0x2d;
      i++;
    }
    if (i === to) this.fail("malformed", "empty integer");
    let n = 0;
    for (; i < to; i++) {
      const d = buf[i] - 0x30;
      if (d < 0 || d > 9) this.fail("malformed", `bad integer "${buf.toString("latin1", from, to)}"`);
      n = n * 10 + d;
    }
    if (n <= Number.MAX_SAFE_INTEGER) return { type: "integer", value: negative ? -n : n };
    if (!this.bigIntegers || to - from > 21) this.fail("limit", `integer ${buf.toString("latin1", from, to)} is not a safe JS integer`);
    return { type: "bigint", value: buf.toString("latin1", from, to) };
  }

  private step(): RespFrame | undefined {
    for (;;) {
      const value = this.bulkLen >= 0 ? this.blobBody() : this.lineItem();
      if (value === undefined) return undefined;
      if (value === null) continue;
      const frame = this.complete(value);
      if (frame !== undefined) return frame;
    }
  }

  /** The body of a length-prefixed string whose header was read; undefined until it is all here. */
  private blobBody(): RespValue | undefined {
    const len = this.bulkLen;
    if (len >= LARGE_BULK_BYTES) return this.largeBody(len);
    // The whole body and its CRLF must be here; until then this is O(1) per call.
    if (this.end - this.start < len + 2) return undefined;
    const at = this.start + len;
    if (this.buf[at] !== CR || this.buf[at + 1] !== LF) this.fail("malformed", "bulk string not terminated by CRLF");
    const body = Buffer.allocUnsafe(len);
    this.buf.copy(body, 0, this.start, at);
    this.advance(len + 2);
    this.bulkLen = -1;
    return { type: this.bulkType, value: body } as RespValue;
  }

  /** blobBody for a large string: what arrived is moved into its own buffer at once; then its CRLF. */
  private largeBody(len: number): RespValue | undefined {
    const target = (this.bulkTarget ??= Buffer.allocUnsafe(len));
    const n = Math.min(len - this.bulkFilled, this.end - this.start);
    if (n > 0) {
      this.buf.copy(target, this.bulkFilled, this.start, this.start + n);
      this.bulkFilled += n;
      this.advance(n);
    }
    if (this.bulkFilled < len || this.end - this.start < 2) return undefined;
    if (this.buf[this.start] !== CR || this.buf[this.start + 1] !== LF) this.fail("malformed", "bulk string not terminated by CRLF");
    this.advance(2);
    this.bulkLen = -1;
    this.bulkTarget = null;
    this.bulkFilled = 0;
    return { type: this.bulkType, value: target } as RespValue;
  }

  /**
   * The next line: a whole value (simple types), or null when it opened an array or a string whose rest follows;
   * undefined until the line is all here.
   */
  private lineItem(): RespValue | null | undefined {
    const inlineRequest = this.inline !== undefined && this.stack.length === 0 && this.end > this.start && this.buf[this.start] !== 0x2a;
    if (inlineRequest) return this.inlineLine();
    const eol = this.findLineEnd();
    if (eol < 0) return undefined;
    const type = this.buf[this.start];
    const from = this.start + 1;
    const lineBytes = eol + 2 - this.start;
    // Every field is decoded before `advance`, which may recycle the buffer once it is empty.
    const blob = blobType(type, this.resp3);
    if (blob !== undefined) {
      const len = this.parseLength(from, eol, this.bulkBytesMax, "bulk");
      this.advance(lineBytes);
      if (len < 0 && blob === "bulk") return { type: "bulk", value: null };
      if (len < 0) this.fail("malformed", `null length for a ${blob}`);
      this.bulkLen = len;
      this.bulkType = blob;
      return null;
    }
    const aggregate = aggregateType(type, this.resp3);
    if (aggregate !== undefined) return this.aggregateHeader(aggregate, from, eol, lineBytes);
    const value = this.simpleValue(type, from, eol);
    this.advance(lineBytes);
    return value;
  }

  private aggregateHeader(type: AggregateType, from: number, eol: number, lineBytes: number): RespValue | null {
    const len = this.parseLength(from, eol, this.arrayItemsMax, "array");
    const pairs = type === "map" || type === "attribute";
    if (len > 0 && this.stack.length >= this.depthMax) this.fail("limit", `arrays nested deeper than ${this.depthMax}`);
    this.advance(lineBytes);
    if (len < 0 && type !== "array") this.fail("malformed", `null length for a ${type}`);
    if (len < 0) return { type: "array", items: null };
    if (len > 0) {
      this.stack.push({ type, items: [], remaining: pairs ? len * 2 : len });
      return null;
    }
    if (type === "attribute") return this.attributeDone([]);
    return aggregateValue(type, []);
  }

  /** A one-line value: simple string, error, integer, and RESP3's null, boolean, double, big number. */
  private simpleValue(type: number, from: number, eol: number): RespValue {
    const text = (): string => this.buf.toString("utf8", from, eol);
    if (type === 0x2b /* + */) return { type: "simple", value: text() };
    if (type === 0x2d /* - */) return { type: "error", value: text() };
    if (type === 0x3a /* : */) return this.parseInteger(from, eol);
    if (this.resp3) {
      if (type === 0x5f /* _ */ && eol === from) return { type: "null" };
      if (type === 0x23 /* # */ && eol === from + 1 && (this.buf[from] === 0x74 || this.buf[from] === 0x66)) return { type: "boolean", value: this.buf[from] === 0x74 };
      if (type === 0x2c /* , */ && eol > from) return { type: "double", value: text() };
      if (type === 0x28 /* ( */ && eol > from) return { type: "bignum", value: text() };
    }
    return this.fail("malformed", `unexpected type byte 0x${type.toString(16).padStart(2, "0")}`);
  }

  /** An inline command: a line ended by LF (a CR before it dropped), turned into a value by the `inline` callback. */
  private inlineLine(): RespValue | undefined {
    const buf = this.buf;
    const lf = buf.indexOf(LF, this.start + this.scanned);
    if (lf < 0 || lf >= this.end) {
      this.scanned = this.end - this.start;
      this.checkLineLength(this.scanned);
      return undefined;
    }
    this.checkLineLength(lf - this.start);
    const lineEnd = lf > this.start && buf[lf - 1] === CR ? lf - 1 : lf;
    const line = Buffer.from(buf.subarray(this.start, lineEnd));
    const at = this.valueStart;
    this.advance(lf + 1 - this.start);
    return this.inline!(line, at);
  }

  /** Hands a value to the innermost open aggregate; a frame once a top-level value is complete. */
  private complete(item: RespValue): RespFrame | undefined {
    let value = item;
    for (;;) {
      const top = this.stack[this.stack.length - 1];
      if (top === undefined) {
        if (this.topAttribute !== undefined) {
          value = { type: "attributed", attribute: this.topAttribute, value };
          this.topAttribute = undefined;
        }
        const bytes = this.consumedTotal - this.valueStart;
        this.valueStart = this.consumedTotal;
        return { value, bytes };
      }
      if (top.attribute !== undefined) {
        value = { type: "attributed", attribute: top.attribute, value };
        top.attribute = undefined;
      }
      top.items.push(value);
      if (--top.remaining > 0) return undefined;
      this.stack.pop();
      // An attribute is no item: it waits for the value after it, at the level it sits in.
      if (top.type === "attribute") return this.attributeDone(top.items) ?? undefined;
      value = aggregateValue(top.type, top.items);
    }
  }

  /** Parks a completed attribute at its level (null: nothing completes now). */
  private attributeDone(items: RespValue[]): null {
    const parent = this.stack[this.stack.length - 1];
    if (parent === undefined) this.topAttribute = items;
    else parent.attribute = items;
    return null;
  }
}

function blobType(type: number, resp3: boolean): BlobType | undefined {
  if (type === 0x24 /* $ */) return "bulk";
  if (!resp3) return undefined;
  if (type === 0x21 /* ! */) return "bloberror";
  if (type === 0x3d /* = */) return "verbatim";
  return undefined;
}

function aggregateType(type: number, resp3: boolean): AggregateType | undefined {
  if (type === 0x2a /* * */) return "array";
  if (!resp3) return undefined;
  if (type === 0x25 /* % */) return "map";
  if (type === 0x7e /* ~ */) return "set";
  if (type === 0x3e /* > */) return "push";
  if (type === 0x7c /* | */) return "attribute";
  return undefined;
}

function aggregateValue(type: Exclude<AggregateType, "attribute">, items: RespValue[]): RespValue {
  return type === "array" ? { type, items } : { type, items };
}

/**
 * Encodes a command as a RESP array of bulk strings, straight into one buffer: every client write goes through here
 * twice (its command and its marker), and a Buffer per header, argument and CRLF, then a concat, was ~5 % of the
 * master's CPU at 256 clients (issue #13).
 */
export function encodeCommand(args: readonly (string | Uint8Array)[]): Buffer {
  const sizes = new Array<number>(args.length);
  let total = String(args.length).length + 3;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const size = typeof arg === "string" ? Buffer.byteLength(arg, "utf8") : arg.length;
    sizes[i] = size;
    total += String(size).length + size + 5;
  }
  const out = Buffer.allocUnsafe(total);
  let at = putHeader(out, 0, 42 /* * */, args.length);
  for (let i = 0; i < args.length; i++) {
    at = putHeader(out, at, 36 /* $ */, sizes[i]);
    const arg = args[i];
    if (typeof arg === "string") at += out.write(arg, at, "utf8");
    else {
      out.set(arg, at);
      at += arg.length;
    }
    out[at++] = 13;
    out[at++] = 10;
  }
  assert(at === total, "encodeCommand: length mismatch");
  return out;
}

/** `<prefix><n>\r\n` at `at`, byte by byte (a Buffer.write per header costs a native call); returns the end. */
function putHeader(out: Buffer, at: number, prefix: number, n: number): number {
  out[at++] = prefix;
  const digits = String(n);
  for (let i = 0; i < digits.length; i++) out[at++] = digits.charCodeAt(i);
  out[at++] = 13;
  out[at++] = 10;
  return at;
}

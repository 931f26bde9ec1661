/**
 * Requests off a front-door connection (pure): RESP multibulk requests (`*<n>` then n bulk strings: what redis-cli,
 * ioredis and redis-benchmark send) through the shared RESP parser, and inline commands (a plain line, what a telnet
 * user types) split as Redis splits them (sdssplitargs: spaces, "double quotes" with \n \r \t \b \a \xHH escapes,
 * 'single quotes' with \' only). Bounded: one bulk string and the bytes buffered for one request at most
 * `requestBytesMax`, an inline line 64 KiB (Redis's PROTO_INLINE_MAX_SIZE).
 *
 * A request that breaks the protocol throws DoorProtocolError: the door answers `-ERR Protocol error: …` and closes
 * the connection, as Redis does (the byte stream cannot be trusted after it).
 */
import { RESP_REQUEST_ITEM_OVERHEAD_BYTES, RESP_UNAUTHENTICATED_BULK_BYTES_MAX, RESP_UNAUTHENTICATED_ITEMS_MAX } from "../config/config.js";
import { RespParser, RespProtocolError, type RespValue } from "../redis/resp_parser.js";

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

function inlineValue(line: Buffer): RespValue {
  const args = splitInlineArgs(line);
  if (args === null) throw new DoorProtocolError("unbalanced quotes in request");
  return { type: "array", items: args.map((a) => ({ type: "bulk", value: a })) };
}

export interface RequestLimits {
  /** Largest bulk string, and most bytes buffered for one request not yet complete (arguments count too). */
  requestBytesMax: number;
  /** The connection has not authenticated yet: Redis's small bounds until `authenticated()`. */
  unauthenticated?: boolean;
}

/** Slack over the bound for one incomplete request: its headers and the bytes of the next one in the same chunk. */
const PENDING_SLACK_BYTES = 64 * 1024;

export class RequestReader {
  private parser: RespParser;
  /** Before AUTH: the bytes pushed since the last request taken, to hand over to the full-size parser after it. */
  private kept: Buffer[] | null;
  /** consumedBytes of the parser when kept[0] starts. */
  private keptFrom = 0;

  constructor(private readonly limits: RequestLimits) {
    this.kept = limits.unauthenticated === true ? [] : null;
    this.parser = this.newParser();
  }

  /** Bytes buffered for the request not yet complete. */
  get pendingBytes(): number {
    return this.parser.pendingBytes;
  }

  push(chunk: Uint8Array): void {
    this.kept?.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.guard(() => this.parser.push(chunk));
  }

  /** The next request's arguments (an empty list for an empty request, which gets no reply), or undefined. */
  next(): Buffer[] | undefined {
    const frame = this.guard(() => this.parser.next());
    if (frame === undefined) {
      // A request still incomplete past the bound (many bulk strings, each under it): refused before it is all here.
      if (this.parser.pendingBytes > this.bound() + PENDING_SLACK_BYTES) throw new DoorProtocolError(`request larger than ${this.bound()} bytes`);
      return undefined;
    }
    if (this.kept !== null) this.trimKept();
    return requestArgs(frame.value);
  }

  /** The connection authenticated: the full bounds from the next request on (the bytes already here go along). */
  authenticated(): void {
    if (this.kept === null) return;
    const rest = Buffer.concat(this.kept).subarray(this.parser.consumedBytes - this.keptFrom);
    this.kept = null;
    this.parser = this.newParser();
    this.parser.push(rest);
  }

  private newParser(): RespParser {
    const strict = this.kept !== null;
    const bulkBytesMax = strict ? RESP_UNAUTHENTICATED_BULK_BYTES_MAX : this.limits.requestBytesMax;
    const arrayItemsMax = strict ? RESP_UNAUTHENTICATED_ITEMS_MAX : Math.max(1, Math.floor(this.limits.requestBytesMax / RESP_REQUEST_ITEM_OVERHEAD_BYTES));
    // Small to start with: most connections are idle or send small commands; the buffer grows for a large one.
    return new RespParser({ bulkBytesMax, arrayItemsMax, inline: inlineValue, initialCapacity: 0 });
  }

  private bound(): number {
    return this.kept !== null ? RESP_UNAUTHENTICATED_ITEMS_MAX * RESP_UNAUTHENTICATED_BULK_BYTES_MAX : this.limits.requestBytesMax;
  }

  /** Drops the kept bytes of requests already taken. */
  private trimKept(): void {
    const kept = this.kept!;
    let drop = this.parser.consumedBytes - this.keptFrom;
    while (kept.length > 0 && kept[0].length <= drop) {
      drop -= kept[0].length;
      this.keptFrom += kept[0].length;
      kept.shift();
    }
  }

  private guard<T>(run: () => T): T {
    try {
      return run();
    } catch (err) {
      if (err instanceof DoorProtocolError) throw err;
      if (err instanceof RespProtocolError) throw new DoorProtocolError(protocolText(err, this.kept !== null));
      throw err;
    }
  }
}

/** Redis's words for the parser's refusals. */
function protocolText(err: RespProtocolError, unauthenticated: boolean): string {
  const detail = err.message.replace(/^RESP (limit exceeded|protocol error) at stream offset \d+: /, "");
  const what = unauthenticated ? "unauthenticated" : "invalid";
  if (err.reason === "limit" && detail.startsWith("bulk")) return `${what} bulk length (${detail})`;
  if (err.reason === "limit" && detail.startsWith("array")) return `${what} multibulk length (${detail})`;
  if (err.reason === "limit" && detail.startsWith("line")) return `too big inline request (${detail})`;
  return detail;
}

/** A request is an array of bulk strings; anything else in it is a protocol error, as in Redis. */
function requestArgs(v: RespValue): Buffer[] {
  if (v.type !== "array") throw new DoorProtocolError(`expected '*', got '${v.type}'`);
  if (v.items === null) return [];
  return v.items.map((item) => {
    if (item.type !== "bulk" || item.value === null) throw new DoorProtocolError(`expected '$', got '${item.type}'`);
    return item.value;
  });
}

/**
 * The front door's reply encoder (pure): RESP values (relayed from the node's Redis, or built by the door in RESP3's
 * vocabulary) and typed write replies (ReplyValue) into bytes for a client that speaks protocol 2 or 3.
 *
 * A RESP3 value sent to a protocol-2 client takes Redis's own RESP2 shape: a map or a set is a flat array, null is
 * the nil bulk, a boolean the integer 1 or 0, a double or a big number a bulk string of its text, a verbatim string
 * a bulk string without its format prefix, an attribute is dropped, a blob error a simple error.
 */
import type { RespValue } from "../redis/resp_parser.js";
import type { ReplyValue } from "../segment/record.js";

export type Protocol = 2 | 3;

const CRLF = Buffer.from("\r\n");

/** Collects the parts of one reply; `bytes()` joins them once. */
class Out {
  readonly parts: Buffer[] = [];
  line(prefix: string, text: string): void {
    this.parts.push(Buffer.from(`${prefix}${text}\r\n`, "utf8"));
  }
  blob(prefix: string, body: Uint8Array): void {
    this.parts.push(Buffer.from(`${prefix}${body.length}\r\n`, "latin1"));
    this.parts.push(Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength), CRLF);
  }
  bytes(): Buffer {
    return this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts);
  }
}

/** A line may not hold CR or LF: a status or error text that does is cut there (Redis does the same). */
function oneLine(text: string): string {
  return /[\r\n]/.test(text) ? text.replace(/[\r\n].*$/s, "") : text;
}

export function encodeResp(value: RespValue, protocol: Protocol): Buffer {
  const out = new Out();
  writeResp(out, value, protocol);
  return out.bytes();
}

function writeResp(out: Out, v: RespValue, p: Protocol): void {
  switch (v.type) {
    case "simple":
      return out.line("+", oneLine(v.value));
    case "error":
      return out.line("-", oneLine(v.value));
    case "integer":
      return out.line(":", String(v.value));
    case "bigint":
      return out.line(":", v.value);
    case "bulk":
      return v.value === null ? out.line(p === 3 ? "_" : "$", p === 3 ? "" : "-1") : out.blob("$", v.value);
    case "array":
      if (v.items === null) return out.line(p === 3 ? "_" : "*", p === 3 ? "" : "-1");
      return writeItems(out, "*", v.items, v.items.length, p);
    case "null":
      return out.line(p === 3 ? "_" : "$", p === 3 ? "" : "-1");
    case "boolean":
      return p === 3 ? out.line("#", v.value ? "t" : "f") : out.line(":", v.value ? "1" : "0");
    case "double":
      return p === 3 ? out.line(",", v.value) : out.blob("$", Buffer.from(v.value, "latin1"));
    case "bignum":
      return p === 3 ? out.line("(", v.value) : out.blob("$", Buffer.from(v.value, "latin1"));
    case "bloberror":
      return p === 3 ? out.blob("!", v.value) : out.line("-", oneLine(v.value.toString("utf8")));
    case "verbatim":
      return p === 3 ? out.blob("=", v.value) : out.blob("$", v.value.subarray(Math.min(4, v.value.length)));
    case "map":
      return writeItems(out, p === 3 ? "%" : "*", v.items, p === 3 ? v.items.length / 2 : v.items.length, p);
    case "set":
      return writeItems(out, p === 3 ? "~" : "*", v.items, v.items.length, p);
    case "push":
      return writeItems(out, p === 3 ? ">" : "*", v.items, v.items.length, p);
    case "attributed":
      if (p === 3) writeItems(out, "|", v.attribute, v.attribute.length / 2, p);
      return writeResp(out, v.value, p);
  }
}

function writeItems(out: Out, prefix: string, items: readonly RespValue[], count: number, p: Protocol): void {
  out.line(prefix, String(count));
  for (const item of items) writeResp(out, item, p);
}

/**
 * A typed write reply (a status is a string, a bulk string bytes…) as what the master got: RESP2's shape. A nil is a
 * null bulk string; the command's own shape (a null array, RESP3's doubles, sets…) is reply_shapes.ts's.
 */
export function encodeReplyValue(value: ReplyValue, protocol: Protocol): Buffer {
  return encodeResp(replyValueResp(value), protocol);
}

/** The typed reply as a RESP value of RESP2's vocabulary. */
export function replyValueResp(v: ReplyValue): RespValue {
  if (v === null) return { type: "bulk", value: null };
  if (typeof v === "bigint") return { type: "bigint", value: v.toString() };
  // Past ±2^53 an integer is a bigint; a number there is a rounded one from a record written before bigints (a bulk
  // string of its text, as then). ±2^53 itself is exact, and msgpack's int64 gives it back as a number.
  if (typeof v === "number") return Number.isSafeInteger(v) || Math.abs(v) === 2 ** 53 ? { type: "integer", value: v } : { type: "bulk", value: Buffer.from(String(v)) };
  if (typeof v === "string") return { type: "simple", value: v };
  if (v instanceof Uint8Array) return { type: "bulk", value: Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength) };
  if (!Array.isArray(v)) return { type: "error", value: v.err };
  return { type: "array", items: v.map(replyValueResp) };
}

// ---- values the door builds ----

export const simple = (value: string): RespValue => ({ type: "simple", value });
export const error = (value: string): RespValue => ({ type: "error", value });
export const integer = (value: number): RespValue => ({ type: "integer", value });
export const bulk = (value: string | Uint8Array | null): RespValue => ({ type: "bulk", value: value === null ? null : Buffer.from(value) });
export const array = (items: RespValue[]): RespValue => ({ type: "array", items });
export const map = (pairs: [string, RespValue][]): RespValue => ({ type: "map", items: pairs.flatMap(([k, v]) => [bulk(k), v]) });
export const OK = simple("OK");

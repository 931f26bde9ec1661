/**
 * Redis's replies as they travel in write replies, records and the dedupe window (ReplyValue, src/segment/record.ts):
 * a tagged form that msgpack keeps apart — a status (`+OK`) is a string, a bulk string is bytes, an integer a
 * number, nil null, an array an array. The RESP front door encodes it back with its type (src/frontdoor/).
 */
import type { ReplyValue } from "../segment/record.js";
import { REPLY_DEPTH_MAX, isReplyError } from "../segment/record.js";
import type { RespValue } from "./resp_parser.js";

/** Redis's error reply, as the rejection of a command sent over a RespConnection. */
export class RedisReplyError extends Error {
  override name = "RedisReplyError";
}

/** The value, or a RedisReplyError for an error reply. */
export function valueOrThrow(v: RespValue): RespValue {
  if (v.type === "error") throw new RedisReplyError(v.value);
  if (v.type === "bloberror") throw new RedisReplyError(v.value.toString("utf8"));
  return v;
}

/**
 * A RESP2 reply (a top-level error is the caller's: the write failed) in the tagged form. What the form cannot hold
 * is flattened: RESP3's types take their RESP2 shape; an error inside an array stays an error (`{ err }`) with
 * `typedErrors` (writes: EXEC's per-command errors, a script's nested error_reply), else becomes its text. An integer
 * past 2^53 (the parser's `bigint`, as text) is a bigint: exact all the way to the client.
 */
export function replyValueOf(v: RespValue, depth = 0, typedErrors = false): ReplyValue {
  switch (v.type) {
    case "error":
      // A write's reply keeps nested errors as errors (`typedErrors`); a script check's read, their text.
      return typedErrors && depth > 0 ? { err: v.value } : v.value;
    case "simple":
    case "double":
    case "bignum":
      return v.value;
    case "integer":
      return v.value;
    case "bigint":
      return BigInt(v.value);
    case "bulk":
      return v.value;
    case "bloberror":
    case "verbatim":
      return v.value;
    case "null":
      return null;
    case "boolean":
      return v.value ? 1 : 0;
    case "attributed":
      return replyValueOf(v.value, depth, typedErrors);
    case "array":
    case "map":
    case "set":
    case "push":
      if (v.items === null) return null;
      if (depth >= REPLY_DEPTH_MAX) return "(nested too deep)";
      return v.items.map((item) => replyValueOf(item, depth + 1, typedErrors));
  }
}

/**
 * The reply as the client library gave it before replies were typed (ioredis's `call`): bulk strings as UTF-8 text.
 * Callers that need the bytes or the status/bulk distinction use the typed form.
 */
export function plainReply(v: ReplyValue): PlainReply {
  if (isReplyError(v)) return { err: v.err };
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("utf8");
  if (Array.isArray(v)) return v.map(plainReply);
  return v;
}
export type PlainReply = null | number | bigint | string | { err: string } | PlainReply[];

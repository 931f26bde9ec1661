/**
 * The two translations the master needs around the dedupe window (pure): a window's answer into the reply a retry
 * gets, and a write's outcome into the reply its record keeps.
 */
import { ErrorCode, errorReply } from "../protocol/errors.js";
import type { WriteReply } from "../protocol/messages.js";
import { REPLY_DEPTH_MAX, isReplyError, type RecordedReply, type ReplyValue } from "../segment/record.js";
import type { DedupeLookup } from "./dedupe_window.js";

/**
 * The reply to a write whose id the window knows, or null when it must be executed (`new`). A committed write is
 * answered as it was the first time (marked `duplicate`); one whose reply was too large to keep is answered
 * REPLY_UNDELIVERABLE (it was carried out: do not retry); an expired one RETRY_EXPIRED (never applied again).
 */
export function answerFromWindow(lookup: DedupeLookup): WriteReply | null {
  switch (lookup.kind) {
    case "new":
      return null;
    case "expired":
      return errorReply(ErrorCode.RETRY_EXPIRED, "a retry of a write older than the dedupe window: it may have been committed, and is not applied again");
    case "committed": {
      if (lookup.reply === undefined) {
        return errorReply(ErrorCode.REPLY_UNDELIVERABLE, `the write was committed at txid ${lookup.txid}; its reply was too large to keep for retries`);
      }
      if (lookup.reply.ok) return { ok: true, txid: lookup.txid, reply: lookup.reply.value, duplicate: true };
      return errorReply(lookup.reply.code ?? ErrorCode.REDIS_ERROR, lookup.reply.message);
    }
  }
}

/**
 * The reply a write's record keeps: Redis's value (ioredis RESP2: nil, integer, string, Buffer, arrays), or the
 * error the client got; an error inside an array as `{ err }`. A value outside those (an Error object, say) is kept
 * as its text, so that decoding the record never fails on it.
 */
export function recordedReplyOf(outcome: { ok: true; value: unknown } | { ok: false; message: string; code?: ErrorCode }): RecordedReply {
  if (!outcome.ok) return outcome.code === undefined ? { ok: false, message: outcome.message } : { ok: false, message: outcome.message, code: outcome.code };
  return { ok: true, value: replyValueOf(outcome.value, 0) };
}

function replyValueOf(v: unknown, depth: number): ReplyValue {
  if (v === null || v === undefined) return null;
  if (typeof v === "string" || v instanceof Uint8Array) return v;
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "bigint") return v;
  if (Array.isArray(v) && depth < REPLY_DEPTH_MAX) return v.map((item: unknown) => replyValueOf(item, depth + 1));
  // An error inside an array (EXEC's per-command errors, a script's nested error_reply) stays an error: as its text
  // ("[object Object]" before) a retry answered from the window got a status where the first answer had an error.
  if (depth > 0 && isReplyError(v)) return { err: v.err };
  if (v instanceof Error) return v.message;
  return String(v);
}

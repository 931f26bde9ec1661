import test from "ava";
import { newClientId, parseWriteReply } from "../../src/client/client.js";
import { backoffMs, verdictOf } from "../../src/client/retry.js";
import { defaults } from "../../src/config/config.js";
import { ErrorCode } from "../../src/protocol/errors.js";
import { isClientId } from "../../src/protocol/messages.js";

test("client retry - retried with the same id on no responders/timeouts, NO_QUORUM, NOT_WRITER, OVERLOADED only", (t) => {
  t.deepEqual(verdictOf(ErrorCode.TIMEOUT), { retry: true, outcome: "unknown" });
  t.deepEqual(verdictOf(ErrorCode.NO_QUORUM), { retry: true, outcome: "unknown" });
  t.deepEqual(verdictOf(ErrorCode.NOT_WRITER), { retry: true, outcome: "notApplied" });
  t.deepEqual(verdictOf(ErrorCode.OVERLOADED), { retry: true, outcome: "notApplied" });
  for (const code of [ErrorCode.REDIS_ERROR, ErrorCode.BAD_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.UNKNOWN_COMMAND, ErrorCode.NOT_A_WRITE, ErrorCode.COMMAND_REFUSED, ErrorCode.WRONG_ARITY, ErrorCode.EFFECTS_REFUSED, ErrorCode.NOT_MSGPACK]) {
    t.deepEqual(verdictOf(code), { retry: false, outcome: "notApplied" }, code);
  }
  t.deepEqual(verdictOf(ErrorCode.RETRY_EXPIRED), { retry: false, outcome: "unknown" });
  t.deepEqual(verdictOf(ErrorCode.INTERNAL), { retry: false, outcome: "unknown" });
  t.deepEqual(verdictOf(ErrorCode.REPLY_UNDELIVERABLE), { retry: false, outcome: "applied" });
});

test("client retry - backoff doubles from the minimum to the maximum, jittered within [cap/2, cap]", (t) => {
  const limits = { clientRetryBackoffMinMs: 25, clientRetryBackoffMaxMs: 1000 };
  t.is(backoffMs(1, limits, () => 0), 13);
  t.is(backoffMs(1, limits, () => 1), 25);
  t.is(backoffMs(3, limits, () => 1), 100);
  t.is(backoffMs(10, limits, () => 1), 1000);
  t.is(backoffMs(10_000, limits, () => 0), 500);
  for (let attempt = 1; attempt < 50; attempt++) {
    const ms = backoffMs(attempt, defaults, Math.random);
    t.true(ms >= defaults.clientRetryBackoffMinMs / 2 && ms <= defaults.clientRetryBackoffMaxMs, `attempt ${attempt}: ${ms}`);
  }
});

test("client - a client id is 128 random bits in base64url: a valid id, fresh each time", (t) => {
  const ids = new Set(Array.from({ length: 100 }, () => newClientId()));
  t.is(ids.size, 100);
  for (const id of ids) {
    t.true(isClientId(id), id);
    t.is(Buffer.from(id, "base64url").length, 16);
  }
});

test("client - parseWriteReply: a result, an error with its code, a malformed reply as INTERNAL", (t) => {
  t.deepEqual(parseWriteReply({ ok: true, txid: 5, reply: 3 }), { txid: 5, reply: 3, typed: 3, duplicate: false });
  t.deepEqual(parseWriteReply({ ok: true, txid: 5, reply: "OK", duplicate: true }), { txid: 5, reply: "OK", typed: "OK", duplicate: true });
  t.deepEqual(parseWriteReply({ ok: true, txid: 5 }), { txid: 5, reply: null, typed: null, duplicate: false });
  // A bulk string travels as bytes (typed) and is given as UTF-8 text in `reply`, as ioredis's call did.
  const bulk = Buffer.from("v\xff");
  t.deepEqual(parseWriteReply({ ok: true, txid: 6, reply: [bulk, "OK", null] }), { txid: 6, reply: [bulk.toString("utf8"), "OK", null], typed: [bulk, "OK", null], duplicate: false });
  t.deepEqual(parseWriteReply({ ok: false, code: "NO_QUORUM", message: "m" }), { code: ErrorCode.NO_QUORUM, message: "m" });
  t.deepEqual(parseWriteReply({ ok: false, code: "SOMETHING_NEW", message: "m" }), { code: ErrorCode.INTERNAL, message: "m" });
  for (const bad of [null, [], "OK", { ok: true }, { ok: true, txid: 0 }, { ok: true, txid: "5" }, { ok: "yes", txid: 5 }]) {
    t.is((parseWriteReply(bad) as { code?: string }).code, ErrorCode.INTERNAL, JSON.stringify(bad));
  }
});

import test from "ava";
import { defaults } from "../../src/config/config.js";
import { answerFromWindow, recordedReplyOf } from "../../src/dedupe/dedupe_answer.js";
import { DedupeWindow } from "../../src/dedupe/dedupe_window.js";
import { ErrorCode } from "../../src/protocol/errors.js";
import { decodeRecordPayload, encodeRecord, encodeRecordPayload, scanRecords } from "../../src/segment/record.js";

test("dedupe answer - new is executed; expired is RETRY_EXPIRED; a dropped reply is REPLY_UNDELIVERABLE", (t) => {
  t.is(answerFromWindow({ kind: "new" }), null);
  t.like(answerFromWindow({ kind: "expired" }), { ok: false, code: ErrorCode.RETRY_EXPIRED });
  t.like(answerFromWindow({ kind: "committed", txid: 9, replyDropped: true }), { ok: false, code: ErrorCode.REPLY_UNDELIVERABLE });
});

test("dedupe answer - a committed write is answered as the first time: its value (duplicate), Redis's error, or the master's refusal", (t) => {
  t.deepEqual(answerFromWindow({ kind: "committed", txid: 9, reply: { ok: true, value: 3 }, replyDropped: false }), { ok: true, txid: 9, reply: 3, duplicate: true });
  t.deepEqual(answerFromWindow({ kind: "committed", txid: 9, reply: { ok: false, message: "WRONGTYPE x" }, replyDropped: false }), {
    ok: false,
    code: ErrorCode.REDIS_ERROR,
    message: "WRONGTYPE x",
  });
  t.like(answerFromWindow({ kind: "committed", txid: 9, reply: { ok: false, message: "m", code: ErrorCode.EFFECTS_REFUSED }, replyDropped: false }), { code: ErrorCode.EFFECTS_REFUSED });
});

test("dedupe answer - recordedReplyOf keeps Redis values and turns anything else into text", (t) => {
  t.deepEqual(recordedReplyOf({ ok: true, value: ["a", 1, null, Buffer.from([0])] }), { ok: true, value: ["a", 1, null, Buffer.from([0])] });
  t.deepEqual(recordedReplyOf({ ok: true, value: undefined }), { ok: true, value: null });
  t.deepEqual(recordedReplyOf({ ok: true, value: [new Error("ERR in script"), true] }), { ok: true, value: ["ERR in script", "true"] });
  t.deepEqual(recordedReplyOf({ ok: false, message: "WRONGTYPE" }), { ok: false, message: "WRONGTYPE" });
  let deep: unknown = 1;
  for (let i = 0; i < 100; i++) deep = [deep];
  // Whatever the value, its record decodes.
  const payload = encodeRecordPayload([], { id: { client: "c", seq: 1 }, reply: recordedReplyOf({ ok: true, value: deep }) }, 1 << 20);
  t.notThrows(() => decodeRecordPayload(payload));
});

test("dedupe answer - end to end, pure: a write's record, observed by a rebuilt window, answers its retry with the original reply", (t) => {
  const id = { client: "Zm9vYmFyYmF6cXV4cXV1eA", seq: 7 };
  const record = encodeRecord(41, 3, encodeRecordPayload([[Buffer.from("INCR"), Buffer.from("c")]], { id, reply: recordedReplyOf({ ok: true, value: 5 }) }, defaults.dedupeReplyBytesMax));
  // A new master rebuilds its window from the committed journal.
  const win = new DedupeWindow(defaults);
  for (const rec of scanRecords(record).records) win.observe(rec.txid, decodeRecordPayload(rec.payload).write);
  t.deepEqual(answerFromWindow(win.lookup(id.client, id.seq)), { ok: true, txid: 41, reply: 5, duplicate: true });
  t.is(answerFromWindow(win.lookup(id.client, id.seq + 1)), null);
});

test("dedupe answer - an error inside an array (EXEC's per-command errors) is recorded as an error, not as text", (t) => {
  const value = ["OK", { err: "ERR value is not an integer or out of range" }, [{ err: "WRONGTYPE nested" }]];
  t.deepEqual(recordedReplyOf({ ok: true, value }), { ok: true, value });
});

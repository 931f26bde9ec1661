/**
 * Review s24: the master's side of the batch fan-out (JournalFanout) — which send an answer is counted for. A stand-in
 * for the NATS connection records publishes and hands answers to the subscription callback, as nats-server would on
 * `qjm.<cluster>.batch.ack.<id>` (only node `<id>` may publish there with auth, so the subject names the node).
 */
import test from "ava";
import { pino } from "pino";
import type { NatsConnection } from "@nats-io/transport-node";
import { JournalFanout } from "../../src/master/journal_fanout.js";
import { decode, encode } from "../../src/protocol/codec.js";
import type { JournalBatch, JournalReply } from "../../src/protocol/messages.js";

interface Bus {
  nc: NatsConnection;
  published: { subject: string; body: Record<string, unknown> }[];
  answer: (node: string, body: unknown) => void;
}

function bus(): Bus {
  let callback: ((err: Error | null, msg: { subject: string; data: Uint8Array }) => void) | null = null;
  const published: Bus["published"] = [];
  const nc = {
    info: { max_payload: 1024 * 1024 },
    subscribe: (_subject: string, opts: { callback: typeof callback }) => ((callback = opts.callback), { unsubscribe: () => (callback = null) }),
    publish: (subject: string, data: Uint8Array) => void published.push({ subject, body: decode(data) as Record<string, unknown> }),
  } as unknown as NatsConnection;
  return { nc, published, answer: (node, body) => callback?.(null, { subject: `qjm.c1.batch.ack.${node}`, data: encode(body) }) };
}

const batch: JournalBatch = { type: "journal", epoch: 2, segmentTxid: 1, firstTxid: 1, count: 0, records: new Uint8Array(0), committedTxid: 0 };
const log = pino({ level: "silent" });
const state = { nodeId: "jn", promisedEpoch: 2, writerEpoch: 2, firstTxid: 1, lastTxid: 0, committedTxid: 0, lastSegment: null };
/** A journal node's ok answer to fan-out `re`. */
const ok = (re: unknown): unknown => ({ ok: true, state, re });

function fanout(b: Bus): { f: JournalFanout<string>; got: { ref: string; node: string; reply: JournalReply }[] } {
  const got: { ref: string; node: string; reply: JournalReply }[] = [];
  return { f: new JournalFanout<string>(b.nc, "c1", log, (ref, node, reply) => got.push({ ref, node, reply })), got };
}

test("journal fan-out (review s24) - an answer counts once, for the node whose subject it came on, and only for a fan-out that named it", (t) => {
  const b = bus();
  const { f, got } = fanout(b);
  f.send(batch, [{ node: "jn1", ref: "a1" }, { node: "jn2", ref: "a2" }], 1000, 0);
  const re = b.published[0].body.re as string;
  b.answer("jn3", ok(re)); // not named
  b.answer("jn1", ok(re));
  b.answer("jn1", ok(re)); // a second answer
  t.deepEqual(got.map((g) => `${g.ref}@${g.node}`), ["a1@jn1"]);
  t.is(f.pending, 1);
});

test("journal fan-out (review s24) - another master's tags (a restarted master, the next data node's term) match nothing here", (t) => {
  const b = bus();
  const old = fanout(b);
  old.f.send(batch, [{ node: "jn1", ref: "old" }, { node: "jn2", ref: "old" }], 1000, 0);
  const oldRe = b.published[0].body.re as string;
  old.f.close();
  const now = fanout(b);
  now.f.send(batch, [{ node: "jn1", ref: "new" }, { node: "jn2", ref: "new" }], 1000, 0);
  b.answer("jn1", ok(oldRe));
  t.deepEqual(now.got, [], "the same sequence number under the old master's prefix");
});

test("journal fan-out (review s24) - a tag is matched exactly: '<prefix>.01' or '<prefix>.1.0' is not fan-out 1", (t) => {
  const b = bus();
  const { f, got } = fanout(b);
  f.send(batch, [{ node: "jn1", ref: "a1" }, { node: "jn2", ref: "a2" }], 1000, 0);
  const re = b.published[0].body.re as string;
  const prefix = re.slice(0, re.lastIndexOf(".") + 1);
  for (const odd of [`${prefix}01`, `${prefix}1.0`, `${prefix} 1`, `${prefix}0x1`, `${prefix}1e0`]) b.answer("jn1", ok(odd));
  t.deepEqual(got, [], "Number() of the tag's tail takes all of these for 1");
});

test("journal fan-out (review s24) - lost() and expire() answer each unanswered named node once, TIMEOUT; nothing stays", (t) => {
  const b = bus();
  const { f, got } = fanout(b);
  f.send(batch, [{ node: "jn1", ref: "a1" }, { node: "jn2", ref: "a2" }, { node: "jn3", ref: "a3" }], 100, 0);
  f.send(batch, [{ node: "jn1", ref: "b1" }, { node: "jn2", ref: "b2" }], 100, 10);
  b.answer("jn2", ok(b.published[0].body.re));
  t.true(f.late("jn1", 10, 10));
  f.lost("jn1", "restarted");
  t.false(f.late("jn1", 1000, 10));
  f.expire(105);
  f.expire(1000);
  t.deepEqual(got.map((g) => `${g.ref}@${g.node}:${g.reply.ok ? "ok" : g.reply.code}`).sort(), ["a1@jn1:TIMEOUT", "a2@jn2:ok", "a3@jn3:TIMEOUT", "b1@jn1:TIMEOUT", "b2@jn2:TIMEOUT"]);
  t.is(f.pending, 0);
});

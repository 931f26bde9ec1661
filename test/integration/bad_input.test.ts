/** Bad input on the write subject gets a clear, typed error reply, and the master keeps serving. */
import test from "ava";
import { request } from "../../src/nats/bus.js";
import { encode } from "../../src/protocol/codec.js";
import { subjects } from "../../src/protocol/subjects.js";
import { decode } from "../../src/protocol/codec.js";
import { startTestCluster, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";

let tc: TestCluster | undefined;
test.before(async () => {
  tc = await startTestCluster("badinput");
  await waitForWriter(tc);
});
test.after.always(async () => {
  await tc?.stop();
});

async function raw(body: Uint8Array): Promise<Record<string, unknown>> {
  const msg = await tc!.nc.request(subjects(tc!.cluster.cluster).write, body, { timeout: 5000 });
  return decode(msg.data) as Record<string, unknown>;
}

const cases: [string, () => Uint8Array, string][] = [
  ["not msgpack", () => Buffer.from("hello, this is not msgpack"), "NOT_MSGPACK"],
  ["empty body", () => new Uint8Array(0), "NOT_MSGPACK"],
  ["not an array", () => encode({ command: "SET" }), "BAD_REQUEST"],
  ["empty array", () => encode([]), "BAD_REQUEST"],
  ["an argument that is a map", () => encode(["SET", "k", { v: 1 }]), "BAD_REQUEST"],
  ["unknown command", () => encode(["NOPE", "k"]), "UNKNOWN_COMMAND"],
  ["read-only command", () => encode(["GET", "k"]), "NOT_A_WRITE"],
  ["blocking command", () => encode(["BLPOP", "k", "0"]), "COMMAND_REFUSED"],
  ["pub/sub command", () => encode(["PUBLISH", "c", "m"]), "COMMAND_REFUSED"],
  ["admin command", () => encode(["CONFIG", "SET", "maxmemory", "1"]), "COMMAND_REFUSED"],
  ["another database", () => encode(["MOVE", "k", "1"]), "COMMAND_REFUSED"],
  ["transaction control", () => encode(["MULTI"]), "COMMAND_REFUSED"],
  ["wrong arity", () => encode(["SET", "k"]), "WRONG_ARITY"],
  // Issue #11 item 3: the write map { args, id: { client, seq } }.
  ["a write map with a client id out of [A-Za-z0-9_-]", () => encode({ args: ["SET", "k", "v"], id: { client: "a.b", seq: 1 } }), "BAD_REQUEST"],
  ["a write map with seq 0", () => encode({ args: ["SET", "k", "v"], id: { client: "c", seq: 0 } }), "BAD_REQUEST"],
  ["a write map without args", () => encode({ id: { client: "c", seq: 1 } }), "BAD_REQUEST"],
  ["a write map with an unknown command", () => encode({ args: ["NOPE"], id: { client: "c", seq: 1 } }), "UNKNOWN_COMMAND"],
];

for (const [name, body, code] of cases) {
  test.serial(`bad input - ${name} is refused with ${code}, and the master keeps serving`, async (t) => {
    const reply = await raw(body());
    t.is(reply.ok, false);
    t.is(reply.code, code);
    t.true(typeof reply.message === "string" && reply.message.length > 0);
    const ok = await tc!.write(["SET", "still-serving", name]);
    t.true(ok.ok, JSON.stringify(ok));
  });
}

test.serial("bad input - a write over nats-server's max_payload, sent in bus fragments, is refused with PAYLOAD_TOO_LARGE; 300 KiB is a write", async (t) => {
  // Issue #10 class 5: writeBytesMax follows nats-server's max_payload (1 MiB here), no longer 256 KiB.
  const ok = await tc!.write(["SET", "k300", Buffer.alloc(300 * 1024, 1)]);
  t.true(ok.ok, JSON.stringify(ok).slice(0, 200));
  const reply = (await request(tc!.nc, subjects(tc!.cluster.cluster).write, ["SET", "k", Buffer.alloc(1536 * 1024, 1)], 10000)) as Record<string, unknown>;
  t.is(reply.code, "PAYLOAD_TOO_LARGE");
  t.regex(String(reply.message), /max_payload/);
  t.true((await tc!.write(["SET", "still-serving", "oversized"])).ok);
});

test.serial("bad input - a Redis error is a REDIS_ERROR reply, and nothing changes", async (t) => {
  t.true((await tc!.write(["SET", "str", "x"])).ok);
  const reply = await tc!.write(["LPUSH", "str", "y"]);
  t.false(reply.ok);
  if (!reply.ok) {
    t.is(reply.code, "REDIS_ERROR");
    t.regex(reply.message, /WRONGTYPE/);
  }
  t.true((await tc!.write(["SET", "after", "1"])).ok);
});

test.serial("bad input - garbage and forged records on a journal node's subject are refused; it keeps serving", async (t) => {
  // Sent with the master's NATS user: the only one nats-server lets publish on a journal node's writer subject.
  const asMaster = await tc!.connectAs("m1");
  const subject = subjects(tc!.cluster.cluster).journal("jn1");
  const ask = async (body: Uint8Array) => decode((await asMaster.request(subject, body, { timeout: 5000 })).data) as Record<string, unknown>;
  t.is((await ask(Buffer.from("garbage"))).code, "NOT_MSGPACK");
  t.is((await ask(encode({ type: "explode" }))).code, "BAD_REQUEST");
  t.is((await ask(encode({ type: "journal", epoch: "x" }))).code, "BAD_REQUEST");
  // Epoch 0 is no writer's (the first one is epoch 1), and one past u32 fits in no record: refused as input.
  for (const epoch of [0, 2 ** 32]) {
    const forged = await ask(encode({ type: "journal", epoch, segmentTxid: 1, firstTxid: 1, count: 1, records: Buffer.from("not a record"), committedTxid: 0 }));
    t.is(forged.code, "BAD_REQUEST");
  }
  // A read sent on the writer's subject is refused: each subject serves only the requests routed to it.
  t.is((await ask(encode({ type: "getState" }))).code, "BAD_REQUEST");
  const state = decode((await asMaster.request(subjects(tc!.cluster.cluster).journalRead("jn1"), encode({ type: "getState" }), { timeout: 5000 })).data) as Record<string, unknown>;
  t.is(state.ok, true);
  t.true((await tc!.write(["SET", "after-jn-garbage", "1"])).ok);
});

test.serial("bad input - malformed and forged commit hints change no journal node's promise and apply nothing; replicas still follow writes", async (t) => {
  // Only a master's user may publish commit hints (nats-server's permissions): the forger here is one.
  const asMaster = await tc!.connectAs("m1");
  const s = subjects(tc!.cluster.cluster);
  const getState = async () => (decode((await asMaster.request(s.journalRead("jn1"), encode({ type: "getState" }), { timeout: 5000 })).data) as { state: { promisedEpoch: number; writerEpoch: number; lastTxid: number; committedTxid: number; lastSegment: { startTxid: number } } }).state;
  const first = await tc!.write(["SET", "before-hints", "1"]);
  t.true(first.ok);
  const before = await getState();
  const epoch = before.writerEpoch;
  for (const body of [
    Buffer.from("garbage"),
    encode({ epoch: "x" }),
    encode({ epoch: 0, segmentTxid: 1, committedTxid: 5 }),
    encode({ epoch: epoch + 5, segmentTxid: before.lastSegment.startTxid, committedTxid: 1e12 }), // no implicit promise
    encode({ epoch, segmentTxid: before.lastSegment.startTxid + 1000, committedTxid: 1e12 }), // not the open segment
    encode({ epoch, segmentTxid: before.lastSegment.startTxid, committedTxid: 1e12 }), // only ever what the node holds
  ]) {
    asMaster.publish(s.committed, body);
  }
  await asMaster.flush();
  const after = await getState();
  t.is(after.promisedEpoch, before.promisedEpoch, "a hint promises nothing");
  t.true(after.committedTxid <= after.lastTxid, "never past what the node holds");
  const next = await tc!.write(["SET", "after-hints", "1"]);
  if (!next.ok) return t.fail(JSON.stringify(next));
  const replicas = await waitForReplicas(tc!, next.txid);
  for (const r of replicas) t.is(r.health, "ok", `${r.id} after the hints (${String(r.details.lastError)})`);
  t.true(replicas.every((r) => r.appliedTxid <= next.txid + 1), "replicas applied what was written, nothing a hint named");
});

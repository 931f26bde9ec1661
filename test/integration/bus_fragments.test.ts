/**
 * The bus's fragmentation on a real nats-server started with a small max_payload (64 KiB): requests and replies
 * larger than one message arrive whole; a forged fragment stream gets a typed error and the subscription serves on.
 */
import test from "ava";
import crypto from "node:crypto";
import { headers } from "@nats-io/transport-node";
import { maxPayload, request, serve, type BusLimits } from "../../src/nats/bus.js";
import { FRAG_HEADER, PULL_HEADER } from "../../src/nats/fragments.js";
import { decode, encode } from "../../src/protocol/codec.js";
import { createLogger } from "../../src/util/log.js";
import { loneNats } from "../helpers/lone_nats.js";

const MAX_PAYLOAD = 64 * 1024;
const log = createLogger("bus-fragments-test");
const limits: BusLimits = { busMessageBytesMax: 4 * 1024 * 1024, busReassemblyBytesMax: 8 * 1024 * 1024, busReassemblyStreamsMax: 4, busFragmentIdleMs: 5000 };

const { connection } = loneNats(test, "bus-fragments", `max_payload: ${MAX_PAYLOAD}\n`);

const sha = (b: Uint8Array): string => crypto.createHash("sha256").update(b).digest("hex");

/** Echoes what it got (size and hash) and answers with `replyBytes` bytes of its own. */
async function echoServer(subject: string): Promise<void> {
  const nc = await connection(`server-${subject}`);
  serve(
    nc,
    subject,
    log,
    (body) => {
      const b = body as { data: Uint8Array; replyBytes: number };
      return { ok: true, got: b.data.length, sha: sha(b.data), reply: Buffer.alloc(b.replyBytes, 7) };
    },
    { limits },
  );
  await nc.flush();
}

test("bus - requests and replies larger than max_payload arrive whole, in fragments", async (t) => {
  await echoServer("frag.echo");
  const nc = await connection("client");
  t.is(maxPayload(nc), MAX_PAYLOAD);
  for (const [sent, replied] of [
    [10, 10],
    [300 * 1024, 10],
    [10, 500 * 1024],
    [1024 * 1024, 1024 * 1024],
    [MAX_PAYLOAD - 1024, MAX_PAYLOAD * 2],
  ]) {
    const data = crypto.randomBytes(sent);
    const reply = (await request(nc, "frag.echo", { data, replyBytes: replied }, 10000)) as { ok: boolean; got: number; sha: string; reply: Uint8Array };
    t.true(reply.ok, `${sent}/${replied}`);
    t.is(reply.got, sent);
    t.is(reply.sha, sha(data));
    t.deepEqual(Buffer.from(reply.reply), Buffer.alloc(replied, 7));
  }
  // Several at once from several connections: streams do not mix.
  const other = await connection("client-2");
  const all = await Promise.all(
    [nc, other, nc, other].map(async (c, i) => {
      const data = crypto.randomBytes(200 * 1024 + i);
      const r = (await request(c, "frag.echo", { data, replyBytes: 100 * 1024 + i }, 10000)) as { sha: string; reply: Uint8Array };
      return r.sha === sha(data) && r.reply.length === 100 * 1024 + i;
    }),
  );
  t.deepEqual(all, [true, true, true, true]);
});

test("bus - a body over busMessageBytesMax is refused with PAYLOAD_TOO_LARGE, a reply, not a crash", async (t) => {
  await echoServer("frag.big");
  const nc = await connection("client-big");
  const reply = (await request(nc, "frag.big", { data: Buffer.alloc(5 * 1024 * 1024), replyBytes: 1 }, 10000)) as { ok: boolean; code: string };
  t.like(reply, { ok: false, code: "PAYLOAD_TOO_LARGE" });
  const again = (await request(nc, "frag.big", { data: Buffer.alloc(100 * 1024), replyBytes: 1 }, 10000)) as { ok: boolean; got: number };
  t.like(again, { ok: true, got: 100 * 1024 });
});

test("bus - forged fragment streams get typed errors; memory stays bounded and the subject keeps serving", async (t) => {
  await echoServer("frag.forged");
  const nc = await connection("forger");
  const raw = async (value: string, data: Uint8Array, header = FRAG_HEADER): Promise<{ ok: boolean; code?: string }> => {
    const h = headers();
    h.set(header, value);
    const msg = await nc.request("frag.forged", data, { timeout: 5000, headers: h });
    return decode(msg.data) as { ok: boolean; code?: string };
  };
  t.like(await raw("garbage", Buffer.alloc(10)), { ok: false, code: "BAD_REQUEST" });
  t.like(await raw("s1 1 3 30", Buffer.alloc(10)), { ok: false, code: "BAD_REQUEST" }, "no first fragment");
  t.like(await raw("s1 0 3 30", Buffer.alloc(10)), { ok: true });
  t.like(await raw("s1 2 3 30", Buffer.alloc(10)), { ok: false, code: "BAD_REQUEST" }, "a gap");
  t.like(await raw("s2 0 2 99999999999", Buffer.alloc(10)), { ok: false, code: "PAYLOAD_TOO_LARGE" }, "a huge announced size");
  // Streams that never finish: past busReassemblyStreamsMax (4) or busReassemblyBytesMax, OVERLOADED.
  for (let i = 0; i < 2; i++) t.like(await raw(`open${i} 0 2 ${3 * 1024 * 1024}`, Buffer.alloc(10)), { ok: true });
  t.like(await raw(`open2 0 2 ${3 * 1024 * 1024}`, Buffer.alloc(10)), { ok: false, code: "OVERLOADED" }, "bytes");
  for (let i = 3; i < 5; i++) t.like(await raw(`open${i} 0 2 100`, Buffer.alloc(10)), { ok: true });
  t.like(await raw(`open5 0 2 100`, Buffer.alloc(10)), { ok: false, code: "OVERLOADED" }, "streams");
  t.like(await raw("nosuch 1", Buffer.alloc(0), PULL_HEADER), { ok: false, code: "NOT_FOUND" }, "a pull of nothing");
  t.like(await raw("bad pull header", Buffer.alloc(0), PULL_HEADER), { ok: false, code: "BAD_REQUEST" });
  // Plain requests still pass: the bound is on unfinished fragment streams only.
  const small = (await request(nc, "frag.forged", { data: Buffer.alloc(10), replyBytes: 10 }, 5000)) as { ok: boolean };
  t.true(small.ok);
  const msg = await nc.request("frag.forged", encode({ data: Buffer.alloc(5), replyBytes: 1 }), { timeout: 5000 });
  t.like(decode(msg.data), { ok: true, got: 5 });
});

/**
 * The bus's requests (src/nats/reply_mux.ts) on a real nats-server: replies matched to their requests however they
 * interleave, "no responders" and timeouts as errors, a late reply dropped, and a closed connection failing what waits.
 */
import test from "ava";
import fs from "node:fs";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { request } from "../../src/nats/bus.js";
import { startNatsServer } from "../../src/nats/nats_server.js";
import { NoRespondersError, RequestTimeoutError, replyMux } from "../../src/nats/reply_mux.js";
import { encode } from "../../src/protocol/codec.js";
import { QjmError } from "../../src/protocol/errors.js";
import { freePort } from "../../src/process/ports.js";
import { loneNats } from "../helpers/lone_nats.js";

const nats = loneNats(test, "reply-mux");
const connection = nats.connection;

test("reply mux - 500 concurrent requests each get their own reply, answered out of order", async (t) => {
  const responder = await connection("responder");
  const held: { reply: string; n: number }[] = [];
  responder.subscribe("mux.shuffle", {
    callback: (_err, msg) => {
      held.push({ reply: msg.reply!, n: Number(new TextDecoder().decode(msg.data)) });
      // Answer in batches of 50, last first.
      if (held.length % 50 === 0) for (const h of held.splice(0).reverse()) responder.publish(h.reply, new TextEncoder().encode(`re:${h.n}`));
    },
  });
  await responder.flush();
  const nc = await connection("requester");
  const replies = await Promise.all(Array.from({ length: 500 }, (_, n) => replyMux(nc).request("mux.shuffle", new TextEncoder().encode(String(n)), 10_000)));
  t.deepEqual(replies.map((m) => new TextDecoder().decode(m.data)), Array.from({ length: 500 }, (_, n) => `re:${n}`));
  t.is(replyMux(nc).waiting, 0);
});

test("reply mux - no subscriber: NoRespondersError at once; none in time: a timeout; a late reply is dropped", async (t) => {
  const nc = await connection("lonely");
  const started = Date.now();
  await t.throwsAsync(replyMux(nc).request("mux.nobody", new Uint8Array(1), 10_000), { instanceOf: NoRespondersError });
  t.true(Date.now() - started < 5_000, "not a timeout");
  const responder = await connection("slow");
  let late: (() => void) | null = null;
  const answered = new Promise<void>((resolve) => (late = resolve));
  responder.subscribe("mux.slow", {
    callback: (_err, msg) => {
      setTimeout(() => {
        responder.publish(msg.reply!, new Uint8Array([1]));
        void responder.flush().then(late!);
      }, 300);
    },
  });
  await responder.flush();
  await t.throwsAsync(replyMux(nc).request("mux.slow", new Uint8Array(1), 100), { instanceOf: RequestTimeoutError });
  await answered;
  await nc.flush();
  t.is(replyMux(nc).waiting, 0, "the late reply found nothing to answer");
  // The bus's request wraps both as TIMEOUT QjmErrors, as before.
  const err = await t.throwsAsync(request(nc, "mux.nobody", { x: 1 }, 1_000));
  t.true(err instanceof QjmError && err.code === "TIMEOUT");
});

test("reply mux - a closed connection fails the requests waiting, and refuses new ones", async (t) => {
  const responder = await connection("mute");
  responder.subscribe("mux.mute", { callback: () => {} });
  await responder.flush();
  const nc = await connection("closing");
  const waiting = replyMux(nc).request("mux.mute", encode({ a: 1 }), 60_000);
  await nc.flush();
  await nc.close();
  await t.throwsAsync(waiting, { message: /closed/ });
  await t.throwsAsync(replyMux(nc).request("mux.mute", new Uint8Array(1), 1_000), { message: /closed/ });
});

test("reply mux - sends once per turn: a request that timed out before its turn's send is not sent (review s30)", async (t) => {
  const responder = await connection("turn-responder");
  const seen: string[] = [];
  responder.subscribe("mux.turn", {
    callback: (_err, msg) => {
      seen.push(new TextDecoder().decode(msg.data));
      msg.respond(msg.data);
    },
  });
  await responder.flush();
  const nc = await connection("turn-requester");
  replyMux(nc).sendsPerTurn();
  const outcome = await new Promise<string>((resolve) => {
    setImmediate(() => {
      // Asked in a check phase: its send waits for the next one, and its 2 ms timer fires first (the loop is held).
      replyMux(nc).request("mux.turn", new TextEncoder().encode("late"), 2).then(
        () => resolve("answered"),
        (err: Error) => resolve(err instanceof RequestTimeoutError ? "timed out" : err.message),
      );
      const until = Date.now() + 10;
      while (Date.now() < until);
    });
  });
  t.is(outcome, "timed out");
  // A request after it, answered, shows whether the first had gone out before it.
  t.is(new TextDecoder().decode((await replyMux(nc).request("mux.turn", new TextEncoder().encode("next"), 5_000)).data), "next");
  t.deepEqual(seen, ["next"]);
});

test("reply mux - a publish the user may not make fails at once with the server's permission error (review s30)", async (t) => {
  const conf = path.join(nats.dir(), "perm.conf");
  fs.writeFileSync(conf, `authorization { users = [ { user: u, password: p, permissions: { publish: { allow: ["ok.>"] }, subscribe: { allow: ["_INBOX.u.>"] }, allow_responses: true } }, { user: r, password: p } ] }\n`);
  const restricted = await startNatsServer(await freePort(), { logDir: nats.dir(), args: ["-c", conf] });
  t.teardown(() => restricted.stop());
  const responder = nats.track(await connect({ servers: restricted.url, user: "r", pass: "p" }));
  for (const subject of ["ok.echo", "no.echo"]) responder.subscribe(subject, {
    callback: (_err, msg) => {
      msg.respond(msg.data);
    },
  });
  await responder.flush();
  const nc = nats.track(await connect({ servers: restricted.url, user: "u", pass: "p", inboxPrefix: "_INBOX.u" }));
  t.deepEqual([...(await replyMux(nc).request("ok.echo", new Uint8Array([1]), 5_000)).data], [1], "inside the user's inbox prefix");
  const started = Date.now();
  await t.throwsAsync(replyMux(nc).request("no.echo", new Uint8Array([2]), 10_000), { message: /Permissions Violation/ });
  t.true(Date.now() - started < 5_000, "not at its timeout");
  t.is(replyMux(nc).waiting, 0);
});

/** The thin NATS adapter every actor and client uses: connect, serve a subject, request, publish. */
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, QjmError, toErrorReply } from "../protocol/errors.js";
import type { Logger } from "../util/log.js";
import { natsAuthOptions, readNatsCredentials } from "./auth.js";

export type { NatsConnection };

/** `credsFile`: a credentials file (src/nats/auth.ts) to authenticate with; null for a nats-server without users. */
export async function connectBus(url: string, name: string, credsFile: string | null = null): Promise<NatsConnection> {
  return await connect({
    servers: url,
    name,
    ...(credsFile === null ? {} : natsAuthOptions(readNatsCredentials(credsFile))),
    // Actors outlive a restarting nats-server: keep trying, forever, at a bounded pace.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 5000,
    // No error object (and stack capture) made up front for every request: it costs the write path real CPU.
    noAsyncTraces: true,
  });
}

/**
 * Answers requests on `subject`: the body is decoded, `handler` returns the reply value. A thrown QjmError becomes
 * `{ok: false, code, message}`; anything else is logged and answered with INTERNAL. The actor never crashes on input.
 */
export function serve(
  nc: NatsConnection,
  subject: string,
  log: Logger,
  handler: (body: unknown, raw: Uint8Array) => Promise<unknown> | unknown,
  options: { queue?: string } = {},
): Subscription {
  return nc.subscribe(subject, {
    queue: options.queue,
    callback: (err, msg) => {
      if (err) {
        log.error({ err, subject }, "subscription error");
        return;
      }
      void (async () => {
        let reply: unknown;
        try {
          const body = decode(msg.data);
          reply = await handler(body, msg.data);
        } catch (e) {
          if (!(e instanceof QjmError)) log.error({ err: e, subject }, "request handler failed");
          else log.debug({ code: e.code, msg: e.message, subject }, "request refused");
          reply = toErrorReply(e);
        }
        if (msg.reply) {
          try {
            msg.respond(encode(reply));
          } catch (e) {
            log.warn({ err: e, subject }, "could not send reply");
          }
        }
      })();
    },
  });
}

/** One request; the reply is decoded; a timeout or no responder is a TIMEOUT QjmError. */
export async function request(nc: NatsConnection, subject: string, body: unknown, timeoutMs: number): Promise<unknown> {
  let data: Uint8Array;
  try {
    const msg = await nc.request(subject, encode(body), { timeout: timeoutMs });
    data = msg.data;
  } catch (err) {
    throw new QjmError(ErrorCode.TIMEOUT, `request to ${subject} failed: ${(err as Error).message}`, { cause: err });
  }
  return decode(data);
}

/** Every reply to one request that arrives within `waitMs` (status of all actors). */
export async function requestAll(nc: NatsConnection, subject: string, body: unknown, waitMs: number): Promise<unknown[]> {
  const replies: unknown[] = [];
  const iter = await nc.requestMany(subject, encode(body), { maxWait: waitMs, strategy: "timer" });
  for await (const msg of iter) {
    try {
      replies.push(decode(msg.data));
    } catch {
      /* a malformed reply from someone else on the subject: skip it */
    }
  }
  return replies;
}

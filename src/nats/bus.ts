/** The thin NATS adapter every actor and client uses: connect, serve a subject, request, publish. */
import type { TurnShare } from "../util/turn_budget.js";
import { randomBytes } from "node:crypto";
import { connect, headers, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { defaults, natsUrls, type Config } from "../config/config.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, QjmError, toErrorReply } from "../protocol/errors.js";
import type { Logger } from "../util/log.js";
import { natsAuthOptions, readNatsCredentials } from "./auth.js";
import type { NatsTls } from "./tls.js";
import { replyMux } from "./reply_mux.js";
import { FRAG_HEADER, PULL_HEADER, ReplyOutbox, Reassembler, formatFragHeader, fragmentBytes, parseFragHeader, parsePullHeader, splitBody, type FragmentLimits } from "./fragments.js";

export type { NatsConnection };

/**
 * `credsFile`: a credentials file (src/nats/auth.ts) to authenticate with; null for a nats-server without users.
 * `url`: one server, or several (an array, or QJM_NATS_URL's comma-separated form); the connection fails over between them.
 * `waitForServer`: keep dialling until a server answers (actors); otherwise the first failed dial is an error.
 * `inOrder`: try the servers in the order given (the local cluster hands each actor the list starting at another
 * server, to spread them); otherwise nats.js shuffles them (clients).
 * `tls`: the CA, certificate and key of a TLS bus (tls.ts, clientTls); none: plain, which a TLS-only server refuses.
 */
export async function connectBus(
  url: string | string[],
  name: string,
  credsFile: string | null = null,
  options: { waitForServer?: boolean; inOrder?: boolean; tls?: NatsTls | null; timing?: NatsTiming } = {},
): Promise<NatsConnection> {
  const timing = options.timing ?? defaults;
  return await connect({
    servers: typeof url === "string" ? natsUrls(url) : url,
    noRandomize: options.inOrder === true,
    name,
    // An actor (re)started while its link to nats-server is down waits for it, as it does on a reconnect, instead of
    // dying on its first dial (a refused or timed-out connect); a client or the CLI wants the error at once.
    waitOnFirstConnect: options.waitForServer === true,
    ...(credsFile === null ? {} : natsAuthOptions(readNatsCredentials(credsFile))),
    ...(options.tls == null ? {} : { tls: options.tls }),
    // Actors outlive a restarting nats-server: keep trying, forever, at a bounded pace.
    maxReconnectAttempts: -1,
    reconnectTimeWait: timing.natsReconnectWaitMs,
    pingInterval: timing.natsPingIntervalMs,
    maxPingOut: 2,
    timeout: timing.natsConnectTimeoutMs,
    // No error object (and stack capture) made up front for every request: it costs the write path real CPU.
    noAsyncTraces: true,
  });
}

/** How a connection notices a silent server and redials (config.ts); actors and the CLI pass their config. */
export type NatsTiming = Pick<Config, "natsPingIntervalMs" | "natsConnectTimeoutMs" | "natsReconnectWaitMs">;

/** Bus limits (config.ts, block "sizes"); actors pass their config, other callers get the defaults. */
export type BusLimits = FragmentLimits;

const busDefaults: BusLimits = {
  busMessageBytesMax: defaults.busMessageBytesMax,
  busReassemblyBytesMax: defaults.busReassemblyBytesMax,
  busReassemblyStreamsMax: defaults.busReassemblyStreamsMax,
  busFragmentIdleMs: defaults.busFragmentIdleMs,
};

/**
 * A fragment stream's id: 128 random bits each. A reply kept in the outbox is pulled by its id, on a subject other
 * clients may publish to: an id that could be guessed would let them read, or consume, another requester's reply.
 */
function newStreamId(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Replies go only to a requester's inbox (every user's inbox prefix starts with _INBOX.): a request whose reply
 * subject names anything else (another actor's heartbeat subject, a journal node's) would make us publish there.
 */
function replyable(msg: Msg): boolean {
  return typeof msg.reply === "string" && msg.reply.startsWith("_INBOX.");
}

/** Body bytes one message may carry on this connection: the server's max_payload (it may change on reconnect). */
export function maxPayload(nc: NatsConnection): number {
  return nc.info?.max_payload ?? 1024 * 1024;
}

function fragHeaders(name: string, value: string): MsgHdrs {
  const h = headers();
  h.set(name, value);
  return h;
}

/**
 * Answers requests on `subject`: the body is decoded, `handler` returns the reply value. A thrown QjmError becomes
 * `{ok: false, code, message}`; anything else is logged and answered with INTERNAL. The actor never crashes on input.
 * Bodies and replies larger than one NATS message travel as fragments (fragments.ts), within `limits`.
 */
export function serve(
  nc: NatsConnection,
  subject: string,
  log: Logger,
  handler: (body: unknown, raw: Uint8Array) => Promise<unknown> | unknown,
  options: { queue?: string } & ServeOptions = {},
): Subscription {
  return serveAll(nc, [{ subject, queue: options.queue }], log, handler, options)[0]!;
}

export interface ServeOptions {
  limits?: BusLimits;
  budget?: TurnShare;
  deferredBytesMax?: number;
}

/**
 * `serve` over several subscriptions with ONE intake: requests are taken in the order they arrive on the socket,
 * whichever subscription carried them (nats.js calls callback subscriptions synchronously in socket order), through
 * one turn-budget FIFO. Two FIFOs would let a request on one subject overtake one deferred on the other — a client's
 * write k sent to the queue group and k+1 to the master's own subject (src/master/master.ts).
 */
export function serveAll(
  nc: NatsConnection,
  subs: readonly { subject: string; queue?: string }[],
  log: Logger,
  handler: (body: unknown, raw: Uint8Array) => Promise<unknown> | unknown,
  options: ServeOptions = {},
): Subscription[] {
  const limits = options.limits ?? busDefaults;
  const admit = options.budget === undefined ? (_bytes: number, run: () => void) => run() : budgeted(options.budget, options.deferredBytesMax ?? Number.MAX_SAFE_INTEGER);
  const reassembler = new Reassembler(limits);
  const outbox = new ReplyOutbox(limits);
  const answer = (msg: Msg, reply: unknown): void => {
    if (!replyable(msg)) return;
    try {
      respond(nc, msg, encode(reply), outbox);
    } catch (e) {
      log.warn({ err: e, subject: msg.subject }, "could not send reply");
    }
  };
  return subs.map(({ subject, queue }) => nc.subscribe(subject, {
    queue,
    callback: (err, msg) => {
      if (err) {
        log.error({ err, subject }, "subscription error");
        return;
      }
      let raw: Uint8Array | null;
      try {
        raw = receive(msg, reassembler, outbox, nc);
      } catch (e) {
        log.debug({ err: e, subject }, "fragment refused");
        answer(msg, toErrorReply(e));
        return;
      }
      if (raw === null) return;
      const body = raw;
      admit(body.length, () => void (async () => {
        let reply: unknown;
        try {
          reply = await handler(decode(body), body);
        } catch (e) {
          if (!(e instanceof QjmError)) log.error({ err: e, subject }, "request handler failed");
          else log.debug({ code: e.code, msg: e.message, subject }, "request refused");
          reply = toErrorReply(e);
        }
        answer(msg, reply);
      })());
    },
  }));
}

/**
 * Runs each request's decode and handler within `budget`, in arrival order: once the turn's share is spent, requests
 * wait in a FIFO drained in later turns (a 10k-argument write costs ~5 ms to decode and run; twenty of them off one
 * socket read held the master's loop past masterTimeoutMs on a host short of cores). The FIFO holds at most
 * `bytesMax` of bodies: a request past it first runs every one waiting, then itself, in this turn — the socket's next
 * read then waits for that work (backpressure, as without a budget) instead of the FIFO growing without bound.
 * Exported for its unit test.
 */
export function budgeted(budget: TurnShare, bytesMax: number): (bytes: number, run: () => void) => void {
  let queue: { bytes: number; run: () => void }[] = [];
  let head = 0;
  let held = 0;
  const next = (): void => {
    const { bytes, run } = queue[head];
    queue[head++] = DONE;
    held -= bytes;
    run();
  };
  const reset = (): void => {
    queue = [];
    head = 0;
  };
  const drain = (): void => {
    while (head < queue.length && budget.spend()) next();
    if (head < queue.length) return budget.later(drain);
    reset();
  };
  return (bytes, run) => {
    if (head === queue.length && budget.spend()) return run();
    if (held + bytes > bytesMax) {
      while (head < queue.length) next();
      reset(); // the drain already asked for finds nothing waiting
      return run();
    }
    queue.push({ bytes, run });
    held += bytes;
    if (queue.length - head === 1) budget.later(drain);
  };
}

const DONE = { bytes: 0, run: (): void => {} };

/**
 * A message's whole body, or null when the bus answered it itself (an ack of a request fragment, a reply fragment
 * pulled from the outbox). Throws a QjmError for a fragment it refuses.
 */
function receive(msg: Msg, reassembler: Reassembler, outbox: ReplyOutbox, nc: NatsConnection): Uint8Array | null {
  const pull = msg.headers?.get(PULL_HEADER);
  if (pull) {
    const p = parsePullHeader(pull);
    const part = outbox.pull(p.stream, p.index, Date.now());
    if (replyable(msg)) msg.respond(part.data, { headers: fragHeaders(FRAG_HEADER, formatFragHeader(part.header)) });
    return null;
  }
  const frag = msg.headers?.get(FRAG_HEADER);
  if (!frag) return msg.data;
  const whole = reassembler.add(parseFragHeader(frag), msg.data, Date.now());
  if (whole === null && replyable(msg)) nc.publish(msg.reply!, encode({ ok: true, fragment: true }));
  return whole;
}

/** Sends a reply; one too large for a message goes out as its first fragment, the rest kept for pulls. */
function respond(nc: NatsConnection, msg: Msg, data: Uint8Array, outbox: ReplyOutbox): void {
  const size = fragmentBytes(maxPayload(nc));
  if (data.length <= size) {
    msg.respond(data);
    return;
  }
  let first;
  try {
    // A copy: msgpackr may reuse the buffer `encode` returned, and the outbox keeps it across turns.
    first = outbox.put(newStreamId(), Buffer.from(data), size, Date.now());
  } catch (e) {
    // The request was carried out (a write is committed): say so, rather than an error a client would retry.
    const why = e instanceof Error ? e.message : String(e);
    msg.respond(encode({ ok: false, code: ErrorCode.REPLY_UNDELIVERABLE, message: `the reply (${data.length} bytes) could not be kept for pulling: ${why}` }));
    return;
  }
  msg.respond(first.data, { headers: fragHeaders(FRAG_HEADER, formatFragHeader(first.header)) });
}

/** One request; the reply is decoded; a timeout or no responder is a TIMEOUT QjmError. Large bodies go in fragments. */
export async function request(nc: NatsConnection, subject: string, body: unknown, timeoutMs: number): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  try {
    const data = encode(body);
    const size = fragmentBytes(maxPayload(nc));
    let msg: Msg;
    if (data.length <= size) {
      msg = await replyMux(nc).request(subject, data, left());
    } else {
      // A copy: msgpackr may reuse the buffer `encode` returned, and the fragments leave over several turns.
      const sent = await sendFragments(nc, subject, Buffer.from(data), size, left);
      if (!("msg" in sent)) return sent.refused;
      msg = sent.msg;
    }
    return decode(await pullReply(nc, subject, msg, left));
  } catch (err) {
    if (err instanceof QjmError) throw err;
    throw new QjmError(ErrorCode.TIMEOUT, `request to ${subject} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** Sends `data` as fragments: each is acked before the next leaves (flow control); the last one's answer is the reply. */
async function sendFragments(nc: NatsConnection, subject: string, data: Uint8Array, size: number, left: () => number): Promise<{ msg: Msg } | { refused: unknown }> {
  const parts = splitBody(data, size);
  const stream = newStreamId();
  for (let index = 0; index < parts.length; index++) {
    const h = fragHeaders(FRAG_HEADER, formatFragHeader({ stream, index, count: parts.length, total: data.length }));
    const msg = await replyMux(nc).request(subject, parts[index], left(), h);
    if (index === parts.length - 1) return { msg };
    const ack = decode(msg.data) as { ok?: unknown };
    // The receiver refused the stream (too large, overloaded, broken): its error is the reply.
    if (ack?.ok !== true) return { refused: ack };
  }
  throw new QjmError(ErrorCode.INTERNAL, "unreachable: a fragmented request ended without a reply");
}

/** The whole reply body: the first message's, or every fragment pulled from the replier, checked. */
async function pullReply(nc: NatsConnection, subject: string, first: Msg, left: () => number): Promise<Uint8Array> {
  const frag = first.headers?.get(FRAG_HEADER);
  if (!frag) return first.data;
  const h = parseFragHeader(frag);
  if (h.index !== 0 || h.total > busDefaults.busMessageBytesMax) throw new QjmError(ErrorCode.PAYLOAD_TOO_LARGE, `reply of ${h.total} bytes from ${subject}`);
  const parts: Uint8Array[] = [first.data];
  let received = first.data.length;
  for (let index = 1; index < h.count; index++) {
    const msg = await replyMux(nc).request(subject, new Uint8Array(0), left(), fragHeaders(PULL_HEADER, `${h.stream} ${index}`));
    const got = msg.headers?.get(FRAG_HEADER);
    if (!got) {
      // The replier's error (the reply expired from its outbox): as the reply.
      return msg.data;
    }
    const gh = parseFragHeader(got);
    if (gh.stream !== h.stream || gh.index !== index || gh.count !== h.count || received + msg.data.length > h.total) {
      throw new QjmError(ErrorCode.BAD_REQUEST, `reply fragment ${gh.index} of ${gh.stream} from ${subject} does not continue ${h.stream} at ${index}`);
    }
    parts.push(msg.data);
    received += msg.data.length;
  }
  if (received !== h.total) throw new QjmError(ErrorCode.BAD_REQUEST, `reply from ${subject} has ${received} bytes, its header said ${h.total}`);
  return Buffer.concat(parts, received);
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

/**
 * Requests over one reply subscription per connection, each reply matched by the token that ends its subject, as
 * nats.js's own requests are, without nats.js's request objects: it makes an error object (a stack capture) for every
 * request it resolves, rejecting the already-resolved promise as "cancelled" — ~11 µs of the master's node CPU per
 * write through its front door, ~5 % of that process's busy time.
 */
import { createInbox, errors, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";

/** No subscriber on the subject (nats-server's 503 status reply). */
export class NoRespondersError extends Error {}

/** No reply within the request's time. */
export class RequestTimeoutError extends Error {}

interface Outgoing {
  subject: string;
  data: Uint8Array;
  /** Its key in `pending`; the reply subject is the prefix and it. */
  token: string;
  reply: string;
  headers?: MsgHdrs;
}

interface Pending {
  subject: string;
  resolve(msg: Msg): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** nats-server's status code of a reply that says no one subscribes to the request's subject. */
const NO_RESPONDERS = 503;

const muxes = new WeakMap<NatsConnection, ReplyMux>();

/** The connection's mux, made at its first request. */
export function replyMux(nc: NatsConnection): ReplyMux {
  let mux = muxes.get(nc);
  if (mux === undefined) {
    // The connection's inbox prefix: a cluster with users lets each subscribe to its own inboxes only.
    mux = new ReplyMux(nc, (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    muxes.set(nc, mux);
  }
  return mux;
}

export class ReplyMux {
  private readonly pending = new Map<string, Pending>();
  /** Requests to publish at the end of this turn of the event loop (sendsPerTurn), in the order asked. */
  private outbox: Outgoing[] | null = null;
  private sub: Subscription | null = null;
  private prefix = "";
  private next = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly inboxPrefix: string | undefined,
  ) {
    void nc.closed().then(() => this.failAll(new Error("connection closed")));
    void this.watchPermissions();
  }

  /**
   * From now on, requests asked in one turn of the event loop leave together at its end: nats.js writes its socket
   * once per microtask checkpoint, i.e. once per socket event of a front door's clients (50 redis-benchmark
   * connections: a write system call per request, each waking nats-server). Requests keep their order; a plain publish
   * on the connection may pass one asked earlier in the same turn, so only a connection whose order across subjects
   * nothing relies on takes this (the front door's own).
   */
  sendsPerTurn(): void {
    this.outbox ??= [];
  }

  /** One request; its reply, or a NoRespondersError, RequestTimeoutError or the connection's error. */
  request(subject: string, data: Uint8Array, timeoutMs: number, headers?: MsgHdrs): Promise<Msg> {
    if (this.nc.isClosed()) return Promise.reject(new Error("connection closed"));
    try {
      this.subscribe();
    } catch (err) {
      return Promise.reject(err as Error); // draining
    }
    const token = (this.next++).toString(36);
    const reply = this.prefix + token;
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new RequestTimeoutError(`timeout: no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(token, { subject, resolve, reject, timer });
      const out: Outgoing = { subject, data, token, reply, headers };
      if (this.outbox === null) return this.send(out);
      this.outbox.push(out);
      if (this.outbox.length === 1) setImmediate(() => this.sendOutbox());
    });
  }

  private sendOutbox(): void {
    const out = this.outbox!;
    this.outbox = [];
    // One whose time ran out in the turn it was asked in is not sent: its caller was told it timed out.
    for (const o of out) if (this.pending.has(o.token)) this.send(o);
  }

  private send(o: Outgoing): void {
    try {
      this.nc.publish(o.subject, o.data, o.headers === undefined ? { reply: o.reply } : { reply: o.reply, headers: o.headers });
    } catch (err) {
      this.settle(o.token)?.reject(err as Error);
    }
  }

  /** Requests waiting for their reply (tests). */
  get waiting(): number {
    return this.pending.size;
  }

  private subscribe(): void {
    if (this.sub !== null) return;
    this.prefix = `${createInbox(this.inboxPrefix)}.`;
    const sub = this.nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => this.deliver(err, msg) });
    this.sub = sub;
    // A subscription the server refused (permissions) or that ended: its waiters fail, the next request subscribes again.
    void sub.closed.then(
      () => this.lost(sub, new Error("reply subscription closed")),
      (err: unknown) => this.lost(sub, err instanceof Error ? err : new Error(String(err))),
    );
  }

  /**
   * nats-server refuses a publish the user may not make with an -ERR naming the subject, not a reply: the oldest
   * request to that subject fails with it at once (as nats.js's own requests do), rather than at its timeout.
   */
  private async watchPermissions(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== "error" || !(s.error instanceof errors.PermissionViolationError) || s.error.operation !== "publish") continue;
      const subject = s.error.subject;
      const oldest = [...this.pending].find(([, p]) => p.subject === subject);
      if (oldest !== undefined) this.settle(oldest[0])!.reject(s.error);
    }
  }

  private deliver(err: Error | null, msg: Msg): void {
    if (err !== null) return this.failAll(err);
    const p = this.settle(msg.subject.slice(this.prefix.length));
    if (p === undefined) return; // late: timed out already
    if (msg.data.length === 0 && msg.headers?.code === NO_RESPONDERS) p.reject(new NoRespondersError("no responders"));
    else p.resolve(msg);
  }

  private settle(token: string): Pending | undefined {
    const p = this.pending.get(token);
    if (p === undefined) return undefined;
    this.pending.delete(token);
    clearTimeout(p.timer);
    return p;
  }

  private lost(sub: Subscription, err: Error): void {
    if (this.sub !== sub) return;
    this.sub = null;
    this.failAll(err);
  }

  private failAll(err: Error): void {
    for (const [token, p] of this.pending) {
      this.settle(token);
      p.reject(err);
    }
  }
}

/**
 * The master's side of a batch fan-out (issue #13): one publish on `subjects.batch` for a batch that several journal
 * nodes must append, instead of one request per node. Each named node answers on the reply subject (this connection's
 * inbox, one subscription for every fan-out); its answer goes to the SendRef it was published for. A node that does
 * not answer within the batch's timeout gets the TIMEOUT a request would have ended with: the master's existing tick
 * calls `expire`, so no timer is armed per send (nats.js arms one per request, and builds an Error for each).
 */
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { inboxOf, maxPayload } from "../nats/bus.js";
import { fragmentBytes } from "../nats/fragments.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode } from "../protocol/errors.js";
import { parseFanoutReply, type BatchFanout, type JournalBatch, type JournalReply } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";

interface InFlight<R> {
  deadlineMs: number;
  timeoutMs: number;
  /** The named nodes that have not answered yet, each with the ref its answer goes to. */
  waiting: Map<string, R>;
}

export type FanoutAnswer<R> = (ref: R, node: string, reply: JournalReply) => void;

export class JournalFanout<R> {
  private readonly subject: string;
  /** `<inbox>.`: a fan-out's reply subject is this and its sequence number. */
  private readonly replyPrefix: string;
  private readonly sub: Subscription;
  private seq = 0;
  private readonly inflight = new Map<number, InFlight<R>>();

  constructor(
    private readonly nc: NatsConnection,
    cluster: string,
    private readonly log: Logger,
    private readonly answer: FanoutAnswer<R>,
  ) {
    this.subject = subjects(cluster).batch;
    this.replyPrefix = `${inboxOf(nc)}.`;
    this.sub = nc.subscribe(`${this.replyPrefix}*`, { callback: (err, msg) => void (err === null && this.onReply(msg)) });
  }

  /** Fan-outs whose answers are not all in (status, tests). */
  get pending(): number {
    return this.inflight.size;
  }

  /**
   * Publishes `batch` once for `targets`; false if it does not fit in one message (the caller sends it to each node as
   * a request, which fragments it). A publish that fails (the connection closed) is left to time out, as a request would.
   */
  send(batch: JournalBatch, targets: readonly { node: string; ref: R }[], timeoutMs: number, nowMs: number): boolean {
    const body: BatchFanout = { ...batch, to: targets.map((t) => t.node) };
    const data = encode(body);
    if (data.length > fragmentBytes(maxPayload(this.nc))) return false;
    const seq = ++this.seq;
    this.inflight.set(seq, { deadlineMs: nowMs + timeoutMs, timeoutMs, waiting: new Map(targets.map((t) => [t.node, t.ref])) });
    try {
      this.nc.publish(this.subject, data, { reply: `${this.replyPrefix}${seq}` });
    } catch (err) {
      this.log.debug({ err }, "batch fan-out not published");
    }
    return true;
  }

  /** Every named node that has not answered a fan-out past its deadline: TIMEOUT, as a request's own timer would say. */
  expire(nowMs: number): void {
    for (const [seq, f] of this.inflight) {
      if (nowMs < f.deadlineMs) continue;
      this.inflight.delete(seq);
      for (const [node, ref] of f.waiting) this.answer(ref, node, { ok: false, code: ErrorCode.TIMEOUT, message: `no answer from ${node} to a batch fan-out within ${f.timeoutMs} ms` });
    }
  }

  /** Stops listening; unanswered fan-outs are dropped (their writer's term is over). */
  close(): void {
    this.sub.unsubscribe();
    this.inflight.clear();
  }

  private onReply(msg: Msg): void {
    const seq = Number(msg.subject.slice(this.replyPrefix.length));
    const f = this.inflight.get(seq);
    if (f === undefined) return; // answered by every node, or timed out already
    // nats-server's "no responders" (status 503): no journal node subscribes at all.
    if (msg.headers?.code === 503) return this.noResponders(seq, f);
    let node: string;
    let reply: JournalReply;
    try {
      ({ node, reply } = parseFanoutReply(decode(msg.data)));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "ignored a malformed answer to a batch fan-out");
      return;
    }
    const ref = f.waiting.get(node);
    if (ref === undefined) return; // not named in it, or a second answer
    f.waiting.delete(node);
    if (f.waiting.size === 0) this.inflight.delete(seq);
    this.answer(ref, node, reply);
  }

  private noResponders(seq: number, f: InFlight<R>): void {
    this.inflight.delete(seq);
    for (const [node, ref] of f.waiting) this.answer(ref, node, { ok: false, code: ErrorCode.TIMEOUT, message: "no responders: no journal node subscribes to batch fan-outs" });
  }
}

/**
 * The master's side of a batch fan-out (issue #13): one publish on `subjects.batch` for a batch that several journal
 * nodes must append, instead of one request per node. Each named node answers on its own `batchAck` subject (one
 * subscription for every node and fan-out); the answer goes to the ref it was published for, found by the fan-out's
 * tag. A node that does not answer within the batch's timeout gets the TIMEOUT a request would have ended with: the
 * master's existing tick calls `expire`, so no timer is armed per send (nats.js arms one per request, and builds an
 * Error for each).
 */
import { randomBytes } from "node:crypto";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { maxPayload } from "../nats/bus.js";
import { fragmentBytes } from "../nats/fragments.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode } from "../protocol/errors.js";
import { parseFanoutReply, type BatchFanout, type JournalBatch, type JournalReply } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";

interface InFlight<R> {
  sentMs: number;
  deadlineMs: number;
  timeoutMs: number;
  /** The named nodes that have not answered yet, each with the ref its answer goes to. */
  waiting: Map<string, R>;
}

export type FanoutAnswer<R> = (ref: R, node: string, reply: JournalReply) => void;

export class JournalFanout<R> {
  private readonly subject: string;
  /** `<random>.`: a fan-out's tag is this and its sequence number (another master's answers are not ours). */
  private readonly tagPrefix = `${randomBytes(8).toString("hex")}.`;
  /** `qjm.<cluster>.batch.ack.`: the answering node is the rest of the subject. */
  private readonly ackPrefix: string;
  private readonly sub: Subscription;
  private seq = 0;
  /** Malformed answers seen (logged at the first and every 1000th). */
  private malformed = 0;
  private readonly inflight = new Map<number, InFlight<R>>();

  constructor(
    private readonly nc: NatsConnection,
    cluster: string,
    private readonly log: Logger,
    private readonly answer: FanoutAnswer<R>,
  ) {
    const s = subjects(cluster);
    this.subject = s.batch;
    this.ackPrefix = s.batchAck("");
    this.sub = nc.subscribe(s.batchAck("*"), { callback: (err, msg) => void (err === null && this.onReply(msg)) });
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
    const seq = this.seq + 1;
    const body: BatchFanout = { ...batch, to: targets.map((t) => t.node), re: `${this.tagPrefix}${seq}` };
    const data = encode(body);
    if (data.length > fragmentBytes(maxPayload(this.nc))) return false;
    this.seq = seq;
    this.inflight.set(seq, { sentMs: nowMs, deadlineMs: nowMs + timeoutMs, timeoutMs, waiting: new Map(targets.map((t) => [t.node, t.ref])) });
    try {
      this.nc.publish(this.subject, data);
    } catch (err) {
      this.log.debug({ err }, "batch fan-out not published");
    }
    return true;
  }

  /** Whether `node` has left a fan-out unanswered for `lateMs` or more (the oldest is the first it is named in). */
  late(node: string, nowMs: number, lateMs: number): boolean {
    for (const f of this.inflight.values()) if (f.waiting.has(node)) return nowMs - f.sentMs >= lateMs;
    return false;
  }

  /** Every named node that has not answered a fan-out past its deadline: TIMEOUT, as a request's own timer would say. */
  expire(nowMs: number): void {
    for (const [seq, f] of this.inflight) {
      if (nowMs < f.deadlineMs) continue;
      this.inflight.delete(seq);
      for (const [node, ref] of f.waiting) this.answer(ref, node, { ok: false, code: ErrorCode.TIMEOUT, message: `no answer from ${node} to a batch fan-out within ${f.timeoutMs} ms` });
    }
  }

  /**
   * `node` restarted (a heartbeat with a new incarnation): its answers to the fan-outs it was named in will never come — the
   * process that would have sent them is gone — so they are TIMEOUT now. A request to a dead node ends as soon as nats
   * says "no responders"; a publish has no such answer, and a node back within the batch's timeout would otherwise
   * take later batches as if it had missed none (safe — it refuses one that does not continue its log — but its
   * drop-out and catch-up would then depend on that race).
   */
  lost(node: string, why: string): void {
    for (const [seq, f] of this.inflight) {
      const ref = f.waiting.get(node);
      if (ref === undefined) continue;
      f.waiting.delete(node);
      if (f.waiting.size === 0) this.inflight.delete(seq);
      this.answer(ref, node, { ok: false, code: ErrorCode.TIMEOUT, message: `no answer from ${node} to a batch fan-out: ${why}` });
    }
  }

  /** Stops listening; unanswered fan-outs are dropped (their writer's term is over). */
  close(): void {
    this.sub.unsubscribe();
    this.inflight.clear();
  }

  private onReply(msg: Msg): void {
    const node = msg.subject.slice(this.ackPrefix.length);
    let re: string;
    let reply: JournalReply;
    try {
      ({ re, reply } = parseFanoutReply(decode(msg.data)));
    } catch (err) {
      // Counted, logged at the first and every 1000th: any actor's reply to a request naming this subject lands here.
      if (this.malformed++ % 1000 === 0) this.log.warn({ node, err: (err as Error).message, malformed: this.malformed }, "ignored a malformed answer to a batch fan-out");
      return;
    }
    if (!re.startsWith(this.tagPrefix)) return; // another master's fan-out
    const tail = re.slice(this.tagPrefix.length);
    const seq = Number(tail);
    if (String(seq) !== tail) return; // not a tag we made ("01", "1.0", "0x1" are not fan-out 1)
    const f = this.inflight.get(seq);
    const ref = f?.waiting.get(node);
    if (f === undefined || ref === undefined) return; // timed out already, not named in it, or a second answer
    f.waiting.delete(node);
    if (f.waiting.size === 0) this.inflight.delete(seq);
    this.answer(ref, node, reply);
  }
}

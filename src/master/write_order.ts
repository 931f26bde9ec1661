/**
 * A connection's writes are applied in the order it sent them (docs/resp.md "Order on one connection"), pure. The
 * client library pipelines a connection's writes and, after a retryable failure, sends the unanswered ones again
 * together, in order (src/client/ordered_writes.ts). That is enough when the master runs write k and k+1 in arrival
 * order and a failure of k means k+1 failed too — but a master can refuse k (OVERLOADED: its queue was full, or k
 * waited too long in it; NO_QUORUM: no writer yet, or its term failed before k committed) and then run k+1, which
 * arrived a moment later: k, resent, would land after it.
 *
 * So each write names the write of its connection sent just before it and still unanswered (`id.after`). The master
 * remembers, for a while, the writes it answered with a retryable failure; a write whose `after` is one of those is
 * refused too (OVERLOADED), until the earlier write comes again and is queued (or the dedupe window answers it: it
 * had committed). Writes arriving after that resend queue behind it; but a later write's first copy may still wait in
 * the queue ahead of the resend (the client resends at once when its link or the master's fails over), so until the
 * resend is admitted, what was queued before it is still refused at admission. Refused again later (it waited too
 * long in the queue), it blocks again.
 *
 * A write whose `after` this master has not seen at all is refused too: the earlier write is still on its way (a large
 * write travels in fragments and is run once its last one arrived, after the small writes pipelined behind it) or was
 * lost or refused before it reached the master (a link that failed over, the bus's reassembly bounds). Seen means
 * queued or running here, committed (the dedupe window), or answered lately (remembered here: an answer that left no
 * record, a Redis error, is in no window). A refusal costs the connection one resend round, never the order.
 *
 * Bounded by count and age: a memory dropped early only reopens the race it closes (or costs a resend round), under
 * overload; it never loses or repeats a write.
 */
import type { WriteId } from "../protocol/messages.js";

export interface WriteOrderLimits {
  /** Refused writes remembered at most (the oldest go first). */
  writeOrderRefusalsMax: number;
  /** A refusal is remembered this long: past it the connection's resend has come, or it gave up. */
  writeOrderRefusalMs: number;
}

/** How a client write is named in the master's maps: `client#seq`. */
export const writeKey = (client: string, seq: number): string => `${client}#${seq}`;

/** A refused write: when, and the queue ticket of its resend once one is queued (what was queued before still waits). */
interface Refusal {
  atMs: number;
  requeuedAt: number | null;
}

export class WriteOrder {
  /** Writes answered with a retryable failure before they ran, by `client#seq` (insertion order is age order). */
  private readonly refusals = new Map<string, Refusal>();
  /** Writes answered otherwise (run, or refused for good), by `client#seq`: when (insertion order is age order). */
  private readonly answers = new Map<string, number>();

  constructor(private readonly limits: WriteOrderLimits) {}

  /** The write (its writeKey) was answered with a retryable failure: its resend may come after later writes. */
  refused(key: string, nowMs: number): void {
    this.refusals.delete(key);
    this.refusals.set(key, { atMs: nowMs, requeuedAt: null });
    if (this.refusals.size > this.limits.writeOrderRefusalsMax) this.refusals.delete(this.refusals.keys().next().value!);
  }

  /** The write (its writeKey) was answered, not to be resent: a write naming it as `after` may run. */
  answered(key: string, nowMs: number): void {
    this.answers.delete(key);
    this.answers.set(key, nowMs);
    if (this.answers.size > this.limits.writeOrderRefusalsMax) this.answers.delete(this.answers.keys().next().value!);
  }

  /** Whether the write (its writeKey) was answered lately (not to be resent). */
  answeredLately(key: string): boolean {
    return this.answers.has(key);
  }

  /** The write's resend is queued with `ticket`: writes arriving from now on queue behind it. */
  requeued(id: WriteId, ticket: number): void {
    const r = this.refusals.get(writeKey(id.client, id.seq));
    if (r !== undefined) r.requeuedAt = ticket;
  }

  /** The write's resend runs, or was answered from the dedupe window (it had committed): the writes behind it may go on. */
  accepted(id: WriteId): void {
    this.refusals.delete(writeKey(id.client, id.seq));
  }

  /**
   * The seq of the write this one must not overtake, if that write was refused and has not run since; else null.
   * `ticket`: this write's place in the queue, at admission (null on arrival): one queued before the earlier write's
   * resend is still behind it.
   */
  behind(id: WriteId, ticket: number | null): number | null {
    if (id.after === undefined) return null;
    const r = this.refusals.get(writeKey(id.client, id.after));
    if (r === undefined) return null;
    if (r.requeuedAt === null) return id.after;
    return ticket !== null && ticket < r.requeuedAt ? id.after : null;
  }

  /** Forgets refusals and answers older than writeOrderRefusalMs. */
  prune(nowMs: number): void {
    for (const [key, { atMs }] of this.refusals) {
      if (nowMs - atMs < this.limits.writeOrderRefusalMs) break;
      this.refusals.delete(key);
    }
    for (const [key, atMs] of this.answers) {
      if (nowMs - atMs < this.limits.writeOrderRefusalMs) break;
      this.answers.delete(key);
    }
  }

  get size(): number {
    return this.refusals.size;
  }
}

/**
 * An ordered group of writes (issue #12 review, finding A), pure: the writes of one Redis connection, pipelined, must
 * be applied in the order they were sent, even across a failover. The client driver (client.ts) supplies the
 * attempts, the clock and the pauses; this decides what is sent when.
 *
 * Why it is enough to retry the group together, in order: one master executes one publisher's writes in the order
 * they arrive (NATS keeps one connection's order) and commits them in txid order, so when write k did not commit,
 * no later write of the group that the same master ran after it committed either. What breaks the order is only
 * writes retried independently, each after its own random pause (write k+1 re-sent before write k). So:
 *   - on the happy path every write is sent at once (the group stays pipelined);
 *   - once an attempt fails retryably, the group is "retrying": writes added meanwhile are held back, and when every
 *     attempt still in flight has settled, the unanswered writes (and those held) are sent again together, in
 *     request order, after one pause for the group (none when a new master was just elected). They keep their ids:
 *     the dedupe window answers the ones that had committed.
 * A write past its retry deadline fails with its last failure; the ones after it go on. An earlier write given up with
 * its outcome unknown may still commit after them: an attempt settles at the client (its timeout, an election) while
 * its copy may still be on its way or queued at a master, and no master then knows that later writes no longer name
 * it. The library says "outcome unknown", nothing about where; it narrows the window: an attempt an election cut short
 * is followed by another to the new master, even past the deadline (cutShort).
 * One case the master must help with: it may refuse write k without running it (OVERLOADED, NO_QUORUM) and run k+1,
 * which arrived a moment later. Each attempt therefore names the group's unanswered write just before it
 * (`id.after`), and the master does not run it while that one is refused and not yet resent (master/write_order.ts).
 */
import type { ErrorCode } from "../protocol/errors.js";
import type { WriteId } from "../protocol/messages.js";
import { verdictOf } from "./retry.js";

/** One command, or a transaction (`tx`, optionally with what it watched): messages.ts's write request. */
export type WriteRequestBody = { args: unknown[] } | { resp: Uint8Array } | { tx: unknown[][]; watch?: { txid: number; keys: unknown[] } };
export type WriteBody = WriteRequestBody & { id: WriteId };

/** One attempt's result: the master's answer, or a failure (a new master elected meanwhile says so). */
export type AttemptOutcome<R> = { ok: true; result: R } | { ok: false; code: ErrorCode; message: string; cause?: unknown; newMaster?: boolean };

export interface OrderedDeps<R> {
  nextId(): WriteId;
  attempt(body: WriteBody): Promise<AttemptOutcome<R>>;
  /** The pause before resend round `round` (counts from 1). */
  pauseMs(round: number): number;
  /** Waits `ms` (or less, once the client closes). */
  sleep(ms: number): Promise<void>;
  now(): number;
  retryForMs: number;
  closed(): boolean;
}

/**
 * OrderedDeps with callbacks instead of promises: what the core drives, so that the simulator (src/sim) runs the very
 * same group on its simulated clock and bus (a promise would settle outside its steps).
 */
export interface OrderedCoreDeps<R> extends Pick<OrderedDeps<R>, "nextId" | "pauseMs" | "now" | "retryForMs" | "closed"> {
  /** Sends one attempt; `settle` is called once with its outcome (never synchronously). */
  attempt(body: WriteBody, settle: (outcome: AttemptOutcome<R>) => void): void;
  /** Calls `then` after `ms` (or less, once the client closes). */
  sleep(ms: number, then: () => void): void;
}

/** A write of the group that failed: its last failure, whether it may have been applied, its attempts. */
export interface OrderedFailure {
  code: ErrorCode | "CLOSED";
  message: string;
  cause?: unknown;
  outcomeUnknown: boolean;
  attempts: number;
  id: WriteId;
  retried: boolean;
}

interface Entry<R> {
  body: WriteBody;
  deadline: number;
  attempts: number;
  /** Some attempt may have applied it (a timeout, NO_QUORUM): its outcome is unknown if it fails in the end. */
  unknown: boolean;
  /** The failure that made it unknown, as `<CODE> <message>` (its txid, when the master named one). */
  unknownBy: string | null;
  last: Extract<AttemptOutcome<R>, { ok: false }> | null;
  resolve: (r: { result: R; attempts: number }) => void;
  reject: (f: OrderedFailure) => void;
}

/** How a write of the group ends: answered, or failed. */
export interface OrderedDone<R> {
  resolve: (r: { result: R; attempts: number }) => void;
  reject: (f: OrderedFailure) => void;
}

/** The client library's group, as a promise API over the core (client.ts). */
export class OrderedWrites<R> {
  private readonly core: OrderedWritesCore<R>;

  constructor(deps: OrderedDeps<R>) {
    this.core = new OrderedWritesCore<R>({
      ...deps,
      attempt: (body, settle) =>
        void deps.attempt(body).then(settle, (err: Error) => settle({ ok: false, code: "INTERNAL" as ErrorCode, message: err.message, cause: err })),
      sleep: (ms, then) => void deps.sleep(ms).then(then),
    });
  }

  /** Writes the group holds (answered ones leave it). */
  get size(): number {
    return this.core.size;
  }

  write(request: unknown[] | WriteRequestBody): Promise<{ result: R; attempts: number }> {
    return new Promise((resolve, reject) => this.core.write(request, { resolve, reject }));
  }
}

/** The group's logic, over callbacks (see the header). */
export class OrderedWritesCore<R> {
  /** Unanswered writes by seq; a Map iterates in insertion order, which is request order. */
  private readonly pending = new Map<number, Entry<R>>();
  private inFlight = 0;
  /** A retryable failure was seen: new writes wait for the group's resend. */
  private retrying = false;
  private newMaster = false;
  private round = 0;
  /** The seq of the write sent last (its `after` names it when it is still unanswered). */
  private lastSentSeq = 0;

  constructor(private readonly deps: OrderedCoreDeps<R>) {}

  /** Writes the group holds (answered ones leave it). */
  get size(): number {
    return this.pending.size;
  }

  /** Adds a write to the group; `done` hears how it ends. Returns its id. */
  write(request: unknown[] | WriteRequestBody, done: OrderedDone<R>): WriteId {
    const id = this.deps.nextId();
    if (this.deps.closed()) {
      done.reject({ code: "CLOSED", message: "the client was closed", outcomeUnknown: false, attempts: 0, id, retried: false } satisfies OrderedFailure);
      return id;
    }
    const body: WriteBody = Array.isArray(request) ? { args: request, id } : { ...request, id };
    const entry: Entry<R> = { body, deadline: this.deps.now() + this.deps.retryForMs, attempts: 0, unknown: false, unknownBy: null, last: null, ...done };
    this.pending.set(id.seq, entry);
    // While the group is retrying, a new write waits: sent now it could commit before an earlier one re-sent.
    if (!this.retrying) this.send(entry, this.unansweredBefore(id.seq));
    return id;
  }

  /** The highest seq below `seq` still unanswered (the newest write sent before it, in the usual case), or undefined. */
  private unansweredBefore(seq: number): number | undefined {
    if (this.pending.has(this.lastSentSeq) && this.lastSentSeq < seq) return this.lastSentSeq;
    let before: number | undefined;
    for (const s of this.pending.keys()) if (s < seq && (before === undefined || s > before)) before = s;
    return before;
  }

  private send(e: Entry<R>, after: number | undefined): void {
    // A new object each attempt (an earlier attempt's may still be on its way), of the two fields nextId() gives, and `after`.
    const { client, seq } = e.body.id;
    e.body.id = after === undefined ? { client, seq } : { client, seq, after };
    this.lastSentSeq = e.body.id.seq;
    e.attempts++;
    this.inFlight++;
    this.deps.attempt(e.body, (outcome) => this.settled(e, outcome));
  }

  private settled(e: Entry<R>, outcome: AttemptOutcome<R>): void {
    this.inFlight--;
    if (outcome.ok) {
      this.pending.delete(e.body.id.seq);
      e.resolve({ result: outcome.result, attempts: e.attempts });
    } else {
      const verdict = verdictOf(outcome.code);
      if (verdict.outcome !== "notApplied" && !e.unknown) e.unknownBy = `${outcome.code} ${outcome.message}`;
      e.unknown ||= verdict.outcome !== "notApplied";
      e.last = outcome;
      if (!verdict.retry) this.fail(e, verdict.outcome === "applied" ? false : e.unknown);
      else {
        this.retrying = true;
        this.newMaster ||= outcome.newMaster === true;
      }
    }
    if (this.pending.size === 0) this.round = 0;
    if (this.retrying && this.inFlight === 0) this.resend();
  }

  private fail(e: Entry<R>, unknown: boolean): void {
    this.pending.delete(e.body.id.seq);
    const last = e.last;
    const closed = this.deps.closed();
    const retried = last !== null && verdictOf(last.code).retry && !closed;
    // The last attempt's code may say "not applied" (NOT_WRITER) of a write an earlier one may have applied: that one's why goes along.
    const earlier = unknown && e.unknownBy !== null && last !== null && verdictOf(last.code).outcome === "notApplied" ? `; an earlier attempt: ${e.unknownBy}` : "";
    e.reject({
      code: closed ? "CLOSED" : (last?.code ?? "CLOSED"),
      message: closed ? "the client was closed" : `${last?.message ?? ""}${earlier}`,
      cause: last?.cause,
      outcomeUnknown: unknown,
      attempts: e.attempts,
      id: e.body.id,
      retried,
    });
  }

  /**
   * A write past its deadline whose last attempt was cut short by an election (newMaster: no answer waited for) goes
   * again, to the new master: that attempt's copy may still be on its way, or queued at the old master, and run there
   * after the writes sent behind it if the group gave it up now (simulator seed 80, legacy layout: a copy 838 ms on its
   * way committed after 168 later writes of its connection; seed 735: an attempt sent past the deadline cut short by
   * a second election). The new master's answer settles it: the dedupe window's if the copy committed, else its own.
   * So a write is given up only after an attempt that ended on its own (an answer, or its full timeout); elections past
   * the deadline extend it (by one retryForMs at most, below). It narrows the window, no more: an earlier copy still in transit may land after that
   * answer (seed 1027: a copy 788 ms on its way, the next attempt refused OVERLOADED, the copy then committed).
   * At most one more retryForMs past the deadline: the same signal comes with the client's own NATS reconnect and a
   * master's masterReconnected, and a flapping link cut every attempt short, retrying the write (and every write of
   * its connection behind it) without end (review s23).
   */
  private cutShort(e: Entry<R>, now: number): boolean {
    return e.last?.newMaster === true && now <= e.deadline + this.deps.retryForMs;
  }

  /** Every attempt of the group has settled: the unanswered writes go again, together, in request order. */
  private resend(): void {
    this.inFlight++; // the resend itself: no other round starts while it pauses
    const pause = this.newMaster ? 0 : this.deps.pauseMs(++this.round);
    this.newMaster = false;
    if (pause > 0) this.deps.sleep(pause, () => this.resendNow());
    else this.resendNow();
  }

  private resendNow(): void {
    this.inFlight--;
    this.retrying = false;
    const now = this.deps.now();
    const again: Entry<R>[] = [];
    for (const e of this.pending.values()) {
      if (this.deps.closed()) this.fail(e, e.unknown || e.attempts > 0);
      else if (e.last !== null && now > e.deadline && !this.cutShort(e, now)) this.fail(e, e.unknown);
      else again.push(e);
    }
    // Resent in request order, each after the one before it: the first has no unanswered write before it.
    again.forEach((e, i) => this.send(e, i === 0 ? undefined : again[i - 1].body.id.seq));
  }
}

/**
 * The master's read index (pure; issue #12 item 3, linearizable reads, after raft's ReadIndex). A node asks the
 * master for its committed txid; the master answers only after a majority of journal nodes said, after the request
 * arrived, that no higher epoch was promised there: then no other master can have acknowledged a write before the
 * request arrived that this master's committed txid misses (a new master needs a majority's promise, and it would
 * meet one of those nodes). A deposed master learns it here (a higher promised epoch, or no majority) and refuses.
 *
 * Batched: one confirmation round at a time; every request that arrived before the round started shares it, the
 * ones arriving meanwhile wait for the next round (a round begun before a request arrived proves nothing about it).
 * Bounded: at most `queuedMax` requests wait; more are refused OVERLOADED.
 */
import { ErrorCode } from "../protocol/errors.js";

export type ReadIndexOutcome = { ok: true } | { ok: false; code: ErrorCode; message: string };

/** A journal node's answer in a round: its promised epoch, or why it gave none (timeout, fault…). */
export type EpochReply = { ok: true; promisedEpoch: number } | { ok: false; message: string };

export interface ReadIndexReady {
  /** Ask these journal nodes for their state (promised epoch); each answer goes to `stateReply(round.id, …)`. */
  round: { id: number; nodes: readonly string[] } | null;
  /** Requests answered: on ok the driver adds the committed txid it holds at that moment. */
  answers: { ids: number[]; outcome: ReadIndexOutcome }[];
}

interface Round {
  id: number;
  members: number[];
  confirmed: Set<string>;
  /** Nodes that answered without confirming (or not at all). */
  missing: Set<string>;
}

export class ReadIndexCore {
  private readonly quorum: number;
  private queue: number[] = [];
  private current: Round | null = null;
  private nextRound = 1;
  private out: ReadIndexReady = { round: null, answers: [] };
  /** Set once a journal node promised a higher epoch, or the role ended: every request is refused with it. */
  private refusal: { code: ErrorCode; message: string } | null = null;

  constructor(
    readonly epoch: number,
    private readonly nodes: readonly string[],
    private readonly queuedMax: number,
  ) {
    this.quorum = Math.floor(nodes.length / 2) + 1;
  }

  get waiting(): number {
    return this.queue.length + (this.current?.members.length ?? 0);
  }

  /** A read-index request arrived. */
  request(id: number): void {
    if (this.refusal !== null) return this.answer([id], { ok: false, ...this.refusal });
    if (this.queue.length >= this.queuedMax) {
      return this.answer([id], { ok: false, code: ErrorCode.OVERLOADED, message: `${this.queue.length} read-index requests wait already` });
    }
    this.queue.push(id);
    if (this.current === null) this.startRound();
  }

  /** A journal node answered round `roundId`. */
  stateReply(roundId: number, node: string, reply: EpochReply): void {
    const r = this.current;
    if (r === null || r.id !== roundId || r.confirmed.has(node) || r.missing.has(node)) return;
    if (reply.ok && reply.promisedEpoch > this.epoch) {
      this.refusal = { code: ErrorCode.EPOCH_FENCED, message: `${node} promised epoch ${reply.promisedEpoch}, above this master's ${this.epoch}` };
      return this.endRound({ ok: false, ...this.refusal });
    }
    if (reply.ok && reply.promisedEpoch === this.epoch) r.confirmed.add(node);
    else r.missing.add(node);
    if (r.confirmed.size >= this.quorum) return this.endRound({ ok: true });
    if (this.nodes.length - r.missing.size < this.quorum) {
      const why = reply.ok ? `${node} promised epoch ${reply.promisedEpoch}` : `${node}: ${reply.message}`;
      this.endRound({ ok: false, code: ErrorCode.NO_QUORUM, message: `${r.confirmed.size} of ${this.quorum} journal nodes confirmed epoch ${this.epoch} (${why})` });
    }
  }

  /** The master role ended (or the term failed): every request waiting, and every later one, is refused. */
  close(message: string): void {
    this.refusal = { code: ErrorCode.NOT_WRITER, message };
    const ids = [...(this.current?.members ?? []), ...this.queue];
    this.current = null;
    this.queue = [];
    if (ids.length > 0) this.answer(ids, { ok: false, ...this.refusal });
  }

  /** Takes what the steps since the last call decided. */
  ready(): ReadIndexReady {
    const out = this.out;
    this.out = { round: null, answers: [] };
    return out;
  }

  private startRound(): void {
    const r: Round = { id: this.nextRound++, members: this.queue, confirmed: new Set(), missing: new Set() };
    this.queue = [];
    this.current = r;
    this.out.round = { id: r.id, nodes: this.nodes };
  }

  private endRound(outcome: ReadIndexOutcome): void {
    const r = this.current!;
    this.current = null;
    this.answer(r.members, outcome);
    if (this.queue.length === 0) return;
    if (this.refusal !== null) {
      const ids = this.queue;
      this.queue = [];
      return this.answer(ids, { ok: false, ...this.refusal });
    }
    this.startRound();
  }

  private answer(ids: number[], outcome: ReadIndexOutcome): void {
    this.out.answers.push({ ids, outcome });
  }
}

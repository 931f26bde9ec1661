/**
 * When the master's commit index goes out on its own, as a CommitHint (issue #13), pure, for both of the master's
 * drivers (master.ts and the simulator's sim_master.ts).
 *
 * Every batch fan-out carries the writer's commit index, and the journal nodes and replicas hear it there as they hear
 * a hint. So a commit that a fan-out of the same epoch carries needs no hint: under load the next batch goes out in the
 * very step of the commit, and a hint beside it was one more publish and five more deliveries through nats-server per
 * batch, each a wake-up of a journal node or replica. A commit that no fan-out carried gets its hint once it has waited
 * `delayMs` for one: with one client, the next write's batch follows the reply within about a bus round trip, and
 * carries it (0: at the end of the commit's own step, as before). With the replicas' fan-out off
 * (replicaFanoutBytesMax 0: they do not subscribe to it) every commit gets its hint. A lost hint, or a fan-out a replica
 * refuses (its records fail the checks: it teaches no commit), costs a replica its backstop pause
 * (replicaBackstopPollMs) unless the next batch comes first, and a journal node the master's idle commit notice: a hint
 * is never needed for safety, only for the replica lag.
 */

/** A commit index of one epoch's writer, in its segment. */
export interface CommitNotice {
  epoch: number;
  segmentTxid: number;
  txid: number;
}

/** What the driver does at the end of a step (or when the timer it armed fires). */
export interface HintDecision {
  /** Publish this CommitHint now. */
  publish: CommitNotice | null;
  /** Ask again after this many ms (arm one timer; null: nothing owed). */
  againInMs: number | null;
}

/** Nothing owed: one answer for every step of a master with nothing to publish (the write path asks at each step). */
const NOTHING: HintDecision = Object.freeze({ publish: null, againInMs: null });

export class CommitHints {
  /** The newest commit that no fan-out or hint carried yet, and since when one has been owed. */
  private owed: CommitNotice | null = null;
  private owedSinceMs = 0;

  /** `replicasHearFanouts`: the replicas subscribe to the batch fan-out (replicaFanoutBytesMax > 0). */
  constructor(
    private readonly delayMs: number,
    private readonly replicasHearFanouts: boolean,
  ) {}

  /** The writer's commit reached `c` in this step. */
  committed(c: CommitNotice, nowMs: number): void {
    const o = this.owed;
    if (o !== null && o.epoch === c.epoch && o.txid >= c.txid) return;
    // A newer commit restarts nothing: it waits from the first commit still owed, so a hint is never put off for good.
    if (o === null) this.owedSinceMs = nowMs;
    this.owed = c;
  }

  /** A commit is owed a hint (the driver's timer is useless without one). */
  get owes(): boolean {
    return this.owed !== null;
  }

  /** A batch fan-out of `epoch` went out carrying commit index `committedTxid`: what it covers is no longer owed. */
  fannedOut(epoch: number, committedTxid: number): void {
    if (!this.replicasHearFanouts) return;
    const o = this.owed;
    if (o !== null && o.epoch === epoch && committedTxid >= o.txid) this.owed = null;
  }

  /** At the end of a step, and when the timer fires: publish what has waited `delayMs`, else when to ask again. */
  decide(nowMs: number): HintDecision {
    if (this.owed === null) return NOTHING;
    const waited = nowMs - this.owedSinceMs;
    if (waited < this.delayMs) return { publish: null, againInMs: this.delayMs - waited };
    return { publish: this.takeOwed(), againInMs: null };
  }

  /** The role ends: what is owed goes now, whatever it waited (no batch will follow to carry it). */
  takeOwed(): CommitNotice | null {
    const o = this.owed;
    this.owed = null;
    return o;
  }
}

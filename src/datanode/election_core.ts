/**
 * Who should try to become the master, and when, as a pure state machine (no clock reads, no I/O). The journal quorum
 * is the arbiter: a candidate becomes master by winning a new epoch on a majority of journal nodes, which fences every
 * older writer in the same act. This core only decides when a data node campaigns and when a master steps down, so
 * that a dead master is replaced quickly and two live candidates do not fence each other over and over:
 *
 * - a master's heartbeat (epoch) keeps every data node quiet for `masterTimeoutMs`;
 * - after that silence, the standbys rank themselves the same way from the heartbeats they heard (highest applied
 *   txid, then priority, then id): rank r campaigns r × `electionRankDelayMs` later, unless a master was heard meanwhile;
 * - a campaign that fails backs off for a random time (given by the driver), so ties break;
 * - a master that hears a master of a higher epoch steps down at once (it is fenced anyway at its next batch);
 * - a master silent for `masterProbeAfterMs` is probed over the bus: if its process no longer listens (NATS answers
 *   "no responders": a killed process's subscriptions go with its connection) or it answers that it is not master of
 *   the epoch we heard, the silence counts as a full timeout at once. Only liveness depends on this: the epoch won on
 *   a majority is still what fences, so a wrong verdict costs an election, never a write;
 * - time this node could not hear is not the master's silence: right after its own link came back, or after a tick
 *   that came late (the process was frozen or stalled: the heartbeats sent meanwhile still wait in its socket, read
 *   only after the timer), it listens before it campaigns. A standby resumed from SIGSTOP deposed a healthy master
 *   (integration/door_history) before this.
 */
import type { CampaignGuard } from "../master/recovery_core.js";
import { assert } from "../util/assert.js";

export type DataRole = "replica" | "candidate" | "master";

/** What a data node's heartbeat tells the others. */
export interface PeerBeat {
  id: string;
  role: DataRole;
  epoch: number;
  appliedTxid: number;
  priority: number;
  /** A replica that stopped on an apply fault, or is bootstrapping, cannot take over. */
  eligible: boolean;
}

export interface ElectionLimits {
  masterTimeoutMs: number;
  masterProbeAfterMs: number;
  electionRankDelayMs: number;
}

/** What probing a silent master found out. */
export type ProbeAnswer =
  /** Nobody listens on its subject: its process (and connection) is gone. */
  | { kind: "noResponders" }
  /** Its process answered with its current role and epoch. */
  | { kind: "answered"; role: DataRole; epoch: number }
  /** No answer in time: frozen, cut off, or slow — the timeout decides. */
  | { kind: "noAnswer" };

/** Ask whether data node `id` still is master of `epoch`. */
export interface MasterProbe {
  id: string;
  epoch: number;
  sentAtMs: number;
}

export type ElectionAction =
  | { kind: "none" }
  /** Try to win the next epoch now. */
  | { kind: "campaign"; rank: number }
  /** A master of a higher epoch is alive: stop serving. */
  | { kind: "stepDown"; reason: string };

export class ElectionCore {
  private role: DataRole = "replica";
  /** Our own epoch while master (0 otherwise). */
  private epoch = 0;
  /** When a master (of an epoch at least the highest known) was last heard, or when we started listening. */
  private masterHeardMs: number;
  private highestEpoch = 0;
  private readonly peers = new Map<string, PeerBeat & { heardMs: number }>();
  private backoffUntilMs = 0;
  /** The master whose heartbeat last held us back (null: a candidate's did, or nobody's yet). */
  private quietBy: string | null = null;
  /** When a candidate was last heard: its takeover is not cut short by a probe of the master before it. */
  private candidateHeardMs = -Infinity;
  /** When our own bus link last came (back) up: the master may still be redialling then. */
  private linkUpSinceMs: number;
  /** When the probe in flight left (null: none). One at a time; a lost answer frees the slot after two periods. */
  private probeSentMs: number | null = null;
  /** When tick last ran (null: never). */
  private lastTickMs: number | null = null;
  /** The last tick came late and did not campaign: the next one may (never two skipped in a row: liveness). */
  private lateTickSkipped = false;
  /** The promise our last campaign accounted for: its own epoch, or a rival's it deferred to (CampaignGuard). */
  private knownPromise = 0;
  /** The campaign under way was asked for by the draining master (campaignNow): it has no rival to defer to. */
  private handedOver = false;

  constructor(
    readonly id: string,
    readonly priority: number,
    private readonly limits: ElectionLimits,
    nowMs: number,
  ) {
    // At start nobody was heard: wait one full timeout before anyone campaigns (a master may be alive already).
    this.masterHeardMs = nowMs;
    this.linkUpSinceMs = nowMs;
  }

  get currentRole(): DataRole {
    return this.role;
  }

  /** The highest epoch a master was heard serving in (or won by us): a standby that heard it does not campaign meanwhile. */
  get masterEpochHeard(): number {
    return this.highestEpoch;
  }

  /** A data node's heartbeat (our own are ignored). */
  heard(beat: PeerBeat, nowMs: number): ElectionAction {
    if (beat.id === this.id) return { kind: "none" };
    this.peers.set(beat.id, { ...beat, heardMs: nowMs });
    // Someone campaigns: let it finish (it wins, or backs off) rather than fence it with a campaign of our own.
    if (beat.role === "candidate" && this.role === "replica" && nowMs >= this.masterHeardMs) {
      this.masterHeardMs = nowMs;
      this.quietBy = null;
      this.candidateHeardMs = nowMs;
    }
    if (beat.role !== "master") return { kind: "none" };
    if (this.role === "master" && beat.epoch > this.epoch) {
      return { kind: "stepDown", reason: `${beat.id} is master in epoch ${beat.epoch}, above ours (${this.epoch})` };
    }
    if (beat.epoch >= this.highestEpoch) {
      this.highestEpoch = beat.epoch;
      this.masterHeardMs = nowMs;
      this.quietBy = beat.id;
    }
    return { kind: "none" };
  }

  /**
   * This node starts to beat (its first timer, once its replica serves), as each peer does at its own: before any
   * campaign it listens half a timeout more (at least 1.5 heartbeats), so the peers that start with it are heard and
   * ranked. Counted only from the constructor, a start whose Redis took longer than a timeout campaigned at its first
   * tick having heard no peer, rank 0 on every node at once (CI: two epochs won within a second of a cluster's start,
   * the first master fenced). A master is listened for from the constructor on (the subscription is open).
   */
  beating(nowMs: number): void {
    this.masterHeardMs = Math.max(this.masterHeardMs, nowMs - this.limits.masterTimeoutMs / 2);
  }

  /** Our bus link came back after a disconnect: every subscription was gone meanwhile, the master's perhaps too. */
  linkReconnected(nowMs: number): void {
    this.linkUpSinceMs = nowMs;
  }

  /**
   * The silent master to probe now, if any: only a standby that could campaign on the answer, before the timeout
   * decides anyway. Not within a timeout after our own link came back ("no responders" may then be a master still
   * redialling, as after a nats-server restart) nor after a candidate was heard (a stale master heartbeat heard after
   * it would point the probe at the old master, whose "not master" would cut the candidate's takeover short).
   */
  probeDue(self: { eligible: boolean }, nowMs: number): MasterProbe | null {
    const { masterProbeAfterMs, masterTimeoutMs } = this.limits;
    if (masterProbeAfterMs === 0 || this.quietBy === null || !this.mayCampaign(self, nowMs)) return null;
    if (nowMs - this.linkUpSinceMs < masterTimeoutMs || nowMs - this.candidateHeardMs < masterTimeoutMs) return null;
    const silentMs = nowMs - this.masterHeardMs;
    if (silentMs < masterProbeAfterMs || silentMs >= masterTimeoutMs) return null;
    if (this.probeSentMs !== null && nowMs - this.probeSentMs < 2 * masterProbeAfterMs) return null;
    this.probeSentMs = nowMs;
    return { id: this.quietBy, epoch: this.highestEpoch, sentAtMs: nowMs };
  }

  /**
   * A probe's answer. The master is gone if nobody listens on its subject or it says it is not master of the epoch we
   * heard; then its silence counts as a full timeout now. Ignored when anything held us back since the probe left.
   * True when the answer ended the wait.
   */
  probed(probe: MasterProbe, answer: ProbeAnswer, nowMs: number): boolean {
    if (this.probeSentMs === probe.sentAtMs) this.probeSentMs = null;
    const gone = answer.kind === "noResponders" || (answer.kind === "answered" && (answer.role !== "master" || answer.epoch < probe.epoch));
    if (!gone || this.quietBy !== probe.id || this.masterHeardMs >= probe.sentAtMs) return false;
    this.masterHeardMs = Math.min(this.masterHeardMs, nowMs - this.limits.masterTimeoutMs);
    this.quietBy = null;
    return true;
  }

  /** The standbys in the order they campaign: most caught up first, then higher priority, then lower id. */
  ranking(self: { appliedTxid: number; eligible: boolean }, nowMs: number): string[] {
    const live = [...this.peers.values()].filter((p) => p.role === "replica" && p.eligible && p.priority > 0 && nowMs - p.heardMs <= this.limits.masterTimeoutMs);
    const all = live.map((p) => ({ id: p.id, appliedTxid: p.appliedTxid, priority: p.priority }));
    if (self.eligible && this.priority > 0) all.push({ id: this.id, appliedTxid: self.appliedTxid, priority: this.priority });
    all.sort((a, b) => b.appliedTxid - a.appliedTxid || b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return all.map((p) => p.id);
  }

  /** Called on the driver's timer: campaign when the master has been silent long enough and it is our turn. */
  tick(self: { appliedTxid: number; eligible: boolean }, nowMs: number): ElectionAction {
    const lateMs = this.lastTickMs === null ? 0 : nowMs - this.lastTickMs;
    this.lastTickMs = nowMs;
    if (!this.mayCampaign(self, nowMs) || this.deaf(lateMs, nowMs)) return { kind: "none" };
    const silentSinceMs = this.masterHeardMs + this.limits.masterTimeoutMs;
    if (nowMs < silentSinceMs) return { kind: "none" };
    const rank = this.ranking(self, nowMs).indexOf(this.id);
    assert(rank >= 0, "an eligible data node ranks itself");
    if (nowMs < silentSinceMs + rank * this.limits.electionRankDelayMs) return { kind: "none" };
    this.role = "candidate";
    this.handedOver = false;
    return { kind: "campaign", rank };
  }

  /**
   * True when we may not have heard a live master: a tick later than a probe's wait after the previous one (skipped
   * once, so the heartbeats buffered meanwhile are read before the next tick), or our link back for less than that.
   */
  private deaf(lateMs: number, nowMs: number): boolean {
    // Without a probe (0), half the master timeout: at least 1.5 heartbeats, so a tick on time is never late.
    const wait = this.limits.masterProbeAfterMs || this.limits.masterTimeoutMs / 2;
    if (lateMs > wait && !this.lateTickSkipped) return (this.lateTickSkipped = true);
    this.lateTickSkipped = false;
    return nowMs - this.linkUpSinceMs < wait;
  }

  /** A standby that may campaign now: a replica, eligible, priority above 0, not backing off. */
  private mayCampaign(self: { eligible: boolean }, nowMs: number): boolean {
    return this.role === "replica" && self.eligible && this.priority > 0 && nowMs >= this.backoffUntilMs;
  }

  /**
   * A planned switchover: the draining master chose us. We campaign at once if we could campaign at all (a standby,
   * eligible, priority above 0 or named explicitly by the operator — the master checked that).
   */
  campaignNow(self: { eligible: boolean }): boolean {
    if (this.role !== "replica" || !self.eligible) return false;
    this.role = "candidate";
    this.handedOver = true;
    return true;
  }

  /** The campaign won epoch `epoch`: we serve. */
  won(epoch: number, nowMs: number): void {
    assert(this.role === "candidate", `won an election as ${this.role}`);
    this.role = "master";
    this.epoch = epoch;
    // Not the max: winning e on a majority proves no master above e can exist (each was promised on a majority, which
    // meets ours). A higher epoch remembered from before the journal was formatted anew would keep this node deaf to
    // every master below it, and campaigning against them, until epochs climbed past it again.
    this.highestEpoch = epoch;
    this.masterHeardMs = nowMs;
    this.quietBy = null;
  }

  /**
   * What a campaign starting now must know of this election (RecoveryCore.guardCampaign); null for a switchover's: the
   * master that asked for it drained, and a target that had not heard its epoch yet deferred to it (review).
   */
  get campaignGuard(): CampaignGuard | null {
    return this.handedOver ? null : { masterEpochHeard: this.highestEpoch, knownPromise: this.knownPromise };
  }

  /**
   * The campaign failed (no majority, fenced by another candidate) or deferred to a rival: a replica again, quiet for
   * `backoffMs`. `knownPromise`: the epoch it asked for, or the rival's it deferred to (0 or none: it got to neither).
   */
  lost(nowMs: number, backoffMs: number, knownPromise?: number): void {
    assert(this.role === "candidate", `lost an election as ${this.role}`);
    this.role = "replica";
    this.backoffUntilMs = nowMs + backoffMs;
    if (knownPromise !== undefined && knownPromise > 0) this.knownPromise = knownPromise;
  }

  /** We stopped serving (fenced, stepped down, failed): a replica again, quiet for `backoffMs`. */
  steppedDown(nowMs: number, backoffMs: number): void {
    this.role = "replica";
    this.epoch = 0;
    this.masterHeardMs = nowMs;
    this.quietBy = null;
    this.backoffUntilMs = nowMs + backoffMs;
  }
}

/**
 * A data node's role changes as a pure state machine (no clock reads, no I/O, no randomness: the driver passes the
 * time and its random backoffs), over the ElectionCore that decides when to campaign and when to step down. Production
 * (data_node.ts) and the simulator (src/sim/sim_data_node.ts) drive this same core: events in, orders out (`ready()`),
 * each order done by the driver and its outcome fed back.
 *
 * One role change at a time, in this order:
 *   replica → campaigning (win the next epoch on a majority: newEpoch + recovery)
 *           → releasing (the replica hands its Redis over: it holds exactly the committed prefix)
 *           → takingOver (the master role applies applied+1..end into that Redis, then serves)
 *           → serving
 *           → ending (the master role stops; its Redis may hold uncommitted effects)
 *           → rejoining (the Redis is wiped and the replica role starts over) → replica.
 * A lost campaign goes back to replica after a backoff. A step-down heard while the replica is being released is kept
 * and done once it is released (the master role never starts). A takeover that has not served by `takeoverTimeoutMs`
 * after the win gives the role up: its heartbeat as master would otherwise hold every other node back for ever.
 *
 * A planned switchover (`redis-qjm failover [--to id]`), while serving: drain (the MasterCore admits nothing more and
 * says when everything admitted is committed and answered) → ask the chosen standby to campaign at once → hand off
 * (queued writes are answered NOT_WRITER, never executed: the client retries them at the new master). A drain that
 * does not end within its timeout, or a standby that refuses, resumes admission: the master serves on. The outcome
 * goes back to whoever asked (`switchoverDone`).
 */
import { assert } from "../util/assert.js";
import type { CampaignGuard, WriterStart } from "../master/recovery_core.js";
import { ElectionCore, type DataRole, type ElectionAction, type ElectionLimits, type MasterProbe, type PeerBeat, type ProbeAnswer } from "./election_core.js";

export interface DataNodeLimits extends ElectionLimits {
  /** From the won epoch to serving writes at most this long, or the node gives the role up. */
  takeoverTimeoutMs: number;
}

export type DataNodePhase = "replica" | "campaigning" | "releasing" | "takingOver" | "serving" | "ending" | "rejoining";

export type DataNodeOrder =
  /** Win the next epoch on a majority of journal nodes (newEpoch, then recovery of the last segment). */
  | { kind: "campaign"; rank: number }
  /** Ask the silent master whether it is still there; the answer goes back to `probed`. */
  | { kind: "probeMaster"; probe: MasterProbe }
  /** The epoch is won: the replica role stops and hands its Redis (the committed prefix) over. */
  | { kind: "releaseReplica"; start: WriterStart }
  /** The master role starts on the handed-over Redis: applies applied+1..start.endTxid, then serves. */
  | { kind: "takeOver"; start: WriterStart }
  /** The master role ends: its unanswered writes fail as outcome-unknown; `ended` comes back once it stopped. */
  | { kind: "stopMaster"; reason: string }
  /** The replica cannot be released in time: the driver restarts the node (a former master's Redis is wiped). */
  | { kind: "abandon"; reason: string }
  /** Start the replica role again; `wipe`: the Redis may hold uncommitted effects and is rebuilt from the journal. */
  | { kind: "rejoin"; wipe: boolean; reason: string }
  /** A switchover: the master admits nothing more; `drainEnded` once everything admitted is answered (or not). */
  | { kind: "drain" }
  /** A switchover: the master is drained; ask `target` to campaign now, then `targetAnswered`. */
  | { kind: "askCampaign"; target: string }
  /** A switchover did not happen: the master admits writes again. */
  | { kind: "resumeAdmission"; reason: string }
  /** A switchover: the target campaigns; the master stops serving at once (queued writes: NOT_WRITER). */
  | { kind: "handOff"; target: string; reason: string }
  /** The switchover's outcome, for whoever asked. */
  | { kind: "switchoverDone"; outcome: SwitchoverOutcome };

/** How a switchover ended: handed over to `target`, or not (an error code of errors.ts, and why). */
export type SwitchoverOutcome = { ok: true; target: string } | { ok: false; code: "NOT_WRITER" | "ILLEGAL_STATE" | "TIMEOUT"; reason: string };

/** What the driver knows of its own replica role, for the election. */
export interface SelfView {
  appliedTxid: number;
  /** A replica that stopped on an apply fault, or has not caught up its dedupe window, cannot take over. */
  eligible: boolean;
}

export class DataNodeCore {
  private readonly election: ElectionCore;
  private phaseNow: DataNodePhase = "replica";
  protected orders: DataNodeOrder[] = [];
  /** The epoch won, from the win until the role ends. */
  private start: WriterStart | null = null;
  /** The won epoch must serve before this (releasing and takingOver). */
  private deadlineMs = 0;
  /** A step-down heard while the replica was being released: done at the release. */
  private pendingStepDown: string | null = null;
  /** The planned switchover under way (one at a time): its target, its step, when its drain times out. */
  private switchover: { target: string; step: "draining" | "asking"; deadlineMs: number } | null = null;

  constructor(
    readonly id: string,
    readonly priority: number,
    private readonly limits: DataNodeLimits,
    nowMs: number,
    election?: ElectionCore,
  ) {
    this.election = election ?? new ElectionCore(id, priority, limits, nowMs);
    assert(this.election.id === id, "a data node core over another node's election");
  }

  get phase(): DataNodePhase {
    return this.phaseNow;
  }

  /** The highest epoch a master was heard serving in (ElectionCore). */
  get masterEpochHeard(): number {
    return this.election.masterEpochHeard;
  }

  get role(): DataRole {
    return this.election.currentRole;
  }

  /** The epoch won and not yet given up (0 otherwise): a taking-over master beats with it. */
  get epoch(): number {
    return this.start?.epoch ?? 0;
  }

  /** Between the start of a campaign and serving: heartbeats say "campaigning", so that nobody else starts. */
  get campaigning(): boolean {
    return this.phaseNow === "campaigning" || this.phaseNow === "releasing" || this.phaseNow === "takingOver";
  }

  /**
   * What this node's heartbeat tells the others. The simulator sends it as is; production publishes its status, whose
   * subject (master from the takeover on) and health ("campaigning" until then) say the same.
   */
  beat(self: SelfView): PeerBeat {
    const master = this.phaseNow === "takingOver" || this.phaseNow === "serving" || this.phaseNow === "ending";
    const role: DataRole = master ? "master" : this.campaigning ? "candidate" : "replica";
    const eligible = self.eligible && this.phaseNow === "replica";
    return { id: this.id, role, epoch: master ? this.epoch : 0, appliedTxid: self.appliedTxid, priority: this.priority, eligible };
  }

  /** The orders since the last call, in the order they are to be done. */
  ready(): DataNodeOrder[] {
    const out = this.orders;
    this.orders = [];
    return out;
  }

  /** The driver's timer: campaign in our turn (probe a silent master before); end a late takeover or drain. */
  tick(self: SelfView, nowMs: number): void {
    if (this.phaseNow === "replica") {
      this.onElection(this.election.tick(self, nowMs));
      const probe = this.phaseNow === "replica" ? this.election.probeDue(self, nowMs) : null;
      if (probe !== null) this.orders.push({ kind: "probeMaster", probe });
      return;
    }
    if (this.switchover?.step === "draining" && nowMs >= this.switchover.deadlineMs) {
      this.orders.push({ kind: "resumeAdmission", reason: "the drain timed out" });
      return this.endSwitchover({ ok: false, code: "TIMEOUT", reason: "the master could not drain its writes in time; it serves on" });
    }
    if ((this.phaseNow === "releasing" || this.phaseNow === "takingOver") && nowMs >= this.deadlineMs) {
      const reason = `the takeover of epoch ${this.epoch} did not serve within ${this.limits.takeoverTimeoutMs} ms`;
      if (this.phaseNow === "takingOver") return this.stepDown(reason);
      this.phaseNow = "ending";
      this.orders.push({ kind: "abandon", reason });
    }
  }

  /**
   * What probing the silent master found: a gone master's silence counts as a full timeout, so we may campaign now.
   * True when the answer ended the wait (the driver says so in its log).
   */
  probed(probe: MasterProbe, answer: ProbeAnswer, self: SelfView, nowMs: number): boolean {
    const gone = this.election.probed(probe, answer, nowMs);
    if (this.phaseNow === "replica") this.onElection(this.election.tick(self, nowMs));
    return gone;
  }

  /** The driver starts this node's timer and beats (ElectionCore.beating): the listening before a campaign starts here. */
  beating(nowMs: number): void {
    this.election.beating(nowMs);
  }

  /** The driver's bus link came back after a disconnect (no probe verdict is trusted for a while). */
  linkReconnected(nowMs: number): void {
    this.election.linkReconnected(nowMs);
  }

  /** Another data node's heartbeat (configured data nodes only; the driver checks). */
  heard(beat: PeerBeat, nowMs: number): void {
    this.onElection(this.election.heard(beat, nowMs));
  }

  private onElection(action: ElectionAction): void {
    if (action.kind === "campaign") {
      assert(this.phaseNow === "replica", `campaign while ${this.phaseNow}`);
      this.phaseNow = "campaigning";
      this.orders.push({ kind: "campaign", rank: action.rank });
    } else if (action.kind === "stepDown") this.stepDown(action.reason);
  }

  /**
   * Stop being master (a higher epoch was heard, an operator asked, the deadline passed). While the replica is being
   * released it is kept for the release; once the role ends it is moot.
   */
  stepDown(reason: string): void {
    if (this.phaseNow === "releasing") {
      this.pendingStepDown ??= reason;
      return;
    }
    if (this.phaseNow !== "takingOver" && this.phaseNow !== "serving") return;
    this.phaseNow = "ending";
    this.orders.push({ kind: "stopMaster", reason });
  }

  /** A planned switchover: the draining master chose us. False when we cannot campaign now. */
  campaignNow(self: { eligible: boolean }): boolean {
    if (this.phaseNow !== "replica" || !this.election.campaignNow(self)) return false;
    this.phaseNow = "campaigning";
    this.orders.push({ kind: "campaign", rank: 0 });
    return true;
  }

  /** The campaign won `start.epoch` on a majority: release the replica's Redis. */
  won(start: WriterStart, nowMs: number): void {
    assert(this.phaseNow === "campaigning", `won an epoch while ${this.phaseNow}`);
    this.election.won(start.epoch, nowMs);
    this.phaseNow = "releasing";
    this.start = start;
    this.deadlineMs = nowMs + this.limits.takeoverTimeoutMs;
    this.pendingStepDown = null;
    this.orders.push({ kind: "releaseReplica", start });
  }

  /** What the campaign ordered now must know of the election (RecoveryCore.guardCampaign). */
  get campaignGuard(): CampaignGuard | null {
    return this.election.campaignGuard;
  }

  /** The campaign failed (no majority, fenced by another candidate) or deferred to a rival: a replica again, quiet for `backoffMs`. */
  lost(nowMs: number, backoffMs: number, knownPromise?: number): void {
    assert(this.phaseNow === "campaigning", `lost a campaign while ${this.phaseNow}`);
    this.election.lost(nowMs, backoffMs, knownPromise);
    this.phaseNow = "replica";
  }

  /**
   * The replica handed its Redis over. The master role takes over — unless a step-down came meanwhile: then it never
   * starts, and the replica role starts again on the same Redis (it holds the committed prefix only: no wipe).
   */
  released(nowMs: number, backoffMs: number, appliedTxid: number): void {
    if (this.phaseNow !== "releasing") return; // abandoned meanwhile
    const start = this.start!;
    if (this.pendingStepDown !== null) {
      const reason = this.pendingStepDown;
      this.pendingStepDown = null;
      return this.endRole(nowMs, backoffMs, false, `${reason} (before the takeover started)`);
    }
    // The Redis holds records up to appliedTxid, all committed: a recovery that ends before them is a stale win (its
    // replies came from before a later epoch moved the log on). Serving it would write txids the Redis already holds.
    if (start.endTxid < appliedTxid) {
      return this.endRole(nowMs, backoffMs, false, `epoch ${start.epoch}'s recovery ends at txid ${start.endTxid}, before the applied ${appliedTxid}: a stale win`);
    }
    this.phaseNow = "takingOver";
    this.orders.push({ kind: "takeOver", start });
  }

  /** The master role serves writes. */
  serving(): void {
    if (this.phaseNow === "takingOver") this.phaseNow = "serving";
  }

  /** The master role ended (stopped, fenced, failed): its Redis is wiped and the replica role starts over. */
  ended(reason: string, nowMs: number, backoffMs: number): void {
    if (this.phaseNow !== "takingOver" && this.phaseNow !== "serving" && this.phaseNow !== "ending") return;
    this.endRole(nowMs, backoffMs, true, reason);
  }

  private endRole(nowMs: number, backoffMs: number, wipe: boolean, reason: string): void {
    this.endSwitchover({ ok: false, code: "NOT_WRITER", reason: `the master role ended: ${reason}` });
    this.election.steppedDown(nowMs, backoffMs);
    this.start = null;
    this.phaseNow = "rejoining";
    this.orders.push({ kind: "rejoin", wipe, reason });
  }

  /** The replica role runs again. */
  rejoined(): void {
    assert(this.phaseNow === "rejoining", `rejoined while ${this.phaseNow}`);
    this.phaseNow = "replica";
  }

  /** Who a planned switchover hands over to: `to` if it is a live eligible standby, else the first in line. */
  handoverTarget(to: string | null, nowMs: number): { ok: true; target: string } | { ok: false; reason: string } {
    if (this.phaseNow !== "serving") return { ok: false, reason: `${this.id} is not serving writes` };
    const standbys = this.election.ranking({ appliedTxid: 0, eligible: false }, nowMs);
    const target = to ?? standbys[0];
    if (target === undefined || target === this.id || !standbys.includes(target)) {
      return { ok: false, reason: `no live, eligible standby ${to ?? ""} to hand over to (standbys: ${standbys.join(", ") || "none"})` };
    }
    return { ok: true, target };
  }

  /**
   * An operator asks for a planned switchover (to `to`, or the first standby in line): the drain starts, or it is
   * refused at once (the outcome says why; nothing changes). `drainTimeoutMs`: how long the drain may take.
   */
  startSwitchover(to: string | null, nowMs: number, drainTimeoutMs: number): SwitchoverOutcome {
    if (this.phaseNow !== "serving") return { ok: false, code: "NOT_WRITER", reason: `${this.id} is not serving writes` };
    const choice = this.handoverTarget(to, nowMs);
    if (!choice.ok) return { ok: false, code: "ILLEGAL_STATE", reason: choice.reason };
    if (this.switchover !== null) return { ok: false, code: "ILLEGAL_STATE", reason: "a switchover is under way already" };
    this.switchover = { target: choice.target, step: "draining", deadlineMs: nowMs + drainTimeoutMs };
    this.orders.push({ kind: "drain" });
    return choice;
  }

  /** The master's drain ended: everything admitted is committed and answered (true), or the writer failed (false). */
  drainEnded(drained: boolean): void {
    const sw = this.switchover;
    if (sw?.step !== "draining") return; // timed out, or the role ended, meanwhile
    if (!drained) return this.endSwitchover({ ok: false, code: "TIMEOUT", reason: "the master could not drain its writes in time; it serves on" });
    sw.step = "asking";
    this.orders.push({ kind: "askCampaign", target: sw.target });
  }

  /** The target's answer to "campaign now" (`ok` false: it refused, or no answer came). */
  targetAnswered(ok: boolean, message: string): void {
    const sw = this.switchover;
    if (sw?.step !== "asking") return;
    if (!ok) {
      this.orders.push({ kind: "resumeAdmission", reason: `${sw.target} refused` });
      return this.endSwitchover({ ok: false, code: "ILLEGAL_STATE", reason: `${sw.target} did not take the handover: ${message}` });
    }
    this.orders.push({ kind: "handOff", target: sw.target, reason: `planned switchover to ${sw.target}` });
    this.endSwitchover({ ok: true, target: sw.target });
  }

  private endSwitchover(outcome: SwitchoverOutcome): void {
    if (this.switchover === null) return;
    this.switchover = null;
    this.orders.push({ kind: "switchoverDone", outcome });
  }
}

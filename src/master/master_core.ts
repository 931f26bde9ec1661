/**
 * The serving master's decisions as one pure state machine (issue #11 item 5; raft's `Ready`/`Advance`): client
 * writes in, Redis outcomes and records in, journal replies and heartbeats in; writes to execute, batches to send,
 * answers, catch-ups, rolls and resets out. No I/O, no clock (time comes in as `nowMs`), no timers, no promises.
 *
 * A write's life: queued (bounded in count and bytes, with a deadline) → admitted (the driver executes it on Redis,
 * bounded in count and bytes while the WriterCore's buffers have room) → its Redis outcome and its record (its
 * effects off the stream, journaled under a txid) in either order → its txid committed on a majority → answered,
 * exactly once. It is answered before its commit only when it was never journaled (refused, or the writer failed:
 * NO_QUORUM, outcome unknown).
 *
 * The driver (master.ts over NATS and Redis, sim_master.ts over the simulated bus) loops: call an event method,
 * take `ready()`, do what it says, feed results back as events. The core never calls the driver, so nothing
 * re-enters it: a node refused at send that fails the writer mid-send (sim seed 6451) just ends the step.
 */
import type { ClusterEvent } from "../actor/events.js";
import type { Config } from "../config/config.js";
import { ErrorCode, errorReply } from "../protocol/errors.js";
import type { WriteId as ClientWriteId, WriteReply } from "../protocol/messages.js";
import type { RecordWrite } from "../segment/record.js";
import { answerFromWindow } from "../dedupe/dedupe_answer.js";
import type { DedupeWindow } from "../dedupe/dedupe_window.js";
import { assert } from "../util/assert.js";
import { verdictOf } from "../client/retry.js";
import { NodeWatch } from "./node_watch.js";
import { WriteOrder, writeKey } from "./write_order.js";
import { rollDue } from "./segment_roll.js";
import { WriterCore, type Batch, type WriterLimits, type WriterOutput } from "./writer_core.js";

/** The driver's name for a client write: opaque to the core, unique for the core's life. */
export type WriteId = number;

/** What Redis answered a write. */
export type Outcome = { ok: true; value: unknown } | { ok: false; message: string };

/** A roll held for a catch-up (rollHeld) runs anyway once its segment holds this many times its bounds. */
export const ROLL_HOLD_GROWTH_MAX = 2;

export type MasterLimits = WriterLimits &
  Pick<
    Config,
    | "journalNodes"
    | "writesQueuedMax"
    | "writesQueuedBytesMax"
    | "writesInflightMax"
    | "writesInflightBytesMax"
    | "journalBatchesInflightMax"
    | "journalInflightBytesMax"
    | "journalHeartbeatTimeoutMs"
    | "replicaReportTtlMs"
    | "catchUpIntervalMs"
    | "rollHoldForCatchUpMs"
    | "orphanEffectsFlushMs"
    | "writeEffectsBytesMax"
    | "segmentMaxBytes"
    | "segmentMaxRecords"
    | "segmentMaxAgeMs"
    | "writeOrderRefusalsMax"
    | "writeOrderRefusalMs"
  >;

export type NewWriter = (epoch: number, segmentTxid: number, nodes: readonly string[], inSync: readonly string[], limits: WriterLimits) => WriterCore;

/** Which batch a journal reply answers: the term, the writer (a roll starts a new one) and the node's incarnation. */
export interface SendRef {
  readonly term: number;
  readonly writer: WriterCore;
  readonly node: string;
  readonly generation: number;
  readonly batchId: number;
  readonly bytes: number;
  /** A copy of the batch in flight sent again (WriterCore's batchResendMs). */
  readonly resend: boolean;
}

export interface SendOrder {
  node: string;
  epoch: number;
  batch: Batch;
  timeoutMs: number;
  ref: SendRef;
}

export type MasterEvent = Extract<ClusterEvent, { type: "masked" | "restored" | "writerFailed" | "segmentRolled" | "redisReset" }>;

/**
 * What the driver does after a step, in this order. `answers` holds only writes whose txid is committed, or that
 * were never journaled (refused, overloaded, or failed with the writer): the durability rule.
 */
export interface MasterReady {
  /** Admitted writes to run on Redis, in this order (Redis's order is the journal's). */
  execute: WriteId[];
  /** Batches (and commit notices) to send; each reply comes back through `journalReply(ref, …)`. */
  send: SendOrder[];
  /**
   * The txid the writer's commit reached this step, in its segment (the simulator's invariants learn it here; the
   * driver hands it to CommitHints, which publishes it unless a batch fan-out carries it soon enough).
   */
  committed: { epoch: number; segmentTxid: number; txid: number } | null;
  /** Replies to clients, each write exactly once. */
  answers: { id: WriteId; reply: WriteReply }[];
  /** Records appended: call `flush` once this turn's records are in (group commit). */
  flush: boolean;
  /** Effects of no write waited long enough: journal them through `orphans` (or `startReset` if they overflowed). */
  takeOrphans: boolean;
  /** Journal nodes to catch up for this writer; each ends with `caughtUp` or `catchUpEnded`. */
  startCatchUp: { node: string; writer: WriterCore }[];
  /** Drained: finalize this writer's segment and open the next; then `rolled` or `rollFailed`. */
  roll: { reason: string; writer: WriterCore } | null;
  /** Drained: rebuild Redis from the journal up to writer.lastTxid; then `resetDone` or `fail`. */
  reset: { reason: string; writer: WriterCore } | null;
  /** The term ended (its unanswered writes are in `answers` as NO_QUORUM): recover a new epoch, then `serving`. */
  failed: string | null;
  /** A planned switchover's drain is done: everything admitted is committed and answered; admission stays stopped. */
  handoverDrained: boolean;
  events: MasterEvent[];
}

interface Pending {
  id: WriteId;
  bytes: number;
  txid: number | null;
  outcome: Outcome | null;
  /** Committed, waiting only for Redis's outcome. */
  committed: boolean;
  /** The stream held effects of this write that could not be journaled faithfully: answered with this, once committed. */
  refused: string | null;
  /** The client's id of the write and the reply its record keeps: the dedupe window learns it at the commit. */
  recorded: RecordWrite | null;
}

interface Queued {
  id: WriteId;
  bytes: number;
  deadlineMs: number;
  barrier: boolean;
  /** Looked up in the dedupe window again at admission: it may have learnt the original since (a takeover's catch-up). */
  clientId: ClientWriteId | null;
  /** Its place in arrival order (write_order.ts: a write queued before its connection's earlier write's resend). */
  ticket: number;
}

type Drain = { phase: "draining" | "running"; reason: string };

/** Retries of one unanswered write that may wait for its answer; more are OVERLOADED. */
export const DUPLICATES_WAITING_MAX = 16;

function emptyReady(): MasterReady {
  return { execute: [], send: [], committed: null, answers: [], flush: false, takeOrphans: false, startCatchUp: [], roll: null, reset: null, failed: null, handoverDrained: false, events: [] };
}

/**
 * The core has nothing more for the driver to do: its loop over `ready()` ends. `committed` does not count: a Ready
 * that only reports a commit (of records no write waits for) asks nothing of the driver.
 */
export function isEmptyReady(r: MasterReady): boolean {
  const lists = r.execute.length + r.send.length + r.answers.length + r.startCatchUp.length + r.events.length;
  const flags = r.flush || r.takeOrphans || r.handoverDrained;
  return lists === 0 && !flags && r.roll === null && r.reset === null && r.failed === null;
}

/**
 * A Ready's sends cut into batches: the sends of one batch to several nodes (one WriterCore output: adjacent, the same
 * `Batch`, epoch and kind) form one group, which the driver publishes once as a fan-out (master.ts, issue #13; the
 * simulator's master likewise, so that its replicas hear the same fan-outs); any other send is a group of its own.
 */
export function batchGroups(sends: readonly SendOrder[]): SendOrder[][] {
  const groups: SendOrder[][] = [];
  for (let i = 0; i < sends.length; ) {
    let j = i + 1;
    while (j < sends.length && sends[j].batch === sends[i].batch && sends[j].epoch === sends[i].epoch && sends[j].ref.resend === sends[i].ref.resend) j++;
    groups.push(sends.slice(i, j));
    i = j;
  }
  return groups;
}

export class MasterCore {
  private out: MasterReady = emptyReady();
  private nowMs = 0;
  /** Bumped by each `serving`: replies and reports of an earlier term are stale. */
  private term = 0;
  private writerCore: WriterCore | null = null;
  private readonly queue: Queued[] = [];
  private queuedBytes_ = 0;
  /** Admitted and not answered. */
  private readonly pending = new Map<WriteId, Pending>();
  /** Journaled, in txid order, until committed. */
  private byTxid: Pending[] = [];
  private inflightBytes_ = 0;
  /** Admitted writes whose record has not come yet (the orphan flush waits for none). */
  private unjournaled = 0;
  /** A script in flight: nothing more is admitted until the driver releases it (script_watch.ts). */
  private barrier: WriteId | null = null;
  private roll: Drain | null = null;
  private reset: Drain | null = null;
  /** A planned switchover (issue #11): admission stops; "drained" once everything admitted is answered. */
  private handover: "draining" | "drained" | null = null;
  private segmentOpenedMs = 0;
  private lastCatchUpMs = Number.NEGATIVE_INFINITY;
  /** Since when a roll that came due waits for a catch-up of the current writer (null: none waits). */
  private rollHeldSinceMs: number | null = null;
  /** The catch-ups under way, by node, and the writer each serves. */
  private readonly catchingUp = new Map<string, WriterCore>();
  /** Unanswered batches (count, bytes) per node incarnation `node#generation`, for this term. */
  private readonly nodeInflight = new Map<string, { batches: number; bytes: number }>();
  /** Bumped when a node rejoins: the replies to batches sent to its predecessor are stale. */
  private readonly nodeGeneration = new Map<string, number>();
  /** The nodes counted after the last step: a change is a `masked` event. */
  private counted = new Set<string>();
  readonly watch: NodeWatch;
  lastFailure: string | null = null;
  /** Writes with a client id not yet answered, by `client#seq`: a retry that arrives meanwhile waits for the original. */
  private readonly byClientId = new Map<string, WriteId>();
  private readonly clientIdOf = new Map<WriteId, string>();
  /** Retries waiting for the original's answer, by the original's id (at most DUPLICATES_WAITING_MAX each). */
  private readonly duplicates = new Map<WriteId, WriteId[]>();
  /** A connection's writes run in its order: writes refused lately, that later ones must not overtake. */
  private readonly order: WriteOrder;
  /** The next queued write's ticket (arrival order). */
  private nextTicket = 0;

  constructor(
    private readonly limits: MasterLimits,
    private readonly newWriter: NewWriter = (e, s, n, i, l) => new WriterCore(e, s, n, i, l),
    /**
     * A data node's dedupe window (issue #11): writes with a client id committed lately, with their replies. Null: no
     * dedupe (the single-master layout). The core feeds it each committed write, in txid order.
     */
    private window: DedupeWindow | null = null,
  ) {
    this.watch = new NodeWatch(limits);
    this.order = new WriteOrder(limits);
  }

  // ---- what the driver reads ----

  /** The writer serving now (null while recovering or after a failure). */
  get writer(): WriterCore | null {
    return this.writerCore;
  }
  get serving(): boolean {
    return this.writerCore !== null;
  }
  get inflight(): number {
    return this.pending.size;
  }
  get inflightBytes(): number {
    return this.inflightBytes_;
  }
  get queued(): number {
    return this.queue.length;
  }
  get queuedBytes(): number {
    return this.queuedBytes_;
  }
  /** Admitted writes waiting for their record. */
  get awaitingRecords(): number {
    return this.unjournaled;
  }
  get resetting(): boolean {
    return this.reset !== null;
  }
  isCatchingUp(node: string): boolean {
    return this.catchingUp.has(node);
  }

  /** Takes what the steps since the last call decided. */
  ready(): MasterReady {
    this.advance();
    this.checkInvariants();
    const out = this.out;
    this.out = emptyReady();
    return out;
  }

  // ---- client writes ----

  /**
   * A client write of `bytes`; `barrier`: a script, after which nothing is admitted until `barrierReleased`. With a
   * client id and a dedupe window, a retry of a committed write is answered from the window, and one of a write still
   * unanswered waits for the original's answer: never executed twice.
   */
  write(id: WriteId, bytes: number, barrier: boolean, nowMs: number, clientId: ClientWriteId | null = null): void {
    this.nowMs = nowMs;
    if (clientId !== null && this.window !== null && (this.isDuplicate(id, clientId) || this.refusedBehind(id, clientId, null))) return;
    const l = this.limits;
    if (this.queue.length >= l.writesQueuedMax) {
      this.reply(id, errorReply(ErrorCode.OVERLOADED, `${this.queue.length} writes already wait`));
      return;
    }
    // One write always gets in, however large: the bound is on what waits behind it.
    if (this.queue.length > 0 && this.queuedBytes_ + bytes > l.writesQueuedBytesMax) {
      this.reply(id, errorReply(ErrorCode.OVERLOADED, `${this.queue.length} writes of ${this.queuedBytes_} bytes already wait (writesQueuedBytesMax ${l.writesQueuedBytesMax})`));
      return;
    }
    this.queuedBytes_ += bytes;
    // Queued in arrival order: the connection's later writes queue behind it (they are checked again at admission).
    const ticket = this.nextTicket++;
    if (clientId !== null) this.order.requeued(clientId, ticket);
    this.queue.push({ id, bytes, barrier, deadlineMs: nowMs + l.quorumTimeoutMs, clientId, ticket });
    // Admitted at once if there is room: the queue bounds only what has to wait.
    this.advance();
  }

  /** True when `id` is a retry: answered from the window, or waiting for the original (or refused: too many wait). */
  private isDuplicate(id: WriteId, clientId: ClientWriteId): boolean {
    const known = answerFromWindow(this.window!.lookup(clientId.client, clientId.seq));
    if (known !== null) {
      this.order.accepted(clientId);
      this.reply(id, known);
      return true;
    }
    const key = writeKey(clientId.client, clientId.seq);
    const original = this.byClientId.get(key);
    if (original === undefined) {
      this.byClientId.set(key, id);
      this.clientIdOf.set(id, key);
      return false;
    }
    const waiting = this.duplicates.get(original) ?? [];
    if (waiting.length >= DUPLICATES_WAITING_MAX) this.reply(id, errorReply(ErrorCode.OVERLOADED, `${waiting.length} retries of this write already wait for it`));
    else this.duplicates.set(original, [...waiting, id]);
    return true;
  }

  /** True (and answered OVERLOADED) when an earlier write of the same connection was refused and has not run since. */
  private refusedBehind(id: WriteId, clientId: ClientWriteId, ticket: number | null): boolean {
    const earlier = this.order.behind(clientId, ticket);
    if (earlier !== null) {
      this.reply(id, errorReply(ErrorCode.OVERLOADED, `not run: the connection's earlier write (seq ${earlier}) was not applied and has not come again; it is resent first`));
      return true;
    }
    // On arrival only: what was seen then stays seen (queued, run, answered) until admission.
    if (ticket !== null || clientId.after === undefined || this.seen(clientId.client, clientId.after)) return false;
    this.reply(id, errorReply(ErrorCode.OVERLOADED, `not run: the connection's earlier write (seq ${clientId.after}) has not reached this master (still on its way, or lost); it is sent first`));
    return true;
  }

  /** Whether this master knows the write: queued or running, answered lately, or committed (or older than the window). */
  private seen(client: string, seq: number): boolean {
    const key = writeKey(client, seq);
    if (this.byClientId.has(key) || this.order.answeredLately(key)) return true;
    return this.window !== null && this.window.lookup(client, seq).kind !== "new";
  }

  /** An admitted write Redis will not run (the command table refused it): answered now, never journaled. */
  rejected(id: WriteId, reply: WriteReply): void {
    const p = this.pending.get(id);
    if (p === undefined || p.txid !== null) return;
    this.unjournaled--;
    if (this.barrier === id) this.barrier = null;
    this.answer(p, reply);
  }

  /** The script's read of its keys is on Redis's pipeline ahead of any later write: admission resumes. */
  barrierReleased(id: WriteId): void {
    if (this.barrier === id) this.barrier = null;
  }

  /** Redis's answer to a write; it may come before or after its record, and before or after the commit. */
  outcome(id: WriteId, outcome: Outcome): void {
    const p = this.pending.get(id);
    if (p === undefined) return; // answered already (refused, reset, or the writer failed)
    p.outcome = outcome;
    if (p.committed) this.answerCommitted(p);
  }

  /**
   * A write's record (its effects off the stream): journaled under the next txid, returned; null when the write is
   * no longer pending (answered by a reset or a failure) or its record passes writeEffectsBytesMax (refused, reset).
   */
  record(id: WriteId, payload: Uint8Array, recorded: RecordWrite | null = null): number | null {
    const p = this.pending.get(id);
    const w = this.writerCore;
    if (p === undefined || w === null) return null;
    assert(p.txid === null, `write ${id} journaled twice`);
    if (payload.length > this.limits.writeEffectsBytesMax) {
      this.oversized(id, payload.length);
      return null;
    }
    this.unjournaled--;
    p.recorded = recorded;
    p.txid = w.append(payload);
    this.byTxid.push(p);
    this.out.flush = true;
    return p.txid;
  }

  /** The stream held effects of this write the master cannot journal faithfully: answered EFFECTS_REFUSED once committed. */
  refuse(id: WriteId, message: string): void {
    const p = this.pending.get(id);
    if (p !== undefined) p.refused = message;
  }

  /**
   * The write's effects pass writeEffectsBytesMax: refused, never journaled. They, and those of every write Redis
   * ran after it, are in Redis only: Redis is reset to the journal.
   */
  oversized(id: WriteId, bytes: number): void {
    const reason = `the write's effects take more than ${bytes} bytes, over writeEffectsBytesMax ${this.limits.writeEffectsBytesMax}`;
    this.rejected(id, errorReply(ErrorCode.PAYLOAD_TOO_LARGE, `${reason}: not executed`));
    this.startReset(reason);
  }

  /** Effects of no write (expired keys): a record of their own. */
  orphans(payload: Uint8Array): number | null {
    if (this.writerCore === null) return null;
    assert(this.roll?.phase !== "running" && this.reset?.phase !== "running" && this.handover !== "drained", "orphan effects journaled after the writer drained");
    this.out.flush = true;
    return this.writerCore.append(payload);
  }

  // ---- the writer's term ----

  /** A writer was established (new epoch, recovered segment, rebuilt Redis, open stream): serve. */
  start(epoch: number, segmentTxid: number, inSync: readonly string[], nowMs: number, window: DedupeWindow | null = this.window): void {
    // A master that rebuilt its Redis brings the window its rebuild filled (every record up to segmentTxid - 1).
    this.window = window;
    assert(this.writerCore === null && this.pending.size === 0, "a term starts only after the last one ended");
    this.nowMs = nowMs;
    this.term++;
    this.writerCore = this.newWriter(epoch, segmentTxid, this.limits.journalNodes, inSync, this.limits);
    this.counted = new Set(inSync);
    this.segmentOpenedMs = nowMs;
    this.roll = null;
    this.rollHeldSinceMs = null;
    this.reset = null;
    this.barrier = null;
    this.unjournaled = 0;
    this.nodeInflight.clear();
    this.catchingUp.clear();
    // The nodes just answered the recovery: that counts as a heartbeat.
    for (const node of inSync) this.watch.heard(node, nowMs);
  }

  /** Nothing more is acknowledged under this term: every unanswered write is answered NO_QUORUM, outcome unknown. */
  fail(reason: string): void {
    const w = this.writerCore;
    if (w === null) return;
    this.writerCore = null;
    this.lastFailure = reason;
    // Nothing of a dead writer is done any more: its admitted writes are answered below, never executed.
    this.out = { ...emptyReady(), committed: this.out.committed, answers: this.out.answers, events: this.out.events };
    this.out.failed = reason;
    this.out.events.push({ type: "writerFailed", epoch: w.epoch, reason });
    // A journaled write names its txid (a client can learn later whether that txid committed); others have none.
    for (const p of [...this.pending.values()]) {
      const journaled = p.txid === null ? "" : `txid ${p.txid} journaled, not confirmed by a majority of journal nodes: `;
      this.answer(p, errorReply(ErrorCode.NO_QUORUM, `outcome unknown: ${journaled}${reason}`));
    }
    this.byTxid = [];
    this.unjournaled = 0;
    this.barrier = null;
    this.roll = null;
    this.reset = null;
    this.handover = null;
    this.catchingUp.clear();
  }

  /** Whatever still waits is answered: the master stops (queued writes were never executed: NOT_WRITER). */
  stop(why = "master is stopping"): void {
    this.fail(why);
    for (const q of this.queue.splice(0)) this.reply(q.id, errorReply(ErrorCode.NOT_WRITER, why));
    this.queuedBytes_ = 0;
  }

  /** A planned switchover: admit nothing more; `ready().handoverDrained` once everything admitted is answered. */
  startHandover(): void {
    if (this.writerCore !== null && this.handover === null) this.handover = "draining";
  }

  /** The switchover did not happen: admission resumes. */
  cancelHandover(): void {
    this.handover = null;
  }

  /** Everything journaled up to now goes out when no batch is in flight (group commit: after this turn's records). */
  flush(nowMs: number): void {
    this.nowMs = nowMs;
    if (this.writerCore !== null && this.roll?.phase !== "running") this.absorb(this.writerCore.tick(nowMs));
  }

  /** The periodic timer: deadlines, the idle commit notice, heartbeat silence, orphans, catch-ups, roll. */
  tick(nowMs: number, orphansSinceMs: number | null = null): void {
    this.nowMs = nowMs;
    this.expireQueued(nowMs);
    this.order.prune(nowMs);
    const w = this.writerCore;
    if (w === null) return;
    // Not during a hand-over either: past its drain nothing more is journaled (orphans() asserts it).
    const idle = this.roll === null && this.reset === null && this.handover === null && this.unjournaled === 0;
    if (idle && orphansSinceMs !== null && nowMs - orphansSinceMs >= this.limits.orphanEffectsFlushMs) this.out.takeOrphans = true;
    // While a roll finalizes the segment, the drained writer has nothing to send (not even a commit notice).
    if (this.roll?.phase === "running") return;
    this.absorb(w.tick(nowMs, true));
    for (const node of this.writerCore?.inSyncNodes ?? []) {
      const silentMs = this.watch.silentMs(node, nowMs);
      if (silentMs > this.limits.journalHeartbeatTimeoutMs) this.mask(node, ErrorCode.TIMEOUT, `no heartbeat for ${silentMs} ms`);
    }
    if (this.writerCore !== null && this.roll === null && nowMs - this.lastCatchUpMs >= this.limits.catchUpIntervalMs) {
      this.lastCatchUpMs = nowMs;
      this.scheduleCatchUps(this.writerCore, nowMs);
    }
  }

  /**
   * A queued write was never run: its answer is a refusal (not applied), whatever the writer's state. NO_QUORUM here
   * (before session 24) told the client "outcome unknown" of a write that never reached Redis.
   */
  private expireQueued(nowMs: number): void {
    while (this.queue.length > 0 && this.queue[0].deadlineMs < nowMs) {
      const q = this.dequeue();
      if (this.writerCore !== null) this.reply(q.id, errorReply(ErrorCode.OVERLOADED, "write waited too long for room in the journal buffers"));
      else this.reply(q.id, errorReply(ErrorCode.NOT_WRITER, `no writer yet, the write was not run: ${this.lastFailure ?? "becoming the writer"}`));
    }
  }

  // ---- journal nodes ----

  /** The link to NATS failed over to another server: the batch in flight goes again now, not after batchResendMs. */
  busReconnected(nowMs: number): void {
    this.nowMs = nowMs;
    if (this.writerCore === null || this.roll?.phase === "running") return;
    this.writerCore.resendDue(nowMs);
    this.absorb(this.writerCore.tick(nowMs));
  }

  /** A journal node's answer to a batch sent under `ref`. */
  journalReply(ref: SendRef, result: { ok: true } | { ok: false; code: string; message: string }, nowMs: number): void {
    this.nowMs = nowMs;
    if (ref.term !== this.term) return; // an answer to an earlier writer's term
    const key = `${ref.node}#${ref.generation}`;
    const left = this.nodeInflight.get(key);
    if (left !== undefined && left.batches > 1) this.nodeInflight.set(key, { batches: left.batches - 1, bytes: left.bytes - ref.bytes });
    else this.nodeInflight.delete(key);
    if (ref.writer !== this.writerCore) return; // the writer before a roll, or a failed one
    if ((this.nodeGeneration.get(ref.node) ?? 0) !== ref.generation) return; // sent before the node rejoined
    // A resent copy that found no responder (the node's link to NATS is failing over) or timed out tells nothing new:
    // the first copy's answer, or its timeout, decides whether the node drops out.
    if (ref.resend && !result.ok && result.code === ErrorCode.TIMEOUT) return;
    this.absorb(ref.writer.onReply(ref.node, ref.batchId, result, nowMs));
  }

  heartbeat(node: string, nowMs: number): void {
    this.watch.heard(node, nowMs);
  }

  /**
   * A replica's heartbeat: a node it found serving bad records is masked and kept masked a while — unless masking it
   * would leave fewer than a majority in step: a replica's word does not stop the write path.
   */
  replicaHeartbeat(data: Uint8Array, nowMs: number): void {
    this.nowMs = nowMs;
    for (const report of this.watch.replicaReports(data, nowMs)) {
      const w = this.writerCore;
      if (w !== null && w.isInSync(report.node) && w.inSyncCount > w.quorum) {
        this.mask(report.node, ErrorCode.BAD_RECORD, `replica ${report.replica} reports: ${report.reason}`);
      }
    }
  }

  /** `node` holds everything before `writer`'s batch in flight: it counts for acks again. */
  caughtUp(node: string, lastTxid: number, writer: WriterCore): void {
    this.catchUpEnded(node, writer);
    if (writer !== this.writerCore) return;
    this.nodeGeneration.set(node, (this.nodeGeneration.get(node) ?? 0) + 1);
    this.absorb(writer.rejoin(node, lastTxid));
    if (this.writerCore === writer) this.counted.add(node);
    this.out.events.push({ type: "restored", node, lastTxid });
  }

  /** A catch-up stopped without a rejoin (gave up, failed, or its writer is gone): the next interval may retry. */
  catchUpEnded(node: string, writer: WriterCore): void {
    if (this.catchingUp.get(node) === writer) this.catchingUp.delete(node);
  }

  private scheduleCatchUps(writer: WriterCore, nowMs: number): void {
    for (const node of this.limits.journalNodes) {
      if (writer.isInSync(node) || this.catchingUp.has(node) || !this.watch.restorable(node, nowMs)) continue;
      this.catchingUp.set(node, writer);
      this.out.startCatchUp.push({ node, writer });
    }
  }

  private mask(node: string, code: string, message: string): void {
    if (this.writerCore !== null) this.absorb(this.writerCore.onReply(node, -1, { ok: false, code, message }, this.nowMs));
  }

  /** Takes one WriterCore step: sends within each node's in-flight bounds, the commit, or the failure. */
  private absorb(o: WriterOutput): void {
    const w = this.writerCore;
    if (w === null) return;
    if (o.failure !== null) return this.fail(o.failure);
    for (const { batch, nodes, resend } of o.send) for (const node of nodes) if (this.writerCore === w) this.send(w, node, batch, resend === true);
    if (this.writerCore !== w) return;
    if (o.committedTxid !== null) this.onCommitted(w, o.committedTxid);
    if (w.inSyncCount !== this.counted.size) this.noticeMasked(w, w.lastRefusal ?? "dropped out");
  }

  private send(w: WriterCore, node: string, batch: Batch, resend = false): void {
    const generation = this.nodeGeneration.get(node) ?? 0;
    // Counted per incarnation: requests to a node's dead predecessor time out on their own.
    const key = `${node}#${generation}`;
    const inflight = this.nodeInflight.get(key) ?? { batches: 0, bytes: 0 };
    const bytes = batch.records.length;
    // One batch always goes, however large (a record over journalInflightBytesMax travels alone).
    const overBytes = inflight.batches > 0 && inflight.bytes + bytes > this.limits.journalInflightBytesMax;
    if (inflight.batches >= this.limits.journalBatchesInflightMax || overBytes) {
      // A resent copy is a best effort: past the bounds it is not sent, and the first copy's answer (or its timeout)
      // decides. Masking here would drop a node that is merely slow to answer a large batch.
      if (resend) return;
      // A slow node must not slow acks nor grow our memory: it is masked until it catches up.
      const message = `${inflight.batches} batches (${inflight.bytes} bytes) unanswered`;
      this.absorb(w.onReply(node, batch.id, { ok: false, code: ErrorCode.OUT_OF_SYNC, message }, this.nowMs));
      return;
    }
    this.nodeInflight.set(key, { batches: inflight.batches + 1, bytes: inflight.bytes + bytes });
    const ref: SendRef = { term: this.term, writer: w, node, generation, batchId: batch.id, bytes, resend };
    this.out.send.push({ node, epoch: w.epoch, batch, timeoutMs: w.batchTimeoutMs(bytes), ref });
  }

  private noticeMasked(w: WriterCore, reason: string): void {
    const now = new Set(w.inSyncNodes);
    for (const node of this.counted) {
      if (now.has(node)) continue;
      this.watch.masked(node);
      this.out.events.push({ type: "masked", node, reason });
    }
    this.counted = now;
  }

  // ---- commits and answers ----

  /** Whether `txid` is committed by the serving writer (the one rule every answer of a journaled write obeys). */
  protected isCommitted(w: WriterCore, txid: number): boolean {
    return txid <= w.committedTxid;
  }

  private onCommitted(w: WriterCore, committed: number): void {
    this.out.committed = { epoch: w.epoch, segmentTxid: w.segmentTxid, txid: committed };
    let n = 0;
    while (n < this.byTxid.length && this.isCommitted(w, this.byTxid[n].txid!)) {
      const p = this.byTxid[n++];
      p.committed = true;
      if (p.recorded !== null) this.window?.observe(p.txid!, p.recorded);
      // Else Redis's reply is still on its way: `outcome` answers it.
      if (p.outcome !== null) this.answerCommitted(p);
    }
    this.byTxid = n === 0 ? this.byTxid : this.byTxid.slice(n);
  }

  private answerCommitted(p: Pending): void {
    assert(p.outcome !== null && p.txid !== null, "answer before outcome and txid");
    if (p.refused !== null) this.answer(p, errorReply(ErrorCode.EFFECTS_REFUSED, p.refused));
    else if (p.outcome.ok) this.answer(p, { ok: true, txid: p.txid, reply: p.outcome.value });
    else this.answer(p, errorReply(ErrorCode.REDIS_ERROR, p.outcome.message));
  }

  /** Answers a pending write, once: its count and bytes leave the in-flight bounds. */
  private answer(p: Pending, reply: WriteReply): void {
    assert(this.pending.delete(p.id), `write ${p.id} answered twice`);
    this.inflightBytes_ -= p.bytes;
    this.reply(p.id, reply);
  }

  /** The one place a write is answered: its waiting retries get the same answer. */
  private reply(id: WriteId, reply: WriteReply): void {
    this.out.answers.push({ id, reply });
    const key = this.clientIdOf.get(id);
    if (key === undefined) return;
    // Not applied, or not known to be: the connection resends it, and its later writes must not overtake it.
    if (!reply.ok && verdictOf(reply.code).retry) this.order.refused(key, this.nowMs);
    else this.order.answered(key, this.nowMs);
    this.clientIdOf.delete(id);
    this.byClientId.delete(key);
    for (const dup of this.duplicates.get(id) ?? []) this.out.answers.push({ id: dup, reply });
    this.duplicates.delete(id);
  }

  // ---- admission, roll and reset ----

  /** Admission, and the start of a drained roll or reset: what every step ends with. */
  private advance(): void {
    const w = this.writerCore;
    if (w === null) return;
    // Orphan effects asked for in this Ready are journaled by the driver after it: a drain found now would finalize,
    // reset or hand over with their record still to come (simulator seed 93309: a roll at txid 114, 113 committed).
    if (this.out.takeOrphans) return this.admit(w);
    if (this.reset !== null) {
      if (this.reset.phase === "draining" && this.drained(w)) {
        this.reset.phase = "running";
        this.out.reset = { reason: this.reset.reason, writer: w };
      }
    } else if (this.roll === null) {
      const reason = rollDue({ bytes: w.segmentBytes, records: w.segmentRecords, ageMs: this.nowMs - this.segmentOpenedMs }, this.limits);
      if (reason !== null && !this.rollHeld(w)) {
        this.roll = { phase: "draining", reason };
        this.rollHeldSinceMs = null;
      }
    }
    if (this.reset === null && this.roll?.phase === "draining" && this.drained(w)) {
      this.roll.phase = "running";
      this.out.roll = { reason: this.roll.reason, writer: w };
    }
    if (this.handover === "draining" && this.roll === null && this.reset === null && this.drained(w)) {
      this.handover = "drained";
      this.out.handoverDrained = true;
    }
    this.admit(w);
  }

  /**
   * Whether a due roll waits for a catch-up of `w`, at most rollHoldForCatchUpMs. A roll discards the catch-up (its
   * next answer finds another writer; one that ends while the roll runs rejoins a writer whose segment the node did
   * not finalize, and is masked again): with a roll every ~100 ms under load, a restarted node went unrestored for
   * over a minute (CI, compaction_faults). Admission goes on meanwhile, so no write waits for a catch-up; the segment
   * grows meanwhile, at most to ROLL_HOLD_GROWTH_MAX times its bounds (bytes and records), then the roll runs.
   */
  private rollHeld(w: WriterCore): boolean {
    const grown = w.segmentBytes >= ROLL_HOLD_GROWTH_MAX * this.limits.segmentMaxBytes || w.segmentRecords >= ROLL_HOLD_GROWTH_MAX * this.limits.segmentMaxRecords;
    if (grown || ![...this.catchingUp.values()].includes(w)) {
      this.rollHeldSinceMs = null;
      return false;
    }
    this.rollHeldSinceMs ??= this.nowMs;
    return this.nowMs - this.rollHeldSinceMs < this.limits.rollHoldForCatchUpMs;
  }

  /** Everything admitted is answered and everything journaled is committed. */
  protected drained(w: WriterCore): boolean {
    return w.drained && this.pending.size === 0;
  }

  /** Moves queued writes to execution while serving, within the in-flight bounds and while the buffers have room. */
  private admit(w: WriterCore): void {
    const l = this.limits;
    while (this.queue.length > 0 && this.roll === null && this.reset === null && this.handover === null && this.barrier === null && !w.full && this.pending.size < l.writesInflightMax) {
      if (this.pending.size > 0 && this.inflightBytes_ + this.queue[0].bytes > l.writesInflightBytesMax) return;
      const q = this.dequeue();
      if (this.answeredFromWindow(q) || (q.clientId !== null && this.refusedBehind(q.id, q.clientId, q.ticket))) continue;
      if (q.clientId !== null) this.order.accepted(q.clientId);
      this.pending.set(q.id, { id: q.id, bytes: q.bytes, txid: null, outcome: null, committed: false, refused: null, recorded: null });
      this.inflightBytes_ += q.bytes;
      this.unjournaled++;
      this.out.execute.push(q.id);
      if (q.barrier) this.barrier = q.id;
    }
  }

  /**
   * A queued write's id looked up again as it is admitted: it may have arrived before the window held its original's
   * record (while the master recovered, before its rebuild or takeover observed the recovered log), and was then
   * answered `new`. Answered from the window instead of executed twice (simulator seed 1, issue #11).
   */
  private answeredFromWindow(q: Queued): boolean {
    if (q.clientId === null || this.window === null) return false;
    const known = answerFromWindow(this.window.lookup(q.clientId.client, q.clientId.seq));
    if (known === null) return false;
    this.order.accepted(q.clientId);
    this.reply(q.id, known);
    return true;
  }

  private dequeue(): Queued {
    const q = this.queue.shift()!;
    this.queuedBytes_ -= q.bytes;
    return q;
  }

  /** The writer's segment is finalized and the next one open on `open` (a majority): a new writer continues the term. */
  rolled(writer: WriterCore, open: readonly string[], nowMs: number): void {
    this.nowMs = nowMs;
    if (writer !== this.writerCore || this.roll?.phase !== "running") return;
    const next = this.newWriter(writer.epoch, writer.lastTxid + 1, this.limits.journalNodes, open, this.limits);
    this.writerCore = next;
    this.segmentOpenedMs = nowMs;
    this.out.events.push({ type: "segmentRolled", epoch: writer.epoch, startTxid: writer.segmentTxid, endTxid: writer.lastTxid, reason: this.roll.reason, inSync: [...open] });
    this.roll = null;
    this.noticeMasked(next, "did not open the next segment");
  }

  rollFailed(writer: WriterCore, reason: string): void {
    if (writer === this.writerCore) this.fail(`segment roll: ${reason}`);
  }

  /**
   * Redis holds effects that are not journaled (a write's or orphans' over writeEffectsBytesMax, an unverifiable
   * script): every write not yet journaled is discarded with Redis; once everything journaled is answered, Redis is
   * rebuilt from the journal in the same epoch. Client input never fails the writer.
   */
  startReset(reason: string): void {
    if (this.writerCore === null) return;
    if (this.reset?.phase === "running") return;
    this.reset = { phase: "draining", reason };
    for (const p of [...this.pending.values()]) {
      if (p.txid === null) this.answer(p, errorReply(ErrorCode.OVERLOADED, `not executed: the master resets its Redis to the journal (${reason}); retry`));
    }
    this.unjournaled = 0;
    this.barrier = null;
  }

  resetDone(writer: WriterCore): void {
    if (writer !== this.writerCore || this.reset?.phase !== "running") return;
    this.out.events.push({ type: "redisReset", epoch: writer.epoch, txid: writer.lastTxid, reason: this.reset.reason });
    this.reset = null;
  }

  private checkInvariants(): void {
    assert(this.pending.size <= this.limits.writesInflightMax, `${this.pending.size} writes in flight, over writesInflightMax`);
    assert(this.unjournaled >= 0 && this.unjournaled <= this.pending.size, `${this.unjournaled} writes await records of ${this.pending.size} pending`);
    assert(this.writerCore !== null || (this.pending.size === 0 && this.roll === null && this.reset === null), "a failed term holds nothing");
    assert(this.roll?.phase !== "running" || this.reset === null, "a reset while the segment rolls");
    assert(this.queuedBytes_ >= 0 && this.inflightBytes_ >= 0, "negative byte counts");
    assert(this.barrier === null || this.pending.has(this.barrier), "the barrier is a pending write");
  }
}

/**
 * The master in the simulation: a thin driver of the same MasterCore master.ts drives (src/master/master_core.ts).
 * It becomes the writer as master.ts does (writer_recovery.ts: the RecoveryCore, retried after writerRetryMs, then a
 * rebuild of its Redis and of its dedupe window from the recovered log), then feeds the core client writes, journal
 * replies, heartbeats and timer ticks, and does what each `ready()` says: execute on the model Redis, send batches,
 * answer clients, catch nodes up (the RestorerCore), roll the segment (the RollCore), and on a failed term recover
 * again in a new epoch.
 *
 * A data node's master role (sim_data_node.ts) is one of these in role mode (`role` set): it campaigns once (the same
 * recovery, no retry), takes over the node's Redis (applies applied+1..end into it, no rebuild) and serves; a failure
 * or a step-down ends the role instead of recovering again.
 *
 * Redis is a model with TTLs (model_redis.ts): a write runs synchronously and yields its record at once, with the DELs
 * of keys that expired since the last record first (lazy expiry, and the timer's active expiry, whose DELs otherwise
 * become an orphan record when the core says so), as production's stream does. The rebuild replays as the feeder
 * does: nothing expires until the writer serves. What it leaves out: the replication link, markers, scripts, resets
 * (no write's effects pass writeEffectsBytesMax), snapshots (a catch-up's snapshot copy succeeds at once).
 */
import type { Config } from "../config/config.js";
import { recordedReplyOf } from "../dedupe/dedupe_answer.js";
import type { DedupeWindow } from "../dedupe/dedupe_window.js";
import { CommitHints, type CommitNotice } from "../master/commit_hints.js";
import { batchGroups, isEmptyReady, type MasterCore, type MasterReady, type SendOrder, type WriteId } from "../master/master_core.js";
import { CampaignDeferred, type CampaignGuard, type RecoveryCore, type RecoveryOutput, type WriterStart } from "../master/recovery_core.js";
import type { RestorerCore, RestorerOutput } from "../master/restorer_core.js";
import { RollCore, type RollStep } from "../master/segment_roll.js";
import type { WriterCore } from "../master/writer_core.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, QjmError, errorReply, toErrorReply } from "../protocol/errors.js";
import { parseJournalReply, type BatchFanout, type CommitHint, type JournalReply, type JournalRequest, type WriteId as ClientWriteId, type WriteReply } from "../protocol/messages.js";
import { rebuildSources } from "../master/rebuild_sources.js";
import { decodeRecordPayload, encodeEffects, encodeWriteRecord, recordRange } from "../segment/record.js";
import type { SimTimer } from "./clock.js";
import type { SimCores } from "./cores.js";
import { SimViolation, type Invariants } from "./invariants.js";
import { applyRecord, ModelRedis, type ModelEffect } from "./model_redis.js";
import type { ClientOp, SimActor, SimBus, SimMessage } from "./sim_bus.js";
import type { Trace } from "./trace.js";

/** How often the master's timer runs (master.ts: min(100, orphanEffectsFlushMs)). */
export const MASTER_TICK_MS = 20;

type MasterState = "down" | "recovering" | "rebuilding" | "writing";

/** A data node's hooks on its master role: the outcome of each step goes back to its DataNodeCore. */
export interface MasterRole {
  won(start: WriterStart): void;
  /** `knownPromise`: the epoch the campaign asked for, or the rival's it deferred to (CampaignDeferred); 0: neither. */
  lost(reason: string, knownPromise?: number): void;
  /** What the campaign must know of the data node's election (RecoveryCore.guardCampaign). */
  campaignGuard(): CampaignGuard | null;
  serving(): void;
  ended(reason: string): void;
}

/** A client write as the driver knows it; the core knows it by its id. */
interface SimWrite {
  client: string;
  /** The bus message's id, which the reply carries. */
  msgId: number;
  /** The client's id of the write (same on its retries), or null: journaled as a v1 record, never deduped. */
  writeId: ClientWriteId | null;
  op: ClientOp;
  /** Its record and the epoch that journaled it, once executed. */
  payload: Uint8Array | null;
  epoch: number;
}

/** A write's size on the wire, as the core counts it; memoized per op, which every attempt of a write shares (never changed). */
const opBytes = new WeakMap<ClientOp, number>();
function encodedBytes(op: ClientOp): number {
  let bytes = opBytes.get(op);
  if (bytes === undefined) opBytes.set(op, (bytes = encode(op).length));
  return bytes;
}

export class SimMaster implements SimActor {
  up = false;
  private state: MasterState = "down";
  private incarnation = 0;
  private attempts = 0;
  private readonly rpc = new Map<number, (reply: JournalReply) => void>();
  private recovery: RecoveryCore | null = null;
  private core: MasterCore;
  /**
   * The dedupe window (issue #11): fed by the core at each commit and by every rebuild with the records it reads, so
   * it holds what the journal holds. A new one per incarnation (a restart loses memory, as a data node's does).
   */
  private window: DedupeWindow;
  private redis = new ModelRedis();
  /** DELs of keys the timer expired, not journaled yet: they go with the next write's record, or as orphans. */
  private expired: ModelEffect[] = [];
  private expiredSinceMs = 0;
  private writes = new Map<WriteId, SimWrite>();
  private nextWriteId = 1;
  /** Records journaled by the current term, by txid, until committed. */
  private journaled = new Map<number, { epoch: number; payload: Uint8Array }>();
  private flushScheduled = false;
  private pumping = false;
  private clusterId = "";
  /** The catch-ups under way, by journal node. */
  private readonly catchUps = new Map<string, RestorerCore>();
  acks = 0;
  /** Journal nodes the restorer brought back (for the run's stats). */
  rejoins = 0;
  /** Segments rolled (for the run's stats). */
  rolls = 0;
  /** Whether this term committed yet; set when its first commit waits for the hook. */
  private firstCommitDone = true;
  private firstCommitSeen = false;
  /** The nemesis's hook: a writer's first commit (a crash right after it is a schedule worth trying often). */
  onFirstCommit: () => void = () => {};
  /** The nemesis's hook: a writer starts serving (its new segment is open and empty everywhere it started). */
  onWriterStart: (inSync: readonly string[]) => void = () => {};
  /**
   * The nemesis's hook on a recovery's copy of the chosen segment (its reads and recoveryAppends): "request", the
   * request is lost; "reply", the node runs it but its answer is lost; null, delivered. Either way a lost one times out.
   */
  recoveryCopyFault: (req: JournalRequest) => "request" | "reply" | null = () => null;
  /** Set: a data node's master role (see the file's comment); null: the legacy master, which recovers until it serves. */
  role: MasterRole | null = null;
  /** A takeover's Redis stops answering (the simulator's fault): the takeover never finishes on its own. */
  takeoverHangs: () => boolean = () => false;
  /**
   * Who hears its commit hints besides the journal nodes, and its batch fan-outs: the replicas, or the data nodes (set
   * by the simulator).
   */
  hintReaders: readonly string[] = [];
  /** Batch fan-outs published (the run's stats; the count is also each one's tag, BatchFanout `re`). */
  fanouts = 0;
  /** Commits no fan-out carried yet (master.ts), one per incarnation; `hintArmed`: a timer will ask it again. */
  private hints: CommitHints;
  private hintArmed = false;
  /** Who hears that this master serves (master.ts: its first heartbeat as master, sent at once): the clients, which resend at once. */
  electionListeners: readonly string[] = [];
  /** A planned switchover's drain under way (master.ts's HandoverDrain): told true once drained, false otherwise. */
  private drainWaiter: ((drained: boolean) => void) | null = null;
  /** Set while the switchover's hand-off answers what waits: each answer must be NOT_WRITER (never executed). */
  private handingOff: string | null = null;

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly clock: SimTimer,
    private readonly bus: SimBus,
    private readonly trace: Trace,
    private readonly cores: SimCores,
    private readonly invariants: Invariants,
    private readonly requestIds: { next(): number },
  ) {
    this.window = cores.dedupeWindow(config);
    this.core = cores.masterCore(config, cores.writerCore, this.window);
    this.hints = new CommitHints(config.commitHintDelayMs, config.replicaFanoutBytesMax > 0);
  }

  get writing(): boolean {
    return this.state === "writing";
  }

  private get writer(): string {
    return `${this.id}#${this.incarnation}`;
  }

  start(): void {
    if (this.up) return;
    this.up = true;
    const generation = ++this.incarnation;
    this.window = this.cores.dedupeWindow(this.config);
    this.core = this.cores.masterCore(this.config, this.cores.writerCore, this.window);
    this.hints = new CommitHints(this.config.commitHintDelayMs, this.config.replicaFanoutBytesMax > 0);
    this.hintArmed = false;
    this.trace.add(this.id, "start");
    const tick = (): void => {
      if (this.incarnation !== generation) return;
      this.expireActively();
      const orphansSinceMs = this.expired.length > 0 ? this.expiredSinceMs : null;
      this.step(() => this.core.tick(this.clock.nowMs, orphansSinceMs));
      this.clock.after(MASTER_TICK_MS, tick);
    };
    this.clock.after(MASTER_TICK_MS, tick);
    this.recover();
  }

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.trace.add(this.id, `crash (${this.state}, ${this.core.inflight} writes unanswered)`);
    this.drop();
    this.state = "down";
    this.redis = new ModelRedis();
    this.expired = [];
    this.writes.clear();
  }

  /** Nothing of this incarnation runs on: its requests and timers (by generation) and its journal state go. */
  private drop(): void {
    this.incarnation++;
    this.rpc.clear();
    this.recovery = null;
    this.journaled.clear();
    this.catchUps.clear();
    this.flushScheduled = false;
    this.drainWaiter = null;
  }

  // ---- a data node's master role ----

  /** Runs one recovery for a new epoch (newEpoch on a majority, then the last segment): `role.won` or `role.lost`. */
  campaign(): void {
    this.begin();
    this.recover();
  }

  private begin(): void {
    this.up = true;
    this.drop();
    this.writes.clear();
  }

  /**
   * Serves from the data node's Redis, which holds the committed prefix up to `appliedTxid`: applies
   * appliedTxid+1..start.endTxid into it, then serves `start`'s epoch. The window holds the records up to the applied
   * txid already: the replica's release warmed it (sim_replica.ts, as replica.ts's release does).
   */
  takeOver(start: WriterStart, redis: ModelRedis, window: DedupeWindow, appliedTxid: number): void {
    const generation = this.incarnation;
    this.window = window;
    this.core = this.cores.masterCore(this.config, this.cores.writerCore, this.window);
    const tick = (): void => {
      if (this.incarnation !== generation) return;
      this.step(() => this.core.tick(this.clock.nowMs));
      this.clock.after(MASTER_TICK_MS, tick);
    };
    this.clock.after(MASTER_TICK_MS, tick);
    if (this.takeoverHangs()) {
      this.state = "rebuilding";
      this.trace.add(this.id, "taking over: its Redis stops answering");
      return;
    }
    this.rebuild(start, appliedTxid + 1, redis);
  }

  // ---- a planned switchover (master.ts: drainForHandover, resumeAdmission, handOff) ----

  /** Admission stops; `done(true)` once everything admitted is committed and answered, false if it cannot be. */
  drainForHandover(done: (drained: boolean) => void): void {
    if (this.state !== "writing" || this.drainWaiter !== null) return done(false);
    this.drainWaiter = done;
    this.step(() => this.core.startHandover());
  }

  /** The switchover did not happen: serve on. */
  resumeAdmission(): void {
    this.endDrain(false);
    if (this.state === "writing") this.step(() => this.core.cancelHandover());
  }

  /**
   * The switchover's last step: the drained master stops serving at once; what still waits is answered NOT_WRITER
   * (never executed: the client retries it at the new master). A write answered otherwise here was admitted and its
   * outcome is left unknown by a planned switchover, which must never happen: the drain is there to prevent it.
   */
  handOff(reason: string): void {
    if (this.state !== "writing") return;
    this.handingOff = reason;
    try {
      this.step(() => this.core.stop(`this node handed over: ${reason}`));
    } finally {
      this.handingOff = null;
    }
  }

  private endDrain(drained: boolean): void {
    const waiter = this.drainWaiter;
    this.drainWaiter = null;
    waiter?.(drained);
  }

  /** Stop serving (a higher epoch was heard, the takeover deadline passed): unanswered writes fail, the role ends. */
  stepDown(reason: string): void {
    if (!this.up) return;
    if (this.state === "writing") return this.step(() => this.core.fail(reason));
    this.end(reason);
  }

  /** The role is over: queued writes are answered NOT_WRITER, nothing more runs, the data node is told. */
  private end(reason: string): void {
    const role = this.role!;
    if (this.state === "writing") this.step(() => this.core.stop(`this node stepped down: ${reason}`));
    // master.ts endHints: no batch will carry a commit still owed.
    const owed = this.hints.takeOwed();
    if (owed !== null) this.publishCommit(owed);
    this.up = false;
    // Not the writes: the answers core.stop gave (NOT_WRITER) still go out, after this.
    this.drop();
    this.state = "down";
    this.redis = new ModelRedis();
    this.trace.add(this.id, `master role ends: ${reason}`);
    role.ended(reason);
  }

  // ---- journal requests ----

  /** One request; exactly one answer: the reply, or TIMEOUT after timeoutMs (a late or duplicate reply is dropped). */
  private call(node: string, req: JournalRequest, timeoutMs: number, onReply: (reply: JournalReply) => void, lost: "request" | "reply" | null = null): void {
    const id = this.requestIds.next();
    const generation = this.incarnation;
    // A lost reply: the answer finds no pending call (the request id is never registered), so the timeout answers.
    if (lost !== "reply") this.rpc.set(id, onReply);
    if (lost !== "request") this.bus.send(this.id, node, { kind: "request", id, body: encode(req) });
    if (lost === "reply") {
      this.clock.after(timeoutMs, () => {
        if (this.incarnation === generation) onReply(errorReply(ErrorCode.TIMEOUT, `${req.type} to ${node}: its answer was lost`));
      });
      return;
    }
    this.clock.after(timeoutMs, () => {
      const pending = this.rpc.get(id);
      if (pending === undefined || this.incarnation !== generation) return;
      this.rpc.delete(id);
      pending(errorReply(ErrorCode.TIMEOUT, `${req.type} to ${node}: no answer in ${timeoutMs} ms`));
    });
  }

  onMessage(from: string, msg: SimMessage): void {
    switch (msg.kind) {
      case "reply": {
        const pending = this.rpc.get(msg.id);
        if (pending === undefined) return;
        this.rpc.delete(msg.id);
        let reply: JournalReply;
        try {
          reply = parseJournalReply(decode(msg.body));
        } catch (err) {
          reply = toErrorReply(err);
        }
        pending(reply);
        return;
      }
      case "heartbeat":
        this.core.heartbeat(from, this.clock.nowMs);
        return;
      case "write":
        this.onWrite(from, msg.id, msg.writeId, msg.op);
        return;
      default:
        return;
    }
  }

  // ---- becoming the writer ----

  private recover(): void {
    this.state = "recovering";
    const attempt = ++this.attempts;
    const core = this.cores.recoveryCore(this.config.journalNodes, this.config, `${this.id}-cluster-${attempt}`);
    const guard = this.role?.campaignGuard() ?? null;
    if (guard !== null) core.guardCampaign(guard);
    this.recovery = core;
    this.stepRecovery(core, () => core.start());
  }

  private stepRecovery(core: RecoveryCore, run: () => RecoveryOutput): void {
    if (this.recovery !== core) return;
    let out: RecoveryOutput;
    try {
      out = run();
    } catch (err) {
      // A QjmError is an operating failure (no quorum, a refusal): try again. Anything else is a bug.
      if (!(err instanceof QjmError)) throw err;
      this.trace.add(this.id, `could not become the writer: ${err.message}`);
      if (this.role !== null) return this.lose(err.message, err instanceof CampaignDeferred ? err.promisedEpoch : core.epochAsked);
      this.retryRecovery();
      return;
    }
    for (const note of out.notes) this.trace.add(this.id, `${note.message} ${JSON.stringify(note.fields)}`);
    if (out.done !== null) {
      this.recovery = null;
      this.invariants.writerEstablished(out.done.epoch, this.writer, out.done.endTxid);
      if (this.role !== null) {
        this.state = "rebuilding";
        return this.role.won(out.done);
      }
      this.rebuild(out.done, 1, new ModelRedis());
      return;
    }
    for (const r of out.send) {
      const copying = r.req.type === "recoveryAppend" || (r.req.type === "read" && r.req.uncommitted);
      const lost = copying ? this.recoveryCopyFault(r.req) : null;
      if (lost !== null) this.trace.add(this.id, `recovery copy fault: ${r.req.type} to ${r.node}, ${lost} lost`);
      this.call(r.node, r.req, r.timeoutMs, (reply) => this.stepRecovery(core, () => core.onReply(r.id, reply)), lost);
    }
  }

  /** A data node's campaign lost: nothing of it runs on. */
  private lose(reason: string, knownPromise?: number): void {
    this.up = false;
    this.drop();
    this.state = "down";
    this.role!.lost(reason, knownPromise);
  }

  private retryRecovery(): void {
    this.recovery = null;
    this.state = "recovering";
    const generation = this.incarnation;
    this.clock.after(this.config.writerRetryMs, () => {
      if (this.incarnation === generation && this.state === "recovering" && this.recovery === null) this.recover();
    });
  }

  /**
   * Replays the recovered log from `fromTxid` into `redis` (a fresh one; a data node's, which holds what is before
   * it), reading from the in-step nodes, then the others (rebuild_sources.ts).
   */
  private rebuild(start: WriterStart, fromTxid: number, redis: ModelRedis): void {
    this.state = "rebuilding";
    this.redis = redis;
    this.expired = [];
    // The keyspace check follows this Redis from what it holds: nothing (a rebuild from txid 1), or a data node's
    // replica copy, checked as that up to fromTxid - 1.
    this.invariants.keyspace.adopt(this.writer, fromTxid - 1, redis);
    const ownClock = this.cores.replayExpiresByOwnClock;
    let from = fromTxid;
    let sourceIndex = 0;
    let misses = 0;
    const generation = this.incarnation;
    const sources = rebuildSources(start.inSync, this.config.journalNodes);
    const next = (): void => {
      if (this.incarnation !== generation || this.state !== "rebuilding") return;
      if (from > start.endTxid) return this.becomeWriter(start);
      const { node, uncommitted } = sources[sourceIndex % sources.length];
      const req: JournalRequest = { type: "read", fromTxid: from, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted };
      this.call(node, req, this.config.journalRequestTimeoutMs, (reply) => {
        if (this.incarnation !== generation || this.state !== "rebuilding") return;
        const range = reply.ok && "read" in reply && reply.read.count > 0 ? recordRange(reply.read.records, from, start.endTxid) : null;
        if (range === null) {
          if (reply.ok && "read" in reply && reply.read.count > 0) this.invariants.corruptReadRefused();
          this.trace.add(this.id, `rebuild read ${from} from ${node}: ${reply.ok ? ("read" in reply ? reply.read.count + " records" : "?") : reply.code + " " + reply.message}`);
          sourceIndex++;
          if (++misses >= sources.length * 3) {
            this.trace.add(this.id, `rebuild: no journal node serves txid ${from}`);
            if (this.role !== null) return this.end(`taking over: no journal node serves txid ${from}`);
            this.retryRecovery();
            return;
          }
          return next();
        }
        misses = 0;
        for (const rec of range.records) {
          this.invariants.recovered(this.writer, rec.txid, rec.epoch, rec.payload);
          applyRecord(this.redis, rec.payload, ownClock ? this.clock.nowMs : null);
          this.invariants.keyspace.took(this.writer, rec.txid, rec.payload, this.redis, "rebuild", this.clock.nowMs);
          // The window already holds what this incarnation committed or read before (master_redis.ts's takeover does the same).
          if (rec.txid > this.window.stats.lastTxid) this.window.observe(rec.txid, decodeRecordPayload(rec.payload).write);
          from = rec.txid + 1;
        }
        next();
      });
    };
    next();
  }

  private becomeWriter(start: WriterStart): void {
    this.clusterId = start.clusterId;
    this.journaled.clear();
    this.state = "writing";
    this.firstCommitDone = false;
    this.trace.add(this.id, `serving writes: epoch ${start.epoch}, segment ${start.endTxid + 1}, in step ${start.inSync.join(",")} (${start.decision})`);
    this.invariants.writerServes(start.epoch, this.writer);
    this.step(() => this.core.start(start.epoch, start.endTxid + 1, start.inSync, this.clock.nowMs));
    for (const to of this.electionListeners) this.bus.send(this.id, to, { kind: "writerElected", epoch: start.epoch });
    this.role?.serving();
    this.onWriterStart(start.inSync);
  }

  // ---- the loop over the core ----

  private onWrite(client: string, msgId: number, writeId: ClientWriteId | null, op: ClientOp): void {
    const id = this.nextWriteId++;
    this.writes.set(id, { client, msgId, writeId, op, payload: null, epoch: 0 });
    this.step(() => this.core.write(id, encodedBytes(op), false, this.clock.nowMs, writeId));
  }

  /** Feeds one event to the core, then does what it decided, until it has nothing more to say. */
  private step(event: () => void): void {
    event();
    if (this.pumping) return;
    this.pumping = true;
    try {
      // Unlike master.ts, a commit alone counts: the invariants learn of every commit (an orphan record's answers no client).
      for (let r = this.core.ready(); !isEmptyReady(r) || r.committed !== null; r = this.core.ready()) this.act(r);
    } finally {
      this.pumping = false;
    }
    this.sendHint();
    // After the step's answers, outside the loop: the hook may crash the master.
    if (this.firstCommitSeen) {
      this.firstCommitSeen = false;
      this.onFirstCommit();
    }
  }

  /** One Ready, in its order (master.ts `act`; a commit's hint, if no fan-out carries it, at the end of the step). */
  private act(r: MasterReady): void {
    for (const id of r.execute) this.execute(id);
    if (r.committed !== null) this.hints.committed(r.committed, this.clock.nowMs);
    for (const group of batchGroups(r.send)) this.sendBatch(group);
    if (r.committed !== null) this.onCommitted(r.committed.epoch, r.committed.txid);
    for (const { id, reply } of r.answers) this.answer(id, reply);
    if (r.flush) this.scheduleFlush();
    if (r.takeOrphans) this.takeOrphans();
    for (const { node, writer } of r.startCatchUp) this.startCatchUp(node, writer);
    if (r.roll !== null) this.roll(r.roll.writer, r.roll.reason);
    // The model Redis holds no effect that is not journaled: a reset has nothing to undo.
    if (r.reset !== null) this.core.resetDone(r.reset.writer);
    if (r.handoverDrained) this.endDrain(true);
    for (const e of r.events) this.trace.add(this.id, `event ${JSON.stringify(e)}`);
    if (r.failed !== null) this.failWriter(r.failed);
  }

  /**
   * The model Redis runs the write at once, and its record comes at once (no stream, no markers). A write with a
   * client id is journaled with the id and its reply (effect_stream.ts `journal`), which the window learns at the commit.
   */
  private execute(id: WriteId): void {
    const w = this.writes.get(id)!;
    const result = this.redis.execute(w.op, this.clock.nowMs);
    const effects = [...this.expired.splice(0), ...result.effects].map((e) => e.map((a) => Buffer.from(a)));
    const outcome = result.ok ? ({ ok: true, value: result.reply } as const) : ({ ok: false, message: String(result.reply) } as const);
    this.core.outcome(id, outcome);
    const recorded = encodeWriteRecord(effects, w.writeId === null ? null : { id: w.writeId, reply: recordedReplyOf(outcome) }, this.config.dedupeReplyBytesMax);
    const payload = recorded.payload;
    const txid = this.core.record(id, payload, recorded.write);
    if (txid === null) return;
    w.payload = payload;
    w.epoch = this.core.writer!.epoch;
    this.journaled.set(txid, { epoch: w.epoch, payload });
    this.invariants.keyspace.took(this.writer, txid, payload, this.redis, "live write", this.clock.nowMs);
  }

  /** The model Redis's active expiry, on the master's timer: only once it serves (a rebuild replays, never expires). */
  private expireActively(): void {
    if (this.state !== "writing") return;
    const dels = this.redis.expireDue(this.clock.nowMs);
    if (dels.length === 0) return;
    if (this.expired.length === 0) this.expiredSinceMs = this.clock.nowMs;
    this.expired.push(...dels);
  }

  /** Expiries no write carried, idle long enough: a record of their own (master.ts takeOrphans). */
  private takeOrphans(): void {
    if (this.expired.length === 0) return;
    const payload = encodeEffects(this.expired.splice(0).map((e) => e.map((a) => Buffer.from(a))));
    const txid = this.core.orphans(payload);
    if (txid === null) return;
    this.journaled.set(txid, { epoch: this.core.writer!.epoch, payload });
    this.invariants.keyspace.took(this.writer, txid, payload, this.redis, "orphan expiries", this.clock.nowMs);
  }

  private answer(id: WriteId, reply: WriteReply): void {
    const w = this.writes.get(id);
    if (w === undefined) return;
    if (this.handingOff !== null && !reply.ok && reply.code !== ErrorCode.NOT_WRITER) {
      throw new SimViolation(`${this.writer}'s switchover (${this.handingOff}) answered a write ${reply.code} (${reply.message}): admitted, its outcome left unknown to the client`);
    }
    this.writes.delete(id);
    if (reply.ok) {
      // A retry answered from the window or with its original's reply ran nothing here: the client checks it by id.
      if (w.payload !== null) this.invariants.acked(reply.txid, w.epoch, w.payload, this.writer);
      this.acks++;
    }
    this.bus.send(this.id, w.client, { kind: "writeReply", id: w.msgId, reply });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const generation = this.incarnation;
    this.clock.after(0, () => {
      if (this.incarnation !== generation) return;
      this.flushScheduled = false;
      this.step(() => this.core.flush(this.clock.nowMs));
    });
  }

  /**
   * One batch to one or more nodes (master.ts sendBatch): each named node gets it as a request, as before — the journal
   * nodes' side of a fan-out is the same request in their queue's order — and a batch for several nodes is also heard
   * by the replicas, as production's one publish on `qjm.<cluster>.batch` is (master.ts: a node late with its answers
   * gets a request and is left out of the publish, which the bus's losses stand for here).
   */
  private sendBatch(sends: readonly SendOrder[]): void {
    const { epoch, batch } = sends[0];
    const req: JournalRequest = { type: "journal", epoch, segmentTxid: batch.segmentTxid, firstTxid: batch.firstTxid, count: batch.count, records: batch.records, committedTxid: batch.committedTxid };
    for (const { node, timeoutMs, ref } of sends) {
      this.call(node, req, timeoutMs, (reply) => this.step(() => this.core.journalReply(ref, reply.ok ? { ok: true } : reply, this.clock.nowMs)));
    }
    if (sends.length < 2) return;
    this.hints.fannedOut(epoch, batch.committedTxid);
    const fanout: BatchFanout = { ...req, to: sends.map((s) => s.node), re: `${this.id}.${++this.fanouts}` };
    const body = encode(fanout);
    for (const to of this.hintReaders) if (to !== this.id) this.bus.send(this.id, to, { kind: "fanout", body });
  }

  /** master.ts sendHint: the hint of a commit no fan-out carried, now or once due (CommitHints). */
  private sendHint(): void {
    if (this.hintArmed || !this.up) return;
    const { publish, againInMs } = this.hints.decide(this.clock.nowMs);
    if (publish !== null) this.publishCommit(publish);
    if (againInMs === null) return;
    this.hintArmed = true;
    const generation = this.incarnation;
    this.clock.after(againInMs, () => {
      if (this.incarnation !== generation) return;
      this.hintArmed = false;
      this.sendHint();
    });
  }

  /** master.ts publishCommit: one copy per journal node and replica, each delayed, lost or doubled on its own. */
  private publishCommit(c: CommitNotice): void {
    const hint: CommitHint = { epoch: c.epoch, segmentTxid: c.segmentTxid, committedTxid: c.txid };
    const body = encode(hint);
    for (const to of [...this.config.journalNodes, ...this.hintReaders]) if (to !== this.id) this.bus.send(this.id, to, { kind: "commitHint", body });
  }

  private onCommitted(epoch: number, committed: number): void {
    this.invariants.writerCommitted(epoch, this.writer, committed);
    this.trace.add(this.id, `committed ${committed} (epoch ${epoch})`);
    for (const [txid, rec] of this.journaled) {
      if (txid > committed) break;
      this.invariants.learnCommitted(txid, rec.epoch, rec.payload, `${this.writer}'s commit`);
      this.journaled.delete(txid);
    }
    if (!this.firstCommitDone) {
      this.firstCommitDone = true;
      this.firstCommitSeen = true;
    }
  }

  /** Nothing more is acknowledged under this term (the core answered its writes): recover as a new writer. */
  private failWriter(reason: string): void {
    if (this.state !== "writing") return;
    this.endDrain(false);
    this.trace.add(this.id, `writer failed: ${reason}`);
    if (this.role !== null) return this.end(`writer failed: ${reason}`);
    this.journaled.clear();
    this.catchUps.clear();
    this.redis = new ModelRedis();
    this.expired = [];
    this.recover();
  }

  // ---- bringing journal nodes back (master.ts: NodeRestorer) ----

  private startCatchUp(node: string, writer: WriterCore): void {
    const restorer = this.cores.restorerCore(node, writer, this.clusterId, this.config);
    this.catchUps.set(node, restorer);
    this.stepCatchUp(restorer, writer, () => restorer.start());
  }

  private stepCatchUp(restorer: RestorerCore, writer: WriterCore, run: () => RestorerOutput): void {
    const node = restorer.node;
    if (this.catchUps.get(node) !== restorer) return; // the master crashed or failed meanwhile
    if (this.core.writer !== writer) {
      this.catchUps.delete(node);
      return this.core.catchUpEnded(node, writer);
    }
    const out = run();
    for (const note of out.notes) this.trace.add(this.id, `${note.message} ${JSON.stringify(note.fields)}`);
    if (out.catchingUpFrom !== null) this.trace.add(this.id, `catching up ${node} from ${out.catchingUpFrom}`);
    if (out.end !== null) {
      this.catchUps.delete(node);
      if (out.end.kind === "gaveUp") {
        this.trace.add(this.id, `catch-up of ${node} stopped: ${out.end.reason}`);
        return this.core.catchUpEnded(node, writer);
      }
      this.rejoins++;
      this.trace.add(this.id, `${node} rejoins at ${out.end.lastTxid} (epoch ${writer.epoch})`);
      const lastTxid = out.end.lastTxid;
      return this.step(() => this.core.caughtUp(node, lastTxid, writer));
    }
    for (const r of out.send) this.call(r.node, r.req, r.timeoutMs, (reply) => this.stepCatchUp(restorer, writer, () => restorer.onReply(r.id, reply)));
    if (out.ensureSnapshot) this.stepCatchUp(restorer, writer, () => restorer.onSnapshotEnsured(true));
  }

  // ---- segment roll (master.ts: rollSegment, over the same RollCore) ----

  private roll(writer: WriterCore, reason: string): void {
    this.trace.add(this.id, `rolling segment ${writer.segmentTxid}..${writer.lastTxid} (${reason})`);
    this.invariants.writerRolls(this.writer, writer.epoch, writer.committedTxid, writer.lastTxid);
    const roll = new RollCore(writer, this.config.journalNodes.length, this.clusterId, this.config.quorumTimeoutMs);
    const generation = this.incarnation;
    const step = (run: () => RollStep): void => {
      if (this.incarnation !== generation) return;
      let out: RollStep;
      try {
        out = run();
      } catch (err) {
        if (!(err instanceof QjmError)) throw err;
        return this.step(() => this.core.rollFailed(writer, err.message));
      }
      if (out.open !== null) {
        this.rolls++;
        const open = out.open;
        return this.step(() => this.core.rolled(writer, open, this.clock.nowMs));
      }
      for (const r of out.send) this.call(r.node, r.req, r.timeoutMs, (reply) => step(() => roll.onReply(r.node, reply)));
    };
    step(() => roll.start());
  }
}

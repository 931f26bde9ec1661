/**
 * The master in the simulation, driven as master.ts drives it: the RecoveryCore to become the writer (retried
 * after writerRetryMs), a rebuild of its Redis from the recovered log, then the WriterCore: one record per client
 * write, a flush right after appends and on a periodic timer, NodeWatch heartbeats masking silent journal nodes,
 * and on any failure every unanswered write gets NO_QUORUM and recovery starts again in a new epoch.
 *
 * Every catch-up interval, each journal node out of step is caught up by the RestorerCore (master.ts: NodeRestorer),
 * and counts for acks again from the batch in flight on. Redis is a model: a Map, where SET/INCR/DEL run and yield
 * the effects Redis would propagate. What it leaves out: the replication link, markers, snapshots (a catch-up's
 * snapshot copy succeeds at once).
 */
import type { Config } from "../config/config.js";
import type { RecoveryCore, RecoveryOutput, WriterStart } from "../master/recovery_core.js";
import type { RestorerCore, RestorerOutput } from "../master/restorer_core.js";
import { NodeWatch } from "../master/node_watch.js";
import type { Batch, WriterCore, WriterOutput } from "../master/writer_core.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, QjmError, errorReply, toErrorReply } from "../protocol/errors.js";
import { parseJournalReply, type JournalReply, type JournalRequest, type WriteReply } from "../protocol/messages.js";
import { decodeRecordPayload, encodeEffects, recordRange } from "../segment/record.js";
import { AssertionError } from "../util/assert.js";
import type { SimClock } from "./clock.js";
import type { SimCores } from "./cores.js";
import type { Invariants } from "./invariants.js";
import type { ClientOp, SimActor, SimBus, SimMessage } from "./sim_bus.js";
import type { Trace } from "./trace.js";

/** How often the master's timer runs (master.ts: min(100, orphanEffectsFlushMs)). */
export const MASTER_TICK_MS = 20;

type MasterState = "down" | "recovering" | "rebuilding" | "writing";

interface PendingWrite {
  client: string;
  id: number;
  txid: number;
  payload: Uint8Array;
  reply: unknown;
  ok: boolean;
}

interface QueuedWrite {
  client: string;
  id: number;
  op: ClientOp;
  deadlineMs: number;
}

/** Applies one client write to the model Redis: its reply and the effects Redis would propagate. */
export function executeOp(redis: Map<string, string>, op: ClientOp): { ok: boolean; reply: unknown; effects: string[][] } {
  switch (op.op) {
    case "SET":
      redis.set(op.key, op.value);
      return { ok: true, reply: "OK", effects: [["SET", op.key, op.value]] };
    case "INCR": {
      const current = redis.get(op.key) ?? "0";
      if (!/^-?\d{1,15}$/.test(current)) return { ok: false, reply: "ERR value is not an integer or out of range", effects: [] };
      const next = String(Number(current) + 1);
      redis.set(op.key, next);
      return { ok: true, reply: Number(next), effects: [["INCR", op.key]] };
    }
    case "DEL": {
      const existed = redis.delete(op.key);
      return { ok: true, reply: existed ? 1 : 0, effects: existed ? [["DEL", op.key]] : [] };
    }
  }
}

/** Replays journaled effects into the model Redis (the master's rebuild, a replica's apply). */
export function applyEffects(redis: Map<string, string>, payload: Uint8Array): void {
  for (const effect of decodeRecordPayload(payload).effects) {
    const [name, key, value] = effect.map((a) => Buffer.from(a).toString());
    if (name === "SET") redis.set(key, value);
    else if (name === "DEL") redis.delete(key);
    else if (name === "INCR") redis.set(key, String(Number(redis.get(key) ?? "0") + 1));
    else throw new AssertionError(`unknown effect ${name}`);
  }
}

export class SimMaster implements SimActor {
  up = false;
  private state: MasterState = "down";
  private incarnation = 0;
  private attempts = 0;
  private readonly rpc = new Map<number, (reply: JournalReply) => void>();
  private recovery: RecoveryCore | null = null;
  core: WriterCore | null = null;
  private redis = new Map<string, string>();
  private byTxid: PendingWrite[] = [];
  private queued: QueuedWrite[] = [];
  /** Records journaled by the current core, by txid, until committed. */
  private journaled = new Map<number, Uint8Array>();
  private flushScheduled = false;
  private watch: NodeWatch;
  /** Unanswered batches per node incarnation (`node#generation`), as master.ts counts them. */
  private readonly nodeInflight = new Map<string, number>();
  /** Bumped when a node rejoins: an answer to a batch sent before (a late timeout) is stale. */
  private readonly nodeGeneration = new Map<string, number>();
  /** The catch-ups under way, by journal node (master.ts: NodeRestorer.inProgress). */
  private readonly catchUps = new Map<string, RestorerCore>();
  private lastCatchUpMs = 0;
  private clusterId = "";
  acks = 0;
  /** Journal nodes the restorer brought back (for the run's stats). */
  rejoins = 0;
  private firstCommitOf: WriterCore | null = null;
  /** The nemesis's hook: a writer's first commit (a crash right after it is a schedule worth trying often). */
  onFirstCommit: () => void = () => {};
  /** The nemesis's hook: a writer starts serving (its new segment is open and empty everywhere it started). */
  onWriterStart: (inSync: readonly string[]) => void = () => {};
  /**
   * The nemesis's hook on a recovery's copy of the chosen segment (its reads and recoveryAppends): "request", the
   * request is lost; "reply", the node runs it but its answer is lost; null, delivered. Either way a lost one times out.
   */
  recoveryCopyFault: (req: JournalRequest) => "request" | "reply" | null = () => null;

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly clock: SimClock,
    private readonly bus: SimBus,
    private readonly trace: Trace,
    private readonly cores: SimCores,
    private readonly invariants: Invariants,
    private readonly requestIds: { next(): number },
  ) {
    this.watch = new NodeWatch(config);
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
    this.watch = new NodeWatch(this.config);
    this.trace.add(this.id, "start");
    const tick = (): void => {
      if (this.incarnation !== generation) return;
      this.onTimer();
      this.clock.after(MASTER_TICK_MS, tick);
    };
    this.clock.after(MASTER_TICK_MS, tick);
    this.recover();
  }

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.incarnation++;
    this.trace.add(this.id, `crash (${this.state}, ${this.byTxid.length} writes unanswered)`);
    this.state = "down";
    this.rpc.clear();
    this.recovery = null;
    this.core = null;
    this.redis = new Map();
    this.byTxid = [];
    this.queued = [];
    this.journaled.clear();
    this.nodeInflight.clear();
    this.nodeGeneration.clear();
    this.catchUps.clear();
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
        this.watch.heard(from, this.clock.nowMs);
        return;
      case "write":
        this.onWrite(from, msg.id, msg.op);
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
      this.retryRecovery();
      return;
    }
    for (const note of out.notes) this.trace.add(this.id, `${note.message} ${JSON.stringify(note.fields)}`);
    if (out.done !== null) {
      this.recovery = null;
      this.invariants.writerEstablished(out.done.epoch, this.writer, out.done.endTxid);
      this.rebuild(out.done);
      return;
    }
    for (const r of out.send) {
      const copying = r.req.type === "recoveryAppend" || (r.req.type === "read" && r.req.uncommitted);
      const lost = copying ? this.recoveryCopyFault(r.req) : null;
      if (lost !== null) this.trace.add(this.id, `recovery copy fault: ${r.req.type} to ${r.node}, ${lost} lost`);
      this.call(r.node, r.req, r.timeoutMs, (reply) => this.stepRecovery(core, () => core.onReply(r.id, reply)), lost);
    }
  }

  private retryRecovery(): void {
    this.recovery = null;
    this.state = "recovering";
    const generation = this.incarnation;
    this.clock.after(this.config.writerRetryMs, () => {
      if (this.incarnation === generation && this.state === "recovering" && this.recovery === null) this.recover();
    });
  }

  /** Replays the recovered log into a fresh model Redis, reading from the in-step nodes in turn (master.ts rebuild). */
  private rebuild(start: WriterStart): void {
    this.state = "rebuilding";
    this.redis = new Map();
    let from = 1;
    let sourceIndex = 0;
    let misses = 0;
    const generation = this.incarnation;
    const next = (): void => {
      if (this.incarnation !== generation || this.state !== "rebuilding") return;
      if (from > start.endTxid) return this.becomeWriter(start);
      const node = start.inSync[sourceIndex % start.inSync.length];
      const req: JournalRequest = { type: "read", fromTxid: from, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted: true };
      this.call(node, req, this.config.journalRequestTimeoutMs, (reply) => {
        if (this.incarnation !== generation || this.state !== "rebuilding") return;
        const range = reply.ok && "read" in reply && reply.read.count > 0 ? recordRange(reply.read.records, from, start.endTxid) : null;
        if (range === null) {
          if (reply.ok && "read" in reply && reply.read.count > 0) this.invariants.corruptReadRefused();
          sourceIndex++;
          if (++misses >= start.inSync.length * 3) {
            this.trace.add(this.id, `rebuild: no journal node serves txid ${from}`);
            this.retryRecovery();
            return;
          }
          return next();
        }
        misses = 0;
        for (const rec of range.records) {
          this.invariants.recovered(this.writer, rec.txid, rec.epoch, rec.payload);
          applyEffects(this.redis, rec.payload);
          from = rec.txid + 1;
        }
        next();
      });
    };
    next();
  }

  private becomeWriter(start: WriterStart): void {
    this.core = this.cores.writerCore(start.epoch, start.endTxid + 1, this.config.journalNodes, start.inSync, this.config);
    this.clusterId = start.clusterId;
    this.journaled.clear();
    this.nodeInflight.clear();
    for (const node of start.inSync) this.watch.heard(node, this.clock.nowMs);
    this.state = "writing";
    this.trace.add(this.id, `serving writes: epoch ${start.epoch}, segment ${start.endTxid + 1}, in step ${start.inSync.join(",")} (${start.decision})`);
    this.onWriterStart(start.inSync);
    this.admit();
  }

  // ---- client writes ----

  private onWrite(client: string, id: number, op: ClientOp): void {
    if (this.queued.length >= this.config.writesQueuedMax) {
      this.respond(client, id, errorReply(ErrorCode.OVERLOADED, `${this.queued.length} writes already wait`));
      return;
    }
    this.queued.push({ client, id, op, deadlineMs: this.clock.nowMs + this.config.quorumTimeoutMs });
    this.admit();
  }

  private admit(): void {
    while (this.queued.length > 0 && this.state === "writing" && this.core !== null && !this.core.full && this.byTxid.length < this.config.writesInflightMax) {
      const w = this.queued.shift()!;
      const result = executeOp(this.redis, w.op);
      const payload = encodeEffects(result.effects.map((e) => e.map((a) => Buffer.from(a))));
      const txid = this.core.append(payload);
      this.journaled.set(txid, payload);
      this.byTxid.push({ client: w.client, id: w.id, txid, payload, reply: result.reply, ok: result.ok });
    }
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.core === null) return;
    this.flushScheduled = true;
    const generation = this.incarnation;
    this.clock.after(0, () => {
      this.flushScheduled = false;
      if (this.incarnation === generation && this.core !== null) this.handle(this.core.tick(this.clock.nowMs));
    });
  }

  private onTimer(): void {
    const now = this.clock.nowMs;
    while (this.queued.length > 0 && this.queued[0].deadlineMs < now) {
      const w = this.queued.shift()!;
      this.respond(w.client, w.id, errorReply(this.state === "writing" ? ErrorCode.OVERLOADED : ErrorCode.NO_QUORUM, "write waited too long"));
    }
    if (this.state !== "writing" || this.core === null) return;
    this.handle(this.core.tick(now, true));
    for (const node of this.core?.inSyncNodes ?? []) {
      const silentMs = this.watch.silentMs(node, now);
      if (silentMs > this.config.journalHeartbeatTimeoutMs && this.core !== null) {
        this.handle(this.core.onReply(node, -1, { ok: false, code: ErrorCode.TIMEOUT, message: `no heartbeat for ${silentMs} ms` }, now));
      }
    }
    if (this.core !== null && now - this.lastCatchUpMs >= this.config.catchUpIntervalMs) {
      this.lastCatchUpMs = now;
      const core = this.core;
      for (const node of this.config.journalNodes) if (!core.isInSync(node)) this.startCatchUp(node, core);
    }
  }

  // ---- bringing journal nodes back (master.ts: NodeRestorer) ----

  /** Starts catching `node` up for `core` unless one runs already, or the node is silent. */
  private startCatchUp(node: string, core: WriterCore): void {
    if (this.catchUps.has(node) || !this.watch.restorable(node, this.clock.nowMs)) return;
    const restorer = this.cores.restorerCore(node, core, this.clusterId, this.config);
    this.catchUps.set(node, restorer);
    this.stepCatchUp(restorer, core, () => restorer.start());
  }

  private stepCatchUp(restorer: RestorerCore, core: WriterCore, run: () => RestorerOutput): void {
    if (this.catchUps.get(restorer.node) !== restorer) return; // the master crashed meanwhile
    if (this.core !== core) {
      this.catchUps.delete(restorer.node);
      return;
    }
    const out = run();
    const node = restorer.node;
    for (const note of out.notes) this.trace.add(this.id, `${note.message} ${JSON.stringify(note.fields)}`);
    if (out.catchingUpFrom !== null) this.trace.add(this.id, `catching up ${node} from ${out.catchingUpFrom}`);
    if (out.end !== null) {
      this.catchUps.delete(node);
      if (out.end.kind === "gaveUp") {
        this.trace.add(this.id, `catch-up of ${node} stopped: ${out.end.reason}`);
        return;
      }
      this.nodeGeneration.set(node, (this.nodeGeneration.get(node) ?? 0) + 1);
      this.rejoins++;
      this.trace.add(this.id, `${node} rejoins at ${out.end.lastTxid} (epoch ${core.epoch})`);
      this.handle(core.rejoin(node, out.end.lastTxid));
      return;
    }
    for (const r of out.send) this.call(r.node, r.req, r.timeoutMs, (reply) => this.stepCatchUp(restorer, core, () => restorer.onReply(r.id, reply)));
    if (out.ensureSnapshot) this.stepCatchUp(restorer, core, () => restorer.onSnapshotEnsured(true));
  }

  private handle(out: WriterOutput): void {
    if (out.failure !== null) return this.failWriter(out.failure);
    const core = this.core;
    // A node refused at send (too many batches unanswered) can fail the writer: the rest is not sent (seed 6451).
    for (const { batch, nodes } of out.send) for (const node of nodes) if (this.core === core) this.sendBatch(node, batch);
    if (this.core !== core) return;
    if (out.committedTxid !== null) this.onCommitted(out.committedTxid);
  }

  private sendBatch(node: string, batch: Batch): void {
    const core = this.core!;
    const generation = this.nodeGeneration.get(node) ?? 0;
    const key = `${node}#${generation}`;
    const inflight = this.nodeInflight.get(key) ?? 0;
    if (inflight >= this.config.journalBatchesInflightMax) {
      this.handle(core.onReply(node, batch.id, { ok: false, code: ErrorCode.OUT_OF_SYNC, message: `${inflight} batches unanswered` }, this.clock.nowMs));
      return;
    }
    this.nodeInflight.set(key, inflight + 1);
    const req: JournalRequest = { type: "journal", epoch: core.epoch, segmentTxid: batch.segmentTxid, firstTxid: batch.firstTxid, count: batch.count, records: batch.records, committedTxid: batch.committedTxid };
    this.call(node, req, this.config.quorumTimeoutMs, (reply) => {
      if (this.core !== core) return; // an answer to an earlier writer
      const left = this.nodeInflight.get(key) ?? 1;
      if (left > 1) this.nodeInflight.set(key, left - 1);
      else this.nodeInflight.delete(key);
      if ((this.nodeGeneration.get(node) ?? 0) !== generation) return; // sent before the node rejoined
      this.handle(core.onReply(node, batch.id, reply.ok ? { ok: true } : reply, this.clock.nowMs));
    });
  }

  private onCommitted(committed: number): void {
    const core = this.core!;
    const first = core.committedTxid === committed && this.firstCommitOf !== core;
    this.firstCommitOf = core;
    this.invariants.writerCommitted(core.epoch, this.writer, committed);
    this.trace.add(this.id, `committed ${committed} (epoch ${core.epoch})`);
    for (const [txid, payload] of this.journaled) {
      if (txid > committed) break;
      this.invariants.learnCommitted(txid, core.epoch, payload, `${this.writer}'s commit`);
      this.journaled.delete(txid);
    }
    while (this.byTxid.length > 0 && this.byTxid[0].txid <= committed) {
      const p = this.byTxid.shift()!;
      if (p.ok) {
        this.invariants.acked(p.txid, core.epoch, p.payload);
        this.acks++;
        this.respond(p.client, p.id, { ok: true, txid: p.txid, reply: p.reply });
      } else {
        this.respond(p.client, p.id, errorReply(ErrorCode.REDIS_ERROR, String(p.reply)));
      }
    }
    this.admit();
    if (first) this.onFirstCommit();
  }

  /** Nothing more is acknowledged under this epoch: fail what is unanswered and recover as a new writer. */
  private failWriter(reason: string): void {
    if (this.state !== "writing") return;
    this.trace.add(this.id, `writer failed (epoch ${this.core?.epoch}): ${reason}`);
    for (const p of this.byTxid) this.respond(p.client, p.id, errorReply(ErrorCode.NO_QUORUM, `outcome unknown: ${reason}`));
    this.byTxid = [];
    this.journaled.clear();
    this.core = null;
    this.redis = new Map();
    this.recover();
  }

  private respond(client: string, id: number, reply: WriteReply): void {
    this.bus.send(this.id, client, { kind: "writeReply", id, reply });
  }
}

/**
 * The journal node actor: the JournalCore behind NATS, over a SegmentStore. Requests are handled one at a time,
 * in arrival order (the core's steps and their disk operations never interleave); a reply leaves only once the
 * step's disk operations are durable.
 */
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { INCARNATION } from "../actor/incarnation.js";
import { decode, encode } from "../protocol/codec.js";
import { EventPublisher } from "../actor/events.js";
import { startPresence, type Presence } from "../actor/presence.js";
import type { Config } from "../config/config.js";
import { ActorMetrics, type JournalMetrics } from "../metrics/actor_metrics.js";
import { serve } from "../nats/bus.js";
import { ErrorCode, QjmError, toErrorReply } from "../protocol/errors.js";
import { parseBatchFanout, parseCommitHint, parseJournalRequest, parseSnapshotRequest, type ActorStatus, type CommitHint, type JournalRequest, type SnapshotRequest } from "../protocol/messages.js";
import { SnapshotStore } from "../snapshot/snapshot_store.js";
import type { DiskOp } from "./journal_core.js";
import { JOURNAL_READ_TYPES, SNAPSHOT_UPLOAD_TYPES, subjects } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";
import { JournalCore } from "./journal_core.js";
import { SegmentStore } from "./segment_store.js";
import { DiskFaults, type DiskErrno, type DiskOperation } from "./disk_faults.js";
import { SerialQueue } from "../util/serial_queue.js";
import { traceNow } from "../util/trace_clock.js";

export class JournalNode {
  private core!: JournalCore;
  private store: SegmentStore;
  /** Core steps and their disk operations never interleave. */
  private readonly queue = new SerialQueue();
  private queued = 0;
  private presence: Presence | null = null;
  private stopped = false;
  private readonly faults = new DiskFaults();
  /** The last disk failure, until a disk operation succeeds again. */
  private diskError: string | null = null;
  private readonly snapshots: SnapshotStore;
  private readonly events: EventPublisher;
  /** Snapshot requests run one at a time too, apart from the editlog's queue. */
  private readonly snapshotQueue = new SerialQueue();
  private compactionTimer: NodeJS.Timeout | null = null;
  private compacting = false;
  private readonly m: JournalMetrics;
  private readonly onFsync: (seconds: number) => void;
  /** Where this node answers batch fan-outs. */
  private readonly ackSubject: string;

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly dir: string,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly metrics: ActorMetrics = ActorMetrics.detached(config.cluster, id, "journal"),
  ) {
    this.m = metrics.journal;
    const fsync = this.m.fsync;
    this.onFsync = (seconds) => fsync.observe(seconds);
    this.store = new SegmentStore(dir, this.faults, this.onFsync);
    this.snapshots = new SnapshotStore(dir, config);
    this.events = new EventPublisher(nc, config.cluster, `journal.${id}`, log);
    this.ackSubject = subjects(config.cluster).batchAck(id);
  }

  async start(): Promise<void> {
    await this.load();
    await this.snapshots.open();
    this.serveSubjects();
    this.compactionTimer = setInterval(() => void this.compact(), this.config.compactionCheckMs);
    if (this.config.faultInjection === 1) {
      // Tests only: {operation: "write" | "fsync", errno: "ENOSPC" | "EIO" | null}.
      serve(this.nc, subjects(this.config.cluster).journalFault(this.id), this.log, (body) => {
        const { operation, errno } = body as { operation: DiskOperation; errno: DiskErrno | null };
        if (operation !== "write" && operation !== "fsync") throw new QjmError(ErrorCode.BAD_REQUEST, "operation must be write or fsync");
        if (errno !== null && errno !== "ENOSPC" && errno !== "EIO") throw new QjmError(ErrorCode.BAD_REQUEST, "errno must be ENOSPC, EIO or null");
        this.faults.set(operation, errno);
        this.log.warn({ operation, errno }, "disk fault injection");
        return { ok: true, faults: this.faults.active };
      });
    }
    this.presence = startPresence(this.nc, this.config.cluster, this.config.heartbeatIntervalMs, () => this.status(), this.log);
  }

  /**
   * Each subject answers only the request types routed to it (subjects.ts): nats-server lets a replica send on the
   * read and upload subjects, never on the writer's, and a writer request sent on a read subject must not get through.
   */
  /**
   * Bodies and replies larger than one NATS message (a batch or read reply holding a large record) travel in
   * fragments, reassembled within the config's bus limits.
   */
  private serveSubjects(): void {
    const s = subjects(this.config.cluster);
    const limits = { limits: this.config };
    const only = (subject: string, allowed: (type: string) => boolean, body: unknown): void => {
      const type = (body as { type?: unknown } | null)?.type;
      if (typeof type === "string" && !allowed(type)) throw new QjmError(ErrorCode.BAD_REQUEST, `a ${type} request is not served on ${subject}`);
    };
    const writer = (t: string): boolean => !JOURNAL_READ_TYPES.has(t) && !SNAPSHOT_UPLOAD_TYPES.has(t);
    serve(this.nc, s.journal(this.id), this.log, (body) => (only(s.journal(this.id), writer, body), this.handle(parseJournalRequest(body))), limits);
    serve(this.nc, s.journalRead(this.id), this.log, (body) => (only(s.journalRead(this.id), (t) => JOURNAL_READ_TYPES.has(t), body), this.handle(parseJournalRequest(body))), limits);
    serve(this.nc, s.snapshot(this.id), this.log, (body) => (only(s.snapshot(this.id), (t) => !SNAPSHOT_UPLOAD_TYPES.has(t), body), this.onSnapshot(parseSnapshotRequest(body))), limits);
    serve(this.nc, s.snapshotUpload(this.id), this.log, (body) => {
      only(s.snapshotUpload(this.id), (t) => SNAPSHOT_UPLOAD_TYPES.has(t), body);
      // snapshotDurable completes an upload but is a journal request: the editlog's queue orders it with compaction.
      if ((body as { type?: unknown }).type === "snapshotDurable") return this.handle(parseJournalRequest(body));
      return this.onSnapshot(parseSnapshotRequest(body));
    }, limits);
    this.nc.subscribe(s.committed, { callback: (err, msg) => void (err === null && this.onCommitHint(msg.data)) });
    this.nc.subscribe(s.batch, { callback: (err, msg) => void (err === null && this.onFanout(msg)) });
  }

  /**
   * A batch the master fanned out to several nodes (subjects.batch): handled as the same `journal` request sent to this
   * node alone would be — in the queue's arrival order, answered once durable — if this node is named; the answer goes
   * on this node's own batchAck subject with the fan-out's tag. Bad input is logged and dropped (no one to answer).
   */
  private onFanout(msg: Msg): void {
    let req: JournalRequest;
    let re: string;
    try {
      const { to, re: tag, ...batch } = parseBatchFanout(decode(msg.data));
      if (!to.includes(this.id)) return;
      req = batch;
      re = tag;
    } catch (err) {
      this.log.warn({ code: err instanceof QjmError ? err.code : ErrorCode.BAD_REQUEST, err: (err as Error).message }, "ignored a malformed batch fan-out");
      return;
    }
    const answer = (reply: unknown): void => {
      try {
        this.nc.publish(this.ackSubject, encode({ ...(reply as object), re }));
      } catch (e) {
        this.log.warn({ err: e }, "could not answer a batch fan-out");
      }
    };
    let done: Promise<unknown>;
    try {
      done = this.handle(req);
    } catch (e) {
      return answer(toErrorReply(e));
    }
    done.then(answer, (e: unknown) => {
      if (!(e instanceof QjmError)) this.log.error({ err: e }, "batch fan-out failed");
      answer(toErrorReply(e));
    });
  }

  /**
   * The master's commit hint: the commit index, learnt in the request queue's order (after the batches before it, so
   * never past what a step already counted), without a reply. Bad input is logged and dropped; a full queue drops it
   * too (the next batch carries the index).
   */
  private onCommitHint(data: Uint8Array): void {
    let hint: CommitHint;
    try {
      hint = parseCommitHint(decode(data));
    } catch (err) {
      this.log.warn({ code: err instanceof QjmError ? err.code : ErrorCode.BAD_REQUEST, err: (err as Error).message }, "ignored a malformed commit hint");
      return;
    }
    if (this.stopped || this.queued >= this.config.journalQueueMax) return;
    this.queued++;
    void this.queue
      .run(async () => void this.core.learnCommit(hint))
      .catch((err: Error) => this.log.error({ err }, "learning a commit hint failed"))
      .finally(() => this.queued--);
  }

  private async load(): Promise<void> {
    const loaded = await this.store.open();
    const events = this.events;
    if (loaded.truncated) {
      if (loaded.truncated.rot) this.log.error(loaded.truncated, "a whole record at the tail of the in-progress segment failed its check (rot): cut, and restoring until the writer copies the log back");
      else this.log.warn(loaded.truncated, "truncated a torn tail of the in-progress segment");
      events.publish({ type: "tornTailTruncated", node: this.id, ...loaded.truncated });
    }
    if (this.store.mergeLeftovers > 0) this.log.warn({ files: this.store.mergeLeftovers }, "deleted the inputs of an interrupted merge");
    if (this.store.mergeTmpsDropped > 0) this.log.warn({ files: this.store.mergeTmpsDropped }, "dropped the file of an interrupted merge");
    if (this.config.faultInjection === 1) this.store.stepPauseMs = this.config.compactionStepPauseMs;
    if (loaded.fault) {
      this.log.error({ fault: loaded.fault }, "refusing service: a segment is corrupt");
      events.publish({ type: "segmentCorrupt", node: this.id, fault: loaded.fault });
    }
    this.core = new JournalCore(this.id, loaded);
    const s = this.core.state();
    this.log.info({ firstTxid: s.firstTxid, lastTxid: s.lastTxid, promisedEpoch: s.promisedEpoch, segments: loaded.segments.length }, "journal loaded");
  }

  status(): ActorStatus {
    const s = this.core.state();
    return this.metrics.decorate({
      role: "journal",
      id: this.id,
      pid: process.pid,
      incarnation: INCARNATION,
      epoch: s.promisedEpoch,
      lastTxid: s.lastTxid,
      committedTxid: s.committedTxid,
      appliedTxid: 0,
      health: s.fault !== null ? "corrupt" : this.diskError !== null ? "disk-error" : s.clusterId === null ? "unformatted" : s.restoring ? "restoring" : "ok",
      redisUrl: null,
      details: {
        clusterId: s.clusterId,
        diskError: this.diskError,
        writerEpoch: s.writerEpoch,
        firstTxid: s.firstTxid,
        lastSegment: s.lastSegment,
        fault: s.fault,
        queued: this.queued,
        segments: this.store.sizes().size,
        snapshots: this.snapshots.list().map((x) => x.txid),
        durableSnapshotTxid: this.core.durableSnapshotTxid,
      },
    });
  }

  /** Serializes requests: each waits for the previous one's disk work. */
  private handle(req: JournalRequest): Promise<unknown> {
    if (this.stopped) throw new QjmError(ErrorCode.INTERNAL, "journal node is stopping");
    if (this.queued >= this.config.journalQueueMax) throw new QjmError(ErrorCode.OVERLOADED, `${this.queued} requests already wait for the disk`);
    // A traced batch (traceSample): its reply says when it came, when it was durable and when it left.
    const recv = req.type === "journal" && req.trace === true ? traceNow() : 0;
    this.queued++;
    return this.queue.run(() => this.execute(req, recv)).finally(() => this.queued--);
  }

  /** Runs a step's disk operations in order; on a failure, reloads the core and the store from what is really on disk. */
  private async applyOps(ops: DiskOp[], what: string): Promise<void> {
    try {
      for (const op of ops) await this.store.apply(op);
      if (ops.length > 0) this.diskError = null;
    } catch (err) {
      this.diskError = (err as Error).message;
      // The core already counts what the disk refused: reload both from what is really on disk.
      this.log.error({ err, request: what }, "disk operation failed");
      await this.store.close();
      this.store = new SegmentStore(this.dir, this.faults, this.onFsync);
      await this.load();
      throw new QjmError(ErrorCode.DISK_ERROR, `disk operation failed: ${(err as Error).message}`);
    }
  }

  private async execute(req: JournalRequest, tracedRecv = 0): Promise<unknown> {
    const started = tracedRecv > 0 ? traceNow() : 0;
    const result = this.core.step(req, req.type === "snapshotDurable" ? { snapshots: this.snapshots.list().map((s) => s.txid) } : {});
    await this.applyOps(result.ops, req.type);
    if (tracedRecv > 0 && !("error" in result.reply)) return { ok: true, ...result.reply, trace: { recv: tracedRecv, started, durable: traceNow(), replied: traceNow() } };
    const reply = result.reply;
    if ("error" in reply) throw reply.error;
    if ("manifest" in reply) return { ok: true, manifest: reply.manifest, state: reply.state };
    if ("read" in reply) {
      const r = req as Extract<JournalRequest, { type: "read" }>;
      const bytesMax = Math.min(r.bytesMax, this.config.readBytesMax);
      const recordsMax = Math.min(r.recordsMax, this.config.readRecordsMax);
      const { records, count } = await this.store.read(reply.read.fromTxid, reply.read.toTxid, bytesMax, recordsMax);
      const s = this.core.state();
      return { ok: true, read: { records, count, lastTxid: s.lastTxid, committedTxid: s.committedTxid } };
    }
    return { ok: true, ...reply };
  }

  private onSnapshot(req: SnapshotRequest): Promise<unknown> {
    if (this.stopped) throw new QjmError(ErrorCode.INTERNAL, "journal node is stopping");
    return this.snapshotQueue.run(async () => {
      switch (req.type) {
        case "snapshotBegin": {
          const clusterId = this.core.state().clusterId;
          if (clusterId === null || clusterId !== req.clusterId) throw new QjmError(ErrorCode.CLUSTER_MISMATCH, `this journal node belongs to cluster ${clusterId}`);
          return { ok: true, ...(await this.snapshots.begin({ txid: req.txid, bytes: req.bytes, sha256: req.sha256 }, Date.now())) };
        }
        case "snapshotChunk":
          return { ok: true, ...(await this.snapshots.chunk(req.txid, req.offset, req.data, Date.now())) };
        case "snapshotEnd": {
          const result = await this.snapshots.end(req.txid);
          this.m.snapshotsStored.inc();
          this.log.info({ txid: req.txid }, "snapshot stored");
          return { ok: true, ...result };
        }
        case "snapshotList":
          return { ok: true, snapshots: this.snapshots.list(), durableTxid: this.core.durableSnapshotTxid };
        case "snapshotRead":
          return { ok: true, data: await this.snapshots.read(req.txid, req.offset, req.length) };
      }
    });
  }

  /**
   * Claim 6: once the editlog passes a count or size threshold, purge what the durable snapshot covers and merge
   * small segments. Purges and the merge's switch run in the request queue; writing a merged file runs beside it
   * (finalized segments never change), so writers are not held up by a large copy.
   */
  private async compact(): Promise<void> {
    if (this.compacting || this.stopped) return;
    this.compacting = true;
    try {
      await this.snapshots.expireIdle(Date.now());
      const held = this.snapshots.list().map((s) => s.txid);
      const plan = await this.queue.run(async () => this.core.compactionPlan(this.store.sizes(), held, this.config));
      let purged = 0;
      let merged = 0;
      if (plan.purge.length > 0) {
        await this.queue.run(async () => {
          const ops = this.core.purge(plan.purge, this.config);
          await this.applyOps(ops, "purge");
          purged = ops.length;
        });
      }
      for (const m of plan.merges) {
        if (this.stopped || !(await this.store.prepareMerge(m.parts, this.config.readBytesMax))) continue;
        await this.queue.run(async () => {
          const ops = this.core.merge(m.parts);
          if (ops === null) return await this.store.discardMerge(m.startTxid, m.endTxid);
          await this.applyOps(ops, "merge");
          merged += m.parts.length;
        });
      }
      const dropped = plan.deleteSnapshots;
      await this.snapshotQueue.run(async () => {
        for (const txid of dropped) await this.snapshots.delete(txid);
      });
      this.m.segmentsPurged.inc(purged);
      this.m.segmentsMerged.inc(merged);
      if (purged + merged + dropped.length > 0) {
        const firstTxid = this.core.firstTxid;
        this.events.publish({ type: "compacted", node: this.id, purgedSegments: purged, mergedSegments: merged, purgedSnapshots: dropped.length, firstTxid });
      }
    } catch (err) {
      this.log.error({ err }, "compaction failed; the log is as it was before the failed step");
    } finally {
      this.compacting = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.presence?.stop();
    if (this.compactionTimer) clearInterval(this.compactionTimer);
    await this.queue.idle();
    await this.snapshotQueue.idle();
    await this.store.close();
    await this.snapshots.close();
  }
}

/**
 * The journal node actor: the JournalCore behind NATS, over a SegmentStore. Requests are handled one at a time,
 * in arrival order (the core's steps and their disk operations never interleave); a reply leaves only once the
 * step's disk operations are durable.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { EventPublisher } from "../actor/events.js";
import { startPresence, type Presence } from "../actor/presence.js";
import type { Config } from "../config/config.js";
import { serve } from "../nats/bus.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { parseJournalRequest, type ActorStatus, type JournalRequest } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";
import { JournalCore } from "./journal_core.js";
import { SegmentStore } from "./segment_store.js";
import { DiskFaults, type DiskErrno, type DiskOperation } from "./disk_faults.js";

export class JournalNode {
  private core!: JournalCore;
  private store: SegmentStore;
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private presence: Presence | null = null;
  private stopped = false;
  private readonly faults = new DiskFaults();
  /** The last disk failure, until a disk operation succeeds again. */
  private diskError: string | null = null;

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly dir: string,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {
    this.store = new SegmentStore(dir, this.faults);
  }

  async start(): Promise<void> {
    await this.load();
    serve(this.nc, subjects(this.config.cluster).journal(this.id), this.log, (body) => this.handle(parseJournalRequest(body)));
    if (this.config.faultInjection === 1) {
      // Tests only: {operation: "write" | "fsync", errno: "ENOSPC" | "EIO" | null}.
      serve(this.nc, subjects(this.config.cluster).journal(this.id) + ".fault", this.log, (body) => {
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

  private async load(): Promise<void> {
    const loaded = await this.store.open();
    const events = new EventPublisher(this.nc, this.config.cluster, `journal.${this.id}`, this.log);
    if (loaded.truncated) {
      this.log.warn(loaded.truncated, "truncated a torn tail of the in-progress segment");
      events.publish({ type: "tornTailTruncated", node: this.id, ...loaded.truncated });
    }
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
    return {
      role: "journal",
      id: this.id,
      pid: process.pid,
      epoch: s.promisedEpoch,
      lastTxid: s.lastTxid,
      committedTxid: s.committedTxid,
      appliedTxid: 0,
      health: s.fault !== null ? "corrupt" : this.diskError !== null ? "disk-error" : s.clusterId === null ? "unformatted" : s.restoring ? "restoring" : "ok",
      redisUrl: null,
      details: { clusterId: s.clusterId, diskError: this.diskError, writerEpoch: s.writerEpoch, firstTxid: s.firstTxid, lastSegment: s.lastSegment, fault: s.fault, queued: this.queued },
    };
  }

  /** Serializes requests: each waits for the previous one's disk work. */
  private handle(req: JournalRequest): Promise<unknown> {
    if (this.stopped) throw new QjmError(ErrorCode.INTERNAL, "journal node is stopping");
    if (this.queued >= this.config.journalQueueMax) throw new QjmError(ErrorCode.OVERLOADED, `${this.queued} requests already wait for the disk`);
    this.queued++;
    const run = this.queue.then(() => this.execute(req));
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run.finally(() => this.queued--);
  }

  private async execute(req: JournalRequest): Promise<unknown> {
    const result = this.core.step(req);
    try {
      for (const op of result.ops) await this.store.apply(op);
      if (result.ops.length > 0) this.diskError = null;
    } catch (err) {
      this.diskError = (err as Error).message;
      // The core already counts what the disk refused: reload both from what is really on disk.
      this.log.error({ err, request: req.type }, "disk operation failed");
      await this.store.close();
      this.store = new SegmentStore(this.dir, this.faults);
      await this.load();
      throw new QjmError(ErrorCode.DISK_ERROR, `disk operation failed: ${(err as Error).message}`);
    }
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

  async stop(): Promise<void> {
    this.stopped = true;
    this.presence?.stop();
    await this.queue;
    await this.store.close();
  }
}

/**
 * The replica actor: tails the journal and replays committed records, in txid order, exactly once, into its own
 * persistent redis-server. Each record's effects and the applied-txid marker go in one MULTI/EXEC, so a restart
 * resumes exactly after the last record Redis kept.
 */
import fsp from "node:fs/promises";
import path from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { EventPublisher } from "../actor/events.js";
import { startSnapshot } from "../redis/rdb_snapshot.js";
import { bootstrapFromSnapshot, type BootstrapProgress } from "../snapshot/bootstrap.js";
import { SnapshotClient } from "../snapshot/snapshot_client.js";
import type { TransferProgress } from "../util/progress.js";
import { Redis } from "ioredis";
import { startPresence, type Presence } from "../actor/presence.js";
import type { Config } from "../config/config.js";
import { JournalClient } from "../master/journal_client.js";
import type { ActorStatus } from "../protocol/messages.js";
import { redisPassword, startRedisServer, type RedisServer } from "../redis/redis_server.js";
import { APPLIED_KEY, applyRecords } from "../redis/apply_records.js";
import type { RecordView } from "../segment/record.js";
import type { Logger } from "../util/log.js";
import { ReplicaCore } from "./replica_core.js";

export { APPLIED_KEY };

export class Replica {
  private redis: RedisServer | null = null;
  private client: Redis | null = null;
  private core: ReplicaCore | null = null;
  private presence: Presence | null = null;
  private running = false;
  private loop: Promise<void> | null = null;
  private lastError: string | null = null;
  private committedSeen = 0;
  private wake: (() => void) | null = null;
  /** Journal nodes that served bad records, reported to the master in heartbeats for a while. */
  private readonly faultyNodes = new Map<string, { reason: string; atMs: number }>();
  private readonly jc: JournalClient;
  private readonly snapshots: SnapshotClient;
  private readonly events: EventPublisher;
  /** The newest snapshot this replica knows a majority holds. */
  private snapshotTxid = 0;
  /** A snapshot being saved and uploaded (one at a time), and when the last one was tried. */
  private snapshotRunning: Promise<void> | null = null;
  private snapshotTriedMs = 0;
  private rateSample = { atMs: 0, applied: 0, perSecond: 0 };
  /** Bootstrap or snapshot upload progress, for status. */
  private progress: (BootstrapProgress | (TransferProgress & { phase: "upload"; snapshotTxid: number })) | null = null;

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly dataDir: string,
    private readonly redisPort: number,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {
    this.jc = new JournalClient(nc, config.cluster, config.journalRequestTimeoutMs);
    this.snapshots = new SnapshotClient(nc, this.jc, config.cluster, config, log);
    this.events = new EventPublisher(nc, config.cluster, `replica.${id}`, log);
  }

  async start(): Promise<void> {
    const password = redisPassword(this.config.dataDir);
    this.redis = await startRedisServer({ port: this.redisPort, dir: this.dataDir + "/redis", persistent: true, startTimeoutMs: this.config.redisStartTimeoutMs, password });
    this.client = new Redis({ port: this.redisPort, host: "127.0.0.1", password, maxRetriesPerRequest: 1, lazyConnect: true });
    this.client.on("error", (err) => this.log.debug({ err }, "redis client error"));
    await this.client.connect();
    const applied = Number((await this.client.get(APPLIED_KEY)) ?? 0);
    this.core = new ReplicaCore(this.config.journalNodes, applied);
    this.log.info({ appliedTxid: applied, redis: this.redis.url }, "replica resumes");
    this.presence = startPresence(this.nc, this.config.cluster, this.config.heartbeatIntervalMs, () => this.status(), this.log);
    this.running = true;
    this.loop = this.tail();
  }

  status(): ActorStatus {
    return {
      role: "replica",
      id: this.id,
      pid: process.pid,
      epoch: 0,
      lastTxid: this.committedSeen,
      committedTxid: this.committedSeen,
      appliedTxid: this.core?.appliedTxid ?? 0,
      health: this.lastError === null ? "ok" : "degraded",
      journalNodeFaults: this.recentFaults(),
      redisUrl: this.redis?.url ?? null,
      details: { lastError: this.lastError, snapshotTxid: this.snapshotTxid, progress: this.progress, catchUp: this.catchUp() },
    };
  }

  /** Records behind the commit index seen, the apply rate since the last look, and the time left at that rate. */
  private catchUp(): { records: number; recordsPerSecond: number; etaMs: number | null } {
    const now = Date.now();
    const applied = this.core?.appliedTxid ?? 0;
    const elapsed = now - this.rateSample.atMs;
    if (elapsed >= 1000) {
      this.rateSample = { atMs: now, applied, perSecond: Math.round(((applied - this.rateSample.applied) * 1000) / elapsed) };
    }
    const records = Math.max(0, this.committedSeen - applied);
    const perSecond = this.rateSample.perSecond;
    return { records, recordsPerSecond: perSecond, etaMs: records === 0 ? 0 : perSecond > 0 ? Math.round((records * 1000) / perSecond) : null };
  }

  /** Tails until stopped; a bug in one round is logged loudly and the round retried, never a silently dead loop. */
  private async tail(): Promise<void> {
    while (this.running) {
      try {
        await this.tailRounds();
      } catch (err) {
        this.lastError = `tailing failed: ${(err as Error).message}`;
        this.log.error({ err }, "tailing failed; resuming from the applied txid Redis holds");
        await this.resync().catch(() => {});
        await this.pause(this.config.replicaPollMs * 10);
      }
    }
  }

  private async tailRounds(): Promise<void> {
    const jc = this.jc;
    let idleRounds = 0;
    while (this.running) {
      const core = this.core!;
      const { node, fromTxid } = core.nextRead();
      const reply = await jc.call(node, { type: "read", fromTxid, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted: false });
      if (!this.running) break;
      const outcome = core.onRead(reply.ok && "read" in reply ? { ok: true, ...reply.read } : reply.ok ? { ok: false, code: "BAD_REQUEST", message: "not a read reply" } : reply);
      if (reply.ok && "read" in reply) this.committedSeen = Math.max(this.committedSeen, reply.read.committedTxid);
      if (outcome.kind === "bootstrap") {
        await this.bootstrap(fromTxid);
        continue;
      }
      if (outcome.kind === "apply") {
        idleRounds = 0;
        this.lastError = null;
        try {
          await this.apply(outcome.records);
          if (this.snapshotDue() && Date.now() - this.snapshotTriedMs >= this.config.journalRequestTimeoutMs) await this.startSnapshot();
        } catch (err) {
          // A Redis failure: the record is not marked applied, so it is retried, never skipped.
          this.lastError = `apply failed: ${(err as Error).message}`;
          this.log.error({ err }, "could not apply records");
          await this.pause(this.config.replicaPollMs * 10);
        }
        continue;
      }
      if (outcome.kind === "reject") {
        this.lastError = `${node}: ${outcome.reason}`;
        if (outcome.faulty) {
          if (!this.faultyNodes.has(node)) this.log.warn({ node, reason: outcome.reason }, "journal node served bad records");
          this.faultyNodes.set(node, { reason: outcome.reason, atMs: Date.now() });
        }
        this.log.debug({ node, reason: outcome.reason }, "read refused; trying another journal node");
      }
      // Every node asked once with nothing new: wait before the next round.
      if (++idleRounds >= core.nodes.length) {
        idleRounds = 0;
        await this.pause(this.config.replicaPollMs);
      }
    }
  }

  /**
   * The journal no longer holds fromTxid (purged below a snapshot): load the newest durable snapshot into Redis,
   * replacing its data set, then tail from the txid the snapshot names inside itself.
   */
  private async bootstrap(fromTxid: number): Promise<void> {
    this.log.warn({ fromTxid }, "the journal purged the next txid: bootstrapping from the newest snapshot");
    const done = await bootstrapFromSnapshot(this.snapshots, this.client!, path.join(this.dataDir, "bootstrap.rdb"), this.config, this.log, (p) => (this.progress = p));
    if (done === null) throw new Error(`txid ${fromTxid} was purged but no journal node has a durable snapshot`);
    await this.resync();
    const applied = this.core!.appliedTxid;
    if (applied !== done.txid) throw new Error(`snapshot ${done.txid} holds applied txid ${applied}`);
    this.snapshotTxid = Math.max(this.snapshotTxid, done.txid);
    this.events.publish({ type: "bootstrapped", actor: `replica.${this.id}`, txid: done.txid, bytes: done.bytes, fromNode: done.node, ms: done.ms, downloadMs: done.downloadMs });
  }

  /** Time for a snapshot: enough applied past the newest durable one, none running, the last try not too recent. */
  private snapshotDue(): boolean {
    const every = this.config.snapshotEveryRecords;
    return every > 0 && this.snapshotRunning === null && this.core!.appliedTxid - this.snapshotTxid >= every;
  }

  /**
   * Forks a BGSAVE while this loop applies nothing (so the applied-txid key inside the RDB names its position), then
   * saves and uploads it in the background. Another replica's newer durable snapshot makes this one unnecessary.
   */
  private async startSnapshot(): Promise<void> {
    this.snapshotTriedMs = Date.now();
    const listed = await this.snapshots.list();
    this.snapshotTxid = Math.max(this.snapshotTxid, listed.durableTxid);
    if (!this.snapshotDue()) return;
    // The cluster id the upload is stamped with: the first journal node that answers knows it.
    let clusterId: string | null = null;
    for (const node of this.config.journalNodes) {
      const r = await this.jc.call(node, { type: "getState" });
      if (r.ok && "state" in r && r.state.clusterId !== null) {
        clusterId = r.state.clusterId;
        break;
      }
    }
    if (clusterId === null) return;
    const file = path.join(this.dataDir, "snapshot.rdb");
    const started = await startSnapshot(this.client!, {
      dir: path.join(this.dataDir, "redis"),
      path: file,
      markerKey: APPLIED_KEY,
      pollMs: 20,
      forkTimeoutMs: this.config.snapshotTimeoutMs,
      saveTimeoutMs: this.config.snapshotTimeoutMs,
    });
    const txid = Number(started.markerValue ?? 0);
    this.snapshotRunning = (async () => {
      const saved = await started.done;
      this.log.info({ txid, bytes: saved.bytes }, "snapshot saved; uploading to the journal nodes");
      const holders = await this.snapshots.upload(saved.path, txid, clusterId, (p) => (this.progress = { phase: "upload", snapshotTxid: txid, ...p }));
      this.snapshotTxid = Math.max(this.snapshotTxid, txid);
      this.events.publish({ type: "snapshotDurable", txid, bytes: saved.bytes, nodes: holders });
    })()
      .catch((err: Error) => this.log.warn({ err: err.message, txid }, "snapshot failed; trying again later"))
      .finally(() => {
        this.snapshotRunning = null;
        this.progress = null;
        void fsp.rm(file, { force: true });
      });
  }

  private recentFaults(): Record<string, string> {
    const now = Date.now();
    for (const [node, f] of this.faultyNodes) if (now - f.atMs > this.config.replicaReportTtlMs) this.faultyNodes.delete(node);
    return Object.fromEntries([...this.faultyNodes].map(([node, f]) => [node, f.reason]));
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async apply(records: RecordView[]): Promise<void> {
    try {
      await applyRecords(this.client!, records, {
        markerKey: APPLIED_KEY,
        applied: (txid) => this.core!.onApplied(txid),
        // An effect that fails here succeeded on the master: the keyspaces differ. Say so loudly.
        onEffectError: (txid, err) => this.log.error({ txid, err }, "an effect failed on the replica"),
      });
    } catch (err) {
      await this.resync();
      throw err;
    }
  }

  /** After a partial failure: believe the marker Redis holds, not our count. */
  private async resync(): Promise<void> {
    const applied = Number((await this.client!.get(APPLIED_KEY).catch(() => null)) ?? this.core!.appliedTxid);
    this.core = new ReplicaCore(this.config.journalNodes, applied);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.snapshotRunning;
    this.presence?.stop();
    this.client?.disconnect();
    await this.redis?.stop();
  }
}

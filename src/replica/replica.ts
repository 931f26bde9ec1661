/**
 * The replica actor: tails the journal and replays committed records, in txid order, exactly once, into its own
 * persistent redis-server. That Redis is for its whole life the replica of an in-process feeder (src/redis/feeder.ts):
 * it never expires keys by its own clock (the journal's DELs do), it is read-only to clients, and it reports by
 * replication offset what ran. Each run's effects and the applied-txid marker go in one MULTI block, so a restart or a
 * dropped link resumes exactly after the last record Redis kept. An effect Redis refuses stops this copy: a fault,
 * reported in status and as an event.
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { INCARNATION } from "../actor/incarnation.js";
import { EventPublisher } from "../actor/events.js";
import { startSnapshot } from "../redis/rdb_snapshot.js";
import { bootstrapFromSnapshot, type BootstrapProgress } from "../snapshot/bootstrap.js";
import { SnapshotClient } from "../snapshot/snapshot_client.js";
import type { TransferProgress } from "../util/progress.js";
import { Redis, type RedisOptions } from "ioredis";
import { startPresence, type Presence } from "../actor/presence.js";
import type { Config } from "../config/config.js";
import { ActorMetrics, type ReplicaMetrics } from "../metrics/actor_metrics.js";
import { JournalClient } from "../master/journal_client.js";
import type { ActorStatus, TraceApplied } from "../protocol/messages.js";
import { encode } from "../protocol/codec.js";
import { subjects } from "../protocol/subjects.js";
import { traceNow } from "../util/trace_clock.js";
import { redisPassword, startRedisServer, type RedisServer } from "../redis/redis_server.js";
import { APPLIED_KEY, ApplyError, applyRecords, readAppliedMarker } from "../redis/apply_records.js";
import { Feeder } from "../redis/feeder.js";
import { CommandTable } from "../redis/command_table.js";
import { decodeRecordPayload, recordRange, type RecordView } from "../segment/record.js";
import { ErrorCode } from "../protocol/errors.js";
import type { DedupeWindow } from "../dedupe/dedupe_window.js";
import { warmFrom, WindowWarmup } from "../dedupe/window_warmup.js";
import { assert } from "../util/assert.js";
import { writeFileDurably } from "../util/durable_file.js";
import type { Logger } from "../util/log.js";
import { FanoutBuffer } from "./fanout_buffer.js";
import { ReplicaFeed } from "./replica_feed.js";
import { ReplicaCore, SnapshotSchedule, type ReadOutcome } from "./replica_core.js";

export { APPLIED_KEY };

/** Reads of the applied marker a release tries before it fails (and the data node restarts): ~1 s at the defaults. */
const RELEASE_MARKER_TRIES = 5;

export class Replica {
  private redis: RedisServer | null = null;
  private client: Redis | null = null;
  private feeder: Feeder | null = null;
  /** Set when an effect failed to apply: this copy stopped (status says why). */
  private fault: string | null = null;
  private core: ReplicaCore | null = null;
  private presence: Presence | null = null;
  private running = false;
  /** Settles (null) once release() or stop() ends tailing: a read in flight is not waited for. */
  private halt!: (value: null) => void;
  private readonly halted = new Promise<null>((resolve) => (this.halt = resolve));
  private loop: Promise<void> | null = null;
  /** stop() began: the redis-server's exit from here on is ours. */
  private stopping = false;
  private loseRedis!: (why: string) => void;
  /**
   * Settles, with why, once the redis-server this replica runs exits unasked (killed, crashed, out of memory): its copy
   * can no longer be applied to or served, so the actor exits and its supervisor starts it afresh, where the Redis
   * reloads its AOF and the replica resumes from the applied marker it holds.
   */
  readonly lost = new Promise<string>((resolve) => (this.loseRedis = resolve));
  private lastError: string | null = null;
  private committedSeen = 0;
  /** The commit index first heard by this incarnation: its door serves reads once it applied that far (read_gate.ts). */
  private catchUpTo: number | null = null;
  private wake: (() => void) | null = null;
  /** The pause under way is the idle one, which a commit hint ends (an error's pause is waited out). */
  private hintWakes = false;
  /** A run's outcome is unknown (or Redis reloaded): the applied marker must be read before anything more is applied. */
  private resyncDue = false;
  /** The master's commit hints (subjects.ts `committed`). */
  private hints: Subscription | null = null;
  /**
   * The master's commit hints and batch fan-out (subjects.ts `batch`: its records kept until committed, no buffer with
   * replicaFanoutBytesMax 0), and where applied records came from (status: how often the fan-out served).
   */
  private feed = new ReplicaFeed(null);
  private batches: Subscription | null = null;
  /** Journal nodes that served bad records, reported to the master in heartbeats for a while. */
  private readonly faultyNodes = new Map<string, { reason: string; atMs: number }>();
  private readonly jc: JournalClient;
  private readonly snapshots: SnapshotClient;
  private readonly events: EventPublisher;
  /** requirepass of this data directory's Redis servers. */
  private readonly password: string;
  /** The newest snapshot this replica knows a majority holds. */
  private snapshotTxid = 0;
  private readonly snapshotSchedule: SnapshotSchedule;
  /** A snapshot being saved and uploaded (one at a time); when one is tried is the schedule's. */
  private snapshotRunning: Promise<void> | null = null;
  private readonly m: ReplicaMetrics;
  /** The next txid the dedupe window must learn before this replica applies anything (null: it knows everything). */
  private windowFrom: number | null = null;
  private rateSample = { atMs: 0, applied: 0, perSecond: 0 };
  /** Bootstrap or snapshot upload progress, for status. */
  /** Loading a snapshot (its Redis replaced): no standby meanwhile, a release would wait for the whole load. */
  private bootstrapping = false;
  private progress: (BootstrapProgress | (TransferProgress & { phase: "upload"; snapshotTxid: number })) | null = null;
  /** The Redis holds the older marker in database 0 (apply_records.ts APPLIED_DB): the next run deletes it. */
  private readonly marker = { legacy: false };
  /** Redis's unexpected_error_replies after our last run (applyRecords' `errors`); null: read it before the next. */
  private readonly applyErrors: { count: number | null } = { count: null };

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly dataDir: string,
    private readonly redisPort: number,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    /** Heartbeats and status of its own (false: a data node publishes them for the role it runs). */
    private readonly presenceOn = true,
    /**
     * A data node's dedupe window (issue #11): fed every committed record applied here, and at start the last
     * `dedupeWindowRecords` records already applied, so that this node answers retries correctly the day it is master.
     */
    private readonly window: DedupeWindow | null = null,
    /** The actor's metrics (a data node's, shared by every replica role it runs). */
    private readonly metrics: ActorMetrics = ActorMetrics.detached(config.cluster, id, "replica"),
  ) {
    this.m = metrics.replica;
    this.jc = new JournalClient(nc, config.cluster, config.journalRequestTimeoutMs);
    this.snapshots = new SnapshotClient(nc, this.jc, config.cluster, config, log);
    this.events = new EventPublisher(nc, config.cluster, `replica.${id}`, log);
    this.password = redisPassword(config.dataDir);
    this.snapshotSchedule = new SnapshotSchedule(config, config.dataNodes.includes(id) ? config.dataNodes.indexOf(id) : config.replicas.indexOf(id));
  }

  async start(): Promise<void> {
    const c = this.config;
    this.feeder = await Feeder.listen({ syncTimeoutMs: c.feederSyncTimeoutMs, loadTimeoutMs: c.snapshotTimeoutMs, stallTimeoutMs: c.journalRequestTimeoutMs * 2, keepaliveMs: c.feederKeepaliveMs });
    // A replica of the feeder from its first moment: a key loaded from the AOF never expires by this Redis's clock.
    const replicaOf = ["--replicaof", "127.0.0.1", String(this.feeder.port), "--replica-read-only", "yes"];
    this.redis = await startRedisServer({ port: this.redisPort, dir: this.dataDir + "/redis", persistent: true, startTimeoutMs: c.redisStartTimeoutMs, password: this.password, extraArgs: replicaOf });
    this.watchRedis(this.redis);
    this.client = new Redis(this.redisOptions());
    this.client.on("error", (err) => this.log.debug({ err }, "redis client error"));
    // A restarted Redis counts its errors from 0 again: the count kept between runs is read anew.
    this.client.on("close", () => (this.applyErrors.count = null));
    await this.client.connect();
    // Keeps the data set the AOF holds: the feeder continues from the Redis's own offset.
    await this.feeder.sync(this.client);
    const applied = await this.readMarker();
    this.core = this.newCore(applied);
    if (this.window !== null) this.windowFrom = warmFrom(applied, this.window.stats.lastTxid, this.config);
    this.fault = readApplyFault(this.dataDir);
    if (this.fault !== null) this.log.error({ fault: this.fault }, "this replica stopped on an apply fault before: it applies nothing until wiped");
    this.log.info({ appliedTxid: applied, redis: this.redis.url }, "replica resumes");
    if (this.presenceOn) this.presence = startPresence(this.nc, this.config.cluster, this.config.heartbeatIntervalMs, () => this.status(), this.log);
    this.running = true;
    const s = subjects(this.config.cluster);
    this.hints = this.nc.subscribe(s.committed, { callback: (err, msg) => void (err === null && this.onHint(msg.data)) });
    if (this.config.replicaFanoutBytesMax > 0) {
      this.feed = new ReplicaFeed(new FanoutBuffer(this.config.replicaFanoutBytesMax));
      this.batches = this.nc.subscribe(s.batch, { callback: (err, msg) => void (err === null && this.onFanout(msg.data)) });
    }
    this.loop = this.tail();
  }

  private newCore(applied: number): ReplicaCore {
    return new ReplicaCore(this.config.journalNodes, applied, { pollMs: this.config.replicaPollMs, backstopMs: this.config.replicaBackstopPollMs });
  }

  /** A commit hint (ReplicaFeed): ends the idle pause if it names a commit not applied yet. Bad input is logged, never acted on. */
  private onHint(data: Uint8Array): void {
    const heard = this.feed.hint(this.core, data);
    if (heard.ignored !== null) return void this.log.warn({ code: heard.ignored.code, err: heard.ignored.message }, "ignored a malformed commit hint");
    if (heard.wake && this.hintWakes) this.wake?.();
  }

  /**
   * A batch the master fanned out to the journal nodes (ReplicaFeed): its records are kept until a commit index of their
   * epoch covers them, and the commit index it carries is heard of. Bad input is counted, logged at the first and every
   * 1000th, and dropped: those txids are read from a journal node.
   */
  private onFanout(data: Uint8Array): void {
    const heard = this.feed.fanout(this.core, data);
    const bad = this.feed.sources.badFanouts;
    if (heard.ignored !== null && bad % 1000 === 1) this.log.warn({ verdict: heard.ignored.message, badFanouts: bad }, "ignored a batch fan-out whose records fail the checks (read from the journal nodes instead)");
    if (heard.wake && this.hintWakes) this.wake?.();
  }

  /**
   * The one place this actor's Redis connection is configured. Never resend a command after a reconnect (class 7), and
   * fail every command in flight when the connection closes: with autoResendUnfulfilledCommands off, ioredis 5 silently
   * drops (never settles) the commands in flight unless maxRetriesPerRequest is 0, which flushes them on every close.
   */
  private redisOptions(): RedisOptions {
    return { port: this.redisPort, host: "127.0.0.1", password: this.password, maxRetriesPerRequest: 0, lazyConnect: true, autoResendUnfulfilledCommands: false };
  }

  status(): ActorStatus {
    // A Redis or tailing failure of this driver's, else what the core's reads alarm of (ReplicaCore.alarm).
    const lastError = this.lastError ?? this.core?.alarm ?? null;
    return this.metrics.decorate({
      role: "replica",
      id: this.id,
      pid: process.pid,
      incarnation: INCARNATION,
      epoch: 0,
      lastTxid: this.committedSeen,
      committedTxid: this.committedSeen,
      appliedTxid: this.core?.appliedTxid ?? 0,
      health: this.fault !== null ? "failed" : lastError === null ? "ok" : "degraded",
      journalNodeFaults: this.recentFaults(),
      redisUrl: this.redis?.url ?? null,
      details: {
        fault: this.fault,
        lastError,
        snapshotTxid: this.snapshotTxid,
        snapshotting: this.snapshotRunning !== null,
        progress: this.progress,
        catchUp: this.catchUp(),
        appliedFrom: { ...this.feed.sources, buffered: this.feed.buffer?.stats ?? null },
      },
    });
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
    while (this.running && this.fault === null) {
      try {
        await this.tailRounds();
      } catch (err) {
        this.lastError = `tailing failed: ${(err as Error).message}`;
        this.log.error({ err }, "tailing failed; resuming from the applied txid Redis holds");
        // Read in the next round, after ensureLinked: never on a link a run whose ACK was lost may still be on.
        this.resyncDue = true;
        await this.pause(this.config.replicaPollMs * 10);
      }
    }
  }

  private async tailRounds(): Promise<void> {
    while (this.running && this.fault === null) {
      await this.ensureLinked();
      if (this.resyncDue) await this.resync();
      if (this.windowFrom !== null) await this.warmWindow();
      const core = this.core!;
      const { node, fromTxid } = core.nextRead();
      const outcome = this.takeBuffered(core) ?? (await this.read(core, node, fromTxid));
      if (outcome === null) break;
      if (outcome.kind === "bootstrap") {
        await this.bootstrap(fromTxid);
        continue;
      }
      if (outcome.kind === "apply") {
        this.lastError = null;
        try {
          await this.apply(outcome.records);
          await this.snapshotIfDue();
        } catch (err) {
          if (err instanceof ApplyError && err.effectFailed) {
            await this.stopOnFault(err);
            break;
          }
          // A Redis failure: the record is not marked applied, so it is retried, never skipped.
          this.lastError = `apply failed: ${(err as Error).message}`;
          this.log.error({ err }, "could not apply records");
          await this.pause(this.config.replicaPollMs * 10);
          continue;
        }
      }
      if (outcome.kind === "reject") {
        if (outcome.faulty) {
          if (!this.faultyNodes.has(node)) this.log.warn({ node, reason: outcome.reason }, "journal node served bad records");
          this.faultyNodes.set(node, { reason: outcome.reason, atMs: Date.now() });
        }
        this.log.debug({ node, reason: outcome.reason }, "read refused; trying another journal node");
      }
      const next = this.core!.next();
      if (next.kind === "pause") await this.idle(next.ms);
    }
  }

  /** The next records from the fan-out, if it holds them committed (ReplicaFeed); null: read them from a node. */
  private takeBuffered(core: ReplicaCore): ReadOutcome | null {
    const taken = this.feed.take(core, this.config.readRecordsMax);
    if (taken === null) return null;
    this.committedSeen = Math.max(this.committedSeen, taken.committedTxid);
    this.catchUpTo ??= taken.committedTxid;
    return taken.outcome;
  }

  /** Reads from `node`, judged by the core; null once tailing stops. */
  private async read(core: ReplicaCore, node: string, fromTxid: number): Promise<ReadOutcome | null> {
    // A release (takeover) does not wait for the read in flight: one lost with a nats-server would hold it for
    // journalRequestTimeoutMs. Its answer, if any, is dropped.
    const req = { type: "read", fromTxid, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted: false } as const;
    const reply = await Promise.race([this.jc.call(node, req), this.halted]);
    if (!this.running || reply === null) return null;
    const outcome = core.onRead(reply.ok && "read" in reply ? { ok: true, ...reply.read } : reply.ok ? { ok: false, code: "BAD_REQUEST", message: "not a read reply" } : reply);
    if (reply.ok && "read" in reply) {
      this.committedSeen = Math.max(this.committedSeen, reply.read.committedTxid);
      this.catchUpTo ??= reply.read.committedTxid;
    }
    return this.feed.read(outcome);
  }

  /**
   * Nothing to read now: a due snapshot whose try gave up (no cluster id yet, a node slow) is tried again (tried only
   * after an apply, a replica that had applied its last writes never snapshotted them), then the pause, which a commit
   * hint ends.
   */
  private async idle(ms: number): Promise<void> {
    await this.snapshotIfDue().catch((err: Error) => this.log.warn({ err }, "could not start a snapshot"));
    // A hint heard while the snapshot started: no pause.
    if (this.core?.behind === true) return;
    this.hintWakes = true;
    try {
      await this.pause(ms);
    } finally {
      this.hintWakes = false;
    }
  }

  /**
   * The journal no longer holds fromTxid (purged below a snapshot): load the newest durable snapshot into Redis,
   * replacing its data set, then tail from the txid the snapshot names inside itself.
   */
  private async bootstrap(fromTxid: number): Promise<void> {
    this.bootstrapping = true;
    try {
      await this.loadSnapshot(fromTxid);
    } finally {
      this.bootstrapping = false;
    }
  }

  private async loadSnapshot(fromTxid: number): Promise<void> {
    this.log.warn({ fromTxid }, "the journal purged the next txid: bootstrapping from the newest snapshot");
    const done = await bootstrapFromSnapshot(this.snapshots, this.feeder!, this.client!, path.join(this.dataDir, "bootstrap.rdb"), this.config, this.log, (p) => (this.progress = p));
    if (done === null) throw new Error(`txid ${fromTxid} was purged but no journal node has a durable snapshot`);
    await this.resync();
    const applied = this.core!.appliedTxid;
    if (applied !== done.txid) throw new Error(`snapshot ${done.txid} holds applied txid ${applied}`);
    this.snapshotTxid = Math.max(this.snapshotTxid, done.txid);
    this.m.snapshotsLoaded.inc();
    if (this.window !== null) this.windowFrom = warmFrom(done.txid, 0, this.config);
    this.events.publish({ type: "bootstrapped", actor: `replica.${this.id}`, txid: done.txid, bytes: done.bytes, fromNode: done.node, ms: done.ms, downloadMs: done.downloadMs });
  }

  /** A snapshot, when one is due (SnapshotSchedule: its thresholds, its rank's turn, its pause after a failed try). */
  private async snapshotIfDue(): Promise<void> {
    if (this.snapshotDue()) await this.startSnapshot();
  }

  /** Time for a snapshot: enough applied past the newest durable one, this replica's turn come (SnapshotSchedule), none running. */
  private snapshotDue(): boolean {
    return this.snapshotRunning === null && this.snapshotSchedule.due(this.core!.appliedTxid, this.snapshotTxid, Date.now());
  }

  /**
   * Forks a BGSAVE while this loop applies nothing (so the applied-txid key inside the RDB names its position), then
   * saves and uploads it in the background. Another replica's newer durable snapshot makes this one unnecessary.
   */
  private async startSnapshot(): Promise<void> {
    this.snapshotSchedule.tried(Date.now());
    // From the first majority to answer: applying waits meanwhile, and a stopped node would hold it for its timeout.
    const { durableTxid, clusterId } = await this.snapshots.durable();
    this.snapshotTxid = Math.max(this.snapshotTxid, durableTxid);
    // Another replica's newer durable snapshot: none needed now.
    if (this.snapshotRunning !== null || !this.snapshotSchedule.thresholdPassed(this.core!.appliedTxid, this.snapshotTxid)) return;
    // The cluster id the upload is stamped with: one of those nodes knows it.
    if (clusterId === null) return;
    const file = path.join(this.dataDir, "snapshot.rdb");
    const started = await startSnapshot(this.client!, {
      dir: path.join(this.dataDir, "redis"),
      path: file,
      marker: async () => String(await this.readMarker()),
      pollMs: 20,
      forkTimeoutMs: this.config.snapshotTimeoutMs,
      saveTimeoutMs: this.config.snapshotTimeoutMs,
    });
    const txid = Number(started.markerValue ?? 0);
    this.snapshotRunning = (async () => {
      const saved = await started.done;
      this.m.snapshotsTaken.inc();
      this.log.info({ txid, bytes: saved.bytes }, "snapshot saved; uploading to the journal nodes");
      const holders = await this.snapshots.upload(saved.path, txid, clusterId, (p) => (this.progress = { phase: "upload", snapshotTxid: txid, ...p }));
      this.snapshotTxid = Math.max(this.snapshotTxid, txid);
      // The pause between tries is for failures: the next snapshot may start as soon as it is due (issue #13 P6).
      this.snapshotSchedule.succeeded(Date.now());
      this.m.snapshotsUploaded.inc();
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

  /** Told after each run of records applied (or a snapshot loaded): the node's front door releases waiting reads. */
  onApplied: (() => void) | null = null;

  /** With traceSample > 0: when this run of records was applied (the bench's commit → applied lag). */
  private traceApplied(fromTxid: number, toTxid: number): void {
    const t: TraceApplied = { replica: this.id, fromTxid, toTxid, at: traceNow() };
    this.nc.publish(subjects(this.config.cluster).trace, encode(t));
  }

  private async apply(records: RecordView[]): Promise<void> {
    // Records are contiguous (the core checked): a txid's record is at txid - first.
    const first = records[0]?.txid ?? 0;
    try {
      await applyRecords(this.feeder!, this.client!, records, {
        marker: this.marker,
        errors: this.applyErrors,
        applied: (txid, write) => {
          this.core!.onApplied(txid);
          this.snapshotSchedule.observe(records[txid - first].length);
          this.window?.observe(txid, write);
        },
      });
      if (this.config.traceSample > 0 && records.length > 0) this.traceApplied(records[0].txid, records[records.length - 1].txid);
    } catch (err) {
      // A failed effect stops this copy: its applied txid stays the last record that applied cleanly.
      // Not read here: a run whose ACK was lost may still be in Redis's input; the marker is read once the link is new
      // (tailRounds: ensureLinked, then resync; a release does the same).
      if (!(err instanceof ApplyError && err.effectFailed)) this.resyncDue = true;
      throw err;
    } finally {
      this.onApplied?.();
    }
  }

  /** The link to the feeder dropped (killed, timed out): reconnect, and believe what the Redis says it kept. */
  private async ensureLinked(): Promise<void> {
    if (this.feeder!.live) return;
    this.log.warn("the Redis's link to its feeder dropped; resuming from the applied txid it holds");
    await this.feeder!.sync(this.client!);
    await this.resync();
  }

  /**
   * An effect succeeded on the master and failed here: the keyspaces differ. This copy stops applying, loudly, and
   * for good: the fault is kept in a file, so a restart does not resume applying (or snapshotting) a diverged copy
   * from the applied marker, which Redis already moved past the failed record. Wipe this replica to start it afresh.
   */
  private async stopOnFault(err: ApplyError): Promise<void> {
    this.fault = err.message;
    await writeFileDurably(this.dataDir, APPLY_FAULT_FILE, JSON.stringify({ txid: err.txid, reason: err.message }) + "\n").catch((e: Error) =>
      this.log.error({ err: e }, "could not keep the apply fault on disk"),
    );
    this.lastError = `apply failed: ${err.message}`;
    this.log.error({ err, txid: err.txid }, "an effect failed to apply: this replica stops applying");
    this.events.publish({ type: "applyFailed", actor: `replica.${this.id}`, txid: err.txid, reason: err.message });
  }

  /**
   * After a partial failure: believe the marker Redis holds, never our count. The count may be short of a run Redis
   * ran whose ACK was lost (its link killed just after the EXEC): resuming from it would apply that run twice. So
   * until Redis answers, nothing more is applied (`resyncDue`: the tail tries again before anything else), and a
   * release (takeover) fails rather than hand over a guess. Called only on a link no lost run can still be on (a new
   * one: ensureLinked; the feeder ends a link whose run failed), else the marker read could precede that run's EXEC.
   */
  private async resync(): Promise<void> {
    this.resyncDue = true;
    this.applyErrors.count = null;
    const applied = await this.readMarker();
    this.resyncDue = false;
    this.core = this.newCore(applied);
    // Records Redis ran whose ACK we never saw were never observed: the window learns them before this is a standby.
    const from = this.window === null ? null : warmFrom(applied, this.window.stats.lastTxid, this.config);
    if (from !== null) this.windowFrom = from;
  }

  /**
   * resync, tried up to `tries` times a pause apart: a takeover's release must not hand over a guess, and a Redis
   * connection killed at that moment (reconnected within a pause) should not cost the data node a restart.
   */
  private async resyncRetried(tries: number): Promise<void> {
    for (let i = 1; ; i++) {
      try {
        return await this.resync();
      } catch (err) {
        if (i >= tries) throw err;
        this.log.warn({ err, try: i }, "could not read the applied marker: trying again");
        await new Promise((resolve) => setTimeout(resolve, this.config.replicaPollMs * 10));
      }
    }
  }

  /** The applied txid the Redis holds (0: none), and whether its marker is the older one to delete. */
  private async readMarker(): Promise<number> {
    const { txid, legacy } = await readAppliedMarker(this.client!);
    this.marker.legacy = legacy;
    return txid;
  }

  /** This redis-server's command table (a data node keeps it for the day it becomes master). */
  async commandTable(): Promise<CommandTable> {
    assert(this.client !== null, "the command table needs the Redis");
    return await CommandTable.load(this.client);
  }

  /**
   * The dedupe window learns the committed records this Redis holds that it has not seen: at start the last
   * `dedupeWindowRecords` up to the applied txid, after a bootstrap those below the snapshot, after a resync those Redis
   * kept without our seeing them (journal nodes keep them: purgeMarginRecords is at least the window). Committed
   * records only. A node that does not answer is asked again later, the replica no standby meanwhile; only records
   * purged on every node are given up on. `whileStopped`: the release before a takeover, which must finish it.
   */
  private async warmWindow(whileStopped = false): Promise<void> {
    const window = this.window!;
    const applied = this.core!.appliedTxid;
    const warm = new WindowWarmup(this.config.journalNodes, this.windowFrom, applied, whileStopped);
    try {
      for (let step = warm.next(); step.kind !== "done" && (this.running || whileStopped); step = warm.next()) {
        if (step.kind === "gaveUp") throw new Error(step.reason);
        const from = step.fromTxid;
        const r = await this.jc.call(step.node, { type: "read", fromTxid: from, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted: false });
        const range = r.ok && "read" in r && r.read.count > 0 ? recordRange(r.read.records, from, applied) : null;
        if (range === null) {
          const then = warm.missed(!r.ok && r.code === ErrorCode.PURGED);
          if (then === "incomplete") this.log.error({ fromTxid: from, applied }, "every journal node purged what the dedupe window needs; it starts incomplete");
          if (then === "pause") await this.pause(this.config.replicaPollMs * 10);
          continue;
        }
        for (const rec of range.records) if (rec.txid > window.stats.lastTxid) window.observe(rec.txid, decodeRecordPayload(rec.payload).write);
        warm.read(range.records[range.records.length - 1].txid);
      }
    } finally {
      // Where it got to: the next call (the tailing loop's next round, or the release) goes on from there.
      this.windowFrom = warm.fromTxid;
    }
  }

  /**
   * A stopped copy (an apply fault) cannot take over: the data node asks before it campaigns. A dedupe window still
   * warming does not stop it: after a restart of every journal node their records up to our applied txid may be
   * served as committed only once a new writer recovered them, so waiting for the window kept every standby out of
   * the election for good (simulator, seed 2615). `release` finishes the warm-up once the epoch is won.
   */
  get eligible(): boolean {
    return this.fault === null && this.core !== null && !this.bootstrapping;
  }

  /** What the front door's read gate needs (src/frontdoor/read_gate.ts). */
  get readState(): { ready: boolean; catchUpTo: number | null; appliedTxid: number } {
    return { ready: this.eligible && this.running, catchUpTo: this.catchUpTo, appliedTxid: this.core?.appliedTxid ?? 0 };
  }

  /**
   * Hands this replica's Redis and its feeder to the data node's master role (issue #11): tailing stops after the
   * round in flight, and nothing is closed. The Redis holds exactly the committed prefix up to the returned txid.
   */
  async release(): Promise<{ redis: RedisServer; feeder: Feeder; appliedTxid: number }> {
    this.running = false;
    this.halt(null);
    this.hints?.unsubscribe();
    this.batches?.unsubscribe();
    this.wake?.();
    await this.loop;
    this.presence?.stop();
    assert(this.client !== null, "release of a replica that never started");
    // What the Redis holds, not our count: a run whose ACK timed out may have run after all.
    await this.ensureLinked();
    await this.resyncRetried(RELEASE_MARKER_TRIES);
    // The master role answers retries from this window: it must hold every record up to the applied txid.
    if (this.windowFrom !== null) await this.warmWindow(true);
    this.client.disconnect();
    assert(this.redis !== null && this.feeder !== null && this.core !== null, "release of a replica that never started");
    const handed = { redis: this.redis, feeder: this.feeder, appliedTxid: this.core.appliedTxid };
    this.redis = null;
    this.feeder = null;
    return handed;
  }

  /** Until release() hands it over or stop() ends it, the redis-server's exit is the copy lost (see `lost`). */
  private watchRedis(redis: RedisServer): void {
    void redis.child.exited.then((exit) => {
      if (this.redis === redis && !this.stopping) this.loseRedis(`its redis-server (pid ${redis.child.pid}, port ${redis.port}) exited (${exit}): see ${path.resolve(this.dataDir, "redis", "redis.log")}`);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.running = false;
    this.halt(null);
    this.hints?.unsubscribe();
    this.batches?.unsubscribe();
    this.wake?.();
    await this.loop;
    await this.snapshotRunning;
    this.presence?.stop();
    this.client?.disconnect();
    await this.feeder?.close();
    await this.redis?.stop();
  }
}

/** Where a replica keeps the fault that stopped it (see stopOnFault). */
const APPLY_FAULT_FILE = "apply-fault.json";

function readApplyFault(dataDir: string): string | null {
  try {
    return fs.readFileSync(path.join(dataDir, APPLY_FAULT_FILE), "utf8").trim();
  } catch {
    return null;
  }
}

/**
 * The master actor. It owns an ephemeral redis-server, executes each client write there, reads back the effects
 * Redis propagates on its replication stream, journals them (one record per client write) through the WriterCore,
 * and answers the client only once a majority of journal nodes fsynced the record.
 *
 * Life cycle: recovering (new epoch, settle the last segment, rebuild Redis from the journal, open the
 * replication link) → writing → on a failed batch or a broken link: every unanswered write fails with NO_QUORUM,
 * Redis is discarded and the master recovers again as a new writer.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { EventPublisher } from "../actor/events.js";
import { startPresence, type Presence } from "../actor/presence.js";
import type { Config } from "../config/config.js";
import { maxPayload, serve } from "../nats/bus.js";
import { decode } from "../protocol/codec.js";
import { ErrorCode, QjmError, errorReply } from "../protocol/errors.js";
import { parseWriteRequest, type ActorStatus, type WriteReply } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";
import { CommandTable } from "../redis/command_table.js";
import { redisPassword, startRedisServer, type RedisServer } from "../redis/redis_server.js";
import { encodeEffects, type Effect } from "../segment/record.js";
import { APPLIED_KEY, ApplyError, applyRecords } from "../redis/apply_records.js";
import { Feeder } from "../redis/feeder.js";
import { assert } from "../util/assert.js";
import type { Logger } from "../util/log.js";
import { EffectAssembler, newMarkerChannel, type AssembledRecord } from "./effect_assembler.js";
import { JournalClient } from "./journal_client.js";
import { NodeRestorer } from "./node_restorer.js";
import { NodeWatch } from "./node_watch.js";
import { ReplicationLink } from "./replication_link.js";
import { ScriptWatch, unpropagatedKeys, type ScriptRun } from "./script_watch.js";
import { establishWriter, type WriterStart } from "./writer_recovery.js";
import { rollDue, rollSegment } from "./segment_roll.js";
import { bootstrapFromSnapshot, type BootstrapProgress } from "../snapshot/bootstrap.js";
import { SnapshotClient } from "../snapshot/snapshot_client.js";
import { WriterCore, type Batch, type WriterOutput } from "./writer_core.js";

type MasterState =
  /** Becoming the writer: new epoch, recovery, rebuild. Writes wait in the admission queue. */
  | "recovering"
  /** Serving writes. */
  | "writing"
  | "stopped";

interface PendingWrite {
  marker: number;
  txid: number | null;
  /** Redis's answer, once it came: the command's reply or its error. */
  outcome: { ok: true; value: unknown } | { ok: false; message: string } | null;
  respond: (reply: WriteReply) => void;
  /** The core (writer epoch) that journaled it: only that writer's commit may answer it. */
  core: WriterCore | null;
  /** Answered (ok, error or NO_QUORUM): never answered again. */
  answered: boolean;
  /** A script: its record waits for the state of the keys it touched (script_watch.ts). */
  script: { repair: { effects: Effect[]; keys: Buffer[] } | null } | null;
  /** Set when the stream held effects of this write that could not be journaled: answered with this error. */
  refused: string | null;
}

/**
 * A data node's master role (issue #11): the epoch is won already, and the Redis it serves from is the node's own,
 * a replica of `feeder` holding the committed journal up to `appliedTxid` — no rebuild, only the records after it.
 */
export interface Takeover {
  start: WriterStart;
  redis: RedisServer;
  feeder: Feeder;
  appliedTxid: number;
  /** The command table of this redis-server binary, read by the data node beforehand (COMMAND takes a while). */
  commands?: CommandTable;
}

export interface MasterOptions {
  /** Serve from a data node's Redis after its election, instead of recovering and rebuilding a Redis of our own. */
  takeover?: Takeover;
  /** The writer failed or was fenced: a data node's master stops here (its Redis discarded) instead of recovering. */
  onStepDown?: (reason: string) => void;
  /** The port of the Redis this master (re)starts: masterRedisPort by default. */
  redisPort?: number;
  /** Heartbeats and status of its own (false: a data node publishes them). */
  presence?: boolean;
}

interface QueuedWrite {
  args: Buffer[];
  /** The request's size: queued and inflight writes are bounded in bytes too. */
  bytes: number;
  respond: (reply: WriteReply) => void;
  deadlineMs: number;
}

export class Master {
  private state: MasterState = "recovering";
  private redis: RedisServer | null = null;
  private client: Redis | null = null;
  /** The rebuild's feeder: the fresh Redis is its replica until the replication link is open. */
  private feeder: Feeder | null = null;
  private link: ReplicationLink | null = null;
  private core: WriterCore | null = null;
  private commands: CommandTable | null = null;
  private assembler = new EffectAssembler(newMarkerChannel(), 1);
  /** This Redis incarnation's secret marker channel (effect_assembler.ts). */
  private markerChannel = "";
  private scriptWatch: ScriptWatch | null = null;
  /** The script in flight: nothing else is admitted until the read of the keys it touched is sent (script_watch.ts). */
  private scriptBarrier: PendingWrite | null = null;
  /** A reset to the journal in flight (failWriter waits for it before it discards Redis and recovers). */
  private resetting: Promise<void> | null = null;
  /** Records off the stream, in marker order, waiting behind a script whose keys are still being read. */
  private readonly unjournaled: { pending: PendingWrite; effects: Effect[] }[] = [];
  private readonly jc: JournalClient;
  private presence: Presence | null = null;
  private writeSub: Subscription | null = null;
  private nextMarker = 1;
  /** Executed on Redis, marker not yet seen on the stream. */
  private readonly byMarker = new Map<number, PendingWrite>();
  /** Journaled, in txid order, waiting for the commit. */
  private readonly byTxid: PendingWrite[] = [];
  private readonly queued: QueuedWrite[] = [];
  private inflight = 0;
  private queuedBytes = 0;
  private inflightBytes = 0;
  private flushScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private orphanSinceMs = 0;
  private generation = 0;
  /** Unanswered batches (count and bytes) per node incarnation (`node#generation`). */
  private readonly nodeInflight = new Map<string, { batches: number; bytes: number }>();
  private readonly watch: NodeWatch;
  private readonly restorer: NodeRestorer;
  /** Bumped when a node rejoins: an answer to a batch sent before (a late timeout of its dead predecessor) is stale. */
  private readonly nodeGeneration = new Map<string, number>();
  private lastFailure: string | null = null;
  /** The journal nodes the master counted after its last step: a change is an event. */
  private counted = new Set<string>();
  private readonly events: EventPublisher;
  private lastCatchUpMs = 0;
  /** The journal nodes' cluster id (NodeRestorer formats wiped nodes with it). */
  clusterId = "";
  private readonly snapshots: SnapshotClient;
  private bootstrapProgress: BootstrapProgress | null = null;
  /** When the open segment started (its age is a roll threshold). */
  private segmentOpenedMs = 0;
  /** A segment roll: admission stops ("draining") until everything journaled is answered, then the roll runs. */
  private roll: { phase: "draining" | "rolling"; reason: string } | null = null;
  /**
   * A write's effects passed writeEffectsBytesMax: they are in Redis but not journaled. Admission stops ("draining")
   * until every journaled write is answered, then Redis is rebuilt from the journal in the same epoch ("resetting").
   */
  private reset: { phase: "draining" | "resetting"; reason: string } | null = null;
  /** A planned switchover (issue #11): admission stops until the role ends; `done` is told when all admitted is answered. */
  private handover: { done: ((drained: boolean) => void) | null } | null = null;

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly dataDir: string,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly options: MasterOptions = {},
  ) {
    this.jc = new JournalClient(nc, config.cluster, config.journalRequestTimeoutMs);
    this.snapshots = new SnapshotClient(nc, this.jc, config.cluster, config, log);
    this.events = new EventPublisher(nc, config.cluster, `master.${id}`, log);
    this.watch = new NodeWatch(config);
    this.restorer = new NodeRestorer(this.jc, config, log, this.events, this.watch, this, this.snapshots);
  }

  /** NodeRestorer's host: the writer core of the current epoch, if serving. */
  get currentCore(): WriterCore | null {
    return this.core;
  }

  async start(): Promise<void> {
    const s = subjects(this.config.cluster);
    // A queue group: were two nodes to believe they are master, a write reaches one of them, never both.
    this.writeSub = serve(this.nc, s.write, this.log, (_body, raw) => this.onWrite(raw), { limits: this.config, queue: "masters" });
    this.nc.subscribe(s.heartbeat("journal", "*"), {
      callback: (err, msg) => {
        const node = msg?.subject.split(".").at(-1);
        if (!err && node !== undefined && isHeartbeatOf(msg.data, "journal", node)) this.watch.heard(node, Date.now());
      },
    });
    this.nc.subscribe(s.heartbeat("replica", "*"), {
      callback: (err, msg) => {
        if (!err) this.onReplicaHeartbeat(msg.data);
      },
    });
    if (this.options.presence !== false) this.presence = startPresence(this.nc, this.config.cluster, this.config.heartbeatIntervalMs, () => this.status(), this.log);
    this.timer = setInterval(() => this.onTimer(), Math.max(5, Math.min(100, this.config.orphanEffectsFlushMs)));
    if (this.options.takeover !== undefined) void this.takeOver(this.options.takeover);
    else void this.recover();
  }

  status(): ActorStatus {
    return {
      role: "master",
      id: this.id,
      pid: process.pid,
      // During a takeover the epoch is won already: its heartbeat keeps the other data nodes from campaigning.
      epoch: this.core?.epoch ?? this.options.takeover?.start.epoch ?? 0,
      lastTxid: this.core?.lastTxid ?? 0,
      committedTxid: this.core?.committedTxid ?? 0,
      appliedTxid: 0,
      health: this.state,
      redisUrl: this.redis?.url ?? null,
      details: {
        inSync: this.core?.inSyncNodes ?? [],
        journalNodes: Object.fromEntries(this.config.journalNodes.map((n) => [n, this.nodeHealth(n)])),
        bufferedBytes: this.core?.bufferedBytes ?? 0,
        inflightWrites: this.inflight,
        queuedWrites: this.queued.length,
        queuedBytes: this.queuedBytes,
        inflightBytes: this.inflightBytes,
        lastFailure: this.lastFailure,
        bootstrap: this.bootstrapProgress,
      },
    };
  }

  /** A journal node as the master sees it: counted for acks, being caught up, or masked. */
  private nodeHealth(node: string): "healthy" | "catching-up" | "masked" | "unknown" {
    if (this.core === null) return "unknown";
    if (this.core.isInSync(node)) return "healthy";
    return this.restorer.isCatchingUp(node) ? "catching-up" : "masked";
  }

  /** Publishes a masked event for every node the core stopped counting since the last look. */
  private noticeMasked(reason: string): void {
    if (this.core === null) return;
    const now = new Set(this.core.inSyncNodes);
    for (const node of this.counted) if (!now.has(node)) this.events.publish({ type: "masked", node, reason });
    this.counted = now;
  }

  // ---- becoming the writer ----

  private async recover(): Promise<void> {
    const generation = ++this.generation;
    this.state = "recovering";
    for (let attempt = 1; this.state === "recovering" && generation === this.generation; attempt++) {
      try {
        await this.becomeWriter();
        return;
      } catch (err) {
        const level = err instanceof QjmError ? "warn" : "error";
        this.log[level]({ err, attempt }, "could not become the writer; retrying");
        await this.discardRedis();
        if (attempt >= this.config.writerAttemptsMax) {
          this.log.fatal("giving up becoming the writer");
          process.exit(1);
        }
        await new Promise((r) => setTimeout(r, this.config.writerRetryMs));
      }
    }
  }

  private async becomeWriter(): Promise<void> {
    // Used only if the journal nodes are all new: the cluster id they are formatted with.
    const start = await establishWriter(this.jc, this.config, this.log, randomUUID());
    this.clusterId = start.clusterId;
    await this.openRedis();
    await this.rebuild(start.inSync, start.endTxid);
    await this.openLink();
    this.serveAs(start);
  }

  /**
   * A data node's takeover: its Redis holds the committed journal up to `appliedTxid`; the records after it (up to what
   * the recovery decided is committed) are fed the same way, then the Redis is promoted and serves. A failure here is a
   * step-down: the node's Redis is discarded with the rest.
   */
  private async takeOver(t: Takeover): Promise<void> {
    const generation = ++this.generation;
    this.clusterId = t.start.clusterId;
    this.redis = t.redis;
    this.feeder = t.feeder;
    const ms: Record<string, number> = {};
    let at = Date.now();
    const lap = (name: string): void => {
      ms[name] = Date.now() - at;
      at = Date.now();
    };
    try {
      await this.connectClient();
      lap("connect");
      await this.applyJournal(t.start.inSync, t.appliedTxid + 1, t.start.endTxid, APPLIED_KEY);
      // The applied-txid key means nothing on a master; the data node's Redis does not persist while it is one.
      await this.feeder.sendRun([["DEL", APPLIED_KEY]]);
      // Not awaited: it runs on the same connection before any write does.
      this.client!.call("CONFIG", "SET", "appendonly", "no").catch((err: Error) => this.log.warn({ err }, "could not turn the AOF off"));
      lap("catchUp");
      if (generation !== this.generation) return;
      await this.openLink();
      lap("link");
    } catch (err) {
      this.log.warn({ err }, "taking over failed");
      if (generation === this.generation) this.stepDown(`taking over: ${(err as Error).message}`);
      return;
    }
    if (generation !== this.generation || this.state !== "recovering") return;
    this.log.info({ appliedTxid: t.appliedTxid, endTxid: t.start.endTxid, ms }, "took over: the data node's Redis serves writes");
    this.serveAs(t.start);
  }

  /** The writer of `start`'s epoch serves: its first segment is open on `start.inSync`. */
  private serveAs(start: WriterStart): void {
    this.core = new WriterCore(start.epoch, start.endTxid + 1, this.config.journalNodes, start.inSync, this.config);
    this.counted = new Set(start.inSync);
    this.segmentOpenedMs = Date.now();
    this.roll = null;
    // The nodes just answered: that counts as a heartbeat.
    for (const node of start.inSync) this.watch.heard(node, Date.now());
    this.events.publish({ type: "writerElected", epoch: start.epoch, endTxid: start.endTxid, decision: start.decision });
    this.nodeInflight.clear();
    this.state = "writing";
    this.log.info({ epoch: start.epoch, segmentTxid: start.endTxid + 1, decision: start.decision }, "serving writes");
    this.admit();
  }

  /**
   * Starts the master's own fresh redis-server, as the replica of a feeder that fills it (it expires nothing by its
   * own clock until the rebuild is done), and connects the client that executes writes there.
   */
  private async openRedis(): Promise<void> {
    const c = this.config;
    const password = redisPassword(c.dataDir);
    this.feeder = await Feeder.listen({ syncTimeoutMs: c.feederSyncTimeoutMs, loadTimeoutMs: c.snapshotTimeoutMs, stallTimeoutMs: c.journalRequestTimeoutMs * 2, keepaliveMs: c.feederKeepaliveMs });
    const replicaOf = ["--replicaof", "127.0.0.1", String(this.feeder.port)];
    const port = this.options.redisPort ?? c.masterRedisPort;
    this.redis = await startRedisServer({ port, dir: this.dataDir + "/redis", persistent: false, startTimeoutMs: c.redisStartTimeoutMs, password, extraArgs: replicaOf });
    await this.connectClient();
  }

  /** The connection that executes writes on the master's Redis, and the command table read from it. */
  private async connectClient(): Promise<void> {
    assert(this.redis !== null, "a client needs the Redis");
    const password = redisPassword(this.config.dataDir);
    // Auto-pipelining: the commands of one event-loop turn leave in one socket write, in call order. Never resend a
    // command after a reconnect (a client write would run twice); maxRetriesPerRequest 0 so that ioredis fails the
    // commands in flight at a close instead of dropping them unsettled.
    this.client = new Redis({ port: this.redis.port, host: "127.0.0.1", password, maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, enableAutoPipelining: true, autoResendUnfulfilledCommands: false });
    this.client.on("error", (err) => this.log.debug({ err }, "redis client error"));
    await this.client.connect();
    this.commands = this.options.takeover?.commands ?? (await CommandTable.load(this.client));
  }

  /** Promotes the rebuilt Redis and opens the replication link to it: from here on its effects are journaled. */
  private async openLink(): Promise<void> {
    assert(this.redis !== null && this.client !== null && this.feeder !== null, "the link needs the rebuilt Redis and its feeder");
    await this.guardStream(this.client, this.redis.port);
    await this.promote();
    const link = new ReplicationLink({ port: this.redis.port, password: redisPassword(this.config.dataDir), replAckIntervalMs: this.config.replAckIntervalMs, replStreamBytesMax: this.config.replStreamBytesMax });
    link.on("command", (cmd: { args: Buffer[] }) => this.onStreamCommand(link, cmd.args));
    link.on("error", (err: Error) => this.failWriter(`replication link: ${err.message}`));
    await link.ready;
    this.link = link;
    // From here every key the Redis's clock expires reaches the link as a DEL, and is journaled.
    await this.client.call("CLIENT", "UNPAUSE");
    await this.feeder.close();
    this.feeder = null;
  }

  /**
   * Fills the fresh Redis through the feeder, before the replication link is opened: the newest durable snapshot if
   * there is one (the journal below it may be purged), then the journal from the snapshot's txid to endTxid. The Redis
   * is the feeder's replica meanwhile: keys whose TTL passed while the journal waited stay until the journal or, once
   * promoted, the Redis's clock deletes them, exactly as on every other copy.
   */
  private async rebuild(nodes: string[], endTxid: number): Promise<void> {
    assert(this.client !== null && this.feeder !== null, "rebuild needs a Redis client and its feeder");
    const feeder = this.feeder;
    const client = this.client;
    let from = 1;
    const snapshot = await bootstrapFromSnapshot(this.snapshots, feeder, client, path.join(this.dataDir, "bootstrap.rdb"), this.config, this.log, (p) => (this.bootstrapProgress = p));
    if (snapshot === null) await feeder.sync(client);
    else {
      assert(snapshot.txid <= endTxid, `snapshot ${snapshot.txid} is past the recovered log's end ${endTxid}`);
      from = snapshot.txid + 1;
      // The replica's applied-txid key came with the snapshot: it means nothing on the master.
      await feeder.sendRun([["DEL", APPLIED_KEY]]);
      this.events.publish({ type: "bootstrapped", actor: `master.${this.id}`, txid: snapshot.txid, bytes: snapshot.bytes, fromNode: snapshot.node, ms: snapshot.ms, downloadMs: snapshot.downloadMs });
    }
    await this.applyJournal(nodes, from, endTxid);
    this.bootstrapProgress = null;
    this.log.info({ endTxid, fromSnapshot: snapshot?.txid ?? null }, "rebuilt Redis from the journal");
  }

  /** Feeds the committed records `from`..`endTxid` to the Redis (optionally with the applied-txid key), node by node. */
  private async applyJournal(nodes: string[], from: number, endTxid: number, markerKey?: string): Promise<void> {
    assert(this.client !== null && this.feeder !== null, "applying the journal needs a Redis client and its feeder");
    const feeder = this.feeder;
    const client = this.client;
    let sourceIndex = 0;
    let misses = 0;
    while (from <= endTxid) {
      const node = nodes[sourceIndex % nodes.length];
      const read = await this.jc.readRecords(node, from, endTxid, this.config);
      if (read === null) {
        // That node has a hole here, is gone, or served damaged records: the next one.
        sourceIndex++;
        if (++misses >= nodes.length * 3) throw new QjmError(ErrorCode.NO_QUORUM, `no journal node serves txid ${from} for the rebuild`);
        continue;
      }
      misses = 0;
      await applyRecords(feeder, client, read.records, { markerKey, applied: (txid) => (from = txid + 1) }).catch((err: unknown) => {
        // An effect that ran on the master before fails on its rebuild: this copy is not the journal's. Reported.
        if (err instanceof ApplyError && err.effectFailed) {
          this.events.publish({ type: "applyFailed", actor: `master.${this.id}`, txid: err.txid, reason: err.message });
        }
        throw err;
      });
    }
  }

  /**
   * The rebuilt Redis stops being the feeder's replica. Paused for writes first, in the same transaction: a paused
   * Redis neither expires nor evicts keys (Redis 7.0), so nothing is deleted before the replication link is open to
   * see it (REPLICAOF NO ONE drops a promoted Redis's replicas, so the link can only open after it).
   */
  private async promote(): Promise<void> {
    assert(this.client !== null, "promote needs a Redis client");
    const pauseMs = this.config.feederSyncTimeoutMs * 2;
    const results = await this.client.multi().call("CLIENT", "PAUSE", String(pauseMs), "WRITE").call("REPLICAOF", "NO", "ONE").exec();
    const failure = results === null ? new Error("transaction aborted") : results.find(([err]) => err !== null)?.[0];
    if (failure) throw new QjmError(ErrorCode.INTERNAL, `promoting the rebuilt Redis: ${failure.message}`);
  }

  /**
   * Issue #10 class 4, once the rebuild is done: a new secret marker channel for this Redis, FLUSHALL/FLUSHDB denied
   * to the master's connection (so to the scripts it runs: they fire no keyspace event), the script watch.
   */
  private async guardStream(client: Redis, port: number): Promise<void> {
    await client.call("ACL", "SETUSER", "default", "-flushall", "-flushdb");
    this.scriptWatch = await ScriptWatch.open(port, redisPassword(this.config.dataDir), this.config, this.log);
    this.markerChannel = newMarkerChannel();
    this.assembler = new EffectAssembler(this.markerChannel, this.nextMarker, this.config.writeEffectsBytesMax);
    this.scriptBarrier = null;
    this.unjournaled.length = 0;
  }

  private async discardRedis(): Promise<void> {
    this.scriptWatch?.close();
    this.scriptWatch = null;
    this.link?.close();
    this.link = null;
    await this.feeder?.close();
    this.feeder = null;
    this.client?.disconnect();
    this.client = null;
    await this.redis?.stop();
    this.redis = null;
  }

  // ---- client writes ----

  private onWrite(raw: Uint8Array): Promise<WriteReply> {
    // writeBytesMax 0: whatever nats-server accepts from a client in one message (its max_payload) is a write.
    const writeBytesMax = this.config.writeBytesMax > 0 ? this.config.writeBytesMax : maxPayload(this.nc);
    if (raw.length > writeBytesMax) {
      throw new QjmError(ErrorCode.PAYLOAD_TOO_LARGE, `write of ${raw.length} bytes exceeds ${this.config.writeBytesMax > 0 ? "writeBytesMax" : "nats-server's max_payload"} ${writeBytesMax}`);
    }
    const { args } = parseWriteRequest(decode(raw));
    return new Promise<WriteReply>((respond) => {
      if (this.queued.length >= this.config.writesQueuedMax) {
        respond(errorReply(ErrorCode.OVERLOADED, `${this.queued.length} writes already wait`));
        return;
      }
      // One write always gets in, however large: the bound is on what waits behind it.
      if (this.queued.length > 0 && this.queuedBytes + raw.length > this.config.writesQueuedBytesMax) {
        respond(errorReply(ErrorCode.OVERLOADED, `${this.queued.length} writes of ${this.queuedBytes} bytes already wait (writesQueuedBytesMax ${this.config.writesQueuedBytesMax})`));
        return;
      }
      this.queuedBytes += raw.length;
      this.queued.push({ args, bytes: raw.length, respond, deadlineMs: Date.now() + this.config.quorumTimeoutMs });
      this.admit();
    });
  }

  /** The next queued write, out of the byte count. */
  private dequeue(): QueuedWrite {
    const w = this.queued.shift()!;
    this.queuedBytes -= w.bytes;
    return w;
  }

  /** Moves queued writes to Redis while the writer serves and both buffers are not full, within the inflight bounds. */
  private admit(): void {
    while (this.queued.length > 0 && this.state === "writing" && this.roll === null && this.reset === null && this.handover === null && this.scriptBarrier === null && this.core !== null && !this.core.full && this.inflight < this.config.writesInflightMax) {
      if (this.inflight > 0 && this.inflightBytes + this.queued[0].bytes > this.config.writesInflightBytesMax) return;
      const w = this.dequeue();
      this.inflightBytes += w.bytes;
      // Every admitted write is answered exactly once (answered, refused, or failed with the writer): its bytes leave then.
      this.execute(w.args, (reply) => {
        this.inflightBytes -= w.bytes;
        w.respond(reply);
      });
    }
  }

  private execute(args: Buffer[], respond: (reply: WriteReply) => void): void {
    assert(this.client !== null && this.commands !== null && this.scriptWatch !== null, "execute needs Redis");
    const verdict = this.commands.classify(args);
    if (!verdict.ok) {
      respond(errorReply(verdict.code, verdict.message));
      return;
    }
    const marker = this.nextMarker++;
    const pending: PendingWrite = { marker, txid: null, outcome: null, respond, core: this.core, answered: false, script: null, refused: null };
    this.byMarker.set(marker, pending);
    this.inflight++;
    // Same connection, back to back (auto-pipelined into one write): Redis runs the command, then the marker,
    // with no other client between.
    const client = this.client;
    let run: ScriptRun | null = null;
    if (verdict.script) {
      pending.script = { repair: null };
      this.scriptBarrier = pending;
      run = this.scriptWatch.run(client, verdict.name, args.slice(1));
      void run.readSent.then(() => this.releaseScriptBarrier(pending));
    }
    (run?.reply ?? client.call(verdict.name, ...args.slice(1))).then(
      (value) => this.onOutcome(pending, { ok: true, value }),
      (err: Error) => this.onOutcome(pending, { ok: false, message: err.message }),
    );
    // A reset discards this Redis and its connection, answering the write itself: its lost marker is no failure then.
    client.publish(this.markerChannel, String(marker)).catch((err: Error) => {
      if (this.client === client && this.reset === null) this.failWriter(`marker not written: ${err.message}`);
    });
    run?.repair.then(
      (repair) => this.onScriptRepair(pending, repair),
      (err: Error) => this.onScriptUnverified(pending, err),
    );
  }

  /** The read of a script's keys is on the pipeline ahead of any later write: admission resumes. */
  private releaseScriptBarrier(pending: PendingWrite): void {
    if (this.scriptBarrier !== pending) return;
    this.scriptBarrier = null;
    this.admit();
  }

  /** The state of the keys a script touched is read: its record can be journaled (now, or when its marker comes). */
  private onScriptRepair(pending: PendingWrite, repair: { effects: Effect[]; keys: Buffer[] }): void {
    if (pending.script === null || pending.answered || pending.core !== this.core || this.state !== "writing") return;
    pending.script.repair = repair;
    this.journalReady();
  }

  /** A script that could not be checked is not journaled: answered as refused, and a reset to the journal undoes it. */
  private onScriptUnverified(pending: PendingWrite, err: Error): void {
    if (pending.answered || pending.core !== this.core || this.state !== "writing") return;
    this.log.warn({ err, marker: pending.marker }, "a script's writes could not be verified; undoing it by a reset to the journal");
    // Not journaled, and the reset (same epoch: client input never fails the writer) rebuilds Redis without it.
    this.refuseUnjournaled(pending, errorReply(ErrorCode.EFFECTS_REFUSED, `script not journaled, and undone: ${err.message}`));
    this.startReset(`script not verified: ${err.message}`);
  }

  /** Journals the records off the stream in marker order, up to the first script whose keys are not read yet. */
  private journalReady(): void {
    while (this.unjournaled.length > 0 && this.state === "writing") {
      const { pending, effects } = this.unjournaled[0];
      if (pending.script !== null && pending.script.repair === null) return;
      this.unjournaled.shift();
      if (pending.script === null) this.journal(pending, effects);
      else this.journalScript(pending, effects);
    }
  }

  private journalScript(pending: PendingWrite, effects: Effect[]): void {
    const repair = pending.script!.repair!;
    const unpropagated = unpropagatedKeys(repair.keys, effects);
    const txid = this.journal(pending, [...effects, ...repair.effects]);
    if (txid !== null && unpropagated.length > 0) {
      const keys = unpropagated.slice(0, 8).map((k) => k.toString("latin1").slice(0, 64));
      this.log.warn({ txid, keys, count: unpropagated.length }, "a script wrote keys without propagating them; journaled their state");
      this.events.publish({ type: "scriptEffectsRepaired", txid, keys: repair.keys.length, unpropagated: keys });
    }
  }

  private onOutcome(pending: PendingWrite, outcome: NonNullable<PendingWrite["outcome"]>): void {
    pending.outcome = outcome;
    // Only the writer that journaled it can have committed it: a reply that arrives after a failover is not answered
    // again (the write already got NO_QUORUM).
    if (!pending.answered && pending.txid !== null && pending.core !== null && pending.core === this.core && pending.txid <= this.core.committedTxid) {
      this.answer(pending);
    }
  }

  private answer(p: PendingWrite): void {
    assert(p.outcome !== null && p.txid !== null, "answer before outcome and txid");
    assert(!p.answered, `write ${p.txid} answered twice`);
    p.answered = true;
    this.inflight--;
    if (p.refused !== null) p.respond(errorReply(ErrorCode.EFFECTS_REFUSED, p.refused));
    else if (p.outcome.ok) p.respond({ ok: true, txid: p.txid, reply: p.outcome.value });
    else p.respond(errorReply(ErrorCode.REDIS_ERROR, p.outcome.message));
  }

  // ---- the replication stream ----

  /**
   * Every command of the current link is assembled, whatever the state: a key whose TTL passed during the rebuild is
   * deleted by the promoted Redis before the writer serves, and its DEL must wait as an orphan to be journaled (sent
   * once the state is "writing"), never be dropped. Only a link that is no longer current (a discarded Redis) is ignored.
   */
  private onStreamCommand(link: ReplicationLink, args: Buffer[]): void {
    if (link !== this.link) return;
    const assembled = this.assembler.push(args);
    if (assembled === null) {
      if (this.assembler.pendingEffects === 1) this.orphanSinceMs = Date.now();
      return;
    }
    // A write's record after its writer failed, or while a reset discards this Redis: it was answered already.
    if (this.state !== "writing" || this.core === null || this.reset !== null) return;
    const pending = this.byMarker.get(assembled.marker);
    if (pending === undefined) {
      // The assembler only cuts at the next marker the master wrote: this is the master's own bug, not input.
      this.failWriter(`marker ${assembled.marker} on the stream matches no write`);
      return;
    }
    if (assembled.overflowBytes !== undefined) {
      this.byMarker.delete(assembled.marker);
      this.refuseOversized(pending, assembled.overflowBytes);
      return;
    }
    if (assembled.surprises.length > 0) this.onSurprises(pending, assembled);
    this.unjournaled.push({ pending, effects: assembled.effects });
    this.journalReady();
  }

  /** Journals a write's record; null when the record would pass writeEffectsBytesMax (a script's repair can add a DUMP). */
  private journal(pending: PendingWrite, effects: Effect[]): number | null {
    const payload = encodeEffects(effects);
    this.byMarker.delete(pending.marker);
    if (payload.length > this.config.writeEffectsBytesMax) {
      this.refuseOversized(pending, payload.length);
      return null;
    }
    const txid = this.core!.append(payload);
    pending.txid = txid;
    this.byTxid.push(pending);
    this.scheduleFlush();
    return txid;
  }

  /** Client input the stream cannot carry (another database, a stray marker): a typed error and a log line. */
  private onSurprises(pending: PendingWrite | null, assembled: Pick<AssembledRecord, "surprises">): void {
    this.log.warn({ marker: pending?.marker ?? null, surprises: assembled.surprises }, "the replication stream held effects the master cannot journal faithfully");
    this.events.publish({ type: "streamSurprise", surprises: assembled.surprises });
    if (pending !== null) pending.refused = `the replication stream held effects the master cannot journal faithfully: ${assembled.surprises.join("; ")}`;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.core !== null) this.handle(this.core.tick(Date.now()));
    });
  }

  private onTimer(): void {
    const now = Date.now();
    for (let i = 0; i < this.queued.length && this.queued[0].deadlineMs < now; ) {
      const w = this.dequeue();
      if (this.state === "writing") w.respond(errorReply(ErrorCode.OVERLOADED, "write waited too long for room in the journal buffers"));
      else w.respond(errorReply(ErrorCode.NO_QUORUM, `no writer: ${this.lastFailure ?? "becoming the writer"}`));
    }
    if (this.state !== "writing" || this.core === null) return;
    // Effects with no client marker (expired, evicted keys) go into a record of their own once the stream is idle.
    if (this.byMarker.size === 0 && this.assembler.pendingSurprises > 0) this.onSurprises(null, { surprises: this.assembler.takeSurprises() });
    if (this.roll === null && this.reset === null && this.assembler.pendingEffects > 0 && this.byMarker.size === 0 && now - this.orphanSinceMs >= this.config.orphanEffectsFlushMs) {
      if (this.assembler.overflow) this.startReset(`effects of no write passed writeEffectsBytesMax ${this.config.writeEffectsBytesMax}`);
      else this.core.append(encodeEffects(this.assembler.takeOrphans()));
    }
    this.maybeReset();
    // While a roll finalizes the segment, the drained core has nothing to send (not even a commit notice).
    if (this.roll?.phase === "rolling") return;
    this.maybeDrained();
    this.handle(this.core.tick(now, true));
    for (const node of this.core?.inSyncNodes ?? []) {
      const silentMs = this.watch.silentMs(node, now);
      if (silentMs > this.config.journalHeartbeatTimeoutMs && this.core !== null) {
        this.handle(this.core.onReply(node, -1, { ok: false, code: ErrorCode.TIMEOUT, message: `no heartbeat for ${silentMs} ms` }, now));
      }
    }
    if (this.core === null) return;
    this.maybeRoll();
    if (this.roll === null && now - this.lastCatchUpMs >= this.config.catchUpIntervalMs) {
      this.lastCatchUpMs = now;
      const core = this.core;
      for (const node of this.config.journalNodes) if (!core.isInSync(node)) this.restorer.start(node, core);
    }
  }

  /**
   * A replica that found a journal node serving bad records has it masked and kept masked a while — unless masking
   * it would leave fewer than a majority in step: a replica's word does not stop the write path.
   */
  private onReplicaHeartbeat(data: Uint8Array): void {
    const now = Date.now();
    for (const report of this.watch.replicaReports(data, now)) {
      if (this.core !== null && this.core.isInSync(report.node) && this.core.inSyncCount > this.core.quorum) {
        this.handle(this.core.onReply(report.node, -1, { ok: false, code: ErrorCode.BAD_RECORD, message: `replica ${report.replica} reports: ${report.reason}` }, now));
      }
    }
  }

  /** NodeRestorer's host: `node` holds everything before `core`'s batch in flight; it counts for acks again. */
  rejoin(node: string, lastTxid: number, core: WriterCore): void {
    this.nodeGeneration.set(node, (this.nodeGeneration.get(node) ?? 0) + 1);
    this.handle(core.rejoin(node, lastTxid));
    this.counted.add(node);
    this.events.publish({ type: "restored", node, lastTxid });
  }

  private handle(out: WriterOutput): void {
    if (out.failure !== null) {
      this.failWriter(out.failure);
      return;
    }
    if (this.core !== null && this.core.inSyncCount !== this.counted.size) this.noticeMasked(this.core.lastRefusal ?? "dropped out");
    const core = this.core;
    // A node refused at send (too many batches unanswered) can fail the writer: the rest is not sent, and what the
    // failure answered as unknown stays so (sim seed 6451; before, the next send threw on the dropped core).
    for (const { batch, nodes } of out.send) for (const node of nodes) if (this.core === core) this.sendBatch(node, batch);
    if (this.core !== core) return;
    if (out.committedTxid !== null) this.onCommitted(out.committedTxid);
  }

  private sendBatch(node: string, batch: Batch): void {
    const core = this.core!;
    const generation = this.nodeGeneration.get(node) ?? 0;
    // Counted per incarnation: requests to a node's dead predecessor time out on their own.
    const key = `${node}#${generation}`;
    const inflight = this.nodeInflight.get(key) ?? { batches: 0, bytes: 0 };
    // One batch always goes, however large (a record over journalInflightBytesMax travels alone).
    const overBytes = inflight.batches > 0 && inflight.bytes + batch.records.length > this.config.journalInflightBytesMax;
    if (inflight.batches >= this.config.journalBatchesInflightMax || overBytes) {
      // A slow node must not slow acks nor grow our memory: it is masked until it catches up.
      const message = `${inflight.batches} batches (${inflight.bytes} bytes) unanswered`;
      this.handle(core.onReply(node, batch.id, { ok: false, code: ErrorCode.OUT_OF_SYNC, message }, Date.now()));
      return;
    }
    this.nodeInflight.set(key, { batches: inflight.batches + 1, bytes: inflight.bytes + batch.records.length });
    void this.jc
      .call(node, { type: "journal", epoch: core.epoch, segmentTxid: batch.segmentTxid, firstTxid: batch.firstTxid, count: batch.count, records: batch.records, committedTxid: batch.committedTxid }, core.batchTimeoutMs(batch.records.length))
      .then((reply) => {
        const left = this.nodeInflight.get(key);
        if (left !== undefined && left.batches > 1) this.nodeInflight.set(key, { batches: left.batches - 1, bytes: left.bytes - batch.records.length });
        else this.nodeInflight.delete(key);
        if (this.core !== core) return; // an answer to an earlier writer
        if ((this.nodeGeneration.get(node) ?? 0) !== generation) return; // sent before the node rejoined
        this.handle(core.onReply(node, batch.id, reply.ok ? { ok: true } : reply, Date.now()));
      });
  }

  private onCommitted(committed: number): void {
    while (this.byTxid.length > 0 && this.byTxid[0].txid! <= committed) {
      const p = this.byTxid.shift()!;
      if (p.outcome !== null) this.answer(p);
      // else: Redis's reply is still on its way; onOutcome answers it.
    }
    this.maybeRoll();
    this.maybeReset();
    this.maybeDrained();
    this.admit();
  }

  // ---- planned switchover (issue #11) ----

  /**
   * Stops admitting writes and resolves true once every admitted write is committed and answered (queued ones wait),
   * or false after `timeoutMs` or if the writer fails meanwhile (admission then resumes, unless the writer failed).
   */
  drainForHandover(timeoutMs: number): Promise<boolean> {
    if (this.state !== "writing" || this.handover !== null) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => this.finishDrain(false), timeoutMs);
      this.handover = {
        done: (drained) => {
          clearTimeout(timer);
          resolve(drained);
        },
      };
      this.maybeDrained();
    });
  }

  private maybeDrained(): void {
    if (this.handover?.done == null) return;
    const core = this.core;
    if (this.state !== "writing" || core === null) return this.finishDrain(false);
    if (this.inflight === 0 && this.byMarker.size === 0 && core.drained && this.roll === null && this.reset === null) this.finishDrain(true);
  }

  private finishDrain(drained: boolean): void {
    const done = this.handover?.done;
    if (done == null) return;
    if (drained) this.handover = { done: null };
    else this.resumeAdmission();
    done(drained);
  }

  /** The switchover did not happen: serve on. */
  resumeAdmission(): void {
    this.handover = null;
    this.admit();
  }

  /** The switchover's last step: a drained master ends its role; queued writes are answered NOT_WRITER (retry elsewhere). */
  handOff(reason: string): void {
    assert(this.handover !== null && this.handover.done === null, "hand off before the drain");
    this.core = null;
    this.state = "recovering";
    void this.discardRedis().then(() => this.endRole(reason));
  }

  /** Starts draining once the open segment passes a roll threshold; rolls once everything journaled is answered. */
  private maybeRoll(): void {
    const core = this.core;
    if (core === null || this.state !== "writing" || this.reset !== null) return;
    if (this.roll === null) {
      const reason = rollDue({ bytes: core.segmentBytes, records: core.segmentRecords, ageMs: Date.now() - this.segmentOpenedMs }, this.config);
      if (reason === null) return;
      this.roll = { phase: "draining", reason };
    }
    if (this.roll.phase !== "draining" || !core.drained || this.inflight > 0 || this.byMarker.size > 0) return;
    this.roll.phase = "rolling";
    void this.rollSegment(core, this.roll.reason);
  }

  private async rollSegment(core: WriterCore, reason: string): Promise<void> {
    try {
      const open = await rollSegment(this.jc, core, this.config, this.clusterId);
      if (this.core !== core || this.state !== "writing") return;
      const next = new WriterCore(core.epoch, core.lastTxid + 1, this.config.journalNodes, open, this.config);
      this.core = next;
      this.segmentOpenedMs = Date.now();
      this.events.publish({ type: "segmentRolled", epoch: core.epoch, startTxid: core.segmentTxid, endTxid: core.lastTxid, reason, inSync: open });
      this.noticeMasked("did not open the next segment");
    } catch (err) {
      this.failWriter(`segment roll: ${(err as Error).message}`);
    } finally {
      if (this.core !== core) this.roll = null;
      this.admit();
    }
  }

  // ---- writes whose effects pass writeEffectsBytesMax (issue #10 class 5) ----

  /**
   * `pending`'s effects passed writeEffectsBytesMax: refused, never journaled. Its effects, and those of every write
   * Redis ran after it, are in Redis only: those writes are refused too (definitely: Redis is reset to the journal).
   */
  private refuseOversized(pending: PendingWrite, bytes: number): void {
    const reason = `the write's effects take more than ${bytes} bytes, over writeEffectsBytesMax ${this.config.writeEffectsBytesMax}`;
    this.refuseUnjournaled(pending, errorReply(ErrorCode.PAYLOAD_TOO_LARGE, `${reason}: not executed`));
    this.startReset(reason);
  }

  private refuseUnjournaled(p: PendingWrite, reply: WriteReply): void {
    if (p.answered) return;
    p.answered = true;
    this.inflight--;
    p.respond(reply);
  }

  private startReset(reason: string): void {
    this.log.warn({ reason }, "resetting Redis to the journal");
    this.reset = { phase: "draining", reason };
    // Every write not yet journaled (waiting for its marker, or for a script's repair) is discarded with Redis.
    for (const p of this.byMarker.values()) {
      this.refuseUnjournaled(p, errorReply(ErrorCode.OVERLOADED, `not executed: the master resets its Redis to the journal (${reason}); retry`));
    }
    this.byMarker.clear();
    this.unjournaled.length = 0;
    this.scriptBarrier = null;
    this.maybeReset();
  }

  /** Once every journaled write is committed and answered, Redis is rebuilt from the journal. */
  private maybeReset(): void {
    const core = this.core;
    if (this.reset?.phase !== "draining" || core === null || this.state !== "writing" || !core.drained || this.inflight > 0) return;
    this.reset.phase = "resetting";
    this.resetting = this.resetToJournal(core, this.reset.reason).finally(() => (this.resetting = null));
  }

  /** The same epoch and segment go on; only Redis is discarded and rebuilt up to the last committed txid. */
  private async resetToJournal(core: WriterCore, reason: string): Promise<void> {
    const gone = (): boolean => this.core !== core || this.state !== "writing";
    try {
      await this.discardRedis();
      if (gone()) return;
      await this.openRedis();
      if (gone()) return;
      await this.rebuild(core.inSyncNodes, core.lastTxid);
      if (gone()) return;
      await this.openLink();
    } catch (err) {
      this.failWriter(`resetting Redis to the journal: ${(err as Error).message}`);
      return;
    }
    if (gone()) return;
    this.reset = null;
    this.events.publish({ type: "redisReset", epoch: core.epoch, txid: core.lastTxid, reason });
    this.log.info({ epoch: core.epoch, txid: core.lastTxid }, "Redis reset to the journal; serving writes");
    this.admit();
  }

  /** Nothing more is acknowledged under this epoch: fail what is unanswered and recover as a new writer. */
  private failWriter(reason: string): void {
    if (this.state !== "writing") return;
    this.state = "recovering";
    this.lastFailure = reason;
    // A new writer rebuilds Redis from the journal anyway.
    this.reset = null;
    this.finishDrain(false);
    this.handover = null;
    this.events.publish({ type: "writerFailed", epoch: this.core?.epoch ?? 0, reason });
    const unanswered = [...this.byTxid, ...this.byMarker.values()];
    this.byTxid.length = 0;
    this.byMarker.clear();
    this.scriptBarrier = null;
    this.unjournaled.length = 0;
    this.inflight = 0;
    for (const p of unanswered) {
      if (p.answered) continue;
      p.answered = true;
      p.respond(errorReply(ErrorCode.NO_QUORUM, `outcome unknown: ${reason}`));
    }
    this.core = null;
    // A reset in flight starts a Redis on the same port and fields: let it stop at its next check first.
    const discarded = (this.resetting ?? Promise.resolve()).then(() => this.discardRedis());
    if (this.options.onStepDown === undefined) void discarded.then(() => this.recover());
    else void discarded.then(() => this.endRole(reason));
  }

  /**
   * A data node's master stops serving: a higher epoch is master (its heartbeat was heard), or the writer failed. Every
   * unanswered write fails as outcome-unknown; its Redis (which may hold uncommitted effects) is discarded.
   */
  stepDown(reason: string): void {
    if (this.state === "writing") return this.failWriter(reason);
    if (this.state !== "recovering") return;
    // A takeover in progress: it stops at its next check.
    this.generation++;
    this.lastFailure = reason;
    void this.discardRedis().then(() => this.endRole(reason));
  }

  /** The end of a data node's master role: nothing more is served, and the data node is told why. */
  private endRole(reason: string): void {
    if (this.state === "stopped") return;
    this.state = "stopped";
    this.writeSub?.unsubscribe();
    this.writeSub = null;
    if (this.timer) clearInterval(this.timer);
    this.presence?.stop();
    this.queuedBytes = 0;
    for (const w of this.queued.splice(0)) w.respond(errorReply(ErrorCode.NOT_WRITER, `this node stepped down: ${reason}`));
    this.options.onStepDown?.(reason);
  }

  async stop(): Promise<void> {
    this.state = "stopped";
    this.generation++;
    this.writeSub?.unsubscribe();
    this.writeSub = null;
    if (this.timer) clearInterval(this.timer);
    this.presence?.stop();
    this.queuedBytes = 0;
    for (const w of this.queued.splice(0)) w.respond(errorReply(ErrorCode.NOT_WRITER, "master is stopping"));
    await this.discardRedis();
  }
}

/** A heartbeat counts only if its body is the named actor's own (a subject alone proves nothing). */
function isHeartbeatOf(data: Uint8Array, role: string, id: string): boolean {
  try {
    const hb = decode(data) as { role?: unknown; id?: unknown } | null;
    return typeof hb === "object" && hb !== null && hb.role === role && hb.id === id;
  } catch {
    return false;
  }
}

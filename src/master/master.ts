/**
 * The master actor: a thin driver of the MasterCore (master_core.ts), which decides everything about serving
 * writes. This file does the I/O: it owns an ephemeral redis-server, executes there the writes the core admits,
 * reads back the effects Redis propagates on its replication stream (markers cut them into one record per write,
 * scripts get the state of their keys read back), sends the batches the core emits to journal nodes, runs the roll,
 * reset, catch-up and recovery RPCs, and feeds every result back to the core as an event. After each event it loops
 * over the core's `ready()` (execute, send, answer, …) until the core has nothing more to say; the core never calls
 * back into the driver.
 *
 * Life cycle: recovering (new epoch, settle the last segment, rebuild Redis from the journal, open the
 * replication link) → writing (a term of the core) → on a failed term: Redis is discarded and the master recovers
 * again as a new writer.
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
import { heartbeatOf, parseWriteRequest, type ActorStatus, type WriteId as ClientWriteId, type WriteReply } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";
import { CommandTable } from "../redis/command_table.js";
import { redisPassword, startRedisServer, type RedisServer } from "../redis/redis_server.js";
import { decodeRecordPayload, encodeEffects, encodeWriteRecord, type Effect, type RecordWrite } from "../segment/record.js";
import { recordedReplyOf } from "../dedupe/dedupe_answer.js";
import { DedupeWindow } from "../dedupe/dedupe_window.js";
import { APPLIED_KEY, ApplyError, applyRecords } from "../redis/apply_records.js";
import { Feeder } from "../redis/feeder.js";
import { assert } from "../util/assert.js";
import type { Logger } from "../util/log.js";
import { EffectAssembler, newMarkerChannel, type AssembledRecord } from "./effect_assembler.js";
import { JournalClient } from "./journal_client.js";
import { MasterCore, type MasterReady, type Outcome, type SendOrder, type WriteId } from "./master_core.js";
import { NodeRestorer } from "./node_restorer.js";
import { ReplicationLink } from "./replication_link.js";
import { ScriptWatch, unpropagatedKeys } from "./script_watch.js";
import { establishWriter, type WriterStart } from "./writer_recovery.js";
import { rebuildSources } from "./rebuild_sources.js";
import { rollSegment } from "./segment_roll.js";
import { bootstrapFromSnapshot, type BootstrapProgress } from "../snapshot/bootstrap.js";
import { SnapshotClient } from "../snapshot/snapshot_client.js";
import type { WriterCore } from "./writer_core.js";

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
  /** The node's dedupe window, which has seen every record up to `appliedTxid`. */
  window?: DedupeWindow;
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

/** A client write as the driver knows it; the core knows it by its id. */
interface DriverWrite {
  args: Buffer[];
  respond: (reply: WriteReply) => void;
  /** A script: its record waits for the state of the keys it touched (script_watch.ts); null until that is read. */
  script: { repair: { effects: Effect[]; keys: Buffer[] } | null } | null;
  /** The client's id (with a dedupe window): the record keeps it and Redis's reply, so it waits for that reply. */
  clientId: ClientWriteId | null;
  outcome: Outcome | null;
  /** The stream held effects of this write that cannot be journaled faithfully: the reply its record keeps. */
  refused: string | null;
}

/** The commands script_watch.ts checks (CommandTable.classify: @scripting, not readonly, no subcommands). */
const SCRIPT_COMMANDS = new Set(["EVAL", "EVALSHA", "FCALL"]);

export class Master {
  private stopped = false;
  private readonly core: MasterCore;
  private redis: RedisServer | null = null;
  private client: Redis | null = null;
  /** The rebuild's feeder: the fresh Redis is its replica until the replication link is open. */
  private feeder: Feeder | null = null;
  private link: ReplicationLink | null = null;
  private commands: CommandTable | null = null;
  private assembler = new EffectAssembler(newMarkerChannel(), 1);
  /** This Redis incarnation's secret marker channel (effect_assembler.ts). */
  private markerChannel = "";
  private scriptWatch: ScriptWatch | null = null;
  /** A reset to the journal in flight (a failed term waits for it before it discards Redis and recovers). */
  private resetting: Promise<void> | null = null;
  /** Records off the stream, in marker order, waiting behind a script whose keys are still being read. */
  private readonly unjournaled: { id: WriteId; effects: Effect[] }[] = [];
  private readonly jc: JournalClient;
  private presence: Presence | null = null;
  private writeSub: Subscription | null = null;
  private readonly heartbeatSubs: Subscription[] = [];
  /**
   * The dedupe window of the Redis served: a data node's (filled by its replica role), or the single-master layout's,
   * filled by each rebuild from the records it replays.
   */
  private window: DedupeWindow;
  /** A planned switchover's drain: told true when the core says everything admitted is answered. */
  private handoverDrained: ((drained: boolean) => void) | null = null;
  private nextWriteId = 1;
  private nextMarker = 1;
  /** Every write the core has not answered yet. */
  private readonly writes = new Map<WriteId, DriverWrite>();
  /** Executed on Redis, marker not yet seen on the stream. */
  private readonly byMarker = new Map<number, WriteId>();
  private flushScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private orphanSinceMs = 0;
  private generation = 0;
  private pumping = false;
  /** Whether the driver's side of the current reset (markers, records waiting) was dropped. */
  private resetDropped = false;
  private readonly restorer: NodeRestorer;
  private readonly events: EventPublisher;
  /** The journal nodes' cluster id (NodeRestorer formats wiped nodes with it). */
  clusterId = "";
  private readonly snapshots: SnapshotClient;
  private bootstrapProgress: BootstrapProgress | null = null;

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
    this.window = options.takeover?.window ?? new DedupeWindow(config);
    this.core = new MasterCore(config, undefined, this.window);
    this.restorer = new NodeRestorer(this.jc, config, log, this.events, this, this.snapshots);
  }

  /** NodeRestorer's host: the writer core of the current epoch, if serving. */
  get currentCore(): WriterCore | null {
    return this.core.writer;
  }

  private get state(): "recovering" | "writing" | "stopped" {
    return this.stopped ? "stopped" : this.core.serving ? "writing" : "recovering";
  }

  async start(): Promise<void> {
    const s = subjects(this.config.cluster);
    // A queue group: were two nodes to believe they are master, a write reaches one of them, never both.
    this.writeSub = serve(this.nc, s.write, this.log, (_body, raw) => this.onWrite(raw), { limits: this.config, queue: "masters" });
    // Ended with the role: a data node runs one Master per term it serves.
    this.heartbeatSubs.push(this.nc.subscribe(s.heartbeat("journal", "*"), {
      callback: (err, msg) => {
        const node = msg?.subject.split(".").at(-1);
        if (!err && node !== undefined && heartbeatOf(msg.data, "journal", node) !== null) this.core.heartbeat(node, Date.now());
      },
    }));
    this.heartbeatSubs.push(this.nc.subscribe(s.heartbeat("replica", "*"), {
      callback: (err, msg) => {
        if (!err) this.step(() => this.core.replicaHeartbeat(msg.data, Date.now()));
      },
    }));
    if (this.options.presence !== false) this.presence = startPresence(this.nc, this.config.cluster, this.config.heartbeatIntervalMs, () => this.status(), this.log);
    this.timer = setInterval(() => this.onTimer(), Math.max(5, Math.min(100, this.config.orphanEffectsFlushMs)));
    if (this.options.takeover !== undefined) void this.takeOver(this.options.takeover);
    else void this.recover();
  }

  status(): ActorStatus {
    const w = this.core.writer;
    return {
      role: "master",
      id: this.id,
      pid: process.pid,
      // During a takeover the epoch is won already: its heartbeat keeps the other data nodes from campaigning.
      epoch: w?.epoch ?? this.options.takeover?.start.epoch ?? 0,
      lastTxid: w?.lastTxid ?? 0,
      committedTxid: w?.committedTxid ?? 0,
      appliedTxid: 0,
      health: this.state,
      redisUrl: this.redis?.url ?? null,
      details: {
        inSync: w?.inSyncNodes ?? [],
        journalNodes: Object.fromEntries(this.config.journalNodes.map((n) => [n, this.nodeHealth(n)])),
        bufferedBytes: w?.bufferedBytes ?? 0,
        inflightWrites: this.core.inflight,
        queuedWrites: this.core.queued,
        queuedBytes: this.core.queuedBytes,
        inflightBytes: this.core.inflightBytes,
        lastFailure: this.core.lastFailure,
        bootstrap: this.bootstrapProgress,
      },
    };
  }

  /** A journal node as the master sees it: counted for acks, being caught up, or masked. */
  private nodeHealth(node: string): "healthy" | "catching-up" | "masked" | "unknown" {
    const w = this.core.writer;
    if (w === null) return "unknown";
    if (w.isInSync(node)) return "healthy";
    return this.core.isCatchingUp(node) ? "catching-up" : "masked";
  }

  // ---- the loop over the core ----

  /** Feeds one event to the core, then does what it decided, until it has nothing more to say. */
  private step(event: () => void): void {
    event();
    if (this.pumping) return; // the loop below takes it
    this.pumping = true;
    try {
      for (let r = this.core.ready(); !isEmpty(r); r = this.core.ready()) this.act(r);
    } finally {
      this.pumping = false;
    }
  }

  /** One Ready, in its order: execute, send, answer, then the rest. */
  private act(r: MasterReady): void {
    for (const id of r.execute) this.execute(id);
    for (const s of r.send) this.sendBatch(s);
    for (const { id, reply } of r.answers) {
      const w = this.writes.get(id);
      this.writes.delete(id);
      w?.respond(reply);
    }
    if (this.core.resetting && !this.resetDropped) this.dropUnjournaled();
    if (!this.core.resetting) this.resetDropped = false;
    if (r.flush) this.scheduleFlush();
    if (r.takeOrphans) this.takeOrphans();
    for (const { node, writer } of r.startCatchUp) this.restorer.start(node, writer);
    if (r.roll !== null) void this.roll(r.roll.writer, r.roll.reason);
    if (r.reset !== null) this.resetting = this.resetToJournal(r.reset.writer, r.reset.reason).finally(() => (this.resetting = null));
    if (r.handoverDrained) {
      this.handoverDrained?.(true);
      this.handoverDrained = null;
    }
    for (const e of r.events) this.events.publish(e);
    if (r.failed !== null) this.onFailed(r.failed);
  }

  /** A reset discards Redis: what waited for the stream (markers, records behind a script) goes with it. */
  private dropUnjournaled(): void {
    this.resetDropped = true;
    this.byMarker.clear();
    this.unjournaled.length = 0;
  }

  private failWriter(reason: string): void {
    this.step(() => this.core.fail(reason));
  }

  /** The term failed (its writes were answered): discard Redis and recover as a new writer. */
  private onFailed(reason: string): void {
    this.log.warn({ reason }, "writer failed");
    this.byMarker.clear();
    this.unjournaled.length = 0;
    if (this.stopped) return;
    this.handoverDrained?.(false);
    this.handoverDrained = null;
    // A reset in flight starts a Redis on the same port and fields: let it stop at its next check first.
    const discarded = (this.resetting ?? Promise.resolve()).then(() => this.discardRedis());
    if (this.options.onStepDown === undefined) void discarded.then(() => this.recover());
    else void discarded.then(() => this.endRole(reason));
  }

  // ---- a data node's master role (issue #11) ----

  /**
   * A data node's master stops serving: a higher epoch is master (its heartbeat was heard), or the writer failed. Every
   * unanswered write fails as outcome-unknown; its Redis (which may hold uncommitted effects) is discarded.
   */
  stepDown(reason: string): void {
    if (this.core.serving) return this.failWriter(reason);
    if (this.stopped) return;
    // A takeover in progress: it stops at its next check.
    this.generation++;
    void this.discardRedis().then(() => this.endRole(reason));
  }

  private unsubscribe(): void {
    this.writeSub?.unsubscribe();
    this.writeSub = null;
    for (const sub of this.heartbeatSubs.splice(0)) sub.unsubscribe();
  }

  /** The end of a data node's master role: nothing more is served, and the data node is told why. */
  private endRole(reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe();
    if (this.timer) clearInterval(this.timer);
    this.presence?.stop();
    // Writes still queued were never executed: NOT_WRITER, the client retries them at the new master.
    this.step(() => this.core.stop(`this node stepped down: ${reason}`));
    this.options.onStepDown?.(reason);
  }

  /**
   * A planned switchover: admission stops; true once every admitted write is committed and answered (queued ones wait),
   * false after `timeoutMs` or if the writer failed meanwhile (admission then resumes, unless it failed).
   */
  drainForHandover(timeoutMs: number): Promise<boolean> {
    if (!this.core.serving || this.handoverDrained !== null) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.handoverDrained = null;
        this.resumeAdmission();
        resolve(false);
      }, timeoutMs);
      this.handoverDrained = (drained) => {
        clearTimeout(timer);
        resolve(drained);
      };
      this.step(() => this.core.startHandover());
    });
  }

  /** The switchover did not happen: serve on. */
  resumeAdmission(): void {
    this.step(() => this.core.cancelHandover());
  }

  /**
   * The switchover's last step: the drained master stops serving at once (status and heartbeat say so), its queued
   * writes are answered NOT_WRITER (never executed: retried at the new master), then its Redis is discarded.
   */
  handOff(reason: string): void {
    this.step(() => this.core.stop(`this node handed over: ${reason}`));
  }

  // ---- becoming the writer ----

  private async recover(): Promise<void> {
    const generation = ++this.generation;
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
    // A new Redis, a new window: the rebuild fills it from the records it replays (and those before its snapshot).
    this.window = new DedupeWindow(this.config);
    await this.rebuild(start.inSync, start.endTxid, this.window);
    await this.openLink();
    if (this.stopped) return;
    this.serveAs(start);
  }

  /** The writer of `start`'s epoch serves: its first segment is open on `start.inSync`. */
  private serveAs(start: WriterStart): void {
    this.events.publish({ type: "writerElected", epoch: start.epoch, endTxid: start.endTxid, decision: start.decision });
    this.log.info({ epoch: start.epoch, segmentTxid: start.endTxid + 1, decision: start.decision }, "serving writes");
    this.step(() => this.core.start(start.epoch, start.endTxid + 1, start.inSync, Date.now(), this.window));
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
      await this.applyJournal(t.start.inSync, t.appliedTxid + 1, t.start.endTxid, APPLIED_KEY, (txid, write) => {
        // The window saw what the replica applied; the records after it are the ones fed here.
        if (txid > this.window.stats.lastTxid) this.window.observe(txid, write);
      });
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
    if (generation !== this.generation || this.stopped) return;
    this.log.info({ appliedTxid: t.appliedTxid, endTxid: t.start.endTxid, ms }, "took over: the data node's Redis serves writes");
    this.serveAs(t.start);
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
  private async rebuild(nodes: string[], endTxid: number, window: DedupeWindow | null): Promise<void> {
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
    if (window !== null && from > 1) await this.observeJournal(nodes, Math.max(1, from - this.config.dedupeWindowRecords), from - 1, window);
    await this.applyJournal(nodes, from, endTxid, undefined, window === null ? undefined : (txid, write) => window.observe(txid, write));
    this.bootstrapProgress = null;
    this.log.info({ endTxid, fromSnapshot: snapshot?.txid ?? null }, "rebuilt Redis from the journal");
  }

  /**
   * The dedupe window learns the records below a snapshot the rebuild started from (best effort: what the journal still
   * holds; it keeps purgeMarginRecords below the snapshot, at least the window with data nodes).
   */
  private async observeJournal(nodes: string[], from: number, to: number, window: DedupeWindow): Promise<void> {
    const sources = rebuildSources(nodes, this.config.journalNodes);
    for (let i = 0, misses = 0; from <= to && misses < sources.length; i++) {
      const { node, uncommitted } = sources[i % sources.length];
      const read = await this.jc.readRecords(node, from, to, this.config, uncommitted);
      if (read === null) {
        misses++;
        continue;
      }
      misses = 0;
      for (const rec of read.records) if (rec.txid > window.stats.lastTxid) window.observe(rec.txid, decodeRecordPayload(rec.payload).write);
      from = read.records[read.records.length - 1].txid + 1;
    }
    if (from <= to) this.log.warn({ fromTxid: from, toTxid: to }, "the journal no longer holds what the dedupe window would learn below the snapshot");
  }

  /**
   * Feeds the committed records `from`..`endTxid` to the Redis (optionally with the applied-txid key), from the nodes
   * in step and then the others (rebuild_sources.ts).
   */
  private async applyJournal(nodes: string[], from: number, endTxid: number, markerKey?: string, observe?: (txid: number, write: RecordWrite | null) => void): Promise<void> {
    assert(this.client !== null && this.feeder !== null, "applying the journal needs a Redis client and its feeder");
    const feeder = this.feeder;
    const client = this.client;
    const sources = rebuildSources(nodes, this.config.journalNodes);
    let sourceIndex = 0;
    let misses = 0;
    while (from <= endTxid) {
      const { node, uncommitted } = sources[sourceIndex % sources.length];
      const read = await this.jc.readRecords(node, from, endTxid, this.config, uncommitted);
      if (read === null) {
        // That node has a hole here, is gone, or served damaged records: the next one.
        sourceIndex++;
        if (++misses >= sources.length * 3) throw new QjmError(ErrorCode.NO_QUORUM, `no journal node serves txid ${from} for the rebuild`);
        continue;
      }
      misses = 0;
      await applyRecords(feeder, client, read.records, {
        markerKey,
        applied: (txid, write) => {
          from = txid + 1;
          observe?.(txid, write);
        },
      }).catch((err: unknown) => {
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
    const { args, id: requested } = parseWriteRequest(decode(raw));
    const clientId = requested;
    return new Promise<WriteReply>((respond) => {
      const id = this.nextWriteId++;
      this.writes.set(id, { args, respond, script: null, clientId, outcome: null, refused: null });
      this.step(() => this.core.write(id, raw.length, this.isScript(args), Date.now(), clientId));
    });
  }

  /** A script is a barrier: nothing is admitted behind it until the read of the keys it touched is sent. */
  private isScript(args: Buffer[]): boolean {
    const verdict = this.commands?.classify(args);
    return verdict !== undefined ? verdict.ok && verdict.script : SCRIPT_COMMANDS.has(args[0]?.toString("latin1").toUpperCase() ?? "");
  }

  /** Runs an admitted write on Redis: the command, then its marker, back to back on the same connection. */
  private execute(id: WriteId): void {
    assert(this.client !== null && this.commands !== null && this.scriptWatch !== null, "execute needs Redis");
    const w = this.writes.get(id);
    assert(w !== undefined, `write ${id} admitted but unknown`);
    const verdict = this.commands.classify(w.args);
    if (!verdict.ok) return this.core.rejected(id, errorReply(verdict.code, verdict.message));
    const marker = this.nextMarker++;
    this.byMarker.set(marker, id);
    // Same connection, back to back (auto-pipelined into one write): Redis runs the command, then the marker,
    // with no other client between.
    const client = this.client;
    const run = verdict.script ? this.scriptWatch.run(client, verdict.name, w.args.slice(1)) : null;
    if (run !== null) {
      w.script = { repair: null };
      void run.readSent.then(() => this.step(() => this.core.barrierReleased(id)));
    } else {
      this.core.barrierReleased(id);
    }
    (run?.reply ?? client.call(verdict.name, ...w.args.slice(1))).then(
      (value) => this.onOutcome(id, w, { ok: true, value }),
      (err: Error) => this.onOutcome(id, w, { ok: false, message: err.message }),
    );
    // A reset discards this Redis and its connection, answering the write itself: its lost marker is no failure then.
    client.publish(this.markerChannel, String(marker)).catch((err: Error) => {
      if (this.client === client && !this.core.resetting) this.failWriter(`marker not written: ${err.message}`);
    });
    run?.repair.then(
      (repair) => this.onScriptRepair(id, repair),
      (err: Error) => this.onScriptUnverified(id, err),
    );
  }

  /** Redis's answer: to the core, and, for a write whose record keeps it (a client id), to the record waiting for it. */
  private onOutcome(id: WriteId, w: DriverWrite, outcome: Outcome): void {
    w.outcome = outcome;
    this.step(() => {
      this.core.outcome(id, outcome);
      if (w.clientId !== null) this.journalReady();
    });
  }

  /** The state of the keys a script touched is read: its record can be journaled (now, or when its marker comes). */
  private onScriptRepair(id: WriteId, repair: { effects: Effect[]; keys: Buffer[] }): void {
    const w = this.writes.get(id);
    if (w?.script == null || !this.core.serving) return;
    w.script.repair = repair;
    this.step(() => this.journalReady());
  }

  /** A script that could not be checked is not journaled: answered as refused, and a reset to the journal undoes it. */
  private onScriptUnverified(id: WriteId, err: Error): void {
    if (!this.writes.has(id) || !this.core.serving) return;
    this.log.warn({ err, id }, "a script's writes could not be verified; undoing it by a reset to the journal");
    // Not journaled, and the reset (same epoch: client input never fails the writer) rebuilds Redis without it.
    this.step(() => {
      this.core.rejected(id, errorReply(ErrorCode.EFFECTS_REFUSED, `script not journaled, and undone: ${err.message}`));
      this.core.startReset(`script not verified: ${err.message}`);
    });
  }

  /**
   * Journals the records off the stream in marker order, up to the first that waits: a script whose keys are not read
   * yet, or a write with a client id whose Redis reply (which its record keeps, for retries) has not come yet.
   */
  private journalReady(): void {
    while (this.unjournaled.length > 0 && this.core.serving && !this.core.resetting) {
      const { id, effects } = this.unjournaled[0];
      const w = this.writes.get(id);
      const script = w?.script ?? null;
      if (script !== null && script.repair === null) return;
      if (w !== undefined && w.clientId !== null && w.outcome === null) return;
      this.unjournaled.shift();
      if (script === null) this.journal(id, w, effects);
      else this.journalScript(id, w, effects, script.repair!);
    }
  }

  /** One write's record: its effects, and with a client id the id and the reply (the dedupe window's at the commit). */
  private journal(id: WriteId, w: DriverWrite | undefined, effects: Effect[]): number | null {
    if (w === undefined || w.clientId === null || w.outcome === null) return this.core.record(id, encodeEffects(effects));
    const reply = w.refused !== null ? ({ ok: false, message: w.refused, code: ErrorCode.EFFECTS_REFUSED } as const) : recordedReplyOf(w.outcome);
    const { payload, write } = encodeWriteRecord(effects, { id: w.clientId, reply }, this.config.dedupeReplyBytesMax);
    return this.core.record(id, payload, write);
  }

  private journalScript(id: WriteId, w: DriverWrite | undefined, effects: Effect[], repair: { effects: Effect[]; keys: Buffer[] }): void {
    const unpropagated = unpropagatedKeys(repair.keys, effects);
    const txid = this.journal(id, w, [...effects, ...repair.effects]);
    if (txid !== null && unpropagated.length > 0) {
      const keys = unpropagated.slice(0, 8).map((k) => k.toString("latin1").slice(0, 64));
      this.log.warn({ txid, keys, count: unpropagated.length }, "a script wrote keys without propagating them; journaled their state");
      this.events.publish({ type: "scriptEffectsRepaired", txid, keys: repair.keys.length, unpropagated: keys });
    }
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
    if (!this.core.serving || this.core.resetting) return;
    const id = this.byMarker.get(assembled.marker);
    // The assembler only cuts at the next marker the master wrote: this is the master's own bug, not input.
    if (id === undefined) return this.failWriter(`marker ${assembled.marker} on the stream matches no write`);
    this.byMarker.delete(assembled.marker);
    if (assembled.overflowBytes !== undefined) return this.step(() => this.core.oversized(id, assembled.overflowBytes!));
    if (assembled.surprises.length > 0) this.onSurprises(id, assembled);
    this.unjournaled.push({ id, effects: assembled.effects });
    this.step(() => this.journalReady());
  }

  /** Client input the stream cannot carry (another database, a stray marker): a typed error and a log line. */
  private onSurprises(id: WriteId | null, assembled: Pick<AssembledRecord, "surprises">): void {
    this.log.warn({ write: id, surprises: assembled.surprises }, "the replication stream held effects the master cannot journal faithfully");
    this.events.publish({ type: "streamSurprise", surprises: assembled.surprises });
    if (id === null) return;
    const message = `the replication stream held effects the master cannot journal faithfully: ${assembled.surprises.join("; ")}`;
    const w = this.writes.get(id);
    if (w !== undefined) w.refused = message;
    this.core.refuse(id, message);
  }

  /** Effects with no client marker (expired, evicted keys) go into a record of their own, as the core decided. */
  private takeOrphans(): void {
    if (this.assembler.overflow) this.core.startReset(`effects of no write passed writeEffectsBytesMax ${this.config.writeEffectsBytesMax}`);
    else this.core.orphans(encodeEffects(this.assembler.takeOrphans()));
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.step(() => this.core.flush(Date.now()));
    });
  }

  private onTimer(): void {
    if (this.core.serving && this.core.awaitingRecords === 0 && this.assembler.pendingSurprises > 0) this.onSurprises(null, { surprises: this.assembler.takeSurprises() });
    const orphansSinceMs = this.assembler.pendingEffects > 0 ? this.orphanSinceMs : null;
    this.step(() => this.core.tick(Date.now(), orphansSinceMs));
  }

  // ---- journal nodes ----

  private sendBatch({ node, epoch, batch, timeoutMs, ref }: SendOrder): void {
    const req = { type: "journal", epoch, segmentTxid: batch.segmentTxid, firstTxid: batch.firstTxid, count: batch.count, records: batch.records, committedTxid: batch.committedTxid } as const;
    void this.jc.call(node, req, timeoutMs).then((reply) => this.step(() => this.core.journalReply(ref, reply.ok ? { ok: true } : reply, Date.now())));
  }

  /** NodeRestorer's host: `node` holds everything before `core`'s batch in flight; it counts for acks again. */
  rejoin(node: string, lastTxid: number, core: WriterCore): void {
    this.step(() => this.core.caughtUp(node, lastTxid, core));
  }

  /** NodeRestorer's host: the catch-up of `node` stopped without a rejoin. */
  catchUpEnded(node: string, core: WriterCore): void {
    this.core.catchUpEnded(node, core);
  }

  private async roll(writer: WriterCore, reason: string): Promise<void> {
    this.log.info({ reason, startTxid: writer.segmentTxid, endTxid: writer.lastTxid }, "rolling the segment");
    try {
      const open = await rollSegment(this.jc, writer, this.config, this.clusterId);
      this.step(() => this.core.rolled(writer, open, Date.now()));
    } catch (err) {
      this.step(() => this.core.rollFailed(writer, (err as Error).message));
    }
  }

  // ---- resetting Redis to the journal (writes whose effects pass writeEffectsBytesMax, issue #10 class 5) ----

  /** The same epoch and segment go on; only Redis is discarded and rebuilt up to the last committed txid. */
  private async resetToJournal(writer: WriterCore, reason: string): Promise<void> {
    this.log.warn({ reason }, "resetting Redis to the journal");
    const gone = (): boolean => this.core.writer !== writer;
    try {
      await this.discardRedis();
      if (gone()) return;
      await this.openRedis();
      if (gone()) return;
      // The same journal, the same window (the core keeps it): the rebuild only refills Redis.
      await this.rebuild(writer.inSyncNodes, writer.lastTxid, null);
      if (gone()) return;
      await this.openLink();
    } catch (err) {
      this.failWriter(`resetting Redis to the journal: ${(err as Error).message}`);
      return;
    }
    if (gone()) return;
    this.log.info({ epoch: writer.epoch, txid: writer.lastTxid }, "Redis reset to the journal; serving writes");
    this.step(() => this.core.resetDone(writer));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    this.unsubscribe();
    if (this.timer) clearInterval(this.timer);
    this.presence?.stop();
    this.step(() => this.core.stop());
    await this.discardRedis();
  }
}

function isEmpty(r: MasterReady): boolean {
  return r.execute.length === 0 && r.send.length === 0 && r.answers.length === 0 && !r.flush && !r.takeOrphans && r.startCatchUp.length === 0 && r.roll === null && r.reset === null && r.failed === null && !r.handoverDrained && r.events.length === 0;
}

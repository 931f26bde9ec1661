/**
 * The master actor: the driver loop over the MasterCore (master_core.ts), which decides everything about serving
 * writes, and the wiring of the parts that do the I/O. Each event goes into the core through `step`, which then
 * loops over the core's `ready()` — execute, send, answer, then the rest: the order the durability rule needs —
 * until the core has nothing more to say; the core never calls back into the driver. The parts:
 *   - master_redis.ts: the Redis served (rebuilt from snapshot + journal, or a data node's own caught up; guarded,
 *     promoted, linked; discarded);
 *   - write_intake.ts: client writes off the bus, executed on that Redis, answered;
 *   - effect_stream.ts: its replication stream, cut into one record per write and journaled;
 *   - writer_recovery.ts, node_restorer.ts, segment_roll.ts: becoming the writer, catching journal nodes up, rolling.
 *
 * Life cycle: recovering (new epoch, settle the last segment, rebuild Redis from the journal, open the replication
 * link), or a data node's takeover → writing (a term of the core) → on a failed term: Redis is discarded and the
 * master recovers again as a new writer, or a data node's master steps down.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { EventPublisher } from "../actor/events.js";
import { hearHeartbeats, startPresence, type Presence } from "../actor/presence.js";
import type { Config } from "../config/config.js";
import { ActorMetrics, type MasterMetrics } from "../metrics/actor_metrics.js";
import { serve, serveAll } from "../nats/bus.js";
import { heartbeatOf, parseReadIndexRequest, type ActorStatus, type CommitHint, type JournalReply } from "../protocol/messages.js";
import { encode } from "../protocol/codec.js";
import { subjects } from "../protocol/subjects.js";
import type { CommandTable } from "../redis/command_table.js";
import { DedupeWindow } from "../dedupe/dedupe_window.js";
import type { Logger } from "../util/log.js";
import { EffectStream, type Step } from "./effect_stream.js";
import { JournalClient } from "./journal_client.js";
import { JournalFanout } from "./journal_fanout.js";
import { CommitHints, type CommitNotice } from "./commit_hints.js";
import { MasterCore, batchGroups, isEmptyReady, type MasterReady, type SendOrder, type SendRef } from "./master_core.js";
import { MasterRedis, type AdoptedRedis } from "./master_redis.js";
import { HandoverDrain } from "./handover_drain.js";
import { masterStatus } from "./master_status.js";
import { NodeRestorer } from "./node_restorer.js";
import { recoverWriter, type WriterStart } from "./writer_recovery.js";
import { rollSegment } from "./segment_roll.js";
import { SnapshotClient } from "../snapshot/snapshot_client.js";
import { WriteIntake } from "./write_intake.js";
import { ReadGuard } from "./read_guard.js";
import { ReadIndexServer } from "./read_index.js";
import type { WriterCore } from "./writer_core.js";
import { WriteTracer } from "./write_trace.js";
import { TurnBudget } from "../util/turn_budget.js";

/**
 * A data node's master role (issue #11): the epoch is won already, and the Redis it serves from is the node's own,
 * a replica of `feeder` holding the committed journal up to `appliedTxid` — no rebuild, only the records after it.
 */
export interface Takeover extends AdoptedRedis {
  start: WriterStart;
  /** The command table of this redis-server binary, read by the data node beforehand (COMMAND takes a while). */
  commands?: CommandTable;
  /** The node's dedupe window, which has seen every record up to `appliedTxid`. */
  window?: DedupeWindow;
}

/** What an answer to a batch send needs: the core's ref, and the batch's range for its trace. */
interface SentBatch {
  ref: SendRef;
  traced: boolean;
  firstTxid: number;
  count: number;
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
  /** The actor's metrics (a data node's, shared by every term it serves). */
  metrics?: ActorMetrics;
  /** The committed txid moved (a data node's front door releases reads waiting for it). */
  onCommitted?: () => void;
  /** It serves writes now (a data node sends its heartbeat at once: clients switch to a new master by it). */
  onServing?: () => void;
}

export class Master {
  private stopped = false;
  private readonly core: MasterCore;
  private readonly redis: MasterRedis;
  private readonly stream: EffectStream;
  private readonly intake: WriteIntake;
  /** A reset to the journal in flight (a failed term waits for it before it discards Redis and recovers). */
  private resetting: Promise<void> | null = null;
  private readonly jc: JournalClient;
  /** Batches for several journal nodes, one publish each; null until started and after stopping. */
  private fanout: JournalFanout<SentBatch> | null = null;
  private presence: Presence | null = null;
  /** The queue group's write subject and this node's own (`write.<id>`), served by one intake. */
  private writeSubs: Subscription[] = [];
  private readIndexSub: Subscription | null = null;
  private readIndexToSub: Subscription | null = null;
  /** Reads of this Redis through the node's front door wait for the uncommitted writes they may have seen. */
  readonly readGuard = new ReadGuard();
  private readonly readIndex: ReadIndexServer;
  private readonly heartbeatSubs: Subscription[] = [];
  /**
   * The dedupe window of the Redis served: a data node's (filled by its replica role), or the single-master layout's,
   * filled by each rebuild from the records it replays.
   */
  private window: DedupeWindow;
  private readonly handover = new HandoverDrain();
  private flushScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  /** Commits no fan-out carried yet (CommitHints), and the timer that publishes their hint once it is due. */
  private readonly hints: CommitHints;
  private hintTimer: NodeJS.Timeout | null = null;
  /** performance.now() of the timer's last round: a round that comes late says the process, not Redis, stalled. */
  private timerMs = performance.now();
  /** performance.now() of the last PING sent to an idle Redis (watchRedisStall). */
  private pingedMs = 0;
  private generation = 0;
  private pumping = false;
  private readonly restorer: NodeRestorer;
  private readonly events: EventPublisher;
  /** The journal nodes' cluster id (NodeRestorer formats wiped nodes with it). */
  clusterId = "";
  private readonly metrics: ActorMetrics;
  private readonly m: MasterMetrics;
  /** The incarnation in each journal node's newest heartbeat (a new one: the node restarted). */
  private readonly journalIncarnations = new Map<string, string | number>();
  /** The lastTxid of each journal node's newest heartbeat (its lag while it is not in step). */
  private readonly heardTxid = new Map<string, number>();
  /** The newest batch counted in the batch-size histograms (a resend, or a copy to a rejoining node, is not a new batch). */
  private observedBatch: { writer: WriterCore | null; id: number } = { writer: null, id: 0 };
  /** Per-hop stamps of 1 write in config.traceSample (off at 0). */
  private readonly tracer: WriteTracer;
  private readonly committedSubject: string;
  /**
   * The write path's shares of one loop turn (masterTurnBudgetMs each): one per stage, so that a flood of small
   * writes at the intake cannot starve the stream and the records behind it (with one shared budget those got one
   * step a turn: redis-benchmark's SETs fell to 2,500/s).
   */
  private readonly budgets: { intake: TurnBudget; stream: TurnBudget; records: TurnBudget };

  constructor(
    readonly id: string,
    private readonly config: Config,
    dataDir: string,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly options: MasterOptions = {},
  ) {
    this.metrics = options.metrics ?? ActorMetrics.detached(config.cluster, id, "master");
    this.m = this.metrics.master;
    const jc = (this.jc = new JournalClient(nc, config.cluster, config.journalRequestTimeoutMs));
    const snapshots = new SnapshotClient(nc, jc, config.cluster, config, log);
    const events = (this.events = new EventPublisher(nc, config.cluster, `master.${id}`, log));
    this.window = options.takeover?.window ?? new DedupeWindow(config);
    this.core = new MasterCore(config, undefined, this.window);
    const step: Step = (event) => this.step(event);
    this.tracer = new WriteTracer(config.traceSample);
    this.committedSubject = subjects(config.cluster).committed;
    this.hints = new CommitHints(config.commitHintDelayMs, config.replicaFanoutBytesMax > 0);
    // One share of each loop turn for the write path's large work (bus intake, stream, records): heartbeats are timers.
    const share = config.masterTurnBudgetMs;
    this.budgets = { intake: new TurnBudget(share), stream: new TurnBudget(share), records: new TurnBudget(share) };
    this.stream = new EffectStream(this.core, step, config, log, events, this.tracer, this.budgets.records);
    const port = options.redisPort ?? config.masterRedisPort;
    const commands = options.takeover?.commands;
    this.redis = new MasterRedis({ id, config, dataDir, log, events, jc, snapshots, port, commands, budget: this.budgets.stream }, {
      opening: () => this.stream.opening(),
      command: (args) => this.stream.onCommand(args),
      failed: (err) => this.failWriter(`replication link: ${err.message}`),
    });
    // WATCH's map needs each journaled effect's keys: the command table's key positions.
    this.stream.keysOf = (effect) => this.redis.commands?.keysOf(asBuffers(effect)) ?? null;
    this.intake = new WriteIntake(this.core, step, this.redis, this.stream, config, nc, log, this.m, this.readGuard, this.tracer, id);
    this.readIndex = new ReadIndexServer(jc, config, log, () => {
      const w = this.core.writer;
      return w === null || w.failed ? null : { epoch: w.epoch, committedTxid: w.committedTxid };
    }, (reason) => this.failWriter(reason));
    this.restorer = new NodeRestorer(jc, config, log, events, this, snapshots);
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
    // Requests deferred past the intake's share hold at most writesQueuedBytesMax (bus.ts budgeted).
    const intake = { budget: this.budgets.intake, deferredBytesMax: this.config.writesQueuedBytesMax };
    // Writes addressed to this node (a client that knows the master) go through the same intake, in arrival order with
    // the queue group's: a client switching subjects between two writes cannot have the later one taken first.
    const writeSubjects = [{ subject: s.write, queue: "masters" }, { subject: s.writeTo(this.id) }];
    this.writeSubs = serveAll(this.nc, writeSubjects, this.log, (body, raw) => this.intake.onWrite(body, raw), { limits: this.config, ...intake });
    // Linearizable reads on any node's door: the committed txid, once a majority of journal nodes confirmed the epoch.
    const onReadIndex = (body: unknown) => {
      parseReadIndexRequest(body);
      return this.readIndex.onRequest();
    };
    this.readIndexSub = serve(this.nc, s.readIndex, this.log, onReadIndex, { queue: "masters" });
    // Asked of this node by a door that knows the master (read_path.ts), as writes are.
    this.readIndexToSub = serve(this.nc, s.readIndexTo(this.id), this.log, onReadIndex);
    this.fanout = new JournalFanout<SentBatch>(this.nc, this.config.cluster, this.log, (sent, node, reply) => this.onBatchReply(sent, node, reply));
    const { cluster, heartbeatIntervalMs, orphanEffectsFlushMs } = this.config;
    // Ended with the role: a data node runs one Master per term it serves.
    this.heartbeatSubs.push(
      hearHeartbeats(this.nc, cluster, "journal", (node, data) => {
        const hb = heartbeatOf(data, "journal", node);
        if (hb === null) return;
        this.core.heartbeat(node, Date.now());
        this.noteIncarnation(node, hb.incarnation ?? hb.pid);
        if (typeof hb.lastTxid === "number") this.heardTxid.set(node, hb.lastTxid);
      }),
      hearHeartbeats(this.nc, cluster, "replica", (_replica, data) => {
        this.step(() => this.core.replicaHeartbeat(data, Date.now()));
      }),
    );
    if (this.options.presence !== false) {
      this.presence = startPresence(this.nc, cluster, heartbeatIntervalMs, () => this.status(), this.log);
    }
    this.timer = setInterval(() => this.onTimer(), Math.max(5, Math.min(100, orphanEffectsFlushMs)));
    void this.watchBus();
    if (this.options.takeover !== undefined) void this.takeOver(this.options.takeover);
    else void this.recover();
  }

  status(): ActorStatus {
    const body = masterStatus({
      id: this.id,
      core: this.core,
      journalNodes: this.config.journalNodes,
      health: this.state,
      epochWon: this.options.takeover?.start.epoch ?? 0,
      redisUrl: this.redis.url,
      bootstrap: this.redis.bootstrapProgress,
      heardTxid: this.heardTxid,
    });
    return this.metrics.decorate(body);
  }

  /**
   * After the link to NATS failed over to another server: the batch in flight goes again at once (its replies may have
   * been lost with the old server), and clients are told to send their unanswered writes again (masterReconnected).
   */
  private async watchBus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (this.stopped) return;
      const writer = this.core.writer;
      if (s.type !== "reconnect" || writer === null) continue;
      this.step(() => this.core.busReconnected(Date.now()));
      this.events.publish({ type: "masterReconnected", epoch: writer.epoch, server: s.server });
    }
  }

  /** A journal node's heartbeat came from a new process: what it was sent before is lost (JournalFanout.lost). */
  /** `incarnation`: the heartbeat's, or its pid from an actor too old to send one. */
  private noteIncarnation(node: string, incarnation: unknown): void {
    if (typeof incarnation !== "string" && typeof incarnation !== "number") return;
    const before = this.journalIncarnations.get(node);
    this.journalIncarnations.set(node, incarnation);
    if (before !== undefined && before !== incarnation) this.fanout?.lost(node, `it restarted (incarnation ${before} → ${incarnation})`);
  }

  // ---- the loop over the core ----

  /** The committed txid the serving writer holds (0 while not serving): what the node's door may show of its Redis. */
  get committedTxid(): number {
    return this.core.writer?.committedTxid ?? 0;
  }

  /** Feeds one event to the core, then does what it decided, until it has nothing more to say. */
  private step(event: () => void): void {
    event();
    this.noteUndo();
    if (this.pumping) return; // the loop below takes it
    this.pumping = true;
    try {
      for (let r = this.core.ready(); ; r = this.core.ready()) {
        if (r.committed !== null) {
          this.hints.committed(r.committed, performance.now());
          this.options.onCommitted?.();
          if (this.tracer.on) this.tracer.committed(r.committed.txid);
        }
        if (isEmptyReady(r)) break;
        this.act(r);
        this.noteUndo();
      }
    } finally {
      this.pumping = false;
    }
    this.sendHint();
  }

  /**
   * A commit no batch fan-out carried: its hint now, or a timer for when it is due (CommitHints). A timer whose commit a
   * fan-out carried meanwhile is cleared: at one client that is every commit, and it would wake the loop for nothing.
   */
  private sendHint(): void {
    if (!this.hints.owes) {
      if (this.hintTimer !== null) clearTimeout(this.hintTimer);
      this.hintTimer = null;
      return;
    }
    if (this.hintTimer !== null) return;
    const { publish, againInMs } = this.hints.decide(performance.now());
    if (publish !== null) this.publishCommit(publish);
    if (againInMs === null || this.stopped) return;
    this.hintTimer = setTimeout(() => {
      this.hintTimer = null;
      this.sendHint();
    }, againInMs);
  }

  /** The role ends: no batch will carry a commit still owed, so its hint goes now; no timer is left. */
  private endHints(): void {
    if (this.hintTimer !== null) clearTimeout(this.hintTimer);
    this.hintTimer = null;
    const owed = this.hints.takeOwed();
    if (owed !== null) this.publishCommit(owed);
  }

  /**
   * A commit index no fan-out carried, fanned out by nats-server (issue #13 P4): journal nodes learn it at once (not with
   * the idle notice on the timer) and replicas wake to apply or read it, instead of polling every node.
   */
  private publishCommit(c: CommitNotice): void {
    const hint: CommitHint = { epoch: c.epoch, segmentTxid: c.segmentTxid, committedTxid: c.txid };
    try {
      this.nc.publish(this.committedSubject, encode(hint));
    } catch (err) {
      // A closed connection: the batch's committedTxid and the idle notice still tell the nodes, replicas poll.
      this.log.debug({ err }, "commit hint not published");
    }
  }

  /**
   * Reads wait while the Redis served may hold effects about to be undone or is rebuilt (not serving, a reset to the
   * journal): told before the step's answers go out, so a read waiting for a write the reset discards goes again.
   */
  private noteUndo(): void {
    this.readGuard.undo(this.stopped || !this.core.serving || this.core.resetting);
  }

  /** One Ready, in its order: execute, send, answer, then the rest. */
  private act(r: MasterReady): void {
    for (const id of r.execute) this.intake.execute(id);
    this.sendBatches(r.send);
    for (const { id, reply } of r.answers) this.intake.answer(id, reply);
    this.stream.followReset();
    if (r.flush) this.scheduleFlush();
    if (r.takeOrphans) this.stream.takeOrphans();
    for (const { node, writer } of r.startCatchUp) this.restorer.start(node, writer);
    if (r.roll !== null) void this.roll(r.roll.writer, r.roll.reason);
    if (r.reset !== null) {
      this.resetting = this.resetToJournal(r.reset.writer, r.reset.reason).finally(() => (this.resetting = null));
    }
    if (r.handoverDrained) this.handover.end(true);
    for (const e of r.events) this.events.publish(e);
    if (r.failed !== null) this.onFailed(r.failed);
  }

  private failWriter(reason: string): void {
    this.step(() => this.core.fail(reason));
  }

  /** The term failed (its writes were answered): discard Redis and recover as a new writer. */
  private onFailed(reason: string): void {
    this.log.warn({ reason }, "writer failed");
    this.stream.drop();
    if (this.stopped) return;
    this.handover.end(false);
    // A reset in flight starts a Redis on the same port and fields: let it stop at its next check first.
    const discarded = (this.resetting ?? Promise.resolve()).then(() => this.redis.discard());
    if (this.options.onStepDown === undefined) void discarded.then(() => this.recover());
    else void discarded.then(() => this.endRole(reason));
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
    this.fanout?.expire(Date.now());
    this.watchRedisStall(performance.now());
    const orphansSinceMs = this.stream.onTimer();
    this.step(() => this.core.tick(Date.now(), orphansSinceMs));
  }

  /**
   * A Redis that answers nothing past redisStallMaxMs while a command waits is taken for lost (frozen, not dead: its
   * sockets stay open, so nothing else notices): the writer fails, which discards it. Not when this timer itself came
   * late by half that bound: then this process stalled, not its Redis, and the replies may be waiting in the socket.
   * An idle Redis is sent a PING every quarter of the bound: frozen with no write in flight, it would otherwise stay
   * the master's, every read of the node's door hanging, until the next write.
   */
  private watchRedisStall(nowMs: number): void {
    const lateMs = nowMs - this.timerMs;
    this.timerMs = nowMs;
    const writer = this.redis.writer;
    const bound = this.config.redisStallMaxMs;
    if (!this.core.serving || writer === null) return;
    if (writer.inFlight === 0 && nowMs - this.pingedMs >= bound / 4) {
      this.pingedMs = nowMs;
      // Not journaled: Redis propagates no client's PING. A closed connection rejects it (the link's error says why).
      void writer.call(["PING"]).catch(() => {});
    }
    const waitedMs = Math.round(writer.silentMs(nowMs));
    if (waitedMs <= bound || lateMs > bound / 2) return;
    this.log.error({ waitedMs, redisStallMaxMs: bound }, "its Redis answered nothing for too long: taken for lost, killed");
    this.redis.kill();
    this.failWriter(`its Redis answered no command for ${waitedMs} ms (redisStallMaxMs ${bound})`);
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
    void this.redis.discard().then(() => this.endRole(reason));
  }

  private unsubscribe(): void {
    for (const sub of this.writeSubs.splice(0)) sub.unsubscribe();
    this.readIndexSub?.unsubscribe();
    this.readIndexSub = null;
    this.readIndexToSub?.unsubscribe();
    this.readIndexToSub = null;
    this.readIndex.close("this master stopped serving");
    this.fanout?.close();
    this.fanout = null;
    for (const sub of this.heartbeatSubs.splice(0)) sub.unsubscribe();
  }

  /** The end of a data node's master role: nothing more is served, and the data node is told why. */
  private endRole(reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe();
    if (this.timer) clearInterval(this.timer);
    this.endHints();
    this.presence?.stop();
    // Writes still queued were never executed: NOT_WRITER, the client retries them at the new master.
    this.step(() => this.core.stop(`this node stepped down: ${reason}`));
    this.readGuard.close();
    this.options.onStepDown?.(reason);
  }

  /**
   * A planned switchover: admission stops; true once every admitted write is committed and answered (queued ones
   * wait), false if the writer failed meanwhile or `resumeAdmission` called it off.
   */
  drainForHandover(): Promise<boolean> {
    if (!this.core.serving || this.handover.waiting) return Promise.resolve(false);
    const drained = this.handover.wait();
    this.step(() => this.core.startHandover());
    return drained;
  }

  /** The switchover did not happen (its drain timed out, the standby refused): serve on. */
  resumeAdmission(): void {
    this.handover.end(false);
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

  /** The single-master layout, and after a failed term: a new epoch, a Redis of its own rebuilt, then serve. */
  private async recover(): Promise<void> {
    const generation = ++this.generation;
    const wanted = (): boolean => this.state === "recovering" && generation === this.generation;
    const won = await recoverWriter(this.jc, this.config, this.log, this.redis, wanted);
    if (won === null) return;
    this.clusterId = won.start.clusterId;
    this.window = won.window;
    if (this.stopped) return;
    this.serveAs(won.start);
  }

  /** The writer of `start`'s epoch serves: its first segment is open on `start.inSync`. */
  private serveAs(start: WriterStart): void {
    const { epoch, endTxid, decision } = start;
    this.events.publish({ type: "writerElected", epoch, endTxid, decision });
    this.log.info({ epoch, segmentTxid: endTxid + 1, decision }, "serving writes");
    this.step(() => this.core.start(epoch, endTxid + 1, start.inSync, Date.now(), this.window));
    // Clients switch to a new master on its heartbeat (client/master_choice.ts): the first one now, not a beat later.
    this.presence?.beat();
    this.options.onServing?.();
  }

  /** A data node's takeover (master_redis.ts): a failure here is a step-down, its Redis discarded with the rest. */
  private async takeOver(t: Takeover): Promise<void> {
    const generation = ++this.generation;
    this.clusterId = t.start.clusterId;
    let ms: Record<string, number> | null;
    try {
      ms = await this.redis.takeOver(t, this.window, () => generation !== this.generation);
    } catch (err) {
      this.log.warn({ err }, "taking over failed");
      if (generation === this.generation) this.stepDown(`taking over: ${(err as Error).message}`);
      return;
    }
    if (ms === null || generation !== this.generation || this.stopped) return;
    const { appliedTxid, start } = t;
    this.log.info({ appliedTxid, endTxid: start.endTxid, ms }, "took over: the data node's Redis serves writes");
    this.serveAs(start);
  }

  // ---- journal nodes ----

  /**
   * A Ready's sends, in order; the sends of one batch to several nodes (one WriterCore output: they are adjacent) go as
   * one fan-out publish, a send to one node (a resend, a rejoin, the catch-up's) as a request.
   */
  private sendBatches(sends: readonly SendOrder[]): void {
    for (const group of batchGroups(sends)) this.sendBatch(group);
  }

  /** One batch to one or more nodes: every send's ref gets exactly one answer (a node's reply, or TIMEOUT). */
  private sendBatch(sends: readonly SendOrder[]): void {
    const { epoch, batch, timeoutMs } = sends[0];
    const { segmentTxid, firstTxid, count, records, committedTxid } = batch;
    const { ref } = sends[0];
    const seen = this.observedBatch;
    if (count > 0 && (seen.writer !== ref.writer || batch.id > seen.id)) {
      seen.writer = ref.writer;
      seen.id = batch.id;
      this.m.batch(count, records.length);
    }
    const traced = this.tracer.on && count > 0 && this.tracer.batchSent(firstTxid, count);
    const req = { type: "journal", epoch, segmentTxid, firstTxid, count, records, committedTxid, ...(traced ? { trace: true as const } : {}) } as const;
    const now = Date.now();
    const targets = sends.map((s) => ({ node: s.node, ref: { ref: s.ref, traced, firstTxid, count } }));
    // A node late with an answer gets its own request (fanoutLateMs): if it died, "no responders" says so at once.
    const fan = this.fanout;
    const fanned = fan === null ? [] : targets.filter((t) => !fan.late(t.node, now, this.config.fanoutLateMs));
    const published = fanned.length > 1 && fan!.send(req, fanned, timeoutMs, now);
    // Replicas hear every fan-out, whichever nodes it names: its commit index needs no hint of its own.
    if (published) this.hints.fannedOut(epoch, committedTxid);
    const alone = published ? targets.filter((t) => !fanned.includes(t)) : targets;
    for (const t of alone) void this.jc.call(t.node, req, timeoutMs).then((reply) => this.onBatchReply(t.ref, t.node, reply));
  }

  private onBatchReply(sent: SentBatch, node: string, reply: JournalReply): void {
    if (sent.traced && reply.ok) this.tracer.acked(node, sent.firstTxid, sent.count, "trace" in reply ? reply.trace : undefined);
    this.step(() => this.core.journalReply(sent.ref, reply.ok ? { ok: true } : reply, Date.now()));
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

  /** Redis holds effects that cannot be journaled (issue #10 class 5): it is rebuilt from the journal, same epoch. */
  private async resetToJournal(writer: WriterCore, reason: string): Promise<void> {
    this.log.warn({ reason }, "resetting Redis to the journal");
    const gone = (): boolean => this.core.writer !== writer;
    try {
      if (!(await this.redis.resetToJournal(writer, gone))) return;
    } catch (err) {
      this.failWriter(`resetting Redis to the journal: ${(err as Error).message}`);
      return;
    }
    this.log.info({ epoch: writer.epoch, txid: writer.lastTxid }, "Redis reset to the journal; serving writes");
    this.step(() => this.core.resetDone(writer));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    this.unsubscribe();
    if (this.timer) clearInterval(this.timer);
    this.endHints();
    this.presence?.stop();
    this.step(() => this.core.stop());
    this.readGuard.close();
    await this.redis.discard();
  }
}

/** An effect's arguments as Buffers: the stream's are already (no copy of a 10k-argument effect per record: s24). */
function asBuffers(effect: readonly Uint8Array[]): Buffer[] {
  for (const a of effect) if (!Buffer.isBuffer(a)) return effect.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  return effect as Buffer[];
}

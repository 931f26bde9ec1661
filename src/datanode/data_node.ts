/**
 * A data node (issue #11): one actor that owns one persistent Redis and plays one of two roles. As a replica it tails
 * the committed journal into its Redis (src/replica/replica.ts) and is a hot standby; as the master it serves writes
 * from that same Redis (src/master/master.ts, takeover mode). A thin driver of the DataNodeCore (data_node_core.ts,
 * which the simulator drives too): the core decides when to campaign, step down, hand the Redis over and rejoin; this
 * file does what it orders and feeds the outcomes back. Winning a new epoch on a majority of journal nodes is what
 * makes a node master, and fences the old one.
 *
 * A master's Redis may hold effects that were never committed, so it is never trusted as a replica's copy: on a
 * step-down, and on a restart after the node was master (a marker file says so), the Redis data is wiped and the
 * replica role starts over from the newest snapshot and the journal.
 */
import fs from "node:fs";
import path from "node:path";
import { randomInt, randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { INCARNATION } from "../actor/incarnation.js";
import type { Config } from "../config/config.js";
import { ActorMetrics } from "../metrics/actor_metrics.js";
import { request, serve } from "../nats/bus.js";
import { replyMux } from "../nats/reply_mux.js";
import { encode } from "../protocol/codec.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { heartbeatOf, parseControlRequest, type ActorStatus, type ControlReply, type ControlRequest } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";
import { JournalClient } from "../master/journal_client.js";
import { Master } from "../master/master.js";
import { establishWriter, type WriterStart } from "../master/writer_recovery.js";
import { CampaignDeferred } from "../master/recovery_core.js";
import { redisPassword, wipeRedisData, type RedisServer } from "../redis/redis_server.js";
import { RespDoor } from "../frontdoor/door.js";
import type { CommandTable } from "../redis/command_table.js";
import type { Feeder } from "../redis/feeder.js";
import { DedupeWindow } from "../dedupe/dedupe_window.js";
import { Replica } from "../replica/replica.js";
import { EventPublisher } from "../actor/events.js";
import { writeFileDurably } from "../util/durable_file.js";
import type { Logger } from "../util/log.js";
import type { MasterProbe, PeerBeat } from "./election_core.js";
import { DataNodeCore, type DataNodeOrder, type SelfView, type SwitchoverOutcome } from "./data_node_core.js";
import { probeMaster } from "./master_probe.js";
import { readRefusal } from "../frontdoor/read_gate.js";
import { LoopWatch } from "../metrics/loop_watch.js";

/** Present while this node's Redis is (or may be) a master's: it is wiped before the node serves as a replica again. */
const MASTER_MARKER = "master-role.json";
/** How often the event loop's worst delay is taken (and a stall logged). */
const LOOP_WATCH_INTERVAL_MS = 1000;

export class DataNode {
  private replica: Replica | null = null;
  private lose!: (why: string) => void;
  /** Settles once the replica it runs lost its redis-server (Replica.lost): the process restarts (run_actor.ts). */
  readonly lost = new Promise<string>((resolve) => (this.lose = resolve));
  private master: Master | null = null;
  /** A master role that ended, until the rejoin stopped it. */
  private retired: Master | null = null;
  /** The replica's Redis, from its release to the takeover (or to a rejoin, if a step-down came first). */
  private handed: { redis: RedisServer; feeder: Feeder; appliedTxid: number } | null = null;
  private readonly core: DataNodeCore;
  private readonly jc: JournalClient;
  private readonly events: EventPublisher;
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** The role change under way (a campaign, a release, a takeover, a rejoin): stop() waits for it. */
  private changing: Promise<void> | null = null;
  /** The redis-server's command table, read once while a replica: a takeover need not wait for COMMAND. */
  private commands: CommandTable | undefined;
  /** Answers the operator's switchover request once the core says how it ended. */
  private switchoverDone: ((outcome: SwitchoverOutcome) => void) | null = null;
  /** The dedupe window of this node's Redis: the replica role feeds it, the master role answers retries from it. */
  private window: DedupeWindow | null = null;
  /** The RESP front door (issue #12), on `respPort`; null when there is none (port 0). */
  private door: RespDoor | null = null;
  /** Why the front door is not listening (its port taken…): the node serves on without it, and says so in status. */
  private doorError: string | null = null;
  /** The front door's own bus connection (doorBus), closed after the door. */
  private doorNc: NatsConnection | null = null;
  /** The event loop's worst delays (status details): a stall here is what lets a standby depose this node. */
  private readonly loop: LoopWatch;

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly dataDir: string,
    private readonly redisPort: number,
    readonly priority: number,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    /** The RESP front door's port; null: none. */
    private readonly respPort: number | null = null,
    /** The actor's metrics: its master and replica roles feed them by turns. */
    private readonly metrics: ActorMetrics = ActorMetrics.detached(config.cluster, id, "data"),
    /**
     * The front door's own bus connection: its clients' writes, reads' index rounds and pub/sub then never queue
     * ahead of this node's heartbeats, election and journal traffic in one socket (issue #12 review). Absent: `nc`.
     */
    private readonly doorBus: (() => Promise<NatsConnection>) | null = null,
  ) {
    // Both roles' series from the start: a standby shows zero acked writes rather than no such series.
    void metrics.master;
    void metrics.replica;
    this.core = new DataNodeCore(id, priority, config, Date.now());
    this.jc = new JournalClient(nc, config.cluster, config.journalRequestTimeoutMs);
    this.events = new EventPublisher(nc, config.cluster, `data.${id}`, log);
    this.loop = new LoopWatch(log, LOOP_WATCH_INTERVAL_MS, Math.floor(config.masterTimeoutMs / 6));
  }

  async start(): Promise<void> {
    this.wipeIfWasMaster();
    const s = subjects(this.config.cluster);
    for (const role of ["master", "replica"] as const) {
      this.subs.push(this.nc.subscribe(s.heartbeat(role, "*"), { callback: (err, msg) => void (err === null && this.onBeat(msg.subject, msg.data)) }));
    }
    this.subs.push(serve(this.nc, s.status, this.log, () => this.status()));
    this.subs.push(serve(this.nc, s.control(this.id), this.log, (body) => this.onControl(parseControlRequest(body))));
    void this.watchLink();
    await this.startReplica();
    this.core.beating(Date.now());
    this.timer = setInterval(() => this.onTimer(), this.config.masterHeartbeatIntervalMs);
    await this.openDoor();
  }

  /** The front door opens once the replica serves its Redis; a door that cannot listen is logged, never fatal. */
  private async openDoor(): Promise<void> {
    if (this.respPort === null || this.stopped) return;
    const nc = this.doorBus === null ? this.nc : await this.doorBus();
    if (nc !== this.nc) {
      this.doorNc = nc;
      // Its clients' requests, one per socket event, leave once per turn (reply_mux.ts): nothing else shares it.
      replyMux(nc).sendsPerTurn();
    }
    if (this.stopped) return void (await this.doorNc?.drain().catch(() => {}));
    const door = new RespDoor({
      id: this.id,
      port: this.respPort,
      config: this.config,
      nc,
      log: this.log.child({ door: this.respPort }),
      redisPort: this.redisPort,
      redisPassword: redisPassword(this.config.dataDir),
      commands: () => this.commands,
      status: () => this.status(),
      role: () => (this.master !== null ? "master" : "replica"),
      readRefusal: () => readRefusal({ phase: this.core.phase, master: this.master !== null, replica: this.replica?.readState ?? null }),
      visibleTxid: () => this.visibleTxid(),
      guard: () => this.master?.readGuard ?? null,
    });
    try {
      await door.start();
      this.door = door;
    } catch (err) {
      this.doorError = (err as Error).message;
      this.log.error({ err, port: this.respPort }, "the RESP front door cannot listen: serving without it");
      await door.stop().catch(() => {});
    }
  }

  /**
   * What this node's Redis shows that is committed: a master's committed txid (its Redis holds more, executed and not
   * yet committed, which reads wait out), a replica's applied txid. Reads that need a txid wait for this.
   */
  private visibleTxid(): number {
    if (this.master !== null) return this.master.committedTxid;
    return this.replica?.readState.appliedTxid ?? 0;
  }

  status(): ActorStatus {
    this.noteServing();
    const inner = this.master?.status() ?? this.replica?.status() ?? null;
    const base: ActorStatus = inner ?? this.metrics.decorate({ role: "replica", id: this.id, pid: process.pid, incarnation: INCARNATION, epoch: 0, lastTxid: 0, committedTxid: 0, appliedTxid: 0, health: "starting", redisUrl: null, details: {} });
    // Won but not yet serving (the replica hands its Redis over): still "campaigning", so nobody else starts.
    const campaigning = this.core.campaigning && this.master === null;
    const door = this.respPort === null ? null : { port: this.respPort, listening: this.door !== null, connections: this.door?.connections ?? 0, ...(this.doorError === null ? {} : { error: this.doorError }) };
    const loop = { loopDelayMaxMs: this.loop.maxMs, loopDelayLastMs: this.loop.lastMs };
    const details = { ...base.details, dataNode: true, dataRole: this.core.role, dataPhase: this.core.phase, masterEpochHeard: this.core.masterEpochHeard, respDoor: door, ...loop };
    return { ...base, id: this.id, health: campaigning ? "campaigning" : base.health, priority: this.priority, details };
  }

  /** A replica that stopped on an apply fault, or a node not yet serving its Redis, cannot take over. */
  private get eligible(): boolean {
    return this.replica !== null && this.replica.eligible;
  }

  /** The takeover is done once the master role writes: the core's takeover deadline stops there. */
  private noteServing(): void {
    if (this.core.phase === "takingOver" && this.master?.status().health === "writing") this.core.serving();
  }

  private onTimer(): void {
    // Every data node beats at the master's rate: the standbys rank each other by these.
    this.beat();
    if (this.stopped) return;
    this.noteServing();
    // A role change moves what the Redis shows without an apply or a commit (a snapshot load, a takeover).
    this.door?.advanced();
    this.core.tick(this.selfView(), Date.now());
    this.drive();
  }

  /** Our subscriptions were gone while the link was down, and perhaps the master's too: the core trusts no probe for a while. */
  private async watchLink(): Promise<void> {
    for await (const s of this.nc.status()) if (s.type === "reconnect") this.core.linkReconnected(Date.now());
  }

  private selfView(): SelfView {
    return { appliedTxid: this.replica?.status().appliedTxid ?? 0, eligible: this.eligible };
  }

  private async probe(probe: MasterProbe): Promise<void> {
    const answer = await probeMaster(this.nc, subjects(this.config.cluster).control(probe.id), this.config.masterProbeAfterMs);
    if (this.stopped) return;
    const gone = this.core.probed(probe, answer, this.selfView(), Date.now());
    if (gone) this.log.info({ master: probe.id, epoch: probe.epoch, answer }, "the silent master is gone (probe): not waiting out its timeout");
    this.drive();
  }

  private beat(): void {
    const { details: _d, redisUrl: _u, metricsUrl: _m, rate: _r, ...hb } = this.status();
    try {
      this.nc.publish(subjects(this.config.cluster).heartbeat(hb.role === "master" ? "master" : "replica", this.id), encode(hb));
    } catch (err) {
      this.log.debug({ err }, "heartbeat not sent");
    }
  }

  private onBeat(subject: string, data: Uint8Array): void {
    const beat = peerBeatOf(subject, data);
    // Only the configured data nodes take part in elections.
    if (beat === null || this.stopped || !this.config.dataNodes.includes(beat.id)) return;
    this.core.heard(beat, Date.now());
    this.drive();
  }

  private backoffMs(): number {
    return randomInt(0, this.config.electionBackoffMsMax + 1);
  }

  /** Does what the core ordered, in order; each order's outcome goes back to the core, which may order more. */
  private drive(): void {
    for (const order of this.core.ready()) this.order(order);
  }

  private order(o: DataNodeOrder): void {
    switch (o.kind) {
      case "campaign":
        return this.change("campaign", () => this.campaign(o.rank));
      case "releaseReplica":
        return this.change("release", () => this.release(o.start));
      case "takeOver":
        return this.change("takeover", () => this.takeOver(o.start));
      case "stopMaster":
        // No master yet: the takeover sees the core's phase once its marker is written, and ends there.
        return this.master?.stepDown(o.reason);
      case "abandon":
        this.log.fatal({ reason: o.reason }, "a role change cannot finish: exiting");
        return process.exit(1);
      case "rejoin":
        return this.change("rejoin", () => this.rejoin(o.wipe, o.reason));
      case "probeMaster":
        return void this.probe(o.probe);
      default:
        return this.switchoverOrder(o);
    }
  }

  // ---- planned switchover ----

  private async onControl(req: ControlRequest): Promise<ControlReply> {
    if (req.type === "probe") return { ok: true, type: "role", role: this.core.role, epoch: this.core.epoch };
    if (req.type === "campaign") {
      if (!this.core.campaignNow({ eligible: this.eligible })) {
        throw new QjmError(ErrorCode.ILLEGAL_STATE, `${this.id} cannot campaign now (${this.core.phase}${this.eligible ? "" : ", not eligible"})`);
      }
      this.log.info({ from: req.from }, "the master hands over to this node");
      this.drive();
      return { ok: true, type: "campaigning" };
    }
    return await this.handOver(req.to);
  }

  /**
   * The master's side of a planned switchover, as the DataNodeCore decides it: admission stops and everything admitted
   * commits and is answered, then the chosen standby is asked to campaign and this node ends its role (queued writes
   * are answered NOT_WRITER, to be retried at the new master). The standby's new epoch fences this one; no write is
   * lost or answered twice.
   */
  private async handOver(to: string | null): Promise<ControlReply> {
    this.noteServing();
    const status = this.master?.status();
    if (status === undefined || status.health !== "writing") throw new QjmError(ErrorCode.NOT_WRITER, `${this.id} is not serving writes`);
    const started = this.core.startSwitchover(to, Date.now(), this.config.quorumTimeoutMs);
    if (!started.ok) throw new QjmError(started.code, started.reason);
    const done = new Promise<SwitchoverOutcome>((resolve) => (this.switchoverDone = resolve));
    this.drive();
    const outcome = await done;
    if (!outcome.ok) throw new QjmError(outcome.code, outcome.reason);
    return { ok: true, type: "handedOver", from: this.id, to: outcome.target, epoch: status.epoch };
  }

  /** A switchover's orders (the DataNodeCore's): each outcome goes back to it. */
  private switchoverOrder(o: Extract<DataNodeOrder, { kind: "drain" | "askCampaign" | "resumeAdmission" | "handOff" | "switchoverDone" }>): void {
    switch (o.kind) {
      case "drain": {
        const master = this.master;
        if (master === null) return this.feed(() => this.core.drainEnded(false));
        return void master.drainForHandover().then((drained) => this.feed(() => this.core.drainEnded(drained)));
      }
      case "askCampaign": {
        const asked = request(this.nc, subjects(this.config.cluster).control(o.target), { type: "campaign", from: this.id }, this.config.journalRequestTimeoutMs);
        return void asked
          .catch((err: Error) => ({ ok: false, message: err.message }))
          .then((reply) => {
            const r = reply as { ok?: unknown; message?: unknown };
            this.feed(() => this.core.targetAnswered(r.ok === true, String(r.message)));
          });
      }
      case "resumeAdmission":
        this.log.warn({ reason: o.reason }, "the switchover did not happen: serving on");
        return this.master?.resumeAdmission();
      case "handOff":
        this.log.info({ to: o.target }, "handing over: drained, the standby campaigns");
        return this.master?.handOff(o.reason);
      case "switchoverDone": {
        const done = this.switchoverDone;
        this.switchoverDone = null;
        return done?.(o.outcome);
      }
    }
  }

  /** Feeds the core one event, then does what it ordered. */
  private feed(event: () => void): void {
    if (this.stopped) return;
    event();
    this.drive();
  }

  // ---- roles ----

  private async startReplica(): Promise<void> {
    // A window per Redis incarnation: a wiped Redis starts over from txid 1 or a snapshot, and so does its window.
    this.window = new DedupeWindow(this.config);
    const replica = new Replica(this.id, this.config, this.dataDir, this.redisPort, this.nc, this.log, false, this.window, this.metrics);
    await replica.start();
    this.commands ??= await replica.commandTable();
    replica.onApplied = () => this.door?.advanced();
    this.replica = replica;
    // A released replica's Redis is the master role's: its loss shows on the master's replication link instead.
    void replica.lost.then((why) => {
      if (this.replica === replica && !this.stopped) this.lose(why);
    });
  }

  /** Win the next epoch on a majority of journal nodes (the core then orders the release of the replica's Redis). */
  private async campaign(rank: number): Promise<void> {
    this.log.info({ rank }, "no master heard: campaigning for the next epoch");
    this.beat();
    const campaignMs = Date.now();
    let start;
    const attempt = { epochAsked: 0 };
    try {
      start = await establishWriter(this.jc, this.config, this.log, randomUUID(), this.core.campaignGuard, attempt);
    } catch (err) {
      const backoffMs = randomInt(this.config.electionBackoffMsMax / 4, this.config.electionBackoffMsMax + 1);
      const deferred = err instanceof CampaignDeferred;
      if (deferred) this.log.info({ promisedEpoch: err.promisedEpoch, backoffMs }, "another campaign is under way: deferring to it");
      else this.log[err instanceof QjmError ? "warn" : "error"]({ err, backoffMs }, "campaign lost");
      this.core.lost(Date.now(), backoffMs, deferred ? err.promisedEpoch : attempt.epochAsked);
      return;
    }
    if (this.stopped) return;
    this.log.info({ epoch: start.epoch, epochMs: Date.now() - campaignMs }, "won the epoch");
    this.events.publish({ type: "elected", node: this.id, epoch: start.epoch, endTxid: start.endTxid });
    this.core.won(start, Date.now());
    this.drive();
  }

  /** The replica stops tailing and hands its Redis (the committed prefix) over. */
  private async release(start: WriterStart): Promise<void> {
    const releasedMs = Date.now();
    const replica = this.replica!;
    this.replica = null;
    this.handed = await replica.release();
    this.log.info({ epoch: start.epoch, releaseMs: Date.now() - releasedMs }, "the replica handed its Redis over");
    if (this.stopped) return;
    this.core.released(Date.now(), this.backoffMs(), this.handed.appliedTxid);
    this.drive();
  }

  /** Serve from the handed-over Redis: the master role applies the journal's tail into it, then serves. */
  private async takeOver(start: WriterStart): Promise<void> {
    const handed = this.handed!;
    this.handed = null;
    // From here the Redis may hold effects that never commit: a restart must not take it for a replica's copy.
    await writeFileDurably(this.dataDir, MASTER_MARKER, JSON.stringify({ epoch: start.epoch }) + "\n");
    if (this.stopped || this.core.phase !== "takingOver") {
      // Stopped, or told to step down while the marker was written: the role ends before it started.
      await handed.feeder.close().then(() => handed.redis.stop());
      if (!this.stopped) this.onMasterEnded(null, "stepped down before the master role started");
      return;
    }
    const master = new Master(this.id, this.config, this.dataDir, this.nc, this.log, {
      takeover: { start, ...handed, commands: this.commands, window: this.window ?? undefined },
      redisPort: this.redisPort,
      presence: false,
      metrics: this.metrics,
      onStepDown: (reason) => this.onMasterEnded(master, reason),
      onCommitted: () => this.door?.advanced(),
      onServing: () => this.beat(),
    });
    this.master = master;
    await master.start();
  }

  /** The master role ended (fenced, stepped down, failed): the core orders the wipe and the rejoin. */
  private onMasterEnded(master: Master | null, reason: string): void {
    if (this.master !== master || this.stopped) return;
    this.log.warn({ reason }, "stepping down: rejoining as a replica");
    this.events.publish({ type: "steppedDown", node: this.id, reason });
    this.retired = master;
    this.master = null;
    this.core.ended(reason, Date.now(), this.backoffMs());
    this.drive();
  }

  /** The replica role starts again, on a wiped Redis if a master served from it. */
  private async rejoin(wipe: boolean, reason: string): Promise<void> {
    const retired = this.retired;
    this.retired = null;
    await retired?.stop();
    const handed = this.handed;
    this.handed = null;
    if (handed !== null) await handed.feeder.close().then(() => handed.redis.stop());
    if (wipe) this.wipeIfWasMaster();
    if (this.stopped) return;
    this.log.info({ reason, wipe }, "rejoining as a replica");
    await this.startReplica();
    this.core.rejoined();
  }

  /**
   * A role change runs in the background (the core allows one at a time). One that fails midway leaves the node with
   * neither role and a Redis in an unknown state: the process exits, and its supervisor starts it afresh (a former
   * master's Redis is wiped at start).
   */
  private change(what: string, run: () => Promise<void>): void {
    const p: Promise<void> = run()
      .catch((err: unknown) => {
        this.log.fatal({ err, what }, "a role change failed midway: exiting");
        process.exit(1);
      })
      .finally(() => {
        if (this.changing === p) this.changing = null;
      });
    this.changing = p;
  }

  private wipeIfWasMaster(): void {
    const marker = path.join(this.dataDir, MASTER_MARKER);
    if (!fs.existsSync(marker)) return;
    this.log.warn("this node's Redis was a master's: wiping it, to rebuild from the snapshot and the journal");
    wipeRedisData(path.join(this.dataDir, "redis"));
    // The wipe is durable before the marker goes: a power loss must not bring back the AOF without the marker.
    fsyncDir(path.join(this.dataDir, "redis"));
    fs.rmSync(marker, { force: true });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.loop.stop();
    if (this.timer) clearInterval(this.timer);
    this.switchoverDone?.({ ok: false, code: "NOT_WRITER", reason: `${this.id} is stopping` });
    this.switchoverDone = null;
    await this.door?.stop().catch((err: unknown) => this.log.warn({ err }, "the RESP front door did not close cleanly"));
    await this.doorNc?.drain().catch(() => {});
    for (const sub of this.subs) sub.unsubscribe();
    await this.changing?.catch(() => {});
    await this.master?.stop();
    await this.retired?.stop();
    await this.replica?.stop();
    const handed = this.handed;
    if (handed !== null) await handed.feeder.close().then(() => handed.redis.stop());
  }
}

function fsyncDir(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A data node's heartbeat, if the body is the one its subject names (a subject alone proves nothing). */
function peerBeatOf(subject: string, data: Uint8Array): PeerBeat | null {
  const parts = subject.split(".");
  const role = parts.at(-2);
  const id = parts.at(-1);
  const hb = role === undefined || id === undefined ? null : heartbeatOf(data, role, id);
  if (hb === null) return null;
  const num = (v: unknown): number => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : 0);
  const health = typeof hb.health === "string" ? hb.health : "";
  return {
    id: id!,
    role: role === "master" ? "master" : health === "campaigning" ? "candidate" : "replica",
    epoch: num(hb.epoch),
    appliedTxid: num(hb.appliedTxid),
    priority: typeof hb.priority === "number" ? num(hb.priority) : 0,
    eligible: health === "ok" || health === "degraded",
  };
}

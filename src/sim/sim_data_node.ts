/**
 * A data node in the simulation (issue #11), driven as data_node.ts drives it: the same DataNodeCore decides when to
 * campaign, release the replica's Redis, take over, step down and rejoin; this driver does what it orders with the
 * simulator's roles and feeds the outcomes back. One model Redis and one dedupe window per node: the replica role
 * (a SimReplica over the node's Redis, feeding its window) and the master role (a SimMaster in role mode: one
 * recovery per campaign, a takeover that applies applied+1..end into the node's Redis, no rebuild).
 *
 * The Redis is persistent while the node is a replica; from the takeover on it may hold uncommitted effects (a marker
 * says so, as production's file does), so a step-down or a restart wipes it and the replica role starts from txid 1.
 * A stop (SIGSTOP) freezes the node: its timers and the messages it receives wait until it resumes.
 */
import { ModelRedis } from "./model_redis.js";
import type { Config } from "../config/config.js";
import type { DataNodeCore, DataNodeOrder, SelfView } from "../datanode/data_node_core.js";
import type { MasterProbe, ProbeAnswer } from "../datanode/election_core.js";
import type { DedupeWindow } from "../dedupe/dedupe_window.js";
import { ErrorCode, errorReply } from "../protocol/errors.js";
import type { SimClock, SimTimer } from "./clock.js";
import type { SimCores } from "./cores.js";
import type { Invariants } from "./invariants.js";
import type { Prng } from "./prng.js";
import type { SimActor, SimBus, SimMessage } from "./sim_bus.js";
import { SimMaster } from "./sim_master.js";
import { SimReplica } from "./sim_replica.js";
import type { Trace } from "./trace.js";

/** How long a replica's release and a rejoin's restart take at most (simulated). */
const ROLE_CHANGE_MS_MAX = 40;

export interface SimDataNodeFaults {
  /** Drawn at each takeover: true, its Redis stops answering and the takeover never finishes on its own. */
  takeoverHangs(): boolean;
}

export class SimDataNode implements SimActor {
  up = false;
  private incarnation = 0;
  private frozen = false;
  /** What arrived or fell due while frozen, in order. */
  private held: (() => void)[] = [];
  private core: DataNodeCore;
  /** The node's Redis: the replica role's, then the master role's. */
  redis = new ModelRedis();
  /** What the Redis holds of the journal while it is a replica's (persists across restarts, as its applied key does). */
  private appliedTxid = 0;
  /** Production's marker file: the Redis may hold a master's uncommitted effects. */
  private marker = false;
  private window: DedupeWindow;
  private replica: SimReplica | null = null;
  private readonly master: SimMaster;
  private handed: { redis: ModelRedis; appliedTxid: number } | null = null;
  /** The other data nodes (heartbeats go to them). */
  peers: string[] = [];

  /** Who hears the master role's `writerElected` event (the clients). */
  set electionListeners(clients: readonly string[]) {
    this.master.electionListeners = clients;
  }
  /** The roles' clock: a stop freezes it. */
  private readonly timer: SimTimer;
  /** Times this node took over and served (for the run's stats). */
  takeovers = 0;
  /** Probes of a silent master in flight, by request id (the core paces them, as data_node.ts's). */
  private readonly probing = new Map<number, MasterProbe>();
  /** Planned switchovers asked of this node, and how many handed over (for the run's stats). */
  switchovers = { asked: 0, handedOver: 0 };
  /** The target's answer to "campaign now" that the switchover waits for (its request id). */
  private askedCampaign: number | null = null;

  constructor(
    readonly id: string,
    readonly priority: number,
    private readonly config: Config,
    private readonly clock: SimClock,
    private readonly bus: SimBus,
    private readonly trace: Trace,
    private readonly cores: SimCores,
    private readonly invariants: Invariants,
    private readonly requestIds: { next(): number },
    private readonly prng: Prng,
    faults: SimDataNodeFaults,
  ) {
    this.timer = { get nowMs() { return clock.nowMs; }, after: (ms, run) => clock.after(ms, () => this.whenAwake(run)) };
    this.core = cores.dataNodeCore(id, priority, config, clock.nowMs, config.journalNodes);
    this.window = cores.dedupeWindow(config);
    this.master = new SimMaster(id, config, this.timer, bus, trace, cores, invariants, requestIds);
    this.master.takeoverHangs = () => faults.takeoverHangs();
    this.master.hintReaders = config.dataNodes;
    this.master.role = {
      won: (start) => this.feed(() => this.core.won(start, this.clock.nowMs)),
      lost: (_reason, knownPromise) => this.feed(() => this.core.lost(this.clock.nowMs, this.backoffMs(true), knownPromise)),
      campaignGuard: () => this.core.campaignGuard,
      serving: () => {
        this.takeovers++;
        this.feed(() => this.core.serving());
      },
      ended: (reason) => this.feed(() => this.core.ended(reason, this.clock.nowMs, this.backoffMs(false))),
    };
  }

  /** Serving writes: the master role writes in the core's serving phase. */
  get serving(): boolean {
    return this.up && !this.frozen && this.core.phase === "serving" && this.master.writing;
  }

  get phase(): string {
    return this.core.phase;
  }

  /** The replica role's applied txid (0 while it has none). */
  get replicaApplied(): number | null {
    return this.replica?.appliedTxid ?? null;
  }

  /** For a failure's message: the phase, the replica's applied txid and whether it could take over. */
  describe(): string {
    const self = this.self();
    const state = this.up ? `${this.core.phase}${this.frozen ? " (frozen)" : ""}${this.serving ? " (serving)" : ""}` : "down";
    return `${this.id} ${state} applied ${self.appliedTxid}${self.eligible ? "" : " (not eligible)"}`;
  }

  /** Journal nodes its master role brought back, and segments it rolled (for the run's stats). */
  get rejoins(): number {
    return this.master.rejoins;
  }

  get rolls(): number {
    return this.master.rolls;
  }

  /** Batch fan-outs its master role published. */
  get fanouts(): number {
    return this.master.fanouts;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  start(): void {
    if (this.up) return;
    this.up = true;
    const generation = ++this.incarnation;
    if (this.marker) this.wipe("it was a master's at the crash");
    this.core = this.cores.dataNodeCore(this.id, this.priority, this.config, this.clock.nowMs, this.config.journalNodes);
    this.trace.add(this.id, `data node start (applied ${this.appliedTxid})`);
    this.startReplica();
    const tick = (): void => {
      if (this.incarnation !== generation) return;
      this.beat();
      this.feed(() => this.core.tick(this.self(), this.clock.nowMs));
      this.timer.after(this.config.masterHeartbeatIntervalMs, tick);
    };
    this.core.beating(this.clock.nowMs);
    this.timer.after(this.config.masterHeartbeatIntervalMs, tick);
  }

  /** kill -9: every role stops; the Redis keeps what it persisted (a replica's), a master's is wiped at restart. */
  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.incarnation++;
    this.frozen = false;
    this.held = [];
    this.probing.clear();
    this.trace.add(this.id, `data node crash (${this.core.phase})`);
    if (this.replica !== null) this.appliedTxid = this.replica.appliedTxid;
    this.replica?.crash();
    this.replica = null;
    this.master.crash();
    if (this.handed !== null) this.appliedTxid = this.handed.appliedTxid;
    this.handed = null;
  }

  /** SIGSTOP: nothing runs until `resume`. */
  freeze(): void {
    if (!this.up || this.frozen) return;
    this.frozen = true;
    this.trace.add(this.id, `data node stopped (${this.core.phase})`);
  }

  /** SIGCONT: what fell due or arrived meanwhile runs now, in order. */
  resume(): void {
    if (!this.frozen) return;
    this.frozen = false;
    this.trace.add(this.id, `data node resumes (${this.held.length} held)`);
    const held = this.held;
    this.held = [];
    for (const run of held) if (!this.frozen) this.whenAwake(run);
  }

  private whenAwake(run: () => void): void {
    if (this.frozen) this.held.push(run);
    else run();
  }

  onMessage(from: string, msg: SimMessage): void {
    const generation = this.incarnation;
    this.whenAwake(() => {
      if (this.incarnation === generation) this.receive(from, msg);
    });
  }

  private receive(from: string, msg: SimMessage): void {
    switch (msg.kind) {
      case "dataBeat":
        return this.feed(() => this.core.heard(msg.beat, this.clock.nowMs));
      case "reply":
        // Request ids are unique: the role that asked takes it, the other ignores it.
        this.replica?.onMessage(from, msg);
        return this.master.onMessage(from, msg);
      case "heartbeat":
        return this.master.onMessage(from, msg);
      case "commitHint":
      case "fanout":
        return this.replica?.onMessage(from, msg);
      case "probe":
        return void this.bus.send(this.id, from, { kind: "probeAnswer", id: msg.id, answer: { kind: "answered", role: this.core.role, epoch: this.core.epoch } });
      case "probeAnswer":
        return this.probed(msg.id, msg.answer);
      case "campaignNow":
        return this.onCampaignNow(from, msg.id);
      case "campaignReply":
        if (msg.id !== this.askedCampaign) return;
        this.askedCampaign = null;
        return this.feed(() => this.core.targetAnswered(msg.ok, msg.message));
      case "write":
        // Only the master role serves writes (production: only it subscribes to the write subjects).
        if (this.core.phase === "takingOver" || this.core.phase === "serving") return this.master.onMessage(from, msg);
        return void this.bus.send(this.id, from, { kind: "writeReply", id: msg.id, reply: errorReply(ErrorCode.NOT_WRITER, `${this.id} is not the master`) });
      default:
        return;
    }
  }

  private self(): SelfView {
    return { appliedTxid: this.replica?.appliedTxid ?? this.appliedTxid, eligible: this.replica?.eligible ?? false };
  }

  private beat(): void {
    const beat = this.core.beat(this.self());
    for (const peer of this.peers) this.bus.send(this.id, peer, { kind: "dataBeat", beat });
  }

  private backoffMs(lostCampaign: boolean): number {
    const max = this.config.electionBackoffMsMax;
    return lostCampaign ? this.prng.int(Math.floor(max / 4), max) : this.prng.int(0, max);
  }

  /** Feeds the core one event, then does what it ordered. */
  private feed(event: () => void): void {
    event();
    for (const order of this.core.ready()) this.order(order);
  }

  private order(o: DataNodeOrder): void {
    const generation = this.incarnation;
    const later = (run: () => void): void => this.timer.after(this.prng.int(0, ROLE_CHANGE_MS_MAX), () => {
      if (this.incarnation === generation) run();
    });
    switch (o.kind) {
      case "campaign":
        this.trace.add(this.id, `campaigns (rank ${o.rank})`);
        return this.master.campaign();
      case "releaseReplica":
        return later(() => this.release());
      case "takeOver":
        return this.takeOver(o.start);
      case "stopMaster":
        this.trace.add(this.id, `steps down: ${o.reason}`);
        return this.master.stepDown(o.reason);
      case "abandon":
        this.trace.add(this.id, `abandons: ${o.reason}`);
        this.crash();
        return this.clock.after(this.prng.int(10, 500), () => this.start());
      case "rejoin":
        return this.rejoin(o.wipe, o.reason, later);
      case "probeMaster":
        return this.probe(o.probe, generation);
      default:
        return this.switchoverOrder(o);
    }
  }

  /** As data_node.ts: one request to the silent master's node; no answer within masterProbeAfterMs says nothing. */
  private probe(probe: MasterProbe, generation: number): void {
    const id = this.requestIds.next();
    this.probing.set(id, probe);
    this.bus.send(this.id, probe.id, { kind: "probe", id });
    this.timer.after(this.config.masterProbeAfterMs, () => {
      if (this.incarnation === generation) this.probed(id, { kind: "noAnswer" });
    });
  }

  private probed(id: number, answer: ProbeAnswer): void {
    const probe = this.probing.get(id);
    if (probe === undefined) return;
    this.probing.delete(id);
    this.feed(() => {
      if (this.core.probed(probe, answer, this.self(), this.clock.nowMs)) this.trace.add(this.id, `probed ${probe.id}: gone (${answer.kind === "answered" ? `${answer.role} in epoch ${answer.epoch}` : "no responders"})`);
    });
  }

  // ---- a planned switchover (data_node.ts: handOver, onControl), decided by the DataNodeCore ----

  /** An operator asks this node to hand over (to `to`, or the first standby in line), as `redis-qjm failover` does. */
  switchover(to: string | null): void {
    // A stopped node does not answer its control subject: the request times out, nothing changes.
    if (!this.up || this.frozen) return;
    if (!this.serving) return this.trace.add(this.id, `switchover refused: not serving writes`);
    this.switchovers.asked++;
    this.feed(() => {
      const started = this.core.startSwitchover(to, this.clock.nowMs, this.config.quorumTimeoutMs);
      this.trace.add(this.id, started.ok ? `switchover to ${started.target}: draining` : `switchover refused: ${started.reason}`);
    });
  }

  private switchoverOrder(o: Extract<DataNodeOrder, { kind: "drain" | "askCampaign" | "resumeAdmission" | "handOff" | "switchoverDone" }>): void {
    switch (o.kind) {
      case "drain":
        return this.master.drainForHandover((drained) => this.feed(() => this.core.drainEnded(drained)));
      case "askCampaign": {
        const id = this.requestIds.next();
        const generation = this.incarnation;
        this.askedCampaign = id;
        this.bus.send(this.id, o.target, { kind: "campaignNow", id });
        // Production's request times out after journalRequestTimeoutMs: the master serves on.
        return this.timer.after(this.config.journalRequestTimeoutMs, () => {
          if (this.incarnation !== generation || this.askedCampaign !== id) return;
          this.askedCampaign = null;
          this.feed(() => this.core.targetAnswered(false, "no answer"));
        });
      }
      case "resumeAdmission":
        this.trace.add(this.id, `switchover called off (${o.reason}): serving on`);
        return this.master.resumeAdmission();
      case "handOff":
        this.trace.add(this.id, `hands over to ${o.target}: drained, the standby campaigns`);
        return this.master.handOff(o.reason);
      case "switchoverDone":
        if (o.outcome.ok) this.switchovers.handedOver++;
        else this.trace.add(this.id, `switchover failed: ${o.outcome.code} ${o.outcome.reason}`);
        return;
    }
  }

  /** The draining master chose this node: campaign at once if it can (data_node.ts onControl "campaign"). */
  private onCampaignNow(from: string, id: number): void {
    let ok = false;
    this.feed(() => {
      ok = this.core.campaignNow({ eligible: this.replica?.eligible ?? false });
    });
    const message = ok ? "" : `${this.id} cannot campaign now (${this.core.phase}${this.replica?.eligible ? "" : ", not eligible"})`;
    if (ok) this.trace.add(this.id, `${from} hands over to this node: campaigns now`);
    this.bus.send(this.id, from, { kind: "campaignReply", id, ok, message });
  }

  private release(): void {
    const replica = this.replica!;
    const generation = this.incarnation;
    replica.release((handed, reason) => {
      if (this.incarnation !== generation) return; // the node crashed meanwhile (crash() stops the warm-up too)
      this.replica = null;
      if (handed === null) {
        // Production's role change fails midway (the release's warm-up gave up): the process exits, and restarts.
        this.trace.add(this.id, `the release failed: ${reason}; the node restarts`);
        this.appliedTxid = replica.appliedTxid;
        this.crash();
        return void this.clock.after(this.prng.int(10, 500), () => this.start());
      }
      this.handed = handed;
      this.appliedTxid = handed.appliedTxid;
      this.feed(() => this.core.released(this.clock.nowMs, this.backoffMs(false), this.appliedTxid));
    });
  }

  private takeOver(start: Parameters<SimMaster["takeOver"]>[0]): void {
    const handed = this.handed!;
    this.handed = null;
    this.marker = true;
    this.trace.add(this.id, `takes over epoch ${start.epoch}: applies ${handed.appliedTxid + 1}..${start.endTxid}`);
    this.master.takeOver(start, handed.redis, this.window, handed.appliedTxid);
  }

  private rejoin(wipe: boolean, reason: string, later: (run: () => void) => void): void {
    this.trace.add(this.id, `rejoins as a replica${wipe ? " on a wiped Redis" : ""}: ${reason}`);
    if (this.handed !== null) this.appliedTxid = this.handed.appliedTxid;
    this.handed = null;
    if (wipe) this.wipe("it was a master's");
    later(() => {
      this.startReplica();
      this.feed(() => this.core.rejoined());
    });
  }

  /** The Redis may hold effects that never committed: it starts over from the journal, and so does its window. */
  private wipe(why: string): void {
    this.trace.add(this.id, `wipes its Redis: ${why}`);
    this.redis = new ModelRedis();
    this.appliedTxid = 0;
    this.marker = false;
    this.invariants.replicaWiped(this.id);
  }

  private startReplica(): void {
    // A window per Redis incarnation, as data_node.ts: the replica role warms it with what its Redis already holds.
    this.window = this.cores.dedupeWindow(this.config);
    const role = { redis: this.redis, appliedTxid: this.appliedTxid, window: this.window };
    this.replica = new SimReplica(this.id, this.config, this.timer, this.bus, this.trace, this.cores, this.invariants, this.requestIds, role);
    this.replica.start();
  }
}

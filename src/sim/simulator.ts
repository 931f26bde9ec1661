/**
 * One seeded run of the protocol cores: journal nodes, masters, replicas and a client in one process, on a simulated
 * clock, bus and disks. The seed picks the cluster's shape and fault rates (a swarm, as TigerBeetle's VOPR does),
 * then a safety phase of `steps` events with crashes, restarts, partitions, disk errors and flipped bits at any
 * step, then a liveness phase with every fault healed that must converge: a write acked, every replica caught up.
 * The same seed gives the same run, byte for byte (the trace hash says so).
 */
import { defaults, validateConfig, type Config } from "../config/config.js";
import { assert } from "../util/assert.js";
import { SimClock } from "./clock.js";
import { realCores, type SimCores } from "./cores.js";
import { Invariants } from "./invariants.js";
import { Prng } from "./prng.js";
import type { WriteId } from "../protocol/messages.js";
import { SimBus, type BusOptions, type ClientOp, type SimActor, type SimMessage } from "./sim_bus.js";
import { SimJournalNode } from "./sim_journal_node.js";
import { SimMaster } from "./sim_master.js";
import { SimForger } from "./sim_forger.js";
import { SimReplica } from "./sim_replica.js";
import { ttlClientOp } from "./model_redis.js";
import { Trace } from "./trace.js";
import { OrderedWritesCore, type AttemptOutcome, type OrderedFailure } from "../client/ordered_writes.js";
import { backoffMs, verdictOf } from "../client/retry.js";
import { ErrorCode } from "../protocol/errors.js";

/** Steps of the safety phase when none is given. */
export const SIM_STEPS_DEFAULT = 3000;
import { LIVENESS_WRITES_MS, runPhases, simResult } from "./liveness.js";
export { DISK_CHECK_EVERY_STEPS, failureOf, journalNodesUnable, LIVENESS_MS_MAX, LIVENESS_WRITES_MS } from "./liveness.js";
const KEYS = ["k1", "k2", "k3"];

export interface SimOptions {
  seed: number;
  steps?: number;
  cores?: SimCores;
  /** Print every trace line as it happens. */
  echo?: boolean;
  /**
   * Faults from the first step, before the first writer formatted the cluster (default). false: faults and a lossy
   * network wait for the first writer.
   */
  bootstrapFaults?: boolean;
  /** Overrides the seed's chance that a recovery's copy request (read or recoveryAppend) is lost. */
  copyFaultChance?: number;
  /** Overrides the seed's chance that a new writer's segment diverges on a minority (the scripted fault of class 1). */
  divergeChance?: number;
  /** Overrides whether a forger sends journal nodes fuzzed requests through the safety phase (class 3). */
  forger?: boolean;
  /** Overrides the seed's chance of a journal node crash aimed inside a disk program (between two primitive calls). */
  crashInsideChance?: number;
  /** Overrides whether the client's writes include the TTL workload (issue #10 class 2: model_redis.ts). */
  ttl?: boolean;
  /** Overrides the seed's longest hold of a replica's read before it applies it (0: none). */
  replayDelayMsMax?: number;
  /** Overrides the seed's number of client connections (ordered groups) the writes go through in turn. */
  connections?: number;
}

/**
 * The seed's bound on a replica's fan-out buffer (replicaFanoutBytesMax), from its own PRNG: off (replicas only read, as
 * before issue #13 P4), a bound a lagging replica passes (a batch or two: the buffer drops its oldest and the replica
 * reads them), or production's.
 */
export function fanoutBytesMaxOf(seed: number): number {
  return new Prng(seed ^ 0xfa0b5).pick([0, 2048, 16384, defaults.replicaFanoutBytesMax, defaults.replicaFanoutBytesMax]);
}

/** The seed's number of client connections (ordered groups), from its own PRNG: the rest of the run draws as before. */
export function connectionsOf(seed: number): number {
  return new Prng(seed ^ 0xc0ecc).pick([1, 2, 4, 8]);
}

export interface SimResult {
  seed: number;
  ok: boolean;
  failure: string | null;
  /** The last trace lines (what led to the failure). */
  trace: string[];
  hash: string;
  steps: number;
  simMs: number;
  stats: { forged: number; journalNodes: number; masters: number; replicas: number; acked: number; failed: number; unknown: number; committed: number; applied: number; fanouts: number; appliedFromFanout: number; appliedFromReads: number; fanoutsRefused: number; writers: number; corruptReadsRefused: number; faults: number; rejoins: number; rolls: number; livenessNotPromised: number; retries: number; duplicates: number; takeovers?: number; switchovers?: number; handedOver?: number; keyspaceChecks: number; lateTtls: number; orderPairs: number; lateUnknown: number; twinRan: number };
}

/** The simulation's timeouts, scaled down from the defaults so a short run sees many failovers. */
export function simConfig(journalNodes: string[], replicas: string[], batchRecordsMax: number): Config {
  const config: Config = {
    ...defaults,
    journalNodes,
    replicas,
    heartbeatIntervalMs: 100,
    journalHeartbeatTimeoutMs: 400,
    quorumTimeoutMs: 500,
    batchResendMs: 150,
    epochRequestTimeoutMs: 300,
    journalRequestTimeoutMs: 600,
    writerRetryMs: 100,
    replicaPollMs: 20,
    // Scaled like the heartbeats (500 → 100 ms): a lost commit hint costs what it would in production, relatively.
    replicaBackstopPollMs: 100,
    batchRecordsMax,
    writeBytesMax: 16 * 1024,
    writesInflightMax: 256,
    writesQueuedMax: 256,
    journalBatchesInflightMax: 16,
    journalQueueMax: 64,
    readRecordsMax: 40,
    catchUpIntervalMs: 200,
    // Rolls happen many times a run, and in-flight batches are bounded in bytes as well as in count (issue #11).
    segmentMaxRecords: 64,
    batchBytesMax: 512,
    journalInflightBytesMax: 768,
    writesInflightBytesMax: 4096,
    writesQueuedBytesMax: 4096,
    // The dedupe window scaled down (issue #11), so that a run's retries also meet writes that left it (RETRY_EXPIRED).
    dedupeWindowRecords: 512,
    dedupeWindowBytesMax: 64 * 1024,
    dedupeClientsMax: 8,
    dedupeReplyBytesMax: 256,
  };
  const errors = validateConfig(config);
  assert(errors.length === 0, `simulation config: ${errors.join("; ")}`);
  return config;
}

/** One attempt's timeout (the library's timeoutMs, quorumTimeoutMs × 2 there; here × 4, as the simulation always had). */
const CLIENT_TIMEOUT_QUORUMS = 4;
/** How long a write is retried (the library's clientRetryForMs, 30 s against a 5 s quorum timeout: scaled the same). */
const CLIENT_RETRY_FOR_MS = 3000;
/** The resend rounds' backoff (the library's clientRetryBackoffMinMs/MaxMs, scaled down like the timeouts). */
const CLIENT_BACKOFF = { clientRetryBackoffMinMs: 20, clientRetryBackoffMaxMs: 160 };
/** Chance that a write is sent without a write id (a client without the library): journaled as a v1 record, never retried. */
const NO_ID_CHANCE = 0.1;

/** An attempt on its way: how it settles in the group (null: a write without an id, sent once, outside the group). */
interface Attempt {
  writeId: WriteId | null;
  /** Where it went. */
  to: string;
  settle: ((outcome: AttemptOutcome<{ txid: number }>) => void) | null;
}

/**
 * A client issuing SET/INCR/DEL on a few keys, counting what came back. Its writes with an id go, in turn, through
 * `connections` connections' pipelines: per connection, the client library's very group (OrderedWritesCore,
 * ordered_writes.ts) sends them, names in each attempt the connection's unanswered write just before it (`id.after`)
 * and, after a retryable failure (NO_QUORUM, NOT_WRITER, OVERLOADED, no answer within the attempt's timeout, or a new
 * master elected meanwhile), resends the unanswered ones together, in order, with the same ids, until
 * CLIENT_RETRY_FOR_MS: the retries the masters' dedupe windows must apply once (issue #11) and their write order must
 * keep in order (write_order.ts; invariants.ts ConnectionOrder). Attempts go to the master that announced its
 * election, else to a random one (the queue group; the data-node layout: the node that acked last). A write without
 * an id is sent once, outside the groups (a client without the library).
 */
export class SimClient implements SimActor {
  up = true;
  writing = true;
  /** Attempts not yet answered nor timed out, by their bus message id (one per attempt). */
  private readonly waiting = new Map<number, Attempt>();
  /** The write id of every attempt sent (a late answer of a timed-out one is still checked against the log). */
  private readonly sentIds = new Map<number, WriteId>();
  counts = { acked: 0, failed: 0, unknown: 0, ackedAfterHeal: 0, retries: 0, duplicates: 0 };
  healed = false;
  private seq = 0;
  private attemptSeq = 0;
  /** The highest epoch a master announced (client.ts epochSeen), and that master while it serves (client.ts `master`). */
  private epochSeen = 0;
  private master: string | null = null;
  /** Sticky: the node that last acked a write, asked first (as the client library learns the master); null: random. */
  private lastGood: string | null = null;
  /** The TTL workload's own PRNG (null: SET/INCR/DEL only), so that the rest of the run draws as without it. */
  ttl: Prng | null = null;
  /** One ordered group per connection (the library's `ordered()`, one per front-door connection: ids from one seq). */
  private readonly groups: OrderedWritesCore<{ txid: number }>[];
  /** Seqs of the group's writes sent at least once: a second attempt is a retry. */
  private readonly sentOnce = new Set<number>();

  constructor(
    readonly id: string,
    private readonly masters: string[],
    private readonly clock: SimClock,
    private readonly bus: SimBus,
    private readonly prng: Prng,
    private readonly config: Config,
    private readonly intervalMsMax: number,
    private readonly invariants: Invariants,
    /** Send to the node that acked last, if any (the data-node layout, where only one node serves). */
    private readonly sticky = false,
    /** Connections the writes with an id go through, in turn. */
    connections = 1,
  ) {
    this.groups = Array.from({ length: connections }, () => this.newGroup());
  }

  private newGroup(): OrderedWritesCore<{ txid: number }> {
    return new OrderedWritesCore({
      nextId: () => ({ client: this.id, seq: this.seq }),
      attempt: (body, settle) => this.attempt(body.id, (body as { args: unknown[] }).args[0] as ClientOp, settle),
      pauseMs: (round) => backoffMs(round, CLIENT_BACKOFF, () => this.prng.next()),
      sleep: (ms, then) => this.clock.after(ms, then),
      now: () => this.clock.nowMs,
      retryForMs: CLIENT_RETRY_FOR_MS,
      closed: () => false,
    });
  }

  start(): void {
    const issue = (): void => {
      if (!this.writing) return;
      this.seq++;
      const op = this.nextOp();
      if (this.prng.chance(NO_ID_CHANCE)) this.attempt(null, op, null);
      else {
        const connection = this.seq % this.groups.length;
        const id = this.groups[connection].write([op], { resolve: () => {}, reject: (f) => this.gaveUp(f) });
        this.invariants.connectionWrite(id, `${this.id}/${connection}`);
      }
      this.clock.after(this.prng.int(1, this.intervalMsMax), issue);
    };
    issue();
  }

  /** One attempt: to a random master (or the one that acked last); its timeout settles it unless answered first. */
  private attempt(writeId: WriteId | null, op: ClientOp, settle: Attempt["settle"]): void {
    const msgId = ++this.attemptSeq;
    // A copy: the group names another `after` on the write's next attempt, and this one may still be on its way.
    const sentId = writeId === null ? null : { ...writeId };
    if (sentId !== null) {
      this.sentIds.set(msgId, sentId);
      if (this.sentOnce.has(sentId.seq)) this.counts.retries++;
      this.sentOnce.add(sentId.seq);
    }
    // To the master that announced itself (client.ts `write.<id>`), else as the layout's client picks (the queue group).
    const to = this.master ?? (this.sticky && this.lastGood !== null ? this.lastGood : this.prng.pick(this.masters));
    this.waiting.set(msgId, { writeId: sentId, to, settle });
    // Delivered twice (NATS never does; the bus may), a copy refused may run all the same: the invariants know.
    if (this.bus.send(this.id, to, { kind: "write", id: msgId, writeId: sentId, op }) === 2 && sentId !== null) this.invariants.connectionDuplicated(sentId);
    this.clock.after(this.config.quorumTimeoutMs * CLIENT_TIMEOUT_QUORUMS, () => {
      const a = this.waiting.get(msgId);
      if (a === undefined) return;
      // No answer: the node may be gone; the next attempt asks another. The attempt may still be on its way.
      this.waiting.delete(msgId);
      this.lastGood = null;
      this.forget(a.to);
      if (a.settle === null) this.counts.unknown++;
      else a.settle({ ok: false, code: ErrorCode.TIMEOUT, message: "no answer" });
    });
  }

  /**
   * A master announced its election (client.ts watchElections): writes go to it from now on (until it answers as no
   * master, or not at all: a connection spread over a dead master and a live one could not keep its order), and every attempt still
   * waiting settles at once as "a new master was elected", which its group resends without a pause. The attempt itself
   * may still be on its way, or queued at the old master: its copy and the resend race (write_order.ts).
   */
  private elected(from: string, epoch: number): void {
    if (epoch <= this.epochSeen) return;
    this.epochSeen = epoch;
    this.master = from;
    if (this.sticky) this.lastGood = from;
    for (const [msgId, a] of [...this.waiting]) {
      if (a.settle === null) continue;
      this.waiting.delete(msgId);
      a.settle({ ok: false, code: ErrorCode.TIMEOUT, message: "a new master was elected while the write waited for its answer", newMaster: true });
    }
  }

  /** `node` answered as no master, or not at all (client.ts `forget`): back to the layout's pick until the next election. */
  private forget(node: string): void {
    if (this.master === node) this.master = null;
  }

  /** The group gave a write up (a definite failure, or its retries' deadline passed). */
  private gaveUp(f: OrderedFailure): void {
    if (f.outcomeUnknown) this.counts.unknown++;
    else this.counts.failed++;
    this.invariants.connectionGaveUp(f.id, f.outcomeUnknown ? "unknown" : verdictOf(f.code).retry ? "notApplied" : "answered");
  }

  private nextOp(): ClientOp {
    const key = this.prng.pick(KEYS);
    const r = this.prng.next();
    if (this.ttl !== null && this.ttl.chance(0.5)) return ttlClientOp(this.ttl, key, KEYS);
    if (r < 0.45) return { op: "SET", key, value: String(this.prng.int(0, 999)) };
    if (r < 0.9) return { op: "INCR", key };
    return { op: "DEL", key };
  }

  onMessage(from: string, msg: SimMessage): void {
    if (msg.kind === "writerElected") return this.elected(from, msg.epoch);
    if (msg.kind !== "writeReply") return;
    const reply = msg.reply;
    if (reply.ok) this.lastGood = from;
    else if (this.lastGood === from && verdictOf(reply.code).retry) this.lastGood = null;
    if (!reply.ok && (reply.code === ErrorCode.NOT_WRITER || reply.code === ErrorCode.NO_QUORUM)) this.forget(from);
    // Whatever attempt answered (a late one too), the txid must hold this very write (its first commit, for a duplicate).
    const sentId = this.sentIds.get(msg.id);
    if (reply.ok && sentId !== undefined) this.invariants.ackedWrite(sentId, reply.txid, reply.duplicate === true);
    const a = this.waiting.get(msg.id);
    if (a === undefined) return; // timed out already (or a second copy): the library no longer waits for it
    this.waiting.delete(msg.id);
    if (reply.ok) {
      if (reply.duplicate === true) this.counts.duplicates++;
      this.counts.acked++;
      if (this.healed) this.counts.ackedAfterHeal++;
    }
    if (a.settle !== null) a.settle(reply.ok ? { ok: true, result: { txid: reply.txid } } : { ok: false, code: reply.code, message: reply.message });
    else if (!reply.ok) this.counts.failed++;
  }
}

/** What every run starts from, whatever its layout: the seed's PRNG, the clock, the trace, the cores, the invariants. */
export interface SimBase {
  prng: Prng;
  clock: SimClock;
  trace: Trace;
  cores: SimCores;
  invariants: Invariants;
  requestIds: { next(): number };
}

export function simBase(options: { seed: number; echo?: boolean; cores?: SimCores }): SimBase {
  const clock = new SimClock();
  const trace = new Trace(clock);
  trace.echo = options.echo ?? false;
  let requestSeq = 0;
  const requestIds = { next: () => ++requestSeq };
  return { prng: new Prng(options.seed), clock, trace, cores: options.cores ?? realCores, invariants: new Invariants(), requestIds };
}

export function runSimulation(options: SimOptions): SimResult {
  const seed = options.seed;
  const { prng, clock, trace, cores, invariants, requestIds } = simBase(options);

  // The swarm: the cluster's shape and fault rates, from the seed.
  const journalNodes = Array.from({ length: prng.chance(0.2) ? 5 : 3 }, (_, i) => `jn${i + 1}`);
  const replicaIds = Array.from({ length: prng.int(1, 2) }, (_, i) => `r${i + 1}`);
  const masterIds = prng.chance(0.3) ? ["m1", "m2"] : ["m1"];
  const busOptions: BusOptions = {
    delayMsMin: prng.int(0, 1),
    delayMsMax: prng.int(2, 20),
    slowChance: prng.pick([0, 0.005, 0.02, 0.05]),
    slowDelayMsMax: prng.int(50, 1500),
    lossChance: prng.pick([0, 0.001, 0.01, 0.05]),
    duplicateChance: prng.pick([0, 0.01, 0.05]),
  };
  const nemesisMsMax = prng.pick([100, 300, 1000]);
  const bitFlips = prng.chance(0.3);
  const config = { ...simConfig(journalNodes, replicaIds, prng.pick([4, 8, 32])), replicaFanoutBytesMax: fanoutBytesMaxOf(seed) };
  const crashAfterFirstCommit = prng.pick([0, 0.2, 0.5]);
  const bus = new SimBus(clock, prng, busOptions, trace);
  trace.add("sim", `seed ${seed}: ${journalNodes.length} journal nodes, ${masterIds.length} masters, ${replicaIds.length} replicas; bus ${JSON.stringify(busOptions)}; nemesis every ≤${nemesisMsMax} ms; bit flips ${bitFlips}`);

  // Crashes aimed inside the journal nodes' disk programs (merges, installs, segment starts…), from their own PRNG.
  const crashPrng = new Prng(seed ^ 0xc4a5d);
  const crashInside = { chance: options.crashInsideChance ?? crashPrng.pick([0, 0.1, 0.25]), prng: crashPrng, safety: () => phase === "safety", restart: (jn: SimJournalNode) => restartLater(jn, 1500) };
  const jnOptions = { diskOpMsMax: prng.int(0, 5), diskErrorChance: prng.pick([0.2, 0.5, 1]), crashInside };
  const jns = journalNodes.map((id) => new SimJournalNode(id, config, clock, bus, prng, trace, cores, invariants, jnOptions));
  const masters = masterIds.map((id) => new SimMaster(id, config, clock, bus, trace, cores, invariants, requestIds));
  for (const m of masters) m.hintReaders = replicaIds;
  for (const m of masters) m.electionListeners = ["c1"];
  // Faults aimed at recoveries' copies of the chosen segment (issue #10, class 1), from their own PRNG so that the
  // shape of every seed's cluster stays what it was.
  const copyPrng = new Prng(seed ^ 0x5eed1);
  const copyFaultChance = options.copyFaultChance ?? copyPrng.pick([0, 0.2, 0.5, 0.8]);
  for (const m of masters) {
    m.recoveryCopyFault = () => (phase === "safety" && copyPrng.chance(copyFaultChance) ? copyPrng.pick(["request", "reply"] as const) : null);
  }
  const divergeChance = options.divergeChance ?? copyPrng.pick([0, 0.2, 0.5]);
  trace.add("sim", `recovery copy faults ${copyFaultChance}, diverging minority ${divergeChance}`);
  const replicas = replicaIds.map((id) => new SimReplica(id, config, clock, bus, trace, cores, invariants, requestIds));
  const connections = options.connections ?? connectionsOf(seed);
  const client = new SimClient("c1", masterIds, clock, bus, prng, config, prng.pick([2, 5, 15, 40]), invariants, false, connections);
  // The TTL workload and replays held past its TTLs (issue #10, class 2), from their own PRNG.
  const ttlPrng = new Prng(seed ^ 0x7e1a7);
  if (options.ttl ?? ttlPrng.chance(0.8)) client.ttl = ttlPrng;
  const replayDelayMsMax = options.replayDelayMsMax ?? ttlPrng.pick([0, 500, 2000, 5000]);
  const held = (): boolean => replayDelayMsMax > 0 && phase === "safety" && ttlPrng.chance(0.05);
  for (const rep of replicas) rep.replayDelayMs = () => (held() ? ttlPrng.int(1, replayDelayMsMax) : 0);
  trace.add("sim", `TTL workload ${client.ttl !== null}, replay held up to ${replayDelayMsMax} ms, ${connections} client connections, replicas' fan-out buffer ${config.replicaFanoutBytesMax} bytes`);
  for (const a of [...jns, ...masters, ...replicas, client]) bus.register(a);
  for (const jn of jns) jn.masters = masterIds;
  const everyone = [...jns, ...masters, ...replicas, client].map((a) => a.id);
  // Its own PRNG, and outside the partitions: the rest of the seed's run is drawn as without it.
  const forgerPrng = new Prng(seed ^ 0xf0f9e4);
  const forger = options.forger ?? forgerPrng.chance(0.3) ? new SimForger("f1", journalNodes, clock, bus, forgerPrng, trace, config, forgerPrng.pick([2, 10, 40]), replicaIds) : null;
  if (forger !== null) bus.register(forger);
  // Only one journal node ever gets flipped bits: a bit flip is a lost copy, and a majority must keep one.
  const corruptible = prng.pick(jns);

  let faults = 0;

  let phase = "safety" as "safety" | "liveness";
  const restartLater = (actor: { start(): void; up: boolean }, maxMs: number): void => {
    clock.after(prng.int(10, maxMs), () => {
      if (phase === "safety" && !actor.up) actor.start();
    });
  };
  /** Set while a scripted fault runs (the random nemesis then waits, so as not to blur the schedule it aims at). */
  let scripted = false;
  const nemesis = (): void => {
    if (phase !== "safety") return;
    if (scripted) return void clock.after(prng.int(10, nemesisMsMax), nemesis);
    faults++;
    const r = prng.next();
    if (r < 0.3) {
      const jn = prng.pick(jns);
      if (jn.up) {
        jn.crash();
        restartLater(jn, 1500);
      }
    } else if (r < 0.42) {
      const m = masters[0];
      if (m.up) {
        m.crash();
        restartLater(m, 1000);
      }
    } else if (r < 0.5) {
      const rep = prng.pick(replicas);
      if (rep.up) {
        rep.crash();
        restartLater(rep, 1000);
      }
    } else if (r < 0.72) {
      partitionSome(prng, bus, clock, everyone);
    } else if (r < 0.82) {
      diskFaultWindow(prng, jns, clock, trace);
    } else if (r < 0.87) {
      if (bitFlips) corruptible.flipBit();
    } else if (masters.length > 1) {
      const zombie = masters[1];
      if (!zombie.up) {
        zombie.start();
        clock.after(prng.int(100, 2000), () => zombie.crash());
      }
    }
    clock.after(prng.int(10, nemesisMsMax), nemesis);
  };

  /**
   * A new segment whose first records reach one journal node only, then a writer that restarts that segment without
   * it, then a recovery over that node and a node of the newer writer (issue #10, class 1): the node's own records
   * stand under txids the newer writer committed, and a recovery that fails to copy the chosen records to it must not
   * let it accept. Scripted: {master, X} cut from the rest, then X alone, then X back and another journal node and the
   * master crashed (the recovery's copy then fails at copyFaultChance).
   */
  /** Stage 2 of the script: X is isolated until the next writer commits without it (or this long passed). */
  let onDivergedCommit: (() => void) | null = null;
  let onDivergedWriter: (() => void) | null = null;
  const divergeAt = (m: SimMaster, inSync: readonly string[]): void => {
    if (phase !== "safety" || m !== masters[0] || scripted || !copyPrng.chance(divergeChance)) return;
    faults++;
    scripted = true;
    const xId = copyPrng.pick(inSync);
    const x = jns.find((jn) => jn.id === xId)!;
    // Long enough for the writer to journal records on X only and fail its batches (quorumTimeoutMs).
    const alone = bus.cut([m.id, x.id, client.id]);
    clock.after(copyPrng.int(400, 800), () => {
      bus.heal(alone);
      if (phase !== "safety") return void (scripted = false);
      // The client waits with X until the next writer serves: its first batch then holds a few records only.
      let isolated = bus.cut([x.id, client.id]);
      onDivergedWriter = () => {
        onDivergedWriter = null;
        if (phase !== "safety") return; // every cut was healed for good
        bus.heal(isolated);
        isolated = bus.cut([x.id]);
      };
      let done = false;
      // The next writer's first commit ends it: it then holds fewer records than X (else X lacks some and refuses anyway).
      const end = (): void => {
        if (done) return;
        done = true;
        onDivergedCommit = null;
        onDivergedWriter = null;
        bus.heal(isolated);
        scripted = false;
        if (phase !== "safety") return;
        const other = copyPrng.pick(jns.filter((jn) => jn !== x));
        if (other.up) {
          other.crash();
          restartLater(other, 1500);
        }
        if (m.up) {
          m.crash();
          restartLater(m, 300);
        }
      };
      onDivergedCommit = () => clock.after(copyPrng.int(0, 20), end);
      clock.after(3000, end);
    });
  };
  for (const m of masters) {
    m.onWriterStart = (inSync) => {
      if (onDivergedWriter !== null) onDivergedWriter();
      else divergeAt(m, inSync);
    };
  }

  for (const m of masters) {
    m.onFirstCommit = () => {
      onDivergedCommit?.();
      if (phase !== "safety" || !prng.chance(crashAfterFirstCommit)) return;
      clock.after(prng.int(0, 20), () => {
        if (phase !== "safety" || !m.up) return;
        faults++;
        m.crash();
        restartLater(m, 1000);
      });
    };
  }

  const stores = (): { node: string; store: SimJournalNode["store"]; serving: boolean }[] =>
    jns.map((jn) => ({ node: jn.id, ...jn.checkView() }));

  const enterLiveness = (): void => {
    phase = "liveness";
    trace.add("sim", "liveness phase: every fault healed");
    busOptions.lossChance = 0;
    busOptions.duplicateChance = 0;
    busOptions.slowChance = 0;
    bus.healAll();
    for (const jn of jns) {
      jn.diskFault = null;
      if (!jn.up) jn.start();
    }
    for (const m of masters.slice(1)) m.crash();
    if (!masters[0].up) masters[0].start();
    for (const rep of replicas) if (!rep.up) rep.start();
    client.healed = true;
    forger?.stop();
    clock.after(LIVENESS_WRITES_MS, () => {
      client.writing = false;
    });
  };

  const start = (): void => {
    for (const jn of jns) jn.start();
    masters[0].start();
    for (const rep of replicas) rep.start();
    client.start();
    forger?.start();
    const nemesisStart = prng.int(10, nemesisMsMax);
    if (options.bootstrapFaults !== false) {
      clock.after(nemesisStart, nemesis);
    } else {
      // The network is clean too until then.
      const lossy = { ...busOptions };
      Object.assign(busOptions, { lossChance: 0, duplicateChance: 0, slowChance: 0 });
      invariants.onFirstWriter = () => {
        if (phase === "safety") Object.assign(busOptions, lossy);
        clock.after(nemesisStart, nemesis);
      };
    }
  };

  const stepsMax = options.steps ?? SIM_STEPS_DEFAULT;
  const outcome = runPhases({ clock, trace, invariants, jns, client }, {
    start,
    safetyOver: (steps) => steps >= stepsMax,
    enterLiveness,
    converged: () => !client.writing && client.counts.ackedAfterHeal > 0 && masters[0].writing && replicas.every((rep) => rep.appliedTxid === invariants.maxCommitted),
    disksCheckable: () => true,
    stores,
    stalled: () => {
      const lag = replicas.map((rep) => `${rep.id} applied ${rep.appliedTxid}`).join(", ");
      return `master ${masters[0].writing ? "writing" : "not writing"}, committed ${invariants.maxCommitted}, ${lag}`;
    },
    convergedNote: () => "",
  });
  const rejoins = masters.reduce((n, m) => n + m.rejoins, 0);
  const rolls = masters.reduce((n, m) => n + m.rolls, 0);
  const fanouts = masters.reduce((n, m) => n + m.fanouts, 0);
  return simResult(seed, { clock, trace, invariants, client }, outcome, { forged: forger?.sent ?? 0, journalNodes: jns.length, masters: masters.length, replicas: replicas.length, faults, rejoins, rolls, fanouts });
}


/** Nemesis: a random strict subset of `everyone` cut off from the rest for 50 ms to 2 s. */
export function partitionSome(prng: Prng, bus: SimBus, clock: SimClock, everyone: readonly string[]): void {
  const members = everyone.filter(() => prng.chance(0.4));
  if (members.length > 0 && members.length < everyone.length) {
    const cut = bus.cut(members);
    clock.after(prng.int(50, 2000), () => bus.heal(cut));
  }
}

/** Nemesis: one journal node's disk fails every call with ENOSPC or EIO for 20 to 500 ms. */
export function diskFaultWindow(prng: Prng, jns: readonly SimJournalNode[], clock: SimClock, trace: Trace): void {
  const jn = prng.pick(jns);
  const errno = prng.chance(0.5) ? "ENOSPC" : "EIO";
  jn.diskFault = errno;
  trace.add(jn.id, `disk fault window: ${errno}`);
  clock.after(prng.int(20, 500), () => {
    if (jn.diskFault === errno) jn.diskFault = null;
  });
}

/** A failing seed, readable: what broke, the events that led to it, how to replay it. */
export function describeFailure(r: SimResult, steps: number, bootstrapFaults = false, layout = ""): string {
  return [
    `seed ${r.seed} FAILED after ${r.steps} steps (${r.simMs} simulated ms): ${r.failure}`,
    `last ${r.trace.length} events:`,
    ...r.trace.map((l) => `  ${l}`),
    `replay: npm run sim -- --seed ${r.seed} --steps ${steps}${bootstrapFaults ? "" : " --calm-bootstrap"}${layout}`,
  ].join("\n");
}

/**
 * A replica in the simulation, driven as replica.ts drives it: the ReplicaCore picks the node and the txid, a read
 * of committed records goes out, the records the core accepts are applied one by one (each atomically with its
 * applied txid, as the feeder's stream does, so a crash loses nothing applied), and a round of idle answers pauses it.
 * It hears the master's commit hints and batch fan-outs through the same ReplicaFeed (FanoutBuffer) as replica.ts, and
 * before each read applies the buffer's committed records if it holds the next ones (issue #13 P4).
 * Its Redis replays as a replica of the feeder (model_redis.ts), possibly long after the records were written: the
 * swarm holds some reads' records for `replayDelayMs` before applying them, beyond the TTLs they set.
 *
 * A data node's replica role (sim_data_node.ts) is one of these over the node's Redis, feeding the node's dedupe
 * window; started on a Redis that already holds records, it first reads the last window's worth of them again, to
 * observe only, through the same WindowWarmup as replica.ts's warmWindow (src/dedupe/window_warmup.ts); it may
 * campaign meanwhile, and its release finishes the warm-up (or gives up, as production's does).
 */
import type { Config } from "../config/config.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, errorReply, toErrorReply } from "../protocol/errors.js";
import { parseJournalReply, type JournalReply, type JournalRequest } from "../protocol/messages.js";
import type { ReadOutcome, ReplicaCore } from "../replica/replica_core.js";
import { ReplicaFeed } from "../replica/replica_feed.js";
import type { SimTimer } from "./clock.js";
import type { DedupeWindow } from "../dedupe/dedupe_window.js";
import { warmFrom, WindowWarmup } from "../dedupe/window_warmup.js";
import { decodeRecordPayload, recordRange, type RecordView } from "../segment/record.js";
import type { SimCores } from "./cores.js";
import type { Invariants } from "./invariants.js";
import { applyRecord, ModelRedis } from "./model_redis.js";
import type { SimActor, SimBus, SimMessage } from "./sim_bus.js";
import type { Trace } from "./trace.js";

export class SimReplica implements SimActor {
  up = false;
  private incarnation = 0;
  private core: ReplicaCore | null = null;
  /** The replica's persistent Redis: survives a crash, as its applied txid does. */
  readonly redis: ModelRedis;
  /** How long to hold the records of a read before applying them (the swarm's replay lag; 0: at once). */
  replayDelayMs: () => number = () => 0;
  appliedTxid: number;
  /** A data node's window: fed every committed record this Redis holds, in txid order. */
  private readonly window: DedupeWindow | null;
  /** The first txid the window still has to learn (replica.ts's windowFrom); null: it holds the last window's worth. */
  private windowFrom: number | null = null;
  private waiting: { id: number; onReply: (reply: JournalReply) => void } | null = null;
  /** The idle pause under way (replica.ts `idle`), which a commit hint ends; null when none. */
  private pausing: number | null = null;
  private pauseSeq = 0;
  /** Hints and fan-outs heard (replica.ts's feed): a new buffer per incarnation, as a restarted process has. */
  private feed = new ReplicaFeed(null);

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly clock: SimTimer,
    private readonly bus: SimBus,
    private readonly trace: Trace,
    private readonly cores: SimCores,
    private readonly invariants: Invariants,
    private readonly requestIds: { next(): number },
    role: { redis: ModelRedis; appliedTxid: number; window: DedupeWindow } | null = null,
  ) {
    this.redis = role?.redis ?? new ModelRedis();
    this.appliedTxid = role?.appliedTxid ?? 0;
    this.window = role?.window ?? null;
  }

  /**
   * It applies: it could take over (replica.ts). Its window may still be warming — the records its Redis holds may not
   * be served as committed until a new writer recovers them — and the takeover finishes the warm-up.
   */
  get eligible(): boolean {
    return this.up && this.core !== null;
  }

  start(): void {
    if (this.up) return;
    this.up = true;
    const generation = ++this.incarnation;
    this.invariants.replicaResumes(this.id, this.appliedTxid);
    this.windowFrom = this.window === null ? null : warmFrom(this.appliedTxid, this.window.stats.lastTxid, this.config);
    // Its Redis holds what it applied (checked then), or nothing (a data node's wiped one): the check goes on from there.
    this.invariants.keyspace.adopt(this.id, this.appliedTxid, this.redis);
    this.core = this.cores.replicaCore(this.config.journalNodes, this.appliedTxid, { pollMs: this.config.replicaPollMs, backstopMs: this.config.replicaBackstopPollMs });
    const bytesMax = this.config.replicaFanoutBytesMax;
    this.feed = new ReplicaFeed(bytesMax > 0 ? this.cores.fanoutBuffer(bytesMax) : null);
    this.trace.add(this.id, `start at applied ${this.appliedTxid}`);
    this.clock.after(0, () => this.read(generation));
  }

  crash(): void {
    // Also after a release: the warm-up it finishes stops with the node.
    this.incarnation++;
    this.waiting = null;
    this.pausing = null;
    if (!this.up) return;
    this.up = false;
    this.core = null;
    this.trace.add(this.id, `crash at applied ${this.appliedTxid}`);
  }

  /**
   * A data node's takeover: tailing stops; the window finishes its warm-up (replica.ts's release), then `done` gets
   * the Redis (exactly the committed prefix) for the master role — or null and why, if the warm-up gave up.
   */
  release(done: (handed: { redis: ModelRedis; appliedTxid: number } | null, reason: string) => void): void {
    this.up = false;
    const generation = ++this.incarnation;
    this.waiting = null;
    this.pausing = null;
    this.core = null;
    this.trace.add(this.id, `replica released at applied ${this.appliedTxid}${this.windowFrom === null ? "" : `, its window warming from ${this.windowFrom}`}`);
    this.warm(generation, true, (gaveUp) => done(gaveUp === null ? { redis: this.redis, appliedTxid: this.appliedTxid } : null, gaveUp ?? ""));
  }

  /**
   * The window's warm-up, as replica.ts's warmWindow drives the same WindowWarmup: committed records read from the
   * node it names, observed only; a round of misses pauses. `done(null)` once it ends, `done(reason)` if it gave up.
   */
  private warm(generation: number, giveUp: boolean, done: (gaveUp: string | null) => void): void {
    const window = this.window!;
    const upTo = this.appliedTxid;
    const warm = new WindowWarmup(this.config.journalNodes, this.windowFrom, upTo, giveUp);
    const next = (): void => {
      if (this.incarnation !== generation) return;
      this.windowFrom = warm.fromTxid;
      const step = warm.next();
      if (step.kind !== "read") return done(step.kind === "gaveUp" ? step.reason : null);
      const req: JournalRequest = { type: "read", fromTxid: step.fromTxid, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted: false };
      this.call(step.node, req, (reply) => {
        const range = reply.ok && "read" in reply && reply.read.count > 0 ? recordRange(reply.read.records, step.fromTxid, upTo) : null;
        if (range === null) {
          const then = warm.missed(!reply.ok && reply.code === ErrorCode.PURGED);
          if (then === "incomplete") this.trace.add(this.id, `every journal node purged txid ${step.fromTxid}: the window starts incomplete`);
          return void this.clock.after(then === "pause" ? this.config.replicaPollMs * 10 : 0, next);
        }
        for (const rec of range.records) if (rec.txid > window.stats.lastTxid) window.observe(rec.txid, decodeRecordPayload(rec.payload).write);
        warm.read(range.records[range.records.length - 1].txid);
        next();
      });
    };
    next();
  }

  /** One journal request; its reply, or TIMEOUT after journalRequestTimeoutMs, goes to `onReply` (once). */
  private call(node: string, req: JournalRequest, onReply: (reply: JournalReply) => void): void {
    const id = this.requestIds.next();
    this.waiting = { id, onReply };
    this.bus.send(this.id, node, { kind: "request", id, body: encode(req) });
    this.clock.after(this.config.journalRequestTimeoutMs, () => {
      if (this.waiting?.id !== id) return;
      this.waiting = null;
      onReply(errorReply(ErrorCode.TIMEOUT, `${req.type} timed out`));
    });
  }

  private read(generation: number): void {
    if (this.incarnation !== generation) return;
    // A window still warming learns first (replica.ts: warmWindow before each round of tailing).
    if (this.windowFrom !== null) return this.warm(generation, false, () => this.read(generation));
    // replica.ts tailRounds: the fan-out's committed records first, a read for what the buffer lacks.
    const taken = this.feed.take(this.core!, this.config.readRecordsMax);
    if (taken !== null) return this.onOutcome(this.core!, "the fan-out", taken.outcome, generation);
    const { node, fromTxid } = this.core!.nextRead();
    const req: JournalRequest = { type: "read", fromTxid, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted: this.cores.replicaReadsUncommitted };
    this.call(node, req, (reply) => this.onReply(node, reply, generation));
  }

  onMessage(_from: string, msg: SimMessage): void {
    if (msg.kind === "commitHint" || msg.kind === "fanout") return this.onHeard(msg.kind, msg.body);
    if (msg.kind !== "reply" || this.waiting?.id !== msg.id) return;
    const { onReply } = this.waiting;
    this.waiting = null;
    let reply: JournalReply;
    try {
      reply = parseJournalReply(decode(msg.body));
    } catch (err) {
      reply = toErrorReply(err);
    }
    onReply(reply);
  }

  /** Applies records one by one, each atomically with its applied txid, then reads on. */
  private apply(core: ReplicaCore, records: readonly RecordView[], generation: number, from: "fanout" | "read"): void {
    const ownClockMs = this.cores.replayExpiresByOwnClock ? this.clock.nowMs : null;
    for (const rec of records) {
      this.window?.observe(rec.txid, decodeRecordPayload(rec.payload).write);
      this.invariants.replicaApplies(this.id, rec.txid, rec.epoch, rec.payload, from);
      applyRecord(this.redis, rec.payload, ownClockMs);
      this.invariants.keyspace.took(this.id, rec.txid, rec.payload, this.redis, "replica apply", this.clock.nowMs);
      this.appliedTxid = rec.txid;
      core.onApplied(rec.txid);
    }
    this.then(core, generation);
  }

  /** replica.ts: what the core says once an outcome is handled — read on (after the bus's 1 ms), or the idle pause. */
  private then(core: ReplicaCore, generation: number): void {
    const next = core.next();
    if (next.kind === "read") return void this.clock.after(1, () => this.read(generation));
    const token = ++this.pauseSeq;
    this.pausing = token;
    this.clock.after(next.ms, () => {
      if (this.pausing !== token) return;
      this.pausing = null;
      this.read(generation);
    });
  }

  /**
   * A commit hint or a batch fan-out (replica.ts onHint, onFanout; ReplicaFeed): the buffer keeps or learns it, and it
   * ends the idle pause if it names a commit not applied; a bad one is counted and traced.
   */
  private onHeard(kind: "commitHint" | "fanout", body: Uint8Array): void {
    // With replicaFanoutBytesMax 0 a replica does not subscribe to the fan-out (replica.ts start).
    if (!this.up || this.core === null || (kind === "fanout" && this.feed.buffer === null)) return;
    const heard = kind === "commitHint" ? this.feed.hint(this.core, body) : this.feed.fanout(this.core, body);
    if (heard.ignored !== null) {
      if (kind === "fanout") this.invariants.fanoutRefused();
      return this.trace.add(this.id, `ignored a ${kind === "fanout" ? "batch fan-out" : "commit hint"}: ${heard.ignored.message}`);
    }
    if (!heard.wake || this.pausing === null) return;
    this.pausing = null;
    const generation = this.incarnation;
    this.clock.after(0, () => this.read(generation));
  }

  private onReply(node: string, reply: JournalReply, generation: number): void {
    if (this.incarnation !== generation) return;
    const core = this.core!;
    const outcome = core.onRead(reply.ok && "read" in reply ? { ok: true, ...reply.read } : reply.ok ? { ok: false, code: "BAD_REQUEST", message: "not a read reply" } : reply);
    this.onOutcome(core, node, this.feed.read(outcome), generation);
  }

  /** What a read of `source` (a journal node, or the fan-out's buffer) came to: applied (maybe held first), or the next step. */
  private onOutcome(core: ReplicaCore, source: string, outcome: ReadOutcome, generation: number): void {
    const from = source === "the fan-out" ? "fanout" : "read";
    if (outcome.kind === "apply") {
      const delayMs = this.replayDelayMs();
      if (delayMs === 0) return this.apply(core, outcome.records, generation, from);
      this.trace.add(this.id, `holds txids ${outcome.records[0].txid}.. from ${source} for ${delayMs} ms before applying them`);
      this.clock.after(delayMs, () => {
        if (this.incarnation === generation) this.apply(core, outcome.records, generation, from);
      });
      return;
    }
    if (outcome.kind === "reject" && outcome.faulty) {
      this.invariants.corruptReadRefused();
      this.trace.add(this.id, `refused records from ${source}: ${outcome.reason}`);
    }
    // The simulation has no snapshots to load (nothing is purged): a round of PURGED pauses as a miss would.
    if (outcome.kind === "bootstrap") return void this.clock.after(this.config.replicaPollMs, () => this.read(generation));
    this.then(core, generation);
  }
}

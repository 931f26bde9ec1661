/**
 * A replica in the simulation, driven as replica.ts drives it: the ReplicaCore picks the node and the txid, a read
 * of committed records goes out, the records the core accepts are applied one by one (each atomically with its
 * applied txid, as the feeder's stream does, so a crash loses nothing applied), and a round of idle answers pauses it.
 * Its Redis replays as a replica of the feeder (model_redis.ts), possibly long after the records were written: the
 * swarm holds some reads' records for `replayDelayMs` before applying them, beyond the TTLs they set.
 *
 * A data node's replica role (sim_data_node.ts) is one of these over the node's Redis, feeding the node's dedupe
 * window; started on a Redis that already holds records, it first reads the last window's worth of them again, to
 * observe only (replica.ts warmWindow), and cannot take over until it has.
 */
import type { Config } from "../config/config.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, errorReply, toErrorReply } from "../protocol/errors.js";
import { parseJournalReply, type JournalReply } from "../protocol/messages.js";
import type { ReplicaCore } from "../replica/replica_core.js";
import type { SimTimer } from "./clock.js";
import type { DedupeWindow } from "../dedupe/dedupe_window.js";
import { decodeRecordPayload, type RecordView } from "../segment/record.js";
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
  /** Records up to here are in the Redis already: read again only for the window to observe them. */
  private warmUntil = 0;
  private waiting: { id: number; generation: number } | null = null;
  private idleRounds = 0;

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
    this.warmUntil = this.window === null ? 0 : this.appliedTxid;
    // Its Redis holds what it applied (checked then), or nothing (a data node's wiped one): the check goes on from there.
    this.invariants.keyspace.adopt(this.id, this.appliedTxid, this.redis);
    const from = this.window === null ? this.appliedTxid : Math.max(0, this.appliedTxid - this.config.dedupeWindowRecords);
    this.core = this.cores.replicaCore(this.config.journalNodes, from);
    this.trace.add(this.id, `start at applied ${this.appliedTxid}`);
    this.clock.after(0, () => this.read(generation));
  }

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.incarnation++;
    this.waiting = null;
    this.core = null;
    this.trace.add(this.id, `crash at applied ${this.appliedTxid}`);
  }

  /** A data node's takeover: tailing stops; its Redis (exactly the committed prefix) goes to the master role. */
  release(): { redis: ModelRedis; appliedTxid: number } {
    this.up = false;
    this.incarnation++;
    this.waiting = null;
    this.core = null;
    this.trace.add(this.id, `replica released at applied ${this.appliedTxid}`);
    return { redis: this.redis, appliedTxid: this.appliedTxid };
  }

  private read(generation: number): void {
    if (this.incarnation !== generation) return;
    const { node, fromTxid } = this.core!.nextRead();
    const id = this.requestIds.next();
    this.waiting = { id, generation };
    const req = { type: "read", fromTxid, bytesMax: this.config.readBytesMax, recordsMax: this.config.readRecordsMax, uncommitted: this.cores.replicaReadsUncommitted };
    this.bus.send(this.id, node, { kind: "request", id, body: encode(req) });
    this.clock.after(this.config.journalRequestTimeoutMs, () => {
      if (this.waiting?.id === id) this.onReply(node, errorReply(ErrorCode.TIMEOUT, "read timed out"));
    });
  }

  onMessage(from: string, msg: SimMessage): void {
    if (msg.kind !== "reply" || this.waiting?.id !== msg.id) return;
    let reply: JournalReply;
    try {
      reply = parseJournalReply(decode(msg.body));
    } catch (err) {
      reply = toErrorReply(err);
    }
    this.onReply(from, reply);
  }

  /** Applies records one by one, each atomically with its applied txid, then reads on. */
  private apply(core: ReplicaCore, records: readonly RecordView[], generation: number): void {
    const ownClockMs = this.cores.replayExpiresByOwnClock ? this.clock.nowMs : null;
    for (const rec of records) {
      this.window?.observe(rec.txid, decodeRecordPayload(rec.payload).write);
      if (rec.txid <= this.warmUntil) {
        core.onApplied(rec.txid);
        continue;
      }
      this.invariants.replicaApplies(this.id, rec.txid, rec.epoch, rec.payload);
      applyRecord(this.redis, rec.payload, ownClockMs);
      this.invariants.keyspace.took(this.id, rec.txid, rec.payload, this.redis, "replica apply", this.clock.nowMs);
      this.appliedTxid = rec.txid;
      core.onApplied(rec.txid);
    }
    this.clock.after(1, () => this.read(generation));
  }

  private onReply(node: string, reply: JournalReply): void {
    const generation = this.waiting!.generation;
    this.waiting = null;
    const core = this.core!;
    const outcome = core.onRead(reply.ok && "read" in reply ? { ok: true, ...reply.read } : reply.ok ? { ok: false, code: "BAD_REQUEST", message: "not a read reply" } : reply);
    if (outcome.kind === "apply") {
      this.idleRounds = 0;
      const delayMs = this.replayDelayMs();
      if (delayMs === 0) return this.apply(core, outcome.records, generation);
      this.trace.add(this.id, `holds txids ${outcome.records[0].txid}.. for ${delayMs} ms before applying them`);
      this.clock.after(delayMs, () => {
        if (this.incarnation === generation) this.apply(core, outcome.records, generation);
      });
      return;
    }
    if (outcome.kind === "reject" && outcome.faulty) {
      this.invariants.corruptReadRefused();
      this.trace.add(this.id, `refused records from ${node}: ${outcome.reason}`);
    }
    if (++this.idleRounds >= core.nodes.length) {
      this.idleRounds = 0;
      this.clock.after(this.config.replicaPollMs, () => this.read(generation));
    } else {
      this.clock.after(0, () => this.read(generation));
    }
  }
}

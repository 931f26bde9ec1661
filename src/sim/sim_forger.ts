/**
 * A forger on the bus (issue #10, class 3): from the first step it sends journal nodes requests of every type with
 * fuzzed fields — boundary integers, epochs that do not fit in a record, stale and future epochs, far txids, wrong
 * types, garbage records — and ignores the answers (it only learns the epochs the nodes promised, to aim near them).
 * The invariants must hold, and the run must still converge once it stops.
 *
 * What it does not send, because no validation can refuse it without authentication (NATS permissions, another part
 * of issue #10): a request a real writer could send in the node's state, with the node's current epoch or above —
 * records that scan clean at the next txid, a startSegment at the node's end or inside it, a markRestored, a finalize
 * at the segment's true end, a well-formed format. A startSegment past the node's end it does send, with the cluster's
 * id and any epoch: a node refuses it before promising anything (issue #10; only a writer's catch-up leaves a hole). A higher epoch it does send (newEpoch, prepareRecovery…): it fences the real writer, who then
 * wins the next one; it stays far below 2^32 - 1 so that one remains.
 *
 * Replicas (and data nodes) it sends commit hints and batch fan-outs (issue #13 P4): garbage, batches whose records fail
 * the checks (a flipped byte, a count that lies, a gap inside, records of another epoch than the batch's) in any epoch,
 * stale, current or huge, with any commit index, and batches whose records scan clean — at the replica's next txids
 * too — in a huge epoch no writer holds (FORGED_BATCH_EPOCHS), committing none of them. What it does not send them: a
 * commit index in an epoch a writer holds or held, nor one in the huge epochs of its own clean records. A replica's
 * fan-out buffer hands out the records a commit index of their own epoch covers: that index is the writer's word, as a
 * batch is to a journal node, and only NATS's permissions keep it the writer's (only masters and data nodes may publish
 * on `committed` and `batch`). Its hints to replicas name epochs of their own (HINT_EPOCHS): they wake reads, as any
 * hint may, and commit nothing.
 */
import type { Config } from "../config/config.js";
import { decode, encode } from "../protocol/codec.js";
import { parseJournalReply } from "../protocol/messages.js";
import { encodeEffects, encodeRecord } from "../segment/record.js";
import type { SimClock } from "./clock.js";
import type { Prng } from "./prng.js";
import type { SimActor, SimBus, SimMessage } from "./sim_bus.js";
import type { Trace } from "./trace.js";

/** How far above the highest promise it saw a forged epoch goes (it must leave the real writer room in u32). */
export const FORGED_EPOCH_STEP_MAX = 3;

/** The epochs of the forger's clean fan-out records: no writer reaches them, and no commit index the forger sends names them. */
export const FORGED_BATCH_EPOCHS = { min: 2 ** 32 - 6, max: 2 ** 32 - 1 };
/** The epochs of the forger's commit indexes to replicas (hints, empty fan-outs): no writer's, no records'. */
export const HINT_EPOCHS = { min: 2 ** 31, max: 2 ** 31 + 1000 };

const BOUNDARY_INTEGERS = [-1, 0.5, 2 ** 32 - 1 + 1, 2 ** 32 + 5, 2 ** 40, 2 ** 53 - 1, 2 ** 53, Number.MAX_VALUE, Infinity, NaN];

export class SimForger implements SimActor {
  up = true;
  sent = 0;
  private promisedSeen = 0;
  private lastTxidSeen = 0;
  /** The cluster's id, once a reply showed it (not a secret: any client on the bus learns it). */
  private clusterSeen: string | undefined;
  private seq = 0;
  private stopped = false;

  constructor(
    readonly id: string,
    private readonly journalNodes: readonly string[],
    private readonly clock: SimClock,
    private readonly bus: SimBus,
    private readonly prng: Prng,
    private readonly trace: Trace,
    private readonly config: Config,
    private readonly intervalMsMax: number,
    /** Replicas it sends forged commit hints to (a hint only wakes a replica: any value may go to them). */
    private readonly replicas: readonly string[] = [],
  ) {}

  start(): void {
    const tick = (): void => {
      if (this.stopped) return;
      this.forgeOne();
      this.clock.after(this.prng.int(1, this.intervalMsMax), tick);
    };
    tick();
  }

  stop(): void {
    this.stopped = true;
    this.trace.add(this.id, `stops after ${this.sent} forged requests`);
  }

  onMessage(_from: string, msg: SimMessage): void {
    if (msg.kind !== "reply") return;
    try {
      const reply = parseJournalReply(decode(msg.body));
      const state = reply.ok && "state" in reply ? reply.state : reply.ok && "prepare" in reply ? reply.prepare.state : null;
      if (state !== null) {
        this.promisedSeen = Math.max(this.promisedSeen, state.promisedEpoch);
        this.lastTxidSeen = Math.max(this.lastTxidSeen, state.lastTxid);
        this.clusterSeen = state.clusterId ?? this.clusterSeen;
      }
    } catch {
      // a reply it cannot read teaches it nothing
    }
  }

  private forgeOne(): void {
    if (this.replicas.length > 0 && this.prng.chance(0.15)) return this.forgeFanout();
    if (this.prng.chance(0.2)) return this.forgeHint();
    const node = this.prng.pick(this.journalNodes);
    const body = this.forgedRequest();
    this.sent++;
    this.bus.send(this.id, node, { kind: "request", id: ++this.seq, body: encode(body) });
  }

  /**
   * A commit hint (issue #13 P4): to a replica any epoch and any txid, far ones included — it may only cause reads; to a
   * journal node only an epoch no writer holds (one a writer holds is the writer's own word, as an empty batch is), or
   * garbage.
   */
  private forgeHint(): void {
    const to = this.prng.pick([...this.journalNodes, ...this.replicas]);
    const toReplica = this.replicas.includes(to);
    const committedTxid = this.prng.chance(0.5) ? this.farTxid() : this.integer(this.lastTxidSeen);
    const epoch = toReplica ? this.hintEpoch() : this.prng.pick([0, ...BOUNDARY_INTEGERS]);
    const body = this.prng.chance(0.2) ? Uint8Array.from({ length: this.prng.int(0, 16) }, () => this.prng.int(0, 255)) : encode({ epoch, segmentTxid: this.integer(this.lastTxidSeen), committedTxid });
    this.sent++;
    this.bus.send(this.id, to, { kind: "commitHint", body });
  }

  /** An epoch for a commit index to a replica: garbage, or one of HINT_EPOCHS (see the header). */
  private hintEpoch(): unknown {
    return this.prng.chance(0.2) ? this.prng.pick([0, ...BOUNDARY_INTEGERS]) : this.prng.int(HINT_EPOCHS.min, HINT_EPOCHS.max);
  }

  /**
   * A batch fan-out to a replica (see the header): garbage; an empty batch carrying a commit index (as a hint's); records
   * that fail the checks in any epoch, with any commit index; or clean records in a huge epoch, which none commits (its
   * commit index stays 0: any other would commit the clean records of an earlier forged batch in that epoch).
   */
  private forgeFanout(): void {
    const to = this.prng.pick(this.replicas);
    const near = this.lastTxidSeen;
    const firstTxid = this.prng.chance(0.7) ? near + this.prng.int(1, 3) : this.farTxidNumber();
    const base = { type: "journal", segmentTxid: Math.max(1, near - this.prng.int(0, 64)), firstTxid, to: [this.prng.pick(this.journalNodes)], re: `f1.${++this.seq}` };
    const r = this.prng.next();
    let body: Uint8Array;
    if (r < 0.15) body = Uint8Array.from({ length: this.prng.int(0, 32) }, () => this.prng.int(0, 255));
    else if (r < 0.3) body = encode({ ...base, epoch: this.hintEpoch(), count: 0, records: new Uint8Array(0), committedTxid: this.prng.chance(0.5) ? this.farTxid() : this.integer(near) });
    else if (r < 0.7) {
      const epoch = this.anyEpoch();
      const count = this.prng.int(1, 4);
      const recordEpoch = typeof epoch === "number" && Number.isInteger(epoch) && epoch >= 1 && epoch <= 2 ** 32 - 1 ? epoch : 1;
      body = encode({ ...base, epoch, count, records: this.failingRecords(firstTxid, count, recordEpoch), committedTxid: this.prng.chance(0.5) ? this.farTxid() : this.integer(near) });
    } else {
      const epoch = this.prng.int(FORGED_BATCH_EPOCHS.min, FORGED_BATCH_EPOCHS.max);
      const count = this.prng.int(1, 4);
      body = encode({ ...base, epoch, count, records: this.cleanRecords(firstTxid, count, epoch), committedTxid: 0 });
    }
    this.sent++;
    this.bus.send(this.id, to, { kind: "fanout", body });
  }

  /** `count` records from `firstTxid` in `epoch` that scan clean. */
  private cleanRecords(firstTxid: number, count: number, epoch: number): Uint8Array {
    const recs = Array.from({ length: count }, (_, i) => encodeRecord(firstTxid + i, epoch, encodeEffects([[Buffer.from("SET"), Buffer.from("forged"), Buffer.from(String(firstTxid + i))]])));
    return Buffer.concat(recs);
  }

  /** Records that fail a fan-out's checks, each way one can: a flipped byte, a count that lies, a gap, another epoch. */
  private failingRecords(firstTxid: number, count: number, epoch: number): Uint8Array {
    const how = this.prng.int(0, 3);
    if (how === 0) {
      const recs = Buffer.from(this.cleanRecords(firstTxid, count, epoch));
      const at = this.prng.int(24, recs.length - 1); // past the first header: a checksum, not the framing, refuses it
      recs[at] ^= 1 << this.prng.int(0, 7);
      return recs;
    }
    if (how === 1) return this.cleanRecords(firstTxid, count + this.prng.int(1, 2), epoch);
    if (how === 2) return Buffer.concat([this.cleanRecords(firstTxid, 1, epoch), this.cleanRecords(firstTxid + this.prng.int(2, 5), count - 1 || 1, epoch)]);
    return this.cleanRecords(firstTxid, count, epoch === 1 ? 2 : epoch - 1);
  }

  private farTxidNumber(): number {
    return this.lastTxidSeen + this.prng.int(1000, 1_000_000);
  }

  /** Any integer a field could get: a boundary, or near what the nodes hold. */
  private integer(near: number): unknown {
    const r = this.prng.next();
    if (r < 0.3) return this.prng.pick(BOUNDARY_INTEGERS);
    if (r < 0.4) return this.prng.pick(["1", null, true, [], {}]);
    return Math.max(0, near + this.prng.int(-3, 3));
  }

  /** A stale epoch (fenced), or one that does not fit in a record (refused at parse). */
  private harmlessEpoch(): unknown {
    return this.prng.chance(0.5) ? Math.max(0, this.promisedSeen - this.prng.int(1, 3)) : this.prng.pick(BOUNDARY_INTEGERS);
  }

  /** Any of: stale, current, a little above the promise (fences the writer), out of range. */
  private anyEpoch(): unknown {
    const r = this.prng.next();
    if (r < 0.4) return this.harmlessEpoch();
    if (r < 0.7) return this.promisedSeen;
    return this.promisedSeen + this.prng.int(1, FORGED_EPOCH_STEP_MAX);
  }

  /** A txid no writer is near: far beyond the log, or a boundary. */
  private farTxid(): unknown {
    return this.prng.chance(0.5) ? this.lastTxidSeen + this.prng.int(1000, 1_000_000) : this.prng.pick(BOUNDARY_INTEGERS);
  }

  /** Garbage, or records that scan clean at txids no writer is near (or with an epoch no writer holds). */
  private records(firstTxid: unknown): Uint8Array {
    const r = this.prng.next();
    if (r < 0.4) return Uint8Array.from({ length: this.prng.int(0, 64) }, () => this.prng.int(0, 255));
    const start = typeof firstTxid === "number" && Number.isSafeInteger(firstTxid) && firstTxid >= 1 ? firstTxid : 1;
    const txid = r < 0.7 ? this.lastTxidSeen + this.prng.int(1000, 100_000) : start;
    const epoch = r < 0.7 ? this.prng.int(1, 2 ** 32 - 1) : 2 ** 32 - 1 - this.prng.int(0, 5);
    return encodeRecord(txid, epoch, encodeEffects([[Buffer.from("SET"), Buffer.from("forged"), Buffer.from(String(txid))]]));
  }

  private segment(): unknown {
    if (this.prng.chance(0.2)) return this.prng.pick([null, "segment", { startTxid: 1 }]);
    return { startTxid: this.integer(this.lastTxidSeen), endTxid: this.farTxid(), inProgress: this.prng.chance(0.5) };
  }

  private forgedRequest(): unknown {
    const near = this.lastTxidSeen;
    const clusterId = this.prng.pick(["forged", "", "x".repeat(300), undefined]);
    const type = this.prng.pick([
      "getState", "newEpoch", "startSegment", "journal", "prepareRecovery", "recoveryAppend", "acceptRecovery", "finalize",
      "format", "getManifest", "snapshotDurable", "syncSegment", "markRestored", "read", "noSuchType",
    ]);
    const first = this.farTxid();
    switch (type) {
      case "newEpoch":
      case "prepareRecovery":
        return { type, epoch: this.anyEpoch(), segmentTxid: this.integer(near), clusterId };
      case "startSegment":
        // Far past the node's end, as a writer of the cluster with any epoch: refused (see the header). Near the end
        // only with an epoch no writer could hold.
        if (this.prng.chance(0.5)) return { type, epoch: this.anyEpoch(), txid: this.lastTxidSeen + this.prng.int(1000, 1_000_000), clusterId: this.clusterSeen ?? clusterId };
        return { type, epoch: this.prng.pick([0, ...BOUNDARY_INTEGERS]), txid: this.prng.chance(0.5) ? this.integer(near) : first, clusterId };
      case "journal": {
        // With the writer's epoch only records at a far txid (refused): an empty batch would raise the commit index.
        const epoch = this.prng.chance(0.7) ? this.harmlessEpoch() : this.anyEpoch();
        const count = typeof epoch === "number" && epoch >= this.promisedSeen ? this.prng.int(1, 3) : this.integer(1);
        return { type, epoch, segmentTxid: this.integer(near), firstTxid: first, count, records: this.records(first), committedTxid: this.prng.chance(0.5) ? this.farTxid() : this.integer(near) };
      }
      case "recoveryAppend":
      case "syncSegment":
        return { type, epoch: this.anyEpoch(), clusterId, segmentTxid: this.integer(near), segment: this.segment(), firstTxid: first, count: this.integer(1), records: this.records(first) };
      case "acceptRecovery":
        return { type, epoch: this.anyEpoch(), segment: this.segment(), lastRecord: { epoch: this.integer(this.promisedSeen), crc: this.integer(0) } };
      case "finalize":
        return { type, epoch: this.anyEpoch(), startTxid: this.integer(near), endTxid: this.farTxid() };
      case "format":
        // A well-formed format makes a wiped node a voter: only malformed ones (see the header).
        return { type, clusterId: this.prng.pick(["", "x".repeat(300), 7]), restoring: this.prng.chance(0.5), epoch: this.anyEpoch() };
      case "snapshotDurable":
        return { type, txid: this.prng.chance(0.5) ? this.farTxid() : this.integer(near), clusterId: clusterId ?? "forged" };
      case "markRestored":
        return { type, epoch: this.prng.pick([0, ...BOUNDARY_INTEGERS]), clusterId: clusterId ?? "forged" };
      case "read":
        return { type, fromTxid: this.integer(near), bytesMax: this.prng.pick([0, 1, 2 ** 53 - 1, this.config.readBytesMax * 1000]), recordsMax: this.prng.pick([0, 2 ** 31, 2 ** 53 - 1]), uncommitted: this.prng.chance(0.5) };
      default:
        return { type };
    }
  }
}

/**
 * The master's write path as a pure state machine: records in, batches to journal nodes out, acks in, the
 * committed txid out. Two equal-size buffers (group commit): `filling` takes new records while `flushing`, the one
 * batch in flight, waits for a majority of journal nodes. A client's write is answered only when the batch holding
 * its txid has a majority of acks. Time comes in as `nowMs` arguments; the core never reads a clock.
 */
import { quorumSize } from "../config/config.js";
import { encodeRecord } from "../segment/record.js";
import { assert } from "../util/assert.js";

export interface WriterLimits {
  batchBytesMax: number;
  batchRecordsMax: number;
  quorumTimeoutMs: number;
  /** Extra time a batch gets per MiB it holds (a large record takes longer to send and fsync); 0 when absent. */
  quorumTimeoutMsPerMib?: number;
  /** The batch in flight goes again to the nodes in step that have not answered it after this long; 0 or absent: never. */
  batchResendMs?: number;
  /**
   * For batchResendMs after this writer's own link failed over, copies go this often instead: the journal nodes are
   * failing over too, and the copy sent at once may find them not back yet. 0 or absent: batchResendMs throughout.
   */
  batchResendAfterReconnectMs?: number;
}

export interface Batch {
  id: number;
  segmentTxid: number;
  firstTxid: number;
  count: number;
  records: Buffer;
  committedTxid: number;
}

/** What the adapter must do after a step. */
export interface WriterOutput {
  /** Send this batch (or, with count 0, this commit notice) to these nodes; `resend`: a copy sent again (batchResendMs). */
  send: { batch: Batch; nodes: string[]; resend?: true }[];
  /** The committed txid moved here: answer every write up to it. */
  committedTxid: number | null;
  /** The write path failed: fail every unanswered write with NO_QUORUM and become a new writer. */
  failure: string | null;
}

interface Buffer_ {
  chunks: Buffer[];
  bytes: number;
  firstTxid: number;
  count: number;
}

export type WriterStatus =
  /** Accepting records and flushing batches. */
  | "writing"
  /** A batch could not reach a majority or the writer was fenced: nothing more is acknowledged under this epoch. */
  | "failed";

export class WriterCore {
  readonly quorum: number;
  private status: WriterStatus = "writing";
  private nextTxid: number;
  private committed: number;
  private filling: Buffer_;
  private flushing: (Batch & { sentAtMs: number; lastSentMs: number; resent: boolean; acks: Set<string>; refusals: Map<string, string> }) | null = null;
  /** Each node's newest acked batch of records (not a commit notice): it holds every batch up to it (appends are in order). */
  private readonly ackedBatch = new Map<string, number>();
  /** The last txid of each node's newest acked batch of records (the lag status and metrics show). */
  private readonly ackedTxid = new Map<string, number>();
  /** The id of the batch that committed last (its late acks still tell what a node holds). */
  private committedBatchId = 0;
  private batchSeq = 0;
  /** When this writer's own link last failed over (resendDue). */
  private reconnectedAtMs = -Infinity;
  /** Nodes that take part in this epoch's segment; a node that refused a batch drops out until it is caught up. */
  private inSync: Set<string>;
  /** Starts true: what recovery decided is committed, and the nodes learn it only from us. */
  private commitNoticePending = true;
  /** Why the last node dropped out (for events and status). */
  lastRefusal: string | null = null;
  private journaledBytes = 0;

  constructor(
    readonly epoch: number,
    readonly segmentTxid: number,
    /** Every txid below segmentTxid is committed (recovery decided it). */
    readonly nodes: readonly string[],
    inSyncNodes: readonly string[],
    private readonly limits: WriterLimits,
  ) {
    this.quorum = quorumSize(nodes.length);
    this.nextTxid = segmentTxid;
    this.committed = segmentTxid - 1;
    this.filling = this.emptyBuffer();
    this.inSync = new Set(inSyncNodes);
    assert(this.inSync.size >= this.quorum, "a writer starts with a majority in step");
  }

  private emptyBuffer(): Buffer_ {
    return { chunks: [], bytes: 0, firstTxid: this.nextTxid, count: 0 };
  }

  get committedTxid(): number {
    return this.committed;
  }
  get lastTxid(): number {
    return this.nextTxid - 1;
  }
  get failed(): boolean {
    return this.status === "failed";
  }
  get inSyncNodes(): string[] {
    return [...this.inSync];
  }
  /** Without a copy: the write path asks this on every reply. */
  get inSyncCount(): number {
    return this.inSync.size;
  }
  /** The last txid `node` acked in this writer's term; undefined before its first ack. */
  ackedTxidOf(node: string): number | undefined {
    return this.ackedTxid.get(node);
  }
  isInSync(node: string): boolean {
    return this.inSync.has(node);
  }
  /** Both buffers are busy and the filling one is full: new writes must wait (bounded memory). */
  get full(): boolean {
    return this.flushing !== null && (this.filling.bytes >= this.limits.batchBytesMax || this.filling.count >= this.limits.batchRecordsMax);
  }
  get bufferedBytes(): number {
    return this.filling.bytes + (this.flushing?.records.length ?? 0);
  }
  /** Bytes of the records journaled in this segment (a roll threshold). */
  get segmentBytes(): number {
    return this.journaledBytes;
  }
  /** Records journaled in this segment. */
  get segmentRecords(): number {
    return this.nextTxid - this.segmentTxid;
  }
  /** Everything journaled is committed and nothing is buffered or in flight: the segment may be finalized. */
  get drained(): boolean {
    return this.flushing === null && this.filling.count === 0 && this.committed === this.lastTxid;
  }

  /** Journals one record (its payload: the msgpack effects); returns its txid. */
  append(payload: Uint8Array): number {
    assert(this.status === "writing", "append to a failed writer");
    const txid = this.nextTxid++;
    const record = encodeRecord(txid, this.epoch, payload);
    this.filling.chunks.push(record);
    this.filling.bytes += record.length;
    this.filling.count++;
    this.journaledBytes += record.length;
    return txid;
  }

  /**
   * Flushes when no batch is in flight, and checks the in-flight batch's deadline. With `idle` (the adapter's
   * periodic timer, not the flush after an append), a commit index no batch carried yet goes out on its own,
   * so replicas can read the last batch; under load the next batch carries it.
   */
  tick(nowMs: number, idle = false): WriterOutput {
    const out: WriterOutput = { send: [], committedTxid: null, failure: null };
    if (this.status !== "writing") return out;
    const timeoutMs = this.flushing === null ? 0 : this.batchTimeoutMs(this.flushing.records.length);
    if (this.flushing !== null && nowMs - this.flushing.sentAtMs > timeoutMs) {
      return this.fail(`batch ${this.flushing.firstTxid}..${this.flushing.firstTxid + this.flushing.count - 1} has ${this.flushing.acks.size} of ${this.quorum} acks after ${timeoutMs} ms`);
    }
    if (this.flushing !== null && this.resendIsDue(this.flushing, nowMs)) {
      this.resend(this.flushing, nowMs, out);
    } else if (this.flushing === null && this.filling.count > 0) {
      this.flush(nowMs, out);
    } else if (idle && this.flushing === null && this.commitNoticePending) {
      this.commitNoticePending = false;
      out.send.push({ batch: this.batch(Buffer.alloc(0), this.nextTxid, 0), nodes: [...this.inSync] });
    }
    return out;
  }

  /**
   * A copy goes again once the last one had batchResendMs, plus the time its size is allowed (the quorum timeout's
   * per-MiB share): a large batch still crossing the bus as fragments, or being fsynced, is not sent twice.
   */
  private resendIsDue(b: NonNullable<WriterCore["flushing"]>, nowMs: number): boolean {
    const every = this.limits.batchResendMs ?? 0;
    if (every <= 0) return false;
    const fast = this.limits.batchResendAfterReconnectMs ?? 0;
    const interval = fast > 0 && nowMs - this.reconnectedAtMs < every ? fast : every;
    const forSize = Math.floor(((this.limits.quorumTimeoutMsPerMib ?? 0) * b.records.length) / (1024 * 1024));
    return nowMs - b.lastSentMs >= interval + forSize;
  }

  /**
   * The next tick sends the batch in flight again (if resends are on): the link it went out on failed over. For
   * batchResendMs from `nowMs`, later copies go every batchResendAfterReconnectMs.
   */
  resendDue(nowMs = -Infinity): void {
    this.reconnectedAtMs = nowMs;
    if (this.flushing !== null) this.flushing.lastSentMs = -Infinity;
  }

    /** How long a batch of `bytes` may wait for its majority: quorumTimeoutMs, plus time for its size. */
  batchTimeoutMs(bytes: number): number {
    return this.limits.quorumTimeoutMs + Math.ceil(((this.limits.quorumTimeoutMsPerMib ?? 0) * bytes) / (1024 * 1024));
  }

  /**
   * The batch in flight again to the nodes in step that have neither acked nor refused it. Over NATS a request or its
   * reply is lost when a nats-server dies between us, or when the node answers through another server after failing
   * over (that server never handed it the request: nats-server refuses the reply). Without a resend the batch would
   * wait out its quorum timeout and fail the writer. A node that holds the batch acks it again without writing it.
   */
  private resend(b: NonNullable<WriterCore["flushing"]>, nowMs: number, out: WriterOutput): void {
    b.lastSentMs = nowMs;
    b.resent = true;
    const silent = [...this.inSync].filter((n) => !b.acks.has(n) && !b.refusals.has(n));
    const { sentAtMs: _s, lastSentMs: _l, resent: _x, acks: _a, refusals: _r, ...batch } = b;
    if (silent.length > 0) out.send.push({ batch, nodes: silent, resend: true });
  }

  private batch(records: Buffer, firstTxid: number, count: number): Batch {
    return { id: ++this.batchSeq, segmentTxid: this.segmentTxid, firstTxid, count, records, committedTxid: this.committed };
  }

  private flush(nowMs: number, out: WriterOutput): void {
    const taken = this.takeBatch();
    const batch = this.batch(taken.records, taken.firstTxid, taken.count);
    this.flushing = { ...batch, sentAtMs: nowMs, lastSentMs: nowMs, resent: false, acks: new Set(), refusals: new Map() };
    this.commitNoticePending = false;
    out.send.push({ batch, nodes: [...this.inSync] });
  }

  /**
   * The oldest records of the filling buffer, at most batchBytesMax bytes and batchRecordsMax records (a record
   * larger than batchBytesMax goes alone): a batch stays bounded however many records came while one was in flight.
   */
  private takeBatch(): { records: Buffer; firstTxid: number; count: number } {
    const f = this.filling;
    let count = 1;
    let bytes = f.chunks[0].length;
    while (count < f.chunks.length && count < this.limits.batchRecordsMax && bytes + f.chunks[count].length <= this.limits.batchBytesMax) {
      bytes += f.chunks[count].length;
      count++;
    }
    const chunks = f.chunks.splice(0, count);
    const firstTxid = f.firstTxid;
    f.firstTxid += count;
    f.count -= count;
    f.bytes -= bytes;
    // Many chunks into one buffer: one write and one fsync on each node.
    return { records: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, bytes), firstTxid, count };
  }

  /** A node's answer to batch `batchId`: ok, or refused with a reason (fenced, out of sync, disk error, timeout). */
  onReply(node: string, batchId: number, result: { ok: true } | { ok: false; code: string; message: string }, nowMs: number): WriterOutput {
    const out: WriterOutput = { send: [], committedTxid: null, failure: null };
    if (this.status !== "writing") return out;
    const b = this.flushing;
    if (!result.ok) {
      if (result.code === "EPOCH_FENCED") return this.fail(`fenced by ${node}: ${result.message}`);
      // Just after this writer's own link failed over, a transport failure (NATS "no responders": the node's link is
      // failing over too) says nothing of the node: the next copy goes batchResendAfterReconnectMs later. Masking here
      // failed the writer whenever two nodes were slower to come back than the master (kill -9 of the nats-server all
      // used), and a step-down and an election followed.
      if (result.code === "TIMEOUT" && nowMs - this.reconnectedAtMs < (this.limits.batchResendMs ?? 0)) return out;
      // A lost copy of a batch the node acked since (a resend reached it): it holds that batch, nothing to mask.
      if (batchId > 0 && (this.ackedBatch.get(node) ?? 0) >= batchId) return out;
      // A node that refused one batch would refuse every later one: it sits out until caught up.
      if (this.inSync.delete(node)) this.lastRefusal = `${node}: ${result.code} ${result.message}`;
      if (b !== null && b.id === batchId) b.refusals.set(node, `${result.code}: ${result.message}`);
      if (this.inSync.size < this.quorum) {
        const reasons = b ? [...b.refusals.entries()].map(([n, r]) => `${n} ${r}`).join("; ") : "";
        return this.fail(`only ${this.inSync.size} journal nodes in step, ${this.quorum} needed (${reasons || this.lastRefusal})`);
      }
      return out;
    }
    const ofRecords = (b !== null && b.id === batchId) || batchId === this.committedBatchId;
    if (ofRecords && batchId > (this.ackedBatch.get(node) ?? 0)) {
      this.ackedBatch.set(node, batchId);
      // The committed batch's last txid is the commit index (only a batch's majority moves it).
      this.ackedTxid.set(node, b !== null && b.id === batchId ? b.firstTxid + b.count - 1 : this.committed);
    }
    if (b === null || b.id !== batchId) return out; // a late ack of a batch already committed, or of a commit notice
    if (b.acks.has(node)) {
      // Both copies of a resent batch reached the node; without a resend a second ack is a bug.
      assert(b.resent, `node ${node} acked batch ${batchId} twice`);
      return out;
    }
    b.acks.add(node);
    if (b.acks.size === this.quorum) {
      const last = b.firstTxid + b.count - 1;
      assert(last > this.committed, `committed txid would go from ${this.committed} to ${last}`);
      this.committed = last;
      this.committedBatchId = b.id;
      this.flushing = null;
      this.commitNoticePending = true;
      out.committedTxid = last;
      const next = this.tick(nowMs);
      out.send.push(...next.send);
    }
    return out;
  }

  /** The last txid a node must hold to take part again: everything before the in-flight (or next) batch. */
  get rejoinTxid(): number {
    return (this.flushing !== null ? this.flushing.firstTxid : this.filling.firstTxid) - 1;
  }

  /**
   * A node that dropped out was caught up to `rejoinTxid`: it counts for acks again, starting with the batch in
   * flight (sent to it now).
   */
  rejoin(node: string, lastTxid: number): WriterOutput {
    const out: WriterOutput = { send: [], committedTxid: null, failure: null };
    assert(this.nodes.includes(node), `unknown node ${node}`);
    assert(!this.inSync.has(node), `${node} rejoins but never left`);
    assert(lastTxid === this.rejoinTxid, `${node} rejoins at ${lastTxid}, not at ${this.rejoinTxid}`);
    if (this.status !== "writing") return out;
    this.inSync.add(node);
    if (this.flushing !== null) {
      const { sentAtMs: _s, lastSentMs: _l, resent: _x, acks: _a, refusals: _r, ...batch } = this.flushing;
      out.send.push({ batch, nodes: [node] });
    }
    return out;
  }

  private fail(reason: string): WriterOutput {
    this.status = "failed";
    return { send: [], committedTxid: null, failure: reason };
  }
}

/**
 * A replica's copy of the batches the master fans out to the journal nodes (issue #13), pure: the records of the
 * current epoch, checked as records read from a journal node are (checksums, the count, contiguous txids, and the
 * batch's epoch in each record), kept within `bytesMax`, and handed out only as far as a commit index sent by that
 * same epoch's master covers them. A record of epoch E is committed only when E's own commit index covers it (and
 * then for good, whatever newer epoch exists: a majority holds it, and every recovery keeps it); a newer epoch's
 * recovery may replace an uncommitted tail, so a commit index of another epoch never counts for the records held.
 * The buffer follows the epoch of the last batch that carried records, not the highest epoch ever named: one stray
 * or forged message with a huge epoch would otherwise make every later batch of the serving writer "stale" until the
 * replica restarted (review s24). The buffer may miss any record (a message dropped, a slow consumer, a replica that
 * started mid-batch, batches of two writers interleaved): `take` then gives nothing and the replica reads from a
 * journal node.
 */
import { checkRun, type RecordView } from "../segment/record.js";

/** A fan-out's batch as the buffer needs it (the BatchFanout's fields). */
export interface FannedBatch {
  epoch: number;
  firstTxid: number;
  count: number;
  records: Uint8Array;
  committedTxid: number;
}

export type BatchVerdict =
  /** Its records are kept (or were already), or it carried only a commit index. */
  | "kept"
  /** Its records fail the checks: ignored (the replica reads those txids from a journal node). */
  | "bad";

/**
 * What a record held costs beside its bytes: its RecordView and the payload's Uint8Array view (measured on Node 20:
 * ~184 bytes a record; 8 MiB of 35-byte records took 42 MB of heap besides their 8 MiB when only bytes were counted).
 */
export const FANOUT_RECORD_OVERHEAD_BYTES = 192;

const cost = (r: RecordView): number => r.length + FANOUT_RECORD_OVERHEAD_BYTES;

export class FanoutBuffer {
  private epoch = 0;
  /** Contiguous txids, oldest first; `head` is the first not dropped (a queue without shifting arrays). */
  private records: RecordView[] = [];
  private head = 0;
  private bytes = 0;
  /** The commit index `epoch`'s master sent (in a batch or a commit hint). */
  private committed = 0;

  constructor(private readonly bytesMax: number) {}

  /** Records held, their bytes (each with FANOUT_RECORD_OVERHEAD_BYTES), and the epoch they belong to (status, tests). */
  get stats(): { epoch: number; records: number; bytes: number; committedTxid: number } {
    return { epoch: this.epoch, records: this.records.length - this.head, bytes: this.bytes, committedTxid: this.committed };
  }

  /** The commit index of the current epoch's master. */
  get committedTxid(): number {
    return this.committed;
  }

  /** A fan-out heard on the bus, already parsed. */
  onBatch(b: FannedBatch): BatchVerdict {
    if (b.count > 0) {
      const run = checkRun(b.records, b.count, b.firstTxid, (e) => e === b.epoch);
      if ("reason" in run) return "bad";
      this.follow(b.epoch);
      this.add(run.records);
    }
    this.onCommit(b.epoch, b.committedTxid);
    return "kept";
  }

  /** A commit index sent by epoch `epoch`'s master (a CommitHint): it counts only for that epoch's records. */
  onCommit(epoch: number, committedTxid: number): void {
    if (epoch === this.epoch && committedTxid > this.committed) this.committed = committedTxid;
  }

  /**
   * The records from `fromTxid` on that this epoch's commit index covers (contiguous, at most `recordsMax`); empty if
   * the buffer does not hold `fromTxid` or none of it is committed yet. Records below `fromTxid` (applied) are dropped.
   */
  take(fromTxid: number, recordsMax: number): RecordView[] {
    while (this.head < this.records.length && this.records[this.head].txid < fromTxid) this.dropOldest();
    if (this.head >= this.records.length || this.records[this.head].txid !== fromTxid) return [];
    const n = Math.min(this.records.length - this.head, this.committed - fromTxid + 1, recordsMax);
    return n <= 0 ? [] : this.records.slice(this.head, this.head + n);
  }

  /** Records of another epoch than those held: the held ones go (another writer's, not these to commit). */
  private follow(epoch: number): void {
    if (epoch === this.epoch) return;
    this.clear();
    this.epoch = epoch;
    this.committed = 0;
  }

  /** Checked records of the current epoch: appended if they continue the buffer; a gap starts it again from them. */
  private add(batch: RecordView[]): void {
    const last = this.head < this.records.length ? this.records[this.records.length - 1].txid : null;
    let from = 0;
    if (last !== null && batch[0].txid <= last) {
      // A resent copy (or its tail past what we hold): only the records we lack.
      from = last + 1 - batch[0].txid;
      if (from >= batch.length) return;
    } else if (last !== null && batch[0].txid !== last + 1) {
      this.clear();
    }
    for (let i = from; i < batch.length; i++) {
      this.records.push(batch[i]);
      this.bytes += cost(batch[i]);
    }
    while (this.bytes > this.bytesMax && this.head < this.records.length) this.dropOldest();
  }

  private dropOldest(): void {
    this.bytes -= cost(this.records[this.head]);
    this.records[this.head++] = undefined as unknown as RecordView;
    // Compacted once the dropped half is the larger: amortized O(1) per record.
    if (this.head > 1024 && this.head * 2 > this.records.length) {
      this.records = this.records.slice(this.head);
      this.head = 0;
    }
  }

  private clear(): void {
    this.records = [];
    this.head = 0;
    this.bytes = 0;
  }
}

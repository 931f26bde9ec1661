/**
 * The replica's tailing logic as a pure state machine: which txid to read next and from which journal node,
 * which records of a read may be applied (checksums valid, txids contiguous from applied + 1, committed only),
 * and when to move to another node. Applying (MULTI/EXEC with the applied-txid marker) is the adapter's.
 */
import { scanRecords, type RecordView } from "../segment/record.js";
import { assert } from "../util/assert.js";

export type ReadOutcome =
  | { kind: "apply"; records: RecordView[] }
  /** Nothing new on that node: wait a little, then ask the next one. */
  | { kind: "idle" }
  /** No node serves the next txid and some purged it: load the newest snapshot, then tail from its txid. */
  | { kind: "bootstrap" }
  /**
   * That node answered with an error or bad data: ask another one. `faulty` when it served records that fail
   * validation (a silent or lagging node is the master's to detect, by heartbeats and batch replies).
   */
  | { kind: "reject"; reason: string; faulty: boolean };

export class ReplicaCore {
  private applied: number;
  private nodeIndex = 0;
  /** Reads in a row that gave nothing, and whether one of them said the txid was purged. */
  private misses = 0;
  private purgedSeen = false;

  constructor(
    readonly nodes: readonly string[],
    appliedTxid: number,
  ) {
    assert(nodes.length > 0, "a replica needs journal nodes to read from");
    this.applied = appliedTxid;
  }

  get appliedTxid(): number {
    return this.applied;
  }

  /** The node to read from next and the first txid wanted. */
  nextRead(): { node: string; fromTxid: number } {
    return { node: this.nodes[this.nodeIndex % this.nodes.length], fromTxid: this.applied + 1 };
  }

  private rotate(): void {
    this.nodeIndex = (this.nodeIndex + 1) % this.nodes.length;
  }

  /** Validates a read reply. Records are committed ones: journal nodes serve nothing past their commit index. */
  onRead(reply: { ok: true; records: Uint8Array; count: number } | { ok: false; code: string; message: string }): ReadOutcome {
    if (!reply.ok || reply.count === 0) {
      this.rotate();
      if (!reply.ok && reply.code === "PURGED") this.purgedSeen = true;
      // A whole round of nodes without the next txid, one of them having purged it: only a snapshot has it now.
      if (++this.misses >= this.nodes.length && this.purgedSeen) {
        this.misses = 0;
        this.purgedSeen = false;
        return { kind: "bootstrap" };
      }
      if (this.misses >= this.nodes.length) this.misses = 0;
      return reply.ok ? { kind: "idle" } : { kind: "reject", reason: `${reply.code}: ${reply.message}`, faulty: false };
    }
    const scan = scanRecords(reply.records);
    if (scan.stop !== undefined) {
      this.rotate();
      return { kind: "reject", reason: `record at offset ${scan.stop.offset}: ${scan.stop.reason}`, faulty: true };
    }
    if (scan.records.length !== reply.count) {
      this.rotate();
      return { kind: "reject", reason: `reply says ${reply.count} records, holds ${scan.records.length}`, faulty: true };
    }
    for (let i = 0; i < scan.records.length; i++) {
      if (scan.records[i].txid !== this.applied + 1 + i) {
        this.rotate();
        return { kind: "reject", reason: `txid ${scan.records[i].txid} where ${this.applied + 1 + i} was expected`, faulty: true };
      }
    }
    // Only good records show a node still serves the log here.
    this.misses = 0;
    this.purgedSeen = false;
    return { kind: "apply", records: scan.records };
  }

  /** The adapter applied `txid` (atomically with its marker). */
  onApplied(txid: number): void {
    assert(txid === this.applied + 1, `applied ${txid} after ${this.applied}: out of order`);
    this.applied = txid;
  }
}

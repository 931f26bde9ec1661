/**
 * The master's side of write tracing (traceSample): 1 write in N carries a WriteTrace, stamped at each hop of the
 * write path and sent back in its reply. With traceSample 0 nothing is ever sampled, and each hop pays one check of
 * `on`. Few traces are open at once (1 in N of the writes in flight), so lookups by txid range are plain scans.
 */
import type { JournalStamps, WriteTrace } from "../protocol/messages.js";
import { traceNow } from "../util/trace_clock.js";
import type { WriteId } from "./master_core.js";

interface Open {
  id: WriteId;
  /** 0 until its record is journaled. */
  txid: number;
  trace: WriteTrace;
}

export class WriteTracer {
  readonly on: boolean;
  private countdown: number;
  private readonly open: Open[] = [];

  constructor(private readonly every: number) {
    this.on = every > 0;
    this.countdown = every;
  }

  /** A write arrived: its trace if it is the one in N sampled. */
  sample(): WriteTrace | null {
    if (--this.countdown > 0) return null;
    this.countdown = this.every;
    return { recv: traceNow(), executed: 0, cut: 0, batchSent: 0, acks: [], committed: 0, replied: 0 };
  }

  /** The write is known to the core by `id` (its trace follows it until answered). */
  admitted(id: WriteId, trace: WriteTrace): void {
    this.open.push({ id, txid: 0, trace });
  }

  executed(id: WriteId): void {
    const o = this.byId(id);
    if (o !== undefined) o.trace.executed = traceNow();
  }

  /** Its marker came off the replication link. */
  cut(id: WriteId): void {
    const o = this.byId(id);
    if (o !== undefined) o.trace.cut = traceNow();
  }

  journaled(id: WriteId, txid: number): void {
    const o = this.byId(id);
    if (o !== undefined) o.txid = txid;
  }

  /** A batch goes out: whether it holds a traced record (then its journal nodes are asked for their stamps). */
  batchSent(firstTxid: number, count: number): boolean {
    let traced = false;
    for (const o of this.open) {
      if (!holds(o.txid, firstTxid, count)) continue;
      traced = true;
      if (o.trace.batchSent === 0) o.trace.batchSent = traceNow();
    }
    return traced;
  }

  /** A journal node's ack of a batch; the first one per node counts (a resend's second ack does not). */
  acked(node: string, firstTxid: number, count: number, stamps: JournalStamps | undefined): void {
    const at = traceNow();
    for (const o of this.open) {
      if (holds(o.txid, firstTxid, count) && !o.trace.acks.some((a) => a.node === node)) o.trace.acks.push({ node, acked: at, ...stamps });
    }
  }

  committed(txid: number): void {
    const at = traceNow();
    for (const o of this.open) if (o.txid > 0 && o.txid <= txid && o.trace.committed === 0) o.trace.committed = at;
  }

  /** The write is answered: its trace, closed, for the reply (undefined if it was not sampled). */
  answered(id: WriteId): WriteTrace | undefined {
    const i = this.open.findIndex((o) => o.id === id);
    if (i < 0) return undefined;
    const [o] = this.open.splice(i, 1);
    o.trace.replied = traceNow();
    return o.trace;
  }

  private byId(id: WriteId): Open | undefined {
    return this.open.find((o) => o.id === id);
  }
}

function holds(txid: number, firstTxid: number, count: number): boolean {
  return txid >= firstTxid && txid < firstTxid + count;
}

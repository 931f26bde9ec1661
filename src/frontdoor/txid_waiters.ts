/**
 * Reads that wait until their node has applied a txid (pure; issue #12 item 3): a session read for the connection's
 * last write or the highest txid it observed, a linearizable read for its read index, and QJM.WAIT. The driver tells
 * the node's applied txid as it moves (`advance`) and the time as its one timer fires (`expire`); each waiter leaves
 * exactly once, released or timed out. No clock, no timers, no promises here.
 */

interface Waiter {
  id: number;
  txid: number;
  deadlineMs: number;
}

export class TxidWaiters {
  /** Ordered by txid: an advance releases a prefix. */
  private byTxid: Waiter[] = [];
  private readonly byId = new Map<number, Waiter>();
  private visible = 0;

  /** The node's applied txid as last told. */
  get appliedTxid(): number {
    return this.visible;
  }

  get size(): number {
    return this.byId.size;
  }

  /**
   * Waiter `id` waits until the node applied `txid`, until `deadlineMs`. False when there is nothing to wait for (the
   * txid is applied already): the caller goes on at once, and the waiter is not kept.
   */
  wait(id: number, txid: number, deadlineMs: number): boolean {
    if (txid <= this.visible) return false;
    if (this.byId.has(id)) throw new Error(`waiter ${id} waits twice`);
    const w = { id, txid, deadlineMs };
    this.byId.set(id, w);
    // Binary search for the first waiter with a larger txid: the new one goes before it (FIFO among equals).
    let lo = 0;
    let hi = this.byTxid.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.byTxid[mid].txid <= txid) lo = mid + 1;
      else hi = mid;
    }
    this.byTxid.splice(lo, 0, w);
    return true;
  }

  /**
   * The node applied `txid`: the waiters it satisfies, in txid order. A lower txid than before is taken as it is (a
   * role change wiped and rebuilds the node's Redis): later waits compare against it.
   */
  advance(txid: number): number[] {
    const before = this.visible;
    this.visible = txid;
    if (txid <= before) return [];
    let n = 0;
    while (n < this.byTxid.length && this.byTxid[n].txid <= txid) n++;
    if (n === 0) return [];
    const released = this.byTxid.splice(0, n);
    for (const w of released) this.byId.delete(w.id);
    return released.map((w) => w.id);
  }

  /** The waiters whose deadline passed at `nowMs` (they leave). */
  expire(nowMs: number): number[] {
    const gone: number[] = [];
    for (const w of this.byId.values()) if (w.deadlineMs <= nowMs) gone.push(w.id);
    if (gone.length > 0) this.remove(gone);
    return gone;
  }

  /** A waiter that no longer waits (its connection closed). */
  cancel(id: number): void {
    if (this.byId.has(id)) this.remove([id]);
  }

  /** When the driver's timer should next call `expire`; null when nobody waits. */
  nextDeadlineMs(): number | null {
    let next: number | null = null;
    for (const w of this.byId.values()) if (next === null || w.deadlineMs < next) next = w.deadlineMs;
    return next;
  }

  private remove(ids: number[]): void {
    const gone = new Set(ids);
    for (const id of ids) this.byId.delete(id);
    this.byTxid = this.byTxid.filter((w) => !gone.has(w.id));
  }
}

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
  /**
   * A min-heap by deadline, for `expire` and `nextDeadlineMs` in O(log n): released and cancelled waiters stay in it
   * until they reach its top (lazy deletion), so the driver's timer fires only for deadlines of waiters still waiting.
   */
  private readonly deadlines: Waiter[] = [];
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
    heapPush(this.deadlines, w);
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
    for (let top = this.liveTop(); top !== undefined && top.deadlineMs <= nowMs; top = this.liveTop()) {
      heapPop(this.deadlines);
      gone.push(top.id);
    }
    if (gone.length > 0) this.remove(gone);
    return gone;
  }

  /** A waiter that no longer waits (its connection closed). */
  cancel(id: number): void {
    if (this.byId.has(id)) this.remove([id]);
  }

  /** When the driver's timer should next call `expire`; null when nobody waits. */
  nextDeadlineMs(): number | null {
    return this.liveTop()?.deadlineMs ?? null;
  }

  /** The heap's top once the waiters no longer waiting are popped off it. */
  private liveTop(): Waiter | undefined {
    while (this.deadlines.length > 0 && this.byId.get(this.deadlines[0].id) !== this.deadlines[0]) heapPop(this.deadlines);
    return this.deadlines[0];
  }

  private remove(ids: number[]): void {
    const gone = new Set(ids);
    for (const id of ids) this.byId.delete(id);
    this.byTxid = this.byTxid.filter((w) => !gone.has(w.id));
  }
}

function heapPush(h: Waiter[], w: Waiter): void {
  h.push(w);
  for (let i = h.length - 1; i > 0; ) {
    const parent = (i - 1) >>> 1;
    if (h[parent].deadlineMs <= h[i].deadlineMs) break;
    [h[parent], h[i]] = [h[i], h[parent]];
    i = parent;
  }
}

function heapPop(h: Waiter[]): void {
  const last = h.pop();
  if (last === undefined || h.length === 0) return;
  h[0] = last;
  for (let i = 0; ; ) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < h.length && h[l].deadlineMs < h[m].deadlineMs) m = l;
    if (r < h.length && h[r].deadlineMs < h[m].deadlineMs) m = r;
    if (m === i) return;
    [h[m], h[i]] = [h[i], h[m]];
    i = m;
  }
}

/**
 * WATCH's check on the master (pure; issue #12 item 4). A front door records, when a connection WATCHes keys, the txid
 * its node had applied then (its Redis showed every record up to it, and nothing later was known to it); the EXEC
 * carries that txid and the keys to the master, which aborts the transaction (nil, as Redis) when one of the keys may
 * have been modified after it:
 *   - a record journaled by this master with a higher txid touched the key (its effects' keys; effects whose keys
 *     cannot be told — movable keys — count as touching every key);
 *   - a write executed on this master's Redis and not yet answered names the key (its record may not be cut yet);
 *   - the txid is below what this map still knows: older than the term (a new master knows nothing before its first
 *     txid, so a WATCH taken before a failover is aborted), or older than keys the byte bound evicted.
 * Every abort this adds over Redis's own is conservative: a client retries a nil EXEC. The check runs when the master
 * sends the transaction to its Redis: writes after it run after the EXEC.
 */

export type WatchVerdict = { ok: true } | { ok: false; why: string };

/** Bytes counted per key besides its own (the Map entry, the number). */
export const WATCH_ENTRY_OVERHEAD_BYTES = 64;

export class WatchCore {
  /** Key → txid of the last record that touched it; in order of that txid (re-set keys move to the end). */
  private readonly lastModified = new Map<string, number>();
  private bytes = 0;
  /** Below or at this txid nothing is known (the term's start, an evicted key, a record of unknown keys). */
  private floor: number | null = null;
  /** Executed, unanswered writes' keys (null: unknown, every key). */
  private readonly executing = new Map<number, readonly string[] | null>();
  private readonly executingKeys = new Map<string, number>();
  private executingAny = 0;

  constructor(private readonly bytesMax: number) {}

  get size(): number {
    return this.lastModified.size;
  }
  get trackedBytes(): number {
    return this.bytes;
  }
  get knownFrom(): number | null {
    return this.floor;
  }

  /**
   * A record was journaled under `txid` touching `keys` (null: unknown keys). The first one sets the floor: every
   * txid below it was journaled before this map started.
   */
  journaled(txid: number, keys: readonly string[] | null): void {
    this.floor ??= txid - 1;
    if (keys === null) return this.raiseFloor(txid);
    for (const k of keys) {
      const before = this.lastModified.get(k);
      if (before !== undefined) {
        this.lastModified.delete(k);
        this.bytes -= k.length + WATCH_ENTRY_OVERHEAD_BYTES;
      }
      this.lastModified.set(k, txid);
      this.bytes += k.length + WATCH_ENTRY_OVERHEAD_BYTES;
    }
    this.evict();
  }

  /** Nothing was journaled since the map started: what was journaled before (up to `lastTxid`) is unknown. */
  started(lastTxid: number): void {
    this.floor ??= lastTxid;
  }

  /** A write sent to Redis naming `keys` (null: unknown); kept as given, so the caller does not change them after. */
  executed(id: number, keys: readonly string[] | null): void {
    if (this.executing.has(id)) return;
    this.executing.set(id, keys);
    if (keys === null) this.executingAny++;
    else for (const k of keys) this.executingKeys.set(k, (this.executingKeys.get(k) ?? 0) + 1);
  }

  answered(id: number): void {
    const keys = this.executing.get(id);
    if (keys === undefined) return;
    this.executing.delete(id);
    if (keys === null) return void this.executingAny--;
    for (const k of keys) {
      const n = (this.executingKeys.get(k) ?? 1) - 1;
      if (n === 0) this.executingKeys.delete(k);
      else this.executingKeys.set(k, n);
    }
  }

  /** Whether a transaction that watched `keys` when its node had applied `txid` may run. */
  check(txid: number, keys: readonly string[]): WatchVerdict {
    if (this.floor === null || txid < this.floor) return { ok: false, why: `watched at txid ${txid}, before what this master knows (from ${this.floor ?? "its first record"})` };
    if (this.executingAny > 0) return { ok: false, why: "a write of unknown keys is in flight" };
    for (const k of keys) {
      if (this.executingKeys.has(k)) return { ok: false, why: "a watched key has a write in flight" };
      const m = this.lastModified.get(k);
      if (m !== undefined && m > txid) return { ok: false, why: `a watched key was modified by txid ${m}, after ${txid}` };
    }
    return { ok: true };
  }

  private raiseFloor(txid: number): void {
    if (this.floor === null || txid > this.floor) this.floor = txid;
  }

  /** Past the bound, the keys modified longest ago leave; what they knew becomes the floor. */
  private evict(): void {
    for (const [k, txid] of this.lastModified) {
      if (this.bytes <= this.bytesMax) return;
      this.lastModified.delete(k);
      this.bytes -= k.length + WATCH_ENTRY_OVERHEAD_BYTES;
      this.raiseFloor(txid);
    }
  }
}

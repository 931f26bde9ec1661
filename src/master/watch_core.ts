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

/** Keys and the txid of the record that last touched each, with the bytes they count and the last txid they saw. */
interface Generation {
  readonly lastModified: Map<string, number>;
  bytes: number;
  lastTxid: number;
}

const generation = (): Generation => ({ lastModified: new Map(), bytes: 0, lastTxid: 0 });

/**
 * Key → txid of the last record that touched it, in two generations of at most half the byte bound each: a record
 * updates its keys in the young one, and when that is full the old one is dropped (its last txid becomes the floor) and
 * the young one becomes old. A key is never deleted and set again: V8's Map keeps a deleted entry in its bucket's chain
 * until the table is rehashed, so moving one hot key to the end of a map of 200,000 (an INCR'd counter) walked tens
 * of thousands of dead entries per write: ~35 µs, where an update in place takes well under one.
 */
export class WatchCore {
  private young = generation();
  private old = generation();
  /** Below or at this txid nothing is known (the term's start, a dropped generation, a record of unknown keys). */
  private floor: number | null = null;
  /** Executed, unanswered writes' keys (null: unknown, every key). */
  private readonly executing = new Map<number, readonly string[] | null>();
  private readonly executingKeys = new Map<string, number>();
  private executingAny = 0;

  constructor(private readonly bytesMax: number) {}

  /** Keys tracked (a key in both generations counts twice). */
  get size(): number {
    return this.young.lastModified.size + this.old.lastModified.size;
  }
  get trackedBytes(): number {
    return this.young.bytes + this.old.bytes;
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
    let bytes = 0;
    for (const k of keys ?? []) bytes += k.length + WATCH_ENTRY_OVERHEAD_BYTES;
    // Keys that could never fit are not kept: what they knew becomes the floor, as for unknown keys.
    if (keys === null || bytes > this.bytesMax / 2) return this.raiseFloor(txid);
    if (this.young.bytes + bytes > this.bytesMax / 2) this.age();
    const young = this.young;
    for (const k of keys) {
      if (!young.lastModified.has(k)) young.bytes += k.length + WATCH_ENTRY_OVERHEAD_BYTES;
      young.lastModified.set(k, txid);
    }
    young.lastTxid = txid;
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
      const m = this.young.lastModified.get(k) ?? this.old.lastModified.get(k);
      if (m !== undefined && m > txid) return { ok: false, why: `a watched key was modified by txid ${m}, after ${txid}` };
    }
    return { ok: true };
  }

  private raiseFloor(txid: number): void {
    if (this.floor === null || txid > this.floor) this.floor = txid;
  }

  /**
   * The young generation is full: the old one leaves (any key only it held was last touched at or before its last
   * txid: the floor rises to it) and the young one takes its place.
   */
  private age(): void {
    if (this.old.lastModified.size > 0) this.raiseFloor(this.old.lastTxid);
    this.old = this.young;
    this.young = generation();
  }
}

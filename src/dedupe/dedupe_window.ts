/**
 * The dedupe window (issue #11 item 3), pure: which client writes the journal committed lately, and what Redis
 * answered them, so that a retry of a committed write is answered with its original reply instead of being applied
 * again. Every data node feeds it the committed records it applies, in txid order (`observe`); whoever becomes
 * master therefore holds it already, and the master asks it about each write that carries an id (`lookup`).
 *
 * What it remembers, within three bounds (config.ts, block "dedupe"):
 *   - the writes of the last `dedupeWindowRecords` txids (records without an id count, they move the window);
 *   - at most `dedupeWindowBytesMax` bytes of kept replies (plus a fixed overhead per write): past it, the oldest
 *     writes leave the window early;
 *   - at most `dedupeClientsMax` clients, the ones that committed most recently; past it, the least recent client
 *     is dropped with everything the window knows of it.
 * Per client it keeps, besides its writes in the window, the highest seq that left the window (`evictedSeqMax`).
 *
 * The guarantee, exactly. For a write with id (client, seq), `lookup` answers:
 *   - `committed` (txid, reply) while its record is in the window: the retry is answered, not applied;
 *   - `expired` once its record left the window, as long as the client is still tracked: any seq at or below the
 *     client's highest evicted seq is refused (RETRY_EXPIRED), never applied twice — even a seq that never
 *     committed (a write that waited longer than the window: its outcome is reported unknown, never wrong);
 *   - `new` otherwise: the write was never committed while the client is tracked.
 * A client is tracked from its first committed write until `dedupeClientsMax` other clients committed a write after
 * its last one. A client silent for longer than that is forgotten: a retry it sends then is `new`, and applied again
 * if the original had committed. The client library retries for `retryForMs` only, far shorter than it takes
 * 100,000 other clients to write. The window also only knows what it observed: a node must observe the records of
 * the last `dedupeWindowRecords` txids before it answers as master (see the integrator's notes in the client part's
 * report), else a retry of a write committed before its first observed record is `new`.
 */
import type { Config } from "../config/config.js";
import type { RecordedReply, RecordWrite, ReplyValue } from "../segment/record.js";
import { assert } from "../util/assert.js";

export type DedupeLimits = Pick<Config, "dedupeWindowRecords" | "dedupeWindowBytesMax" | "dedupeClientsMax">;

/** Bytes counted per remembered write besides its reply (its entry, its client id, the maps that index it). */
export const DEDUPE_ENTRY_OVERHEAD_BYTES = 128;

export type DedupeLookup =
  /** Committed at `txid`; `reply` is what Redis answered (absent when it was too large to keep: `replyDropped`). */
  | { kind: "committed"; txid: number; reply?: RecordedReply; replyDropped: boolean }
  /** Older than the window: it may have committed, the window no longer says. Refuse it; never apply it. */
  | { kind: "expired" }
  /** Never committed (as far as a tracked client goes): apply it. */
  | { kind: "new" };

interface Entry {
  txid: number;
  client: string;
  seq: number;
  reply?: RecordedReply;
  replyDropped: boolean;
  bytes: number;
  /** False once evicted (by a bound, or with its client): the queue drops it lazily. */
  live: boolean;
}

interface ClientState {
  readonly client: string;
  entries: Map<number, Entry>;
  /** Highest seq of this client that left the window; 0: none yet. */
  evictedSeqMax: number;
  /** Its neighbours in the recency list (null at its ends). */
  older: ClientState | null;
  newer: ClientState | null;
}

export interface DedupeStats {
  lastTxid: number;
  writes: number;
  clients: number;
  bytes: number;
  /** Records that carried an id already in the window (a retry journaled twice by a master that did not dedupe). */
  duplicatesObserved: number;
  clientsForgotten: number;
}

export class DedupeWindow {
  private lastTxid = 0;
  private readonly clients = new Map<string, ClientState>();
  /**
   * The clients by recency, a list of their states: one that commits moves to its newest end. Not the Map's order: a
   * key deleted and set again leaves a dead entry that V8 walks on each lookup of that key until the table is rehashed,
   * so one client writing steadily among 100,000 known ones cost ~25 µs per record.
   */
  private leastRecent: ClientState | null = null;
  private mostRecent: ClientState | null = null;
  /** Remembered writes in txid order; evicted ones stay until they reach the head. */
  private queue: Entry[] = [];
  private head = 0;
  private bytes = 0;
  private writes = 0;
  private duplicatesObserved = 0;
  private clientsForgotten = 0;

  constructor(private readonly limits: DedupeLimits) {
    assert(limits.dedupeWindowRecords >= 1 && limits.dedupeClientsMax >= 1, "dedupe bounds must be at least 1");
    assert(limits.dedupeWindowBytesMax >= DEDUPE_ENTRY_OVERHEAD_BYTES, "dedupeWindowBytesMax must hold one write");
  }

  /**
   * One committed record, in txid order (the caller applies committed records in order: a txid that does not
   * increase is its bug). `write`: the id and reply a v2 record carries; null for a record without one.
   */
  observe(txid: number, write: RecordWrite | null): void {
    assert(Number.isSafeInteger(txid) && txid > this.lastTxid, `dedupe window observed txid ${txid} after ${this.lastTxid}`);
    this.lastTxid = txid;
    if (write !== null) this.remember(txid, write);
    this.evict();
  }

  lookup(client: string, seq: number): DedupeLookup {
    const state = this.clients.get(client);
    if (state === undefined) return { kind: "new" };
    const entry = state.entries.get(seq);
    if (entry !== undefined) {
      return entry.replyDropped ? { kind: "committed", txid: entry.txid, replyDropped: true } : { kind: "committed", txid: entry.txid, reply: entry.reply, replyDropped: false };
    }
    return seq <= state.evictedSeqMax ? { kind: "expired" } : { kind: "new" };
  }

  get stats(): DedupeStats {
    return {
      lastTxid: this.lastTxid,
      writes: this.writes,
      clients: this.clients.size,
      bytes: this.bytes,
      duplicatesObserved: this.duplicatesObserved,
      clientsForgotten: this.clientsForgotten,
    };
  }

  /** The counts agree with the entries, and every bound holds (run by tests after each step). */
  invariants(): void {
    let writes = 0;
    let bytes = 0;
    for (const state of this.clients.values()) {
      for (const e of state.entries.values()) {
        assert(e.live, `evicted write ${e.client}#${e.seq} still indexed`);
        writes++;
        bytes += e.bytes;
      }
    }
    assert(writes === this.writes && bytes === this.bytes, `counts drifted: ${writes}/${this.writes} writes, ${bytes}/${this.bytes} bytes`);
    assert(this.queue.length - this.head <= this.limits.dedupeWindowRecords, "queue longer than the window");
    assert(this.bytes <= this.limits.dedupeWindowBytesMax, "bytes past dedupeWindowBytesMax");
    assert(this.clients.size <= this.limits.dedupeClientsMax, "clients past dedupeClientsMax");
    let listed = 0;
    for (let c = this.leastRecent; c !== null; c = c.newer) {
      assert(this.clients.get(c.client) === c && (c.newer === null ? this.mostRecent === c : c.newer.older === c), `recency list broken at ${c.client}`);
      listed++;
    }
    assert(listed === this.clients.size, `recency list holds ${listed} of ${this.clients.size} clients`);
  }

  private remember(txid: number, write: RecordWrite): void {
    let state = this.clients.get(write.client);
    if (state !== undefined && state.entries.has(write.seq)) {
      // The first commit is the one that counts (its reply is what the write did); the later copy is a retry that a
      // master without the window applied again. Counted, so it shows.
      this.duplicatesObserved++;
      return;
    }
    if (state === undefined) {
      state = { client: write.client, entries: new Map(), evictedSeqMax: 0, older: null, newer: null };
      this.clients.set(write.client, state);
    } else this.unlink(state);
    this.append(state);
    const entry: Entry = {
      txid,
      client: write.client,
      seq: write.seq,
      reply: write.reply,
      replyDropped: write.replyDropped,
      bytes: DEDUPE_ENTRY_OVERHEAD_BYTES + write.client.length + (write.reply === undefined ? 0 : recordedReplyBytes(write.reply)),
      live: true,
    };
    state.entries.set(write.seq, entry);
    this.queue.push(entry);
    this.writes++;
    this.bytes += entry.bytes;
  }

  private evict(): void {
    const oldest = this.lastTxid - this.limits.dedupeWindowRecords;
    while (this.head < this.queue.length && this.queue[this.head].txid <= oldest) this.evictEntry(this.queue[this.head++]);
    while (this.bytes > this.limits.dedupeWindowBytesMax) {
      assert(this.head < this.queue.length, "bytes counted with no write in the queue");
      this.evictEntry(this.queue[this.head++]);
    }
    while (this.clients.size > this.limits.dedupeClientsMax) this.forgetLeastRecentClient();
    // Drop the evicted prefix once it is most of the array, so the queue's memory follows the window.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  private evictEntry(entry: Entry): void {
    if (!entry.live) return;
    entry.live = false;
    const state = this.clients.get(entry.client);
    assert(state !== undefined && state.entries.get(entry.seq) === entry, `write ${entry.client}#${entry.seq} not indexed`);
    state.entries.delete(entry.seq);
    state.evictedSeqMax = Math.max(state.evictedSeqMax, entry.seq);
    this.writes--;
    this.bytes -= entry.bytes;
  }

  private forgetLeastRecentClient(): void {
    const state = this.leastRecent;
    assert(state !== null, "clients counted with none in the recency list");
    this.unlink(state);
    for (const entry of state.entries.values()) {
      entry.live = false;
      this.writes--;
      this.bytes -= entry.bytes;
    }
    this.clients.delete(state.client);
    this.clientsForgotten++;
  }

  private unlink(state: ClientState): void {
    if (state.older === null) this.leastRecent = state.newer;
    else state.older.newer = state.newer;
    if (state.newer === null) this.mostRecent = state.older;
    else state.newer.older = state.older;
    state.older = state.newer = null;
  }

  private append(state: ClientState): void {
    state.older = this.mostRecent;
    if (this.mostRecent === null) this.leastRecent = state;
    else this.mostRecent.newer = state;
    this.mostRecent = state;
  }
}

/** Bytes a recorded reply holds (strings and byte strings by length, a few bytes per other value). */
export function recordedReplyBytes(reply: RecordedReply): number {
  return reply.ok ? replyValueBytes(reply.value) : Buffer.byteLength(reply.message);
}

function replyValueBytes(v: ReplyValue): number {
  if (v === null) return 1;
  if (typeof v === "number" || typeof v === "bigint") return 9;
  if (typeof v === "string") return 5 + Buffer.byteLength(v);
  if (v instanceof Uint8Array) return 5 + v.length;
  if (!Array.isArray(v)) return 10 + Buffer.byteLength(v.err);
  let sum = 5;
  for (const item of v) sum += replyValueBytes(item);
  return sum;
}

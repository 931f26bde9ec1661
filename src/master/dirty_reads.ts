/**
 * No dirty reads on the master (pure; issue #12 item 2). The master's Redis runs a write before a majority of journal
 * nodes holds it: a read of that Redis may see an effect that is later lost (the term fails) or undone (a reset to the
 * journal). So a read's reply is held until every write it may have seen, of the keys it read, is answered.
 *
 * Which writes a read may have seen: those sent to Redis before its reply came back (Redis answers in the order it
 * runs commands, and the driver learns both on one thread), so the set is fixed when the reply arrives — checking
 * before the read is sent would miss a write sent to Redis while the read was on its way. Of those, the ones whose
 * keys meet the read's (COMMAND's key positions; a command whose keys cannot be told — a script, movable keys, a
 * keyless read such as DBSIZE or SCAN — meets every other). A read that meets none is released at once.
 *
 * A write's answer means committed, or never journaled and without effects — except when the Redis served is being
 * reset to the journal or was given up with a failed term: each is an "undo" (`undoStarted`), which sends every read
 * held or in flight back to be read again (`retry`), and holds new reads until the undo ends (the rebuilt Redis holds
 * exactly the journal): a read never sees an effect being undone, nor a Redis half rebuilt.
 */

export type ReadId = number;
export type WriteKey = number;

/** What becomes of a held read: its reply may be given, or it must read again (`begin` anew). */
export interface ReadVerdict {
  read: ReadId;
  verdict: "release" | "retry";
}

export type BeginResult = { kind: "go"; token: number } | { kind: "held" } | { kind: "closed" };

interface Executed {
  keys: string[] | null;
  /** Reads whose reply waits for this write's answer. */
  readers: Set<ReadId>;
}

export class DirtyReadCore {
  /** Bumped by each undo: a read begun under an older one may have seen what was undone. */
  private generation = 0;
  private undoing: boolean;
  private closed = false;
  private readonly writes = new Map<WriteKey, Executed>();
  /** Unanswered writes by key, and those whose keys cannot be told (they meet every read). */
  private readonly byKey = new Map<string, Set<WriteKey>>();
  private readonly anyKey = new Set<WriteKey>();
  /** Reads whose reply came and waits for `blockers` writes to be answered. */
  private readonly waiting = new Map<ReadId, { blockers: number }>();
  /** Reads that may not start before the undo in progress ends. */
  private readonly held = new Set<ReadId>();

  /** `undoing`: the Redis is not yet a committed prefix (the master is not serving yet). */
  constructor(undoing = true) {
    this.undoing = undoing;
  }

  get unanswered(): number {
    return this.writes.size;
  }
  get waitingReads(): number {
    return this.waiting.size + this.held.size;
  }

  /** A write was sent to Redis; `keys` null when they cannot be told. */
  executed(id: WriteKey, keys: string[] | null): void {
    if (this.closed || this.writes.has(id)) return;
    this.writes.set(id, { keys, readers: new Set() });
    if (keys === null) this.anyKey.add(id);
    else for (const k of keys) this.byKey.set(k, (this.byKey.get(k) ?? new Set()).add(id));
  }

  /** A write was answered (committed, or refused before it had effects). */
  answered(id: WriteKey): ReadVerdict[] {
    const w = this.writes.get(id);
    if (w === undefined) return [];
    this.forget(id, w);
    const out: ReadVerdict[] = [];
    for (const read of w.readers) {
      const r = this.waiting.get(read);
      if (r === undefined || --r.blockers > 0) continue;
      this.waiting.delete(read);
      out.push({ read, verdict: "release" });
    }
    return out;
  }

  /** A read about to be sent to Redis: go (with the token to give `replied`), wait for the undo to end, or refuse. */
  begin(read: ReadId): BeginResult {
    if (this.closed) return { kind: "closed" };
    if (this.undoing) {
      this.held.add(read);
      return { kind: "held" };
    }
    return { kind: "go", token: this.generation };
  }

  /** A read's reply came back: give it now, read again, or wait (its verdict comes from `answered` or an undo). */
  replied(read: ReadId, keys: string[] | null, token: number): "release" | "retry" | "wait" {
    if (this.closed || this.undoing || token !== this.generation) return "retry";
    const blockers = this.blockersOf(keys);
    if (blockers.size === 0) return "release";
    for (const id of blockers) this.writes.get(id)!.readers.add(read);
    this.waiting.set(read, { blockers: blockers.size });
    return "wait";
  }

  /** Effects in Redis are about to be undone (a reset to the journal, or the term failed): every read goes again. */
  undoStarted(): ReadVerdict[] {
    this.generation++;
    this.undoing = true;
    return this.retryAll(false);
  }

  /** The undo is over (Redis holds exactly the journal again): held reads start. */
  undoEnded(): ReadVerdict[] {
    if (this.closed || !this.undoing) return [];
    this.undoing = false;
    const out = [...this.held].map((read): ReadVerdict => ({ read, verdict: "retry" }));
    this.held.clear();
    return out;
  }

  /** The master role ended: every read goes again (and finds the node no longer serving them). */
  close(): ReadVerdict[] {
    this.closed = true;
    this.generation++;
    for (const [id, w] of this.writes) this.forget(id, w);
    return this.retryAll(true);
  }

  /** A read given up (its connection closed, its deadline passed). */
  cancel(read: ReadId): void {
    this.held.delete(read);
    if (this.waiting.delete(read)) for (const w of this.writes.values()) w.readers.delete(read);
  }

  private blockersOf(keys: string[] | null): Set<WriteKey> {
    if (keys === null) return new Set(this.writes.keys());
    const out = new Set(this.anyKey);
    for (const k of keys) for (const id of this.byKey.get(k) ?? []) out.add(id);
    return out;
  }

  private forget(id: WriteKey, w: Executed): void {
    this.writes.delete(id);
    if (w.keys === null) this.anyKey.delete(id);
    else {
      for (const k of w.keys) {
        const ids = this.byKey.get(k);
        ids?.delete(id);
        if (ids?.size === 0) this.byKey.delete(k);
      }
    }
  }

  private retryAll(includeHeld: boolean): ReadVerdict[] {
    const out: ReadVerdict[] = [...this.waiting.keys()].map((read) => ({ read, verdict: "retry" }));
    this.waiting.clear();
    for (const w of this.writes.values()) w.readers.clear();
    if (includeHeld) {
      for (const read of this.held) out.push({ read, verdict: "retry" });
      this.held.clear();
    }
    return out;
  }
}

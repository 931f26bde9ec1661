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
  keys: readonly string[] | null;
  /** Order of execution: every set below lists its writes in this order (insertion order), oldest first. */
  seq: number;
}

/**
 * Reads waiting on one set of unanswered writes (one key's, the keyless ones', or all), in reply order, each with the
 * last write executed before its reply (`mark`): a read is done with the set once the set's oldest write is newer than
 * its mark. Per waiting read O(its keys) memory, and each answer releases a prefix: nothing grows as reads × writes (a
 * hot key under a write storm, review s20: 4096 reads on 2048 writes held 225 MiB and 28 s of the master's thread).
 */
interface Watch {
  reads: { read: ReadId; mark: number }[];
  head: number;
}

/** Watch names no key can take (keys are latin1 strings of bytes; these are not compared with them). */
const ALL: unique symbol = Symbol("all writes");
const ANY: unique symbol = Symbol("writes of unknown keys");
type SetName = string | typeof ALL | typeof ANY;

export class DirtyReadCore {
  /** Bumped by each undo: a read begun under an older one may have seen what was undone. */
  private generation = 0;
  private undoing: boolean;
  private closed = false;
  private seq = 0;
  private readonly writes = new Map<WriteKey, Executed>();
  /** Unanswered writes by key, and those whose keys cannot be told (they meet every read). */
  private readonly byKey = new Map<string, Set<WriteKey>>();
  private readonly anyKey = new Set<WriteKey>();
  /** Waiting reads by the set they wait on: ALL (keyless reads), ANY (writes of unknown keys), or a key. */
  private readonly watches = new Map<SetName, Watch>();
  /** Reads whose reply came and waits for `sets` sets of writes to be answered. */
  private readonly waiting = new Map<ReadId, { sets: number }>();
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
  executed(id: WriteKey, keys: readonly string[] | null): void {
    if (this.closed || this.writes.has(id)) return;
    this.writes.set(id, { keys, seq: ++this.seq });
    if (keys === null) this.anyKey.add(id);
    else for (const k of keys) this.byKey.set(k, (this.byKey.get(k) ?? new Set()).add(id));
  }

  /** A write was answered (committed, or refused before it had effects). */
  answered(id: WriteKey): ReadVerdict[] {
    const w = this.writes.get(id);
    if (w === undefined) return [];
    this.forget(id, w);
    const out: ReadVerdict[] = [];
    this.drain(ALL, out);
    if (w.keys === null) this.drain(ANY, out);
    else for (const k of new Set(w.keys)) this.drain(k, out);
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
    let sets = 0;
    const names: SetName[] = keys === null ? [ALL] : [ANY, ...new Set(keys)];
    for (const name of names) {
      // Every write in a set now was executed before this reply: a non-empty set holds it.
      if (this.oldestSeq(name) === Infinity) continue;
      const watch = this.watches.get(name) ?? { reads: [], head: 0 };
      this.watches.set(name, watch);
      watch.reads.push({ read, mark: this.seq });
      sets++;
    }
    if (sets === 0) return "release";
    this.waiting.set(read, { sets });
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
    // Its entries in the watches are skipped when they come up (each is drained as its set's writes are answered).
    this.held.delete(read);
    this.waiting.delete(read);
  }

  /** The oldest unanswered write of a set (Infinity when none). */
  private oldestSeq(name: SetName): number {
    const ids = name === ALL ? this.writes.keys() : name === ANY ? this.anyKey.values() : this.byKey.get(name)?.values();
    const first = ids?.next();
    return first === undefined || first.done === true ? Infinity : this.writes.get(first.value)!.seq;
  }

  /** A write of set `name` was answered: the reads it no longer holds (a prefix) are done with this set. */
  private drain(name: SetName, out: ReadVerdict[]): void {
    const watch = this.watches.get(name);
    if (watch === undefined) return;
    const oldest = this.oldestSeq(name);
    while (watch.head < watch.reads.length && watch.reads[watch.head].mark < oldest) {
      const { read } = watch.reads[watch.head++];
      const r = this.waiting.get(read);
      if (r === undefined || --r.sets > 0) continue;
      this.waiting.delete(read);
      out.push({ read, verdict: "release" });
    }
    if (watch.head === watch.reads.length) this.watches.delete(name);
    else if (watch.head > 1024 && watch.head * 2 > watch.reads.length) {
      watch.reads = watch.reads.slice(watch.head);
      watch.head = 0;
    }
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
    this.watches.clear();
    if (includeHeld) {
      for (const read of this.held) out.push({ read, verdict: "retry" });
      this.held.clear();
    }
    return out;
  }
}

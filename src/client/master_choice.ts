/**
 * Where a client sends its next write, pure: to the master it knows (`write.<id>`), or to the queue group `masters`
 * (`write`) when it knows none. A frozen master (SIGSTOP, a VM pause) stays in the queue group until nats-server drops
 * its connection (minutes: docs/failover.md): writes sent there meanwhile reach it about half the time and wait out their timeout, while
 * a write addressed to the new master never goes near it.
 *
 * What names a master, each from a sender NATS permissions vouch for (src/nats/auth.ts):
 *   - its heartbeat on `hb.master.<id>`: only user `<id>` may publish there; health "writing" means it serves. The
 *     first one of a higher epoch is a new master: the client's unanswered writes go again at once (client.ts);
 *   - a write's reply (`master`, `epoch`): only masters and data nodes receive writes, and a reply goes only to the
 *     reply subject of a request received (allow_responses).
 * A higher epoch wins; nothing of a lower epoch than the newest heard counts (a deposed master that resumes).
 * An attempt sent to the master that failed (a timeout, no responders, "not serving") sends the next ones to the queue
 * group, until a heartbeat or a reply names a master again: a master that is alive says so within one heartbeat; a
 * frozen one never does.
 */

/** What a heartbeat or a reply says: the node, its epoch, and whether it serves writes now. */
export interface MasterHeard {
  id: string;
  epoch: number;
  serving: boolean;
}

export class MasterChoice {
  /** The newest master heard (highest epoch), null before any. */
  private newest: { id: string; epoch: number } | null = null;
  /** Writes go to `newest` (it serves and no attempt to it failed since it said so). */
  private usable = false;
  /** The highest epoch a master was heard serving in: its first such report is the news of a new master. */
  private servingEpoch = 0;

  /** Where the next attempt goes: a master's id (`write.<id>`), or null for the queue group. */
  target(): string | null {
    return this.usable && this.newest !== null ? this.newest.id : null;
  }

  /** The newest master's id, usable or not (whose events count as the master's). */
  get known(): string | null {
    return this.newest?.id ?? null;
  }

  get epoch(): number {
    return this.newest?.epoch ?? 0;
  }

  /**
   * A heartbeat or a reply. True when it is the first report of a master serving in a higher epoch than any before:
   * the client's unanswered writes go again at once (same ids), to it.
   */
  heard(h: MasterHeard): boolean {
    if (!Number.isSafeInteger(h.epoch) || h.epoch < 1) return false;
    const newest = this.newest;
    if (newest !== null && h.epoch < newest.epoch) return false;
    // One epoch has one writer (the journal quorum fences it): another id in the same epoch is not believed.
    if (newest !== null && h.epoch === newest.epoch && h.id !== newest.id) return false;
    // A higher epoch deposes the master we knew, whether or not this one serves yet (the same one again: no new object,
    // as every write's reply names it).
    if (newest === null || h.epoch > newest.epoch) this.newest = { id: h.id, epoch: h.epoch };
    this.usable = h.serving;
    if (!h.serving || h.epoch <= this.servingEpoch) return false;
    this.servingEpoch = h.epoch;
    return true;
  }

  /** An attempt sent to `id` got no answer as master: the next ones go to the queue group until it is named again. */
  failed(id: string | null): void {
    if (id !== null && this.newest?.id === id) this.usable = false;
  }
}

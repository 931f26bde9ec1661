/**
 * The dedupe window's warm-up (issue #11), pure: a node whose Redis already holds committed records up to `upTo`
 * (a replica restarted, resynced, bootstrapped, or released for a takeover) must have its window observe the last
 * `dedupeWindowRecords` of them before it answers retries as master. Which txids to read, from which journal node,
 * when it is done, and when it gives up: production's replica (src/replica/replica.ts) and the simulator's
 * (src/sim/sim_replica.ts) drive this same class; the driver reads, hands the records to the window, and reports.
 *
 * Reads rotate over the journal nodes. A miss (no answer, nothing usable) moves to the next node; after a round of
 * misses the driver pauses. Only misses in a row count towards giving up: a cold window takes many reads
 * (dedupeWindowRecords over readRecordsMax), each one progress. A standby never gives up (it is eligible meanwhile);
 * the release before a takeover (`giveUp`) fails after three rounds of misses in a row. Records purged on every node
 * (PURGED from each in a row) cannot be learnt: the warm-up ends with the window incomplete.
 */
import type { Config } from "../config/config.js";

/**
 * The first txid a window that observed up to `windowLastTxid` still lacks to hold the last `dedupeWindowRecords`
 * records up to `appliedTxid`; null when it holds them (or there are none).
 */
export function warmFrom(appliedTxid: number, windowLastTxid: number, limits: Pick<Config, "dedupeWindowRecords">): number | null {
  const from = Math.max(1, windowLastTxid + 1, appliedTxid - limits.dedupeWindowRecords + 1);
  return from <= appliedTxid ? from : null;
}

export type WarmupStep =
  /** Read committed records from `fromTxid` on `node` (up to the warm-up's end: the driver keeps only those). */
  | { kind: "read"; node: string; fromTxid: number }
  /** The window holds every record up to the end (or all that the journal still holds: `incomplete`). */
  | { kind: "done"; incomplete: boolean }
  /** Three rounds of misses in a row while giving up was allowed: the release cannot finish. */
  | { kind: "gaveUp"; reason: string };

/** What the driver does after a miss. */
export type MissAction = "next" | "pause" | "incomplete";

export class WindowWarmup {
  private from: number | null;
  private reads = 0;
  private misses = 0;
  private purged = 0;
  private incomplete = false;

  /**
   * `from`: the first txid to learn (warmFrom), null: nothing to learn. `upTo`: the last (the applied txid).
   * `giveUp`: the release before a takeover, which must finish or fail; a standby's warm-up retries for ever.
   */
  constructor(
    private readonly nodes: readonly string[],
    from: number | null,
    readonly upTo: number,
    private readonly giveUp: boolean,
  ) {
    this.from = from !== null && from <= upTo ? from : null;
  }

  /** The next txid to learn; null once done (or given up as incomplete). */
  get fromTxid(): number | null {
    return this.from;
  }

  next(): WarmupStep {
    if (this.from === null) return { kind: "done", incomplete: this.incomplete };
    if (this.giveUp && this.misses >= this.nodes.length * 3) {
      return { kind: "gaveUp", reason: `the dedupe window could not learn txid ${this.from}: no journal node served it` };
    }
    const node = this.nodes[this.reads++ % this.nodes.length];
    return { kind: "read", node, fromTxid: this.from };
  }

  /** The read returned records from fromTxid on; the window observed them up to `lastTxid`. */
  read(lastTxid: number): void {
    if (this.from === null || lastTxid < this.from) return;
    this.misses = 0;
    this.from = lastTxid + 1 > this.upTo ? null : lastTxid + 1;
  }

  /** The read brought nothing usable; `purged`: the node answered PURGED. */
  missed(purged: boolean): MissAction {
    this.misses++;
    this.purged = purged ? this.purged + 1 : 0;
    if (this.purged >= this.nodes.length) {
      this.from = null;
      this.incomplete = true;
      return "incomplete";
    }
    return this.misses % this.nodes.length === 0 ? "pause" : "next";
  }
}

/**
 * Simulated time: a queue of events ordered by (time, insertion order). Running an event is one step of the
 * simulation; nothing else advances time, so a run depends on the seed alone.
 */
import { assert } from "../util/assert.js";

interface SimEvent {
  atMs: number;
  seq: number;
  run: () => void;
}

/** What an actor needs of the clock: a data node's roles get one that a stop (SIGSTOP) freezes. */
export interface SimTimer {
  readonly nowMs: number;
  after(delayMs: number, run: () => void): void;
}

export class SimClock implements SimTimer {
  private heap: SimEvent[] = [];
  private seq = 0;
  nowMs = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Runs `run` `delayMs` from now (0: after the events already due now). */
  after(delayMs: number, run: () => void): void {
    // Tested before the message is built: this runs for every event of a run.
    if (!(delayMs >= 0 && Number.isFinite(delayMs))) assert(false, `delay ${delayMs}`);
    this.push({ atMs: this.nowMs + delayMs, seq: this.seq++, run });
  }

  /** Runs the next event; false when none is left. */
  step(): boolean {
    const e = this.pop();
    if (e === undefined) return false;
    assert(e.atMs >= this.nowMs, "time went backwards");
    this.nowMs = e.atMs;
    e.run();
    return true;
  }

  /**
   * A binary heap on (atMs, seq), which no two events share: any heap pops them in the same order. Sifted by moving
   * the hole, not by swaps.
   */
  private push(e: SimEvent): void {
    const h = this.heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent];
      if (p.atMs < e.atMs || (p.atMs === e.atMs && p.seq < e.seq)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = e;
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    const n = h.length;
    if (n === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      let m = l;
      let c = h[l];
      const r = l + 1;
      if (r < n) {
        const rc = h[r];
        if (rc.atMs < c.atMs || (rc.atMs === c.atMs && rc.seq < c.seq)) {
          m = r;
          c = rc;
        }
      }
      if (last.atMs < c.atMs || (last.atMs === c.atMs && last.seq < c.seq)) break;
      h[i] = c;
      i = m;
    }
    h[i] = last;
    return top;
  }
}

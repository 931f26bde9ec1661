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
    assert(delayMs >= 0 && Number.isFinite(delayMs), `delay ${delayMs}`);
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

  private less(a: SimEvent, b: SimEvent): boolean {
    return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
  }

  private push(e: SimEvent): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l], h[m])) m = l;
        if (r < h.length && this.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

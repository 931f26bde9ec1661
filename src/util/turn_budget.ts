import { performance } from "node:perf_hooks";

/**
 * A share of one event-loop turn (issue #12 review). A data node's front door and its master role run on one loop,
 * beside heartbeats and the election: work that held the loop past masterTimeoutMs deposed a healthy master. Every
 * unbounded piece of work (the door taking a connection's pipelined requests, matching a published message against
 * the patterns, handing it to the subscribers; the master decoding writes off the bus, reading its replication
 * stream, encoding records) asks `spend()` before each step; once the turn's budget is spent it parks its
 * continuation with `later()`, which runs in a later turn (setImmediate: after the timers and I/O that waited), in the
 * order parked, each taking at least one step there. So a timer waits at most about one budget behind each share,
 * whatever the clients send, and the clients slow down instead (their sockets are not read meanwhile).
 *
 * Time-based: the door's costs (a request's parse and dispatch, a 20 KB channel against a pattern with 40 stars) vary
 * by orders of magnitude, so a count would be too loose for some and too tight for others. The clock and the deferral
 * are injected (unit tests).
 */
/** What a piece of work asks of its share (a TurnBudget; tests may drive their own). */
export interface TurnShare {
  /** True: take the next step now. False: this turn's budget is spent, park the rest with later(). */
  spend(): boolean;
  /** Runs `fn` in a later turn, after what was parked before it. */
  later(fn: () => void): void;
}

export class TurnBudget implements TurnShare {
  /** When this turn's first step was taken (null: none yet). */
  private turnStartMs: number | null = null;
  private parked: (() => void)[] = [];
  private armed = false;
  /** The continuation being run from the parked list may take one step whatever was spent (fairness). */
  private granted = false;

  constructor(
    /** Work per turn, in ms (respTurnBudgetMs, masterTurnBudgetMs). */
    private readonly budgetMs: number,
    private readonly now: () => number = () => performance.now(),
    private readonly defer: (fn: () => void) => void = (fn) => void setImmediate(fn),
  ) {}

  /** True: take the next step now. False: this turn's budget is spent, park the rest with later(). */
  spend(): boolean {
    if (this.granted) {
      this.granted = false;
      if (this.turnStartMs === null) this.turnStartMs = this.now();
      this.arm();
      return true;
    }
    const now = this.now();
    if (this.turnStartMs === null) {
      this.turnStartMs = now;
      this.arm();
      return true;
    }
    return now - this.turnStartMs < this.budgetMs;
  }

  /** Runs `fn` in a later turn, after what was parked before it. */
  later(fn: () => void): void {
    this.parked.push(fn);
    this.arm();
  }

  /** Continuations parked and not yet run. */
  get waiting(): number {
    return this.parked.length;
  }

  /** A fresh budget next turn: the reset, then what was parked (what parks again runs in the turn after). */
  private arm(): void {
    if (this.armed) return;
    this.armed = true;
    this.defer(() => this.turn());
  }

  private turn(): void {
    this.armed = false;
    this.turnStartMs = null;
    const ready = this.parked;
    this.parked = [];
    // Each parked continuation takes at least one step per turn: a long delivery parked first cannot starve a PING
    // parked after it. A turn then costs at most the budget and one step per waiting party.
    for (const fn of ready) {
      this.granted = true;
      fn();
    }
    this.granted = false;
  }
}

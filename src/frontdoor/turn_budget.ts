/**
 * The front door's share of one event-loop turn (issue #12 review). The door runs on the data node's loop, beside the
 * master role's journal batches, heartbeats and the election: door work that held the loop past masterTimeoutMs
 * deposed a healthy master. Every unbounded piece of door work (taking a connection's pipelined requests, matching a
 * published message against the patterns, handing it to the subscribers) asks `spend()` before each step; once the
 * turn's budget is spent it parks its continuation with `later()`, which runs in a later turn (setImmediate: after
 * the timers and I/O that waited), in the order parked, each taking at least one step there. So a timer waits at most
 * about one budget behind the door, whatever its clients send, and the clients slow down instead (their sockets are not
 * read meanwhile).
 *
 * Time-based: the door's costs (a request's parse and dispatch, a 20 KB channel against a pattern with 40 stars) vary
 * by orders of magnitude, so a count would be too loose for some and too tight for others. The clock and the deferral
 * are injected (unit tests).
 */
import { performance } from "node:perf_hooks";

export class TurnBudget {
  /** When this turn's first step was taken (null: none yet). */
  private turnStartMs: number | null = null;
  private parked: (() => void)[] = [];
  private armed = false;
  /** The continuation being run from the parked list may take one step whatever was spent (fairness). */
  private granted = false;

  constructor(
    /** Door work per turn, in ms (respTurnBudgetMs). */
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

/**
 * Requests in flight over all of a door's connections (respInflightMax): 400 connections pipelining 32 requests each
 * put 12,800 writes in flight on the master's own node, whose completions then came in bursts no turn budget covers.
 * A connection past the bound stops taking requests and waits its turn: each request answered wakes the connection
 * that waited longest (FIFO), in a later turn.
 */
export class InflightGate {
  private count = 0;
  private readonly waiting = new Set<() => void>();

  constructor(
    private readonly max: number,
    private readonly budget: TurnBudget,
  ) {}

  get room(): boolean {
    return this.count < this.max;
  }

  get inFlight(): number {
    return this.count;
  }

  taken(): void {
    this.count++;
  }

  answered(): void {
    this.count--;
    if (this.count >= this.max) return;
    const first = this.waiting.values().next();
    if (first.done === true) return;
    this.waiting.delete(first.value);
    this.budget.later(first.value);
  }

  /** `wake` runs once there is room (again), unless already waiting. */
  wait(wake: () => void): void {
    this.waiting.add(wake);
  }

  /** A closed connection waits no more. */
  forget(wake: () => void): void {
    this.waiting.delete(wake);
  }
}

import type { TurnBudget } from "../util/turn_budget.js";

/**
 * Requests in flight over all of a door's connections (respInflightMax): 400 connections pipelining 32 requests each
 * put 12,800 writes in flight on the master's own node, whose completions then came in bursts no turn budget covers.
 * A connection past the bound stops taking requests and waits its turn: each request answered wakes the connection
 * that waited longest (FIFO), in a later turn.
 *
 * The bound adapts to the loop's delay (`adjust`, every DOOR_LOOP_PROBE_MS): halved while the loop is late past its
 * target, then raised again by an eighth of the maximum per probe. A fixed bound that suits an idle host is too much
 * for one whose cores are shared: at a load of 16 the master's loop got half a core, and redis-benchmark -c 400 -P 32
 * on its door still held it past masterTimeoutMs (the write path's own work, not the door's, took the turns).
 */
/** The adaptive bound never goes below this many requests in flight over the door (unless respInflightMax is lower). */
export const INFLIGHT_FLOOR = 16;
/**
 * What a request in flight holds besides its arguments' bytes, per argument (a Buffer view and its slot in the array):
 * measured at ~110 bytes, so a 1 MiB request of 174,000 empty arguments holds 18 MiB while in flight.
 */
export const ARG_OVERHEAD_BYTES = 128;

/** A request's weight for respInflightBytesMax: its arguments' bytes and ARG_OVERHEAD_BYTES each. */
export function requestWeight(args: readonly Buffer[]): number {
  let bytes = args.length * ARG_OVERHEAD_BYTES;
  for (const a of args) bytes += a.length;
  return bytes;
}

/** How often the door measures its loop's delay (a timer's lateness) to adjust its bound. */
export const DOOR_LOOP_PROBE_MS = 50;

export class InflightGate {
  private count = 0;
  /** The in-flight requests' weight (requestWeight): their arguments' bytes and per-argument overhead. */
  private weight = 0;
  private readonly waiting = new Set<() => void>();
  /** Connections woken for room and not yet run (the room each may take is theirs). */
  private woken = 0;
  /** The bound now: between INFLIGHT_FLOOR (or max, if smaller) and max. */
  private limit: number;

  constructor(
    private readonly max: number,
    private readonly budget: TurnBudget,
    /** respInflightBytesMax: past it no request is taken (one is, whatever its weight, when none is in flight). */
    private readonly weightMax = Number.POSITIVE_INFINITY,
  ) {
    this.limit = max;
  }

  /**
   * Room for one more request, besides the room kept for the connections woken and not yet run: a connection answered
   * meanwhile takes no waiter's room (review s27: a pipelining connection's own next request took it at once, in the
   * same turn as its answer, and the waiter woken for it found none and went to the back of the line).
   */
  get room(): boolean {
    const count = this.count + this.woken;
    return count < this.limit && (this.weight < this.weightMax || count === 0);
  }

  get inFlightWeight(): number {
    return this.weight;
  }

  get inFlight(): number {
    return this.count;
  }

  get bound(): number {
    return this.limit;
  }

  taken(weight = 0): void {
    this.count++;
    this.weight += weight;
  }

  answered(weight = 0): void {
    this.count--;
    this.weight -= weight;
    this.wakeWhileRoom(1);
  }

  /** The loop was `delayMs` late at the last probe; `targetMs` is what the door lets it be (respLoopDelayTargetMs). */
  adjust(delayMs: number, targetMs: number): void {
    const floor = Math.min(this.max, INFLIGHT_FLOOR);
    if (delayMs > targetMs) this.limit = Math.max(floor, Math.floor(this.limit / 2));
    else if (delayMs <= targetMs / 2) {
      this.limit = Math.min(this.max, this.limit + Math.max(1, Math.floor(this.max / 8)));
      this.wakeWhileRoom(this.limit - this.count);
    }
  }

  /** Wakes up to `n` waiting connections (oldest first, in a later turn) while there is room for one more each. */
  private wakeWhileRoom(n: number): void {
    for (let i = 0; i < n && this.room; i++) {
      const first = this.waiting.values().next();
      if (first.done === true) return;
      this.waiting.delete(first.value);
      const wake = first.value;
      this.woken++;
      // A woken connection may take nothing (closed, its output full): the room it leaves goes to the next waiter, or
      // that one waits for an answer that may never come (a door with nothing else in flight).
      this.budget.later(() => {
        this.woken--;
        wake();
        this.wakeWhileRoom(1);
      });
    }
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

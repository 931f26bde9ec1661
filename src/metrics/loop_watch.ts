/**
 * The event loop's delay in a data node (perf_hooks' histogram): the door, the role's protocol and its heartbeats share
 * one loop, and a loop held past masterTimeoutMs makes a standby campaign against a healthy master (issue #12 review).
 * Each interval the worst delay is kept (status details, `loopDelayMaxMs`) and a stall past `warnMs` is logged, so a
 * deposed master's log says whether its own loop stalled. The log line has the CPU the process used in the interval:
 * a delay with little CPU is a process waiting for a core (an overloaded host), not one busy on its loop.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import type { Logger } from "../util/log.js";

/**
 * The period of this histogram's timer, which wakes a data node this often, idle or not. A stall of S ms reads as
 * S − LOOP_SAMPLE_MS to S: the warning at masterTimeoutMs / 6 (100 ms by default) needs a period well below it.
 */
export const LOOP_SAMPLE_MS = 20;

export class LoopWatch {
  private readonly histogram: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;
  /** The worst delay seen since the start, in ms. */
  maxMs = 0;
  /** The worst delay of the last complete interval, in ms. */
  lastMs = 0;

  constructor(log: Logger, intervalMs: number, warnMs: number) {
    this.histogram = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
    this.histogram.enable();
    let cpu = process.cpuUsage();
    this.timer = setInterval(() => {
      const used = process.cpuUsage(cpu);
      cpu = process.cpuUsage();
      // The histogram's delay includes its own resolution: what is past it is the stall.
      this.lastMs = Math.max(0, Math.round(this.histogram.max / 1e6 - LOOP_SAMPLE_MS));
      this.histogram.reset();
      if (this.lastMs > this.maxMs) this.maxMs = this.lastMs;
      if (this.lastMs >= warnMs) log.warn({ delayMs: this.lastMs, cpuMs: Math.round((used.user + used.system) / 1000), intervalMs }, "event loop stalled");
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}

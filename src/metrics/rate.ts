/**
 * A per-second rate of a growing total (acked writes, applied txids) over the last few seconds, from samples taken
 * whenever status is built (every heartbeat): `redis-qjm status` shows it without sampling twice itself.
 */

/** Samples at most this often; the rate spans up to SAMPLES of them. */
export const RATE_SAMPLE_EVERY_MS = 1000;
const SAMPLES = 5;

export class RateMeter {
  private readonly times: number[] = [];
  private readonly totals: number[] = [];

  /** Records `total` at `nowMs` (at most one sample per RATE_SAMPLE_EVERY_MS); the rate per second since the oldest sample. */
  sample(nowMs: number, total: number): number {
    // A total that went down (a Redis rebuilt from an older snapshot) starts the window over: no negative rate.
    if (this.totals.length > 0 && total < this.totals[this.totals.length - 1]) {
      this.times.length = 0;
      this.totals.length = 0;
    }
    const newest = this.times.length - 1;
    if (newest < 0 || nowMs - this.times[newest] >= RATE_SAMPLE_EVERY_MS) {
      this.times.push(nowMs);
      this.totals.push(total);
      if (this.times.length > SAMPLES) {
        this.times.shift();
        this.totals.shift();
      }
    }
    const elapsedMs = nowMs - this.times[0];
    if (elapsedMs <= 0) return 0;
    return Math.round(((total - this.totals[0]) * 10_000) / elapsedMs) / 10;
  }
}

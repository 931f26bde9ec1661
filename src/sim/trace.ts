/**
 * What happened in a run: a hash of every line (two runs of one seed must agree byte for byte) and the last lines
 * kept to show what led to a failure.
 */
export const TRACE_LINES_KEPT = 40;

export class Trace {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193;
  private readonly recent: string[] = [];
  lines = 0;
  /** Every line goes to stdout as well (one seed, `--seed S`). */
  echo = false;

  constructor(private readonly clock: { nowMs: number }) {}

  add(actor: string, text: string): void {
    const line = `${String(this.clock.nowMs).padStart(7)} ${actor.padEnd(4)} ${text}`;
    this.lines++;
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      this.h1 = Math.imul(this.h1 ^ c, 0x01000193);
      this.h2 = Math.imul(this.h2 + c, 0x5bd1e995) ^ (this.h2 >>> 13);
    }
    this.h1 = Math.imul(this.h1 ^ 10, 0x01000193);
    this.recent.push(line);
    if (this.recent.length > TRACE_LINES_KEPT) this.recent.shift();
    if (this.echo) console.log(line);
  }

  get hash(): string {
    return (this.h1 >>> 0).toString(16).padStart(8, "0") + (this.h2 >>> 0).toString(16).padStart(8, "0");
  }

  get tail(): string[] {
    return [...this.recent];
  }
}

/**
 * The door's side of the read index (issue #12 item 3): one request to the master at a time, shared by every
 * linearizable read that arrived before it left. Reads arriving while one is on its way share the next one: a request
 * sent before a read arrived proves nothing about that read (the master's confirmation must come after the read
 * began). The master batches its confirmation rounds the same way (src/master/read_index_core.ts); this keeps the
 * bus and the master to one request per round however many reads wait.
 */

/** The master's committed txid, or why none came (a failover, a deposed master, a timeout). */
export type ReadIndexResult = { ok: true; txid: number } | { ok: false; why: string };

export class ReadIndexRounds {
  private inFlight: Promise<ReadIndexResult> | null = null;
  private next: Promise<ReadIndexResult> | null = null;

  /** `ask`: one request to the master (it never throws: a failure is a result). */
  constructor(private readonly ask: () => Promise<ReadIndexResult>) {}

  /** A read index for a read that begins now: from a request that leaves now or later. */
  get(): Promise<ReadIndexResult> {
    if (this.inFlight === null) return this.start();
    if (this.next === null) {
      this.next = this.inFlight.then(() => {
        this.next = null;
        return this.start();
      });
    }
    return this.next;
  }

  private start(): Promise<ReadIndexResult> {
    const round = this.ask().finally(() => {
      if (this.inFlight === round) this.inFlight = null;
    });
    this.inFlight = round;
    return round;
  }
}

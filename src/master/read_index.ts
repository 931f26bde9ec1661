/**
 * The master's side of the read index (the driver of ReadIndexCore, read_index_core.ts): requests off the bus, one
 * confirmation round at a time (getState to every journal node: its promised epoch), and the answer — the committed
 * txid the writer holds when the round confirmed its epoch — or the refusal. One core per writer epoch: a new term
 * starts a new one, and the old one's requests are refused NOT_WRITER.
 */
import type { Config } from "../config/config.js";
import { ErrorCode, errorReply } from "../protocol/errors.js";
import type { ReadIndexReply } from "../protocol/messages.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "./journal_client.js";
import { ReadIndexCore, type ReadIndexReady } from "./read_index_core.js";

/** What the read index needs of the master: the serving writer's epoch and committed txid (null: not serving). */
export type WriterView = () => { epoch: number; committedTxid: number } | null;

export class ReadIndexServer {
  private core: ReadIndexCore | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, (reply: ReadIndexReply) => void>();

  constructor(
    private readonly jc: JournalClient,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly writer: WriterView,
    /** A journal node promised a higher epoch: this master is deposed (its next batch would be refused as well). */
    private readonly fenced: (reason: string) => void = () => {},
  ) {}

  /** One request off the bus: answered once a round confirmed (or refuted) this master's epoch. */
  onRequest(): Promise<ReadIndexReply> {
    const w = this.writer();
    if (w === null) return Promise.resolve(errorReply(ErrorCode.NOT_WRITER, "this master is not serving"));
    if (this.core?.epoch !== w.epoch) {
      this.core?.close(`the term of epoch ${this.core.epoch} ended`);
      this.take(this.core);
      this.core = new ReadIndexCore(w.epoch, this.config.journalNodes, this.config.readIndexQueuedMax);
    }
    const core = this.core;
    const id = this.nextId++;
    const answered = new Promise<ReadIndexReply>((resolve) => this.pending.set(id, resolve));
    core.request(id);
    this.take(core);
    return answered;
  }

  /** The master role (or its term) ended: nothing waiting is answered as confirmed. */
  close(why: string): void {
    const core = this.core;
    this.core = null;
    core?.close(why);
    this.take(core);
  }

  private take(core: ReadIndexCore | null): void {
    if (core === null) return;
    const ready: ReadIndexReady = core.ready();
    for (const { ids, outcome } of ready.answers) {
      const w = this.writer();
      // Read when the round confirmed: the writer's committed txid now covers every write acked before the request.
      const reply: ReadIndexReply = !outcome.ok
        ? errorReply(outcome.code, outcome.message)
        : w === null || w.epoch !== core.epoch
          ? errorReply(ErrorCode.NOT_WRITER, `the term of epoch ${core.epoch} ended`)
          : { ok: true, txid: w.committedTxid, epoch: w.epoch };
      if (!reply.ok) this.log.debug({ code: reply.code, message: reply.message, requests: ids.length }, "read index refused");
      if (!outcome.ok && outcome.code === ErrorCode.EPOCH_FENCED && w?.epoch === core.epoch) this.fenced(`read index: ${outcome.message}`);
      for (const id of ids) {
        const resolve = this.pending.get(id);
        this.pending.delete(id);
        resolve?.(reply);
      }
    }
    if (ready.round !== null) this.round(core, ready.round.id, ready.round.nodes);
  }

  private round(core: ReadIndexCore, id: number, nodes: readonly string[]): void {
    for (const node of nodes) {
      void this.jc.call(node, { type: "getState" }, this.config.epochRequestTimeoutMs).then((reply) => {
        const epoch = reply.ok && "state" in reply ? { ok: true as const, promisedEpoch: reply.state.promisedEpoch } : { ok: false as const, message: reply.ok ? "not a state reply" : `${reply.code} ${reply.message}` };
        core.stateReply(id, node, epoch);
        this.take(core);
      });
    }
  }
}

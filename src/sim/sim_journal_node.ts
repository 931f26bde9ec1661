/**
 * A journal node in the simulation: the real JournalCore (through the cores factory) over a SimSegmentStore.
 * Requests are handled one at a time in arrival order; each DiskOp of a step takes simulated disk time and is durable
 * when it completes; the reply leaves after the last one, as journal_node.ts does. A failed disk op reloads the store
 * and the core from the disk and answers DISK_ERROR; a crash loses the queue and interrupts the op running.
 */
import type { Config } from "../config/config.js";
import type { DiskOp, JournalCore } from "../journal/journal_core.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, QjmError, toErrorReply } from "../protocol/errors.js";
import { parseJournalRequest, type JournalRequest } from "../protocol/messages.js";
import type { SimClock } from "./clock.js";
import type { SimCores } from "./cores.js";
import type { Invariants } from "./invariants.js";
import type { Prng } from "./prng.js";
import type { SimActor, SimBus, SimMessage } from "./sim_bus.js";
import { SimDisk, SimSegmentStore, type DiskErrno } from "./sim_disk.js";
import type { Trace } from "./trace.js";

export interface JournalNodeOptions {
  diskOpMsMax: number;
  /** While a disk fault window is open: chance that a write op fails. */
  diskErrorChance: number;
}

export class SimJournalNode implements SimActor {
  up = false;
  readonly disk = new SimDisk();
  store: SimSegmentStore;
  core: JournalCore | null = null;
  private incarnation = 0;
  private readonly queue: { from: string; id: number; body: Uint8Array }[] = [];
  private busy = false;
  /** The op running now and the ops after it (a crash interrupts the first). */
  private running: DiskOp[] = [];
  /** A disk fault window: write ops fail with this errno (at diskErrorChance). */
  diskFault: DiskErrno | null = null;
  /** Masters that hear this node's heartbeats. */
  masters: string[] = [];

  constructor(
    readonly id: string,
    private readonly config: Config,
    private readonly clock: SimClock,
    private readonly bus: SimBus,
    private readonly prng: Prng,
    private readonly trace: Trace,
    private readonly cores: SimCores,
    private readonly invariants: Invariants,
    private readonly options: JournalNodeOptions,
  ) {
    this.store = new SimSegmentStore(`/sim/${id}/current`, this.disk);
  }

  start(): void {
    this.up = true;
    const generation = ++this.incarnation;
    this.load();
    this.trace.add(this.id, `start: ${describe(this.core!)}`);
    const beat = (): void => {
      if (this.incarnation !== generation) return;
      for (const m of this.masters) this.bus.send(this.id, m, { kind: "heartbeat" });
      this.clock.after(this.config.heartbeatIntervalMs, beat);
    };
    beat();
  }

  private load(): void {
    this.store = new SimSegmentStore(`/sim/${this.id}/current`, this.disk);
    const loaded = this.store.open();
    if (loaded.truncated !== null) this.trace.add(this.id, `torn tail cut: ${loaded.truncated.bytes} bytes of ${loaded.truncated.file}`);
    if (loaded.fault !== null) this.trace.add(this.id, `refuses service: ${loaded.fault}`);
    this.core = this.cores.journalCore(this.id, loaded);
    this.invariants.journalState(this.id, this.core.state());
  }

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.incarnation++;
    const op = this.running[0];
    const fate = op === undefined ? "idle" : this.store.crashDuring(op, this.prng);
    this.trace.add(this.id, `crash (${fate}; ${this.queue.length} queued requests lost)`);
    this.queue.length = 0;
    this.running = [];
    this.busy = false;
    this.core = null;
  }

  flipBit(): void {
    const where = this.store.flipBit(this.prng);
    if (where === null) return;
    this.invariants.bitFlipped(this.id);
    this.trace.add(this.id, `bit flipped: ${where}`);
  }

  onMessage(from: string, msg: SimMessage): void {
    if (msg.kind !== "request") return;
    if (this.queue.length >= this.config.journalQueueMax) {
      this.reply(from, msg.id, toErrorReply(new QjmError(ErrorCode.OVERLOADED, `${this.queue.length} requests already wait for the disk`)));
      return;
    }
    this.queue.push({ from, id: msg.id, body: msg.body });
    if (!this.busy) this.next();
  }

  private next(): void {
    const item = this.queue.shift();
    if (item === undefined) {
      this.busy = false;
      return;
    }
    this.busy = true;
    let req: JournalRequest;
    try {
      req = parseJournalRequest(decode(item.body));
    } catch (err) {
      this.reply(item.from, item.id, toErrorReply(err));
      this.continueAfter(this.incarnation);
      return;
    }
    const result = this.core!.step(req);
    if ("error" in result.reply && !(req.type === "read" && result.reply.error.code === "NOT_FOUND")) this.trace.add(this.id, `${item.from} ${summarize(req)}: ${result.reply.error.code} ${result.reply.error.message}`);
    else if (req.type !== "read" && req.type !== "getState") this.trace.add(this.id, `${item.from} ${summarize(req)}: ok`);
    this.running = [...result.ops];
    const generation = this.incarnation;
    const runOp = (): void => {
      if (this.incarnation !== generation) return;
      const op = this.running[0];
      if (op === undefined) return this.finish(item, req, result.reply);
      const errno = this.diskFault !== null && this.prng.chance(this.options.diskErrorChance) ? this.diskFault : null;
      try {
        this.store.apply(op, errno);
      } catch (err) {
        // As journal_node.ts: the core already counts what the disk refused; reload both from what is on disk.
        this.trace.add(this.id, `disk error on ${op.op}: ${(err as Error).message}; reloading`);
        this.running = [];
        this.load();
        this.reply(item.from, item.id, toErrorReply(new QjmError(ErrorCode.DISK_ERROR, `disk operation failed: ${(err as Error).message}`)));
        this.continueAfter(generation);
        return;
      }
      this.running.shift();
      if (op.op === "append") this.invariants.journalAppended(this.id, this.store, op.txids);
      this.clock.after(this.prng.int(0, this.options.diskOpMsMax), runOp);
    };
    if (this.running.length === 0) runOp();
    else this.clock.after(this.prng.int(0, this.options.diskOpMsMax), runOp);
  }

  private finish(item: { from: string; id: number }, req: JournalRequest, reply: ReturnType<JournalCore["step"]>["reply"]): void {
    const core = this.core!;
    if ("error" in reply) {
      this.reply(item.from, item.id, toErrorReply(reply.error));
    } else if ("read" in reply) {
      const r = req as Extract<JournalRequest, { type: "read" }>;
      const { records, count } = this.store.read(reply.read.fromTxid, reply.read.toTxid, Math.min(r.bytesMax, this.config.readBytesMax), Math.min(r.recordsMax, this.config.readRecordsMax));
      const s = core.state();
      if (count > 0) this.trace.add(this.id, `${item.from} read ${reply.read.fromTxid}: ${count} records${r.uncommitted ? " (uncommitted too)" : ""}`);
      this.reply(item.from, item.id, { ok: true, read: { records, count, lastTxid: s.lastTxid, committedTxid: s.committedTxid } });
    } else {
      const state = "state" in reply ? reply.state : reply.prepare.state;
      this.invariants.journalReplied(this.id, state);
      if ("manifest" in reply) this.reply(item.from, item.id, { ok: true, manifest: reply.manifest, state: reply.state });
      else this.reply(item.from, item.id, { ok: true, ...reply });
    }
    this.continueAfter(this.incarnation);
  }

  /** The next queued request, unless the node crashed meanwhile. */
  private continueAfter(generation: number): void {
    this.clock.after(0, () => {
      if (this.incarnation === generation) this.next();
    });
  }

  private reply(to: string, id: number, body: unknown): void {
    this.bus.send(this.id, to, { kind: "reply", id, body: encode(body) });
  }
}

export function describe(core: JournalCore): string {
  const s = core.state();
  const seg = s.lastSegment === null ? "none" : `${s.lastSegment.startTxid}..${s.lastSegment.endTxid}${s.lastSegment.inProgress ? " open" : ""}`;
  return `promised ${s.promisedEpoch} writer ${s.writerEpoch} last ${s.lastTxid} segment ${seg}${s.fault !== null ? " FAULT" : ""}`;
}

/** A request in a trace line: its type and what identifies it. */
function summarize(req: JournalRequest): string {
  switch (req.type) {
    case "journal":
      return req.count === 0 ? `commit notice e${req.epoch} committed ${req.committedTxid}` : `journal e${req.epoch} ${req.firstTxid}..${req.firstTxid + req.count - 1} committed ${req.committedTxid}`;
    case "recoveryAppend":
      return `recoveryAppend e${req.epoch} ${req.firstTxid}..${req.firstTxid + req.count - 1}`;
    case "newEpoch":
      return `newEpoch ${req.epoch}`;
    case "startSegment":
      return `startSegment e${req.epoch} at ${req.txid}`;
    case "prepareRecovery":
      return `prepareRecovery e${req.epoch} segment ${req.segmentTxid}`;
    case "acceptRecovery":
      return `acceptRecovery e${req.epoch} ${req.segment.startTxid}..${req.segment.endTxid}`;
    case "finalize":
      return `finalize e${req.epoch} ${req.startTxid}..${req.endTxid}`;
    case "format":
      return `format ${req.clusterId}${req.restoring ? " restoring" : ""}`;
    case "read":
      return `read ${req.fromTxid}`;
    default:
      return req.type;
  }
}

/**
 * A journal node in the simulation: the real JournalCore (through the cores factory) over the production segment
 * store's logic on a simulated disk (SimSegmentStore). Requests, and a periodic compaction, are handled one at a time in
 * arrival order; each disk program of a step (a DiskOp, a merge's preparation) takes simulated disk time and is durable
 * when it completes; the reply leaves after the last one, as journal_node.ts does. A failed disk op reloads the store
 * and the core from the disk and answers DISK_ERROR; a crash loses the queue and falls between two primitive calls of
 * the program running, if any.
 */
import type { Config } from "../config/config.js";
import type { DiskProgram } from "../journal/disk.js";
import type { CompactionLimits, DiskOp, JournalCore } from "../journal/journal_core.js";
import type { SegmentLog } from "../journal/segment_store.js";
import { decode, encode } from "../protocol/codec.js";
import { ErrorCode, QjmError, toErrorReply } from "../protocol/errors.js";
import { parseCommitHint, parseJournalRequest, type JournalRequest } from "../protocol/messages.js";
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
  /**
   * Crashes aimed inside a disk program (between two of its calls), during the safety phase: at about `chance` per
   * program (crashChance), then a restart. Its own PRNG, so that the rest of
   * the seed's run is drawn as without it.
   */
  crashInside?: { chance: number; prng: Prng; safety: () => boolean; restart: (node: SimJournalNode) => void };
}

/**
 * Compaction as the real node runs it, with limits small enough that a run's few segments are merged: no purge
 * happens (the simulation has no snapshots, so no durable one), merges do, and crashes fall inside them.
 */
const COMPACTION_CHECK_MS = 250;
const COMPACTION_LIMITS: CompactionLimits = {
  maxSegments: 2,
  editlogMaxBytes: 1 << 30,
  mergedSegmentMaxBytes: 256 * 1024,
  purgeMarginRecords: 0,
  snapshotsRetained: 1,
};
/** Small: a merge copies its parts in several chunks, each a call a crash may fall after. */
const MERGE_CHUNK_BYTES = 2048;

/** One disk program of a task, and whether an open disk fault window may fail it. */
interface Job {
  label: string;
  program: (log: SegmentLog) => DiskProgram<unknown>;
  /** A DiskOp of the core (a failure reloads the core from the disk) or a merge's preparation (it changes no core). */
  op: DiskOp | null;
}

/** A request's or a compaction's disk work: jobs run in order, each result handed back. */
type Task = Generator<Job, void, unknown>;

type QueueItem = { kind: "request"; from: string; id: number; body: Uint8Array } | { kind: "compact" } | { kind: "commitHint"; body: Uint8Array };

/** A twentieth for the frequent appends and meta writes; three times as much inside compaction, which is rare. */
function crashChance(job: Job, chance: number): number {
  if (job.op?.op === "append" || job.op?.op === "persistMeta") return chance / 20;
  if (job.op === null || job.op.op === "mergeSegments" || job.op.op === "purgeSegment") return Math.min(1, chance * 3);
  return chance;
}

function opJob(op: DiskOp): Job {
  return { label: op.op, program: (log) => log.apply(op), op };
}

export class SimJournalNode implements SimActor {
  up = false;
  readonly disk = new SimDisk();
  store: SimSegmentStore;
  core: JournalCore | null = null;
  private incarnation = 0;
  private readonly queue: QueueItem[] = [];
  private busy = false;
  /** The disk program running now, if any (a crash falls inside it). */
  private running: Job | null = null;
  /** A disk fault window: write ops fail with this errno (at diskErrorChance). */
  diskFault: DiskErrno | null = null;
  /** Masters that hear this node's heartbeats. */
  masters: string[] = [];
  /** Merges completed (for the trace and tests). */
  merges = 0;

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
    const compact = (): void => {
      if (this.incarnation !== generation) return;
      if (!this.queue.some((q) => q.kind === "compact")) this.enqueue({ kind: "compact" });
      this.clock.after(COMPACTION_CHECK_MS, compact);
    };
    this.clock.after(COMPACTION_CHECK_MS, compact);
  }

  private load(): void {
    this.store = new SimSegmentStore(`/sim/${this.id}/current`, this.disk);
    const loaded = this.store.open();
    if (loaded.truncated !== null) this.trace.add(this.id, `torn tail cut: ${loaded.truncated.bytes} bytes of ${loaded.truncated.file}`);
    if (loaded.fault !== null) this.trace.add(this.id, `refuses service: ${loaded.fault}`);
    this.core = this.cores.journalCore(this.id, loaded);
    this.invariants.journalState(this.id, this.core.state());
    // A finalize a crash cut short of its reply still finalized the segment on disk: what is served now is chosen.
    if (loaded.fault === null) for (const r of this.store.finalizedRanges()) this.invariants.journalFinalized(this.id, this.store, r.startTxid, r.endTxid);
  }

  /**
   * What the disk checks read: while up, the node's store; while down, what its restart will load, opened on a copy of
   * its disk so that the check changes nothing. A crash inside a disk program leaves the store's index naming files the
   * program had already renamed (seed 8278: both nodes holding txid 1 crashed inside a finalize; the files held it).
   */
  checkView(): { store: SimSegmentStore; serving: boolean } {
    if (this.up) return { store: this.store, serving: this.core === null || this.core.state().fault === null };
    const store = new SimSegmentStore(`/sim/${this.id}/current`, this.disk.clone());
    return { store, serving: store.open().fault === null };
  }

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.incarnation++;
    const job = this.running;
    const fate = this.store.crashDuring(job === null ? null : job.program, this.prng);
    this.trace.add(this.id, `crash (${job === null ? "" : `${job.label} `}${fate}; ${this.queue.length} queued requests lost)`);
    this.queue.length = 0;
    this.running = null;
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
    // journal_node.ts: queued behind the requests before it, dropped when the queue is full (the next batch carries it).
    if (msg.kind === "commitHint" && this.queue.length < this.config.journalQueueMax) return this.enqueue({ kind: "commitHint", body: msg.body });
    if (msg.kind !== "request") return;
    if (this.queue.length >= this.config.journalQueueMax) {
      this.reply(from, msg.id, toErrorReply(new QjmError(ErrorCode.OVERLOADED, `${this.queue.length} requests already wait for the disk`)));
      return;
    }
    this.enqueue({ kind: "request", from, id: msg.id, body: msg.body });
  }

  private enqueue(item: QueueItem): void {
    this.queue.push(item);
    if (!this.busy) this.next();
  }

  private next(): void {
    const item = this.queue.shift();
    if (item === undefined) {
      this.busy = false;
      return;
    }
    this.busy = true;
    if (item.kind === "compact") return this.compact();
    if (item.kind === "commitHint") return this.learnCommit(item.body);
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
    const invariants = this.invariants;
    const self = this;
    const task = (function* (): Task {
      for (const op of result.ops) {
        yield opJob(op);
        if (op.op === "append") invariants.journalAppended(self.id, self.store, op.txids);
        // A finalized segment is chosen (committed): readers of committed records are served it (journal_core.ts).
        if (op.op === "finalize" || op.op === "syncFinish") invariants.journalFinalized(self.id, self.store, op.startTxid, op.endTxid);
      }
    })();
    this.runTask(task, () => this.finish(item, req, result.reply), (err) => {
      this.reply(item.from, item.id, toErrorReply(new QjmError(ErrorCode.DISK_ERROR, `disk operation failed: ${err.message}`)));
    });
  }

  /**
   * Runs a task's jobs one by one, each after some simulated disk time (a crash meanwhile interrupts it, see crash()),
   * then `done`. A failed op reloads the store and the core from what is on disk (as journal_node.ts: the core already
   * counts what the disk refused), then `failed`; the queue goes on either way unless the node crashed.
   */
  private runTask(task: Task, done: () => void, failed: (err: Error) => void): void {
    const generation = this.incarnation;
    let step = task.next();
    const runJob = (): void => {
      if (this.incarnation !== generation) return;
      if (step.done === true) {
        this.running = null;
        return done();
      }
      const job = step.value;
      const fault = job.op !== null || job.label === "prepareMerge" ? this.injectedFault() : null;
      let result: unknown;
      try {
        result = this.store.run(job.program(this.store.segmentLog), fault);
      } catch (err) {
        this.running = null;
        this.trace.add(this.id, `disk error on ${job.label}: ${(err as Error).message}${job.op !== null ? "; reloading" : ""}`);
        if (job.op !== null) this.load();
        failed(err as Error);
        this.continueAfter(generation);
        return;
      }
      step = task.next(result);
      this.schedule(step.done === true ? null : step.value, runJob);
    };
    this.schedule(step.done === true ? null : step.value, runJob);
  }

  /** The next job starts now and completes after its disk time (none: the task is done, at once). */
  private schedule(job: Job | null, run: () => void): void {
    this.running = job;
    if (job === null) return run();
    const delayMs = this.prng.int(0, this.options.diskOpMsMax);
    const aim = this.options.crashInside;
    if (aim !== undefined && aim.safety() && aim.prng.chance(crashChance(job, aim.chance))) {
      // Scheduled before `run` at the same time at the latest, so it comes first: the program is still running.
      this.clock.after(aim.prng.int(0, delayMs), () => {
        if (!this.up || this.running !== job) return;
        this.crash();
        aim.restart(this);
      });
    }
    this.clock.after(delayMs, run);
  }

  private injectedFault(): SimDisk["armed"] {
    if (this.diskFault === null || !this.prng.chance(this.options.diskErrorChance)) return null;
    return { errno: this.diskFault, on: this.prng.chance(0.5) ? "write" : "fsync" };
  }

  /** Claim 6 as the real node runs it (journal_node.ts compact()): purge, then each planned merge, prepared first. */
  private compact(): void {
    const core = this.core!;
    const plan = core.compactionPlan(this.store.sizes(), [], COMPACTION_LIMITS);
    if (plan.purge.length === 0 && plan.merges.length === 0) return this.continueAfter(this.incarnation);
    const self = this;
    const task = (function* (): Task {
      for (const op of core.purge(plan.purge, COMPACTION_LIMITS)) yield opJob(op);
      for (const m of plan.merges) {
        const prepared = yield { label: "prepareMerge", program: (log) => log.prepareMerge(m.parts, MERGE_CHUNK_BYTES), op: null };
        if (prepared !== true) continue;
        const ops = core.merge(m.parts);
        if (ops === null) {
          yield { label: "discardMerge", program: (log) => log.discardMerge(m.startTxid, m.endTxid), op: null };
          continue;
        }
        for (const op of ops) yield opJob(op);
        self.merges++;
        self.trace.add(self.id, `merged ${m.parts.length} segments into ${m.startTxid}..${m.endTxid}`);
      }
    })();
    this.runTask(task, () => this.continueAfter(this.incarnation), (err) => this.trace.add(this.id, `compaction failed: ${err.message}`));
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

  /** A commit hint off the bus: learnt in the queue's order, no reply, no disk; a malformed one only traced. */
  private learnCommit(body: Uint8Array): void {
    try {
      const hint = parseCommitHint(decode(body));
      if (this.core!.learnCommit(hint)) this.trace.add(this.id, `learnt commit ${hint.committedTxid} (e${hint.epoch} segment ${hint.segmentTxid}) from a hint`);
    } catch (err) {
      this.trace.add(this.id, `malformed commit hint: ${(err as Error).message}`);
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

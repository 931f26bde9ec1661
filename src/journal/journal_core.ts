/**
 * The journal node's protocol core: a pure state machine. A request goes in; the disk operations to run (in order)
 * and the reply to send after they are durable come out. No I/O, no clock, no randomness.
 *
 * The log it guards: segments in txid order, never overlapping, each record's txid its predecessor's plus one
 * within a segment; a node that missed part of the log has a hole between two segments (as an HDFS journal node
 * that rejoined at a segment start), and serves nothing from it. A writer is fenced by epoch: every request below the promised epoch is refused, and only
 * the writer that started the open segment (writerEpoch) may append to it.
 */
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { EPOCH_MAX, type CommitHint, type JournalRequest, type JournalState, type PrepareResult, type RecordPrint, type SegmentState } from "../protocol/messages.js";
import { checkRun } from "../segment/record.js";
import { assert, assertNever } from "../util/assert.js";

/** What a journal node keeps durably besides its segments. */
export interface JournalMeta {
  promisedEpoch: number;
  writerEpoch: number;
  /** The last recovery decision accepted here (the Paxos "accepted value" of that segment's end), if not yet superseded. */
  accepted: { segmentTxid: number; epoch: number } | null;
  /** The newest snapshot a majority of journal nodes holds (fsynced): the log below it may be purged. Absent: none. */
  durableSnapshotTxid?: number;
}

/** When and how far a journal node compacts its editlog (claim 6). */
export interface CompactionLimits {
  maxSegments: number;
  editlogMaxBytes: number;
  mergedSegmentMaxBytes: number;
  purgeMarginRecords: number;
  snapshotsRetained: number;
}

/** What to compact now: segments wholly below the durable snapshot, runs of small segments, old snapshots. */
export interface CompactionPlan {
  purge: SegmentState[];
  merges: { startTxid: number; endTxid: number; parts: SegmentState[] }[];
  deleteSnapshots: number[];
}

/** Which cluster this node belongs to (HDFS's VERSION file): kept apart from the meta, written once per format or restore. */
export interface Identity {
  clusterId: string | null;
  restoring: boolean;
}

/*
 * A record's print (RecordPrint: the epoch it was written in and its CRC, which covers its txid, length and payload) is
 * what a recovery recognizes a copy by: two copies of a segment whose records at their end txid have the same print
 * hold the same records, since a txid is written once per epoch and a copy always carries a prefix of one writer's log.
 */
/** The prints of a segment's records in txid order from startTxid (two parallel arrays: a segment may hold a million). */
export interface SegmentPrints {
  startTxid: number;
  epochs: number[];
  crcs: number[];
}

/** The CRC field of the record at `offset` of `buf`. */
export function recordCrc(buf: Uint8Array, offset: number): number {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(offset + 20);
}

export type DiskOp =
  | { op: "persistMeta"; meta: JournalMeta }
  | { op: "persistIdentity"; identity: Identity }
  /** Chunk of a finalized segment copied from a peer, into a temporary file (`fresh`: the first chunk, start over). */
  | { op: "syncAppend"; startTxid: number; fresh: boolean; records: Uint8Array }
  /** The copied segment is complete: fsync it and move it into the log, finalized. */
  | { op: "syncFinish"; startTxid: number; endTxid: number }
  | { op: "startSegment"; startTxid: number }
  | { op: "append"; segmentTxid: number; records: Uint8Array; txids: number[] }
  /** Drop every record above toTxid from the in-progress segment. */
  | { op: "truncate"; segmentTxid: number; toTxid: number }
  | { op: "finalize"; startTxid: number; endTxid: number }
  /** Remove an in-progress segment that holds no record. */
  | { op: "deleteSegment"; startTxid: number }
  /** Move an in-progress segment out of the log (renamed, kept for inspection, never served). */
  | { op: "setAside"; startTxid: number }
  /**
   * Recovery records that would replace this node's own from fromTxid on, kept aside (`fresh`: the first chunk,
   * start over) until acceptRecovery installs them: an interrupted copy never shortens the node's log.
   */
  | { op: "stageRecovery"; segmentTxid: number; fromTxid: number; fresh: boolean; records: Uint8Array }
  /** Atomically replace the in-progress segment from fromTxid on by the staged records up to toTxid. */
  | { op: "installRecovery"; segmentTxid: number; fromTxid: number; toTxid: number }
  /** Drop staged recovery records (a newer epoch, or a decision that does not need them). */
  | { op: "discardRecovery"; segmentTxid: number }
  /** Delete a finalized segment wholly covered by the durable snapshot. */
  | { op: "purgeSegment"; startTxid: number; endTxid: number }
  /** Replace consecutive finalized segments by one, from a merged file already written and fsynced aside. */
  | { op: "mergeSegments"; startTxid: number; endTxid: number; parts: number[] };

export type CoreReply =
  | { state: JournalState }
  | { manifest: SegmentState[]; state: JournalState }
  | { prepare: PrepareResult }
  | { read: { fromTxid: number; toTxid: number } };

/** What a step may need of the node besides the core (held by its driver). */
export interface StepContext {
  /** Txids of the complete snapshots this node holds (absent: none). */
  snapshots?: readonly number[];
}

export interface StepResult {
  /** Run in order, each durable before the next; only then send `reply` (or `error`). */
  ops: DiskOp[];
  reply: CoreReply | { error: QjmError };
}

export interface LoadedJournal {
  meta: JournalMeta;
  /** Sorted by startTxid, contiguous. */
  segments: SegmentState[];
  /** A reason to refuse service (corrupt segment), or null. */
  fault: string | null;
  /** Absent: no cluster checks (pure tests of the protocol). A real node always has one. */
  identity?: Identity;
  /** The prints of the newest segment's records, as scanned at open. Absent: unknown (a recovery cannot recognize its copy). */
  newestPrints?: SegmentPrints;
}

export class JournalCore {
  private meta: JournalMeta;
  private segments: SegmentState[];
  private fault: string | null;
  private committedTxid = 0;
  private identity: Identity | null;
  /** A finalized segment being copied in from a peer: the next txid expected. */
  private syncing: { segment: SegmentState; nextTxid: number } | null = null;
  /** Recovery records staged to replace the newest segment from fromTxid on (HDFS syncs a segment into a temp file too). */
  private staged: { segmentTxid: number; epoch: number; fromTxid: number; endTxid: number; prints: SegmentPrints } | null = null;
  /**
   * The prints of the newest segment's records: an acceptRecovery is honoured only if this node's copy ends with the
   * chosen copy's last record (else a copy that failed would finalize this node's own, maybe never committed, records).
   * Appended in place; replaced (never shrunk in place) otherwise, so that a refused step can restore it by length.
   */
  private prints: SegmentPrints | null;

  constructor(
    readonly nodeId: string,
    loaded: LoadedJournal,
  ) {
    this.meta = { ...loaded.meta };
    this.segments = loaded.segments.map((s) => ({ ...s }));
    this.fault = loaded.fault;
    this.identity = loaded.identity === undefined ? null : { ...loaded.identity };
    const p = loaded.newestPrints;
    this.prints = p === undefined ? null : { startTxid: p.startTxid, epochs: [...p.epochs], crcs: [...p.crcs] };
    this.invariants();
  }

  /** The print of the record at txid of the newest segment, if this node knows it. */
  printAt(txid: number): RecordPrint | null {
    const last = this.segments.at(-1);
    const p = this.prints;
    if (last === undefined || p === null || p.startTxid !== last.startTxid || p.epochs.length !== last.endTxid - last.startTxid + 1) return null;
    const i = txid - p.startTxid;
    return i < 0 || i >= p.epochs.length ? null : { epoch: p.epochs[i], crc: p.crcs[i] };
  }

  get lastTxid(): number {
    const last = this.segments.at(-1);
    return last === undefined ? 0 : last.endTxid;
  }

  get firstTxid(): number {
    const first = this.segments.find((s) => s.endTxid >= s.startTxid);
    return first === undefined ? 0 : first.startTxid;
  }

  /** state().promisedEpoch, without building the whole state (the simulator checks it after every step). */
  get promisedEpoch(): number {
    return this.meta.promisedEpoch;
  }

  state(): JournalState {
    const last = this.segments.at(-1);
    return {
      nodeId: this.nodeId,
      promisedEpoch: this.meta.promisedEpoch,
      writerEpoch: this.meta.writerEpoch,
      firstTxid: this.firstTxid,
      lastTxid: this.lastTxid,
      committedTxid: this.committedTxid,
      lastSegment: last === undefined ? null : { ...last },
      fault: this.fault,
      clusterId: this.identity?.clusterId ?? null,
      restoring: this.identity?.restoring ?? false,
    };
  }

  /** Highest txid a reader may be given: committed and held here (or everything held, for recovery reads). */
  readableTxid(uncommitted: boolean): number {
    return uncommitted ? this.lastTxid : Math.min(this.knownCommittedTxid, this.lastTxid);
  }

  /**
   * What this node knows is committed: its commit index, or the end of its finalized segments — a segment is finalized
   * only once its records are committed (a roll after the commit, a recovery's decision, a catch-up's copy), as in
   * HDFS, where finalized segments are what readers get. Right after a restart the commit index is unknown until the
   * writer's next batch; the finalized segments still serve (sim seed 40: the one clean copy of 1..15 was finalized on a
   * node just restarted, the other copy rotted, and no writer could rebuild).
   */
  private get knownCommittedTxid(): number {
    const finalized = this.segments.filter((s) => !s.inProgress).reduce((end, s) => Math.max(end, s.endTxid), 0);
    return Math.max(this.committedTxid, finalized);
  }

  /**
   * A refused request changes nothing but the promise: a higher epoch is promised (and persisted) even when
   * the request itself fails, as HDFS's checkRequest does.
   */
  step(req: JournalRequest, held: StepContext = {}): StepResult {
    if (this.fault !== null && req.type !== "getState") {
      return { ops: [], reply: { error: new QjmError(ErrorCode.SEGMENT_CORRUPT, this.fault) } };
    }
    const metaBefore = { ...this.meta };
    const segmentsBefore = this.segments.map((s) => ({ ...s }));
    const committedBefore = this.committedTxid;
    const identityBefore = this.identity === null ? null : { ...this.identity };
    const syncingBefore = this.syncing === null ? null : { ...this.syncing };
    const stagedBefore = this.staged === null ? null : { ...this.staged };
    const printsBefore = { prints: this.prints, length: this.prints?.epochs.length ?? 0 };
    const stagedPrintsLength = this.staged?.prints.epochs.length ?? 0;
    try {
      const result = this.dispatch(req, held);
      this.invariants();
      return result;
    } catch (err) {
      if (!(err instanceof QjmError)) throw err;
      this.segments = segmentsBefore;
      this.committedTxid = committedBefore;
      this.identity = identityBefore;
      this.syncing = syncingBefore;
      this.staged = stagedBefore;
      this.prints = printsBefore.prints;
      if (this.prints !== null) cut(this.prints, printsBefore.length);
      if (this.staged !== null) cut(this.staged.prints, stagedPrintsLength);
      // An unformatted node belongs to no cluster yet: no refused request of any sender may leave it a promise (it
      // would never be formatted: a node that promised an epoch is not formatted blindly).
      const unformatted = this.identity !== null && this.identity.clusterId === null;
      const promised = unformatted ? metaBefore.promisedEpoch : Math.max(metaBefore.promisedEpoch, this.meta.promisedEpoch);
      this.meta = { ...metaBefore, promisedEpoch: promised };
      const ops: DiskOp[] = promised > metaBefore.promisedEpoch ? [{ op: "persistMeta", meta: { ...this.meta } }] : [];
      this.invariants();
      return { ops, reply: { error: err } };
    }
  }

  private dispatch(req: JournalRequest, held: StepContext): StepResult {
    // Records carry a u32 epoch: a promise above it could never be kept, and would fence every writer for good.
    // Epoch 0 is no writer's (the first promise is 1).
    if ("epoch" in req && req.epoch !== undefined && (req.epoch > EPOCH_MAX || req.epoch < 1)) throw new QjmError(ErrorCode.BAD_REQUEST, `epoch ${req.epoch} is not in 1..2^32-1`);
    switch (req.type) {
      case "getState":
        return { ops: [], reply: { state: this.state() } };
      case "format":
        return this.onFormat(req.clusterId, req.restoring, req.epoch);
      case "getManifest":
        return { ops: [], reply: { manifest: this.segments.map((s) => ({ ...s })), state: this.state() } };
      case "syncSegment":
        return this.onSyncSegment(req);
      case "markRestored":
        return this.onMarkRestored(req.epoch, req.clusterId);
      case "newEpoch":
        this.checkCluster(req.clusterId);
        this.checkVoter();
        return this.onNewEpoch(req.epoch);
      case "startSegment":
        this.checkCluster(req.clusterId);
        return this.onStartSegment(req.epoch, req.txid, req.catchUp === true);
      case "journal":
        return this.onJournal(req);
      case "prepareRecovery":
        this.checkVoter();
        return this.onPrepareRecovery(req.epoch, req.segmentTxid);
      case "recoveryAppend":
        this.checkVoter();
        return this.onRecoveryAppend(req);
      case "acceptRecovery":
        this.checkVoter();
        return this.onAcceptRecovery(req.epoch, req.segment, req.lastRecord);
      case "finalize":
        return this.onFinalize(req.epoch, req.startTxid, req.endTxid);
      case "read":
        return this.onRead(req.fromTxid, req.uncommitted);
      case "snapshotDurable":
        this.checkCluster(req.clusterId);
        return this.onSnapshotDurable(req.txid, held.snapshots ?? []);
      default:
        return assertNever(req, "journal request");
    }
  }

  /** A request of another cluster is refused (when both sides know their cluster). */
  private checkCluster(clusterId: string | undefined): void {
    if (this.identity === null) return;
    // Every writer names its cluster: a request that does not would pass the checks of an unformatted node.
    if (clusterId === undefined) throw new QjmError(ErrorCode.BAD_REQUEST, "the request does not name its cluster");
    if (this.identity.clusterId === null) throw new QjmError(ErrorCode.NOT_RESTORED, "this journal node is not formatted");
    if (this.identity.clusterId !== clusterId) {
      throw new QjmError(ErrorCode.CLUSTER_MISMATCH, `this journal node belongs to cluster ${this.identity.clusterId}, not ${clusterId}`);
    }
  }

  /**
   * Epochs and recovery count only nodes that kept their promises: a wiped node forgot what it promised, so until the
   * writer restores it, it answers no newEpoch, prepare or accept (two writers could otherwise win the same epoch).
   */
  private checkVoter(): void {
    if (this.identity === null) return;
    if (this.identity.clusterId === null) throw new QjmError(ErrorCode.NOT_RESTORED, "this journal node is not formatted");
    if (this.identity.restoring) throw new QjmError(ErrorCode.NOT_RESTORED, "this journal node was wiped and is not restored yet");
  }

  private onFormat(clusterId: string, restoring: boolean, epoch: number | undefined): StepResult {
    const current = this.identity?.clusterId ?? null;
    if (current === clusterId) return { ops: [], reply: { state: this.state() } };
    if (this.segments.length > 0) {
      if (current !== null) throw new QjmError(ErrorCode.CLUSTER_MISMATCH, `already formatted for cluster ${current}`);
      throw new QjmError(ErrorCode.ILLEGAL_STATE, "only an empty journal node can be formatted");
    }
    if (current === null && this.meta.promisedEpoch > 0) throw new QjmError(ErrorCode.ILLEGAL_STATE, "a node that promised an epoch but lost its identity is not formatted blindly");
    // Formatted but holding no record: a first format that did not finish, or raced another, may be redone. Its
    // promises (the meta) stay. Once it promised an epoch, only a format of a higher epoch (promised with it) may
    // redo it, so a stale format of a writer that lost the race cannot.
    const ops: DiskOp[] = [];
    if (current !== null && this.meta.promisedEpoch > 0) {
      if (epoch === undefined || epoch <= this.meta.promisedEpoch) {
        throw new QjmError(ErrorCode.EPOCH_FENCED, `formatted for cluster ${current} and promised epoch ${this.meta.promisedEpoch}: a new format needs a higher epoch`);
      }
      this.meta = { ...this.meta, promisedEpoch: epoch };
      ops.push({ op: "persistMeta", meta: { ...this.meta } });
    }
    this.identity = { clusterId, restoring };
    ops.push({ op: "persistIdentity", identity: { ...this.identity } });
    return { ops, reply: { state: this.state() } };
  }

  /**
   * Copies a finalized segment from a peer into a hole before this node's newest segment (HDFS's JournalNodeSyncer
   * does this for finalized segments only), chunk by chunk; it joins the log, finalized, with its last chunk.
   */
  private onSyncSegment(req: Extract<JournalRequest, { type: "syncSegment" }>): StepResult {
    const ops: DiskOp[] = [];
    this.checkCluster(req.clusterId);
    this.checkEpoch(req.epoch, ops);
    const seg = req.segment;
    if (seg.inProgress || seg.endTxid < seg.startTxid) throw new QjmError(ErrorCode.BAD_REQUEST, "only finalized segments with records are copied");
    const newest = this.segments.at(-1);
    if (newest === undefined || seg.endTxid >= newest.startTxid) throw new QjmError(ErrorCode.ILLEGAL_STATE, `segment ${seg.startTxid} is not before this node's newest segment`);
    if (this.segments.some((s) => s.startTxid <= seg.endTxid && seg.startTxid <= s.endTxid && s.endTxid >= s.startTxid)) {
      throw new QjmError(ErrorCode.ILLEGAL_STATE, `segment ${seg.startTxid}-${seg.endTxid} overlaps what this node holds`);
    }
    const fresh = req.firstTxid === seg.startTxid;
    if (!fresh && (this.syncing === null || this.syncing.segment.startTxid !== seg.startTxid || this.syncing.nextTxid !== req.firstTxid)) {
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `segment copy of ${seg.startTxid} does not continue at ${req.firstTxid}`);
    }
    if (req.firstTxid + req.count - 1 > seg.endTxid) throw new QjmError(ErrorCode.BAD_RECORD, "records beyond the segment's end");
    this.validateBatch(req.records, req.firstTxid, req.count, (e) => e <= req.epoch);
    ops.push({ op: "syncAppend", startTxid: seg.startTxid, fresh, records: req.records });
    const next = req.firstTxid + req.count;
    if (next - 1 === seg.endTxid) {
      ops.push({ op: "syncFinish", startTxid: seg.startTxid, endTxid: seg.endTxid });
      this.segments.push({ startTxid: seg.startTxid, endTxid: seg.endTxid, inProgress: false });
      this.segments.sort((a, b) => a.startTxid - b.startTxid);
      this.syncing = null;
    } else {
      this.syncing = { segment: { ...seg }, nextTxid: next };
    }
    return { ops, reply: { state: this.state() } };
  }

  private onMarkRestored(epoch: number, clusterId: string): StepResult {
    const ops: DiskOp[] = [];
    this.checkCluster(clusterId);
    this.checkEpoch(epoch, ops);
    if (epoch !== this.meta.promisedEpoch) throw new QjmError(ErrorCode.EPOCH_FENCED, `epoch ${epoch} is not the promised one`);
    if (this.identity !== null && this.identity.restoring) {
      this.identity = { ...this.identity, restoring: false };
      ops.push({ op: "persistIdentity", identity: { ...this.identity } });
    }
    return { ops, reply: { state: this.state() } };
  }

  private onNewEpoch(epoch: number): StepResult {
    if (epoch <= this.meta.promisedEpoch) {
      throw new QjmError(ErrorCode.EPOCH_FENCED, `proposed epoch ${epoch} <= promised epoch ${this.meta.promisedEpoch}`);
    }
    this.meta = { ...this.meta, promisedEpoch: epoch };
    const ops: DiskOp[] = [{ op: "persistMeta", meta: { ...this.meta } }];
    this.dropStaged(epoch, ops);
    return { ops, reply: { state: this.state() } };
  }

  /** Every writer request: refuse a lower epoch; a higher one is an implicit promise. */
  private checkEpoch(epoch: number, ops: DiskOp[]): void {
    if (epoch < this.meta.promisedEpoch) {
      throw new QjmError(ErrorCode.EPOCH_FENCED, `epoch ${epoch} < promised epoch ${this.meta.promisedEpoch}`);
    }
    if (epoch > this.meta.promisedEpoch) {
      this.meta = { ...this.meta, promisedEpoch: epoch };
      ops.push({ op: "persistMeta", meta: { ...this.meta } });
    }
    this.dropStaged(epoch, ops);
  }

  /** Staged records of an older recovery are never installed. */
  private dropStaged(epoch: number, ops: DiskOp[]): void {
    if (this.staged !== null && this.staged.epoch < epoch) {
      ops.push({ op: "discardRecovery", segmentTxid: this.staged.segmentTxid });
      this.staged = null;
    }
  }

  private segmentAt(startTxid: number): SegmentState | undefined {
    return this.segments.find((s) => s.startTxid === startTxid);
  }

  /**
   * Makes room for a segment that starts at txid, decided by a writer of a newer epoch. An older in-progress segment
   * is kept (finalized) only when it holds exactly the decided copy: the recovery accepted here in this same epoch
   * (an older recovery's decision may have been superseded by a newer one that did not reach this node: sim seed
   * 1091) and ending right before txid, or the segment this epoch's writer rolled from. Otherwise it may hold records no majority acked, or another epoch's records under the same txids,
   * so it is set aside and never served; its committed part is finalized on a majority elsewhere (recovery does that
   * before any new segment starts). The node may then have a hole before txid, as an HDFS journal node may: readers
   * take those txids from other nodes.
   */
  private closeOlderSegments(txid: number, ops: DiskOp[], epoch: number, roll: boolean): void {
    if (txid - 1 < this.committedTxid) {
      // Recovery never decides an end below a commit index anyone saw (HDFS-3863): refuse, loudly.
      throw new QjmError(ErrorCode.ILLEGAL_STATE, `a segment at ${txid} would drop committed txid ${this.committedTxid}`);
    }
    const last = this.segments.at(-1);
    if (last !== undefined && last.startTxid < txid && last.inProgress) {
      // The same writer opening its next segment (a roll) finalized this one on a majority first, and only it appended here.
      const rolled = roll && this.meta.writerEpoch === epoch && last.endTxid === txid - 1;
      const accepted = this.meta.accepted;
      const decided = rolled || (accepted?.segmentTxid === last.startTxid && accepted.epoch === epoch && last.endTxid === txid - 1);
      if (decided) {
        ops.push({ op: "finalize", startTxid: last.startTxid, endTxid: last.endTxid });
        last.inProgress = false;
      } else {
        ops.push(last.endTxid >= last.startTxid ? { op: "setAside", startTxid: last.startTxid } : { op: "deleteSegment", startTxid: last.startTxid });
        this.segments.pop();
        // What this node knew committed may have been in that segment: it no longer vouches for it.
        this.committedTxid = Math.min(this.committedTxid, this.lastTxid);
      }
    }
    const end = this.lastTxid;
    if (end >= txid) throw new QjmError(ErrorCode.ILLEGAL_STATE, `finalized records up to ${end} overlap a segment at ${txid}`);
  }

  /**
   * A segment starts right after the node's log (its newest segment's end + 1), or inside it for a writer whose
   * recovery decided a shorter log (the records past it are set aside). Past the end only as a catch-up: a writer
   * bringing back a node that lacks records opens its segment past the hole (issue #10: a plain request past the end,
   * e.g. forged, would set aside a segment holding committed records; it is refused before it promises anything).
   */
  private onStartSegment(epoch: number, txid: number, catchUp: boolean): StepResult {
    const ops: DiskOp[] = [];
    if (epoch < this.meta.promisedEpoch) this.checkEpoch(epoch, ops);
    if (txid < 1) throw new QjmError(ErrorCode.BAD_REQUEST, "segments start at txid 1 or above");
    if (!catchUp && txid > this.lastTxid + 1) {
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `a segment at ${txid} would leave a hole after this node's last txid ${this.lastTxid}`);
    }
    this.checkEpoch(epoch, ops);
    const existing = this.segmentAt(txid);
    if (existing !== undefined) {
      // A writer retrying its start, or a new writer after a crash right at segment start: fine while empty.
      if (!existing.inProgress || existing.endTxid >= existing.startTxid) {
        throw new QjmError(ErrorCode.ILLEGAL_STATE, `segment ${txid} already holds records`);
      }
      // Opened past a hole by a catch-up that did not finish copying (its writer or recovery died): the node only
      // looks level. A plain start must not count it; OUT_OF_SYNC makes the next writer catch it up.
      const held = this.segments.filter((s) => s !== existing).at(-1)?.endTxid ?? this.durableSnapshotTxid;
      if (!catchUp && held < txid - 1) throw new QjmError(ErrorCode.OUT_OF_SYNC, `segment ${txid} was opened past a hole after txid ${held}`);
    } else {
      this.closeOlderSegments(txid, ops, epoch, true);
      ops.push({ op: "startSegment", startTxid: txid });
      this.segments.push({ startTxid: txid, endTxid: txid - 1, inProgress: true });
    }
    if (this.prints?.startTxid !== txid) this.prints = { startTxid: txid, epochs: [], crcs: [] };
    this.meta = { ...this.meta, writerEpoch: epoch, accepted: null };
    ops.push({ op: "persistMeta", meta: { ...this.meta } });
    return { ops, reply: { state: this.state() } };
  }

  /** Validates a batch: framing, checksums, contiguous txids from firstTxid, and each record's epoch. */
  private validateBatch(records: Uint8Array, firstTxid: number, count: number, epochOk: (e: number) => boolean): number[] {
    return this.scanBatch(records, firstTxid, count, epochOk).txids;
  }

  /** validateBatch, with the prints of the batch's records. */
  private scanBatch(records: Uint8Array, firstTxid: number, count: number, epochOk: (e: number) => boolean): { txids: number[]; epochs: number[]; crcs: number[] } {
    const run = checkRun(records, count, firstTxid, epochOk);
    if ("reason" in run) throw new QjmError(ErrorCode.BAD_RECORD, `batch: ${run.reason}`);
    const txids: number[] = [];
    const epochs: number[] = [];
    const crcs: number[] = [];
    for (const r of run.records) {
      txids.push(r.txid);
      epochs.push(r.epoch);
      crcs.push(recordCrc(records, r.offset));
    }
    return { txids, epochs, crcs };
  }

  /** The newest segment grew by a batch: its prints follow (if known, and only if they were in step). */
  private appendPrints(segment: SegmentState, batch: { epochs: number[]; crcs: number[] }, countBefore: number): void {
    const p = this.prints;
    if (p === null || p.startTxid !== segment.startTxid || p.epochs.length !== countBefore) return;
    p.epochs.push(...batch.epochs);
    p.crcs.push(...batch.crcs);
  }

  private onJournal(req: Extract<JournalRequest, { type: "journal" }>): StepResult {
    const ops: DiskOp[] = [];
    this.checkEpoch(req.epoch, ops);
    if (req.epoch !== this.meta.writerEpoch) {
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `epoch ${req.epoch} did not start a segment here (writer epoch ${this.meta.writerEpoch})`);
    }
    const segment = this.segments.at(-1);
    if (segment === undefined || segment.startTxid !== req.segmentTxid || !segment.inProgress) {
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `segment ${req.segmentTxid} is not open here`);
    }
    if (req.count > 0 && this.holdsBatch(segment, req)) {
      // Sent again by the writer (the first copy's reply was lost with a nats-server): held already, acked again below.
    } else if (req.count > 0) {
      if (req.firstTxid !== segment.endTxid + 1) {
        throw new QjmError(ErrorCode.OUT_OF_SYNC, `batch starts at ${req.firstTxid}, log ends at ${segment.endTxid}`);
      }
      const batch = this.scanBatch(req.records, req.firstTxid, req.count, (e) => e === req.epoch);
      ops.push({ op: "append", segmentTxid: segment.startTxid, records: req.records, txids: batch.txids });
      this.appendPrints(segment, batch, segment.endTxid - segment.startTxid + 1);
      segment.endTxid = req.firstTxid + req.count - 1;
    }
    // Only a node in step with the writer learns its commit index: then every record up to it is the writer's.
    this.committedTxid = Math.max(this.committedTxid, Math.min(req.committedTxid, segment.endTxid));
    return { ops, reply: { state: this.state() } };
  }

  /**
   * The writer's commit index off the bus (CommitHint, no reply): learnt as a batch's committedTxid is — only from the
   * writer of the epoch this node promised, for the segment it has open, and never past what it holds — but it promises
   * nothing and writes nothing (a hint of any other epoch or segment is ignored). True when the commit index moved.
   */
  learnCommit(hint: CommitHint): boolean {
    if (this.fault !== null || hint.epoch !== this.meta.promisedEpoch || hint.epoch !== this.meta.writerEpoch) return false;
    const segment = this.segments.at(-1);
    if (segment === undefined || segment.startTxid !== hint.segmentTxid || !segment.inProgress) return false;
    const before = this.committedTxid;
    this.committedTxid = Math.max(before, Math.min(hint.committedTxid, segment.endTxid));
    return this.committedTxid > before;
  }

  /**
   * True when the open segment already holds this batch: its txids lie within it, and its records are those held (the
   * writer's epoch wrote every record of the segment it opened; each one's print matches where this node knows it).
   * A batch that overlaps the end, or differs, is not held: it is refused as before.
   */
  private holdsBatch(segment: SegmentState, req: Extract<JournalRequest, { type: "journal" }>): boolean {
    const last = req.firstTxid + req.count - 1;
    if (req.firstTxid < segment.startTxid || last > segment.endTxid) return false;
    const batch = this.scanBatch(req.records, req.firstTxid, req.count, (e) => e === req.epoch);
    return batch.txids.every((txid, i) => {
      const held = this.printAt(txid);
      return held === null || (held.epoch === batch.epochs[i] && held.crc === batch.crcs[i]);
    });
  }

  private onPrepareRecovery(epoch: number, segmentTxid: number): StepResult {
    const ops: DiskOp[] = [];
    this.checkEpoch(epoch, ops);
    const segment = this.segmentAt(segmentTxid);
    const held = segment !== undefined && segment.endTxid >= segment.startTxid ? { ...segment } : null;
    const acceptedInEpoch = this.meta.accepted?.segmentTxid === segmentTxid ? this.meta.accepted.epoch : 0;
    const lastRecord = held === null ? null : this.printAt(held.endTxid);
    return { ops, reply: { prepare: { state: this.state(), segment: held, acceptedInEpoch, lastRecord } } };
  }

  private onRecoveryAppend(req: Extract<JournalRequest, { type: "recoveryAppend" }>): StepResult {
    const ops: DiskOp[] = [];
    this.checkEpoch(req.epoch, ops);
    if (req.epoch !== this.meta.promisedEpoch) throw new QjmError(ErrorCode.EPOCH_FENCED, `epoch ${req.epoch} is not the promised one`);
    let segment = this.segmentAt(req.segmentTxid);
    if (segment === undefined) {
      this.closeOlderSegments(req.segmentTxid, ops, req.epoch, false);
      ops.push({ op: "startSegment", startTxid: req.segmentTxid });
      segment = { startTxid: req.segmentTxid, endTxid: req.segmentTxid - 1, inProgress: true };
      this.segments.push(segment);
      this.prints = { startTxid: req.segmentTxid, epochs: [], crcs: [] };
    }
    if (!segment.inProgress) throw new QjmError(ErrorCode.ILLEGAL_STATE, `segment ${req.segmentTxid} is finalized`);
    if (segment !== this.segments.at(-1)) throw new QjmError(ErrorCode.ILLEGAL_STATE, `segment ${req.segmentTxid} is not the newest`);
    const staged = this.staged;
    const continues = staged !== null && staged.segmentTxid === segment.startTxid && staged.epoch === req.epoch && req.firstTxid === staged.endTxid + 1;
    if (!continues && (req.firstTxid < segment.startTxid || req.firstTxid > segment.endTxid + 1)) {
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `recovery records start at ${req.firstTxid}, segment ${segment.startTxid} ends at ${segment.endTxid}`);
    }
    const batch = this.scanBatch(req.records, req.firstTxid, req.count, (e) => e <= req.epoch);
    const txids = batch.txids;
    if (txids.length === 0) return { ops, reply: { state: this.state() } };
    if (continues) {
      ops.push({ op: "stageRecovery", segmentTxid: segment.startTxid, fromTxid: staged.fromTxid, fresh: false, records: req.records });
      this.staged = { ...staged, endTxid: req.firstTxid + req.count - 1 };
      staged.prints.epochs.push(...batch.epochs);
      staged.prints.crcs.push(...batch.crcs);
    } else if (req.firstTxid <= segment.endTxid) {
      // The chosen copy replaces ours from firstTxid on (ours was written or accepted in another epoch and may
      // differ). Staged, not truncated: if this copy is interrupted, our log must still be what we promised.
      if (req.firstTxid - 1 < this.committedTxid) {
        throw new QjmError(ErrorCode.ILLEGAL_STATE, `replacing records from ${req.firstTxid} would drop committed txid ${this.committedTxid}`);
      }
      ops.push({ op: "stageRecovery", segmentTxid: segment.startTxid, fromTxid: req.firstTxid, fresh: true, records: req.records });
      const prints = { startTxid: req.firstTxid, epochs: batch.epochs, crcs: batch.crcs };
      this.staged = { segmentTxid: segment.startTxid, epoch: req.epoch, fromTxid: req.firstTxid, endTxid: req.firstTxid + req.count - 1, prints };
    } else {
      if (staged !== null) throw new QjmError(ErrorCode.OUT_OF_SYNC, `recovery records at ${req.firstTxid} do not continue the staged copy`);
      // Records past our end only extend our copy: nothing of it is lost if the copy stops here.
      ops.push({ op: "append", segmentTxid: segment.startTxid, records: req.records, txids });
      this.appendPrints(segment, batch, segment.endTxid - segment.startTxid + 1);
      segment.endTxid = req.firstTxid + req.count - 1;
    }
    return { ops, reply: { state: this.state() } };
  }

  /**
   * Holds exactly the chosen copy, recognized by the print of its last record: this node's own copy (truncated to the
   * chosen end) or its staged copy (installed atomically), and only if that copy's record at the chosen end has the
   * print. A node whose copy from the chosen one failed still holds its own, maybe never committed, records under the
   * same txids: it refuses (HDFS's acceptRecovery downloads the chosen copy and fails if the download fails).
   */
  private onAcceptRecovery(epoch: number, chosen: SegmentState, lastRecord: RecordPrint): StepResult {
    const ops: DiskOp[] = [];
    this.checkEpoch(epoch, ops);
    if (epoch !== this.meta.promisedEpoch) throw new QjmError(ErrorCode.EPOCH_FENCED, `epoch ${epoch} is not the promised one`);
    const segment = this.segmentAt(chosen.startTxid);
    const staged = this.staged;
    if (segment !== undefined && staged !== null && staged.segmentTxid === chosen.startTxid && staged.epoch === epoch && chosen.endTxid >= staged.fromTxid) {
      // The staged copy replaces ours from its first txid, in one atomic step.
      if (staged.endTxid < chosen.endTxid) throw new QjmError(ErrorCode.OUT_OF_SYNC, `staged copy of segment ${chosen.startTxid} ends at ${staged.endTxid}, not ${chosen.endTxid}`);
      if (staged.fromTxid - 1 < this.committedTxid) throw new QjmError(ErrorCode.ILLEGAL_STATE, `installing from ${staged.fromTxid} would drop committed txid ${this.committedTxid}`);
      this.checkPrint(chosen, lastRecord, staged.prints, "staged copy");
      ops.push({ op: "installRecovery", segmentTxid: chosen.startTxid, fromTxid: staged.fromTxid, toTxid: chosen.endTxid });
      this.installPrints(segment, staged.fromTxid, staged.prints, chosen.endTxid);
      segment.endTxid = chosen.endTxid;
      this.staged = null;
    } else if (staged !== null) {
      ops.push({ op: "discardRecovery", segmentTxid: staged.segmentTxid });
      this.staged = null;
    }
    if (segment === undefined || segment.endTxid < chosen.endTxid) {
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `segment ${chosen.startTxid} lacks records up to ${chosen.endTxid}`);
    }
    if (segment.endTxid > chosen.endTxid) {
      if (!segment.inProgress) throw new QjmError(ErrorCode.ILLEGAL_STATE, `finalized segment ${chosen.startTxid} ends at ${segment.endTxid}`);
      if (chosen.endTxid < this.committedTxid) {
        throw new QjmError(ErrorCode.ILLEGAL_STATE, `decision ends at ${chosen.endTxid}, below committed txid ${this.committedTxid}`);
      }
    }
    const own = this.printAt(chosen.endTxid);
    if (!this.isChosenRecord(own, lastRecord)) {
      const held = own === null ? "an unknown record" : `epoch ${own.epoch} crc ${own.crc}`;
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `txid ${chosen.endTxid} here is ${held}, the chosen copy's is epoch ${lastRecord.epoch} crc ${lastRecord.crc}`);
    }
    if (segment.endTxid > chosen.endTxid) {
      ops.push({ op: "truncate", segmentTxid: segment.startTxid, toTxid: chosen.endTxid });
      const p = this.prints!;
      const n = chosen.endTxid - segment.startTxid + 1;
      this.prints = { startTxid: p.startTxid, epochs: p.epochs.slice(0, n), crcs: p.crcs.slice(0, n) };
      segment.endTxid = chosen.endTxid;
    }
    const prior = this.meta.accepted;
    assert(prior === null || prior.segmentTxid !== chosen.startTxid || prior.epoch <= epoch, "accepted epoch would go down");
    this.meta = { ...this.meta, accepted: { segmentTxid: chosen.startTxid, epoch } };
    ops.push({ op: "persistMeta", meta: { ...this.meta } });
    return { ops, reply: { state: this.state() } };
  }

  /** True when a copy's record at the chosen end (null: unknown) is the chosen copy's. Protected: the simulator's wrong core skips it. */
  protected isChosenRecord(held: RecordPrint | null, chosen: RecordPrint): boolean {
    return held !== null && held.epoch === chosen.epoch && held.crc === chosen.crc;
  }

  /** The staged copy's record at the chosen end must have the chosen print (else the copy came from elsewhere). */
  private checkPrint(chosen: SegmentState, lastRecord: RecordPrint, prints: SegmentPrints, what: string): void {
    const i = chosen.endTxid - prints.startTxid;
    const print = i < 0 || i >= prints.epochs.length ? null : { epoch: prints.epochs[i], crc: prints.crcs[i] };
    if (!this.isChosenRecord(print, lastRecord)) {
      throw new QjmError(ErrorCode.OUT_OF_SYNC, `the ${what} of segment ${chosen.startTxid} does not end with the chosen copy's record ${chosen.endTxid}`);
    }
  }

  /** Our prints up to fromTxid - 1, then the staged ones up to toTxid (unknown if ours were). */
  private installPrints(segment: SegmentState, fromTxid: number, staged: SegmentPrints, toTxid: number): void {
    const p = this.prints;
    const ownCount = fromTxid - segment.startTxid;
    const known = p !== null && p.startTxid === segment.startTxid && p.epochs.length === segment.endTxid - segment.startTxid + 1 && segment === this.segments.at(-1);
    if (!known) {
      this.prints = null;
      return;
    }
    const n = toTxid - fromTxid + 1;
    this.prints = { startTxid: p.startTxid, epochs: [...p.epochs.slice(0, ownCount), ...staged.epochs.slice(0, n)], crcs: [...p.crcs.slice(0, ownCount), ...staged.crcs.slice(0, n)] };
  }

  private onFinalize(epoch: number, startTxid: number, endTxid: number): StepResult {
    const ops: DiskOp[] = [];
    this.checkEpoch(epoch, ops);
    const segment = this.segmentAt(startTxid);
    if (segment === undefined) throw new QjmError(ErrorCode.OUT_OF_SYNC, `no segment ${startTxid} to finalize`);
    if (segment.endTxid !== endTxid) {
      const code = segment.inProgress ? ErrorCode.OUT_OF_SYNC : ErrorCode.ILLEGAL_STATE;
      throw new QjmError(code, `segment ${startTxid} ends at ${segment.endTxid}, not ${endTxid}`);
    }
    if (segment.inProgress) {
      if (endTxid < startTxid) throw new QjmError(ErrorCode.ILLEGAL_STATE, `segment ${startTxid} is empty`);
      ops.push({ op: "finalize", startTxid, endTxid });
      segment.inProgress = false;
    }
    if (this.meta.accepted?.segmentTxid === startTxid) {
      this.meta = { ...this.meta, accepted: null };
      ops.push({ op: "persistMeta", meta: { ...this.meta } });
    }
    return { ops, reply: { state: this.state() } };
  }

  private onRead(fromTxid: number, uncommitted: boolean): StepResult {
    const first = this.firstTxid;
    const to = this.readableTxid(uncommitted);
    // Checked first: right after a restart the node knows no commit index yet, but it knows what it purged.
    if (fromTxid >= 1 && first > 0 && fromTxid < first && fromTxid <= this.durableSnapshotTxid) {
      throw new QjmError(ErrorCode.PURGED, `txid ${fromTxid} was purged here: snapshot ${this.durableSnapshotTxid} holds it`);
    }
    if (fromTxid > to + 1) throw new QjmError(ErrorCode.NOT_FOUND, `txid ${fromTxid} is beyond this node's readable end ${to}`);
    if (fromTxid <= to && (first === 0 || fromTxid < first)) throw new QjmError(ErrorCode.NOT_FOUND, `txid ${fromTxid} is below this node's first txid ${first}`);
    if (fromTxid <= to && !this.segments.some((s) => s.startTxid <= fromTxid && fromTxid <= s.endTxid)) {
      throw new QjmError(ErrorCode.NOT_FOUND, `txid ${fromTxid} falls in a hole of this node's log`);
    }
    return { ops: [], reply: { read: { fromTxid, toTxid: to } } };
  }

  /**
   * A snapshot is of applied, hence committed, records: it never names a txid the cluster did not commit. The log
   * below it is purged, so it must name a snapshot this node holds, at or below what it knows committed (its commit
   * index, or the end of its finalized segments); else refused (the replica marks it again with its next snapshot).
   */
  private onSnapshotDurable(txid: number, snapshots: readonly number[]): StepResult {
    if (txid <= (this.meta.durableSnapshotTxid ?? 0)) return { ops: [], reply: { state: this.state() } };
    if (!snapshots.includes(txid)) throw new QjmError(ErrorCode.NOT_FOUND, `no complete snapshot at txid ${txid} here`);
    const known = this.knownCommittedTxid;
    if (txid > known) throw new QjmError(ErrorCode.OUT_OF_SYNC, `snapshot ${txid} is beyond what this node knows committed (${known})`);
    this.meta = { ...this.meta, durableSnapshotTxid: txid };
    return { ops: [{ op: "persistMeta", meta: { ...this.meta } }], reply: { state: this.state() } };
  }

  get durableSnapshotTxid(): number {
    return this.meta.durableSnapshotTxid ?? 0;
  }

  /**
   * What to compact, given each segment's size on disk and the snapshots held here (pure: changes nothing). Only once
   * the editlog passes a count or size threshold: finalized segments wholly below the durable snapshot (less a margin
   * for lagging replicas) are purged; if still too many, runs of small consecutive finalized segments past the durable
   * snapshot are merged.
   * Snapshots older than the newest `snapshotsRetained` durable ones are deleted (newer, not yet durable ones stay).
   */
  compactionPlan(sizes: ReadonlyMap<number, number>, snapshots: readonly number[], limits: CompactionLimits): CompactionPlan {
    const plan: CompactionPlan = { purge: [], merges: [], deleteSnapshots: [] };
    if (this.fault !== null) return plan;
    const durable = this.durableSnapshotTxid;
    const held = [...snapshots].filter((t) => t <= durable).sort((a, b) => b - a);
    plan.deleteSnapshots = held.slice(limits.snapshotsRetained);
    const size = (seg: SegmentState): number => sizes.get(seg.startTxid) ?? 0;
    const total = this.segments.reduce((n, seg) => n + size(seg), 0);
    if (this.segments.length <= limits.maxSegments && total <= limits.editlogMaxBytes) return plan;
    const purgeTo = durable - limits.purgeMarginRecords;
    plan.purge = this.segments.filter((seg) => !seg.inProgress && seg.endTxid <= purgeTo).map((seg) => ({ ...seg }));
    const kept = this.segments.filter((seg) => !plan.purge.some((p) => p.startTxid === seg.startTxid));
    if (kept.length <= limits.maxSegments) return plan;
    // Small: under half the merged size, so a merged segment is seldom rewritten again. Never the newest finalized
    // segment: a recovery may still address it by its start (a writer that died between a roll's finalize and the next
    // start), and nodes that merged it differently could then neither prepare nor accept it: no writer ever again.
    // Never what the durable snapshot covers: only the margin keeps it, and a purge drops it once the next snapshot is
    // durable — a merge would copy it first, and bind it to newer records no purge may drop yet (issue #13 P6).
    // A merged segment is at most a quarter of the editlog bound, too: a merge's copy then adds at most that much to an
    // editlog already over its bound, and a later purge drops a merged file soon after its records fall below the
    // snapshot instead of waiting for a whole long run to (issue #13 P6: one 7 MiB merge doubled an 8 MiB editlog).
    const mergedMax = Math.min(limits.mergedSegmentMaxBytes, Math.floor(limits.editlogMaxBytes / 4));
    const newestFinalized = this.newestFinalizedStart();
    const small = (seg: SegmentState): boolean =>
      !seg.inProgress && seg.endTxid >= seg.startTxid && seg.endTxid > durable && seg.startTxid !== newestFinalized && size(seg) < mergedMax / 2;
    let run: SegmentState[] = [];
    let runBytes = 0;
    const close = (): void => {
      if (run.length >= 2) plan.merges.push({ startTxid: run[0].startTxid, endTxid: run[run.length - 1].endTxid, parts: run });
      run = [];
      runBytes = 0;
    };
    for (const seg of kept) {
      const follows = run.length > 0 && seg.startTxid === run[run.length - 1].endTxid + 1;
      if (!small(seg) || (run.length > 0 && (!follows || runBytes + size(seg) > mergedMax))) close();
      if (small(seg)) {
        run.push({ ...seg });
        runBytes += size(seg);
      }
    }
    close();
    return plan;
  }

  /** Removes segments of a compaction plan from the log; they must still be finalized and below the durable snapshot. */
  purge(segments: readonly SegmentState[], limits: Pick<CompactionLimits, "purgeMarginRecords">): DiskOp[] {
    const ops: DiskOp[] = [];
    const purgeTo = this.durableSnapshotTxid - limits.purgeMarginRecords;
    for (const p of segments) {
      const seg = this.segmentAt(p.startTxid);
      if (seg === undefined || seg.inProgress || seg.endTxid !== p.endTxid || seg.endTxid > purgeTo) continue;
      this.segments = this.segments.filter((s) => s !== seg);
      ops.push({ op: "purgeSegment", startTxid: seg.startTxid, endTxid: seg.endTxid });
    }
    this.invariants();
    return ops;
  }

  /** Replaces `parts` by one merged segment, if they are still in the log as planned; null if not (the merge is dropped). */
  merge(parts: readonly SegmentState[]): DiskOp[] | null {
    const found = parts.map((p) => this.segmentAt(p.startTxid));
    const intact = found.every((seg, i) => seg !== undefined && !seg.inProgress && seg.endTxid === parts[i].endTxid && (i === 0 || seg.startTxid === parts[i - 1].endTxid + 1));
    const newestFinalized = this.newestFinalizedStart();
    if (!intact || parts.length < 2 || parts.some((p) => p.startTxid === newestFinalized)) return null;
    const merged: SegmentState = { startTxid: parts[0].startTxid, endTxid: parts[parts.length - 1].endTxid, inProgress: false };
    this.segments = [...this.segments.filter((s) => !found.includes(s)), merged].sort((a, b) => a.startTxid - b.startTxid);
    this.invariants();
    return [{ op: "mergeSegments", startTxid: merged.startTxid, endTxid: merged.endTxid, parts: parts.map((p) => p.startTxid) }];
  }

  /**
   * The start of the segment a recovery may still address here and compaction must never merge (0: none): the
   * newest segment holding records, when it is finalized (nothing, or only an empty in-progress segment, after it).
   * Behind an in-progress segment holding records, this node prepares that one: older segments are settled.
   */
  private newestFinalizedStart(): number {
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const s = this.segments[i];
      if (s.endTxid >= s.startTxid) return s.inProgress ? 0 : s.startTxid;
    }
    return 0;
  }

  private invariants(): void {
    for (let i = 1; i < this.segments.length; i++) {
      assert(this.segments[i].startTxid > this.segments[i - 1].endTxid, `segments ${i - 1} and ${i} overlap`);
      assert(!this.segments[i - 1].inProgress, `segment ${this.segments[i - 1].startTxid} is in progress but not the newest`);
    }
    for (const s of this.segments) assert(s.endTxid >= s.startTxid - 1, `segment ${s.startTxid} ends before it starts`);
    assert(this.meta.writerEpoch <= this.meta.promisedEpoch, "writer epoch above promised epoch");
  }
}

/** Shortens prints to `length` records (undoing a refused step's appends). */
function cut(p: SegmentPrints, length: number): void {
  p.epochs.length = length;
  p.crcs.length = length;
}

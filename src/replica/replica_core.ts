/**
 * The replica's tailing logic as a pure state machine: which txid to read next and from which journal node,
 * which records of a read may be applied (checksums valid, txids contiguous from applied + 1, committed only),
 * when to move to another node, and when to read again or pause (`next`). Applying (MULTI/EXEC with the applied-txid
 * marker) is the adapter's.
 *
 * Pacing (issue #13 P4): the master's commit index reaches the replica with the next batch fan-out, or on its own
 * (CommitHint) when no batch followed the commit within commitHintDelayMs; both are hints here. A hint above the applied
 * txid ends the adapter's pause at once; a replica that applied everything it heard of waits `backstopMs` (a lost hint
 * costs that much lag, no more). To this core a hint is only a hint: it decides when to read, never what to apply — the
 * records still come from a journal node, committed ones only. One no node confirms is retried once after `pollMs`,
 * then forgotten: a forged hint costs at most two rounds of reads. (The fan-out's records, `onBuffered`, are another
 * matter: their epoch's commit index covers them, and that index is the writer's: replica_feed.ts.)
 */
import { checkRun, type RecordView } from "../segment/record.js";
import { assert } from "../util/assert.js";

export type ReadOutcome =
  | { kind: "apply"; records: RecordView[] }
  /** Nothing new on that node: wait a little, then ask the next one. */
  | { kind: "idle" }
  /** No node serves the next txid and some purged it: load the newest snapshot, then tail from its txid. */
  | { kind: "bootstrap" }
  /**
   * That node answered with an error or bad data: ask another one. `faulty` when it served records that fail
   * validation (a silent or lagging node is the master's to detect, by heartbeats and batch replies). `alarming` when
   * the replica should say so in its health: a faulty node, or every node in a row refused. One node refusing is
   * routine: a node whose commit index is behind what this replica applied refuses a read past it (NOT_FOUND).
   */
  | { kind: "reject"; reason: string; faulty: boolean; alarming: boolean };

/** An outcome before the refusals in a row are counted. */
type Verdict = Exclude<ReadOutcome, { kind: "reject" }> | Omit<Extract<ReadOutcome, { kind: "reject" }>, "alarming">;

/**
 * Reads a node whose read timed out (stopped, partitioned) is passed over while another node is not, at first; each
 * timeout in a row doubles it, up to SLOW_SKIP_READS_MAX. A read of a silent node costs the whole request timeout:
 * a replica that rotated onto a SIGSTOPped node each time it caught up fell seconds behind, and its snapshots with it
 * (issue #13 P6). Counted in reads, not time, so the simulator replays it.
 */
export const SLOW_SKIP_READS = 64;
export const SLOW_SKIP_READS_MAX = 4096;

/** What the adapter does once it handled an outcome (other than a bootstrap, after which it reads at once). */
export type NextStep = { kind: "read" } | { kind: "pause"; ms: number };

/** How long the adapter pauses: see the module comment (config: replicaPollMs, replicaBackstopPollMs). */
export interface ReplicaPace {
  pollMs: number;
  backstopMs: number;
}

/** A read reply as the core sees it: the node's commit index (absent in old tests) tells whether it served it all. */
export type ReadReply = { ok: true; records: Uint8Array; count: number; committedTxid?: number } | { ok: false; code: string; message: string };

export class ReplicaCore {
  private applied: number;
  private nodeIndex = 0;
  /** Reads in a row that gave nothing, and whether one of them said the txid was purged. */
  private misses = 0;
  private purgedSeen = false;
  /** Reads in a row that a node refused (an error reply or bad records). */
  private refusals = 0;
  /** The last alarming refusal, until a node serves records or answers that it holds none past them (see `alarm`). */
  private alarmReason: string | null = null;
  /** The highest commit index heard of: hints, and the nodes' replies that served records. */
  private heard: number;
  /** A round found nothing below `heard`: it was asked again once after pollMs. */
  private retried = false;
  /** The last read's outcome, and what it said (next() decides by them). */
  private last: { kind: ReadOutcome["kind"]; roundEnded: boolean; servedAll: boolean } | null = null;
  /** Reads so far, and the nodes whose last read timed out: passed over until read `until` (SLOW_SKIP_READS). */
  private reads = 0;
  private readonly slow = new Map<string, { until: number; skip: number }>();

  constructor(
    readonly nodes: readonly string[],
    appliedTxid: number,
    private readonly pace: ReplicaPace = { pollMs: 20, backstopMs: 20 },
  ) {
    assert(nodes.length > 0, "a replica needs journal nodes to read from");
    this.applied = appliedTxid;
    this.heard = appliedTxid;
  }

  get appliedTxid(): number {
    return this.applied;
  }

  /** The node to read from next and the first txid wanted. */
  nextRead(): { node: string; fromTxid: number } {
    return { node: this.currentNode, fromTxid: this.applied + 1 };
  }

  /** The node read last, or to be read next (rotate moves on). */
  private get currentNode(): string {
    return this.nodes[this.nodeIndex % this.nodes.length];
  }

  /** The next node, passing over those that timed out lately while another one has not. */
  private rotate(): void {
    for (let i = 0; i < this.nodes.length; i++) {
      this.nodeIndex = (this.nodeIndex + 1) % this.nodes.length;
      if (!this.passedOver(this.nodes[this.nodeIndex])) return;
    }
  }

  private passedOver(node: string): boolean {
    const s = this.slow.get(node);
    return s !== undefined && this.reads < s.until && this.nodes.some((n) => n !== node && !this.slow.has(n));
  }

  /** A timeout marks the node slow (doubling its pause in reads); any answer clears it. */
  private noteTimeout(reply: ReadReply): void {
    const node = this.currentNode;
    if (reply.ok || reply.code !== "TIMEOUT") {
      this.slow.delete(node);
      return;
    }
    const skip = Math.min(SLOW_SKIP_READS_MAX, (this.slow.get(node)?.skip ?? SLOW_SKIP_READS / 2) * 2);
    this.slow.set(node, { until: this.reads + skip, skip });
  }

  /**
   * Why the replica's reads are alarming (a faulty node, or every node refusing in a row), or null. Cleared by the next
   * good answer: records, or a node saying it holds none past them. Every node's commit index lags the fan-out's for a
   * moment after each commit, so a round of refusals comes and goes; a replica kept it as its health until the next
   * write, and an idle cluster's replica stayed "degraded" (CI).
   */
  get alarm(): string | null {
    return this.alarmReason;
  }

  /** Validates a read reply. Records are committed ones: journal nodes serve nothing past their commit index. */
  onRead(reply: ReadReply): ReadOutcome {
    const node = this.currentNode;
    this.reads++;
    this.noteTimeout(reply);
    const outcome = this.judge(reply);
    if (outcome.kind === "reject" && outcome.alarming) this.alarmReason = `${node}: ${outcome.reason}`;
    if (outcome.kind === "apply" || outcome.kind === "idle") this.alarmReason = null;
    const roundEnded = outcome.kind !== "apply" && this.misses === 0;
    // The node served up to its own commit index: nothing more there (its finalized segments may reach past it).
    const servedAll = outcome.kind === "apply" && reply.ok && reply.committedTxid === this.applied + outcome.records.length;
    if (outcome.kind === "apply" && reply.ok && reply.committedTxid !== undefined) this.hear(reply.committedTxid);
    this.last = { kind: outcome.kind, roundEnded, servedAll };
    return outcome;
  }

  private judge(reply: ReadReply): ReadOutcome {
    const verdict = this.judgeReply(reply);
    if (verdict.kind !== "reject") {
      this.refusals = 0;
      return verdict;
    }
    this.refusals++;
    return { ...verdict, alarming: verdict.faulty || this.refusals >= this.nodes.length };
  }

  /** The reply's outcome; whether a refusal is alarming depends on the refusals before it (judge). */
  private judgeReply(reply: ReadReply): Verdict {
    if (!reply.ok || reply.count === 0) {
      this.rotate();
      if (!reply.ok && reply.code === "PURGED") this.purgedSeen = true;
      // A whole round of nodes without the next txid, one of them having purged it: only a snapshot has it now.
      if (++this.misses >= this.nodes.length && this.purgedSeen) {
        this.misses = 0;
        this.purgedSeen = false;
        return { kind: "bootstrap" };
      }
      if (this.misses >= this.nodes.length) this.misses = 0;
      return reply.ok ? { kind: "idle" } : { kind: "reject", reason: `${reply.code}: ${reply.message}`, faulty: false };
    }
    const run = checkRun(reply.records, reply.count, this.applied + 1);
    if ("reason" in run) {
      this.rotate();
      return { kind: "reject", reason: run.reason, faulty: true };
    }
    // Only good records show a node still serves the log here.
    this.misses = 0;
    this.purgedSeen = false;
    return { kind: "apply", records: run.records };
  }

  /**
   * Records the adapter took from the master's fan-out (FanoutBuffer: checked, contiguous, and committed by their own
   * epoch's index, `committedTxid`): applied as a node's read of them would be, from applied + 1.
   */
  onBuffered(records: RecordView[], committedTxid: number): ReadOutcome {
    assert(records.length > 0 && records[0].txid === this.applied + 1, `buffered records start at ${records[0]?.txid}, not at ${this.applied + 1}`);
    assert(records[records.length - 1].txid <= committedTxid, "buffered records past their commit index");
    this.misses = 0;
    this.purgedSeen = false;
    this.refusals = 0;
    this.alarmReason = null;
    this.hear(committedTxid);
    this.last = { kind: "apply", roundEnded: false, servedAll: committedTxid === this.applied + records.length };
    return { kind: "apply", records };
  }

  /** The adapter applied `txid` (atomically with its marker). */
  onApplied(txid: number): void {
    assert(txid === this.applied + 1, `applied ${txid} after ${this.applied}: out of order`);
    this.applied = txid;
  }

  /** A commit was heard of (a hint, a node's reply) that is not applied yet. */
  get behind(): boolean {
    return this.applied < this.heard;
  }

  /** A commit hint (already parsed): true when it asks for a read the adapter's pause should not wait out. */
  onHint(committedTxid: number): boolean {
    if (committedTxid <= this.heard) return false;
    this.hear(committedTxid);
    return committedTxid > this.applied;
  }

  private hear(committedTxid: number): void {
    if (committedTxid <= this.heard) return;
    this.heard = committedTxid;
    this.retried = false;
  }

  /**
   * Read again now, or pause: after records, read on unless the node served all it knows committed and nothing more was
   * heard of; after a miss, ask the next node while a commit heard of is missing or the node refused, until a round
   * ends; a round that found nothing is asked again once after pollMs if a commit heard of is still missing, else the
   * replica waits backstopMs (or for a hint).
   */
  next(): NextStep {
    const last = this.last;
    const behind = this.behind;
    if (last === null || last.kind === "bootstrap") return { kind: "read" };
    if (last.kind === "apply") return behind || !last.servedAll ? { kind: "read" } : this.pause(this.pace.backstopMs);
    if (!last.roundEnded) return behind || last.kind === "reject" ? { kind: "read" } : this.pause(this.pace.backstopMs);
    if (behind && !this.retried) {
      this.retried = true;
      return this.pause(this.pace.pollMs);
    }
    // A hint no node confirmed twice is forgotten: reads go back to the backstop's pace.
    this.heard = this.applied;
    this.retried = false;
    return this.pause(this.pace.backstopMs);
  }

  private pause(ms: number): NextStep {
    return { kind: "pause", ms };
  }
}

/** What decides when a replica snapshots (config: snapshotEveryRecords, editlogMaxBytes, purgeMarginRecords…). */
export interface SnapshotLimits {
  snapshotEveryRecords: number;
  editlogMaxBytes: number;
  purgeMarginRecords: number;
  /** The wait, per rank, of a replica whose snapshot came due (or whose pause after a failed try ended). */
  snapshotRankDelayMs: number;
  /** The pause after a try that did not end in a durable snapshot. */
  journalRequestTimeoutMs: number;
}

/**
 * When a replica snapshots (issue #13 P6), pure: every `snapshotEveryRecords` records past the newest durable snapshot,
 * or sooner once the editlog a purge would leave behind — the margin below the snapshot plus what was applied past it
 * — reaches half of `editlogMaxBytes`, so that the journal nodes' purge keeps their editlog under its bound. Counting
 * records alone, a log of large records outgrew the bound long before the count came round. Bytes are estimated from
 * the records this replica applied (their mean size): it does not see what another replica's snapshot skipped.
 * Never sooner than an eighth of the bound past the snapshot, so a margin larger than the bound does not snapshot
 * without pause (the margin then bounds the editlog, not editlogMaxBytes).
 *
 * Replicas are staggered by `rank` (the data node's place in the configuration), so that two do not upload at once:
 * a journal node takes one upload at a time, and two replicas' uploads refused each other on the nodes ("stored on 0 of
 * 3", or 1 of 3 each), so neither became durable. Twice over:
 *
 *   - in records: each threshold is 1 + rank/8 times the first's, so the first's snapshot is durable before the next
 *     replica's threshold comes, and that one counts from it;
 *   - in time: a replica of rank r starts r × `snapshotRankDelayMs` (or r × its own last snapshot's duration, if
 *     longer) after its snapshot came due, or after its pause following a failed try ended. Replicas fed by the
 *     master's batch fan-out apply the same batches at the same moment, in bursts after a pause: both crossed both
 *     thresholds in one burst and started within milliseconds, failed together, paused the same
 *     `journalRequestTimeoutMs` and started again together at the very same txid, try after try — 50,000 records
 *     with no durable snapshot, the editlog at twice its bound (bench bounds, jn3 stopped). The later rank now finds
 *     the first's snapshot durable when its turn comes, and no longer needs one.
 *
 * Time is the caller's (`nowMs`): a try begins with `tried`, ends with `succeeded` once durable (a failure just lets
 * the pause run).
 */
export class SnapshotSchedule {
  private bytes = 0;
  private records = 0;
  private readonly stagger: number;
  /** When due() first found a threshold passed (null: not passed at its last call). */
  private dueSinceMs: number | null = null;
  /** No try before this (a try under way, or the pause after one that failed). */
  private pausedUntilMs = 0;
  /** When the try under way began, and how long the last successful one took. */
  private triedAtMs = 0;
  private lastTookMs = 0;

  constructor(
    private readonly limits: SnapshotLimits,
    private readonly rank = 0,
  ) {
    this.rank = Math.max(0, rank);
    this.stagger = 1 + this.rank / 8;
  }

  /** A record of `bytes` (header and payload) was applied. */
  observe(bytes: number): void {
    this.bytes += bytes;
    this.records++;
  }

  /** True when a snapshot is due at `nowMs`, `appliedTxid` applied and `snapshotTxid` the newest durable snapshot known. */
  due(appliedTxid: number, snapshotTxid: number, nowMs: number): boolean {
    if (!this.thresholdPassed(appliedTxid, snapshotTxid)) {
      this.dueSinceMs = null;
      return false;
    }
    this.dueSinceMs ??= nowMs;
    const wait = this.rank * Math.max(this.limits.snapshotRankDelayMs, this.lastTookMs);
    return nowMs >= Math.max(this.dueSinceMs, this.pausedUntilMs) + wait;
  }

  /** A try begins (a list of the durable snapshots, then the BGSAVE and the upload): none other for the pause. */
  tried(nowMs: number): void {
    this.triedAtMs = nowMs;
    this.pausedUntilMs = nowMs + this.limits.journalRequestTimeoutMs;
  }

  /** The try begun last ended in a durable snapshot: the next may start as soon as it is due. */
  succeeded(nowMs: number): void {
    this.lastTookMs = Math.max(0, nowMs - this.triedAtMs);
    this.pausedUntilMs = 0;
  }

  /** Whether the records applied past the newest durable snapshot call for one (its thresholds alone, not its turn). */
  thresholdPassed(appliedTxid: number, snapshotTxid: number): boolean {
    const every = this.limits.snapshotEveryRecords;
    if (every <= 0) return false;
    const past = appliedTxid - snapshotTxid;
    if (past >= every * this.stagger) return true;
    if (this.records === 0 || past <= 0) return false;
    const mean = this.bytes / this.records;
    const bound = this.limits.editlogMaxBytes;
    return past * mean >= Math.max(bound / 2 - this.limits.purgeMarginRecords * mean, bound / 8) * this.stagger;
  }
}

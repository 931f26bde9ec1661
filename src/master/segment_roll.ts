/**
 * Segment roll (HDFS: rollEdits): the writer finalizes its in-progress segment on a majority and opens the next one,
 * so journal nodes can purge and merge whole segments and no file grows without bound.
 */
import { quorumSize, type Config } from "../config/config.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import type { JournalReply, JournalRequest } from "../protocol/messages.js";
import { assert } from "../util/assert.js";
import type { JournalClient } from "./journal_client.js";
import { describeErrors } from "./recovery_core.js";

export type RollLimits = Pick<Config, "segmentMaxBytes" | "segmentMaxRecords" | "segmentMaxAgeMs">;

/** Why the open segment should be rolled now, or null. An empty segment is never rolled. */
export function rollDue(segment: { bytes: number; records: number; ageMs: number }, limits: RollLimits): string | null {
  if (segment.records === 0) return null;
  if (segment.bytes >= limits.segmentMaxBytes) return `${segment.bytes} bytes`;
  if (segment.records >= limits.segmentMaxRecords) return `${segment.records} records`;
  if (segment.ageMs >= limits.segmentMaxAgeMs) return `open ${segment.ageMs} ms`;
  return null;
}

/** One request of a roll: to one node; the driver answers each with `RollCore.onReply` (a timeout is an error reply). */
export interface RollRequest {
  node: string;
  req: JournalRequest;
  timeoutMs: number;
}

/** What a roll reads of the drained writer core. */
export interface RollWriterView {
  readonly epoch: number;
  readonly segmentTxid: number;
  readonly lastTxid: number;
  readonly inSyncNodes: string[];
}

export type RollStep = { send: RollRequest[]; open: string[] | null };

/**
 * The roll as a pure procedure, shared by master.ts (over NATS) and the simulator: finalize the drained segment on
 * the nodes in step, then start the next segment on every node that finalized. Ends with the nodes that opened the
 * next segment (a majority; the others drop out and are caught up later), or throws NO_QUORUM (the writer recovers).
 */
export class RollCore {
  private phase: "finalize" | "start" | "done" = "finalize";
  private waiting = new Set<string>();
  private replies = new Map<string, JournalReply>();
  private readonly quorum: number;
  private readonly end: number;

  constructor(
    private readonly writer: RollWriterView,
    nodes: number,
    private readonly clusterId: string,
    private readonly timeoutMs: number,
  ) {
    this.quorum = quorumSize(nodes);
    this.end = writer.lastTxid;
  }

  start(): RollStep {
    const req: JournalRequest = { type: "finalize", epoch: this.writer.epoch, startTxid: this.writer.segmentTxid, endTxid: this.end };
    return { send: this.fanOut(this.writer.inSyncNodes, req), open: null };
  }

  /** One node's answer; duplicate or unexpected answers are ignored. */
  onReply(node: string, reply: JournalReply): RollStep {
    if (!this.waiting.delete(node)) return { send: [], open: null };
    this.replies.set(node, reply);
    if (this.waiting.size > 0) return { send: [], open: null };
    const replies = this.replies;
    if (this.phase === "finalize") {
      const done = [...replies].filter(([, r]) => r.ok).map(([n]) => n);
      if (done.length < this.quorum) {
        throw new QjmError(ErrorCode.NO_QUORUM, `finalize of segment ${this.writer.segmentTxid}-${this.end} on ${done.length} of ${this.quorum} nodes: ${describeErrors(replies)}`);
      }
      this.phase = "start";
      return { send: this.fanOut(done, { type: "startSegment", epoch: this.writer.epoch, txid: this.end + 1, clusterId: this.clusterId }), open: null };
    }
    this.phase = "done";
    const open = [...replies].filter(([, r]) => r.ok && "state" in r && r.state.lastTxid === this.end).map(([n]) => n);
    if (open.length < this.quorum) {
      throw new QjmError(ErrorCode.NO_QUORUM, `segment ${this.end + 1} opened on ${open.length} of ${this.quorum} nodes: ${describeErrors(replies)}`);
    }
    return { send: [], open };
  }

  private fanOut(nodes: readonly string[], req: JournalRequest): RollRequest[] {
    assert(nodes.length > 0, "a roll asks at least one node");
    this.waiting = new Set(nodes);
    this.replies = new Map();
    return nodes.map((node) => ({ node, req, timeoutMs: this.timeoutMs }));
  }
}

/** Runs a RollCore over the JournalClient (master.ts): the nodes that opened the next segment. */
export async function rollSegment(jc: JournalClient, core: RollWriterView, config: Config, clusterId: string): Promise<string[]> {
  const roll = new RollCore(core, config.journalNodes.length, clusterId, config.quorumTimeoutMs);
  return new Promise<string[]>((resolve, reject) => {
    const step = (run: () => RollStep): void => {
      let out: RollStep;
      try {
        out = run();
      } catch (err) {
        reject(err as Error);
        return;
      }
      if (out.open !== null) resolve(out.open);
      for (const r of out.send) void jc.call(r.node, r.req, r.timeoutMs).then((reply) => step(() => roll.onReply(r.node, reply)));
    };
    step(() => roll.start());
  });
}

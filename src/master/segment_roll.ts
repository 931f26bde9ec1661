/**
 * Segment roll (HDFS: rollEdits): the writer finalizes its in-progress segment on a majority and opens the next one,
 * so journal nodes can purge and merge whole segments and no file grows without bound.
 */
import { quorumSize, type Config } from "../config/config.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import type { JournalClient } from "./journal_client.js";
import { describeErrors } from "./recovery_core.js";
import type { WriterCore } from "./writer_core.js";

export type RollLimits = Pick<Config, "segmentMaxBytes" | "segmentMaxRecords" | "segmentMaxAgeMs">;

/** Why the open segment should be rolled now, or null. An empty segment is never rolled. */
export function rollDue(segment: { bytes: number; records: number; ageMs: number }, limits: RollLimits): string | null {
  if (segment.records === 0) return null;
  if (segment.bytes >= limits.segmentMaxBytes) return `${segment.bytes} bytes`;
  if (segment.records >= limits.segmentMaxRecords) return `${segment.records} records`;
  if (segment.ageMs >= limits.segmentMaxAgeMs) return `open ${segment.ageMs} ms`;
  return null;
}

/**
 * Finalizes `core`'s segment (drained: everything in it committed) on the nodes in step, then starts the next
 * segment on every node that finalized. Returns the nodes that opened the next segment (a majority); the others
 * drop out and are caught up later. Throws NO_QUORUM if a majority did not follow (the writer then recovers).
 */
export async function rollSegment(jc: JournalClient, core: WriterCore, config: Config, clusterId: string): Promise<string[]> {
  const quorum = quorumSize(config.journalNodes.length);
  const end = core.lastTxid;
  const finalized = await jc.callAll(core.inSyncNodes, { type: "finalize", epoch: core.epoch, startTxid: core.segmentTxid, endTxid: end }, config.quorumTimeoutMs);
  const done = [...finalized].filter(([, r]) => r.ok).map(([n]) => n);
  if (done.length < quorum) {
    throw new QjmError(ErrorCode.NO_QUORUM, `finalize of segment ${core.segmentTxid}-${end} on ${done.length} of ${quorum} nodes: ${describeErrors(finalized)}`);
  }
  const started = await jc.callAll(done, { type: "startSegment", epoch: core.epoch, txid: end + 1, clusterId }, config.quorumTimeoutMs);
  const open = [...started].filter(([, r]) => r.ok && "state" in r && r.state.lastTxid === end).map(([n]) => n);
  if (open.length < quorum) {
    throw new QjmError(ErrorCode.NO_QUORUM, `segment ${end + 1} opened on ${open.length} of ${quorum} nodes: ${describeErrors(started)}`);
  }
  return open;
}

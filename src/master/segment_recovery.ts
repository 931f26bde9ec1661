/**
 * Which copy of the unfinished segment a new writer keeps (HDFS's SegmentRecoveryComparator): the end txid of that
 * segment is one value decided once, Paxos-style — newEpoch is the promise, prepareRecovery reads what each node
 * holds and had accepted, acceptRecovery makes a majority hold the chosen copy.
 *
 * Order: a copy beats no copy; a finalized copy beats an in-progress one (two finalized copies must agree);
 * then the higher epoch the data was last written or accepted in; then the longer copy.
 */
import type { PrepareResult, SegmentState } from "../protocol/messages.js";
import { AssertionError } from "../util/assert.js";

export interface PrepareResponse extends PrepareResult {
  node: string;
}

/** The epoch a copy's data was last written or accepted in. */
function seenEpoch(r: PrepareResponse): number {
  return Math.max(r.acceptedInEpoch, r.state.writerEpoch);
}

export function compareCopies(a: PrepareResponse, b: PrepareResponse): number {
  if (a.segment === null || b.segment === null) return (a.segment === null ? 0 : 1) - (b.segment === null ? 0 : 1);
  if (!a.segment.inProgress && !b.segment.inProgress) {
    if (a.segment.endTxid !== b.segment.endTxid) {
      throw new AssertionError(`finalized copies of segment ${a.segment.startTxid} disagree: ${a.node} ends at ${a.segment.endTxid}, ${b.node} at ${b.segment.endTxid}`);
    }
    return 0;
  }
  if (a.segment.inProgress !== b.segment.inProgress) return a.segment.inProgress ? -1 : 1;
  const byEpoch = seenEpoch(a) - seenEpoch(b);
  if (byEpoch !== 0) return byEpoch;
  return a.segment.endTxid - b.segment.endTxid;
}

export type RecoveryDecision =
  /** No responder holds a record of the segment: nothing to recover, the log ends before it. */
  | { kind: "empty"; endTxid: number }
  /** Keep `segment` as held by `source`; make a majority hold exactly it, then finalize. */
  | { kind: "keep"; segment: SegmentState; source: string }
  /** Fewer than a majority answered: no decision, try again. */
  | { kind: "noQuorum" };

export function decideRecovery(segmentTxid: number, responses: readonly PrepareResponse[], quorum: number): RecoveryDecision {
  if (responses.length < quorum) return { kind: "noQuorum" };
  let best: PrepareResponse | null = null;
  for (const r of responses) if (best === null || compareCopies(r, best) > 0) best = r;
  if (best === null || best.segment === null) return { kind: "empty", endTxid: segmentTxid - 1 };
  // Never lose what a node saw committed (HDFS-3863): the chosen copy must reach every reported commit index.
  for (const r of responses) {
    if (r.state.committedTxid > best.segment.endTxid) {
      throw new AssertionError(`recovery would drop committed txid ${r.state.committedTxid} reported by ${r.node}: chosen copy ends at ${best.segment.endTxid}`);
    }
  }
  return { kind: "keep", segment: { ...best.segment, inProgress: true }, source: best.node };
}

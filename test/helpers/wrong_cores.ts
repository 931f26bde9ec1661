/** Deliberately wrong protocol cores: the simulation must catch each (test/unit/sim.test.ts). */
import { RecoveryCore } from "../../src/master/recovery_core.js";
import type { PrepareResponse, RecoveryDecision } from "../../src/master/segment_recovery.js";
import { WriterCore } from "../../src/master/writer_core.js";
import { realCores, type SimCores } from "../../src/sim/cores.js";

/** A writer that counts a batch committed once one journal node acked it, not a majority. */
class OneAckWriterCore extends WriterCore {
  constructor(...args: ConstructorParameters<typeof WriterCore>) {
    super(...args);
    (this as { quorum: number }).quorum = 1;
  }
}

/** Recovery that keeps the longest copy, whatever epoch wrote it and whether it is finalized. */
export function longestCopyWins(segmentTxid: number, responses: readonly PrepareResponse[], quorum: number): RecoveryDecision {
  if (responses.length < quorum) return { kind: "noQuorum" };
  let best: PrepareResponse | null = null;
  for (const r of responses) if (r.segment !== null && (best === null || r.segment.endTxid > best.segment!.endTxid)) best = r;
  if (best === null) return { kind: "empty", endTxid: segmentTxid - 1 };
  return { kind: "keep", segment: { ...best.segment!, inProgress: true }, source: best.node };
}

export const wrongCores: Record<string, SimCores> = {
  "writer acks after one journal node": {
    ...realCores,
    writerCore: (epoch, segmentTxid, nodes, inSync, limits) => new OneAckWriterCore(epoch, segmentTxid, nodes, inSync, limits),
  },
  "recovery keeps the longest copy": {
    ...realCores,
    recoveryCore: (nodes, limits, newClusterId) => new RecoveryCore(nodes, limits, newClusterId, longestCopyWins),
  },
  "replica applies uncommitted records": { ...realCores, replicaReadsUncommitted: true },
};

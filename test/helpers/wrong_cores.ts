/** Deliberately wrong protocol cores: the simulation must catch each (test/unit/sim_caught.test.ts, sim_data_nodes.test.ts). */
import { DedupeWindow, type DedupeLookup } from "../../src/dedupe/dedupe_window.js";
import { JournalCore } from "../../src/journal/journal_core.js";
import { MasterCore, type WriteId } from "../../src/master/master_core.js";
import { RecoveryCore } from "../../src/master/recovery_core.js";
import type { RecordPrint, WriteId as ClientWriteId } from "../../src/protocol/messages.js";
import type { PrepareResponse, RecoveryDecision } from "../../src/master/segment_recovery.js";
import type { WriterCore } from "../../src/master/writer_core.js";
import { WriterCore as RealWriterCore } from "../../src/master/writer_core.js";
import { realCores, type SimCores } from "../../src/sim/cores.js";
import type { SimOptions } from "../../src/sim/simulator.js";
import { DataNodeCore, type DataNodeLimits, type SelfView } from "../../src/datanode/data_node_core.js";
import { FanoutBuffer, type BatchVerdict, type FannedBatch } from "../../src/replica/fanout_buffer.js";
import type { PeerBeat } from "../../src/datanode/election_core.js";

/** A writer that counts a batch committed once one journal node acked it, not a majority. */
class OneAckWriterCore extends RealWriterCore {
  constructor(...args: ConstructorParameters<typeof RealWriterCore>) {
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

/** A journal node that accepts a recovery's decision whatever record ends its own copy there (issue #10, class 1). */
class AnyCopyJournalCore extends JournalCore {
  protected override isChosenRecord(_held: RecordPrint | null, _chosen: RecordPrint): boolean {
    return true;
  }
}

/** A recovery that asks every responder to accept, even those whose copy of the chosen segment failed. */
class AcceptFailedCopiesRecoveryCore extends RecoveryCore {
  protected override acceptors(): string[] {
    return super.acceptors(new Set());
  }
}

/** A master core that answers every journaled write at the next commit, whether or not its own txid is committed. */
class AnswersBeforeCommitMasterCore extends MasterCore {
  protected override isCommitted(_w: WriterCore, _txid: number): boolean {
    return true;
  }
}

/** A master core that rolls the segment at once, without waiting for what is journaled to be committed and answered. */
class RollWithoutDrainMasterCore extends MasterCore {
  protected override drained(_w: WriterCore): boolean {
    return true;
  }
}

/**
 * A master core that ignores the connection's order (write_order.ts): it drops `id.after`, so it neither refuses a
 * write whose predecessor it refused (and which was not resent yet) nor one whose predecessor it has not seen.
 */
class IgnoresAfterMasterCore extends MasterCore {
  override write(id: WriteId, bytes: number, barrier: boolean, nowMs: number, clientId: ClientWriteId | null = null): void {
    super.write(id, bytes, barrier, nowMs, clientId === null ? null : { client: clientId.client, seq: clientId.seq });
  }
}

/** A dedupe window that forgets (issue #11): it observes every commit, but answers every retry as a new write. */
class ForgetfulDedupeWindow extends DedupeWindow {
  override lookup(_client: string, _seq: number): DedupeLookup {
    return { kind: "new" };
  }
}

/** A dedupe window that answers a retry of a committed write with the txid after its record's (an off-by-one). */
class OffByOneDedupeWindow extends DedupeWindow {
  override lookup(client: string, seq: number): DedupeLookup {
    const known = super.lookup(client, seq);
    return known.kind === "committed" ? { ...known, txid: known.txid + 1 } : known;
  }
}

/**
 * A candidate that skips newEpoch (issue #11): once it has heard a master, it takes the next epoch for its own
 * (the highest heard + 1) and serves in it, without winning it on a majority of journal nodes.
 */
class SkipsNewEpochDataNodeCore extends DataNodeCore {
  private epochHeard = 0;

  constructor(id: string, priority: number, limits: DataNodeLimits, nowMs: number, private readonly journalNodes: readonly string[]) {
    super(id, priority, limits, nowMs);
  }

  override heard(beat: PeerBeat, nowMs: number): void {
    this.epochHeard = Math.max(this.epochHeard, beat.epoch);
    super.heard(beat, nowMs);
  }

  override tick(self: SelfView, nowMs: number): void {
    super.tick(self, nowMs);
    const i = this.orders.findIndex((o) => o.kind === "campaign");
    if (i < 0 || this.epochHeard === 0) return;
    this.orders.splice(i, 1);
    this.won({ clusterId: "assumed", epoch: this.epochHeard + 1, endTxid: self.appliedTxid, inSync: [...this.journalNodes], decision: "newEpoch skipped" }, nowMs);
  }
}

/** Wrong cores of the data-node layout (test/unit/sim_data_nodes.test.ts); the legacy layout never runs them. */
export const dataNodeWrongCores: Record<string, SimCores> = {
  "a candidate that skips newEpoch": {
    ...realCores,
    dataNodeCore: (id, priority, limits, nowMs, journalNodes) => new SkipsNewEpochDataNodeCore(id, priority, limits, nowMs, journalNodes),
  },
};

/** The wrong core that drops `id.after`, and what the connection-order invariant (invariants.ts) says of it. */
export const IGNORES_AFTER = "a master that ignores the connection's order (id.after)";
export const CONNECTION_ORDER_BROKEN = /connection c1\/\d+: write c1#\d+ committed at txid \d+, after its later write c1#\d+ \(txid \d+\), and the client had not given it up/;

/**
 * Issue #10, class 1: a node whose copy of the chosen segment failed finalizes its own never-committed records. The
 * schedule it needs (a segment whose first records reach one node only, a writer that restarts it without that node,
 * then a recovery over that node whose copy fails) is scripted by the simulator; these runs aim it at every writer.
 */
export const FAILED_COPY_ACCEPTED = "recovery accepts on nodes whose copy failed, and nodes do not check the chosen copy";
/**
 * Four client connections, fixed: the script wants the next writer's first batch to hold a few records only, and a
 * connection resends its unanswered writes together, at once when the writer announces itself, which fills that batch
 * more often than the independent retries the simulated client made before; the wrong core below is caught in about 4%
 * of these seeds now (about 6% then), at seeds 1, 3, 69, 78, 83 of the first 100 (with one connection: 45, 83).
 */
export const AIMED_AT_FAILED_COPIES: Partial<SimOptions> = { steps: 6000, bootstrapFaults: false, divergeChance: 1, copyFaultChance: 0.8, connections: 4 };

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
  "master answers journaled writes before their commit": {
    ...realCores,
    masterCore: (limits, newWriter, window) => new AnswersBeforeCommitMasterCore(limits, newWriter, window),
  },
  "master rolls without draining": {
    ...realCores,
    masterCore: (limits, newWriter, window) => new RollWithoutDrainMasterCore(limits, newWriter, window),
  },
  [IGNORES_AFTER]: {
    ...realCores,
    masterCore: (limits, newWriter, window) => new IgnoresAfterMasterCore(limits, newWriter, window),
  },
  "a dedupe window that forgets": { ...realCores, dedupeWindow: (limits) => new ForgetfulDedupeWindow(limits) },
  "a dedupe window that answers duplicates with the next txid": { ...realCores, dedupeWindow: (limits) => new OffByOneDedupeWindow(limits) },
  // Each half alone is covered by the other (the real recovery skips failed copies; a real node refuses them).
  [FAILED_COPY_ACCEPTED]: {
    ...realCores,
    journalCore: (nodeId, loaded) => new AnyCopyJournalCore(nodeId, loaded),
    recoveryCore: (nodes, limits, newClusterId) => new AcceptFailedCopiesRecoveryCore(nodes, limits, newClusterId),
  },
};

/** A replica's fan-out buffer that takes a batch's records as committed as they arrive (issue #13 P4). */
class CommitsOnArrivalFanoutBuffer extends FanoutBuffer {
  override onBatch(b: FannedBatch): BatchVerdict {
    const verdict = super.onBatch(b);
    if (verdict === "kept" && b.count > 0) super.onCommit(b.epoch, b.firstTxid + b.count - 1);
    return verdict;
  }
}

/** A replica's fan-out buffer that counts any epoch's commit index for the records it holds, whatever their epoch. */
class EpochBlindFanoutBuffer extends FanoutBuffer {
  override onCommit(_epoch: number, committedTxid: number): void {
    super.onCommit(this.stats.epoch, committedTxid);
  }
}

/** The wrong fan-out buffers' names (issue #13 P4), and the invariant that catches a replica applying what is not committed. */
export const FANOUT_UNCOMMITTED = "a fan-out buffer that hands out records no commit index covers";
export const FANOUT_EPOCH_BLIND = "a fan-out buffer that counts another epoch's commit index";
export const REPLICA_APPLIES_UNCOMMITTED = /(r|d)\d applies (txid \d+, which is not committed|a record at txid \d+ other than the committed one)/;

/** Wrong fan-out buffers: the replicas' fan-out path must be caught applying what is not committed. */
export const fanoutWrongCores: Record<string, SimCores> = {
  [FANOUT_UNCOMMITTED]: { ...realCores, fanoutBuffer: (bytesMax) => new CommitsOnArrivalFanoutBuffer(bytesMax) },
  [FANOUT_EPOCH_BLIND]: { ...realCores, fanoutBuffer: (bytesMax) => new EpochBlindFanoutBuffer(bytesMax) },
};

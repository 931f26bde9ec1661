/**
 * The protocol cores the simulation runs, behind one small factory: tests pass deliberately wrong ones (a writer
 * that commits on one ack, a recovery that keeps the longest copy, a replica that reads uncommitted records) and
 * expect the invariants to catch them, without touching product code.
 */
import { DedupeWindow, type DedupeLimits } from "../dedupe/dedupe_window.js";
import { JournalCore, type LoadedJournal } from "../journal/journal_core.js";
import { MasterCore, type MasterLimits, type NewWriter } from "../master/master_core.js";
import { RecoveryCore, type RecoveryLimits } from "../master/recovery_core.js";
import { RestorerCore, type RestorerLimits, type RestorerWriterView } from "../master/restorer_core.js";
import { WriterCore, type WriterLimits } from "../master/writer_core.js";
import { FanoutBuffer } from "../replica/fanout_buffer.js";
import { ReplicaCore, type ReplicaPace } from "../replica/replica_core.js";
import { DataNodeCore, type DataNodeLimits } from "../datanode/data_node_core.js";

export interface SimCores {
  journalCore(nodeId: string, loaded: LoadedJournal): JournalCore;
  /** The serving master's core, over writers made by `newWriter` (the factory's own writerCore), deduping through `window`. */
  masterCore(limits: MasterLimits, newWriter: NewWriter, window: DedupeWindow): MasterCore;
  /** A master's dedupe window (the driver feeds it its rebuild's records; the core its commits). */
  dedupeWindow(limits: DedupeLimits): DedupeWindow;
  writerCore(epoch: number, segmentTxid: number, nodes: readonly string[], inSync: readonly string[], limits: WriterLimits): WriterCore;
  recoveryCore(nodes: readonly string[], limits: RecoveryLimits, newClusterId: string): RecoveryCore;
  restorerCore(node: string, writer: RestorerWriterView, clusterId: string, limits: RestorerLimits): RestorerCore;
  replicaCore(nodes: readonly string[], appliedTxid: number, pace: ReplicaPace): ReplicaCore;
  /** A replica's copy of the master's batch fan-out (issue #13 P4), kept until its own epoch commits it. */
  fanoutBuffer(bytesMax: number): FanoutBuffer;
  /** A data node's role changes (its election included). */
  dataNodeCore(id: string, priority: number, limits: DataNodeLimits, nowMs: number, journalNodes: readonly string[]): DataNodeCore;
  /** What replicas ask journal nodes for: committed records only (true: a deliberately wrong replica). */
  replicaReadsUncommitted: boolean;
  /**
   * How replicas and the master's rebuild replay effects: false, as a replica of the feeder (nothing expires by the
   * applier's clock); true, as a standalone Redis would (a deliberately wrong replay, issue #10 class 2).
   */
  replayExpiresByOwnClock: boolean;
}

export const realCores: SimCores = {
  journalCore: (nodeId, loaded) => new JournalCore(nodeId, loaded),
  masterCore: (limits, newWriter, window) => new MasterCore(limits, newWriter, window),
  dedupeWindow: (limits) => new DedupeWindow(limits),
  writerCore: (epoch, segmentTxid, nodes, inSync, limits) => new WriterCore(epoch, segmentTxid, nodes, inSync, limits),
  recoveryCore: (nodes, limits, newClusterId) => new RecoveryCore(nodes, limits, newClusterId),
  restorerCore: (node, writer, clusterId, limits) => new RestorerCore(node, writer, clusterId, limits),
  replicaCore: (nodes, appliedTxid, pace) => new ReplicaCore(nodes, appliedTxid, pace),
  fanoutBuffer: (bytesMax) => new FanoutBuffer(bytesMax),
  dataNodeCore: (id, priority, limits, nowMs) => new DataNodeCore(id, priority, limits, nowMs),
  replicaReadsUncommitted: false,
  replayExpiresByOwnClock: false,
};

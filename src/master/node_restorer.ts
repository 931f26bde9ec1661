/**
 * The master's side of bringing a masked journal node back (HDFS: JournalNodeSyncer for finalized segments, the
 * writer's next segment for the rest; here the writer drives both): format a wiped node as restoring, open the
 * current segment on it, copy the finalized segments it lacks from an in-step peer, send the current segment's
 * records it lacks as ordinary batches, mark it restored, and hand it back to the writer core at the exact txid
 * before the batch in flight.
 */
import type { Config } from "../config/config.js";
import type { EventPublisher } from "../actor/events.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "./journal_client.js";
import type { NodeWatch } from "./node_watch.js";
import type { WriterCore } from "./writer_core.js";
import type { SnapshotClient } from "../snapshot/snapshot_client.js";

export interface RestorerHost {
  /** The writer core now serving, if any: a catch-up for another one stops. */
  readonly currentCore: WriterCore | null;
  readonly clusterId: string;
  /** `node` holds everything before `core`'s batch in flight: count it again. */
  rejoin(node: string, lastTxid: number, core: WriterCore): void;
}

export class NodeRestorer {
  private readonly inProgress = new Set<string>();

  constructor(
    private readonly jc: JournalClient,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly events: EventPublisher,
    private readonly watch: NodeWatch,
    private readonly host: RestorerHost,
    private readonly snapshots: SnapshotClient,
  ) {}

  isCatchingUp(node: string): boolean {
    return this.inProgress.has(node);
  }

  /** Starts catching `node` up for `core` unless one runs already, or the node is silent or reported bad. */
  start(node: string, core: WriterCore): void {
    if (this.inProgress.has(node) || !this.watch.restorable(node, Date.now())) return;
    void this.catchUp(node, core).catch((err: unknown) => this.log.error({ err, node }, "catching up a journal node failed"));
  }

  /**
   * Brings a node that dropped out (a timeout, a restart, a wiped disk) back: an unformatted node is formatted as
   * restoring; the current segment is opened on it; finalized segments it lacks are copied from an in-step peer
   * (HDFS's JournalNodeSyncer, driven by the writer here); the current segment's records follow as ordinary
   * batches; a restoring node is marked restored; then it counts for acks again, from the batch in flight on.
   */
  private async catchUp(node: string, core: WriterCore): Promise<void> {
    this.inProgress.add(node);
    try {
      let st = await this.jc.call(node, { type: "getState" });
      if (!st.ok || !("state" in st) || st.state.fault !== null || st.state.promisedEpoch > core.epoch) return;
      if (st.state.clusterId === null) {
        st = await this.jc.call(node, { type: "format", clusterId: this.host.clusterId, restoring: true });
        if (!st.ok || !("state" in st)) return;
      }
      const s = st.state;
      if (s.clusterId !== this.host.clusterId) {
        this.log.error({ node, clusterId: s.clusterId }, "journal node of another cluster: left out");
        return;
      }
      let last = s.lastTxid;
      const open = s.lastSegment !== null && s.lastSegment.startTxid === core.segmentTxid && s.lastSegment.inProgress && s.writerEpoch === core.epoch;
      if (!open) {
        // A node that missed the start of this segment (or more) opens it now; what it lacks before is a hole.
        const started = await this.jc.call(node, { type: "startSegment", epoch: core.epoch, txid: core.segmentTxid, clusterId: this.host.clusterId });
        if (!started.ok || !("state" in started)) return;
        last = started.state.lastTxid;
        if (last >= core.segmentTxid) return;
        last = core.segmentTxid - 1;
      }
      this.events.publish({ type: "catchingUp", node, fromTxid: last + 1 });
      if (!(await this.copyFinalizedSegments(node, core))) return;
      // The purged log depends on the durable snapshot: a node that lost it (wiped) gets it back.
      if (!(await this.snapshots.ensureOn(node, this.host.clusterId))) this.log.warn({ node }, "could not copy the durable snapshot to the node yet");
      for (let round = 0; round < this.config.catchUpRoundsMax; round++) {
        if (this.host.currentCore !== core || core.failed) return;
        const target = core.rejoinTxid;
        if (last === target) {
          if (s.restoring) {
            const restored = await this.jc.call(node, { type: "markRestored", epoch: core.epoch, clusterId: this.host.clusterId });
            if (!restored.ok || this.host.currentCore !== core || core.failed) return;
            if (core.rejoinTxid !== last) continue;
          }
          this.host.rejoin(node, last, core);
          return;
        }
        if (last > target) return;
        const records = await this.readFromPeers(core, last + 1, target);
        if (records === null) continue;
        const sent = await this.jc.call(node, { type: "journal", epoch: core.epoch, segmentTxid: core.segmentTxid, firstTxid: last + 1, count: records.count, records: records.bytes, committedTxid: core.committedTxid });
        if (!sent.ok || !("state" in sent)) return;
        last = sent.state.lastTxid;
      }
    } finally {
      this.inProgress.delete(node);
    }
  }

  /** Records from `from` to at most `to` (one segment at most), from `source` or any in-step node. */
  private async readFromPeers(core: WriterCore, from: number, to: number, source?: string): Promise<{ bytes: Uint8Array; count: number } | null> {
    for (const peer of source !== undefined ? [source] : core.inSyncNodes) {
      const read = await this.jc.readRecords(peer, from, to, this.config);
      if (read !== null) return { bytes: read.bytes, count: read.records.length };
    }
    return null;
  }

  /** Copies every finalized segment an in-step peer holds and `node` lacks; false if a copy failed. */
  private async copyFinalizedSegments(node: string, core: WriterCore): Promise<boolean> {
    const mine = await this.jc.call(node, { type: "getManifest" });
    if (!mine.ok || !("manifest" in mine)) return false;
    for (const peer of core.inSyncNodes) {
      const theirs = await this.jc.call(peer, { type: "getManifest" });
      if (!theirs.ok || !("manifest" in theirs)) continue;
      const held = mine.manifest.filter((m) => m.endTxid >= m.startTxid);
      const missing = theirs.manifest.filter(
        (seg) => !seg.inProgress && seg.endTxid >= seg.startTxid && seg.endTxid < core.segmentTxid && !held.some((m) => m.startTxid <= seg.endTxid && seg.startTxid <= m.endTxid),
      );
      for (const segment of missing) {
        for (let from = segment.startTxid; from <= segment.endTxid; ) {
          if (this.host.currentCore !== core || core.failed) return false;
          const records = await this.readFromPeers(core, from, segment.endTxid, peer);
          if (records === null) return false;
          const r = await this.jc.call(node, { type: "syncSegment", epoch: core.epoch, clusterId: this.host.clusterId, segment, firstTxid: from, count: records.count, records: records.bytes });
          if (!r.ok) {
            this.log.warn({ node, segment, code: r.code, message: r.message }, "segment copy refused");
            return false;
          }
          from += records.count;
        }
        held.push(segment);
        this.log.info({ node, from: peer, segment }, "copied a finalized segment");
      }
      return true;
    }
    return false;
  }
}

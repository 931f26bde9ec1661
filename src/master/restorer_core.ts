/**
 * Bringing a masked journal node back as a pure state machine: replies in, requests out, no I/O, no clock (HDFS:
 * JournalNodeSyncer for finalized segments, the writer's next segment for the rest; here the writer drives both).
 * The procedure: the node's state; a wiped node formatted as restoring; the writer's current segment opened on it;
 * the finalized segments it lacks, from the union of every in-step peer's manifest, each copied from a peer that
 * holds it (HDFS's JournalNodeSyncer: a peer's own hole is not passed on while another peer holds the segment);
 * the durable snapshot copied (the adapter's step);
 * the current segment's records it lacks sent as ordinary batches; a restoring node marked restored; then it is
 * handed back to the writer core at the exact txid before the batch in flight.
 *
 * Contract with the adapter: one request is out at a time; it gets exactly one `onReply` (a transport failure or a
 * timeout is an error reply); ids of late or duplicate replies are ignored. Once `out.end` is set the core is
 * finished; the adapter drops it, and a later catch-up interval starts a new one. The adapter drops it as well as
 * soon as the writer core it serves is no longer the current one.
 */
import type { JournalReply, JournalRequest, JournalState, SegmentState } from "../protocol/messages.js";
import { recordRange } from "../segment/record.js";
import { assert } from "../util/assert.js";

/** What the catch-up reads of the writer core it serves (a WriterCore; pure getters). */
export interface RestorerWriterView {
  readonly epoch: number;
  readonly segmentTxid: number;
  readonly committedTxid: number;
  /** The last txid the node must hold to count again: everything before the batch in flight. */
  readonly rejoinTxid: number;
  readonly failed: boolean;
  readonly inSyncNodes: string[];
  /**
   * False: a wiped (restoring) node is left alone — a recovery has no durable snapshot to copy before it would mark
   * the node restored; the serving writer's catch-up restores it, snapshot first. Absent: true.
   */
  readonly restoresWiped?: boolean;
}

export interface RestorerLimits {
  /** Read-and-append rounds one catch-up may take before it gives up until the next interval. */
  catchUpRoundsMax: number;
  journalRequestTimeoutMs: number;
  readBytesMax: number;
  readRecordsMax: number;
}

export interface RestorerRequest {
  id: number;
  node: string;
  req: JournalRequest;
  timeoutMs: number;
}

export interface RestorerOutput {
  send: RestorerRequest[];
  /** The catch-up of the current segment starts at this txid (the `catchingUp` event). */
  catchingUpFrom: number | null;
  /** Copy the durable snapshot to the node, then call `onSnapshotEnsured` (the simulation has none: at once). */
  ensureSnapshot: boolean;
  /** Set once the core is finished. */
  end: RestorerEnd | null;
  /** What the adapter logs. */
  notes: { level: "info" | "warn" | "error"; message: string; fields: Record<string, unknown> }[];
}

export type RestorerEnd =
  /** The node holds everything up to `lastTxid` (the writer's rejoinTxid now): it counts for acks again. */
  | { kind: "rejoin"; lastTxid: number }
  /** Not now: the node, a peer or the writer was not ready; the next interval tries again. */
  | { kind: "gaveUp"; reason: string };

type Phase = "idle" | "state" | "format" | "open" | "manifest" | "peerManifest" | "copy" | "snapshot" | "read" | "append" | "markRestored" | "done";

export class RestorerCore {
  private phase: Phase = "idle";
  private seq = 0;
  private pending: { id: number; onReply: (reply: JournalReply) => void } | null = null;
  /** What the step being taken hands back to the adapter. */
  private out: RestorerOutput = emptyOutput();
  /** Whether the node was wiped and formatted as restoring: it votes again only once marked restored. */
  private restoring = false;
  /** The last txid the node holds in the current segment (or the one before the segment, if it holds none). */
  private last = 0;
  private round = 0;
  /** The node's non-empty segments (finalized copies join them). */
  private held: SegmentState[] = [];
  private peers: string[] = [];
  /** Each in-step peer's manifest that answered, in the order asked. */
  private manifests: { peer: string; manifest: SegmentState[] }[] = [];
  /** The finalized segments the node lacks, in txid order, each with the peers that hold it. */
  private missing: { segment: SegmentState; sources: string[] }[] = [];

  constructor(
    readonly node: string,
    private readonly writer: RestorerWriterView,
    private readonly clusterId: string,
    private readonly limits: RestorerLimits,
  ) {
    assert(clusterId !== "", "a catch-up needs the cluster id");
  }

  get currentPhase(): Phase {
    return this.phase;
  }

  start(): RestorerOutput {
    assert(this.phase === "idle", "catch-up started twice");
    this.out = emptyOutput();
    this.request("state", this.node, { type: "getState" }, (reply) => this.afterState(reply));
    return this.out;
  }

  onReply(id: number, reply: JournalReply): RestorerOutput {
    this.out = emptyOutput();
    const p = this.pending;
    if (p === null || p.id !== id || this.phase === "done") return this.out; // late, duplicate, or of a finished catch-up
    this.pending = null;
    p.onReply(reply);
    const phase = this.currentPhase;
    assert(phase === "done" || phase === "snapshot" || this.pending !== null, `catch-up of ${this.node} waits for nothing in ${phase}`);
    return this.out;
  }

  /** The adapter copied the durable snapshot to the node (or could not: the log is copied all the same). */
  onSnapshotEnsured(copied: boolean): RestorerOutput {
    this.out = emptyOutput();
    if (this.phase === "done") return this.out;
    assert(this.phase === "snapshot" && this.pending === null, `snapshot ensured in phase ${this.phase}`);
    // The purged log depends on the durable snapshot: a node that lost it (wiped) gets it back.
    if (!copied) this.out.notes.push({ level: "warn", message: "could not copy the durable snapshot to the node yet", fields: { node: this.node } });
    this.nextRound();
    return this.out;
  }

  private request(phase: Phase, node: string, req: JournalRequest, onReply: (reply: JournalReply) => void): void {
    assert(this.pending === null, `catch-up of ${this.node} sends ${req.type} with a request unanswered`);
    this.phase = phase;
    const id = ++this.seq;
    this.pending = { id, onReply };
    this.out.send.push({ id, node, req, timeoutMs: this.limits.journalRequestTimeoutMs });
  }

  private end(end: RestorerEnd): void {
    this.phase = "done";
    this.pending = null;
    this.out.end = end;
  }

  private gaveUp(reason: string): void {
    this.end({ kind: "gaveUp", reason });
  }

  /** The writer this catch-up serves failed: whatever the node holds now is for the next writer to settle. */
  private get writerGone(): boolean {
    return this.writer.failed;
  }

  private afterState(reply: JournalReply): void {
    if (!reply.ok || !("state" in reply)) return this.gaveUp(`getState: ${describe(reply)}`);
    const st = reply.state;
    if (st.fault !== null) return this.gaveUp(`the node refuses service: ${st.fault}`);
    if (st.promisedEpoch > this.writer.epoch) return this.gaveUp(`the node promised epoch ${st.promisedEpoch} > ${this.writer.epoch}`);
    if (st.clusterId !== null) return this.afterFormat(st);
    // A wiped node: it forgot its promises, so it votes again only once restored.
    this.request("format", this.node, { type: "format", clusterId: this.clusterId, restoring: true }, (r) => {
      if (!r.ok || !("state" in r)) return this.gaveUp(`format: ${describe(r)}`);
      this.afterFormat(r.state);
    });
  }

  private afterFormat(st: JournalState): void {
    if (st.clusterId !== this.clusterId) {
      this.out.notes.push({ level: "error", message: "journal node of another cluster: left out", fields: { node: this.node, clusterId: st.clusterId } });
      return this.gaveUp(`the node belongs to cluster ${st.clusterId}`);
    }
    if (st.restoring && this.writer.restoresWiped === false) return this.gaveUp("a wiped node is restored by the serving writer, snapshot first");
    this.restoring = st.restoring;
    this.last = st.lastTxid;
    const w = this.writer;
    const open = st.lastSegment !== null && st.lastSegment.startTxid === w.segmentTxid && st.lastSegment.inProgress && st.writerEpoch === w.epoch;
    if (open) return this.catchingUp();
    // A node that missed the start of this segment (or more) opens it now; what it lacks before is a hole.
    this.request("open", this.node, { type: "startSegment", epoch: w.epoch, txid: w.segmentTxid, clusterId: this.clusterId, catchUp: true }, (r) => {
      if (!r.ok || !("state" in r)) return this.gaveUp(`startSegment ${w.segmentTxid}: ${describe(r)}`);
      if (r.state.lastTxid >= w.segmentTxid) return this.gaveUp(`the node holds ${r.state.lastTxid} after opening segment ${w.segmentTxid}`);
      this.last = w.segmentTxid - 1;
      this.catchingUp();
    });
  }

  private catchingUp(): void {
    this.out.catchingUpFrom = this.last + 1;
    this.request("manifest", this.node, { type: "getManifest" }, (r) => {
      if (!r.ok || !("manifest" in r)) return this.gaveUp(`getManifest: ${describe(r)}`);
      this.held = r.manifest.filter((m) => m.endTxid >= m.startTxid);
      this.peers = [...this.writer.inSyncNodes];
      this.manifests = [];
      this.nextPeerManifest();
    });
  }

  /** Asks every in-step peer for its manifest, one at a time; a peer that does not answer is left out. */
  private nextPeerManifest(): void {
    const peer = this.peers.shift();
    if (peer === undefined) return this.planCopies();
    this.request("peerManifest", peer, { type: "getManifest" }, (r) => {
      if (r.ok && "manifest" in r) this.manifests.push({ peer, manifest: r.manifest });
      this.nextPeerManifest();
    });
  }

  /**
   * The finalized segments before the writer's segment that any answering peer holds and the node lacks (the union
   * of their manifests), each with every peer that holds it as it is: a copy that fails goes to the next.
   */
  private planCopies(): void {
    if (this.manifests.length === 0) return this.gaveUp("no in-step peer served its manifest");
    const segmentTxid = this.writer.segmentTxid;
    const bySpan = new Map<string, { segment: SegmentState; sources: string[] }>();
    for (const { peer, manifest } of this.manifests) {
      for (const seg of manifest) {
        if (seg.inProgress || seg.endTxid < seg.startTxid || seg.endTxid >= segmentTxid) continue;
        if (this.held.some((m) => m.startTxid <= seg.endTxid && seg.startTxid <= m.endTxid)) continue;
        const span = `${seg.startTxid}-${seg.endTxid}`;
        const entry = bySpan.get(span) ?? { segment: seg, sources: [] };
        entry.sources.push(peer);
        bySpan.set(span, entry);
      }
    }
    // Peers agree on finalized spans; if two ever overlap, the one starting first (then the longest) is copied.
    const planned: { segment: SegmentState; sources: string[] }[] = [];
    const sorted = [...bySpan.values()].sort((a, b) => a.segment.startTxid - b.segment.startTxid || b.segment.endTxid - a.segment.endTxid);
    for (const c of sorted) if (!planned.some((p) => p.segment.startTxid <= c.segment.endTxid && c.segment.startTxid <= p.segment.endTxid)) planned.push(c);
    this.missing = planned;
    this.copyNext();
  }

  private copyNext(): void {
    const next = this.missing.shift();
    if (next === undefined) {
      this.phase = "snapshot";
      this.out.ensureSnapshot = true;
      return;
    }
    this.copyFrom(next.segment, next.sources);
  }

  /** The segment from the first of `sources`; a source that fails to serve it gives way to the next. */
  private copyFrom(segment: SegmentState, sources: string[]): void {
    const [peer, ...rest] = sources;
    if (peer === undefined) return this.gaveUp(`no peer served segment ${segment.startTxid}..${segment.endTxid}`);
    this.copyChunk(peer, segment, segment.startTxid, rest);
  }

  /** One chunk of a finalized segment: read from the peer, append to the node's copy, again until its end. */
  private copyChunk(peer: string, segment: SegmentState, from: number, otherSources: string[]): void {
    if (this.writerGone) return this.gaveUp("the writer failed");
    const read = this.readRequest(from);
    this.request("copy", peer, read, (r) => {
      const range = this.range(r, from, segment.endTxid);
      // The node's copy so far is kept: syncSegment appends from where it is (a chunk again is refused, not doubled).
      if (range === null && from === segment.startTxid) return this.copyFrom(segment, otherSources);
      if (range === null) return this.gaveUp(`${peer} did not serve ${from}..${segment.endTxid}`);
      const w = this.writer;
      const sync: JournalRequest = { type: "syncSegment", epoch: w.epoch, clusterId: this.clusterId, segment, firstTxid: from, count: range.count, records: range.bytes };
      this.request("copy", this.node, sync, (s) => {
        if (!s.ok) {
          this.out.notes.push({ level: "warn", message: "segment copy refused", fields: { node: this.node, segment, code: s.code, message: s.message } });
          return this.gaveUp(`syncSegment ${segment.startTxid}: ${describe(s)}`);
        }
        const next = from + range.count;
        if (next <= segment.endTxid) return this.copyChunk(peer, segment, next, otherSources);
        this.held.push(segment);
        this.out.notes.push({ level: "info", message: "copied a finalized segment", fields: { node: this.node, from: peer, segment } });
        this.copyNext();
      });
    });
  }

  /**
   * One round: the node is at the writer's rejoin txid (marked restored if it was wiped, then handed back), or
   * behind it (the records it lacks, read from an in-step peer, sent as a batch), or ahead of it (left out).
   */
  private nextRound(): void {
    if (this.round++ >= this.limits.catchUpRoundsMax) return this.gaveUp(`not caught up in ${this.limits.catchUpRoundsMax} rounds`);
    if (this.writerGone) return this.gaveUp("the writer failed");
    const target = this.writer.rejoinTxid;
    const w = this.writer;
    if (this.last === target) {
      if (!this.restoring) return this.end({ kind: "rejoin", lastTxid: this.last });
      this.request("markRestored", this.node, { type: "markRestored", epoch: w.epoch, clusterId: this.clusterId }, (r) => {
        if (!r.ok) return this.gaveUp(`markRestored: ${describe(r)}`);
        if (this.writerGone) return this.gaveUp("the writer failed");
        this.restoring = false;
        // A batch may have been committed meanwhile: another round sends it.
        if (this.writer.rejoinTxid !== this.last) return this.nextRound();
        this.end({ kind: "rejoin", lastTxid: this.last });
      });
      return;
    }
    if (this.last > target) return this.gaveUp(`the node holds ${this.last}, past the writer's ${target}`);
    this.peers = [...w.inSyncNodes];
    this.readFromPeers(this.last + 1, target);
  }

  /** Records from `from` to at most `to`, from the in-step nodes in turn; none serving them ends the round. */
  private readFromPeers(from: number, to: number): void {
    const peer = this.peers.shift();
    if (peer === undefined) return this.nextRound();
    this.request("read", peer, this.readRequest(from), (r) => {
      const range = this.range(r, from, to);
      if (range === null) return this.readFromPeers(from, to);
      const w = this.writer;
      const batch: JournalRequest = { type: "journal", epoch: w.epoch, segmentTxid: w.segmentTxid, firstTxid: from, count: range.count, records: range.bytes, committedTxid: w.committedTxid };
      this.request("append", this.node, batch, (s) => {
        if (!s.ok || !("state" in s)) return this.gaveUp(`journal ${from}..${from + range.count - 1}: ${describe(s)}`);
        this.last = s.state.lastTxid;
        this.nextRound();
      });
    });
  }

  private readRequest(fromTxid: number): JournalRequest {
    return { type: "read", fromTxid, bytesMax: this.limits.readBytesMax, recordsMax: this.limits.readRecordsMax, uncommitted: true };
  }

  /** The records of a read reply from `from` to at most `to`, checked (checksums, contiguous txids); null if none. */
  private range(reply: JournalReply, from: number, to: number): { bytes: Uint8Array; count: number } | null {
    if (!reply.ok || !("read" in reply) || reply.read.count === 0) return null;
    const range = recordRange(reply.read.records, from, to);
    return range === null ? null : { bytes: range.bytes, count: range.records.length };
  }
}

function emptyOutput(): RestorerOutput {
  return { send: [], catchingUpFrom: null, ensureSnapshot: false, end: null, notes: [] };
}

function describe(reply: JournalReply): string {
  return reply.ok ? "unexpected reply" : `${reply.code} ${reply.message}`;
}

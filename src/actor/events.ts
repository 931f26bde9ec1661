/** Cluster transitions, published on `qjm.<cluster>.events` and logged: what an operator follows with `redis-qjm events`. */
import type { NatsConnection } from "@nats-io/transport-node";
import { encode } from "../protocol/codec.js";
import { subjects } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";

export type ClusterEvent =
  /** The master stopped counting a journal node (a refused or timed-out batch, too many unanswered batches). */
  | { type: "masked"; node: string; reason: string }
  /** The master is copying the records a journal node lacks. */
  | { type: "catchingUp"; node: string; fromTxid: number }
  /** A journal node holds everything before the batch in flight and counts for acks again. */
  | { type: "restored"; node: string; lastTxid: number }
  /** A master became the writer: its epoch and how recovery settled the last segment. */
  | { type: "writerElected"; epoch: number; endTxid: number; decision: string }
  /** The write path failed; unanswered writes got NO_QUORUM and the master recovers as a new writer. */
  | { type: "writerFailed"; epoch: number; reason: string }
  /** A journal node cut a torn tail off its in-progress segment on start. */
  | { type: "tornTailTruncated"; node: string; file: string; bytes: number }
  /** A journal node found a corrupt segment on start and serves nothing. */
  | { type: "segmentCorrupt"; node: string; fault: string }
  /** The writer finalized its segment on a majority and opened the next one. */
  | { type: "segmentRolled"; epoch: number; startTxid: number; endTxid: number; reason: string; inSync: string[] }
  /** A journal node deleted segments or snapshots wholly covered by a majority-held snapshot, or merged segments. */
  | { type: "compacted"; node: string; purgedSegments: number; mergedSegments: number; purgedSnapshots: number; firstTxid: number }
  /** A snapshot is fsynced on a majority of journal nodes: segments below it may be purged. */
  | { type: "snapshotDurable"; txid: number; bytes: number; nodes: string[] }
  /** An effect failed to apply on an actor's Redis (replay): that copy differs from the journal and stopped applying. */
  | { type: "applyFailed"; actor: string; txid: number; reason: string }
  /** A write's effects passed writeEffectsBytesMax: the master rebuilt its Redis from the journal, same epoch (issue #10 class 5). */
  | { type: "redisReset"; epoch: number; txid: number; reason: string }
  /** Stream part: a script wrote keys no propagated effect names (e.g. set_repl(REPL_NONE)); its record restores them. */
  | { type: "scriptEffectsRepaired"; txid: number; keys: number; unpropagated: string[] }
  /** Stream part: the replication stream held what the master cannot journal (another database, an unexpected marker). */
  | { type: "streamSurprise"; surprises: string[] }
  /**
   * The master's link to NATS failed over to another server (its own died). nats-server lets a connection answer only
   * requests it delivered to it: the replies to writes received before are refused, so clients send them again at
   * once (same id: the master answers the retry when the original commits) instead of waiting for their timeout.
   */
  | { type: "masterReconnected"; epoch: number; server: string }
  /** A data node won an epoch on a majority of journal nodes and takes over as master (issue #11). */
  | { type: "elected"; node: string; epoch: number; endTxid: number }
  /** A data node stopped serving as master (fenced, a higher epoch heard, the writer failed) and rejoins as a replica. */
  | { type: "steppedDown"; node: string; reason: string }
  /** An actor loaded a snapshot into its Redis and tails the journal from its txid. */
  | { type: "bootstrapped"; actor: string; txid: number; bytes: number; fromNode: string; ms: number; downloadMs: number };

export class EventPublisher {
  private readonly subject: string;
  constructor(
    private readonly nc: NatsConnection,
    cluster: string,
    private readonly source: string,
    private readonly log: Logger,
  ) {
    this.subject = subjects(cluster).events;
  }

  publish(event: ClusterEvent): void {
    this.log.info({ event }, `event: ${event.type}`);
    try {
      this.nc.publish(this.subject, encode({ ...event, source: this.source, atMs: Date.now() }));
    } catch (err) {
      this.log.debug({ err }, "event not published");
    }
  }
}

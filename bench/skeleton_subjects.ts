/** The quorum skeleton's subjects, messages and shape (bench/skeleton.ts, bench/skeleton_node.ts): one place for both sides. */
import { defaults } from "../src/config/config.js";

export const SKELETON_SUBJECTS = {
  /** Client writes, as redis-qjm's `qjm.<cluster>.write`. */
  write: "skeleton.write",
  /** The master's batch fan-out to every journal and replica. */
  batch: "skeleton.batch",
  /** Journals' acks to the master. */
  ack: "skeleton.ack",
  /** A commit index no batch carried. */
  committed: "skeleton.committed",
  /** Replicas' applied runs (TraceApplied, as redis-qjm's replicas publish them), when traced. */
  applied: "skeleton.applied",
  /** Each process says here that it subscribed. */
  ready: "skeleton.ready",
} as const;

/** Journals and replicas, as redis-qjm's defaults (3 journal nodes; 3 data nodes: a master and 2 replicas). */
export const SKELETON_JOURNALS = defaults.journalNodes.length;
export const SKELETON_REPLICAS = defaults.dataNodes.length - 1;

/** Bytes of the batch number (uint32, big-endian) in front of every batch: a journal acks it without decoding. */
export const SEQ_BYTES = 4;

/** A batch after its number: `count` writes from txid `first` on as RESP SETs, and the commit index when it left. */
export interface SkeletonBatch {
  first: number;
  count: number;
  committed: number;
  sets: Uint8Array;
}

/** A journal holds batch `seq` on disk. */
export interface SkeletonAck {
  seq: number;
  journal: string;
}

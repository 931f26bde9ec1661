/** The quorum skeleton's subjects and size (bench/skeleton.ts, bench/skeleton_node.ts): one place for both sides. */
export const SKELETON_SUBJECTS = {
  /** Client writes, as redis-qjm's `qjm.<cluster>.write`. */
  write: "skeleton.write",
  /** The master's batch fan-out to every journal. */
  batch: "skeleton.batch",
  /** Journals' acks to the master. */
  ack: "skeleton.ack",
  /** Each process says here that it subscribed. */
  ready: "skeleton.ready",
} as const;

/** Journals, as redis-qjm's default journal nodes. */
export const SKELETON_JOURNALS = 3;

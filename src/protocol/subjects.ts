/**
 * Every NATS subject the actors and clients use: `qjm.<cluster>.…`. Subjects are split by who may send on them, so
 * nats-server's per-user permissions (src/nats/auth.ts) can say it: a journal node's writer requests apart from its
 * reads, snapshot uploads apart from downloads. A journal node answers on each subject only the request types
 * routed to it here, so a request sent on a subject its sender may use cannot reach a handler it may not.
 */
export type Role = "master" | "journal" | "replica";

export const subjects = (cluster: string) => ({
  /** Client writes: request `[command, ...args]` or `{ args, id: { client, seq } }` (msgpack), reply WriteReply. */
  write: `qjm.${cluster}.write`,
  /**
   * Client writes addressed to one data node (the master a client learnt from `writerElected`): a dead master that still
   * holds its place in the `write` queue group (its connection not yet closed by nats-server) is never chosen.
   */
  writeTo: (id: string) => `qjm.${cluster}.write.${id}`,
  /**
   * Read index (ReadIndexRequest → ReadIndexReply): a data node's linearizable read asks the master (queue group
   * `masters`, as writes) for a committed txid confirmed by a majority of journal nodes.
   */
  readIndex: `qjm.${cluster}.readindex`,
  /** A read index asked of the master a door knows (as `writeTo`): a frozen master in the queue group never gets it. */
  readIndexTo: (id: string) => `qjm.${cluster}.readindex.${id}`,
  /** A journal node's writer requests (JournalRequest → JournalReply): the master only. */
  journal: (id: string) => `qjm.${cluster}.jn.${id}`,
  /**
   * A batch for several journal nodes in one publish (BatchFanout, issue #13): the master publishes it once, nats-server
   * fans it out, every journal node takes it and handles it only if it is named. The master only publishes here,
   * journal nodes only subscribe.
   */
  batch: `qjm.${cluster}.batch`,
  /**
   * Journal node `id`'s answers to batch fan-outs (FanoutReply): only that node may publish here, so an answer's node
   * is the subject's, which nats-server vouches for — a reply subject (allow_responses) would let every node that heard
   * the fan-out answer in any node's name. The master subscribes to every node's.
   */
  batchAck: (id: string) => `qjm.${cluster}.batch.ack.${id}`,
  /** A journal node's reads (read, getState, getManifest): the master and replicas. */
  journalRead: (id: string) => `qjm.${cluster}.jn.${id}.read`,
  /** Snapshot downloads (snapshotList, snapshotRead): the master and replicas. */
  snapshot: (id: string) => `qjm.${cluster}.jn.${id}.snapshot`,
  /** Snapshot uploads (snapshotBegin/Chunk/End, snapshotDurable): replicas, and the master's copy onto a restored node. */
  snapshotUpload: (id: string) => `qjm.${cluster}.jn.${id}.snapshot.upload`,
  /** A data node's control requests (ControlRequest): a planned switchover, from an operator or the master. */
  control: (id: string) => `qjm.${cluster}.control.${id}`,
  /** Disk fault injection (tests only, with faultInjection = 1). */
  journalFault: (id: string) => `qjm.${cluster}.jn.${id}.fault`,
  /** Heartbeats: every actor publishes its Heartbeat here. */
  heartbeat: (role: Role, id: string) => `qjm.${cluster}.hb.${role}.${id}`,
  heartbeatAll: `qjm.${cluster}.hb.>`,
  /** Status: every actor answers a request here with its ActorStatus (collect many replies). */
  status: `qjm.${cluster}.status`,
  /**
   * The master's commit index (CommitHint), published for a commit that no batch fan-out carried within
   * commitHintDelayMs (src/master/commit_hints.ts; under load the next batch carries it): journal nodes learn it (as a
   * batch's committedTxid, under the same checks; no reply), replicas wake from their backstop pause
   * and read. To a read it is a hint only (a replica applies what a journal node serves as committed); to the records a
   * replica keeps from the batch fan-out it is the writer's commit index of its epoch (replica_feed.ts), which only
   * masters and data nodes may publish (auth.ts).
   */
  committed: `qjm.${cluster}.committed`,
  /** Transitions (masked, restored, recovery decisions…), one JSON-able event each. */
  events: `qjm.${cluster}.events`,
  /** With traceSample > 0: each replica's applied runs of records (TraceApplied), for the bench's replica lag. */
  trace: `qjm.${cluster}.trace`,
  /**
   * Pub/sub (issue #12 item 5): every PUBLISH on data node `id`'s front door (PubSubMessage, msgpack; the channel in the
   * body), for every other door. The channel is not in the subject: each door holds one subscription (pubsubAll)
   * whatever its clients listen to, channel names of any bytes and length need no encoding into a subject token, and a
   * PSUBSCRIBE pattern (Redis's glob) needs every channel anyway. The node is: only it may publish there (its origin
   * cannot be forged), and a door skips its own messages by their subject, without decoding them.
   */
  pubsub: (id: string) => `qjm.${cluster}.pubsub.${id}`,
  /** What every door subscribes to: every node's pub/sub subject. */
  pubsubAll: `qjm.${cluster}.pubsub.*`,
  /** Reply subjects of one NATS user (its connection's inbox prefix): nobody else may read them. */
  inbox: (user: string) => `_INBOX.${cluster}.${user}`,
});

export type Subjects = ReturnType<typeof subjects>;

/**
 * NATS micro-service discovery (issue #14 item 4): every actor registers as the service `qjm` (metadata: cluster, id,
 * role, metricsUrl), so `nats micro ls` lists the cluster. Its subjects are the micro protocol's, not the cluster's:
 * `$SRV.PING|INFO|STATS`, then `.qjm`, then `.qjm.<instance id>`.
 */
export const MICRO_SERVICE_NAME = "qjm";
export const microSubjects = {
  /** What an actor answers: the three verbs, for every service, for `qjm`, and for one instance of it. */
  served: ["$SRV.*", `$SRV.*.${MICRO_SERVICE_NAME}`, `$SRV.*.${MICRO_SERVICE_NAME}.*`],
  /** What an operator's user may ask (nats micro ls / info / stats). */
  requests: "$SRV.>",
  ping: "$SRV.PING",
  info: `$SRV.INFO.${MICRO_SERVICE_NAME}`,
};

/** Journal requests that only read: sent on `journalRead`, never on the writer's subject. */
export const JOURNAL_READ_TYPES: ReadonlySet<string> = new Set(["read", "getState", "getManifest"]);
/** Snapshot requests that upload (snapshotDurable is a journal request, sent with the upload it completes). */
export const SNAPSHOT_UPLOAD_TYPES: ReadonlySet<string> = new Set(["snapshotBegin", "snapshotChunk", "snapshotEnd", "snapshotDurable"]);

/** The subject of one journal request to node `id`. */
export function journalSubjectOf(s: Subjects, id: string, type: string): string {
  if (JOURNAL_READ_TYPES.has(type)) return s.journalRead(id);
  if (SNAPSHOT_UPLOAD_TYPES.has(type)) return s.snapshotUpload(id);
  return s.journal(id);
}

/** The subject of one snapshot request to node `id`. */
export function snapshotSubjectOf(s: Subjects, id: string, type: string): string {
  return SNAPSHOT_UPLOAD_TYPES.has(type) ? s.snapshotUpload(id) : s.snapshot(id);
}

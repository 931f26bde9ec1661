/** Every NATS subject the actors and clients use: `qjm.<cluster>.…`. */
export type Role = "master" | "journal" | "replica";

export const subjects = (cluster: string) => ({
  /** Client writes: request `[command, ...args]` (msgpack), reply WriteReply. */
  write: `qjm.${cluster}.write`,
  /** Requests to one journal node (JournalRequest → JournalReply). */
  journal: (id: string) => `qjm.${cluster}.jn.${id}`,
  /** Snapshot uploads and downloads of one journal node (SnapshotRequest), apart from the editlog's queue. */
  snapshot: (id: string) => `qjm.${cluster}.jn.${id}.snapshot`,
  /** Heartbeats: every actor publishes its Heartbeat here. */
  heartbeat: (role: Role, id: string) => `qjm.${cluster}.hb.${role}.${id}`,
  heartbeatAll: `qjm.${cluster}.hb.>`,
  /** Status: every actor answers a request here with its ActorStatus (collect many replies). */
  status: `qjm.${cluster}.status`,
  /** Transitions (masked, restored, recovery decisions…), one JSON-able event each. */
  events: `qjm.${cluster}.events`,
});

export type Subjects = ReturnType<typeof subjects>;

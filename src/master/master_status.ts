/**
 * The master's status as `redis-qjm status` and the heartbeats show it: read off the MasterCore and the Redis served.
 */
import type { ActorStatus } from "../protocol/messages.js";
import type { BootstrapProgress } from "../snapshot/bootstrap.js";
import type { MasterCore } from "./master_core.js";

export interface MasterStatusInput {
  id: string;
  core: MasterCore;
  journalNodes: readonly string[];
  health: "recovering" | "writing" | "stopped";
  /** The epoch won already, during a takeover: its heartbeat keeps the other data nodes from campaigning. */
  epochWon: number;
  redisUrl: string | null;
  bootstrap: BootstrapProgress | null;
}

export function masterStatus(s: MasterStatusInput): ActorStatus {
  const w = s.core.writer;
  return {
    role: "master",
    id: s.id,
    pid: process.pid,
    epoch: w?.epoch ?? s.epochWon,
    lastTxid: w?.lastTxid ?? 0,
    committedTxid: w?.committedTxid ?? 0,
    appliedTxid: 0,
    health: s.health,
    redisUrl: s.redisUrl,
    details: {
      inSync: w?.inSyncNodes ?? [],
      journalNodes: Object.fromEntries(s.journalNodes.map((n) => [n, nodeHealth(s.core, n)])),
      bufferedBytes: w?.bufferedBytes ?? 0,
      inflightWrites: s.core.inflight,
      queuedWrites: s.core.queued,
      queuedBytes: s.core.queuedBytes,
      inflightBytes: s.core.inflightBytes,
      lastFailure: s.core.lastFailure,
      bootstrap: s.bootstrap,
    },
  };
}

/** A journal node as the master sees it: counted for acks, being caught up, or masked. */
function nodeHealth(core: MasterCore, node: string): "healthy" | "catching-up" | "masked" | "unknown" {
  const w = core.writer;
  if (w === null) return "unknown";
  if (w.isInSync(node)) return "healthy";
  return core.isCatchingUp(node) ? "catching-up" : "masked";
}

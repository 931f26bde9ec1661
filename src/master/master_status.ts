/**
 * The master's status as `redis-qjm status` and the heartbeats show it: read off the MasterCore and the Redis served.
 */
import { INCARNATION } from "../actor/incarnation.js";
import type { ActorStatusBody } from "../protocol/messages.js";
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
  /** The lastTxid of each journal node's newest heartbeat. */
  heardTxid: ReadonlyMap<string, number>;
}

export function masterStatus(s: MasterStatusInput): ActorStatusBody {
  const w = s.core.writer;
  return {
    role: "master",
    id: s.id,
    pid: process.pid,
    incarnation: INCARNATION,
    epoch: w?.epoch ?? s.epochWon,
    lastTxid: w?.lastTxid ?? 0,
    committedTxid: w?.committedTxid ?? 0,
    appliedTxid: 0,
    health: s.health,
    redisUrl: s.redisUrl,
    details: {
      inSync: w?.inSyncNodes ?? [],
      journalNodes: Object.fromEntries(s.journalNodes.map((n) => [n, nodeHealth(s.core, n)])),
      journalNodeLag: Object.fromEntries(s.journalNodes.map((n) => [n, w === null ? null : journalNodeLag(w.committedTxid, w.ackedTxidOf(n), s.heardTxid.get(n))])),
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

/**
 * Committed txids a journal node does not hold, as the master knows it: from the node's acks in this term (exact, for
 * a node in step) or its heartbeat's lastTxid (a masked or catching-up node; a heartbeat interval old), whichever says
 * more. Null when neither says anything yet.
 */
export function journalNodeLag(committedTxid: number, ackedTxid: number | undefined, heardTxid: number | undefined): number | null {
  if (ackedTxid === undefined && heardTxid === undefined) return null;
  return Math.max(0, committedTxid - Math.max(ackedTxid ?? 0, heardTxid ?? 0));
}

/** A journal node as the master sees it: counted for acks, being caught up, or masked. */
function nodeHealth(core: MasterCore, node: string): "healthy" | "catching-up" | "masked" | "unknown" {
  const w = core.writer;
  if (w === null) return "unknown";
  if (w.isInSync(node)) return "healthy";
  return core.isCatchingUp(node) ? "catching-up" : "masked";
}

/**
 * What `redis-qjm status` shows of each actor's progress (issue #14 item 4): how many committed txids it lacks, and its
 * rate. Pure, over the statuses one status request collected.
 */
import type { ActorStatus } from "../protocol/messages.js";

/**
 * Committed txids `s` lacks: a replica, those it has not applied; a journal node, those the serving master says it does
 * not hold (its acks or heartbeat), else those below the highest commit index any actor reported; null for a master.
 */
export function lagOf(s: ActorStatus, all: readonly ActorStatus[]): number | null {
  if (s.role === "replica") return Math.max(0, s.committedTxid - s.appliedTxid);
  if (s.role !== "journal") return null;
  const master = all.find((a) => a.role === "master" && a.health === "writing");
  const seen = (master?.details.journalNodeLag as Record<string, number | null> | undefined)?.[s.id];
  if (typeof seen === "number") return seen;
  const committed = Math.max(0, ...all.map((a) => a.committedTxid));
  return Math.max(0, committed - s.lastTxid);
}

/** The rate with what it counts: acked writes at the master, applied txids at a replica, journaled ones at a journal node. */
export function rateText(s: ActorStatus): string {
  const unit = s.role === "master" ? "writes/s" : s.role === "replica" ? "applied/s" : "txids/s";
  return `${typeof s.rate === "number" ? s.rate : 0} ${unit}`;
}

/**
 * Whether a data node's door may serve reads now (pure; review finding B: an acked `SET` then read back as nil ~30% of
 * the time during failovers and wipes, because reads were served whatever the node was doing).
 *
 * Safe to read: a master that serves (its Redis holds every committed write), and a replica that applies the committed
 * journal and has caught up with the commit index it first heard after its role (re)started. That incarnation's Redis
 * may have been wiped (a master that stepped down), replaced (a snapshot bootstrap) or resumed from its AOF after
 * a restart: until it reaches that point it may be older than what this door, or any other, already answered.
 * Not safe: a node starting, campaigning won and handing its Redis over (releasing), taking over (its Redis gets the
 * journal's tail), ending or rejoining (wiped, rebuilt), a replica loading a snapshot or stopped on an apply fault.
 * Refused with `LOADING`: Redis's own error for a node that cannot serve its data yet, which clients take as "try
 * again shortly" (redis-py's BusyLoadingError, for instance).
 */
import type { DataNodePhase } from "../datanode/data_node_core.js";

export interface ReadView {
  phase: DataNodePhase;
  /** A master role is running (it serves once the phase says so). */
  master: boolean;
  /** The replica role, if it runs. */
  replica: {
    /** Neither stopped on a fault nor loading a snapshot. */
    ready: boolean;
    /** The commit index first heard from the journal by this incarnation; null before it heard any. */
    catchUpTo: number | null;
    appliedTxid: number;
  } | null;
}

/** Null when reads may be served; else the error text (without the `-`). */
export function readRefusal(v: ReadView): string | null {
  if (v.phase === "serving" && v.master) return null;
  if (v.phase === "replica" || v.phase === "campaigning") {
    const r = v.replica;
    if (r === null) return loading("starting its replica role");
    if (!r.ready) return loading("loading a snapshot or stopped on an apply fault");
    if (r.catchUpTo === null) return loading("starting its replica role: not yet heard from the journal");
    if (r.appliedTxid < r.catchUpTo) return loading(`catching up (applied txid ${r.appliedTxid} of ${r.catchUpTo})`);
    return null;
  }
  return loading(`changing role (${v.phase})`);
}

function loading(why: string): string {
  return `LOADING qjm: this node's Redis is not serving reads while ${why}; try again shortly or read from another node`;
}

/**
 * What the master hears about each journal node besides its batch replies: heartbeats (a silent node is masked)
 * and replicas' reports of records that fail validation (a reported node is masked and not restored for a while).
 */
import type { Config } from "../config/config.js";
import { decode } from "../protocol/codec.js";

export interface ReplicaReport {
  node: string;
  replica: string;
  reason: string;
}

export class NodeWatch {
  private readonly heartbeatAtMs = new Map<string, number>();
  /** Heartbeats heard of each node so far, and that count when it last stopped counting for acks (noticeMasked). */
  private readonly heartbeats = new Map<string, number>();
  private readonly heartbeatsAtMask = new Map<string, number>();
  private readonly reports = new Map<string, ReplicaReport & { atMs: number }>();

  constructor(private readonly config: Pick<Config, "journalNodes" | "journalHeartbeatTimeoutMs" | "replicaReportTtlMs">) {}

  /** A heartbeat of `node` (MasterCore.heartbeat), or its answer to a writer's recovery (MasterCore.start). */
  heard(node: string, nowMs: number): void {
    if (!this.config.journalNodes.includes(node)) return;
    this.heartbeatAtMs.set(node, Math.max(this.heartbeatAtMs.get(node) ?? nowMs, nowMs));
    this.heartbeats.set(node, (this.heartbeats.get(node) ?? 0) + 1);
  }

  silentMs(node: string, nowMs: number): number {
    return nowMs - (this.heartbeatAtMs.get(node) ?? Number.NEGATIVE_INFINITY);
  }

  /** The reports a replica's heartbeat carries (malformed heartbeats carry none). */
  replicaReports(data: Uint8Array, nowMs: number): ReplicaReport[] {
    let hb: { id?: unknown; journalNodeFaults?: unknown };
    try {
      hb = decode(data) as typeof hb;
    } catch {
      return [];
    }
    if (typeof hb.id !== "string" || typeof hb.journalNodeFaults !== "object" || hb.journalNodeFaults === null) return [];
    const out: ReplicaReport[] = [];
    for (const [node, reason] of Object.entries(hb.journalNodeFaults as Record<string, unknown>)) {
      if (!this.config.journalNodes.includes(node) || typeof reason !== "string") continue;
      const report = { node, replica: hb.id, reason };
      this.reports.set(node, { ...report, atMs: nowMs });
      out.push(report);
    }
    return out;
  }

  /** `node` stopped counting for acks (it timed out, fell behind its in-flight bounds, refused a batch…). */
  masked(node: string): void {
    this.heartbeatsAtMask.set(node, this.heartbeats.get(node) ?? 0);
  }

  /**
   * A node is brought back only while we hear it, once heard since it was masked, and while no replica reported it
   * lately. A frozen node (SIGSTOP, a hung disk) is masked for not answering well before its heartbeat is
   * journalHeartbeatTimeoutMs old; a catch-up started on its last heartbeat waited out a whole request timeout, and
   * showed it "catching-up" meanwhile (5–7 s in integration/journal_health instead of ~1 s "masked"). Heartbeats are
   * counted, not compared by time: a wall clock stepped back after a mask would otherwise keep a live node masked.
   */
  restorable(node: string, nowMs: number): boolean {
    const report = this.reports.get(node);
    const reported = report !== undefined && nowMs - report.atMs <= this.config.replicaReportTtlMs;
    const heardSinceMasked = (this.heartbeats.get(node) ?? 0) > (this.heartbeatsAtMask.get(node) ?? -1);
    return !reported && heardSinceMasked && this.silentMs(node, nowMs) <= this.config.journalHeartbeatTimeoutMs;
  }
}

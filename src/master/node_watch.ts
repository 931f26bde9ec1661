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
  /** When each node last stopped counting for acks (MasterCore.noticeMasked). */
  private readonly maskedAtMs = new Map<string, number>();
  private readonly reports = new Map<string, ReplicaReport & { atMs: number }>();

  constructor(private readonly config: Pick<Config, "journalNodes" | "journalHeartbeatTimeoutMs" | "replicaReportTtlMs">) {}

  /** A heartbeat of `node`, or an answer that proves it alive. */
  heard(node: string, nowMs: number): void {
    if (this.config.journalNodes.includes(node)) this.heartbeatAtMs.set(node, Math.max(this.heartbeatAtMs.get(node) ?? nowMs, nowMs));
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
  masked(node: string, nowMs: number): void {
    this.maskedAtMs.set(node, nowMs);
  }

  /**
   * A node is brought back only while we hear it, once heard since it was masked, and while no replica reported it
   * lately. A frozen node (SIGSTOP, a hung disk) is masked for not answering well before its heartbeat is
   * journalHeartbeatTimeoutMs old; a catch-up started on its last heartbeat waited out a whole request timeout, and
   * showed it "catching-up" meanwhile (5–7 s in integration/journal_health instead of ~1 s "masked").
   */
  restorable(node: string, nowMs: number): boolean {
    const report = this.reports.get(node);
    const reported = report !== undefined && nowMs - report.atMs <= this.config.replicaReportTtlMs;
    const heardSinceMasked = (this.heartbeatAtMs.get(node) ?? Number.NEGATIVE_INFINITY) > (this.maskedAtMs.get(node) ?? Number.NEGATIVE_INFINITY);
    return !reported && heardSinceMasked && this.silentMs(node, nowMs) <= this.config.journalHeartbeatTimeoutMs;
  }
}

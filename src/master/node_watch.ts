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

  /** A node is brought back only while we hear it and no replica reported it lately. */
  restorable(node: string, nowMs: number): boolean {
    const report = this.reports.get(node);
    const reported = report !== undefined && nowMs - report.atMs <= this.config.replicaReportTtlMs;
    return !reported && this.silentMs(node, nowMs) <= this.config.journalHeartbeatTimeoutMs;
  }
}

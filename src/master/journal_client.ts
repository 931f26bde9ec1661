/** The master's and replicas' side of the journal node protocol: typed requests, validated replies. */
import type { NatsConnection } from "@nats-io/transport-node";
import { request } from "../nats/bus.js";
import { toErrorReply } from "../protocol/errors.js";
import { parseJournalReply, type JournalReply, type JournalRequest } from "../protocol/messages.js";
import { journalSubjectOf, subjects } from "../protocol/subjects.js";
import { recordRange, type RecordView } from "../segment/record.js";

export class JournalClient {
  private readonly s;
  constructor(
    private readonly nc: NatsConnection,
    cluster: string,
    private readonly timeoutMs: number,
  ) {
    this.s = subjects(cluster);
  }

  /** One request to one node, on the subject its type goes to; transport failures come back as an error reply, never a throw. */
  async call(node: string, req: JournalRequest, timeoutMs = this.timeoutMs): Promise<JournalReply> {
    try {
      return parseJournalReply(await request(this.nc, journalSubjectOf(this.s, node, req.type), req, timeoutMs));
    } catch (err) {
      return toErrorReply(err);
    }
  }

  /**
   * Records from `fromTxid` to at most `toTxid` (one segment at most, bounded by readBytesMax / readRecordsMax) that
   * `node` holds — committed or not — checked: checksums, contiguous txids starting at fromTxid. Null if the node
   * does not serve them or serves them damaged: the caller asks another node.
   */
  async readRecords(node: string, fromTxid: number, toTxid: number, limits: { readBytesMax: number; readRecordsMax: number }, uncommitted = true): Promise<{ bytes: Uint8Array; records: RecordView[] } | null> {
    const r = await this.call(node, { type: "read", fromTxid, bytesMax: limits.readBytesMax, recordsMax: limits.readRecordsMax, uncommitted });
    if (!r.ok || !("read" in r) || r.read.count === 0) return null;
    return recordRange(r.read.records, fromTxid, toTxid);
  }

  /** The same request to every node, in parallel; every answer (or error) by node. */
  async callAll(nodes: readonly string[], req: JournalRequest, timeoutMs = this.timeoutMs): Promise<Map<string, JournalReply>> {
    const replies = await Promise.all(nodes.map(async (n) => [n, await this.call(n, req, timeoutMs)] as const));
    return new Map(replies);
  }
}

/** The master's and replicas' side of the journal node protocol: typed requests, validated replies. */
import type { NatsConnection } from "@nats-io/transport-node";
import { request } from "../nats/bus.js";
import { ErrorCode, QjmError, toErrorReply, type ErrorReply } from "../protocol/errors.js";
import { parseJournalReply, type JournalReply, type JournalRequest } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";

export class JournalClient {
  private readonly s;
  constructor(
    private readonly nc: NatsConnection,
    cluster: string,
    private readonly timeoutMs: number,
  ) {
    this.s = subjects(cluster);
  }

  /** One request to one node; transport failures come back as an error reply, never a throw. */
  async call(node: string, req: JournalRequest, timeoutMs = this.timeoutMs): Promise<JournalReply> {
    try {
      return parseJournalReply(await request(this.nc, this.s.journal(node), req, timeoutMs));
    } catch (err) {
      return toErrorReply(err);
    }
  }

  /** The same request to every node, in parallel; every answer (or error) by node. */
  async callAll(nodes: readonly string[], req: JournalRequest, timeoutMs = this.timeoutMs): Promise<Map<string, JournalReply>> {
    const replies = await Promise.all(nodes.map(async (n) => [n, await this.call(n, req, timeoutMs)] as const));
    return new Map(replies);
  }
}

export function okReplies<T extends JournalReply>(replies: Map<string, JournalReply>, pick: (r: Extract<JournalReply, { ok: true }>) => T | undefined): Map<string, T> {
  const out = new Map<string, T>();
  for (const [node, r] of replies) {
    if (!r.ok) continue;
    const v = pick(r);
    if (v !== undefined) out.set(node, v);
  }
  return out;
}

export function describeErrors(replies: Map<string, JournalReply>): string {
  return [...replies].filter(([, r]) => !r.ok).map(([n, r]) => `${n}: ${(r as ErrorReply).code} ${(r as ErrorReply).message}`).join("; ");
}

export function noQuorum(message: string): QjmError {
  return new QjmError(ErrorCode.NO_QUORUM, message);
}

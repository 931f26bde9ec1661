/**
 * Probing a silent master (ElectionCore.probeDue): one request to its data node's control subject. NATS answers "no
 * responders" itself when nobody subscribes to the subject — a killed process's subscriptions go with its connection
 * the moment the server sees the socket close — so a killed master is known gone in a bus round trip instead of a
 * full masterTimeoutMs. A frozen or cut-off process keeps its subscription on the server: no answer, the timeout decides.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { decode, encode } from "../protocol/codec.js";
import { parseRoleReply, type ControlRequest } from "../protocol/messages.js";
import type { ProbeAnswer } from "./election_core.js";

const PROBE: ControlRequest = { type: "probe" };

export async function probeMaster(nc: NatsConnection, subject: string, timeoutMs: number): Promise<ProbeAnswer> {
  let data: Uint8Array;
  try {
    data = (await nc.request(subject, encode(PROBE), { timeout: timeoutMs })).data;
  } catch (err) {
    return isNoResponders(err) ? { kind: "noResponders" } : { kind: "noAnswer" };
  }
  let reply: ReturnType<typeof parseRoleReply> = null;
  try {
    reply = parseRoleReply(decode(data));
  } catch {
    // Not msgpack: the node answered, but not as a data node of this version: no verdict.
  }
  return reply === null ? { kind: "noAnswer" } : { kind: "answered", role: reply.role, epoch: reply.epoch };
}

function isNoResponders(err: unknown): boolean {
  const e = err as { isNoResponders?: () => boolean } | null;
  return e !== null && typeof e === "object" && typeof e.isNoResponders === "function" && e.isNoResponders();
}

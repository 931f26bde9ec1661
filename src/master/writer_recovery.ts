/**
 * Becoming the writer: a new epoch from a majority, then the unfinished segment settled (prepare → decide →
 * accept → finalize, as HDFS's recoverUnfinalizedSegments), then a new segment started on a majority.
 */
import { quorumSize, type Config } from "../config/config.js";
import type { JournalState, PrepareResult } from "../protocol/messages.js";
import { scanRecords } from "../segment/record.js";
import type { Logger } from "../util/log.js";
import { describeErrors, noQuorum, type JournalClient } from "./journal_client.js";
import { decideRecovery, type PrepareResponse } from "./segment_recovery.js";

export interface WriterStart {
  epoch: number;
  /** Last txid of the recovered log: the new segment starts after it. */
  endTxid: number;
  /** Nodes whose log ends at endTxid and that opened the new segment. */
  inSync: string[];
  /** How recovery settled the last segment (for the log and events). */
  decision: string;
}

function states(replies: Map<string, import("../protocol/messages.js").JournalReply>): Map<string, JournalState> {
  const out = new Map<string, JournalState>();
  for (const [node, r] of replies) if (r.ok && "state" in r && r.state.fault === null) out.set(node, r.state);
  return out;
}

export async function establishWriter(jc: JournalClient, config: Config, log: Logger): Promise<WriterStart> {
  const nodes = config.journalNodes;
  const quorum = quorumSize(nodes.length);

  const known = states(await jc.callAll(nodes, { type: "getState" }, config.epochRequestTimeoutMs));
  if (known.size < quorum) throw noQuorum(`${known.size} of ${nodes.length} journal nodes answered getState, ${quorum} needed`);
  const epoch = Math.max(...[...known.values()].map((s) => s.promisedEpoch)) + 1;

  const promiseReplies = await jc.callAll(nodes, { type: "newEpoch", epoch }, config.epochRequestTimeoutMs);
  const promised = states(promiseReplies);
  if (promised.size < quorum) throw noQuorum(`epoch ${epoch} promised by ${promised.size} of ${nodes.length} journal nodes (${describeErrors(promiseReplies)})`);

  let endTxid = 0;
  let decisionText = "empty journal";
  const segments = [...promised.values()].map((s) => s.lastSegment).filter((s) => s !== null);
  if (segments.length > 0) {
    const segmentTxid = Math.max(...segments.map((s) => s.startTxid));
    const prepareReplies = await jc.callAll([...promised.keys()], { type: "prepareRecovery", epoch, segmentTxid });
    const prepared: PrepareResponse[] = [];
    for (const [node, r] of prepareReplies) if (r.ok && "prepare" in r) prepared.push({ node, ...(r.prepare as PrepareResult) });
    const decision = decideRecovery(segmentTxid, prepared, quorum);
    if (decision.kind === "noQuorum") throw noQuorum(`prepareRecovery answered by ${prepared.length}, ${quorum} needed (${describeErrors(prepareReplies)})`);
    if (decision.kind === "empty") {
      endTxid = decision.endTxid;
      decisionText = `segment ${segmentTxid} holds no record on any responder: log ends at ${endTxid}`;
    } else {
      endTxid = decision.segment.endTxid;
      await syncSegmentCopies(jc, config, epoch, decision.segment, decision.source, prepared);
      const acceptReplies = await jc.callAll(prepared.map((p) => p.node), { type: "acceptRecovery", epoch, segment: decision.segment });
      const accepted = [...acceptReplies].filter(([, r]) => r.ok).map(([n]) => n);
      if (accepted.length < quorum) throw noQuorum(`acceptRecovery by ${accepted.length}, ${quorum} needed (${describeErrors(acceptReplies)})`);
      const finalizeReplies = await jc.callAll(accepted, { type: "finalize", epoch, startTxid: decision.segment.startTxid, endTxid });
      const finalized = [...finalizeReplies].filter(([, r]) => r.ok).length;
      if (finalized < quorum) throw noQuorum(`finalize by ${finalized}, ${quorum} needed (${describeErrors(finalizeReplies)})`);
      decisionText = `segment ${segmentTxid} kept as held by ${decision.source}: ends at ${endTxid}`;
    }
  }

  const startReplies = await jc.callAll(nodes, { type: "startSegment", epoch, txid: endTxid + 1 });
  const inSync = [...startReplies].filter(([, r]) => r.ok).map(([n]) => n);
  if (inSync.length < quorum) throw noQuorum(`segment ${endTxid + 1} started on ${inSync.length}, ${quorum} needed (${describeErrors(startReplies)})`);
  log.info({ epoch, endTxid, inSync, decision: decisionText }, "became the writer");
  return { epoch, endTxid, inSync, decision: decisionText };
}

/** The epoch a copy's data was last written or accepted in: copies with the same one agree on every txid they share. */
function seenEpoch(p: PrepareResponse): number {
  return Math.max(p.acceptedInEpoch, p.state.writerEpoch);
}

/**
 * Gives every responder the chosen copy, read from `source`: the records it lacks, or — when its copy was written
 * or accepted in another epoch and so may hold other records under the same txids — the whole segment.
 */
async function syncSegmentCopies(
  jc: JournalClient,
  config: Config,
  epoch: number,
  chosen: { startTxid: number; endTxid: number },
  source: string,
  prepared: PrepareResponse[],
): Promise<void> {
  const sourceEpoch = seenEpoch(prepared.find((p) => p.node === source)!);
  const plans = prepared
    .filter((p) => p.node !== source)
    .map((p) => {
      if (p.segment !== null && seenEpoch(p) !== sourceEpoch) return { node: p.node, from: chosen.startTxid };
      if (p.segment === null) return { node: p.node, from: chosen.startTxid };
      return { node: p.node, from: p.segment.endTxid + 1 };
    })
    .filter((plan) => plan.from <= chosen.endTxid);
  await Promise.all(
    plans.map(async (plan) => {
      let from = plan.from;
      while (from <= chosen.endTxid) {
        const r = await jc.call(source, { type: "read", fromTxid: from, bytesMax: config.readBytesMax, recordsMax: config.readRecordsMax, uncommitted: true });
        if (!r.ok || !("read" in r) || r.read.count === 0) return; // this node then fails accept: fine while a majority accepts
        const scan = scanRecords(r.read.records);
        const records = scan.records.filter((rec) => rec.txid <= chosen.endTxid);
        if (scan.stop !== undefined || records.length === 0 || records[0].txid !== from) return;
        const bytes = r.read.records.subarray(0, records[records.length - 1].offset + records[records.length - 1].length);
        const append = await jc.call(plan.node, { type: "recoveryAppend", epoch, segmentTxid: chosen.startTxid, firstTxid: from, count: records.length, records: bytes });
        if (!append.ok) return;
        from += records.length;
      }
    }),
  );
}

/**
 * Replays journal records into a Redis: the effects of a run of records in one MULTI/EXEC, ending with a marker key
 * that holds the last txid (optional), so Redis keeps all of the run or none of it, with the marker to match.
 * One transaction per run, not per record: one socket write and one reply for up to `recordsPerTransaction`
 * records. Used by replicas and by the master's rebuild.
 */
import type { Redis } from "ioredis";
import { decodeEffects, type RecordView } from "../segment/record.js";

/** The key that holds the last applied txid, written in the same transaction as that record's effects. */
export const APPLIED_KEY = "__qjm:applied";

export class ApplyError extends Error {
  override name = "ApplyError";
  constructor(
    readonly txid: number,
    message: string,
  ) {
    super(`record ${txid}: ${message}`);
  }
}

/**
 * Sends the transactions back to back on one connection and awaits them in order. Calls `applied(txid)` for each
 * record whose EXEC ran; throws ApplyError at the first that did not (those after it may have run: the caller
 * re-reads its marker). `onEffectError` hears of an effect Redis refused inside an EXEC that ran.
 */
export async function applyRecords(
  client: Redis,
  records: RecordView[],
  options: {
    markerKey?: string;
    recordsPerTransaction?: number;
    applied?: (txid: number) => void;
    onEffectError?: (txid: number, err: Error) => void;
  } = {},
): Promise<void> {
  const perTransaction = Math.max(1, options.recordsPerTransaction ?? 1024);
  const runs: { records: RecordView[]; effectTxids: number[]; exec: Promise<[Error | null, unknown][] | null> }[] = [];
  for (let i = 0; i < records.length; i += perTransaction) {
    const run = records.slice(i, i + perTransaction);
    const tx = client.multi();
    const effectTxids: number[] = [];
    for (const rec of run) {
      for (const effect of decodeEffects(rec.payload)) {
        tx.callBuffer(Buffer.from(effect[0]).toString("latin1"), ...effect.slice(1).map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
        effectTxids.push(rec.txid);
      }
    }
    if (options.markerKey !== undefined) tx.set(options.markerKey, String(run[run.length - 1].txid));
    runs.push({ records: run, effectTxids, exec: tx.exec() });
  }
  let failure: ApplyError | null = null;
  for (const run of runs) {
    const first = run.records[0].txid;
    try {
      const results = await run.exec;
      if (failure !== null) continue;
      if (results === null) {
        failure = new ApplyError(first, "transaction aborted");
        continue;
      }
      results.forEach(([err], i) => {
        if (err !== null && i < run.effectTxids.length) options.onEffectError?.(run.effectTxids[i], err);
      });
      for (const rec of run.records) options.applied?.(rec.txid);
    } catch (err) {
      failure ??= new ApplyError(first, (err as Error).message);
    }
  }
  if (failure !== null) throw failure;
}

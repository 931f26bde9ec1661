/**
 * Replays journal records into a Redis: each record's effects in one MULTI/EXEC (optionally with a marker key
 * holding its txid, in the same transaction). Used by replicas and by the master's rebuild.
 */
import type { Redis } from "ioredis";
import { decodeEffects, type RecordView } from "../segment/record.js";

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
 * Sends every record's transaction back to back on one connection and awaits them in order. Calls `applied(txid)`
 * for each record whose EXEC ran; throws ApplyError at the first that did not (those after it may have run:
 * the caller re-reads its marker). `onEffectError` hears of an effect Redis refused inside an EXEC that ran.
 */
export async function applyRecords(
  client: Redis,
  records: RecordView[],
  options: { markerKey?: string; applied?: (txid: number) => void; onEffectError?: (txid: number, err: Error) => void } = {},
): Promise<void> {
  const execs = records.map((rec) => {
    const tx = client.multi();
    for (const effect of decodeEffects(rec.payload)) {
      tx.callBuffer(Buffer.from(effect[0]).toString("latin1"), ...effect.slice(1).map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
    }
    if (options.markerKey !== undefined) tx.set(options.markerKey, String(rec.txid));
    return tx.exec();
  });
  let failure: ApplyError | null = null;
  for (let i = 0; i < records.length; i++) {
    const txid = records[i].txid;
    try {
      const results = await execs[i];
      if (failure !== null) continue;
      if (results === null) {
        failure = new ApplyError(txid, "transaction aborted");
        continue;
      }
      for (const [err] of results) if (err !== null) options.onEffectError?.(txid, err);
      options.applied?.(txid);
    } catch (err) {
      failure ??= new ApplyError(txid, (err as Error).message);
    }
  }
  if (failure !== null) throw failure;
}

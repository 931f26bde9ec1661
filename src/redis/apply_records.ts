/**
 * Replays journal records into a Redis through its feeder (src/redis/feeder.ts): the effects of a run of records in
 * one MULTI block on the replication stream, ending with a marker key that holds the run's last txid (optional), so
 * Redis keeps all of the run or none of it, with the marker to match. The Redis is the feeder's replica: it never
 * expires a key by its own clock, so a late replay leaves what the live one left. Used by replicas and by the
 * master's rebuild.
 */
import type { Redis } from "ioredis";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { decodeRecordPayload, type RecordView, type RecordWrite } from "../segment/record.js";
import type { Feeder } from "./feeder.js";
import { infoNumber, readInfo } from "./redis_info.js";

/** The key that holds the last applied txid, written in the same transaction as that record's effects. */
export const APPLIED_KEY = "__qjm:applied";

export class ApplyError extends QjmError {
  override name = "ApplyError";
  constructor(
    readonly txid: number,
    /** An effect failed: the copy differs from the journal and must stop (not retried). */
    readonly effectFailed: boolean,
    message: string,
    options?: ErrorOptions,
  ) {
    super(ErrorCode.INTERNAL, `record ${txid}: ${message}`, options);
  }
}

/** Errors a Redis raised on commands from its master (Redis 7.0: stat_unexpected_error_replies; each is in its log). */
export async function unexpectedErrorReplies(client: Redis): Promise<number> {
  return infoNumber(await readInfo(client, "stats"), "unexpected_error_replies");
}

/**
 * Sends the records run by run and waits for each run's ACK. Calls `applied(txid, write)` for each record of a run
 * that ran, in txid order, with the write id (and reply) a v2 record carries, else null: what a data node's dedupe
 * window observes. Throws ApplyError at the first run that did not run, or (effectFailed) ran with an effect Redis
 * refused. A payload that does not decode throws its BAD_RECORD QjmError before anything of its run is sent.
 */
export async function applyRecords(
  feeder: Feeder,
  client: Redis,
  records: RecordView[],
  options: { markerKey?: string; recordsPerTransaction?: number; applied?: (txid: number, write: RecordWrite | null) => void } = {},
): Promise<void> {
  const perTransaction = Math.max(1, options.recordsPerTransaction ?? 1024);
  let errorsBefore = await unexpectedErrorReplies(client);
  for (let i = 0; i < records.length; i += perTransaction) {
    const run = records.slice(i, i + perTransaction);
    const first = run[0].txid;
    const last = run[run.length - 1].txid;
    const commands: (string | Uint8Array)[][] = [["MULTI"]];
    const writes: (RecordWrite | null)[] = [];
    for (const rec of run) {
      const payload = decodeRecordPayload(rec.payload);
      writes.push(payload.write);
      for (const effect of payload.effects) commands.push(effect);
    }
    if (options.markerKey !== undefined) commands.push(["SET", options.markerKey, String(last)]);
    commands.push(["EXEC"]);
    try {
      await feeder.sendRun(commands);
    } catch (err) {
      throw new ApplyError(first, false, (err as Error).message, { cause: err });
    }
    const errorsAfter = await unexpectedErrorReplies(client);
    if (errorsAfter !== errorsBefore) {
      throw new ApplyError(first, true, `Redis refused ${errorsAfter - errorsBefore} effect(s) of records ${first}..${last} (unexpected_error_replies; see its log)`);
    }
    errorsBefore = errorsAfter;
    run.forEach((rec, j) => options.applied?.(rec.txid, writes[j]));
  }
}

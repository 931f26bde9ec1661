/**
 * Replays journal records into a Redis through its feeder (src/redis/feeder.ts): the effects of a run of records in
 * one MULTI block on the replication stream, ending with a marker key that holds the run's last txid (optional, in
 * its own database), so Redis keeps all of the run or none of it, with the marker to match. The Redis is the feeder's
 * replica: it never expires a key by its own clock, so a late replay leaves what the live one left. Used by replicas
 * and by the master's rebuild.
 */
import type { Redis } from "ioredis";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { decodeRecordPayload, type RecordView, type RecordWrite } from "../segment/record.js";
import type { Feeder } from "./feeder.js";
import { infoNumber, readInfo } from "./redis_info.js";

/** The key that holds the last applied txid, written in the same transaction as that record's effects. */
export const APPLIED_KEY = "__qjm:applied";

/**
 * The database APPLIED_KEY lives in. Not 0, the keyspace every door serves (and the only one it lets a client SELECT;
 * its INFO shows no other), so a replica's door answers DBSIZE, KEYS, SCAN, RANDOMKEY and INFO keyspace as the
 * master's does. Redis keeps every database in its AOF and RDB, so a restart and a snapshot keep the marker. Before,
 * it was in database 0: `readAppliedMarker` still reads it there when this one holds none (an older data directory or
 * snapshot), and the next marker written deletes that one (`AppliedMarker.legacy`).
 */
export const APPLIED_DB = 1;

/** The marker a Redis holds: its txid (0 when none), and whether it is the older one in database 0. */
export interface AppliedMarker {
  txid: number;
  /** No marker in APPLIED_DB, one in database 0: the next marker written deletes the one in database 0. */
  legacy: boolean;
}

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
 * Redis's unexpected_error_replies after a run that ends at replication offset `end`, from an INFO (stats and
 * replication) sent as soon as the run was written, so possibly answered before the run ran: it counts only if its
 * slave_repl_offset, what Redis processed from its master, is past `end` — then the run's EXEC ran before the INFO, and
 * any effect it refused is in the count (both fields are read in one INFO, at one instant). Null: read it again once
 * the run's ACK came. Saves a round trip per run in the common case (issue #13, P4).
 */
export function errorsPastRun(info: Map<string, string>, end: number): number | null {
  return infoNumber(info, "slave_repl_offset") >= end ? infoNumber(info, "unexpected_error_replies") : null;
}

/**
 * Reads the marker in one MULTI block (so the connection, which others share, is on database 0 before and after):
 * APPLIED_DB's, else the older one in database 0, which only counts when APPLIED_DB holds none (afterwards a key of
 * that name in database 0 is a client's).
 */
export async function readAppliedMarker(client: Redis): Promise<AppliedMarker> {
  const results = await client.multi().get(APPLIED_KEY).select(APPLIED_DB).get(APPLIED_KEY).select(0).exec();
  if (results === null) throw new QjmError(ErrorCode.INTERNAL, "reading the applied marker: transaction aborted");
  const failed = results.find(([err]) => err !== null);
  if (failed !== undefined) throw new QjmError(ErrorCode.INTERNAL, `reading the applied marker: ${failed[0]!.message}`);
  const [old, current] = [results[0][1], results[2][1]] as (string | null)[];
  if (current !== null) return { txid: markerTxid(current), legacy: false };
  return { txid: old === null ? 0 : markerTxid(old), legacy: old !== null };
}

function markerTxid(value: string): number {
  const txid = Number(value);
  if (!Number.isSafeInteger(txid) || txid < 0) throw new QjmError(ErrorCode.INTERNAL, `the applied marker holds ${JSON.stringify(value.slice(0, 40))}, not a txid`);
  return txid;
}

/** The commands that set the marker to `txid` inside a run's MULTI block; the stream is back on database 0 after. */
function setMarker(txid: number): string[][] {
  return [["SELECT", String(APPLIED_DB)], ["SET", APPLIED_KEY, String(txid)], ["SELECT", "0"]];
}

/**
 * Deletes the marker (a master's Redis has none: it means nothing there), and the older one in database 0 only if it
 * is the marker (`readAppliedMarker`), in one MULTI block. The caller is the Redis's only writer meanwhile.
 */
export async function dropAppliedMarker(feeder: Feeder, client: Redis): Promise<void> {
  const { legacy } = await readAppliedMarker(client);
  const dropOld = legacy ? [["DEL", APPLIED_KEY]] : [];
  await feeder.sendRun([["MULTI"], ...dropOld, ["SELECT", String(APPLIED_DB)], ["DEL", APPLIED_KEY], ["SELECT", "0"], ["EXEC"]]);
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
  options: {
    /** Write the marker with each run; `legacy` (from readAppliedMarker) is cleared once the first run deleted the old one. */
    marker?: { legacy: boolean };
    recordsPerTransaction?: number;
    applied?: (txid: number, write: RecordWrite | null) => void;
    /**
     * Redis's unexpected_error_replies after the caller's last run (null: unknown, read first), kept here between
     * calls: a replica that applies after every commit saves a Redis round trip per call. The caller sets it to null
     * whenever the count may have moved without a run of its own (its Redis restarted, a run failed, a resync).
     */
    errors?: { count: number | null };
  } = {},
): Promise<void> {
  const perTransaction = Math.max(1, options.recordsPerTransaction ?? 1024);
  const errors = options.errors ?? { count: null };
  // Unknown until read again if this call throws before it is done.
  let errorsBefore = errors.count ?? (await unexpectedErrorReplies(client));
  errors.count = null;
  for (let i = 0; i < records.length; i += perTransaction) {
    const run = records.slice(i, i + perTransaction);
    const first = run[0].txid;
    const last = run[run.length - 1].txid;
    const marker = options.marker;
    // Before the effects: a client's own write of a key by that name in this run must stay.
    const dropOld = marker?.legacy === true ? [["DEL", APPLIED_KEY]] : [];
    const commands: (string | Uint8Array)[][] = [["MULTI"], ...dropOld];
    const writes: (RecordWrite | null)[] = [];
    for (const rec of run) {
      const payload = decodeRecordPayload(rec.payload);
      writes.push(payload.write);
      for (const effect of payload.effects) commands.push(effect);
    }
    if (marker !== undefined) commands.push(...setMarker(last));
    commands.push(["EXEC"]);
    // The INFO goes out once the run is written, beside its ACK; read only if the run went through.
    const probe: { info: Promise<Map<string, string>> | null; end: number } = { info: null, end: 0 };
    const sent = (end: number): void => {
      probe.end = end;
      probe.info = readInfo(client, "stats", "replication");
      probe.info.catch(() => undefined);
    };
    try {
      await feeder.sendRun(commands, sent);
    } catch (err) {
      throw new ApplyError(first, false, (err as Error).message, { cause: err });
    }
    if (marker !== undefined) marker.legacy = false;
    // An early INFO that failed (a Redis busy in a script answers -BUSY; a reconnect) is read again after the ACK too.
    const early = probe.info === null ? null : await probe.info.then((i) => errorsPastRun(i, probe.end), () => null);
    const errorsAfter = early ?? (await unexpectedErrorReplies(client));
    if (errorsAfter !== errorsBefore) {
      throw new ApplyError(first, true, `Redis refused ${errorsAfter - errorsBefore} effect(s) of records ${first}..${last} (unexpected_error_replies; see its log)`);
    }
    errorsBefore = errorsAfter;
    run.forEach((rec, j) => options.applied?.(rec.txid, writes[j]));
  }
  errors.count = errorsBefore;
}

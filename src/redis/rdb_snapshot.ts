/**
 * An RDB snapshot of a redis-server we run, taken with BGSAVE at a known position.
 *
 * The position is the value of a marker (a replica's applied txid, `marker` reads it): the caller pauses its own writes to this
 * Redis, calls `startSnapshot`, and resumes its writes once it resolves. It resolves only after Redis forked the
 * saving child, so the marker value it returns is the one inside the RDB, whatever is written afterwards:
 *
 *   const started = await startSnapshot(client, { dir, path, marker, pollMs, forkTimeoutMs, saveTimeoutMs });
 *   resumeWrites();                                   // the child has its copy of the data set
 *   const { path, bytes, markerValue } = await started.done;
 *
 * `takeSnapshot` does both steps for a caller that keeps its writes paused throughout.
 *
 * BGSAVE SCHEDULE is used: while an AOF rewrite runs (a replica's Redis rewrites its AOF after a full sync, or when
 * the AOF grows) Redis answers "Background saving scheduled" and forks later from its cron; the fork is then seen as
 * INFO's rdb_saves counter passing its value from before the command. "Background save already in progress" (an
 * earlier save, e.g. one whose caller gave up) is waited out and BGSAVE is tried again, within `forkTimeoutMs`.
 *
 * Assumes nothing else makes this Redis save an RDB meanwhile (our Redis run with `save ""` and, for replicas, no
 * replicas of their own): another save could be taken for ours, and would overwrite the dump file before it is moved.
 *
 * The file Redis wrote (`dir`/<dbfilename>) is moved to `path` (renamed, or copied across file systems) and fsynced
 * with its directory, because Redis writes the same name again on its next save or full sync.
 */
import fs from "node:fs";
import path from "node:path";
import type { Redis } from "ioredis";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { assert } from "../util/assert.js";
import { configGet, infoNumber, pollInfo, readInfo } from "./redis_info.js";

export interface SnapshotOptions {
  /** The Redis's working directory (its `dir`), where BGSAVE writes its dbfilename. */
  dir: string;
  /** Where the snapshot file ends up; it must not be Redis's own dump file. An existing file there is replaced. */
  path: string;
  /** Reads the value that names the snapshot's position (e.g. the replica's applied txid); null: none. */
  marker: () => Promise<string | null>;
  /** Pause between INFO reads while waiting for the fork and for the save. */
  pollMs: number;
  /** Bound on reaching the fork: a scheduled BGSAVE behind an AOF rewrite, or another save that must end first. */
  forkTimeoutMs: number;
  /** Bound on the child writing the file, counted from the fork. */
  saveTimeoutMs: number;
}

export interface SnapshotFile {
  path: string;
  bytes: number;
  /** The marker's value inside the RDB; null if there was none. */
  markerValue: string | null;
}

export interface SnapshotStarted {
  /** The marker's value inside the RDB (read after the fork, while the caller's writes are still paused). */
  markerValue: string | null;
  /** Redis deferred the fork (an AOF rewrite or another child ran) and it happened later, from its cron. */
  scheduled: boolean;
  /** The file, once the child wrote it and it was moved to `path`; rejects with an RdbSnapshotError. */
  done: Promise<SnapshotFile>;
}

export type RdbSnapshotErrorReason =
  /** Redis answered BGSAVE, INFO or CONFIG with an error, or the connection failed. */
  | "redis"
  /** The fork failed or the child failed to write the file (rdb_last_bgsave_status:err); see the Redis log. */
  | "save_failed"
  /** The fork or the save did not happen within its bound. */
  | "timeout"
  /** Moving or syncing the file failed. */
  | "file";

export class RdbSnapshotError extends QjmError {
  override name = "RdbSnapshotError";
  constructor(
    readonly reason: RdbSnapshotErrorReason,
    message: string,
    options?: ErrorOptions,
  ) {
    super(reason === "timeout" ? ErrorCode.TIMEOUT : ErrorCode.INTERNAL, `RDB snapshot: ${message}`, options);
  }
}

const STARTED = "Background saving started";
const SCHEDULED = "Background saving scheduled";
const ALREADY_SAVING = "Background save already in progress";
const PERSISTENCE = ["persistence"];

/** Takes a snapshot and waits for its file; the caller's writes stay paused until the fork (or throughout). */
export async function takeSnapshot(client: Redis, options: SnapshotOptions): Promise<SnapshotFile> {
  return await (await startSnapshot(client, options)).done;
}

/** Starts a BGSAVE and resolves once Redis forked: the caller's writes may resume. See the file's comment. */
export async function startSnapshot(client: Redis, options: SnapshotOptions): Promise<SnapshotStarted> {
  assert(options.pollMs > 0 && options.forkTimeoutMs > 0 && options.saveTimeoutMs > 0, "snapshot bounds must be positive");
  const dumpFile = path.resolve(options.dir, await redisCall(() => configGet(client, "dbfilename"), "CONFIG GET dbfilename") ?? "dump.rdb");
  assert(dumpFile !== path.resolve(options.path), "the snapshot path must not be Redis's own dump file, which the next save overwrites");

  const markerBefore = await redisCall(options.marker, "reading the marker");
  const scheduled = await forkSave(client, options);
  const markerValue = await redisCall(options.marker, "reading the marker");
  // The caller's writes are paused: a marker that moved while Redis was getting to the fork would make the returned
  // value a guess (it may or may not be the RDB's).
  assert(markerValue === markerBefore, `the marker changed during the snapshot (${markerBefore} → ${markerValue}): writes were not paused`);
  const done = finishSave(client, options, dumpFile, markerValue);
  // A caller may drop `done` when it fails between the fork and its await: never an unhandled rejection.
  done.catch(() => {});
  return { markerValue, scheduled, done };
}

/** Issues BGSAVE SCHEDULE until Redis forked for it (retrying after another save), within forkTimeoutMs; true if deferred. */
async function forkSave(client: Redis, options: SnapshotOptions): Promise<boolean> {
  const deadline = Date.now() + options.forkTimeoutMs;
  const remaining = () => Math.max(0, deadline - Date.now());
  for (;;) {
    const savesBefore = infoNumber(await redisCall(() => readInfo(client, "persistence"), "INFO persistence"), "rdb_saves");
    if (!Number.isFinite(savesBefore)) throw new RdbSnapshotError("redis", "INFO persistence has no rdb_saves (Redis 7 or later is needed)");
    let reply: string;
    try {
      reply = String(await client.call("BGSAVE", "SCHEDULE"));
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes(ALREADY_SAVING)) throw new RdbSnapshotError("redis", `BGSAVE: ${describe(err)}`, { cause: err });
      // An earlier save still runs: it holds older data, so wait for it to end and ask again.
      const ended = await waitInfo(client, options.pollMs, remaining(), (info) => (info.get("rdb_bgsave_in_progress") === "0" ? true : undefined));
      if (ended === undefined) throw new RdbSnapshotError("timeout", `an earlier background save still runs after ${options.forkTimeoutMs} ms`);
      continue;
    }
    if (reply === STARTED) return false;
    if (reply !== SCHEDULED) throw new RdbSnapshotError("redis", `unexpected BGSAVE reply: ${reply}`);
    // An AOF rewrite (or another child) runs; Redis forks for the save from its cron once that ends.
    const forked = await waitInfo(client, options.pollMs, remaining(), (info) => (infoNumber(info, "rdb_saves") > savesBefore ? info : undefined));
    if (forked === undefined) throw new RdbSnapshotError("timeout", `the scheduled background save did not start within ${options.forkTimeoutMs} ms`);
    // rdb_saves counts attempts: a failed fork leaves no child and an error status.
    if (forked.get("rdb_bgsave_in_progress") === "0" && forked.get("rdb_last_bgsave_status") !== "ok") {
      throw new RdbSnapshotError("save_failed", "the scheduled background save failed (rdb_last_bgsave_status:err); see the Redis log");
    }
    return true;
  }
}

/** Waits for the child to end, checks its status, and moves the file to `options.path`. */
async function finishSave(client: Redis, options: SnapshotOptions, dumpFile: string, markerValue: string | null): Promise<SnapshotFile> {
  const ended = await waitInfo(client, options.pollMs, options.saveTimeoutMs, (info) => (info.get("rdb_bgsave_in_progress") === "0" ? info : undefined));
  if (ended === undefined) throw new RdbSnapshotError("timeout", `the background save did not finish within ${options.saveTimeoutMs} ms`);
  const status = ended.get("rdb_last_bgsave_status");
  if (status !== "ok") throw new RdbSnapshotError("save_failed", `the background save failed (rdb_last_bgsave_status:${status}); see the Redis log`);
  try {
    await moveFile(dumpFile, options.path);
    const bytes = (await fs.promises.stat(options.path)).size;
    return { path: options.path, bytes, markerValue };
  } catch (err) {
    throw new RdbSnapshotError("file", `moving ${dumpFile} to ${options.path}: ${describe(err)}`, { cause: err });
  }
}

/** Renames `from` to `to` (copy and unlink across file systems), then fsyncs the file and its directory. */
async function moveFile(from: string, to: string): Promise<void> {
  await fs.promises.mkdir(path.dirname(to), { recursive: true });
  try {
    await fs.promises.rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    await fs.promises.copyFile(from, to);
    await fs.promises.unlink(from);
  }
  await fsyncPath(to);
  await fsyncPath(path.dirname(to));
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await fs.promises.open(p, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function waitInfo<T>(client: Redis, pollMs: number, timeoutMs: number, check: (info: Map<string, string>) => T | undefined): Promise<T | undefined> {
  return await redisCall(() => pollInfo(client, PERSISTENCE, { pollMs, timeoutMs }, check), "INFO persistence");
}

/** Runs a Redis call; a failure (connection, error reply) becomes an RdbSnapshotError naming `what`. */
async function redisCall<T>(call: () => Promise<T>, what: string): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof RdbSnapshotError) throw err;
    throw new RdbSnapshotError("redis", `${what}: ${describe(err)}`, { cause: err });
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

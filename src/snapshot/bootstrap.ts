/**
 * Bootstrap (HDFS: a standby loading the newest fsimage, then tailing edits): download the newest durable snapshot
 * from a journal node, checked by SHA-256 (another node's copy if one is bad), load it into a running Redis through
 * its feeder (a full resync: the Redis stays the feeder's replica, so no key in the snapshot expires by its clock), and
 * report where the journal must be tailed from. Progress — bytes, rate, ETA —
 * goes to the log and to the caller (shown by `redis-qjm status`).
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import type { Redis } from "ioredis";
import type { Config } from "../config/config.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import type { Feeder } from "../redis/feeder.js";
import type { Logger } from "../util/log.js";
import type { SnapshotClient } from "./snapshot_client.js";
import { transferProgress, type TransferProgress } from "../util/progress.js";

export interface BootstrapProgress extends TransferProgress {
  phase: "download" | "load" | "done";
  snapshotTxid: number;
}

export interface Bootstrapped {
  txid: number;
  bytes: number;
  node: string;
  /** Whole bootstrap: download, load into Redis (its AOF rewritten), of which the download. */
  ms: number;
  downloadMs: number;
}

/** Loads the newest durable snapshot into `client`'s Redis, the feeder's replica (its data set replaced). Null if there is none. */
export async function bootstrapFromSnapshot(
  snapshots: SnapshotClient,
  feeder: Feeder,
  client: Redis,
  file: string,
  _config: Pick<Config, "snapshotTimeoutMs" | "journalRequestTimeoutMs">,
  log: Logger,
  onProgress: (p: BootstrapProgress) => void,
): Promise<Bootstrapped | null> {
  const started = Date.now();
  let lastLogMs = 0;
  let snapshotTxid = 0;
  const report = (p: BootstrapProgress): void => {
    onProgress(p);
    if (Date.now() - lastLogMs >= 1000 || p.phase === "done") {
      lastLogMs = Date.now();
      log.info({ ...p }, `bootstrap: ${p.phase}`);
    }
  };
  try {
    const got = await snapshots.download(file, (p) => report({ phase: "download", snapshotTxid, ...p }));
    if (got === null) return null;
    snapshotTxid = got.txid;
    const downloadMs = Date.now() - started;
    feeder.setPlan({
      kind: "full",
      bytes: got.bytes,
      open: () => fs.createReadStream(file, { highWaterMark: 256 * 1024 }),
      onProgress: ({ phase: _phase, ...p }) => report({ phase: "load", snapshotTxid, ...p }),
    });
    try {
      await feeder.sync(client);
    } finally {
      // A failed load leaves the Redis its data: the next link continues it.
      feeder.setPlan({ kind: "continue" });
    }
    const ms = Date.now() - started;
    report({ phase: "done", snapshotTxid, ...transferProgress(got.bytes, got.bytes, ms) });
    return { txid: got.txid, bytes: got.bytes, node: got.node, ms, downloadMs };
  } catch (err) {
    if (err instanceof QjmError) throw err;
    throw new QjmError(ErrorCode.INTERNAL, `bootstrap from snapshot ${snapshotTxid}: ${(err as Error).message}`);
  } finally {
    await fsp.rm(file, { force: true });
  }
}

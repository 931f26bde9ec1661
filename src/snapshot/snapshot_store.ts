/**
 * A journal node's snapshots, under `<dir>/snapshots/` (HDFS keeps fsimage files beside the edits the same way):
 *
 *   snapshot_<txid>.rdb         the RDB bytes of a Redis holding every record up to txid
 *   snapshot_<txid>.json        {txid, bytes, sha256}: written last, so a snapshot without it is incomplete
 *   snapshot_<txid>.rdb.tmp     an upload in progress (dropped on open)
 *
 * Uploads arrive in chunks at increasing offsets, hashed on the way; the end checks size and SHA-256, fsyncs the
 * file, renames it, then writes the descriptor durably. A snapshot is deleted descriptor first, so a crash never
 * leaves a descriptor naming a partial file. Requests run one at a time, apart from the editlog's queue.
 *
 * As the segment store, written once as programs of primitive disk calls (SnapshotLog, journal/disk.ts): SnapshotStore
 * runs them over node:fs, tests over the simulated disk with a crash between any two calls.
 */
import { createHash, type Hash } from "node:crypto";
import path from "node:path";
import { create, fsync, fsyncDir, list, read, readFile, remove, rename, runAsync, size, write, writeDurably, type DiskProgram } from "../journal/disk.js";
import { DiskFaults } from "../journal/disk_faults.js";
import { FsDisk } from "../journal/fs_disk.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import type { SnapshotInfo } from "../protocol/messages.js";

const TXID_DIGITS = 19;
const DESCRIPTOR = /^snapshot_(\d+)\.json$/;
const DATA = /^snapshot_(\d+)\.rdb$/;

export function snapshotFileName(txid: number): string {
  return `snapshot_${String(txid).padStart(TXID_DIGITS, "0")}.rdb`;
}

export function descriptorName(txid: number): string {
  return `snapshot_${String(txid).padStart(TXID_DIGITS, "0")}.json`;
}

/** What a file name in the snapshots directory is: the RDB or the descriptor of the snapshot at txid; null if neither. */
export function parseSnapshotName(fileName: string): { txid: number; part: "data" | "descriptor" } | null {
  const data = DATA.exec(fileName);
  if (data !== null) return { txid: Number(data[1]), part: "data" };
  const descriptor = DESCRIPTOR.exec(fileName);
  return descriptor === null ? null : { txid: Number(descriptor[1]), part: "descriptor" };
}

interface Upload {
  info: SnapshotInfo;
  offset: number;
  hash: Hash;
  lastChunkMs: number;
}

export interface SnapshotLimits {
  snapshotUploadsMax: number;
  snapshotUploadIdleMs: number;
  snapshotChunkBytes: number;
  snapshotBytesMax: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function tmpName(txid: number): string {
  return snapshotFileName(txid) + ".tmp";
}

/** The snapshots' logic: what is held, the uploads under way, and the programs that change the files. */
export class SnapshotLog {
  readonly held = new Map<number, SnapshotInfo>();
  private readonly uploads = new Map<number, Upload>();

  constructor(private readonly limits: SnapshotLimits) {}

  /** Keeps complete snapshots (descriptor and file of the size it names); drops everything else. */
  *open(): DiskProgram<void> {
    const names = yield* list();
    for (const name of names) {
      const m = DESCRIPTOR.exec(name);
      if (m === null) continue;
      const info = parseDescriptor(yield* readFile(name));
      const bytes = yield* size(snapshotFileName(Number(m[1])));
      if (info !== null && info.txid === Number(m[1]) && bytes !== null && bytes === info.bytes) {
        this.held.set(info.txid, info);
      } else {
        yield* remove(name);
      }
    }
    for (const name of names) {
      const data = DATA.exec(name);
      if (name.endsWith(".tmp") || (data !== null && !this.held.has(Number(data[1])))) yield* remove(name);
    }
    yield* fsyncDir();
  }

  list(): SnapshotInfo[] {
    return [...this.held.values()].sort((a, b) => a.txid - b.txid);
  }

  *begin(info: SnapshotInfo, nowMs: number): DiskProgram<{ stored: boolean }> {
    // Another replica's snapshot at the same txid: other bytes, the same data set. One copy is enough.
    if (this.held.has(info.txid)) return { stored: true };
    // The announced size is what the disk must take: bounded, whoever announces it.
    if (info.bytes > this.limits.snapshotBytesMax) throw new QjmError(ErrorCode.BAD_REQUEST, `snapshot of ${info.bytes} bytes: at most ${this.limits.snapshotBytesMax}`);
    yield* this.expireIdle(nowMs);
    const running = this.uploads.get(info.txid);
    // Another replica's copy of this snapshot on its way (other bytes, the same data set): it keeps its upload, and
    // this one waits for it (SnapshotClient) — once stored, a begin answers stored. Chunks name only the txid and the
    // offset: restarted for the newcomer, the first uploader's chunks went into the second's file, and replicas that
    // snapshotted at the same txid (fed the same batch fan-out, they do) refused each other on every node: "stored on
    // 0 of 3" try after try (issue #13 P6). The same copy begun again (a retry of its own upload) restarts it.
    if (running !== undefined && (running.info.sha256 !== info.sha256 || running.info.bytes !== info.bytes)) {
      throw new QjmError(ErrorCode.SNAPSHOT_UNDER_WAY, `another copy of snapshot ${info.txid} is being uploaded here (${running.offset} of ${running.info.bytes} bytes)`);
    }
    if (running !== undefined) yield* this.abort(running);
    // A newer snapshot supersedes an older upload that has not sent a chunk yet (the oldest first): a node back from a
    // SIGSTOP took its backlog of stale begins, whose uploaders had given up, and the first held the only slot for
    // snapshotUploadIdleMs, refusing the durable snapshot the writer's catch-up copies — so it never purged (issue #13
    // P6). An upload under way keeps its slot; a superseded uploader's first chunk is refused.
    const older = [...this.uploads.values()].filter((u) => u.info.txid < info.txid && u.offset === 0).sort((a, b) => a.info.txid - b.info.txid);
    while (this.uploads.size >= this.limits.snapshotUploadsMax && older.length > 0) yield* this.abort(older.shift()!);
    if (this.uploads.size >= this.limits.snapshotUploadsMax) {
      throw new QjmError(ErrorCode.OVERLOADED, `${this.uploads.size} snapshot uploads already run here`);
    }
    yield* create(tmpName(info.txid));
    this.uploads.set(info.txid, { info, offset: 0, hash: createHash("sha256"), lastChunkMs: nowMs });
    return { stored: false };
  }

  *chunk(txid: number, offset: number, data: Uint8Array, nowMs: number): DiskProgram<{ stored: boolean }> {
    const upload = this.upload(txid);
    if (offset !== upload.offset) throw new QjmError(ErrorCode.OUT_OF_SYNC, `snapshot ${txid}: chunk at ${offset}, expected ${upload.offset}`);
    if (data.length > this.limits.snapshotChunkBytes) throw new QjmError(ErrorCode.BAD_REQUEST, `snapshot chunk of ${data.length} bytes`);
    if (offset + data.length > upload.info.bytes) {
      yield* this.abort(upload);
      throw new QjmError(ErrorCode.SNAPSHOT_CORRUPT, `snapshot ${txid}: chunk past the announced ${upload.info.bytes} bytes`);
    }
    yield* write(tmpName(txid), offset, data);
    upload.hash.update(data);
    upload.offset += data.length;
    upload.lastChunkMs = nowMs;
    return { stored: false };
  }

  *end(txid: number): DiskProgram<{ stored: boolean }> {
    const upload = this.upload(txid);
    const digest = upload.hash.digest("hex");
    if (upload.offset !== upload.info.bytes || digest !== upload.info.sha256) {
      yield* this.abort(upload);
      throw new QjmError(ErrorCode.SNAPSHOT_CORRUPT, `snapshot ${txid}: received ${upload.offset} of ${upload.info.bytes} bytes, SHA-256 ${digest.slice(0, 12)}… not ${upload.info.sha256.slice(0, 12)}…`);
    }
    this.uploads.delete(txid);
    yield* fsync(tmpName(txid));
    yield* rename(tmpName(txid), snapshotFileName(txid));
    yield* writeDurably(descriptorName(txid), encoder.encode(JSON.stringify(upload.info)));
    this.held.set(txid, upload.info);
    return { stored: true };
  }

  /** Bytes of a held snapshot as they are on disk: the reader checks the SHA-256 over the whole. */
  *read(txid: number, offset: number, length: number): DiskProgram<Uint8Array> {
    const info = this.held.get(txid);
    if (info === undefined) throw new QjmError(ErrorCode.NOT_FOUND, `no snapshot ${txid} here`);
    if (offset > info.bytes) throw new QjmError(ErrorCode.BAD_REQUEST, `offset ${offset} beyond snapshot ${txid}'s ${info.bytes} bytes`);
    return yield* read(snapshotFileName(txid), offset, Math.min(length, this.limits.snapshotChunkBytes, info.bytes - offset));
  }

  *delete(txid: number): DiskProgram<void> {
    if (!this.held.delete(txid)) return;
    yield* remove(descriptorName(txid));
    yield* remove(snapshotFileName(txid));
    yield* fsyncDir();
  }

  private upload(txid: number): Upload {
    const upload = this.uploads.get(txid);
    if (upload === undefined) throw new QjmError(ErrorCode.OUT_OF_SYNC, `no upload of snapshot ${txid} runs here`);
    return upload;
  }

  private *abort(upload: Upload): DiskProgram<void> {
    this.uploads.delete(upload.info.txid);
    yield* remove(tmpName(upload.info.txid));
  }

  /** An uploader that went silent must not hold an upload slot and a temporary file forever. */
  *expireIdle(nowMs: number): DiskProgram<void> {
    for (const upload of [...this.uploads.values()]) if (nowMs - upload.lastChunkMs > this.limits.snapshotUploadIdleMs) yield* this.abort(upload);
  }

  *close(): DiskProgram<void> {
    for (const upload of [...this.uploads.values()]) yield* this.abort(upload);
  }
}

/** A descriptor's content, or null when it is not one (unreadable, torn, malformed). */
function parseDescriptor(bytes: Uint8Array | null): SnapshotInfo | null {
  if (bytes === null) return null;
  try {
    const info = JSON.parse(decoder.decode(bytes)) as SnapshotInfo;
    if (!Number.isSafeInteger(info.txid) || !Number.isSafeInteger(info.bytes) || !/^[0-9a-f]{64}$/.test(info.sha256)) return null;
    return { txid: info.txid, bytes: info.bytes, sha256: info.sha256 };
  } catch {
    return null;
  }
}

/** The snapshots directory on a real filesystem: SnapshotLog driven over node:fs. */
export class SnapshotStore {
  readonly dir: string;
  private readonly disk: FsDisk;
  private readonly log: SnapshotLog;

  constructor(root: string, limits: SnapshotLimits) {
    this.dir = path.join(path.resolve(root), "snapshots");
    this.disk = new FsDisk(this.dir, new DiskFaults());
    this.log = new SnapshotLog(limits);
  }

  async open(): Promise<void> {
    await runAsync(this.log.open(), this.disk);
  }

  list(): SnapshotInfo[] {
    return this.log.list();
  }

  async begin(info: SnapshotInfo, nowMs: number): Promise<{ stored: boolean }> {
    return await runAsync(this.log.begin(info, nowMs), this.disk);
  }

  async chunk(txid: number, offset: number, data: Uint8Array, nowMs: number): Promise<{ stored: boolean }> {
    return await runAsync(this.log.chunk(txid, offset, data, nowMs), this.disk);
  }

  async end(txid: number): Promise<{ stored: boolean }> {
    return await runAsync(this.log.end(txid), this.disk);
  }

  async read(txid: number, offset: number, length: number): Promise<Uint8Array> {
    return await runAsync(this.log.read(txid, offset, length), this.disk);
  }

  async delete(txid: number): Promise<void> {
    await runAsync(this.log.delete(txid), this.disk);
  }

  async expireIdle(nowMs: number): Promise<void> {
    await runAsync(this.log.expireIdle(nowMs), this.disk);
  }

  async close(): Promise<void> {
    await runAsync(this.log.close(), this.disk);
    await this.disk.closeAll();
  }
}

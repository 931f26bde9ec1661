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
 */
import { createHash, type Hash } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import type { SnapshotInfo } from "../protocol/messages.js";
import { fsyncDir, writeFileDurably } from "../util/durable_file.js";

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
  handle: fsp.FileHandle;
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

export class SnapshotStore {
  readonly dir: string;
  private readonly held = new Map<number, SnapshotInfo>();
  private readonly uploads = new Map<number, Upload>();

  constructor(
    root: string,
    private readonly limits: SnapshotLimits,
  ) {
    this.dir = path.join(path.resolve(root), "snapshots");
  }

  /** Keeps complete snapshots (descriptor and file of the size it names); drops everything else. */
  async open(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
    const names = await fsp.readdir(this.dir);
    for (const name of names) {
      const m = DESCRIPTOR.exec(name);
      if (m === null) continue;
      const info = await fsp
        .readFile(path.join(this.dir, name), "utf8")
        .then((raw) => JSON.parse(raw) as SnapshotInfo)
        .catch(() => null);
      const stat = await fsp.stat(path.join(this.dir, snapshotFileName(Number(m[1])))).catch(() => null);
      if (info !== null && info.txid === Number(m[1]) && stat !== null && stat.size === info.bytes && /^[0-9a-f]{64}$/.test(info.sha256)) {
        this.held.set(info.txid, { txid: info.txid, bytes: info.bytes, sha256: info.sha256 });
      } else {
        await fsp.rm(path.join(this.dir, name), { force: true });
      }
    }
    for (const name of names) {
      const data = DATA.exec(name);
      if (name.endsWith(".tmp") || (data !== null && !this.held.has(Number(data[1])))) await fsp.rm(path.join(this.dir, name), { force: true });
    }
    await fsyncDir(this.dir);
  }

  list(): SnapshotInfo[] {
    return [...this.held.values()].sort((a, b) => a.txid - b.txid);
  }

  async begin(info: SnapshotInfo, nowMs: number): Promise<{ stored: boolean }> {
    // Another replica's snapshot at the same txid: other bytes, the same data set. One copy is enough.
    if (this.held.has(info.txid)) return { stored: true };
    // The announced size is what the disk must take: bounded, whoever announces it.
    if (info.bytes > this.limits.snapshotBytesMax) throw new QjmError(ErrorCode.BAD_REQUEST, `snapshot of ${info.bytes} bytes: at most ${this.limits.snapshotBytesMax}`);
    await this.expireIdle(nowMs);
    const running = this.uploads.get(info.txid);
    if (running !== undefined) await this.abort(running);
    if (this.uploads.size >= this.limits.snapshotUploadsMax) {
      throw new QjmError(ErrorCode.OVERLOADED, `${this.uploads.size} snapshot uploads already run here`);
    }
    const handle = await fsp.open(path.join(this.dir, snapshotFileName(info.txid) + ".tmp"), "w");
    this.uploads.set(info.txid, { info, handle, offset: 0, hash: createHash("sha256"), lastChunkMs: nowMs });
    return { stored: false };
  }

  async chunk(txid: number, offset: number, data: Uint8Array, nowMs: number): Promise<{ stored: boolean }> {
    const upload = this.upload(txid);
    if (offset !== upload.offset) throw new QjmError(ErrorCode.OUT_OF_SYNC, `snapshot ${txid}: chunk at ${offset}, expected ${upload.offset}`);
    if (data.length > this.limits.snapshotChunkBytes) throw new QjmError(ErrorCode.BAD_REQUEST, `snapshot chunk of ${data.length} bytes`);
    if (offset + data.length > upload.info.bytes) {
      await this.abort(upload);
      throw new QjmError(ErrorCode.SNAPSHOT_CORRUPT, `snapshot ${txid}: chunk past the announced ${upload.info.bytes} bytes`);
    }
    await upload.handle.write(data, 0, data.length, offset);
    upload.hash.update(data);
    upload.offset += data.length;
    upload.lastChunkMs = nowMs;
    return { stored: false };
  }

  async end(txid: number): Promise<{ stored: boolean }> {
    const upload = this.upload(txid);
    const digest = upload.hash.digest("hex");
    if (upload.offset !== upload.info.bytes || digest !== upload.info.sha256) {
      await this.abort(upload);
      throw new QjmError(ErrorCode.SNAPSHOT_CORRUPT, `snapshot ${txid}: received ${upload.offset} of ${upload.info.bytes} bytes, SHA-256 ${digest.slice(0, 12)}… not ${upload.info.sha256.slice(0, 12)}…`);
    }
    this.uploads.delete(txid);
    await upload.handle.sync();
    await upload.handle.close();
    await fsp.rename(path.join(this.dir, snapshotFileName(txid) + ".tmp"), path.join(this.dir, snapshotFileName(txid)));
    await writeFileDurably(this.dir, descriptorName(txid), JSON.stringify(upload.info));
    this.held.set(txid, upload.info);
    return { stored: true };
  }

  /** Bytes of a held snapshot as they are on disk: the reader checks the SHA-256 over the whole. */
  async read(txid: number, offset: number, length: number): Promise<Uint8Array> {
    const info = this.held.get(txid);
    if (info === undefined) throw new QjmError(ErrorCode.NOT_FOUND, `no snapshot ${txid} here`);
    if (offset > info.bytes) throw new QjmError(ErrorCode.BAD_REQUEST, `offset ${offset} beyond snapshot ${txid}'s ${info.bytes} bytes`);
    const buf = Buffer.allocUnsafe(Math.min(length, this.limits.snapshotChunkBytes, info.bytes - offset));
    const handle = await fsp.open(path.join(this.dir, snapshotFileName(txid)), "r");
    try {
      const { bytesRead } = await handle.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async delete(txid: number): Promise<void> {
    if (!this.held.delete(txid)) return;
    await fsp.rm(path.join(this.dir, descriptorName(txid)), { force: true });
    await fsp.rm(path.join(this.dir, snapshotFileName(txid)), { force: true });
    await fsyncDir(this.dir);
  }

  private upload(txid: number): Upload {
    const upload = this.uploads.get(txid);
    if (upload === undefined) throw new QjmError(ErrorCode.OUT_OF_SYNC, `no upload of snapshot ${txid} runs here`);
    return upload;
  }

  private async abort(upload: Upload): Promise<void> {
    this.uploads.delete(upload.info.txid);
    await upload.handle.close().catch(() => {});
    await fsp.rm(path.join(this.dir, snapshotFileName(upload.info.txid) + ".tmp"), { force: true });
  }

  /** An uploader that went silent must not hold an upload slot and a temporary file forever. */
  async expireIdle(nowMs: number): Promise<void> {
    for (const upload of [...this.uploads.values()]) if (nowMs - upload.lastChunkMs > this.limits.snapshotUploadIdleMs) await this.abort(upload);
  }

  async close(): Promise<void> {
    for (const upload of [...this.uploads.values()]) await this.abort(upload);
  }
}

/**
 * A journal node's simulated disk and the store over it. The store runs the JournalCore's DiskOps with the same
 * meaning as SegmentStore (each op durable before the next), loads through the same checks (scanSegmentFiles,
 * parseMeta, parseIdentity), and can be hit by the faults a real disk has: an op a crash interrupts (an append
 * lost or torn, any other op done or not), ENOSPC or EIO on a write (the op leaves nothing, as the real store
 * cuts a failed append off), and a flipped bit in a stored record, found only when it is read.
 */
import type { DiskOp, LoadedJournal } from "../journal/journal_core.js";
import { appendOffsets, finalizedName, identityAfterTailRot, inProgressName, planInstall, isSegmentFile, parseIdentity, parseMeta, scanSegmentFiles, type SegmentFile } from "../journal/segment_store.js";
import { scanRecords } from "../segment/record.js";
import { assert } from "../util/assert.js";
import type { Prng } from "./prng.js";

/** A file's bytes with room to grow (appends are amortized, not a copy of the whole file each). */
export class SimFile {
  private buf = new Uint8Array(256);
  length = 0;

  append(bytes: Uint8Array): void {
    if (this.length + bytes.length > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.buf.length * 2, this.length + bytes.length));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  truncate(length: number): void {
    assert(length <= this.length, "truncate beyond the end");
    this.length = length;
  }

  /** A view: valid until the next append. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  copy(start: number, end: number): Uint8Array {
    return this.buf.slice(start, end);
  }

  flipBit(offset: number, bit: number): void {
    assert(offset < this.length, "flip beyond the end");
    this.buf[offset] ^= 1 << bit;
  }
}

function syncTmpName(startTxid: number): string {
  return `edits_sync_${startTxid}.tmp`;
}

/** What survives a crash: the files, each as durable as the ops that completed on it. */
export class SimDisk {
  readonly files = new Map<string, SimFile>();
  readonly texts = new Map<string, string>();
  private asideSeq = 0;

  nextAsideName(name: string): string {
    return `${name}.stale-${++this.asideSeq}`;
  }
}

export type DiskErrno = "ENOSPC" | "EIO";

export class SimDiskError extends Error {
  override name = "SimDiskError";
}

interface SimSegment {
  startTxid: number;
  endTxid: number;
  inProgress: boolean;
  name: string;
  offsets: number[];
}

export class SimSegmentStore {
  private segments: SimSegment[] = [];

  constructor(
    readonly dir: string,
    private readonly disk: SimDisk,
  ) {}

  /** The real node's load path on the simulated files: validate, cut a torn tail, refuse a corrupt segment. */
  open(): LoadedJournal & { truncated: { file: string; bytes: number; rot: boolean } | null } {
    let fault: string | null = null;
    let meta = parseMeta(null);
    let identity = parseIdentity(null);
    try {
      meta = parseMeta(this.disk.texts.get("meta.json") ?? null);
    } catch (err) {
      fault = `${this.dir}/meta.json is unreadable: ${(err as Error).message}`;
    }
    try {
      identity = parseIdentity(this.disk.texts.get("identity.json") ?? null);
    } catch (err) {
      fault ??= `${this.dir}/identity.json is unreadable: ${(err as Error).message}`;
    }
    let truncated: { file: string; bytes: number; rot: boolean } | null = null;
    let newestPrints: LoadedJournal["newestPrints"];
    this.segments = [];
    // As the real store: staged recovery records and unfinished segment copies never outlive the process that made them.
    for (const name of [...this.disk.files.keys()]) if (name.startsWith("edits_recovery_") || name.startsWith("edits_sync_")) this.disk.files.delete(name);
    if (fault === null) {
      const names = [...this.disk.files.keys()].filter(isSegmentFile).sort();
      const files: SegmentFile[] = names.map((name) => ({ name, data: this.disk.files.get(name)!.view() }));
      const scan = scanSegmentFiles(this.dir, files);
      fault = scan.fault;
      newestPrints = scan.newestPrints ?? undefined;
      if (scan.truncate !== null && scan.truncate.rot && fault === null) {
        identity = identityAfterTailRot(identity);
        this.disk.texts.set("identity.json", JSON.stringify(identity));
      }
      if (scan.truncate !== null) {
        this.disk.files.get(scan.truncate.name)!.truncate(scan.truncate.validBytes);
        truncated = { file: scan.truncate.name, bytes: scan.truncate.bytes, rot: scan.truncate.rot };
      }
      this.segments = scan.segments.map((s) => ({ ...s, offsets: [...s.offsets] }));
    }
    return { meta, identity, segments: this.segments.map(({ startTxid, endTxid, inProgress }) => ({ startTxid, endTxid, inProgress })), fault, truncated, newestPrints };
  }

  /** Runs one op, durably; `errno` fails it as an injected write error would (leaving nothing of it). */
  apply(op: DiskOp, errno: DiskErrno | null = null): void {
    const failable = op.op === "persistMeta" || op.op === "persistIdentity" || op.op === "append" || op.op === "syncAppend" || op.op === "syncFinish";
    if (errno !== null && failable) throw new SimDiskError(`${errno}: injected write failure on ${op.op}`);
    switch (op.op) {
      case "persistMeta":
        this.disk.texts.set("meta.json", JSON.stringify(op.meta));
        return;
      case "persistIdentity":
        this.disk.texts.set("identity.json", JSON.stringify(op.identity));
        return;
      case "syncAppend": {
        // A finalized segment copied from a peer goes to a file beside the log first (SegmentStore: edits_sync_<start>.tmp).
        const name = syncTmpName(op.startTxid);
        if (op.fresh || !this.disk.files.has(name)) this.disk.files.set(name, new SimFile());
        this.disk.files.get(name)!.append(op.records);
        return;
      }
      case "syncFinish": {
        const tmp = syncTmpName(op.startTxid);
        const file = this.disk.files.get(tmp);
        assert(file !== undefined, `no copy of segment ${op.startTxid} under way`);
        const scan = scanRecords(file.view());
        assert(scan.stop === undefined && scan.records.length === op.endTxid - op.startTxid + 1, `copied segment ${op.startTxid} does not hold ${op.startTxid}..${op.endTxid}`);
        // Synced, then renamed into the log: the finalized segment joins it whole or not at all.
        const name = finalizedName(op.startTxid, op.endTxid);
        this.rename(tmp, name);
        const offsets = [...scan.records.map((r) => r.offset), scan.validBytes];
        this.segments.push({ startTxid: op.startTxid, endTxid: op.endTxid, inProgress: false, name, offsets });
        this.segments.sort((a, b) => a.startTxid - b.startTxid);
        return;
      }
      case "startSegment": {
        const name = inProgressName(op.startTxid);
        this.disk.files.set(name, new SimFile());
        this.segments.push({ startTxid: op.startTxid, endTxid: op.startTxid - 1, inProgress: true, name, offsets: [0] });
        return;
      }
      case "append": {
        const segment = this.segment(op.segmentTxid);
        assert(segment.inProgress, `append to finalized segment ${op.segmentTxid}`);
        assert(op.txids[0] === segment.endTxid + 1, `append of ${op.txids[0]} after ${segment.endTxid}`);
        const file = this.disk.files.get(segment.name)!;
        const end = segment.offsets[segment.offsets.length - 1];
        assert(file.length === end, `${segment.name} holds ${file.length} bytes, the store counts ${end}`);
        file.append(op.records);
        appendOffsets(segment.offsets, op.records, op.txids.length);
        segment.endTxid = op.txids[op.txids.length - 1];
        return;
      }
      case "truncate": {
        const segment = this.segment(op.segmentTxid);
        assert(op.toTxid >= segment.startTxid - 1 && op.toTxid <= segment.endTxid, "truncate out of range");
        const keep = op.toTxid - segment.startTxid + 1;
        this.disk.files.get(segment.name)!.truncate(segment.offsets[keep]);
        segment.offsets.length = keep + 1;
        segment.endTxid = op.toTxid;
        return;
      }
      case "stageRecovery": {
        const name = `edits_recovery_${op.segmentTxid}.tmp`;
        if (op.fresh || !this.disk.files.has(name)) this.disk.files.set(name, new SimFile());
        this.disk.files.get(name)!.append(op.records);
        return;
      }
      case "discardRecovery":
        this.disk.files.delete(`edits_recovery_${op.segmentTxid}.tmp`);
        return;
      case "installRecovery": {
        const segment = this.segment(op.segmentTxid);
        const staged = this.disk.files.get(`edits_recovery_${op.segmentTxid}.tmp`);
        assert(staged !== undefined, `no staged recovery of segment ${op.segmentTxid}`);
        const { ownBytes, stagedBytes, offsets } = planInstall(segment, op, staged.view());
        const file = new SimFile();
        file.append(this.disk.files.get(segment.name)!.copy(0, ownBytes));
        file.append(staged.copy(0, stagedBytes));
        // Atomic, as the real store's write-aside, fsync and rename.
        this.disk.files.set(segment.name, file);
        this.disk.files.delete(`edits_recovery_${op.segmentTxid}.tmp`);
        segment.offsets = offsets;
        segment.endTxid = op.toTxid;
        return;
      }
      case "finalize": {
        const segment = this.segment(op.startTxid);
        assert(segment.endTxid === op.endTxid, "finalize at a different end");
        const name = finalizedName(op.startTxid, op.endTxid);
        this.rename(segment.name, name);
        segment.name = name;
        segment.inProgress = false;
        return;
      }
      case "setAside": {
        const segment = this.segment(op.startTxid);
        this.rename(segment.name, this.disk.nextAsideName(segment.name));
        this.segments = this.segments.filter((s) => s !== segment);
        return;
      }
      case "deleteSegment": {
        const segment = this.segment(op.startTxid);
        assert(segment.endTxid < segment.startTxid, "delete of a segment that holds records");
        this.disk.files.delete(segment.name);
        this.segments = this.segments.filter((s) => s !== segment);
        return;
      }
    }
  }

  /**
   * A crash while `op` runs: an append leaves nothing, a torn prefix or all of its bytes (written, never synced);
   * any other op (a rename, an atomic replace, a create) is done or not.
   */
  crashDuring(op: DiskOp, prng: Prng): string {
    const fate = prng.int(0, 2);
    if (op.op === "append") {
      if (fate === 0) return "append lost";
      const segment = this.segment(op.segmentTxid);
      const file = this.disk.files.get(segment.name)!;
      if (fate === 1) {
        const bytes = prng.int(1, op.records.length - 1);
        file.append(op.records.subarray(0, bytes));
        return `append torn after ${bytes} of ${op.records.length} bytes`;
      }
      file.append(op.records);
      return "append written, unsynced, kept";
    }
    // An unfinished copy is dropped on open whatever it holds; its rename (syncFinish) is done or not.
    if (op.op === "syncAppend" || fate === 0) return `${op.op} lost`;
    this.apply(op);
    return `${op.op} done`;
  }

  private rename(from: string, to: string): void {
    const file = this.disk.files.get(from);
    assert(file !== undefined, `no file ${from}`);
    this.disk.files.delete(from);
    this.disk.files.set(to, file);
  }

  private segment(startTxid: number): SimSegment {
    const segment = this.segments.find((s) => s.startTxid === startTxid);
    assert(segment !== undefined, `no segment ${startTxid}`);
    return segment;
  }

  /** As SegmentStore.read: records from fromTxid to at most toTxid, one segment, bounded (at least one record). */
  read(fromTxid: number, toTxid: number, bytesMax: number, recordsMax: number): { records: Uint8Array; count: number } {
    const segment = this.segments.find((s) => s.startTxid <= fromTxid && fromTxid <= s.endTxid);
    if (segment === undefined || fromTxid > toTxid) return { records: new Uint8Array(0), count: 0 };
    const first = fromTxid - segment.startTxid;
    const last = Math.min(toTxid, segment.endTxid) - segment.startTxid;
    const start = segment.offsets[first];
    let count = 1;
    while (count < recordsMax && first + count <= last && segment.offsets[first + count + 1] - start <= bytesMax) count++;
    return { records: this.disk.files.get(segment.name)!.copy(start, segment.offsets[first + count]), count };
  }

  /** The record this store serves at txid (header and payload, unchecked), or null: for the invariant checks. */
  recordAt(txid: number): Uint8Array | null {
    const segment = this.segments.find((s) => s.startTxid <= txid && txid <= s.endTxid);
    if (segment === undefined) return null;
    const i = txid - segment.startTxid;
    return this.disk.files.get(segment.name)!.view().subarray(segment.offsets[i], segment.offsets[i + 1]);
  }

  /** The txid ranges of the finalized segments: for the invariant checks. */
  finalizedRanges(): { startTxid: number; endTxid: number }[] {
    return this.segments.filter((s) => !s.inProgress && s.endTxid >= s.startTxid).map(({ startTxid, endTxid }) => ({ startTxid, endTxid }));
  }

  /** Flips one bit inside a record of a finalized segment; false if there is none. */
  flipBit(prng: Prng): string | null {
    const finalized = this.segments.filter((s) => !s.inProgress && s.endTxid >= s.startTxid);
    if (finalized.length === 0) return null;
    const segment = prng.pick(finalized);
    const file = this.disk.files.get(segment.name)!;
    const offset = prng.int(0, file.length - 1);
    const bit = prng.int(0, 7);
    file.flipBit(offset, bit);
    return `${segment.name} byte ${offset} bit ${bit}`;
  }

  /** Checks a stored batch scans clean right after it was written (a paired check: before the write, after the read). */
  scanClean(txid: number): boolean {
    const rec = this.recordAt(txid);
    return rec !== null && scanRecords(rec).stop === undefined;
  }
}

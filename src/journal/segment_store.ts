/**
 * The journal node's disk: editlog segments and the durable meta, under `<dir>/current/`.
 *
 *   edits_inprogress_<start>   the open segment, named by its first txid
 *   edits_<start>-<end>        a finalized segment, renamed with its last txid
 *   meta.json                  promised epoch, writer epoch, accepted recovery (tmp + fsync + rename + dir fsync)
 *   identity.json              cluster id, restoring flag (written the same way); absent: not formatted
 *   edits_sync_<start>.tmp     a finalized segment being copied from a peer (dropped if found on start)
 *   *.stale-<ms>               an in-progress segment set aside by a newer writer: kept to inspect, never served
 *
 * Appends are fdatasync'ed before they count; the directory is fsync'ed after every create, rename and delete.
 * On open every segment is validated: a torn tail of the in-progress segment is truncated, a corrupt record
 * anywhere else puts the store in a fault that names the file and offset (it never serves bad data).
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { SegmentCorruptError } from "../protocol/errors.js";
import type { SegmentState } from "../protocol/messages.js";
import { RECORD_HEADER_BYTES, scanRecords } from "../segment/record.js";
import { assert } from "../util/assert.js";
import { recordCrc, type DiskOp, type Identity, type JournalMeta, type LoadedJournal, type SegmentPrints } from "./journal_core.js";
import { DiskFaults } from "./disk_faults.js";
import { fsyncDir, writeFileDurably } from "../util/durable_file.js";

const TXID_DIGITS = 19;
const IN_PROGRESS = /^edits_inprogress_(\d+)$/;
const FINALIZED = /^edits_(\d+)-(\d+)$/;
const SYNC_TMP = /^edits_sync_\d+\.tmp$/;
/** Recovery records staged to replace part of the in-progress segment, and the file that replaces it at accept. */
const RECOVERY_TMP = /^edits_recovery_\d+(\.install)?\.tmp$/;

function recoveryTmpName(segmentTxid: number): string {
  return `edits_recovery_${segmentTxid}.tmp`;
}
const MERGE_TMP = /^edits_merge_\d+-\d+\.tmp$/;

function mergeTmpName(start: number, end: number): string {
  return `edits_merge_${start}-${end}.tmp`;
}

export function inProgressName(start: number): string {
  return `edits_inprogress_${String(start).padStart(TXID_DIGITS, "0")}`;
}

export function finalizedName(start: number, end: number): string {
  return `edits_${String(start).padStart(TXID_DIGITS, "0")}-${String(end).padStart(TXID_DIGITS, "0")}`;
}

interface StoredSegment extends SegmentState {
  file: string;
  /** Byte offset of each record, in txid order, plus the end offset last: offsets[i] is txid startTxid + i. */
  offsets: number[];
  handle: fsp.FileHandle | null;
}

export interface OpenResult extends LoadedJournal {
  /** Bytes cut from a torn tail, with the file, if any. */
  truncated: { file: string; bytes: number; rot: boolean } | null;
}


export class SegmentStore {
  readonly dir: string;
  private segments: StoredSegment[] = [];
  /** Inputs of an interrupted merge deleted on open (for the log and tests). */
  mergeLeftovers = 0;
  /** Unfinished merge files dropped on open. */
  mergeTmpsDropped = 0;
  /** Fault injection (tests): a pause between the steps of a merge or purge. */
  stepPauseMs = 0;

  constructor(
    root: string,
    readonly faults: DiskFaults = new DiskFaults(),
  ) {
    this.dir = path.join(path.resolve(root), "current");
  }

  /** Loads and validates everything on disk (the checks themselves: `scanSegmentFiles`, shared with the simulator). */
  async open(): Promise<OpenResult> {
    await fsp.mkdir(this.dir, { recursive: true });
    // An unreadable meta or identity file is a fault like a corrupt segment: refuse service, name the file.
    let fault: string | null = null;
    let meta: JournalMeta = { promisedEpoch: 0, writerEpoch: 0, accepted: null };
    let identity: Identity = { clusterId: null, restoring: true };
    try {
      meta = parseMeta(await this.readText("meta.json"));
    } catch (err) {
      fault = `${path.join(this.dir, "meta.json")} is unreadable: ${(err as Error).message}`;
    }
    try {
      identity = parseIdentity(await this.readText("identity.json"));
    } catch (err) {
      fault ??= `${path.join(this.dir, "identity.json")} is unreadable: ${(err as Error).message}`;
    }
    const names = (await fsp.readdir(this.dir)).sort();
    // Unfinished copies and merges: their inputs are still in the log.
    for (const name of names) {
      if (MERGE_TMP.test(name)) this.mergeTmpsDropped++;
      if (SYNC_TMP.test(name) || MERGE_TMP.test(name) || RECOVERY_TMP.test(name)) await fsp.rm(path.join(this.dir, name), { force: true });
    }
    // A merge renamed its output into the log but died before deleting every input: the inputs it covers go now.
    const covered = coveredByMerge(names);
    for (const name of covered) await fsp.rm(path.join(this.dir, name), { force: true });
    if (covered.length > 0) await fsyncDir(this.dir);
    this.mergeLeftovers += covered.length;
    let truncated: OpenResult["truncated"] = null;
    let newestPrints: SegmentPrints | undefined;
    this.segments = [];
    if (fault === null) {
      const files: SegmentFile[] = [];
      for (const name of names) if (isSegmentFile(name) && !covered.includes(name)) files.push({ name, data: await fsp.readFile(path.join(this.dir, name)) });
      const scan = scanSegmentFiles(this.dir, files);
      fault = scan.fault;
      newestPrints = scan.newestPrints ?? undefined;
      if (scan.truncate !== null && scan.truncate.rot && fault === null) {
        identity = identityAfterTailRot(identity);
        await this.writeDurably("identity.json", JSON.stringify(identity));
      }
      if (scan.truncate !== null) {
        const file = path.join(this.dir, scan.truncate.name);
        await fsp.truncate(file, scan.truncate.validBytes);
        const handle = await fsp.open(file, "r+");
        await handle.datasync();
        await handle.close();
        truncated = { file, bytes: scan.truncate.bytes, rot: scan.truncate.rot };
      }
      this.segments = scan.segments.map((seg) => ({ startTxid: seg.startTxid, endTxid: seg.endTxid, inProgress: seg.inProgress, file: path.join(this.dir, seg.name), offsets: seg.offsets, handle: null }));
    }
    return {
      meta,
      identity,
      segments: this.segments.map(({ startTxid, endTxid, inProgress }) => ({ startTxid, endTxid, inProgress })),
      fault,
      truncated,
      newestPrints,
    };
  }

  /** A file's text, or null when it does not exist. */
  private async readText(name: string): Promise<string | null> {
    try {
      return await fsp.readFile(path.join(this.dir, name), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  /** tmp + fsync + rename + directory fsync: the file is either the old one or the new one after a crash. */
  private async writeDurably(name: string, content: string): Promise<void> {
    await writeFileDurably(this.dir, name, content, (op, file) => this.faults.check(op, file));
  }

  /** Runs one disk operation of the core; durable when the promise resolves. */
  async apply(op: DiskOp): Promise<void> {
    switch (op.op) {
      case "persistMeta":
        return await this.writeDurably("meta.json", JSON.stringify(op.meta));
      case "persistIdentity":
        return await this.writeDurably("identity.json", JSON.stringify(op.identity));
      case "syncAppend": {
        const tmp = path.join(this.dir, `edits_sync_${op.startTxid}.tmp`);
        this.faults.check("write", tmp);
        await fsp.writeFile(tmp, op.records, { flag: op.fresh ? "w" : "a" });
        return;
      }
      case "syncFinish": {
        const tmp = path.join(this.dir, `edits_sync_${op.startTxid}.tmp`);
        const data = await fsp.readFile(tmp);
        const scan = scanRecords(data);
        assert(scan.stop === undefined && scan.records.length === op.endTxid - op.startTxid + 1, `copied segment ${op.startTxid} does not hold ${op.startTxid}..${op.endTxid}`);
        const handle = await fsp.open(tmp, "r+");
        try {
          this.faults.check("fsync", tmp);
          await handle.sync();
        } finally {
          await handle.close();
        }
        const file = path.join(this.dir, finalizedName(op.startTxid, op.endTxid));
        await fsp.rename(tmp, file);
        await fsyncDir(this.dir);
        const offsets = scan.records.map((r) => r.offset);
        offsets.push(scan.validBytes);
        this.segments.push({ startTxid: op.startTxid, endTxid: op.endTxid, inProgress: false, file, offsets, handle: null });
        this.segments.sort((a, b) => a.startTxid - b.startTxid);
        return;
      }
      case "startSegment": {
        const file = path.join(this.dir, inProgressName(op.startTxid));
        const handle = await fsp.open(file, "w+");
        await handle.sync();
        await fsyncDir(this.dir);
        this.segments.push({ startTxid: op.startTxid, endTxid: op.startTxid - 1, inProgress: true, file, offsets: [0], handle });
        return;
      }
      case "append": {
        const segment = this.segment(op.segmentTxid);
        assert(segment.inProgress, `append to finalized segment ${op.segmentTxid}`);
        assert(op.txids[0] === segment.endTxid + 1, `append of ${op.txids[0]} after ${segment.endTxid}`);
        const handle = await this.handle(segment);
        const end = segment.offsets[segment.offsets.length - 1];
        try {
          this.faults.check("write", segment.file);
          await handle.write(op.records, 0, op.records.length, end);
          this.faults.check("fsync", segment.file);
          await handle.datasync();
        } catch (err) {
          // What a failed write or fsync left behind is not durable, whatever the page cache says: cut it off.
          await handle.truncate(end).catch(() => {});
          throw err;
        }
        appendOffsets(segment.offsets, op.records, op.txids.length);
        segment.endTxid = op.txids[op.txids.length - 1];
        return;
      }
      case "truncate": {
        const segment = this.segment(op.segmentTxid);
        assert(op.toTxid >= segment.startTxid - 1 && op.toTxid <= segment.endTxid, "truncate out of range");
        const keep = op.toTxid - segment.startTxid + 1;
        const bytes = segment.offsets[keep];
        const handle = await this.handle(segment);
        await handle.truncate(bytes);
        await handle.datasync();
        segment.offsets.length = keep + 1;
        segment.endTxid = op.toTxid;
        return;
      }
      case "stageRecovery": {
        const tmp = path.join(this.dir, recoveryTmpName(op.segmentTxid));
        this.faults.check("write", tmp);
        // Not fsynced: installRecovery writes and fsyncs the segment it makes from these.
        await fsp.writeFile(tmp, op.records, { flag: op.fresh ? "w" : "a" });
        return;
      }
      case "discardRecovery":
        await fsp.rm(path.join(this.dir, recoveryTmpName(op.segmentTxid)), { force: true });
        return;
      case "installRecovery": {
        const segment = this.segment(op.segmentTxid);
        assert(segment.inProgress && op.fromTxid >= segment.startTxid && op.fromTxid <= segment.endTxid + 1, "install out of range");
        const staged = await fsp.readFile(path.join(this.dir, recoveryTmpName(op.segmentTxid)));
        const { ownBytes, stagedBytes, offsets } = planInstall(segment, op, staged);
        const own = Buffer.allocUnsafe(ownBytes);
        const handle = await this.handle(segment);
        if (ownBytes > 0) await handle.read(own, 0, ownBytes, 0);
        await handle.close();
        segment.handle = null;
        // The whole new segment is written aside, fsynced, then renamed over the old one: one atomic switch.
        const installTmp = path.join(this.dir, `edits_recovery_${op.segmentTxid}.install.tmp`);
        const out = await fsp.open(installTmp, "w");
        try {
          this.faults.check("write", installTmp);
          await out.writeFile(Buffer.concat([own, staged.subarray(0, stagedBytes)]));
          this.faults.check("fsync", installTmp);
          await out.sync();
        } finally {
          await out.close();
        }
        await fsp.rename(installTmp, segment.file);
        await fsyncDir(this.dir);
        await fsp.rm(path.join(this.dir, recoveryTmpName(op.segmentTxid)), { force: true });
        segment.offsets = offsets;
        segment.endTxid = op.toTxid;
        return;
      }
      case "finalize": {
        const segment = this.segment(op.startTxid);
        assert(segment.endTxid === op.endTxid, "finalize at a different end");
        if (segment.handle !== null) {
          await segment.handle.sync();
          await segment.handle.close();
          segment.handle = null;
        }
        const file = path.join(this.dir, finalizedName(op.startTxid, op.endTxid));
        await fsp.rename(segment.file, file);
        await fsyncDir(this.dir);
        segment.file = file;
        segment.inProgress = false;
        return;
      }
      case "setAside": {
        const segment = this.segment(op.startTxid);
        if (segment.handle !== null) await segment.handle.close();
        segment.handle = null;
        await fsp.rename(segment.file, `${segment.file}.stale-${Date.now()}`);
        await fsyncDir(this.dir);
        this.segments = this.segments.filter((s) => s !== segment);
        return;
      }
      case "purgeSegment": {
        const segment = this.segment(op.startTxid);
        assert(!segment.inProgress && segment.endTxid === op.endTxid, `purge of ${op.startTxid}-${op.endTxid} that is not finalized so`);
        // Oldest first and one at a time: a crash leaves a shorter, still contiguous log.
        this.segments = this.segments.filter((s) => s !== segment);
        if (segment.handle !== null) await segment.handle.close();
        await fsp.rm(segment.file, { force: true });
        await fsyncDir(this.dir);
        await this.pause();
        return;
      }
      case "mergeSegments": {
        const parts = op.parts.map((p) => this.segment(p));
        const file = path.join(this.dir, finalizedName(op.startTxid, op.endTxid));
        // The merged file was written and fsynced aside (prepareMerge); the rename puts it in the log, then the
        // inputs go. A crash in between leaves inputs the merged file covers: open() deletes them.
        await fsp.rename(path.join(this.dir, mergeTmpName(op.startTxid, op.endTxid)), file);
        await fsyncDir(this.dir);
        await this.pause();
        const offsets: number[] = [];
        let base = 0;
        for (const part of parts) {
          for (let i = 0; i < part.offsets.length - 1; i++) offsets.push(base + part.offsets[i]);
          base += part.offsets[part.offsets.length - 1];
        }
        offsets.push(base);
        this.segments = [...this.segments.filter((s) => !parts.includes(s)), { startTxid: op.startTxid, endTxid: op.endTxid, inProgress: false, file, offsets, handle: null }].sort(
          (a, b) => a.startTxid - b.startTxid,
        );
        for (const part of parts) {
          if (part.handle !== null) await part.handle.close();
          await fsp.rm(part.file, { force: true });
          await this.pause();
        }
        await fsyncDir(this.dir);
        return;
      }
      case "deleteSegment": {
        const segment = this.segment(op.startTxid);
        assert(segment.endTxid < segment.startTxid, "delete of a segment that holds records");
        if (segment.handle !== null) await segment.handle.close();
        await fsp.rm(segment.file, { force: true });
        await fsyncDir(this.dir);
        this.segments = this.segments.filter((s) => s !== segment);
        return;
      }
    }
  }

  private async pause(): Promise<void> {
    if (this.stepPauseMs > 0) await new Promise((r) => setTimeout(r, this.stepPauseMs));
  }

  /** Bytes on disk of each segment, by first txid. */
  sizes(): Map<number, number> {
    return new Map(this.segments.map((s) => [s.startTxid, s.offsets[s.offsets.length - 1]]));
  }

  /**
   * Writes the concatenation of finalized segments into a temporary file, checked and fsynced, for a later
   * mergeSegments. Runs outside the request queue (finalized files never change); false if a part went away meanwhile.
   */
  async prepareMerge(parts: readonly { startTxid: number; endTxid: number }[], chunkBytes: number): Promise<boolean> {
    const start = parts[0].startTxid;
    const end = parts[parts.length - 1].endTxid;
    const tmp = path.join(this.dir, mergeTmpName(start, end));
    const out = await fsp.open(tmp, "w");
    try {
      for (const p of parts) {
        const seg = this.segments.find((s) => s.startTxid === p.startTxid && s.endTxid === p.endTxid && !s.inProgress);
        if (seg === undefined) return false;
        // In bounded chunks (memory stays at one chunk whatever the segments' size), each re-checked on the way: a
        // merge must not carry a record that rotted on disk into a new file.
        for (let from = p.startTxid; from <= p.endTxid; ) {
          const chunk = await this.read(from, p.endTxid, chunkBytes, Number.MAX_SAFE_INTEGER).catch(() => null);
          if (chunk === null || chunk.count === 0) return false; // purged meanwhile
          const scan = scanRecords(chunk.records);
          if (scan.stop !== undefined || scan.records.length !== chunk.count || scan.records[0].txid !== from) {
            const at = seg.offsets[from - seg.startTxid] + (scan.stop?.offset ?? 0);
            throw new SegmentCorruptError(seg.file, at, scan.stop?.reason ?? `does not hold txid ${from} where its offsets say`);
          }
          this.faults.check("write", tmp);
          await out.write(chunk.records);
          from += chunk.count;
        }
        await this.pause();
      }
      this.faults.check("fsync", tmp);
      await out.sync();
      return true;
    } finally {
      await out.close();
    }
  }


  /** Drops the temporary file of a merge that was not applied. */
  async discardMerge(startTxid: number, endTxid: number): Promise<void> {
    await fsp.rm(path.join(this.dir, mergeTmpName(startTxid, endTxid)), { force: true });
  }

  private segment(startTxid: number): StoredSegment {
    const segment = this.segments.find((s) => s.startTxid === startTxid);
    assert(segment !== undefined, `no segment ${startTxid}`);
    return segment;
  }

  private async handle(segment: StoredSegment): Promise<fsp.FileHandle> {
    if (segment.handle === null) segment.handle = await fsp.open(segment.file, "r+");
    return segment.handle;
  }

  /**
   * Concatenated records from `fromTxid` to at most `toTxid`, within one segment, bounded by bytes and count
   * (at least one record whatever its size, so a reader always progresses).
   */
  async read(fromTxid: number, toTxid: number, bytesMax: number, recordsMax: number): Promise<{ records: Buffer; count: number }> {
    const segment = this.segments.find((s) => s.startTxid <= fromTxid && fromTxid <= s.endTxid);
    if (segment === undefined || fromTxid > toTxid) return { records: Buffer.alloc(0), count: 0 };
    const first = fromTxid - segment.startTxid;
    const last = Math.min(toTxid, segment.endTxid) - segment.startTxid;
    const start = segment.offsets[first];
    let count = 1;
    while (count < recordsMax && first + count <= last && segment.offsets[first + count + 1] - start <= bytesMax) count++;
    const end = segment.offsets[first + count];
    const buf = Buffer.allocUnsafe(end - start);
    const handle = segment.handle ?? (await fsp.open(segment.file, "r"));
    try {
      const { bytesRead } = await handle.read(buf, 0, buf.length, start);
      assert(bytesRead === buf.length, `short read from ${segment.file}`);
    } finally {
      if (handle !== segment.handle) await handle.close();
    }
    return { records: buf, count };
  }

  async close(): Promise<void> {
    for (const s of this.segments) {
      if (s.handle !== null) await s.handle.close().catch(() => {});
      s.handle = null;
    }
  }
}

export function segmentFilesIn(root: string): string[] {
  const dir = path.join(root, "current");
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => IN_PROGRESS.test(n) || FINALIZED.test(n)).map((n) => path.join(dir, n)) : [];
}

/** The meta file's content (null: absent, a node that never promised). Throws when it is malformed. */
export function parseMeta(text: string | null): JournalMeta {
  if (text === null) return { promisedEpoch: 0, writerEpoch: 0, accepted: null };
  const raw = JSON.parse(text) as JournalMeta;
  assert(Number.isSafeInteger(raw.promisedEpoch) && Number.isSafeInteger(raw.writerEpoch), "meta.json is malformed");
  const meta: JournalMeta = { promisedEpoch: raw.promisedEpoch, writerEpoch: raw.writerEpoch, accepted: raw.accepted ?? null };
  if (Number.isSafeInteger(raw.durableSnapshotTxid)) meta.durableSnapshotTxid = raw.durableSnapshotTxid;
  return meta;
}

/** The identity file's content (null: absent, an unformatted node that must not vote until restored). Throws when malformed. */
export function parseIdentity(text: string | null): Identity {
  if (text === null) return { clusterId: null, restoring: true };
  const raw = JSON.parse(text) as Identity;
  assert(typeof raw.clusterId === "string" && typeof raw.restoring === "boolean", "identity.json is malformed");
  return { clusterId: raw.clusterId, restoring: raw.restoring };
}

/**
 * Finalized segment files wholly inside another finalized one: the inputs of a merge that renamed its output into the
 * log and died before deleting them all. Segments never overlap otherwise.
 */
export function coveredByMerge(names: readonly string[]): string[] {
  const finalized = names.flatMap((name) => {
    const m = FINALIZED.exec(name);
    return m === null ? [] : [{ name, start: Number(m[1]), end: Number(m[2]) }];
  });
  return finalized.filter((f) => finalized.some((c) => c !== f && c.start <= f.start && f.end <= c.end && (c.start < f.start || f.end < c.end))).map((f) => f.name);
}

/** Extends a segment's record offsets (end offset last) by the records just appended (validated by the core). */
export function appendOffsets(offsets: number[], records: Uint8Array, count: number): void {
  const end = offsets.pop()!;
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
  let at = 0;
  for (let i = 0; i < count; i++) {
    offsets.push(end + at);
    at += RECORD_HEADER_BYTES + view.getUint32(at + 4);
  }
  assert(at === records.length, "append: record lengths do not add up to the batch");
  offsets.push(end + at);
}

/**
 * What installRecovery makes of a segment: its own bytes before fromTxid, then the staged records up to toTxid, and
 * the record offsets of the result. Pure (the real store and the simulated disk both use it).
 */
export function planInstall(
  segment: { startTxid: number; offsets: readonly number[] },
  op: { segmentTxid: number; fromTxid: number; toTxid: number },
  staged: Uint8Array,
): { ownBytes: number; stagedBytes: number; offsets: number[] } {
  const scan = scanRecords(staged);
  const count = op.toTxid - op.fromTxid + 1;
  assert(scan.stop === undefined && scan.records.length >= count && scan.records[0]?.txid === op.fromTxid, `staged recovery of segment ${op.segmentTxid} does not hold ${op.fromTxid}..${op.toTxid}`);
  const keep = op.fromTxid - segment.startTxid;
  const ownBytes = segment.offsets[keep];
  const stagedBytes = count === scan.records.length ? scan.validBytes : scan.records[count].offset;
  const offsets = segment.offsets.slice(0, keep);
  for (let i = 0; i < count; i++) offsets.push(ownBytes + scan.records[i].offset);
  offsets.push(ownBytes + stagedBytes);
  return { ownBytes, stagedBytes, offsets };
}

export function isSegmentFile(name: string): boolean {
  return IN_PROGRESS.test(name) || FINALIZED.test(name);
}

export interface SegmentFile {
  name: string;
  data: Uint8Array;
}

export interface ScannedSegment extends SegmentState {
  name: string;
  /** Byte offset of each record plus the end offset last (as StoredSegment keeps them). */
  offsets: number[];
}

export interface SegmentScan {
  /** Sorted by startTxid: the valid ones, up to a fault. */
  segments: ScannedSegment[];
  fault: string | null;
  /** A torn tail of the newest in-progress segment, to cut off at validBytes (the caller does it, durably). */
  truncate: { name: string; validBytes: number; bytes: number; rot: boolean } | null;
  /** The prints of the newest valid segment's records (what a recovery recognizes this node's copy by). */
  newestPrints: SegmentPrints | null;
}

/**
 * Validates the segment files of a journal directory, pure (the real store and the simulated disk both load through
 * it): a torn tail of the newest in-progress segment is to be truncated; a corrupt record anywhere else, a txid gap,
 * a finalized name that disagrees with its records, an older in-progress segment or overlapping segments are a fault
 * that names the file (the node then serves nothing).
 */
/**
 * True when the bytes from `offset` to the end hold a whole record by its own length field: not a torn write (which
 * leaves fewer bytes than the record needs) but a record written in full that failed its check — rot, of a record
 * that may have been fsynced and acked.
 */
export function completeRecordAt(data: Uint8Array, offset: number): boolean {
  const left = data.length - offset;
  if (left < RECORD_HEADER_BYTES) return false;
  const length = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(offset + 4);
  return RECORD_HEADER_BYTES + length <= left;
}

/**
 * After rot in the tail of the in-progress segment, the node comes up restoring (non-voting: it takes part in no
 * epoch or recovery) until the writer copied the log back to it: the cut record may have been acked, and a vote with
 * the shortened log could help elect a log without it. Persisted before the cut, so a crash between keeps it.
 */
export function identityAfterTailRot(identity: Identity): Identity {
  return identity.clusterId === null ? identity : { ...identity, restoring: true };
}

export function scanSegmentFiles(dir: string, files: readonly SegmentFile[]): SegmentScan {
  const found: { start: number; end: number | null; name: string; data: Uint8Array }[] = [];
  for (const { name, data } of files) {
    const ip = IN_PROGRESS.exec(name);
    const fin = FINALIZED.exec(name);
    if (ip) found.push({ start: Number(ip[1]), end: null, name, data });
    else if (fin) found.push({ start: Number(fin[1]), end: Number(fin[2]), name, data });
  }
  found.sort((a, b) => a.start - b.start);
  let fault: string | null = null;
  let truncate: SegmentScan["truncate"] = null;
  const segments: ScannedSegment[] = [];
  let newestPrints: SegmentPrints | null = null;
  for (let i = 0; i < found.length && fault === null; i++) {
    const f = found[i];
    const file = path.join(dir, f.name);
    const scan = scanRecords(f.data);
    const isLastInProgress = f.end === null && i === found.length - 1;
    if (scan.stop !== undefined) {
      if (scan.stop.kind === "torn" && isLastInProgress) {
        truncate = { name: f.name, validBytes: scan.validBytes, bytes: f.data.length - scan.validBytes, rot: completeRecordAt(f.data, scan.validBytes) };
      } else {
        fault = new SegmentCorruptError(file, scan.stop.offset, scan.stop.reason).message;
        break;
      }
    }
    const offsets: number[] = [];
    let expected = f.start;
    for (const r of scan.records) {
      if (r.txid !== expected) {
        fault = new SegmentCorruptError(file, r.offset, `txid ${r.txid} where ${expected} was expected`).message;
        break;
      }
      offsets.push(r.offset);
      expected++;
    }
    offsets.push(scan.validBytes);
    const endTxid = f.start + scan.records.length - 1;
    if (fault === null && f.end !== null && f.end !== endTxid) {
      fault = new SegmentCorruptError(file, scan.validBytes, `finalized as ending at ${f.end}, holds records up to ${endTxid}`).message;
    }
    if (fault === null && f.end === null && !isLastInProgress) {
      fault = `${file}: an in-progress segment that is not the newest`;
    }
    const previous = segments.at(-1);
    if (fault === null && previous !== undefined && previous.endTxid >= f.start) {
      fault = `${file}: starts at ${f.start}, inside the previous segment (ends at ${previous.endTxid})`;
    }
    if (fault === null) {
      segments.push({ startTxid: f.start, endTxid, inProgress: f.end === null, name: f.name, offsets });
      if (i === found.length - 1) newestPrints = { startTxid: f.start, epochs: scan.records.map((r) => r.epoch), crcs: scan.records.map((r) => recordCrc(f.data, r.offset)) };
    }
  }
  return { segments, fault, truncate, newestPrints };
}

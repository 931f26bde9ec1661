/**
 * The journal node's disk: editlog segments and the durable meta, under `<dir>/current/`.
 *
 *   edits_inprogress_<start>   the open segment, named by its first txid
 *   edits_<start>-<end>        a finalized segment, renamed with its last txid
 *   meta.json                  promised epoch, writer epoch, accepted recovery (tmp + fsync + rename + dir fsync)
 *   identity.json              cluster id, restoring flag (written the same way); absent: not formatted
 *   edits_sync_<start>.tmp     a finalized segment being copied from a peer (dropped if found on start)
 *   edits_recovery_<s>.tmp     recovery records staged until acceptRecovery installs them (dropped on start)
 *   edits_merge_<s>-<e>.tmp    a merged segment written aside until compaction switches to it (dropped on start)
 *   *.stale-<ms>               an in-progress segment set aside by a newer writer: kept to inspect, never served
 *
 * Appends are fdatasync'ed before they count; the directory is fsync'ed after every create, rename and delete.
 * On open every segment is validated: a torn tail of the in-progress segment is truncated, a corrupt record
 * anywhere else puts the store in a fault that names the file and offset (it never serves bad data).
 *
 * All of it is written once, in SegmentLog, as programs of primitive disk calls (disk.ts): SegmentStore runs them over
 * node:fs, the simulator over its in-memory disk (sim/sim_disk.ts), where a crash may fall between any two calls.
 */
import fs from "node:fs";
import path from "node:path";
import { SegmentCorruptError } from "../protocol/errors.js";
import type { SegmentState } from "../protocol/messages.js";
import { RECORD_HEADER_BYTES, scanRecords } from "../segment/record.js";
import { assert, assertNever } from "../util/assert.js";
import { recordCrc, type DiskOp, type Identity, type JournalMeta, type LoadedJournal, type SegmentPrints } from "./journal_core.js";
import { DiskFaults } from "./disk_faults.js";
import { append, create, fsync, fsyncDir, list, pause, read, readFile, remove, rename, runAsync, truncate, write, writeDurably, type DiskProgram } from "./disk.js";
import { FsDisk } from "./fs_disk.js";

const TXID_DIGITS = 19;
const IN_PROGRESS = /^edits_inprogress_(\d+)$/;
const FINALIZED = /^edits_(\d+)-(\d+)$/;
const SYNC_TMP = /^edits_sync_\d+\.tmp$/;
/** Recovery records staged to replace part of the in-progress segment, and the file that replaces it at accept. */
const RECOVERY_TMP = /^edits_recovery_\d+(\.install)?\.tmp$/;

function recoveryTmpName(segmentTxid: number): string {
  return `edits_recovery_${segmentTxid}.tmp`;
}
function installTmpName(segmentTxid: number): string {
  return `edits_recovery_${segmentTxid}.install.tmp`;
}

function syncTmpName(startTxid: number): string {
  return `edits_sync_${startTxid}.tmp`;
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

/** A segment as the store indexes it: its file and where each record starts. */
export interface StoredSegment extends SegmentState {
  name: string;
  /** Byte offset of each record, in txid order, plus the end offset last: offsets[i] is txid startTxid + i. */
  offsets: number[];
}

export interface OpenResult extends LoadedJournal {
  /** Bytes cut from a torn tail, with the file, if any. */
  truncated: { file: string; bytes: number; rot: boolean } | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The segment store's logic, once for production and the simulator: the index of the segments on disk, and the
 * programs (disk.ts) that load the directory and carry out each DiskOp over primitive file calls. Each program
 * updates the index only after its last call completed; a failed or interrupted one leaves the index stale, and its
 * driver reloads from the disk (as after a crash).
 */
export class SegmentLog {
  segments: StoredSegment[] = [];
  /** Inputs of an interrupted merge deleted on open (for the log and tests). */
  mergeLeftovers = 0;
  /** Unfinished merge files dropped on open. */
  mergeTmpsDropped = 0;

  constructor(
    /** For messages only: the directory the names are in. */
    readonly dir: string,
    /** The name an in-progress segment is set aside under (kept to inspect, never served). */
    private readonly asideName: (name: string) => string,
  ) {}

  /** A copy (same names, own offsets): the simulator counts a program's calls on it. */
  clone(): SegmentLog {
    const copy = new SegmentLog(this.dir, this.asideName);
    copy.segments = this.segments.map((s) => ({ ...s, offsets: [...s.offsets] }));
    return copy;
  }

  /** Loads and validates everything on disk (the checks themselves: `scanSegmentFiles`); repairs what a crash left. */
  *open(): DiskProgram<OpenResult> {
    const names = yield* list();
    // An unreadable meta or identity file is a fault like a corrupt segment: refuse service, name the file.
    let fault: string | null = null;
    let meta = parseMeta(null);
    let identity = parseIdentity(null);
    try {
      meta = parseMeta(textOf(yield* readFile("meta.json")));
    } catch (err) {
      fault = `${path.join(this.dir, "meta.json")} is unreadable: ${(err as Error).message}`;
    }
    try {
      identity = parseIdentity(textOf(yield* readFile("identity.json")));
    } catch (err) {
      fault ??= `${path.join(this.dir, "identity.json")} is unreadable: ${(err as Error).message}`;
    }
    const covered = yield* this.dropLeftovers(names);
    this.segments = [];
    if (fault !== null) return { meta, identity, segments: [], fault, truncated: null, newestPrints: undefined };
    const files: SegmentFile[] = [];
    for (const name of names) {
      if (isSegmentFile(name) && !covered.includes(name)) files.push({ name, data: (yield* readFile(name))! });
    }
    const scan = scanSegmentFiles(this.dir, files);
    if (scan.truncate !== null && scan.truncate.rot && scan.fault === null) {
      identity = identityAfterTailRot(identity);
      yield* writeDurably("identity.json", encoder.encode(JSON.stringify(identity)));
    }
    let truncated: OpenResult["truncated"] = null;
    if (scan.truncate !== null) {
      yield* truncate(scan.truncate.name, scan.truncate.validBytes);
      truncated = { file: scan.truncate.name, bytes: scan.truncate.bytes, rot: scan.truncate.rot };
    }
    // What an open segment holds may be only in the page cache (a process killed between write and fdatasync, or an
    // fdatasync that failed): it is made durable before the node answers anything from it — a resent batch it holds
    // is acked without a new write (JournalCore.holdsBatch), and an ack promises fsynced records.
    for (const seg of scan.segments) if (seg.inProgress) yield* fsync(seg.name, true);
    if (scan.truncate !== null && !scan.segments.some((seg) => seg.inProgress && seg.name === scan.truncate!.name)) yield* fsync(scan.truncate.name, true);
    this.segments = scan.segments.map(({ startTxid, endTxid, inProgress, name, offsets }) => ({ startTxid, endTxid, inProgress, name, offsets }));
    return { meta, identity, segments: this.manifest(), fault: scan.fault, truncated, newestPrints: scan.newestPrints ?? undefined };
  }

  /**
   * Unfinished copies, stagings and merges go (their inputs are still in the log); so do the inputs a merge's output
   * covers, when it was renamed into the log and the merge died before deleting them all. Returns those inputs.
   */
  private *dropLeftovers(names: readonly string[]): DiskProgram<string[]> {
    for (const name of names) {
      if (MERGE_TMP.test(name)) this.mergeTmpsDropped++;
      if (SYNC_TMP.test(name) || MERGE_TMP.test(name) || RECOVERY_TMP.test(name)) yield* remove(name);
    }
    const covered = coveredByMerge(names);
    for (const name of covered) yield* remove(name);
    if (covered.length > 0) yield* fsyncDir();
    this.mergeLeftovers += covered.length;
    return covered;
  }

  manifest(): SegmentState[] {
    return this.segments.map(({ startTxid, endTxid, inProgress }) => ({ startTxid, endTxid, inProgress }));
  }

  /** Carries out one disk operation of the core; durable when the program ends. */
  *apply(op: DiskOp): DiskProgram<void> {
    switch (op.op) {
      case "persistMeta":
        return yield* writeDurably("meta.json", encoder.encode(JSON.stringify(op.meta)));
      case "persistIdentity":
        return yield* writeDurably("identity.json", encoder.encode(JSON.stringify(op.identity)));
      case "syncAppend":
        // A finalized segment copied from a peer goes to a file beside the log first; dropped on open if unfinished.
        if (op.fresh) yield* create(syncTmpName(op.startTxid));
        return yield* append(syncTmpName(op.startTxid), op.records);
      case "syncFinish":
        return yield* this.syncFinish(op.startTxid, op.endTxid);
      case "startSegment":
        return yield* this.startSegment(op.startTxid);
      case "append":
        return yield* this.append(op.segmentTxid, op.records, op.txids);
      case "truncate":
        return yield* this.truncate(op.segmentTxid, op.toTxid);
      case "stageRecovery":
        // Not fsynced: installRecovery writes and fsyncs the segment it makes from these.
        if (op.fresh) yield* create(recoveryTmpName(op.segmentTxid));
        return yield* append(recoveryTmpName(op.segmentTxid), op.records);
      case "discardRecovery":
        return yield* remove(recoveryTmpName(op.segmentTxid));
      case "installRecovery":
        return yield* this.installRecovery(op);
      case "finalize":
        return yield* this.finalize(op.startTxid, op.endTxid);
      case "setAside":
        return yield* this.setAside(op.startTxid);
      case "purgeSegment":
        return yield* this.purge(op.startTxid, op.endTxid);
      case "mergeSegments":
        return yield* this.merge(op.startTxid, op.endTxid, op.parts);
      case "deleteSegment":
        return yield* this.deleteSegment(op.startTxid);
      default:
        return assertNever(op, "disk op");
    }
  }

  private *syncFinish(startTxid: number, endTxid: number): DiskProgram<void> {
    const tmp = syncTmpName(startTxid);
    const data = yield* readFile(tmp);
    assert(data !== null, `no copy of segment ${startTxid} under way`);
    const scan = scanRecords(data);
    assert(scan.stop === undefined && scan.records.length === endTxid - startTxid + 1, `copied segment ${startTxid} does not hold ${startTxid}..${endTxid}`);
    // Synced, then renamed into the log: the finalized segment joins it whole or not at all.
    const name = finalizedName(startTxid, endTxid);
    yield* fsync(tmp);
    yield* rename(tmp, name);
    yield* fsyncDir();
    const offsets = [...scan.records.map((r) => r.offset), scan.validBytes];
    this.insert({ startTxid, endTxid, inProgress: false, name, offsets });
  }

  private *startSegment(startTxid: number): DiskProgram<void> {
    const name = inProgressName(startTxid);
    yield* create(name);
    yield* fsync(name);
    yield* fsyncDir();
    this.insert({ startTxid, endTxid: startTxid - 1, inProgress: true, name, offsets: [0] });
  }

  private *append(segmentTxid: number, records: Uint8Array, txids: readonly number[]): DiskProgram<void> {
    const segment = this.segment(segmentTxid);
    assert(segment.inProgress, `append to finalized segment ${segmentTxid}`);
    assert(txids[0] === segment.endTxid + 1, `append of ${txids[0]} after ${segment.endTxid}`);
    const end = segment.offsets[segment.offsets.length - 1];
    try {
      yield* write(segment.name, end, records);
      yield* fsync(segment.name, true);
    } catch (err) {
      // What a failed write or fsync left behind is not durable, whatever the page cache says: cut it off.
      try {
        yield* truncate(segment.name, end);
      } catch {
        // The reload after the failure finds the tail torn and cuts it then.
      }
      throw err;
    }
    appendOffsets(segment.offsets, records, txids.length);
    segment.endTxid = txids[txids.length - 1];
  }

  private *truncate(segmentTxid: number, toTxid: number): DiskProgram<void> {
    const segment = this.segment(segmentTxid);
    assert(toTxid >= segment.startTxid - 1 && toTxid <= segment.endTxid, "truncate out of range");
    const keep = toTxid - segment.startTxid + 1;
    yield* truncate(segment.name, segment.offsets[keep]);
    yield* fsync(segment.name, true);
    segment.offsets.length = keep + 1;
    segment.endTxid = toTxid;
  }

  /** The whole new segment is written aside, fsynced, then renamed over the old one: one atomic switch. */
  private *installRecovery(op: Extract<DiskOp, { op: "installRecovery" }>): DiskProgram<void> {
    const segment = this.segment(op.segmentTxid);
    assert(segment.inProgress && op.fromTxid >= segment.startTxid && op.fromTxid <= segment.endTxid + 1, "install out of range");
    const staged = yield* readFile(recoveryTmpName(op.segmentTxid));
    assert(staged !== null, `no staged recovery of segment ${op.segmentTxid}`);
    const { ownBytes, stagedBytes, offsets } = planInstall(segment, op, staged);
    const own = ownBytes > 0 ? yield* read(segment.name, 0, ownBytes) : new Uint8Array(0);
    const installTmp = installTmpName(op.segmentTxid);
    yield* create(installTmp);
    yield* write(installTmp, 0, Buffer.concat([own, staged.subarray(0, stagedBytes)]));
    yield* fsync(installTmp);
    yield* rename(installTmp, segment.name);
    yield* fsyncDir();
    yield* remove(recoveryTmpName(op.segmentTxid));
    segment.offsets = offsets;
    segment.endTxid = op.toTxid;
  }

  private *finalize(startTxid: number, endTxid: number): DiskProgram<void> {
    const segment = this.segment(startTxid);
    assert(segment.endTxid === endTxid, "finalize at a different end");
    const name = finalizedName(startTxid, endTxid);
    yield* fsync(segment.name);
    yield* rename(segment.name, name);
    yield* fsyncDir();
    segment.name = name;
    segment.inProgress = false;
  }

  private *setAside(startTxid: number): DiskProgram<void> {
    const segment = this.segment(startTxid);
    yield* rename(segment.name, this.asideName(segment.name));
    yield* fsyncDir();
    this.segments = this.segments.filter((s) => s !== segment);
  }

  /** Oldest first and one at a time (the core's order): a crash leaves a shorter, still contiguous log. */
  private *purge(startTxid: number, endTxid: number): DiskProgram<void> {
    const segment = this.segment(startTxid);
    assert(!segment.inProgress && segment.endTxid === endTxid, `purge of ${startTxid}-${endTxid} that is not finalized so`);
    yield* remove(segment.name);
    yield* fsyncDir();
    yield* pause();
    this.segments = this.segments.filter((s) => s !== segment);
  }

  /**
   * The merged file was written and fsynced aside (prepareMerge); the rename puts it in the log, then the inputs go.
   * A crash in between leaves inputs the merged file covers: open() deletes them.
   */
  private *merge(startTxid: number, endTxid: number, partTxids: readonly number[]): DiskProgram<void> {
    const parts = partTxids.map((p) => this.segment(p));
    const name = finalizedName(startTxid, endTxid);
    yield* rename(mergeTmpName(startTxid, endTxid), name);
    yield* fsyncDir();
    yield* pause();
    for (const part of parts) {
      yield* remove(part.name);
      yield* pause();
    }
    yield* fsyncDir();
    const offsets: number[] = [];
    let base = 0;
    for (const part of parts) {
      for (let i = 0; i < part.offsets.length - 1; i++) offsets.push(base + part.offsets[i]);
      base += part.offsets[part.offsets.length - 1];
    }
    offsets.push(base);
    this.segments = this.segments.filter((s) => !parts.includes(s));
    this.insert({ startTxid, endTxid, inProgress: false, name, offsets });
  }

  private *deleteSegment(startTxid: number): DiskProgram<void> {
    const segment = this.segment(startTxid);
    assert(segment.endTxid < segment.startTxid, "delete of a segment that holds records");
    yield* remove(segment.name);
    yield* fsyncDir();
    this.segments = this.segments.filter((s) => s !== segment);
  }

  /**
   * Writes the concatenation of finalized segments into a temporary file, checked and fsynced, for a later
   * mergeSegments. Finalized files never change, so it may run beside the ops; false if a part went away meanwhile.
   */
  *prepareMerge(parts: readonly { startTxid: number; endTxid: number }[], chunkBytes: number): DiskProgram<boolean> {
    const tmp = mergeTmpName(parts[0].startTxid, parts[parts.length - 1].endTxid);
    yield* create(tmp);
    let prepared = false;
    try {
      prepared = yield* this.writeMerged(tmp, parts, chunkBytes);
      return prepared;
    } finally {
      // A merge given up (a part went away, a corrupt record, a failed write) leaves no file nor open handle behind.
      if (!prepared) yield* remove(tmp);
    }
  }

  private *writeMerged(tmp: string, parts: readonly { startTxid: number; endTxid: number }[], chunkBytes: number): DiskProgram<boolean> {
    for (const p of parts) {
      const seg = this.segments.find((s) => s.startTxid === p.startTxid && s.endTxid === p.endTxid && !s.inProgress);
      if (seg === undefined) return false;
      // In bounded chunks (memory stays at one chunk whatever the segments' size), each re-checked on the way: a
      // merge must not carry a record that rotted on disk into a new file.
      for (let from = p.startTxid; from <= p.endTxid; ) {
        if (!this.segments.includes(seg)) return false; // purged meanwhile
        const chunk = yield* this.read(from, p.endTxid, chunkBytes, Number.MAX_SAFE_INTEGER);
        if (chunk.count === 0) return false;
        const scan = scanRecords(chunk.records);
        if (scan.stop !== undefined || scan.records.length !== chunk.count || scan.records[0].txid !== from) {
          const at = seg.offsets[from - seg.startTxid] + (scan.stop?.offset ?? 0);
          throw new SegmentCorruptError(path.join(this.dir, seg.name), at, scan.stop?.reason ?? `does not hold txid ${from} where its offsets say`);
        }
        yield* append(tmp, chunk.records);
        from += chunk.count;
      }
      yield* pause();
    }
    yield* fsync(tmp);
    return true;
  }

  /** Drops the temporary file of a merge that was not applied. */
  *discardMerge(startTxid: number, endTxid: number): DiskProgram<void> {
    yield* remove(mergeTmpName(startTxid, endTxid));
  }

  /**
   * Concatenated records from `fromTxid` to at most `toTxid`, within one segment, bounded by bytes and count
   * (at least one record whatever its size, so a reader always progresses).
   */
  *read(fromTxid: number, toTxid: number, bytesMax: number, recordsMax: number): DiskProgram<{ records: Uint8Array; count: number }> {
    const segment = this.segments.find((s) => s.startTxid <= fromTxid && fromTxid <= s.endTxid);
    if (segment === undefined || fromTxid > toTxid) return { records: new Uint8Array(0), count: 0 };
    const first = fromTxid - segment.startTxid;
    const last = Math.min(toTxid, segment.endTxid) - segment.startTxid;
    const start = segment.offsets[first];
    let count = 1;
    while (count < recordsMax && first + count <= last && segment.offsets[first + count + 1] - start <= bytesMax) count++;
    const records = yield* read(segment.name, start, segment.offsets[first + count] - start);
    return { records, count };
  }

  /** Bytes on disk of each segment, by first txid. */
  sizes(): Map<number, number> {
    return new Map(this.segments.map((s) => [s.startTxid, s.offsets[s.offsets.length - 1]]));
  }

  /** The segment holding txid and the record's byte range in its file, or null. */
  locate(txid: number): { name: string; start: number; end: number } | null {
    const segment = this.segments.find((s) => s.startTxid <= txid && txid <= s.endTxid);
    if (segment === undefined) return null;
    const i = txid - segment.startTxid;
    return { name: segment.name, start: segment.offsets[i], end: segment.offsets[i + 1] };
  }

  private segment(startTxid: number): StoredSegment {
    const segment = this.segments.find((s) => s.startTxid === startTxid);
    assert(segment !== undefined, `no segment ${startTxid}`);
    return segment;
  }

  private insert(segment: StoredSegment): void {
    this.segments.push(segment);
    this.segments.sort((a, b) => a.startTxid - b.startTxid);
  }
}

function textOf(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : decoder.decode(bytes);
}

/** The journal directory on a real filesystem: the shared logic (SegmentLog) driven over node:fs, with awaits. */
export class SegmentStore {
  readonly dir: string;
  private readonly disk: FsDisk;
  private log: SegmentLog;

  constructor(
    root: string,
    readonly faults: DiskFaults = new DiskFaults(),
    /** Told each fsync's duration in seconds (the journal node's metrics). */
    onFsync?: (seconds: number) => void,
  ) {
    this.dir = path.join(path.resolve(root), "current");
    // A batch's write + fdatasync without a thread-pool trip (fs_disk.ts says why).
    this.disk = new FsDisk(this.dir, faults, { onFsync, inlineAppends: true, inlineReads: true });
    this.log = new SegmentLog(this.dir, (name) => `${name}.stale-${Date.now()}`);
  }

  /** Inputs of an interrupted merge deleted on open (for the log and tests). */
  get mergeLeftovers(): number {
    return this.log.mergeLeftovers;
  }

  /** Unfinished merge files dropped on open. */
  get mergeTmpsDropped(): number {
    return this.log.mergeTmpsDropped;
  }

  /** Fault injection (tests): a pause between the steps of a merge or purge. */
  set stepPauseMs(ms: number) {
    this.disk.pauseMs = ms;
  }

  async open(): Promise<OpenResult> {
    const result = await runAsync(this.log.open(), this.disk);
    if (result.truncated !== null) result.truncated.file = path.join(this.dir, result.truncated.file);
    return result;
  }

  /** Runs one disk operation of the core; durable when the promise resolves. */
  async apply(op: DiskOp): Promise<void> {
    await runAsync(this.log.apply(op), this.disk);
  }

  sizes(): Map<number, number> {
    return this.log.sizes();
  }

  async prepareMerge(parts: readonly { startTxid: number; endTxid: number }[], chunkBytes: number): Promise<boolean> {
    return await runAsync(this.log.prepareMerge(parts, chunkBytes), this.disk);
  }

  async discardMerge(startTxid: number, endTxid: number): Promise<void> {
    await runAsync(this.log.discardMerge(startTxid, endTxid), this.disk);
  }

  async read(fromTxid: number, toTxid: number, bytesMax: number, recordsMax: number): Promise<{ records: Buffer; count: number }> {
    const { records, count } = await runAsync(this.log.read(fromTxid, toTxid, bytesMax, recordsMax), this.disk);
    return { records: Buffer.from(records.buffer, records.byteOffset, records.byteLength), count };
  }

  async close(): Promise<void> {
    await this.disk.closeAll();
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

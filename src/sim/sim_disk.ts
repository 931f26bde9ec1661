/**
 * A journal node's simulated disk, and the segment store over it. The store is production's (SegmentLog: the same
 * programs for every DiskOp, for loading and repairing the directory, for merges), driven synchronously over
 * SimDisk, which runs the primitive calls (disk.ts) in memory with the faults a real disk has:
 *  - a crash between any two calls of a program: what was written since its file's last fsync is kept, torn or
 *    lost, and the creates, renames and removes since the last directory fsync are undone from some point on;
 *  - ENOSPC or EIO on a write or an fsync (the program sees the error, as SegmentStore does);
 *  - a flipped bit in a stored record, found only when it is read.
 * A truncate is never undone by a crash (the cut bytes do not come back): the stores fsync right after one.
 */
import type { DiskCall, DiskProgram, SyncDisk } from "../journal/disk.js";
import { mutates, runSync } from "../journal/disk.js";
import type { DiskOp, LoadedJournal } from "../journal/journal_core.js";
import { SegmentLog } from "../journal/segment_store.js";
import { scanRecords } from "../segment/record.js";
import { assert, assertNever } from "../util/assert.js";
import type { Prng } from "./prng.js";

/** A file's bytes with room to grow (appends are amortized, not a copy of the whole file each). */
export class SimFile {
  private buf = new Uint8Array(256);
  length = 0;
  /** The lowest offset written or cut since the last fsync (Infinity: all durable). */
  dirtyFrom = Infinity;

  write(at: number, bytes: Uint8Array): void {
    assert(at <= this.length, `write at ${at} beyond the end ${this.length}`);
    const end = at + bytes.length;
    if (end > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.buf.length * 2, end));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    this.buf.set(bytes, at);
    this.length = Math.max(this.length, end);
    this.dirtyFrom = Math.min(this.dirtyFrom, at);
  }

  truncate(length: number): void {
    assert(length <= this.length, "truncate beyond the end");
    this.length = length;
    this.dirtyFrom = Math.min(this.dirtyFrom, length);
  }

  sync(): void {
    this.dirtyFrom = Infinity;
  }

  /** A view: valid until the next write. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  /** view().subarray(start, end), in one view. */
  range(start: number, end: number): Uint8Array {
    return this.buf.subarray(Math.min(start, this.length), Math.min(end, this.length));
  }

  copy(start: number, end: number): Uint8Array {
    return this.buf.slice(start, end);
  }

  clone(): SimFile {
    const c = new SimFile();
    c.write(0, this.view());
    c.dirtyFrom = this.dirtyFrom;
    return c;
  }

  flipBit(offset: number, bit: number): void {
    assert(offset < this.length, "flip beyond the end");
    this.buf[offset] ^= 1 << bit;
  }

  /** A crash: the bytes written since the last fsync are all kept, torn at some byte, or all lost. */
  crash(prng: Prng): string | null {
    const from = this.dirtyFrom;
    this.dirtyFrom = Infinity;
    if (from >= this.length) return null;
    const fate = prng.int(0, 2);
    const cut = fate === 0 ? from : fate === 1 ? prng.int(from, this.length) : this.length;
    const note = `${this.length - from} unsynced bytes: ${cut - from} kept`;
    this.length = cut;
    return note;
  }
}

export type DiskErrno = "ENOSPC" | "EIO";

export class SimDiskError extends Error {
  override name = "SimDiskError";
}

/** A name's binding before a directory change, for a crash to restore. */
interface DirUndo {
  name: string;
  before: SimFile | undefined;
}

/** What survives a crash: the files, each as durable as the calls that completed on it. */
export class SimDisk implements SyncDisk {
  readonly files = new Map<string, SimFile>();
  /** Directory changes since the last fsyncDir, one entry per call, oldest first. */
  private pending: DirUndo[][] = [];
  /** The next write or fsync (as chosen) fails with this errno. */
  armed: { errno: DiskErrno; on: "write" | "fsync" } | null = null;
  /** Counting a program's calls: reads are served, changes are not made. */
  dry = false;
  calls = 0;
  private asideSeq = 0;

  nextAsideName(name: string): string {
    return `${name}.stale-${++this.asideSeq}`;
  }

  run(c: DiskCall): unknown {
    this.calls++;
    if (this.dry && mutates(c)) return undefined;
    this.failIfArmed(c);
    switch (c.call) {
      case "list":
        return [...this.files.keys()].sort();
      case "readFile":
        return this.files.get(c.name)?.copy(0, this.files.get(c.name)!.length) ?? null;
      case "size":
        return this.files.get(c.name)?.length ?? null;
      case "read": {
        const file = this.file(c.name);
        assert(c.start + c.length <= file.length, `short read from ${c.name}`);
        return file.copy(c.start, c.start + c.length);
      }
      case "create":
        return this.bind([c.name], () => this.files.set(c.name, new SimFile()));
      case "append": {
        if (!this.files.has(c.name)) this.bind([c.name], () => this.files.set(c.name, new SimFile()));
        const file = this.file(c.name);
        return file.write(file.length, c.bytes);
      }
      case "write":
        return this.file(c.name).write(c.at, c.bytes);
      case "truncate":
        return this.file(c.name).truncate(c.length);
      case "fsync":
        return this.file(c.name).sync();
      case "rename": {
        const file = this.file(c.from);
        return this.bind([c.from, c.to], () => {
          this.files.delete(c.from);
          this.files.set(c.to, file);
        });
      }
      case "remove":
        return this.files.has(c.name) ? this.bind([c.name], () => this.files.delete(c.name)) : undefined;
      case "fsyncDir":
        this.pending = [];
        return;
      case "pause":
        return;
      default:
        return assertNever(c, "disk call");
    }
  }

  private failIfArmed(c: DiskCall): void {
    const armed = this.armed;
    if (armed === null) return;
    const hit = armed.on === "write" ? c.call === "write" || c.call === "append" : c.call === "fsync";
    if (!hit) return;
    this.armed = null;
    throw new SimDiskError(`${armed.errno}: injected ${armed.on} failure on ${c.call} ${"name" in c ? c.name : ""}`);
  }

  private file(name: string): SimFile {
    const file = this.files.get(name);
    assert(file !== undefined, `no file ${name}`);
    return file;
  }

  /** A directory change, with what it replaced (undone by a crash before the next fsyncDir). */
  private bind(names: string[], change: () => void): void {
    this.pending.push(names.map((name) => ({ name, before: this.files.get(name) })));
    change();
  }

  /**
   * A crash: the directory changes since the last fsyncDir are kept up to a point and undone after it (a journaling
   * filesystem commits them in order), and each file loses what was written to it since its last fsync, or part of it.
   */
  crash(prng: Prng): string[] {
    const notes: string[] = [];
    const kept = prng.int(0, this.pending.length);
    if (kept < this.pending.length) notes.push(`${this.pending.length - kept} of ${this.pending.length} unsynced directory changes undone`);
    for (const undo of this.pending.slice(kept).reverse()) {
      for (const { name, before } of [...undo].reverse()) {
        if (before === undefined) this.files.delete(name);
        else this.files.set(name, before);
      }
    }
    this.pending = [];
    for (const [name, file] of [...this.files].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const note = file.crash(prng);
      if (note !== null) notes.push(`${name}: ${note}`);
    }
    this.armed = null;
    return notes;
  }

  /** A copy of the files as they stand (tests: a crash at each point of a program, from the same start). */
  clone(): SimDisk {
    const c = new SimDisk();
    for (const [name, file] of this.files) c.files.set(name, file.clone());
    c.pending = this.pending.map((undo) => undo.map(({ name, before }) => ({ name, before: before?.clone() })));
    c.asideSeq = this.asideSeq;
    return c;
  }
}

/** The production store's logic (SegmentLog) over a SimDisk, synchronously, with the simulator's fault hooks. */
export class SimSegmentStore {
  private log: SegmentLog;

  constructor(
    readonly dir: string,
    readonly disk: SimDisk,
  ) {
    this.log = new SegmentLog(dir, (name) => disk.nextAsideName(name));
  }

  /** The real node's load path on the simulated files: validate, repair what a crash left, refuse a corrupt segment. */
  open(): LoadedJournal & { truncated: { file: string; bytes: number; rot: boolean } | null } {
    return runSync(this.log.open(), this.disk);
  }

  /** Runs one op, durably; `fault` fails its first write or fsync as an injected error would. */
  apply(op: DiskOp, fault: SimDisk["armed"] = null): void {
    this.run(this.log.apply(op), fault);
  }

  /** Runs a program of this store's log (a merge's preparation…) to its end. */
  run<T>(program: DiskProgram<T>, fault: SimDisk["armed"] = null): T {
    this.disk.armed = fault;
    try {
      return runSync(program, this.disk);
    } finally {
      this.disk.armed = null;
    }
  }

  get segmentLog(): SegmentLog {
    return this.log;
  }

  /**
   * A crash while `program(log)` runs: it gets through some of its calls (from none to all, evenly: counted first on
   * a copy of the index, without changing the disk), then the disk crashes.
   */
  crashDuring(program: ((log: SegmentLog) => DiskProgram<unknown>) | null, prng: Prng): string {
    if (program === null) return ["idle", ...this.disk.crash(prng)].join("; ");
    const total = this.countCalls(program);
    const done = prng.int(0, total);
    const running = program(this.log);
    let step = running.next();
    let calls = 0;
    let failure: string | null = null;
    try {
      while (step.done !== true && calls < done) {
        calls++;
        step = running.next(this.disk.run(step.value));
      }
    } catch (err) {
      failure = (err as Error).message;
    }
    const notes = this.disk.crash(prng);
    return [`after ${calls} of ${total} calls${failure === null ? "" : ` (${failure})`}`, ...notes].join("; ");
  }

  private countCalls(program: (log: SegmentLog) => DiskProgram<unknown>): number {
    const before = this.disk.calls;
    this.disk.dry = true;
    try {
      runSync(program(this.log.clone()), this.disk);
    } catch {
      // A program that fails part way (a corrupt part of a merge) is counted up to its failure.
    } finally {
      this.disk.dry = false;
    }
    return this.disk.calls - before;
  }

  /** As SegmentStore.read: records from fromTxid to at most toTxid, one segment, bounded (at least one record). */
  read(fromTxid: number, toTxid: number, bytesMax: number, recordsMax: number): { records: Uint8Array; count: number } {
    return runSync(this.log.read(fromTxid, toTxid, bytesMax, recordsMax), this.disk);
  }

  sizes(): Map<number, number> {
    return this.log.sizes();
  }

  /** The record this store serves at txid (header and payload, unchecked), or null: for the invariant checks. */
  recordAt(txid: number): Uint8Array | null {
    const at = this.log.locate(txid);
    if (at === null) return null;
    const file = this.disk.files.get(at.name);
    return file === undefined ? null : file.range(at.start, at.end);
  }

  /** The txid ranges of the finalized segments: for the invariant checks. */
  finalizedRanges(): { startTxid: number; endTxid: number }[] {
    return this.log.segments.filter((s) => !s.inProgress && s.endTxid >= s.startTxid).map(({ startTxid, endTxid }) => ({ startTxid, endTxid }));
  }

  /** Flips one bit inside a record of a finalized segment; null if there is none. */
  flipBit(prng: Prng): string | null {
    const finalized = this.log.segments.filter((s) => !s.inProgress && s.endTxid >= s.startTxid);
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

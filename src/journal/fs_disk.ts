/**
 * The journal directory over node:fs: runs a store program's calls (disk.ts), durable as asked (fsync is
 * fsync or fdatasync, fsyncDir fsyncs the directory). Keeps a file handle open per file written to (the in-progress
 * segment's appends reuse it); a rename or remove closes it. Injected faults (DiskFaults) fail writes and fsyncs as
 * the system calls would.
 *
 * With `inlineAppends` (the journal's segment store), `write` and data-only `fsync` — a batch's append, a truncate —
 * are synchronous system calls on the event loop. Each `fs/promises` call is a trip through libuv's thread pool and
 * back, two event-loop wake-ups: an append (write, then fdatasync) cost four, and on a busy machine each waits its
 * turn on a core, which made the journal node's step + write + fsync 5–20× a bare write + fdatasync (bench/RESULTS.md,
 * issue #13). The node runs its requests one at a time anyway (JournalNode's queue), so the only work the blocked loop
 * holds up is what runs beside that queue: heartbeats (every heartbeatIntervalMs, masked only after
 * journalHeartbeatTimeoutMs — a disk that slow stalls the node's batches too), snapshot transfers and the metrics
 * endpoint. Everything else (full fsyncs, renames, directory fsyncs, a merge's appends) stays asynchronous.
 *
 * With `inlineReads`, a read through a handle this disk holds open — the in-progress segment, which replicas tail and
 * which was just written, so in the page cache — is a synchronous `pread` too: a replica's read after each commit hint
 * held the node's request queue (the next batch waits behind it) for a thread-pool trip and two wake-ups, to copy a few
 * cached bytes (issue #13 P4). Reads of other files (finalized segments, a merge's inputs) stay asynchronous.
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { assert, assertNever } from "../util/assert.js";
import { fsyncDir } from "../util/durable_file.js";
import type { AsyncDisk, DiskCall } from "./disk.js";
import type { DiskFaults } from "./disk_faults.js";

export interface FsDiskOptions {
  /** Told each fsync's duration in seconds (the journal node's metrics). */
  onFsync?: (seconds: number) => void;
  /** `write` and data-only `fsync` as synchronous calls (see above). */
  inlineAppends?: boolean;
  /** Reads through a handle held open (the in-progress segment) as synchronous calls (see above). */
  inlineReads?: boolean;
}

export class FsDisk implements AsyncDisk {
  private readonly handles = new Map<string, fsp.FileHandle>();
  /** Fault injection (tests): the length of a `pause` call. */
  pauseMs = 0;

  constructor(
    readonly dir: string,
    private readonly faults: DiskFaults,
    private readonly options: FsDiskOptions = {},
  ) {}

  async run(c: DiskCall): Promise<unknown> {
    switch (c.call) {
      case "list":
        await fsp.mkdir(this.dir, { recursive: true });
        return (await fsp.readdir(this.dir)).sort();
      case "readFile":
        return await this.readFile(c.name);
      case "size":
        return await fsp.stat(this.path(c.name)).then(
          (stat) => stat.size,
          () => null,
        );
      case "read":
        return await this.read(c.name, c.start, c.length);
      case "create":
        await this.close(c.name);
        this.handles.set(c.name, await fsp.open(this.path(c.name), "w+"));
        return;
      case "append":
        this.faults.check("write", this.path(c.name));
        await fsp.appendFile(this.path(c.name), c.bytes);
        return;
      case "write": {
        this.faults.check("write", this.path(c.name));
        const handle = await this.handle(c.name);
        const bytesWritten = this.options.inlineAppends === true ? fs.writeSync(handle.fd, c.bytes, 0, c.bytes.length, c.at) : (await handle.write(c.bytes, 0, c.bytes.length, c.at)).bytesWritten;
        // The disk's answer, not a broken invariant: a full disk writes what fits (applyOps reports DISK_ERROR).
        if (bytesWritten !== c.bytes.length) throw new Error(`short write to ${c.name}: ${bytesWritten} of ${c.bytes.length} bytes (is the disk full?)`);
        return;
      }
      case "truncate":
        await (await this.handle(c.name)).truncate(c.length);
        return;
      case "fsync": {
        this.faults.check("fsync", this.path(c.name));
        const handle = await this.handle(c.name);
        const startedMs = performance.now();
        if (c.dataOnly && this.options.inlineAppends === true) fs.fdatasyncSync(handle.fd);
        else await (c.dataOnly ? handle.datasync() : handle.sync());
        this.options.onFsync?.((performance.now() - startedMs) / 1000);
        return;
      }
      case "rename":
        await this.close(c.from);
        await this.close(c.to);
        await fsp.rename(this.path(c.from), this.path(c.to));
        return;
      case "remove":
        await this.close(c.name);
        await fsp.rm(this.path(c.name), { force: true });
        return;
      case "fsyncDir":
        await fsyncDir(this.dir);
        return;
      case "pause":
        if (this.pauseMs > 0) await new Promise((r) => setTimeout(r, this.pauseMs));
        return;
      default:
        return assertNever(c, "disk call");
    }
  }

  private path(name: string): string {
    return path.join(this.dir, name);
  }

  private async readFile(name: string): Promise<Uint8Array | null> {
    try {
      return await fsp.readFile(this.path(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  private async read(name: string, start: number, length: number): Promise<Uint8Array> {
    const buf = Buffer.allocUnsafe(length);
    const cached = this.handles.get(name);
    if (cached !== undefined && this.options.inlineReads === true) {
      const bytesRead = fs.readSync(cached.fd, buf, 0, length, start);
      assert(bytesRead === length, `short read from ${this.path(name)}`);
      return buf;
    }
    const handle = cached ?? (await fsp.open(this.path(name), "r"));
    try {
      const { bytesRead } = await handle.read(buf, 0, length, start);
      assert(bytesRead === length, `short read from ${this.path(name)}`);
    } finally {
      if (handle !== cached) await handle.close();
    }
    return buf;
  }

  private async handle(name: string): Promise<fsp.FileHandle> {
    let handle = this.handles.get(name);
    if (handle === undefined) {
      handle = await fsp.open(this.path(name), "r+");
      this.handles.set(name, handle);
    }
    return handle;
  }

  private async close(name: string): Promise<void> {
    const handle = this.handles.get(name);
    if (handle === undefined) return;
    this.handles.delete(name);
    await handle.close();
  }

  async closeAll(): Promise<void> {
    for (const name of [...this.handles.keys()]) await this.close(name).catch(() => {});
  }
}

/**
 * Loads an RDB into a running redis-server without restarting it, by playing the master of a full resync:
 *
 *   1. listen on 127.0.0.1:<port the OS picks> and send the target `REPLICAOF 127.0.0.1 <port>`;
 *   2. answer the replica's handshake (Redis 7.0 syncWithMaster: PING → +PONG, [AUTH →] +OK, REPLCONF listening-port /
 *      capa eof capa psync2 → +OK, PSYNC <cached replid> <offset> or PSYNC ? -1 → +FULLRESYNC <40 hex> 0);
 *   3. send `$<bytes>\r\n` and the RDB from an AsyncIterable, never more than `sendBufferBytesMax` queued on the
 *      socket (a 1 GB RDB is never held in memory);
 *   4. wait until INFO says master_link_status:up and loading:0 (the target wrote the payload to a temp file, flushed
 *      its old data set and loaded the file; replication.c readSyncBulkPayload), then `REPLICAOF NO ONE`;
 *   5. if the target runs with appendonly yes, wait for the AOF rewrite Redis starts after a sync
 *      (restartAOFAfterSYNC): until it ends, the AOF on disk still holds the old data set, and a restart would load it.
 *
 * The target's previous contents are replaced. A failure (source error or short, corrupt RDB, the target closing the
 * link, a timeout) ends the link before the last byte, so the target keeps its old data (it only flushes once the
 * whole payload is in), and `REPLICAOF NO ONE` is sent in a finally: the target is a master again either way.
 *
 * The RDB's own checksum (CRC-64 trailer) is verified while streaming and the trailer is held back until it matches:
 * Redis 7.0 exits (rdbReportError) when it loads a corrupt RDB from disk, so a bad file must never reach it whole.
 * That protection needs the target to load from disk, Redis's default (`repl-diskless-load disabled`); other settings
 * parse while receiving and are refused.
 *
 * After the sync the target sends REPLCONF ACK every second: read and ignored. A master with replicas of its own
 * (the qjm master's Redis has its replication link) drops them on REPLICAOF: the caller reconnects them.
 */
import net from "node:net";
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { listenOnLoopback } from "../process/ports.js";
import { assert } from "../util/assert.js";
import { waitUntil } from "../util/waiters.js";
import { transferProgress, type TransferProgress } from "../util/progress.js";
import { Crc64, RDB_CHECKSUM_BYTES, trailerChecksum } from "./rdb_checksum.js";
import { configGet, infoNumber, pollInfo, readInfo } from "./redis_info.js";
import { RespParser, RespProtocolError, type RespValue } from "./resp_parser.js";
import { skipKeepaliveNewlines } from "./feeder.js";

export interface RdbLoadOptions {
  /** Exact size of the RDB the source yields; announced to the target up front ($<bytes>). */
  bytes: number;
  /** From REPLICAOF until the target asked for the full sync (PSYNC). */
  handshakeTimeoutMs: number;
  /** Longest wait for the source's next chunk, or for the target to take queued bytes. */
  stallTimeoutMs: number;
  /** From the last byte sent until the target loaded the RDB, and again for its AOF rewrite. */
  loadTimeoutMs: number;
  /** Pause between INFO reads while the target loads. */
  pollMs: number;
  /** Bytes queued on the socket at most before the next chunk is read from the source. */
  sendBufferBytesMax?: number;
  /** Least time between two progress reports during the transfer (the first and the last are always reported). */
  progressIntervalMs?: number;
  onProgress?: (progress: RdbLoadProgress) => void;
}

export interface RdbLoadProgress extends TransferProgress {
  phase: "transfer" | "loading" | "loaded";
}

export interface RdbLoadResult {
  bytes: number;
  /** First byte to last byte sent. */
  transferMs: number;
  /** Last byte sent until the target reported the data set loaded. */
  loadMs: number;
  /** Until the target's AOF rewrite ended (0 without appendonly). */
  aofRewriteMs: number;
}

/** Default bound of bytes queued on the socket towards the target. */
export const RDB_SEND_BUFFER_BYTES_MAX = 4 * 1024 * 1024;
export const RDB_PROGRESS_INTERVAL_MS = 1000;
/** Bound of one command from the replica (its longest, REPLCONF capa … or PSYNC <replid> <offset>, is under 100 bytes). */
const REPLICA_COMMAND_BYTES_MAX = 4096;
/** An RDB starts with this magic (then the format version as 4 ASCII digits); anything else would make the target exit when it loads it. */
export const RDB_MAGIC = Buffer.from("REDIS");

export type RdbLoadErrorReason =
  /** The target refused a command (REPLICAOF, INFO, CONFIG) or its connection failed. */
  | "redis"
  /** The target's settings do not allow a safe load (repl-diskless-load other than disabled). */
  | "unsupported"
  /** The target closed the replication link (it rejected the RDB or died); see its log. */
  | "link_closed"
  /** The replica sent something that is not RESP, or the handshake went wrong. */
  | "protocol"
  /** The source threw. */
  | "source"
  /** The source yielded fewer or more bytes than announced. */
  | "source_size"
  /** The RDB's magic or checksum is wrong: it was not sent whole. */
  | "corrupt"
  | "timeout"
  /** The target loaded the data but its AOF rewrite failed: the data set is in memory, not yet durable. */
  | "aof_rewrite_failed";

export class RdbLoadError extends QjmError {
  override name = "RdbLoadError";
  constructor(
    readonly reason: RdbLoadErrorReason,
    message: string,
    options?: ErrorOptions,
  ) {
    super(reason === "timeout" ? ErrorCode.TIMEOUT : ErrorCode.INTERNAL, `RDB load: ${message}`, options);
  }
}


function loadProgress(phase: RdbLoadProgress["phase"], bytes: number, totalBytes: number, elapsedMs: number): RdbLoadProgress {
  return { phase, ...transferProgress(bytes, totalBytes, elapsedMs) };
}

/** Replaces the target's data set with the RDB `source` yields (exactly `options.bytes` bytes). See the file's comment. */
export async function loadRdb(target: Redis, source: AsyncIterable<Uint8Array>, options: RdbLoadOptions): Promise<RdbLoadResult> {
  assert(Number.isSafeInteger(options.bytes) && options.bytes > RDB_MAGIC.length + RDB_CHECKSUM_BYTES, "an RDB has a magic and a checksum");
  assert(options.handshakeTimeoutMs > 0 && options.stallTimeoutMs > 0 && options.loadTimeoutMs > 0 && options.pollMs > 0, "load bounds must be positive");
  const disklessLoad = await redisCall(() => configGet(target, "repl-diskless-load"), "CONFIG GET repl-diskless-load");
  if (disklessLoad !== undefined && disklessLoad !== "disabled") {
    throw new RdbLoadError("unsupported", `the target runs with repl-diskless-load ${disklessLoad}: a bad RDB could not be stopped before it parses it`);
  }
  const appendonly = (await redisCall(() => configGet(target, "appendonly"), "CONFIG GET appendonly")) === "yes";
  const rewritesBefore = infoNumber(await redisCall(() => readInfo(target, "persistence"), "INFO persistence"), "aof_rewrites");

  const master = await FakeMaster.listen();
  let detached = false;
  try {
    await redisCall(() => target.call("REPLICAOF", "127.0.0.1", String(master.port)), "REPLICAOF");
    await master.awaitSyncRequest(options.handshakeTimeoutMs);
    master.sendPayloadHeader(options.bytes);

    const transferStart = Date.now();
    await streamRdb(master, source, options, transferStart);
    const transferEnd = Date.now();
    options.onProgress?.(loadProgress("loading", options.bytes, options.bytes, transferEnd - transferStart));

    await waitLoaded(target, master, options);
    const loadEnd = Date.now();
    options.onProgress?.(loadProgress("loaded", options.bytes, options.bytes, transferEnd - transferStart));
    await redisCall(() => target.call("REPLICAOF", "NO", "ONE"), "REPLICAOF NO ONE");
    detached = true;
    await master.close();

    if (appendonly) await waitAofRewritten(target, rewritesBefore, options);
    const aofRewriteMs = appendonly ? Date.now() - loadEnd : 0;
    return { bytes: options.bytes, transferMs: transferEnd - transferStart, loadMs: loadEnd - transferEnd, aofRewriteMs };
  } finally {
    // Before REPLICAOF NO ONE: the link ends mid-payload, so the target drops the partial file and keeps its data.
    await master.close();
    if (!detached) await target.call("REPLICAOF", "NO", "ONE").catch(() => {});
  }
}

/** Where streamRdb sends the payload: one replication link (the loader's FakeMaster, or the Feeder's). */
export interface RdbSink {
  /** Writes `bytes`; waits while more than `bufferMax` bytes are queued. */
  send(bytes: Uint8Array, bufferMax: number, stallTimeoutMs: number): Promise<void>;
  /** Throws the link's failure, if it failed. */
  assertOpen(): void;
}

/** Sends exactly `options.bytes` of the source, checking the magic and the checksum before the trailer goes out. */
export async function streamRdb(
  master: RdbSink,
  source: AsyncIterable<Uint8Array>,
  options: Pick<RdbLoadOptions, "bytes" | "stallTimeoutMs" | "sendBufferBytesMax" | "progressIntervalMs" | "onProgress">,
  transferStart: number,
): Promise<void> {
  const bufferMax = options.sendBufferBytesMax ?? RDB_SEND_BUFFER_BYTES_MAX;
  const progressEveryMs = options.progressIntervalMs ?? RDB_PROGRESS_INTERVAL_MS;
  const bodyBytes = options.bytes - RDB_CHECKSUM_BYTES;
  const crc = new Crc64();
  const trailer = Buffer.alloc(RDB_CHECKSUM_BYTES);
  const magic = Buffer.alloc(RDB_MAGIC.length);
  let received = 0;
  let sent = 0;
  let lastReport = Number.NEGATIVE_INFINITY;

  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const next = await withTimeout(iterator.next(), options.stallTimeoutMs, "the source's next chunk", master).catch((err: unknown) => {
        throw err instanceof RdbLoadError ? err : new RdbLoadError("source", `the source failed after ${received} bytes: ${describe(err)}`, { cause: err });
      });
      if (next.done === true) {
        finished = true;
        break;
      }
      const chunk = next.value;
      if (received + chunk.length > options.bytes) throw new RdbLoadError("source_size", `the source yields more than the announced ${options.bytes} bytes`);
      if (received < magic.length) magic.set(chunk.subarray(0, magic.length - received), received);
      // Body bytes go out at once; the trailer's bytes are held until the whole body's checksum is known.
      const body = chunk.subarray(0, Math.max(0, Math.min(chunk.length, bodyBytes - received)));
      trailer.set(chunk.subarray(body.length), Math.max(0, received - bodyBytes));
      received += chunk.length;
      if (received >= magic.length && !magic.equals(RDB_MAGIC)) throw new RdbLoadError("corrupt", `the source is not an RDB (starts with ${JSON.stringify(magic.toString("latin1"))})`);
      if (body.length > 0) {
        crc.update(body);
        await master.send(body, bufferMax, options.stallTimeoutMs);
        sent += body.length;
      }
      const now = Date.now();
      if (options.onProgress !== undefined && now - lastReport >= progressEveryMs) {
        lastReport = now;
        options.onProgress(loadProgress("transfer", sent, options.bytes, now - transferStart));
      }
    }
  } finally {
    // A failed transfer releases the source (closes its file or stream). Not awaited: a source stuck in its own
    // await (a stall) settles its return() only after that await, which may be never.
    if (!finished) void Promise.resolve(iterator.return?.()).catch(() => {});
  }
  if (received !== options.bytes) throw new RdbLoadError("source_size", `the source ended after ${received} of ${options.bytes} bytes`);
  const expected = trailerChecksum(trailer);
  // 0: written by a Redis with `rdbchecksum no`; Redis skips the check too.
  if (expected !== 0n && expected !== crc.value) {
    throw new RdbLoadError("corrupt", `checksum mismatch: the RDB's trailer says ${expected.toString(16)}, its bytes give ${crc.value.toString(16)}`);
  }
  await master.send(trailer, bufferMax, options.stallTimeoutMs);
  master.assertOpen();
}

/** Until the target has the data set: its link to us is up (set only after rdbLoad returned) and it is not loading. */
async function waitLoaded(target: Redis, master: FakeMaster, options: RdbLoadOptions): Promise<void> {
  const loaded = await redisCall(
    () =>
      pollInfo(target, ["replication", "persistence"], { pollMs: options.pollMs, timeoutMs: options.loadTimeoutMs }, (info) => {
        master.assertOpen();
        return info.get("master_link_status") === "up" && info.get("loading") === "0" && infoNumber(info, "master_port") === master.port ? true : undefined;
      }),
    "INFO while loading",
  );
  if (loaded === undefined) throw new RdbLoadError("timeout", `the target did not load the RDB within ${options.loadTimeoutMs} ms after the last byte`);
}

/** Until the AOF rewrite started after the sync has ended; a failed one is reported, not waited out. */
async function waitAofRewritten(target: Redis, rewritesBefore: number, options: RdbLoadOptions): Promise<void> {
  const status = await redisCall(
    () =>
      pollInfo(target, ["persistence"], { pollMs: options.pollMs, timeoutMs: options.loadTimeoutMs }, (info) => {
        const idle = info.get("aof_rewrite_in_progress") === "0" && info.get("aof_rewrite_scheduled") === "0";
        return infoNumber(info, "aof_rewrites") > rewritesBefore && idle ? info.get("aof_last_bgrewrite_status") : undefined;
      }),
    "INFO while the AOF is rewritten",
  );
  if (status === undefined) throw new RdbLoadError("timeout", `the target's AOF rewrite after the load did not end within ${options.loadTimeoutMs} ms`);
  if (status !== "ok") throw new RdbLoadError("aof_rewrite_failed", `the target's AOF rewrite after the load failed (aof_last_bgrewrite_status:${status}); see its log`);
}

/**
 * The master end of one replication link: accepts the first connection only, answers the handshake, and sends the
 * payload with bounded queueing. Replies after the sync (REPLCONF ACK) are parsed and dropped.
 */
class FakeMaster implements RdbSink {
  private socket: net.Socket | undefined;
  /** The replica only sends short commands (PING, REPLCONF, PSYNC, REPLCONF ACK): anything long is not a replica. */
  private readonly parser = new RespParser({ bulkBytesMax: REPLICA_COMMAND_BYTES_MAX, lineBytesMax: REPLICA_COMMAND_BYTES_MAX, arrayItemsMax: 16 });
  private syncRequested = false;
  private closedReason: RdbLoadError | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {
    server.on("connection", (socket) => this.onConnection(socket));
  }

  static async listen(): Promise<FakeMaster> {
    const { server, port } = await listenOnLoopback();
    return new FakeMaster(server, port);
  }

  /** Resolves once the replica asked for a sync (PSYNC or SYNC). */
  async awaitSyncRequest(timeoutMs: number): Promise<void> {
    await this.waitFor(() => this.syncRequested, timeoutMs, "the target to ask for a sync (PSYNC)");
  }

  sendPayloadHeader(bytes: number): void {
    this.assertOpen();
    assert(this.socket !== undefined && this.syncRequested, "the payload follows the sync request");
    this.socket.write(`$${bytes}\r\n`);
  }

  /** Writes `bytes`; waits while more than `bufferMax` bytes are queued on the socket. */
  async send(bytes: Uint8Array, bufferMax: number, stallTimeoutMs: number): Promise<void> {
    this.assertOpen();
    const socket = this.socket;
    assert(socket !== undefined, "a payload goes to a connected replica");
    socket.write(bytes);
    if (socket.writableLength > bufferMax) {
      await this.waitFor(() => socket.writableLength <= bufferMax, stallTimeoutMs, "the target to take queued bytes");
    }
  }

  assertOpen(): void {
    if (this.closedReason !== undefined) throw this.closedReason;
  }

  async close(): Promise<void> {
    this.closedReason ??= new RdbLoadError("link_closed", "the link was closed by the loader");
    this.socket?.destroy();
    this.notify();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(socket: net.Socket): void {
    // One link per load: a second connection (the target retrying after a failed sync) is refused.
    if (this.socket !== undefined || this.closedReason !== undefined) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.notify());
    socket.on("error", (err) => this.fail(new RdbLoadError("link_closed", `replication link: ${err.message}`, { cause: err })));
    socket.on("close", () => this.fail(new RdbLoadError("link_closed", "the target closed the replication link (it refused the RDB, or failed; see its log)")));
  }

  private onData(chunk: Buffer): void {
    try {
      // A loading replica's keepalive newlines are not RESP (see skipKeepaliveNewlines).
      this.parser.push(skipKeepaliveNewlines(this.parser, chunk));
      for (let frame = this.parser.next(); frame !== undefined; frame = this.parser.next()) this.onCommand(frame.value);
    } catch (err) {
      this.fail(err instanceof RdbLoadError ? err : new RdbLoadError("protocol", `the target's replication traffic: ${describe(err)}`, { cause: err instanceof RespProtocolError ? err : undefined }));
    }
  }

  private onCommand(value: RespValue): void {
    const args = value.type === "array" && value.items !== null ? value.items.map((v) => (v.type === "bulk" && v.value !== null ? v.value.toString("latin1") : "")) : [];
    const name = (args[0] ?? "").toUpperCase();
    const socket = this.socket;
    assert(socket !== undefined, "commands come from the connected replica");
    if (this.syncRequested) return; // REPLCONF ACK <offset> after the sync: nothing to answer.
    if (name === "PING") socket.write("+PONG\r\n");
    else if (name === "AUTH" || name === "REPLCONF") socket.write("+OK\r\n");
    else if (name === "PSYNC" || name === "SYNC") {
      // Whatever history the replica names (it caches its own replid when it was a master), a full resync follows.
      if (name === "PSYNC") socket.write(`+FULLRESYNC ${randomBytes(20).toString("hex")} 0\r\n`);
      this.syncRequested = true;
      this.notify();
    } else throw new RdbLoadError("protocol", `unexpected command in the replication handshake: ${name || value.type}`);
  }

  private fail(err: RdbLoadError): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = err;
    this.socket?.destroy();
    this.notify();
  }

  private notify(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /** Waits for `ready()` (re-checked on every socket event: sync request, drain, failure), the link's failure, or the timeout. */
  private async waitFor(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (ready()) return;
    this.assertOpen();
    await waitUntil(this.waiters, ready, () => this.closedReason, timeoutMs, () => new RdbLoadError("timeout", `waited ${timeoutMs} ms for ${what}`));
  }
}

/** `promise`, or an RdbLoadError after `timeoutMs` or as soon as the link fails. */
async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string, master: RdbSink): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new RdbLoadError("timeout", `waited ${timeoutMs} ms for ${what}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    master.assertOpen();
  }
}

/** Runs a call to the target; a failure becomes an RdbLoadError naming `what` (ours pass through). */
async function redisCall<T>(call: () => Promise<T>, what: string): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof RdbLoadError) throw err;
    throw new RdbLoadError("redis", `${what}: ${describe(err)}`, { cause: err });
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

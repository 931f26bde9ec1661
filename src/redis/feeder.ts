/**
 * The feeder: the in-process master of a Redis that replays the journal (a replica's Redis for the actor's whole life,
 * the master's fresh Redis during its rebuild). Why a replication link and not MULTI/EXEC from a client: a Redis
 * replica never expires keys by its own clock (it waits for its master's DEL) and keeps a key that `SET … PXAT <past>`
 * writes, so effects replayed late leave exactly the keyspace they left live, TTLs included (issue #10 class 2). And
 * offsets make it exactly once: Redis advances its replication offset only past whole commands (a MULTI block only
 * once its EXEC ran), reports it in REPLCONF ACK, and after a dropped link asks to continue from it; no client library
 * ever resends a transaction whose reply was lost (class 7).
 *
 * Protocol (Redis 7.0 replication.c, checked against 7.0.15):
 *  - handshake: PING → +PONG, AUTH / REPLCONF → +OK, then PSYNC <replid> <offset> or PSYNC ? -1;
 *  - plan "continue" (keep the data set the Redis holds): PSYNC <replid> <offset> → +CONTINUE <our replid>; the stream
 *    goes on from the Redis's own offset. PSYNC ? -1 (a Redis started from its AOF has no cached master) is left
 *    unanswered: `repoint` makes the Redis synthesize a cached master from itself (MULTI, REPLICAOF NO ONE, REPLICAOF
 *    <feeder>, EXEC: atomic, so it is never a master whose clock could expire a key between the two);
 *  - plan "full": +FULLRESYNC <replid> 0, $<bytes> and the RDB (magic and checksum checked before its trailer goes
 *    out, as the RDB loader does), then the plan becomes "continue";
 *  - live: SELECT 0, then runs of commands, each followed by REPLCONF GETACK *; REPLCONF ACK <offset> says what ran.
 *
 * One link at a time: a new connection (the Redis reconnecting) replaces the old one.
 */
import net from "node:net";
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { listenOnLoopback } from "../process/ports.js";
import { waitUntil } from "../util/waiters.js";
import { RDB_SEND_BUFFER_BYTES_MAX, streamRdb, type RdbLoadProgress, type RdbSink } from "./rdb_loader.js";
import { RespParser, encodeCommand, type RespValue } from "./resp_parser.js";

export interface FeederOptions {
  /** For a (re)pointed Redis to ask for a sync and, after a full sync, to load the RDB; for the ACK after a run. */
  syncTimeoutMs: number;
  /** From the RDB's last byte until the Redis loaded it. */
  loadTimeoutMs: number;
  /** Longest wait for the Redis to take queued bytes. */
  stallTimeoutMs: number;
  /** A PING goes out after this long without traffic (Redis drops a master silent for repl-timeout, 60 s). */
  keepaliveMs: number;
  sendBufferBytesMax?: number;
}

export type SyncPlan =
  | { kind: "continue" }
  | { kind: "full"; bytes: number; open: () => AsyncIterable<Uint8Array>; onProgress?: (p: RdbLoadProgress) => void };

export type FeederErrorReason = "link_closed" | "timeout" | "protocol" | "redis";

export class FeederError extends QjmError {
  override name = "FeederError";
  constructor(
    readonly reason: FeederErrorReason,
    message: string,
    options?: ErrorOptions,
  ) {
    super(reason === "timeout" ? ErrorCode.TIMEOUT : ErrorCode.INTERNAL, `feeder: ${message}`, options);
  }
}

/** The replica only sends short commands (PING, REPLCONF, PSYNC, REPLCONF ACK). */
const REPLICA_COMMAND_BYTES_MAX = 4096;
const GETACK = encodeCommand(["REPLCONF", "GETACK", "*"]);
const SELECT0 = encodeCommand(["SELECT", "0"]);
const PING = encodeCommand(["PING"]);

interface Link {
  socket: net.Socket;
  parser: RespParser;
  /** held: asked PSYNC ? -1 under plan "continue" (waits for a repoint); loading: full sync under way. */
  state: "handshake" | "held" | "loading" | "live";
  failed: FeederError | undefined;
}

export class Feeder {
  readonly replid = randomBytes(20).toString("hex");
  private link: Link | null = null;
  private plan: SyncPlan = { kind: "continue" };
  /** Offset, in the Redis's replication offset space, just past the last byte sent on the live link. */
  private offset = 0;
  private acked = -1;
  /** Why the last full sync failed (cleared by the next plan). */
  private fullSyncError: FeederError | null = null;
  private readonly waiters = new Set<() => void>();
  private readonly keepalive: NodeJS.Timeout;
  private lastWriteMs = Date.now();
  private sending = false;
  /** The run in flight: the offset its ACK must pass, and whether an early ACK already got its PING. */
  private awaiting: { end: number; pinged: boolean } | null = null;
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly options: FeederOptions,
  ) {
    server.on("connection", (socket) => this.onConnection(socket));
    this.keepalive = setInterval(() => this.onKeepalive(), Math.max(50, Math.floor(options.keepaliveMs / 2)));
    this.keepalive.unref();
  }

  static async listen(options: FeederOptions): Promise<Feeder> {
    const { server, port } = await listenOnLoopback();
    return new Feeder(server, port, options);
  }

  /** Live: the Redis holds the data set we stream to, and takes runs. */
  get live(): boolean {
    return this.link?.state === "live";
  }

  /** What the next sync request gets. A full plan ends the current link so that the Redis asks again. */
  setPlan(plan: SyncPlan): void {
    this.plan = plan;
    this.fullSyncError = null;
  }

  /**
   * Until a link is live under the current plan: repoints the Redis unless a sync is already under way on a link that
   * suits the plan. Throws why a full sync failed, or a timeout.
   */
  async sync(client: Redis): Promise<void> {
    const current = this.link;
    const state = current?.state;
    const reuse = state === "loading" || (state === "live" && this.plan.kind !== "full");
    if (!reuse) await repoint(client, this.port);
    // After a repoint, the link it replaced may look live until its socket's close event comes: wait for a new one.
    const replaced = reuse ? null : current;
    await this.waitFor(() => this.live && this.link !== replaced, this.options.syncTimeoutMs, "the Redis to sync", () => this.fullSyncError ?? undefined);
  }

  /**
   * Sends one run of commands and waits for the Redis's ACK past it: then all of it ran (a MULTI block counts only
   * once its EXEC ran). Throws if the link drops first; the caller reads what the Redis kept from its marker.
   * `onWritten` is told, once the run's bytes are written, the replication offset just past its last command.
   */
  async sendRun(commands: readonly (readonly (string | Uint8Array)[])[], onWritten?: (end: number) => void): Promise<void> {
    const link = this.link;
    if (link === null || link.state !== "live") throw new FeederError("link_closed", "no live link to the Redis");
    this.sending = true;
    try {
      const bytes = Buffer.concat([...commands.map((c) => encodeCommand(c)), GETACK]);
      const end = this.offset + bytes.length - GETACK.length;
      this.awaiting = { end, pinged: false };
      await this.write(link, bytes);
      this.offset += bytes.length;
      onWritten?.(end);
      await this.waitFor(() => this.acked >= end, this.options.syncTimeoutMs, "the Redis's ACK after a run", () => link.failed);
    } catch (err) {
      // The run's bytes may still be on their way through a stalled Redis: this link ends, so that what Redis kept is
      // read only once it dropped the link (a relink, or the repoint's REPLICAOF NO ONE), never while the run may
      // still run after the read (review s25).
      this.fail(link, err instanceof FeederError ? err : new FeederError("link_closed", (err as Error).message, { cause: err }));
      throw err;
    } finally {
      this.sending = false;
      this.awaiting = null;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.keepalive);
    if (this.link !== null) this.fail(this.link, new FeederError("link_closed", "the feeder was closed"));
    this.notify();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (this.link !== null) this.fail(this.link, new FeederError("link_closed", "the Redis reconnected"));
    const parser = new RespParser({ bulkBytesMax: REPLICA_COMMAND_BYTES_MAX, lineBytesMax: REPLICA_COMMAND_BYTES_MAX, arrayItemsMax: 16 });
    const link: Link = { socket, parser, state: "handshake", failed: undefined };
    this.link = link;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(link, chunk));
    socket.on("drain", () => this.notify());
    socket.on("error", (err) => this.fail(link, new FeederError("link_closed", `replication link: ${err.message}`, { cause: err })));
    socket.on("close", () => this.fail(link, new FeederError("link_closed", "the Redis closed the replication link")));
  }

  private onData(link: Link, chunk: Buffer): void {
    try {
      link.parser.push(skipKeepaliveNewlines(link.parser, chunk));
      for (let frame = link.parser.next(); frame !== undefined; frame = link.parser.next()) this.onCommand(link, frame.value);
    } catch (err) {
      this.fail(link, err instanceof FeederError ? err : new FeederError("protocol", `the Redis's replication traffic: ${(err as Error).message}`, { cause: err }));
    }
  }

  private onCommand(link: Link, value: RespValue): void {
    const args = value.type === "array" && value.items !== null ? value.items.map((v) => (v.type === "bulk" && v.value !== null ? v.value.toString("latin1") : "")) : [];
    const name = (args[0] ?? "").toUpperCase();
    if (link.state !== "handshake") {
      // After the sync, only REPLCONF ACK <offset>.
      if (name === "REPLCONF" && (args[1] ?? "").toUpperCase() === "ACK" && link === this.link && link.state !== "held") {
        const acked = Number(args[2]);
        if (Number.isSafeInteger(acked)) this.acked = Math.max(this.acked, acked);
        this.answerEarlyAck(link);
        this.notify();
      }
      return;
    }
    if (name === "PING") link.socket.write("+PONG\r\n");
    else if (name === "AUTH" || name === "REPLCONF") link.socket.write("+OK\r\n");
    else if (name === "PSYNC" || name === "SYNC") this.onSyncRequest(link, name === "PSYNC" ? args[1] ?? "?" : "?", Number(args[2]));
    else throw new FeederError("protocol", `unexpected command in the replication handshake: ${name || value.type}`);
  }

  /**
   * An ACK short of the run in flight (the one the Redis sends every second on its own) gets a PING back, once per run.
   * The Redis's link to its master does not disable Nagle's algorithm: with that ACK still unacknowledged by TCP, it holds
   * the ACK our GETACK asked for until this host's delayed ACK of the first one (40 ms on Linux) — a run waited 40–50
   * ms about once a second, the replica lag's whole p99 (issue #13 P4). The PING's segment carries TCP's ACK at once.
   * On the stream it is a command the Redis runs, as the keepalive's is; it comes after the whole run, never inside it.
   */
  private answerEarlyAck(link: Link): void {
    const a = this.awaiting;
    if (a === null || a.pinged || this.acked >= a.end || link.state !== "live") return;
    a.pinged = true;
    link.socket.write(PING);
    this.offset += PING.length;
    this.lastWriteMs = Date.now();
  }

  private onSyncRequest(link: Link, replid: string, offset: number): void {
    const plan = this.plan;
    if (plan.kind === "full") {
      link.state = "loading";
      link.socket.write(`+FULLRESYNC ${this.replid} 0\r\n`);
      void this.fullSync(link, plan);
      return;
    }
    // No history named (or none we can continue): wait for `repoint`, which makes the Redis name its own.
    if (replid === "?" || !Number.isSafeInteger(offset) || offset < 1) {
      link.state = "held";
      return;
    }
    link.socket.write(`+CONTINUE ${this.replid}\r\n`);
    this.goLive(link, offset - 1);
  }

  /** The stream starts at `offset` (what the Redis holds); it is the Redis's master from now on. */
  private goLive(link: Link, offset: number): void {
    link.state = "live";
    this.offset = offset;
    this.acked = offset;
    link.socket.write(SELECT0);
    this.offset += SELECT0.length;
    this.lastWriteMs = Date.now();
    this.notify();
  }

  private async fullSync(link: Link, plan: Extract<SyncPlan, { kind: "full" }>): Promise<void> {
    try {
      link.socket.write(`$${plan.bytes}\r\n`);
      const sink: RdbSink = { send: (bytes) => this.write(link, bytes), assertOpen: () => this.assertOpen(link) };
      await streamRdb(sink, plan.open(), { bytes: plan.bytes, stallTimeoutMs: this.options.stallTimeoutMs, onProgress: plan.onProgress }, Date.now());
      // The Redis answers the GETACK only once it loaded the RDB; the stream's offsets start at 0 after it.
      this.acked = -1;
      link.socket.write(SELECT0);
      link.socket.write(GETACK);
      await this.waitFor(() => this.link === link && this.acked >= SELECT0.length, this.options.loadTimeoutMs, "the Redis to load the RDB", () => link.failed);
      link.state = "live";
      this.offset = SELECT0.length + GETACK.length;
      this.plan = { kind: "continue" };
      this.lastWriteMs = Date.now();
      this.notify();
    } catch (err) {
      const failure = err instanceof FeederError ? err : new FeederError("link_closed", `full sync: ${(err as Error).message}`, { cause: err });
      this.fullSyncError = failure;
      this.fail(link, failure);
    }
  }

  private assertOpen(link: Link): void {
    if (link.failed !== undefined) throw link.failed;
  }

  /** Writes `bytes` on the link; waits while more than the bound is queued on the socket. */
  private async write(link: Link, bytes: Uint8Array): Promise<void> {
    this.assertOpen(link);
    link.socket.write(bytes);
    this.lastWriteMs = Date.now();
    const bufferMax = this.options.sendBufferBytesMax ?? RDB_SEND_BUFFER_BYTES_MAX;
    if (link.socket.writableLength > bufferMax) {
      await this.waitFor(() => link.socket.writableLength <= bufferMax, this.options.stallTimeoutMs, "the Redis to take queued bytes", () => link.failed);
    }
  }

  private onKeepalive(): void {
    const link = this.link;
    if (link === null || link.state !== "live" || this.sending || Date.now() - this.lastWriteMs < this.options.keepaliveMs) return;
    link.socket.write(PING);
    this.offset += PING.length;
    this.lastWriteMs = Date.now();
  }

  private fail(link: Link, err: FeederError): void {
    if (link.failed !== undefined) return;
    link.failed = err;
    link.socket.destroy();
    if (this.link === link) this.link = null;
    this.notify();
  }

  private notify(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /** Waits for `ready()` (re-checked on every link event), a failure `failed()` names, or the timeout. */
  private async waitFor(ready: () => boolean, timeoutMs: number, what: string, failed: () => FeederError | undefined): Promise<void> {
    if (ready()) return;
    const early = failed();
    if (early !== undefined) throw early;
    const closed = (): FeederError | undefined => failed() ?? (this.closed ? new FeederError("link_closed", "the feeder was closed") : undefined);
    await waitUntil(this.waiters, ready, closed, timeoutMs, () => new FeederError("timeout", `waited ${timeoutMs} ms for ${what}`));
  }
}

/**
 * A replica loading the RDB sends its master a bare "\n" now and then (replicationSendNewlineToMaster) to show it is
 * alive: not RESP. It only comes between commands, so newlines where a command would start are dropped.
 */
export function skipKeepaliveNewlines(parser: RespParser, chunk: Buffer): Buffer {
  if (parser.pendingBytes !== 0) return chunk;
  let i = 0;
  while (i < chunk.length && chunk[i] === 0x0a) i++;
  return i === 0 ? chunk : chunk.subarray(i);
}

/**
 * Makes `client`'s Redis (re)connect to the feeder on `port` at once, naming its own history (so that a "continue"
 * plan keeps its data): REPLICAOF NO ONE and REPLICAOF in one transaction, so no event loop turn runs while it is a
 * master (no key expires by its clock, no client writes).
 */
export async function repoint(client: Redis, port: number): Promise<void> {
  const results = await client.multi().call("REPLICAOF", "NO", "ONE").call("REPLICAOF", "127.0.0.1", String(port)).exec();
  const failure = results === null ? new Error("transaction aborted") : results.find(([err]) => err !== null)?.[0];
  if (failure) throw new FeederError("redis", `REPLICAOF the feeder: ${failure.message}`);
}

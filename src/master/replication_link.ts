/**
 * The master's replication link to its own redis-server: it connects as a replica would, so the master sees
 * exactly the effects Redis propagates (SET … PXAT instead of EX, SREM instead of SPOP, script effects, expiry
 * DELs) and journals those rather than the client's commands.
 *
 * API (an EventEmitter; listeners are called synchronously, in stream order, from the socket callback):
 *   const link = new ReplicationLink({ port });          // connects at once
 *   link.on("command", ({ args, offset }) => …);         // every command of the stream after the RDB
 *   link.on("error", (err: ReplicationLinkError) => …);   // at most once; the link is dead afterwards
 *   const info = await link.ready;                        // RDB skipped, stream live ({ replid, initialOffset })
 *   const err = await link.done;                          // the ReplicationLinkError, or null after close()
 *   await link.close();
 *
 * Attach "command" listeners before awaiting `ready`: commands that arrived in the RDB's last chunk are delivered
 * synchronously, before `ready`'s continuation runs. An ACK reports the offset of what was delivered, not of what
 * the caller has journaled (Redis only uses it for WAIT and its replica timeout; the master uses neither).
 *
 * "error" is only emitted when a listener is attached (an unheard "error" would throw from the socket callback);
 * `done` always carries the outcome, and `ready` rejects if the link fails before it is live.
 *
 * Handshake: [AUTH <password>,] PING, REPLCONF listening-port <our local port>, REPLCONF capa eof capa psync2, PSYNC ? -1 → +FULLRESYNC
 * <replid> <offset>; then the RDB, in either form ($<len>\r\n<bytes> or diskless $EOF:<mark>\r\n…<mark>), is skipped
 * chunk by chunk and never held. Then REPLCONF ACK <offset> is sent at once (after a diskless sync Redis sends
 * nothing before the first ACK), every STREAM_START_ACK_MS until the stream shows, every `replAckIntervalMs`, and on
 * every REPLCONF GETACK.
 */
import type { TurnShare } from "../util/turn_budget.js";
import net from "node:net";
import { EventEmitter } from "node:events";
import { defaults } from "../config/config.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { RespParser, RespProtocolError, encodeCommand, type RespValue } from "../redis/resp_parser.js";

/** One command of the replication stream. */
export interface ReplicatedCommand {
  /** args[0] is the command name exactly as Redis sent it (e.g. "SET", "set", "PEXPIREAT", "MULTI"). */
  args: Buffer[];
  /** Replication offset just past this command: what an ACK sent after it reports. */
  offset: number;
}

export interface ReplicationLinkInfo {
  replid: string;
  /** The FULLRESYNC offset: where the command stream starts. */
  initialOffset: number;
}

export interface ReplicationLinkOptions {
  port: number;
  host?: string;
  /** Redis's requirepass: sent as AUTH before the handshake. */
  password?: string;
  /** Interval of REPLCONF ACK. */
  replAckIntervalMs?: number;
  /** Bytes of an incomplete command held from the stream; past it the link fails with reason "overflow". */
  replStreamBytesMax?: number;
  /** Bytes of RDB the link agrees to skip; past it the link fails with reason "rdb_too_large". */
  rdbBytesMax?: number;
  /** The link fails with reason "timeout" if Redis sends nothing for this long before the stream is live (Redis's repl-timeout default). */
  handshakeIdleTimeoutMs?: number;
  /**
   * The loop's share the stream may take per turn (the master's TurnBudget, masterTurnBudgetMs): once spent, the
   * socket is paused and the commands already received are delivered in a later turn. None: every command at once.
   */
  budget?: TurnShare;
}

/** Default bound of the skipped RDB: the master's Redis is rebuilt from the journal, so this is the dataset size. */
export const RDB_BYTES_MAX_DEFAULT = 16 * 1024 * 1024 * 1024;
export const HANDSHAKE_IDLE_TIMEOUT_MS_DEFAULT = 60_000;
/**
 * After a diskless sync Redis starts the command stream on the first ACK it gets once its cron (10 times a second)
 * has put this replica online; an ACK sent as the RDB ends usually comes before that and is ignored. So the ACK is
 * repeated this often until the stream shows (or the regular interval takes over): else a new master's first write
 * waited a whole replAckIntervalMs for its effects.
 */
export const STREAM_START_ACK_MS = 10;
/** Bound of one handshake line (+FULLRESYNC … is ~60 bytes). */
const HANDSHAKE_LINE_BYTES_MAX = 4096;
const EOF_MARK_BYTES = 40;

export type ReplicationLinkErrorReason =
  /** Redis closed the connection. */
  | "closed"
  /** A socket error (connect refused, reset, …). */
  | "socket"
  /** Redis answered the handshake with something unexpected, or the stream is not RESP commands. */
  | "protocol"
  /** Redis answered the handshake with an error reply. */
  | "redis"
  | "timeout"
  | "overflow"
  | "rdb_too_large"
  /** A "command" listener threw. */
  | "listener";

/** The link is broken; the master must not trust its stream any more and restarts as a new writer. */
export class ReplicationLinkError extends QjmError {
  override name = "ReplicationLinkError";
  constructor(
    readonly reason: ReplicationLinkErrorReason,
    message: string,
    options?: ErrorOptions,
  ) {
    super(ErrorCode.INTERNAL, `replication link: ${message}`, options);
  }
}

type Events = {
  command: [ReplicatedCommand];
  error: [ReplicationLinkError];
};

type Phase =
  | { kind: "connecting" }
  /** Waiting for the reply to handshake step `step`. */
  | { kind: "handshake"; step: number }
  /** FULLRESYNC seen; waiting for the RDB's $ line. */
  | { kind: "rdb_header" }
  | { kind: "rdb_sized"; remaining: number }
  | { kind: "rdb_eof"; mark: Buffer; tail: Buffer; skipped: number }
  | { kind: "live" }
  | { kind: "closed" };

/** Handshake commands in order, with the reply each expects; PSYNC's is checked on its own. */
const HANDSHAKE_STEPS = ["PING", "REPLCONF listening-port", "REPLCONF capa", "PSYNC"] as const;

export class ReplicationLink extends EventEmitter<Events> {
  readonly ready: Promise<ReplicationLinkInfo>;
  readonly done: Promise<ReplicationLinkError | null>;

  private readonly socket: net.Socket;
  private readonly ackIntervalMs: number;
  private readonly streamBytesMax: number;
  private readonly rdbBytesMax: number;
  private readonly idleTimeoutMs: number;

  private phase: Phase = { kind: "connecting" };
  /** Unparsed handshake bytes (only ever a few lines). */
  private lineBuf: Buffer = Buffer.alloc(0);
  private parser: RespParser | undefined;
  private readonly budget: TurnShare | undefined;
  /** The turn's budget was spent: the socket is paused until the parked delivery has drained the parser. */
  private parked = false;
  private info: ReplicationLinkInfo | undefined;
  private streamBytes = 0;
  /** The +OK to AUTH is the first line to come, before PING's. */
  private authPending = false;
  private ackTimer: NodeJS.Timeout | undefined;
  /** Brisk ACKs from the RDB's end until the stream shows (STREAM_START_ACK_MS). */
  private startAckTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private resolveReady!: (info: ReplicationLinkInfo) => void;
  private rejectReady!: (err: ReplicationLinkError) => void;
  private resolveDone!: (err: ReplicationLinkError | null) => void;
  private readonly socketClosed: Promise<void>;

  constructor(options: ReplicationLinkOptions) {
    super();
    this.ackIntervalMs = options.replAckIntervalMs ?? defaults.replAckIntervalMs;
    this.streamBytesMax = options.replStreamBytesMax ?? defaults.replStreamBytesMax;
    this.rdbBytesMax = options.rdbBytesMax ?? RDB_BYTES_MAX_DEFAULT;
    this.idleTimeoutMs = options.handshakeIdleTimeoutMs ?? HANDSHAKE_IDLE_TIMEOUT_MS_DEFAULT;
    this.budget = options.budget;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // `ready` may legitimately be left unawaited (the caller watches "error"/`done`): never an unhandled rejection.
    this.ready.catch(() => {});
    this.done = new Promise((resolve) => (this.resolveDone = resolve));

    this.socket = net.connect({ port: options.port, host: options.host ?? "127.0.0.1" });
    this.socketClosed = new Promise((resolve) => this.socket.once("close", () => resolve()));
    this.socket.setNoDelay(true);
    this.touchIdle();
    this.socket.on("connect", () => {
      this.phase = { kind: "handshake", step: 0 };
      if (options.password !== undefined) {
        this.authPending = true;
        this.send(["AUTH", options.password]);
      }
      this.send(["PING"]);
    });
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.socket.on("error", (err) => this.fail(new ReplicationLinkError("socket", err.message, { cause: err })));
    this.socket.on("close", () => this.fail(new ReplicationLinkError("closed", "connection closed by Redis")));
  }

  /** Replication offset of everything delivered so far (0 before the stream is live). */
  get offset(): number {
    return this.info === undefined ? 0 : this.info.initialOffset + this.streamBytes;
  }

  get live(): boolean {
    return this.phase.kind === "live";
  }

  /** Ends the link; `done` resolves with null, no "error" is emitted. Resolves once the socket is closed. */
  async close(): Promise<void> {
    if (this.phase.kind !== "closed") {
      this.phase = { kind: "closed" };
      this.stopTimers();
      this.rejectReady(new ReplicationLinkError("closed", "closed before the stream was live"));
      this.resolveDone(null);
      this.socket.destroy();
    }
    await this.socketClosed;
  }

  private fail(err: ReplicationLinkError): void {
    if (this.phase.kind === "closed") return;
    this.phase = { kind: "closed" };
    this.stopTimers();
    this.socket.destroy();
    this.rejectReady(err);
    this.resolveDone(err);
    if (this.listenerCount("error") > 0) this.emit("error", err);
  }

  private stopStartAcks(): void {
    clearInterval(this.startAckTimer);
    this.startAckTimer = undefined;
  }

  private stopTimers(): void {
    this.stopStartAcks();
    clearInterval(this.ackTimer);
    clearTimeout(this.idleTimer);
    this.ackTimer = undefined;
    this.idleTimer = undefined;
  }

  /** Before the stream is live, any byte (the \n keep-alives included) proves Redis is working on our sync. */
  private touchIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(
      () => this.fail(new ReplicationLinkError("timeout", `Redis sent nothing for ${this.idleTimeoutMs} ms during the handshake (${this.phase.kind})`)),
      this.idleTimeoutMs,
    );
    this.idleTimer.unref();
  }

  private send(args: (string | Buffer)[]): void {
    if (this.socket.writable) this.socket.write(encodeCommand(args));
  }

  private sendAck(): void {
    this.send(["REPLCONF", "ACK", String(this.offset)]);
  }

  private onData(chunk: Buffer): void {
    this.guarded(() => {
      let rest: Buffer | undefined = chunk;
      while (rest !== undefined && rest.length > 0 && this.phase.kind !== "closed") {
        if (this.phase.kind === "live") {
          this.onStream(rest);
          rest = undefined;
        } else {
          this.touchIdle();
          rest = this.onHandshake(rest);
        }
      }
    });
  }

  /** Runs socket-side work: nothing escapes it, every failure becomes the link's one error. */
  private guarded(work: () => void): void {
    try {
      work();
    } catch (err) {
      // Nothing escapes a socket callback: every failure becomes the link's one error.
      if (err instanceof ReplicationLinkError) this.fail(err);
      else if (err instanceof RespProtocolError) this.fail(new ReplicationLinkError("protocol", err.message, { cause: err }));
      else this.fail(new ReplicationLinkError("protocol", err instanceof Error ? err.message : String(err), { cause: err }));
    }
  }

  /** Consumes what the current pre-stream phase needs from `chunk`; returns the bytes it did not consume. */
  private onHandshake(chunk: Buffer): Buffer | undefined {
    const phase = this.phase;
    if (phase.kind === "rdb_sized") {
      const take = Math.min(phase.remaining, chunk.length);
      phase.remaining -= take;
      if (phase.remaining === 0) this.goLive();
      return chunk.subarray(take);
    }
    if (phase.kind === "rdb_eof") return this.skipEofRdb(phase, chunk);

    this.lineBuf = this.lineBuf.length === 0 ? chunk : Buffer.concat([this.lineBuf, chunk]);
    for (;;) {
      // Redis sends bare \n as keep-alives while it prepares the RDB.
      let from = 0;
      while (from < this.lineBuf.length && this.lineBuf[from] === 0x0a) from++;
      const nl = this.lineBuf.indexOf(0x0a, from);
      if (nl < 0) {
        if (this.lineBuf.length - from > HANDSHAKE_LINE_BYTES_MAX) throw new ReplicationLinkError("protocol", "handshake line too long");
        this.lineBuf = this.lineBuf.subarray(from);
        return undefined;
      }
      const line = this.lineBuf.toString("latin1", from, nl > from && this.lineBuf[nl - 1] === 0x0d ? nl - 1 : nl);
      const rest = this.lineBuf.subarray(nl + 1);
      this.lineBuf = Buffer.alloc(0);
      this.onHandshakeLine(line);
      const now = this.phase.kind as Phase["kind"];
      if (now === "rdb_sized" || now === "rdb_eof" || now === "live" || now === "closed") return rest;
      this.lineBuf = rest;
      if (rest.length === 0) return undefined;
    }
  }

  private onHandshakeLine(line: string): void {
    const phase = this.phase;
    if (this.authPending) {
      if (line !== "+OK") throw new ReplicationLinkError("redis", `Redis refused AUTH: ${line.slice(1)}`);
      this.authPending = false;
      return;
    }
    if (line.startsWith("-")) throw new ReplicationLinkError("redis", `Redis refused ${phase.kind === "handshake" ? HANDSHAKE_STEPS[phase.step] : phase.kind}: ${line.slice(1)}`);
    if (phase.kind === "handshake") {
      const step = phase.step;
      if (step === 0) {
        if (line !== "+PONG") throw new ReplicationLinkError("protocol", `expected +PONG, got ${JSON.stringify(line)}`);
        this.phase = { kind: "handshake", step: 1 };
        // Some Redis versions refuse port 0; our own local port is a real, unique number.
        this.send(["REPLCONF", "listening-port", String(this.socket.localPort ?? 1)]);
      } else if (step === 1 || step === 2) {
        if (line !== "+OK") throw new ReplicationLinkError("protocol", `expected +OK to ${HANDSHAKE_STEPS[step]}, got ${JSON.stringify(line)}`);
        this.phase = { kind: "handshake", step: step + 1 };
        if (step === 1) this.send(["REPLCONF", "capa", "eof", "capa", "psync2"]);
        else this.send(["PSYNC", "?", "-1"]);
      } else {
        const m = /^\+FULLRESYNC ([0-9a-fA-F]{40}) (\d+)$/.exec(line);
        if (m === null) throw new ReplicationLinkError("protocol", `expected +FULLRESYNC <replid> <offset>, got ${JSON.stringify(line)}`);
        const initialOffset = Number(m[2]);
        if (!Number.isSafeInteger(initialOffset)) throw new ReplicationLinkError("protocol", `FULLRESYNC offset ${m[2]} is not a safe integer`);
        this.info = { replid: m[1], initialOffset };
        this.phase = { kind: "rdb_header" };
      }
      return;
    }
    if (phase.kind === "rdb_header") {
      if (line.startsWith("$EOF:")) {
        const mark = Buffer.from(line.slice(5), "latin1");
        if (mark.length !== EOF_MARK_BYTES) throw new ReplicationLinkError("protocol", `bad diskless EOF mark ${JSON.stringify(line)}`);
        this.phase = { kind: "rdb_eof", mark, tail: Buffer.alloc(0), skipped: 0 };
        return;
      }
      const m = /^\$(\d+)$/.exec(line);
      if (m === null) throw new ReplicationLinkError("protocol", `expected the RDB's $<length> line, got ${JSON.stringify(line)}`);
      const length = Number(m[1]);
      if (!(length <= this.rdbBytesMax)) throw new ReplicationLinkError("rdb_too_large", `RDB of ${m[1]} bytes exceeds rdbBytesMax ${this.rdbBytesMax}`);
      // A sized RDB is followed directly by the stream (no CRLF).
      if (length === 0) this.goLive();
      else this.phase = { kind: "rdb_sized", remaining: length };
      return;
    }
    throw new ReplicationLinkError("protocol", `unexpected line in phase ${phase.kind}: ${JSON.stringify(line)}`);
  }

  /** Diskless RDB: it ends with the 40-byte mark; only the last 39 bytes of the previous chunk are kept. */
  private skipEofRdb(phase: Extract<Phase, { kind: "rdb_eof" }>, chunk: Buffer): Buffer | undefined {
    const mark = phase.mark;
    let endInChunk = -1;
    if (phase.tail.length > 0) {
      // A mark straddling the previous chunk and this one.
      const seam = Buffer.concat([phase.tail, chunk.subarray(0, EOF_MARK_BYTES - 1)]);
      const at = seam.indexOf(mark);
      if (at >= 0) endInChunk = at + EOF_MARK_BYTES - phase.tail.length;
    }
    if (endInChunk < 0) {
      const at = chunk.indexOf(mark);
      if (at >= 0) endInChunk = at + EOF_MARK_BYTES;
    }
    if (endInChunk >= 0) {
      this.goLive();
      return chunk.subarray(endInChunk);
    }
    phase.skipped += chunk.length;
    if (phase.skipped > this.rdbBytesMax) throw new ReplicationLinkError("rdb_too_large", `diskless RDB exceeds rdbBytesMax ${this.rdbBytesMax}`);
    const joined = chunk.length >= EOF_MARK_BYTES - 1 ? chunk : Buffer.concat([phase.tail, chunk]);
    phase.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - (EOF_MARK_BYTES - 1))));
    return undefined;
  }

  private goLive(): void {
    const info = this.info;
    if (info === undefined) throw new ReplicationLinkError("protocol", "RDB before FULLRESYNC");
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.phase = { kind: "live" };
    this.parser = new RespParser();
    this.sendAck();
    const liveAt = Date.now();
    this.startAckTimer = setInterval(() => {
      if (this.streamBytes > 0 || Date.now() - liveAt >= this.ackIntervalMs) this.stopStartAcks();
      else this.sendAck();
    }, STREAM_START_ACK_MS);
    this.startAckTimer.unref();
    this.ackTimer = setInterval(() => this.sendAck(), this.ackIntervalMs);
    this.ackTimer.unref();
    this.resolveReady(info);
  }

  private onStream(chunk: Buffer): void {
    const parser = this.parser;
    if (parser === undefined) throw new ReplicationLinkError("protocol", "stream bytes before the stream is live");
    parser.push(chunk);
    // Bytes that came before the pause took hold wait behind the parked delivery (stream order).
    if (!this.parked) this.deliver(parser);
  }

  /**
   * Hands each complete command to the listeners, until the parser holds no complete one or the turn's budget is
   * spent: then the socket is paused (Redis keeps the rest in its replica buffer) and delivery goes on in a later turn.
   */
  private deliver(parser: RespParser): void {
    for (;;) {
      // A listener may close the link mid-chunk: deliver nothing after that.
      if (this.phase.kind !== "live") return;
      if (this.budget !== undefined && !this.budget.spend()) return this.park(parser);
      const frame = parser.next();
      if (frame === undefined) break;
      const args = commandArgs(frame.value);
      if (args === null) throw new ReplicationLinkError("protocol", "replication stream carries a value that is not a command (array of bulk strings)");
      this.streamBytes += frame.bytes;
      if (isCommand(args, "replconf") && args.length >= 2 && asciiEqualsIgnoreCase(args[1], "getack")) this.sendAck();
      try {
        this.emit("command", { args, offset: this.offset });
      } catch (err) {
        throw new ReplicationLinkError("listener", `a command listener threw: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
    if (parser.pendingBytes > this.streamBytesMax) {
      throw new ReplicationLinkError("overflow", `${parser.pendingBytes} bytes of an incomplete command buffered, more than replStreamBytesMax ${this.streamBytesMax}`);
    }
  }

  private park(parser: RespParser): void {
    this.parked = true;
    this.socket.pause();
    this.budget!.later(() => {
      this.parked = false;
      if (this.phase.kind !== "live") return;
      this.guarded(() => this.deliver(parser));
      if (!this.parked && this.phase.kind === "live") this.socket.resume();
    });
  }
}

function commandArgs(value: RespValue): Buffer[] | null {
  if (value.type !== "array" || value.items === null || value.items.length === 0) return null;
  const args: Buffer[] = [];
  for (const item of value.items) {
    if (item.type !== "bulk" || item.value === null) return null;
    args.push(item.value);
  }
  return args;
}

/** True if `arg` spells the ASCII `text`, ignoring case, without allocating a string. */
export function asciiEqualsIgnoreCase(arg: Uint8Array, text: string): boolean {
  if (arg.length !== text.length) return false;
  for (let i = 0; i < arg.length; i++) {
    let a = arg[i];
    let b = text.charCodeAt(i);
    if (a >= 0x41 && a <= 0x5a) a += 0x20;
    if (b >= 0x41 && b <= 0x5a) b += 0x20;
    if (a !== b) return false;
  }
  return true;
}

/** True if the command's name (args[0]) is `name`, ignoring ASCII case. */
export function isCommand(args: readonly Uint8Array[], name: string): boolean {
  return args.length > 0 && asciiEqualsIgnoreCase(args[0], name);
}

/**
 * Stream traffic that is not an effect: PING (Redis's keep-alive to replicas), SELECT 0 (the database is always 0
 * here; any other SELECT is not noise and must reach the caller), and REPLCONF (GETACK requests).
 */
export function isReplicationNoise(args: readonly Uint8Array[]): boolean {
  if (isCommand(args, "ping")) return true;
  if (isCommand(args, "select")) return args.length === 2 && asciiEqualsIgnoreCase(args[1], "0");
  return isCommand(args, "replconf");
}

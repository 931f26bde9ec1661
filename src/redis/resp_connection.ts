/**
 * A pipelined RESP connection to a local redis-server, without ioredis: the replies come back as parsed RESP values
 * with their types (status or bulk, RESP3's maps and doubles…), which ioredis folds into strings. Redis answers one
 * connection's commands in order, so each reply settles the oldest command still waiting (FIFO).
 *
 * Used by the master to execute client writes (Redis's reply keeps its type all the way to the client) and by the
 * RESP front door to read from its node's Redis (src/frontdoor/). An error reply is a value (`type: "error"`), not a
 * rejection; a closed connection rejects every command still waiting. Out-of-band RESP3 pushes are dropped.
 */
import net from "node:net";
import { encodeCommand, REDIS_REPLY_DEPTH_MAX, REDIS_REPLY_ITEMS_MAX, RespParser, type RespValue } from "./resp_parser.js";

export interface RespConnectionOptions {
  port: number;
  host?: string;
  password?: string;
  /** 3: HELLO 3 first, replies in RESP3. */
  protocol?: 2 | 3;
  connectTimeoutMs?: number;
}

export type RespArg = string | Uint8Array;

interface Waiter {
  resolve: (v: RespValue) => void;
  reject: (err: Error) => void;
  /** performance.now() when it was sent: how long Redis has kept it (a frozen Redis answers nothing). */
  sentMs: number;
}

export class RespConnection {
  private readonly parser: RespParser;
  /** Commands sent and not yet answered, oldest first (a plain array with a head index: no O(n) shift). */
  private waiting: Waiter[] = [];
  private head = 0;
  private closedWith: Error | null = null;
  private readonly closeListeners: ((err: Error) => void)[] = [];
  /** Commands of one event-loop turn leave in one socket write (corked until the next tick). */
  private corked = false;
  /** performance.now() of Redis's last bytes: a Redis working through a long backlog still answers now and then. */
  private repliedMs = 0;

  private constructor(
    private readonly socket: net.Socket,
    readonly protocol: 2 | 3,
  ) {
    // Redis's own replies: 64-bit integers, and whatever nesting and size it can build (see REDIS_REPLY_DEPTH_MAX).
    this.parser = new RespParser({ resp3: protocol === 3, bigIntegers: true, depthMax: REDIS_REPLY_DEPTH_MAX, arrayItemsMax: REDIS_REPLY_ITEMS_MAX });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new Error("the connection to Redis closed")));
  }

  /** Connects and authenticates (HELLO 3 first for protocol 3); rejects if Redis refuses or does not answer. */
  static async open(o: RespConnectionOptions): Promise<RespConnection> {
    const protocol = o.protocol ?? 2;
    const socket = await connectSocket(o.port, o.host ?? "127.0.0.1", o.connectTimeoutMs ?? 5000);
    socket.setNoDelay(true);
    const conn = new RespConnection(socket, protocol);
    const hello: RespArg[] | null = protocol === 3 ? ["HELLO", "3", ...(o.password ? ["AUTH", "default", o.password] : [])] : o.password ? ["AUTH", o.password] : null;
    if (hello !== null) {
      const reply = await conn.call(hello);
      if (reply.type === "error") {
        conn.close();
        throw new Error(`Redis refused the connection: ${reply.value}`);
      }
    }
    return conn;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Commands not yet answered. */
  get inFlight(): number {
    return this.waiting.length - this.head;
  }

  /**
   * How long Redis has answered nothing while a command waits, in ms (0: none waits): since the later of its last reply
   * and the sending of the oldest command waiting. Not that command's age: behind a backlog of slow commands it grows
   * past any bound while Redis answers them one by one (test redis_stall).
   */
  silentMs(nowMs = performance.now()): number {
    const w = this.waiting[this.head];
    return w === undefined ? 0 : nowMs - Math.max(w.sentMs, this.repliedMs);
  }

  onClose(listener: (err: Error) => void): void {
    if (this.closedWith !== null) listener(this.closedWith);
    else this.closeListeners.push(listener);
  }

  call(args: readonly RespArg[]): Promise<RespValue> {
    return this.send([args])[0];
  }

  /**
   * Several commands in one socket write (Redis runs them back to back); their replies in the same order. A command
   * given as a Buffer is its RESP bytes, already checked to be one command (messages.ts commandOfResp), sent as is.
   */
  send(commands: readonly (readonly RespArg[] | Buffer)[]): Promise<RespValue>[] {
    const sentMs = performance.now();
    const replies = commands.map(() => new Promise<RespValue>((resolve, reject) => this.waiting.push({ resolve, reject, sentMs })));
    if (this.closedWith !== null) {
      this.rejectAll(this.closedWith);
      return replies;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    // Corked: the commands of this turn leave in one writev, without copying them into one buffer first.
    for (const c of commands) this.socket.write(Buffer.isBuffer(c) ? c : encodeCommand(c));
    return replies;
  }

  close(): void {
    this.socket.destroy();
    this.fail(new Error("the connection to Redis was closed"));
  }

  private onData(chunk: Buffer): void {
    // Any bytes from Redis say it is alive (a large reply arrives in many chunks): once per chunk, not per reply.
    this.repliedMs = performance.now();
    try {
      this.parser.push(chunk);
      for (let f = this.parser.next(); f !== undefined; f = this.parser.next()) {
        if (f.value.type === "push") continue;
        const w = this.waiting[this.head++];
        if (w === undefined) throw new Error("Redis sent a reply nobody asked for");
        w.resolve(f.value);
      }
      this.compact();
    } catch (err) {
      // Not RESP, or out of step with the commands: nothing after this can be trusted.
      this.socket.destroy();
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private compact(): void {
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
  }

  private fail(err: Error): void {
    if (this.closedWith !== null) return;
    this.closedWith = err;
    this.rejectAll(err);
    for (const l of this.closeListeners.splice(0)) l(err);
  }

  private rejectAll(err: Error): void {
    const pending = this.waiting.slice(this.head);
    this.waiting = [];
    this.head = 0;
    for (const w of pending) w.reject(err);
  }
}

function connectSocket(port: number, host: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection to Redis at ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

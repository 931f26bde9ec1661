/**
 * A TCP proxy in this process (a test or the bench), between a peer and its server, whose link a nemesis can break:
 *   pass      bytes flow as they come;
 *   delay(ms) every chunk is held `ms` before it is forwarded, in order (a slow link);
 *   drop      sockets stay open and every byte is silently discarded, both ways (a black hole: the peers notice only
 *             by their own timeouts, e.g. NATS pings); a connection that lost bytes is closed on heal, as TCP would
 *             have reset it — forwarding the rest of a stream with a hole in it would hand the peer garbage;
 *   cut       every connection is destroyed and new ones are closed at once, until healed.
 * Buffers are bounded: a delayed direction holding more than `BUFFERED_BYTES_MAX` pauses its source socket.
 */
import net from "node:net";

/** Bytes one direction of one connection may hold in its delay queue before its source socket is paused. */
export const BUFFERED_BYTES_MAX = 4 * 1024 * 1024;

export type ProxyMode = { kind: "pass" } | { kind: "delay"; ms: number } | { kind: "drop" } | { kind: "cut" };

export interface TcpProxy {
  /** The port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  mode(): ProxyMode;
  /** Switches the mode; a switch to pass (heal) closes the connections a drop left with holes. */
  setMode(mode: ProxyMode): void;
  /** Connections open now. */
  connections(): number;
  close(): Promise<void>;
}

/** One direction of a proxied connection: source → target, through the mode's queue. */
class Pipe {
  /** Bytes waiting in the delay queue. */
  private queuedBytes = 0;
  /** When the last queued chunk is released: a later chunk never overtakes it. */
  private lastReleaseAt = 0;
  private pausedForQueue = false;
  private pausedForTarget = false;
  /** Bytes were discarded: the stream the target sees has a hole. */
  lostBytes = false;

  constructor(
    private readonly source: net.Socket,
    private readonly target: net.Socket,
    private readonly mode: () => ProxyMode,
  ) {
    source.on("data", (chunk: Buffer) => this.onData(chunk));
    target.on("drain", () => {
      this.pausedForTarget = false;
      this.resumeIfFree();
    });
  }

  private onData(chunk: Buffer): void {
    const mode = this.mode();
    if (mode.kind === "drop" || mode.kind === "cut") {
      this.lostBytes = true;
      return;
    }
    if (mode.kind === "pass" && this.queuedBytes === 0) {
      this.write(chunk);
      return;
    }
    // Delayed (or still draining a delay): each chunk waits its turn, so order is kept even when the delay shrinks.
    const ms = mode.kind === "delay" ? mode.ms : 0;
    this.queuedBytes += chunk.length;
    if (this.queuedBytes > BUFFERED_BYTES_MAX && !this.pausedForQueue) {
      this.pausedForQueue = true;
      this.source.pause();
    }
    const releaseAt = Math.max(performance.now() + ms, this.lastReleaseAt);
    this.lastReleaseAt = releaseAt;
    // One FIFO and one timer for its head: timers of different durations that expire together may fire in any
    // order (Node keeps a list per duration), and a reordered byte stream is garbage to the peer.
    this.queue.push({ chunk, releaseAt });
    if (this.queue.length === 1) this.schedule();
  }

  private readonly queue: { chunk: Buffer; releaseAt: number }[] = [];

  private schedule(): void {
    const head = this.queue[0];
    if (head !== undefined) setTimeout(() => this.releaseDue(), Math.max(0, head.releaseAt - performance.now()));
  }

  private releaseDue(): void {
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0].releaseAt <= now) this.release(this.queue.shift()!.chunk);
    this.schedule();
  }

  private release(chunk: Buffer): void {
    this.queuedBytes -= chunk.length;
    if (this.pausedForQueue && this.queuedBytes <= BUFFERED_BYTES_MAX / 2) {
      this.pausedForQueue = false;
      this.resumeIfFree();
    }
    // A drop or cut that began while the chunk waited discards it too.
    const now = this.mode();
    if (now.kind === "drop" || now.kind === "cut") this.lostBytes = true;
    else this.write(chunk);
  }

  private write(chunk: Buffer): void {
    if (this.target.destroyed) return;
    // The target's own buffer is bounded the same way: a slow reader pauses the source.
    if (!this.target.write(chunk) && !this.pausedForTarget) {
      this.pausedForTarget = true;
      this.source.pause();
    }
  }

  private resumeIfFree(): void {
    if (!this.pausedForQueue && !this.pausedForTarget && !this.source.destroyed) this.source.resume();
  }
}

interface Connection {
  client: net.Socket;
  server: net.Socket;
  up: Pipe;
  down: Pipe;
}

/** Listens on a free port of 127.0.0.1 and forwards each connection to `targetPort`. */
export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
  let mode: ProxyMode = { kind: "pass" };
  const open = new Set<Connection>();

  const destroy = (c: Connection): void => {
    open.delete(c);
    c.client.destroy();
    c.server.destroy();
  };

  const server = net.createServer((client) => {
    if (mode.kind === "cut") {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ port: targetPort, host: targetHost });
    upstream.setNoDelay(true);
    const c: Connection = { client, server: upstream, up: new Pipe(client, upstream, () => mode), down: new Pipe(upstream, client, () => mode) };
    open.add(c);
    // Either side closing or failing closes both: the proxy keeps no half-open connection of its own making.
    for (const s of [client, upstream]) {
      s.on("error", () => destroy(c));
      s.on("close", () => destroy(c));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    mode: () => mode,
    setMode(next) {
      mode = next;
      if (next.kind === "cut") for (const c of [...open]) destroy(c);
      else if (next.kind === "pass" || next.kind === "delay") for (const c of [...open]) if (c.up.lostBytes || c.down.lostBytes) destroy(c);
    },
    connections: () => open.size,
    async close() {
      for (const c of [...open]) destroy(c);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `delay 40 ms`, `drop`, … for logs. */
export function describeMode(mode: ProxyMode): string {
  return mode.kind === "delay" ? `delay ${mode.ms} ms` : mode.kind;
}

/**
 * The front door's connections to its node's own Redis, for reads: a few shared pipelined connections per protocol
 * (one said HELLO 3), each opened on first use and again after it closed (the node's Redis restarts across role
 * changes). Every front-door client's reads share them: Redis answers each connection in order, so replies match
 * requests FIFO. Only commands that leave the connection's state alone come here (the router sends readonly commands,
 * COMMAND, INFO and CONFIG GET; never SELECT, HELLO, AUTH, CLIENT, MULTI, SUBSCRIBE or a blocking command).
 */
import { RespConnection } from "../redis/resp_connection.js";
import type { RespValue } from "../redis/resp_parser.js";
import type { Protocol } from "./resp_encoder.js";

export interface UpstreamOptions {
  port: number;
  password: string;
  /** Connections per protocol. */
  connections: number;
  connectTimeoutMs: number;
}

export class Upstream {
  private readonly pools: Record<Protocol, (Promise<RespConnection> | null)[]>;
  private next = 0;
  private closed = false;

  constructor(private readonly o: UpstreamOptions) {
    this.pools = { 2: new Array(o.connections).fill(null), 3: new Array(o.connections).fill(null) };
  }

  async call(protocol: Protocol, args: readonly Buffer[]): Promise<RespValue> {
    if (this.closed) throw new Error("the front door is closing");
    const conn = await this.connection(protocol);
    return await conn.call(args);
  }

  close(): void {
    this.closed = true;
    for (const pool of Object.values(this.pools)) {
      for (const p of pool) void p?.then((c) => c.close(), () => {});
      pool.fill(null);
    }
  }

  /** Round robin over the pool; a slot whose connection closed (or never opened) is opened again. */
  private connection(protocol: Protocol): Promise<RespConnection> {
    const pool = this.pools[protocol];
    const i = this.next++ % pool.length;
    const existing = pool[i];
    if (existing !== null) return existing;
    const opening = RespConnection.open({ port: this.o.port, password: this.o.password, protocol, connectTimeoutMs: this.o.connectTimeoutMs });
    pool[i] = opening;
    opening.then(
      (conn) => conn.onClose(() => {
        if (pool[i] === opening) pool[i] = null;
      }),
      () => {
        // Not reachable now: the next read tries again.
        if (pool[i] === opening) pool[i] = null;
      },
    );
    return opening;
  }
}

/**
 * The servers of the baselines, started through the project's own helpers (startNatsServer, startRedisServer)
 * on free ports under the target's directory, each registered for cleanup the moment it runs.
 */
import net from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { startNatsServer, type NatsServer } from "../src/nats/nats_server.js";
import { freePort } from "../src/process/ports.js";
import { startRedisServer, type RedisServer, type RedisServerOptions } from "../src/redis/redis_server.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { CONNECT_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from "./settings.js";

/** How long a server may take to accept connections after it was spawned. */
const SERVER_START_TIMEOUT_MS = 15_000;
/** Tries at finding a run of consecutive free ports. */
const PORT_RANGE_ATTEMPTS = 50;
/** Redis connections opened at once; 256 simultaneous handshakes on 2 busy cores would time out for no reason. */
const REDIS_CONNECT_BATCH = 32;

/** `count` distinct ports that were free a moment ago (two calls to freePort may return the same one). */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** `count` consecutive free ports (for configurations that take a base port and add an index). */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < PORT_RANGE_ATTEMPTS; attempt++) {
    const base = await freePort();
    let free = base + count - 1 <= 65_535;
    for (let p = base + 1; free && p < base + count; p++) free = await isPortFree(p);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports after ${PORT_RANGE_ATTEMPTS} attempts`);
}

export async function startBenchNats(cleanup: Cleanup, dir: string, args: string[] = [], port?: number): Promise<NatsServer> {
  const p = port ?? (await freePort());
  const server = await startNatsServer(p, { logDir: dir, args, timeoutMs: SERVER_START_TIMEOUT_MS });
  trackServer(server.child, "nats-server");
  cleanup.add(`nats-server :${p} (pid ${server.child.pid})`, () => server.stop());
  return server;
}

export async function startBenchRedis(cleanup: Cleanup, options: Omit<RedisServerOptions, "port" | "startTimeoutMs">): Promise<RedisServer> {
  const port = await freePort();
  const server = await startRedisServer({ ...options, port, startTimeoutMs: SERVER_START_TIMEOUT_MS });
  trackServer(server.child, "redis-server");
  cleanup.add(`redis-server :${port} (pid ${server.child.pid})`, () => server.stop());
  return server;
}

/**
 * A NATS connection that fails rather than reconnects: a target whose server died must produce errors,
 * not requests parked until a reconnect that never comes.
 */
export async function connectNats(cleanup: Cleanup, url: string, name: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url, name, timeout: CONNECT_TIMEOUT_MS, reconnect: false });
  cleanup.add(`nats connection ${name}`, () => nc.close());
  return nc;
}

/** One Redis connection per client, so a per-connection command such as WAIT applies to that client's write only. */
export async function connectRedisClients(cleanup: Cleanup, port: number, clients: number): Promise<Redis[]> {
  const conns: Redis[] = [];
  cleanup.add(`${clients} redis connections to :${port}`, async () => {
    for (const c of conns) c.disconnect();
  });
  for (let c = 0; c < clients; c++) {
    const conn = new Redis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      // No retries, no reconnects, no offline queue: a stalled or dead server answers with errors, at once.
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      enableOfflineQueue: false,
      enableAutoPipelining: false,
      commandTimeout: REQUEST_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
    });
    conn.on("error", () => {
      /* surfaces as a rejected command; without a listener ioredis would print every reset at teardown */
    });
    conns.push(conn);
  }
  for (let i = 0; i < conns.length; i += REDIS_CONNECT_BATCH) {
    await Promise.all(conns.slice(i, i + REDIS_CONNECT_BATCH).map((c) => c.connect()));
  }
  return conns;
}

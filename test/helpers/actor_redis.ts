/** A test's own hand on an actor's Redis: a connection of its own, and a script that keeps that Redis busy. */
import { Redis } from "ioredis";

/** A Lua loop that keeps Redis busy for ARGV[1] ms (reads only: allowed on a read-only replica). */
export const BUSY_SCRIPT = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1]) * 1000 return 1";

/** A connection to the Redis on 127.0.0.1:`port`: a command fails at once when it is down, nothing is sent twice. */
export async function openRedis(port: number, password?: string): Promise<Redis> {
  const c = new Redis({ port, host: "127.0.0.1", password, lazyConnect: true, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** A test's own connections to an actor's Redis, and a script that keeps that Redis busy (a stall on demand). */
import { Redis } from "ioredis";
import type { ActorStatus } from "../../src/protocol/messages.js";

/** The port of `actor`'s Redis, from its status. */
export function actorRedisPort(actor: ActorStatus): number {
  return Number(new URL(actor.redisUrl!).port);
}

/** A connection to `actor`'s Redis that never resends a command after a reconnect (its errors are the test's to see). */
export async function connectActorRedis(actor: ActorStatus, password: string): Promise<Redis> {
  const c = new Redis({ port: actorRedisPort(actor), host: "127.0.0.1", password, lazyConnect: true, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** A Lua loop that keeps Redis busy for ARGV[1] ms (reads only: allowed on a read-only replica). */
export const BUSY_SCRIPT =
  "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1]) * 1000 return 1";

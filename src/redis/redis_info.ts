/** INFO of a redis-server as fields, and the bounded INFO polling the snapshot and the RDB loader wait with. */
import type { Redis } from "ioredis";

/** INFO's `name:value` lines as a map (section headers and blank lines dropped). */
export function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split("\r\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/** INFO of the given sections (Redis ≥ 7 takes several in one call). */
export async function readInfo(client: Redis, ...sections: string[]): Promise<Map<string, string>> {
  return parseInfo(String(await client.call("INFO", ...sections)));
}

/** A numeric INFO field; NaN when absent, so a comparison with it is false and a wait on it runs into its timeout. */
export function infoNumber(info: Map<string, string>, name: string): number {
  const raw = info.get(name);
  return raw === undefined ? Number.NaN : Number(raw);
}

/** The value of CONFIG GET `name`, or undefined if Redis has no such setting. */
export async function configGet(client: Redis, name: string): Promise<string | undefined> {
  const reply = (await client.call("CONFIG", "GET", name)) as unknown;
  return Array.isArray(reply) && reply.length >= 2 ? String(reply[1]) : undefined;
}

/**
 * Reads INFO `sections` every `pollMs` until `check` returns a value (not undefined); returns it, or undefined once
 * `timeoutMs` passed without one. `check` may throw to end the wait at once (a state that can no longer turn good).
 */
export async function pollInfo<T>(
  client: Redis,
  sections: string[],
  options: { pollMs: number; timeoutMs: number },
  check: (info: Map<string, string>) => T | undefined,
): Promise<T | undefined> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const value = check(await readInfo(client, ...sections));
    if (value !== undefined) return value;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs));
  }
}

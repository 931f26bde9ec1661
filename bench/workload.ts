/** What every target writes: the same keys, the same 100-byte value, the same msgpack body on NATS. */
import { decode, encode } from "../src/protocol/codec.js";
import { KEY_SPACE, VALUE_BYTES } from "./settings.js";

/** The written value: VALUE_BYTES of ASCII, so it is VALUE_BYTES long on every wire. */
export const VALUE = "v".repeat(VALUE_BYTES);

const KEYS: string[] = Array.from({ length: KEY_SPACE }, (_, k) => `bench:${String(k).padStart(5, "0")}`);

function keyIndex(clientIndex: number, i: number): number {
  // A multiplicative hash, so consecutive writes of one client and equal indexes of different clients land on different keys.
  return (Math.imul(clientIndex * 65_537 + i, 0x9e3779b1) >>> 0) % KEY_SPACE;
}

/** The key of write `i` of client `clientIndex`, one of KEY_SPACE. */
export function keyFor(clientIndex: number, i: number): string {
  return KEYS[keyIndex(clientIndex, i)];
}

// Encoded once per key: the bench measures the targets, not msgpack.
const BODIES: Uint8Array[] = KEYS.map((key) => encode(["SET", key, VALUE]));

/** The NATS body of that write: msgpack `["SET", key, value]`, exactly what a redis-qjm client sends. */
export function writeBody(clientIndex: number, i: number): Uint8Array {
  return BODIES[keyIndex(clientIndex, i)];
}

/**
 * Checks a write reply `{ok: true, txid, …}` and throws on anything else. The NATS floor's responder answers
 * with such a reply too, so both pay the same decode.
 */
export function checkWriteReply(data: Uint8Array): Record<string, unknown> {
  const reply = decode(data);
  if (typeof reply === "object" && reply !== null && "ok" in reply && reply.ok === true) return reply as Record<string, unknown>;
  const r = (typeof reply === "object" && reply !== null ? reply : {}) as { code?: unknown; message?: unknown };
  throw new Error(`write refused: ${String(r.code ?? "no code")}: ${String(r.message ?? JSON.stringify(reply))}`);
}

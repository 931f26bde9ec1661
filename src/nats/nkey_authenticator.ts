/**
 * The nkey challenge signed with Node's own Ed25519 (OpenSSL) instead of the pure-JavaScript one nats.js uses
 * (`nkeyAuthenticator`, tweetnacl). Same key, same signature (Ed25519 is deterministic), ~200× less CPU: 0.05 ms a
 * connect against 8–17 ms on this 2-core machine under load. It matters when many connections dial at once — every
 * client of a process failing over together when its nats-server dies: 92 connections of one process took 1.5–2.3 s
 * to sign their way back in (`integration/nats_cluster`'s third kill), longer than the write path's whole failover.
 * The public nkey is derived by OpenSSL too: tweetnacl's scalar multiplication (nats.js's `getPublicKey`) took
 * 165 ms of a journal node's 1.1 s of CPU to start, and twice that in a data node (two connections).
 */
import crypto from "node:crypto";
import { nkeys, type Authenticator } from "@nats-io/transport-node";

/** PKCS#8 DER header of an Ed25519 private key; the 32-byte raw seed follows it (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 without padding, as nkeys encodes seeds and public keys. */
export function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = BASE32.indexOf(ch);
    if (v < 0) throw new Error("not base32");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 4648 base32 without padding. */
export function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    for (; bits >= 5; bits -= 5) out += BASE32[(value >>> (bits - 5)) & 31];
  }
  return bits > 0 ? out + BASE32[(value << (5 - bits)) & 31] : out;
}

/** CRC-16/XMODEM, the checksum nkeys end with (little-endian). */
export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The roles of Ed25519 nkeys (a Curve seed holds an X25519 key: no signature). */
const SIGNING_ROLES: ReadonlySet<number> = new Set([nkeys.Prefix.User, nkeys.Prefix.Account, nkeys.Prefix.Server, nkeys.Prefix.Operator, nkeys.Prefix.Cluster]);

/** A seed's role: the prefix its two first bytes carry beside the Seed prefix. */
function seedRole(seedBytes: Buffer): number {
  return ((seedBytes[0] & 7) << 5) | ((seedBytes[1] & 248) >> 3);
}

/** The public nkey of an Ed25519 public key: its role's prefix byte, the key, the CRC, in base32. */
function publicNkey(prefix: number, publicKey: Buffer): string {
  const raw = Buffer.concat([Buffer.from([prefix]), publicKey, Buffer.alloc(2)]);
  raw.writeUInt16LE(crc16(raw.subarray(0, 33)), 33);
  return base32Encode(raw);
}

/** An authenticator answering nats-server's nonce with `seed`'s public nkey and its signature. */
export function fastNkeyAuthenticator(seed: string): Authenticator {
  // fromSeed checks the seed's prefix and checksum (no key derivation: that is getPublicKey, not called).
  nkeys.fromSeed(new TextEncoder().encode(seed));
  // A seed is 2 prefix bytes, the 32-byte Ed25519 seed, a 2-byte CRC; a public nkey 1 prefix byte, 32 bytes, a CRC.
  const seedBytes = base32Decode(seed);
  // What getPublicKey refused (a key of another length; a Curve seed) is refused here too, at creation.
  if (seedBytes.length !== 36) throw new Error(`not an nkey seed: ${seedBytes.length} bytes, not 36`);
  const role = seedRole(seedBytes);
  if (!SIGNING_ROLES.has(role)) throw new Error(`not a signing nkey seed (role ${nkeys.Prefix[role] ?? role})`);
  const key = crypto.createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seedBytes.subarray(2, 34)]), format: "der", type: "pkcs8" });
  const publicKey = crypto.createPublicKey(key).export({ format: "der", type: "spki" }).subarray(-32);
  // What nats-server knows the user by; fromPublic checks its prefix and checksum (a bug here throws now, not at connect).
  const nkey = publicNkey(role, publicKey);
  nkeys.fromPublic(nkey);
  return (nonce?: string) => ({ nkey, sig: nonce ? nkeys.encode(crypto.sign(null, Buffer.from(nonce, "utf8"), key)) : "" });
}

import test from "ava";
import { nkeyAuthenticator, nkeys } from "@nats-io/transport-node";
import { base32Decode, base32Encode, crc16, fastNkeyAuthenticator } from "../../src/nats/nkey_authenticator.js";

test("nkey authenticator - answers every nonce exactly as nats.js's own (same public key, same Ed25519 signature)", (t) => {
  for (let i = 0; i < 20; i++) {
    const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    const ours = fastNkeyAuthenticator(seed);
    const theirs = nkeyAuthenticator(new TextEncoder().encode(seed));
    for (const nonce of ["", "x", `nonce-${i}-${"ab".repeat(i)}`, "Zm9vYmFy-_é"]) t.deepEqual(ours(nonce), theirs(nonce), `seed ${i} nonce ${JSON.stringify(nonce)}`);
  }
});

test("nkey authenticator - the signature verifies against the public nkey", (t) => {
  const pair = nkeys.createUser();
  const auth = fastNkeyAuthenticator(new TextDecoder().decode(pair.getSeed())) as (n?: string) => { nkey: string; sig: string };
  const { nkey, sig } = auth("a-nonce");
  t.is(nkey, pair.getPublicKey());
  t.true(nkeys.fromPublic(nkey).verify(new TextEncoder().encode("a-nonce"), nkeys.decode(sig)));
});

test("nkey authenticator - a bad seed throws at creation, not at connect", (t) => {
  t.throws(() => fastNkeyAuthenticator("SUNOTASEED"));
});

test("nkey authenticator - every signing role gives nats.js's nkey and signature", (t) => {
  for (const make of [nkeys.createUser, nkeys.createAccount, nkeys.createServer, nkeys.createOperator, nkeys.createCluster]) {
    const pair = make();
    const seed = pair.getSeed();
    const ours = fastNkeyAuthenticator(new TextDecoder().decode(seed));
    t.deepEqual(ours("a-nonce"), nkeyAuthenticator(seed)("a-nonce"), pair.getPublicKey());
  }
});

/** A seed of two prefix bytes and a key of any length, with a valid CRC: what nkeys' own codec would never make. */
function seedOf(prefix: Buffer, key: Uint8Array): string {
  const raw = Buffer.concat([prefix, key, Buffer.alloc(2)]);
  raw.writeUInt16LE(crc16(raw.subarray(0, raw.length - 2)), raw.length - 2);
  return base32Encode(raw);
}

test("nkey authenticator - a Curve seed or a key of another length throws at creation, as nats.js's does at connect", (t) => {
  const seedText = new TextDecoder().decode(nkeys.createUser().getSeed());
  const user = base32Decode(seedText);
  const prefix = user.subarray(0, 2);
  // The seed made again from its parts is nats.js's own: the helpers are right.
  t.is(seedOf(prefix, user.subarray(2, 34)), seedText);
  for (const length of [30, 31, 33, 40, 64]) {
    const seed = seedOf(prefix, Buffer.alloc(length, 7));
    t.throws(() => fastNkeyAuthenticator(seed), undefined, `a ${length}-byte key`);
    t.throws(() => nkeyAuthenticator(new TextEncoder().encode(seed))("n"), undefined, `nats.js refuses a ${length}-byte key too`);
  }
  const curve = new TextDecoder().decode(nkeys.createCurve().getSeed());
  t.throws(() => fastNkeyAuthenticator(curve), { message: /not a signing nkey seed/ });
});

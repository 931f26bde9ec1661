import test from "ava";
import { nkeyAuthenticator, nkeys } from "@nats-io/transport-node";
import { fastNkeyAuthenticator } from "../../src/nats/nkey_authenticator.js";

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

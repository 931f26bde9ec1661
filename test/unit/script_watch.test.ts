import test from "ava";
import { TouchedKeys, repairEffects, unpropagatedKeys } from "../../src/master/script_watch.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const text = (effects: Uint8Array[][]): string[][] => effects.map((e) => e.map((a) => Buffer.from(a).toString("latin1")));

test("script watch - touched keys are deduplicated, binary-safe and copied", (t) => {
  const keys = new TouchedKeys({ scriptTouchedKeysMax: 10, scriptRepairBytesMax: 1000, scriptRunMaxMs: 1 });
  const chunk = b("k1\xff\x00k2");
  keys.add(chunk.subarray(0, 4));
  keys.add(b("k1\xff\x00"));
  keys.add(chunk.subarray(4));
  chunk.fill(0x21);
  t.deepEqual(keys.list.map((k) => k.toString("latin1")), ["k1\xff\x00", "k2"]);
  t.is(keys.overflow, null);
});

test("script watch - past scriptTouchedKeysMax or scriptRepairBytesMax the set is incomplete and says why", (t) => {
  const byCount = new TouchedKeys({ scriptTouchedKeysMax: 3, scriptRepairBytesMax: 1000, scriptRunMaxMs: 1 });
  for (let i = 0; i < 5; i++) byCount.add(b(`k${i}`));
  t.regex(byCount.overflow ?? "", /scriptTouchedKeysMax 3/);
  t.is(byCount.list.length, 3, "nothing is kept past the bound");
  const byBytes = new TouchedKeys({ scriptTouchedKeysMax: 100, scriptRepairBytesMax: 10, scriptRunMaxMs: 1 });
  byBytes.add(b("12345"));
  byBytes.add(b("123456"));
  t.regex(byBytes.overflow ?? "", /scriptRepairBytesMax 10/);
});

test("script watch - repair effects restore each key as the script left it, TTL included, or delete it", (t) => {
  const payload = b("\x00\x01v\x0a\x00");
  const effects = repairEffects([
    { key: b("plain"), payload, expireAtMs: -1 },
    { key: b("ttl"), payload, expireAtMs: 1_800_000_000_000 },
    { key: b("gone"), payload: null, expireAtMs: -2 },
    { key: b("expired-between"), payload, expireAtMs: -2 },
  ]);
  t.deepEqual(text(effects), [
    ["RESTORE", "plain", "0", payload.toString("latin1"), "REPLACE"],
    ["RESTORE", "ttl", "1800000000000", payload.toString("latin1"), "REPLACE", "ABSTTL"],
    ["DEL", "gone"],
    ["DEL", "expired-between"],
  ]);
});

test("script watch - unpropagated keys are the touched keys no effect names", (t) => {
  const effects = [[b("SET"), b("a"), b("1")], [b("RENAME"), b("b"), b("c")]];
  t.deepEqual(unpropagatedKeys([b("a"), b("b"), b("c"), b("hidden")], effects).map(String), ["hidden"]);
  t.deepEqual(unpropagatedKeys([b("SET")], effects).map(String), ["SET"], "a command name is not a key");
});

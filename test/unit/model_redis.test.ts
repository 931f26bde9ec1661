/**
 * The simulator's model Redis (src/sim/model_redis.ts, issue #10 class 2): live, it propagates what Redis 7 does
 * (relative TTLs made absolute, an expired key as DEL); replayed as a replica of the feeder, late effects leave the
 * keyspace they left live; replayed by the applier's own clock (a standalone Redis), they lose keys.
 */
import test from "ava";
import { applyRecord, ModelRedis, type ModelEffect } from "../../src/sim/model_redis.js";
import { encodeEffects } from "../../src/segment/record.js";
import type { ClientOp } from "../../src/sim/sim_bus.js";

const record = (effects: ModelEffect[]): Uint8Array => encodeEffects(effects.map((e) => e.map((a) => Buffer.from(a))));

/** Runs writes live on a fresh master at the given times; returns the master and every write's record. */
function live(writes: [number, ClientOp][]): { master: ModelRedis; records: Uint8Array[]; effects: ModelEffect[][] } {
  const master = new ModelRedis();
  const effects = writes.map(([atMs, op]) => master.execute(op, atMs).effects);
  return { master, records: effects.map(record), effects };
}

function replay(records: Uint8Array[], ownClockMs: number | null): ModelRedis {
  const copy = new ModelRedis();
  for (const r of records) applyRecord(copy, r, ownClockMs);
  return copy;
}

test("model redis - live writes propagate absolute TTLs: SET … PXAT, PEXPIREAT for PEXPIRE and GETEX, PERSIST, RENAME", (t) => {
  const { master, effects } = live([
    [1000, { op: "SET", key: "s", value: "v", pxMs: 2000 }],
    [1500, { op: "PEXPIRE", key: "s", pxMs: 600_000 }],
    [1600, { op: "GETEX", key: "s", pxMs: 100 }],
    [1650, { op: "PERSIST", key: "s" }],
    [1700, { op: "PERSIST", key: "s" }],
    [1800, { op: "RENAME", key: "s", dst: "d" }],
    [1900, { op: "PEXPIRE", key: "s", pxMs: 5 }],
  ]);
  t.deepEqual(effects, [
    [["SET", "s", "v", "PXAT", "3000"]],
    [["PEXPIREAT", "s", "601500"]],
    [["PEXPIREAT", "s", "1700"]],
    [["PERSIST", "s"]],
    [],
    [["RENAME", "s", "d"]],
    [],
  ]);
  t.is(master.dump(), "{d=v@-}");
});

test("model redis - a key past its TTL is deleted before a write touches it, and its DEL comes first", (t) => {
  const master = new ModelRedis();
  master.execute({ op: "SET", key: "k", value: "41", pxMs: 10 }, 0);
  t.deepEqual(master.execute({ op: "INCR", key: "k" }, 10).effects, [["INCR", "k"]], "at its TTL the key still lives");
  t.is(master.get("k")?.expireAtMs, 10, "INCR keeps the TTL");
  const incr = master.execute({ op: "INCR", key: "k" }, 11);
  t.deepEqual(incr.effects, [["DEL", "k"], ["INCR", "k"]]);
  t.is(incr.reply, 1);
  master.execute({ op: "SET", key: "a", value: "x", pxMs: 5 }, 20);
  const rename = master.execute({ op: "RENAME", key: "a", dst: "k" }, 30);
  t.false(rename.ok);
  t.deepEqual(rename.effects, [["DEL", "a"]], "a failed write still journals the expiry it caused");
  t.deepEqual(master.expireDue(100), [], "nothing left to expire");
  master.execute({ op: "SET", key: "b", value: "y", pxMs: 5 }, 100);
  t.deepEqual(master.expireDue(106), [["DEL", "b"]], "active expiry on the master's timer");
});

/**
 * The reproduction: `SET s v PX 2000`, `PEXPIRE s 600000` (both acked), replayed 3 s later (a replica that
 * lags, restarts or bootstraps; the master rebuilding after a kill -9).
 */
test("model redis - replayed late as a replica of the feeder, an extended TTL keeps the key; by the applier's clock it is lost", (t) => {
  const { master, records } = live([
    [0, { op: "SET", key: "s", value: "v", pxMs: 2000 }],
    [1000, { op: "PEXPIRE", key: "s", pxMs: 600_000 }],
  ]);
  t.is(master.dump(), "{s=v@601000}");
  t.is(replay(records, null).dump(), master.dump(), "the feeder's replay leaves what the master holds");
  t.is(replay(records, 3000).dump(), "{}", "a standalone Redis drops s at SET … PXAT <past> and PEXPIREAT finds nothing");
});

test("model redis - a move out of an expiring key, PERSIST and GETEX replay the same whatever the delay", (t) => {
  const { master, records } = live([
    [0, { op: "SET", key: "src", value: "v", pxMs: 50 }],
    [10, { op: "RENAME", key: "src", dst: "dst" }],
    [20, { op: "PERSIST", key: "dst" }],
    [30, { op: "SET", key: "g", value: "w", pxMs: 40 }],
    [40, { op: "GETEX", key: "g", pxMs: 100_000 }],
  ]);
  t.is(master.dump(), "{dst=v@- g=w@100040}");
  t.is(replay(records, null).dump(), master.dump(), "the feeder's replay never looks at a clock");
  t.is(replay(records, 45).dump(), "{dst=v@- g=w@100040}", "before the TTLs pass, a standalone Redis too");
  t.is(replay(records, 1000).dump(), "{}", "after, by its own clock a standalone Redis renames nothing and extends nothing");
});

test("model redis - a replica of the feeder keeps a key whose TTL passed until the journal's DEL comes", (t) => {
  const master = new ModelRedis();
  const set = master.execute({ op: "SET", key: "k", value: "v", pxMs: 5 }, 0).effects;
  const copy = replay([record(set)], null);
  t.is(copy.dump(), "{k=v@5}", "kept long past its TTL");
  const del = master.expireDue(1000);
  applyRecord(copy, record(del), null);
  t.is(copy.dump(), master.dump());
  t.is(copy.size, 0);
});

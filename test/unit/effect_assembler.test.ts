import test from "ava";
import { EffectAssembler, MARKER_CHANNEL_PREFIX, SURPRISES_LISTED_MAX, newMarkerChannel } from "../../src/master/effect_assembler.js";
import type { Effect } from "../../src/segment/record.js";

const MARKER_CHANNEL = newMarkerChannel();
/** An assembler of this incarnation's channel whose next marker is `next`. */
const assembler = (next = 1): EffectAssembler => new EffectAssembler(MARKER_CHANNEL, next);

const cmd = (...args: string[]): Uint8Array[] => args.map((a) => Buffer.from(a));
const marker = (n: number | string): Uint8Array[] => cmd("PUBLISH", MARKER_CHANNEL, String(n));
const text = (effects: Effect[]): string[][] => effects.map((e) => e.map((a) => Buffer.from(a).toString("latin1")));

test("effect assembler - effects are grouped up to each marker", (t) => {
  const a = assembler();
  t.is(a.push(cmd("SET", "a", "1")), null);
  t.is(a.push(cmd("INCRBY", "n", "5")), null);
  const first = a.push(marker(1));
  if (first === null) return t.fail("no record at marker 1");
  t.is(first.marker, 1);
  t.deepEqual(text(first.effects), [
    ["SET", "a", "1"],
    ["INCRBY", "n", "5"],
  ]);
  a.push(cmd("DEL", "a"));
  const second = a.push(marker(2));
  t.is(second?.marker, 2);
  t.deepEqual(text(second?.effects ?? []), [["DEL", "a"]]);
  const third = a.push(marker(3));
  t.deepEqual(third, { marker: 3, effects: [], surprises: [] }, "a command with no effect (e.g. a no-op write) still closes its record");
});

test("effect assembler - the marker is recognized case-insensitively; a PUBLISH elsewhere is an ordinary effect", (t) => {
  const a = assembler(8);
  t.is(a.push(cmd("PUBLISH", "news", "hello")), null);
  t.is(a.push(cmd("PUBLISH", MARKER_CHANNEL, "7", "extra")), null, "not the marker's shape");
  const r = a.push(cmd("publish", MARKER_CHANNEL, "8"));
  t.is(r?.marker, 8);
  t.deepEqual(text(r?.effects ?? []), [
    ["PUBLISH", "news", "hello"],
    ["PUBLISH", MARKER_CHANNEL, "7", "extra"],
  ]);
});

test("effect assembler - MULTI, EXEC, PING and SELECT 0 are dropped, in any case", (t) => {
  const a = assembler(4);
  for (const c of [cmd("SELECT", "0"), cmd("MULTI"), cmd("SET", "k", "v"), cmd("ping"), cmd("Exec"), cmd("select", "0"), cmd("multi"), cmd("EXEC")]) {
    t.is(a.push(c), null);
  }
  t.is(a.pendingEffects, 1);
  const r = a.push(marker(4));
  t.deepEqual(text(r?.effects ?? []), [["SET", "k", "v"]]);
});

test("effect assembler - a SELECT of another database is a surprise, never a throw: its effects are not journaled, database 0's are", (t) => {
  const a = assembler();
  a.push(cmd("SET", "in0", "1"));
  for (const select of [cmd("SELECT", "1"), cmd("SELECT", "15"), cmd("SELECT")]) t.notThrows(() => a.push(select));
  t.is(a.push(cmd("SET", "elsewhere", "1")), null);
  a.push(cmd("SELECT", "0"));
  a.push(cmd("SET", "back", "1"));
  const r = a.push(marker(1));
  t.deepEqual(text(r?.effects ?? []), [["SET", "in0", "1"], ["SET", "back", "1"]]);
  t.is(r?.surprises.length, 4, "three SELECTs and one effect outside database 0");
  t.regex(r?.surprises.join("\n") ?? "", /selected database "1"/);
  t.deepEqual(a.push(marker(2))?.surprises, [], "surprises are reported once");
});

// The master's Redis has a database 1 (a replica's applied marker, apply_records.ts APPLIED_DB) and its ACL cannot
// look at COPY's DB argument: a script's `redis.call('COPY', k, '__qjm:applied', 'DB', '1', 'REPLACE')` runs there and
// Redis propagates it as is, in database 0. Journaled, every replica would write into its marker's database.
test("effect assembler - a COPY into another database (a script's) is a surprise, not journaled; COPY … DB 0 is an effect", (t) => {
  const a = assembler();
  a.push(cmd("SET", "k", "99"));
  for (const c of [cmd("COPY", "k", "__qjm:applied", "DB", "1", "REPLACE"), cmd("copy", "k", "hidden", "db", "1"), cmd("COPY", "k", "h", "REPLACE", "DB", "15")]) {
    t.notThrows(() => a.push(c));
  }
  a.push(cmd("COPY", "k", "same", "DB", "0"));
  a.push(cmd("COPY", "k", "plain"));
  a.push(cmd("COPY", "db", "1"));
  const r = a.push(marker(1));
  t.deepEqual(text(r?.effects ?? []), [["SET", "k", "99"], ["COPY", "k", "same", "DB", "0"], ["COPY", "k", "plain"], ["COPY", "db", "1"]]);
  t.is(r?.surprises.length, 3);
  t.regex(r?.surprises.join("\n") ?? "", /COPY into database "1"/);
});

test("effect assembler - surprises are bounded: past SURPRISES_LISTED_MAX they are counted", (t) => {
  const a = assembler();
  a.push(cmd("SELECT", "1"));
  for (let i = 0; i < 1000; i++) a.push(cmd("SET", `k${i}`, "v"));
  t.is(a.pendingSurprises, 1001);
  const surprises = a.takeSurprises();
  t.is(surprises.length, SURPRISES_LISTED_MAX + 1);
  t.is(surprises.at(-1), `and ${1001 - SURPRISES_LISTED_MAX} more`);
  t.is(a.pendingSurprises, 0);
});

test("effect assembler - a malformed or unexpected marker number on the secret channel is data, never a cut", (t) => {
  const a = assembler(5);
  for (const n of ["twelve", "1.5", "4", "6", "05", "999"]) t.is(a.push(marker(n)), null, `marker ${n}`);
  const r = a.push(marker(5));
  t.is(r?.marker, 5);
  t.is(r?.effects.length, 6, "kept as the PUBLISH effects they are");
  t.is(r?.surprises.length, 6);
  t.is(a.expectedMarker, 6);
});

// Issue #10 class 4: `EVAL "redis.call('publish','__qjm:marker','999')" 0` closed another client's record.
test("effect assembler - a PUBLISH on the old fixed marker channel, or on another incarnation's, is an ordinary effect", (t) => {
  const a = assembler(1);
  t.is(a.push(cmd("SET", "a", "1")), null);
  t.is(a.push(cmd("PUBLISH", "__qjm:marker", "1")), null, "the old fixed channel");
  t.is(a.push(cmd("PUBLISH", "__qjm:marker", "999")), null);
  t.is(a.push(cmd("PUBLISH", newMarkerChannel(), "1")), null, "a guessed channel");
  t.is(a.push(cmd("PUBLISH", MARKER_CHANNEL_PREFIX, "1")), null);
  const r = a.push(marker(1));
  t.is(r?.marker, 1);
  t.is(r?.effects.length, 5);
  t.deepEqual(r?.surprises, []);
});

test("effect assembler - each incarnation's marker channel is a fresh 128-bit secret", (t) => {
  const channels = new Set(Array.from({ length: 100 }, () => newMarkerChannel()));
  t.is(channels.size, 100);
  for (const c of channels) t.regex(c, /^__qjm:marker:[0-9a-f]{32}$/);
});

test("effect assembler - orphan effects (no client marker) are taken as their own record", (t) => {
  const a = assembler(9);
  a.push(cmd("DEL", "expired:1"));
  a.push(cmd("DEL", "expired:2"));
  t.is(a.pendingEffects, 2);
  t.is(a.pendingBytes, "DELexpired:1DELexpired:2".length);
  t.deepEqual(text(a.takeOrphans()), [
    ["DEL", "expired:1"],
    ["DEL", "expired:2"],
  ]);
  t.is(a.pendingEffects, 0);
  t.is(a.pendingBytes, 0);
  t.deepEqual(a.takeOrphans(), []);
  a.push(cmd("SET", "x", "1"));
  t.deepEqual(text(a.push(marker(9))?.effects ?? []), [["SET", "x", "1"]], "orphans taken do not reach the next record");
  t.is(a.pendingBytes, 0);
});

test("effect assembler - arguments are copied: reusing the stream's buffer afterwards does not change stored effects", (t) => {
  const chunk = Buffer.from("SETkeyvalue\x00\xff", "latin1");
  const args = [chunk.subarray(0, 3), chunk.subarray(3, 6), chunk.subarray(6)];
  const a = assembler();
  a.push(args);
  chunk.fill(0x21);
  const orphans = a.takeOrphans();
  t.deepEqual(text(orphans), [["SET", "key", "value\x00\xff"]]);

  const chunk2 = Buffer.from("DELgone", "latin1");
  a.push([chunk2.subarray(0, 3), chunk2.subarray(3)]);
  chunk2.write("XXXXXXX", "latin1");
  t.deepEqual(text(a.push(marker(1))?.effects ?? []), [["DEL", "gone"]]);
});

test("effect assembler - the link's own REPLCONF GETACK is never journaled", (t) => {
  const a = assembler();
  t.is(a.push(["REPLCONF", "GETACK", "*"].map((s) => Buffer.from(s))), null);
  t.is(a.pendingEffects, 0);
});

test("effect assembler - effects past effectsBytesMax are dropped, not held; the marker reports the overflow (issue #10 class 5)", (t) => {
  const a = new EffectAssembler(MARKER_CHANNEL, 7, 1000);
  // A script running many SETs: the assembler holds none past the bound, however many come.
  for (let i = 0; i < 10_000; i++) t.is(a.push(cmd("SET", `k${i}`, "x".repeat(50))), null);
  t.true(a.overflow);
  t.true(a.pendingBytes > 10_000 * 50, "counted");
  t.is(a.pendingEffects, 1, "held: none but the overflow itself (so an orphan overflow is noticed)");
  const refused = a.push(marker(7));
  t.is(refused?.marker, 7);
  t.deepEqual(refused?.effects, []);
  t.true((refused?.overflowBytes ?? 0) > 1000);
  t.false(a.overflow);
  // The next write is assembled as usual.
  a.push(cmd("SET", "small", "1"));
  t.deepEqual(a.push(marker(8)), { marker: 8, effects: [[Buffer.from("SET"), Buffer.from("small"), Buffer.from("1")]], surprises: [] });
});

test("effect assembler - effects within effectsBytesMax (framing counted) make a record whose payload fits the bound", (t) => {
  const a = new EffectAssembler(MARKER_CHANNEL, 1, 200);
  a.push(cmd("SET", "k", "x".repeat(100)));
  const r = a.push(marker(1));
  t.is(r?.overflowBytes, undefined);
  t.is(r?.effects.length, 1);
});

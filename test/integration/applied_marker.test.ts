/**
 * The replica's applied-txid marker (src/redis/apply_records.ts) on a real redis-server 7.0, the replica of a
 * feeder as a replica's Redis is: written in database 1 in the same MULTI block as its run's effects (SELECT inside
 * MULTI on the replication stream), kept by the AOF across a restart; an older data directory's marker in database
 * 0 is read and deleted by the next run; a client's key of that name in database 0 is the client's, never the marker.
 * And a run whose ACK timed out: before the fix (review, session 25), the replica read the marker at once while the
 * feeder link stayed live, so Redis could answer the read before it reached the run's EXEC, and the run applied twice.
 */
import test from "ava";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../../src/process/ports.js";
import { APPLIED_DB, APPLIED_KEY, ApplyError, applyRecords, dropAppliedMarker, readAppliedMarker } from "../../src/redis/apply_records.js";
import { Feeder, type FeederOptions } from "../../src/redis/feeder.js";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import { encodeRecordPayload, type RecordView } from "../../src/segment/record.js";
import { BUSY_SCRIPT } from "../helpers/actor_redis.js";

const dirs: string[] = [];
const servers: RedisServer[] = [];
const clients: Redis[] = [];
const feeders: Feeder[] = [];
/** Each Redis's directory (its log) by port. */
const redisDirs = new Map<number, string>();
/**
 * Each test's Redis by port. The tests of this file run at once: the restart below once stopped `servers.pop()`, which
 * was as often the stalled-Redis test's server (SIGTERM in its log, then "Connection is closed": the CI flake).
 */
const serverOn = new Map<number, RedisServer>();

test.after.always(async () => {
  for (const c of clients) c.disconnect();
  for (const f of feeders) await f.close();
  for (const s of servers) await s.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function record(txid: number, effects: string[][]): RecordView {
  const payload = encodeRecordPayload(effects.map((e) => e.map((a) => Buffer.from(a))), null, 1 << 21);
  return { txid, epoch: 1, offset: 0, length: payload.length, payload };
}

/**
 * A connection of the test's own. A connect that fails (CI saw "Connection is closed." twice, beside a stalled Redis:
 * ioredis closes a connection whose ready check failed, and says no more) is tried twice more; what each attempt
 * heard, and the end of the Redis's log, go to the test's output.
 */
async function connect(port: number, db = 0, log?: (line: string) => void): Promise<Redis> {
  const heard: string[] = [];
  for (let attempt = 1; ; attempt++) {
    const r = new Redis({ port, host: "127.0.0.1", db, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on("error", (err: Error) => heard.push(`attempt ${attempt}: ${err.message}`));
    clients.push(r);
    try {
      await r.connect();
      if (heard.length > 0) log?.(`connect to ${port}: ${heard.join("; ")}`);
      return r;
    } catch (err) {
      heard.push(`attempt ${attempt}: ${(err as Error).message}`);
      if (attempt === 3) throw new Error(`connect to ${port}: ${heard.join("; ")}\n${redisLogTail(port)}`);
    }
  }
}

/** The last lines of the log of the Redis this test started on `port`. */
function redisLogTail(port: number): string {
  const dir = redisDirs.get(port);
  const file = dir === undefined ? undefined : path.join(dir, "redis.log");
  if (file === undefined || !fs.existsSync(file)) return "(no log)";
  return fs.readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
}

/** A persistent redis-server (AOF), the feeder's replica from its start, synced. */
async function replicaOf(feeder: Feeder, dir: string, port: number): Promise<Redis> {
  const extraArgs = ["--replicaof", "127.0.0.1", String(feeder.port)];
  redisDirs.set(port, dir);
  const server = await startRedisServer({ port, dir, persistent: true, startTimeoutMs: 15_000, extraArgs });
  servers.push(server);
  serverOn.set(port, server);
  const client = await connect(port);
  await feeder.sync(client);
  return client;
}

test("the applied marker: in database 1 with its run, kept by the AOF; an older one in database 0 read and deleted once; a client's key of that name stays", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-marker-"));
  dirs.push(dir);
  const feeder = await Feeder.listen({ syncTimeoutMs: 15_000, loadTimeoutMs: 15_000, stallTimeoutMs: 15_000, keepaliveMs: 1000 });
  feeders.push(feeder);
  const port = await freePort();
  let client = await replicaOf(feeder, dir, port);
  t.deepEqual(await readAppliedMarker(client), { txid: 0, legacy: false }, "nothing applied: no marker");

  // An older data directory: the marker in database 0.
  await feeder.sendRun([["SET", APPLIED_KEY, "7"]]);
  t.deepEqual(await readAppliedMarker(client), { txid: 7, legacy: true });
  const marker = { legacy: true };
  await applyRecords(feeder, client, [record(8, [["SET", "a", "1"]])], { marker });
  t.false(marker.legacy, "the old marker is deleted once");
  t.deepEqual(await readAppliedMarker(client), { txid: 8, legacy: false });
  t.deepEqual(await client.keys("*"), ["a"], "database 0 holds the effects only");
  t.is(await (await connect(port, APPLIED_DB)).get(APPLIED_KEY), "8");

  // A client's key of that name is an effect like any other: it stays, and is not taken for the marker.
  await applyRecords(feeder, client, [record(9, [["SET", APPLIED_KEY, "client's"]]), record(10, [["INCR", "a"]])], { marker });
  t.deepEqual(await readAppliedMarker(client), { txid: 10, legacy: false });
  t.is(await client.get(APPLIED_KEY), "client's");
  // The shared connection is back on database 0 after every read, and so is the stream after every run.
  t.is(await client.get("a"), "2");

  // A restart: the AOF holds both databases (SELECT inside the MULTI blocks replayed).
  await serverOn.get(port)!.stop();
  client = await replicaOf(feeder, dir, port);
  t.deepEqual(await readAppliedMarker(client), { txid: 10, legacy: false }, "the marker survives the restart");
  t.deepEqual((await client.keys("*")).sort(), [APPLIED_KEY, "a"]);
  await applyRecords(feeder, client, [record(11, [["SET", "b", "x"]])], { marker });
  t.deepEqual(await readAppliedMarker(client), { txid: 11, legacy: false });

  // What a master does with a replica's Redis: the marker goes, the client's key stays.
  await dropAppliedMarker(feeder, client);
  t.is(await (await connect(port, APPLIED_DB)).dbsize(), 0, "no marker left");
  t.is(await client.get(APPLIED_KEY), "client's");
  t.is(await client.dbsize(), 3);
});

test("the error count kept between runs: one INFO per call, and an effect Redis refuses is still caught", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-errors-"));
  dirs.push(dir);
  const feeder = await Feeder.listen({ syncTimeoutMs: 15_000, loadTimeoutMs: 15_000, stallTimeoutMs: 15_000, keepaliveMs: 1000 });
  feeders.push(feeder);
  const client = await replicaOf(feeder, dir, await freePort());
  // INFO calls so far (this INFO is counted after it ran).
  const infoCalls = async (): Promise<number> => Number(/cmdstat_info:calls=(\d+)/.exec(await client.info("commandstats"))?.[1] ?? 0);
  const errors: { count: number | null } = { count: null };
  await applyRecords(feeder, client, [record(1, [["SET", "a", "1"]])], { errors });
  t.is(typeof errors.count, "number", "the count after the run is kept");
  const before = await infoCalls();
  await applyRecords(feeder, client, [record(2, [["INCR", "a"]])], { errors });
  t.is((await infoCalls()) - before - 1, 1, "with the count kept, a call reads INFO once (sent beside its run's ACK), not twice");
  // INCR of a value that is not a number fails on the replica: caught with the kept count as with a fresh one.
  await feeder.sendRun([["SET", "s", "x"]]);
  const err = await t.throwsAsync(applyRecords(feeder, client, [record(3, [["INCR", "s"]])], { errors }));
  t.true(err instanceof ApplyError && err.effectFailed);
  t.is(errors.count, null, "after a failed call the count is read again");
  // A run Redis reads in several turns (it reads a master's stream 16 KB at a time), its refused effect at the end: the
  // INFO sent beside it is answered mid-run (its slave_repl_offset short of the run's end), so it does not count and
  // the count is read again after the ACK — which finds the refused INCR.
  await applyRecords(feeder, client, [record(4, [["SET", "b", "1"]])], { errors });
  const pad = "p".repeat(1000);
  const big = Array.from({ length: 2000 }, (_, i) => record(5 + i, [["SET", `pad:${i}`, pad]]));
  const beforeBig = await infoCalls();
  const bigErr = await t.throwsAsync(applyRecords(feeder, client, [...big, record(2005, [["INCR", "s"]])], { errors, recordsPerTransaction: 4096 }));
  t.true(bigErr instanceof ApplyError && bigErr.effectFailed, "the refused effect at the end of a 2 MB run is caught");
  t.is((await infoCalls()) - beforeBig - 1, 2, "the INFO answered mid-run was not counted: read again after the ACK");
});

test("a run whose ACK timed out behind a stalled Redis: the marker read after it is final, and the run applies once (found in review, session 25)", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-acktimeout-"));
  dirs.push(dir);
  // Read by the feeder at each wait: shortened below for the one run whose ACK must time out.
  const options: FeederOptions = { syncTimeoutMs: 15_000, loadTimeoutMs: 15_000, stallTimeoutMs: 15_000, keepaliveMs: 10_000 };
  const feeder = await Feeder.listen(options);
  feeders.push(feeder);
  const port = await freePort();
  let client = await replicaOf(feeder, dir, port);
  const busy = await connect(port);
  const marker = { legacy: false };
  const errors: { count: number | null } = { count: null };
  await applyRecords(feeder, client, [record(1, [["SET", "counter", "0"]])], { marker, errors });

  // A big run: Redis reads a master's stream 16 KB per event-loop turn, so its EXEC comes many turns after the start.
  const pad = "x".repeat(100);
  const effects: string[][] = [];
  for (let i = 0; i < 8000; i++) effects.push(["SET", `pad:${i}`, pad]);
  effects.push(["INCR", "counter"]);

  // Redis stalls (here a read-only script; in production a disk, a swap, a long client script) past the ACK timeout.
  // On a loaded host the script may start only after the run was acknowledged: then the case did not happen, and the
  // next run tries again (each run's INCR counts once either way).
  let txid = 1;
  let timedOut = false;
  for (let attempt = 1; attempt <= 5 && !timedOut; attempt++) {
    const run = record(++txid, effects);
    options.syncTimeoutMs = 300;
    const script = busy.eval(BUSY_SCRIPT, 0, 1500).catch(() => null);
    await new Promise((res) => setTimeout(res, 100));
    const err = await applyRecords(feeder, client, [run], { marker, errors }).then(() => null, (e: unknown) => e);
    options.syncTimeoutMs = 15_000;
    if (err === null) {
      await script;
      t.log(`attempt ${attempt}: the run was acknowledged before the stall began; again`);
      continue;
    }
    timedOut = true;
    t.true(err instanceof ApplyError && !err.effectFailed, "the run's ACK timed out");
    // What the replica does next: relink if the link dropped (ensureLinked), read the marker (resync), apply from it + 1.
    // On a connection of its own, as the replica's client reconnects: Redis once closed the test's first one here in
    // CI (cause not found; not reproduced in 12 runs beside 2 busy loops), which is not what this test is about.
    client = await connect(port, 0, (line) => t.log(line));
    const relink = !feeder.live;
    const resumed = (async () => {
      if (relink) await feeder.sync(client);
      return (await readAppliedMarker(client)).txid;
    })();
    await script;
    t.log(`relinked before the marker read: ${relink}`);
    t.log(`marker read after the timeout: ${await resumed}`);
    if ((await resumed) < txid) await applyRecords(feeder, client, [run], { marker, errors });
  }
  t.true(timedOut, "a run's ACK timed out in one of 5 attempts");
  t.is((await readAppliedMarker(client)).txid, txid);
  t.is(await client.get("counter"), String(txid - 1), "each run's INCR ran once");
});

/**
 * A run whose ACK timed out (found in review, session 25): before the fix, the replica read the applied marker at
 * once (Replica.apply's catch → resync) while the feeder link stayed live, so the run's bytes may still be on their
 * way through Redis. Is the marker read then final? If Redis answers it before it reaches the run's EXEC, the
 * replica resumes below a run Redis later runs, and applying that run again counts it twice.
 */
import test from "ava";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../../src/process/ports.js";
import { ApplyError, applyRecords, readAppliedMarker } from "../../src/redis/apply_records.js";
import { Feeder, type FeederOptions } from "../../src/redis/feeder.js";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import { encodeRecordPayload, type RecordView } from "../../src/segment/record.js";

const dirs: string[] = [];
const servers: RedisServer[] = [];
const clients: Redis[] = [];
const feeders: Feeder[] = [];

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

async function connect(port: number): Promise<Redis> {
  const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on("error", () => {});
  clients.push(r);
  await r.connect();
  return r;
}

const BUSY_SCRIPT = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1]) * 1000 return 1";

test("a marker read right after a run's ACK timed out is final (else the run is applied twice)", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-acktimeout-"));
  dirs.push(dir);
  const options: FeederOptions = { syncTimeoutMs: 15_000, loadTimeoutMs: 15_000, stallTimeoutMs: 15_000, keepaliveMs: 10_000 };
  const feeder = await Feeder.listen(options);
  feeders.push(feeder);
  const port = await freePort();
  servers.push(await startRedisServer({ port, dir, persistent: true, startTimeoutMs: 15_000, extraArgs: ["--replicaof", "127.0.0.1", String(feeder.port)] }));
  const client = await connect(port);
  const busy = await connect(port);
  await feeder.sync(client);
  const marker = { legacy: false };
  const errors: { count: number | null } = { count: null };
  await applyRecords(feeder, client, [record(1, [["SET", "counter", "0"]])], { marker, errors });

  // A big run: Redis reads a master's stream 16 KB per event-loop turn, so its EXEC comes many turns after the start.
  const pad = "x".repeat(100);
  const effects: string[][] = [];
  for (let i = 0; i < 8000; i++) effects.push(["SET", `pad:${i}`, pad]);
  effects.push(["INCR", "counter"]);
  const run = record(2, effects);

  // Redis stalls (here a read-only script; in production a disk, a swap, a long client script) past the ACK timeout.
  options.syncTimeoutMs = 300;
  const script = busy.eval(BUSY_SCRIPT, 0, 1500).catch(() => null);
  await new Promise((res) => setTimeout(res, 100));
  const err = await t.throwsAsync(applyRecords(feeder, client, [run], { marker, errors }));
  t.true(err instanceof ApplyError && !err.effectFailed, "the run's ACK timed out");
  options.syncTimeoutMs = 15_000;
  // What the replica does next: relink if the link dropped (ensureLinked), read the marker (resync), apply from it + 1.
  const relink = !feeder.live;
  const resumed = (async () => {
    if (relink) await feeder.sync(client);
    return (await readAppliedMarker(client)).txid;
  })();
  await script;
  t.log(`relinked before the marker read: ${relink}`);
  t.log(`marker read after the timeout: ${await resumed}`);
  if ((await resumed) < 2) await applyRecords(feeder, client, [run], { marker, errors });
  t.is((await readAppliedMarker(client)).txid, 2);
  t.is(await client.get("counter"), "1", "the INCR ran once");
});

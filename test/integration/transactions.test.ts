/**
 * Transactions through the journal (issue #12 item 4) on a real three-data-node cluster: a `{ tx }` write over NATS
 * (typed EXEC reply, per-command errors, EXECABORT, refusals, a retry applied once); MULTI/EXEC through a replica's and
 * the master's door with ioredis (replies typed as Redis's); replicas never show half a transaction; WATCH: two clients
 * racing an optimistic INCR end with the counter equal to their successful EXECs; edge cases answered byte for byte as
 * a plain redis-server answers them; transactions retried across a kill -9 of the master are applied once.
 */
import test from "ava";
import { Redis } from "ioredis";
import { connect, QjmClientError, type QjmClient } from "../../src/client/index.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import { freePort } from "../../src/process/ports.js";
import { request } from "../../src/nats/bus.js";
import { ErrorCode } from "../../src/protocol/errors.js";
import { subjects } from "../../src/protocol/subjects.js";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import { RespConnection } from "../../src/redis/resp_connection.js";
import type { RespValue } from "../../src/redis/resp_parser.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const DATA_NODES = ["d1", "d2", "d3"];
let tc: TestCluster | null = null;
let plain: RedisServer | null = null;
let plainDir = "";
let client: QjmClient | null = null;
let masterId = "";
const closers: (() => void)[] = [];

test.before(async () => {
  tc = await startTestCluster("transactions", { dataNodes: DATA_NODES });
  masterId = (await waitForWriter(tc)).id;
  await until("every front door to listen", 30000, async () => {
    const doors = (await tc!.status()).filter((s) => (s.details.respDoor as { listening?: boolean } | undefined)?.listening === true);
    return doors.length === DATA_NODES.length ? true : undefined;
  });
  client = await connect({ servers: tc.cluster.natsUrl, credsFile: credsFile(tc.cluster.dataDir, CLIENT_USER), cluster: tc.cluster.cluster, timeoutMs: 5000, retryForMs: 60_000 });
  plainDir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-plain-"));
  plain = await startRedisServer({ port: await freePort(), dir: plainDir, persistent: false, startTimeoutMs: 15000 });
});

test.after.always(async () => {
  for (const c of closers) c();
  await client?.close().catch(() => {});
  await plain?.stop();
  if (plainDir !== "") fs.rmSync(plainDir, { recursive: true, force: true });
  await tc?.stop();
});

const portOf = (id: string): number => tc!.cluster.config.respPort + DATA_NODES.indexOf(id);
const replicas = (): string[] => DATA_NODES.filter((id) => id !== masterId);

async function door(id: string, level?: string): Promise<Redis> {
  const r = new Redis({ port: portOf(id), host: "127.0.0.1", maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
  r.on("error", () => {});
  closers.push(() => r.disconnect());
  await r.connect();
  if (level !== undefined) await r.call("QJM.CONSISTENCY", level);
  return r;
}

async function raw(port: number): Promise<RespConnection> {
  const c = await RespConnection.open({ port });
  closers.push(() => c.close());
  return c;
}

/** A reply as comparable text: type and value, recursively. */
function show(v: RespValue): unknown {
  if (v.type === "array") return v.items === null ? "*nil" : v.items.map(show);
  if (v.type === "bulk") return v.value === null ? "$nil" : `$${v.value.toString()}`;
  if (v.type === "simple") return `+${v.value}`;
  if (v.type === "error") return `-${v.value}`;
  if (v.type === "integer") return `:${v.value}`;
  return v;
}

test.serial("NATS: a { tx } write runs MULTI … EXEC on the master as one record; errors typed; refusals", async (t) => {
  const r = await client!.transaction([["SET", "nt:a", "1"], ["INCR", "nt:a"], ["GET", "nt:a"], ["LPUSH", "nt:a", "x"]]);
  t.deepEqual(r.typed, ["OK", 2, Buffer.from("2"), { err: "WRONGTYPE Operation against a key holding the wrong kind of value" }]);
  const abort = await t.throwsAsync(client!.transaction([["SET", "nt:b", "1"], ["NOSUCH"]]), { instanceOf: QjmClientError });
  t.is(abort!.code, ErrorCode.REDIS_ERROR);
  t.regex(abort!.message, /^EXECABORT/);
  const blocking = await t.throwsAsync(client!.transaction([["BLPOP", "nt:l", "0"]]), { instanceOf: QjmClientError });
  t.is(blocking!.code, ErrorCode.COMMAND_REFUSED);
  const script = await t.throwsAsync(client!.transaction([["EVAL", "return 1", "0"]]), { instanceOf: QjmClientError });
  t.is(script!.code, ErrorCode.COMMAND_REFUSED);
  t.deepEqual((await client!.transaction([])).typed, [], "an empty transaction is an empty array");
});

test.serial("NATS: a transaction sent again with its id is answered from the dedupe window (EXEC's reply), not applied again", async (t) => {
  const nc = await tc!.connectAs("client");
  try {
    const body = { tx: [["INCR", "dd:n"], ["RPUSH", "dd:l", "x"]], id: { client: "tx-dedupe", seq: 1 } };
    const first = (await request(nc, subjects(tc!.cluster.cluster).write, body, 5000)) as { ok: boolean; txid: number; reply: unknown; duplicate?: boolean };
    const again = (await request(nc, subjects(tc!.cluster.cluster).write, body, 5000)) as typeof first;
    t.like(first, { ok: true, reply: [1, 1] });
    t.like(again, { ok: true, txid: first.txid, reply: [1, 1], duplicate: true });
    t.deepEqual((await client!.transaction([["GET", "dd:n"], ["LLEN", "dd:l"]])).reply, ["1", 1], "applied once");
  } finally {
    await nc.close();
  }
});

test.serial("ioredis: multi().set().incr().get().exec() through a replica's and the master's door, replies typed as Redis's", async (t) => {
  for (const id of [replicas()[0], masterId]) {
    const r = await door(id);
    const key = `io:${id}`;
    const out = await r.multi().set(key, "5").incr(key).get(key).lpush(key, "x").exec();
    t.is(out!.length, 4);
    t.deepEqual(out!.slice(0, 3), [[null, "OK"], [null, 6], [null, "6"]], id);
    t.regex(String(out![3][0]), /WRONGTYPE/, `${id}: WRONGTYPE inside EXEC is that command's error`);
    t.is(await r.get(key), "6", `${id}: read-your-writes after EXEC`);
  }
});

test.serial("edge cases answered as a plain redis-server answers them", async (t) => {
  // Each case is sent as one pipeline, on a fresh connection to each.
  const cases: { name: string; commands: string[][] }[] = [
    { name: "EXECABORT (unknown command queued)", commands: [["MULTI"], ["SET", "e:1", "v"], ["NOSUCHCMD", "x"], ["EXEC"], ["GET", "e:1"]] },
    { name: "wrong arity queued", commands: [["MULTI"], ["GET"], ["EXEC"]] },
    { name: "WRONGTYPE inside EXEC", commands: [["MULTI"], ["SET", "e:2", "s"], ["LPUSH", "e:2", "x"], ["GET", "e:2"], ["EXEC"]] },
    { name: "empty MULTI/EXEC", commands: [["MULTI"], ["EXEC"]] },
    { name: "DISCARD", commands: [["MULTI"], ["SET", "e:3", "1"], ["DISCARD"], ["GET", "e:3"]] },
    { name: "without MULTI", commands: [["EXEC"], ["DISCARD"]] },
    { name: "nested MULTI, WATCH inside MULTI", commands: [["MULTI"], ["MULTI"], ["WATCH", "e:4"], ["INCR", "e:4"], ["EXEC"]] },
    { name: "reads inside, PING", commands: [["SET", "e:5", "a"], ["MULTI"], ["GET", "e:5"], ["PING"], ["EXISTS", "e:5", "nope"], ["EXEC"]] },
    { name: "WATCH, UNWATCH", commands: [["WATCH", "e:6"], ["UNWATCH"], ["MULTI"], ["SET", "e:6", "1"], ["EXEC"]] },
    { name: "WATCH, MULTI, EXEC in one pipeline", commands: [["SET", "e:7", "0"], ["WATCH", "e:7", "e:8"], ["GET", "e:7"], ["MULTI"], ["INCR", "e:7"], ["EXEC"], ["GET", "e:7"]] },
  ];
  for (const c of cases) {
    const theirs = await raw(plain!.port);
    const ours = await raw(portOf(replicas()[0]));
    const expected = (await Promise.all(theirs.send(c.commands))).map(show);
    const got = (await Promise.all(ours.send(c.commands))).map(show);
    t.deepEqual(got, expected, c.name);
  }
});

test.serial("WATCH: a key modified by another connection aborts EXEC (nil), as on redis-server; unmodified runs", async (t) => {
  for (const [port, other] of [[plain!.port, plain!.port], [portOf(replicas()[0]), portOf(replicas()[1])]]) {
    const a = await raw(port);
    const b = await raw(other);
    await a.call(["SET", "w:k", "1"]);
    t.is(show(await a.call(["WATCH", "w:k"])), "+OK");
    t.is(show(await b.call(["SET", "w:k", "2"])), "+OK");
    const aborted = await Promise.all(a.send([["MULTI"], ["SET", "w:k", "3"], ["EXEC"]]));
    t.deepEqual(aborted.map(show), ["+OK", "+QUEUED", "*nil"], `port ${port}`);
    await a.call(["WATCH", "w:k"]);
    const ran = await Promise.all(a.send([["MULTI"], ["SET", "w:k", "4"], ["EXEC"]]));
    t.deepEqual(ran.map(show), ["+OK", "+QUEUED", ["+OK"]], `port ${port}`);
  }
});

test.serial("replicas never show half a transaction: concurrent MULTI SET a / SET b, readers on the replicas see a = b", async (t) => {
  const writers = await Promise.all(DATA_NODES.map((id) => door(id)));
  const readers = await Promise.all(replicas().map((id) => door(id, "eventual")));
  let done = false;
  const torn: string[] = [];
  let reads = 0;
  const reading = readers.map(async (r) => {
    while (!done) {
      const [a, b] = await r.mget("at:a", "at:b");
      reads++;
      if (a !== b) torn.push(`${a} / ${b}`);
    }
  });
  await Promise.all(
    writers.map(async (w, c) => {
      for (let i = 0; i < 60; i++) await w.multi().set("at:a", `${c}:${i}`).set("at:b", `${c}:${i}`).exec();
    }),
  );
  done = true;
  await Promise.all(reading);
  t.log(`${reads} reads on the replicas, 180 transactions`);
  t.deepEqual(torn, []);
  t.true(reads > 50);
});

test.serial("WATCH: two clients race an optimistic INCR (WATCH, GET, MULTI SET EXEC); the counter equals the successful EXECs", async (t) => {
  const conns = await Promise.all([replicas()[0], masterId, replicas()[1]].map((id) => door(id)));
  let aborts = 0;
  let successes = 0;
  await Promise.all(
    conns.map(async (r) => {
      for (let won = 0; won < 12; ) {
        await r.watch("race:n");
        const v = Number((await r.get("race:n")) ?? "0");
        const out = await r.multi().set("race:n", String(v + 1)).exec();
        if (out === null) aborts++;
        else {
          won++;
          successes++;
        }
      }
    }),
  );
  t.log(`${successes} successful EXECs, ${aborts} aborted`);
  t.is(successes, 36);
  t.is(await (await door(masterId)).get("race:n"), String(successes));
});

// Last: it kills the master.
test.serial("transactions retried across a kill -9 of the master are applied once", async (t) => {
  const acked: number[] = [];
  let stop = false;
  const workers = [0, 1, 2, 3].map(async (w) => {
    for (let i = 0; !stop || i < 3; i++) {
      const r = await client!.transaction([["INCR", "fo:n"], ["RPUSH", "fo:l", `${w}:${i}`]]);
      acked.push((r.typed as number[])[0]);
      if (i > 200) break;
    }
  });
  await until("a few transactions", 20000, () => (acked.length >= 20 ? true : undefined));
  await tc!.cluster.signal(masterId, "SIGKILL");
  const killed = masterId;
  masterId = (await waitForWriter(tc!)).id;
  t.not(masterId, killed);
  stop = true;
  await Promise.all(workers);
  tc!.cluster.startActor(killed);
  const r = await door(masterId);
  const n = Number(await r.get("fo:n"));
  const list = await r.llen("fo:l");
  t.log(`${acked.length} transactions acknowledged; counter ${n}, list ${list}`);
  t.is(n, acked.length, "each acknowledged transaction applied once");
  t.is(list, acked.length);
  t.deepEqual([...acked].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1), "every INCR reply distinct: none applied twice");
});

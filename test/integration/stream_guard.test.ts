/**
 * Issue #10 class 4 on real processes: no client input may disturb the master's effect stream or write to the
 * master's Redis without the journal knowing. Forged markers, scripts that suppress replication
 * (`redis.set_repl(redis.REPL_NONE)`, directly, via pairs(redis), or only in part), scripts that select another
 * database or flush: the writer never fails (its epoch stays), the client gets a clear answer, and the master's
 * Redis, every replica and the master's Redis rebuilt from the journal hold the same keys.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { Redis } from "ioredis";
import type { WriteReply } from "../../src/protocol/messages.js";
import { diffKeyspaces, dumpKeyspace, startTestCluster, until, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";

let tc: TestCluster | undefined;
test.before(async () => {
  // A low bound so the last test can pass it; the others touch a few keys per script.
  tc = await startTestCluster("streamguard", { scriptTouchedKeysMax: 50, scriptRunMaxMs: 5500 });
  await waitForWriter(tc);
});
test.after.always(async () => {
  await tc?.stop();
});

const port = (url: string | null): number => Number(new URL(url!).port);

function okTxid(t: { fail(message: string): void }, reply: WriteReply): number {
  if (!reply.ok) {
    t.fail(`write failed: ${reply.code} ${reply.message}`);
    return 0;
  }
  return reply.txid;
}

/** The master's keyspace equals every replica's once they applied `txid`. */
async function assertConverged(t: import("ava").ExecutionContext, txid: number, what: string): Promise<void> {
  await waitForReplicas(tc!, txid);
  const status = await tc!.status();
  const master = status.find((s) => s.role === "master")!;
  const masterKeys = await dumpKeyspace(port(master.redisUrl), tc!.redisPassword);
  for (const replica of status.filter((s) => s.role === "replica")) {
    const diffs = diffKeyspaces(masterKeys, await dumpKeyspace(port(replica.redisUrl), tc!.redisPassword));
    t.deepEqual(diffs.slice(0, 10), [], `${what}: ${replica.id} equals the master`);
  }
}

test.serial("stream guard - a script forging markers (old channel name, any number) closes no record; the writer serves on", async (t) => {
  const before = await waitForWriter(tc!);
  const forge = "for i = 1, 50 do redis.call('publish', '__qjm:marker', tostring(i)) end redis.call('publish', '__qjm:marker', '999') redis.call('set', KEYS[1], 'forger') return 1";
  // Other clients' writes run around the forger's: a forged cut would hand their effects to the wrong record.
  const replies = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => tc!.write(["INCR", `forge:counter:${i % 4}`])),
    tc!.write(["EVAL", forge, "1", "forge:k"]),
    ...Array.from({ length: 20 }, (_, i) => tc!.write(["SET", `forge:after:${i}`, String(i)])),
  ]);
  const txids = replies.map((r) => okTxid(t, r));
  const after = await waitForWriter(tc!);
  t.is(after.epoch, before.epoch, "no writer failure");
  await assertConverged(t, Math.max(...txids), "after forged markers");
  const master = await tc!.write(["EVAL", "return redis.call('get', KEYS[1])", "1", "forge:k"]);
  t.true(master.ok && Buffer.from(master.reply as Uint8Array).toString() === "forger", "a bulk reply: its bytes");
});

test.serial("stream guard - set_repl(REPL_NONE) directly, via pairs(redis) and in part: master, replicas and a rebuilt master agree", async (t) => {
  const before = await waitForWriter(tc!);
  const scripts: (string | number)[][] = [
    ["EVAL", "redis.set_repl(redis.REPL_NONE) redis.call('set', KEYS[1], 'hidden') return 1", 1, "hide:direct"],
    ["EVAL", "for k, v in pairs(redis) do if k == 'set_repl' then v(redis.REPL_NONE) end end redis.call('hset', KEYS[1], 'f', 'v') return 1", 1, "hide:pairs"],
    ["EVAL", "redis['set_' .. 'repl'](redis.REPL_NONE) redis.call('set', KEYS[1], 'v', 'PX', 600000) redis.call('rpush', KEYS[2], 'x', 'y') return 1", 2, "hide:ttl", "hide:list"],
    // In part: the first write of each key propagates, the later ones do not.
    ["EVAL", "redis.call('set', KEYS[1], '1') redis.call('sadd', KEYS[2], 'a') redis.set_repl(redis.REPL_NONE) redis.call('set', KEYS[1], '2') redis.call('sadd', KEYS[2], 'b') redis.set_repl(redis.REPL_ALL) redis.call('incr', KEYS[3]) return 1", 3, "hide:partial", "hide:set", "hide:n"],
    // Suppressed deletes and expiry changes.
    ["SET", "hide:victim", "v"],
    ["EVAL", "redis.set_repl(redis.REPL_NONE) redis.call('del', KEYS[1]) redis.call('persist', KEYS[2]) return 1", 2, "hide:victim", "hide:ttl"],
    ["EVAL", "redis.set_repl(redis.REPL_AOF) redis.call('set', KEYS[1], 'aof-only') return 1", 1, "hide:aof"],
  ];
  let last = 0;
  for (const args of scripts) last = okTxid(t, await tc!.write(args));
  t.is((await waitForWriter(tc!)).epoch, before.epoch);
  await assertConverged(t, last, "after scripts that suppress replication");
  const master = await waitForWriter(tc!);
  const live = await dumpKeyspace(port(master.redisUrl), tc!.redisPassword);
  t.deepEqual(live.get("hide:direct")?.value, "hidden");
  t.deepEqual(live.get("hide:partial")?.value, "2");
  t.false(live.has("hide:victim"));

  // The rebuild reads only the journal: it must give back the same keys.
  const redisPid = Number(fs.readFileSync(path.join(tc!.cluster.dataDir, "m1", "redis", "redis.pid"), "utf8"));
  process.kill(redisPid, "SIGKILL");
  const rebuilt = await until("a new writer with a rebuilt Redis", 60000, async () => (await tc!.status()).find((s) => s.role === "master" && s.health === "writing" && s.epoch > master.epoch), 100);
  const diffs = diffKeyspaces(live, await dumpKeyspace(port(rebuilt.redisUrl), tc!.redisPassword));
  t.deepEqual(diffs.slice(0, 10), [], "the rebuilt master equals the master before");
});

test.serial("stream guard - suppressing scripts racing plain writes on the same keys: every copy ends equal", async (t) => {
  const before = await waitForWriter(tc!);
  const hide = "redis.call('incr', KEYS[1]) redis.set_repl(redis.REPL_NONE) redis.call('incr', KEYS[1]) redis.call('rpush', KEYS[2], ARGV[1]) return 1";
  const replies = await Promise.all(
    Array.from({ length: 10 }, async (_, c) => {
      const mine: WriteReply[] = [];
      for (let i = 0; i < 30; i++) {
        const key = `race:${i % 3}`;
        const args = i % 3 === 0 ? ["EVAL", hide, "2", key, "race:list", `${c}:${i}`] : i % 3 === 1 ? ["INCR", key] : ["RPUSH", "race:list", `p${c}:${i}`];
        mine.push(await tc!.write(args));
      }
      return mine;
    }),
  );
  const last = Math.max(...replies.flat().map((r) => okTxid(t, r)));
  t.is((await waitForWriter(tc!)).epoch, before.epoch);
  await assertConverged(t, last, "after racing scripts");
  const master = await waitForWriter(tc!);
  const keys = await dumpKeyspace(port(master.redisUrl), tc!.redisPassword);
  t.is((keys.get("race:list")?.value as string[]).length, 200, "every RPUSH, hidden or not, is in the list once");
});

test.serial("stream guard - a script selecting database 1, 20 times: a clear error each time, no writer failure", async (t) => {
  const before = await waitForWriter(tc!);
  for (let i = 0; i < 20; i++) {
    const reply = await tc!.write(["EVAL", "redis.call('set', KEYS[1], 'db0') redis.call('select', '1') redis.call('set', KEYS[1], 'db1') return 1", 1, `sel:${i}`]);
    t.false(reply.ok);
    if (!reply.ok) {
      t.is(reply.code, "REDIS_ERROR");
      // The master's Redis has a database 1 (a replica's applied marker), which its ACL keeps scripts out of.
      t.regex(reply.message, /can't run this command/);
    }
  }
  const after = await waitForWriter(tc!);
  t.is(after.epoch, before.epoch, "epoch unchanged: no writer failure");
  const last = okTxid(t, await tc!.write(["SET", "sel:done", "1"]));
  await assertConverged(t, last, "after SELECT 1 in scripts");
  const keys = await dumpKeyspace(port(after.redisUrl), tc!.redisPassword);
  t.is(keys.get("sel:0")?.value, "db0", "what the script wrote before the error stays, journaled");
});

test.serial("stream guard - FLUSHALL, FLUSHDB, SWAPDB, MOVE: refused as writes, failing in scripts; nothing is lost", async (t) => {
  const before = await waitForWriter(tc!);
  const mark = okTxid(t, await tc!.write(["SET", "flush:survivor", "1"]));
  for (const args of [["FLUSHALL"], ["FLUSHDB"], ["FLUSHALL", "ASYNC"], ["SWAPDB", "0", "1"], ["MOVE", "flush:survivor", "1"], ["CONFIG", "SET", "notify-keyspace-events", ""], ["SCRIPT", "FLUSH"], ["DEBUG", "SLEEP", "0"], ["SHUTDOWN"], ["REPLICAOF", "NO", "ONE"], ["CLIENT", "KILL", "TYPE", "replica"], ["MONITOR"], ["PUBLISH", "__qjm:marker", "1"]]) {
    const reply = await tc!.write(args);
    t.false(reply.ok, args.join(" "));
    if (!reply.ok) t.true(["COMMAND_REFUSED", "NOT_A_WRITE"].includes(reply.code), `${args.join(" ")}: ${reply.code}`);
  }
  for (const body of ["redis.set_repl(redis.REPL_NONE) return redis.call('flushall')", "return redis.call('flushdb')", "return redis.call('swapdb', '0', '1')", "return redis.call('move', KEYS[1], '1')"]) {
    const reply = await tc!.write(["EVAL", body, "1", "flush:survivor"]);
    t.false(reply.ok, body);
    if (!reply.ok) t.is(reply.code, "REDIS_ERROR", body);
  }
  t.is((await waitForWriter(tc!)).epoch, before.epoch);
  t.true(mark > 0);
  await assertConverged(t, okTxid(t, await tc!.write(["SET", "flush:end", "1"])), "after flush attempts");
  const master = await waitForWriter(tc!);
  t.true((await dumpKeyspace(port(master.redisUrl), tc!.redisPassword)).has("flush:survivor"));
});

test.serial("stream guard - a script's COPY … DB 1 is refused, not journaled: no replica's database 1 (its applied marker's) takes it", async (t) => {
  // The master's Redis has a database 1 (a replica's snapshot holds its marker there) and its ACL cannot see COPY's
  // DB argument; the door refuses COPY … DB n, a script's runs. Journaled, every replica copied into its marker's database.
  const before = await waitForWriter(tc!);
  t.is(okTxid(t, await tc!.write(["SET", "copy:src", "999999999"])) > 0, true);
  const refused = await tc!.write(["COPY", "copy:src", "copy:dst", "DB", "1"]);
  t.false(refused.ok, "COPY … DB 1 outside a script is refused at the door");
  for (const body of ["return redis.call('copy', KEYS[1], '__qjm:applied', 'DB', '1', 'REPLACE')", "return redis.call('copy', KEYS[1], 'copy:hidden', 'DB', '1')"]) {
    const reply = await tc!.write(["EVAL", body, "1", "copy:src"]);
    t.false(reply.ok, body);
    if (!reply.ok) t.regex(reply.message, /COPY into database "1"/, body);
  }
  const after = await waitForWriter(tc!);
  t.is(after.epoch, before.epoch, "client input never fails the writer");
  const last = okTxid(t, await tc!.write(["SET", "copy:end", "1"]));
  await waitForReplicas(tc!, last);
  for (const replica of (await tc!.status()).filter((s) => s.role === "replica")) {
    const r = new Redis({ port: port(replica.redisUrl), password: tc!.redisPassword, db: 1, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await r.connect();
      t.deepEqual(await r.keys("*"), ["__qjm:applied"], `${replica.id}: database 1 holds its marker alone`);
      t.true(Number(await r.get("__qjm:applied")) >= last && Number(await r.get("__qjm:applied")) < 999999999, `${replica.id}: its marker is its applied txid`);
    } finally {
      r.disconnect();
    }
  }
  await assertConverged(t, last, "after COPY … DB 1 in scripts");
});

test.serial("stream guard - a script touching more than scriptTouchedKeysMax keys is refused and undone by a reset, in the same epoch", async (t) => {
  const before = await waitForWriter(tc!);
  const reply = await tc!.write(["EVAL", "redis.set_repl(redis.REPL_NONE) for i = 1, 60 do redis.call('set', 'big:' .. i, i) end return 1", "0"]);
  t.false(reply.ok);
  if (!reply.ok) {
    t.is(reply.code, "EFFECTS_REFUSED");
    t.regex(reply.message, /scriptTouchedKeysMax 50/);
  }
  // Admitted once the reset to the journal is done: the write after it sees the rebuilt Redis.
  const last = okTxid(t, await tc!.write(["SET", "big:done", "1"]));
  const after = await waitForWriter(tc!);
  t.is(after.epoch, before.epoch, "client input never fails the writer: the same epoch serves on");
  await assertConverged(t, last, "after an unverifiable script");
  const keys = await dumpKeyspace(port(after.redisUrl), tc!.redisPassword);
  t.false(keys.has("big:1"), "the reset undid what was never journaled");
  t.true(keys.has("flush:survivor"));
});

test.serial("stream guard - a script that never ends is killed; one that wrote first ends the master's Redis, which is rebuilt without it", async (t) => {
  const before = await waitForWriter(tc!);
  const killed = await tc!.write(["EVAL", "while true do end", "0"], 30000);
  t.false(killed.ok);
  if (!killed.ok) t.regex(killed.message, /killed/i);
  t.is((await waitForWriter(tc!)).epoch, before.epoch, "a script that wrote nothing is killed: no writer failure");
  const wrote = await tc!.write(["EVAL", "redis.call('set', KEYS[1], 'stuck') while true do end", "1", "stuck:k"], 30000);
  t.false(wrote.ok);
  // Two correct paths, whichever sees Redis go first: the writes' connection (the writer fails; a new epoch rebuilds)
  // or the keyspace-event connection (the script is unverified; the same epoch resets Redis to the journal).
  // SET is idempotent: sent again until a writer serves it.
  const done = await until("a write served again", 60000, async () => {
    const reply = await tc!.write(["SET", "stuck:done", "1"]).catch(() => undefined);
    return reply?.ok === true ? reply : undefined;
  }, 100);
  const last = okTxid(t, done);
  const after = await waitForWriter(tc!);
  t.log(after.epoch > before.epoch ? `a new writer, epoch ${after.epoch}` : `Redis reset in epoch ${after.epoch}`);
  await assertConverged(t, last, "after a script that never ended");
  t.false((await dumpKeyspace(port(after.redisUrl), tc!.redisPassword)).has("stuck:k"));
});

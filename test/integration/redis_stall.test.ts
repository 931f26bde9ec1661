/**
 * The master's Redis stall watch (redisStallMaxMs, session 26). Against a Redis that is slow but alive: a backlog of
 * legitimate writes, each well under the bound, that together take longer than the bound to run; Redis answers them
 * one after another all along, so it is not frozen: the master must serve on (same epoch, every write answered).
 * Against a Redis frozen while no write is in flight: found all the same (the master pings an idle Redis).
 * Serial: one cluster at a time on a shared two-core host.
 */
import test from "ava";
import fs from "node:fs";
import path from "node:path";
import type { ActorStatus, WriteReply } from "../../src/protocol/messages.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";

const DATA_NODES = ["d1", "d2", "d3"];
/** Elements of the list each LREM scans in full (~30 ms a scan on this machine's redis-server 7.0). */
const LIST_LENGTH = 1_000_000;
/** LREMs sent at once: together several times the bound, each ~1 % of it. */
const BACKLOG = 300;

/** SIGSTOPs the redis-server actor `id` runs now (its pid file: the process we started); its pid, for thaw. */
function freezeRedisOf(tc: TestCluster, id: string): number {
  const pid = Number(fs.readFileSync(path.join(tc.cluster.dataDir, id, "redis", "redis.pid"), "utf8"));
  process.kill(pid, "SIGSTOP");
  return pid;
}

/** SIGCONT, if it still runs: its node or master kills a Redis taken for lost, and a failed test must leave none stopped. */
function thaw(pid: number | null): void {
  try {
    if (pid !== null) process.kill(pid, "SIGCONT");
  } catch {
    /* gone */
  }
}

test.serial("redis stall - a backlog of slow writes longer than redisStallMaxMs, answered one by one, is not a frozen Redis", async (t) => {
  const stallMs = 3000;
  const tc = await startTestCluster("redis-stall", { dataNodes: DATA_NODES, masterHeartbeatIntervalMs: 100, masterTimeoutMs: 600, electionRankDelayMs: 150, redisStallMaxMs: stallMs, scriptRunMaxMs: 2000 });
  try {
    const before = await waitForWriter(tc);
    const chunk = 10_000;
    for (let from = 0; from < LIST_LENGTH; from += chunk) {
      const values = Array.from({ length: chunk }, (_, i) => String(from + i));
      const r = await tc.write(["RPUSH", "big", ...values], 30_000);
      t.true(r.ok, `RPUSH at ${from}: ${JSON.stringify(r)}`);
    }
    // 4 KiB each: a few per 16 KiB socket read of Redis's, which answers after each read, so replies keep coming.
    const absent = "x".repeat(4096);
    const startedMs = Date.now();
    const replies = await Promise.all(
      Array.from({ length: BACKLOG }, () => tc.write(["LREM", "big", "0", absent], 120_000).catch((err: Error): WriteReply => ({ ok: false, code: "TIMEOUT", message: err.message }) as WriteReply)),
    );
    const tookMs = Date.now() - startedMs;
    t.log(`${BACKLOG} LREMs of a ${LIST_LENGTH}-element list answered in ${tookMs} ms (redisStallMaxMs ${stallMs})`);
    const failed = replies.filter((r) => !r.ok);
    t.deepEqual(failed.slice(0, 3), [], `${failed.length} of ${BACKLOG} writes failed`);
    const after = await until("a serving master", 30_000, async () => (await tc.status()).find((s: ActorStatus) => s.role === "master" && s.health === "writing"));
    t.is(after.id, before.id, "the same node serves");
    t.is(after.epoch, before.epoch, "no failover: the Redis was never frozen");
    // The case was the one meant: the backlog took longer than the bound.
    t.true(tookMs > stallMs, `the backlog took ${tookMs} ms, past the bound`);
  } finally {
    await tc.stop();
  }
});

test.serial("redis stall - the master's Redis frozen while no write is in flight is found all the same: a standby takes over", async (t) => {
  const stallMs = 3000;
  const tc = await startTestCluster("redis-idle-stall", { dataNodes: DATA_NODES, masterHeartbeatIntervalMs: 100, masterTimeoutMs: 600, electionRankDelayMs: 150, redisStallMaxMs: stallMs, scriptRunMaxMs: 2000 });
  let frozen: number | null = null;
  try {
    const before = await waitForWriter(tc);
    t.true((await tc.write(["SET", "a", "1"])).ok);
    frozen = freezeRedisOf(tc, before.id);
    const frozenMs = Date.now();
    // Reads of its door would hang meanwhile, and before the fix it stayed master for as long as the freeze lasted.
    const after = await until("another master", 30_000, async () => (await tc.status()).find((s: ActorStatus) => s.role === "master" && s.health === "writing" && s.id !== before.id));
    t.log(`frozen → another master serving: ${Date.now() - frozenMs} ms (redisStallMaxMs ${stallMs}, no write in flight)`);
    t.true(after.epoch > before.epoch);
    const w = await tc.write(["SET", "b", "2"], 10_000);
    t.true(w.ok, JSON.stringify(w));
  } finally {
    thaw(frozen);
    await tc.stop();
  }
});

test.serial("redis stall - the single-master layout: its frozen Redis is killed and rebuilt on the same port, the same process serves a new epoch", async (t) => {
  const tc = await startTestCluster("redis-stall-lone", { redisStallMaxMs: 3000, scriptRunMaxMs: 2000 });
  let frozen: number | null = null;
  try {
    const before = await waitForWriter(tc);
    t.true((await tc.write(["SET", "a", "1"])).ok);
    frozen = freezeRedisOf(tc, "m1");
    const frozenMs = Date.now();
    const after = await until("a new writer", 30_000, async () => (await tc.status()).find((s: ActorStatus) => s.role === "master" && s.health === "writing" && s.epoch > before.epoch));
    t.log(`frozen → serving again: ${Date.now() - frozenMs} ms`);
    t.is(after.pid, before.pid, "the master process rebuilt its Redis");
    const w = await tc.write(["INCR", "a"], 10_000);
    t.true(w.ok && w.reply === 2, JSON.stringify(w));
  } finally {
    thaw(frozen);
    await tc.stop();
  }
});

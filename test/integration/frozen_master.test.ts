/**
 * A frozen master (SIGSTOP, a VM pause) stays a member of the writes' queue group until nats-server drops its
 * connection (ping_interval 5 s × ping_max 2: 10–15 s). Writes sent to the queue group meanwhile go to it about half
 * the time and wait out their timeout. Clients (the library, and every data node's RESP door, which writes through
 * it) send to the master they know (`qjm.<cluster>.write.<id>`) instead: after the takeover every write is answered by
 * the new master at once, while the frozen process is still connected.
 */
import test from "ava";
import { Redis } from "ioredis";
import { connect, type QjmClient } from "../../src/client/client.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { startTestCluster, until, waitForDoors, waitForWriter, type TestCluster } from "../helpers/harness.js";

const DATA_NODES = ["d1", "d2", "d3"];
/** Sequential writes through each path after the takeover. */
const WRITES = 50;
/** No write may take longer: a write that went to the frozen master waits out a timeout (1 s here, 10 s at the door). */
const WRITE_BOUND_MS = 1500;
/** All of one path's writes: well under nats-server's 10–15 s to drop the frozen connection. */
const TOTAL_BOUND_MS = 6000;

/** The serving master of the highest epoch other than `except`. */
async function masterOf(tc: TestCluster, except?: string): Promise<ActorStatus> {
  const serving = (all: ActorStatus[]) => all.filter((s) => s.role === "master" && s.health === "writing" && s.id !== except).sort((a, b) => b.epoch - a.epoch)[0];
  return await until("a master that serves writes", 60_000, async () => serving(await tc.status()), 20);
}

/** The actors' connections nats-server holds (their names: qjm-<role>-<id>[-<suffix>]). */
async function connectionNames(tc: TestCluster): Promise<string[]> {
  const port = tc.cluster.natsServers[0]!.monitorPort;
  const res = await fetch(`http://127.0.0.1:${port}/connz?limit=1000`);
  const connz = (await res.json()) as { connections?: { name?: string }[] };
  return (connz.connections ?? []).map((c) => c.name ?? "");
}

/** Failed writes, as `<writer> #<i>: <error>`. */
const failures: string[] = [];

/** `count` sequential writes; each one's duration (ms). Stops after one over the bound or failed (the test fails then). */
async function timedWrites(what: string, count: number, write: (i: number) => Promise<unknown>): Promise<number[]> {
  const took: number[] = [];
  for (let i = 0; i < count && !took.some((ms) => ms >= WRITE_BOUND_MS); i++) {
    const start = performance.now();
    await write(i).catch((err: Error) => failures.push(`${what} #${i}: ${err.message}`));
    took.push(Math.round(performance.now() - start));
  }
  return took;
}

/** Waits until `node`'s RESP door listens again (after a restart), as a replica. */
async function doorListening(tc: TestCluster, node: string): Promise<void> {
  await until(`${node}'s door to listen`, 30_000, async () => {
    const st = (await tc.status()).find((a) => a.id === node);
    return st?.role === "replica" && (st.details.respDoor as { listening?: boolean } | undefined)?.listening === true ? true : undefined;
  }, 50);
}

const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);
const over = (a: number[]): number[][] => a.map((ms, i) => [i, ms]).filter(([, ms]) => ms >= WRITE_BOUND_MS);

/**
 * Three writers after the takeover, none of which may send a write to the frozen master: a client connected before the
 * freeze, one connected after the takeover (it never heard an election), and the RESP door of a data node restarted
 * after the takeover (its door's client is new too).
 */
test("after a frozen master's takeover, every write is answered by the new master at once: through the library, old and new clients, and a restarted node's RESP door", async (t) => {
  const tc = await startTestCluster("frozen-master", { dataNodes: DATA_NODES, masterHeartbeatIntervalMs: 100, masterTimeoutMs: 600, electionRankDelayMs: 150 }, { natsMonitor: true });
  const clients: QjmClient[] = [];
  const doors: Redis[] = [];
  let frozen = "";
  const open = async (): Promise<QjmClient> => {
    // 1 s per attempt, as the failover test's writers: one sent to the frozen master costs a second at least.
    const c = await connect({ servers: tc.cluster.natsUrl, credsFile: credsFile(tc.cluster.dataDir, CLIENT_USER), cluster: tc.cluster.cluster, timeoutMs: 1000, retryForMs: 30_000 });
    clients.push(c);
    return c;
  };
  const libraryWrites = (c: QjmClient, prefix: string, retried: number[]) =>
    timedWrites(prefix, WRITES, async (i) => {
      const r = await c.write("SET", `${prefix}:${i}`, String(i));
      if (r.attempts > 1) retried.push(i);
    });
  try {
    const first = await waitForWriter(tc);
    await waitForDoors(tc, DATA_NODES.length);
    const early = await open();
    t.like(await early.write("SET", "before", "1"), { txid: 1 });
    frozen = first.id;
    const frozenAt = Date.now();
    await tc.cluster.signal(frozen, "SIGSTOP");
    const next = await masterOf(tc, frozen);
    const takeoverMs = Date.now() - frozenAt;
    t.true(next.epoch > first.epoch);
    // The node that neither froze nor took over starts again: its door's client is a new one.
    const standby = DATA_NODES.find((n) => n !== frozen && n !== next.id)!;
    await tc.cluster.signal(standby, "SIGKILL");
    tc.cluster.startActor(standby);
    const late = await open();
    const retriedEarly: number[] = [];
    const retriedLate: number[] = [];
    const readMs: number[] = [];
    const doorWrites = async (): Promise<number[]> => {
      await doorListening(tc, standby);
      const d = new Redis({ port: tc.cluster.config.respPort + DATA_NODES.indexOf(standby), host: "127.0.0.1", maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
      doors.push(d);
      d.on("error", () => {});
      await d.connect();
      const took = await timedWrites("door", WRITES, async (i) => t.is(await d.set(`door:${i}`, String(i)), "OK"));
      // Linearizable reads ask the master for a read index: the one the door knows, not the queue group.
      t.is(await d.call("QJM.CONSISTENCY", "linearizable"), "OK");
      readMs.push(...(await timedWrites("door read", WRITES, async (i) => t.is(await d.get(`door:${i}`), String(i)))));
      return took;
    };
    const [lateMs, earlyMs, doorMs] = await Promise.all([libraryWrites(late, "late", retriedLate), libraryWrites(early, "early", retriedEarly), doorWrites()]);
    const doneMs = Date.now() - frozenAt;
    t.log(`takeover seen ${takeoverMs} ms after SIGSTOP; all writes done ${doneMs} ms after it; first write answered in ${lateMs[0]} ms (new client), ${earlyMs[0]} ms (old client), ${doorMs[0]} ms (door ${standby}, restarted)`);
    t.log(`new client: total ${sum(lateMs)} ms, max ${Math.max(...lateMs)} ms, retried ${retriedLate.length}; old client: total ${sum(earlyMs)} ms, max ${Math.max(...earlyMs)} ms, retried ${retriedEarly.length}; door: total ${sum(doorMs)} ms, max ${Math.max(...doorMs)} ms; linearizable reads there: total ${sum(readMs)} ms, max ${Math.max(...readMs)} ms`);
    // Still frozen and still connected: the queue group still holds it, and no write went there.
    const names = await connectionNames(tc);
    t.true(names.some((n) => n.endsWith(`-${frozen}`)), `the frozen ${frozen} is still connected (${names.join(", ")})`);
    t.deepEqual(failures, [], "writes failed");
    for (const ms of [lateMs, earlyMs, doorMs]) t.is(ms.length, WRITES);
    t.deepEqual(over(lateMs), [], "new client's writes over the bound");
    t.deepEqual(over(earlyMs), [], "old client's writes over the bound");
    t.deepEqual(over(doorMs), [], "door writes over the bound");
    t.is(readMs.length, WRITES);
    t.deepEqual(over(readMs), [], "linearizable door reads over the bound");
    t.deepEqual(retriedLate, [], "new client's writes that needed a second attempt");
    t.deepEqual(retriedEarly, [], "old client's writes that needed a second attempt");
    for (const [what, ms] of [["new client", lateMs], ["old client", earlyMs], ["door", doorMs], ["door reads", readMs]] as const) t.true(sum(ms) < TOTAL_BOUND_MS, `${what}'s writes took ${sum(ms)} ms`);
  } finally {
    for (const d of doors) d.disconnect();
    for (const c of clients) await c.close().catch(() => {});
    if (frozen !== "") await tc.cluster.signal(frozen, "SIGCONT").catch(() => {});
    await tc.stop();
  }
});

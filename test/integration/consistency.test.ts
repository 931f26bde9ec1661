/**
 * Reads you can trust on the RESP door (issue #12 items 2 and 3), on a real three-data-node cluster through ioredis:
 * session reads see the connection's own writes on a replica; QJM.LASTTXID / QJM.WAIT carry a write's txid to a
 * connection on another node; a read on the master never shows a write that is not committed (two of three journal
 * nodes stopped); a linearizable read on a deposed master (stopped while another took over) never returns the old
 * value. Histories under kills, stops and partitions with a failover: integration/door_history.
 */
import test from "ava";
import { Redis } from "ioredis";
import { request } from "../../src/nats/bus.js";
import { subjects } from "../../src/protocol/subjects.js";
import { startTestCluster, until, waitForDoors, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";

const DATA_NODES = ["d1", "d2", "d3"];
let tc: TestCluster | null = null;
let masterId = "";
const clients: Redis[] = [];

test.before(async () => {
  // Reads give up waiting after 2 s (TRYAGAIN): the deposed-master test waits that long for its refusal.
  tc = await startTestCluster("consistency", { dataNodes: DATA_NODES, respReadTimeoutMs: 2000 });
  masterId = (await waitForWriter(tc)).id;
  await waitForDoors(tc, DATA_NODES.length);
});

test.after.always(async () => {
  for (const c of clients) c.disconnect();
  await tc?.stop();
});

function portOf(id: string): number {
  return tc!.cluster.config.respPort + DATA_NODES.indexOf(id);
}

async function door(id: string, level?: "eventual" | "session" | "linearizable"): Promise<Redis> {
  const r = new Redis({ port: portOf(id), host: "127.0.0.1", maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
  r.on("error", () => {});
  clients.push(r);
  await r.connect();
  if (level !== undefined) await r.call("QJM.CONSISTENCY", level);
  return r;
}

const replicas = (): string[] => DATA_NODES.filter((id) => id !== masterId);

test.serial("session (the default): a read on a replica's door right after a write on it sees the write, 500 of 500", async (t) => {
  const conns = await Promise.all([0, 1, 2, 3, 4].map(() => door(replicas()[0])));
  t.is(await conns[0].call("QJM.CONSISTENCY"), "session", "the default level");
  const misses: string[] = [];
  await Promise.all(
    conns.map(async (r, c) => {
      for (let i = 0; i < 100; i++) {
        await r.set(`ryw:${c}`, String(i));
        const v = await r.get(`ryw:${c}`);
        if (v !== String(i)) misses.push(`conn ${c} pair ${i}: ${v}`);
      }
    }),
  );
  t.deepEqual(misses, [], "session never misses its own write");
  // For contrast only (it races, so nothing is asserted): an eventual connection may read before the replica applied.
  const e = await door(replicas()[0], "eventual");
  let stale = 0;
  for (let i = 0; i < 100; i++) {
    await e.set("ryw:e", String(i));
    if ((await e.get("ryw:e")) !== String(i)) stale++;
  }
  t.log(`eventual on the same replica: ${stale} of 100 reads missed the connection's own write`);
});

test.serial("QJM.LASTTXID and QJM.WAIT carry a write's txid to a connection on another node", async (t) => {
  const [ra, rb] = replicas();
  const a = await door(ra);
  t.is(await a.call("QJM.LASTTXID"), 0, "no write yet");
  // Pipelined: LASTTXID answers after the SET before it.
  const [[, setOk], [, txid]] = (await a.pipeline().set("tok", "v1").call("QJM.LASTTXID").exec()) as [Error | null, unknown][];
  t.is(setOk, "OK");
  t.true(typeof txid === "number" && txid > 0);
  const b = await door(rb, "eventual");
  t.is(await b.call("QJM.WAIT", String(txid), "5000"), 1);
  t.is(await b.get("tok"), "v1", "after QJM.WAIT the other node holds the write");
  // A reader's token: what it has seen (its reads included) carries monotonic reads to a new connection elsewhere.
  const seen = Number(await b.call("QJM.LASTTXID", "SEEN"));
  t.true(seen >= (txid as number), "b saw at least the write it waited for");
  t.is(await b.call("QJM.LASTTXID"), 0, "b wrote nothing");
  const c = await door(ra, "session");
  t.is(await c.call("QJM.WAIT", String(seen), "5000"), 1);
  t.is(Number(await c.call("QJM.LASTTXID", "SEEN")), seen, "QJM.WAIT raised the new connection's session floor");
  t.is(await b.call("QJM.WAIT", String((txid as number) + 1_000_000), "100"), 0, "a txid not reached: 0 after the timeout");
  await t.throwsAsync(b.call("QJM.WAIT", "1", "999999999"), { message: /above respWaitMaxMs/ });
  await t.throwsAsync(b.call("QJM.CONSISTENCY", "strong"), { message: /one of eventual, session, linearizable/ });
});

test.serial("no dirty read: a GET on the master's door never shows a write while it is uncommitted (2 of 3 journal nodes stopped)", async (t) => {
  const w = await door(masterId);
  const r = await door(masterId, "eventual");
  // Another connection: replies on one connection come back in request order, behind the held read.
  const other = await door(masterId, "eventual");
  t.is(await w.set("dirty:k", "old"), "OK");
  t.is(await w.set("dirty:other", "calm"), "OK");
  const pids = ["jn1", "jn2"].map((id) => tc!.cluster.actors.get(id)!.pid);
  for (const pid of pids) process.kill(pid, "SIGSTOP");
  let contAtMs = Infinity;
  try {
    const write = w.set("dirty:k", "new");
    // The write reaches the master's Redis (executed) but cannot commit: its effect is there, uncommitted.
    await until("the write executed on the master's Redis", 3000, async () => {
      const s = (await tc!.status()).find((x) => x.id === masterId);
      return s !== undefined && s.lastTxid > s.committedTxid ? true : undefined;
    }, 20);
    const read = r.get("dirty:k").then((v) => ({ v, atMs: performance.now() }), (err: Error) => ({ v: `error: ${err.message}`, atMs: performance.now() }));
    const t0 = performance.now();
    t.is(await other.get("dirty:other"), "calm", "a key with no write in flight is read at once");
    const otherMs = performance.now() - t0;
    t.log(`the other key read in ${otherMs.toFixed(0)} ms while the write stalled`);
    t.true(otherMs < 500, "…without waiting for the stalled write");
    // Well below journalHeartbeatTimeoutMs (3 s): the master keeps its term, the write commits once they resume.
    await new Promise((res) => setTimeout(res, 500));
    contAtMs = performance.now();
    for (const pid of pids) process.kill(pid, "SIGCONT");
    const got = await read;
    t.is(await write, "OK");
    t.is(got.v, "new", "the committed value once it committed");
    t.true(got.atMs >= contAtMs, "answered only after the journal nodes resumed (the write committed)");
  } finally {
    if (contAtMs === Infinity) for (const pid of pids) process.kill(pid, "SIGCONT");
  }
});

test.serial("what each level costs: GET latency on a replica's and the master's door (logged, not asserted)", async (t) => {
  const w = await door(masterId);
  t.is(await w.set("cost:k", "v"), "OK");
  const txid = String(await w.call("QJM.LASTTXID"));
  const lines: string[] = [];
  for (const id of [replicas()[0], masterId]) {
    for (const level of ["eventual", "session", "linearizable"] as const) {
      const r = await door(id, level);
      // An eventual connection on a replica may read before the replica applied the SET: wait for it first.
      t.is(await r.call("QJM.WAIT", txid, "5000"), 1);
      const ms: number[] = [];
      for (let i = 0; i < 100; i++) {
        const t0 = performance.now();
        t.is(await r.get("cost:k"), "v");
        ms.push(performance.now() - t0);
      }
      ms.sort((a, b) => a - b);
      lines.push(`${id === masterId ? "master" : "replica"} ${level}: p50 ${ms[50].toFixed(2)} ms, p99 ${ms[98].toFixed(2)} ms`);
    }
  }
  // A write then a session read of it on a replica's door: the read waits for the replica to apply the write.
  const r = await door(replicas()[0]);
  const pair: number[] = [];
  for (let i = 0; i < 100; i++) {
    await r.set("cost:p", String(i));
    const t0 = performance.now();
    t.is(await r.get("cost:p"), String(i));
    pair.push(performance.now() - t0);
  }
  pair.sort((a, b) => a - b);
  lines.push(`replica session read right after its own write: p50 ${pair[50].toFixed(2)} ms, p99 ${pair[98].toFixed(2)} ms`);
  for (const l of lines) t.log(l);
});

test.serial("a linearizable read on a deposed master (stopped while another took over) never returns the old value", async (t) => {
  const old = masterId;
  const w = await door(replicas()[0]);
  t.is(await w.set("fo:k", "before"), "OK");
  const lin = await door(old, "linearizable");
  const ev = await door(old, "eventual");
  t.is(await lin.get("fo:k"), "before");
  await tc!.cluster.signal(old, "SIGSTOP");
  let resumed = false;
  try {
    // A write through another door waits out the failover (the door's client retries with the write's id).
    const next = await until("a new master", 30000, async () => (await tc!.status()).find((s) => s.role === "master" && s.health === "writing" && s.id !== old), 100);
    masterId = next.id;
    t.is(await w.set("fo:k", "after"), "OK");
    // Sent while the old master is frozen: it reads them when it resumes, still believing it is master for a moment.
    const linRead = lin.get("fo:k").then((v) => v, (err: Error) => `error: ${err.message}`);
    const evRead = ev.get("fo:k").then((v) => v, (err: Error) => `error: ${err.message}`);
    await tc!.cluster.signal(old, "SIGCONT");
    resumed = true;
    const got = await linRead;
    t.log(`new master ${next.id}; the deposed master's door answered linearizable: ${got}; eventual: ${await evRead}`);
    t.not(got, "before", "never the old value");
    // Later linearizable reads on it, until it rejoined: never "before".
    for (let i = 0; i < 20; i++) {
      const v = await lin.get("fo:k").then((x) => x, (err: Error) => `error: ${err.message}`);
      t.not(v, "before");
    }
  } finally {
    if (!resumed) await tc!.cluster.signal(old, "SIGCONT");
  }
});

// Last: it deposes the master. The master sends the journal nodes nothing while no write comes, so once a majority of
// them promised a higher epoch it still believes it serves: only its read index's confirmation round can tell it.
test.serial("a master deposed without knowing it (a majority of journal nodes promised a higher epoch): its read-index round finds out and it steps down; no linearizable read after a later write returns the older value", async (t) => {
  const old = (masterId = (await waitForWriter(tc!)).id);
  // The previous test's deposed master rejoins by a wipe and a rebuild: every node must serve reads again first (its
  // door answered LOADING here while it caught up).
  await waitForReplicas(tc!, (await waitForWriter(tc!)).committedTxid);
  await waitForDoors(tc!, DATA_NODES.length);
  const w = await door(replicas()[0]);
  t.is(await w.set("dep:k", "v1"), "OK");
  const lin = await Promise.all(DATA_NODES.map((id) => door(id, "linearizable")));
  for (const r of lin) t.is(await r.get("dep:k"), "v1", "a read index while the epoch stands");
  const master = (await tc!.status()).find((s) => s.id === old)!;
  // The journal nodes' promise, as a candidate's newEpoch would leave it (sent as a data node, whose user may).
  const nc = await tc!.connectAs(replicas()[0]);
  const s = subjects(tc!.cluster.cluster);
  for (const jn of ["jn1", "jn2"]) {
    const state = (await request(nc, s.journalRead(jn), { type: "getState" }, 5000)) as { state: { clusterId: string } };
    const reply = (await request(nc, s.journal(jn), { type: "newEpoch", epoch: master.epoch + 10, clusterId: state.state.clusterId }, 5000)) as { ok: boolean; message?: string };
    t.true(reply.ok, `${jn} promised epoch ${master.epoch + 10} (${reply.message ?? "ok"})`);
  }
  t.is((await tc!.status()).find((x) => x.id === old)?.role, "master", "nothing told the master yet");
  // A linearizable read asks for a read index: the master's round meets the higher epoch (EPOCH_FENCED) and it steps
  // down; the door asks again until a new master answers, or gives up (TRYAGAIN).
  const first = await Promise.all(lin.map((r) => r.get("dep:k").then((v) => v, (err: Error) => `error: ${err.message}`)));
  // Stepped down: no longer master, or master again in a later epoch (it stepped down, then won the next election,
  // between two status rounds).
  const stepped = await until("the deposed master to step down", 10000, async () => {
    const st = (await tc!.status()).find((x) => x.id === old);
    return st !== undefined && (st.role !== "master" || st.epoch > master.epoch) ? st : undefined;
  });
  t.is(await w.set("dep:k", "v2"), "OK", "a write once a new master serves");
  const after = await Promise.all(lin.map((r) => r.get("dep:k").then((v) => v, (err: Error) => `error: ${err.message}`)));
  t.log(`reads during the deposition: ${first.join(" | ")}; ${old} then ${stepped.role} (${stepped.health}); after v2: ${after.join(" | ")}`);
  const refused = (v: string | null): boolean => /^error: (TRYAGAIN|LOADING) qjm/.test(v ?? "");
  for (const v of first) t.true(v === "v1" || refused(v), `v1 is still the last acked value, or no answer: ${v}`);
  for (const v of after) t.true(v === "v2" || refused(v), `never the value before an acked write: ${v}`);
});

/**
 * Issue #12's third must-show, on real processes: clients on the RESP doors of all three data nodes run GET, SET, INCR
 * and MULTI (GET + INCR in one transaction) while the test partitions, stops and kills data nodes and journal nodes —
 * the master among them, so a failover happens under the load. Every actor reaches nats-server through its own TCP
 * proxy (the nemesis of integration/nemesis cuts, drops or delays its links); the test's clients reach the doors
 * directly, as applications would.
 *
 * Checked at the end, after every fault is healed and the cluster serves again:
 *   - linearizable connections: their history (with MULTI as one step) is linearizable (src/check);
 *   - session connections: each reads back its own INCR and never reads a smaller value after a larger one, across
 *     the failover (a connection lost with its node starts a new session);
 *   - every value any connection read — eventual ones included — is one the committed journal gave the key: no read
 *     returns a write that did not commit;
 *   - no actor exited on its own.
 */
import test, { type ExecutionContext } from "ava";
import { Redis } from "ioredis";
import { checkKv, type KvInput, type KvOutput, type Operation } from "../../src/check/kv_model.js";
import { freePort } from "../../src/process/ports.js";
import { startTcpProxy, type TcpProxy } from "../../src/process/tcp_proxy.js";
import { startTestCluster, until, waitForDoors, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { argText, journalEffects, readJournal } from "../helpers/history.js";
import { Nemesis, type Fault, type FaultKind } from "../helpers/nemesis.js";

const DATA_NODES = ["d1", "d2", "d3"];
const JOURNAL_NODES = ["jn1", "jn2", "jn3"];
const KEYS = ["h:a", "h:b", "h:c"];
/** Linearizable connections per door (each a client of the history), and one session and one eventual each. */
const LINEARIZABLE_PER_DOOR = 2;
/** Operations that must complete after each fault is healed before the next one starts: the cluster serves. */
const OPS_BETWEEN_FAULTS = 60;
/** A door's reply later than this is an unknown outcome (its node is stopped or cut off). */
const COMMAND_TIMEOUT_MS = 3000;

type Level = "linearizable" | "session" | "eventual";

/**
 * One client's connection to a door, opened again (with its level set again: a new connection is a new session) when
 * its node dies or the connection fails. Never ioredis's own reconnect, which would reopen it at the default level.
 */
class DoorConnection {
  private redis: Redis | null = null;
  /** Bumped on every new connection: a session's guarantees hold per connection. */
  generation = 0;

  constructor(
    private readonly port: number,
    private readonly level: Level,
  ) {}

  async get(): Promise<Redis> {
    if (this.redis !== null && this.redis.status === "ready") return this.redis;
    this.close();
    const r = new Redis({ port: this.port, host: "127.0.0.1", maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, commandTimeout: COMMAND_TIMEOUT_MS, connectTimeout: 1000 });
    r.on("error", () => {});
    this.redis = r;
    await r.connect();
    await r.call("QJM.CONSISTENCY", this.level);
    this.generation++;
    return r;
  }

  close(): void {
    this.redis?.disconnect();
    this.redis = null;
  }
}

/** Whatever a door answered that is not a reply of Redis's own: its outcome is unknown (a qjm error, a timeout, a lost connection). */
function isDefiniteRedisError(err: unknown): boolean {
  const e = err as Error;
  return e.name === "ReplyError" && !/qjm|TRYAGAIN|LOADING|NOAUTH/.test(e.message);
}

interface Workload {
  history: Operation<KvInput, KvOutput>[];
  /** Every value a connection read, by key (GETs and MULTI's GET): checked against the committed journal. */
  reads: Map<string, Set<string | null>>;
  anomalies: string[];
  done: number;
  running: boolean;
}

function noteRead(w: Workload, key: string, value: string | null): void {
  let seen = w.reads.get(key);
  if (seen === undefined) w.reads.set(key, (seen = new Set()));
  seen.add(value);
}

/** A pause before a connection is opened again: its door's node may be down for a while. */
const reconnectPause = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

async function linearizableClient(conn: DoorConnection, c: number, start: number, w: Workload): Promise<void> {
  for (let i = 0; w.running; i++) {
    const key = KEYS[(c + i) % KEYS.length];
    const pick = i % 4;
    const input: KvInput = pick === 0 ? { kind: "set", key, value: String(c * 1_000_000 + i) } : pick === 1 ? { kind: "incr", key } : pick === 2 ? { kind: "get", key } : { kind: "getincr", key };
    const call = performance.now() - start;
    let r: Redis;
    try {
      r = await conn.get();
    } catch {
      await reconnectPause();
      continue;
    }
    try {
      let output: KvOutput;
      if (input.kind === "set") output = await r.set(key, input.value);
      else if (input.kind === "incr") output = await r.incr(key);
      else if (input.kind === "get") output = await r.get(key);
      else output = await getIncr(r, key);
      if (input.kind === "get") noteRead(w, key, output as string | null);
      if (input.kind === "getincr") noteRead(w, key, (output as readonly [string | null, unknown])[0]);
      w.history.push({ client: c, input, call, output, return: performance.now() - start });
      w.done++;
    } catch (err) {
      if (isDefiniteRedisError(err)) w.history.push({ client: c, input, call, output: { error: (err as Error).message }, return: performance.now() - start });
      // A write's outcome is unknown: it may take effect any time after its call. A read constrains nothing.
      else if (input.kind !== "get") w.history.push({ client: c, input, call });
      conn.close();
      await reconnectPause();
    }
  }
}

/** MULTI; GET key; INCR key; EXEC — [the value before, INCR's reply or its error]. */
async function getIncr(r: Redis, key: string): Promise<readonly [string | null, number | { error: string }]> {
  const replies = await r.multi().get(key).incr(key).exec();
  if (replies === null) throw new Error("EXEC aborted (no WATCH was set: unexpected)");
  const [[getErr, value], [incrErr, n]] = replies as [[Error | null, string | null], [Error | null, number]];
  if (getErr !== null) throw getErr;
  return [value, incrErr === null ? n : { error: incrErr.message }];
}

/** INCR of the door's own counter, then GET of it: never below what this connection saw last. */
async function sessionClient(conn: DoorConnection, key: string, w: Workload): Promise<void> {
  let seen = 0;
  let generation = -1;
  while (w.running) {
    try {
      const r = await conn.get();
      if (conn.generation !== generation) [generation, seen] = [conn.generation, 0];
      const mine = await r.incr(key);
      if (mine <= seen) w.anomalies.push(`${key}: INCR replied ${mine} after this connection saw ${seen}`);
      seen = Math.max(seen, mine);
      const v = Number(await r.get(key));
      if (v < seen) w.anomalies.push(`${key}: read ${v} after this connection saw ${seen} (read-your-writes / monotonic)`);
      seen = Math.max(seen, v);
      w.done++;
    } catch {
      conn.close();
      await reconnectPause();
    }
  }
}

/** Reads of the shared keys as the node's Redis has them: stale is allowed, a value that never committed is not. */
async function eventualClient(conn: DoorConnection, w: Workload): Promise<void> {
  for (let i = 0; w.running; i++) {
    try {
      const r = await conn.get();
      const key = KEYS[i % KEYS.length];
      noteRead(w, key, await r.get(key));
    } catch {
      conn.close();
      await reconnectPause();
    }
  }
}

/** Every value each key held in the committed journal (null: absent), replayed from its effects in txid order. */
async function committedValues(tc: TestCluster, committedTxid: number): Promise<Map<string, Set<string | null>>> {
  const nc = await tc.connectAs(DATA_NODES[0]);
  const records = await readJournal(nc, tc.cluster.cluster, JOURNAL_NODES, committedTxid);
  const values = new Map<string, Set<string | null>>(KEYS.map((k) => [k, new Set<string | null>([null])]));
  const state = new Map<string, string | null>();
  for (const [, effects] of [...journalEffects(records)].sort(([a], [b]) => a - b)) {
    for (const e of effects) {
      const name = argText(e[0]).toUpperCase();
      const key = e.length > 1 ? argText(e[1]) : "";
      if (!values.has(key)) continue;
      if (name === "SET") state.set(key, argText(e[2]));
      else if (name === "INCR") state.set(key, String(Number(state.get(key) ?? "0") + 1));
      else if (name === "DEL" || name === "UNLINK") state.set(key, null);
      else throw new Error(`an effect the test never causes on ${key}: ${name}`);
      values.get(key)!.add(state.get(key) ?? null);
    }
  }
  return values;
}

async function masterOf(tc: TestCluster): Promise<string> {
  return (await waitForWriter(tc, 60_000)).id;
}

test.serial("door history - GET/SET/INCR/MULTI through every door under partitions, stops and kills (a failover among them): linearizable, session and committed-only reads hold", async (t) => {
  const natsPort = await freePort();
  const proxies = new Map<string, TcpProxy>();
  for (const name of [...JOURNAL_NODES, ...DATA_NODES]) proxies.set(name, await startTcpProxy(natsPort));
  const conns: DoorConnection[] = [];
  let tc: TestCluster | undefined;
  const w: Workload = { history: [], reads: new Map(), anomalies: [], done: 0, running: true };
  t.teardown(async () => {
    w.running = false;
    for (const c of conns) c.close();
    await tc?.stop();
    for (const p of proxies.values()) await p.close();
  });
  tc = await startTestCluster("doorhistory", { dataNodes: DATA_NODES, respReadTimeoutMs: 2000 }, { natsPort, actorNatsUrl: (name) => proxies.get(name)?.url ?? `nats://127.0.0.1:${natsPort}` });
  const firstMaster = await masterOf(tc);
  await waitForDoors(tc, DATA_NODES.length);
  const port = (id: string): number => tc!.cluster.config.respPort + DATA_NODES.indexOf(id);
  const start = performance.now();
  const loops: Promise<void>[] = [];
  let c = 0;
  for (const id of DATA_NODES) {
    for (let k = 0; k < LINEARIZABLE_PER_DOOR; k++) {
      const conn = new DoorConnection(port(id), "linearizable");
      conns.push(conn);
      loops.push(linearizableClient(conn, c++, start, w));
    }
    const sess = new DoorConnection(port(id), "session");
    const ev = new DoorConnection(port(id), "eventual");
    conns.push(sess, ev);
    loops.push(sessionClient(sess, `s:${id}`, w), eventualClient(ev, w));
  }
  const steps: string[] = [];
  const nemesis = new Nemesis(tc.cluster, proxies, (line) => steps.push(line));
  const replicaOf = (master: string): string => DATA_NODES.find((d) => d !== master)!;
  const fault = (kind: FaultKind, actors: string[], durationMs: number): Fault => ({ atMs: 0, kind, actors, durationMs, delayMs: kind === "delay" ? 200 : 0 });
  /** Each fault is chosen when it comes (who is master then), healed, then the cluster must serve OPS_BETWEEN_FAULTS. */
  const schedule: ((master: string) => Fault)[] = [
    (m) => fault("cut", [replicaOf(m)], 1500),
    (m) => fault("stop", [replicaOf(m)], 1500),
    () => fault("stop", ["jn2"], 1500),
    (m) => fault("kill", [m], 1000),
    (m) => fault("drop", [m], 2000),
    (m) => fault("delay", [m, "jn3"], 1500),
    (m) => fault("stop", [m], 2500),
  ];
  const masters = [firstMaster];
  try {
    await progress(w, OPS_BETWEEN_FAULTS);
    for (const next of schedule) {
      const master = await masterOf(tc);
      if (master !== masters.at(-1)) masters.push(master);
      await nemesis.run([next(master)]);
      await progress(w, OPS_BETWEEN_FAULTS);
    }
    masters.push(await masterOf(tc));
  } finally {
    await nemesis.healAll();
    t.log(`steps:\n${steps.map((s) => `  ${s}`).join("\n")}`);
    w.running = false;
    await Promise.all(loops);
  }
  const master = (await tc.status()).find((s) => s.role === "master" && s.health === "writing")!;
  await check(t, tc, w, master.committedTxid);
  t.log(`masters in turn: ${masters.filter((m, i) => m !== masters[i - 1]).join(" → ")}`);
  t.true(new Set(masters).size > 1, "a failover happened under the load");
  nemesis.stopWatching();
  t.deepEqual(nemesis.crashes, [], "no actor exited on its own");
});

async function progress(w: Workload, ops: number): Promise<void> {
  const target = w.done + ops;
  await until(`${ops} more door operations`, 90_000, () => (w.done >= target ? true : undefined), 20);
}

async function check(t: ExecutionContext, tc: TestCluster, w: Workload, committedTxid: number): Promise<void> {
  const result = checkKv(w.history, { timeoutMs: 60_000 });
  const unknown = w.history.filter((o) => o.return === undefined).length;
  const multis = w.history.filter((o) => o.input.kind === "getincr" && o.return !== undefined).length;
  t.log(`${w.history.length} operations on linearizable connections (${multis} MULTI GET+INCR answered, ${unknown} of unknown outcome); ${w.done} answered in all`);
  t.false(result.timedOut, "the linearizability check finished within its budget");
  t.true(result.ok, `linearizable${result.failingKey === undefined ? "" : `; key ${result.failingKey}: ${result.explanation ?? ""}`}`);
  t.deepEqual(w.anomalies.slice(0, 5), [], "session: read-your-writes and monotonic reads on each connection");
  const committed = await committedValues(tc, committedTxid);
  const uncommitted: string[] = [];
  for (const [key, seen] of w.reads) for (const v of seen) if (!committed.get(key)?.has(v)) uncommitted.push(`${key}=${String(v)}`);
  t.deepEqual(uncommitted.slice(0, 10), [], "every value read was committed in the journal");
  t.log(`${[...w.reads.values()].reduce((n, s) => n + s.size, 0)} distinct values read, all committed (journal up to txid ${committedTxid})`);
}

/**
 * Issue #12 (s22 review, s23-door): no amount of legal client traffic on the master's front door deposes it. The door
 * runs in the data node's process, beside the master role's journal batches, heartbeats and the election core; a door
 * that held the event loop (or the NATS connection) past masterTimeoutMs made a standby campaign, and win. Each test
 * runs one of the review's attacks, scaled to finish on a loaded 2-core machine, against the master's door while a
 * separate process PINGs that door; afterwards the same node is master in the same epoch and PING was answered within
 * PING_BOUND_MS throughout (a PING goes past the door's in-flight gate: session.ts pastGate). The master's worst
 * event-loop delay is logged (its "event loop stalled" lines, with the CPU it got: on an overloaded host an idle
 * replica shows 500 ms delays with 20 ms of CPU, so it is a figure, not a bound).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import test from "ava";
import { Redis } from "ioredis";
import { encodeCommand } from "../../src/redis/resp_parser.js";
import { startTestCluster, until, waitForDoors, waitForWriter, type TestCluster } from "../helpers/harness.js";

const DATA_NODES = ["d1", "d2", "d3"];
/** Well above a PING's round trip on an idle door, well below the several seconds the review measured. */
const PING_BOUND_MS = 1500;
let tc: TestCluster | null = null;
const clients: Redis[] = [];
const sockets: net.Socket[] = [];
const children: ChildProcess[] = [];

test.before(async () => {
  // masterTimeoutMs as PING_BOUND_MS, not the default 600: in CI two test files run a cluster each on 2 cores (load ~8),
  // and 60 pipelined 10k-member RPUSHes then showed a 703 ms stall on the master's loop from CPU it did not get (the
  // same attack on an idle host: under 100 ms) — three elections. What door work costs the loop is bounded here; a host
  // with fewer free cores than busy processes is a deployment's to size (docs/resp.md, "The door under load"). s24: the
  // RPUSHes now hold the master's loop under 100 ms with two busy loops beside it (CPU per RPUSH halved, turns
  // bounded), but this file at the default 600 ms with two busy loops still lost the redis-benchmark attack (many small
  // writes: a 957 ms stall), so the override stays.
  tc = await startTestCluster("door_load", { dataNodes: DATA_NODES, masterTimeoutMs: PING_BOUND_MS });
  await waitForWriter(tc);
  await waitForDoors(tc, DATA_NODES.length);
});

test.after.always(async () => {
  for (const c of clients) c.disconnect();
  for (const s of sockets) s.destroy();
  for (const p of children) if (p.exitCode === null) p.kill("SIGKILL");
  await tc?.stop();
});

function doorPort(id: string): number {
  return tc!.cluster.config.respPort + DATA_NODES.indexOf(id);
}

function door(id: string): Redis {
  const r = new Redis({ port: doorPort(id), host: "127.0.0.1", maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on("error", () => {});
  clients.push(r);
  return r;
}

interface MasterView {
  id: string;
  epoch: number;
  loopDelayMaxMs: number;
}

/** The worst "event loop stalled" the node logged after byte `from` of its log (0: none past the watch's threshold). */
function stalls(id: string, from: number): number {
  const text = fs.readFileSync(logFile(id)).subarray(from).toString("utf8");
  let worst = 0;
  for (const line of text.split("\n")) if (line.includes("event loop stalled")) worst = Math.max(worst, Number(/"delayMs":(\d+)/.exec(line)?.[1] ?? 0));
  return worst;
}

function logFile(id: string): string {
  return path.join(tc!.cluster.dataDir, "logs", `${id}.log`);
}

async function master(): Promise<MasterView> {
  const m = await waitForWriter(tc!);
  return { id: m.id, epoch: m.epoch, loopDelayMaxMs: Number(m.details.loopDelayMaxMs ?? -1) };
}

/**
 * PINGs `port` every 20 ms from its own process (the test's own loop is busy with the attack's replies) until told to
 * stop on stdin; prints the worst round trip and how many went unanswered past 5 s.
 */
const PROBE = `
const net = require("node:net");
const s = net.connect(Number(process.argv[1]), "127.0.0.1");
s.setNoDelay(true);
let max = 0, n = 0, pending = [], worstAt = 0, tick = Date.now(), lateMs = 0;
const seen = (ms, at) => { if (ms > max) { max = ms; worstAt = at; } };
s.on("data", (d) => {
  for (const _ of d.toString().split("+PONG").slice(1)) {
    const at = pending.shift();
    // The first answer says the probe runs: its own start and connect are not a PING's wait.
    if (n++ === 0) console.log("ready");
    else seen(Date.now() - at, at);
  }
});
s.on("error", () => {});
const t = setInterval(() => {
  const now = Date.now();
  lateMs = Math.max(lateMs, now - tick - 20);
  tick = now;
  if (pending.length > 0) seen(now - pending[0], pending[0]);
  if (pending.length < 2) { pending.push(now); s.write("PING\\r\\n"); }
}, 20);
process.stdin.on("data", () => { clearInterval(t); if (pending.length > 0) seen(Date.now() - pending[0], pending[0]); console.log(JSON.stringify({ n: n - 1, maxMs: max, worstAt, lateMs })); process.exit(0); });
`;

/** The probe's count, worst round trip, when that PING left (epoch ms), and its own timer's worst lateness. */
interface ProbeResult {
  n: number;
  maxMs: number;
  worstAt: number;
  lateMs: number;
}

async function probe(port: number): Promise<() => Promise<ProbeResult>> {
  const p = spawn(process.execPath, ["-e", PROBE, String(port)], { stdio: ["pipe", "pipe", "inherit"] });
  children.push(p);
  let out = "";
  p.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => p.on("exit", () => resolve()));
  // Started, connected and a first PING answered (a node process can take a second to start on a loaded host).
  await until("the PING probe's first answer", 30_000, () => (out.startsWith("ready\n") ? true : undefined), 10);
  return async () => {
    p.stdin!.write("stop\n");
    await exited;
    return JSON.parse(out.slice("ready\n".length)) as ProbeResult;
  };
}

/** Runs `attack` against the master's door with a PING probe on it; checks the master held, the loop and PING bounds. */
async function underAttack(t: import("ava").ExecutionContext, name: string, attack: (m: MasterView) => Promise<void>): Promise<void> {
  const before = await master();
  const logFrom = fs.statSync(logFile(before.id)).size;
  const stop = await probe(doorPort(before.id));
  const started = Date.now();
  // An attack that fails (a connection closed under it) still reports what the master went through.
  const failed = await attack(before).then(() => null, (err: Error) => err);
  // A standby campaigns after masterTimeoutMs without a heartbeat: give a late stall the time to show.
  await new Promise((r) => setTimeout(r, 1500));
  const ping = await stop();
  const after = await until("the master's status", 10_000, () => master().catch(() => undefined));
  const stalled = stalls(before.id, logFrom);
  const worst = `sent +${ping.worstAt - started} ms; the probe's own timer at most ${ping.lateMs} ms late`;
  t.log(`${name}: ${Date.now() - started} ms, PING max ${ping.maxMs} ms over ${ping.n} (${worst}), master loop stall max ${stalled} ms (0: under 100), since start ${after.loopDelayMaxMs} ms`);
  t.is(failed?.message ?? null, null, "the attack's clients failed");
  t.deepEqual({ id: after.id, epoch: after.epoch }, { id: before.id, epoch: before.epoch }, "a new master was elected while clients used the master's door");
  t.true(ping.maxMs < PING_BOUND_MS, `PING waited ${ping.maxMs} ms on the master's door`);
}

test.serial("pipelines of GETs of a 900 KB value on the master's door", async (t) => {
  await underAttack(t, "bigpipe", async (m) => {
    const c = door(m.id);
    await c.set("load:big", "x".repeat(900 * 1024));
    const runs = [c, door(m.id), door(m.id)].map(async (r) => {
      const p = r.pipeline();
      for (let i = 0; i < 300; i++) p.get("load:big");
      return (await p.exec()) ?? [];
    });
    const res = (await Promise.all(runs)).flat();
    const failed = res.filter(([err]) => err !== null).map(([err]) => String(err).slice(0, 120));
    t.deepEqual(failed.slice(0, 3), [], `${failed.length} of ${res.length} GETs failed`);
  });
});

test.serial("5,000 pattern subscribers on the master's door, large PUBLISHes on it and on a replica's", async (t) => {
  await underAttack(t, "patterns", async (m) => {
    const sub = net.connect(doorPort(m.id), "127.0.0.1");
    sockets.push(sub);
    sub.on("error", () => {});
    let confirmed = 0;
    let tail = "";
    sub.on("data", (d: Buffer) => {
      const text = tail + d.toString("latin1");
      confirmed += text.split("psubscribe").length - 1;
      tail = text.slice(-16);
    });
    const pattern = "*a".repeat(40) + "*b";
    sub.write(Buffer.concat(Array.from({ length: 5000 }, (_, i) => encodeCommand(["PSUBSCRIBE", pattern + i]))));
    await until("5,000 patterns confirmed", 30_000, () => (confirmed >= 5000 ? true : undefined));
    const channel = "a".repeat(20_000);
    const replica = door(DATA_NODES.find((id) => id !== m.id)!);
    const own = door(m.id);
    for (let i = 0; i < 3; i++) {
      await replica.publish(channel, "m");
      await own.publish(channel, "m");
    }
    // A message matching some patterns reaches the subscriber: the door still delivers.
    await own.publish(`${"a".repeat(100)}b1`, "hit");
  });
});

test.serial("pipelined RPUSHes of 10,000 members on the master's door", async (t) => {
  await underAttack(t, "biglist", async (m) => {
    const c = door(m.id);
    const members = Array.from({ length: 10_000 }, (_, j) => `e${j}`);
    const res = await Promise.allSettled(Array.from({ length: 60 }, () => c.rpush("load:list", ...members)));
    const failed = res.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason).slice(0, 120));
    t.deepEqual(failed.slice(0, 3), [], `${failed.length} of 60 RPUSHes failed`);
  });
});

test.serial("redis-benchmark with many connections and deep pipelines on the master's door", async (t) => {
  await underAttack(t, "benchmark", async (m) => {
    // 20,000 requests a test: each of the 100 connections keeps 16 in flight for a dozen rounds or more; 60,000 took
    // 52 s of the suite in CI (the SETs at ~2,500/s through the journal) for the same pressure on the door.
    const n = process.env.QJM_BENCH_N ?? "20000";
    const args = ["-h", "127.0.0.1", "-p", String(doorPort(m.id)), "-c", process.env.QJM_BENCH_C ?? "100", "-P", process.env.QJM_BENCH_P ?? "16", "-n", n, "-t", "ping,get,set", "-q"];
    const p = spawn("redis-benchmark", args, { stdio: ["ignore", "pipe", "pipe"] });
    children.push(p);
    let out = "";
    p.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => p.on("exit", (c) => resolve(c)));
    t.log(out.replace(/\r/g, "\n").split("\n").filter((l) => l.includes("requests per second")).join("; "));
    t.is(code, 0, out.slice(-500));
  });
});

test.serial("a 128 MiB value read through the master's door (Redis allows 512 MiB): whole, while the door answers PING", async (t) => {
  await underAttack(t, "bigvalue", async (m) => {
    const size = 128 * 1024 * 1024;
    t.is(await door(m.id).setrange("load:huge", size - 1, "z"), size);
    const s = net.connect(doorPort(m.id), "127.0.0.1");
    sockets.push(s);
    s.on("error", () => {});
    const want = `$${size}\r\n`.length + size + 2;
    let got = 0;
    let last: Buffer = Buffer.alloc(0);
    const done = new Promise<void>((resolve) => {
      s.on("data", (d: Buffer) => {
        got += d.length;
        last = d;
        if (got >= want) resolve();
      });
      // Closed by the door (a reply past its output bound, as before s23): the count below says so.
      s.on("close", () => resolve());
    });
    s.write(encodeCommand(["GET", "load:huge"]));
    await done;
    t.is(got, want, "the whole reply");
    t.is(last.subarray(-3).toString("latin1"), "z\r\n", "its last byte, then CRLF");
    s.destroy();
    await door(m.id).del("load:huge");
  });
});

/**
 * Issue #14 item 1, "Must show": the bus is no single point of failure. A local routed cluster of three nats-servers
 * (the actors spread over them, each trying the list from its own server on), three journal nodes, three data nodes,
 * 100 client-library connections INCRing counters: kill -9 of each nats-server in turn, each restarted by the
 * cluster (same port and configuration) and its routes back before the next. No acked write lost or applied twice
 * (every counter equals its acked INCRs on every node), no actor restarted, and the longest gap without any ack
 * per kill ≤ 2 s, printed with whether the kill caused a failover (the master's server dying takes its subscriptions
 * with it until it reconnects: a standby's probe may see "no responders"). Then one supervised nats-server alone.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { startLocalNats, type LocalNatsServer } from "../../src/cluster/local_nats.js";
import { defaults } from "../../src/config/config.js";
import { createNatsUser, credsFile } from "../../src/nats/auth.js";
import { connectBus } from "../../src/nats/bus.js";
import { pidRuns } from "../../src/process/child.js";
import { freePorts } from "../../src/process/ports.js";
import { startTestCluster, until, type TestCluster } from "../helpers/harness.js";
import { checkCounters, Events, IncrLoad, steadyMaster } from "../helpers/incr_load.js";
import { bundleDir } from "../../src/util/package_root.js";

const DATA_NODES = ["d1", "d2", "d3"];
/** The bound on the longest stretch without any acked write around one nats-server's death. */
const GAP_MAX_MS = 2000;
/** Acks before each kill (the load is under way) and after it (writes flow again; the gap is measured over both). */
const ACKS_AROUND_KILL = 100;

/** What one nats-server's monitoring endpoint says (`/routez`, `/connz`); null while it does not answer. */
async function monitor<T>(server: LocalNatsServer, endpoint: string): Promise<T | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${server.monitorPort}/${endpoint}`);
    return res.ok ? ((await res.json()) as T) : null;
  } catch {
    return null;
  }
}

/** Resolves once every server has a route to each of the others. */
async function routesUp(servers: readonly LocalNatsServer[], timeoutMs = 20_000): Promise<void> {
  await until("every nats-server routed to every other", timeoutMs, async () => {
    const counts = await Promise.all(servers.map(async (s) => (await monitor<{ num_routes: number }>(s, "routez"))?.num_routes ?? -1));
    return counts.every((n) => n === servers.length - 1) ? true : undefined;
  }, 50);
}

/** The actors connected to `server` (their connection names: qjm-<role>-<id>). */
async function actorsOn(server: LocalNatsServer): Promise<string[]> {
  const connz = await monitor<{ connections?: { name?: string }[] }>(server, "connz?limit=1000");
  return (connz?.connections ?? []).map((c) => c.name ?? "").filter((n) => n.startsWith("qjm-")).map((n) => n.replace(/^qjm-[a-z]+-/, "")).sort();
}

/** The longest stretch without an ack from the last ack before index `from` up to `untilMs`. */
function longestGap(acks: readonly { atMs: number }[], from: number, killedAt: number, untilMs: number): number {
  let prev = from > 0 ? acks[from - 1].atMs : killedAt;
  let gap = 0;
  for (let i = from; i < acks.length && acks[i].atMs <= untilMs; i++) {
    gap = Math.max(gap, acks[i].atMs - prev);
    prev = acks[i].atMs;
  }
  return Math.max(gap, untilMs - prev);
}

/** Every actor's pid, to show none was restarted. */
function actorPids(tc: TestCluster): Map<string, number> {
  return new Map([...tc.cluster.actors].map(([name, child]) => [name, child.pid]));
}

function checkNoActorRestarted(t: ExecutionContext, tc: TestCluster, pids: Map<string, number>): void {
  const changed = [...pids].filter(([name, pid]) => tc.cluster.actors.get(name)?.pid !== pid || !pidRuns(pid, bundleDir()));
  t.deepEqual(changed.map(([name]) => name), [], "no actor process exited or was restarted");
}

/** kill -9 of `server` under load: restarted (and routed again); returns the longest gap without an ack. */
async function killRound(t: ExecutionContext, tc: TestCluster, load: IncrLoad, events: Events, server: LocalNatsServer): Promise<number> {
  await load.acksMore(ACKS_AROUND_KILL);
  const master = await steadyMaster(tc, 1);
  const on = await actorsOn(server);
  const oldPid = server.pid()!;
  const [killedAt, from] = [Date.now(), load.acks.length];
  process.kill(oldPid, "SIGKILL");
  const newPid = await until(`nats-server :${server.port} restarted`, 15_000, () => {
    const pid = server.pid();
    return pid !== null && pid !== oldPid ? pid : undefined;
  }, 10);
  const restartedMs = Date.now() - killedAt;
  await routesUp(tc.cluster.natsServers);
  const routedMs = Date.now() - killedAt;
  await load.acksMore(ACKS_AROUND_KILL);
  const gap = longestGap(load.acks, from, killedAt, Date.now());
  const failover = events.seen.find((e) => e.type === "writerElected" && (e.epoch ?? 0) > master.epoch && e.atMs >= killedAt);
  const outcome = failover === undefined ? `no failover (${master.id} epoch ${master.epoch} kept serving)` : `failover: ${failover.source} epoch ${failover.epoch} serving +${failover.atMs - killedAt} ms`;
  t.log(`nats-server :${server.port} (pid ${oldPid}; actors on it: ${on.join(" ") || "none"}; master ${master.id}) killed: restarted +${restartedMs} ms (pid ${newPid}), routes back +${routedMs} ms; longest gap without an ack ${gap} ms; ${outcome}`);
  return gap;
}

test.serial("nats cluster - kill -9 of each of 3 nats-servers under 100 clients: restarted, no acked INCR lost or doubled, no actor restarted, gap ≤ 2 s", async (t) => {
  const tc = await startTestCluster("natscluster", { dataNodes: DATA_NODES, natsServers: 3 }, { natsMonitor: true });
  let load: IncrLoad | null = null;
  t.teardown(async () => {
    await load?.stop();
    await tc.stop();
  });
  t.is(tc.cluster.natsServers.length, 3);
  await routesUp(tc.cluster.natsServers);
  const events = new Events(tc);
  await steadyMaster(tc);
  const pids = actorPids(tc);
  load = await IncrLoad.start(tc);
  const gaps: number[] = [];
  for (const server of tc.cluster.natsServers) gaps.push(await killRound(t, tc, load, events, server));
  await load.stop();
  t.log(`${load.acks.length} INCRs acked, ${load.retried} after a retry; longest gaps per kill: ${gaps.join(", ")} ms`);
  t.deepEqual(load.errors.slice(0, 5), [], "every INCR was acked in the end");
  await checkCounters(t, tc, load);
  checkNoActorRestarted(t, tc, pids);
  t.deepEqual(tc.cluster.natsServers.map((s) => s.restarts), [1, 1, 1], "each nats-server was restarted once");
  for (const [i, gap] of gaps.entries()) t.true(gap <= GAP_MAX_MS, `kill ${i + 1}: longest gap without an ack ${gap} ms`);
});

test.serial("nats cluster - a single nats-server killed -9 is restarted by the cluster and writes are acked again", async (t) => {
  const tc = await startTestCluster("natssingle", { dataNodes: DATA_NODES, natsServers: 1 }, { natsMonitor: true });
  let load: IncrLoad | null = null;
  t.teardown(async () => {
    await load?.stop();
    await tc.stop();
  });
  const events = new Events(tc);
  await steadyMaster(tc);
  const pids = actorPids(tc);
  load = await IncrLoad.start(tc, 20);
  await killRound(t, tc, load, events, tc.cluster.natsServers[0]);
  await load.stop();
  t.deepEqual(load.errors.slice(0, 5), [], "every INCR was acked in the end");
  await checkCounters(t, tc, load);
  checkNoActorRestarted(t, tc, pids);
  t.is(tc.cluster.natsServers[0].restarts, 1);
});

test.serial("nats cluster - a user added to the cluster (addActor) may connect to every server: the reload reaches them all", async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-natsusers-"));
  const n = 3;
  const config = { ...defaults, dataDir, cluster: "natsusers", natsServers: n, natsUrl: `nats://127.0.0.1:${await freePorts(n)}`, natsRoutePortBase: await freePorts(n) };
  const nats = await startLocalNats(config, [{ name: "jn1", role: "journal" }], { backoffMinMs: 100, backoffMaxMs: 1000, stableMs: 10_000 });
  t.teardown(async () => {
    await nats.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  t.deepEqual(nats.urls, nats.servers.map((s) => s.url));
  // A key no server knows yet is refused.
  createNatsUser(dataDir, config.cluster, { name: "r9", role: "replica" });
  for (const url of nats.urls) await t.throwsAsync(connectBus(url, "before", credsFile(dataDir, "r9")), { message: /authorization/i });
  nats.auth!.add({ name: "r9", role: "replica" });
  for (const url of nats.urls) {
    // SIGHUP is asynchronous: the server reads its file again a moment later.
    const nc = await until(`r9 admitted by ${url}`, 10_000, async () => await connectBus(url, "r9", credsFile(dataDir, "r9")).catch(() => undefined), 50);
    await nc.close();
  }
  t.pass();
});

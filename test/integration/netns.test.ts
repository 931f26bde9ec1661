/**
 * Issue #14 item 2, "Must show": the cluster spread over hosts — network namespaces on this machine, each with its own
 * loopback, address and data directory, joined by veth pairs to a bridge — and run as an operator runs it: a routed
 * cluster of three nats-servers on hosts of their own with the users `redis-qjm nats-credentials` wrote, and each
 * actor `redis-qjm run <role> --id <id> --config <its host's qjm.json>`, a real process stopped by pid.
 *
 * Under 100 client-library connections INCRing counters (an ack ledger, test/helpers/incr_load.ts): one journal
 * node's host is cut off (iptables DROP inside it) — writes go on; healed; then the master's host is cut off — a new
 * master serves, the old one steps down and converges once healed. At the end every counter equals its acked INCRs
 * on every data node (read through each node's RESP front door, on its host's address): none lost, none applied twice.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import type { Config } from "../../src/config/config.js";
import { connectBus, request, requestAll, type NatsConnection } from "../../src/nats/bus.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import { NATS_AUTH_INCLUDE } from "../../src/nats/deploy_credentials.js";
import { waitForPort } from "../../src/process/ports.js";
import type { ActorStatus, WriteReply } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { dumpKeyspace, until, type ClusterView } from "../helpers/harness.js";
import { checkCounters, Events, IncrLoad, standby, statuses, steadyMaster } from "../helpers/incr_load.js";
import { cleanLeftovers, labUnavailable, NetnsLab, sh } from "../helpers/netns.js";

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../actors/cli.js");
const NATS_HOSTS = ["n1", "n2", "n3"];
const JOURNAL_NODES = ["jn1", "jn2", "jn3"];
const DATA_NODES = ["d1", "d2", "d3"];
const NATS_PORT = 4222;
const ROUTE_PORT = 6222;
const RESP_PASSWORD = "netns-door";

/** The configuration every host shares (each host's qjm.json adds its own NATS order, address and directories). */
function sharedConfig(natsUrls: string[]): Partial<Config> {
  return {
    cluster: "netns",
    journalNodes: JOURNAL_NODES,
    dataNodes: DATA_NODES,
    natsUrl: natsUrls.join(","),
    respPassword: RESP_PASSWORD,
    // As the harness's: two cores run nine hosts' processes and a hundred clients.
    quorumTimeoutMs: 5000,
    heartbeatIntervalMs: 200,
    writerRetryMs: 200,
    epochRequestTimeoutMs: 1000,
  };
}

/** One nats-server of the routed cluster: its address, its peers' routes, and the users' block beside it. */
function natsServerConf(name: string, address: string, peers: string[]): string {
  return [
    `server_name: "qjm-${name}"`,
    `listen: "${address}:${NATS_PORT}"`,
    `include ./${NATS_AUTH_INCLUDE}`,
    `write_deadline: "10s"`,
    `ping_interval: "5s"`,
    `ping_max: 2`,
    `cluster ${JSON.stringify({ name: "qjm-netns", listen: `${address}:${ROUTE_PORT}`, routes: peers.map((p) => `nats-route://${p}:${ROUTE_PORT}`) })}`,
    "",
  ].join("\n");
}

/** The actors' environment: no QJM_* of the test runner's (the hosts' files say it all), JSON logs. */
function actorEnv(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("QJM_")));
  return { ...env, QJM_LOG_JSON: "1" };
}

/** The longest time between two acks in [fromMs, toMs]. */
function longestGap(acks: readonly { atMs: number }[], fromMs: number, toMs: number): number {
  let gap = 0;
  let last = fromMs;
  for (const a of acks) {
    if (a.atMs < fromMs || a.atMs > toMs) continue;
    gap = Math.max(gap, a.atMs - last);
    last = a.atMs;
  }
  return Math.max(gap, toMs - last);
}

const lab = new NetnsLab();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-netns-"));
let nc: NatsConnection | null = null;
let load: IncrLoad | null = null;

test.after.always(async () => {
  await load?.stop().catch(() => {});
  await nc?.close().catch(() => {});
  await lab.destroy();
  if (process.env.QJM_KEEP_TEST_DATA === undefined) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`netns test data and logs kept in ${dir}`);
});

/** The lab: nine hosts, credentials, a routed NATS cluster, three journal nodes and three data nodes, each on its own host. */
async function startHosts(t: { log: (s: string) => void }): Promise<ClusterView> {
  const removed = await cleanLeftovers();
  if (removed.length > 0) t.log(`removed leftovers of earlier runs: ${removed.join(", ")}`);
  await lab.createBridge();
  for (const [i, h] of NATS_HOSTS.entries()) await lab.addHost(h, 11 + i);
  for (const [i, h] of JOURNAL_NODES.entries()) await lab.addHost(h, 21 + i);
  for (const [i, h] of DATA_NODES.entries()) await lab.addHost(h, 31 + i);
  const natsAddresses = NATS_HOSTS.map((h) => lab.host(h).address);
  const natsUrls = natsAddresses.map((a) => `nats://${a}:${NATS_PORT}`);
  const shared = sharedConfig(natsUrls);
  fs.writeFileSync(path.join(dir, "qjm.json"), JSON.stringify(shared, null, 2));
  // What an operator does once, on any machine: a NATS user per actor, client and admin.
  const credentials = path.join(dir, "credentials");
  await sh(process.execPath, CLI, "nats-credentials", "--out", credentials, "--config", path.join(dir, "qjm.json"));
  fs.mkdirSync(path.join(dir, "logs"));
  for (const [i, h] of NATS_HOSTS.entries()) {
    const hostDir = path.join(dir, h);
    fs.mkdirSync(hostDir);
    fs.copyFileSync(path.join(credentials, NATS_AUTH_INCLUDE), path.join(hostDir, NATS_AUTH_INCLUDE));
    fs.writeFileSync(path.join(hostDir, "nats-server.conf"), natsServerConf(h, natsAddresses[i], natsAddresses.filter((_, k) => k !== i)));
    lab.spawn(h, "nats-server", ["-c", path.join(hostDir, "nats-server.conf")], { logFile: path.join(dir, "logs", `${h}.log`) });
  }
  await Promise.all(natsAddresses.map((a) => waitForPort(NATS_PORT, 10_000, a)));
  // Each actor host: its own qjm.json (its NATS order starts at another server, its door on its own address).
  [...JOURNAL_NODES, ...DATA_NODES].forEach((id, i) => {
    const hostDir = path.join(dir, id);
    fs.mkdirSync(hostDir, { recursive: true });
    const own = { natsUrl: [...natsUrls.slice(i % 3), ...natsUrls.slice(0, i % 3)].join(","), dataDir: path.join(hostDir, "data"), natsCredsFile: credsFile(dir, id), respHost: lab.host(id).address };
    const file = path.join(hostDir, "qjm.json");
    fs.writeFileSync(file, JSON.stringify({ ...shared, ...own }, null, 2));
    const role = JOURNAL_NODES.includes(id) ? "journal-node" : "data-node";
    lab.spawn(id, process.execPath, [CLI, "run", role, "--id", id, "--config", file], { env: actorEnv(), logFile: path.join(dir, "logs", `${id}.log`), tier: 1 });
  });
  nc = await connectBus(natsUrls.join(","), "test-netns", credsFile(dir, CLIENT_USER));
  const s = subjects("netns");
  const config = { ...(shared as Config), dataNodes: DATA_NODES, journalNodes: JOURNAL_NODES, replicas: [], respPort: 6479 };
  const conn = nc;
  return {
    cluster: { natsUrl: natsUrls.join(","), dataDir: dir, cluster: "netns", config },
    nc: conn,
    redisPassword: "",
    write: async (args, timeoutMs = 10_000) => (await request(conn, s.write, args, timeoutMs)) as WriteReply,
    status: async () => (await requestAll(conn, s.status, {}, 500).catch(() => [])) as ActorStatus[],
    // Each node's Redis listens on its host's loopback only: read through its front door, on the host's address.
    keyspaceOf: (id) => dumpKeyspace(config.respPort + DATA_NODES.indexOf(id), RESP_PASSWORD, lab.host(id).address),
  };
}

test.serial("netns - hosts in network namespaces: a journal node's host cut off, then the master's; no acked write lost, none applied twice", async (t) => {
  const unavailable = labUnavailable();
  if (unavailable !== null) t.fail(unavailable);
  if (unavailable !== null) return;
  const t0 = Date.now();
  const tc = await startHosts(t);
  const events = new Events(tc);
  const first = await steadyMaster(tc);
  t.log(`9 hosts up, ${first.id} serves epoch ${first.epoch}: ${Date.now() - t0} ms`);
  load = await IncrLoad.start(tc);
  await load.acksMore(200);

  // A journal node's host cut off: a majority of two still acks every write.
  const jn = "jn1";
  const cutJn = Date.now();
  await lab.cut(jn);
  await load.acksMore(300);
  await until(`the master to mask ${jn}`, 30_000, async () => {
    const m = (await tc.status()).find((s) => s.role === "master" && s.health === "writing");
    return m !== undefined && (m.details.journalNodes as Record<string, string>)[jn] !== "healthy" ? true : undefined;
  }, 100);
  await load.acksMore(200);
  const healJn = Date.now();
  await lab.heal(jn);
  t.log(`${jn}'s host cut off for ${healJn - cutJn} ms: longest gap without an ack ${longestGap(load.acks, cutJn, healJn)} ms`);
  await until(`${jn} back in sync`, 60_000, async () => {
    const m = (await tc.status()).find((s) => s.role === "master" && s.health === "writing");
    return m !== undefined && (m.details.journalNodes as Record<string, string>)[jn] === "healthy" ? true : undefined;
  }, 200);
  t.log(`${jn} back in sync ${Date.now() - healJn} ms after the heal`);

  // The master's host cut off: a standby takes over; the old one, healed, steps down and converges.
  const old = await steadyMaster(tc);
  await load.acksMore(100);
  const [cutAt, from] = [Date.now(), load.acks.length];
  await lab.cut(old.id);
  const next = await events.elected(old.epoch);
  const firstAck = await load.firstAckAfter(from, next.endTxid, 30_000);
  t.not(next.source, `master.${old.id}`, "another data node took over");
  await load.acksMore(300);
  const healedAt = Date.now();
  await lab.heal(old.id);
  t.log(`${old.id}'s host (master, epoch ${old.epoch}) cut off: ${next.source} serves epoch ${next.epoch} +${next.atMs - cutAt} ms, first ack +${firstAck - cutAt} ms; longest gap without an ack ${longestGap(load.acks, cutAt, healedAt)} ms; healed after ${healedAt - cutAt} ms`);
  await until(`${old.id} back as a standby`, 60_000, async () => ((await statuses(tc)).find((s) => s.id === old.id && standby(s)) ? true : undefined), 100);
  t.log(`${old.id} back as a standby ${Date.now() - healedAt} ms after the heal`);

  await load.stop();
  t.log(`${load.acks.length} INCRs acked by 100 clients, ${load.retried} after a retry; whole run ${Date.now() - t0} ms`);
  t.deepEqual(load.errors.slice(0, 5), [], "every INCR was acked in the end");
  await checkCounters(t, tc, load);
});

/**
 * Issue #14 item 2, "Must show": the cluster spread over hosts — network namespaces on this machine, each with its own
 * loopback, address and data directory, joined by veth pairs to a bridge — and run as an operator runs it, from the
 * files of infra/examples/three-hosts (their 10.0.0.<k> mapped onto the lab's addresses): a routed cluster of three
 * nats-servers (the example's nats-server.conf, route passwords and all) on hosts of their own with the users
 * `redis-qjm nats-credentials` wrote, and each actor run by its systemd unit's command line (`redis-qjm run <role>
 * --id <id> --config <host-k's qjm.json>`), a real process stopped by pid.
 *
 * Under 100 client-library connections INCRing counters (an ack ledger, test/helpers/incr_load.ts): one journal
 * node's host is cut off (iptables DROP inside it) — writes go on; healed; then the master's host is cut off — a new
 * master serves, the old one steps down and converges once healed; then the host of the nats-server the master talks
 * through — the same again, with a third of the clients stranded on that server. At the end every counter equals its
 * acked INCRs on every data node (read through each node's RESP front door, on its host's address): none lost, none
 * applied twice. The gaps without acks are printed.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { loadConfig, type Config } from "../../src/config/config.js";
import { connectBus, request, requestAll, type NatsConnection } from "../../src/nats/bus.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import { NATS_AUTH_INCLUDE } from "../../src/nats/deploy_credentials.js";
import { waitForPort } from "../../src/process/ports.js";
import type { ActorStatus, WriteReply } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { dumpKeyspace, until, type ClusterView } from "../helpers/harness.js";
import { checkCounters, Events, IncrLoad, standby, statuses, steadyMaster } from "../helpers/incr_load.js";
import { cleanLeftovers, labUnavailable, NetnsLab, sh } from "../helpers/netns.js";
import { actorProgram } from "../../src/util/package_root.js";
import { packageRoot } from "../../src/util/package_root.js";

const CLI = actorProgram("cli");
const NATS_HOSTS = ["n1", "n2", "n3"];
const JOURNAL_NODES = ["jn1", "jn2", "jn3"];
const MONITOR_PORT = 8222;
/**
 * QJM_NETNS_WAIT_STRANDED=1 keeps the nats-server's host cut off until every client on it failed over by itself (how
 * long that takes is printed: 36–42 s on a loaded machine); by default it is healed once the new master served a while.
 */
const WAIT_STRANDED = process.env.QJM_NETNS_WAIT_STRANDED === "1";
const DATA_NODES = ["d1", "d2", "d3"];

const ROOT = packageRoot();
const EXAMPLE = path.join(ROOT, "infra/examples/three-hosts");

/** Two cores run nine hosts' processes and a hundred clients: the harness's timeouts, on top of the example's files. */
const TEST_CONFIG: Partial<Config> = { quorumTimeoutMs: 5000, heartbeatIntervalMs: 200, writerRetryMs: 200, epochRequestTimeoutMs: 1000 };

/** The example's 10.0.0.<k> (host-k) becomes the lab's address of `hosts[k - 1]`. */
function mapAddresses(text: string, hosts: readonly string[]): string {
  return text.replace(/10\.0\.0\.(\d)/g, (_, k: string) => lab.host(hosts[Number(k) - 1]).address);
}

/** host-k's qjm.json of the example, on the lab's addresses, for the actor `id` on its own host. */
function hostConfig(k: number, id: string, hostDir: string): Partial<Config> {
  const example = JSON.parse(mapAddresses(fs.readFileSync(path.join(EXAMPLE, `host-${k}`, "qjm.json"), "utf8"), NATS_HOSTS)) as Partial<Config>;
  // The example's directories are /var/lib/redis-qjm (systemd's StateDirectory) with credentials copied into it.
  return { ...example, ...TEST_CONFIG, dataDir: path.join(hostDir, "data"), natsCredsFile: credsFile(dir, id), respHost: lab.host(id).address };
}

/** The arguments after `redis-qjm` of the systemd unit's ExecStart, for instance `id` and configuration `file`. */
function unitArgs(unit: string, id: string, file: string): string[] {
  const exec = /^ExecStart=.*? redis-qjm (.*)$/m.exec(fs.readFileSync(path.join(ROOT, "infra/systemd", unit), "utf8"));
  if (exec === null) throw new Error(`no ExecStart running redis-qjm in ${unit}`);
  return exec[1].replace(/%i/g, id).replace("/etc/redis-qjm/qjm.json", file).split(/\s+/);
}

/** The actors' environment: no QJM_* of the test runner's (the hosts' files say it all), JSON logs. */
function actorEnv(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("QJM_")));
  return { ...env, QJM_LOG_JSON: "1" };
}

const lab = new NetnsLab();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-netns-"));
let nc: NatsConnection | null = null;
let watch: NatsConnection | null = null;
let load: IncrLoad | null = null;

test.after.always(async () => {
  await load?.stop().catch(() => {});
  await nc?.close().catch(() => {});
  await watch?.close().catch(() => {});
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
  const natsUrls = natsAddresses.map((a) => `nats://${a}:4222`);
  // What an operator does once, on any machine: a NATS user per actor, client and admin.
  const credentials = path.join(dir, "credentials");
  await sh(process.execPath, CLI, "nats-credentials", "--out", credentials, "--config", path.join(EXAMPLE, "host-1", "qjm.json"));
  fs.mkdirSync(path.join(dir, "logs"));
  // The example's nats-server.conf of host-k, on the lab's addresses, with the users' include beside it.
  for (const [i, h] of NATS_HOSTS.entries()) {
    const hostDir = path.join(dir, h);
    fs.mkdirSync(hostDir);
    fs.copyFileSync(path.join(credentials, NATS_AUTH_INCLUDE), path.join(hostDir, NATS_AUTH_INCLUDE));
    const conf = mapAddresses(fs.readFileSync(path.join(EXAMPLE, `host-${i + 1}`, "nats-server.conf"), "utf8"), NATS_HOSTS);
    // Monitoring (/connz), for the test to find the server carrying the master's connection.
    fs.writeFileSync(path.join(hostDir, "nats-server.conf"), `${conf}http: "${natsAddresses[i]}:${MONITOR_PORT}"\n`);
    lab.spawn(h, "nats-server", ["-c", path.join(hostDir, "nats-server.conf")], { logFile: path.join(dir, "logs", `${h}.log`) });
  }
  await Promise.all(natsAddresses.map((a) => waitForPort(4222, 10_000, a)));
  // Each actor on its own host, with host-k's qjm.json and its systemd unit's command line.
  for (const ids of [JOURNAL_NODES, DATA_NODES]) {
    ids.forEach((id, i) => {
      const hostDir = path.join(dir, id);
      fs.mkdirSync(hostDir, { recursive: true });
      const file = path.join(hostDir, "qjm.json");
      fs.writeFileSync(file, JSON.stringify(hostConfig(i + 1, id, hostDir), null, 2));
      const unit = ids === JOURNAL_NODES ? "redis-qjm-journal@.service" : "redis-qjm-data@.service";
      lab.spawn(id, process.execPath, [CLI, ...unitArgs(unit, id, file)], { env: actorEnv(), logFile: path.join(dir, "logs", `${id}.log`), tier: 1 });
    });
  }
  nc = await connectBus(natsUrls.join(","), "test-netns", credsFile(dir, CLIENT_USER));
  return viewThrough(nc, natsUrls.join(","));
}

/** The cluster as the shared loads and checks see it, through the client connection `conn`. */
function viewThrough(conn: NatsConnection, natsUrl: string): ClusterView {
  const config = loadConfig({}, hostConfig(1, "d1", path.join(dir, "d1")));
  const s = subjects(config.cluster);
  return {
    cluster: { natsUrl, dataDir: dir, cluster: config.cluster, config },
    nc: conn,
    redisPassword: "",
    write: async (args, timeoutMs = 10_000) => (await request(conn, s.write, args, timeoutMs)) as WriteReply,
    status: async () => (await requestAll(conn, s.status, {}, 500).catch(() => [])) as ActorStatus[],
    // Each node's Redis listens on its host's loopback only: read through its front door, on the host's address.
    keyspaceOf: (id) => dumpKeyspace(config.respPort + DATA_NODES.indexOf(id), config.respPassword, lab.host(id).address),
  };
}

type Log = (s: string) => void;

/** A journal node's host cut off: a majority of two still acks every write; healed, the node is caught up. */
async function cutJournalHost(log: Log, tc: ClusterView, load: IncrLoad, jn: string): Promise<void> {
  const journalHealth = async (): Promise<string | undefined> => {
    const m = (await tc.status()).find((s) => s.role === "master" && s.health === "writing");
    return (m?.details.journalNodes as Record<string, string> | undefined)?.[jn];
  };
  const cutAt = Date.now();
  await lab.cut(jn);
  await load.acksMore(300);
  await until(`the master to mask ${jn}`, 30_000, async () => ((await journalHealth()) !== "healthy" ? true : undefined), 100);
  await load.acksMore(200);
  const healAt = Date.now();
  await lab.heal(jn);
  log(`${jn}'s host cut off for ${healAt - cutAt} ms: longest gap without an ack ${load.longestGap(cutAt, healAt)} ms, longest one client waited ${load.longestClientStall(cutAt, healAt).ms} ms`);
  await until(`${jn} back in sync`, 60_000, async () => ((await journalHealth()) === "healthy" ? true : undefined), 200);
  log(`${jn} back in sync ${Date.now() - healAt} ms after the heal`);
}

/**
 * `cut` isolates the master (its host, or the nats-server it talks through): a standby takes over; healed, the old
 * master steps down and rejoins as a standby. `tc` must talk through a server `cut` leaves alone.
 */
async function cutMaster(log: Log, tc: ClusterView, load: IncrLoad, what: string, cut: () => Promise<void>, heal: () => Promise<void>, waitStranded = false): Promise<void> {
  const events = new Events(tc);
  const old = await steadyMaster(tc);
  await load.acksMore(100);
  const [cutAt, from] = [Date.now(), load.acks.length];
  await cut();
  const next = await events.elected(old.epoch);
  const firstAck = await load.firstAckAfter(from, next.endTxid, 30_000);
  if (next.source === `master.${old.id}`) throw new Error(`${old.id} was elected again: nobody took over`);
  await load.acksMore(300);
  // With waitStranded, held until every client acked again: those on a cut-off nats-server must fail over by themselves.
  if (waitStranded) await until("every client acked again", 90_000, () => (load.clientsWithoutAckAfter(firstAck).length === 0 ? true : undefined), 50);
  const healAt = Date.now();
  const stranded = load.clientsWithoutAckAfter(firstAck).length;
  await heal();
  const stall = load.longestClientStall(cutAt, healAt);
  log(`${what} (${old.id} master, epoch ${old.epoch}) cut off: ${next.source} serves epoch ${next.epoch} +${next.atMs - cutAt} ms, first ack +${firstAck - cutAt} ms; longest gap without an ack ${load.longestGap(cutAt, healAt)} ms, longest one client waited ${stall.ms} ms; healed after ${healAt - cutAt} ms, ${stranded} clients not acked since`);
  // On a timeout, what the old master last said of itself (CI once waited 60 s here with nothing to tell why).
  let last = "no status";
  await until(`${old.id} back as a standby`, 60_000, async () => {
    const s = (await statuses(tc)).find((x) => x.id === old.id);
    if (s !== undefined) last = JSON.stringify({ role: s.role, health: s.health, epoch: s.epoch, details: s.details }).slice(0, 2000);
    return s !== undefined && standby(s) ? true : undefined;
  }, 100).catch((err: Error) => {
    throw new Error(`${err.message}; ${old.id} last said ${last}`);
  });
  log(`${old.id} back as a standby ${Date.now() - healAt} ms after the heal`);
}

/** The NATS host whose server holds the named actor's connection (its /connz). */
async function natsHostOf(actor: string): Promise<string> {
  for (const h of NATS_HOSTS) {
    const connz = (await (await fetch(`http://${lab.host(h).address}:${MONITOR_PORT}/connz?limit=1024`)).json()) as { connections?: { name?: string }[] };
    if ((connz.connections ?? []).some((c) => c.name === `qjm-data-${actor}`)) return h;
  }
  throw new Error(`no nats-server holds ${actor}'s connection`);
}

test.serial("netns - hosts in network namespaces: a journal node's host cut off, then the master's, then its nats-server's; no acked write lost, none applied twice", async (t) => {
  const unavailable = labUnavailable();
  if (unavailable !== null) t.fail(unavailable);
  if (unavailable !== null) return;
  const t0 = Date.now();
  const tc = await startHosts(t);
  const first = await steadyMaster(tc);
  t.log(`9 hosts up, ${first.id} serves epoch ${first.epoch}: ${Date.now() - t0} ms`);
  load = await IncrLoad.start(tc);
  await load.acksMore(200);
  const log = (s: string) => t.log(s);
  await cutJournalHost(log, tc, load, "jn1");
  const master = await steadyMaster(tc);
  await cutMaster(log, tc, load, `${master.id}'s host`, () => lab.cut(master.id), () => lab.heal(master.id));
  // The nats-server the master talks through cut off (its host, with its routes): the master, and every client on that
  // server, is cut off until nats.js gives the silent connection up (two unanswered pings) and fails over, or the host
  // is healed. The test watches through another server.
  const server = await natsHostOf((await steadyMaster(tc)).id);
  const others = NATS_HOSTS.filter((h) => h !== server).map((h) => `nats://${lab.host(h).address}:4222`);
  watch = await connectBus(others, "test-netns-watch", credsFile(dir, CLIENT_USER));
  const watching = viewThrough(watch, tc.cluster.natsUrl);
  await cutMaster(log, watching, load, `nats-server ${server}'s host`, () => lab.cut(server), () => lab.heal(server), WAIT_STRANDED);

  await load.stop();
  t.log(`${load.acks.length} INCRs acked by 100 clients, ${load.retried} after a retry; whole run ${Date.now() - t0} ms`);
  t.deepEqual(load.errors.slice(0, 5), [], "every INCR was acked in the end");
  await checkCounters(t, watching, load);
});

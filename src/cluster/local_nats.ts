/**
 * The nats-servers of the local cluster: one, or a routed cluster of `natsServers` (client ports from QJM_NATS_URL's
 * port upward, route ports from natsRoutePortBase), all with the same users and permissions (src/nats/auth.ts), each
 * supervised: restarted on the same ports with the same configuration when it dies, with the actors' bounded backoff.
 * A nats-server that already answers at the first URL is used as it is (no users), and none is started.
 * With `tls` (issue #14 item 3), ours take TLS connections only, with a client certificate of the CA make-certs.sh
 * made under <dataDir>/tls, and their routes are TLS as well.
 */
import path from "node:path";
import { natsUrlPort, natsUrls, type Config } from "../config/config.js";
import { authorizationConf, createNatsUser, removeNatsCredentials, serviceNatsUsers, type NatsUser, type NatsUserEntry } from "../nats/auth.js";
import { natsClusterConf, startNatsServer, writeNatsServerConf, type NatsServer } from "../nats/nats_server.js";
import { loopbackNatsUrl, makeCertificates, natsServerTls, natsTlsConf, tlsDir, tlsEnabled, type NatsServerTls } from "../nats/tls.js";
import { waitForPort } from "../process/ports.js";
import { restartDelay, type RestartPolicy } from "../process/restart_policy.js";
import { credentialsDir } from "../util/secret_file.js";

/** One nats-server we run. */
export interface LocalNatsServer {
  readonly url: string;
  readonly port: number;
  /** Its route port (a cluster of several); null alone. */
  readonly routePort: number | null;
  /** Its monitoring port (natsMonitorPortBase); null without. */
  readonly monitorPort: number | null;
  /** The running process's pid (another after each restart); null while it is down. */
  pid(): number | null;
  /** How many times it was started again after it died. */
  readonly restarts: number;
}

export interface LocalNats {
  /** Every server's URL: ours, or the configured list when it was not ours to start. */
  readonly urls: string[];
  /** The servers we run; empty when one already answered at the first URL. */
  readonly servers: readonly LocalNatsServer[];
  /** With our servers: adds a user to every server's configuration and reloads them. Null: not ours, no users. */
  readonly auth: { add(user: NatsUser): void } | null;
  stop(): Promise<void>;
}

/** Told when one of our nats-servers died and will be started again after `delayMs`. */
export type NatsRestartHook = (url: string, exit: number | string, delayMs: number) => void;

interface Member {
  port: number;
  routePort: number | null;
  monitorPort: number | null;
  conf: string;
  logDir: string;
  /** Its TLS block (clients and routes); null: plain. */
  tls: NatsServerTls | null;
}

/** A nats-server started again, on the same port and configuration, whenever it dies, until stop(). */
class SupervisedNats implements LocalNatsServer {
  restarts = 0;
  private server: NatsServer | null = null;
  private failures = 0;
  private stopping = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly m: Member,
    private readonly policy: RestartPolicy,
    private readonly onRestart?: NatsRestartHook,
  ) {}

  get url(): string {
    return loopbackNatsUrl(this.m.port, this.m.tls !== null);
  }
  get port(): number {
    return this.m.port;
  }
  get routePort(): number | null {
    return this.m.routePort;
  }
  get monitorPort(): number | null {
    return this.m.monitorPort;
  }
  pid(): number | null {
    return this.server?.child.pid ?? null;
  }

  async start(): Promise<void> {
    const startedAt = Date.now();
    const server = await startNatsServer(this.m.port, { logDir: this.m.logDir, args: ["-c", this.m.conf] });
    this.server = server;
    void server.child.exited.then((exit) => {
      if (this.server === server) this.died(exit, Date.now() - startedAt);
    });
  }

  /** Its configuration file was rewritten (a user added): nats-server reads it again. A server down reads it on start. */
  reload(): void {
    this.server?.reload();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer !== null) clearTimeout(this.timer);
    await this.server?.stop();
  }

  private died(exit: number | string, ranMs: number): void {
    this.server = null;
    if (this.stopping) return;
    const next = restartDelay(this.policy, this.failures, ranMs);
    this.failures = next.failures;
    this.onRestart?.(this.url, exit, next.delayMs);
    this.timer = setTimeout(() => {
      if (this.stopping) return;
      this.restarts++;
      // One that exits while starting (its port still held a moment) counts as one more quick death.
      this.start().catch((err: Error) => this.died(err.message, 0));
    }, next.delayMs);
  }
}

/** Where each of `n` servers listens, and its configuration file. */
function membersOf(config: Config, firstPort: number): Member[] {
  const n = config.natsServers;
  const dir = credentialsDir(config.dataDir);
  const tls = tlsEnabled(config) ? natsServerTls(tlsDir(config.dataDir)) : null;
  return Array.from({ length: n }, (_, k) => ({
    port: firstPort + k,
    routePort: n > 1 ? config.natsRoutePortBase + k : null,
    monitorPort: config.natsMonitorPortBase > 0 ? config.natsMonitorPortBase + k : null,
    conf: path.join(dir, n > 1 ? `nats-server-${k + 1}.conf` : "nats-server.conf"),
    logDir: path.join(config.dataDir, "logs"),
    tls,
  }));
}

/** What one server's configuration adds to the shared part: its TLS block, its cluster block and its monitoring port. */
function extraConf(config: Config, m: Member, all: readonly Member[]): string {
  const own = (m.monitorPort === null ? "" : `http: "127.0.0.1:${m.monitorPort}"\n`) + (m.tls === null ? "" : natsTlsConf(m.tls));
  if (m.routePort === null) return own;
  const routePorts = all.map((x) => x.routePort!);
  return own + natsClusterConf({ serverName: `qjm-nats-${m.port}`, clusterName: `qjm-${config.cluster}`, routePort: m.routePort, routePorts, tls: m.tls ?? undefined });
}

/**
 * Starts our nats-server(s) unless one answers at the first URL. Ours run with a user per actor (`actors`), `client`,
 * `admin` (and `faults` with faultInjection), their credentials written fresh under <dataDir>/credentials. One that is
 * not ours is used as it is: no users, and stale credentials files are removed so nobody picks them up.
 */
export async function startLocalNats(config: Config, actors: readonly NatsUser[], policy: RestartPolicy, onRestart?: NatsRestartHook): Promise<LocalNats> {
  const configured = natsUrls(config.natsUrl);
  const firstPort = natsUrlPort(configured[0]);
  try {
    await waitForPort(firstPort, 200);
    removeNatsCredentials(config.dataDir);
    return { urls: configured, servers: [], auth: null, stop: async () => {} };
  } catch {
    /* nothing answers: start ours */
  }
  const users: NatsUser[] = [...serviceNatsUsers(config.faultInjection), ...actors];
  const entries: NatsUserEntry[] = users.map((u) => createNatsUser(config.dataDir, config.cluster, u));
  const members = membersOf(config, firstPort);
  // Missing certificates are made; existing ones (an operator's, an earlier run's) are kept as they are.
  if (tlsEnabled(config)) makeCertificates(tlsDir(config.dataDir));
  const writeConfs = (): void => {
    for (const m of members) writeNatsServerConf(m.conf, authorizationConf(entries), config.natsPayloadBytesMax, extraConf(config, m, members));
  };
  writeConfs();
  const servers = members.map((m) => new SupervisedNats(m, policy, onRestart));
  // Started together: each dials the others' routes and keeps trying until they listen.
  const started = await Promise.allSettled(servers.map((s) => s.start()));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed !== undefined) {
    await Promise.all(servers.map((s) => s.stop()));
    throw failed.reason;
  }
  const add = (user: NatsUser): void => {
    entries.push(createNatsUser(config.dataDir, config.cluster, user));
    writeConfs();
    for (const s of servers) s.reload();
  };
  return { urls: servers.map((s) => s.url), servers, auth: { add }, stop: async () => void (await Promise.all(servers.map((s) => s.stop()))) };
}

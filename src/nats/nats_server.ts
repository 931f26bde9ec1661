import fs from "node:fs";
import path from "node:path";
import { startChild, type Child } from "../process/child.js";
import { waitForPort } from "../process/ports.js";
import { writeSecretFile } from "../util/secret_file.js";
import { loopbackRouteHost, natsRouteTls, type NatsServerTls } from "./tls.js";
import { packageRoot } from "../util/package_root.js";

export interface NatsServer {
  readonly port: number;
  readonly url: string;
  readonly child: Child;
  stop(): Promise<void>;
  /** Reads the configuration file again (SIGHUP): users added to it may connect. */
  reload(): void;
}

/** Starts Debian's nats-server on 127.0.0.1:`port`; `args` adds flags (e.g. JetStream, cluster routes). */
export async function startNatsServer(port: number, options: { logDir?: string; args?: string[]; timeoutMs?: number } = {}): Promise<NatsServer> {
  const logFile = options.logDir !== undefined ? path.join(options.logDir, `nats-${port}.log`) : undefined;
  if (options.logDir !== undefined) fs.mkdirSync(options.logDir, { recursive: true });
  const child = startChild("nats-server", ["-a", "127.0.0.1", "-p", String(port), ...(options.args ?? [])], { logFile });
  await Promise.race([
    waitForPort(port, options.timeoutMs ?? 10000),
    child.exited.then((code) => {
      throw new Error(`nats-server on port ${port} exited during start (${code})`);
    }),
  ]);
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    child,
    stop: () => child.stop("SIGTERM", 5000),
    reload: () => process.kill(child.pid, "SIGHUP"),
  };
}

/** One server of a local routed NATS cluster: its name, route port, and every route port of the cluster. */
export interface NatsRouteConf {
  serverName: string;
  clusterName: string;
  routePort: number;
  routePorts: readonly number[];
  /** Routes over TLS too, each server checking the other's certificate (tls.ts); none: plain routes. */
  tls?: NatsServerTls;
}

/**
 * The `cluster` block of one server of a routed cluster on loopback: it listens for routes on its own port and dials
 * every other server's. Routes carry no authorization: only processes of this machine reach 127.0.0.1 (docs/operations.md).
 * With `tls`, a route must present a certificate of the CA that names a route's host (tls.ts, natsRouteTls).
 */
export function natsClusterConf(c: NatsRouteConf): string {
  const host = loopbackRouteHost(c.tls !== undefined);
  const routes = c.routePorts.filter((p) => p !== c.routePort).map((p) => `nats-route://${host}:${p}`);
  const cluster = { name: c.clusterName, listen: `127.0.0.1:${c.routePort}`, routes, ...(c.tls === undefined ? {} : { tls: natsRouteTls(c.tls) }) };
  return `server_name: ${JSON.stringify(c.serverName)}\ncluster ${JSON.stringify(cluster, null, 2)}\n`;
}

/**
 * Writes nats-server's configuration for a cluster with users: infra/nats/nats-server.conf followed by the
 * `authorization` block (src/nats/auth.ts) and `extra` (a routed cluster's block, monitoring). Owner-only: it names
 * who may do what.
 */
export function writeNatsServerConf(file: string, authorization: string, maxPayloadBytes: number, extra = ""): void {
  const generated = `max_payload: ${maxPayloadBytes}\n# Users and permissions, written by redis-qjm (src/nats/auth.ts).\n${authorization}`;
  writeSecretFile(file, `${fs.readFileSync(path.join(packageRoot(), "infra", "nats", "nats-server.conf"), "utf8")}\n# From QJM_NATS_PAYLOAD_BYTES_MAX.\n${generated}${extra}`);
}

#!/usr/bin/env node
/**
 * `npm start`: the local cluster in the foreground — nats-server on $QJM_NATS_URL, or a routed cluster of
 * $QJM_NATS_SERVERS of them (started unless one answers; ours authenticate each actor and client as its own user,
 * credentials under $QJM_DATA_DIR/credentials, and are restarted when they die),
 * three journal nodes, a master and two replicas, data under $QJM_DATA_DIR. An actor that dies is restarted
 * (bounded backoff); Ctrl-C stops every child. `npm start --tls` (or $QJM_TLS=1): the bus over TLS only, with a CA and
 * certificates made under $QJM_DATA_DIR/tls (infra/tls/make-certs.sh) and a client certificate on every connection.
 */
import { loadConfig } from "../src/config/config.js";
import { metricsPortOf, respPortOf, startLocalCluster } from "../src/cluster/local_cluster.js";
import { metricsUrlOf } from "../src/metrics/metrics_server.js";
import { createLogger } from "../src/util/log.js";
import { credentialsDir } from "../src/util/secret_file.js";
import { tlsDir, tlsEnabled } from "../src/nats/tls.js";

// npm hands `npm start --tls` over as npm_config_tls (a flag of its own); `npm start -- --tls` reaches argv.
const tlsFlag = process.argv.includes("--tls") || process.env.npm_config_tls === "true";
const config = loadConfig(process.env, tlsFlag ? { tls: 1 } : {});
const log = createLogger("qjm-cluster");
const cluster = await startLocalCluster({
  dataDir: config.dataDir,
  natsUrl: config.natsUrl,
  config,
  output: "inherit",
  // Self-healing: an actor that exits or is killed is started again, with bounded backoff.
  supervise: {
    backoffMinMs: config.restartBackoffMinMs,
    backoffMaxMs: config.restartBackoffMaxMs,
    stableMs: config.restartStableMs,
    onRestart: (actor, exit, delayMs) => log.warn({ actor, exit, delayMs }, "actor exited: restarting it"),
  },
  onNatsRestart: (server, exit, delayMs) => log.warn({ server, exit, delayMs }, "nats-server exited: restarting it (same port and configuration)"),
});
const servers = cluster.natsServers.map((s) => ({ url: s.url, pid: s.pid(), routePort: s.routePort }));
if (servers.length > 1) log.info({ servers }, `a routed cluster of ${servers.length} nats-servers; each actor tries them in its own order`);
if (cluster.natsAuth) log.info({ nats: cluster.natsUrl, credentials: credentialsDir(cluster.dataDir) }, "nats-server started with a NATS user per actor; the CLI uses credentials/client.creds");
if (cluster.natsAuth && tlsEnabled(config)) log.info({ tls: tlsDir(cluster.dataDir) }, "TLS only, client certificates required: run the CLI with QJM_TLS=1, or QJM_NATS_URL set to these tls:// URLs (certificates from tls/)");
// natsAuth is false only when a nats-server already answered and was used as it is.
if (!cluster.natsAuth) log.warn({ nats: cluster.natsUrl }, "a nats-server already answers at QJM_NATS_URL: using it as it is, without generated NATS users or credentials");
log.info(
  { nats: cluster.natsUrl, cluster: cluster.cluster, dataDir: cluster.dataDir, actors: Object.fromEntries([...cluster.actors].map(([n, c]) => [n, c.pid])) },
  "local cluster started: try `npx redis-qjm status` and `npx redis-qjm write SET k v`; Ctrl-C stops it",
);
// Each data node's RESP front door: redis-cli, ioredis and redis-benchmark talk to the cluster there.
const doors = Object.fromEntries(cluster.config.dataNodes.map((id, i) => [id, `redis://${cluster.config.respHost}:${respPortOf(cluster.config, i)}`]));
if (cluster.config.respPort !== 0) log.info({ doors }, `RESP front doors: try \`redis-cli -p ${cluster.config.respPort} SET greeting hello\``);
// Each actor's Prometheus endpoint, on its own port in start order (docs/operations.md, Metrics).
const metrics = Object.fromEntries(cluster.specs.map((s, i) => [s.name, metricsUrlOf(cluster.config.metricsHost, metricsPortOf(cluster.config, i))]));
if (cluster.config.metricsPort !== 0) log.info({ metrics }, `metrics endpoints: try \`curl -s ${metrics[cluster.specs[0].name]}\``);
let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "stopping the local cluster");
  await cluster.stop();
  process.exit(0);
};
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));

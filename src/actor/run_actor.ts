/** What every actor process shares: configuration, logger, NATS connection, clean shutdown on SIGINT / SIGTERM. */
import type { Config } from "../config/config.js";
import { findNatsCredentials } from "../nats/auth.js";
import { connectBus, type NatsConnection } from "../nats/bus.js";
import { ActorMetrics } from "../metrics/actor_metrics.js";
import { startMetricsServer } from "../metrics/metrics_server.js";
import { startMicroService } from "../metrics/micro_service.js";
import type { ActorStatus } from "../protocol/messages.js";
import { clientTls, tlsEnabled } from "../nats/tls.js";
import { createLogger, type Logger } from "../util/log.js";

/** While an actor's first dial to nats-server goes unanswered, it says so this often. */
const NATS_DIAL_WARN_MS = 5000;

export interface Startable {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** What `redis-qjm status` shows of it; the metrics gauges mirror it at each scrape. */
  status(): ActorStatus;
  /**
   * Settles, with why, once the actor cannot go on in this process (a redis-server it runs died): the process exits
   * with 1, for its supervisor (`npm start`, systemd) to start it afresh.
   */
  readonly lost?: Promise<string>;
}

export interface ActorContext {
  config: Config;
  nc: NatsConnection;
  log: Logger;
  /** This actor's metrics (its own registry), served on its metrics port. */
  metrics: ActorMetrics;
  /**
   * Another connection to the bus as this actor (same user, servers, TLS), named `qjm-<role>-<id>-<suffix>`: for
   * traffic that must not queue ahead of the role's own on `nc` (a data node's front door).
   */
  connect(suffix: string): Promise<NatsConnection>;
}

/**
 * Runs one actor (src/actor/roles.ts builds it) with `config`, until SIGINT or SIGTERM. Its metrics are served on
 * `metricsPort` (the local cluster hands each actor its own; an actor alone on its host uses metricsPort); 0: none.
 */
export async function runActor(role: string, id: string, config: Config, metricsPort: number, build: (ctx: ActorContext) => Startable): Promise<void> {
  const log = createLogger(`qjm-${role}`, { role, id });
  const labels = { cluster: config.cluster, id, role };
  const metrics = new ActorMetrics(labels, { processMetrics: metricsPort > 0 });
  // Before NATS: an actor still dialling a nats-server is already seen by its scraper (process series, no status yet).
  const metricsServer = metricsPort > 0 ? await startMetricsServer(config.metricsHost, metricsPort, metrics, log) : null;
  metrics.url = metricsServer?.url ?? null;
  process.on("unhandledRejection", (err) => log.error({ err }, "unhandled rejection"));
  process.on("uncaughtException", (err) => {
    // A broken invariant or a bug: fail loudly rather than serve with state we no longer trust.
    log.fatal({ err }, "uncaught exception: exiting");
    process.exit(70);
  });
  // Each actor is its own NATS user, named by its id (src/nats/auth.ts).
  const creds = findNatsCredentials(config.natsCredsFile, config.dataDir, id);
  log.info({ nats: config.natsUrl, tls: tlsEnabled(config) }, "connecting to nats-server (until it answers)");
  // It waits for ever (a restarting nats-server comes back): a mistyped URL must not look like a hang.
  const dialStartMs = Date.now();
  const stillWaiting = setInterval(() => {
    log.warn({ nats: config.natsUrl, waitedMs: Date.now() - dialStartMs }, "still no answer from nats-server: is QJM_NATS_URL right?");
  }, NATS_DIAL_WARN_MS);
  const dial = (name: string) => connectBus(config.natsUrl, name, creds, { waitForServer: true, inOrder: true, tls: clientTls(config), timing: config });
  const nc = await dial(`qjm-${role}-${id}`).finally(() => clearInterval(stillWaiting));
  if (creds === null) log.warn({ nats: config.natsUrl }, "no NATS credentials: connecting without authentication");
  // nats-server's refusals (a permission violation) come asynchronously, not with the publish: make them seen.
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error") log.error({ err: s.error }, "nats-server reported an error");
      // A nats-server that died (or was cut off) and the one this actor failed over to: what a bus outage cost.
      else if (s.type === "disconnect") log.warn({ server: s.server }, "disconnected from nats-server: failing over to the next server");
      else if (s.type === "reconnect") log.info({ server: s.server }, "reconnected to nats-server");
    }
  })();
  const actor = build({ config, nc, log, metrics, connect: (suffix) => dial(`qjm-${role}-${id}-${suffix}`) });
  const micro = await startMicroService(nc, labels, metrics.url, log);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    await micro?.stop();
    await actor.stop().catch((err) => log.error({ err }, "stop failed"));
    await metricsServer?.close();
    await nc.drain().catch(() => {});
    process.exit(0);
  };
  void actor.lost?.then((reason) => {
    if (stopping) return;
    log.fatal({ reason }, "this actor cannot go on: exiting, to be started afresh");
    process.exit(1);
  });
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  await actor.start();
  // Only now: a journal node has no state to show before it loaded its log.
  metrics.watchStatus(() => actor.status());
  log.info({ nats: config.natsUrl, cluster: config.cluster }, "started");
}

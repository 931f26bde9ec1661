/**
 * A whole cluster on this machine as real processes: nats-server, or a routed cluster of them (local_nats.ts;
 * none when one already answers at the URL), the journal nodes, the master and the replicas, each a
 * `node dist/bundle/<role>.js` child (package_root.ts). `npm start`, the integration tests and the bench use it. Every
 * process is ours, stopped by pid. Our nats-server authenticates every actor and client as its own user
 * (src/nats/auth.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { defaults, envName, type Config } from "../config/config.js";
import { credsFile, type NatsUser } from "../nats/auth.js";
import { startChild, type Child } from "../process/child.js";
import { restartDelay, type RestartPolicy } from "../process/restart_policy.js";
import { startLocalNats, type LocalNatsServer, type NatsRestartHook } from "./local_nats.js";
import { actorProgram, staleBundle } from "../util/package_root.js";

export interface ActorSpec {
  name: string;
  script: "journal-node" | "master" | "replica" | "data-node";
  args: string[];
}

export interface LocalClusterOptions {
  dataDir: string;
  natsUrl?: string;
  /** The NATS URL one actor connects to, when not `natsUrl` (fault tests give each actor its own TCP proxy). */
  actorNatsUrl?: (name: string) => string;
  /** Config values passed to every actor as QJM_* variables. */
  config?: Partial<Config>;
  /** Children's output: "inherit" (npm start) or into <dataDir>/logs/<name>.log. */
  output?: "inherit" | "files";
  /** Extra node flags for the actors (e.g. --cpu-prof for profiling). */
  nodeArgs?: string[];
  /** Restart an actor that exits or is killed, with bounded exponential backoff (npm start). */
  supervise?: RestartPolicy & { onRestart?: (name: string, exit: number | string, delayMs: number) => void };
  /** Told when one of our nats-servers died (each is always restarted, with supervise's backoff or the config's). */
  onNatsRestart?: NatsRestartHook;
}

export interface LocalCluster {
  /** Every NATS server, comma-separated (QJM_NATS_URL's form). */
  readonly natsUrl: string;
  /** The nats-servers this cluster runs (empty when one already answered at the URL). */
  readonly natsServers: readonly LocalNatsServer[];
  /** True when the cluster started its own nats-server, with a user per actor (credentials under <dataDir>/credentials). */
  readonly natsAuth: boolean;
  readonly cluster: string;
  readonly dataDir: string;
  readonly config: Config;
  readonly actors: Map<string, Child>;
  readonly specs: ActorSpec[];
  /** Starts (again) the named actor. */
  startActor(name: string): Child;
  /** Adds an actor the configuration does not name (a brand-new replica joining) and starts it; stop() stops it too. */
  addActor(spec: ActorSpec): Child;
  /** Signals the named actor (e.g. SIGKILL, SIGSTOP) and, for terminating signals, waits until it is gone. */
  signal(name: string, signal: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

/** The RESP front door of the `index`th data node (0: none). */
export function respPortOf(config: Config, index: number): number {
  return config.respPort === 0 ? 0 : config.respPort + index;
}

/** The metrics port of the `index`th actor the cluster starts (0: none): metricsPort, then upward in the order of `actorSpecs`. */
export function metricsPortOf(config: Config, index: number): number {
  return config.metricsPort === 0 ? 0 : config.metricsPort + index;
}

/**
 * The actors of `config`, in the order they start and take metrics ports: the journal nodes, then the data nodes
 * (issue #11: master and replicas are roles of one actor) — or, without data nodes, the single-master layout.
 */
export function actorSpecs(config: Config): ActorSpec[] {
  const journalNodes: ActorSpec[] = config.journalNodes.map((id) => ({ name: id, script: "journal-node", args: ["--id", id] }));
  const dataNodes: ActorSpec[] = config.dataNodes.map((id, i) => ({ name: id, script: "data-node", args: ["--id", id, "--redis-port", String(config.dataRedisPortBase + i), "--resp-port", String(respPortOf(config, i))] }));
  const singleMaster: ActorSpec[] = [
    { name: "m1", script: "master", args: ["--id", "m1"] },
    ...config.replicas.map((id, i) => ({ name: id, script: "replica" as const, args: ["--id", id, "--redis-port", String(config.replicaRedisPortBase + i)] })),
  ];
  return [...journalNodes, ...(dataNodes.length > 0 ? dataNodes : singleMaster)];
}

/** A data node's (or master's, replica's) V8 old-space limit, when the config sets one (dataNodeHeapMb). */
export function heapArgs(config: Config, spec: ActorSpec): string[] {
  return spec.script !== "journal-node" && config.dataNodeHeapMb > 0 ? [`--max-old-space-size=${config.dataNodeHeapMb}`] : [];
}

/** The NATS user an actor connects as. */
function natsUserOf(spec: ActorSpec): NatsUser {
  const role = spec.script === "journal-node" ? "journal" : spec.script === "data-node" ? "data" : spec.script;
  return { name: spec.name, role };
}

/** The server list the `i`th actor is handed: starting at server i (mod n), so the actors spread over the servers. */
export function rotatedUrls(urls: readonly string[], i: number): string[] {
  const k = i % urls.length;
  return [...urls.slice(k), ...urls.slice(0, k)];
}

export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  // Checked once, before anything starts: an actor restarted later runs what the first ones ran.
  const stale = staleBundle();
  if (stale !== null) throw new Error(stale);
  const config: Config = { ...defaults, ...(options.config ?? {}), dataDir: path.resolve(options.dataDir) };
  config.natsUrl = options.natsUrl ?? config.natsUrl;
  fs.mkdirSync(path.join(config.dataDir, "logs"), { recursive: true });

  const specs = actorSpecs(config);
  const natsPolicy: RestartPolicy = options.supervise ?? { backoffMinMs: config.restartBackoffMinMs, backoffMaxMs: config.restartBackoffMaxMs, stableMs: config.restartStableMs };
  const nats = await startLocalNats(config, specs.map(natsUserOf), natsPolicy, options.onNatsRestart);
  const natsUrl = nats.urls.join(",");
  config.natsUrl = natsUrl;

  const sharedEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const [key, value] of Object.entries(config)) sharedEnv[envName(key)] = Array.isArray(value) ? value.join(",") : String(value);
  const actors = new Map<string, Child>();
  let stopping = false;
  const failures = new Map<string, number>();

  const startActor = (name: string): Child => {
    const spec = specs.find((s) => s.name === name);
    if (spec === undefined) throw new Error(`no actor ${name}`);
    const script = actorProgram(spec.script);
    // Each actor its own metrics port, handed to it (never picked by racing for one): its place in `specs`.
    const argv = [...(options.nodeArgs ?? []), ...heapArgs(config, spec), script, ...spec.args, "--metrics-port", String(metricsPortOf(config, specs.indexOf(spec)))];
    // Each actor connects as its own NATS user; none when the nats-server is not ours (never a caller's own QJM_NATS_CREDS_FILE).
    const env: NodeJS.ProcessEnv = { ...sharedEnv, [envName("natsCredsFile")]: nats.auth === null ? "" : credsFile(config.dataDir, name) };
    // Each actor's list starts at another server (it tries them in order): a server's death cuts off only its share.
    env[envName("natsUrl")] = options.actorNatsUrl?.(name) ?? rotatedUrls(nats.urls, specs.indexOf(spec)).join(",");
    const child =
      options.output === "inherit"
        ? startChild(process.execPath, argv, { env, stdio: "inherit" })
        : startChild(process.execPath, argv, { env: { ...env, QJM_LOG_JSON: "1" }, logFile: path.join(config.dataDir, "logs", `${name}.log`) });
    actors.set(name, child);
    if (options.supervise !== undefined) supervise(name, child, options.supervise);
    return child;
  };

  /** Restarts `name` when `child` exits, unless we are stopping or the actor was started again meanwhile. */
  const supervise = (name: string, child: Child, policy: NonNullable<LocalClusterOptions["supervise"]>): void => {
    const startedAt = Date.now();
    void child.exited.then((exit) => {
      if (stopping || actors.get(name) !== child) return;
      // An actor that ran for a while before it died starts over at the shortest delay.
      const { delayMs, failures: n } = restartDelay(policy, failures.get(name) ?? 0, Date.now() - startedAt);
      failures.set(name, n);
      policy.onRestart?.(name, exit, delayMs);
      setTimeout(() => {
        if (!stopping && actors.get(name) === child) startActor(name);
      }, delayMs);
    });
  };

  for (const spec of specs) startActor(spec.name);

  return {
    natsUrl,
    natsServers: nats.servers,
    cluster: config.cluster,
    dataDir: config.dataDir,
    config,
    actors,
    specs,
    startActor,
    natsAuth: nats.auth !== null,
    addActor(spec) {
      if (specs.some((s) => s.name === spec.name)) throw new Error(`an actor ${spec.name} exists already`);
      specs.push(spec);
      // A new actor is a new NATS user: nats-server reads its configuration again before the actor (a node process) connects.
      nats.auth?.add(natsUserOf(spec));
      return startActor(spec.name);
    },
    async signal(name, signal) {
      const child = actors.get(name);
      if (child === undefined) throw new Error(`no actor ${name}`);
      try {
        process.kill(child.pid, signal);
      } catch {
        return;
      }
      if (signal === "SIGKILL" || signal === "SIGTERM" || signal === "SIGINT") await child.exited;
    },
    async stop() {
      stopping = true;
      // Replicas and master first, so nothing writes to journal nodes that are gone.
      const order = [...specs].reverse();
      await Promise.all(order.map((s) => actors.get(s.name)?.stop("SIGTERM", 5000)));
      await nats.stop();
    },
  };
}

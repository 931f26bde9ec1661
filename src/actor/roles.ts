/**
 * The actors a process can run, by role: `npm start`'s children (actors/<role>.js) and `redis-qjm run <role>` (one
 * actor per host, actors/cli.ts) both call runRole, so a host runs exactly what the local cluster runs.
 */
import path from "node:path";
import { loadConfig, ConfigError, type Config } from "../config/config.js";
import type { ActorContext, Startable } from "./run_actor.js";

export const ROLES = ["journal-node", "data-node", "master", "replica"] as const;
export type Role = (typeof ROLES)[number];

/**
 * The flags each role takes beside --config and --metrics-port (--id is required but for the master's, m1 by
 * default; ports default to the config's).
 */
const FLAGS: Record<Role, readonly string[]> = {
  "journal-node": ["id"],
  "data-node": ["id", "redis-port", "resp-port", "priority"],
  master: ["id"],
  replica: ["id", "redis-port"],
};

/** The role's name in its logger's name (qjm-<name>) and log lines. */
const LOG_ROLE: Record<Role, string> = { "journal-node": "journal", "data-node": "data", master: "master", replica: "replica" };

export function isRole(name: string | undefined): name is Role {
  return (ROLES as readonly string[]).includes(name ?? "");
}

/**
 * `--name value` pairs of `argv`: every name must be one of `allowed` and have a value. A ConfigError otherwise (the
 * CLI exits 2 with it, as for a bad configuration).
 */
export function parseFlags(argv: readonly string[], allowed: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const name = /^--([a-z-]+)$/.exec(argv[i])?.[1];
    if (name === undefined || !allowed.includes(name)) throw new ConfigError(`unknown argument ${argv[i]} (expected ${allowed.map((a) => `--${a}`).join(", ")})`);
    const value = argv[i + 1];
    if (value === undefined || value.startsWith("--")) throw new ConfigError(`--${name} needs a value`);
    flags.set(name, value);
  }
  return flags;
}

/** A flag's whole number, or a ConfigError naming it. */
function intFlag(flags: Map<string, string>, name: string, fallback: number): number {
  const raw = flags.get(name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`--${name} ${raw}: not a non-negative whole number`);
  return Number(raw);
}

/**
 * The actor of `role` with id `id`, built from its flags (ports default to the config's base + the node's index). Only
 * the role's own code is loaded: a journal node has no use for the data node's Redis client and RESP door, and a
 * process's start (every restart, every failover) pays for each module it loads.
 */
async function builder(role: Role, id: string, flags: Map<string, string>, config: Config): Promise<(ctx: ActorContext) => Startable> {
  const dir = path.join(config.dataDir, id);
  switch (role) {
    case "journal-node": {
      const { JournalNode } = await import("../journal/journal_node.js");
      return ({ nc, log, metrics }) => new JournalNode(id, config, dir, nc, log, metrics);
    }
    case "master": {
      const { Master } = await import("../master/master.js");
      return ({ nc, log, metrics }) => new Master(id, config, dir, nc, log, { metrics });
    }
    case "replica": {
      const port = intFlag(flags, "redis-port", config.replicaRedisPortBase + Math.max(0, config.replicas.indexOf(id)));
      const { Replica } = await import("../replica/replica.js");
      return ({ nc, log, metrics }) => new Replica(id, config, dir, port, nc, log, true, null, metrics);
    }
    case "data-node": {
      const index = Math.max(0, config.dataNodes.indexOf(id));
      const port = intFlag(flags, "redis-port", config.dataRedisPortBase + index);
      const respPort = intFlag(flags, "resp-port", config.respPort === 0 ? 0 : config.respPort + index);
      const priority = intFlag(flags, "priority", 1);
      const { DataNode } = await import("../datanode/data_node.js");
      return ({ nc, log, metrics, connect }) => new DataNode(id, config, dir, port, priority, nc, log, respPort === 0 ? null : respPort, metrics, () => connect("door"));
    }
  }
}

/**
 * Runs one actor of `role` in this process, its flags from `argv` (`--id <id>`, `--config FILE`, the role's ports).
 * The configuration: defaults, the file, QJM_* variables. A bad flag or configuration is a ConfigError, thrown before
 * anything starts.
 */
export async function runRole(role: Role, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const flags = parseFlags(argv, [...FLAGS[role], "config", "metrics-port"]);
  const id = flags.get("id") ?? (role === "master" ? "m1" : undefined);
  if (id === undefined) throw new ConfigError(`${role} needs --id <id>`);
  const file = flags.get("config");
  const config = loadConfig(file === undefined ? env : { ...env, QJM_CONFIG_FILE: file });
  // A typo'd id would run as a node nobody counts in the quorum or the election, and log as if all were well. (A
  // replica may join unannounced: nothing counts it.)
  const known = role === "journal-node" ? ["journalNodes", config.journalNodes] as const : role === "data-node" ? ["dataNodes", config.dataNodes] as const : null;
  if (known !== null && !known[1].includes(id)) throw new ConfigError(`${role} --id ${id}: not one of the configuration's ${known[0]} (${known[1].join(", ") || "none"})`);
  const metricsPort = intFlag(flags, "metrics-port", config.metricsPort);
  if (metricsPort > 65535) throw new ConfigError(`--metrics-port ${metricsPort}: not a TCP port (0: no metrics)`);
  const build = await builder(role, id, flags, config);
  // Loaded here, not at the top: the command line imports this module for its flags, and most of its commands run no actor.
  const { runActor } = await import("./run_actor.js");
  await runActor(LOG_ROLE[role], id, config, metricsPort, build);
}

/**
 * The entry point of actors/<role>.js: runs the role with this process's arguments; a ConfigError is one line on
 * stderr and exit code 2 (no stack: the operator's input was wrong, not the code).
 */
export async function roleMain(role: Role): Promise<void> {
  await runRole(role, process.argv.slice(2)).catch(exitOnConfigError);
}

/** A ConfigError ends the process with its one line and exit code 2; anything else is thrown on. */
export function exitOnConfigError(err: unknown): never {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`redis-qjm: ${err.message}`);
  process.exit(2);
}

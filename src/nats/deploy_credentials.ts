/**
 * NATS users for a cluster spread over several hosts (`redis-qjm nats-credentials --out DIR`): what `npm start` makes
 * for its own nats-server (src/cluster/local_nats.ts), written for an operator to hand out — one credentials file per
 * user (each actor of the configuration, `client`, `admin`) and the users' block for every nats-server of the
 * cluster, to `include` in its configuration. Only public keys go into that block; each seed stays in its .creds file.
 */
import fs from "node:fs";
import path from "node:path";
import { ConfigError, type Config } from "../config/config.js";
import { writeSecretFile } from "../util/secret_file.js";
import { authorizationConf, createNatsUserIn, serviceNatsUsers, type NatsUser } from "./auth.js";

/** The include file every nats-server of the cluster reads (its max_payload and users). */
export const NATS_AUTH_INCLUDE = "qjm-nats-auth.conf";

/** The actors a configuration names, as NATS users: journal nodes, and data nodes (or the single master m1 and replicas). */
export function configuredActorUsers(config: Config): NatsUser[] {
  const journal = config.journalNodes.map((name): NatsUser => ({ name, role: "journal" }));
  if (config.dataNodes.length > 0) return [...journal, ...config.dataNodes.map((name): NatsUser => ({ name, role: "data" }))];
  return [...journal, { name: "m1", role: "master" }, ...config.replicas.map((name): NatsUser => ({ name, role: "replica" }))];
}

/**
 * Writes `<outDir>/<user>.creds` for every user and `<outDir>/qjm-nats-auth.conf`; returns the users' names. Fresh
 * keys each time: a directory that holds credentials already is refused unless `force` (new keys lock out every
 * host still holding the old ones).
 */
export function writeDeployCredentials(config: Config, outDir: string, force: boolean): string[] {
  if (!force && fs.existsSync(outDir) && fs.readdirSync(outDir).some((f) => f.endsWith(".creds") || f === NATS_AUTH_INCLUDE)) {
    throw new ConfigError(`${outDir} holds NATS credentials already: new ones would lock out every host holding those (--force replaces them)`);
  }
  const users = [...serviceNatsUsers(0), ...configuredActorUsers(config)];
  const entries = users.map((u) => createNatsUserIn(outDir, config.cluster, u));
  const header = [
    `# redis-qjm's NATS users for cluster "${config.cluster}", written by \`redis-qjm nats-credentials\` (src/nats/auth.ts).`,
    `# Every nats-server of the cluster includes this file: include ./${NATS_AUTH_INCLUDE}`,
    "# Public keys and permissions only: each user's seed is in its own .creds file.",
    "# Larger bodies travel in fragments (src/nats/fragments.ts); from natsPayloadBytesMax.",
  ].join("\n");
  writeSecretFile(path.join(outDir, NATS_AUTH_INCLUDE), `${header}\nmax_payload: ${config.natsPayloadBytesMax}\n${authorizationConf(entries)}`);
  return users.map((u) => u.name);
}

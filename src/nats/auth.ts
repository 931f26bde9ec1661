/**
 * NATS users and their permissions (nats-server's own authorization, nkey users: the server's configuration holds
 * only public keys). Each actor is its own user, named by its id; the client user `client` may send writes and
 * status requests and read events, nothing else. A responder answers through `allow_responses` (only to the reply
 * subject of a request it received), and each user reads replies on its own inbox prefix only, so nobody can
 * forge or read another user's replies.
 */
import fs from "node:fs";
import path from "node:path";
import { nkeys, type ConnectionOptions } from "@nats-io/transport-node";
import { microSubjects, subjects } from "../protocol/subjects.js";
import { credentialsDir, writeSecretFile } from "../util/secret_file.js";
import { fastNkeyAuthenticator } from "./nkey_authenticator.js";

export type NatsRole = "client" | "admin" | "master" | "journal" | "replica" | "data" | "faults";

export interface NatsUser {
  /** The actor's id (jn1, m1, r1), `client`, or `faults` (disk fault injection, tests only). */
  name: string;
  role: NatsRole;
}

export interface Permissions {
  publish: string[];
  subscribe: string[];
  /** May answer requests it received (a reply subject it was handed), and nothing else outside `publish`. */
  allowResponses: boolean;
}

/** What a credentials file holds (JSON): the user's nkey seed and the inbox prefix its permissions allow. */
export interface NatsCredentials {
  user: string;
  role: NatsRole;
  cluster: string;
  inboxPrefix: string;
  seed: string;
}

export const CLIENT_USER = "client";
/** The operator's user: a client that may also ask for a planned switchover (`redis-qjm failover`). */
export const ADMIN_USER = "admin";
export const FAULTS_USER = "faults";

/** `<dataDir>/credentials/<user>.creds`. */
export function credsFile(dataDir: string, user: string): string {
  return path.join(credentialsDir(dataDir), `${user}.creds`);
}

/** What each role may publish and subscribe to; an actor only its own heartbeat and its own journal node's subjects. */
export function permissionsOf(cluster: string, user: NatsUser): Permissions {
  const p = rolePermissions(cluster, user);
  // Every actor answers the NATS micro protocol ($SRV.PING/INFO/STATS, through allow_responses); the client and admin
  // users may ask it (`nats micro ls` with --inbox-prefix set to the user's inbox prefix).
  if (user.role === "client" || user.role === "admin") return { ...p, publish: [...p.publish, microSubjects.requests] };
  if (user.role === "faults") return p;
  return { ...p, subscribe: [...p.subscribe, ...microSubjects.served] };
}

function rolePermissions(cluster: string, user: NatsUser): Permissions {
  const s = subjects(cluster);
  const inbox = `${s.inbox(user.name)}.>`;
  const anyNode = "*";
  switch (user.role) {
    case "client":
      // Masters' heartbeats: which one serves, so that writes go to it (`write.<id>`, client/master_choice.ts).
      return { publish: [s.write, s.writeTo("*"), s.status], subscribe: [s.events, s.trace, s.heartbeat("master", "*"), inbox], allowResponses: false };
    case "admin":
      // An operator: what a client may do, and the data nodes' control requests (a planned switchover).
      return { publish: [s.write, s.writeTo("*"), s.status, s.control("*")], subscribe: [s.events, s.trace, s.heartbeat("master", "*"), inbox], allowResponses: false };
    case "master":
      return {
        publish: [s.journal(anyNode), s.batch, s.journalRead(anyNode), s.snapshot(anyNode), s.snapshotUpload(anyNode), s.heartbeat("master", user.name), s.events, s.committed],
        subscribe: [s.write, s.writeTo(user.name), s.readIndex, s.readIndexTo(user.name), s.status, s.heartbeat("journal", "*"), s.heartbeat("replica", "*"), s.batchAck("*"), inbox],
        allowResponses: true,
      };
    case "journal":
      return {
        // Reads of its peers' logs: harmless, and what a node needs to check a suspect tail against them.
        publish: [s.heartbeat("journal", user.name), s.events, s.journalRead(anyNode), s.batchAck(user.name)],
        subscribe: [s.journal(user.name), s.batch, s.journalRead(user.name), s.snapshot(user.name), s.snapshotUpload(user.name), s.journalFault(user.name), s.committed, s.status, inbox],
        allowResponses: true,
      };
    case "replica":
      return {
        publish: [s.journalRead(anyNode), s.snapshot(anyNode), s.snapshotUpload(anyNode), s.heartbeat("replica", user.name), s.events, s.trace],
        // The batch fan-out: its records, applied once committed (no reply subject: nobody answers it in a node's name).
        subscribe: [s.committed, s.batch, s.status, inbox],
        allowResponses: true,
      };
    case "data": {
      // A data node is a replica that may become the master (issue #11): what both may do, and the others' heartbeats.
      const master = rolePermissions(cluster, { ...user, role: "master" });
      return {
        // Control: the draining master asks the standby it chose to campaign. Writes and events: its RESP front door
        // writes as a client (src/frontdoor/), following elections as clients do; its linearizable reads ask the
        // master for a read index.
        // Pub/sub: its door's PUBLISHes on its own subject, and every door's (only data nodes: a client cannot inject one).
        publish: [...master.publish, s.heartbeat("replica", user.name), s.control("*"), s.write, s.writeTo("*"), s.readIndex, s.readIndexTo("*"), s.trace, s.pubsub(user.name)],
        subscribe: [...master.subscribe, s.heartbeat("master", "*"), s.control(user.name), s.events, s.pubsubAll, s.committed, s.batch],
        allowResponses: true,
      };
    }
    case "faults":
      return { publish: [s.journalFault(anyNode)], subscribe: [inbox], allowResponses: false };
  }
}

/** The users every cluster has beside its actors: `client`, `admin`, and `faults` with fault injection (tests only). */
export function serviceNatsUsers(faultInjection: number): NatsUser[] {
  const users: NatsUser[] = [{ name: CLIENT_USER, role: "client" }, { name: ADMIN_USER, role: "admin" }];
  if (faultInjection === 1) users.push({ name: FAULTS_USER, role: "faults" });
  return users;
}

/** One user in nats-server's configuration: its public key and permissions. */
export interface NatsUserEntry {
  nkey: string;
  permissions: { publish: { allow: string[] }; subscribe: { allow: string[] }; allow_responses: boolean };
}

/** Makes a fresh nkey for `user` and writes `<dataDir>/credentials/<user>.creds` (owner-only); returns its server entry. */
export function createNatsUser(dataDir: string, cluster: string, user: NatsUser): NatsUserEntry {
  return createNatsUserIn(credentialsDir(dataDir), cluster, user);
}

/** Makes a fresh nkey for `user` and writes `<dir>/<user>.creds` (owner-only); returns its server entry. */
export function createNatsUserIn(dir: string, cluster: string, user: NatsUser): NatsUserEntry {
  const kp = nkeys.createUser();
  const creds: NatsCredentials = { user: user.name, role: user.role, cluster, inboxPrefix: subjects(cluster).inbox(user.name), seed: new TextDecoder().decode(kp.getSeed()) };
  writeSecretFile(path.join(dir, `${user.name}.creds`), JSON.stringify(creds, null, 2) + "\n");
  const p = permissionsOf(cluster, user);
  return { nkey: kp.getPublicKey(), permissions: { publish: { allow: p.publish }, subscribe: { allow: p.subscribe }, allow_responses: p.allowResponses } };
}

/**
 * Seconds nats-server gives a new connection to authenticate (its default, 2 s, is shorter than an actor busy starting
 * on a loaded machine takes to sign the nonce: it was dropped, and its connect timed out). The client's own connect
 * timeout (20 s) still bounds it.
 */
export const NATS_AUTH_TIMEOUT_S = 20;

/** The `authorization` block of nats-server's configuration (public keys and permissions only; nats-server reads JSON). */
export function authorizationConf(users: readonly NatsUserEntry[]): string {
  return `authorization ${JSON.stringify({ timeout: NATS_AUTH_TIMEOUT_S, users }, null, 2)}\n`;
}

/** Deletes every generated NATS credentials file (the cluster runs on a nats-server without our users). */
export function removeNatsCredentials(dataDir: string): void {
  const dir = credentialsDir(dataDir);
  if (!fs.existsSync(dir)) return;
  for (const f of fs.readdirSync(dir)) if (f.endsWith(".creds")) fs.rmSync(path.join(dir, f), { force: true });
}

const SEED = /^SU[A-Z2-7]{56}$/;

/** The credentials in `file`; an Error naming the file when it is not one. */
export function readNatsCredentials(file: string): NatsCredentials {
  let parsed: Partial<NatsCredentials>;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<NatsCredentials>;
  } catch (err) {
    throw new Error(`cannot read NATS credentials ${file}: ${(err as Error).message}`);
  }
  const { user, role, cluster, inboxPrefix, seed } = parsed;
  if (typeof user !== "string" || typeof role !== "string" || typeof cluster !== "string" || typeof inboxPrefix !== "string" || typeof seed !== "string" || !SEED.test(seed)) {
    throw new Error(`${file} is not a redis-qjm NATS credentials file (user, role, cluster, inboxPrefix, seed)`);
  }
  return { user, role: role as NatsRole, cluster, inboxPrefix, seed };
}

/**
 * The credentials file a connection uses: `explicit` if set, else `<dataDir>/credentials/<user>.creds` when it
 * exists; null: connect without authentication (a nats-server the cluster did not start).
 */
export function findNatsCredentials(explicit: string, dataDir: string, user: string): string | null {
  if (explicit !== "") return explicit;
  const file = credsFile(dataDir, user);
  return fs.existsSync(file) ? file : null;
}

/** Connection options that authenticate as the user of `creds` and take replies on its inbox prefix. */
export function natsAuthOptions(creds: NatsCredentials): Pick<ConnectionOptions, "authenticator" | "inboxPrefix"> {
  return { authenticator: fastNkeyAuthenticator(creds.seed), inboxPrefix: creds.inboxPrefix };
}

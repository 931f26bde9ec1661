#!/usr/bin/env node
/**
 * redis-qjm — the command line.
 *   redis-qjm run journal-node|data-node|master|replica --id <id> [--config qjm.json] [role's flags]
 *                                    runs one actor in this process (one actor per host: what `npm start` runs as a child)
 *   redis-qjm nats-credentials --out <dir> [--config qjm.json] [--force]
 *                                    a NATS user per actor, client and admin: <dir>/<user>.creds and the users' block
 *                                    every nats-server of the cluster includes (a deployment on several hosts)
 *   redis-qjm status [--json]        every actor's role, id, pid, epoch, txids, lag, rate, health, Redis URL (--json:
 *                                    and its metrics URL)
 *   redis-qjm write <CMD> [args…]     one write through the quorum journal (the client library: retried with its id
 *                                    on no responders, timeouts, NO_QUORUM…); prints the reply
 *   redis-qjm failover [--to <id>]   planned switchover: the master drains, a standby takes over; prints the pause
 *   redis-qjm events                 follows qjm.<cluster>.events (masked, restored, recovery decisions…), one JSON line each
 *   redis-qjm inspect <file> [--json] [--limit N]   offline viewer (no NATS): a segment file's records and problems, or a
 *                                                   snapshot's (.rdb / .json) summary: txid, size, RDB version, CRC-64, SHA-256
 * Uses $QJM_NATS_URL and $QJM_CLUSTER (defaults in src/config/config.ts), and authenticates with $QJM_NATS_CREDS_FILE,
 * by default $QJM_DATA_DIR/credentials/client.creds when it exists (`npm start` writes it). Every command but inspect
 * takes `--config FILE` (as QJM_CONFIG_FILE: the variables override it). A bad configuration or argument: one line on
 * stderr, exit code 2.
 * With $QJM_TLS=1 it connects over TLS with $QJM_TLS_CA, $QJM_TLS_CERT and $QJM_TLS_KEY (by default under
 * $QJM_DATA_DIR/tls: `npm start --tls`).
 */
import { connect, QjmClientError } from "../src/client/index.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { isRole, parseFlags, ROLES, runRole } from "../src/actor/roles.js";
import { writeDeployCredentials } from "../src/nats/deploy_credentials.js";
import { ADMIN_USER, CLIENT_USER, findNatsCredentials } from "../src/nats/auth.js";
import { connectBus, request, requestAll } from "../src/nats/bus.js";
import { clientTls, tlsEnabled, tlsHint } from "../src/nats/tls.js";
import { decode } from "../src/protocol/codec.js";
import type { ActorStatus, ControlReply } from "../src/protocol/messages.js";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../src/config/config.js";
import { subjects } from "../src/protocol/subjects.js";
import { runInspect } from "../src/segment/inspect.js";
import { lagOf, rateText } from "../src/metrics/status_lag.js";
import { staleBundle } from "../src/util/package_root.js";

const USAGE = `usage: redis-qjm run ${ROLES.join("|")} --id <id> [--config qjm.json] | redis-qjm nats-credentials --out <dir> [--config qjm.json] [--force] | redis-qjm status [--json] | redis-qjm write <COMMAND> [args...] | redis-qjm failover [--to <id>] | redis-qjm events | redis-qjm inspect <segment-or-snapshot-file> [--json] [--limit N]`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n");
}

const ROLE_ORDER = { master: 0, journal: 1, replica: 2 } as const;

/** Takes `--config FILE` out of `args`: it becomes QJM_CONFIG_FILE of this process (the client library reads it too). */
function takeConfigFlag(args: string[]): string[] {
  const i = args.indexOf("--config");
  if (i < 0) return args;
  const file = args[i + 1];
  if (file === undefined) throw new ConfigError("--config needs a file");
  process.env.QJM_CONFIG_FILE = file;
  return [...args.slice(0, i), ...args.slice(i + 2)];
}

async function main(): Promise<number> {
  const [command, ...all] = process.argv.slice(2);
  // After `tsc` alone, dist/bundle (what `npx redis-qjm` runs) holds the code of the last build: say so, run nothing.
  const stale = staleBundle();
  if (stale !== null) throw new ConfigError(stale);
  // Offline: before loadConfig and the NATS connection, so it works on a copied file with no cluster around.
  if (command === "inspect") return await runInspect(all);
  if (command === "run") {
    const [role, ...flags] = all;
    if (!isRole(role)) throw new ConfigError(`run: no role ${role ?? "given"} (one of ${ROLES.join(", ")})`);
    // The actor runs on in this process until SIGINT or SIGTERM (which exit it). One that failed to start must not
    // linger with its NATS connection open: a supervisor (systemd) restarts it.
    await runRole(role, flags).catch((err: Error) => {
      if (err instanceof ConfigError) throw err;
      console.error(`redis-qjm run ${role}: ${err.stack ?? err.message}`);
      process.exit(1);
    });
    return 0;
  }
  const rest = takeConfigFlag(all);
  const config = loadConfig();
  if (command === "nats-credentials") return natsCredentials(config, rest);
  if (command !== "status" && command !== "write" && command !== "events" && command !== "failover") {
    console.error(USAGE);
    return 2;
  }
  if (command === "write") return await write(rest);
  // A switchover is an operator's act: the admin user's credentials (npm start writes them beside the client's).
  const user = command === "failover" ? ADMIN_USER : CLIENT_USER;
  const nc = await connectBus(config.natsUrl, "redis-qjm-cli", findNatsCredentials(config.natsCredsFile, config.dataDir, user), { tls: clientTls(config), timing: config }).catch((err: Error) => {
    console.error(`cannot reach NATS at ${config.natsUrl}: ${err.message}${tlsHint(err.message, tlsEnabled(config))}`);
    return null;
  });
  if (nc === null) return 1;
  try {
    const s = subjects(config.cluster);
    if (command === "events") {
      const sub = nc.subscribe(s.events);
      const stop = () => sub.unsubscribe();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      for await (const msg of sub) {
        try {
          console.log(JSON.stringify(decode(msg.data), printable));
        } catch {
          console.error("an event that is not msgpack: skipped");
        }
      }
      return 0;
    }
    if (command === "failover") return await failover(nc, config, rest);
    if (command === "status") {
      const replies = (await requestAll(nc, s.status, {}, config.statusTimeoutMs).catch(() => [])) as ActorStatus[];
      replies.sort((a, b) => ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || a.id.localeCompare(b.id));
      if (rest.includes("--json")) {
        console.log(JSON.stringify(replies, null, 2));
        return 0;
      }
      if (replies.length === 0) {
        console.log(`no actor of cluster "${config.cluster}" answered on ${config.natsUrl}`);
        return 1;
      }
      const rows = [["ROLE", "ID", "PID", "EPOCH", "LAST", "COMMITTED", "APPLIED", "LAG", "RATE", "HEALTH", "REDIS", "RESP DOOR", "DETAILS"]];
      for (const r of replies) {
        const progress = describeProgress((r.details.progress ?? r.details.bootstrap) as Progress | null | undefined);
        const details =
          r.role === "master"
            ? [progress, ...Object.entries((r.details.journalNodes as Record<string, string> | undefined) ?? {}).map(([n, h]) => `${n}=${h}`)].filter(Boolean).join(" ")
            : r.role === "journal"
              ? `firstTxid=${String(r.details.firstTxid)} segments=${String(r.details.segments)} snapshots=${String(r.details.snapshots)} durableSnapshot=${String(r.details.durableSnapshotTxid)}`
              : [progress, describeCatchUp(r.details.catchUp as CatchUp | undefined), r.details.lastError ? String(r.details.lastError) : ""].filter(Boolean).join(" ");
        const lag = lagOf(r, replies);
        rows.push([r.role, r.id, String(r.pid), String(r.epoch), String(r.lastTxid), String(r.committedTxid), r.role === "replica" ? String(r.appliedTxid) : "-", lag === null ? "-" : String(lag), rateText(r), r.health, r.redisUrl ?? "-", describeDoor(r.details.respDoor as Door | null | undefined), details]);
      }
      console.log(table(rows));
      return 0;
    }
    return 2;
  } finally {
    await nc.close();
  }
}

interface Door {
  port: number;
  listening: boolean;
  connections: number;
  error?: string;
}

/** A data node's RESP front door: its port and connections, or why it does not listen. */
function describeDoor(door: Door | null | undefined): string {
  if (door === undefined || door === null) return "-";
  return door.listening ? `:${door.port} (${door.connections} conn)` : `:${door.port} down: ${door.error ?? "starting"}`;
}

/**
 * A planned switchover: asks the master to drain and hand over (to `--to` or the best standby), then waits until a
 * master of a higher epoch serves. Prints the pause: from the request to the new master serving (an upper bound of the
 * time no write was admitted).
 */
async function failover(nc: NatsConnection, config: Config, args: string[]): Promise<number> {
  const i = args.indexOf("--to");
  const to = i >= 0 ? args[i + 1] : null;
  if (i >= 0 && to === undefined) {
    console.error(USAGE);
    return 2;
  }
  const s = subjects(config.cluster);
  const statuses = async () => (await requestAll(nc, s.status, {}, config.statusTimeoutMs).catch(() => [])) as ActorStatus[];
  const master = (await statuses()).find((a) => a.role === "master" && a.health === "writing");
  if (master === undefined) {
    console.error("no master serves writes now: nothing to hand over");
    return 1;
  }
  // The new master's first moment of service is its writerElected event.
  const events = nc.subscribe(s.events);
  const served = (async () => {
    for await (const msg of events) {
      const e = decode(msg.data) as { type?: unknown; epoch?: unknown; source?: unknown };
      if (e.type === "writerElected" && typeof e.epoch === "number" && e.epoch > master.epoch) return { atMs: Date.now(), epoch: e.epoch, source: String(e.source) };
    }
    return null;
  })();
  const startedMs = Date.now();
  const timer = setTimeout(() => events.unsubscribe(), config.quorumTimeoutMs * 4);
  try {
    const reply = (await request(nc, s.control(master.id), { type: "handover", to }, config.quorumTimeoutMs * 3).catch((err: Error) => ({ ok: false, message: err.message }))) as ControlReply;
    if (!reply.ok || reply.type !== "handedOver") {
      console.error(`${master.id} did not hand over: ${"message" in reply ? reply.message : JSON.stringify(reply)}`);
      return 1;
    }
    const next = await served;
    if (next === null) {
      console.error(`${master.id} handed over to ${reply.to}, but no master serves after ${Date.now() - startedMs} ms (an election follows)`);
      return 1;
    }
    console.log(`switched over from ${master.id} (epoch ${master.epoch}) to ${reply.to} (epoch ${next.epoch}): writes paused at most ${next.atMs - startedMs} ms`);
    return 0;
  } finally {
    clearTimeout(timer);
    events.unsubscribe();
  }
}

/** `nats-credentials --out DIR [--force]`: a NATS user per actor, client and admin, for nats-servers the operator runs. */
function natsCredentials(config: Config, args: string[]): number {
  const force = args.includes("--force");
  const flags = parseFlags(args.filter((a) => a !== "--force"), ["out"]);
  const out = flags.get("out");
  if (out === undefined) throw new ConfigError("nats-credentials needs --out <dir>");
  const users = writeDeployCredentials(config, out, force);
  console.log(`wrote ${users.length} NATS users of cluster "${config.cluster}" to ${out}: ${users.map((u) => `${u}.creds`).join(", ")}, and qjm-nats-auth.conf (include it in every nats-server's configuration)`);
  return 0;
}

/** Byte strings in a reply printed as text. */
/** JSON of a reply: bytes as text, an integer past 2^53 (a bigint, which JSON cannot hold exactly) as its digits. */
const printable = (_k: string, v: unknown): unknown => (v instanceof Uint8Array ? Buffer.from(v).toString() : typeof v === "bigint" ? v.toString() : v);

/** `write`: through the client library; prints the reply (or the error, with whether the write may have been applied). */
async function write(args: string[]): Promise<number> {
  if (args.length === 0) {
    console.error(USAGE);
    return 2;
  }
  const client = await connect({ name: "redis-qjm-cli" }).catch((err: Error) => {
    console.error(err.message);
    return null;
  });
  if (client === null) return 1;
  try {
    const result = await client.write(args[0], ...args.slice(1));
    console.log(JSON.stringify({ ok: true, txid: result.txid, reply: result.reply, ...(result.duplicate ? { duplicate: true } : {}) }, printable));
    return 0;
  } catch (err) {
    if (!(err instanceof QjmClientError)) throw err;
    console.log(JSON.stringify({ ok: false, code: err.code, message: err.message, outcomeUnknown: err.outcomeUnknown }));
    return 1;
  } finally {
    await client.close();
  }
}

interface Progress {
  phase: string;
  snapshotTxid: number;
  bytes: number;
  totalBytes: number;
  bytesPerSecond: number;
  etaMs: number | null;
}

/** A bootstrap or snapshot upload in progress: phase, bytes, rate, ETA. */
function describeProgress(p: Progress | null | undefined): string {
  if (p === null || p === undefined) return "";
  const mib = (n: number): string => (n / 1048576).toFixed(1);
  const eta = p.etaMs === null ? "?" : `${Math.ceil(p.etaMs / 1000)}s`;
  return `snapshot ${p.snapshotTxid} ${p.phase} ${mib(p.bytes)}/${mib(p.totalBytes)} MiB ${mib(p.bytesPerSecond)} MiB/s eta ${eta}`;
}

interface CatchUp {
  records: number;
  recordsPerSecond: number;
  etaMs: number | null;
}

function describeCatchUp(c: CatchUp | undefined): string {
  if (c === undefined || c.records === 0) return "";
  return `behind ${c.records} records, ${c.recordsPerSecond} records/s, eta ${c.etaMs === null ? "?" : `${Math.ceil(c.etaMs / 1000)}s`}`;
}

process.exitCode = await main().catch((err: Error) => {
  // The operator's input (a configuration, an argument): one line, exit code 2. Anything else: 1.
  console.error(err instanceof ConfigError ? `redis-qjm: ${err.message}` : err.message);
  return err instanceof ConfigError ? 2 : 1;
});

/**
 * The commands the front door answers itself (pure, given the connection's state and what the door knows): PING,
 * ECHO, HELLO, AUTH, CLIENT …, SELECT 0, QUIT, RESET; INFO and CONFIG GET are answered with the node's Redis's help
 * (the driver asks it, then `infoWithQjm` adds the door's section). Error texts are Redis's own where Redis has one.
 */
import { timingSafeEqual, createHash } from "node:crypto";
import { CONSISTENCY_LEVELS, type ConsistencyLevel } from "../config/config.js";
import type { RespValue } from "../redis/resp_parser.js";
import { clientCommandRefusal, clientSubcommand, type DoorClient } from "./client_command.js";
import { validClientName, type ConnectionState } from "./connection_state.js";
import { subscribedPing } from "./pubsub.js";
import { array, bulk, error, integer, map, OK, simple, type Protocol } from "./resp_encoder.js";
import type { LocalCommand } from "./router.js";

export interface LocalContext {
  /** The door's password (QJM_RESP_PASSWORD); empty: none. */
  password: string;
  /** The node's redis-server version, for HELLO. */
  redisVersion: string;
  role: () => "master" | "replica";
  /** This connection and every connection of the door (CLIENT INFO, LIST, KILL). */
  self: DoorClient;
  clients: () => DoorClient[];
  nowMs: number;
}

/** What the door does: answer (and maybe close after), or ask the node's Redis first (INFO, CONFIG GET). */
/**
 * What the door does: answer (and maybe close after), or ask the node's Redis first (INFO, CONFIG GET). `quiet`:
 * CLIENT REPLY's own answer — none for OFF and SKIP, always one for ON (even while replies were off).
 */
export type LocalAnswer = { reply: RespValue; close?: true; quiet?: "silent" | "always" } | { upstream: Buffer[]; then: "info" | "config" };

/** CONFIG GET parameters a client may read (redis-benchmark asks for save and appendonly); never a password. */
const CONFIG_READABLE = new Set(["save", "appendonly", "appendfsync", "databases", "maxmemory", "maxmemory-policy", "timeout", "proto-max-bulk-len"]);

const arity = (name: string): RespValue => error(`ERR wrong number of arguments for '${name}' command`);
const text = (b: Buffer | undefined): string => (b === undefined ? "" : b.toString("utf8"));

export function answerLocal(command: LocalCommand, args: readonly Buffer[], state: ConnectionState, ctx: LocalContext): LocalAnswer {
  switch (command) {
    case "ping":
      if (args.length > 2) return { reply: arity("ping") };
      if (state.protocol === 2 && state.pubsub.total > 0) return { reply: subscribedPing(args) };
      return { reply: args.length === 2 ? bulk(args[1]) : simple("PONG") };
    case "echo":
      return { reply: args.length === 2 ? bulk(args[1]) : arity("echo") };
    case "hello":
      return { reply: hello(args, state, ctx) };
    case "auth":
      return { reply: auth(args, state, ctx) };
    case "client":
      return client(args, state, ctx);
    case "select":
      return { reply: select(args) };
    case "quit":
      return { reply: OK, close: true };
    case "reset":
      state.reset();
      return { reply: simple("RESET") };
    case "info":
      return { upstream: [Buffer.from("INFO"), ...args.slice(1)], then: "info" };
    case "config":
      return config(args);
    case "qjm.consistency":
      return { reply: consistency(args, state) };
  }
}

/** QJM.CONSISTENCY [eventual|session|linearizable]: sets this connection's level (+OK), or names it (no argument). */
function consistency(args: readonly Buffer[], state: ConnectionState): RespValue {
  if (args.length === 1) return bulk(state.consistency);
  if (args.length !== 2) return arity("qjm.consistency");
  const level = text(args[1]).toLowerCase();
  if (!(CONSISTENCY_LEVELS as readonly string[]).includes(level)) {
    return error(`ERR qjm: unknown consistency '${text(args[1]).slice(0, 64).replace(/[\r\n]/g, " ")}': one of ${CONSISTENCY_LEVELS.join(", ")}`);
  }
  state.consistency = level as ConsistencyLevel;
  return OK;
}

/**
 * QJM.LASTTXID [WRITE|SEEN]: the txid of the connection's last acknowledged write (WRITE, the default), or the highest
 * txid it has seen (SEEN: its writes, and what the node had applied at each of its reads) — the token a client carries
 * to a new connection, on any node, for monotonic reads there (QJM.WAIT).
 */
export function parseLastTxid(args: readonly Buffer[]): "write" | "seen" | { error: RespValue } {
  if (args.length === 1) return "write";
  if (args.length !== 2) return { error: arity("qjm.lasttxid") };
  const which = text(args[1]).toLowerCase();
  if (which === "write" || which === "seen") return which;
  return { error: error("ERR qjm: QJM.LASTTXID takes WRITE (the default) or SEEN") };
}

/** QJM.WAIT <txid> <timeout-ms>: the txid and the wait, or the error text; timeout 0 waits `waitMaxMs`, as long as any. */
export function parseQjmWait(args: readonly Buffer[], waitMaxMs: number): { txid: number; timeoutMs: number } | { error: string } {
  if (args.length !== 3) return { error: "ERR wrong number of arguments for 'qjm.wait' command" };
  const txid = text(args[1]);
  const timeout = text(args[2]);
  if (!/^\d{1,15}$/.test(txid)) return { error: "ERR qjm: QJM.WAIT txid is not a non-negative integer" };
  if (!/^\d{1,15}$/.test(timeout)) return { error: "ERR timeout is not an integer or out of range" };
  const timeoutMs = Number(timeout);
  if (timeoutMs > waitMaxMs) return { error: `ERR qjm: QJM.WAIT timeout ${timeoutMs} ms is above respWaitMaxMs (${waitMaxMs} ms)` };
  return { txid: Number(txid), timeoutMs: timeoutMs === 0 ? waitMaxMs : timeoutMs };
}

/** AUTH [username] password, against the door's password; the only user is `default`. */
function checkAuth(user: string, password: Buffer, ctx: LocalContext): boolean {
  if (user !== "default") return false;
  if (ctx.password === "") return true;
  // Compared as digests: equal lengths, and no timing hint of the password's length.
  const digest = (b: Buffer): Buffer => createHash("sha256").update(b).digest();
  return timingSafeEqual(digest(password), digest(Buffer.from(ctx.password)));
}

const WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled.";

function auth(args: readonly Buffer[], state: ConnectionState, ctx: LocalContext): RespValue {
  if (args.length !== 2 && args.length !== 3) return error("ERR syntax error");
  if (args.length === 2 && ctx.password === "") {
    return error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
  }
  const user = args.length === 3 ? text(args[1]) : "default";
  if (!checkAuth(user, args[args.length - 1], ctx)) return error(WRONGPASS);
  state.authenticated = true;
  return OK;
}

/** HELLO [protover [AUTH username password] [SETNAME clientname]]: the server's description, in the new protocol. */
function hello(args: readonly Buffer[], state: ConnectionState, ctx: LocalContext): RespValue {
  let protocol: Protocol = state.protocol;
  if (args.length >= 2) {
    const v = text(args[1]);
    if (!/^-?\d+$/.test(v)) return error("ERR Protocol version is not an integer or out of range");
    if (v !== "2" && v !== "3") return error("NOPROTO unsupported protocol version");
    protocol = v === "3" ? 3 : 2;
  }
  let name: string | null | undefined;
  let authed = state.authenticated;
  for (let i = 2; i < args.length; i++) {
    const option = text(args[i]).toLowerCase();
    if (option === "auth" && i + 2 < args.length) {
      if (!checkAuth(text(args[i + 1]), args[i + 2], ctx)) return error(WRONGPASS);
      authed = true;
      i += 2;
    } else if (option === "setname" && i + 1 < args.length) {
      name = text(args[++i]);
      if (!validClientName(name)) return error("ERR Client names cannot contain spaces, newlines or special characters.");
    } else {
      return error(`ERR Syntax error in HELLO option '${text(args[i])}'`);
    }
  }
  if (!authed) return error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
  state.authenticated = true;
  state.protocol = protocol;
  if (name !== undefined) state.name = name === "" ? null : name;
  return map([
    ["server", bulk("redis")],
    ["version", bulk(ctx.redisVersion)],
    ["proto", integer(protocol)],
    ["id", integer(state.id)],
    ["mode", bulk("standalone")],
    ["role", bulk(ctx.role())],
    ["modules", array([])],
  ]);
}

function client(args: readonly Buffer[], state: ConnectionState, ctx: LocalContext): LocalAnswer {
  const refusal = clientCommandRefusal(args);
  if (refusal !== null) return { reply: error(refusal) };
  const sub = text(args[1]).toLowerCase();
  if (sub === "reply") return clientReply(args, state);
  if (sub === "setinfo") return { reply: setInfo(args, state) };
  const answer = clientSubcommand(sub, args, state, { passwordSet: ctx.password !== "", self: ctx.self, clients: ctx.clients, nowMs: ctx.nowMs });
  return answer.close === true ? { reply: answer.reply, close: true } : { reply: answer.reply };
}

/**
 * CLIENT REPLY ON|OFF|SKIP, as Redis: OFF silences every reply until ON, SKIP the next command's; neither answers
 * itself. Pub/sub's frames (confirmations, messages) are still sent, as Redis sends them (session.ts).
 */
function clientReply(args: readonly Buffer[], state: ConnectionState): LocalAnswer {
  switch (text(args[2]).toLowerCase()) {
    case "on":
      state.replyOff = false;
      state.skipNext = false;
      return { reply: OK, quiet: "always" };
    case "off":
      state.replyOff = true;
      return { reply: OK, quiet: "silent" };
    case "skip":
      if (!state.replyOff) state.skipNext = true;
      return { reply: OK, quiet: "silent" };
    default:
      return { reply: error("ERR syntax error") };
  }
}

function setInfo(args: readonly Buffer[], state: ConnectionState): RespValue {
  const attr = text(args[2]).toLowerCase();
  const value = text(args[3]);
  if (!validClientName(value)) return error(`ERR ${attr} cannot contain spaces, newlines or special characters.`);
  if (attr === "lib-name") state.libName = value;
  else if (attr === "lib-ver") state.libVersion = value;
  else return error(`ERR Unrecognized option '${text(args[2])}'`);
  return OK;
}

function select(args: readonly Buffer[]): RespValue {
  if (args.length !== 2) return arity("select");
  const v = text(args[1]);
  if (!/^-?\d+$/.test(v)) return error("ERR value is not an integer or out of range");
  if (Number(v) === 0) return OK;
  return error(`ERR qjm: SELECT ${v} is not supported: only database 0 is journaled`);
}

function config(args: readonly Buffer[]): LocalAnswer {
  if (args.length < 2) return { reply: arity("config") };
  const sub = text(args[1]).toLowerCase();
  if (sub !== "get") return { reply: error(`ERR qjm: CONFIG ${text(args[1]).toUpperCase()} is not supported by the front door (CONFIG GET of a few parameters is)`) };
  if (args.length < 3) return { reply: arity("config|get") };
  const readable = args.slice(2).filter((a) => CONFIG_READABLE.has(text(a).toLowerCase()));
  // Nothing readable asked for: the empty answer Redis gives for an unknown parameter.
  if (readable.length === 0) return { reply: { type: "map", items: [] } };
  return { upstream: [Buffer.from("CONFIG"), Buffer.from("GET"), ...readable], then: "config" };
}

/** What the door adds to INFO: its node's role and journal position. */
export interface QjmInfo {
  node: string;
  role: string;
  health: string;
  epoch: number;
  committedTxid: number;
  appliedTxid: number;
  connections: number;
  /** Connections closed because their unread replies passed respOutputBytesMax. */
  closedForOutput: number;
  /** Pub/sub on this door: subscribed channels and patterns, messages in and out, bad ones dropped, slow subscribers closed. */
  pubsub: { channels: number; patterns: number; published: number; received: number; dropped: number; closedForOutput: number };
}

/**
 * INFO's text from the node's Redis, its keyspace only database 0 (`onlyDatabaseZero`), with a `# qjm` section added
 * (when the sections asked for include it).
 */
export function infoWithQjm(fullInfo: string, sections: readonly Buffer[], q: QjmInfo): string {
  const redisInfo = onlyDatabaseZero(fullInfo);
  const asked = sections.map((s) => text(s).toLowerCase());
  const wanted = asked.length === 0 || asked.some((s) => s === "qjm" || s === "all" || s === "everything" || s === "default");
  if (!wanted) return redisInfo;
  const lag = Math.max(0, q.committedTxid - q.appliedTxid);
  const section = [
    "# qjm",
    `qjm_node:${q.node}`,
    `qjm_role:${q.role}`,
    `qjm_health:${q.health}`,
    `qjm_epoch:${q.epoch}`,
    `qjm_committed_txid:${q.committedTxid}`,
    `qjm_applied_txid:${q.appliedTxid}`,
    `qjm_lag:${lag}`,
    `qjm_door_connections:${q.connections}`,
    `qjm_door_closed_output_bound:${q.closedForOutput}`,
    `qjm_pubsub_channels:${q.pubsub.channels}`,
    `qjm_pubsub_patterns:${q.pubsub.patterns}`,
    `qjm_pubsub_published:${q.pubsub.published}`,
    `qjm_pubsub_received:${q.pubsub.received}`,
    `qjm_pubsub_dropped_bad:${q.pubsub.dropped}`,
    `qjm_pubsub_closed_output_bound:${q.pubsub.closedForOutput}`,
  ].join("\r\n");
  const trimmed = redisInfo.replace(/(\r\n)+$/, "");
  return trimmed === "" ? `${section}\r\n` : `${trimmed}\r\n\r\n${section}\r\n`;
}

/**
 * INFO's Keyspace section without the lines of databases other than 0: a door serves database 0 only (SELECT of
 * another is refused), and a replica's Redis keeps its applied marker in another (src/redis/apply_records.ts
 * APPLIED_DB), which a client of the door must not see.
 */
export function onlyDatabaseZero(info: string): string {
  return info.replace(/^db(?!0:)\d+:[^\r\n]*\r?\n?/gm, "");
}

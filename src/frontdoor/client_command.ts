/**
 * CLIENT's subcommands on a front-door connection (pure, given the door's connections), with Redis 7.0's replies and
 * error texts (networking.c clientCommand). What a door cannot do is said plainly: PAUSE (the door does not hold a
 * node's clients back: a write is paused by nobody but the journal) and TRACKING (no invalidation messages: the
 * nodes' Redis keyspace is not watched per key for clients) are refused with `ERR qjm: …`; UNPAUSE then has nothing
 * to resume (+OK), TRACKINGINFO / GETREDIR answer tracking off, UNBLOCK finds no blocked client (:0, blocking
 * commands are refused), NO-EVICT is accepted and changes nothing (a door evicts no client for memory).
 *
 * Who sees whom (LIST, KILL): Redis keeps them to admins. With a door password an authenticated connection is the
 * admin and sees every connection of its door; without one every connection is anonymous and sees only itself.
 */
import type { RespValue } from "../redis/resp_parser.js";
import { validClientName, type ConnectionState } from "./connection_state.js";
import { array, bulk, error, integer, OK, simple } from "./resp_encoder.js";

/** One connection of the door, as CLIENT LIST / KILL see it. */
export interface DoorClient {
  state: ConnectionState;
  inFlight: number;
  /** Closes it (after its pending replies; at once for another connection). */
  kill(): void;
}

export interface ClientContext {
  /** The door has a password (then an authenticated connection sees all of its door's connections). */
  passwordSet: boolean;
  /** This connection, and every connection of the door. */
  self: DoorClient;
  clients: () => DoorClient[];
  nowMs: number;
}

/** CLIENT's answer, and whether this connection is to be closed once it is sent (CLIENT KILL of itself). */
export interface ClientAnswer {
  reply: RespValue;
  close?: true;
}

const text = (b: Buffer | undefined): string => (b === undefined ? "" : b.toString("utf8"));
const SYNTAX = error("ERR syntax error");

/** Redis 7.0.15's CLIENT HELP, line for line. */
export const CLIENT_HELP = [
  "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "CACHING (YES|NO)",
  "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
  "GETREDIR",
  "    Return the client ID we are redirecting to when tracking is enabled.",
  "GETNAME",
  "    Return the name of the current connection.",
  "ID",
  "    Return the ID of the current connection.",
  "INFO",
  "    Return information about the current client connection.",
  "KILL <ip:port>",
  "    Kill connection made from <ip:port>.",
  "KILL <option> <value> [<option> <value> [...]]",
  "    Kill connections. Options are:",
  "    * ADDR (<ip:port>|<unixsocket>:0)",
  "      Kill connections made from the specified address",
  "    * LADDR (<ip:port>|<unixsocket>:0)",
  "      Kill connections made to specified local address",
  "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
  "      Kill connections by type.",
  "    * USER <username>",
  "      Kill connections authenticated by <username>.",
  "    * SKIPME (YES|NO)",
  "      Skip killing current connection (default: yes).",
  "LIST [options ...]",
  "    Return information about client connections. Options:",
  "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
  "      Return clients of specified type.",
  "UNPAUSE",
  "    Stop the current client pause, resuming traffic.",
  "PAUSE <timeout> [WRITE|ALL]",
  "    Suspend all, or just write, clients for <timeout> milliseconds.",
  "REPLY (ON|OFF|SKIP)",
  "    Control the replies sent to the current connection.",
  "SETNAME <name>",
  "    Assign the name <name> to the current connection.",
  "UNBLOCK <clientid> [TIMEOUT|ERROR]",
  "    Unblock the specified blocked client.",
  "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
  "         [OPTIN] [OPTOUT] [NOLOOP]",
  "    Control server assisted client side caching.",
  "TRACKINGINFO",
  "    Report tracking status for the current connection.",
  "NO-EVICT (ON|OFF)",
  "    Protect current client connection from eviction.",
  "HELP",
  "    Prints this help.",
];

/** Redis 7.0's arity of each CLIENT subcommand the door knows (REPLY is answered in local_commands.ts). */
export const CLIENT_SUBCOMMAND_ARITY: ReadonlyMap<string, number> = new Map([
  ["caching", 3], ["getname", 2], ["getredir", 2], ["help", 2], ["id", 2], ["info", 2], ["kill", -3], ["list", -2],
  ["no-evict", 3], ["pause", -3], ["reply", 3], ["setinfo", 4], ["setname", 3], ["tracking", -3], ["trackinginfo", 2],
  ["unblock", -3], ["unpause", 2],
]);

/** Redis's checks before a CLIENT subcommand runs (also when it is queued after MULTI): its error, or null. */
export function clientCommandRefusal(args: readonly Buffer[]): string | null {
  if (args.length < 2) return "ERR wrong number of arguments for 'client' command";
  const sub = text(args[1]).toLowerCase();
  const n = CLIENT_SUBCOMMAND_ARITY.get(sub);
  if (n === undefined) return `ERR unknown subcommand '${text(args[1]).slice(0, 128).replace(/[\r\n]/g, " ")}'. Try CLIENT HELP.`;
  if (n > 0 ? args.length !== n : args.length < -n) return `ERR wrong number of arguments for 'client|${sub}' command`;
  return null;
}

/** CLIENT's subcommands other than REPLY and SETINFO (local_commands.ts); the arity is checked already. */
export function clientSubcommand(sub: string, args: readonly Buffer[], state: ConnectionState, ctx: ClientContext): ClientAnswer {
  switch (sub) {
    case "id":
      return { reply: integer(state.id) };
    case "getname":
      return { reply: bulk(state.name) };
    case "setname": {
      const name = text(args[2]);
      if (!validClientName(name)) return { reply: error("ERR Client names cannot contain spaces, newlines or special characters.") };
      state.name = name === "" ? null : name;
      return { reply: OK };
    }
    case "info":
      return { reply: bulk(`${state.infoLine(ctx.nowMs, ctx.self.inFlight)}\n`) };
    case "list":
      return { reply: list(args, ctx) };
    case "kill":
      return kill(args, ctx);
    case "help":
      return { reply: array(CLIENT_HELP.map((l) => simple(l))) };
    case "no-evict": {
      const v = text(args[2]).toLowerCase();
      return { reply: v === "on" || v === "off" ? OK : SYNTAX };
    }
    case "unpause":
      return { reply: OK };
    case "pause":
      return { reply: pause(args) };
    case "tracking":
      return { reply: error("ERR qjm: CLIENT TRACKING is not supported by the front door (no invalidation messages; see docs/resp.md)") };
    case "trackinginfo":
      return { reply: trackingOff() };
    case "getredir":
      return { reply: integer(-1) };
    case "caching":
      return { reply: error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled") };
    case "unblock":
      return { reply: unblock(args) };
    default:
      return { reply: error(`ERR unknown subcommand '${text(args[1])}'. Try CLIENT HELP.`) };
  }
}

/** The connections this one may see: all of the door's for an admin (a door with a password), else itself. */
function visible(ctx: ClientContext): DoorClient[] {
  return ctx.passwordSet ? ctx.clients() : [ctx.self];
}

function typeOf(c: DoorClient): "normal" | "pubsub" {
  return c.state.pubsub.total > 0 ? "pubsub" : "normal";
}

/** A client type word: normal, pubsub, or master / replica / slave, of which a door has none. */
function clientType(word: string): "normal" | "pubsub" | "none" | null {
  const w = word.toLowerCase();
  if (w === "normal" || w === "pubsub") return w;
  return w === "master" || w === "replica" || w === "slave" ? "none" : null;
}

/** CLIENT LIST [TYPE type] [ID id …], as Redis 7.0 reads its options (one of the two). */
function list(args: readonly Buffer[], ctx: ClientContext): RespValue {
  let chosen = visible(ctx);
  if (args.length === 4 && text(args[2]).toLowerCase() === "type") {
    const type = clientType(text(args[3]));
    if (type === null) return error(`ERR Unknown client type '${text(args[3])}'`);
    chosen = chosen.filter((c) => typeOf(c) === type);
  } else if (args.length > 3 && text(args[2]).toLowerCase() === "id") {
    const ids = new Set<number>();
    for (const a of args.slice(3)) {
      const id = text(a);
      if (!/^[1-9]\d{0,18}$/.test(id)) return error("ERR Invalid client ID");
      ids.add(Number(id));
    }
    chosen = chosen.filter((c) => ids.has(c.state.id));
  } else if (args.length !== 2) {
    return SYNTAX;
  }
  return bulk(chosen.map((c) => `${c.state.infoLine(ctx.nowMs, c.inFlight)}\n`).join(""));
}

/** CLIENT KILL ip:port (the old form: an error when none), or its filters (the count killed). */
function kill(args: readonly Buffer[], ctx: ClientContext): ClientAnswer {
  if (args.length === 3) {
    const addr = text(args[2]);
    const found = visible(ctx).filter((c) => c.state.addr === addr);
    if (found.length === 0) return { reply: error("ERR No such client") };
    return killAll(found, ctx, { reply: OK });
  }
  const filter = killFilter(args);
  if ("error" in filter) return { reply: error(filter.error) };
  const found = visible(ctx).filter(
    (c) =>
      (filter.id === undefined || c.state.id === filter.id) &&
      (filter.addr === undefined || c.state.addr === filter.addr) &&
      (filter.laddr === undefined || c.state.localAddr === filter.laddr) &&
      (filter.type === undefined || typeOf(c) === filter.type) &&
      !(filter.skipMe && c === ctx.self),
  );
  return killAll(found, ctx, { reply: integer(found.length) });
}

function killAll(found: DoorClient[], ctx: ClientContext, answer: ClientAnswer): ClientAnswer {
  for (const c of found) if (c !== ctx.self) c.kill();
  // Killing itself: Redis sends the reply, then closes.
  return found.includes(ctx.self) ? { ...answer, close: true } : answer;
}

interface KillFilter {
  id?: number;
  addr?: string;
  laddr?: string;
  type?: "normal" | "pubsub" | "none";
  skipMe: boolean;
}

/** CLIENT KILL's option pairs, with Redis 7.0's errors. */
function killFilter(args: readonly Buffer[]): KillFilter | { error: string } {
  const f: KillFilter = { skipMe: true };
  for (let i = 2; i < args.length; i += 2) {
    const option = text(args[i]).toLowerCase();
    // A trailing option without its value: Redis's old-form "No such client" when it is the only one.
    if (i + 1 >= args.length) return { error: "ERR syntax error" };
    const value = text(args[i + 1]);
    if (option === "id") {
      if (!/^-?\d{1,19}$/.test(value) || Number(value) <= 0) return { error: "ERR client-id should be greater than 0" };
      f.id = Number(value);
    } else if (option === "type") {
      const type = clientType(value);
      if (type === null) return { error: `ERR Unknown client type '${value}'` };
      f.type = type;
    } else if (option === "addr") f.addr = value;
    else if (option === "laddr") f.laddr = value;
    else if (option === "user") {
      if (value !== "default") return { error: `ERR No such user '${value}'` };
    } else if (option === "skipme") {
      const v = value.toLowerCase();
      if (v !== "yes" && v !== "no") return { error: "ERR syntax error" };
      f.skipMe = v === "yes";
    } else return { error: "ERR syntax error" };
  }
  return f;
}

/** CLIENT UNBLOCK id [TIMEOUT|ERROR]: no connection of a door is ever blocked (blocking commands are refused). */
function unblock(args: readonly Buffer[]): RespValue {
  if (args.length > 4) return SYNTAX;
  if (!/^-?\d{1,19}$/.test(text(args[2]))) return error("ERR value is not an integer or out of range");
  if (args.length === 4 && !["timeout", "error"].includes(text(args[3]).toLowerCase())) return error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
  return integer(0);
}

/** CLIENT PAUSE timeout [WRITE|ALL]: Redis's checks of its arguments, then the door's refusal. */
function pause(args: readonly Buffer[]): RespValue {
  const timeout = text(args[2]);
  if (!/^(0|-?[1-9]\d{0,18})$/.test(timeout) || BigInt(timeout) > 9223372036854775807n || BigInt(timeout) < -9223372036854775808n) return error("ERR timeout is not an integer or out of range");
  if (timeout.startsWith("-")) return error("ERR timeout is negative");
  if (args.length > 4 || (args.length === 4 && !["write", "all"].includes(text(args[3]).toLowerCase()))) return error("ERR CLIENT PAUSE mode must be WRITE or ALL");
  return error("ERR qjm: CLIENT PAUSE is not supported by the front door (it does not hold clients back; see docs/resp.md)");
}

/** CLIENT TRACKINGINFO of a connection that is not tracking (every door connection). */
function trackingOff(): RespValue {
  return { type: "map", items: [bulk("flags"), array([bulk("off")]), bulk("redirect"), integer(-1), bulk("prefixes"), array([])] };
}

/**
 * A journaled command's reply in the client's protocol (pure), with Redis 7.0's exact shape.
 *
 * Why: the master runs every write (and every command queued in MULTI) on its own Redis connection, which speaks
 * RESP2, so the typed reply (ReplyValue) that comes back has RESP2's shape. Redis answers a RESP3 client (HELLO 3)
 * differently for some commands: a score is a double (`,3.5`) where RESP2 has a bulk string of the same text (both
 * are `%.17g`, and `inf`: networking.c addReplyDouble / addReplyHumanLongDouble), SPOP with a count and SMEMBERS are a
 * set (`~`), HGETALL a map (`%`), ZPOPMIN with a count and ZRANGE … WITHSCORES nest [member, score] pairs. And RESP2
 * itself has two nils the typed form does not keep apart: a null bulk string (`$-1`) and a null array (`*-1`, LPOP
 * with a count, LMPOP, ZMPOP, GEOPOS's missing members, XREAD…).
 *
 * Approach (a table, here only): for each command whose reply differs, a shaper lifts the RESP2 reply into the RESP
 * value Redis would build — a double, a set, a map, a null array, and the nested pairs only for protocol 3 (the one
 * shape RESP2 flattens differently). encodeResp then writes it in the client's protocol: a double, set or map in
 * protocol 2 is Redis's own RESP2 form of it (bulk text, flat array), so RESP2's bytes stay what they were. EXEC's
 * array is shaped per queued command. A shaper touches only the shape it expects (an error, or an unexpected form,
 * passes through as it is).
 *
 * From redis 7.0.15's source (addReplyDouble, addReplyHumanLongDouble, addReplySetLen, addReplyMapLen,
 * addReplyNullArray, `c->resp` tests in t_zset.c, t_set.c, t_hash.c, t_string.c, t_list.c, t_stream.c, geo.c);
 * INCRBYFLOAT and HINCRBYFLOAT answer a bulk string in both protocols, GEODIST's distance too.
 *
 * Not shaped (docs/resp.md): a script's reply (EVAL, EVALSHA, FCALL) — the master runs it in RESP2, so a script that
 * calls `redis.setresp(3)` and returns a double, a map or a set (or their RESP3 replies of redis.call) gives the
 * client their RESP2 form; and reads inside MULTI not listed here (XINFO's maps, XPENDING…) keep RESP2's shape.
 */
import type { RespValue } from "../redis/resp_parser.js";
import type { ReplyValue } from "../segment/record.js";
import { replyValueResp, type Protocol } from "./resp_encoder.js";

type Shaper = (v: RespValue, args: readonly Buffer[], p: Protocol) => RespValue;

/** Command name (lower case) → how its RESP2 reply becomes Redis's reply in either protocol. */
const SHAPES: ReadonlyMap<string, Shaper> = new Map<string, Shaper>([
  // Sorted sets.
  ["zadd", (v) => double(v)], // INCR: the new score, or nil; otherwise an integer (left as it is)
  ["zincrby", (v) => double(v)],
  ["zscore", (v) => double(v)],
  ["zmscore", (v) => each(v, double)],
  ["zpopmin", (v, args, p) => scorePairs(v, p, args.length === 3)], // nested only with a count (zpopMinMaxCommand)
  ["zpopmax", (v, args, p) => scorePairs(v, p, args.length === 3)],
  ["zmpop", (v) => nullArray(keyAnd(v, (pairs) => each(pairs, (pair) => scoreAt(pair, 1))))],
  ["zrange", (v, args, p) => scorePairs(v, p, true, flag(args, 4, "withscores"))],
  ["zrangebyscore", (v, args, p) => scorePairs(v, p, true, flag(args, 4, "withscores"))],
  ["zrevrange", (v, args, p) => scorePairs(v, p, true, flag(args, 4, "withscores"))],
  ["zrevrangebyscore", (v, args, p) => scorePairs(v, p, true, flag(args, 4, "withscores"))],
  ["zunion", (v, args, p) => scorePairs(v, p, true, flag(args, 2 + numkeys(args), "withscores"))],
  ["zinter", (v, args, p) => scorePairs(v, p, true, flag(args, 2 + numkeys(args), "withscores"))],
  ["zdiff", (v, args, p) => scorePairs(v, p, true, flag(args, 2 + numkeys(args), "withscores"))],
  ["zrandmember", (v, args, p) => scorePairs(v, p, true, args.length === 4 && flag(args, 3, "withscores"))],
  // Sets: SPOP with a count, and the set reads (inside MULTI), are sets.
  ["spop", (v, args) => (args.length === 3 ? set(v) : v)],
  ["smembers", (v) => set(v)],
  ["sinter", (v) => set(v)],
  ["sunion", (v) => set(v)],
  ["sdiff", (v) => set(v)],
  // Hashes.
  ["hgetall", (v) => map(v)],
  ["hrandfield", (v, args, p) => (p === 3 && args.length === 4 && flag(args, 3, "withvalues") ? nest(v) : v)],
  // Strings.
  ["lcs", (v) => (isArray(v) && v.items.length === 4 && isBulk(v.items[0], "matches") ? map(v) : v)],
  // Lists: the nil of a count is a null array.
  ["lpop", (v, args) => (args.length === 3 ? nullArray(v) : v)],
  ["rpop", (v, args) => (args.length === 3 ? nullArray(v) : v)],
  ["lmpop", (v) => nullArray(v)],
  // Geo: coordinates are doubles (WITHCOORD); GEORADIUS and GEORADIUSBYMEMBER are writes (their STORE).
  ["geopos", (v) => each(v, (xy) => nullArray(each(xy, double)))],
  ["georadius", (v, args) => (flag(args, 6, "withcoord") ? coords(v) : v)],
  ["georadius_ro", (v, args) => (flag(args, 6, "withcoord") ? coords(v) : v)],
  ["georadiusbymember", (v, args) => (flag(args, 5, "withcoord") ? coords(v) : v)],
  ["georadiusbymember_ro", (v, args) => (flag(args, 5, "withcoord") ? coords(v) : v)],
  ["geosearch", (v, args) => (geosearchFlag(args, "withcoord") ? coords(v) : v)],
  // Streams: XREAD's streams are a map; a count of 0 and nothing to read are null arrays.
  ["xread", (v, _args, p) => streams(v, p)],
  ["xrange", (v) => nullArray(v)],
  ["xrevrange", (v) => nullArray(v)],
]);

/** The commands whose reply is shaped (the differential test's corpus holds each). */
export const SHAPED_COMMANDS: readonly string[] = [...SHAPES.keys()];

/** A write's (or a queued command's) typed reply as the RESP value Redis answers `args` in `protocol`. */
export function commandReply(args: readonly Buffer[], value: ReplyValue, protocol: Protocol): RespValue {
  const v = replyValueResp(value);
  if (v.type === "error" || args.length === 0) return v;
  const shaper = SHAPES.get(args[0].toString("latin1").toLowerCase());
  return shaper === undefined ? v : shaper(v, args, protocol);
}

/**
 * What commandReply needs of `args` later: all of them for a command whose reply it shapes, else the name alone — a
 * 10k-argument RPUSH's views are not held until it commits (s24).
 */
export function replyArgs(args: Buffer[]): Buffer[] {
  return args.length <= 1 || SHAPES.has(args[0].toString("latin1").toLowerCase()) ? args : [args[0]];
}

/** EXEC's typed reply: each queued command's reply in its own shape; nil (a WATCH aborted it) is a null array. */
export function execReply(queued: readonly (readonly Buffer[])[], value: ReplyValue, protocol: Protocol): RespValue {
  if (value === null) return { type: "array", items: null };
  if (!Array.isArray(value) || value.length !== queued.length) return replyValueResp(value);
  return { type: "array", items: value.map((item, i) => commandReply(queued[i], item, protocol)) };
}

// ---- shapers ----

function isArray(v: RespValue): v is { type: "array"; items: RespValue[] } {
  return v.type === "array" && v.items !== null;
}

function isBulk(v: RespValue, text: string): boolean {
  return v.type === "bulk" && v.value !== null && v.value.toString("latin1").toLowerCase() === text;
}

/** A bulk string holding a score is a double of the same text (RESP2 sends a double as that bulk string). */
function double(v: RespValue): RespValue {
  return v.type === "bulk" && v.value !== null ? { type: "double", value: v.value.toString("latin1") } : v;
}

function each(v: RespValue, f: (item: RespValue) => RespValue): RespValue {
  return isArray(v) ? { type: "array", items: v.items.map(f) } : v;
}

/** A nil that is RESP2's null array (`*-1`; RESP3's `_` either way). */
function nullArray(v: RespValue): RespValue {
  return v.type === "bulk" && v.value === null ? { type: "array", items: null } : v;
}

function set(v: RespValue): RespValue {
  return isArray(v) ? { type: "set", items: v.items } : v;
}

function map(v: RespValue): RespValue {
  return isArray(v) && v.items.length % 2 === 0 ? { type: "map", items: v.items } : v;
}

/** The item at `i` of an array, as a double. */
function scoreAt(v: RespValue, i: number): RespValue {
  return isArray(v) && i < v.items.length ? { type: "array", items: v.items.map((item, j) => (j === i ? double(item) : item)) } : v;
}

/** A flat [a, b, a, b…] as RESP3's nested [[a, b]…]. */
function nest(v: RespValue): RespValue {
  if (!isArray(v) || v.items.length % 2 !== 0) return v;
  const pairs: RespValue[] = [];
  for (let i = 0; i < v.items.length; i += 2) pairs.push({ type: "array", items: [v.items[i], v.items[i + 1]] });
  return { type: "array", items: pairs };
}

/**
 * A flat [member, score…] (when `scores`): each score a double, and in protocol 3 with `nested` (Redis's count or
 * WITHSCORES form) pairs [[member, score]…]. ZPOPMIN without a count stays flat in RESP3 too.
 */
function scorePairs(v: RespValue, p: Protocol, nested: boolean, scores = true): RespValue {
  if (!scores || !isArray(v) || v.items.length % 2 !== 0) return v;
  const flat: RespValue = { type: "array", items: v.items.map((item, i) => (i % 2 === 1 ? double(item) : item)) };
  return p === 3 && nested ? nest(flat) : flat;
}

/** [key, rest] (ZMPOP): `rest` shaped. */
function keyAnd(v: RespValue, f: (rest: RespValue) => RespValue): RespValue {
  return isArray(v) && v.items.length === 2 ? { type: "array", items: [v.items[0], f(v.items[1])] } : v;
}

/** GEORADIUS … WITHCOORD: each result is [member, (dist), (hash), [lon, lat]]; the coordinates are doubles. */
function coords(v: RespValue): RespValue {
  return each(v, (item) => (isArray(item) && item.items.length >= 2 ? { type: "array", items: [...item.items.slice(0, -1), each(item.items[item.items.length - 1], double)] } : item));
}

/**
 * XREAD: [[key, entries]…] is a map of key → entries in RESP3; nothing to read is a null array. (XREADGROUP, which
 * would need the same, is flagged blocking and refused by the door.)
 */
function streams(v: RespValue, p: Protocol): RespValue {
  if (!isArray(v)) return nullArray(v);
  if (p !== 3 || !v.items.every((s) => isArray(s) && s.items.length === 2)) return v;
  return { type: "map", items: v.items.flatMap((s) => (s as { items: RespValue[] }).items) };
}

/** Whether an option word appears at or after `from` (before it: keys, members and numbers that may look like it). */
function flag(args: readonly Buffer[], from: number, word: string): boolean {
  for (let i = from; i < args.length; i++) if (args[i].length === word.length && args[i].toString("latin1").toLowerCase() === word) return true;
  return false;
}

/** GEOSEARCH's options come in any order after the key; FROMMEMBER's member is skipped (it may be any word). */
function geosearchFlag(args: readonly Buffer[], word: string): boolean {
  for (let i = 2; i < args.length; i++) {
    const a = args[i].toString("latin1").toLowerCase();
    if (a === "frommember") i++;
    else if (a === word) return true;
  }
  return false;
}

/** ZUNION / ZINTER / ZDIFF's numkeys (a bad one: Redis answered an error, not shaped). */
function numkeys(args: readonly Buffer[]): number {
  const n = Number(args[1]?.toString("latin1"));
  return Number.isSafeInteger(n) && n > 0 ? n : args.length;
}

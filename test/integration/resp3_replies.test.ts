/**
 * Write replies through the RESP front door, byte for byte as a plain redis-server (the same 7.0.15 binary) answers
 * them, in RESP2 and in RESP3 (HELLO 3): a corpus of writes whose RESP3 reply differs from RESP2 (doubles, nested
 * [member, score] pairs, sets) and common ones, alone and inside MULTI … EXEC with the reads whose RESP3 shape differs
 * (each queued command's reply in its own command's shape), and a few reads after (relayed from the node's Redis in
 * the connection's protocol). The master's Redis speaks RESP2; the door retypes (src/frontdoor/reply_shapes.ts).
 * Before that table, 17 of 97 replies differed in RESP3 on each door, and EXEC's nested null arrays in RESP2.
 */
import net from "node:net";
import test from "ava";
import { startBesidePlain } from "../helpers/beside_plain.js";
import { SHAPED_COMMANDS } from "../../src/frontdoor/reply_shapes.js";
import { encodeCommand, RespParser } from "../../src/redis/resp_parser.js";

let plainPort = 0;
let masterDoor = 0;
let replicaDoor = 0;
let stopAll: () => Promise<void> = async () => {};
const sockets: net.Socket[] = [];

test.before(async () => {
  const b = await startBesidePlain("resp3-replies", (stop) => (stopAll = stop));
  ({ masterDoor, replicaDoor } = b);
  plainPort = b.plain.port;
});

test.after.always(async () => {
  for (const s of sockets) s.destroy();
  await stopAll();
});

/** A connection that gives each reply's raw bytes (split where the parser ends a top-level value). */
class RawConnection {
  private readonly parser = new RespParser({ resp3: true, bigIntegers: true });
  private stream = Buffer.alloc(0);
  private readonly waiting: ((bytes: Buffer) => void)[] = [];
  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => {});
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: "127.0.0.1" }, () => resolve(new RawConnection(s)));
      sockets.push(s);
      s.once("error", reject);
    });
  }

  private onData(chunk: Buffer): void {
    this.stream = Buffer.concat([this.stream, chunk]);
    this.parser.push(chunk);
    for (let frame = this.parser.next(); frame !== undefined; frame = this.parser.next()) {
      const bytes = this.stream.subarray(0, frame.bytes);
      this.stream = this.stream.subarray(frame.bytes);
      this.waiting.shift()?.(Buffer.from(bytes));
    }
  }

  call(args: string[]): Promise<Buffer> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.socket.write(encodeCommand(args));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Each command's reply bytes, sent one at a time on a fresh connection speaking `protocol`. */
async function replies(port: number, protocol: 2 | 3, commands: string[][]): Promise<string[]> {
  const c = await RawConnection.open(port);
  try {
    if (protocol === 3) await c.call(["HELLO", "3"]); // its reply is the door's own (role, version): not compared
    const out: string[] = [];
    for (const args of commands) out.push(JSON.stringify((await c.call(args)).toString("latin1")));
    return out;
  } finally {
    c.close();
  }
}

/**
 * The corpus, keys under `p` (each run its own, so the runs do not see each other's keys). Random replies are avoided:
 * SPOP and HRANDFIELD / ZRANDMEMBER take every member (an intset, a listpack: their order is fixed).
 */
function corpus(p: string): string[][] {
  const k = (name: string): string => `${p}${name}`;
  return [
    // Strings.
    ["SET", k("s"), "v1"],
    ["SET", k("s"), "v2", "GET"],
    ["INCR", k("n")],
    ["INCRBY", k("n"), "41"],
    ["INCRBYFLOAT", k("f"), "1.5"],
    ["INCRBYFLOAT", k("f"), "1e3"],
    ["GETEX", k("s"), "EX", "1000"],
    ["GETEX", k("none"), "EX", "1000"],
    ["COPY", k("s"), k("s2")],
    ["GETDEL", k("s2")],
    ["GETDEL", k("s2")],
    // Hashes.
    ["HSET", k("h"), "a", "1", "b", "x"],
    ["HINCRBYFLOAT", k("h"), "a", "2.5"],
    ["HINCRBY", k("h"), "c", "7"],
    // Lists: null arrays for a count on a missing key.
    ["LPUSH", k("l"), "a", "b", "c", "d"],
    ["LPOP", k("l")],
    ["LPOP", k("l"), "2"],
    ["RPOP", k("none"), "2"],
    ["LPOP", k("none")],
    ["LMPOP", "2", k("none"), k("l"), "RIGHT", "COUNT", "5"],
    ["LMPOP", "1", k("none"), "LEFT"],
    // Sets: SPOP with a count is a set.
    ["SADD", k("set"), "1", "2", "3"],
    ["SADD", k("set2"), "2", "3", "4"],
    ["SINTERSTORE", k("inter"), k("set"), k("set2")],
    ["SPOP", k("inter"), "10"],
    ["SPOP", k("none"), "3"],
    ["SPOP", k("set"), "0"],
    ["SADD", k("one"), "9"],
    ["SADD", k("one1"), "8"],
    ["SPOP", k("one1"), "1"],
    ["SPOP", k("one")],
    ["SMOVE", k("set"), k("set2"), "1"],
    // Sorted sets: doubles, pairs.
    ["ZADD", k("z"), "1", "a", "2", "b", "3.5", "c", "-0.25", "d"],
    ["ZADD", k("z"), "INCR", "2.5", "a"],
    ["ZADD", k("z"), "NX", "INCR", "1", "a"],
    ["ZADD", k("z"), "XX", "CH", "10", "a"],
    ["ZINCRBY", k("z"), "1.25", "b"],
    ["ZINCRBY", k("z"), "0.1", "b"],
    ["ZINCRBY", k("zi"), "inf", "m"],
    ["ZINCRBY", k("s"), "1", "m"],
    ["ZPOPMIN", k("z")],
    ["ZPOPMAX", k("z")],
    ["ZPOPMIN", k("z"), "2"],
    ["ZADD", k("z"), "1", "a", "2", "b", "3", "c", "4", "d"],
    ["ZPOPMAX", k("z"), "1"],
    ["ZPOPMIN", k("z"), "0"],
    ["ZPOPMIN", k("none")],
    ["ZPOPMAX", k("none"), "2"],
    ["ZMPOP", "1", k("z"), "MIN"],
    ["ZMPOP", "2", k("none"), k("z"), "MAX", "COUNT", "5"],
    ["ZMPOP", "1", k("none"), "MIN"],
    ["ZADD", k("z"), "1.5", "a", "2.5", "b", "3.5", "c"],
    ["ZRANGESTORE", k("zdst"), k("z"), "0", "-1"],
    ["ZUNIONSTORE", k("zu"), "2", k("z"), k("zdst"), "WEIGHTS", "1", "0.5"],
    // Geo: GEORADIUS is a write (its STORE); WITHCOORD's coordinates are doubles in RESP3.
    ["GEOADD", k("g"), "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"],
    ["GEORADIUS", k("g"), "15", "37", "200", "km", "WITHCOORD", "WITHDIST", "ASC"],
    ["GEORADIUS", k("g"), "15", "37", "200", "km", "WITHDIST", "WITHHASH", "ASC"],
    ["GEORADIUSBYMEMBER", k("g"), "Palermo", "300", "km", "WITHCOORD", "ASC"],
    ["GEORADIUS", k("g"), "15", "37", "200", "km", "STORE", k("gs")],
    ["XADD", k("x"), "1-1", "f", "v"],
    // MULTI … EXEC: each queued command's reply in its own shape, reads included.
    ["MULTI"],
    ["ZADD", k("z"), "INCR", "1", "a"],
    ["ZINCRBY", k("z"), "2", "b"],
    ["ZPOPMIN", k("z"), "2"],
    ["ZPOPMAX", k("z")],
    ["ZADD", k("z"), "1", "a", "2", "b", "3", "c"],
    ["ZSCORE", k("z"), "a"],
    ["ZSCORE", k("z"), "nope"],
    ["ZMSCORE", k("z"), "a", "nope", "c"],
    ["ZRANGE", k("z"), "0", "-1", "WITHSCORES"],
    ["ZRANGE", k("z"), "0", "-1"],
    ["ZRANGEBYSCORE", k("z"), "-inf", "+inf", "WITHSCORES", "LIMIT", "0", "2"],
    ["ZREVRANGE", k("z"), "0", "1", "WITHSCORES"],
    ["ZREVRANGEBYSCORE", k("z"), "+inf", "-inf", "WITHSCORES"],
    ["ZUNION", "2", k("z"), k("zu"), "WITHSCORES"],
    ["ZINTER", "2", k("z"), k("zu"), "WEIGHTS", "1", "2", "WITHSCORES"],
    ["ZDIFF", "2", k("z"), k("none"), "WITHSCORES"],
    ["ZDIFF", "1", k("z")],
    ["ZRANDMEMBER", k("z"), "10", "WITHSCORES"],
    ["ZMPOP", "1", k("z"), "MAX", "COUNT", "2"],
    ["HGETALL", k("h")],
    ["HGETALL", k("none")],
    ["HRANDFIELD", k("h"), "10", "WITHVALUES"],
    ["SADD", k("ms"), "5", "6", "7"],
    ["SMEMBERS", k("ms")],
    ["SINTER", k("ms"), k("none")],
    ["SUNION", k("ms"), k("one")],
    ["SDIFF", k("ms"), k("one")],
    ["SPOP", k("ms"), "5"],
    ["LPOP", k("none"), "2"],
    ["LMPOP", "1", k("none"), "LEFT"],
    ["GEOPOS", k("g"), "Palermo", "nope"],
    ["GEORADIUS", k("g"), "15", "37", "200", "km", "WITHCOORD", "ASC"],
    ["GEORADIUS_RO", k("g"), "15", "37", "200", "km", "WITHCOORD", "WITHHASH", "ASC"],
    ["GEORADIUSBYMEMBER_RO", k("g"), "Catania", "300", "km", "WITHCOORD", "DESC"],
    ["GEOSEARCH", k("g"), "FROMMEMBER", "Palermo", "BYRADIUS", "300", "km", "ASC", "WITHCOORD", "WITHDIST"],
    ["GEODIST", k("g"), "Palermo", "Catania"],
    ["XRANGE", k("x"), "-", "+", "COUNT", "0"],
    ["XREVRANGE", k("x"), "+", "-", "COUNT", "0"],
    ["XREVRANGE", k("x"), "+", "-"],
    ["XREAD", "STREAMS", k("x"), "0"],
    ["XREAD", "STREAMS", k("none"), "0"],
    ["INCRBYFLOAT", k("f"), "0.5"],
    ["SET", k("lcs1"), "ohmytext"],
    ["SET", k("lcs2"), "mynewtext"],
    ["LCS", k("lcs1"), k("lcs2"), "IDX"],
    ["GET", k("s")],
    ["EXEC"],
    // After EXEC, reads (relayed from the node's Redis in the connection's protocol): what the transaction left.
    ["ZRANGE", k("z"), "0", "-1", "WITHSCORES"],
    ["ZSCORE", k("zu"), "a"],
    ["HGETALL", k("h")],
    ["SMEMBERS", k("ms")],
    ["GEOPOS", k("g"), "Palermo", "nope"],
    ["XREAD", "STREAMS", k("x"), "0"],
    ["LPOP", k("none"), "2"], // a write again: nil array
  ];
}

test("the corpus holds every command of the door's table of reply shapes", (t) => {
  const sent = new Set(corpus("").map((args) => args[0].toLowerCase()));
  t.deepEqual(SHAPED_COMMANDS.filter((name) => !sent.has(name)), []);
});

for (const [label, port] of [
  ["the master's door", () => masterDoor],
  ["a replica's door", () => replicaDoor],
] as const) {
  for (const protocol of [2, 3] as const) {
    test.serial(`RESP${protocol}, ${label}: every write reply (alone and inside EXEC) byte for byte as redis-server`, async (t) => {
      const prefix = `${label.includes("master") ? "m" : "r"}${protocol}:`;
      const commands = corpus(prefix);
      const expected = await replies(plainPort, protocol, commands);
      const got = await replies(port(), protocol, commands);
      const differing = commands.map((args, i) => ({ command: args.join(" "), redis: expected[i], door: got[i] })).filter((d) => d.redis !== d.door);
      t.deepEqual(differing, [], `${differing.length} of ${commands.length} replies differ`);
    });
  }
}

/**
 * The RESP door answers as Redis does where the s22 review found it did not (issue #12), byte for byte against a plain
 * redis-server (the same 7.0.15 binary) started by the test: each case is sent raw on a fresh connection to both, and
 * everything read until the connection closes or a closing `PING __end__` is answered is compared.
 *  1. a SADD of 20,000 small members (refused before by an argument-count bound of bound / 64);
 *  2. the door's own commands inside MULTI (SELECT, CLIENT, PING/ECHO, COMMAND, TIME, OBJECT, PUBLISH, SUBSCRIBE,
 *     HELLO, CLIENT REPLY), each answered in its place in EXEC's array; queue-time errors abort as in Redis;
 *  3. CLIENT LIST ID / TYPE, KILL, HELP, NO-EVICT, UNPAUSE, PAUSE's argument errors, TRACKINGINFO, GETREDIR;
 *  4. odd request bytes: Redis's protocol error texts, `*01` refused, `$4\r\nPINGXX` taken;
 * and a write pipelined after EXEC, which the door applied before the EXEC; a script's nested error replies.
 * HELLO's connection id differs by nature and is masked.
 */
import net from "node:net";
import test from "ava";
import { startBesidePlain } from "../helpers/beside_plain.js";
import { encodeCommand } from "../../src/redis/resp_parser.js";

let plainPort = 0;
let masterDoor = 0;
let replicaDoor = 0;
let stopAll: () => Promise<void> = async () => {};
const sockets = new Set<net.Socket>();

test.before(async () => {
  const b = await startBesidePlain("resp-fidelity", (stop) => (stopAll = stop));
  ({ masterDoor, replicaDoor } = b);
  plainPort = b.plain.port;
});

test.after.always(async () => {
  for (const s of sockets) s.destroy();
  await stopAll();
});

const END = Buffer.from("__end__\r\n");
/** A case: raw bytes, or commands; `end`: a `PING __end__` is sent after it (none when the connection closes). */
type Case = { raw: string; end?: boolean } | { commands: string[][]; end?: boolean };

/** What a connection reads for `c`: until it closes, or until the closing PING's answer. */
function exchange(port: number, c: Case): Promise<string> {
  const payload = Buffer.concat([
    "raw" in c ? Buffer.from(c.raw, "latin1") : Buffer.concat(c.commands.map((a) => encodeCommand(a))),
    c.end === false ? Buffer.alloc(0) : encodeCommand(["PING", "__end__"]),
  ]);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ port, host: "127.0.0.1" }, () => s.write(payload));
    sockets.add(s);
    // A guard, not a wait: a server that neither answers the closing PING nor closes fails the case.
    const guard = setTimeout(() => {
      chunks.push(Buffer.from(" [neither closed nor answered the closing PING in 10 s]"));
      done();
    }, 10_000);
    const done = (): void => {
      clearTimeout(guard);
      s.destroy();
      sockets.delete(s);
      resolve(mask(Buffer.concat(chunks).toString("latin1")));
    };
    s.on("data", (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      if (c.end !== false && all.length >= END.length && all.subarray(all.length - END.length).equals(END)) done();
    });
    s.on("close", done);
    s.on("error", reject);
  });
}

/** Connection ids differ between servers by nature. */
function mask(s: string): string {
  return s.replace(/(\$2\r\nid\r\n:)\d+/g, "$1<id>");
}

async function compare(t: import("ava").ExecutionContext, cases: Case[], port = masterDoor): Promise<void> {
  for (const c of cases) {
    const [want, got] = [await exchange(plainPort, c), await exchange(port, c)];
    t.is(got, want, JSON.stringify("raw" in c ? c.raw.slice(0, 80) : c.commands).slice(0, 200));
  }
}

test("1. a request whose bytes fit is taken whatever its argument count: SADD of 20,000 members", async (t) => {
  const members = Array.from({ length: 20_000 }, (_, i) => `m${i}`);
  await compare(t, [{ commands: [["SADD", "fidelity:many", ...members], ["SCARD", "fidelity:many"], ["DEL", "fidelity:many"]] }]);
});

test("2. the door's own commands inside MULTI, in their place in EXEC's reply; queue-time errors abort as in Redis", async (t) => {
  const m = (...commands: string[][]): Case => ({ commands: [["MULTI"], ...commands, ["EXEC"]] });
  await compare(t, [
    m(["SELECT", "0"], ["SET", "fidelity:a", "5"], ["GET", "fidelity:a"]),
    m(["SELECT", "x"]),
    m(["SELECT"]),
    m(["ECHO", "x"], ["PING"], ["PING", "y"], ["PING", "a", "b"]),
    m(["CLIENT", "SETNAME", "n1"], ["CLIENT", "GETNAME"], ["CLIENT", "NO-EVICT", "on"], ["CLIENT", "LIST", "ID", "999999"], ["CLIENT", "KILL", "ID", "999999"]),
    m(["CLIENT", "FOO"]),
    m(["CLIENT", "SETNAME"]),
    m(["COMMAND", "COUNT"], ["COMMAND", "INFO", "get"]),
    { commands: [["MULTI"], ["TIME"], ["DISCARD"]] },
    { commands: [["SET", "fidelity:o", "12"], ["MULTI"], ["OBJECT", "ENCODING", "fidelity:o"], ["INCR", "fidelity:o"], ["EXEC"], ["DEL", "fidelity:o"]] },
    m(["PUBLISH", "fidelity:nobody", "m"], ["PUBSUB", "NUMSUB", "fidelity:nobody"]),
    m(["SUBSCRIBE", "fidelity:c1", "fidelity:c2"], ["PING"]),
    { commands: [["MULTI"], ["SUBSCRIBE", "fidelity:c3"], ["EXEC"], ["PING"], ["UNSUBSCRIBE"]] },
    { commands: [["MULTI"], ["HELLO", "3"], ["GET", "fidelity:none"], ["HGETALL", "fidelity:none"], ["EXEC"], ["GET", "fidelity:none"]] },
    { commands: [["MULTI"], ["CLIENT", "REPLY", "OFF"], ["PING"], ["EXEC"], ["PING"], ["CLIENT", "REPLY", "ON"]] },
    { commands: [["MULTI"], ["EXEC", "x"], ["PING"]] },
    { commands: [["EXEC", "x"]] },
    { commands: [["MULTI"], ["WATCH", "fidelity:a"], ["MULTI"], ["EXEC"]] },
    m(["DEL", "fidelity:a"]),
    // A write pipelined after EXEC ran before it (the EXEC was handed to the ordered writes a microtask late).
    { commands: [["SET", "fidelity:p", "12"], ["MULTI"], ["INCR", "fidelity:p"], ["EXEC"], ["DEL", "fidelity:p"]] },
    { commands: [["SET", "fidelity:p", "12"], ["WATCH", "fidelity:p"], ["MULTI"], ["INCR", "fidelity:p"], ["EXEC"], ["DEL", "fidelity:p"]] },
  ]);
});

test("3. CLIENT: LIST filters, KILL (its filters, the old ip:port form, itself), HELP, NO-EVICT, PAUSE's argument errors", async (t) => {
  const one = (...args: string[]): Case => ({ commands: [args] });
  await compare(t, [
    one("CLIENT", "LIST", "ID", "999999"),
    one("CLIENT", "LIST", "ID", "1", "x"),
    one("CLIENT", "LIST", "ID"),
    one("CLIENT", "LIST", "TYPE", "pubsub"),
    one("CLIENT", "LIST", "TYPE", "foo"),
    one("CLIENT", "KILL", "ID", "999999"),
    one("CLIENT", "KILL", "ID", "x"),
    one("CLIENT", "KILL", "ADDR", "1.2.3.4:5", "SKIPME", "no"),
    one("CLIENT", "KILL", "LADDR", "1.2.3.4:5"),
    one("CLIENT", "KILL", "1.2.3.4:5"),
    one("CLIENT", "KILL", "USER", "nobody"),
    one("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "maybe"),
    one("CLIENT", "KILL", "MAXAGE", "1"),
    one("CLIENT", "KILL"),
    one("CLIENT", "HELP"),
    one("CLIENT", "NO-EVICT", "on"),
    one("CLIENT", "NO-EVICT", "maybe"),
    one("CLIENT", "UNPAUSE"),
    one("CLIENT", "PAUSE", "x"),
    one("CLIENT", "PAUSE", "-5"),
    one("CLIENT", "PAUSE", "10", "FOO"),
    one("CLIENT", "TRACKINGINFO"),
    one("CLIENT", "GETREDIR"),
    one("CLIENT", "CACHING", "yes"),
    one("CLIENT", "UNBLOCK", "5"),
    one("CLIENT", "FOO"),
  ]);
  // KILL of itself (SKIPME no; the old form with its own address): the reply, then the connection is closed.
  for (const port of [plainPort, masterDoor]) {
    for (const form of ["id", "addr"]) {
      const s = await connect(port);
      const id = (await call(s, ["CLIENT", "ID"])).toString().slice(1, -2);
      const addr = / addr=(\S+)/.exec((await call(s, ["CLIENT", "INFO"])).toString())![1];
      const kill = form === "id" ? ["CLIENT", "KILL", "ID", id, "SKIPME", "no"] : ["CLIENT", "KILL", addr];
      const closed = new Promise<void>((resolve) => s.once("close", () => resolve()));
      t.is((await call(s, kill)).toString(), form === "id" ? ":1\r\n" : "+OK\r\n", `${port} ${form}`);
      await closed;
    }
  }
});

test("4. odd request bytes: Redis's reading and its protocol error texts, on either door", async (t) => {
  const cases: Case[] = [
    { raw: "*01\r\n$04\r\nPING\r\n", end: false },
    { raw: "*1\r\n$04\r\nPING\r\n", end: false },
    { raw: "*+1\r\n$4\r\nPING\r\n", end: false },
    { raw: "*  1\r\n$4\r\nPING\r\n", end: false },
    { raw: "*x\r\n", end: false },
    { raw: "*2147483648\r\n", end: false },
    { raw: "*1\r\n:1\r\n", end: false },
    { raw: "*1\r\n*1\r\n$4\r\nPING\r\n", end: false },
    { raw: "*2\r\n$3\r\nGET\r\n$-1\r\n", end: false },
    { raw: "*1\r\n$x\r\n", end: false },
    { raw: "GET \"open\r\n", end: false },
    { raw: "GET \"x\"y\r\n", end: false },
    { raw: `*1${"1".repeat(70_000)}`, end: false },
    { raw: `*1\r\n$1${"1".repeat(70_000)}`, end: false },
    { raw: `GET ${"k".repeat(70_000)}`, end: false },
    { raw: "*1\r\n$4\r\nPINGXX\r\n" },
    { raw: "*1\r\n$4\r\nPINGPING\r\n" },
    { raw: "*1\rX$4\rXPING\r\n" },
    { raw: "*-1\r\n*0\r\n\r\nPING\n" },
    { raw: "$4\r\nPING\r\n+PING\r\n" },
    { raw: "set fidelity:i \"a\\x41\\n\" 'b\\'c'\r\nget fidelity:i\r\ndel fidelity:i\r\n" },
  ];
  await compare(t, cases);
  await compare(t, cases.slice(0, 20), replicaDoor);
});

test("5. a script's nested error reply stays an error (was a status: +ERR bad), in RESP2 and RESP3", async (t) => {
  const script = "redis.call('SET', KEYS[1], '1'); return {1, redis.error_reply('ERR bad'), {redis.status_reply('FINE'), redis.error_reply('ERR deep')}}";
  await compare(t, [
    { commands: [["EVAL", script, "1", "fidelity:s"], ["DEL", "fidelity:s"]] },
    { commands: [["HELLO", "3"], ["EVAL", script, "1", "fidelity:s"], ["DEL", "fidelity:s"]] },
  ]);
});

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" }, () => resolve(s));
    sockets.add(s);
    s.once("error", reject);
  });
}

/** One command's reply (a single short reply: one data event at this size). */
function call(s: net.Socket, args: string[]): Promise<Buffer> {
  return new Promise((resolve) => {
    s.once("data", (d: Buffer) => resolve(d));
    s.write(encodeCommand(args));
  });
}

/**
 * The door's reply shapes (src/frontdoor/reply_shapes.ts): a journaled command's RESP2 typed reply answered with Redis
 * 7.0's bytes in RESP2 and RESP3. The expected bytes are redis-server 7.0.15's (integration/resp3_replies checks them
 * against a live one).
 */
import test from "ava";
import { commandReply, execReply } from "../../src/frontdoor/reply_shapes.js";
import { encodeResp, type Protocol } from "../../src/frontdoor/resp_encoder.js";
import type { ReplyValue } from "../../src/segment/record.js";

const b = (s: string): Buffer => Buffer.from(s);
const args = (line: string): Buffer[] => line.split(" ").map(b);
const reply = (line: string, v: ReplyValue, p: Protocol): string => encodeResp(commandReply(args(line), v, p), p).toString("latin1");

test("a score is a double in RESP3, the same bulk text in RESP2; inf too; nil and integers untouched", (t) => {
  t.is(reply("ZINCRBY z 0.1 b", b("3.3500000000000001"), 3), ",3.3500000000000001\r\n");
  t.is(reply("ZINCRBY z 0.1 b", b("3.3500000000000001"), 2), "$18\r\n3.3500000000000001\r\n");
  t.is(reply("zincrby z inf m", b("inf"), 3), ",inf\r\n");
  t.is(reply("ZADD z INCR 1 a", b("2"), 3), ",2\r\n");
  t.is(reply("ZADD z NX INCR 1 a", null, 3), "_\r\n");
  t.is(reply("ZADD z NX INCR 1 a", null, 2), "$-1\r\n");
  t.is(reply("ZADD z 1 a", 1, 3), ":1\r\n");
  t.is(reply("ZMSCORE z a x", [b("1"), null], 3), "*2\r\n,1\r\n_\r\n");
});

test("ZPOPMIN/ZPOPMAX: flat without a count, nested [member, double] pairs with one (RESP3 only); ZMPOP's scores", (t) => {
  const flat = [b("a"), b("1"), b("b"), b("2.5")];
  t.is(reply("ZPOPMIN z", flat.slice(0, 2), 3), "*2\r\n$1\r\na\r\n,1\r\n");
  t.is(reply("ZPOPMAX z 2", flat, 3), "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n");
  t.is(reply("ZPOPMAX z 2", flat, 2), "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$3\r\n2.5\r\n");
  t.is(reply("ZPOPMIN z 0", [], 3), "*0\r\n");
  t.is(reply("ZMPOP 1 z MIN", [b("z"), [[b("a"), b("1")]]], 3), "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n,1\r\n");
  t.is(reply("ZMPOP 1 z MIN", null, 2), "*-1\r\n");
});

test("WITHSCORES found only among the options: a key or member named withscores is not one", (t) => {
  const flat = [b("withscores"), b("withscores")];
  t.is(reply("ZRANGE withscores 0 -1", flat, 3), "*2\r\n$10\r\nwithscores\r\n$10\r\nwithscores\r\n");
  t.is(reply("ZRANGE z 0 -1 WITHSCORES", [b("a"), b("1")], 3), "*1\r\n*2\r\n$1\r\na\r\n,1\r\n");
  t.is(reply("ZUNION 2 withscores z", [b("a"), b("b")], 3), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
  t.is(reply("ZUNION 1 z WITHSCORES", [b("a"), b("1")], 3), "*1\r\n*2\r\n$1\r\na\r\n,1\r\n");
  t.is(reply("GEOSEARCH g FROMMEMBER withcoord BYRADIUS 1 km", [b("withcoord")], 3), "*1\r\n$9\r\nwithcoord\r\n");
});

test("sets, maps, null arrays; a count changes SPOP's and LPOP's shape", (t) => {
  t.is(reply("SPOP s 2", [b("1"), b("2")], 3), "~2\r\n$1\r\n1\r\n$1\r\n2\r\n");
  t.is(reply("SPOP s 2", [b("1"), b("2")], 2), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
  t.is(reply("SPOP s", b("1"), 3), "$1\r\n1\r\n");
  t.is(reply("HGETALL h", [b("a"), b("1")], 3), "%1\r\n$1\r\na\r\n$1\r\n1\r\n");
  t.is(reply("HGETALL h", [b("a"), b("1")], 2), "*2\r\n$1\r\na\r\n$1\r\n1\r\n");
  t.is(reply("HRANDFIELD h 5 WITHVALUES", [b("a"), b("1")], 3), "*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n");
  t.is(reply("LPOP l 2", null, 2), "*-1\r\n");
  t.is(reply("LPOP l", null, 2), "$-1\r\n");
  t.is(reply("GEOPOS g a x", [[b("1.5"), b("2")], null], 2), "*2\r\n*2\r\n$3\r\n1.5\r\n$1\r\n2\r\n*-1\r\n");
  t.is(reply("GEOPOS g a x", [[b("1.5"), b("2")], null], 3), "*2\r\n*2\r\n,1.5\r\n,2\r\n_\r\n");
  t.is(reply("XREAD STREAMS x 0", [[b("x"), [[b("1-1"), [b("f"), b("v")]]]]], 3), "%1\r\n$1\r\nx\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
  t.is(reply("XREAD STREAMS x 0", null, 2), "*-1\r\n");
});

test("an error or an unexpected shape passes through unchanged", (t) => {
  t.is(reply("ZINCRBY s 1 m", { err: "WRONGTYPE Operation against a key holding the wrong kind of value" }, 3), "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
  t.is(reply("ZPOPMIN z 2", [b("a")], 3), "*1\r\n$1\r\na\r\n");
  t.is(reply("HGETALL h", 3, 3), ":3\r\n");
  t.is(reply("GEORADIUS g 1 2 3 km WITHCOORD", [b("a")], 3), "*1\r\n$1\r\na\r\n");
});

test("EXEC: each queued command's reply in its own shape; a WATCH abort is a null array", (t) => {
  const queued = [args("ZINCRBY z 1 a"), args("LPOP l 2"), args("SMEMBERS s"), args("GET k")];
  const value: ReplyValue = [b("2"), null, [b("1")], null];
  t.is(encodeResp(execReply(queued, value, 3), 3).toString("latin1"), "*4\r\n,2\r\n_\r\n~1\r\n$1\r\n1\r\n_\r\n");
  t.is(encodeResp(execReply(queued, value, 2), 2).toString("latin1"), "*4\r\n$1\r\n2\r\n*-1\r\n*1\r\n$1\r\n1\r\n$-1\r\n");
  t.is(encodeResp(execReply(queued, null, 2), 2).toString("latin1"), "*-1\r\n");
  t.is(encodeResp(execReply(queued, null, 3), 3).toString("latin1"), "_\r\n");
  // A count that does not match the queue: RESP2's shape, not a guess.
  t.is(encodeResp(execReply(queued, [b("2")], 3), 3).toString("latin1"), "*1\r\n$1\r\n2\r\n");
});

/** Pub/sub at the front door, pure: Redis's glob matcher, subscriptions and frames, subscribed mode, output bounds. */
import test from "ava";
import { ConnectionState } from "../../src/frontdoor/connection_state.js";
import { globMatch } from "../../src/frontdoor/glob.js";
import { answerLocal, type LocalContext } from "../../src/frontdoor/local_commands.js";
import { OutputLimit, parsePubSub, PubSubIndex, Subscriptions, type PushFrame } from "../../src/frontdoor/pubsub.js";
import { route } from "../../src/frontdoor/router.js";
import { parsePubSubMessage } from "../../src/protocol/messages.js";
import { encode, decode } from "../../src/protocol/codec.js";
import { QjmError } from "../../src/protocol/errors.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const args = (...a: string[]): Buffer[] => a.map(b);
const text = (f: PushFrame, protocol: 2 | 3 = 2): string => f.bytes(protocol).toString("latin1");

test("glob: Redis 7.0's stringmatchlen, rule for rule", (t) => {
  const cases: [string, string, boolean][] = [
    ["*", "anything", true],
    ["*", "", false], // Redis 7.0.15: a `*` pattern does not match the empty channel (checked against redis-server)
    ["", "", true],
    ["", "a", false],
    ["news.*", "news.sport", true],
    ["news.*", "news.", true],
    ["news.*", "news", false],
    ["h?llo", "hello", true],
    ["h?llo", "hllo", false],
    ["h*llo", "hllo", true],
    ["h*llo", "heeeello", true],
    ["h[ae]llo", "hallo", true],
    ["h[ae]llo", "hillo", false],
    ["h[^e]llo", "hallo", true],
    ["h[^e]llo", "hello", false],
    ["h[a-b]llo", "hbllo", true],
    ["h[b-a]llo", "hallo", true], // a range's ends in either order
    ["h[a-b]llo", "hcllo", false],
    ["[\\]]", "]", true],
    ["[]", "]", false],
    ["[ab", "a", true], // a class the pattern ends inside holds what was read
    ["[ab", "b", true],
    ["[", "[", false],
    ["[^", "x", true],
    ["\\*", "*", true],
    ["\\*", "a", false],
    ["a\\", "a\\", true], // a trailing backslash is itself
    ["**a**", "xxa", true],
    ["a*b*c", "abxc", true],
    ["a*b*c", "acb", false],
    ["?", "\xff", true],
    ["[a-\xff]", "a", true], // range ends as C's signed chars: -1..97
    ["[a-\xff]", "b", false],
    ["[\x80-\xff]", "\x90", true],
    ["Hello", "hello", false],
  ];
  for (const [p, s, want] of cases) t.is(globMatch(b(p), b(s)), want, `${JSON.stringify(p)} ~ ${JSON.stringify(s)}`);
});

test("glob: abusive patterns stay cheap (Redis's skip of longer matches), and 1000+ nested stars never match", (t) => {
  const subject = b("a".repeat(20_000));
  const started = Date.now();
  t.false(globMatch(b("a*a*a*a*a*a*a*a*a*a*b"), subject));
  t.true(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
  t.true(globMatch(b("a*".repeat(999)), b("a".repeat(1000))));
  t.false(globMatch(b("a*".repeat(1001) + "b"), b("a".repeat(1100) + "b")));
});

function hub(max = 100): { index: PubSubIndex<string>; conns: Map<string, Subscriptions>; got: Map<string, string[]> } {
  return { index: new PubSubIndex<string>({ perConnection: max }), conns: new Map(), got: new Map() };
}

test("subscriptions: confirmations with Redis's counts (channels and patterns together, shard channels apart)", (t) => {
  const { index } = hub();
  const own = new Subscriptions();
  const sub = index.subscribe("c1", own, "channel", args("a", "b", "a"));
  t.true("frames" in sub);
  if (!("frames" in sub)) return;
  t.deepEqual(sub.frames.map((f) => text(f)), [
    "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
    "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
    "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n",
  ]);
  t.is(text(sub.frames[0], 3), ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n", "RESP3: a push frame");
  const p = index.subscribe("c1", own, "pattern", args("n.*"));
  t.is("frames" in p ? text(p.frames[0]) : "", "*3\r\n$10\r\npsubscribe\r\n$3\r\nn.*\r\n:3\r\n");
  const sh = index.subscribe("c1", own, "shard", args("s"));
  t.is("frames" in sh ? text(sh.frames[0]) : "", "*3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n", "shard channels count apart");
  t.is(own.total, 4);
  // UNSUBSCRIBE without names: every channel, one frame each; then none held: one frame with a nil name.
  t.deepEqual(index.unsubscribe("c1", own, "channel", []).map((f) => text(f)), [
    "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n",
    "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n",
  ]);
  t.deepEqual(index.unsubscribe("c1", own, "channel", []).map((f) => text(f)), ["*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:1\r\n"]);
  t.deepEqual(index.unsubscribe("c1", own, "channel", args("zz")).map((f) => text(f)), ["*3\r\n$11\r\nunsubscribe\r\n$2\r\nzz\r\n:1\r\n"], "a channel not held: its frame anyway");
  t.deepEqual(index.unsubscribe("c1", own, "pattern", []).map((f) => text(f)), ["*3\r\n$12\r\npunsubscribe\r\n$3\r\nn.*\r\n:0\r\n"]);
  t.deepEqual(index.unsubscribe("c1", own, "shard", []).map((f) => text(f)), ["*3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n"]);
  t.is(own.total, 0);
  t.is(index.channelCount + index.patternCount, 0, "the door's index is empty again");
});

test("delivery: once per matching subscription (message and pmessage both), shard channels apart, binary names", (t) => {
  const index = new PubSubIndex<string>({ perConnection: 100 });
  const a = new Subscriptions();
  const c = new Subscriptions();
  index.subscribe("A", a, "channel", [b("news.sport"), b("\x00\xff")]);
  index.subscribe("A", a, "pattern", args("news.*", "*.sport", "other.*"));
  index.subscribe("C", c, "pattern", args("news.*"));
  index.subscribe("C", c, "shard", args("news.sport"));
  const got: string[] = [];
  const send = (s: string, f: PushFrame): void => void got.push(`${s} ${JSON.stringify(f.items.map((i) => (i.type === "bulk" ? i.value?.toString("latin1") : "?")))}`);
  t.is(index.deliver(false, b("news.sport"), b("goal"), send), 4, "PUBLISH's count: every subscription reached");
  t.deepEqual(got, [
    `A ["message","news.sport","goal"]`,
    `A ["pmessage","news.*","news.sport","goal"]`,
    `C ["pmessage","news.*","news.sport","goal"]`,
    `A ["pmessage","*.sport","news.sport","goal"]`,
  ]);
  got.length = 0;
  t.is(index.deliver(true, b("news.sport"), b("x"), send), 1, "SPUBLISH reaches the shard channel only");
  t.deepEqual(got, [`C ["smessage","news.sport","x"]`]);
  got.length = 0;
  t.is(index.deliver(false, b("\x00\xff"), b("\r\n"), send), 1);
  t.is(index.deliver(false, b("nobody"), b("x"), send), 0);
  t.deepEqual(index.channels(false, null).map((n) => n.toString("latin1")), ["news.sport", "\x00\xff"]);
  t.deepEqual(index.channels(false, b("news.*")).map((n) => n.toString("latin1")), ["news.sport"]);
  t.deepEqual(index.channels(true, null).map((n) => n.toString("latin1")), ["news.sport"]);
  t.deepEqual(index.numsub(false, args("news.sport", "nobody")), [1, 0]);
  t.is(index.patternCount, 3, "NUMPAT: distinct patterns");
  index.drop("A", a);
  t.is(a.total, 0);
  t.is(index.deliver(false, b("news.sport"), b("x"), () => {}), 1, "only C's pattern is left");
  t.is(index.patternCount, 1);
});

test("bounds: a SUBSCRIBE past respPubsubSubscriptionsMax is refused whole; re-subscribing a held name costs nothing", (t) => {
  const index = new PubSubIndex<string>({ perConnection: 3 });
  const own = new Subscriptions();
  t.true("frames" in index.subscribe("c", own, "channel", args("a", "b")));
  const over = index.subscribe("c", own, "pattern", args("p1", "p2"));
  t.true("error" in over);
  if ("error" in over) t.regex(over.error.type === "error" ? over.error.value : "", /at most 3 subscriptions .*respPubsubSubscriptionsMax.*holds 2/);
  t.is(own.total, 2, "nothing of the refused command was subscribed");
  t.true("frames" in index.subscribe("c", own, "channel", args("a", "b", "c")));
  t.is(own.total, 3);
  // The door's total over its connections.
  const door = new PubSubIndex<string>({ perConnection: 3, total: 4 });
  const x = new Subscriptions();
  const y = new Subscriptions();
  t.true("frames" in door.subscribe("x", x, "channel", args("a", "b", "c")));
  t.true("frames" in door.subscribe("y", y, "pattern", args("a")));
  const full = door.subscribe("y", y, "channel", args("a"));
  t.regex("error" in full && full.error.type === "error" ? full.error.value : "", /holds 4 subscriptions over all its connections, at most 4 \(respPubsubSubscriptionsTotalMax\)/);
  door.drop("x", x);
  t.is(door.subscriptions, 1);
  t.true("frames" in door.subscribe("y", y, "channel", args("a")));
});

test("bounds in bytes: a SUBSCRIBE whose names pass respPubsubNameBytesMax (per connection) or respPubsubNameBytesTotalMax (per door) is refused whole", (t) => {
  const message = (o: ReturnType<PubSubIndex<string>["subscribe"]>): string => ("error" in o && o.error.type === "error" ? o.error.value : "");
  const index = new PubSubIndex<string>({ perConnection: 1000, perConnectionBytes: 100, totalBytes: 150 });
  const x = new Subscriptions();
  // 3 names of 30 bytes: 90; a held name costs nothing again; a name counts once per kind it is subscribed as.
  t.true("frames" in index.subscribe("x", x, "channel", [b("a".repeat(30)), b("b".repeat(30)), b("c".repeat(30))]));
  t.true("frames" in index.subscribe("x", x, "channel", [b("a".repeat(30))]));
  t.is(x.bytes, 90);
  const long = index.subscribe("x", x, "pattern", [b("p".repeat(5)), b("q".repeat(6))]);
  t.regex(message(long), /^ERR qjm: a connection may hold names of at most 100 bytes in all .*respPubsubNameBytesMax.*it holds 90, this command adds 11/);
  t.is(x.total, 3, "nothing of the refused command was subscribed");
  t.true("frames" in index.subscribe("x", x, "shard", [b("s".repeat(10))]), "exactly at the bound");
  t.is(x.bytes, 100);
  // The door's bytes over all its connections.
  const y = new Subscriptions();
  t.true("frames" in index.subscribe("y", y, "channel", [b("a".repeat(30)), b("y".repeat(20))]));
  t.is(index.subscribedBytes, 150);
  t.regex(message(index.subscribe("y", y, "pattern", [b("z")])), /front door holds 150 bytes of subscribed names over all its connections, at most 150 \(respPubsubNameBytesTotalMax\); this command adds 1/);
  // Unsubscribing and closing give the bytes back.
  index.unsubscribe("x", x, "channel", [b("b".repeat(30))]);
  t.is(x.bytes, 70);
  t.is(index.subscribedBytes, 120);
  index.drop("y", y);
  t.is(y.bytes, 0);
  t.is(index.subscribedBytes, 70);
  index.unsubscribe("x", x, "channel", []);
  t.is(x.bytes, 10, "the shard channel is left");
  t.true("frames" in index.subscribe("y", y, "pattern", [b("z".repeat(90))]));
});

test("subscribed mode (RESP2): only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT, RESET; PING answers [pong, arg]; RESP3 serves everything", (t) => {
  const ctx = { commands: undefined, authenticated: true, protocol: 2 as const, subscriptions: 1 };
  const refusal = (a: Buffer[], c: Parameters<typeof route>[1] = ctx): string => {
    const r = route(a, c);
    return r.kind === "refuse" ? r.error : r.kind;
  };
  t.is(refusal(args("SET", "k", "v")), "LOADING qjm: the node is starting, its command table is not read yet", "the table's errors first (here: none yet)");
  t.is(refusal(args("ECHO", "x")), "ERR Can't execute 'echo': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
  t.is(refusal(args("PUBLISH", "c", "m")), "ERR Can't execute 'publish': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
  t.is(refusal(args("PUBSUB", "CHANNELS")), "ERR Can't execute 'pubsub|channels': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
  t.is(refusal(args("PUBLISH", "c")), "ERR wrong number of arguments for 'publish' command", "arity before the subscribed-mode check, as Redis");
  for (const c of ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"]) t.is(refusal(args(c, "x")), "pubsub", c);
  t.is(refusal(args("PING")), "local");
  t.is(refusal(args("QUIT")), "local");
  t.is(refusal(args("RESET")), "local");
  t.is(refusal(args("ECHO", "x"), { ...ctx, protocol: 3 }), "local", "RESP3: any command while subscribed");
  t.is(refusal(args("ECHO", "x"), { ...ctx, subscriptions: 0 }), "local");
  // PING: RESP2 subscribed answers an array; otherwise PONG.
  const state = new ConnectionState(1, "a", "b", 0, false);
  const local: LocalContext = { password: "", redisVersion: "7.0.15", role: () => "master", self: { state: new ConnectionState(1, "a", "b", 0, false), inFlight: 0, kill: () => {} }, clients: () => [], nowMs: 0 };
  state.pubsub.channels.set("c", b("c"));
  t.deepEqual(answerLocal("ping", args("PING"), state, local), { reply: { type: "array", items: [{ type: "bulk", value: b("pong") }, { type: "bulk", value: b("") }] } });
  t.deepEqual(answerLocal("ping", args("PING", "hi"), state, local), { reply: { type: "array", items: [{ type: "bulk", value: b("pong") }, { type: "bulk", value: b("hi") }] } });
  state.protocol = 3;
  t.deepEqual(answerLocal("ping", args("PING"), state, local), { reply: { type: "simple", value: "PONG" } });
  t.regex(state.infoLine(0, 0), /flags=P db=0 sub=1 psub=0 ssub=0/);
});

test("parsing: PUBSUB's subcommands and their errors", (t) => {
  t.deepEqual(parsePubSub("pubsub", args("PUBSUB", "channels")), { op: "channels", shard: false, pattern: null });
  t.deepEqual(parsePubSub("pubsub", args("PUBSUB", "SHARDCHANNELS", "a*")), { op: "channels", shard: true, pattern: b("a*") });
  t.deepEqual(parsePubSub("pubsub", args("PUBSUB", "numsub")), { op: "numsub", shard: false, names: [] });
  t.deepEqual(parsePubSub("pubsub", args("PUBSUB", "numpat")), { op: "numpat" });
  t.deepEqual(parsePubSub("pubsub", args("PUBSUB", "channels", "a", "b")), { op: "error", error: { type: "error", value: "ERR wrong number of arguments for 'pubsub|channels' command" } });
  t.deepEqual(parsePubSub("pubsub", args("PUBSUB", "nope")), { op: "error", error: { type: "error", value: "ERR unknown subcommand 'nope'. Try PUBSUB HELP." } });
  t.deepEqual(parsePubSub("spublish", args("SPUBLISH", "c", "m")), { op: "publish", shard: true, channel: b("c"), message: b("m") });
  t.deepEqual(parsePubSub("punsubscribe", args("PUNSUBSCRIBE")), { op: "unsubscribe", kind: "pattern", names: [] });
});

test("output bound of a subscriber: the hard limit at once, the soft one after its time, reset once below", (t) => {
  const limit = new OutputLimit(100, 10, 1000);
  t.is(limit.check(5, 0), null);
  t.is(limit.check(50, 0), null, "above soft: the clock starts");
  t.is(limit.check(50, 999), null);
  t.is(limit.check(5, 1000), null, "below soft again: the clock stops");
  t.is(limit.check(50, 1500), null);
  t.regex(limit.check(50, 2500) ?? "", /over the soft bound 10 for 1000 ms/);
  t.regex(new OutputLimit(100, 10, 1000).check(101, 0) ?? "", /over the hard bound 100/);
});

test("a message off the bus: well-formed ones parse; forged or garbled ones are a BAD_REQUEST, never a crash", (t) => {
  const ok = parsePubSubMessage(decode(encode({ channel: b("c"), message: b("m") })));
  t.deepEqual({ ...ok, channel: Buffer.from(ok.channel), message: Buffer.from(ok.message) }, { shard: false, channel: b("c"), message: b("m") });
  t.true(parsePubSubMessage(decode(encode({ shard: true, channel: b(""), message: b("") }))).shard);
  const bad: unknown[] = [
    null,
    "PUBLISH c m",
    [1, 2],
    { channel: "c", message: b("m") }, // a string, not bytes
    { channel: b("c") },
    { channel: b("c"), message: b("m"), shard: "yes" },
    { channel: b("c"), message: b("m"), from: "d1" }, // an unknown key
  ];
  for (const v of bad) t.throws(() => parsePubSubMessage(v), { instanceOf: QjmError }, JSON.stringify(v));
});

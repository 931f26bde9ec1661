/**
 * s24: a large write is cheap on the master's loop — the front door forwards a command as its RESP bytes (one buffer,
 * `{ resp }`, checked strictly by the master and sent to Redis as is), the door reads header numbers without a
 * string and a BigInt each, the master decodes client writes off the bus within a turn budget, the door holds only
 * what a reply's shape needs of a command's arguments until it commits, and records are packed without msgpackr's walk
 * (the same bytes).
 */
import test from "ava";
import { Packr } from "msgpackr";
import { INT64_AUTO } from "../../src/protocol/codec.js";
import { PAYLOAD_V2, decodeRecordPayload, encodeEffects, encodeWriteRecord } from "../../src/segment/record.js";
import { budgeted, serveAll, type NatsConnection } from "../../src/nats/bus.js";
import { ErrorCode, QjmError } from "../../src/protocol/errors.js";
import { encode, decode } from "../../src/protocol/codec.js";
import { commandOfResp, parseWriteRequest } from "../../src/protocol/messages.js";
import { encodeCommand } from "../../src/redis/resp_parser.js";
import { headerNumber, string2ll } from "../../src/frontdoor/request_framing.js";
import { replyArgs } from "../../src/frontdoor/reply_shapes.js";
import { TurnBudget } from "../../src/util/turn_budget.js";
import { prng, testSeed } from "../helpers/prng.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");

test("a command's RESP bytes give back its arguments, as views of the one buffer", (t) => {
  const seed = testSeed(2424);
  const rnd = prng(seed);
  for (let round = 0; round < 200; round++) {
    const args = Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256))));
    const resp = encodeCommand(args);
    const got = commandOfResp(resp);
    t.deepEqual(got.map((a) => a.toString("hex")), args.map((a) => a.toString("hex")), `seed ${seed} round ${round}`);
    for (const a of got) t.is(a.buffer, resp.buffer, "a view, not a copy");
  }
  const big = Array.from({ length: 10_000 }, (_, j) => b(`e${j}`));
  t.is(commandOfResp(encodeCommand([b("RPUSH"), b("k"), ...big])).length, 10_002);
});

test("bytes that are not exactly one RESP command are a BAD_REQUEST, never a crash", (t) => {
  const hostile = [
    "",
    "*",
    "*0\r\n",
    "*1\r\n",
    "*-1\r\n",
    "*1\r\n$3\r\nSET",
    "*1\r\n$3\r\nSETX\r\n",
    "*1\r\n$3\r\nSET\r\n$3\r\nfoo\r\n",
    "*1\r\n$3\r\nSET\r\nextra",
    "*2\r\n$3\r\nSET\r\n",
    "*01\r\n$3\r\nSET\r\n",
    "*1\r\n$03\r\nSET\r\n",
    "*1\r\n$-3\r\nSET\r\n",
    "*1\r\n+SET\r\n",
    "*1\r\n:3\r\n",
    "*1\r$3\r\nSET\r\n",
    "*1\r\n$3\rnSET\r\n",
    "*1\r\n$3\r\nSET\n\n",
    "*1 \r\n$3\r\nSET\r\n",
    "*99999999999999999999\r\n$3\r\nSET\r\n",
    "*1000000\r\n$3\r\nSET\r\n",
    "*1\r\n$99999999999\r\nSET\r\n",
    "SET a b\r\n",
    "$3\r\nSET\r\n",
  ];
  for (const text of hostile) {
    const err = t.throws(() => commandOfResp(b(text)), { instanceOf: QjmError }, JSON.stringify(text));
    t.is(err?.code, ErrorCode.BAD_REQUEST, JSON.stringify(text));
  }
  // Whatever bytes: a typed error or a command, nothing else.
  const seed = testSeed(2424);
  const rnd = prng(seed);
  const good = encodeCommand([b("SET"), b("key"), b("value")]);
  for (let round = 0; round < 2000; round++) {
    const bytes = Buffer.from(good);
    for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
    try {
      const args = commandOfResp(bytes);
      t.true(args.length >= 1, `seed ${seed} round ${round}`);
    } catch (err) {
      t.true(err instanceof QjmError && err.code === ErrorCode.BAD_REQUEST, `seed ${seed} round ${round}: ${String(err)}`);
    }
  }
});

test("a write map { resp, id } off the bus: its command and its bytes; other keys and types refused", (t) => {
  const resp = encodeCommand([b("RPUSH"), b("list"), b("a"), b("b")]);
  const w = parseWriteRequest(decode(encode({ resp, id: { client: "door-1", seq: 7 } })));
  t.deepEqual(w.args.map((a) => a.toString()), ["RPUSH", "list", "a", "b"]);
  t.deepEqual(w.resp, resp);
  t.deepEqual(w.id, { client: "door-1", seq: 7 });
  t.is(w.tx, null);
  t.is(parseWriteRequest({ args: ["SET", "a", "b"] }).resp, null, "the args form has no bytes");
  for (const body of [{ resp: "*1\r\n$4\r\nPING\r\n" }, { resp, args: ["SET"] }, { resp, tx: [] }, { resp: 5 }, { resp: null }, { resp: b("*1\r\n$4\r\nPING\r\n\r\n") }]) {
    const err = t.throws(() => parseWriteRequest(body), { instanceOf: QjmError }, JSON.stringify(body));
    t.is(err?.code, ErrorCode.BAD_REQUEST);
  }
});

test("the door's header numbers are Redis's string2ll, without a string per header", (t) => {
  const cases = ["0", "1", "9", "10", "-1", "-0", "00", "01", "-01", "-", "", "+1", " 1", "1 ", "1a", "123456789012345", "1234567890123456", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "99999999999999999999", "3\u0000"];
  const seed = testSeed(2424);
  const rnd = prng(seed);
  const alphabet = "0123456789-+ a";
  for (let i = 0; i < 3000; i++) cases.push(Array.from({ length: Math.floor(rnd() * 22) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join(""));
  for (const text of cases) {
    const buf = b(`x${text}y`);
    const want = string2ll(buf, 1, 1 + text.length);
    t.is(headerNumber(buf, 1, 1 + text.length), want === null ? null : Number(want), `${JSON.stringify(text)} (seed ${seed})`);
  }
});

test("bus requests within a turn budget: run in arrival order, the rest in later turns", (t) => {
  const clock = { now: 0 };
  const turns: (() => void)[] = [];
  const budget = new TurnBudget(5, () => clock.now, (fn) => turns.push(fn));
  const admit0 = budgeted(budget, 1000);
  const admit = (run: () => void): void => admit0(10, run);
  const ran: number[] = [];
  const request = (n: number, costMs: number) => () => {
    ran.push(n);
    clock.now += costMs;
  };
  admit(request(1, 3));
  admit(request(2, 3));
  admit(request(3, 3));
  admit(request(4, 0));
  t.deepEqual(ran, [1, 2], "the third waits: the turn's 5 ms are spent");
  t.is(turns.length, 1);
  turns.shift()!();
  t.deepEqual(ran, [1, 2, 3, 4], "in order, in the next turn");
  admit(request(5, 1));
  t.is(turns.length, 1, "a fresh turn");
  t.deepEqual(ran, [1, 2, 3, 4, 5]);
  // While requests wait, a new one queues behind them even in a fresh turn (arrival order is kept).
  clock.now += 10;
  admit(request(6, 0));
  t.deepEqual(ran, [1, 2, 3, 4, 5], "the turn that ran 5 is spent");
  turns.shift()!();
  t.deepEqual(ran, [1, 2, 3, 4, 5, 6]);
});

test("requests on several subjects served by one intake keep their arrival order across subjects (a write switched to the master's own subject cannot overtake one deferred on the queue group's)", (t) => {
  const clock = { now: 0 };
  const turns: (() => void)[] = [];
  const budget = new TurnBudget(5, () => clock.now, (fn) => turns.push(fn));
  // Only what serveAll uses of a connection: its subscriptions' callbacks, called here in "socket order".
  const callbacks: ((err: Error | null, msg: unknown) => void)[] = [];
  const nc = { subscribe: (_subject: string, o: { callback: (err: Error | null, msg: unknown) => void }) => (callbacks.push(o.callback), { unsubscribe() {} }) };
  const ran: number[] = [];
  const log = { debug() {}, warn() {}, error() {} } as unknown as Parameters<typeof serveAll>[2];
  // Each request spends a whole turn's share: a turn runs one step per parked FIFO. With a FIFO per subject, the
  // turn after this would run 2 (the queue group's) and then 4 (the direct subject's), before 3.
  serveAll(nc as unknown as NatsConnection, [{ subject: "w", queue: "masters" }, { subject: "w.d2" }], log, (body) => {
    ran.push(body as number);
    clock.now += 6;
  }, { budget, deferredBytesMax: 1000 });
  const deliver = (sub: number, n: number): void => callbacks[sub](null, { subject: sub === 0 ? "w" : "w.d2", data: encode(n), headers: undefined, reply: undefined });
  deliver(0, 1);
  deliver(0, 2);
  deliver(0, 3);
  deliver(1, 4);
  t.deepEqual(ran, [1], "2, 3 and 4 wait: the turn's share is spent");
  for (let turn = 0; turns.length > 0 && turn < 10; turn++) turns.shift()!();
  t.deepEqual(ran, [1, 2, 3, 4], "arrival order, whichever subject");
});

test("bus requests deferred past the turn budget hold at most their byte bound: past it, every one waiting runs, in order, then the new one", (t) => {
  // Without the bound a flood kept arriving while the budget deferred it: the FIFO grew without limit (s24 review).
  const clock = { now: 0 };
  const turns: (() => void)[] = [];
  const budget = new TurnBudget(5, () => clock.now, (fn) => turns.push(fn));
  const admit = budgeted(budget, 100);
  const ran: number[] = [];
  const request = (n: number) => () => {
    ran.push(n);
    clock.now += 5;
  };
  admit(40, request(1));
  admit(40, request(2));
  admit(40, request(3));
  t.deepEqual(ran, [1], "2 and 3 wait: 80 bytes");
  admit(40, request(4));
  t.deepEqual(ran, [1, 2, 3, 4], "120 bytes would wait: all run now, in arrival order");
  admit(40, request(5));
  t.deepEqual(ran, [1, 2, 3, 4], "a fresh FIFO");
  for (let i = 0; i < 5 && turns.length > 0; i++) turns.shift()!();
  t.deepEqual(ran, [1, 2, 3, 4, 5], "no request twice, none lost");
});

test("the door holds a write's arguments for its reply only when the reply's shape depends on them", (t) => {
  const rpush = [b("RPUSH"), b("k"), ...Array.from({ length: 100 }, (_, i) => b(`m${i}`))];
  t.deepEqual(replyArgs(rpush), [rpush[0]]);
  const zpop = [b("zpopmin"), b("z"), b("2")];
  t.is(replyArgs(zpop), zpop);
  const one = [b("FLUSHALL")];
  t.is(replyArgs(one), one);
});

test("records are encoded byte for byte as msgpackr packed them (the journal's format is unchanged)", (t) => {
  const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true, int64AsType: INT64_AUTO });
  const seed = testSeed(2424);
  const rnd = prng(seed);
  const sizes = [0, 1, 31, 32, 255, 256, 65535, 65536];
  const counts = [1, 15, 16, 17, 65535, 65536];
  const arg = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const cases: Uint8Array[][][] = [[], [[arg(3)]], sizes.map((n) => [arg(n), new Uint8Array(arg(n))])];
  for (const n of counts) cases.push([Array.from({ length: n }, () => arg(Math.floor(rnd() * 4)))]);
  cases.push(Array.from({ length: 16 }, () => [arg(2)]), Array.from({ length: 70_000 }, () => [arg(1)]));
  for (let i = 0; i < 50; i++) cases.push(Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => Array.from({ length: 1 + Math.floor(rnd() * 40) }, () => arg(Math.floor(rnd() * 300)))));
  const write = { id: { client: "door-1", seq: 9 }, reply: { ok: true as const, value: 3 } };
  for (const [i, effects] of cases.entries()) {
    t.true(Buffer.from(encodeEffects(effects)).equals(Buffer.from(packr.pack(effects))), `case ${i} (seed ${seed}): effects`);
    const { payload } = encodeWriteRecord(effects, write, 1024);
    const expected = packr.pack({ v: PAYLOAD_V2, e: effects, w: { c: "door-1", s: 9, r: 3 } });
    t.true(Buffer.from(payload).equals(Buffer.from(expected)), `case ${i} (seed ${seed}): v2 payload`);
  }
  // An argument msgpackr packs otherwise (not a byte string) is left to msgpackr.
  const odd = [[Buffer.from("SET"), "k" as unknown as Uint8Array]];
  t.true(Buffer.from(encodeEffects(odd)).equals(Buffer.from(packr.pack(odd))));
  t.deepEqual(decodeRecordPayload(encodeWriteRecord([[b("RPUSH"), b("k"), b("v")]], write, 1024).payload).effects.map((e) => e.map((a) => Buffer.from(a).toString())), [["RPUSH", "k", "v"]]);
});

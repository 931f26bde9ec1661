import test from "ava";
import { ReplyOutbox, Reassembler, formatFragHeader, parseFragHeader, parsePullHeader, splitBody, type FragmentLimits } from "../../src/nats/fragments.js";
import { ErrorCode, QjmError } from "../../src/protocol/errors.js";

const limits: FragmentLimits = { busMessageBytesMax: 1000, busReassemblyBytesMax: 1500, busReassemblyStreamsMax: 2, busFragmentIdleMs: 100 };

function body(n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => i % 251));
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof QjmError) return e.code;
    throw e;
  }
  return undefined;
}

test("fragments - splitBody slices a body into at most `size` bytes each, in order", (t) => {
  const b = body(25);
  const parts = splitBody(b, 10);
  t.deepEqual(parts.map((p) => p.length), [10, 10, 5]);
  t.deepEqual(Buffer.concat(parts), b);
  t.deepEqual(splitBody(b, 25).length, 1);
});

test("fragments - headers round-trip; malformed or inconsistent ones are BAD_REQUEST, never a crash", (t) => {
  const h = { stream: "ab12-7", index: 1, count: 3, total: 25 };
  t.deepEqual(parseFragHeader(formatFragHeader(h)), h);
  t.deepEqual(parsePullHeader("ab12-7 2"), { stream: "ab12-7", index: 2 });
  for (const bad of ["", "x", "s 0 1 10", "s 3 3 10", "s 0 3 2", "s -1 3 10", "s 0 3 1e9", "s.x 0 2 10", "s 0 2 10 extra", "s 0 2 99999999999999999"]) {
    t.is(code(() => parseFragHeader(bad)), ErrorCode.BAD_REQUEST, bad);
  }
  for (const bad of ["", "s", "s 0", "s x", "s 1 2"]) t.is(code(() => parsePullHeader(bad)), ErrorCode.BAD_REQUEST, bad);
});

test("fragments - the reassembler puts a body back together from its fragments, in order", (t) => {
  const r = new Reassembler(limits);
  const b = body(900);
  const parts = splitBody(b, 400);
  const got = parts.map((p, index) => r.add({ stream: "s", index, count: parts.length, total: b.length }, p, 0));
  t.deepEqual(got.slice(0, -1), [null, null]);
  t.deepEqual(Buffer.from(got.at(-1)!), b);
  t.is(r.streamCount, 0);
  t.is(r.reservedBytes, 0);
});

test("fragments - a body over busMessageBytesMax is PAYLOAD_TOO_LARGE at its first fragment", (t) => {
  const r = new Reassembler(limits);
  t.is(code(() => r.add({ stream: "s", index: 0, count: 2, total: 1001 }, body(10), 0)), ErrorCode.PAYLOAD_TOO_LARGE);
  t.is(r.reservedBytes, 0);
});

test("fragments - streams and bytes held at once are bounded: OVERLOADED past them; idle streams expire", (t) => {
  const r = new Reassembler(limits);
  t.is(r.add({ stream: "a", index: 0, count: 2, total: 800 }, body(10), 0), null);
  // 800 + 800 > 1500 bytes reserved: refused, whatever the fragment itself holds.
  t.is(code(() => r.add({ stream: "b", index: 0, count: 2, total: 800 }, body(10), 0)), ErrorCode.OVERLOADED);
  t.is(r.add({ stream: "c", index: 0, count: 2, total: 100 }, body(10), 0), null);
  t.is(code(() => r.add({ stream: "d", index: 0, count: 2, total: 10 }, body(5), 0)), ErrorCode.OVERLOADED, "two streams at most");
  t.is(r.streamCount, 2);
  // Past busFragmentIdleMs both are forgotten: a sender that died does not hold memory.
  t.is(r.add({ stream: "d", index: 0, count: 2, total: 10 }, body(5), 500), null);
  t.is(r.streamCount, 1);
  t.is(r.reservedBytes, 10);
  t.is(code(() => r.add({ stream: "a", index: 1, count: 2, total: 800 }, body(790), 500)), ErrorCode.BAD_REQUEST, "expired");
});

test("fragments - a forged stream (gaps, repeats, changed sizes, too many bytes, too few) is refused and dropped", (t) => {
  const cases: { name: string; frags: [number, number, number, number][] }[] = [
    { name: "gap", frags: [[0, 3, 30, 10], [2, 3, 30, 10]] },
    { name: "repeat", frags: [[0, 3, 30, 10], [0 + 1, 3, 30, 10], [1, 3, 30, 10]] },
    { name: "count changes", frags: [[0, 3, 30, 10], [1, 4, 30, 10]] },
    { name: "total changes", frags: [[0, 3, 30, 10], [1, 3, 40, 10]] },
    { name: "more bytes than total", frags: [[0, 2, 30, 10], [1, 2, 30, 25]] },
    { name: "fewer bytes than total", frags: [[0, 2, 30, 10], [1, 2, 30, 5]] },
    { name: "no first fragment", frags: [[1, 2, 30, 10]] },
  ];
  for (const c of cases) {
    const r = new Reassembler(limits);
    let refused: string | undefined;
    for (const [index, count, total, n] of c.frags) {
      refused = code(() => r.add({ stream: "s", index, count, total }, body(n), 0));
      if (refused !== undefined) break;
    }
    t.is(refused, ErrorCode.BAD_REQUEST, c.name);
    t.is(r.streamCount, 0, c.name);
    t.is(r.reservedBytes, 0, c.name);
  }
});

test("fragments - the reply outbox serves the fragments after the first once each, bounded, and forgets idle replies", (t) => {
  const o = new ReplyOutbox(limits);
  const b = body(900);
  const first = o.put("r", b, 400, 0);
  t.deepEqual(first.header, { stream: "r", index: 0, count: 3, total: 900 });
  t.is(o.heldBytes, 900);
  t.is(code(() => o.put("x", body(700), 400, 0)), ErrorCode.OVERLOADED, "900 + 700 bytes held > 1500");
  t.is(code(() => o.put("x", body(1001), 400, 0)), ErrorCode.PAYLOAD_TOO_LARGE);
  const second = o.pull("r", 1, 10);
  const third = o.pull("r", 2, 20);
  t.deepEqual(Buffer.concat([first.data, second.data, third.data]), b);
  t.is(o.size, 0, "forgotten once its last fragment is pulled");
  t.is(code(() => o.pull("r", 2, 20)), ErrorCode.NOT_FOUND);
  o.put("y", body(500), 400, 0);
  t.is(code(() => o.pull("y", 1, 1000)), ErrorCode.NOT_FOUND, "expired");
  t.is(o.heldBytes, 0);
});

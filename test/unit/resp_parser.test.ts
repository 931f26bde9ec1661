import test from "ava";
import { RespParser, RespProtocolError, encodeCommand, type RespFrame, type RespValue } from "../../src/redis/resp_parser.js";

const bulk = (s: string): RespValue => ({ type: "bulk", value: Buffer.from(s) });

/** Parses `input` pushed in the given chunk sizes (cycled) and returns every frame. */
function parseAll(input: Buffer, sizes: number[] = [input.length]): RespFrame[] {
  const parser = new RespParser();
  const frames: RespFrame[] = [];
  let at = 0;
  let i = 0;
  while (at < input.length) {
    const n = Math.max(1, sizes[i++ % sizes.length]);
    parser.push(input.subarray(at, at + n));
    at += n;
    for (let f = parser.next(); f !== undefined; f = parser.next()) frames.push(f);
  }
  return frames;
}

const mixed = Buffer.concat([
  encodeCommand(["SET", "a", "1", "PXAT", "1795859441746"]),
  Buffer.from("+OK\r\n"),
  Buffer.from("-ERR wrong type\r\n"),
  Buffer.from(":-42\r\n"),
  Buffer.from(":0\r\n"),
  Buffer.from("$-1\r\n"),
  Buffer.from("*-1\r\n"),
  Buffer.from("*0\r\n"),
  Buffer.from("$0\r\n\r\n"),
  Buffer.from("*2\r\n*3\r\n:1\r\n$2\r\nhi\r\n*1\r\n+x\r\n$-1\r\n"),
  // A binary bulk holding CR, LF and CRLF: its length, not its content, ends it.
  Buffer.from([0x24, 0x35, 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0xff, 0x0d, 0x0a]),
]);

const expected: RespValue[] = [
  { type: "array", items: [bulk("SET"), bulk("a"), bulk("1"), bulk("PXAT"), bulk("1795859441746")] },
  { type: "simple", value: "OK" },
  { type: "error", value: "ERR wrong type" },
  { type: "integer", value: -42 },
  { type: "integer", value: 0 },
  { type: "bulk", value: null },
  { type: "array", items: null },
  { type: "array", items: [] },
  { type: "bulk", value: Buffer.alloc(0) },
  {
    type: "array",
    items: [
      { type: "array", items: [{ type: "integer", value: 1 }, bulk("hi"), { type: "array", items: [{ type: "simple", value: "x" }] }] },
      { type: "bulk", value: null },
    ],
  },
  { type: "bulk", value: Buffer.from([0x0d, 0x0a, 0x00, 0x0d, 0xff]) },
];

const expectedBytes = [
  encodeCommand(["SET", "a", "1", "PXAT", "1795859441746"]).length,
  5, 17, 6, 4, 5, 5, 4, 6,
  "*2\r\n*3\r\n:1\r\n$2\r\nhi\r\n*1\r\n+x\r\n$-1\r\n".length,
  11,
];

test("parses every type in one chunk and reports each value's byte count", (t) => {
  const frames = parseAll(mixed);
  t.deepEqual(frames.map((f) => f.value), expected);
  t.deepEqual(frames.map((f) => f.bytes), expectedBytes);
  t.is(expectedBytes.reduce((a, b) => a + b, 0), mixed.length);
});

test("a split at every byte boundary yields the same values and byte counts", (t) => {
  for (let cut = 1; cut < mixed.length; cut++) {
    const frames = parseAll(mixed, [cut, mixed.length]);
    t.deepEqual(frames.map((f) => f.value), expected, `split at ${cut}`);
    t.deepEqual(frames.map((f) => f.bytes), expectedBytes, `split at ${cut}`);
  }
});

test("byte-by-byte and odd chunk sizes yield the same values", (t) => {
  for (const sizes of [[1], [2], [3], [7, 1, 13], [64]]) {
    t.deepEqual(parseAll(mixed, sizes).map((f) => f.value), expected, `sizes ${sizes.join(",")}`);
  }
});

test("next returns undefined until a value is complete, and pendingBytes counts its bytes", (t) => {
  const parser = new RespParser();
  const cmd = encodeCommand(["SET", "key", "value"]);
  parser.push(cmd.subarray(0, 10));
  t.is(parser.next(), undefined);
  t.is(parser.pendingBytes, 10);
  parser.push(cmd.subarray(10));
  const frame = parser.next();
  t.is(frame?.bytes, cmd.length);
  t.is(parser.pendingBytes, 0);
  t.is(parser.consumedBytes, cmd.length);
  t.is(parser.next(), undefined);
});

test("large bulk strings across many chunks, and many values through a small buffer", (t) => {
  const big = Buffer.alloc(3 * 1024 * 1024 + 17, 0xab);
  const input = Buffer.concat([encodeCommand(["SET", "k", big]), encodeCommand(["DEL", "k"])]);
  const frames = parseAll(input, [65536, 1, 4093]);
  t.is(frames.length, 2);
  const first = frames[0].value;
  t.true(first.type === "array" && first.items !== null && first.items[2].type === "bulk" && big.equals(first.items[2].value ?? Buffer.alloc(0)));
  t.is(frames[0].bytes + frames[1].bytes, input.length);

  const many = Buffer.concat(Array.from({ length: 20000 }, (_, i) => encodeCommand(["INCR", `counter:${i}`])));
  const got = parseAll(many, [1000, 333]);
  t.is(got.length, 20000);
  t.deepEqual(got[19999].value, { type: "array", items: [bulk("INCR"), bulk("counter:19999")] });
});

function parseError(input: string | Buffer, options?: ConstructorParameters<typeof RespParser>[0]): RespProtocolError {
  const parser = new RespParser(options);
  parser.push(typeof input === "string" ? Buffer.from(input) : input);
  const err = (() => {
    try {
      while (parser.next() !== undefined) {
        /* drain */
      }
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  if (!(err instanceof RespProtocolError)) throw new Error(`expected a RespProtocolError for ${JSON.stringify(String(input))}`);
  return err;
}

test("malformed input throws a malformed RespProtocolError", (t) => {
  for (const bad of ["!3\r\n", "\r\n", "$abc\r\n", "$-2\r\n", "*1x\r\n", ":12a\r\n", ":\r\n", "$3\r\nabcXY", "+OK\rX", "$\r\n"]) {
    const err = parseError(bad);
    t.is(err.reason, "malformed", bad);
    t.is(err.code, "INTERNAL");
  }
});

test("the parser is poisoned after an error", (t) => {
  const parser = new RespParser();
  parser.push(Buffer.from("?\r\n"));
  const first = t.throws(() => parser.next(), { instanceOf: RespProtocolError });
  t.is(t.throws(() => parser.next()), first);
  t.is(t.throws(() => parser.push(Buffer.from("+OK\r\n"))), first);
});

test("oversized lengths are refused before any body arrives", (t) => {
  t.is(parseError(`$${512 * 1024 * 1024 + 1}\r\n`).reason, "limit");
  t.is(parseError("$99999999999999999999999999\r\n").reason, "limit");
  t.is(parseError(`*${1024 * 1024 + 1}\r\n`).reason, "limit");
  t.is(parseError("$11\r\n", { bulkBytesMax: 10 }).reason, "limit");
  t.is(parseError(":9007199254740993\r\n").reason, "limit");
  t.is(parseError("*1\r\n".repeat(70)).reason, "limit");
  // A line that never ends is bounded too.
  t.is(parseError("+" + "x".repeat(100), { lineBytesMax: 64 }).reason, "limit");
  // The largest accepted lengths are not refused (the body simply has not arrived).
  const parser = new RespParser();
  parser.push(Buffer.from(`$${512 * 1024 * 1024}\r\n*${1024 * 1024}\r\n`));
  t.is(parser.next(), undefined);
});

test("encodeCommand writes exactly RESP's bulk strings: UTF-8 strings, byte views with an offset, empty and large arguments", (t) => {
  const backing = Buffer.from("xxbinary\u0000\r\nbytesyy");
  const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, backing.length - 4);
  const large = "v".repeat(70_000);
  const args = ["SET", "ké€y😀", view, "", Buffer.from([0xff, 0x00]), large];
  const expectedBytes = Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.flatMap((a) => {
      const body = typeof a === "string" ? Buffer.from(a, "utf8") : Buffer.from(a);
      return [Buffer.from(`$${body.length}\r\n`), body, Buffer.from("\r\n")];
    }),
  ]);
  t.deepEqual(encodeCommand(args), expectedBytes);
  t.deepEqual(encodeCommand([]), Buffer.from("*0\r\n"));
  // A lone surrogate is encoded as U+FFFD, as Buffer.from does, and counted so.
  t.deepEqual(encodeCommand(["a\ud800b"]), Buffer.from(`*1\r\n$5\r\na\ufffdb\r\n`));
  const parser = new RespParser();
  parser.push(encodeCommand(args));
  const frame = parser.next();
  t.is(frame?.bytes, expectedBytes.length);
});

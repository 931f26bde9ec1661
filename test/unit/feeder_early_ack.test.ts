/**
 * The feeder's side of a TCP stall (issue #13 P4): a Redis replica sends its master "REPLCONF ACK" every second on its
 * own, and its link to the master does not disable Nagle's algorithm, so the ACK our GETACK asks for waits behind the
 * first one until this host's delayed TCP ACK (40 ms). The feeder answers an ACK short of the run in flight with a
 * PING, whose segment carries TCP's ACK at once. Here the test plays the Redis on a loopback socket.
 */
import net from "node:net";
import test from "ava";
import { Feeder } from "../../src/redis/feeder.js";
import { RespParser, encodeCommand } from "../../src/redis/resp_parser.js";

const WAIT_MS = 2000;

/** A replica's side of the link: sends commands, and yields each command the feeder streams to it. */
async function fakeReplica(port: number): Promise<{ send(args: string[]): void; next(): Promise<string[]>; raw(): Promise<string>; close(): void }> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const parser = new RespParser({ bulkBytesMax: 1 << 20, lineBytesMax: 1 << 20, arrayItemsMax: 64 });
  const frames: string[][] = [];
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  let handshake = true;
  socket.on("data", (chunk: Buffer) => {
    if (handshake) {
      // The replies of the handshake are lines (+PONG, +OK, +CONTINUE …); the stream's commands follow.
      const text = chunk.toString("latin1");
      const end = text.indexOf("\r\n");
      lines.push(text.slice(0, end));
      if (text.startsWith("+CONTINUE")) handshake = false;
      chunk = chunk.subarray(end + 2);
    }
    if (chunk.length > 0) parser.push(chunk);
    for (let f = parser.next(); f !== undefined; f = parser.next()) {
      const v = f.value;
      frames.push(v.type === "array" && v.items !== null ? v.items.map((i) => (i.type === "bulk" && i.value !== null ? i.value.toString("latin1") : "")) : []);
    }
    wake?.();
  });
  const waitFor = async <T>(take: () => T | undefined, what: string): Promise<T> => {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const got = take();
      if (got !== undefined) return got;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${WAIT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
  return {
    send: (args) => socket.write(encodeCommand(args)),
    next: () => waitFor(() => frames.shift(), "command"),
    raw: () => waitFor(() => lines.shift(), "reply line"),
    close: () => socket.destroy(),
  };
}

test("feeder - an ACK short of the run in flight is answered with a PING at once, after the whole run", async (t) => {
  const feeder = await Feeder.listen({ syncTimeoutMs: 5000, loadTimeoutMs: 5000, stallTimeoutMs: 5000, keepaliveMs: 60_000 });
  const redis = await fakeReplica(feeder.port);
  t.teardown(async () => {
    redis.close();
    await feeder.close();
  });
  redis.send(["PSYNC", "0123456789012345678901234567890123456789", "101"]);
  t.regex(await redis.raw(), /^\+CONTINUE /);
  t.deepEqual(await redis.next(), ["SELECT", "0"]);
  t.true(feeder.live);

  const run = feeder.sendRun([["MULTI"], ["SET", "k", "v"], ["EXEC"]]);
  for (const expected of [["MULTI"], ["SET", "k", "v"], ["EXEC"], ["REPLCONF", "GETACK", "*"]]) t.deepEqual(await redis.next(), expected);
  // The Redis's own ACK of every second, from before the run: short of it.
  redis.send(["REPLCONF", "ACK", "120"]);
  t.deepEqual(await redis.next(), ["PING"], "answered at once, after the run's GETACK");
  redis.send(["REPLCONF", "ACK", "120"]);
  // The run's own ACK: past it (the PING counts in the offset, as the Redis counts it).
  const selectBytes = encodeCommand(["SELECT", "0"]).length;
  const runBytes = [["MULTI"], ["SET", "k", "v"], ["EXEC"]].reduce((n, c) => n + encodeCommand(c).length, 0);
  redis.send(["REPLCONF", "ACK", String(100 + selectBytes + runBytes)]);
  await run;

  // One PING per run: a second early ACK of the same run gets none; the next run's does.
  const second = feeder.sendRun([["SET", "k", "w"]]);
  for (const expected of [["SET", "k", "w"], ["REPLCONF", "GETACK", "*"]]) t.deepEqual(await redis.next(), expected);
  redis.send(["REPLCONF", "ACK", "130"]);
  t.deepEqual(await redis.next(), ["PING"]);
  const pingBytes = encodeCommand(["PING"]).length;
  const getackBytes = encodeCommand(["REPLCONF", "GETACK", "*"]).length;
  const end = 100 + selectBytes + runBytes + getackBytes + pingBytes + encodeCommand(["SET", "k", "w"]).length;
  redis.send(["REPLCONF", "ACK", String(end)]);
  await second;
  t.pass();
});

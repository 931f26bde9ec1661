/**
 * One front-door connection (src/frontdoor/session.ts) against a door of stubs on a real loopback socket: what waits
 * at the door's in-flight bound and what goes past it.
 */
import net from "node:net";
import test from "ava";
import type { OrderedWriter } from "../../src/client/client.js";
import { ConnectionState } from "../../src/frontdoor/connection_state.js";
import { InflightGate } from "../../src/frontdoor/inflight_gate.js";
import type { Route } from "../../src/frontdoor/router.js";
import { Session, type DoorServices, type WriteOutcome } from "../../src/frontdoor/session.js";
import { encodeCommand } from "../../src/redis/resp_parser.js";
import { TurnBudget } from "../../src/util/turn_budget.js";

interface StubDoor {
  port: number;
  /** Writes taken and not answered yet: resolve one to answer it. */
  writes: ((o: WriteOutcome) => void)[];
  close(): Promise<void>;
}

/**
 * A door whose PING is local and every other command a write that waits until the test answers it, or with `answer`,
 * is answered by it in a later turn.
 */
async function stubDoor(inflightMax: number, answer?: () => WriteOutcome): Promise<StubDoor> {
  const budget = new TurnBudget(5);
  const writes: ((o: WriteOutcome) => void)[] = [];
  const noop = (): void => {};
  const door = {
    pipelineMax: 1024,
    requestBytesMax: 1024 * 1024,
    outputBytesMax: 64 * 1024 * 1024,
    outputBytesPause: 1024 * 1024,
    budget,
    inflight: new InflightGate(inflightMax, budget),
    closedForOutput: 0,
    closedForPubsubOutput: 0,
    log: { debug: noop, info: noop, warn: noop, error: noop },
    route: (args: readonly Buffer[]): Route => (args[0].toString().toUpperCase() === "PING" ? { kind: "local", command: "ping" } : { kind: "write" }),
    local: () => ({ reply: { type: "simple", value: "PONG" } }),
    buffered: noop,
    closed: noop,
    ordered: () => ({}) as OrderedWriter,
    write: () => new Promise<WriteOutcome>((resolve) => (answer === undefined ? writes.push(resolve) : setImmediate(() => resolve(answer())))),
  } as unknown as DoorServices;
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    new Session(socket, new ConnectionState(sockets.length, "test", "door", Date.now(), false), door);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    writes,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A client connection whose replies are awaited one by one, as text. */
async function client(port: number): Promise<{ send(...args: string[]): void; reply(ms: number): Promise<string>; socket: net.Socket }> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  const replies: string[] = [];
  const waiting: ((s: string) => void)[] = [];
  socket.on("data", (d: Buffer) => {
    for (const line of d.toString("latin1").split("\r\n").filter((l) => l !== "")) {
      const w = waiting.shift();
      if (w !== undefined) w(line);
      else replies.push(line);
    }
  });
  return {
    socket,
    send: (...args) => socket.write(encodeCommand(args)),
    reply: (ms) =>
      replies.length > 0
        ? Promise.resolve(replies.shift()!)
        : new Promise<string>((resolve, reject) => {
            const take = (s: string): void => {
              clearTimeout(timer);
              resolve(s);
            };
            const timer = setTimeout(() => {
              waiting.splice(waiting.indexOf(take), 1);
              reject(new Error(`no reply in ${ms} ms`));
            }, ms);
            waiting.push(take);
          }),
  };
}

test("at the door's in-flight bound an idle connection keeps reading: each PING is answered at once, a write waits its turn", async (t) => {
  const door = await stubDoor(1);
  t.teardown(() => door.close());
  const busy = await client(door.port);
  const idle = await client(door.port);
  t.teardown(() => {
    busy.socket.destroy();
    idle.socket.destroy();
  });
  busy.send("SET", "k", "1");
  await new Promise<void>((resolve) => {
    const check = (): void => void (door.writes.length === 1 ? resolve() : setImmediate(check));
    check();
  });
  // The bound (1) is full. Before: the first PING was answered, then the idle connection's socket was paused behind
  // the gate, so its next PING waited for the busy connection's write (in CI: PING 2.5–5.3 s under redis-benchmark).
  for (let i = 0; i < 3; i++) {
    idle.send("PING");
    t.is(await idle.reply(2000), "+PONG", `PING ${i + 1} past the full bound`);
  }
  idle.send("SET", "j", "2");
  idle.send("PING");
  await t.throwsAsync(idle.reply(200), { message: /no reply/ }, "a write, and the PING after it, wait for room");
  t.is(door.writes.length, 1);
  door.writes[0]({ ok: true, value: "OK", txid: 1 });
  t.is(await busy.reply(2000), "+OK");
  await new Promise<void>((resolve) => {
    const check = (): void => void (door.writes.length === 2 ? resolve() : setImmediate(check));
    check();
  });
  door.writes[1]({ ok: true, value: "OK", txid: 2 });
  t.is(await idle.reply(2000), "+OK");
  t.is(await idle.reply(2000), "+PONG");
});

test("a client that stops reading its large replies is not read either, and gets every reply once it reads, past a full in-flight bound", async (t) => {
  const value = Buffer.alloc(512 * 1024, 0x61);
  const door = await stubDoor(4, () => ({ ok: true, value, txid: 1 }));
  t.teardown(() => door.close());
  const s = net.connect(door.port, "127.0.0.1");
  t.teardown(() => s.destroy());
  s.pause();
  await new Promise<void>((resolve) => s.once("connect", () => resolve()));
  const requests = 200;
  s.write(Buffer.concat(Array.from({ length: requests }, () => encodeCommand(["GET", "big"]))));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const all = requests * (`$${value.length}\r\n`.length + value.length + 2);
  let bytes = 0;
  const done = new Promise<void>((resolve) => s.on("data", (d: Buffer) => ((bytes += d.length) >= all ? resolve() : undefined)));
  s.resume();
  await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  t.is(bytes, all, "every reply, whole");
});

/** The nemesis's TCP proxy against a local echo server: pass, delay (order kept), drop (black hole), cut, close. */
import net from "node:net";
import test from "ava";
import { startTcpProxy, type TcpProxy } from "../../src/process/tcp_proxy.js";
import { until } from "../helpers/harness.js";

interface Echo {
  port: number;
  close(): Promise<void>;
}

async function startEcho(): Promise<Echo> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A client of the proxy that collects what it receives and notes when it is closed. */
async function connectClient(proxy: TcpProxy): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  const socket = net.connect({ port: proxy.port, host: "127.0.0.1" });
  let data = "";
  socket.on("data", (chunk: Buffer) => (data += chunk.toString()));
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return { socket, received: () => data, closed };
}

async function withProxy(t: import("ava").ExecutionContext, body: (proxy: TcpProxy) => Promise<void>): Promise<void> {
  const echo = await startEcho();
  const proxy = await startTcpProxy(echo.port);
  t.teardown(async () => {
    await proxy.close();
    await echo.close();
  });
  await body(proxy);
}

test("tcp proxy - pass forwards both ways", async (t) => {
  await withProxy(t, async (proxy) => {
    const c = await connectClient(proxy);
    c.socket.write("hello");
    await until("the echo", 5000, () => (c.received() === "hello" ? true : undefined), 5);
    t.is(proxy.connections(), 1);
    c.socket.destroy();
    await until("the connection gone", 5000, () => (proxy.connections() === 0 ? true : undefined), 5);
    t.pass();
  });
});

test("tcp proxy - delay holds every chunk and keeps their order, also when the delay ends", async (t) => {
  await withProxy(t, async (proxy) => {
    const c = await connectClient(proxy);
    proxy.setMode({ kind: "delay", ms: 300 });
    const sentAt = performance.now();
    let firstEchoAt = 0;
    c.socket.once("data", () => (firstEchoAt = performance.now()));
    for (let i = 0; i < 20; i++) c.socket.write(`${i},`);
    // Ends the delay while the first chunks wait in the proxy: later chunks (pass) must not overtake them.
    await new Promise((r) => setTimeout(r, 100));
    proxy.setMode({ kind: "pass" });
    for (let i = 20; i < 40; i++) c.socket.write(`${i},`);
    const expected = Array.from({ length: 40 }, (_, i) => `${i},`).join("");
    await until("every chunk echoed", 5000, () => (c.received().length >= expected.length ? true : undefined), 5);
    t.is(c.received(), expected);
    t.true(firstEchoAt - sentAt >= 290, `the first echo came ${(firstEchoAt - sentAt).toFixed(0)} ms after the send`);
  });
});

test("tcp proxy - drop discards bytes but keeps the socket open; heal closes the connection that lost bytes", async (t) => {
  await withProxy(t, async (proxy) => {
    const c = await connectClient(proxy);
    proxy.setMode({ kind: "drop" });
    c.socket.write("lost");
    // A new connection during the drop is accepted and black-holed too.
    const d = await connectClient(proxy);
    d.socket.write("lost too");
    await new Promise((r) => setTimeout(r, 100));
    t.is(c.received(), "");
    t.is(d.received(), "");
    t.false(c.socket.destroyed);
    proxy.setMode({ kind: "pass" });
    await c.closed;
    await d.closed;
    const e = await connectClient(proxy);
    e.socket.write("after");
    await until("the echo after heal", 5000, () => (e.received() === "after" ? true : undefined), 5);
    t.pass();
  });
});

test("tcp proxy - cut destroys connections and closes new ones until healed", async (t) => {
  await withProxy(t, async (proxy) => {
    const c = await connectClient(proxy);
    proxy.setMode({ kind: "cut" });
    await c.closed;
    t.is(proxy.connections(), 0);
    const refused = await connectClient(proxy).then(
      (d) => d.closed.then(() => d.received()),
      () => "",
    );
    t.is(refused, "");
    proxy.setMode({ kind: "pass" });
    const e = await connectClient(proxy);
    e.socket.write("back");
    await until("the echo after heal", 5000, () => (e.received() === "back" ? true : undefined), 5);
    t.pass();
  });
});

test("tcp proxy - a slow reader pauses the source instead of buffering without bound", async (t) => {
  await withProxy(t, async (proxy) => {
    const c = await connectClient(proxy);
    // The client does not read: the echo server's writes back up, then the proxy's, then the client's own sends.
    c.socket.pause();
    const chunk = Buffer.alloc(64 * 1024, 1);
    const limit = 256 * 1024 * 1024;
    let written = 0;
    let stalled = false;
    while (written < limit && !stalled) {
      written += chunk.length;
      if (c.socket.write(chunk)) continue;
      // Blocked: the pause must propagate back to us, so a drain never comes.
      stalled = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), 1000);
        c.socket.once("drain", () => {
          clearTimeout(timer);
          resolve(false);
        });
      });
    }
    t.true(stalled, `the client's writes stalled after ${(written / 1048576).toFixed(1)} MiB`);
    t.log(`backpressure after ${(written / 1048576).toFixed(1)} MiB in flight`);
    c.socket.destroy();
  });
});

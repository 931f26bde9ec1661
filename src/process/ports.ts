import net from "node:net";

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** True when a listener can bind 127.0.0.1:port now. */
async function canListen(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** Attempts of freePorts to find a run of free ports before it gives up. */
export const FREE_PORT_RUN_ATTEMPTS_MAX = 100;

/** The first of `count` consecutive TCP ports on 127.0.0.1 that were all free a moment ago (replica Redis ports). */
export async function freePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < FREE_PORT_RUN_ATTEMPTS_MAX; attempt++) {
    const first = await freePort();
    let free = first + count - 1 <= 65535;
    for (let i = 1; free && i < count; i++) free = await canListen(first + i);
    if (free) return first;
  }
  throw new Error(`no ${count} consecutive free ports after ${FREE_PORT_RUN_ATTEMPTS_MAX} attempts`);
}

/** Resolves once something accepts TCP connections on host:port, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, host = "127.0.0.1"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

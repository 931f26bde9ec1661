import net from "node:net";

/**
 * Where freePort looks: below Linux's default ephemeral range (32768–60999). A port the kernel handed out for
 * listen(0) is in that range, where any outgoing connection may take it as its local port: a redis-server restarted
 * on it (the master's, after a kill) then failed to bind, and the actor died (seen in CI as a replica that stopped
 * answering).
 */
export const FREE_PORT_MIN = 20000;
export const FREE_PORT_MAX = 32767;

/** A TCP port on 127.0.0.1, outside the ephemeral range, that was free a moment ago. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < FREE_PORT_RUN_ATTEMPTS_MAX; attempt++) {
    const port = FREE_PORT_MIN + Math.floor(Math.random() * (FREE_PORT_MAX - FREE_PORT_MIN + 1));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${FREE_PORT_MIN}-${FREE_PORT_MAX} after ${FREE_PORT_RUN_ATTEMPTS_MAX} attempts`);
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

/**
 * The first of `count` consecutive TCP ports on 127.0.0.1 that were all free a moment ago (replica Redis ports),
 * none of them in `taken`, which they join: ports picked for one cluster never overlap (a free port is not reserved,
 * so two picks could land on the same one — a test cluster's master and replica Redis ports did, and its config was
 * refused).
 */
export async function freePorts(count: number, taken: Set<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < FREE_PORT_RUN_ATTEMPTS_MAX; attempt++) {
    const first = await freePort();
    let free = first + count - 1 <= FREE_PORT_MAX;
    for (let i = 0; free && i < count; i++) free = !taken.has(first + i) && (i === 0 || (await canListen(first + i)));
    if (!free) continue;
    for (let i = 0; i < count; i++) taken.add(first + i);
    return first;
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

/** A TCP server listening on 127.0.0.1 at a port the kernel picks (in-process fake masters), and that port. */
export async function listenOnLoopback(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (typeof address !== "object" || address === null) throw new Error("a listening TCP server has no address");
  return { server, port: address.port };
}

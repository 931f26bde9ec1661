/**
 * One nats-server of a test file's own, on a free port, with the bus connections the file opens on it: registered in
 * the file's hooks, so the server is stopped by pid, the connections closed and the directory removed even when a
 * test fails.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type test from "ava";
import { connectBus, type NatsConnection } from "../../src/nats/bus.js";
import { startNatsServer, type NatsServer } from "../../src/nats/nats_server.js";
import { freePort } from "../../src/process/ports.js";

export interface LoneNats {
  /** The server's directory (logs, and any configuration a test writes). */
  readonly dir: () => string;
  readonly url: () => string;
  /** A bus connection to the server, closed after the file's tests. */
  connection(name: string): Promise<NatsConnection>;
  /** A connection opened otherwise (another user, options), closed with the rest. */
  track(nc: NatsConnection): NatsConnection;
}

/** `conf`: the server's configuration file's text (none: defaults). */
export function loneNats(t: typeof test, name: string, conf?: string): LoneNats {
  let server: NatsServer | null = null;
  let dir = "";
  const conns: NatsConnection[] = [];
  t.before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `qjm-${name}-`));
    const args: string[] = [];
    if (conf !== undefined) {
      fs.writeFileSync(path.join(dir, "nats.conf"), conf);
      args.push("-c", path.join(dir, "nats.conf"));
    }
    server = await startNatsServer(await freePort(), { logDir: dir, args });
  });
  t.after.always(async () => {
    for (const nc of conns) await nc.close().catch(() => {});
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const track = (nc: NatsConnection): NatsConnection => {
    conns.push(nc);
    return nc;
  };
  return { dir: () => dir, url: () => server!.url, track, connection: async (n) => track(await connectBus(server!.url, n)) };
}

import fs from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { startChild, killLeftover, type Child } from "../process/child.js";
import { credentialsDir, ensureSecretFile, writeSecretFile } from "../util/secret_file.js";
import { packageRoot } from "../util/package_root.js";

export interface RedisServerOptions {
  port: number;
  /** Directory for the pid file, the log and (when persistent) the AOF. */
  dir: string;
  /** Persistent: AOF with fsync every second (replicas); ephemeral: nothing on disk (the master: the journal is the durable copy). */
  persistent: boolean;
  startTimeoutMs: number;
  /** requirepass: every client must AUTH with it (our actors' Redis servers always have one; see redisPassword). */
  password?: string;
  extraArgs?: string[];
}

/** The Redis password of a data directory: `<dataDir>/credentials/redis.password`, made on first use. */
export function redisPassword(dataDir: string): string {
  return ensureSecretFile(path.join(credentialsDir(dataDir), "redis.password"));
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly child: Child;
  stop(): Promise<void>;
}

/** Deletes the data set a Redis in `dir` would load at start (its AOF and RDB files). */
export function wipeRedisData(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const f of fs.readdirSync(dir)) {
    if (f === "appendonlydir" || f.endsWith(".rdb")) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  }
}

/**
 * Starts a redis-server we own. It dies with its parent (startChild), and a leftover
 * from an actor killed with -9 is found by its pid file and ended before the new one starts.
 */
export async function startRedisServer(options: RedisServerOptions): Promise<RedisServer> {
  const dir = path.resolve(options.dir);
  fs.mkdirSync(dir, { recursive: true });
  const pidFile = path.join(dir, "redis.pid");
  await killLeftover(pidFile, "redis-server");
  fs.rmSync(pidFile, { force: true });
  if (!options.persistent) wipeRedisData(dir);
  // infra/redis/*.conf: the settings of each kind of Redis we run.
  const conf = path.join(packageRoot(), "infra", "redis", options.persistent ? "replica.conf" : "master.conf");
  const args = [
    conf,
    "--port", String(options.port),
    "--dir", dir,
    "--pidfile", pidFile,
    "--logfile", path.join(dir, "redis.log"),
    ...passwordArgs(dir, options.password),
    ...(options.extraArgs ?? []),
  ];
  const child = startChild("redis-server", args);
  // Our pid file names the process we started, at once: redis writes its own (same pid, setpriv execs) later.
  fs.writeFileSync(pidFile, String(child.pid));
  await waitForRedis(options.port, options.startTimeoutMs, child, options.password);
  return {
    port: options.port,
    url: `redis://127.0.0.1:${options.port}`,
    child,
    stop: () => child.stop("SIGTERM", 5000),
  };
}

/** requirepass through an owner-only file redis-server includes: a password on the command line is visible to every local user. */
function passwordArgs(dir: string, password: string | undefined): string[] {
  if (password === undefined) return [];
  if (!/^[A-Za-z0-9]+$/.test(password)) throw new Error("a Redis password must be letters and digits (it is written in a config file)");
  const file = path.join(dir, "requirepass.conf");
  writeSecretFile(file, `requirepass ${password}\n`);
  return ["--include", file];
}

async function waitForRedis(port: number, timeoutMs: number, child: Child, password: string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void child.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`redis-server on port ${port} exited during start (see its redis.log)`);
    const client = new Redis({ port, host: "127.0.0.1", password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => {});
    try {
      await client.connect();
      const pong = await client.ping();
      if (pong === "PONG") return;
    } catch {
      /* not yet, or still loading */
    } finally {
      client.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Every shell command the README and docs/operations.md show runs as written (issue #14: the docs a user follows
 * must work). Each ```sh block is read line by line, in order, against a cluster the block's `npm start` line started:
 *
 * - `[VAR=value …] npm start [args]` starts the local cluster the way `npm start` does after its set-up
 *   (`node dist/bundle/cluster.js`, which `npm start` runs once `infra/setup.sh` has installed and built — this suite
 *   did that already, and a second build would rewrite `dist/` under the other tests' feet), waits until a master
 *   serves, and stops it (by pid) before the next `npm start` or at the end;
 * - a command that follows a stream (`redis-qjm events`) must still be following after FOLLOW_MS, then is stopped;
 * - every other command must exit 0 within COMMAND_TIMEOUT_MS.
 *
 * Two things differ from a user's terminal, both so the test never touches a user's cluster: the data directory
 * (`data/` in a command, `QJM_DATA_DIR` of the cluster) is a temporary one, and the documented default ports are
 * used as they are (no other test uses them: test clusters take free ports from 20000 up). `npm test` itself is the
 * suite this file belongs to, so it is not run from here; NOT_RUN lists such lines with why (any other line runs).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { until } from "../helpers/harness.js";
import { loadConfig } from "../../src/config/config.js";
import { CLIENT_USER, findNatsCredentials } from "../../src/nats/auth.js";
import { connectBus, requestAll, type NatsConnection } from "../../src/nats/bus.js";
import { clientTls } from "../../src/nats/tls.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { actorProgram, packageRoot } from "../../src/util/package_root.js";

/** The checkout. */
const ROOT = packageRoot();
const DOCS = ["README.md", "docs/operations.md"];
const COMMAND_TIMEOUT_MS = 30_000;
const CLUSTER_READY_MS = 60_000;
const CLUSTER_STOP_MS = 20_000;
/** Commands shown but not run here, and why (a line matching none of these runs, and must work). */
const NOT_RUN: { pattern: RegExp; why: string }[] = [
  { pattern: /^npm test$/, why: "the suite this test is part of" },
  { pattern: /^npx redis-qjm (run|nats-credentials) .*--config/, why: "a step on each host of a deployment: integration/netns runs it on nine namespaced hosts" },
  { pattern: /^infra\/tls\/make-certs\.sh /, why: "certificates for a deployment on several hosts: unit/tls runs the script (names, modes, no overwrite)" },
  { pattern: /(^|\s)nats .*micro ls|\/tmp\/admin\.nk/, why: "the nats CLI is no Debian package: integration/metrics runs the services library's client, which `nats micro ls` is" },
];
/** Commands that follow a stream until stopped: they must still run (connected) after FOLLOW_MS. */
const FOLLOWS = [/redis-qjm events\b/];
const FOLLOW_MS = 3000;
/** How long each readiness poll's status round waits for replies. */
const STATUS_POLL_MS = 300;

interface DocCommand {
  doc: string;
  line: string;
}

/** The command lines of every ```sh block of `doc`, comments and blank lines dropped. */
function shellCommands(doc: string, text: string): DocCommand[] {
  const out: DocCommand[] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const raw of block[1].split("\n")) {
      const line = raw.replace(/\s+#\s.*$/, "").replace(/^#.*$/, "").trim();
      if (line !== "") out.push({ doc, line });
    }
  }
  return out;
}

/** `A=1 B=2 npm start --x` → its environment and arguments; null if the line is not an `npm start`. */
function npmStart(line: string): { env: Record<string, string>; args: string[] } | null {
  const words = line.split(/\s+/);
  const env: Record<string, string> = {};
  while (words.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) {
    const [k, ...v] = words.shift()!.split("=");
    env[k] = v.join("=");
  }
  if (words[0] !== "npm" || words[1] !== "start") return null;
  return { env, args: words.slice(2) };
}

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  output: string[];
}

function startCluster(env: NodeJS.ProcessEnv, args: string[]): Running {
  const child = spawn(process.execPath, [actorProgram("cluster"), ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  const keep = (b: Buffer) => output.push(b.toString()) > 200 && output.shift();
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, exited, output };
}

/**
 * SIGTERM, as Ctrl-C would: the cluster stops its children and exits 0. SIGKILL after CLUSTER_STOP_MS (its children
 * die with it: PDEATHSIG), and the stop is reported as failed.
 */
async function stopCluster(r: Running | null): Promise<string | null> {
  if (r === null || r.child.exitCode !== null || r.child.signalCode !== null) return null;
  r.child.kill("SIGTERM");
  let killed = false;
  const killer = setTimeout(() => ((killed = true), r.child.kill("SIGKILL")), CLUSTER_STOP_MS);
  await r.exited;
  clearTimeout(killer);
  if (killed) return `npm start did not stop within ${CLUSTER_STOP_MS} ms of SIGTERM`;
  return r.child.exitCode === 0 ? null : `npm start exited ${r.child.exitCode} on SIGTERM: ${r.output.join("").slice(-2000)}`;
}

/** Runs `line` to its end (killed past COMMAND_TIMEOUT_MS); async, so a follower's FOLLOW_MS runs meanwhile. */
async function runShell(line: string, env: NodeJS.ProcessEnv): Promise<{ status: number | null; out: string }> {
  const child = spawn("bash", ["-c", line], { cwd: ROOT, env, timeout: COMMAND_TIMEOUT_MS, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const status = await new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return { status, out: `${stdout}${stderr}`.slice(-2000) };
}

/**
 * Starts a following command: it must not have exited within FOLLOW_MS (it reached the cluster and follows). The check
 * is awaited later (before the next `npm start`, or at the end), so the lines after it run during those FOLLOW_MS, as
 * they would in a user's other terminal, instead of after them.
 */
function startFollower(line: string, env: NodeJS.ProcessEnv): Promise<{ exited: number | null; out: string }> {
  const child = spawn("bash", ["-c", `exec ${line}`], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (out += b.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const stillRunning = new Promise<"running">((resolve) => setTimeout(() => resolve("running"), FOLLOW_MS).unref());
  return (async () => {
    const first = await Promise.race([exit, stillRunning]);
    if (first !== "running") return { exited: first, out };
    child.kill("SIGTERM");
    await exit;
    return { exited: null, out };
  })();
}

/** A connection as the client user, as `redis-qjm status` makes it; null while npm start has not written what it needs. */
async function tryConnect(env: NodeJS.ProcessEnv): Promise<NatsConnection | null> {
  try {
    const config = loadConfig(env);
    const creds = findNatsCredentials(config.natsCredsFile, config.dataDir, CLIENT_USER);
    if (creds === null) return null;
    return await connectBus(config.natsUrl, "docs-test", creds, { tls: clientTls(config) });
  } catch {
    return null; // nats-server not up yet, or its credentials or certificates half written
  }
}

/**
 * Polls in this process, on one connection, for a master that serves. Spawning `redis-qjm status --json` for each poll
 * cost a node start plus its statusTimeoutMs, ~1.5 s a round on a loaded machine: each start was seen that much late.
 */
async function waitForMaster(env: NodeJS.ProcessEnv, r: Running): Promise<void> {
  const cluster = loadConfig(env).cluster;
  let nc: NatsConnection | null = null;
  try {
    await until("a serving master", CLUSTER_READY_MS, async () => {
      if (r.child.exitCode !== null) throw new Error(`npm start exited ${r.child.exitCode}: ${r.output.join("").slice(-2000)}`);
      nc ??= await tryConnect(env);
      if (nc === null) return undefined;
      const actors = (await requestAll(nc, subjects(cluster).status, {}, STATUS_POLL_MS).catch(() => [])) as ActorStatus[];
      return actors.some((a) => a.role === "master" && a.health === "writing") ? true : undefined;
    }, 100);
  } finally {
    await (nc as NatsConnection | null)?.close().catch(() => {});
  }
}

test("docs - every shell command of the README and docs/operations.md runs as written", async (t) => {
  const commands = DOCS.flatMap((doc) => shellCommands(doc, fs.readFileSync(path.join(ROOT, doc), "utf8")));
  t.true(commands.some((c) => npmStart(c.line) !== null), "the docs start a cluster");
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-docs-"));
  const base: NodeJS.ProcessEnv = { ...process.env, QJM_DATA_DIR: dataDir };
  let running: Running | null = null;
  let env = base;
  /** Followers started against the running cluster, checked before it stops. */
  let followers: Promise<void>[] = [];
  const followed = async () => {
    await Promise.all(followers);
    followers = [];
  };
  try {
    for (const { doc, line } of commands) {
      if (NOT_RUN.some((n) => n.pattern.test(line))) continue;
      const start = npmStart(line);
      if (start !== null) {
        await followed();
        const stopFailed = await stopCluster(running);
        if (stopFailed !== null) throw new Error(stopFailed);
        fs.rmSync(dataDir, { recursive: true, force: true });
        env = { ...base, ...start.env };
        running = startCluster(env, start.args);
        // The readiness poll speaks TLS to a TLS-only cluster; the docs' own commands say QJM_TLS=1 themselves.
        await waitForMaster(start.args.includes("--tls") ? { ...env, QJM_TLS: "1" } : env, running);
        t.log(`${doc}: ${line} — a master serves`);
        continue;
      }
      if (running === null) throw new Error(`${doc}: \`${line}\` comes before any npm start`);
      const asRun = line.replace(/(^|[\s"'(=])data\//g, `$1${dataDir}/`);
      if (FOLLOWS.some((f) => f.test(line))) {
        const check = startFollower(asRun, env).then((r) => {
          if (r.exited !== null) throw new Error(`${doc}: \`${line}\` exited ${r.exited} within ${FOLLOW_MS} ms: ${r.out.slice(-2000)}`);
          t.log(`${doc}: ${line} — follows`);
        });
        check.catch(() => {}); // reported where followed() awaits it, not as an unhandled rejection meanwhile
        followers.push(check);
        continue;
      }
      const r = await runShell(asRun, env);
      if (r.status !== 0) throw new Error(`${doc}: \`${line}\` exited ${r.status}: ${r.out}`);
      t.log(`${doc}: ${line} — exit 0`);
    }
    await followed();
    t.is(await stopCluster(running), null);
  } finally {
    await Promise.allSettled(followers);
    await stopCluster(running);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

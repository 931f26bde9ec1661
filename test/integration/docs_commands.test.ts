/**
 * Every shell command the README and docs/operations.md show runs as written (issue #14: the docs a user follows
 * must work). Each ```sh block is read line by line, in order, against a cluster the block's `npm start` line started:
 *
 * - `[VAR=value …] npm start [args]` starts the local cluster the way `npm start` does after its set-up
 *   (`node dist/actors/cluster.js`, which `npm start` runs once `infra/setup.sh` has installed and built — this suite
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
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { until } from "../helpers/harness.js";

/** The checkout: this file runs as dist/test/integration/docs_commands.test.js. */
const ROOT = path.resolve(fileURLToPath(import.meta.url), "../../../..");
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
  const child = spawn(process.execPath, ["dist/actors/cluster.js", ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
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

function runShell(line: string, env: NodeJS.ProcessEnv): { status: number | null; out: string } {
  const r = spawnSync("bash", ["-c", line], { cwd: ROOT, env, timeout: COMMAND_TIMEOUT_MS, encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.slice(-2000) };
}

/** Runs a following command for FOLLOW_MS: it must not have exited (it reached the cluster and follows). */
async function runFollower(line: string, env: NodeJS.ProcessEnv): Promise<{ exited: number | null; out: string }> {
  const child = spawn("bash", ["-c", `exec ${line}`], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (out += b.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const stillRunning = new Promise<"running">((resolve) => setTimeout(() => resolve("running"), FOLLOW_MS).unref());
  const first = await Promise.race([exit, stillRunning]);
  if (first !== "running") return { exited: first, out };
  child.kill("SIGTERM");
  await exit;
  return { exited: null, out };
}

async function waitForMaster(env: NodeJS.ProcessEnv, r: Running): Promise<void> {
  await until("a serving master", CLUSTER_READY_MS, () => {
    if (r.child.exitCode !== null) throw new Error(`npm start exited ${r.child.exitCode}: ${r.output.join("").slice(-2000)}`);
    const s = spawnSync(process.execPath, ["dist/actors/cli.js", "status", "--json"], { cwd: ROOT, env, encoding: "utf8", timeout: 10_000 });
    if (s.status !== 0) return undefined;
    const actors = JSON.parse(s.stdout) as { role: string; health: string }[];
    return actors.some((a) => a.role === "master" && a.health === "writing") ? true : undefined;
  }, 250);
}

test("docs - every shell command of the README and docs/operations.md runs as written", async (t) => {
  const commands = DOCS.flatMap((doc) => shellCommands(doc, fs.readFileSync(path.join(ROOT, doc), "utf8")));
  t.true(commands.some((c) => npmStart(c.line) !== null), "the docs start a cluster");
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-docs-"));
  const base: NodeJS.ProcessEnv = { ...process.env, QJM_DATA_DIR: dataDir };
  let running: Running | null = null;
  let env = base;
  try {
    for (const { doc, line } of commands) {
      if (NOT_RUN.some((n) => n.pattern.test(line))) continue;
      const start = npmStart(line);
      if (start !== null) {
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
        const r = await runFollower(asRun, env);
        if (r.exited !== null) throw new Error(`${doc}: \`${line}\` exited ${r.exited} within ${FOLLOW_MS} ms: ${r.out.slice(-2000)}`);
        t.log(`${doc}: ${line} — follows`);
        continue;
      }
      const r = runShell(asRun, env);
      if (r.status !== 0) throw new Error(`${doc}: \`${line}\` exited ${r.status}: ${r.out}`);
      t.log(`${doc}: ${line} — exit 0`);
    }
    t.is(await stopCluster(running), null);
  } finally {
    await stopCluster(running);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

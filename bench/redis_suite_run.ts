/**
 * `npm run redis-suite`: Redis's own Tcl tests (bench/redis_suite.ts) against a plain redis-server and against the
 * RESP front doors of a local cluster (3 journal nodes, 3 data nodes), in the same run; a table per file, the tests
 * that fail on a door and pass on plain Redis with their error line and why (bench/redis_suite_known.ts), and JSON.
 *
 *   REDIS_SUITE_TARGETS=plain,master,replica   which targets (default all three)
 *   REDIS_SUITE_FILES=unit/type/incr,…          which files (default the nine of issue #12)
 *   REDIS_SUITE_OUT=<file>                      the JSON (default <cache>/results.json)
 *   QJM_REDIS_SUITE_DIR=<dir>                   the cache of the suite's tarball (default <repo>/.cache/redis-suite)
 *   --fetch                                     only fill the cache (infra/setup.sh)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startRedisServer, type RedisServer } from "../src/redis/redis_server.js";
import { freePort } from "../src/process/ports.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../test/helpers/harness.js";
import { ensureSuite, runSuiteFile, SUITE_FILES, SUITE_FLAGS, SUITE_VERSION, suiteCacheDir, type FileResult } from "./redis_suite.js";
import { explainDoorFailure } from "./redis_suite_known.js";

const TARGETS = ["plain", "master", "replica"] as const;
type TargetName = (typeof TARGETS)[number];
const DATA_NODES = ["d1", "d2", "d3"];
/** The whole run is bounded: the files not started by then are reported as not run. */
const RUN_TIMEOUT_MS = 90 * 60_000;

function listEnv(name: string, all: readonly string[]): string[] {
  const v = process.env[name];
  if (v === undefined || v.trim() === "") return [...all];
  const picked = v.split(",").map((s) => s.trim());
  for (const p of picked) if (!all.includes(p)) throw new Error(`${name}: '${p}' is not one of ${all.join(", ")}`);
  return picked;
}

interface Servers {
  ports: Partial<Record<TargetName, number>>;
  stop(): Promise<void>;
}

async function startServers(targets: string[], dir: string): Promise<Servers> {
  const ports: Partial<Record<TargetName, number>> = {};
  let plain: RedisServer | undefined;
  let tc: TestCluster | undefined;
  const stop = async (): Promise<void> => {
    await plain?.stop().catch(() => {});
    await tc?.stop().catch(() => {});
  };
  try {
    if (targets.includes("plain")) {
      // As the suite's own servers are (tests/assets/default.conf): 16 databases, DEBUG allowed; nothing on disk.
      plain = await startRedisServer({ port: await freePort(), dir: path.join(dir, "plain"), persistent: false, startTimeoutMs: 15_000, extraArgs: ["--databases", "16", "--enable-debug-command", "yes"] });
      ports.plain = plain.port;
    }
    if (targets.includes("master") || targets.includes("replica")) {
      tc = await startTestCluster("redis-suite", { dataNodes: DATA_NODES });
      const master = await waitForWriter(tc);
      const base = tc.cluster.config.respPort;
      ports.master = base + DATA_NODES.indexOf(master.id);
      ports.replica = base + DATA_NODES.indexOf(DATA_NODES.find((id) => id !== master.id)!);
      await doorsListening(tc);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { ports, stop };
}

/** Every data node's door listens (status says so). */
async function doorsListening(tc: TestCluster): Promise<void> {
  await until("every front door to listen", 30_000, async () => {
    const doors = (await tc.status()).filter((s) => (s.details.respDoor as { listening?: boolean } | undefined)?.listening === true);
    return doors.length === tc.cluster.config.dataNodes.length ? true : undefined;
  });
}

export interface SuiteReport {
  redisVersion: string;
  flags: string[];
  targets: string[];
  files: Record<string, Partial<Record<TargetName, FileResult>>>;
  /** Per door: the tests that fail there and pass on plain Redis, with the error and the explanation. */
  differences: Record<string, { file: string; name: string; error: string; why: string }[]>;
}

function cell(r: FileResult | undefined): string {
  if (r === undefined) return "not run";
  return `${r.passed} / ${r.failed} / ${r.ignored}${r.aborted === undefined ? "" : " (aborted)"}`;
}

export function reportTable(report: SuiteReport): string {
  const head = `| file | ${report.targets.map((t) => `${t}: passed / failed / ignored`).join(" | ")} |`;
  const rows = Object.entries(report.files).map(([file, byTarget]) => `| ${file} | ${report.targets.map((t) => cell(byTarget[t as TargetName])).join(" | ")} |`);
  const totals = report.targets.map((t) => {
    let p = 0, f = 0, i = 0;
    for (const byTarget of Object.values(report.files)) {
      const r = byTarget[t as TargetName];
      if (r !== undefined) (p += r.passed), (f += r.failed), (i += r.ignored);
    }
    return `${p} / ${f} / ${i}`;
  });
  return [head, `|---|${report.targets.map(() => "---").join("|")}|`, ...rows, `| total | ${totals.join(" | ")} |`].join("\n");
}

function differences(report: SuiteReport, door: TargetName): SuiteReport["differences"][string] {
  const out: SuiteReport["differences"][string] = [];
  for (const [file, byTarget] of Object.entries(report.files)) {
    const plainFailed = new Set(byTarget.plain?.failures.map((f) => f.name) ?? []);
    for (const f of byTarget[door]?.failures ?? []) {
      if (!plainFailed.has(f.name)) out.push({ file, name: f.name, error: f.error, why: explainDoorFailure(file, f.name, f.error) });
    }
  }
  return out;
}

async function main(): Promise<void> {
  const root = await ensureSuite();
  if (process.argv.includes("--fetch")) return;
  const targets = listEnv("REDIS_SUITE_TARGETS", TARGETS);
  const files = listEnv("REDIS_SUITE_FILES", SUITE_FILES);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-redis-suite-"));
  const servers = await startServers(targets, dir);
  // Ctrl-C or a kill: the cluster's nats-server would outlive us.
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void servers.stop().finally(() => process.exit(130)));
  const report: SuiteReport = { redisVersion: SUITE_VERSION, flags: SUITE_FLAGS, targets, files: {}, differences: {} };
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  try {
    for (const file of files) {
      report.files[file] = {};
      for (const t of targets as TargetName[]) {
        if (Date.now() > deadline) continue;
        const r = await runSuiteFile(root, file, { host: "127.0.0.1", port: servers.ports[t]! }, Math.min(deadline - Date.now(), 15 * 60_000));
        const { output, ...result } = r;
        fs.writeFileSync(path.join(dir, `${t}.${file.replaceAll("/", "_")}.log`), output);
        report.files[file][t] = result;
        console.log(`${file} on ${t}: ${cell(result)} in ${result.seconds} s${result.aborted === undefined ? "" : ` — ${result.aborted}`}`);
      }
    }
  } finally {
    await servers.stop();
  }
  for (const door of ["master", "replica"] as const) if (targets.includes(door) && targets.includes("plain")) report.differences[door] = differences(report, door);
  const out = process.env.REDIS_SUITE_OUT ?? path.join(suiteCacheDir(), "results.json");
  fs.writeFileSync(out, JSON.stringify(report, null, 2));
  console.log(`\nRedis ${SUITE_VERSION}'s test suite, ${SUITE_FLAGS.join(" ")} (logs in ${dir}):\n\n${reportTable(report)}\n`);
  for (const [door, diffs] of Object.entries(report.differences)) {
    console.log(`Failing on the ${door}'s door, passing on plain Redis (${diffs.length}):`);
    for (const d of diffs) console.log(`  ${d.file}: ${d.name}\n      ${d.error}\n      why: ${d.why}`);
  }
  console.log(`\nJSON: ${out}`);
}

main().catch((e: unknown) => {
  console.error(`redis-suite: ${(e as Error).message}`);
  process.exitCode = 1;
});

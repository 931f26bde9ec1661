/**
 * `npm run redis-suite`: Redis's own Tcl tests (bench/redis_suite.ts) against a plain redis-server and against the
 * RESP front doors of a local cluster (3 journal nodes, 3 data nodes), in the same run; a table per file, the tests
 * that fail on a door and pass on plain Redis with their error line and why (bench/redis_suite_known.ts), and JSON.
 *
 *   REDIS_SUITE_TARGETS=plain,master,replica   which targets (default all three)
 *   REDIS_SUITE_FILES=unit/type/incr,…          which files (default the nine of issue #12; also unit/pubsub, unit/pubsubshard)
 *   REDIS_SUITE_OUT=<file>                      the JSON (default <cache>/results.json)
 *   REDIS_SUITE_SKIP=<test>,/<regexp>,…         tests left out on every target (the suite's --skiptest)
 *   QJM_REDIS_SUITE_DIR=<dir>                   the cache of the suite's tarball (default <repo>/.cache/redis-suite)
 *   --fetch                                     only fill the cache (infra/setup.sh)
 *   --report a.json [b.json…]                   the table and differences again from saved runs, merged
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startRedisServer, type RedisServer } from "../src/redis/redis_server.js";
import { freePort } from "../src/process/ports.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../test/helpers/harness.js";
import { ensureSuite, runSuiteFile, SUITE_FILES, SUITE_FLAGS, SUITE_OPTIONAL_FILES, SUITE_VERSION, suiteCacheDir, suiteFlags, type FileResult } from "./redis_suite.js";
import { explainDoorFailure } from "./redis_suite_known.js";

const TARGETS = ["plain", "master", "replica"] as const;
type TargetName = (typeof TARGETS)[number];
const DATA_NODES = ["d1", "d2", "d3"];
/** The whole run is bounded: the files not started by then are reported as not run. */
const RUN_TIMEOUT_MS = 90 * 60_000;

function listEnv(name: string, all: readonly string[], optional: readonly string[] = []): string[] {
  const v = process.env[name];
  if (v === undefined || v.trim() === "") return [...all];
  const picked = v.split(",").map((s) => s.trim());
  const known = [...all, ...optional];
  for (const p of picked) if (!known.includes(p)) throw new Error(`${name}: '${p}' is not one of ${known.join(", ")}`);
  return picked;
}

interface Servers {
  /** The port of a target now: a door follows the master, which may change during the run (a failover). */
  portOf(target: TargetName): Promise<{ port: number; node?: string }>;
  stop(): Promise<void>;
}

async function startServers(targets: string[], dir: string): Promise<Servers> {
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
    }
    if (targets.includes("master") || targets.includes("replica")) {
      tc = await startTestCluster("redis-suite", { dataNodes: DATA_NODES });
      await waitForWriter(tc);
      await doorsListening(tc);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const portOf = async (target: TargetName): Promise<{ port: number; node?: string }> => {
    if (target === "plain") return { port: plain!.port };
    const master = await waitForWriter(tc!, 60_000);
    const node = target === "master" ? master.id : DATA_NODES.find((id) => id !== master.id)!;
    return { port: tc!.cluster.config.respPort + DATA_NODES.indexOf(node), node };
  };
  return { portOf, stop };
}

/** Every data node's door listens (status says so). */
async function doorsListening(tc: TestCluster): Promise<void> {
  await until("every front door to listen", 30_000, async () => {
    const doors = (await tc.status()).filter((s) => (s.details.respDoor as { listening?: boolean } | undefined)?.listening === true);
    return doors.length === tc.cluster.config.dataNodes.length ? true : undefined;
  });
}

/** A door's answers while the cluster changes master: the file is run once more, on the new master's door. */
const FAILOVER_ERROR = /LOADING qjm|TRYAGAIN qjm|NOT_WRITER|NO_QUORUM/;

type TargetResult = FileResult & { node?: string; rerun?: string };

/** One file on one target; a door's file that a failover cut short (its error says so) is run once more. */
async function runOnTarget(servers: Servers, root: string, file: string, t: TargetName, deadline: number, dir: string): Promise<TargetResult> {
  let rerun: string | undefined;
  for (let attempt = 0; ; attempt++) {
    const { port, node } = await servers.portOf(t);
    const { output, ...result } = await runSuiteFile(root, file, { host: "127.0.0.1", port }, Math.max(1000, Math.min(deadline - Date.now(), 15 * 60_000)));
    fs.writeFileSync(path.join(dir, `${t}.${file.replaceAll("/", "_")}${attempt === 0 ? "" : `.${attempt}`}.log`), output);
    const cut = result.aborted ?? result.failures.find((f) => FAILOVER_ERROR.test(f.error))?.error;
    if (t === "plain" || attempt > 0 || cut === undefined || !FAILOVER_ERROR.test(cut)) return { ...result, node, rerun };
    rerun = `the first run on ${node} met a failover: ${cut}`;
  }
}

export interface SuiteReport {
  redisVersion: string;
  flags: string[];
  targets: string[];
  files: Record<string, Partial<Record<TargetName, TargetResult>>>;
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

/** `--report a.json [b.json…]`: the table and differences again from saved runs (merged by target), with today's explanations. */
function reportFrom(files: string[]): SuiteReport {
  const merged: SuiteReport = { redisVersion: SUITE_VERSION, flags: [...SUITE_FLAGS], targets: [], files: {}, differences: {} };
  for (const f of files) {
    const r = JSON.parse(fs.readFileSync(f, "utf8")) as SuiteReport;
    // A run's REDIS_SUITE_SKIP (`--skiptest <test>` pairs after SUITE_FLAGS): shown once each.
    for (let i = SUITE_FLAGS.length; i + 1 < r.flags.length; i += 2) if (!merged.flags.includes(r.flags[i + 1])) merged.flags.push(r.flags[i], r.flags[i + 1]);
    for (const t of r.targets) if (!merged.targets.includes(t)) merged.targets.push(t);
    for (const [file, byTarget] of Object.entries(r.files)) merged.files[file] = { ...merged.files[file], ...byTarget };
  }
  merged.targets.sort((a, b) => TARGETS.indexOf(a as TargetName) - TARGETS.indexOf(b as TargetName));
  return merged;
}

function printReport(report: SuiteReport, out: string, logs: string): void {
  for (const door of ["master", "replica"] as const) if (report.targets.includes(door) && report.targets.includes("plain")) report.differences[door] = differences(report, door);
  fs.writeFileSync(out, JSON.stringify(report, null, 2));
  console.log(`\nRedis ${SUITE_VERSION}'s test suite, ${report.flags.join(" ")}${logs}:\n\n${reportTable(report)}\n`);
  for (const [door, diffs] of Object.entries(report.differences)) {
    console.log(`Failing on the ${door}'s door, passing on plain Redis (${diffs.length}):`);
    for (const d of diffs) console.log(`  ${d.file}: ${d.name}\n      ${d.error}\n      why: ${d.why}`);
  }
  console.log(`\nJSON: ${out}`);
}

async function main(): Promise<void> {
  const out = process.env.REDIS_SUITE_OUT ?? path.join(suiteCacheDir(), "results.json");
  const at = process.argv.indexOf("--report");
  if (at >= 0) return printReport(reportFrom(process.argv.slice(at + 1)), out, "");
  const root = await ensureSuite();
  if (process.argv.includes("--fetch")) return;
  const targets = listEnv("REDIS_SUITE_TARGETS", TARGETS);
  const files = listEnv("REDIS_SUITE_FILES", SUITE_FILES, SUITE_OPTIONAL_FILES);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-redis-suite-"));
  const servers = await startServers(targets, dir);
  // Ctrl-C or a kill: the cluster's nats-server would outlive us.
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void servers.stop().finally(() => process.exit(130)));
  const report: SuiteReport = { redisVersion: SUITE_VERSION, flags: suiteFlags(), targets, files: {}, differences: {} };
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  try {
    for (const file of files) {
      report.files[file] = {};
      for (const t of targets as TargetName[]) {
        if (Date.now() > deadline) continue;
        const result = await runOnTarget(servers, root, file, t, deadline, dir);
        report.files[file][t] = result;
        fs.writeFileSync(out, JSON.stringify(report, null, 2)); // so far: a run cut short keeps what it measured
        console.log(`${file} on ${t}${result.node === undefined ? "" : ` (${result.node})`}: ${cell(result)} in ${result.seconds} s${result.aborted === undefined ? "" : ` — ${result.aborted}`}${result.rerun === undefined ? "" : ` [run again: ${result.rerun}]`}`);
      }
    }
  } finally {
    await servers.stop();
  }
  printReport(report, out, ` (logs in ${dir})`);
}

main().catch((e: unknown) => {
  console.error(`redis-suite: ${(e as Error).message}`);
  process.exitCode = 1;
});

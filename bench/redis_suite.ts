/**
 * Redis's own Tcl test suite (the tests/ of the redis-server we run, 7.0.15) in external-server mode against any RESP
 * server (issue #12, Must-show 1): the source tarball from Debian's archive, fetched once into a cache and checked
 * against the SHA-256 of Debian's .dsc; one `tclsh tests/test_helper.tcl --host --port --single <file>` per file, its
 * output parsed into passed / failed / ignored per file. Used by `npm run redis-suite` (bench/redis_suite_run.ts) and
 * by the integration test that runs one file against a front door.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../src/process/ports.js";

/** Debian bookworm's source of redis-server 7.0.15 (the version `apt-get install redis-server` gives). */
export const SUITE_VERSION = "7.0.15";
export const SUITE_URL = `http://deb.debian.org/debian/pool/main/r/redis/redis_${SUITE_VERSION}.orig.tar.gz`;
/** From Checksums-Sha256 of redis_7.0.15-1~deb12u6.dsc (the same orig tarball for every deb12u* upload). */
export const SUITE_SHA256 = "4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982";
export const SUITE_BYTES = 3_025_940;

/** The files issue #12 names, in the suite's own spelling. */
export const SUITE_FILES = [
  "unit/type/string",
  "unit/type/incr",
  "unit/type/hash",
  "unit/type/list",
  "unit/type/set",
  "unit/type/zset",
  "unit/expire",
  "unit/keyspace",
  "unit/multi",
] as const;

/** Files run only when REDIS_SUITE_FILES names them: pub/sub (issue #12 item 5), not among the nine the issue names. */
export const SUITE_OPTIONAL_FILES = ["unit/pubsub", "unit/pubsubshard"] as const;

/**
 * The same flags for every target. --singledb: db 0 only (no SELECT 9). --durable: a test that throws (an error
 * reply) fails that test, not the whole file. --ignore-encoding / --ignore-digest: OBJECT ENCODING and DEBUG DIGEST
 * checks are internals, not semantics. Left out by Redis's own tags for servers that do not offer them:
 * needs:debug (DEBUG is not a client command), needs:repl (the tests attach to Redis's replication stream with SYNC
 * or change the server's replication: a door is not a Redis master, its replication is the journal) and
 * needs:config-maxmemory (CONFIG SET is not the client's). Left in, such a test stops between MULTI and EXEC (multi's
 * `EXEC fails … #2`, `exec with write commands and state change`) and leaves the file's shared connection inside
 * MULTI: every later test of the file failed on `MULTI calls can not be nested` — a cascade, not a result.
 */
export const SUITE_FLAGS = ["--singledb", "--durable", "--ignore-encoding", "--ignore-digest", "--tags", "-needs:debug -needs:repl -needs:config-maxmemory"];

/**
 * SUITE_FLAGS, and `--skiptest` for each of REDIS_SUITE_SKIP's comma-separated test names (`/regexp` for a pattern),
 * the same for every target: a run that leaves out a test too slow through a door to finish in SUITE_TEST_TIMEOUT_S
 * (zset's `ZDIFF fuzzing`: ~27,000 sequential writes) measures the rest of its file instead of ending there.
 */
export function suiteFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const skip = (env.REDIS_SUITE_SKIP ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  return [...SUITE_FLAGS, ...skip.flatMap((test) => ["--skiptest", test])];
}

/** A test making no progress this long ends its file (the suite's own --timeout, in seconds). */
export const SUITE_TEST_TIMEOUT_S = 180;
/** One file's whole run is killed after this long. */
export const SUITE_FILE_TIMEOUT_MS = 15 * 60_000;

/** Where the tarball and its extracted tests live: QJM_REDIS_SUITE_DIR, else <repo>/.cache/redis-suite. */
export function suiteCacheDir(): string {
  const env = process.env.QJM_REDIS_SUITE_DIR;
  if (env !== undefined && env !== "") return path.resolve(env);
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/bench/ when compiled, bench/ from source.
  return path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? "../.." : "..", ".cache", "redis-suite");
}

function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/**
 * The extracted, patched suite directory (it holds tests/): fetched and extracted the first time, then read from the
 * cache without the network. Throws with what to do when the tarball cannot be had.
 */
export async function ensureSuite(cacheDir = suiteCacheDir()): Promise<string> {
  const root = path.join(cacheDir, `redis-${SUITE_VERSION}`);
  const marker = path.join(root, ".qjm-ready");
  const ready = `${SUITE_SHA256} patch ${PATCH_VERSION}\n`;
  if (fs.existsSync(marker) && fs.readFileSync(marker, "utf8") === ready) return root;
  fs.mkdirSync(cacheDir, { recursive: true });
  const tarball = path.join(cacheDir, `redis_${SUITE_VERSION}.orig.tar.gz`);
  if (!fs.existsSync(tarball) || sha256(tarball) !== SUITE_SHA256) await download(tarball);
  fs.rmSync(root, { recursive: true, force: true });
  await run("tar", ["-xzf", tarball, "-C", cacheDir, `redis-${SUITE_VERSION}/tests`]);
  patchHarness(path.join(root, "tests"));
  fs.writeFileSync(marker, ready);
  return root;
}

async function download(tarball: string): Promise<void> {
  const tmp = `${tarball}.part`;
  let res: Response;
  try {
    res = await fetch(SUITE_URL, { signal: AbortSignal.timeout(120_000) });
  } catch (e) {
    throw new Error(`cannot download Redis's test suite from ${SUITE_URL} (${(e as Error).message}); with no network, put that file (sha256 ${SUITE_SHA256}) at ${tarball}, or run infra/setup.sh where the network is`);
  }
  if (!res.ok) throw new Error(`cannot download Redis's test suite: ${SUITE_URL} answered ${res.status}`);
  fs.writeFileSync(tmp, Buffer.from(await res.arrayBuffer()));
  const got = sha256(tmp);
  if (got !== SUITE_SHA256) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`Redis's test suite from ${SUITE_URL} has sha256 ${got}, not Debian's ${SUITE_SHA256}: refused`);
  }
  fs.renameSync(tmp, tarball);
}

/** The harness's external-server reset, as shipped, and what the runner puts in its place (tests/support/server.tcl). */
const RESET_AS_SHIPPED = "    r flushall\n    r function flush\n";
const RESET_PATCHED = `    # redis-qjm: a server that refuses FLUSHALL (the front door, by design) is emptied key by key.
    if {[catch {r flushall}]} { qjm_reset_keyspace }
    catch {r function flush}
`;
const RESET_PROC = `
# redis-qjm: what FLUSHALL does, with SCAN and UNLINK (which the front door serves), until DBSIZE is 0.
proc qjm_reset_keyspace {} {
    for {set round 0} {$round < 10 && [r dbsize] > 0} {incr round} {
        set cursor 0
        while 1 {
            lassign [r scan $cursor count 1000] cursor keys
            if {[llength $keys] > 0} { r unlink {*}$keys }
            if {$cursor == 0} break
        }
    }
}
`;
/** The suite's `r` (tests/test_helper.tcl), as shipped, and with the front door's CONFIG SET refusal let through. */
const R_AS_SHIPPED = "        set args [lrange $args 1 end]\n    }\n    [srv $level \"client\"] {*}$args\n}\n";
const R_PATCHED = `        set args [lrange $args 1 end]
    }
    # redis-qjm: the front door refuses CONFIG SET (by design). The files set encoding thresholds and the like with
    # it between tests; they run on with the server's settings (a line says so) instead of ending the file there.
    if {[catch {[srv $level "client"] {*}$args} res]} {
        if {[string match "*CONFIG SET is not supported by the front door*" $res]} {
            puts "qjm: [lrange $args 0 2] refused: the server's setting stays"
            return OK
        }
        return -code error $res
    }
    return $res
}
`;
/**
 * The suite's handling of a failed test (tests/support/test.tcl): one that threw, and one whose value did not match,
 * as shipped and with the file's shared connection replaced by a fresh one.
 */
const FAILED_AS_SHIPPED = "            incr ::num_failed\n            send_data_packet $::test_server_fd err [join $details \"\\n\"]\n\n            if {$::stop_on_failure} {";
const FAILED_PATCHED = `            incr ::num_failed
            send_data_packet $::test_server_fd err [join $details "\\n"]
            qjm_fresh_connection

            if {$::stop_on_failure} {`;
const MISMATCH_AS_SHIPPED = "            incr ::num_failed\n            send_data_packet $::test_server_fd err [join $details \"\\n\"]\n        }\n    }\n";
const MISMATCH_PATCHED = `            incr ::num_failed
            send_data_packet $::test_server_fd err [join $details "\\n"]
            qjm_fresh_connection
        }
    }
`;
const FRESH_CONNECTION_PROC = `
# redis-qjm: a failed test may leave the file's shared connection in a state the next tests do not expect: inside
# MULTI (a door refusing a command there), in RESP3 (zset's "… RESP3" tests end with HELLO 2), in readraw mode. Every
# later test of the file would fail for that alone. So the file goes on with a fresh connection, as a file starts:
# RESP2, database 0 (--singledb). The old one is closed (a MULTI on it is discarded with it). Errors are ignored.
proc qjm_fresh_connection {} {
    if {[llength $::servers] == 0} return
    if {[catch {reconnect} err]} { puts "qjm: no fresh connection after the failed test: $err"; return }
    catch {r hello 2}
    if {$::singledb} { catch {r select 0} }
}
`;
/** Changes when the patch does: a cache extracted with another patch is extracted again. */
export const PATCH_VERSION = "4";

/**
 * The runner's only changes to the suite, in its harness, the same for every target, taking effect only where a
 * server refuses: the reset before each file's server block must not abort the file on a server that refuses
 * FLUSHALL, a refused CONFIG SET of the front door leaves the setting as it is, and after a failed test the file goes
 * on with a fresh connection (RESP2, database 0), so one failure cannot leave MULTI, RESP3 or readraw to the next tests.
 * A plain redis-server takes the shipped paths, and gets the fresh connection after a failure too.
 */
export function patchHarness(testsDir: string): void {
  patchFile(path.join(testsDir, "support", "server.tcl"), RESET_AS_SHIPPED, RESET_PATCHED, RESET_PROC);
  patchFile(path.join(testsDir, "test_helper.tcl"), R_AS_SHIPPED, R_PATCHED, "");
  patchFile(path.join(testsDir, "support", "test.tcl"), FAILED_AS_SHIPPED, FAILED_PATCHED, FRESH_CONNECTION_PROC);
  patchFile(path.join(testsDir, "support", "test.tcl"), MISMATCH_AS_SHIPPED, MISMATCH_PATCHED, "");
}

function patchFile(file: string, from: string, to: string, append: string): void {
  const s = fs.readFileSync(file, "utf8");
  if (!s.includes(from)) throw new Error(`${file}: the suite's harness changed, cannot patch: ${JSON.stringify(from)}`);
  fs.writeFileSync(file, s.replace(from, to) + append);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")}: exit ${code}: ${err.trim()}`))));
  });
}

export interface FailedTest {
  name: string;
  /** The error's first line (Redis's reply, or the assertion's "Expected …"). */
  error: string;
}

export interface FileResult {
  file: string;
  passed: number;
  failed: number;
  /** Tests left out by their tags (needs:debug, external:skip, singledb:skip…): the suite's [ignore] and [skip]. */
  ignored: number;
  /** The file did not run to its end: why (an exception outside a test, a test past the timeout, killed). */
  aborted?: string;
  failures: FailedTest[];
  seconds: number;
}

const OUTSIDE = "(outside a test)";
const STRIP_COLOR = /\x1b\[[0-9;]*m/g;

/** The suite's output for one file (pure): counts, failures with their error line, and whether it ended early. */
export function parseSuiteOutput(file: string, output: string, seconds: number, exitCode: number | null): FileResult {
  const lines = output.replace(STRIP_COLOR, "").split("\n");
  const r: FileResult = { file, passed: 0, failed: 0, ignored: 0, failures: [], seconds };
  let done = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("[ok]: ")) r.passed++;
    else if (line.startsWith("[skip]: ") || line.startsWith("[ignore]: ")) r.ignored++;
    else if (line.startsWith("[err]: ")) {
      r.failed++;
      const failure = { name: failedName(line), error: errorLine(lines[i + 1] ?? "", lines[i + 2] ?? "") };
      r.failures.push(failure);
      // An error between tests ends its server block: the block's later tests do not run (none is reported).
      if (failure.name.startsWith(OUTSIDE)) r.aborted ??= `error outside a test, the rest of its server block not run: ${failure.error}`;
    } else if (line.startsWith("[exception]: ")) r.aborted ??= `exception: ${errorLine(line.slice(13), lines[i + 1] ?? "")}`;
    else if (line.startsWith("[TIMEOUT]")) r.aborted ??= `timeout: a test made no progress for ${SUITE_TEST_TIMEOUT_S} s (${(lines[i + 1] ?? "").replace(/^.*=> /, "")})`;
    else if (/^\[\d+\/\d+ done\]: /.test(line)) done = true;
  }
  if (!done) r.aborted ??= exitCode === null ? `killed after ${SUITE_FILE_TIMEOUT_MS / 1000} s` : `ended early (exit ${exitCode})`;
  return r;
}

/** `[err]: <name> in tests/unit/…tcl` → the name; an error outside any test has no "in" and is named by its text. */
function failedName(line: string): string {
  const body = line.slice("[err]: ".length);
  const m = /^(.*) in tests\/\S+\.tcl$/.exec(body);
  return m === null ? `${OUTSIDE} ${body}` : m[1];
}

/**
 * With --durable the suite prints an error's text cut by its first 10 characters, then the whole error as the first
 * line of Tcl's errorInfo: the whole line when the next one ends with the cut one.
 */
function errorLine(first: string, second: string): string {
  return second !== "" && first !== "" && second.endsWith(first) ? second : first;
}

export interface SuiteTarget {
  host: string;
  port: number;
}

/** Runs one file against a target; the suite's own per-test timeout, and the whole file bounded (its process group killed). */
export async function runSuiteFile(root: string, file: string, target: SuiteTarget, fileTimeoutMs = SUITE_FILE_TIMEOUT_MS): Promise<FileResult & { output: string }> {
  // The suite's test server listens on the first free port from baseport - 32 (21079 by default): a free one here, so
  // two runs at once (the bench and the integration test) do not collide.
  const base = Math.min(await freePort(), 65_535 - 64) + 32;
  const args = ["tests/test_helper.tcl", "--host", target.host, "--port", String(target.port), "--baseport", String(base), ...suiteFlags(), "--timeout", String(SUITE_TEST_TIMEOUT_S), "--single", file];
  const started = Date.now();
  // TERM=dumb: no colours. detached: the suite's test server and its client in one process group, killed together.
  const child = spawn("tclsh", args, { cwd: root, env: { ...process.env, TERM: "dumb" }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString("latin1")));
  child.stderr.on("data", (d: Buffer) => (output += d.toString("latin1")));
  const killGroup = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  };
  const timer = setTimeout(killGroup, fileTimeoutMs);
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.on("error", (e) => reject(new Error(`cannot run tclsh (Debian package tcl): ${e.message}`)));
    child.on("close", (code, signal) => resolve(signal === null ? code : null));
  }).finally(() => {
    clearTimeout(timer);
    killGroup(); // the suite's client, should the test server have left it behind
  });
  return { ...parseSuiteOutput(file, output, Math.round((Date.now() - started) / 100) / 10, exitCode), output };
}

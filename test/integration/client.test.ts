/**
 * The client library (issue #11 item 3) against a real cluster: writes with ids, a write retried across a kill -9
 * of the master, typed errors that are not retried, a write larger than one NATS message, and the package (as
 * `npm pack` makes it) imported by name from a consumer package (`import { connect } from "redis-qjm"`, JavaScript
 * and TypeScript).
 *
 * The master does not dedupe yet (the window is wired into it later): this asserts what is true today — a write
 * with an id is accepted and journaled like any write — not exactly-once end to end.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { connect, QjmClientError, type QjmClient } from "../../src/client/index.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import { request } from "../../src/nats/bus.js";
import { ErrorCode } from "../../src/protocol/errors.js";
import { subjects } from "../../src/protocol/subjects.js";
import { decodeRecordPayload, scanRecords } from "../../src/segment/record.js";
import { packageRoot } from "../../src/util/package_root.js";
import { startTestCluster, until, userEnv, waitForWriter, type TestCluster } from "../helpers/harness.js";

/** The package's root. */
const PACKAGE_ROOT = packageRoot();

let tc: TestCluster | undefined;
let client: QjmClient | undefined;
const scratch: string[] = [];
test.after.always(async () => {
  await client?.close().catch(() => {});
  await tc?.stop();
  for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true });
});

test.before(async () => {
  // Writes up to 4 MiB (the default is nats-server's max_payload, 1 MiB): a large one travels in fragments.
  tc = await startTestCluster("client", { writeBytesMax: 4 * 1024 * 1024 });
  await waitForWriter(tc);
  client = await connect({
    servers: tc.cluster.natsUrl,
    credsFile: credsFile(tc.cluster.dataDir, CLIENT_USER),
    cluster: tc.cluster.cluster,
    timeoutMs: 5000,
    retryForMs: 60_000,
  });
});

/**
 * The committed record at `txid`, read from a journal node as a replica reads it. A node learns the commit index
 * from the writer's next batch, so it is polled (after a failover the new writer's first batch tells it).
 */
async function committedRecord(txid: number): Promise<ReturnType<typeof decodeRecordPayload>> {
  const nc = await tc!.connectAs("m1");
  const s = subjects(tc!.cluster.cluster);
  return await until(`a journal node to serve committed txid ${txid}`, 30_000, async () => {
    for (const node of tc!.cluster.config.journalNodes) {
      const reply = (await request(nc, s.journalRead(node), { type: "read", fromTxid: txid, bytesMax: 65536, recordsMax: 1, uncommitted: false }, 5000).catch(() => null)) as {
        read?: { records: Uint8Array };
      } | null;
      const record = reply?.read === undefined ? undefined : scanRecords(reply.read.records).records[0];
      if (record?.txid === txid) return decodeRecordPayload(record.payload);
    }
    return undefined;
  }, 100);
}

/** Effects as text, the command upper-cased (Redis propagates some in lower case). */
const text = (effects: Uint8Array[][]): string[][] => effects.map((e) => e.map((a, i) => (i === 0 ? Buffer.from(a).toString().toUpperCase() : Buffer.from(a).toString())));

test.serial("client - writes get their txid and reply; each write is journaled like any write", async (t) => {
  const set = await client!.write("SET", "client:k", "v1");
  t.like(set, { reply: "OK", duplicate: false, attempts: 1 });
  const incrs = [];
  for (let i = 0; i < 3; i++) incrs.push(await client!.write("INCR", "client:c"));
  t.deepEqual(incrs.map((r) => r.reply), [1, 2, 3]);
  t.true(incrs[0].txid > set.txid && incrs[1].txid > incrs[0].txid && incrs[2].txid > incrs[1].txid);
  const record = await committedRecord(incrs[2].txid);
  t.deepEqual(text(record.effects), [["INCR", "client:c"]]);
  // Today's master journals v1 payloads (no id); once it journals ids, this must be the write's own.
  if (record.write !== null) t.like(record.write, { client: client!.id, seq: 4 });
});

test.serial("client - definite errors are typed, not retried, and say the write was not applied", async (t) => {
  const cases: [string, (string | number)[], ErrorCode][] = [
    ["NOSUCHCOMMAND", ["x"], ErrorCode.UNKNOWN_COMMAND],
    ["GET", ["client:k"], ErrorCode.NOT_A_WRITE],
    ["SET", ["client:k"], ErrorCode.WRONG_ARITY],
    ["INCR", ["client:k"], ErrorCode.REDIS_ERROR],
    ["SUBSCRIBE", ["ch"], ErrorCode.COMMAND_REFUSED],
  ];
  for (const [command, args, code] of cases) {
    const err = await t.throwsAsync(client!.write(command, ...args), { instanceOf: QjmClientError }, command);
    t.like(err, { code, outcomeUnknown: false, attempts: 1 }, command);
    t.like(err?.writeId, { client: client!.id }, command);
  }
});

test.serial("client - a write larger than one NATS message travels in fragments", async (t) => {
  const value = Buffer.alloc(2 * 1024 * 1024, 0x61);
  const big = await client!.write("SET", "client:big", value);
  t.is(big.reply, "OK");
  t.deepEqual(text((await committedRecord(big.txid)).effects).map((e) => [e[0], e[1], e[2].length]), [["SET", "client:big", value.length]]);
});

test.serial("client - a write sent while the master is down (kill -9) is retried with its id until the restarted master commits it", async (t) => {
  const before = await client!.write("INCR", "client:failover");
  await tc!.cluster.signal("m1", "SIGKILL");
  // Nobody serves writes now: the first attempt fails (no responders) and is retried.
  const pending = client!.write("INCR", "client:failover");
  // A client that retries for 300 ms only gives up, typed, saying it cannot tell whether the write was applied.
  const impatient = await connect({ servers: tc!.cluster.natsUrl, credsFile: credsFile(tc!.cluster.dataDir, CLIENT_USER), cluster: tc!.cluster.cluster, timeoutMs: 1000, retryForMs: 300 });
  try {
    const err = await t.throwsAsync(impatient.write("INCR", "client:other"), { instanceOf: QjmClientError });
    t.like(err, { code: ErrorCode.TIMEOUT, outcomeUnknown: true });
    t.true(err!.attempts > 1, `${err!.attempts} attempts`);
  } finally {
    await impatient.close();
  }
  tc!.cluster.startActor("m1");
  const after = await pending;
  t.true(after.attempts > 1, `${after.attempts} attempts`);
  t.is(after.reply, (before.reply as number) + 1);
  t.true(after.txid > before.txid);
  t.deepEqual(text((await committedRecord(after.txid)).effects), [["INCR", "client:failover"]]);
});

test.serial("client - status and events", async (t) => {
  const events = client!.events();
  const status = await client!.status();
  t.true(status.some((s) => s.role === "master"));
  t.is(status.filter((s) => s.role === "journal").length, 3);
  // Close the iterator: its subscription ends and the loop below finishes.
  const done = (async () => {
    for await (const _ of events) break;
  })();
  await events.return?.(undefined);
  await done;
  t.pass();
});

test.serial("client - writes refused OVERLOADED (not applied) are retried until each is applied once", async (t) => {
  // A master that admits one write at a time and queues one more: most of 40 concurrent INCRs are refused at first.
  const small = await startTestCluster("client-overloaded", { writesInflightMax: 1, writesQueuedMax: 1 });
  t.teardown(() => small.stop());
  await waitForWriter(small);
  const c = await connect({ servers: small.cluster.natsUrl, credsFile: credsFile(small.cluster.dataDir, CLIENT_USER), cluster: small.cluster.cluster, retryForMs: 60_000 });
  t.teardown(() => c.close());
  const results = await Promise.all(Array.from({ length: 40 }, () => c.write("INCR", "client:overloaded")));
  t.true(results.some((r) => r.attempts > 1), "some writes were refused and retried");
  // OVERLOADED means not applied: each INCR counted once, so the replies are exactly 1..40.
  t.deepEqual(results.map((r) => r.reply as number).sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i + 1));
});

function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, stdout, stderr });
    });
  });
}

test.serial("client - a consumer package imports { connect } from the packed \"redis-qjm\" and writes, with the default credentials", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-consumer-"));
  scratch.push(dir);
  // The package as `npm pack` makes it (its "files", "exports" and declarations), unpacked where `npm install` puts it;
  // its dependencies linked from this checkout (the test installs nothing from a registry). Without its prepack build:
  // the suite's set-up built, and a build now would rewrite dist/ under the other tests' feet.
  const pack = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", dir], PACKAGE_ROOT, process.env);
  t.is(pack.code, 0, pack.stderr);
  const tarball = path.join(dir, pack.stdout.trim().split("\n").pop()!);
  fs.mkdirSync(path.join(dir, "node_modules"));
  const untar = await run("tar", ["-xzf", tarball, "-C", path.join(dir, "node_modules")], dir, process.env);
  t.is(untar.code, 0, untar.stderr);
  fs.renameSync(path.join(dir, "node_modules", "package"), path.join(dir, "node_modules", "redis-qjm"));
  fs.symlinkSync(path.join(PACKAGE_ROOT, "node_modules"), path.join(dir, "node_modules", "redis-qjm", "node_modules"), "dir");
  t.false(fs.existsSync(path.join(dir, "node_modules", "redis-qjm", "dist", "test")), "tests are not packed");
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "consumer", type: "module", private: true }));
  fs.writeFileSync(
    path.join(dir, "main.mjs"),
    [
      'import { connect, QjmClientError, ErrorCode } from "redis-qjm";',
      "const qjm = await connect();",
      'const r = await qjm.write("INCR", "consumer:n");',
      "console.log(JSON.stringify({ txid: r.txid, reply: r.reply, errorClass: typeof QjmClientError, code: ErrorCode.NO_QUORUM }));",
      "await qjm.close();",
    ].join("\n"),
  );
  const env = userEnv(tc!);
  const js = await run(process.execPath, ["main.mjs"], dir, env);
  t.is(js.code, 0, js.stderr);
  t.like(JSON.parse(js.stdout) as Record<string, unknown>, { reply: 1, errorClass: "function", code: "NO_QUORUM" });
  // The bin as `npm install` links it (node_modules/.bin, its target made executable): the bundled CLI runs from the
  // installed package, finds its own files there, and writes.
  const installed = path.join(dir, "node_modules", "redis-qjm");
  const bin = (JSON.parse(fs.readFileSync(path.join(installed, "package.json"), "utf8")) as { bin: Record<string, string> }).bin["redis-qjm"];
  const cliJs = path.join(installed, bin);
  fs.chmodSync(cliJs, 0o755);
  fs.mkdirSync(path.join(dir, "node_modules", ".bin"));
  fs.symlinkSync(path.relative(path.join(dir, "node_modules", ".bin"), cliJs), path.join(dir, "node_modules", ".bin", "redis-qjm"));
  const cli = await run(path.join(dir, "node_modules", ".bin", "redis-qjm"), ["write", "INCR", "consumer:n"], dir, env);
  t.is(cli.code, 0, cli.stderr);
  t.like(JSON.parse(cli.stdout) as Record<string, unknown>, { ok: true, reply: 2 });
  // The types: a TypeScript consumer type-checks against the package's declarations.
  fs.writeFileSync(
    path.join(dir, "main.ts"),
    [
      'import { connect, QjmClientError, type WriteResult } from "redis-qjm";',
      "const qjm = await connect({ retryForMs: 1000 });",
      'const r: WriteResult = await qjm.write("SET", "k", 1, new Uint8Array([1]));',
      "const txid: number = r.txid;",
      "const e: QjmClientError | null = null;",
      "console.log(txid, e);",
    ].join("\n"),
  );
  const typeRoots = path.join(PACKAGE_ROOT, "node_modules", "@types");
  fs.writeFileSync(
    path.join(dir, "tsconfig.json"),
    JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, skipLibCheck: true, typeRoots: [typeRoots], types: ["node"] }, files: ["main.ts"] }),
  );
  const tsc = await run(process.execPath, [path.join(PACKAGE_ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], dir, env);
  t.is(tsc.code, 0, tsc.stdout + tsc.stderr);
});

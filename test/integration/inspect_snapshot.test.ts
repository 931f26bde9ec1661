/**
 * `redis-qjm inspect` on snapshots as a user runs it: the compiled CLI on a real RDB saved by a redis-server 7.0
 * (varied types, TTLs, values long enough for LZF), laid out as a journal node keeps it (`snapshot_<txid>.rdb` and
 * its descriptor), and on copies with a flipped byte. NATS points at a port nothing listens on: it never connects.
 */
import test from "ava";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../../src/process/ports.js";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import type { SnapshotReport } from "../../src/snapshot/inspect_snapshot.js";
import { descriptorName, snapshotFileName } from "../../src/snapshot/snapshot_store.js";
import { runInspectCli } from "../helpers/inspect_cli.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-inspect-snapshot-"));
const TXID = 1234;
let server: RedisServer | null = null;
/** The RDB redis-server saved, and how many keys it held (DBSIZE) and how many with a TTL. */
let rdb: Buffer = Buffer.alloc(0);
let dbsize = 0;
const WITH_TTL = 50;

test.before(async () => {
  server = await startRedisServer({ port: await freePort(), dir: path.join(dir, "redis"), persistent: false, startTimeoutMs: 15_000 });
  const r = new Redis({ port: server.port, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    const p = r.pipeline();
    for (let i = 0; i < 500; i++) {
      p.set(`s:${i}`, `value-${i}-${"x".repeat(40 + (i % 60))}`);
      p.hset(`h:${i}`, { f: String(i), long: "y".repeat(100) });
      p.rpush(`l:${i}`, "a", String(i));
      p.zadd(`z:${i}`, i, `m${i}`);
    }
    for (let i = 0; i < WITH_TTL; i++) p.set(`ttl:${i}`, "v", "PX", 3_600_000);
    await p.exec();
    dbsize = await r.dbsize();
    await r.call("SAVE");
  } finally {
    r.disconnect();
  }
  rdb = fs.readFileSync(path.join(dir, "redis", "dump.rdb"));
});

test.after.always(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A journal node's snapshots directory holding `data` as snapshot TXID, with a descriptor made from `described`. */
function snapshotDir(name: string, data: Buffer, described: Buffer | null = data): { rdbFile: string; descriptorFile: string } {
  const snapshots = path.join(dir, name, "snapshots");
  fs.mkdirSync(snapshots, { recursive: true });
  const rdbFile = path.join(snapshots, snapshotFileName(TXID));
  const descriptorFile = path.join(snapshots, descriptorName(TXID));
  fs.writeFileSync(rdbFile, data);
  if (described !== null) {
    const sha256 = createHash("sha256").update(described).digest("hex");
    fs.writeFileSync(descriptorFile, JSON.stringify({ txid: TXID, bytes: described.length, sha256 }));
  }
  return { rdbFile, descriptorFile };
}

function flipped(at: number): Buffer {
  const copy = Buffer.from(rdb);
  copy[at] ^= 0x40;
  return copy;
}

const cli = runInspectCli;

test("inspect snapshot cli - a sound snapshot and its descriptor: summary, exit 0", async (t) => {
  const { rdbFile } = snapshotDir("sound", rdb);
  const { code, stdout, stderr } = await cli(rdbFile);
  t.is(stderr, "");
  t.is(code, 0);
  const sha256 = createHash("sha256").update(rdb).digest("hex");
  t.deepEqual(stdout.trimEnd().split("\n"), [
    `${rdbFile}  kind=snapshot  txid=${TXID}  bytes=${rdb.length}  rdb-version=${Number(rdb.subarray(5, 9).toString())}`,
    "checksum: ok",
    `sha256: ok (${sha256}, descriptor ${path.join(path.dirname(rdbFile), descriptorName(TXID))})`,
    `keys: ${dbsize} in db 0 (${WITH_TTL} with a TTL)`,
    "problems: none",
  ]);
});

test("inspect snapshot cli - given the descriptor, the RDB beside it is inspected; --json parses to the report", async (t) => {
  const { rdbFile, descriptorFile } = snapshotDir("by-descriptor", rdb);
  const { code, stdout } = await cli(descriptorFile, "--json");
  t.is(code, 0);
  const report = JSON.parse(stdout) as SnapshotReport;
  t.is(report.file, rdbFile);
  t.is(report.descriptorFile, descriptorFile);
  t.is(report.txid, TXID);
  t.is(report.bytes, rdb.length);
  t.true(report.rdbVersion !== null && report.rdbVersion >= 9);
  t.is(report.checksum, "ok");
  t.is(report.sha256Check, "ok");
  t.deepEqual(report.keys, { db: 0, keys: dbsize, expires: WITH_TTL });
  t.deepEqual(report.problems, []);
});

test("inspect snapshot cli - a flipped byte: CRC-64 and SHA-256 both bad, exit 1", async (t) => {
  const { rdbFile } = snapshotDir("flipped", flipped(Math.floor(rdb.length / 2)), rdb);
  const { code, stdout } = await cli(rdbFile, "--json");
  t.is(code, 1);
  const report = JSON.parse(stdout) as SnapshotReport;
  t.is(report.checksum, "bad");
  t.is(report.sha256Check, "bad");
  t.is(report.problems.length, 2);
  t.true(report.problems[0].startsWith(`CRC-64 mismatch: the trailer at offset ${rdb.length - 8} says `), report.problems[0]);
  t.true(report.problems[1].startsWith("SHA-256 mismatch: the descriptor says "), report.problems[1]);
});

test("inspect snapshot cli - a flipped byte with no descriptor: the CRC-64 alone finds it; a text report lists it", async (t) => {
  const file = path.join(dir, "dump-flipped.rdb");
  fs.writeFileSync(file, flipped(rdb.length - 3));
  const { code, stdout } = await cli(file);
  t.is(code, 1);
  t.regex(stdout, /^checksum: bad$/m);
  t.regex(stdout, /^sha256: [0-9a-f]{64} \(unchecked: no descriptor beside the file\)$/m);
  t.regex(stdout, /^problems:\n {2}CRC-64 mismatch: /m);
  t.true(stdout.startsWith(`${file}  kind=snapshot  txid=unknown  bytes=${rdb.length}`));
});

test("inspect snapshot cli - a file cut short and a descriptor whose size disagrees: exit 1", async (t) => {
  const { rdbFile } = snapshotDir("cut", rdb.subarray(0, rdb.length - 100), rdb);
  const { code, stdout } = await cli(rdbFile, "--json");
  t.is(code, 1);
  const report = JSON.parse(stdout) as SnapshotReport;
  t.true(report.problems.includes(`descriptor says ${rdb.length} bytes, the file has ${rdb.length - 100}`), report.problems.join("\n"));
  t.is(report.checksum, "bad");
});

test("inspect snapshot cli - usage errors and missing files exit 2", async (t) => {
  const { rdbFile, descriptorFile } = snapshotDir("orphan-descriptor", rdb);
  fs.rmSync(rdbFile);
  const orphan = await cli(descriptorFile);
  t.is(orphan.code, 2);
  t.is(orphan.stderr.trim(), `cannot read ${rdbFile}: ENOENT`);
  const limited = await cli(descriptorFile, "--limit", "3");
  t.is(limited.code, 2);
  t.regex(limited.stderr, /--limit applies to segments/);
  const bad = snapshotDir("bad-descriptor", rdb, null);
  fs.writeFileSync(bad.descriptorFile, "{\"txid\": 1234");
  const invalid = await cli(bad.rdbFile);
  t.is(invalid.code, 1);
  t.regex(invalid.stdout, /descriptor .* is not valid: /);
});

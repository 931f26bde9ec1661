/**
 * `redis-qjm inspect` as a user runs it: the compiled CLI on files in a temp dir, with NATS pointed at a port
 * nothing listens on (and a config that loadConfig would refuse), so a success also shows it never connects.
 */
import test from "ava";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { finalizedName, inProgressName } from "../../src/journal/segment_store.js";
import type { InspectReport } from "../../src/segment/inspect.js";
import { RECORD_HEADER_BYTES, encodeEffects, encodeRecord } from "../../src/segment/record.js";
import { runInspectCli } from "../helpers/inspect_cli.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-inspect-cli-"));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

function record(txid: number): Buffer {
  return encodeRecord(txid, 2, encodeEffects([[Buffer.from("SET"), Buffer.from("k"), Buffer.from(`v${txid}`)]]));
}

/** Txids 1..3 as one segment, and where the second record starts. */
function threeRecords(): { data: Buffer; second: number } {
  const parts = [1, 2, 3].map(record);
  return { data: Buffer.concat(parts), second: parts[0].length };
}

/** Each test its own directory: ava runs them concurrently and segment names repeat. */
function write(testDir: string, name: string, data: Buffer): string {
  fs.mkdirSync(path.join(dir, testDir), { recursive: true });
  const file = path.join(dir, testDir, name);
  fs.writeFileSync(file, data);
  return file;
}

const cli = runInspectCli;

test("inspect cli - a clean segment: records printed, exit 0", async (t) => {
  const { data } = threeRecords();
  const file = write("clean", finalizedName(1, 3), data);
  const { code, stdout, stderr } = await cli(file);
  t.is(stderr, "");
  t.is(code, 0);
  const lines = stdout.trimEnd().split("\n");
  t.is(lines[0], `${file}  kind=finalized  records=3  txids=1..3  bytes=${data.length}/${data.length}`);
  t.regex(lines[1], /^1  2 +0  SET k v1$/);
  t.is(lines.length, 5);
  t.is(lines[4], "problems: none");
});

test("inspect cli - a flipped byte in a middle record: exit 1, the offset named", async (t) => {
  const { data, second } = threeRecords();
  data[second + RECORD_HEADER_BYTES + 3] ^= 0x01;
  const file = write("corrupt", inProgressName(1), data);
  const { code, stdout } = await cli(file);
  t.is(code, 1);
  t.true(stdout.includes(`corrupt record at offset ${second}: checksum mismatch`), stdout);
});

test("inspect cli - --json parses to the report, --limit bounds its records", async (t) => {
  const { data } = threeRecords();
  const torn = data.subarray(0, data.length - 5);
  const file = write("json", inProgressName(1), torn);
  const { code, stdout } = await cli(file, "--json", "--limit", "1");
  t.is(code, 1);
  const report = JSON.parse(stdout) as InspectReport;
  t.is(report.kind, "in-progress");
  t.is(report.count, 2);
  t.deepEqual(report.records.map((r) => [r.txid, r.effects]), [[1, [["SET", "k", "v1"]]]]);
  t.is(report.problems.length, 1);
  t.true(report.problems[0].startsWith("torn tail at offset "));
});

test("inspect cli - usage errors exit 2 with a clear message", async (t) => {
  const missing = path.join(dir, "no-such-segment");
  const absent = await cli(missing);
  t.is(absent.code, 2);
  t.is(absent.stderr.trim(), `cannot read ${missing}: ENOENT`);
  t.is(absent.stdout, "");
  const noFile = await cli();
  t.is(noFile.code, 2);
  t.regex(noFile.stderr, /usage: redis-qjm inspect/);
  const badLimit = await cli(missing, "--limit", "x");
  t.is(badLimit.code, 2);
  t.regex(badLimit.stderr, /--limit needs a non-negative whole number/);
});

/**
 * Smoke test of the bench's redis-benchmark part (bench/redis_benchmark.ts) on plain Redis alone (the doors take a
 * cluster: `npm run bench` runs them): the real redis-benchmark, its CSV read, and the state checks holding.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { runRedisBenchmarkBench } from "../../bench/redis_benchmark.js";

test("redis-benchmark -P 1 and -P 16 against a redis-server: six tests each, every check held", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-redis-benchmark-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = await runRedisBenchmarkBench(dir, 1, { targets: ["Redis"], requests: 1600 });
  t.deepEqual(r.problems, []);
  t.deepEqual(
    r.rows.map((row) => `${row.pipeline} ${row.test}`),
    [1, 16].flatMap((p) => ["SET", "GET", "INCR", "LPUSH", "HSET", "MSET (10 keys)"].map((name) => `${p} ${name}`)),
  );
  t.true(r.rows.every((row) => row.rps > 0 && row.p50Ms >= 0));
  t.is(r.checks.length, 2);
  t.regex(r.checks[1], /INCR counter and LLEN mylist each \+1600 .* 1600 GET calls/);
});

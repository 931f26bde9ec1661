/**
 * The failover bench end to end, shortest form: each system takes one kill -9 of its master under 4 clients. The
 * bench finds the master (redis-qjm: by status; Sentinel: by its sentinels), kills it and its Redis by pid, sees a
 * write acked after the kill, waits for the cluster to heal and reads every acked key back. redis-qjm must lose
 * none; Sentinel's losses are its figure, not a test failure. Servers are stopped by the bench's own teardown
 * (by pid), and by pid on exit should the test process die first.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { killServersOnExit } from "../../bench/cleanup.js";
import { runScenario, type FailoverSettings, type FailoverSystem } from "../../bench/failover.js";
import { qjmFailover } from "../../bench/qjm_failover.js";
import { sentinelFailover } from "../../bench/sentinel_failover.js";

killServersOnExit();

const SETTINGS: FailoverSettings = { clients: 4, kills: 1, partitions: 0, seed: 1 };

function inTempDir(make: (dir: string) => FailoverSystem): { system: FailoverSystem; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-fobench-"));
  return { system: make(dir), dir };
}

for (const [name, make] of [["redis-qjm", qjmFailover], ["Redis + Sentinel", sentinelFailover]] as const) {
  test(`${name}: one kill of the master, a write acked after it, every acked key read back`, async (t) => {
    const { system, dir } = inTempDir(make);
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 }));
    const r = await runScenario(system, "kill", SETTINGS, SETTINGS.kills);
    t.log(`first ack ${Math.round(r.p50Ms)} ms after the kill, ${r.acked} acked, ${r.lost} lost, ${r.failed} failed, ${r.unknown} unknown, ${r.resent} resent by the client (${r.duplicates} from the dedupe window), ${r.seconds} s`);
    t.is(r.note, undefined);
    t.is(r.faults, 1);
    t.is(r.unrecovered, 0);
    t.true(Number.isFinite(r.p50Ms) && r.p50Ms > 0);
    t.true(r.acked > 0);
    if (name === "redis-qjm") t.is(r.lost, 0);
  });
}

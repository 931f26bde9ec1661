/**
 * The bench's quorum skeleton (bench/skeleton.ts) is a floor only if it does what it claims: a write is answered once a
 * majority of its journals wrote and fdatasynced the batch, not before; both replicas apply every acked write, and
 * none before it is committed. Real nats-server, redis-servers and skeleton processes on free ports, stopped by pid by
 * the target's own teardown.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { killServersOnExit } from "../../bench/cleanup.js";
import { skeletonTarget } from "../../bench/skeleton.js";
import type { LagSummary } from "../../bench/trace.js";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { SKELETON_SUBJECTS } from "../../bench/skeleton_subjects.js";
import { decode } from "../../src/protocol/codec.js";
import { VALUE, keyFor } from "../../bench/workload.js";
import { until } from "../helpers/harness.js";

killServersOnExit();
// The replicas report their applied runs only when the bench traces (its default; set here, not inherited).
process.env.BENCH_TRACE_SAMPLE = "8";

/** How long a write must stay unanswered, and unapplied, while two of three journals are stopped. */
const NO_ACK_WINDOW_MS = 400;
const WRITES = 20;
const REPLICAS = 2;

test("a skeleton write is acked only once a majority of its journals hold its batch; both replicas apply it, once committed", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-skeleton-"));
  const target = skeletonTarget(dir);
  const stopped: number[] = [];
  const replicas: Redis[] = [];
  t.teardown(async () => {
    for (const r of replicas) r.disconnect();
    for (const pid of stopped) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // already gone
      }
    }
    await target.teardown();
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  });
  await target.setup(1);
  // The window collects each write's commit stamp and the replicas' applied runs (the bench's P4): one sample per
  // (write, replica) applied. Reopened at once after each look, so nothing is missed between looks.
  const window = target.window!;
  const applied = (): LagSummary => {
    const lag = window.close().lag!;
    window.open();
    return lag;
  };
  window.open();
  for (let i = 0; i < WRITES; i++) await target.write(0, i);
  // The last write's commit reaches the replicas on its own (no batch follows it).
  await until("both replicas applied every write", 10_000, () => (applied().samples === WRITES * REPLICAS ? true : undefined));
  const journals = target.processes!().filter((p) => p.name.startsWith("journal"));
  t.is(journals.length, 3);
  const logs = fs.readdirSync(dir).filter((f) => f.endsWith(".editlog")).map((f) => fs.readFileSync(path.join(dir, f), "latin1"));
  for (let i = 0; i < WRITES; i++) t.true(logs.filter((l) => l.includes(keyFor(0, i))).length >= 2, `write ${i} is on a majority of journals`);
  for (const port of target.replicaRedisPorts()) replicas.push(new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 0 }));
  t.is(replicas.length, REPLICAS);
  const keys = Array.from({ length: WRITES + 1 }, (_, i) => keyFor(0, i));
  t.is(new Set(keys).size, WRITES + 1, "the test's writes have distinct keys");
  const values = (i: number): Promise<(string | null)[]> => Promise.all(replicas.map((r) => r.get(keys[i])));
  for (let i = 0; i < WRITES; i++) t.deepEqual(await values(i), [VALUE, VALUE], `write ${i} applied on both replicas`);

  for (const j of journals.slice(0, 2)) {
    process.kill(j.pid, "SIGSTOP");
    stopped.push(j.pid);
  }
  const write = target.write(0, WRITES).then(() => "acked");
  const early = await Promise.race([write, new Promise((resolve) => setTimeout(() => resolve("waiting"), NO_ACK_WINDOW_MS))]);
  t.is(early, "waiting", "one journal of three is no majority");
  t.deepEqual(await values(WRITES), [null, null], "no replica applies an uncommitted write");
  process.kill(stopped.pop()!, "SIGCONT");
  t.is(await write, "acked");
  await until("both replicas applied the last write", 10_000, async () => ((await values(WRITES)).every((v) => v === VALUE) ? true : undefined));
  t.is(applied().samples, (WRITES + 1) * REPLICAS);
  // A body that is not msgpack is answered BAD_REQUEST, and the master writes on (it ended the master before).
  const nc = await connect({ servers: target.natsUrl() });
  t.teardown(() => nc.close());
  t.like(decode((await nc.request(SKELETON_SUBJECTS.write, new TextEncoder().encode("not msgpack"), { timeout: 5000 })).data), { ok: false, code: "BAD_REQUEST" });
  await target.write(0, WRITES + 1);
});

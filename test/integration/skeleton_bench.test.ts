/**
 * The bench's quorum skeleton (bench/skeleton.ts) is a floor only if it does what it claims: a write is answered once a
 * majority of its journals wrote and fdatasynced the batch, not before, and every replica applies every acked write.
 * Real nats-server, redis-servers and skeleton processes on free ports, stopped by pid by the target's own teardown.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { killServersOnExit } from "../../bench/cleanup.js";
import { skeletonTarget } from "../../bench/skeleton.js";
import { writeBody } from "../../bench/workload.js";
import { until } from "../helpers/harness.js";

killServersOnExit();

/** How long a write must stay unanswered while two of three journals are stopped. */
const NO_ACK_WINDOW_MS = 400;

test("a skeleton write is acked only once a majority of its journals hold its batch; both replicas apply it", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-skeleton-"));
  const target = skeletonTarget(dir);
  const stopped: number[] = [];
  t.teardown(async () => {
    for (const pid of stopped) process.kill(pid, "SIGCONT");
    await target.teardown();
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  });
  await target.setup(1);
  // The window collects each write's commit stamp and the replicas' applied runs (the bench's P4).
  target.window!.open();
  for (let i = 0; i < 20; i++) await target.write(0, i);
  // The last write's commit reaches the replicas on its own (no batch follows it): 20 writes × 2 replicas applied.
  const lag = await until("both replicas applied every write", 10_000, () => {
    const seen = target.window!.close().lag!;
    target.window!.open();
    return seen.samples === 40 ? seen : undefined;
  });
  t.true(lag.p50Ms >= 0 && lag.p99Ms >= lag.p50Ms);
  const journals = target.processes!().filter((p) => p.name.startsWith("journal"));
  t.is(journals.length, 3);
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".editlog")).map((f) => path.join(dir, f));
  const bodies = Array.from({ length: 20 }, (_, i) => writeBody(0, i).length).reduce((a, b) => a + b, 0);
  t.true(files.filter((f) => fs.statSync(f).size >= bodies).length >= 2, "a majority of journals hold every acked body");

  for (const j of journals.slice(0, 2)) {
    process.kill(j.pid, "SIGSTOP");
    stopped.push(j.pid);
  }
  const write = target.write(0, 20).then(() => "acked");
  const early = await Promise.race([write, new Promise((resolve) => setTimeout(() => resolve("waiting"), NO_ACK_WINDOW_MS))]);
  t.is(early, "waiting", "one journal of three is no majority");
  process.kill(stopped.pop()!, "SIGCONT");
  t.is(await write, "acked");
});

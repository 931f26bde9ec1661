/**
 * Journal nodes that stall or whose disk fails: the master masks them without slowing acks or growing its memory,
 * catches them up once they answer again and counts them again; their records then equal their peers'.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { segmentFilesIn } from "../../src/journal/segment_store.js";
import { scanRecords } from "../../src/segment/record.js";
import { FAULTS_USER } from "../../src/nats/auth.js";
import { request } from "../../src/nats/bus.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History } from "../helpers/history.js";
import { journalFingerprint, startLoad, type Load } from "../helpers/load.js";
import { verifyHistory } from "../helpers/verify.js";

let tc: TestCluster | undefined;
test.before(async () => {
  tc = await startTestCluster("jnhealth", { faultInjection: 1 });
  await waitForWriter(tc);
});
test.after.always(async () => {
  await tc?.stop();
});

const history = new History();
const load = (clients: number, tag: string) => startLoad(tc!, history, clients, tag);
type Sample = Load["samples"][number];

function p99(samples: Sample[]): number {
  const sorted = samples.map((s) => s.latencyMs).sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0;
}

async function master(): Promise<ActorStatus> {
  return await until("the master's status", 5000, async () => (await tc!.status()).find((s) => s.role === "master"));
}

async function health(node: string): Promise<string> {
  return ((await master()).details.journalNodes as Record<string, string>)[node];
}

test.serial("journal health - SIGSTOP of a journal node for 10 s under 100 clients: no write fails, acks do not slow, memory stays bounded", async (t) => {
  const l = load(100, "stop");
  await until("a steady state", 20000, () => (l.samples.length >= 3000 ? true : undefined));
  const before = l.samples.slice(-2000);
  const pid = tc!.cluster.actors.get("jn2")!.pid;
  const stoppedAt = performance.now();
  process.kill(pid, "SIGSTOP");
  let rssMaxBytes = 0;
  const seenWhileStopped = new Set<string>();
  try {
    await until("jn2 masked", 10000, async () => ((await health("jn2")) === "masked" ? true : undefined), 50);
    const maskedAfterMs = performance.now() - stoppedAt;
    t.log(`jn2 masked ${maskedAfterMs.toFixed(0)} ms after SIGSTOP`);
    // Detection bound: heartbeats silent for journalHeartbeatTimeoutMs (under load the unanswered-batch bound comes
    // first, ~1 s), plus room for a loaded 2-core machine.
    const { journalHeartbeatTimeoutMs, quorumTimeoutMs } = tc!.cluster.config;
    t.true(maskedAfterMs < journalHeartbeatTimeoutMs + quorumTimeoutMs, "masked within the detection bound");
    while (performance.now() - stoppedAt < 10000) {
      const rss = Number((await import("node:fs")).readFileSync(`/proc/${tc!.cluster.actors.get("m1")!.pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) * 1024;
      rssMaxBytes = Math.max(rssMaxBytes, rss);
      seenWhileStopped.add(await health("jn2"));
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    process.kill(pid, "SIGCONT");
  }
  const during = l.samples.filter((s) => s.atMs >= stoppedAt + 1000 && s.atMs < stoppedAt + 10000);
  t.log(`p99 before ${p99(before).toFixed(1)} ms, during the pause ${p99(during).toFixed(1)} ms; master RSS max ${(rssMaxBytes / 1048576).toFixed(0)} MiB`);
  t.true(p99(during) <= Math.max(2 * p99(before), p99(before) + 20), "p99 during the pause within 2x of before");
  t.true(rssMaxBytes < 512 * 1024 * 1024, "the master's memory stays bounded");
  // Silent since before its mask, it is not caught up (a catch-up would wait out its request timeout): masked throughout.
  t.deepEqual([...seenWhileStopped], ["masked"], "jn2 stays masked while stopped, never catching-up");

  await until("jn2 restored", 30000, async () => ((await health("jn2")) === "healthy" ? true : undefined), 100);
  await l.stop();
  t.deepEqual(l.failures.slice(0, 3), [], "no write failed");
  const m = await master();
  const from = Math.max(1, m.committedTxid - 5000);
  const jn1 = await journalFingerprint(tc!, "jn1", from, m.committedTxid);
  t.is(jn1.length, m.committedTxid - from + 1);
  t.deepEqual(await journalFingerprint(tc!, "jn2", from, m.committedTxid), jn1, "jn2's records equal jn1's (txids and checksums)");
  t.deepEqual(await journalFingerprint(tc!, "jn3", from, m.committedTxid), jn1, "jn3's records equal jn1's");
});

test.serial("journal health - ENOSPC on one node under load: writes go on, the node is masked, then restored once the disk recovers", async (t) => {
  const l = load(50, "enospc");
  await until("a steady state", 20000, () => (l.samples.length >= 1000 ? true : undefined));
  const faultSubject = subjects(tc!.cluster.cluster).journalFault("jn3");
  const faults = await tc!.connectAs(FAULTS_USER);
  await request(faults, faultSubject, { operation: "write", errno: "ENOSPC" }, 5000);
  await until("jn3 masked", 10000, async () => ((await health("jn3")) === "masked" ? true : undefined), 50);
  const jn3 = await until("jn3 to report its disk error", 5000, async () => (await tc!.status()).find((s) => s.id === "jn3" && s.health === "disk-error"));
  t.regex(String(jn3.details.diskError), /ENOSPC/);
  const at = l.samples.length;
  await until("1,000 writes while jn3's disk is full", 30000, () => (l.samples.length >= at + 1000 ? true : undefined));
  await request(faults, faultSubject, { operation: "write", errno: null }, 5000);
  await until("jn3 restored", 30000, async () => ((await health("jn3")) === "healthy" ? true : undefined), 100);
  await l.stop();
  t.deepEqual(l.failures.slice(0, 3), [], "no write failed");
  await verifyHistory(t, tc!, history);
});

test.serial("journal health - with no writes at all, a stopped journal node is masked by its missed heartbeats", async (t) => {
  await until("every node healthy", 30000, async () => (Object.values((await master()).details.journalNodes as Record<string, string>).every((h) => h === "healthy") ? true : undefined), 100);
  const pid = tc!.cluster.actors.get("jn1")!.pid;
  const stoppedAt = performance.now();
  process.kill(pid, "SIGSTOP");
  try {
    await until("jn1 masked", 10000, async () => ((await health("jn1")) === "masked" ? true : undefined), 50);
    const afterMs = performance.now() - stoppedAt;
    t.log(`jn1 masked ${afterMs.toFixed(0)} ms after SIGSTOP, with no write in flight`);
    t.true(afterMs < tc!.cluster.config.journalHeartbeatTimeoutMs + 1500);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  await until("jn1 restored", 30000, async () => ((await health("jn1")) === "healthy" ? true : undefined), 100);
  t.true((await tc!.write(["SET", "after-idle-stop", "1"])).ok);
});

test.serial("journal health - a journal node that serves a replica corrupt records is masked on the replica's report", async (t) => {
  const r1 = (await tc!.status()).find((s) => s.id === "r1")!;
  await tc!.cluster.signal("r1", "SIGKILL");
  const l = load(10, "rot");
  await until("300 writes r1 has not applied", 30000, () => (l.acks() >= 300 ? true : undefined));
  await l.stop();
  // Bit rot in jn1's copy of a record r1 still needs: jn1 validated it when it was written, and now serves it damaged.
  const victimTxid = r1.appliedTxid + 5;
  let damaged = false;
  for (const file of segmentFilesIn(path.join(tc!.cluster.dataDir, "jn1"))) {
    const data = fs.readFileSync(file);
    const rec = scanRecords(data).records.find((r) => r.txid === victimTxid);
    if (rec === undefined) continue;
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, Buffer.from([data[rec.offset + rec.length - 1] ^ 0xff]), 0, 1, rec.offset + rec.length - 1);
    fs.closeSync(fd);
    damaged = true;
  }
  t.true(damaged, `jn1 holds txid ${victimTxid}`);
  tc!.cluster.startActor("r1");
  await until("the master to mask jn1 on r1's report", 20000, async () => ((await health("jn1")) === "masked" ? true : undefined), 50);
  // r1 reads the record from the other nodes and converges; the history still holds (read from the sound nodes).
  await verifyHistory(t, tc!, history, ["jn2", "jn3"]);
});

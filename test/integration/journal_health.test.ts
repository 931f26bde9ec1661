/**
 * Journal nodes that stall or whose disk fails: the master masks them without slowing acks or growing its memory,
 * catches them up once they answer again and counts them again; their records then equal their peers'.
 */
import test from "ava";
import { request } from "../../src/nats/bus.js";
import type { ActorStatus, WriteReply } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { scanRecords } from "../../src/segment/record.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";

let tc: TestCluster | undefined;
test.before(async () => {
  tc = await startTestCluster("jnhealth", { faultInjection: 1 });
  await waitForWriter(tc);
});
test.after.always(async () => {
  await tc?.stop();
});

interface Sample {
  atMs: number;
  latencyMs: number;
  reply: WriteReply;
}

/** Closed-loop clients writing unique keys until stop(); every reply with its latency. */
function load(clients: number, tag: string) {
  let running = true;
  const samples: Sample[] = [];
  const done = Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; running; i++) {
        const t0 = performance.now();
        const reply = await tc!.write(["SET", `${tag}:${c}:${i}`, String(i)]);
        samples.push({ atMs: t0, latencyMs: performance.now() - t0, reply });
      }
    }),
  );
  return {
    samples,
    async stop() {
      running = false;
      await done;
    },
  };
}

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

/** (txid, checksum) of every record of a node from `from` to `to`, read straight from it. */
async function fingerprint(node: string, from: number, to: number): Promise<string[]> {
  const out: string[] = [];
  for (let txid = from; txid <= to; ) {
    const r = (await request(tc!.nc, subjects(tc!.cluster.cluster).journal(node), { type: "read", fromTxid: txid, bytesMax: 512 * 1024, recordsMax: 8192, uncommitted: true }, 5000)) as {
      ok: boolean;
      read?: { records: Uint8Array; count: number };
    };
    if (!r.ok || r.read === undefined || r.read.count === 0) throw new Error(`${node} does not serve txid ${txid}`);
    for (const rec of scanRecords(r.read.records).records) {
      if (rec.txid > to) break;
      const view = Buffer.from(r.read.records.buffer, r.read.records.byteOffset + rec.offset, rec.length);
      out.push(`${rec.txid}:${view.readUInt32BE(20)}`);
      txid = rec.txid + 1;
    }
  }
  return out;
}

test.serial("journal health - SIGSTOP of a journal node for 10 s under 100 clients: no write fails, acks do not slow, memory stays bounded", async (t) => {
  const l = load(100, "stop");
  await until("a steady state", 20000, () => (l.samples.length >= 3000 ? true : undefined));
  const before = l.samples.slice(-2000);
  const pid = tc!.cluster.actors.get("jn2")!.pid;
  const stoppedAt = performance.now();
  process.kill(pid, "SIGSTOP");
  let rssMaxBytes = 0;
  try {
    await until("jn2 masked", 10000, async () => ((await health("jn2")) === "masked" ? true : undefined), 50);
    const maskedAfterMs = performance.now() - stoppedAt;
    t.log(`jn2 masked ${maskedAfterMs.toFixed(0)} ms after SIGSTOP`);
    t.true(maskedAfterMs < tc!.cluster.config.quorumTimeoutMs + 1000, "masked within the detection bound");
    while (performance.now() - stoppedAt < 10000) {
      const rss = Number((await import("node:fs")).readFileSync(`/proc/${tc!.cluster.actors.get("m1")!.pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) * 1024;
      rssMaxBytes = Math.max(rssMaxBytes, rss);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    process.kill(pid, "SIGCONT");
  }
  const during = l.samples.filter((s) => s.atMs >= stoppedAt + 1000 && s.atMs < stoppedAt + 10000);
  t.log(`p99 before ${p99(before).toFixed(1)} ms, during the pause ${p99(during).toFixed(1)} ms; master RSS max ${(rssMaxBytes / 1048576).toFixed(0)} MiB`);
  t.true(p99(during) <= Math.max(2 * p99(before), p99(before) + 20), "p99 during the pause within 2x of before");
  t.true(rssMaxBytes < 512 * 1024 * 1024, "the master's memory stays bounded");

  await until("jn2 restored", 30000, async () => ((await health("jn2")) === "healthy" ? true : undefined), 100);
  await l.stop();
  t.deepEqual(l.samples.filter((s) => !s.reply.ok).slice(0, 3), [], "no write failed");
  const m = await master();
  const from = Math.max(1, m.committedTxid - 5000);
  const jn1 = await fingerprint("jn1", from, m.committedTxid);
  t.is(jn1.length, m.committedTxid - from + 1);
  t.deepEqual(await fingerprint("jn2", from, m.committedTxid), jn1, "jn2's records equal jn1's (txids and checksums)");
  t.deepEqual(await fingerprint("jn3", from, m.committedTxid), jn1, "jn3's records equal jn1's");
});

test.serial("journal health - ENOSPC on one node under load: writes go on, the node is masked, then restored once the disk recovers", async (t) => {
  const l = load(50, "enospc");
  await until("a steady state", 20000, () => (l.samples.length >= 1000 ? true : undefined));
  const faultSubject = subjects(tc!.cluster.cluster).journal("jn3") + ".fault";
  await request(tc!.nc, faultSubject, { operation: "write", errno: "ENOSPC" }, 5000);
  await until("jn3 masked", 10000, async () => ((await health("jn3")) === "masked" ? true : undefined), 50);
  const jn3 = await until("jn3 to report its disk error", 5000, async () => (await tc!.status()).find((s) => s.id === "jn3" && s.health === "disk-error"));
  t.regex(String(jn3.details.diskError), /ENOSPC/);
  const at = l.samples.length;
  await until("1,000 writes while jn3's disk is full", 30000, () => (l.samples.length >= at + 1000 ? true : undefined));
  await request(tc!.nc, faultSubject, { operation: "write", errno: null }, 5000);
  await until("jn3 restored", 30000, async () => ((await health("jn3")) === "healthy" ? true : undefined), 100);
  await l.stop();
  t.deepEqual(l.samples.filter((s) => !s.reply.ok).slice(0, 3), [], "no write failed");
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

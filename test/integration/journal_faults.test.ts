/**
 * Journal node faults on real processes: one node killed under load costs nothing; two killed fail writes with
 * NO_QUORUM in bounded time and the cluster serves again once they return, with no acked write lost; a node
 * killed mid-write comes back; a torn tail is truncated; a flipped byte in a middle record is refused.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { segmentFilesIn } from "../../src/journal/segment_store.js";
import { encodeEffects, encodeRecord, scanRecords } from "../../src/segment/record.js";
import { decode } from "../../src/protocol/codec.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History } from "../helpers/history.js";
import { ackedMissingFrom, startLoad } from "../helpers/load.js";
import { verifyHistory } from "../helpers/verify.js";

let tc: TestCluster | undefined;
/** Every event published on qjm.<cluster>.events during the file's tests. */
const events: { type: string; node?: string }[] = [];
test.before(async () => {
  tc = await startTestCluster("jnfaults");
  const sub = tc.nc.subscribe(subjects(tc.cluster.cluster).events);
  void (async () => {
    for await (const m of sub) events.push(decode(m.data) as { type: string; node?: string });
  })();
  await waitForWriter(tc);
});
test.after.always(async () => {
  await tc?.stop();
});

/** Every write of the file's tests, with its outcome: checked against the journal and the replicas. */
const history = new History();

const load = (clients: number, tag: string) => startLoad(tc!, history, clients, tag);

/** Every acked write is in the journal at its txid, once; the master's Redis has them; each replica equals the journal. */
async function assertNoAckedWriteLost(t: import("ava").ExecutionContext): Promise<void> {
  await verifyHistory(t, tc!, history);
  const master = await waitForWriter(tc!);
  t.deepEqual((await ackedMissingFrom(Number(new URL(master.redisUrl!).port), history, tc!.redisPassword)).slice(0, 5), [], "every acked write is in the master's Redis");
}

test.serial("journal faults - kill -9 of one journal node under load: no write fails, none is lost", async (t) => {
  const l = load(50, "one");
  await until("1,000 acks", 30000, () => (l.acks() >= 1000 ? true : undefined));
  await tc!.cluster.signal("jn3", "SIGKILL");
  const at = l.acks();
  await until("1,000 more acks", 30000, () => (l.acks() >= at + 1000 ? true : undefined));
  await l.stop();
  t.deepEqual(l.failures.slice(0, 3), [], "no write failed");
  await assertNoAckedWriteLost(t);
  const master = (await tc!.status()).find((s) => s.role === "master")!;
  t.is((master.details.journalNodes as Record<string, string>).jn3, "masked", "status shows jn3 masked");
  t.true(events.some((e) => e.type === "masked" && e.node === "jn3"), "a masked event for jn3");
});

test.serial("journal faults - two of three killed: NO_QUORUM in bounded time; back after restart, nothing lost", async (t) => {
  await tc!.cluster.signal("jn2", "SIGKILL");
  const bound = tc!.cluster.config.quorumTimeoutMs + 2000;
  const started = Date.now();
  const r = await tc!.write(["SET", "during-outage", "x"], bound * 2);
  const elapsed = Date.now() - started;
  t.false(r.ok);
  if (!r.ok) t.is(r.code, "NO_QUORUM");
  t.true(elapsed <= bound, `failed after ${elapsed} ms (bound ${bound} ms)`);
  const again = await tc!.write(["SET", "during-outage", "y"], bound * 2);
  t.false(again.ok, "writes keep failing while two nodes are down");

  tc!.cluster.startActor("jn2");
  tc!.cluster.startActor("jn3");
  await waitForWriter(tc!);
  const l = load(20, "two");
  await until("500 acks after the restart", 30000, () => (l.acks() >= 500 ? true : undefined));
  await l.stop();
  t.deepEqual(l.failures.slice(0, 3), [], "writes succeed again");
  await assertNoAckedWriteLost(t);
});

test.serial("journal faults - a node killed mid-write comes back; a torn tail is truncated", async (t) => {
  const l = load(20, "torn");
  await until("300 acks", 30000, () => (l.acks() >= 300 ? true : undefined));
  await tc!.cluster.signal("jn1", "SIGKILL");
  await l.stop();

  // A torn write: the first 30 bytes of a record appended to the in-progress segment.
  const files = segmentFilesIn(path.join(tc!.cluster.dataDir, "jn1"));
  const inProgress = files.find((f) => path.basename(f).startsWith("edits_inprogress_"))!;
  t.truthy(inProgress, "jn1 has an in-progress segment");
  fs.appendFileSync(inProgress, encodeRecord(999999, 1, encodeEffects([[Buffer.from("SET"), Buffer.from("x"), Buffer.from("y")]])).subarray(0, 30));

  tc!.cluster.startActor("jn1");
  const jn1 = await until("jn1 to come back", 20000, async () => (await tc!.status()).find((s) => s.id === "jn1"));
  t.is(jn1.health, "ok");
  const log = fs.readFileSync(path.join(tc!.cluster.dataDir, "logs", "jn1.log"), "utf8");
  const truncated = log.split("\n").filter((l) => l.includes("truncated a torn tail")).map((l) => JSON.parse(l) as { file: string; bytes: number });
  t.deepEqual(truncated.map((e) => [path.basename(e.file), e.bytes]), [[path.basename(inProgress), 30]], "the 30 torn bytes were cut");
  // The master catches it up from its peers, and it counts for acks again.
  const l2 = load(10, "rejoin");
  await until("jn1 back in the master's quorum", 30000, async () => {
    const m = (await tc!.status()).find((s) => s.role === "master");
    return m !== undefined && (m.details.inSync as string[]).includes("jn1") ? true : undefined;
  });
  await l2.stop();
  t.deepEqual(l2.failures.slice(0, 3), []);
  t.true(events.some((e) => e.type === "tornTailTruncated" && e.node === "jn1"));
  t.true(events.some((e) => e.type === "restored" && e.node === "jn1"));
  await assertNoAckedWriteLost(t);
});

test.serial("journal faults - a full disk (a tmpfs with 1 MiB to spare): the node reports disk-error and is masked, no write fails; with room again it serves", async (t) => {
  const dir = path.join(tc!.cluster.dataDir, "jn2");
  await tc!.cluster.signal("jn2", "SIGTERM");
  fs.renameSync(dir, `${dir}.before`);
  fs.mkdirSync(dir);
  const usedKiB = Number(execFileSync("du", ["-sk", `${dir}.before`], { encoding: "utf8" }).split("\t")[0]);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${usedKiB + 1024}k`, "tmpfs", dir]);
  let mounted = true;
  try {
    fs.cpSync(`${dir}.before`, dir, { recursive: true });
    tc!.cluster.startActor("jn2");
    await until("jn2 back in the master's quorum", 30000, async () => (inSync(await tc!.status()).includes("jn2") ? true : undefined));
    // 40 writes of 64 KiB: 2.5 MiB, past the room left. Each is acked by the other two.
    const value = "v".repeat(64 * 1024);
    for (let i = 0; i < 40; i++) t.true((await tc!.write(["SET", `full-disk:${i}`, value])).ok, `write ${i}`);
    const jn2 = await until("jn2 to report its disk", 20000, async () => (await tc!.status()).find((s) => s.id === "jn2" && s.health === "disk-error"));
    t.regex(String(jn2.details.diskError), /short write|ENOSPC/);
    t.false(inSync(await tc!.status()).includes("jn2"), "the master counts it out");
    execFileSync("mount", ["-o", "remount,size=256m", dir]);
    await until("jn2 in the quorum again", 30000, async () => {
      t.true((await tc!.write(["SET", "full-disk:after", "1"])).ok);
      const all = await tc!.status();
      return inSync(all).includes("jn2") && all.find((s) => s.id === "jn2")?.health === "ok" ? true : undefined;
    }, 200);
    await tc!.cluster.signal("jn2", "SIGTERM");
    execFileSync("umount", [dir]);
    mounted = false;
    fs.rmSync(dir, { recursive: true });
    fs.renameSync(`${dir}.before`, dir);
    tc!.cluster.startActor("jn2");
    await until("jn2 restarted and caught up", 30000, async () => (inSync(await tc!.status()).includes("jn2") ? true : undefined));
  } finally {
    // A failure midway: jn2 back on its own directory and running, for the file's later tests.
    if (mounted) {
      await tc!.cluster.signal("jn2", "SIGKILL").catch(() => {});
      try {
        execFileSync("umount", ["-l", dir]);
        fs.rmSync(dir, { recursive: true, force: true });
        fs.renameSync(`${dir}.before`, dir);
        tc!.cluster.startActor("jn2");
      } catch (err) {
        t.log(`cleaning up jn2's tmpfs failed: ${(err as Error).message}`);
      }
    }
  }
});

/** The journal nodes the serving master counts in its epoch's quorum. */
function inSync(all: readonly ActorStatus[]): string[] {
  return (all.find((s) => s.role === "master")?.details.inSync as string[] | undefined) ?? [];
}

test.serial("journal faults - a flipped byte in a middle record is refused, naming file and offset", async (t) => {
  await tc!.cluster.signal("jn1", "SIGKILL");
  const files = segmentFilesIn(path.join(tc!.cluster.dataDir, "jn1"));
  const target = files.map((f) => ({ f, size: fs.statSync(f).size })).sort((a, b) => b.size - a.size)[0].f;
  const data = fs.readFileSync(target);
  const records = scanRecords(data).records;
  t.true(records.length >= 3, `${target} holds ${records.length} records`);
  const victim = records[Math.floor(records.length / 2)];
  data[victim.offset + 24 + Math.floor((victim.length - 24) / 2)] ^= 0xff;
  fs.writeFileSync(target, data);

  tc!.cluster.startActor("jn1");
  const jn1 = await until("jn1 to report its fault", 20000, async () => (await tc!.status()).find((s) => s.id === "jn1"));
  t.is(jn1.health, "corrupt");
  const fault = String(jn1.details.fault);
  t.true(fault.includes(path.basename(target)), fault);
  t.true(fault.includes(`offset ${victim.offset}`), fault);
  await until("a segmentCorrupt event", 5000, () => (events.some((e) => e.type === "segmentCorrupt" && e.node === "jn1") ? true : undefined));

  // The other two keep the cluster writing (after a recovery, if the kill cost the epoch its quorum).
  await until("a write to succeed", 30000, async () => ((await tc!.write(["SET", "after-corruption", "1"])).ok ? true : undefined));
  await assertNoAckedWriteLost(t);
});

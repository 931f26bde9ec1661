/**
 * A journal node whose data directory is wiped rejoins: formatted with the cluster's id, it votes in nothing while
 * the master copies the finalized segments and the current one back to it; then it is restored. Killing each of the
 * other two in turn afterwards loses no acked write: the copy is real.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History } from "../helpers/history.js";
import { journalFingerprint, startLoad } from "../helpers/load.js";
import { verifyHistory } from "../helpers/verify.js";
import { decode } from "../../src/protocol/codec.js";
import { subjects } from "../../src/protocol/subjects.js";

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

/** How many times the master restored each journal node (its `restored` events, qjm.<cluster>.events). */
const restored = new Map<string, number>();

/**
 * Until the master restored `node` once more than `before` times. Not a status poll alone: right after a kill the
 * master may still count the node in step (it learns of a death from its next batch, and a fan-out's silence takes
 * fanoutLateMs to tell), so "healthy" could be read before the kill was even noticed (CI, session 24).
 */
async function restoredAgain(node: string, before: number): Promise<void> {
  await until(`the master to restore ${node}`, 60000, () => ((restored.get(node) ?? 0) > before ? true : undefined), 50);
  await masterSees(node, "healthy");
}

async function masterSees(node: string, health: string): Promise<void> {
  await until(`the master to see ${node} ${health}`, 60000, async () => {
    const m = (await tc!.status()).find((s) => s.role === "master" && s.health === "writing");
    return m !== undefined && (m.details.journalNodes as Record<string, string>)[node] === health ? true : undefined;
  }, 100);
}

test("journal resync - a wiped journal node is copied back and restored; then the others can die in turn", async (t) => {
  tc = await startTestCluster("resync");
  tc.nc.subscribe(subjects(tc.cluster.cluster).events, {
    callback: (err, msg) => {
      if (err !== null) return;
      const e = decode(msg.data) as { type: string; node?: string };
      if (e.type === "restored" && e.node !== undefined) restored.set(e.node, (restored.get(e.node) ?? 0) + 1);
    },
  });
  await waitForWriter(tc);
  const history = new History();
  const l = startLoad(tc, history, 20, "w");
  await until("500 writes", 30000, () => (l.done() >= 500 ? true : undefined));
  // A new writer finalizes the first segment: the log now has a finalized segment and an in-progress one.
  await tc.cluster.signal("m1", "SIGKILL");
  tc.cluster.startActor("m1");
  await waitForWriter(tc);
  // Writes in flight when the master died have an unknown outcome; from here on none may fail.
  const writerBackAtMs = performance.now();
  const at = l.done();
  await until("500 more writes", 30000, () => (l.done() >= at + 500 ? true : undefined));

  const jn1Before = restored.get("jn1") ?? 0;
  await tc.cluster.signal("jn1", "SIGKILL");
  fs.rmSync(path.join(tc.cluster.dataDir, "jn1"), { recursive: true, force: true });
  tc.cluster.startActor("jn1");
  await restoredAgain("jn1", jn1Before);
  const jn1 = await until("jn1 restored", 10000, async () => (await tc!.status()).find((s) => s.id === "jn1" && s.health === "ok"));
  t.is(jn1.details.firstTxid, 1, "jn1 holds the log from txid 1 again");

  for (const other of ["jn2", "jn3"]) {
    const restores = restored.get(other) ?? 0;
    await tc.cluster.signal(other, "SIGKILL");
    const before = l.done();
    await until(`300 writes without ${other}`, 30000, () => (l.done() >= before + 300 ? true : undefined));
    tc.cluster.startActor(other);
    await restoredAgain(other, restores);
  }
  await l.stop();
  const committed = await verifyHistory(t, tc, history);
  const failedLater = [...history.unknowns(), ...history.fails()].filter((op) => op.invokedAtMs > writerBackAtMs);
  t.deepEqual(failedLater.slice(0, 3), [], "no write failed while one journal node at a time was down");
  t.deepEqual(await journalFingerprint(tc, "jn1", 1, committed), await journalFingerprint(tc, "jn2", 1, committed), "jn1's copy equals jn2's, txid and checksum");
});

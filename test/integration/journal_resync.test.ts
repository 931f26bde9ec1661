/**
 * A journal node whose data directory is wiped rejoins: formatted with the cluster's id, it votes in nothing while
 * the master copies the finalized segments and the current one back to it; then it is restored. Killing each of the
 * other two in turn afterwards loses no acked write: the copy is real.
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { request } from "../../src/nats/bus.js";
import { subjects } from "../../src/protocol/subjects.js";
import { scanRecords } from "../../src/segment/record.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { History, uniqueSet } from "../helpers/history.js";
import { verifyHistory } from "../helpers/verify.js";

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

function load(history: History, clients: number, tag: string) {
  let running = true;
  let done = 0;
  const finished = Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; running; i++) {
        await history.run(c, uniqueSet(c, i, tag), (args) => tc!.write(args));
        done++;
      }
    }),
  );
  return {
    done: () => done,
    async stop() {
      running = false;
      await finished;
    },
  };
}

async function masterSees(node: string, health: string): Promise<void> {
  await until(`the master to see ${node} ${health}`, 60000, async () => {
    const m = (await tc!.status()).find((s) => s.role === "master" && s.health === "writing");
    return m !== undefined && (m.details.journalNodes as Record<string, string>)[node] === health ? true : undefined;
  }, 100);
}

async function fingerprint(node: string, to: number): Promise<string[]> {
  const out: string[] = [];
  for (let txid = 1; txid <= to; ) {
    const r = (await request(tc!.nc, subjects(tc!.cluster.cluster).journal(node), { type: "read", fromTxid: txid, bytesMax: 512 * 1024, recordsMax: 8192, uncommitted: true }, 5000)) as {
      ok: boolean;
      read?: { records: Uint8Array };
      code?: string;
    };
    if (!r.ok || r.read === undefined) throw new Error(`${node} does not serve txid ${txid}: ${r.code}`);
    for (const rec of scanRecords(r.read.records).records) {
      if (rec.txid > to) break;
      out.push(`${rec.txid}:${Buffer.from(r.read.records.buffer, r.read.records.byteOffset + rec.offset + 20, 4).readUInt32BE(0)}`);
      txid = rec.txid + 1;
    }
  }
  return out;
}

test("journal resync - a wiped journal node is copied back and restored; then the others can die in turn", async (t) => {
  tc = await startTestCluster("resync");
  await waitForWriter(tc);
  const history = new History();
  const l = load(history, 20, "w");
  await until("500 writes", 30000, () => (l.done() >= 500 ? true : undefined));
  // A new writer finalizes the first segment: the log now has a finalized segment and an in-progress one.
  await tc.cluster.signal("m1", "SIGKILL");
  tc.cluster.startActor("m1");
  await waitForWriter(tc);
  // Writes in flight when the master died have an unknown outcome; from here on none may fail.
  const writerBackAtMs = performance.now();
  const at = l.done();
  await until("500 more writes", 30000, () => (l.done() >= at + 500 ? true : undefined));

  await tc.cluster.signal("jn1", "SIGKILL");
  fs.rmSync(path.join(tc.cluster.dataDir, "jn1"), { recursive: true, force: true });
  tc.cluster.startActor("jn1");
  await masterSees("jn1", "healthy");
  const jn1 = await until("jn1 restored", 10000, async () => (await tc!.status()).find((s) => s.id === "jn1" && s.health === "ok"));
  t.is(jn1.details.firstTxid, 1, "jn1 holds the log from txid 1 again");

  for (const other of ["jn2", "jn3"]) {
    await tc.cluster.signal(other, "SIGKILL");
    const before = l.done();
    await until(`300 writes without ${other}`, 30000, () => (l.done() >= before + 300 ? true : undefined));
    tc.cluster.startActor(other);
    await masterSees(other, "healthy");
  }
  await l.stop();
  const committed = await verifyHistory(t, tc, history);
  const failedLater = [...history.unknowns(), ...history.fails()].filter((op) => op.invokedAtMs > writerBackAtMs);
  t.deepEqual(failedLater.slice(0, 3), [], "no write failed while one journal node at a time was down");
  t.deepEqual(await fingerprint("jn1", committed), await fingerprint("jn2", committed), "jn1's copy equals jn2's, txid and checksum");
});

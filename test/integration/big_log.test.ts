/**
 * A long log with low thresholds (claim 6): QJM_BIG_RECORDS records (default 20,000 in CI; the run is
 * 1,000,000, about 200 MB) of varied types overwrite a bounded key set; each journal node's segment files and bytes
 * stay under a stated bound (the maximum seen is printed); no acked write is lost (each key's final value is its last
 * acked write) and the replicas converge.
 *
 *   QJM_BIG_RECORDS=1000000 npx ava dist/test/integration/big_log.test.js
 */
import fs from "node:fs";
import path from "node:path";
import test from "ava";
import { Redis } from "ioredis";
import { segmentFilesIn } from "../../src/journal/segment_store.js";
import { diffKeyspaces, dumpKeyspace, startTestCluster, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";

const RECORDS = Number(process.env.QJM_BIG_RECORDS ?? 20000);
const CLIENTS = 64;
const KEYS_PER_CLIENT = 40;
const VALUE = "v".repeat(120);
// Scaled to the run: a segment holds about 1/40 of the records; snapshots every 1/8.
const LIMITS = {
  segmentMaxBytes: Math.max(1024 * 1024, Math.round((RECORDS * 200) / 40)),
  maxSegments: RECORDS >= 200000 ? 8 : 3,
  editlogMaxBytes: Math.max(2 * 1024 * 1024, Math.round((RECORDS * 200) / 4)),
  snapshotEveryRecords: Math.round(RECORDS / 8),
  purgeMarginRecords: Math.round(RECORDS / 100),
  compactionCheckMs: 250,
};

let tc: TestCluster | undefined;
test.after.always(async () => {
  await tc?.stop();
});

type Expect = Map<string, string | number>;

/** Client c's i-th write and what it leaves when acked: a string, a hash field, a sorted-set score, a counter. */
function writeOf(c: number, i: number, expect: Expect): { args: (string | number)[]; acked: () => void } {
  const k = `${c}:${i % KEYS_PER_CLIENT}`;
  const value = `${VALUE}${i}`;
  switch (i % 4) {
    case 0:
      return { args: ["SET", `s:${k}`, value], acked: () => expect.set(`s:${k}`, value) };
    case 1:
      return { args: ["HSET", `h:${k}`, `f${i % 3}`, value], acked: () => expect.set(`h:${k}/f${i % 3}`, value) };
    case 2:
      return { args: ["ZADD", `z:${k}`, i, `m${i % 5}`], acked: () => expect.set(`z:${k}/m${i % 5}`, String(i)) };
    default:
      return { args: ["INCRBY", `n:${k}`, 3], acked: () => expect.set(`n:${k}`, Number(expect.get(`n:${k}`) ?? 0) + 3) };
  }
}

async function missingFrom(port: number, expect: Expect, password: string): Promise<string[]> {
  const r = new Redis({ port, host: "127.0.0.1", password });
  try {
    const wrong: string[] = [];
    const entries = [...expect];
    for (let i = 0; i < entries.length; i += 1000) {
      const p = r.pipeline();
      const chunk = entries.slice(i, i + 1000);
      for (const [key] of chunk) {
        const [name, field] = key.split("/");
        if (name.startsWith("s:") || name.startsWith("n:")) p.get(name);
        else if (name.startsWith("h:")) p.hget(name, field);
        else p.zscore(name, field);
      }
      ((await p.exec()) ?? []).forEach(([, v], j) => {
        if (String(v) !== String(chunk[j][1])) wrong.push(`${chunk[j][0]}: ${String(v).slice(-12)} != ${String(chunk[j][1]).slice(-12)}`);
      });
    }
    return wrong;
  } finally {
    r.disconnect();
  }
}

test("big log - a long run of varied overwrites keeps each node's editlog bounded; nothing acked is lost; replicas converge", async (t) => {
  tc = await startTestCluster("biglog", LIMITS);
  await waitForWriter(tc);
  const expect: Expect = new Map();
  const max = new Map<string, { files: number; bytes: number }>();
  const sample = setInterval(() => {
    for (const node of tc!.cluster.config.journalNodes) {
      const files = segmentFilesIn(path.join(tc!.cluster.dataDir, node));
      const bytes = files.reduce((n, f) => n + (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0);
      const m = max.get(node) ?? { files: 0, bytes: 0 };
      max.set(node, { files: Math.max(m.files, files.length), bytes: Math.max(m.bytes, bytes) });
    }
  }, 100);
  let next = 0;
  let failures = 0;
  const started = Date.now();
  try {
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        for (let i = 0; ; i++) {
          if (next++ >= RECORDS) return;
          const w = writeOf(c, i, expect);
          const reply = await tc!.write(w.args, 30000);
          if (reply.ok) w.acked();
          else if (++failures <= 3) t.log(`write failed: ${reply.code} ${reply.message}`);
        }
      }),
    );
  } finally {
    clearInterval(sample);
  }
  const seconds = (Date.now() - started) / 1000;
  t.is(failures, 0, "no write failed (no faults in this run)");
  const master = await waitForWriter(tc);
  const replicas = await waitForReplicas(tc, master.committedTxid, 300000);
  const ports = replicas.map((r) => Number(new URL(r.redisUrl!).port));
  for (const port of ports) t.deepEqual((await missingFrom(port, expect, tc!.redisPassword)).slice(0, 5), [], `each key on the replica at ${port} holds its last acked write`);
  t.deepEqual(diffKeyspaces(await dumpKeyspace(ports[0], tc!.redisPassword), await dumpKeyspace(ports[1], tc!.redisPassword)).slice(0, 5), [], "the replicas are equal");
  // The bound: maxSegments, plus what rolls between two compaction checks and a merge in progress (its output beside
  // its inputs); bytes: editlogMaxBytes plus a merge's output and a segment.
  const boundFiles = LIMITS.maxSegments * 2 + 4;
  const boundBytes = LIMITS.editlogMaxBytes * 2 + LIMITS.segmentMaxBytes * 2;
  for (const [node, m] of max) {
    t.log(`${node}: max ${m.files} segment files (bound ${boundFiles}), max ${(m.bytes / 1048576).toFixed(1)} MiB (bound ${(boundBytes / 1048576).toFixed(1)} MiB)`);
    t.true(m.files <= boundFiles && m.bytes <= boundBytes, `${node} stays under the bound`);
  }
  t.log(`${RECORDS} writes in ${seconds.toFixed(0)} s (${Math.round(RECORDS / seconds)} writes/s), committed txid ${master.committedTxid}, ${expect.size} keys/fields checked`);
});
